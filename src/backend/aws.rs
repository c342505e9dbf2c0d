//! `cloud: aws`: the EC2 backend, its groups' launch settings from the
//! config, and the groups of launch templates tagged for CA.

use super::BackendError;
use crate::config::{Config, ConfigError, DiscoveredTemplate, NodeGroupConfig};
use crate::server::Backend;
use gpupool_aws::sdk::Connection;
use gpupool_aws::{Ec2Cloud, Ec2Settings, GroupSettings, LaunchTemplate};
use gpupool_cloud::{Clock, GroupId};
use std::sync::Arc;

/// Connects to EC2 in the config's region with the standard credential
/// chain (environment, web identity/IRSA, EKS Pod Identity, instance
/// profile) and the SDK's standard retries (exponential backoff with
/// jitter for throttling and transient errors).
pub(super) async fn backend(
    config: &mut Config,
    clock: Arc<dyn Clock>,
) -> Result<Backend, BackendError> {
    let aws = config.aws.clone().ok_or_else(|| ConfigError::Invalid {
        key: "aws".into(),
        reason: "required with cloud: aws: at least `cluster`".into(),
    })?;
    // What needs no cloud is checked before any call, so a typo is named
    // as the config's, not as an AWS error.
    aws.validate()?;
    check_groups(config)?;
    let connection = Connection {
        endpoint: aws.endpoint_url.clone(),
        static_credentials: false,
        no_retries: false,
    };
    if aws.discover_launch_templates {
        let found = gpupool_aws::discover(&connection, &config.region, &aws.cluster).await?;
        super::add_discovered(
            config,
            discovered(found)?,
            "give one a gpupool.dev/node-group tag",
        )?;
        if config.node_groups.is_empty() {
            return Err(ConfigError::Invalid {
                key: "node_groups".into(),
                reason: format!(
                    "none declared, and no launch template in {} is tagged k8s.io/cluster-autoscaler/enabled and k8s.io/cluster-autoscaler/{}",
                    config.region, aws.cluster
                ),
            }
            .into());
        }
        check_groups(config)?;
    }
    let settings = settings(config, &aws.cluster);
    let cloud = Ec2Cloud::connect(&connection, &config.region, settings).await?;
    zones_from_subnets(config, &cloud)?;
    Ok(Backend {
        cloud: Arc::new(cloud),
        clock,
        extra_routes: None,
    })
}

/// The groups the templates' tags declare, each with the template it is
/// read from.
fn discovered(
    found: Vec<gpupool_aws::TaggedTemplate>,
) -> Result<Vec<(String, NodeGroupConfig)>, ConfigError> {
    found
        .into_iter()
        .map(|t| {
            let template = DiscoveredTemplate {
                id: t.id,
                name: t.name,
                version: t.version,
                instance_type: t.instance_type,
                tags: t.tags,
            };
            let source = format!("launch template {} ({})", template.name, template.id);
            Ok((source, template.node_group()?))
        })
        .collect()
}

/// A group's subnets decide its zones: they are its zones when it names
/// none, and every zone it names must have one of them. All groups are
/// checked before any is changed.
fn zones_from_subnets(config: &mut Config, cloud: &Ec2Cloud) -> Result<(), ConfigError> {
    let mut derived = Vec::new();
    for (index, g) in config.node_groups.iter().enumerate() {
        let Some(aws) = &g.aws else { continue };
        if aws.subnets.is_empty() {
            continue;
        }
        let mut zones = Vec::new();
        for (i, s) in aws.subnets.iter().enumerate() {
            let zone = cloud.zone_of_subnet(s).ok_or_else(|| ConfigError::Group {
                group: g.id.clone(),
                key: format!("aws.subnets[{i}]"),
                reason: format!("EC2 does not know {s:?} in {}", config.region),
            })?;
            if !zones.contains(&zone) {
                zones.push(zone);
            }
        }
        zones.sort();
        if g.zones.is_empty() {
            derived.push((index, zones));
        } else if let Some(z) = g.zones.iter().find(|z| !zones.contains(z)) {
            return Err(ConfigError::Group {
                group: g.id.clone(),
                key: "zones".into(),
                reason: format!(
                    "{z:?} has none of the group's subnets (they are in {})",
                    zones.join(", ")
                ),
            });
        }
    }
    for (index, zones) in derived {
        config.node_groups[index].zones = zones;
    }
    Ok(())
}

/// The groups' AWS settings that need no catalog: present, launch template
/// and subnets well formed.
fn check_groups(config: &Config) -> Result<(), ConfigError> {
    for g in &config.node_groups {
        let group_err = |key: String, reason: String| ConfigError::Group {
            group: g.id.clone(),
            key,
            reason,
        };
        let aws = g.aws.as_ref().ok_or_else(|| {
            group_err(
                "aws".into(),
                "required with cloud: aws: the launch template instances start from (aws.launch_template.id or .name)".into(),
            )
        })?;
        aws.validate_shape()
            .map_err(|(key, reason)| group_err(key, reason))?;
    }
    Ok(())
}

/// What the EC2 backend needs of each group.
fn settings(config: &Config, cluster: &str) -> Ec2Settings {
    let groups = config
        .node_groups
        .iter()
        .filter_map(|g| {
            let aws = g.aws.as_ref()?;
            let lt = &aws.launch_template;
            Some((
                GroupId::new(g.id.clone()),
                GroupSettings {
                    launch_template: LaunchTemplate {
                        id: lt.id.clone(),
                        name: lt.name.clone(),
                        version: lt.version.clone(),
                    },
                    instance_types: aws.all_types(&g.instance_type),
                    subnets: aws.subnets.clone(),
                },
            ))
        })
        .collect();
    Ec2Settings {
        cluster: cluster.to_owned(),
        groups,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::aws::{TAG_INSTANCE_TYPES, TAG_VERSION};
    use gpupool_aws::ec2::discovery::{TYPES_TAG, VERSION_TAG};

    #[test]
    fn the_config_reads_the_tags_discovery_looks_at() {
        // Discovery skips the version lookup when the types tag is set,
        // and reads the version from its tag: the same keys as the config's.
        assert_eq!(TAG_INSTANCE_TYPES, TYPES_TAG);
        assert_eq!(TAG_VERSION, VERSION_TAG);
    }
}
