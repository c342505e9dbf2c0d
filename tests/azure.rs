//! `gpupool serve` with `cloud: azure`, end to end: the real binary against
//! a local Resource Manager (`providers/azure/tests/support/arm.rs`),
//! signed in through workload identity as AKS's webhook sets it up (a
//! federated token file, the client and tenant ids, and the token endpoint
//! on the local server, which refuses calls without its token), CA's calls
//! over gRPC. A zone out of spot H100s is skipped for the next; a GPU
//! family quota is a class-1 error CA sees; DeleteNodes deletes exactly the
//! named VM; a group comes from a scale set tagged for cluster-autoscaler;
//! a restarted process rebuilds the groups from the VMs' tags; a zone the
//! subscription may not use is refused at start.
#![cfg(feature = "azure")]

#[path = "../providers/azure/tests/support/arm.rs"]
mod arm;
mod common;

use arm::{ArmApi, RESOURCE_GROUP, Refusal, SUBSCRIPTION, TENANT};
use common::serve::{Serve, cloud_ids};
use common::{error_of, eventually};
use gpupool::proto::*;
use std::path::Path;
use std::process::Command;

const ND: &str = "Standard_ND96isr_H100_v5";
const NC: &str = "Standard_NC24ads_A100_v4";

fn config(endpoint: &str) -> String {
    format!(
        r##"cloud: azure
region: eastus
azure:
  subscription_id: {SUBSCRIPTION}
  resource_group: {RESOURCE_GROUP}
  cluster: prod-gpu
  endpoint_url: {endpoint}
  prices_url: {endpoint}
  discover_scale_sets: true
server:
  grpc_listen: 127.0.0.1:0
  http_listen: 127.0.0.1:0
  sync_interval: 1h
node_groups:
  - id: nd
    min_size: 0
    max_size: 4
    instance_type: {ND}
    zones: [eastus-1, eastus-2]
    capacity_type: spot
    azure:
      scale_set: nd-h100
  - id: nc
    min_size: 0
    max_size: 2
    instance_type: {NC}
    zones: [eastus-1]
    capacity_type: on-demand
    azure:
      vm:
        image: microsoft-dsvm:ubuntu-hpc:2204:latest
        subnet_id: /subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Network/virtualNetworks/nodes/subnets/gpu
        ssh_public_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpupool"]
        custom_data: "#cloud-config\n"
"##
    )
}

