//! The Azure backend through the real `azure_mgmt_compute` client against
//! a local Resource Manager (`support/arm.rs`) that speaks the REST shapes
//! and status codes of the calls used.

#[path = "support/arm.rs"]
mod arm;

use arm::{ArmApi, Fault, LOCATION, RESOURCE_GROUP, Refusal, SUBSCRIPTION, TOKEN};
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use gpupool_azure::compute::discovery;
use gpupool_azure::{
    AzureCloud, AzureSettings, Connection, GroupSettings, RetailPrices, Source, VmSpec,
};
use gpupool_cloud::{
    CapacityType, Cloud, CreateRequest, ErrorClass, GroupId, InstanceId, InstanceState, Offering,
    PurchaseOption, RequestId,
};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const ND: &str = "Standard_ND96isr_H100_v5";
const NC: &str = "Standard_NC24ads_A100_v4";

/// A credential with a fixed token: what `azure_identity` would fetch.
#[derive(Debug)]
struct FixedToken;

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            Secret::new(TOKEN),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

fn settings(groups: &[(&str, Source, &[&str])]) -> AzureSettings {
    AzureSettings {
        subscription_id: SUBSCRIPTION.into(),
        resource_group: RESOURCE_GROUP.into(),
        cluster: "prod".into(),
        groups: groups
            .iter()
            .map(|(id, source, sizes)| {
                (
                    GroupId::new(*id),
                    GroupSettings {
                        source: source.clone(),
                        sizes: sizes.iter().map(|s| (*s).to_owned()).collect(),
                    },
                )
            })
            .collect(),
    }
}

fn spec() -> VmSpec {
    VmSpec {
        image: "microsoft-dsvm:ubuntu-hpc:2204:latest".into(),
        subnet_id: format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Network/virtualNetworks/nodes/subnets/gpu"
        ),
        admin_username: "azureuser".into(),
        ssh_public_keys: vec!["ssh-ed25519 AAAAC3Nza gpupool".into()],
        os_disk_gib: 256,
        os_disk_type: "Premium_LRS".into(),
        custom_data: Some("#cloud-config\n".into()),
        identities: Vec::new(),
        accelerated_networking: true,
    }
}

async fn connect_with(
    api: &ArmApi,
    settings: AzureSettings,
    no_retries: bool,
) -> Result<AzureCloud, gpupool_cloud::CloudError> {
    let connection = Connection {
        endpoint: Some(api.base.clone()),
        no_retries,
    };
    let arm = connection.connect(Arc::new(FixedToken))?;
    let prices = RetailPrices::new(&api.base, LOCATION)?;
    AzureCloud::connect(arm, LOCATION, settings, prices).await
}

async fn connect(api: &ArmApi, settings: AzureSettings) -> AzureCloud {
    connect_with(api, settings, false).await.expect("connect")
}

/// A server with the `nd` group's scale set, and a cloud for it.
async fn nd_scale_set() -> (ArmApi, AzureCloud) {
    let api = ArmApi::start().await;
    api.require_token();
    api.add_scale_set("nd-h100", ND, &[]);
    let cloud = connect(
        &api,
        settings(&[("nd", Source::ScaleSet("nd-h100".into()), &[ND])]),
    )
    .await;
    (api, cloud)
}

fn request(
    group: &str,
    id: &str,
    size: &str,
    purchase: PurchaseOption,
    count: u32,
) -> CreateRequest {
    CreateRequest {
        request_id: RequestId::new(format!("{group}-{id}")),
        group: GroupId::new(group),
        instance_type: size.into(),
        zones: Vec::new(),
        purchase,
        count,
        max_spot_price: None,
        avoid: Vec::new(),
    }
}

