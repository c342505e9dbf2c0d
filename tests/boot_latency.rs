//! Boot latency through `serve`, against a local Kubernetes API server
//! (tests/common/kube_api.rs): phase timings from Node events, the model
//! feeding CA's provision deadline, persistence across a restart (with a
//! write conflict), and instances that never become nodes.

mod common;

use common::kube_api::KubeApi;
use common::*;
use gpupool::proto::*;
use gpupool_cloud::Clock;
use std::time::Duration;

const GROUP: &str = "
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    annotations: { gpupool.dev/boot-latency: 2m }
";

fn yaml(kubeconfig: &std::path::Path) -> String {
    config_yaml(
        GROUP,
        &format!(
            "sim:\n  boot:\n    gpu-1x-l4: {{ min: 60s, max: 60s }}\nkubernetes:\n  kubeconfig: {}\n  namespace: gpupool\n",
            kubeconfig.display()
        ),
    )
}

/// Waits (bounded) until `f` holds; the server works on its own tasks.
fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn options(h: &mut Harness) -> u64 {
    let o = h
        .client
        .node_group_get_options(NodeGroupAutoscalingOptionsRequest {
            id: "l4".into(),
            defaults: None,
        })
        .await
        .unwrap()
        .into_inner()
        .node_group_autoscaling_options
        .unwrap();
    o.max_node_provision_duration.unwrap().seconds as u64
}

#[tokio::test]
async fn boots_are_timed_from_node_events_learned_and_kept_across_a_restart() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = yaml(&api.kubeconfig(dir.path()));
    let mut h = Harness::start(&yaml).await;
    // Prior 2m: p99 3m × 1.5 = 4.5m → 5m, below CA's 15m default.
    assert_eq!(options(&mut h).await, 15 * 60);

    // Five nodes bought at t0, running 60 s in; each registers at 90 s, is
    // Ready at 120 s, and advertises its GPU at 200 + 100·i s.
    h.increase("l4", 5).await.unwrap();
    h.settle().await;
    h.clock.advance(Duration::from_secs(60));
    h.refresh().await;
    let ids: Vec<String> = h.nodes("l4").await.into_iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 5);
    let at = |s: u64| t0() + Duration::from_secs(s);
    for (i, id) in ids.iter().enumerate() {
        let name = format!("node-{i}");
        api.put_node(&name, id, at(90), None, 0);
        api.put_node(&name, id, at(90), Some(at(120)), 0);
    }
    for (i, id) in ids.iter().enumerate() {
        h.clock
            .advance(Duration::from_secs(if i == 0 { 140 } else { 100 }));
        api.put_node(&format!("node-{i}"), id, at(90), Some(at(120)), 1);
        let boots = i as f64 + 1.0;
        eventually("the boot is recorded", async || {
            let (_, m) = http(h.server.http_addr, "GET", "/metrics").await;
            series(
                &m,
                "gpupool_boot_phase_seconds_count{group=\"l4\",phase=\"total\"}",
            ) == Some(boots)
        })
        .await;
    }
    let (_, m) = http(h.server.http_addr, "GET", "/metrics").await;
    let sum = |phase: &str| {
        series(
            &m,
            &format!("gpupool_boot_phase_seconds_sum{{group=\"l4\",phase=\"{phase}\"}}"),
        )
        .unwrap()
    };
    assert_eq!(sum("running"), 5.0 * 60.0);
    assert_eq!(sum("registered"), 5.0 * 30.0);
    assert_eq!(sum("ready"), 5.0 * 30.0);
    // GPUs at 200, 300, 400, 500, 600 s: 80 + 180 + 280 + 380 + 480 after Ready.
    assert_eq!(sum("gpu_allocatable"), 1400.0);
    assert_eq!(sum("total"), 2000.0);

    // Five boots replace the prior: p99 600 s × 1.5 = 15m; the debug line
    // shows the model.
    assert_eq!(options(&mut h).await, 15 * 60);
    let groups = h
        .client
        .node_groups(NodeGroupsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        groups.node_groups[0]
            .debug
            .contains("; boot p50 6m 40s, p90 10m, p99 10m (5 boots);"),
        "{}",
        groups.node_groups[0].debug
    );

    // A stop saves the model to the ConfigMap (created: it did not exist).
    h.stop().await;
    let cm = api.configmap("gpupool", "gpupool-boot-latency").unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(cm["data"]["models.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        saved["l4"]["seconds"],
        serde_json::json!([200.0, 300.0, 400.0, 500.0, 600.0])
    );

    // A restart starts from it, not from the prior.
    let mut h = Harness::start(&yaml).await;
    let groups = h
        .client
        .node_groups(NodeGroupsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(groups.node_groups[0].debug.contains("(5 boots); floor 0"));

    // One more boot, saved at the stop through a conflicting write: read
    // again and retried.
    h.increase("l4", 1).await.unwrap();
    h.settle().await;
    let id = h
        .nodes("l4")
        .await
        .into_iter()
        .map(|i| i.id)
        .next_back()
        .unwrap();
    let bought = h.clock.now();
    h.clock.advance(Duration::from_secs(60));
    h.refresh().await;
    h.clock.advance(Duration::from_secs(240));
    api.put_node(
        "node-new",
        &id,
        bought + Duration::from_secs(90),
        Some(bought + Duration::from_secs(120)),
        1,
    );
    eventually("the sixth boot is recorded", async || {
        let (_, m) = http(h.server.http_addr, "GET", "/metrics").await;
        series(
            &m,
            "gpupool_boot_phase_seconds_count{group=\"l4\",phase=\"total\"}",
        ) == Some(1.0)
    })
    .await;
    api.conflict_next_replaces(1);
    h.stop().await;
    // The models' writes (the create journal has its own ConfigMaps).
    let writes: Vec<_> = api
        .configmap_writes()
        .into_iter()
        .filter(|(_, name)| name == "gpupool-boot-latency")
        .collect();
    assert_eq!(
        writes,
        [
            ("POST", "gpupool-boot-latency".to_owned()),
            ("PUT", "gpupool-boot-latency".to_owned()),
            ("PUT", "gpupool-boot-latency".to_owned())
        ]
    );
    let cm = api.configmap("gpupool", "gpupool-boot-latency").unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(cm["data"]["models.json"].as_str().unwrap()).unwrap();
    assert_eq!(saved["l4"]["seconds"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn an_instance_that_never_becomes_a_node_is_failed_past_the_deadline() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(&yaml(&api.kubeconfig(dir.path()))).await;
    h.increase("l4", 1).await.unwrap();
    h.settle().await;
    h.refresh().await;
    // The watch has listed (no nodes) before anything can look stuck.
    h.clock.advance(Duration::from_secs(14 * 60));
    h.refresh().await;
    let nodes = h.nodes("l4").await;
    assert!(error_of(&nodes[0]).is_none(), "not yet: 14m < 15m");
    h.clock.advance(Duration::from_secs(2 * 60));
    h.refresh().await;
    eventually("the instance is failed", async || {
        h.nodes("l4").await.first().and_then(error_of).is_some()
    })
    .await;
    let nodes = h.nodes("l4").await;
    let e = error_of(&nodes[0]).unwrap();
    assert_eq!(e.error_code, "BootTimeout");
    assert_eq!(e.error_message, "no node registered 16m after purchase");
    assert_eq!(
        state(&nodes[0]),
        gpupool::proto::instance_status::InstanceState::InstanceCreating
    );
    h.stop().await;
}
