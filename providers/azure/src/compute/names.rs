//! How gpupool marks its VMs and finds them again: tags for the cluster,
//! group and creation request; names made from the request so a repeated
//! PUT updates the VM it made instead of making a second one; zones in
//! Kubernetes' form; and a VM read back as gpupool's [`Instance`].

use azure_mgmt_compute::package_2024_07_01::models;
use gpupool_cloud::{
    CapacityType, GroupId, Instance, InstanceId, InstanceState, ProviderId, RequestId,
};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Tag names.
pub const CLUSTER: &str = "gpupool-cluster";
pub const GROUP: &str = "gpupool-group";
/// The whole creation request id (tag values take 256 characters).
pub const REQUEST: &str = "gpupool-request";
pub const MANAGED_BY: &str = "managed-by";

/// VM names (and Linux computer names, which are the node names) are at
/// most 64 characters; gpupool keeps to 63, a DNS label.
pub const MAX_NAME: usize = 63;

/// The tags gpupool sets on a VM of `group` made by `request`.
pub fn tags(cluster: &str, group: &GroupId, request: &RequestId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER.to_owned(), cluster.to_owned()),
        (GROUP.to_owned(), group.to_string()),
        (REQUEST.to_owned(), request.to_string()),
        (MANAGED_BY.to_owned(), "gpupool".to_owned()),
    ])
}

/// The name of the `index`th VM of `request` that asks for `size_index`
/// of the group's sizes in `zone` at `capacity`:
/// `<group>-<8 hex of the request>-<zone number><s|o><size index>-<index>`,
/// lower case. One call gets the same names every time, so a repeat finds
/// its VMs (a name is unique in the resource group), and no two calls of
/// one request share a name.
pub fn vm_name(
    group: &GroupId,
    request: &RequestId,
    zone: &str,
    capacity: CapacityType,
    size_index: usize,
    index: u32,
) -> String {
    let cap = match capacity {
        CapacityType::Spot => 's',
        CapacityType::OnDemand => 'o',
    };
    let tail = format!(
        "-{:08x}-{}{cap}{size_index}-{index}",
        fnv32(request.as_str()),
        arm_zone(zone)
    );
    let room = MAX_NAME.saturating_sub(tail.len());
    let head: String = group
        .as_str()
        .to_ascii_lowercase()
        .chars()
        .take(room)
        .collect();
    format!("{head}{tail}")
}

/// FNV-1a: a stable short hash of a request id.
fn fnv32(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A zone as Kubernetes labels it on Azure (`topology.kubernetes.io/zone:
/// eastus-1`) from the location and ARM's logical zone (`1`).
pub fn zone_label(location: &str, zone: &str) -> String {
    format!("{}-{zone}", location.to_ascii_lowercase())
}

/// ARM's logical zone (`1`) of a zone label (`eastus-1`).
pub fn arm_zone(zone: &str) -> &str {
    zone.rsplit('-').next().unwrap_or(zone)
}

/// The size's name as ARM spells it.
pub fn size_name(size: &models::hardware_profile::VmSize) -> String {
    serde_json::to_value(size)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A tag's value.
pub fn tag<'a>(tags: Option<&'a serde_json::Value>, key: &str) -> Option<&'a str> {
    tags?.get(key)?.as_str()
}

/// Whether gpupool tagged `vm` for `cluster`.
pub fn is_ours(vm: &models::VirtualMachine, cluster: &str) -> bool {
    tag(vm.resource.tags.as_ref(), CLUSTER) == Some(cluster)
}

/// The providerID of a VM's resource id, as the Azure
/// cloud-controller-manager writes it: `azure://` and the id, with the
/// resource group in lower case (Compute may return it upper-cased, and the
/// node's providerID has it lower-cased).
pub fn provider_id(resource_id: &str) -> ProviderId {
    let lower = resource_id.to_ascii_lowercase();
    let id = match lower.find("/resourcegroups/") {
        Some(at) => {
            let start = at + "/resourcegroups/".len();
            let end = resource_id[start..]
                .find('/')
                .map_or(resource_id.len(), |e| start + e);
            format!(
                "{}{}{}",
                &resource_id[..start],
                &lower[start..end],
                &resource_id[end..]
            )
        }
        None => resource_id.to_owned(),
    };
    ProviderId::new(format!("azure://{id}"))
}