#[tokio::test]
async fn the_catalog_comes_from_resource_skus_with_zones_the_subscription_may_use() {
    let (_api, cloud) = nd_scale_set().await;
    assert_eq!(
        cloud.zones().await.unwrap(),
        ["eastus-1", "eastus-2", "eastus-3"]
    );
    let types = cloud.instance_types().await.unwrap();
    let nd = types.iter().find(|t| t.name == ND).expect("ND H100 v5");
    assert_eq!((nd.vcpus, nd.memory_mib), (96, 1900 * 1024));
    let gpu = nd.gpu.as_ref().expect("GPUs");
    assert_eq!((gpu.model.as_str(), gpu.count), ("H100", 8));
    assert!(types.iter().any(|t| t.name == "Standard_NV36ads_A10_v5"));
    // Neither a GPU size nor a group's: not in the catalog.
    assert!(!types.iter().any(|t| t.name == "Standard_D4s_v5"));
    assert!(cloud.offers("eastus-1", ND) && cloud.offers("eastus-2", ND));
    // Zone 3 is restricted for the subscription (NotAvailableForSubscription).
    assert!(!cloud.offers("eastus-3", ND));
    assert!(cloud.offers("eastus-3", NC));
}

#[tokio::test]
async fn a_spot_vm_is_made_into_the_flexible_scale_set_and_listed_in_aks_form() {
    let (api, cloud) = nd_scale_set().await;
    let outcome = cloud
        .create_instances(&request(
            "nd",
            "0123456789abcdef",
            ND,
            PurchaseOption::Spot,
            1,
        ))
        .await
        .expect("create");
    assert!(outcome.failed.is_none(), "{outcome:?}");
    let [made] = outcome.created.as_slice() else {
        panic!("one VM: {outcome:?}");
    };
    assert_eq!(made.capacity_type, CapacityType::Spot);
    assert_eq!(made.zone, "eastus-1");
    assert_eq!(made.state, InstanceState::Running);
    assert_eq!(
        made.provider_id.as_str(),
        format!(
            "azure:///subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines/{}",
            made.id
        )
    );
    assert_eq!(made.node_name.as_deref(), Some(made.id.as_str()));
    assert_eq!(
        made.request_id.as_ref().map(|r| r.as_str()),
        Some("nd-0123456789abcdef")
    );
    let put = &api.calls_of("virtualMachines.createOrUpdate")[0];
    let body = put.body.as_ref().expect("body");
    assert_eq!(body["properties"]["priority"], "Spot");
    assert_eq!(body["properties"]["evictionPolicy"], "Delete");
    assert_eq!(body["properties"]["billingProfile"]["maxPrice"], -1.0);
    assert_eq!(body["zones"], json!(["1"]));
    assert!(
        body["properties"]["virtualMachineScaleSet"]["id"]
            .as_str()
            .is_some_and(|id| id.ends_with("/virtualMachineScaleSets/nd-h100"))
    );
    // The profile's bootstrap and identity come along; its NIC and disk go
    // with the VM.
    assert!(body["properties"]["userData"].as_str().is_some());
    assert_eq!(body["identity"]["type"], "UserAssigned");
    let nic = &body["properties"]["networkProfile"]["networkInterfaceConfigurations"][0];
    assert_eq!(nic["properties"]["deleteOption"], "Delete");
    assert!(
        nic["properties"]["ipConfigurations"][0]["properties"]
            .get("loadBalancerInboundNatPools")
            .is_none()
    );
    assert_eq!(
        body["properties"]["storageProfile"]["osDisk"]["deleteOption"],
        "Delete"
    );
    assert_eq!(body["tags"]["gpupool-cluster"], "prod");
    assert_eq!(body["tags"]["gpupool-group"], "nd");
    // Its power state came from the scale set's filtered list.
    let filtered = api
        .calls_of("virtualMachines.list")
        .into_iter()
        .find(|c| c.query.contains_key("$filter"))
        .expect("a list filtered to the scale set");
    assert_eq!(
        filtered.query.get("$expand").map(String::as_str),
        Some("instanceView")
    );
    assert!(api.calls_of("virtualMachines.instanceView").is_empty());
    // The scale set was read with its userData, and the operation polled.
    let get = &api.calls_of("virtualMachineScaleSets.get")[0];
    assert_eq!(
        get.query.get("$expand").map(String::as_str),
        Some("userData")
    );
    assert!(!api.calls_of("operations.get").is_empty());
}

