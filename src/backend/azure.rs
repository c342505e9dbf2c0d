//! `cloud: azure`: the Azure backend, its groups' VM settings from the
//! config, and the groups of Flexible scale sets tagged for
//! cluster-autoscaler.

use super::BackendError;
use crate::config::{AzureConfig, Config, ConfigError, DiscoveredScaleSet, NodeGroupConfig};
use crate::server::Backend;
use gpupool_azure::{
    AzureCloud, AzureSettings, Connection, GroupSettings, RetailPrices, Source, VmSpec,
};
use gpupool_cloud::{Clock, GroupId};
use std::sync::Arc;

/// Connects to Resource Manager with `azure_identity`'s default chain
/// (workload identity or a client secret from the environment, then
/// managed identity) and the client's retries (exponential backoff with
/// jitter, at least the answer's `Retry-After`, for 429 and 5xx).
pub(super) async fn backend(
    config: &mut Config,
    clock: Arc<dyn Clock>,
) -> Result<Backend, BackendError> {
    let azure = config.azure.clone().ok_or_else(|| ConfigError::Invalid {
        key: "azure".into(),
        reason:
            "required with cloud: azure: at least `subscription_id`, `resource_group` and `cluster`"
                .into(),
    })?;
    // What needs no cloud is checked before any call, so a typo is named
    // as the config's, not as a Resource Manager error.
    azure.validate()?;
    check_groups(config)?;
    let connection = Connection {
        endpoint: azure.endpoint_url.clone(),
        no_retries: false,
    };
    let arm = connection.connect(gpupool_azure::default_credential()?)?;
    if azure.discover_scale_sets {
        let found = gpupool_azure::discover(
            &arm,
            &azure.subscription_id,
            &azure.resource_group,
            &config.region,
            &azure.cluster,
        )
        .await?;
        let groups = discovered(config, found)?;
        super::add_discovered(config, groups, "give one a gpupool-node-group tag")?;
        if config.node_groups.is_empty() {
            return Err(ConfigError::Invalid {
                key: "node_groups".into(),
                reason: format!(
                    "none declared, and no scale set of resource group {} is tagged {}: true, {}: {} and {}",
                    azure.resource_group,
                    gpupool_azure::compute::discovery::ENABLED_TAG,
                    gpupool_azure::compute::discovery::NAME_TAG,
                    azure.cluster,
                    gpupool_azure::compute::discovery::MAX_TAG
                ),
            }
            .into());
        }
        check_groups(config)?;
    }
    let prices = RetailPrices::new(
        azure
            .prices_url
            .as_deref()
            .unwrap_or(gpupool_azure::pricing::ENDPOINT),
        &config.region,
    )?;
    let cloud = AzureCloud::connect(arm, &config.region, settings(config, &azure), prices).await?;
    let location_zones = gpupool_cloud::Cloud::zones(&cloud).await?;
    check_offered(config, &cloud, &location_zones)?;
    Ok(Backend {
        cloud: Arc::new(cloud),
        clock,
        extra_routes: None,
    })
}

/// The groups the scale sets' tags declare. A scale set a declared group
/// already uses is left to that group.
fn discovered(
    config: &Config,
    found: Vec<gpupool_azure::TaggedScaleSet>,
) -> Result<Vec<(String, NodeGroupConfig)>, ConfigError> {
    let mut groups = Vec::new();
    for s in found {
        let declared = config.node_groups.iter().any(|g| {
            g.azure.as_ref().and_then(|a| a.scale_set.as_deref()) == Some(s.name.as_str())
        });
        if declared {
            tracing::info!(scale_set = %s.name, "scale set tagged for discovery is a declared group's; not discovered again");
            continue;
        }
        let set = DiscoveredScaleSet {
            name: s.name,
            size: s.size,
            zones: s.zones,
            spot: s.spot,
            tags: s.tags,
        };
        groups.push((format!("scale set {}", set.name), set.node_group()?));
    }
    Ok(groups)
}

