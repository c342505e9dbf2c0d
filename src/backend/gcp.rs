//! `cloud: gcp`: the Compute Engine backend, its groups' instance settings
//! from the config, and the groups of instance templates labelled for the
//! cluster.

use super::BackendError;
use crate::config::{Config, ConfigError, DiscoveredInstanceTemplate, NodeGroupConfig};
use crate::server::Backend;
use gpupool_cloud::{Clock, GroupId};
use gpupool_gcp::compute::{Accelerators, MachineSpec, Source};
use gpupool_gcp::{Connection, GceCloud, GceSettings, GroupSettings};
use std::sync::Arc;

/// Connects to Compute Engine with Application Default Credentials (GKE
/// Workload Identity through the metadata server, or the key file of
/// `GOOGLE_APPLICATION_CREDENTIALS`) and the client's retries
/// (exponential backoff with jitter for rate limits and transient errors).
pub(super) async fn backend(
    config: &mut Config,
    clock: Arc<dyn Clock>,
) -> Result<Backend, BackendError> {
    let gcp = config.gcp.clone().ok_or_else(|| ConfigError::Invalid {
        key: "gcp".into(),
        reason: "required with cloud: gcp: at least `project` and `cluster`".into(),
    })?;
    // What needs no cloud is checked before any call, so a typo is named
    // as the config's, not as a Compute Engine error.
    gcp.validate()?;
    check_groups(config)?;
    let connection = Connection {
        endpoint: gcp.endpoint_url.clone(),
        anonymous: false,
        no_retries: false,
    };
    if gcp.discover_instance_templates {
        let found = gpupool_gcp::discover(&connection, &gcp.project, &gcp.cluster).await?;
        let groups = discovered(config, found)?;
        super::add_discovered(config, groups, "give one a gpupool-node-group label")?;
        if config.node_groups.is_empty() {
            return Err(ConfigError::Invalid {
                key: "node_groups".into(),
                reason: format!(
                    "none declared, and no instance template of project {} is labelled gpupool-cluster: {} and gpupool-max-size",
                    gcp.project, gcp.cluster
                ),
            }
            .into());
        }
        check_groups(config)?;
    }
    let settings = settings(config, &gcp.project, &gcp.cluster);
    let cloud = GceCloud::connect(&connection, &config.region, settings).await?;
    let region_zones = gpupool_cloud::Cloud::zones(&cloud).await?;
    check_offered(config, &cloud, &region_zones)?;
    Ok(Backend {
        cloud: Arc::new(cloud),
        clock,
        extra_routes: None,
    })
}

/// The groups the templates' labels declare, each with the template it is
/// read from. A template a declared group already uses is left to that
/// group.
fn discovered(
    config: &Config,
    found: Vec<gpupool_gcp::LabelledTemplate>,
) -> Result<Vec<(String, NodeGroupConfig)>, ConfigError> {
    let mut groups = Vec::new();
    for t in found {
        let declared = config.node_groups.iter().any(|g| {
            g.gcp.as_ref().and_then(|c| c.instance_template.as_deref()) == Some(t.name.as_str())
        });
        if declared {
            tracing::info!(template = %t.name, "instance template labelled for discovery is a declared group's; not discovered again");
            continue;
        }
        let template = DiscoveredInstanceTemplate {
            name: t.name,
            machine_type: t.machine_type,
            labels: t.labels,
            guest_accelerators: t.guest_accelerators,
        };
        let group = template.node_group(&config.region)?;
        groups.push((format!("instance template {}", template.name), group));
    }
    Ok(groups)
}

/// The groups' GCP settings that need no catalog.
fn check_groups(config: &Config) -> Result<(), ConfigError> {
    for g in &config.node_groups {
        let group_err = |key: String, reason: String| ConfigError::Group {
            group: g.id.clone(),
            key,
            reason,
        };
        let gcp = g.gcp.as_ref().ok_or_else(|| {
            group_err(
                "gcp".into(),
                "required with cloud: gcp: the instance template (gcp.instance_template) or machine (gcp.machine) instances are made from".into(),
            )
        })?;
        gcp.validate_shape(&g.instance_type)
            .map_err(|(key, reason)| group_err(key, reason))?;
    }
    Ok(())
}

/// Every group's zones against `machineTypes.list` (A3 is in few zones).
fn check_offered(
    config: &Config,
    cloud: &GceCloud,
    region_zones: &[String],
) -> Result<(), ConfigError> {
    let by = super::OfferedBy {
        offered: "offered",
        source: "machineTypes.list",
        kind: "type",
    };
    for g in &config.node_groups {
        super::check_offered_zones(config, g, region_zones, |z, t| cloud.offers(z, t), &by)?;
    }
    Ok(())
}

/// What the Compute Engine backend needs of each group.
fn settings(config: &Config, project: &str, cluster: &str) -> GceSettings {
    let groups = config
        .node_groups
        .iter()
        .filter_map(|g| {
            let gcp = g.gcp.as_ref()?;
            let source = match (&gcp.instance_template, &gcp.machine) {
                (Some(t), _) => Source::Template(t.clone()),
                (None, Some(m)) => Source::Machine(MachineSpec {
                    image: m.image.clone(),
                    boot_disk_gib: m.boot_disk_gib,
                    boot_disk_type: m.boot_disk_type.clone(),
                    network: m.network.clone(),
                    subnetwork: m.subnetwork.clone(),
                    service_account: m.service_account.clone(),
                    network_tags: m.network_tags.clone(),
                    metadata: m.metadata.clone(),
                }),
                (None, None) => return None,
            };
            Some((
                GroupId::new(g.id.clone()),
                GroupSettings {
                    source,
                    machine_types: gcp.all_types(&g.instance_type),
                    guest_accelerators: gcp.guest_accelerators.as_ref().map(|a| Accelerators {
                        accelerator_type: a.accelerator_type.clone(),
                        count: a.count,
                    }),
                },
            ))
        })
        .collect();
    GceSettings {
        project: project.to_owned(),
        cluster: cluster.to_owned(),
        groups,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::gcp::{LABEL_CLUSTER, LABEL_MAX_SIZE};
    use gpupool_gcp::compute::discovery::MAX_SIZE_LABEL;
    use gpupool_gcp::compute::labels::CLUSTER;

    #[test]
    fn the_config_reads_the_labels_discovery_looks_at() {
        assert_eq!(LABEL_CLUSTER, CLUSTER);
        assert_eq!(LABEL_MAX_SIZE, MAX_SIZE_LABEL);
    }
}
