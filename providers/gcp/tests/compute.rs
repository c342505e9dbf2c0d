//! The Compute Engine backend through the real client against a local
//! server speaking the Compute REST API (`support/compute.rs`): the live
//! catalog, bulk inserts with spot scheduling and labels, zonal and
//! spot→on-demand fallback, classified operation errors, request ids that
//! make a repeat harmless, deletes awaited, and instances read back by
//! label.

#[path = "support/compute.rs"]
mod compute;

use compute::{ComputeApi, PROJECT, REGION};
use gpupool_cloud::{
    CapacityType, Cloud, CreateRequest, ErrorClass, GroupId, InstanceId, InstanceState, Offering,
    PurchaseOption, RequestId,
};
use gpupool_gcp::compute::{Accelerators, MachineSpec, Source};
use gpupool_gcp::{Connection, GceCloud, GceSettings, GroupSettings};
use serde_json::Value;
use std::collections::BTreeMap;

const A: &str = "us-central1-a";
const B: &str = "us-central1-b";
const C: &str = "us-central1-c";

fn spec() -> MachineSpec {
    MachineSpec {
        image: "projects/cos-cloud/global/images/family/cos-121-lts".into(),
        boot_disk_gib: 200,
        boot_disk_type: "pd-balanced".into(),
        network: Some("global/networks/gpu-vpc".into()),
        subnetwork: Some("regions/us-central1/subnetworks/gpu-nodes".into()),
        service_account: Some("gpu-nodes@gpupool-test.iam.gserviceaccount.com".into()),
        network_tags: vec!["gpu-node".into()],
        metadata: BTreeMap::from([("cluster-name".into(), "prod-gpu".into())]),
    }
}

fn settings() -> GceSettings {
    let groups = BTreeMap::from([
        (
            GroupId::new("h100"),
            GroupSettings {
                source: Source::Template("gpu-a3".into()),
                machine_types: vec!["a3-highgpu-8g".into()],
                guest_accelerators: None,
            },
        ),
        (
            GroupId::new("l4"),
            GroupSettings {
                source: Source::Machine(spec()),
                machine_types: vec!["g2-standard-4".into(), "g2-standard-8".into()],
                guest_accelerators: None,
            },
        ),
        (
            GroupId::new("t4"),
            GroupSettings {
                source: Source::Machine(spec()),
                machine_types: vec!["n1-standard-8".into()],
                guest_accelerators: Some(Accelerators {
                    accelerator_type: "nvidia-tesla-t4".into(),
                    count: 1,
                }),
            },
        ),
    ]);
    GceSettings {
        project: PROJECT.into(),
        cluster: "prod-gpu".into(),
        groups,
    }
}

async fn world() -> ComputeApi {
    let api = ComputeApi::start().await;
    api.add_template("gpu-a3", "a3-highgpu-8g", &[]);
    // Operations are RUNNING on the first answer and one wait.
    api.set_polls_per_operation(2);
    api
}

fn connection(api: &ComputeApi, retries: bool) -> Connection {
    Connection {
        endpoint: Some(api.base.clone()),
        anonymous: true,
        no_retries: !retries,
    }
}

async fn connect(api: &ComputeApi) -> GceCloud {
    GceCloud::connect(&connection(api, false), REGION, settings())
        .await
        .expect("connect")
}

fn request(group: &str, id: &str, instance_type: &str, zones: &[&str]) -> CreateRequest {
    CreateRequest {
        request_id: RequestId::new(format!("{group}-{id}")),
        group: GroupId::new(group),
        instance_type: instance_type.into(),
        zones: zones.iter().map(|z| (*z).to_owned()).collect(),
        purchase: PurchaseOption::Spot,
        count: 2,
        max_spot_price: None,
        avoid: Vec::new(),
    }
}

fn offering(instance_type: &str, zone: &str, capacity: CapacityType) -> Offering {
    Offering {
        instance_type: instance_type.into(),
        zone: zone.into(),
        capacity,
    }
}

