//! `gpupool prices`: the offline price table (and the simulator's prices), per
//! instance and per GPU.

use clap::ValueEnum;
use gpupool::catalog;
use gpupool::config::CloudKind;
use gpupool::pricing::table;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Cloud {
    Aws,
    Gcp,
    Azure,
    Sim,
}

impl Cloud {
    fn kind(self) -> CloudKind {
        match self {
            Self::Aws => CloudKind::Aws,
            Self::Gcp => CloudKind::Gcp,
            Self::Azure => CloudKind::Azure,
            Self::Sim => CloudKind::Sim,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this cloud (repeatable); default: AWS, GCP and Azure
    #[arg(long, value_enum)]
    cloud: Vec<Cloud>,
    /// Only this region, e.g. us-east-1, us-central1, eastus
    #[arg(long)]
    region: Option<String>,
    /// Only this GPU model, e.g. H100, A100, L4 (case-insensitive)
    #[arg(long)]
    gpu: Option<String>,
    /// Order by on-demand price per GPU-hour instead of by instance type
    #[arg(long)]
    by_gpu_price: bool,
    /// Ask the cloud's pricing API now instead of the built-in table (one
    /// --cloud and a --region; the cloud's feature must be built in)
    #[arg(long, requires = "region")]
    live: bool,
    /// The pricing API's address (tests, proxies)
    #[arg(long, requires = "live", hide = true)]
    endpoint: Option<String>,
}

/// One line of the table.
struct Line {
    cloud: &'static str,
    region: String,
    instance_type: String,
    gpus: u32,
    model: String,
    on_demand: f64,
    spot: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let clouds = if args.cloud.is_empty() {
        vec![Cloud::Aws, Cloud::Gcp, Cloud::Azure]
    } else {
        args.cloud.clone()
    };
    let mut lines = Vec::new();
    let mut sources = Vec::new();
    if args.live {
        let [cloud] = clouds[..] else {
            anyhow::bail!("--live asks one cloud: give exactly one --cloud");
        };
        let Some(region) = args.region.clone() else {
            anyhow::bail!("--live asks one region's prices: give --region");
        };
        let (prices, source) =
            super::live_prices::fetch(cloud.kind(), &region, args.endpoint.as_deref())?;
        let types = catalog::builtin(cloud.kind());
        let mut by_type: std::collections::BTreeMap<&str, (Option<f64>, Option<f64>)> =
            std::collections::BTreeMap::new();
        for p in &prices {
            let e = by_type.entry(p.instance_type.as_str()).or_default();
            match p.capacity_type {
                gpupool_cloud::CapacityType::OnDemand => e.0 = Some(p.usd_per_hour),
                // Spot per zone (AWS): the dearest zone, as in the table.
                gpupool_cloud::CapacityType::Spot => {
                    e.1 = Some(e.1.map_or(p.usd_per_hour, |s: f64| s.max(p.usd_per_hour)))
                }
            }
        }
        for ty in &types {
            let Some((Some(on_demand), spot)) = by_type.get(ty.name.as_str()).copied() else {
                continue;
            };
            lines.push(Line {
                cloud: cloud.kind().as_str(),
                region: region.clone(),
                instance_type: ty.name.clone(),
                gpus: ty.gpu.as_ref().map_or(0, |g| g.count),
                model: ty.gpu.as_ref().map_or(String::new(), |g| g.model.clone()),
                on_demand,
                spot,
            });
        }
        sources.push((cloud.kind().as_str(), source));
    }
    for cloud in clouds.into_iter().filter(|_| !args.live) {
        let kind = cloud.kind();
        if kind == CloudKind::Sim {
            for t in gpupool_sim::catalog::builtin() {
                lines.push(Line {
                    cloud: kind.as_str(),
                    region: "(any)".into(),
                    gpus: t.gpu.as_ref().map_or(0, |g| g.count),
                    model: t.gpu.as_ref().map_or(String::new(), |g| g.model.clone()),
                    instance_type: t.name,
                    on_demand: t.on_demand_usd_per_hour,
                    spot: Some(t.spot_usd_per_hour),
                });
            }
            sources.push((
                kind.as_str(),
                "the simulator's catalog (providers/sim/data/catalog.yaml)".to_owned(),
            ));
            continue;
        }
        let Some(t) = table::table(kind) else {
            continue;
        };
        let types = catalog::builtin(kind);
        for row in &t.prices {
            let gpu = types
                .iter()
                .find(|ty| ty.name == row.instance_type)
                .and_then(|ty| ty.gpu.clone());
            lines.push(Line {
                cloud: kind.as_str(),
                region: row.region.clone(),
                instance_type: row.instance_type.clone(),
                gpus: gpu.as_ref().map_or(0, |g| g.count),
                model: gpu.map_or(String::new(), |g| g.model),
                on_demand: row.on_demand,
                spot: row.spot,
            });
        }
        sources.push((kind.as_str(), format!("figures as of {}", t.as_of)));
        for s in &t.sources {
            sources.push((kind.as_str(), format!("{}: {} ({})", s.id, s.url, s.note)));
        }
    }
    lines.retain(|l| {
        args.region.as_ref().is_none_or(|r| &l.region == r)
            && args
                .gpu
                .as_ref()
                .is_none_or(|g| l.model.eq_ignore_ascii_case(g))
    });
    if lines.is_empty() {
        anyhow::bail!("no prices match the filters (--cloud, --region, --gpu)");
    }
    if args.by_gpu_price {
        let per_gpu = |l: &Line| l.on_demand / f64::from(l.gpus.max(1));
        lines.sort_by(|a, b| per_gpu(a).total_cmp(&per_gpu(b)));
    }
    let money = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    let mut rows = vec![
        [
            "CLOUD",
            "REGION",
            "INSTANCE-TYPE",
            "GPUS",
            "GPU",
            "$/H",
            "SPOT $/H",
            "$/GPU-H",
            "SPOT $/GPU-H",
            "SPOT SAVES",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for l in &lines {
        let per_gpu = |v: f64| (l.gpus > 0).then(|| v / f64::from(l.gpus));
        rows.push(vec![
            l.cloud.to_owned(),
            l.region.clone(),
            l.instance_type.clone(),
            l.gpus.to_string(),
            if l.model.is_empty() {
                "-".into()
            } else {
                l.model.clone()
            },
            money(Some(l.on_demand)),
            money(l.spot),
            money(per_gpu(l.on_demand)),
            money(l.spot.and_then(per_gpu)),
            l.spot.map_or("-".into(), |s| {
                format!("{:.0}%", 100.0 * (1.0 - s / l.on_demand))
            }),
        ]);
    }
    let mut out = super::table(&rows);
    out.push('\n');
    for (cloud, s) in sources {
        if lines.iter().any(|l| l.cloud == cloud) {
            out.push_str(&format!("# {cloud}: {s}\n"));
        }
    }
    super::emit(&out)
}