/// The groups' Azure settings that need no catalog.
fn check_groups(config: &Config) -> Result<(), ConfigError> {
    for g in &config.node_groups {
        let group_err = |key: String, reason: String| ConfigError::Group {
            group: g.id.clone(),
            key,
            reason,
        };
        let azure = g.azure.as_ref().ok_or_else(|| {
            group_err(
                "azure".into(),
                "required with cloud: azure: the Flexible scale set (azure.scale_set) or VM description (azure.vm) VMs are made from".into(),
            )
        })?;
        azure
            .validate_shape()
            .map_err(|(key, reason)| group_err(key, reason))?;
        crate::config::azure::check_zones(&config.region, &g.zones)
            .map_err(|(key, reason)| group_err(key, reason))?;
    }
    Ok(())
}

/// Every group's zones against its scale set's (a VM joins a Flexible
/// scale set only in one of them) and against Resource SKUs (zones less
/// the subscription's restrictions).
fn check_offered(
    config: &Config,
    cloud: &AzureCloud,
    location_zones: &[String],
) -> Result<(), ConfigError> {
    let by = super::OfferedBy {
        offered: "offered to this subscription",
        source: "Resource SKUs",
        kind: "size",
    };
    for g in &config.node_groups {
        let set_zones = cloud.scale_set_zones(&GroupId::new(g.id.clone()));
        if let Some(set_zones) = &set_zones {
            let set = g
                .azure
                .as_ref()
                .and_then(|a| a.scale_set.as_deref())
                .unwrap_or_default();
            if set_zones.is_empty() {
                return Err(ConfigError::Group {
                    group: g.id.clone(),
                    key: "azure.scale_set".into(),
                    reason: format!(
                        "scale set {set} is regional (no zones); gpupool places each VM in one zone, and a regional scale set takes no zonal VMs: give it zones"
                    ),
                });
            }
            if let Some(zone) = g.zones.iter().find(|z| !set_zones.contains(z)) {
                return Err(ConfigError::Group {
                    group: g.id.clone(),
                    key: "zones".into(),
                    reason: format!(
                        "{zone} is not a zone of scale set {set} ({}); its VMs can only be in those",
                        set_zones.join(", ")
                    ),
                });
            }
        }
        // A group that names no zones is placed in its scale set's.
        let zones = set_zones.as_deref().unwrap_or(location_zones);
        super::check_offered_zones(config, g, zones, |z, t| cloud.offers(z, t), &by)?;
    }
    Ok(())
}

/// What the Azure backend needs of each group.
fn settings(config: &Config, azure: &AzureConfig) -> AzureSettings {
    let groups = config
        .node_groups
        .iter()
        .filter_map(|g| {
            let a = g.azure.as_ref()?;
            let source = match (&a.scale_set, &a.vm) {
                (Some(s), _) => Source::ScaleSet(s.clone()),
                (None, Some(vm)) => Source::Vm(VmSpec {
                    image: vm.image.clone(),
                    subnet_id: vm.subnet_id.clone(),
                    admin_username: vm.admin_username.clone(),
                    ssh_public_keys: vm.ssh_public_keys.clone(),
                    os_disk_gib: vm.os_disk_gib,
                    os_disk_type: vm.os_disk_type.clone(),
                    custom_data: vm.custom_data.clone(),
                    identities: vm.identities.clone(),
                    accelerated_networking: vm.accelerated_networking,
                }),
                (None, None) => return None,
            };
            Some((
                GroupId::new(g.id.clone()),
                GroupSettings {
                    source,
                    sizes: a.all_sizes(&g.instance_type),
                },
            ))
        })
        .collect();
    AzureSettings {
        subscription_id: azure.subscription_id.clone(),
        resource_group: azure.resource_group.clone(),
        cluster: azure.cluster.clone(),
        groups,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::azure::{TAG_MAX, TAG_MIN};
    use gpupool_azure::compute::discovery::{MAX_TAG, MIN_TAG};

    #[test]
    fn the_config_reads_the_tags_discovery_looks_at() {
        assert_eq!(TAG_MAX, MAX_TAG);
        assert_eq!(TAG_MIN, MIN_TAG);
    }
}