#[tokio::test]
async fn connect_reads_zones_and_the_gpu_catalog() {
    let api = world().await;
    let cloud = connect(&api).await;
    assert_eq!(cloud.provider_name(), "gce");
    assert_eq!(
        cloud.zones().await.unwrap(),
        ["a", "b", "c", "f"].map(|s| format!("{REGION}-{s}"))
    );
    let types = cloud.instance_types().await.unwrap();
    let get = |n: &str| types.iter().find(|t| t.name == n);
    let a3 = get("a3-highgpu-8g").expect("a3");
    let gpu = a3.gpu.as_ref().unwrap();
    assert_eq!((a3.vcpus, a3.memory_mib), (208, 1_916_928));
    assert_eq!(
        (gpu.accelerator.as_str(), gpu.count, gpu.memory_mib),
        ("nvidia-h100-80gb", 8, 81_559)
    );
    // N1 takes its GPUs from the group that attaches them.
    let n1 = get("n1-standard-8").expect("n1");
    let t4 = n1.gpu.as_ref().unwrap();
    assert_eq!((t4.accelerator.as_str(), t4.count), ("nvidia-tesla-t4", 1));
    assert_eq!(
        get("g2-standard-8").unwrap().gpu.as_ref().unwrap().model,
        "L4"
    );
    // A type with no GPUs that no group names is left out.
    assert!(get("e2-standard-4").is_none());
    assert!(cloud.offers(A, "a3-highgpu-8g") && !cloud.offers(B, "a3-highgpu-8g"));
    assert_eq!(api.calls_of("machineTypes.list").len(), 4);
    assert_eq!(api.calls_of("instanceTemplates.get").len(), 1);
}

#[tokio::test]
async fn a_spot_bulk_insert_carries_scheduling_labels_names_and_a_request_id() {
    let api = world().await;
    let cloud = connect(&api).await;
    let req = request("h100", "00000000deadbeef", "a3-highgpu-8g", &[A, C]);
    let out = cloud.create_instances(&req).await.unwrap();
    assert_eq!(out.created.len(), 2, "{out:?}");
    assert!(out.failed.is_none() && out.exhausted.is_empty());
    for i in &out.created {
        assert_eq!(i.zone, A);
        assert_eq!(i.capacity_type, CapacityType::Spot);
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.request_id, Some(req.request_id.clone()));
        let name = i.node_name.as_deref().unwrap();
        assert_eq!(
            i.provider_id.as_str(),
            format!("gce://{PROJECT}/{A}/{name}")
        );
        assert_eq!(i.id.as_str(), format!("{A}/{name}"));
    }
    let calls = api.calls_of("instances.bulkInsert");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    let request_id = &call.query["requestId"];
    assert_eq!(request_id.len(), 36, "a UUID: {request_id}");
    let body = call.body.as_ref().unwrap();
    assert_eq!(
        body["sourceInstanceTemplate"],
        format!("projects/{PROJECT}/global/instanceTemplates/gpu-a3")
    );
    assert_eq!(body["count"], "2");
    assert_eq!(body["minCount"], "1");
    assert_eq!(body["perInstanceProperties"].as_object().unwrap().len(), 2);
    let props = &body["instanceProperties"];
    assert_eq!(props["machineType"], "a3-highgpu-8g");
    let s = &props["scheduling"];
    assert_eq!(s["provisioningModel"], "SPOT");
    assert_eq!(s["instanceTerminationAction"], "DELETE");
    assert_eq!(s["onHostMaintenance"], "TERMINATE");
    assert_eq!(s["automaticRestart"], false);
    let labels = &props["labels"];
    assert_eq!(labels["gpupool-cluster"], "prod-gpu");
    assert_eq!(labels["gpupool-group"], "h100");
    assert_eq!(labels["gpupool-request"], "00000000deadbeef");
    // The template's own labels are kept.
    assert_eq!(labels["team"], "ml-platform");
    // The operation was awaited through zoneOperations.wait.
    assert!(!api.calls_of("zoneOperations.wait").is_empty());
}

