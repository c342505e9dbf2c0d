//! `cloud: aws`: the EC2 backend, its groups' launch settings from the
//! config, and the groups of launch templates tagged for CA.

use super::BackendError;
use crate::config::{Config, ConfigError, DiscoveredTemplate};
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
    let connection = Connection {
        endpoint: aws.endpoint_url.clone(),
        static_credentials: false,
        no_retries: false,
    };
    if aws.discover_launch_templates {
        let found = gpupool_aws::discover(&connection, &config.region, &aws.cluster).await?;
        add_discovered(config, found)?;
    }
    let settings = settings(config, &aws.cluster);
    let cloud = Ec2Cloud::connect(&connection, &config.region, settings).await?;
    Ok(Backend {
        cloud: Arc::new(cloud),
        clock,
        extra_routes: None,
    })
}

/// The discovered templates' groups added to the config's; a group both
/// declared and discovered is an error, not a silent winner.
fn add_discovered(
    config: &mut Config,
    found: Vec<gpupool_aws::TaggedTemplate>,
) -> Result<(), ConfigError> {
    for t in found {
        let template = DiscoveredTemplate {
            id: t.id,
            name: t.name,
            version: t.version,
            instance_type: t.instance_type,
            tags: t.tags,
        };
        let group = template.node_group()?;
        if config.node_groups.iter().any(|g| g.id == group.id) {
            return Err(ConfigError::Invalid {
                key: format!("launch template {} ({})", template.name, template.id),
                reason: format!(
                    "its node group {:?} is also declared in node_groups; drop one of them",
                    group.id
                ),
            });
        }
        tracing::info!(group = %group.id, template = %template.name, "node group discovered from launch template tags");
        config.node_groups.push(group);
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
