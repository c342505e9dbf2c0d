//! `gpupool groups`: a table of the node groups, asked of a running server over
//! the same gRPC interface CA uses.

use super::client;
use gpupool::proto::cloud_provider_client::CloudProviderClient;
use gpupool::proto::instance_status::InstanceState;
use gpupool::proto::*;
use std::time::{Duration, SystemTime};
use tonic::transport::Channel;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server's gRPC address
    #[arg(long, default_value = "127.0.0.1:8086", env = "GPUPOOL_ADDRESS")]
    address: String,
    #[command(flatten)]
    tls: client::Tls,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    client::runtime()?.block_on(async {
        let mut client = client::connect(&args.address, &args.tls).await?;
        let table = collect(&mut client).await?;
        super::emit(&table)
    })
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
        .map(String::from)
        .to_vec(),
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
        rows.push(
            [
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
            ]
            .to_vec(),
        );
    }
    Ok(super::table(&rows))
}