#[tokio::test]
async fn machine_spec_groups_send_disks_network_and_guest_gpus() {
    let api = world().await;
    let cloud = connect(&api).await;
    let mut req = request("t4", "1", "n1-standard-8", &[B]);
    req.purchase = PurchaseOption::OnDemand;
    req.count = 1;
    let out = cloud.create_instances(&req).await.unwrap();
    assert_eq!(out.created.len(), 1);
    assert_eq!(out.created[0].capacity_type, CapacityType::OnDemand);
    let body = api.calls_of("instances.bulkInsert")[0]
        .body
        .clone()
        .unwrap();
    assert!(body.get("sourceInstanceTemplate").is_none());
    let p = &body["instanceProperties"];
    assert_eq!(
        p["guestAccelerators"][0]["acceleratorType"],
        "nvidia-tesla-t4"
    );
    assert_eq!(p["guestAccelerators"][0]["acceleratorCount"], 1);
    assert_eq!(p["scheduling"]["provisioningModel"], "STANDARD");
    assert_eq!(p["scheduling"]["onHostMaintenance"], "TERMINATE");
    assert_eq!(p["disks"][0]["boot"], true);
    assert_eq!(
        p["disks"][0]["initializeParams"]["sourceImage"],
        "projects/cos-cloud/global/images/family/cos-121-lts"
    );
    assert_eq!(p["disks"][0]["initializeParams"]["diskSizeGb"], "200");
    assert_eq!(
        p["networkInterfaces"][0]["subnetwork"],
        "regions/us-central1/subnetworks/gpu-nodes"
    );
    assert_eq!(p["metadata"]["items"][0]["key"], "cluster-name");
    assert_eq!(p["tags"]["items"][0], "gpu-node");
}

#[tokio::test]
async fn an_exhausted_zone_falls_back_to_the_next_and_is_reported() {
    let api = world().await;
    api.set_capacity(A, "a3-highgpu-8g", true, 1);
    let cloud = connect(&api).await;
    let mut req = request("h100", "2", "a3-highgpu-8g", &[A, C]);
    req.count = 3;
    let out = cloud.create_instances(&req).await.unwrap();
    assert!(out.failed.is_none(), "{out:?}");
    let zones: Vec<&str> = out.created.iter().map(|i| i.zone.as_str()).collect();
    assert_eq!(zones.iter().filter(|z| **z == A).count(), 1);
    assert_eq!(zones.iter().filter(|z| **z == C).count(), 2);
    assert_eq!(
        out.exhausted,
        [offering("a3-highgpu-8g", A, CapacityType::Spot)]
    );
    let calls = api.calls_of("instances.bulkInsert");
    assert_eq!(
        calls
            .iter()
            .map(|c| c.zone.clone().unwrap())
            .collect::<Vec<_>>(),
        [A, C]
    );
    // Zone c was asked for what zone a could not place, under another id.
    assert_eq!(calls[1].body.as_ref().unwrap()["count"], "2");
    assert_ne!(calls[0].query["requestId"], calls[1].query["requestId"]);
    // Node names are unique across the zones.
    let names: std::collections::BTreeSet<_> =
        out.created.iter().map(|i| i.node_name.clone()).collect();
    assert_eq!(names.len(), 3);
}

#[tokio::test]
async fn spot_then_on_demand_falls_back_when_spot_runs_out_everywhere() {
    let api = world().await;
    api.set_capacity(A, "a3-highgpu-8g", true, 0);
    api.set_capacity(C, "a3-highgpu-8g", true, 0);
    let cloud = connect(&api).await;
    let mut req = request("h100", "3", "a3-highgpu-8g", &[A, C]);
    req.purchase = PurchaseOption::SpotThenOnDemand;
    let out = cloud.create_instances(&req).await.unwrap();
    assert!(out.failed.is_none(), "{out:?}");
    assert_eq!(out.created.len(), 2);
    assert!(
        out.created
            .iter()
            .all(|i| i.capacity_type == CapacityType::OnDemand && i.zone == A)
    );
    assert_eq!(
        out.exhausted,
        [
            offering("a3-highgpu-8g", A, CapacityType::Spot),
            offering("a3-highgpu-8g", C, CapacityType::Spot)
        ]
    );
    let last = api.calls_of("instances.bulkInsert").pop().unwrap();
    assert_eq!(
        last.body.unwrap()["instanceProperties"]["scheduling"]["provisioningModel"],
        "STANDARD"
    );
}

