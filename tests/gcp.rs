//! `gpupool serve` with `cloud: gcp`, end to end: the real binary against
//! a local server speaking the Compute Engine REST API
//! (`providers/gcp/tests/support/compute.rs`), signed in through
//! Application Default Credentials (an `authorized_user` file whose token
//! endpoint is the local server, which refuses calls without its token),
//! CA's calls over gRPC. A zone out of spot H100s is skipped for the next;
//! a regional GPU quota is a class-1 error CA sees; DeleteNodes deletes
//! exactly the named instance; a group comes from a labelled instance
//! template; a restarted process rebuilds the groups from the instances'
//! labels; a zone that lacks the machine type is refused at start.
#![cfg(feature = "gcp")]

mod common;
#[path = "../providers/gcp/tests/support/compute.rs"]
mod compute;

use common::serve::{Serve, cloud_ids};
use common::{error_of, eventually};
use compute::{ComputeApi, PROJECT};
use gpupool::proto::*;
use std::path::Path;
use std::process::Command;

const A: &str = "us-central1-a";
const B: &str = "us-central1-b";
const C: &str = "us-central1-c";

fn config(endpoint: &str) -> String {
    format!(
        r#"cloud: gcp
region: us-central1
gcp:
  project: {PROJECT}
  cluster: prod-gpu
  endpoint_url: {endpoint}
  discover_instance_templates: true
server:
  grpc_listen: 127.0.0.1:0
  http_listen: 127.0.0.1:0
  sync_interval: 1h
node_groups:
  - id: h100
    min_size: 0
    max_size: 4
    instance_type: a3-highgpu-8g
    zones: [{A}, {C}]
    capacity_type: spot
    gcp:
      instance_template: gpu-a3
  - id: t4
    min_size: 0
    max_size: 2
    instance_type: n1-standard-8
    zones: [{B}]
    capacity_type: on-demand
    gcp:
      machine:
        image: projects/cos-cloud/global/images/family/cos-121-lts
        subnetwork: regions/us-central1/subnetworks/gpu-nodes
        service_account: gpu-nodes@{PROJECT}.iam.gserviceaccount.com
      guest_accelerators: {{ type: nvidia-tesla-t4, count: 1 }}
"#
    )
}

