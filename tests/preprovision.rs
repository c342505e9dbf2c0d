//! Pre-provisioning through `serve`, on a clock the test moves: a schedule
//! and a CronJob (from the local Kubernetes API server) raise the group's
//! `minSize` one p90 boot latency ahead, and lower it when the window closes
//! or the run's pods are scheduled. Shown by `gpupool groups` and metrics.

mod common;

use common::kube_api::KubeApi;
use common::*;
use gpupool::proto::*;
use gpupool_cloud::ManualClock;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Monday 2026-11-23, `h:m` UTC.
fn monday(h: u64, m: u64) -> SystemTime {
    // 2026-11-23T00:00:00Z
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_392_000 + h * 3600 + m * 60)
}

fn yaml(kubeconfig: &std::path::Path) -> String {
    format!(
        "cloud: sim
region: sim-east-1
time_zone: UTC
server:
  grpc_listen: 127.0.0.1:0
  http_listen: 127.0.0.1:0
  sync_interval: 1h
  preprovision_interval: 20ms
kubernetes:
  kubeconfig: {}
node_groups:
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    annotations:
      gpupool.dev/boot-latency: 8m
      gpupool.dev/preprovision: \"office=0 9 * * 1-5 for 10h: 3\"
",
        kubeconfig.display()
    )
}

/// Waits (bounded) until `f` holds; the server evaluates on its own timer.
async fn group(h: &mut Harness) -> NodeGroup {
    h.client
        .node_groups(NodeGroupsRequest {})
        .await
        .unwrap()
        .into_inner()
        .node_groups
        .remove(0)
}

async fn min_is(h: &mut Harness, min: i32, debug_has: &str) {
    eventually(&format!("minSize {min} with {debug_has:?}"), async || {
        let g = group(h).await;
        g.min_size == min && g.debug.contains(debug_has)
    })
    .await;
}

fn nightly(status: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"namespace": "ml", "name": "nightly-eval"},
        "spec": {
            "schedule": "0 12 * * *",
            "timeZone": "Etc/UTC",
            "jobTemplate": {"spec": {
                "parallelism": 2,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "eval", "image": "eval",
                        "resources": {"limits": {"nvidia.com/gpu": "1"}}}]
                }}
            }}
        },
        "status": status,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_and_a_cronjob_raise_and_release_the_floor_at_the_right_times() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(monday(8, 0));
    let mut h = Harness::start_with_clock(&yaml(&api.kubeconfig(dir.path())), clock).await;
    api.put_cronjob(nightly(json!({})));

    // 08:00: nothing yet; the floor rises p90 (8m prior × 1.25 = 10m) ahead.
    min_is(
        &mut h,
        0,
        "floor 0 (next: 3 at 08:50 UTC: schedule 'office')",
    )
    .await;
    h.clock.advance(Duration::from_secs(49 * 60));
    min_is(&mut h, 0, "floor 0").await;
    h.clock.advance(Duration::from_secs(60));
    min_is(
        &mut h,
        3,
        "floor 3: 3 from 09:00 UTC until 19:00 UTC: schedule 'office'",
    )
    .await;
    assert_eq!(
        h.target("l4").await,
        0,
        "gpupool never raises a target itself: CA does, to minSize"
    );

    // 11:50: the CronJob's two 1-GPU pods need two more nodes at 12:00.
    h.clock.advance(Duration::from_secs(3 * 3600));
    min_is(
        &mut h,
        5,
        "floor 5: 3 until 19:00 UTC: schedule 'office' + 2 nodes for CronJob ml/nightly-eval at 12:00 UTC",
    )
    .await;
    let (_, metrics) = http(h.server.http_addr, "GET", "/metrics").await;
    assert!(
        metrics.contains("gpupool_node_group_floor{group=\"l4\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "gpupool_preprovision_demand_nodes{group=\"l4\",kind=\"cronjob\",source=\"ml/nightly-eval\"} 2"
        ),
        "{metrics}"
    );

    // The groups table shows the model and the floor with its reasons.
    let addr = h.server.grpc_addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_gpupool"))
            .args(["groups", "--address", &addr])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.contains("BOOT-P50/P90/P99"), "{table}");
    assert!(table.contains("8m/10m/12m (prior)"), "{table}");
    assert!(
        table.contains("5: 3 until 19:00 UTC: schedule 'office' + 2 nodes for CronJob ml/nightly-eval at 12:00 UTC"),
        "{table}"
    );

    // 12:01: the controller started the run; one pod is scheduled, one waits.
    h.clock.advance(Duration::from_secs(11 * 60));
    api.put_cronjob(nightly(
        json!({"lastScheduleTime": "2026-11-23T12:00:00Z", "active": []}),
    ));
    let job = format!(
        "nightly-eval-{}",
        monday(12, 0)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 60
    );
    let labels = json!({"job-name": job, "batch.kubernetes.io/job-name": job});
    api.put_pod("ml", &format!("{job}-a"), labels.clone(), Some("node-1"));
    api.put_pod("ml", &format!("{job}-b"), labels.clone(), None);
    let selector = format!("job-name={job}");
    eventually("the run's pods are listed", async || {
        api.pod_lists()
            .contains(&("ml".to_owned(), selector.clone()))
    })
    .await;
    min_is(&mut h, 5, "until its pods are scheduled").await;

    // Both scheduled: the run's nodes are released; the schedule holds.
    api.put_pod("ml", &format!("{job}-b"), labels, Some("node-2"));
    min_is(&mut h, 3, "floor 3: 3 until 19:00 UTC: schedule 'office'").await;
    let (_, metrics) = http(h.server.http_addr, "GET", "/metrics").await;
    assert!(
        !metrics.contains("kind=\"cronjob\""),
        "the released reason's series is gone: {metrics}"
    );

    // 19:00: the window closes and the group may fall back to zero.
    h.clock.advance(Duration::from_secs(7 * 3600));
    min_is(
        &mut h,
        0,
        "floor 0 (next: 3 at Tue 08:50 UTC: schedule 'office')",
    )
    .await;

    // A deleted CronJob foresees nothing: Tuesday 11:50 has the schedule's
    // floor only.
    api.delete_cronjob("ml", "nightly-eval");
    h.clock.advance(Duration::from_secs((16 * 60 + 50) * 60));
    min_is(&mut h, 3, "floor 3: 3 until 19:00 UTC: schedule 'office'").await;
    h.stop().await;
}