#[tokio::test]
async fn a_zone_out_of_capacity_is_exhausted_its_failed_vm_deleted_and_the_next_zone_used() {
    let (api, cloud) = nd_scale_set().await;
    api.set_capacity("1", ND, true, 0);
    let outcome = cloud
        .create_instances(&request(
            "nd",
            "00000000000000aa",
            ND,
            PurchaseOption::Spot,
            2,
        ))
        .await
        .expect("create");
    assert!(outcome.failed.is_none(), "{outcome:?}");
    assert_eq!(outcome.created.len(), 2);
    assert!(outcome.created.iter().all(|i| i.zone == "eastus-2"));
    assert_eq!(
        outcome.exhausted,
        [Offering {
            instance_type: ND.into(),
            zone: "eastus-1".into(),
            capacity: CapacityType::Spot
        }]
    );
    // Both PUTs of zone 1 were sent before either failed; both failed VMs
    // were deleted, so only zone 2's remain.
    let vms = api.vms();
    assert_eq!(vms.len(), 2, "{:?}", vms.keys());
    assert!(vms.values().all(|v| v["zones"] == json!(["2"])));
    let deleted: BTreeSet<String> = api
        .calls_of("virtualMachines.delete")
        .into_iter()
        .filter_map(|c| c.name)
        .collect();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.iter().all(|n| n.contains("-1s0-")), "{deleted:?}");
}

