//! Scaling over real gRPC: from zero, deletes, the decrease rules, spot capacity
//! running out, and a restart that keeps the fleet.

mod common;

use common::*;
use gpupool::grpc::OUT_OF_RESOURCES_CLASS;
use gpupool::proto::*;
use gpupool_cloud::{Cloud, GroupId};
use std::time::Duration;
use tonic::Code;

const GROUPS: &str = "
  - id: h100
    min_size: 0
    max_size: 4
    instance_type: gpu-8x-h100-80gb
  - id: l4
    min_size: 1
    max_size: 20
    instance_type: gpu-1x-l4
";

#[tokio::test]
async fn scale_from_zero_goes_creating_then_running_after_the_simulated_boot() {
    let mut h = Harness::start(&config_yaml(GROUPS, "")).await;
    assert_eq!(h.target("h100").await, 0);
    assert!(h.nodes("h100").await.is_empty());

    h.increase("h100", 2).await.unwrap();
    // The target is raised before the cloud has answered.
    assert_eq!(h.target("h100").await, 2);
    let (creating, running, _) = census(&h.nodes("h100").await);
    assert_eq!((creating, running), (2, 0));

    h.settle().await;
    h.refresh().await;
    let nodes = h.nodes("h100").await;
    assert_eq!(census(&nodes), (2, 0, 0));
    for n in &nodes {
        assert!(n.id.starts_with("gpupool-sim:///sim-east-1"), "{}", n.id);
        assert!(error_of(n).is_none());
        assert!(
            !n.id.contains("placeholder"),
            "real instances by now: {}",
            n.id
        );
    }

    // H100 boots take 5-8 simulated minutes.
    h.clock.advance(Duration::from_secs(4 * 60));
    h.refresh().await;
    assert_eq!(census(&h.nodes("h100").await), (2, 0, 0));
    h.clock.advance(Duration::from_secs(4 * 60));
    h.refresh().await;
    let after = h.nodes("h100").await;
    assert_eq!(census(&after), (0, 2, 0));
    assert_eq!(
        after.iter().map(|i| &i.id).collect::<Vec<_>>(),
        nodes.iter().map(|i| &i.id).collect::<Vec<_>>(),
        "the same instances, now running"
    );
    assert_eq!(h.target("h100").await, 2);
    h.stop().await;
}

#[tokio::test]
async fn increase_size_errors_carry_their_status_codes() {
    let mut h = Harness::start(&config_yaml(GROUPS, "")).await;
    assert_status(
        h.increase("h100", 0).await,
        Code::InvalidArgument,
        "delta: must be positive, got 0",
    );
    assert_status(h.increase("h100", -1).await, Code::InvalidArgument, "delta");
    assert_status(
        h.increase("nope", 1).await,
        Code::NotFound,
        "node group \"nope\" not found",
    );
    assert_status(
        h.increase("h100", 5).await,
        Code::FailedPrecondition,
        "target 0 + delta 5 is above max size 4",
    );
    assert_eq!(h.target("h100").await, 0, "refused calls change nothing");
    assert_status(
        h.client
            .node_group_target_size(NodeGroupTargetSizeRequest { id: "nope".into() })
            .await,
        Code::NotFound,
        "nope",
    );
    assert_status(
        h.client
            .node_group_nodes(NodeGroupNodesRequest { id: "nope".into() })
            .await,
        Code::NotFound,
        "nope",
    );
    h.stop().await;
}

#[tokio::test]
async fn concurrent_increases_never_overshoot_max() {
    let mut h = Harness::start(&config_yaml(GROUPS, "")).await;
    let calls = (0..10).map(|_| {
        let mut c = h.client.clone();
        async move {
            c.node_group_increase_size(NodeGroupIncreaseSizeRequest {
                id: "h100".into(),
                delta: 1,
            })
            .await
        }
    });
    let results = futures_join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 4);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|s| s.code() == Code::FailedPrecondition)
    );
    h.settle().await;
    h.refresh().await;
    assert_eq!(h.target("h100").await, 4);
    assert_eq!(h.nodes("h100").await.len(), 4);
    h.stop().await;
}

