//! Groups declared by the cloud: the Flexible scale sets of the resource
//! group tagged as cluster-autoscaler on Azure discovers them
//! (`--node-group-auto-discovery=label:cluster-autoscaler-enabled=true,cluster-autoscaler-name=<cluster>`),
//! with their `min` and `max` tags, and node labels in
//! `k8s.io_cluster-autoscaler_node-template_label_<key>` tags. Uniform
//! scale sets (which take no VMs made apart) are skipped with a warning.

use super::Limits;
use super::names::zone_label;
use super::paging;
use crate::arm::Arm;
use azure_mgmt_compute::package_2024_07_01::models;
use gpupool_cloud::CloudError;
use std::collections::BTreeMap;

pub const ENABLED_TAG: &str = "cluster-autoscaler-enabled";
pub const NAME_TAG: &str = "cluster-autoscaler-name";
pub const MIN_TAG: &str = "min";
pub const MAX_TAG: &str = "max";

/// A bound on paging.
const MAX_PAGES: usize = 100;

/// A scale set tagged for the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct TaggedScaleSet {
    pub name: String,
    /// Its size (`sku.name`).
    pub size: String,
    /// Its zones, as labels (`eastus-1`).
    pub zones: Vec<String>,
    /// Whether its profile is Spot.
    pub spot: bool,
    /// Its tags, all of them.
    pub tags: BTreeMap<String, String>,
}

/// The scale sets of `resource_group` tagged for `cluster`.
pub async fn discover(
    arm: &Arm,
    subscription: &str,
    resource_group: &str,
    location: &str,
    cluster: &str,
) -> Result<Vec<TaggedScaleSet>, CloudError> {
    let pages = arm
        .client
        .virtual_machine_scale_sets_client()
        .list(resource_group, subscription)
        .into_stream();
    let pages = paging::all(
        "virtualMachineScaleSets.list",
        &Limits::new(),
        MAX_PAGES,
        pages,
    )
    .await?;
    let mut found: Vec<TaggedScaleSet> = pages
        .iter()
        .flat_map(|p| p.value.iter())
        .filter_map(|s| tagged(s, location, cluster))
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn tagged(
    set: &models::VirtualMachineScaleSet,
    location: &str,
    cluster: &str,
) -> Option<TaggedScaleSet> {
    let tags: BTreeMap<String, String> = set
        .resource
        .tags
        .as_ref()
        .and_then(|t| t.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let enabled = tags
        .get(ENABLED_TAG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !enabled || tags.get(NAME_TAG).map(String::as_str) != Some(cluster) {
        return None;
    }
    let mode = set
        .properties
        .as_ref()
        .and_then(|p| p.orchestration_mode.clone());
    if mode != Some(models::OrchestrationMode::Flexible) {
        tracing::warn!(
            scale_set = ?set.resource.name,
            "scale set tagged for cluster-autoscaler is not in Flexible orchestration mode; gpupool cannot make VMs into it, so it is not a group"
        );
        return None;
    }
    let spot = set
        .properties
        .as_ref()
        .and_then(|p| p.virtual_machine_profile.as_ref())
        .and_then(|p| p.priority.clone())
        .is_some_and(|p| matches!(p, models::Priority::Spot | models::Priority::Low));
    // A Flexible scale set's size is its `sku.name`.
    let size = set
        .sku
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_default();
    Some(TaggedScaleSet {
        name: set.resource.name.clone()?,
        size,
        zones: set.zones.iter().map(|z| zone_label(location, z)).collect(),
        spot,
        tags,
    })
}