#[tokio::test]
async fn sku_not_available_and_quota_are_class_one_and_spot_falls_back_to_on_demand() {
    let (api, cloud) = nd_scale_set().await;
    api.refuse("1", ND, true, Refusal::SkuNotAvailable);
    api.refuse("2", ND, true, Refusal::Quota);
    let outcome = cloud
        .create_instances(&request(
            "nd",
            "00000000000000bb",
            ND,
            PurchaseOption::SpotThenOnDemand,
            1,
        ))
        .await
        .expect("create");
    assert!(outcome.failed.is_none(), "{outcome:?}");
    assert_eq!(outcome.created[0].capacity_type, CapacityType::OnDemand);
    let codes: BTreeSet<String> = outcome
        .exhausted
        .iter()
        .map(|o| format!("{}/{}", o.zone, o.capacity))
        .collect();
    assert_eq!(
        codes,
        BTreeSet::from(["eastus-1/spot".to_owned(), "eastus-2/spot".to_owned()])
    );
    let body = api
        .calls_of("virtualMachines.createOrUpdate")
        .last()
        .unwrap()
        .body
        .clone()
        .unwrap();
    assert_eq!(body["properties"]["priority"], "Regular");
    assert!(body["properties"].get("evictionPolicy").is_none());

    // Spot only, every pool refused: the failure is class 1 for CA.
    let outcome = cloud
        .create_instances(&request(
            "nd",
            "00000000000000bc",
            ND,
            PurchaseOption::Spot,
            1,
        ))
        .await
        .expect("create");
    let failed = outcome.failed.expect("failed");
    assert_eq!(failed.error.class, ErrorClass::OutOfResources);
    assert_eq!(failed.error.code, "OperationNotAllowed");
    assert!(failed.error.message.contains("quota"), "{}", failed.error);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let (api, cloud) = nd_scale_set().await;
    api.throttle_next("virtualMachines.createOrUpdate", 2);
    let outcome = cloud
        .create_instances(&request(
            "nd",
            "00000000000000cc",
            ND,
            PurchaseOption::OnDemand,
            1,
        ))
        .await
        .expect("create");
    assert_eq!(outcome.created.len(), 1, "{outcome:?}");
    let puts = api.calls_of("virtualMachines.createOrUpdate");
    assert_eq!(puts.len(), 2);
    let waited = puts[1].at - puts[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert_eq!(api.vms().len(), 1);
}

#[tokio::test]
async fn a_429_the_client_does_not_retry_is_reported_as_throttled() {
    let api = ArmApi::start().await;
    api.add_scale_set("nd-h100", ND, &[]);
    let cloud = connect_with(
        &api,
        settings(&[("nd", Source::ScaleSet("nd-h100".into()), &[ND])]),
        true,
    )
    .await
    .expect("connect");
    api.throttle_next("virtualMachines.list", 30);
    let e = cloud.list_instances().await.expect_err("throttled");
    assert_eq!(e.class, ErrorClass::Throttled);
    assert_eq!(e.code, "TooManyRequests");
}

#[tokio::test]
async fn a_lost_answer_retried_makes_one_vm_and_a_repeated_request_makes_none() {
    let (api, cloud) = nd_scale_set().await;
    api.lose_next_answer("virtualMachines.createOrUpdate");
    let req = request("nd", "00000000000000dd", ND, PurchaseOption::OnDemand, 2);
    let first = cloud.create_instances(&req).await.expect("create");
    assert_eq!(first.created.len(), 2, "{first:?}");
    // The lost PUT was sent again by the client's retry and answered with
    // the running creation.
    assert_eq!(api.calls_of("virtualMachines.createOrUpdate").len(), 3);
    assert_eq!(api.vms().len(), 2);
    // The engine's retry of the same request finds its VMs.
    let again = cloud.create_instances(&req).await.expect("repeat");
    assert_eq!(again.created.len(), 2);
    assert_eq!(api.calls_of("virtualMachines.createOrUpdate").len(), 3);
    let ids = |o: &gpupool_cloud::CreateOutcome| -> BTreeSet<String> {
        o.created.iter().map(|i| i.id.to_string()).collect()
    };
    assert_eq!(ids(&first), ids(&again));
}

#[tokio::test]
async fn a_retry_asked_for_other_pools_counts_what_the_request_already_made() {
    let (api, cloud) = nd_scale_set().await;
    let spot = request("nd", "0000000000000abc", ND, PurchaseOption::Spot, 2);
    let first = cloud.create_instances(&spot).await.expect("create");
    assert_eq!(first.created.len(), 2, "{first:?}");
    // The engine asks again for the same request, now on demand and
    // avoiding the pool the first VMs came from: nothing more is made.
    let mut again = spot.clone();
    again.purchase = PurchaseOption::OnDemand;
    again.avoid = vec![Offering {
        instance_type: ND.into(),
        zone: "eastus-1".into(),
        capacity: CapacityType::Spot,
    }];
    let second = cloud.create_instances(&again).await.expect("repeat");
    assert_eq!(second.created.len(), 2);
    assert_eq!(api.calls_of("virtualMachines.createOrUpdate").len(), 2);
    assert_eq!(api.vms().len(), 2);
    // Asked for one more, it makes exactly one, named past the others.
    again.count = 3;
    let third = cloud.create_instances(&again).await.expect("one more");
    assert_eq!(third.created.len(), 3);
    assert_eq!(api.vms().len(), 3);
}

#[tokio::test]
async fn vms_join_their_scale_set_only_in_its_zones() {
    let api = ArmApi::start().await;
    api.add_scale_set("nc-a100", NC, &[]);
    api.edit_scale_set("nc-a100", |s| s["zones"] = json!(["2"]));
    let cloud = connect(
        &api,
        settings(&[("nc", Source::ScaleSet("nc-a100".into()), &[NC])]),
    )
    .await;
    // The size is offered in all three zones, the scale set spans one.
    assert!(cloud.offers("eastus-1", NC));
    let outcome = cloud
        .create_instances(&request(
            "nc",
            "0000000000000def",
            NC,
            PurchaseOption::OnDemand,
            2,
        ))
        .await
        .expect("create");
    assert_eq!(outcome.created.len(), 2, "{outcome:?}");
    assert!(outcome.created.iter().all(|i| i.zone == "eastus-2"));
    let zones: BTreeSet<String> = api
        .calls_of("virtualMachines.createOrUpdate")
        .iter()
        .map(|c| c.body.as_ref().unwrap()["zones"].to_string())
        .collect();
    assert_eq!(zones, BTreeSet::from([r#"["2"]"#.to_owned()]));
}

#[tokio::test]
async fn delete_removes_exactly_the_named_vms_through_location_polling() {
    let api = ArmApi::start().await;
    api.set_polls_per_operation(2);
    let cloud = connect(&api, settings(&[("nc", Source::Vm(spec()), &[NC])])).await;
    let outcome = cloud
        .create_instances(&request(
            "nc",
            "00000000000000ee",
            NC,
            PurchaseOption::OnDemand,
            3,
        ))
        .await
        .expect("create");
    assert_eq!(outcome.created.len(), 3, "{outcome:?}");
    let body = api.calls_of("virtualMachines.createOrUpdate")[0]
        .body
        .clone()
        .unwrap();
    assert_eq!(
        body["properties"]["osProfile"]["customData"],
        "I2Nsb3VkLWNvbmZpZwo="
    );
    assert!(body["properties"].get("virtualMachineScaleSet").is_none());
    let doomed = outcome.created[1].id.clone();
    cloud
        .delete_instances(&[doomed.clone(), InstanceId::new("nc-already-gone")])
        .await
        .expect("delete");
    let left: Vec<String> = api.vms().into_keys().collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&doomed.to_string()));
    // The delete was awaited through its Location URL (`monitor=true`).
    let polls = api.calls_of("operations.get");
    assert!(
        polls
            .iter()
            .any(|c| c.query.get("monitor").map(String::as_str) == Some("true"))
    );
    // Three VMs over two-VM pages: the list follows nextLink.
    let listed = cloud.list_instances().await.expect("list");
    assert_eq!(listed.len(), 2);
}

#[tokio::test]
async fn other_errors_stop_at_the_first_pool_as_class_99() {
    let (api, cloud) = nd_scale_set().await;
    api.fail_next(Fault {
        method: "virtualMachines.createOrUpdate",
        status: 400,
        body: arm::recorded("error-invalid-parameter.json"),
        retry_after: None,
    });
    let e = cloud
        .create_instances(&request(
            "nd",
            "00000000000000ff",
            ND,
            PurchaseOption::Spot,
            1,
        ))
        .await
        .expect_err("a bad image fails everywhere");
    assert_eq!(e.class, ErrorClass::Other);
    assert_eq!(e.code, "InvalidParameter");
    assert_eq!(api.calls_of("virtualMachines.createOrUpdate").len(), 1);
}

#[tokio::test]
async fn vms_of_other_clusters_are_not_listed_and_states_map() {
    let (api, cloud) = nd_scale_set().await;
    api.put_vm(
        "someone-else",
        json!({"name": "someone-else", "id": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Compute/virtualMachines/someone-else",
               "location": LOCATION, "tags": {"gpupool-cluster": "staging", "gpupool-group": "nd"},
               "properties": {"provisioningState": "Succeeded", "hardwareProfile": {"vmSize": ND}}}),
    );
    api.put_vm(
        "nd-stopped",
        json!({"name": "nd-stopped", "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines/nd-stopped"),
               "location": LOCATION, "zones": ["2"], "tags": {"gpupool-cluster": "prod", "gpupool-group": "nd"},
               "properties": {"provisioningState": "Succeeded", "hardwareProfile": {"vmSize": ND}, "priority": "Spot",
                              "instanceView": {"statuses": [{"code": "ProvisioningState/succeeded"}, {"code": "PowerState/deallocated"}]}}}),
    );
    // A running VM whose last update failed still serves.
    api.put_vm(
        "nd-updated",
        json!({"name": "nd-updated", "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines/nd-updated"),
               "location": LOCATION, "zones": ["1"], "tags": {"gpupool-cluster": "prod", "gpupool-group": "nd"},
               "properties": {"provisioningState": "Failed", "hardwareProfile": {"vmSize": ND},
                              "instanceView": {"statuses": [{"code": "ProvisioningState/failed/VMExtensionProvisioningError"}, {"code": "PowerState/running"}]}}}),
    );
    let listed = cloud.list_instances().await.expect("list");
    let [vm, updated] = listed.as_slice() else {
        panic!("two VMs of this cluster: {listed:?}");
    };
    assert_eq!(updated.id.as_str(), "nd-updated");
    assert_eq!(updated.state, InstanceState::Running);
    assert_eq!(vm.id.as_str(), "nd-stopped");
    assert_eq!(vm.state, InstanceState::Stopped);
    assert_eq!(vm.zone, "eastus-2");
    assert_eq!(vm.capacity_type, CapacityType::Spot);
    // VMs outside a scale set: their power state is read one by one (the
    // resource group's list takes no instance view without a scale-set
    // filter).
    let views: BTreeSet<String> = api
        .calls_of("virtualMachines.instanceView")
        .into_iter()
        .filter_map(|c| c.name)
        .collect();
    assert_eq!(
        views,
        BTreeSet::from(["nd-stopped".to_owned(), "nd-updated".to_owned()])
    );
}