#[tokio::test]
async fn delete_nodes_is_exact_atomic_and_respects_min() {
    let mut h = Harness::start(&config_yaml(GROUPS, "")).await;
    h.increase("l4", 12).await.unwrap();
    h.settle().await;
    h.refresh().await;
    let ids: Vec<String> = h.nodes("l4").await.into_iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 12);

    // One node that is not ours: error, nothing deleted.
    assert_status(
        h.delete("l4", &[&ids[0], "gpupool-sim:///sim-east-1a/i-elsewhere"])
            .await,
        Code::InvalidArgument,
        "does not belong to it; nothing was deleted",
    );
    assert_eq!(h.target("l4").await, 12);
    assert_eq!(census(&h.nodes("l4").await).2, 0);
    assert_status(
        h.delete("l4", &[]).await,
        Code::InvalidArgument,
        "nodes: empty",
    );

    // CA scales down in parallel, one node per call, up to 10 at once.
    let calls = ids[..10].iter().map(|id| {
        let mut c = h.client.clone();
        let id = id.clone();
        async move {
            c.node_group_delete_nodes(NodeGroupDeleteNodesRequest {
                id: "l4".into(),
                nodes: vec![node(&id)],
            })
            .await
        }
    });
    assert!(futures_join_all(calls).await.iter().all(|r| r.is_ok()));
    assert_eq!(h.target("l4").await, 2);
    assert_eq!(census(&h.nodes("l4").await).2, 10, "reported as deleting");

    // min_size is 1: deleting both remaining nodes is refused.
    assert_status(
        h.delete("l4", &[&ids[10], &ids[11]]).await,
        Code::FailedPrecondition,
        "would go below min size 1",
    );
    assert_eq!(h.target("l4").await, 2);

    // By name, as CA does for a node without providerID.
    h.settle().await;
    h.refresh().await;
    let name = h
        .sim
        .list_instances()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.group == GroupId::new("l4") && i.provider_id.as_str() == ids[10])
        .and_then(|i| i.node_name)
        .unwrap();
    h.client
        .node_group_delete_nodes(NodeGroupDeleteNodesRequest {
            id: "l4".into(),
            nodes: vec![ExternalGrpcNode {
                name,
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    assert_eq!(h.target("l4").await, 1);

    // After the simulated shutdown the deleted instances are gone.
    h.settle().await;
    h.clock.advance(Duration::from_secs(60));
    h.refresh().await;
    h.clock.advance(Duration::from_secs(15 * 60));
    h.refresh().await;
    assert_eq!(h.nodes("l4").await.len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn decrease_target_size_only_cancels_unfulfilled_requests() {
    // Spot capacity for one H100 in one zone: the rest of a request fails.
    let extra = "sim:\n  spot_capacity:\n    gpu-8x-h100-80gb: { sim-east-1a: 1, sim-east-1b: 0, sim-east-1c: 0 }\n";
    let groups = "
  - id: spot
    min_size: 0
    max_size: 4
    instance_type: gpu-8x-h100-80gb
    capacity_type: spot
";
    let mut h = Harness::start(&config_yaml(groups, extra)).await;
    h.increase("spot", 3).await.unwrap();
    h.settle().await;
    assert_eq!(h.target("spot").await, 3);

    let decrease = |delta| NodeGroupDecreaseTargetSizeRequest {
        id: "spot".into(),
        delta,
    };
    assert_status(
        h.client.node_group_decrease_target_size(decrease(1)).await,
        Code::InvalidArgument,
        "delta: must be negative, got 1",
    );
    assert_status(
        h.client.node_group_decrease_target_size(decrease(-3)).await,
        Code::FailedPrecondition,
        "attempt to delete existing nodes",
    );
    assert_status(
        h.client
            .node_group_decrease_target_size(NodeGroupDecreaseTargetSizeRequest {
                id: "nope".into(),
                delta: -1,
            })
            .await,
        Code::NotFound,
        "nope",
    );
    assert_eq!(h.target("spot").await, 3);
    h.client
        .node_group_decrease_target_size(decrease(-2))
        .await
        .unwrap();
    assert_eq!(h.target("spot").await, 1);
    let nodes = h.nodes("spot").await;
    assert_eq!(nodes.len(), 1);
    assert!(
        error_of(&nodes[0]).is_none(),
        "the failed slots went, the instance stayed"
    );
    h.stop().await;
}

#[tokio::test]
async fn spot_capacity_running_out_is_reported_as_class_1_and_ca_can_clear_it() {
    let extra = "sim:\n  spot_capacity:\n    gpu-1x-l4: { sim-east-1a: 1, sim-east-1b: 1, sim-east-1c: 0 }\n";
    let groups = "
  - id: l4-spot
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    capacity_type: spot
";
    let mut h = Harness::start(&config_yaml(groups, extra)).await;
    h.increase("l4-spot", 5).await.unwrap();
    h.settle().await;
    h.refresh().await;
    let nodes = h.nodes("l4-spot").await;
    assert_eq!(h.target("l4-spot").await, 5);
    let failed: Vec<_> = nodes.iter().filter(|n| error_of(n).is_some()).collect();
    assert_eq!(failed.len(), 3);
    for n in &failed {
        assert_eq!(
            state(n),
            gpupool::proto::instance_status::InstanceState::InstanceCreating
        );
        let e = error_of(n).unwrap();
        assert_eq!(e.instance_error_class, OUT_OF_RESOURCES_CLASS);
        assert_eq!(e.error_code, "InsufficientSpotCapacity");
        assert!(
            e.error_message
                .contains("no spot capacity left for gpu-1x-l4"),
            "{}",
            e.error_message
        );
    }
    // CA deletes the failed instances (by providerID) and backs off the group.
    let ids: Vec<&str> = failed.iter().map(|n| n.id.as_str()).collect();
    h.delete("l4-spot", &ids).await.unwrap();
    assert_eq!(h.target("l4-spot").await, 2);
    assert!(
        h.nodes("l4-spot")
            .await
            .iter()
            .all(|n| error_of(n).is_none())
    );
    h.stop().await;
}

#[tokio::test]
async fn a_restart_with_the_state_file_keeps_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "sim:\n  state_file: {}\n",
        dir.path().join("fleet.json").display()
    );
    let yaml = config_yaml(GROUPS, &extra);
    let mut h = Harness::start(&yaml).await;
    h.increase("h100", 3).await.unwrap();
    h.settle().await;
    h.refresh().await;
    let mut before: Vec<String> = h.nodes("h100").await.into_iter().map(|i| i.id).collect();
    before.sort();
    let clock = h.clock.clone();
    h.stop().await;

    clock.advance(Duration::from_secs(3600));
    let mut h = Harness::start_with_clock(&yaml, clock).await;
    let nodes = h.nodes("h100").await;
    let mut after: Vec<String> = nodes.iter().map(|i| i.id.clone()).collect();
    after.sort();
    assert_eq!(after, before);
    assert_eq!(census(&nodes), (0, 3, 0), "booted while we were away");
    assert_eq!(h.target("h100").await, 3);
    h.stop().await;
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
