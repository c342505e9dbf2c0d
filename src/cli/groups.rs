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
            "BOOT-P50/P90/P99",
            "FLOOR",
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
                boot_column(&g.debug),
                floor_column(&g.debug),
            ]
            .to_vec(),
        );
    }
    Ok(super::table(&rows))
}

/// `boot p50 4m, p90 6m, p99 8m (12 boots)` in NodeGroups' debug, as
/// `4m/6m/8m (12 boots)`.
fn boot_column(debug: &str) -> String {
    let Some(boot) = debug
        .split("; ")
        .find_map(|part| part.strip_prefix("boot "))
    else {
        return "-".to_owned();
    };
    let (quantiles, basis) = boot.split_once(" (").unwrap_or((boot, ""));
    let values: Vec<&str> = quantiles
        .split(", ")
        .filter_map(|q| q.split_once(' ').map(|(_, v)| v))
        .collect();
    match basis.strip_suffix(')') {
        Some(basis) => format!("{} ({basis})", values.join("/")),
        None => values.join("/"),
    }
}

/// The floor, last in NodeGroups' debug: `4: 4 until 19:00 CET: schedule
/// 'weekday-office'`, or `0 (next: …)`.
fn floor_column(debug: &str) -> String {
    debug
        .split_once("; floor ")
        .map_or_else(|| "-".to_owned(), |(_, floor)| floor.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_and_floor_columns_come_from_the_debug_string() {
        let debug = "l4 (gpu-1x-l4) in us-east-1a [on-demand]; boot p50 4m 10s, p90 6m, p99 8m (12 boots); floor 4: 4 until 19:00 CET: schedule 'weekday-office'";
        assert_eq!(boot_column(debug), "4m 10s/6m/8m (12 boots)");
        assert_eq!(
            floor_column(debug),
            "4: 4 until 19:00 CET: schedule 'weekday-office'"
        );
        assert_eq!(boot_column("old server"), "-");
        assert_eq!(floor_column("old server"), "-");
    }
}