#[tokio::test]
async fn avoided_pools_and_zones_without_the_type_are_not_asked() {
    let api = world().await;
    let cloud = connect(&api).await;
    let mut req = request("l4", "4", "g2-standard-4", &[A, B, "us-central1-f"]);
    req.count = 1;
    req.avoid = vec![
        offering("g2-standard-4", A, CapacityType::Spot),
        offering("g2-standard-4", B, CapacityType::Spot),
    ];
    let out = cloud.create_instances(&req).await.unwrap();
    // g2 is not offered in f: the alternate type in zone a is next.
    assert_eq!(out.created.len(), 1);
    assert_eq!(out.created[0].instance_type, "g2-standard-8");
    assert_eq!(out.created[0].zone, A);
    assert_eq!(api.calls_of("instances.bulkInsert").len(), 1);
}

#[tokio::test]
async fn a_gpu_quota_is_class_1_for_every_pool() {
    let api = world().await;
    api.refuse(A, "QUOTA_EXCEEDED");
    api.refuse(C, "QUOTA_EXCEEDED");
    let cloud = connect(&api).await;
    let out = cloud
        .create_instances(&request("h100", "5", "a3-highgpu-8g", &[A, C]))
        .await
        .unwrap();
    assert!(out.created.is_empty());
    let failed = out.failed.expect("failed");
    assert_eq!(failed.count, 2);
    assert_eq!(failed.error.class, ErrorClass::OutOfResources);
    assert_eq!(failed.error.code, "QUOTA_EXCEEDED");
    assert!(
        failed.error.message.contains("NVIDIA_H100_GPUS"),
        "{failed:?}"
    );
    assert_eq!(out.exhausted.len(), 2);
}

#[tokio::test]
async fn other_operation_errors_stop_at_the_first_pool_as_class_99() {
    let api = world().await;
    api.refuse(A, "PERMISSIONS_ERROR");
    let cloud = connect(&api).await;
    let err = cloud
        .create_instances(&request("h100", "6", "a3-highgpu-8g", &[A, C]))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Other);
    assert_eq!(err.code, "PERMISSIONS_ERROR");
    assert_eq!(api.calls_of("instances.bulkInsert").len(), 1);
}

#[tokio::test]
async fn a_rate_limited_call_is_throttled_and_a_bad_field_is_class_99() {
    let api = world().await;
    let cloud = connect(&api).await;
    api.throttle_next("instances.bulkInsert");
    let err = cloud
        .create_instances(&request("h100", "7", "a3-highgpu-8g", &[A]))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Throttled, "{err:?}");
    // A machine type the zone lacks is refused with 400 by the API.
    api.fail_next(compute::Fault {
        method: "instances.bulkInsert",
        status: 400,
        body: serde_json::json!({"error": {"code": 400,
            "message": "Invalid value for field 'resource.instanceProperties.machineType': 'a3-highgpu-9g'.",
            "errors": [{"message": "Invalid value", "domain": "global", "reason": "invalid"}]}}),
    });
    let err = cloud
        .create_instances(&request("h100", "8", "a3-highgpu-8g", &[A]))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Other);
    assert!(err.message.contains("machineType"), "{err:?}");
    assert!(api.instances().is_empty());
}

#[tokio::test]
async fn a_retried_insert_whose_answer_was_lost_creates_nothing_twice() {
    let api = world().await;
    let cloud = GceCloud::connect(&connection(&api, true), REGION, settings())
        .await
        .unwrap();
    // The first bulkInsert is carried out and its answer lost; the client
    // retries with the same request id and gets the first operation.
    api.lose_next_answer("instances.bulkInsert");
    let req = request("h100", "9", "a3-highgpu-8g", &[A]);
    let out = cloud.create_instances(&req).await.unwrap();
    assert_eq!(out.created.len(), 2);
    let calls = api.calls_of("instances.bulkInsert");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].query["requestId"], calls[1].query["requestId"]);
    assert_eq!(api.instances().len(), 2);
    // The engine asking again with the same request finds its instances
    // and asks Compute Engine for nothing.
    let again = cloud.create_instances(&req).await.unwrap();
    assert_eq!(again.created.len(), 2);
    assert_eq!(api.calls_of("instances.bulkInsert").len(), 2);
    assert_eq!(api.instances().len(), 2);
}