#[tokio::test]
async fn a_uniform_or_unknown_scale_set_is_refused_at_connect_naming_it() {
    let api = ArmApi::start().await;
    api.add_scale_set("nd-uniform", ND, &[]);
    api.edit_scale_set("nd-uniform", |s| {
        s["properties"]["orchestrationMode"] = json!("Uniform")
    });
    let e = connect_with(
        &api,
        settings(&[("nd", Source::ScaleSet("nd-uniform".into()), &[ND])]),
        false,
    )
    .await
    .expect_err("uniform");
    assert_eq!(e.code, "NotFlexible");
    assert!(e.message.contains("nd-uniform"), "{e}");
    let e = connect_with(
        &api,
        settings(&[("nd", Source::ScaleSet("nd-missing".into()), &[ND])]),
        false,
    )
    .await
    .expect_err("unknown");
    assert!(e.message.contains("nd-missing"), "{e}");
}

#[tokio::test]
async fn scale_sets_tagged_for_cluster_autoscaler_are_discovered() {
    let api = ArmApi::start().await;
    api.add_scale_set(
        "nd-h100",
        ND,
        &[
            ("cluster-autoscaler-enabled", "true"),
            ("cluster-autoscaler-name", "prod"),
            ("min", "0"),
            ("max", "4"),
            (
                "k8s.io_cluster-autoscaler_node-template_label_team",
                "research",
            ),
        ],
    );
    api.add_scale_set(
        "other-cluster",
        NC,
        &[
            ("cluster-autoscaler-enabled", "true"),
            ("cluster-autoscaler-name", "staging"),
        ],
    );
    api.add_scale_set("untagged", NC, &[]);
    // CA on Azure also tags Uniform scale sets; gpupool cannot make VMs
    // into those, so they are skipped, not fatal.
    api.add_scale_set(
        "uniform",
        NC,
        &[
            ("cluster-autoscaler-enabled", "true"),
            ("cluster-autoscaler-name", "prod"),
            ("max", "2"),
        ],
    );
    api.edit_scale_set("uniform", |s| {
        s["properties"]["orchestrationMode"] = json!("Uniform")
    });
    let arm = Connection {
        endpoint: Some(api.base.clone()),
        no_retries: false,
    }
    .connect(Arc::new(FixedToken))
    .expect("arm");
    let found = discovery::discover(&arm, SUBSCRIPTION, RESOURCE_GROUP, LOCATION, "prod")
        .await
        .expect("discover");
    let [set] = found.as_slice() else {
        panic!("one scale set: {found:?}");
    };
    assert_eq!(set.name, "nd-h100");
    assert_eq!(set.size, ND);
    assert_eq!(set.zones, ["eastus-1", "eastus-2"]);
    assert!(!set.spot);
    assert_eq!(set.tags.get("max").map(String::as_str), Some("4"));
}

#[tokio::test]
async fn prices_come_from_the_retail_prices_api() {
    let (_api, cloud) = nd_scale_set().await;
    let prices = cloud.prices().await.expect("prices");
    let spot = prices
        .iter()
        .find(|p| p.instance_type == ND && p.capacity_type == CapacityType::Spot)
        .expect("spot price");
    assert!((spot.usd_per_hour - 39.33).abs() < 1e-9);
}
