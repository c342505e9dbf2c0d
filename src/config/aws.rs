//! The config's AWS parts: the installation (`aws:`, its cluster name and
//! endpoint) and each group's launch template, instance types and subnets
//! (`node_groups[].aws`). Plain data, checked here; the backend turns it
//! into the EC2 crate's settings.

use super::{ConfigError, NodeGroupConfig};
use gpupool_cloud::InstanceType;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `aws:` — the installation, when `cloud: aws`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// The cluster's name: tagged on every instance gpupool launches
    /// (`gpupool.dev/cluster`, `kubernetes.io/cluster/<name>: owned`) and
    /// the filter that finds them again, so it must be unique per account
    /// and region.
    pub cluster: String,
    /// One URL for EC2 and the Price List API instead of AWS's own (a test
    /// server). Credentials still come from the standard chain.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Also serve the groups of launch templates tagged
    /// `k8s.io/cluster-autoscaler/enabled` and `k8s.io/cluster-autoscaler/<cluster>`
    /// (read at start).
    #[serde(default)]
    pub discover_launch_templates: bool,
}

/// `node_groups[].aws` — how a group's instances are launched.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsGroupConfig {
    pub launch_template: LaunchTemplateRef,
    /// More instance types CreateFleet may choose from besides the group's
    /// `instance_type` (which stays first and shapes the template node):
    /// each with as many GPUs and at least its vCPUs and memory.
    #[serde(default)]
    pub instance_types: Vec<String>,
    /// Subnets to launch into; their zones are the group's. Empty: the
    /// launch template's network, in the group's zones.
    #[serde(default)]
    pub subnets: Vec<String>,
}

/// A launch template by id or by name, at a version.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchTemplateRef {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// `$Default`, `$Latest` or a version number.
    #[serde(default = "default_version")]
    pub version: String,
}

fn default_version() -> String {
    "$Default".to_owned()
}

impl AwsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if c.trim().is_empty() {
            return Err(ConfigError::invalid(
                "aws.cluster",
                "must not be empty: it tags and finds this installation's instances",
            ));
        }
        // It is a tag value and part of a tag key (kubernetes.io/cluster/<name>).
        if c.len() > 100
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ConfigError::invalid(
                "aws.cluster",
                format!("{c:?} must be 1-100 characters of letters, digits, '-', '_' and '.'"),
            ));
        }
        if let Some(url) = &self.endpoint_url {
            check_endpoint_url("aws.endpoint_url", url)?;
        }
        Ok(())
    }
}

impl AwsGroupConfig {
    /// Checks the group's AWS settings against the catalog and its primary
    /// type; `Err((key under aws., reason))`.
    pub(super) fn validate(
        &self,
        primary: &InstanceType,
        catalog: &[InstanceType],
    ) -> Result<(), (String, String)> {
        self.validate_shape()?;
        self.validate_types(primary, catalog)
    }

    /// What can be checked without a catalog: the launch template and the
    /// subnets.
    pub fn validate_shape(&self) -> Result<(), (String, String)> {
        let lt = &self.launch_template;
        match (&lt.id, &lt.name) {
            (Some(_), Some(_)) | (None, None) => {
                return Err((
                    "aws.launch_template".into(),
                    "give exactly one of id and name".into(),
                ));
            }
            (Some(id), None) if !is_aws_id(id, "lt-") => {
                return Err((
                    "aws.launch_template.id".into(),
                    format!("{id:?} is not a launch template id (lt-0123456789abcdef0)"),
                ));
            }
            (None, Some(name))
                if !(3..=128).contains(&name.len())
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"()./_-".contains(&b)) =>
            {
                return Err((
                    "aws.launch_template.name".into(),
                    format!(
                        "{name:?} is not a launch template name (3-128 of letters, digits and ( ) . / _ -)"
                    ),
                ));
            }
            _ => {}
        }
        let v = &lt.version;
        let numbered = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v != "0";
        if !(numbered || v == "$Default" || v == "$Latest") {
            return Err((
                "aws.launch_template.version".into(),
                format!("{v:?} must be $Default, $Latest or a version number"),
            ));
        }
        for (i, s) in self.subnets.iter().enumerate() {
            let key = format!("aws.subnets[{i}]");
            if !is_aws_id(s, "subnet-") {
                return Err((key, format!("{s:?} is not a subnet id (subnet-0123abcd)")));
            }
            if self.subnets[..i].contains(s) {
                return Err((key, format!("{s:?} is listed twice")));
            }
        }
        Ok(())
    }

    fn validate_types(
        &self,
        primary: &InstanceType,
        catalog: &[InstanceType],
    ) -> Result<(), (String, String)> {
        validate_alternates("aws.instance_types", &self.instance_types, primary, catalog)
    }

    /// The types CreateFleet may choose from: the group's own first.
    pub fn all_types(&self, primary: &str) -> Vec<String> {
        primary_first(primary, &self.instance_types)
    }
}

/// A cloud's `endpoint_url`: an http(s) URL.
pub(super) fn check_endpoint_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && !url.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{url:?} is not an http(s) URL"),
        ))
    }
}