/// `gpupool serve` signed in with workload identity.
fn command(config: &Path, token_file: &Path, authority: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gpupool"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", "0f5e1c2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f")
        .env("AZURE_FEDERATED_TOKEN_FILE", token_file)
        .env("AZURE_AUTHORITY_HOST", authority)
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_CLIENT_CERTIFICATE_PATH")
        // Never the real instance metadata service.
        .env("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")
        .env("RUST_LOG", "info");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_scales_azure_groups_through_gpupool_serve() {
    let api = ArmApi::start().await;
    api.require_token();
    api.add_scale_set("nd-h100", ND, &[]);
    api.add_scale_set(
        "nv-a10",
        "Standard_NV36ads_A10_v5",
        &[
            ("cluster-autoscaler-enabled", "true"),
            ("cluster-autoscaler-name", "prod-gpu"),
            ("min", "0"),
            ("max", "3"),
        ],
    );
    // Zone 1 has no spot H100s left.
    api.set_capacity("1", ND, true, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpupool.yaml");
    std::fs::write(&path, config(&api.base)).unwrap();
    // What the workload-identity webhook projects into the pod.
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.service-account-token.sig",
    )
    .unwrap();
    let log = dir.path().join("gpupool.log");
    let mut serve = Serve::start(command(&path, &token_file, &api.base), &log).await;
    assert!(
        api.tokens_issued() >= 1,
        "signed in through the token endpoint"
    );

    // The configured groups and the one the scale set's tags declare.
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
        vec![("nd", 0, 4), ("nc", 0, 2), ("nv-a10", 0, 3)]
    );

    // Two spot H100 nodes: zone 1 is out, so both come from zone 2, in
    // AKS's providerID form.
    serve.increase("nd", 2).await;
    // A Refresh while zone 1's VMs are still being made lists them too
    // (they exist, pending); once they fail they are deleted and dropped.
    let nodes = serve
        .nodes_when("nd", |n| {
            let ids = cloud_ids(n, "azure");
            ids.len() == 2 && ids.iter().all(|id| id.contains("-2s0-"))
        })
        .await;
    let prefix = format!(
        "azure:///subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines/nd-"
    );
    for id in cloud_ids(&nodes, "azure") {
        assert!(id.starts_with(&prefix), "{id}");
    }
    let vms = api.vms();
    let nd: Vec<&serde_json::Value> = vms
        .values()
        .filter(|v| v["tags"]["gpupool-group"] == "nd")
        .collect();
    assert_eq!(nd.len(), 2, "the failed zone-1 VMs were deleted");
    assert!(nd.iter().all(|v| v["zones"] == serde_json::json!(["2"])));
    assert!(
        nd.iter().all(|v| v["properties"]["priority"] == "Spot"
            && v["properties"]["evictionPolicy"] == "Delete")
    );

    // A GPU family quota: CA sees out-of-resources (class 1) with Azure's
    // code and message.
    api.refuse("1", NC, false, Refusal::Quota);
    serve.increase("nc", 1).await;
    let failed = serve
        .nodes_when("nc", |n| n.iter().any(|i| error_of(i).is_some()))
        .await;
    let e = failed.iter().find_map(error_of).unwrap();
    assert_eq!(e.error_code, "OperationNotAllowed");
    assert_eq!(e.instance_error_class, 1);
    assert!(
        e.error_message.contains("Cores quota"),
        "{}",
        e.error_message
    );

    // DeleteNodes deletes exactly the named VM.
    let doomed = cloud_ids(&nodes, "azure")[0].to_owned();
    serve
        .client
        .node_group_delete_nodes(NodeGroupDeleteNodesRequest {
            id: "nd".into(),
            nodes: vec![common::node(&doomed)],
        })
        .await
        .unwrap();
    assert_eq!(serve.target("nd").await, 1);
    let name = doomed.rsplit('/').next().unwrap().to_owned();
    eventually("the named VM deleted", async || {
        !api.vms().contains_key(&name)
    })
    .await;
    let left: Vec<String> = api
        .vms()
        .into_iter()
        .filter(|(_, v)| v["tags"]["gpupool-group"] == "nd")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left.len(), 1, "exactly the named one deleted");

    // A restarted process rebuilds the group from the VMs' tags.
    drop(serve);
    let mut serve = Serve::start(command(&path, &token_file, &api.base), &log).await;
    let after = serve.nodes("nd").await;
    assert_eq!(
        cloud_ids(&after, "azure"),
        [format!("{prefix}{}", left[0].trim_start_matches("nd-"))]
    );
    assert_eq!(serve.target("nd").await, 1);
    drop(serve);

    // A zone outside the group's scale set, then (the scale set spanning
    // it) a zone the subscription may not use: each refused before
    // serving, by name.
    let bad = dir.path().join("bad.yaml");
    let text =
        config(&api.base).replace("zones: [eastus-1, eastus-2]", "zones: [eastus-1, eastus-3]");
    std::fs::write(&bad, text).unwrap();
    let refused = |expected: &str| {
        let out = command(&bad, &token_file, &api.base).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    };
    refused("eastus-3 is not a zone of scale set nd-h100 (eastus-1, eastus-2)");
    api.edit_scale_set("nd-h100", |s| {
        s["zones"] = serde_json::json!(["1", "2", "3"])
    });
    refused("Standard_ND96isr_H100_v5 is not offered to this subscription in eastus-3");
}
