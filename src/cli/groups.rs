//! `gpupool groups`: a table of the node groups, asked of a running server over
//! the same gRPC interface CA uses.

use anyhow::Context;
use gpupool::proto::cloud_provider_client::CloudProviderClient;
use gpupool::proto::instance_status::InstanceState;
use gpupool::proto::*;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server's gRPC address
    #[arg(long, default_value = "127.0.0.1:8086", env = "GPUPOOL_ADDRESS")]
    address: String,
    /// CA certificate (PEM) to verify the server with; turns TLS on
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Client key (PEM) for mTLS
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the address's host)
    #[arg(long)]
    server_name: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut client = connect(&args).await?;
        let table = collect(&mut client).await?;
        print!("{table}");
        Ok(())
    })
}

async fn connect(args: &Args) -> anyhow::Result<CloudProviderClient<Channel>> {
    let scheme = if args.cacert.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{}", args.address))
        .with_context(|| format!("--address {:?}", args.address))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if let Some(ca) = &args.cacert {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("{}", p.display()));
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        let host = args.server_name.clone().unwrap_or_else(|| {
            args.address
                .rsplit_once(':')
                .map_or(args.address.clone(), |(h, _)| h.to_owned())
        });
        endpoint = endpoint.tls_config(tls.domain_name(host))?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to gpupool at {}", args.address))?;
    Ok(CloudProviderClient::new(channel))
}

/// One row per group.
async fn collect(client: &mut CloudProviderClient<Channel>) -> anyhow::Result<String> {
    let groups = client
        .node_groups(NodeGroupsRequest {})
        .await?
        .into_inner()
        .node_groups;
    let now = SystemTime::now();
    let hour_later = now + Duration::from_secs(3600);
    let ts = |t: SystemTime| prost_types::Timestamp::from(t);
    let mut rows = vec![
        [
            "GROUP",
            "MIN",
            "MAX",
            "TARGET",
            "READY",
            "CREATING",
            "FAILED",
            "DELETING",
            "$/NODE-HOUR",
            "$/HOUR",
        ]
        .map(String::from),
    ];
    for g in groups {
        let target = client
            .node_group_target_size(NodeGroupTargetSizeRequest { id: g.id.clone() })
            .await?
            .into_inner()
            .target_size;
        let instances = client
            .node_group_nodes(NodeGroupNodesRequest { id: g.id.clone() })
            .await?
            .into_inner()
            .instances;
        let (mut ready, mut creating, mut failed, mut deleting) = (0, 0, 0, 0);
        for i in &instances {
            let status = i.status.clone().unwrap_or_default();
            let has_error = status
                .error_info
                .as_ref()
                .is_some_and(|e| !e.error_code.is_empty());
            match status.instance_state() {
                _ if has_error => failed += 1,
                InstanceState::InstanceRunning => ready += 1,
                InstanceState::InstanceCreating => creating += 1,
                InstanceState::InstanceDeleting => deleting += 1,
                InstanceState::Unspecified => {}
            }
        }
        // Priced the way CA prices a scale-up: a template node of the group.
        let price = client
            .pricing_node_price(PricingNodePriceRequest {
                node: Some(ExternalGrpcNode {
                    name: format!("template-node-for-{}-gpupool-groups", g.id),
                    ..Default::default()
                }),
                start_timestamp: Some(ts(now)),
                end_timestamp: Some(ts(hour_later)),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().price)
            .ok();
        let money = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.2}"));
        rows.push([
            g.id,
            g.min_size.to_string(),
            g.max_size.to_string(),
            target.to_string(),
            ready.to_string(),
            creating.to_string(),
            failed.to_string(),
            deleting.to_string(),
            money(price),
            money(price.map(|p| p * f64::from(ready + creating))),
        ]);
    }
    Ok(render(&rows))
}

fn render(rows: &[[String; 10]]) -> String {
    let widths: Vec<usize> = (0..10)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