/// gpupool's view of a VM it tagged for this cluster; `None` for any other.
/// `statuses` is its instance view's, when read apart from the VM (the
/// resource group's list carries none).
pub fn instance(
    vm: &models::VirtualMachine,
    location: &str,
    cluster: &str,
    statuses: Option<&[models::InstanceViewStatus]>,
) -> Option<Instance> {
    let tags = vm.resource.tags.as_ref();
    if !is_ours(vm, cluster) {
        return None;
    }
    let group = tag(tags, GROUP)?;
    let name = vm.resource.name.clone()?;
    let id = vm.resource.id.clone()?;
    let props = vm.properties.as_ref()?;
    let size = props
        .hardware_profile
        .as_ref()
        .and_then(|h| h.vm_size.as_ref())
        .map(size_name)
        .unwrap_or_default();
    let capacity_type = match props.priority {
        Some(models::Priority::Spot | models::Priority::Low) => CapacityType::Spot,
        _ => CapacityType::OnDemand,
    };
    let zone = vm
        .zones
        .first()
        .map(|z| zone_label(location, z))
        .unwrap_or_default();
    let (state, reason) = state(props, statuses);
    Some(Instance {
        id: InstanceId::new(name.clone()),
        provider_id: provider_id(&id),
        // The node registers under its computer name, which gpupool sets to
        // the VM's name.
        node_name: Some(name.to_ascii_lowercase()),
        group: GroupId::new(group),
        instance_type: size,
        zone,
        capacity_type,
        state,
        launched_at: props
            .time_created
            .map_or_else(SystemTime::now, SystemTime::from),
        request_id: tag(tags, REQUEST).map(RequestId::new),
        state_reason: reason,
    })
}

/// The VM's state from its provisioning state and power state (the
/// instance view's `PowerState/…` status, when listed with it).
fn state(
    props: &models::VirtualMachineProperties,
    statuses: Option<&[models::InstanceViewStatus]>,
) -> (InstanceState, Option<String>) {
    let provisioning = props.provisioning_state.as_deref().unwrap_or("Succeeded");
    let statuses = statuses.unwrap_or_else(|| {
        props
            .instance_view
            .as_ref()
            .map(|v| v.statuses.as_slice())
            .unwrap_or_default()
    });
    let power = statuses
        .iter()
        .filter_map(|s| s.code.as_deref())
        .find_map(|c| c.strip_prefix("PowerState/"));
    match (provisioning, power) {
        ("Deleting", _) => (InstanceState::ShuttingDown, None),
        // A running VM can be `Failed` too (an extension or update that
        // failed): it still serves.
        ("Failed", Some("running")) => (
            InstanceState::Running,
            Some("ProvisioningState/failed while running".to_owned()),
        ),
        // A VM whose creation failed stays, deallocated, until deleted:
        // the engine deletes what is stopped.
        ("Failed", _) => {
            let why = statuses
                .iter()
                .filter_map(|s| s.code.as_deref())
                .find(|c| c.starts_with("ProvisioningState/failed"))
                .unwrap_or("ProvisioningState/failed");
            (InstanceState::Stopped, Some(why.to_owned()))
        }
        (_, Some("stopping" | "deallocating")) => (InstanceState::ShuttingDown, None),
        (_, Some("stopped" | "deallocated")) => (
            InstanceState::Stopped,
            Some(format!("PowerState/{}", power.unwrap_or_default())),
        ),
        ("Creating", _) | (_, Some("starting")) => (InstanceState::Pending, None),
        _ => (InstanceState::Running, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_short_and_per_call() {
        let group = GroupId::new("nd-h100");
        let request = RequestId::new("nd-h100-0123456789abcdef");
        let a = vm_name(&group, &request, "eastus-2", CapacityType::Spot, 0, 3);
        assert_eq!(
            a,
            vm_name(&group, &request, "eastus-2", CapacityType::Spot, 0, 3)
        );
        assert!(a.starts_with("nd-h100-") && a.ends_with("-2s0-3"), "{a}");
        assert_ne!(
            a,
            vm_name(&group, &request, "eastus-1", CapacityType::Spot, 0, 3)
        );
        let long = GroupId::new("g".repeat(80));
        assert!(
            vm_name(&long, &request, "eastus-1", CapacityType::OnDemand, 1, 99).len() <= MAX_NAME
        );
    }

    #[test]
    fn the_provider_id_has_the_resource_group_in_lower_case() {
        assert_eq!(
            provider_id("/subscriptions/S-1/resourceGroups/MC_GPU_Prod/providers/Microsoft.Compute/virtualMachines/nd-1").as_str(),
            "azure:///subscriptions/S-1/resourceGroups/mc_gpu_prod/providers/Microsoft.Compute/virtualMachines/nd-1"
        );
    }

    #[test]
    fn zones_go_both_ways() {
        assert_eq!(zone_label("EastUS", "2"), "eastus-2");
        assert_eq!(arm_zone("eastus-2"), "2");
    }
}
