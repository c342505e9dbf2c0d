use super::*;
use crate::config::{CloudKind, Config, GroupSpec};
use crate::fit::{NodeShape, PodShape};
use crate::template::{Template, TemplateContext};
use gpupool_cloud::{CapacityType, CreateRequest, GroupId, Price, PurchaseOption, RequestId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn t(hours: f64) -> SystemTime {
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let d = Duration::from_secs_f64(hours.abs() * 3600.0);
    if hours < 0.0 { base - d } else { base + d }
}

fn price(ty: &str, capacity_type: CapacityType, zone: Option<&str>, usd: f64) -> Price {
    Price {
        instance_type: ty.into(),
        capacity_type,
        zone: zone.map(Into::into),
        usd_per_hour: usd,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn cost_is_prorated_exactly_across_price_changes() {
    use CapacityType::Spot;
    let book = PriceBook::new(vec![price("p5", Spot, None, 30.0)]);
    // Half an hour at $30/h.
    assert!(close(
        book.cost("p5", Spot, None, t(0.0), t(0.5)).unwrap(),
        15.0
    ));
    // The price moves to $40 at 1h and to $20 at 2h.
    let book = book
        .with(&[price("p5", Spot, None, 40.0)], t(1.0))
        .with(&[price("p5", Spot, None, 20.0)], t(2.0));
    // 0.5h × 30 + 1h × 40 + 0.5h × 20
    assert!(close(
        book.cost("p5", Spot, None, t(0.5), t(2.5)).unwrap(),
        65.0
    ));
    // Inside one segment, and an interval in the past or future.
    assert!(close(
        book.cost("p5", Spot, None, t(1.25), t(1.75)).unwrap(),
        20.0
    ));
    assert!(close(
        book.cost("p5", Spot, None, t(-2.0), t(-1.0)).unwrap(),
        30.0
    ));
    assert!(close(
        book.cost("p5", Spot, None, t(5.0), t(6.0)).unwrap(),
        20.0
    ));
    assert!(close(book.hourly("p5", Spot, None).unwrap(), 20.0));
    // An empty interval costs nothing; an unknown type is an error.
    assert_eq!(book.cost("p5", Spot, None, t(1.0), t(1.0)).unwrap(), 0.0);
    assert_eq!(
        book.hourly("p4d", Spot, None).unwrap_err().to_string(),
        "no spot price known for instance type p4d"
    );
    // An unchanged price adds no history; a refresh without a type keeps it.
    let again = book.with(&[price("p5", Spot, None, 20.0)], t(3.0));
    assert!(close(
        again.cost("p5", Spot, None, t(0.5), t(2.5)).unwrap(),
        65.0
    ));
    let other = book.with(&[price("g6", Spot, None, 1.0)], t(3.0));
    assert!(close(other.hourly("p5", Spot, None).unwrap(), 20.0));
}

#[test]
fn history_older_than_a_week_is_dropped_but_still_prices_the_horizon() {
    use CapacityType::OnDemand;
    let mut book = PriceBook::new(vec![price("g6", OnDemand, None, 1.0)]);
    for day in 1..=10 {
        book = book.with(
            &[price("g6", OnDemand, None, f64::from(day))],
            t(24.0 * f64::from(day)),
        );
    }
    // Day 10: the price of day 3 (the last one at or before the horizon) holds
    // at the horizon; what came before it is gone.
    let horizon = t(24.0 * 3.0);
    assert!(close(
        book.cost(
            "g6",
            OnDemand,
            None,
            horizon,
            horizon + Duration::from_secs(3600)
        )
        .unwrap(),
        3.0
    ));
    assert!(close(book.hourly("g6", OnDemand, None).unwrap(), 10.0));
    // Day 1's price is gone: the oldest kept price stands for all before it.
    let day1 = t(24.0 * 1.5);
    assert!(close(
        book.cost("g6", OnDemand, None, day1, day1 + Duration::from_secs(3600))
            .unwrap(),
        3.0
    ));
}

#[test]
fn zonal_prices_price_their_zone_and_the_dearest_stands_for_any_zone() {
    use CapacityType::Spot;
    let book = PriceBook::new(vec![
        price("p5", Spot, Some("a"), 30.0),
        price("p5", Spot, Some("b"), 36.0),
    ]);
    assert!(close(book.hourly("p5", Spot, Some("a")).unwrap(), 30.0));
    assert!(close(book.hourly("p5", Spot, None).unwrap(), 36.0));
    assert!(close(book.hourly("p5", Spot, Some("c")).unwrap(), 36.0));
}

fn config() -> Config {
    Config::from_yaml(
        r#"
cloud: sim
region: sim-east-1
node_groups:
  - id: h100
    min_size: 0
    max_size: 4
    instance_type: gpu-8x-h100-80gb
    capacity_type: spot
    zones: [sim-east-1a, sim-east-1b]
  - id: h100-sliced
    min_size: 0
    max_size: 4
    instance_type: gpu-8x-h100-80gb
    annotations: { gpupool.dev/gpu-sharing: "time-slicing:4" }
  - id: a100-mig
    min_size: 0
    max_size: 4
    instance_type: gpu-8x-a100-80gb
    annotations:
      gpupool.dev/gpu-sharing: "mig:1g.10gb=3,2g.20gb=2"
      gpupool.dev/mig-strategy: mixed
  - id: cpu
    min_size: 0
    max_size: 4
    instance_type: cpu-16x
    annotations: { gpupool.dev/max-hourly-price: "0.5" }
"#,
    )
    .unwrap()
}

fn specs() -> Vec<Arc<GroupSpec>> {
    crate::backend::offline_specs(&config())
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect()
}

fn groups() -> Vec<PricedGroup> {
    let config = config();
    let cx = TemplateContext {
        region: &config.region,
        gpu_label: &config.gpu_label,
    };
    specs()
        .into_iter()
        .map(|spec| {
            let template = Template::build(&spec, cx);
            PricedGroup {
                node: NodeShape::new(&template.node, &template.slices()),
                spec,
            }
        })
        .collect()
}

/// Prices for these tests (on-demand, spot): H100 8× 55.04/22.02, A100 80 GB
/// 8× 40.97/16.39, cpu-16x 0.77/0.31.
fn book() -> PriceBook {
    let mut prices = Vec::new();
    for (ty, od, spot) in [
        ("gpu-8x-h100-80gb", 55.04, 22.02),
        ("gpu-8x-a100-80gb", 40.97, 16.39),
        ("cpu-16x", 0.77, 0.31),
    ] {
        prices.push(price(ty, CapacityType::OnDemand, None, od));
        prices.push(price(ty, CapacityType::Spot, None, spot));
    }
    PriceBook::new(prices)
}

fn pod(requests: &[(&str, f64)]) -> PodShape {
    PodShape {
        requests: requests
            .iter()
            .map(|(r, v)| ((*r).to_owned(), *v))
            .collect(),
        ..Default::default()
    }
}

fn share_on(group: &str, p: &PodShape) -> f64 {
    let g = groups()
        .into_iter()
        .find(|g| g.spec.id.as_str() == group)
        .unwrap();
    pod::share(p, &g.node)
}

#[test]
fn a_pod_pays_its_gpu_share_whole_gpus_replicas_and_mig_slices() {
    // 1 of 8 H100s.
    assert!(close(
        share_on("h100", &pod(&[("nvidia.com/gpu", 1.0)])),
        1.0 / 8.0
    ));
    // A replica of an H100 time-sliced 4 ways: 1/32 of the node.
    assert!(close(
        share_on("h100-sliced", &pod(&[("nvidia.com/gpu", 1.0)])),
        1.0 / 32.0
    ));
    // Each A100 split 3×1g + 2×2g (7 compute slices): a 1g slice pays 1/7 of a
    // GPU, a 2g slice 2/7.
    assert!(close(
        share_on("a100-mig", &pod(&[("nvidia.com/mig-1g.10gb", 1.0)])),
        1.0 / 56.0
    ));
    assert!(close(
        share_on("a100-mig", &pod(&[("nvidia.com/mig-2g.20gb", 1.0)])),
        2.0 / 56.0
    ));
    // CPU or memory beyond the GPU share sets the share.
    let g = groups()
        .into_iter()
        .find(|g| g.spec.id.as_str() == "h100")
        .unwrap();
    let cpus = g.node.allocatable["cpu"];
    let heavy = pod(&[("nvidia.com/gpu", 1.0), ("cpu", cpus / 2.0)]);
    assert!(close(pod::share(&heavy, &g.node), 0.5));
    // A CPU-only pod pays its CPU/memory fraction; a tiny one one pod slot.
    assert!(close(share_on("h100", &pod(&[("cpu", cpus / 4.0)])), 0.25));
    assert!(close(
        share_on("h100", &pod(&[("cpu", 0.001)])),
        1.0 / 110.0
    ));
}

#[test]
fn a_pod_is_priced_on_the_cheapest_group_that_fits_it() {
    let (book, groups) = (book(), groups());
    let hour = |p: &PodShape| pod_cost(&book, &groups, p, t(0.0), t(1.0));
    // One GPU: a replica on the on-demand time-sliced H100 (55.04/32 = 1.72)
    // is cheaper than a whole spot H100 GPU (22.02/8 = 2.75).
    assert!(close(hour(&pod(&[("nvidia.com/gpu", 1.0)])), 55.04 / 32.0));
    // Eight GPUs fit only whole-GPU or sliced H100 nodes: spot whole node vs
    // 8/32 of an on-demand sliced node.
    assert!(close(
        hour(&pod(&[("nvidia.com/gpu", 8.0)])),
        (55.04_f64 / 4.0).min(22.02)
    ));
    // A MIG slice fits only the MIG group (on-demand A100).
    assert!(close(
        hour(&pod(&[("nvidia.com/mig-1g.10gb", 1.0)])),
        40.97 / 56.0
    ));
    // Over two hours, twice the price.
    let two = pod_cost(
        &book,
        &groups,
        &pod(&[("nvidia.com/mig-1g.10gb", 1.0)]),
        t(0.0),
        t(2.0),
    );
    assert!(close(two, 2.0 * 40.97 / 56.0));
    // A pod that fits nowhere gets the dearest whole node, not an error.
    assert!(close(hour(&pod(&[("nvidia.com/gpu", 64.0)])), 55.04));
    // A pod with DRA claims pays a whole node of a group that fits it (here:
    // none publishes devices, so the dearest whole node).
    let mut claims = pod(&[]);
    claims.claims.push(crate::fit::PodClaim {
        name: "gpu".into(),
        source: crate::fit::ClaimSource::Template("t".into()),
        requests: None,
    });
    assert!(close(hour(&claims), 55.04));
}

fn node(name: &str, labels: &[(&str, &str)]) -> (String, HashMap<String, String>) {
    (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

#[test]
fn nodes_are_priced_by_group_and_labels_spot_or_on_demand() {
    let (book, specs) = (book(), specs());
    let snapshot = crate::fleet::Snapshot::default();
    let cost = |(name, labels): &(String, HashMap<String, String>)| {
        node_cost(
            &book,
            &specs,
            &snapshot,
            NodeRef {
                name,
                provider_id: "aws:///us-east-1a/i-0123", // never looked up for templates
                labels,
            },
            t(0.0),
            t(0.5),
        )
    };
    // A template of the spot group, by the group's purchase option.
    assert!(close(
        cost(&node("template-node-for-h100-abc12", &[])).unwrap(),
        22.02 / 2.0
    ));
    // Its label says on-demand: priced on-demand.
    let on_demand = node(
        "template-node-for-h100-abc12",
        &[("gpupool.dev/capacity-type", "on-demand")],
    );
    assert!(close(cost(&on_demand).unwrap(), 55.04 / 2.0));
    // "h100-sliced" is not "h100" with a suffix: longest id wins.
    assert!(close(
        cost(&node("template-node-for-h100-sliced-x1", &[])).unwrap(),
        55.04 / 2.0
    ));
    // Not ours: by its instance-type and capacity-type labels.
    let foreign = node(
        "ip-10-0-0-1",
        &[
            ("node.kubernetes.io/instance-type", "cpu-16x"),
            ("karpenter.sh/capacity-type", "spot"),
        ],
    );
    assert!(close(cost(&foreign).unwrap(), 0.31 / 2.0));
    assert_eq!(
        cost(&node("ip-10-0-0-2", &[])).unwrap_err().to_string(),
        "node \"ip-10-0-0-2\" is not a node of ours and carries no node.kubernetes.io/instance-type label to price it by"
    );
}

fn create(spec: &GroupSpec, purchase: PurchaseOption) -> CreateRequest {
    CreateRequest {
        request_id: RequestId::new("r"),
        group: GroupId::new(spec.id.as_str()),
        instance_type: spec.instance_type.name.clone(),
        zones: spec.zones.clone(),
        purchase,
        count: 2,
        max_spot_price: None,
        avoid: Vec::new(),
    }
}

#[test]
fn the_price_cap_narrows_or_refuses_a_purchase() {
    let book = book();
    let specs = specs();
    let cpu = specs.iter().find(|s| s.id.as_str() == "cpu").unwrap();
    // cpu-16x: on-demand $0.77 > cap $0.50 >= spot $0.31.
    let refused = cap::apply(&book, cpu, create(cpu, PurchaseOption::OnDemand)).unwrap_err();
    assert_eq!(refused.class, gpupool_cloud::ErrorClass::OutOfResources);
    assert_eq!(refused.code, cap::PRICE_CAP_EXCEEDED);
    assert_eq!(
        refused.message,
        "on-demand price $0.7700/h of cpu-16x is above the group's gpupool.dev/max-hourly-price $0.5000/h"
    );
    let spot = cap::apply(&book, cpu, create(cpu, PurchaseOption::Spot)).unwrap();
    assert_eq!(
        (spot.purchase, spot.max_spot_price),
        (PurchaseOption::Spot, Some(0.5))
    );
    let narrowed = cap::apply(&book, cpu, create(cpu, PurchaseOption::SpotThenOnDemand)).unwrap();
    assert_eq!(narrowed.purchase, PurchaseOption::Spot);
    // Spot above the cap too: nothing to buy.
    let dear = book.with(&[price("cpu-16x", CapacityType::Spot, None, 0.6)], t(0.0));
    let refused =
        cap::apply(&dear, cpu, create(cpu, PurchaseOption::SpotThenOnDemand)).unwrap_err();
    assert!(
        refused.message.starts_with("spot price $0.6000/h"),
        "{}",
        refused.message
    );
    // No cap: untouched.
    let h100 = &specs[0];
    assert_eq!(
        cap::apply(&book, h100, create(h100, PurchaseOption::Spot)).unwrap(),
        create(h100, PurchaseOption::Spot)
    );
}

#[test]
fn the_offline_tables_cover_the_catalog_with_sourced_figures() {
    for cloud in [CloudKind::Aws, CloudKind::Gcp, CloudKind::Azure] {
        let table = table::table(cloud).unwrap();
        assert_eq!(table.cloud, cloud.as_str());
        assert!(
            table.as_of().is_some(),
            "{}: as_of {:?}",
            table.cloud,
            table.as_of
        );
        let catalog = crate::catalog::builtin(cloud);
        let mut seen = std::collections::BTreeSet::new();
        for row in &table.prices {
            let at = format!("{} {} in {}", table.cloud, row.instance_type, row.region);
            assert!(
                catalog.iter().any(|t| t.name == row.instance_type),
                "{at}: not in the catalog"
            );
            assert!(
                table.sources.iter().any(|s| s.id == row.source),
                "{at}: source {}",
                row.source
            );
            assert!(row.on_demand > 0.0, "{at}");
            if let Some(spot) = row.spot {
                assert!(spot > 0.0 && spot <= row.on_demand, "{at}: spot {spot}");
            }
            assert!(
                seen.insert((&row.instance_type, &row.region)),
                "{at}: twice"
            );
        }
        // Every GPU family of the catalog has prices somewhere.
        let families: std::collections::BTreeSet<_> = catalog
            .iter()
            .map(|t| t.name.split(['.', '-', '_']).next().unwrap().to_owned())
            .collect();
        for family in families {
            assert!(
                table
                    .prices
                    .iter()
                    .any(|r| r.instance_type.starts_with(&family)),
                "{}: no prices for {family}",
                table.cloud
            );
        }
    }
    // The book of a region holds its on-demand and spot prices.
    let book = table::book(CloudKind::Aws, "us-east-1");
    assert!(
        book.hourly("p5.48xlarge", CapacityType::OnDemand, None)
            .is_ok()
    );
    assert!(table::book(CloudKind::Sim, "sim-east-1").is_empty());
}