/// The `authorized_user` credentials file `gcloud auth application-default
/// login` writes, with its token endpoint on the local server.
fn credentials(dir: &Path, base: &str) -> std::path::PathBuf {
    let path = dir.join("application_default_credentials.json");
    let json = serde_json::json!({
        "type": "authorized_user",
        "client_id": "764086051850-test.apps.googleusercontent.com",
        "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
        "refresh_token": "1//gpupool-test-refresh-token",
        "token_uri": format!("{base}/token"),
    });
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

/// `gpupool serve` signed in with ADC.
fn command(config: &Path, credentials: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gpupool"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("GOOGLE_APPLICATION_CREDENTIALS", credentials)
        // Never the real metadata server.
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env("RUST_LOG", "info");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_scales_gcp_groups_through_gpupool_serve() {
    let api = ComputeApi::start().await;
    api.require_token();
    api.add_template("gpu-a3", "a3-highgpu-8g", &[]);
    api.add_template(
        "gpu-g2-spot",
        "g2-standard-4",
        &[
            ("gpupool-cluster", "prod-gpu"),
            ("gpupool-max-size", "3"),
            ("gpupool-zones", "a-b"),
            ("gpupool-capacity-type", "spot"),
        ],
    );
    // Zone a has no spot H100s left.
    api.set_capacity(A, "a3-highgpu-8g", true, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpupool.yaml");
    std::fs::write(&path, config(&api.base)).unwrap();
    let creds = credentials(dir.path(), &api.base);
    let log = dir.path().join("gpupool.log");
    let mut serve = Serve::start(command(&path, &creds), &log).await;

    // The configured groups and the one its template's labels declare.
    let groups = serve
        .client
        .node_groups(NodeGroupsRequest {})
        .await
        .unwrap()
        .into_inner()
        .node_groups;
    let described: Vec<(&str, i32, i32)> = groups
        .iter()
        .map(|g| (g.id.as_str(), g.min_size, g.max_size))
        .collect();
    assert_eq!(
        described,
        vec![("h100", 0, 4), ("t4", 0, 2), ("gpu-g2-spot", 0, 3)]
    );

    // Two spot H100 nodes: zone a is out, so both come from zone c, in
    // GKE's providerID form.
    serve.increase("h100", 2).await;
    let nodes = serve
        .nodes_when("h100", |n| cloud_ids(n, "gce").len() == 2)
        .await;
    for id in cloud_ids(&nodes, "gce") {
        assert!(
            id.starts_with(&format!("gce://{PROJECT}/{C}/h100-")),
            "{id}"
        );
    }
    let inserts = api.calls_of("instances.bulkInsert");
    assert_eq!(
        inserts
            .iter()
            .map(|c| c.zone.clone().unwrap())
            .collect::<Vec<_>>(),
        [A, C]
    );
    let sched = &inserts[1].body.as_ref().unwrap()["instanceProperties"]["scheduling"];
    assert_eq!(sched["provisioningModel"], "SPOT");
    assert_eq!(sched["instanceTerminationAction"], "DELETE");

    // A regional GPU quota: CA sees out-of-resources (class 1) with
    // Compute Engine's code and message.
    api.refuse(B, "QUOTA_EXCEEDED");
    serve.increase("t4", 1).await;
    let failed = serve
        .nodes_when("t4", |n| n.iter().any(|i| error_of(i).is_some()))
        .await;
    let e = failed.iter().find_map(error_of).unwrap();
    assert_eq!(e.error_code, "QUOTA_EXCEEDED");
    assert_eq!(e.instance_error_class, 1);
    assert!(
        e.error_message.contains("Quota 'NVIDIA_T4_GPUS' exceeded"),
        "{}",
        e.error_message
    );
    let t4 = api.calls_of("instances.bulkInsert").pop().unwrap();
    let props = &t4.body.unwrap()["instanceProperties"];
    assert_eq!(
        props["guestAccelerators"][0]["acceleratorType"],
        "nvidia-tesla-t4"
    );

    // DeleteNodes deletes exactly the named instance.
    let doomed = cloud_ids(&nodes, "gce")[0].to_owned();
    serve
        .client
        .node_group_delete_nodes(NodeGroupDeleteNodesRequest {
            id: "h100".into(),
            nodes: vec![common::node(&doomed)],
        })
        .await
        .unwrap();
    assert_eq!(serve.target("h100").await, 1);
    let name = doomed.rsplit('/').next().unwrap().to_owned();
    eventually("the named instance deleted", async || {
        api.calls_of("instances.delete").len() == 1
            && !api
                .instances()
                .iter()
                .any(|(_, i)| i["name"] == name.as_str())
    })
    .await;
    let left: Vec<String> = api
        .instances()
        .iter()
        .filter(|(_, i)| i["labels"]["gpupool-group"] == "h100")
        .map(|(_, i)| i["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left.len(), 1, "exactly the named one deleted");

    // A restarted process rebuilds the group from the instances' labels.
    drop(serve);
    let mut serve = Serve::start(command(&path, &creds), &log).await;
    let after = serve.nodes("h100").await;
    assert_eq!(
        cloud_ids(&after, "gce"),
        [format!("gce://{PROJECT}/{C}/{}", left[0])]
    );
    assert_eq!(serve.target("h100").await, 1);
    drop(serve);

    // A zone without the machine type: refused before serving, by name.
    let bad = dir.path().join("bad.yaml");
    let text =
        config(&api.base).replace(&format!("zones: [{A}, {C}]"), &format!("zones: [{A}, {B}]"));
    std::fs::write(&bad, text).unwrap();
    let out = command(&bad, &creds).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a3-highgpu-8g is not offered in us-central1-b"),
        "{stderr}"
    );
}
