//! The body of a VM's PUT: from a Flexible scale set's
//! `virtualMachineProfile` (the VM joins the scale set) or from the parts
//! the config names, with gpupool's size, zone, priority and tags on top.
//!
//! Built as JSON in the REST API's shape and then read into the SDK's
//! `VirtualMachine`, so what is sent is what the SDK's model accepts: a
//! scale set's network configuration and a VM's differ in a few fields
//! (`loadBalancerInboundNatPools` exist only on scale sets), and those are
//! dropped there.

use super::settings::VmSpec;
use azure_mgmt_compute::package_2024_07_01::models;
use gpupool_cloud::{CapacityType, CloudError};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The network API version that lets a VM describe its NICs inline (made
/// and deleted with it) instead of referring to NICs made beforehand.
const NETWORK_API_VERSION: &str = "2020-11-01";

/// One VM to make.
pub(super) struct Shape<'a> {
    pub name: &'a str,
    pub location: &'a str,
    /// ARM's logical zone (`1`).
    pub zone: &'a str,
    pub size: &'a str,
    pub capacity: CapacityType,
    /// Spot's ceiling in USD per hour; `None`: up to the on-demand price
    /// (`-1`), so the VM is only evicted for capacity.
    pub max_price: Option<f64>,
    pub tags: &'a BTreeMap<String, String>,
}

/// A VM made from a Flexible scale set's profile. `customData` is never
/// returned by Resource Manager, so the node's bootstrap must be in the
/// profile's `userData` (read with `$expand=userData`).
pub(super) fn from_scale_set(
    scale_set: &models::VirtualMachineScaleSet,
    shape: &Shape<'_>,
) -> Result<models::VirtualMachine, CloudError> {
    let set = serde_json::to_value(scale_set).map_err(|e| invalid(shape.name, &e))?;
    let profile = &set["properties"]["virtualMachineProfile"];
    let mut properties = Map::new();
    let mut storage = Map::new();
    if let Some(image) = profile["storageProfile"].get("imageReference") {
        storage.insert("imageReference".into(), image.clone());
    }
    let mut os_disk = profile["storageProfile"]
        .get("osDisk")
        .cloned()
        .unwrap_or_else(|| json!({}));
    os_disk["createOption"] = json!("FromImage");
    os_disk["deleteOption"] = json!("Delete");
    if let Some(o) = os_disk.as_object_mut() {
        o.remove("name");
    }
    storage.insert("osDisk".into(), os_disk);
    if let Some(Value::Array(disks)) = profile["storageProfile"].get("dataDisks") {
        let disks: Vec<Value> = disks
            .iter()
            .cloned()
            .map(|mut d| {
                d["deleteOption"] = json!("Delete");
                d
            })
            .collect();
        storage.insert("dataDisks".into(), Value::Array(disks));
    }
    properties.insert("storageProfile".into(), Value::Object(storage));
    let mut os = profile
        .get("osProfile")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(o) = os.as_object_mut() {
        o.remove("computerNamePrefix");
        o.remove("adminPassword");
    }
    os["computerName"] = json!(shape.name);
    properties.insert("osProfile".into(), os);
    let nics: Vec<Value> = match profile["networkProfile"].get("networkInterfaceConfigurations") {
        Some(Value::Array(nics)) => nics
            .iter()
            .cloned()
            .map(|mut n| {
                n["properties"]["deleteOption"] = json!("Delete");
                n
            })
            .collect(),
        _ => Vec::new(),
    };
    properties.insert(
        "networkProfile".into(),
        json!({
            "networkApiVersion": NETWORK_API_VERSION,
            "networkInterfaceConfigurations": nics,
        }),
    );
    for key in [
        "securityProfile",
        "diagnosticsProfile",
        "userData",
        "scheduledEventsProfile",
        "licenseType",
        "capacityReservation",
    ] {
        if let Some(v) = profile.get(key).filter(|v| !v.is_null()) {
            properties.insert(key.into(), v.clone());
        }
    }
    properties.insert(
        "virtualMachineScaleSet".into(),
        json!({"id": set["id"].clone()}),
    );
    let mut vm = json!({"properties": Value::Object(properties)});
    // The scale set's user-assigned identities, without what Resource
    // Manager reports of them (principal and client ids).
    if let Some(identity) = set.get("identity").filter(|v| !v.is_null()) {
        let mut identity = identity.clone();
        if let Some(Value::Object(ids)) = identity.get_mut("userAssignedIdentities") {
            for v in ids.values_mut() {
                *v = json!({});
            }
        }
        if let Some(o) = identity.as_object_mut() {
            o.remove("principalId");
            o.remove("tenantId");
        }
        vm["identity"] = identity;
    }
    finish(vm, shape)
}