/// A group's alternate instance types (`key[i]`): known, listed once,
/// each with as many GPUs and at least the vCPUs and memory of `primary`,
/// because CA plans with the primary type's node.
pub(super) fn validate_alternates(
    key: &str,
    names: &[String],
    primary: &InstanceType,
    catalog: &[InstanceType],
) -> Result<(), (String, String)> {
    for (i, name) in names.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if names[..i].contains(name) {
            return Err((key, format!("{name:?} is listed twice")));
        }
        let ty = catalog.iter().find(|t| &t.name == name).ok_or_else(|| {
            (
                key.clone(),
                format!("{name:?} is not an instance type of this region's catalog"),
            )
        })?;
        let gpus = |t: &InstanceType| t.gpu.as_ref().map_or(0, |g| g.count);
        if gpus(ty) != gpus(primary)
            || ty.vcpus < primary.vcpus
            || ty.memory_mib < primary.memory_mib
        {
            return Err((
                key,
                format!(
                    "{name} ({} GPUs, {} vCPUs, {} MiB) is smaller than or differs from instance_type {} ({} GPUs, {} vCPUs, {} MiB): CA plans with the instance_type's node, so every type must have as many GPUs and at least its vCPUs and memory",
                    gpus(ty),
                    ty.vcpus,
                    ty.memory_mib,
                    primary.name,
                    gpus(primary),
                    primary.vcpus,
                    primary.memory_mib
                ),
            ));
        }
    }
    Ok(())
}

/// The group's own type first, then its alternates.
pub(super) fn primary_first(primary: &str, alternates: &[String]) -> Vec<String> {
    let mut types = vec![primary.to_owned()];
    types.extend(alternates.iter().filter(|t| *t != primary).cloned());
    types
}

/// `<prefix><8 or 17 hex digits>`, as EC2 resource ids are.
fn is_aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        (8..=17).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// A launch template tagged for the cluster's autoscaler, as the backend
/// found it: plain data, so the rules below need no SDK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredTemplate {
    pub id: String,
    pub name: String,
    /// The version groups launch.
    pub version: String,
    /// The instance type that version names, if any.
    pub instance_type: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// Tags that make the group itself; every other `gpupool.dev/` tag, and
/// CA's `k8s.io/cluster-autoscaler/node-template/` ones, are the group's
/// annotations.
pub const TAG_NODE_GROUP: &str = "gpupool.dev/node-group";
pub const TAG_MIN_SIZE: &str = "gpupool.dev/min-size";
pub const TAG_MAX_SIZE: &str = "gpupool.dev/max-size";
pub const TAG_INSTANCE_TYPES: &str = "gpupool.dev/instance-types";
pub const TAG_SUBNETS: &str = "gpupool.dev/subnets";
pub const TAG_ZONES: &str = "gpupool.dev/zones";
pub const TAG_VERSION: &str = "gpupool.dev/launch-template-version";

impl DiscoveredTemplate {
    /// The node group its tags declare, checked later with the rest of the
    /// config. Errors name the template and the tag.
    pub fn node_group(&self) -> Result<NodeGroupConfig, ConfigError> {
        let err = |tag: &str, reason: String| {
            ConfigError::invalid(
                format!("launch template {} ({}): tag {tag}", self.name, self.id),
                reason,
            )
        };
        let size = |tag: &str| -> Result<Option<u32>, ConfigError> {
            self.tags
                .get(tag)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .map_err(|_| err(tag, format!("{v:?} is not a whole number")))
                })
                .transpose()
        };
        let list = |tag: &str| -> Vec<String> {
            self.tags
                .get(tag)
                .map(|v| {
                    v.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let max_size = size(TAG_MAX_SIZE)?.ok_or_else(|| {
            err(
                TAG_MAX_SIZE,
                "missing: a discovered group needs its largest size (launch templates have none)"
                    .into(),
            )
        })?;
        let mut types = list(TAG_INSTANCE_TYPES);
        if types.is_empty() {
            types.extend(self.instance_type.clone());
        }
        if types.is_empty() {
            return Err(err(
                TAG_INSTANCE_TYPES,
                format!(
                    "missing, and version {} of the template names no instance type",
                    self.version
                ),
            ));
        }
        let instance_type = types.remove(0);
        let structural = [
            TAG_NODE_GROUP,
            TAG_MIN_SIZE,
            TAG_MAX_SIZE,
            TAG_INSTANCE_TYPES,
            TAG_SUBNETS,
            TAG_ZONES,
            TAG_VERSION,
        ];
        let annotations = self
            .tags
            .iter()
            .filter(|(k, _)| {
                (k.starts_with("gpupool.dev/") && !structural.contains(&k.as_str()))
                    || k.starts_with(super::CA_TEMPLATE_PREFIX)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let id = match self.tags.get(TAG_NODE_GROUP) {
            Some(id) => id.clone(),
            None if super::is_group_id(&self.name) => self.name.clone(),
            None => {
                return Err(err(
                    TAG_NODE_GROUP,
                    format!(
                        "missing, and the template's name {:?} is no group id (1-63 of a-z, 0-9 and '-'): set the tag",
                        self.name
                    ),
                ));
            }
        };
        Ok(NodeGroupConfig {
            id,
            min_size: size(TAG_MIN_SIZE)?.unwrap_or(0),
            max_size,
            instance_type,
            zones: list(TAG_ZONES),
            capacity_type: None,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            annotations,
            aws: Some(AwsGroupConfig {
                launch_template: LaunchTemplateRef {
                    id: Some(self.id.clone()),
                    name: None,
                    version: self.version.clone(),
                },
                instance_types: types,
                subnets: list(TAG_SUBNETS),
            }),
            gcp: None,
            azure: None,
        })
    }
}