#[tokio::test]
async fn list_finds_the_clusters_instances_in_every_state() {
    let api = world().await;
    let cloud = connect(&api).await;
    let out = cloud
        .create_instances(&request("h100", "10", "a3-highgpu-8g", &[A]))
        .await
        .unwrap();
    let names: Vec<String> = out
        .created
        .iter()
        .map(|i| i.node_name.clone().unwrap())
        .collect();
    api.set_status(A, &names[0], "TERMINATED");
    api.set_status(A, &names[1], "STOPPING");
    let mut foreign: Value = api.instances()[0].1.clone();
    foreign["name"] = "someone-else".into();
    foreign["labels"]["gpupool-cluster"] = "other".into();
    api.put_instance(A, foreign);
    let listed = cloud.list_instances().await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let state = |n: &str| {
        listed
            .iter()
            .find(|i| i.node_name.as_deref() == Some(n))
            .unwrap()
            .state
    };
    assert_eq!(state(&names[0]), InstanceState::Stopped);
    assert_eq!(state(&names[1]), InstanceState::ShuttingDown);
    let filter = &api.calls_of("instances.aggregatedList")[0].query["filter"];
    assert_eq!(filter, "labels.gpupool-cluster = \"prod-gpu\"");
    // A rate-limited list is an error, never an empty fleet.
    api.throttle_next("instances.aggregatedList");
    assert_eq!(
        cloud.list_instances().await.unwrap_err().class,
        ErrorClass::Throttled
    );
}

#[tokio::test]
async fn delete_removes_exactly_the_named_instances() {
    let api = world().await;
    let cloud = connect(&api).await;
    let mut req = request("h100", "11", "a3-highgpu-8g", &[A]);
    req.count = 3;
    let out = cloud.create_instances(&req).await.unwrap();
    let doomed = out.created[1].id.clone();
    let waits_before = api.calls_of("zoneOperations.wait").len();
    cloud
        .delete_instances(&[doomed.clone(), InstanceId::new(format!("{A}/long-gone"))])
        .await
        .unwrap();
    let left: Vec<String> = api
        .instances()
        .iter()
        .map(|(z, i)| format!("{z}/{}", i["name"].as_str().unwrap()))
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&doomed.to_string()));
    assert_eq!(api.calls_of("instances.delete").len(), 2);
    // The delete's operation was awaited (it is RUNNING at first).
    let waits = api.calls_of("zoneOperations.wait");
    assert!(waits.len() > waits_before);
    assert!(
        waits[waits_before..]
            .iter()
            .all(|c| c.zone.as_deref() == Some(A))
    );
    let bad = cloud
        .delete_instances(&[InstanceId::new("no-zone")])
        .await
        .unwrap_err();
    assert_eq!(bad.code, "InvalidInstanceId");
}

#[tokio::test]
async fn a_missing_template_is_named_at_connect() {
    let api = ComputeApi::start().await;
    let err = GceCloud::connect(&connection(&api, false), REGION, settings())
        .await
        .unwrap_err();
    assert!(err.message.contains("gpu-a3"), "{err:?}");
    assert_eq!(err.code, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn prices_sum_the_billing_catalog_for_the_groups_machine_types() {
    let api = world().await;
    let cloud = connect(&api).await;
    let prices = cloud.prices().await.unwrap();
    let a3: Vec<_> = prices
        .iter()
        .filter(|p| p.instance_type == "a3-highgpu-8g")
        .collect();
    assert_eq!(a3.len(), 2, "{prices:?}");
    assert!(a3.iter().all(|p| p.usd_per_hour > 0.0));
    let od = a3
        .iter()
        .find(|p| p.capacity_type == CapacityType::OnDemand)
        .unwrap();
    let spot = a3
        .iter()
        .find(|p| p.capacity_type == CapacityType::Spot)
        .unwrap();
    assert!(spot.usd_per_hour < od.usd_per_hour);
}