/// A VM from the config's parts: image, subnet, user and keys, disk.
pub(super) fn from_spec(
    spec: &VmSpec,
    shape: &Shape<'_>,
) -> Result<models::VirtualMachine, CloudError> {
    let image = image_reference(&spec.image);
    let keys: Vec<Value> = spec
        .ssh_public_keys
        .iter()
        .map(|k| {
            json!({
                "path": format!("/home/{}/.ssh/authorized_keys", spec.admin_username),
                "keyData": k,
            })
        })
        .collect();
    let mut os = json!({
        "computerName": shape.name,
        "adminUsername": spec.admin_username,
        "linuxConfiguration": {
            "disablePasswordAuthentication": true,
            "ssh": {"publicKeys": keys},
        },
    });
    if let Some(data) = &spec.custom_data {
        os["customData"] = json!(azure_core::base64::encode(data));
    }
    let mut vm = json!({
        "properties": {
            "storageProfile": {
                "imageReference": image,
                "osDisk": {
                    "createOption": "FromImage",
                    "deleteOption": "Delete",
                    "diskSizeGB": spec.os_disk_gib,
                    "managedDisk": {"storageAccountType": spec.os_disk_type},
                },
            },
            "osProfile": os,
            "networkProfile": {
                "networkApiVersion": NETWORK_API_VERSION,
                "networkInterfaceConfigurations": [{
                    "name": format!("{}-nic", shape.name),
                    "properties": {
                        "primary": true,
                        "deleteOption": "Delete",
                        "enableAcceleratedNetworking": spec.accelerated_networking,
                        "ipConfigurations": [{
                            "name": "ipconfig1",
                            "properties": {
                                "primary": true,
                                "subnet": {"id": spec.subnet_id},
                            },
                        }],
                    },
                }],
            },
        },
    });
    if !spec.identities.is_empty() {
        let ids: Map<String, Value> = spec
            .identities
            .iter()
            .map(|id| (id.clone(), json!({})))
            .collect();
        vm["identity"] = json!({"type": "UserAssigned", "userAssignedIdentities": ids});
    }
    finish(vm, shape)
}

/// An image by URN (`publisher:offer:sku:version`) or by resource id.
pub fn image_reference(image: &str) -> Value {
    let parts: Vec<&str> = image.split(':').collect();
    match parts.as_slice() {
        [publisher, offer, sku, version] => json!({
            "publisher": publisher, "offer": offer, "sku": sku, "version": version,
        }),
        _ => json!({"id": image}),
    }
}

/// What every VM gets: location, zone, size, priority, tags.
fn finish(mut vm: Value, shape: &Shape<'_>) -> Result<models::VirtualMachine, CloudError> {
    vm["location"] = json!(shape.location);
    vm["zones"] = json!([shape.zone]);
    vm["tags"] = json!(shape.tags);
    let properties = &mut vm["properties"];
    properties["hardwareProfile"] = json!({"vmSize": shape.size});
    match shape.capacity {
        // Evicted spot VMs are deleted, not deallocated: a deallocated VM
        // keeps its disk (billed) and its node object, whose pods would
        // never run again.
        CapacityType::Spot => {
            properties["priority"] = json!("Spot");
            properties["evictionPolicy"] = json!("Delete");
            properties["billingProfile"] = json!({"maxPrice": shape.max_price.unwrap_or(-1.0)});
        }
        CapacityType::OnDemand => {
            properties["priority"] = json!("Regular");
        }
    }
    serde_json::from_value(vm).map_err(|e| invalid(shape.name, &e))
}

fn invalid(name: &str, e: &serde_json::Error) -> CloudError {
    CloudError::other("InvalidVmBody", format!("VM {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape<'a>(tags: &'a BTreeMap<String, String>, capacity: CapacityType) -> Shape<'a> {
        Shape {
            name: "nd-1234abcd-1s0-0",
            location: "eastus",
            zone: "1",
            size: "Standard_ND96isr_H100_v5",
            capacity,
            max_price: None,
            tags,
        }
    }

    #[test]
    fn a_spec_vm_is_spot_with_delete_and_its_nic_and_disk_go_with_it() {
        let spec = VmSpec {
            image: "microsoft-dsvm:ubuntu-hpc:2204:latest".into(),
            subnet_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/nodes".into(),
            admin_username: "azureuser".into(),
            ssh_public_keys: vec!["ssh-ed25519 AAAA".into()],
            os_disk_gib: 256,
            os_disk_type: "Premium_LRS".into(),
            custom_data: Some("#cloud-config\n".into()),
            identities: vec!["/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kubelet".into()],
            accelerated_networking: true,
        };
        let tags = BTreeMap::from([("gpupool-cluster".to_owned(), "prod".to_owned())]);
        let vm = from_spec(&spec, &shape(&tags, CapacityType::Spot)).expect("a VM");
        let v = serde_json::to_value(&vm).expect("json");
        assert_eq!(v["zones"], json!(["1"]));
        assert_eq!(v["properties"]["priority"], "Spot");
        assert_eq!(v["properties"]["evictionPolicy"], "Delete");
        assert_eq!(v["properties"]["billingProfile"]["maxPrice"], -1.0);
        assert_eq!(
            v["properties"]["hardwareProfile"]["vmSize"],
            "Standard_ND96isr_H100_v5"
        );
        assert_eq!(
            v["properties"]["storageProfile"]["osDisk"]["deleteOption"],
            "Delete"
        );
        let nic = &v["properties"]["networkProfile"]["networkInterfaceConfigurations"][0];
        assert_eq!(nic["properties"]["deleteOption"], "Delete");
        assert_eq!(
            v["properties"]["storageProfile"]["imageReference"]["offer"],
            "ubuntu-hpc"
        );
        assert_eq!(
            v["properties"]["osProfile"]["customData"],
            "I2Nsb3VkLWNvbmZpZwo="
        );
        assert_eq!(v["tags"]["gpupool-cluster"], "prod");
        assert_eq!(v["identity"]["type"], "UserAssigned");
    }

    #[test]
    fn a_regular_vm_has_no_eviction_policy() {
        let spec = VmSpec {
            image: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/node/versions/1.0.0".into(),
            ..VmSpec::default()
        };
        let tags = BTreeMap::new();
        let vm = from_spec(&spec, &shape(&tags, CapacityType::OnDemand)).expect("a VM");
        let v = serde_json::to_value(&vm).expect("json");
        assert_eq!(v["properties"]["priority"], "Regular");
        assert!(v["properties"].get("evictionPolicy").is_none());
        assert!(
            v["properties"]["storageProfile"]["imageReference"]["id"]
                .as_str()
                .is_some()
        );
    }
}
