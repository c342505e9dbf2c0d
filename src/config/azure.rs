//! The config's Azure parts: the installation (`azure:`, its subscription,
//! resource group, cluster name and endpoints) and each group's Flexible
//! scale set or VM description and alternate sizes
//! (`node_groups[].azure`). Plain data, checked here; the backend turns it
//! into the Azure crate's settings.

use super::aws::{check_endpoint_url, primary_first, validate_alternates};
use super::{ConfigError, NodeGroupConfig};
use gpupool_cloud::InstanceType;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `azure:` — the installation, when `cloud: azure`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    pub subscription_id: String,
    /// The resource group VMs are made in and scale sets read from (with
    /// AKS, the node resource group `MC_<rg>_<cluster>_<location>`).
    pub resource_group: String,
    /// The cluster's name: tagged on every VM (`gpupool-cluster`), what
    /// finds them again, and the `cluster-autoscaler-name` tag discovery
    /// looks for. 1-63 of letters, digits, '-', '_' and '.'.
    pub cluster: String,
    /// Resource Manager's URL instead of the public cloud's (a sovereign
    /// cloud, a test server). Credentials still come from the environment
    /// or managed identity.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The Retail Prices API's URL instead of `https://prices.azure.com`.
    #[serde(default)]
    pub prices_url: Option<String>,
    /// Also serve the Flexible scale sets of the resource group tagged
    /// `cluster-autoscaler-enabled: true` and `cluster-autoscaler-name:
    /// <cluster>` (CA-on-Azure's discovery tags, read at start).
    #[serde(default)]
    pub discover_scale_sets: bool,
}

/// `node_groups[].azure` — how a group's VMs are made: into a Flexible
/// scale set from its profile, or from a VM description.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureGroupConfig {
    /// A scale set in Flexible orchestration mode, by name in the resource
    /// group. gpupool makes each VM from its `virtualMachineProfile` (the
    /// node's bootstrap must be in its `userData`: `customData` cannot be
    /// read back) and sets the size, zone, priority and tags.
    #[serde(default)]
    pub scale_set: Option<String>,
    /// The VM described here instead.
    #[serde(default)]
    pub vm: Option<VmConfig>,
    /// More sizes to try besides the group's `instance_type` (which stays
    /// first and shapes the template node): each with as many GPUs and at
    /// least its vCPUs and memory.
    #[serde(default)]
    pub vm_sizes: Vec<String>,
}

/// A VM without a scale set.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// A marketplace image URN (`microsoft-dsvm:ubuntu-hpc:2204:latest`)
    /// or an image resource id (`/subscriptions/…/galleries/…/versions/…`).
    pub image: String,
    /// The subnet's resource id.
    pub subnet_id: String,
    #[serde(default = "default_admin")]
    pub admin_username: String,
    /// OpenSSH public keys; password log-in stays off.
    pub ssh_public_keys: Vec<String>,
    #[serde(default = "default_os_disk_gib")]
    pub os_disk_gib: u32,
    #[serde(default = "default_os_disk_type")]
    pub os_disk_type: String,
    /// The node's bootstrap (cloud-init), sent as `customData`.
    #[serde(default)]
    pub custom_data: Option<String>,
    /// User-assigned managed identities (resource ids), e.g. the kubelet's.
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default = "default_true")]
    pub accelerated_networking: bool,
}

fn default_admin() -> String {
    "azureuser".to_owned()
}

fn default_os_disk_gib() -> u32 {
    256
}

fn default_os_disk_type() -> String {
    "Premium_LRS".to_owned()
}

fn default_true() -> bool {
    true
}

const DISK_TYPES: &[&str] = &[
    "Standard_LRS",
    "StandardSSD_LRS",
    "StandardSSD_ZRS",
    "Premium_LRS",
    "Premium_ZRS",
    "PremiumV2_LRS",
];

impl AzureConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_guid(&self.subscription_id) {
            return Err(ConfigError::invalid(
                "azure.subscription_id",
                format!(
                    "{:?} is not a subscription id (a GUID, 00000000-0000-0000-0000-000000000000)",
                    self.subscription_id
                ),
            ));
        }
        let rg = &self.resource_group;
        let rg_ok = (1..=90).contains(&rg.len())
            && !rg.ends_with('.')
            && rg
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
        if !rg_ok {
            return Err(ConfigError::invalid(
                "azure.resource_group",
                format!(
                    "{rg:?} is not a resource group name (1-90 of letters, digits, '-', '_', '.', '(' and ')', not ending in '.')"
                ),
            ));
        }
        let c = &self.cluster;
        let cluster_ok = (1..=63).contains(&c.len())
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !cluster_ok {
            return Err(ConfigError::invalid(
                "azure.cluster",
                format!(
                    "{c:?} must be 1-63 of letters, digits, '-', '_' and '.' (it tags and finds this installation's VMs)"
                ),
            ));
        }
        if let Some(url) = &self.endpoint_url {
            check_endpoint_url("azure.endpoint_url", url)?;
        }
        if let Some(url) = &self.prices_url {
            check_endpoint_url("azure.prices_url", url)?;
        }
        Ok(())
    }
}

/// `8-4-4-4-12` hex digits.
fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A scale set's name: 1-64 of letters, digits, '-', '_' and '.'.
fn is_scale_set_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A resource id of `kind` (`/subscriptions/S/…/<kind>/<name>`).
fn is_resource_id(id: &str, kind: &str) -> bool {
    id.starts_with("/subscriptions/")
        && id
            .rsplit('/')
            .nth(1)
            .is_some_and(|k| k.eq_ignore_ascii_case(kind))
        && !id.ends_with('/')
        && !id.contains(char::is_whitespace)
}

impl AzureGroupConfig {
    /// Checks the group's Azure settings against the catalog and its
    /// primary size; `Err((key, reason))`.
    pub(super) fn validate(
        &self,
        primary: &InstanceType,
        catalog: &[InstanceType],
    ) -> Result<(), (String, String)> {
        self.validate_shape()?;
        validate_alternates("azure.vm_sizes", &self.vm_sizes, primary, catalog)
    }

    /// What can be checked without a catalog.
    pub fn validate_shape(&self) -> Result<(), (String, String)> {
        match (&self.scale_set, &self.vm) {
            (Some(_), Some(_)) | (None, None) => Err((
                "azure".into(),
                "give exactly one of scale_set and vm".into(),
            )),
            (Some(s), None) if !is_scale_set_name(s) => Err((
                "azure.scale_set".into(),
                format!(
                    "{s:?} is not a scale set name (1-64 of letters, digits, '-', '_' and '.'; the name, not the resource id)"
                ),
            )),
            (Some(_), None) => Ok(()),
            (None, Some(vm)) => vm.validate(),
        }
    }

    /// The sizes tried: the group's own first.
    pub fn all_sizes(&self, primary: &str) -> Vec<String> {
        primary_first(primary, &self.vm_sizes)
    }
}

impl VmConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        let urn = self.image.split(':').count() == 4
            && self.image.split(':').all(|p| !p.is_empty())
            && !self.image.contains(char::is_whitespace);
        if !urn && !self.image.starts_with("/subscriptions/") {
            return Err((
                "azure.vm.image".into(),
                format!(
                    "{:?} is neither an image URN (publisher:offer:sku:version) nor an image resource id (/subscriptions/…)",
                    self.image
                ),
            ));
        }
        if !is_resource_id(&self.subnet_id, "subnets") {
            return Err((
                "azure.vm.subnet_id".into(),
                format!(
                    "{:?} is not a subnet resource id (/subscriptions/S/resourceGroups/R/providers/Microsoft.Network/virtualNetworks/V/subnets/N)",
                    self.subnet_id
                ),
            ));
        }
        let u = &self.admin_username;
        let user_ok = (1..=64).contains(&u.len())
            && u.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && u.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
            && !["root", "admin", "administrator"].contains(&u.as_str());
        if !user_ok {
            return Err((
                "azure.vm.admin_username".into(),
                format!(
                    "{u:?} is not an admin user name Azure accepts (1-64 of a-z, 0-9, '-', '_'; not root or admin)"
                ),
            ));
        }
        if self.ssh_public_keys.is_empty() {
            return Err((
                "azure.vm.ssh_public_keys".into(),
                "give at least one: Linux VMs are made with password log-in off".into(),
            ));
        }
        for (i, k) in self.ssh_public_keys.iter().enumerate() {
            let known = ["ssh-rsa ", "ssh-ed25519 ", "ecdsa-sha2-"]
                .iter()
                .any(|p| k.starts_with(p));
            if !known {
                return Err((
                    format!("azure.vm.ssh_public_keys[{i}]"),
                    "not an OpenSSH public key (ssh-rsa, ssh-ed25519 or ecdsa-sha2-…)".into(),
                ));
            }
        }
        if !(30..=4_095).contains(&self.os_disk_gib) {
            return Err((
                "azure.vm.os_disk_gib".into(),
                format!("{} must be 30-4095", self.os_disk_gib),
            ));
        }
        if !DISK_TYPES.contains(&self.os_disk_type.as_str()) {
            return Err((
                "azure.vm.os_disk_type".into(),
                format!(
                    "{:?} is not an OS disk type ({})",
                    self.os_disk_type,
                    DISK_TYPES.join(", ")
                ),
            ));
        }
        for (i, id) in self.identities.iter().enumerate() {
            if !is_resource_id(id, "userAssignedIdentities") {
                return Err((
                    format!("azure.vm.identities[{i}]"),
                    format!("{id:?} is not a user-assigned identity's resource id"),
                ));
            }
        }
        Ok(())
    }
}

/// A group's zones on Azure are Kubernetes' labels: `<location>-<1|2|3>`.
pub fn check_zones(region: &str, zones: &[String]) -> Result<(), (String, String)> {
    for (i, z) in zones.iter().enumerate() {
        let ok = z
            .strip_prefix(region)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|n| matches!(n, "1" | "2" | "3"));
        if !ok {
            return Err((
                format!("zones[{i}]"),
                format!(
                    "{z:?} is not a zone of {region} as Kubernetes labels it ({region}-1, {region}-2, {region}-3)"
                ),
            ));
        }
    }
    Ok(())
}

/// A Flexible scale set tagged for the cluster, as the backend found it:
/// plain data, so the rules below need no SDK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredScaleSet {
    pub name: String,
    pub size: String,
    /// Zone labels.
    pub zones: Vec<String>,
    pub spot: bool,
    pub tags: BTreeMap<String, String>,
}

/// CA-on-Azure's size tags (the backend finds the scale sets by
/// `cluster-autoscaler-enabled` and `cluster-autoscaler-name`), and
/// gpupool's own for what they do not say.
pub const TAG_MIN: &str = "min";
pub const TAG_MAX: &str = "max";
/// CA's node template of a group at zero, as tags:
/// `k8s.io_cluster-autoscaler_node-template_<label|taint|resources|autoscaling-options>_<key>`,
/// the key's `/` written `_` and its `_` written `~2` (a taint's value is
/// `value:Effect`): CA's `k8s.io/cluster-autoscaler/node-template/` keys.
pub const TAG_TEMPLATE_PREFIX: &str = "k8s.io_cluster-autoscaler_node-template_";
/// The group's id when the scale set's name is not one.
pub const TAG_NODE_GROUP: &str = "gpupool-node-group";
/// `spot`, `on-demand` or `spot-then-on-demand` (else: the profile's
/// priority).
pub const TAG_CAPACITY: &str = "gpupool-capacity-type";

/// A tag key's Kubernetes key: `_` is `/`, `~2` is `_`.
fn decode_key(tag: &str) -> String {
    tag.replace('_', "/").replace("~2", "_")
}

impl DiscoveredScaleSet {
    /// The node group its tags declare, checked later with the rest of the
    /// config. Errors name the scale set and the tag.
    pub fn node_group(&self) -> Result<NodeGroupConfig, ConfigError> {
        let err = |tag: &str, reason: String| {
            ConfigError::invalid(format!("scale set {}: tag {tag}", self.name), reason)
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
        let max_size = size(TAG_MAX)?.ok_or_else(|| {
            err(
                TAG_MAX,
                "missing: a discovered group needs its largest size".into(),
            )
        })?;
        if self.size.is_empty() {
            return Err(err("sku.name", "the scale set names no VM size".into()));
        }
        let capacity_type = match self.tags.get(TAG_CAPACITY) {
            Some(v) => Some(serde_yaml::from_str(v).map_err(|_| {
                err(
                    TAG_CAPACITY,
                    format!("{v:?} is not spot, on-demand or spot-then-on-demand"),
                )
            })?),
            None if self.spot => Some(gpupool_cloud::PurchaseOption::Spot),
            None => Some(gpupool_cloud::PurchaseOption::OnDemand),
        };
        let id = match self.tags.get(TAG_NODE_GROUP) {
            Some(id) => id.clone(),
            None => self.name.clone(),
        };
        if !super::is_group_id(&id) {
            return Err(err(
                TAG_NODE_GROUP,
                format!(
                    "{id:?} is no group id (1-63 of a-z, 0-9 and '-'); tag the scale set with one"
                ),
            ));
        }
        // CA's node-template tags become the group's CA template
        // annotations, read like those of declared groups and of AWS tags.
        let mut annotations = BTreeMap::new();
        for (k, v) in &self.tags {
            let Some(rest) = k.strip_prefix(TAG_TEMPLATE_PREFIX) else {
                continue;
            };
            let (kind, name) = rest.split_once('_').ok_or_else(|| {
                err(
                    k,
                    "expected label_<key>, taint_<key>, resources_<name> or autoscaling-options_<option> after the prefix".into(),
                )
            })?;
            annotations.insert(
                format!("{}{kind}/{}", super::CA_TEMPLATE_PREFIX, decode_key(name)),
                v.clone(),
            );
        }
        Ok(NodeGroupConfig {
            id,
            min_size: size(TAG_MIN)?.unwrap_or(0),
            max_size,
            instance_type: self.size.clone(),
            zones: self.zones.clone(),
            capacity_type,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            annotations,
            aws: None,
            gcp: None,
            azure: Some(AzureGroupConfig {
                scale_set: Some(self.name.clone()),
                vm: None,
                vm_sizes: Vec::new(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, GroupSpec};

    fn catalog() -> Vec<InstanceType> {
        crate::catalog::builtin(crate::config::CloudKind::Azure)
    }

    fn check(yaml: &str) -> Result<Vec<GroupSpec>, ConfigError> {
        let config: Config = serde_yaml::from_str(yaml).expect("parses");
        config.validate(&catalog(), None)
    }

    const HEAD: &str = "cloud: azure\nregion: eastus\nazure: {subscription_id: 6e8f0d3a-6c1b-4f3e-9d2a-2f1b0c9e8d7a, resource_group: mc_gpu_prod_eastus, cluster: prod}\n";

    #[test]
    fn azure_groups_name_a_scale_set_or_a_vm_and_their_sizes() {
        let yaml = format!(
            "{HEAD}node_groups:
  - id: nd
    min_size: 0
    max_size: 4
    instance_type: Standard_ND96isr_H100_v5
    zones: [eastus-1, eastus-2]
    azure: {{scale_set: nd-h100}}
  - id: nc
    min_size: 0
    max_size: 8
    instance_type: Standard_NC24ads_A100_v4
    azure:
      vm:
        image: microsoft-dsvm:ubuntu-hpc:2204:latest
        subnet_id: /subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/gpu
        ssh_public_keys: [ssh-ed25519 AAAAC3Nza]
"
        );
        let specs = check(&yaml).expect("valid");
        assert_eq!(specs.len(), 2);
    }

    #[test]
    fn bad_azure_settings_are_named() {
        let bad = |head: &str, group_azure: &str, zones: &str, key: &str| {
            let yaml = format!(
                "{head}node_groups:\n  - id: nd\n    min_size: 0\n    max_size: 4\n    instance_type: Standard_ND96isr_H100_v5\n    zones: {zones}\n    azure: {group_azure}\n"
            );
            let e = check(&yaml).expect_err(key).to_string();
            assert!(e.contains(key), "{key}: {e}");
        };
        let ok = "{scale_set: nd-h100}";
        bad(
            &HEAD.replace("6e8f0d3a-6c1b", "6e8f0d3a6c1b"),
            ok,
            "[]",
            "azure.subscription_id",
        );
        bad(
            &HEAD.replace("mc_gpu_prod_eastus", "'bad/rg'"),
            ok,
            "[]",
            "azure.resource_group",
        );
        bad(
            &HEAD.replace("cluster: prod", "cluster: 'prod cluster'"),
            ok,
            "[]",
            "azure.cluster",
        );
        bad(HEAD, "{}", "[]", "azure");
        bad(
            HEAD,
            "{scale_set: '/subscriptions/x/nd'}",
            "[]",
            "azure.scale_set",
        );
        bad(HEAD, ok, "['1']", "zones[0]");
        bad(
            HEAD,
            "{scale_set: nd, vm_sizes: [Standard_NC24ads_A100_v4]}",
            "[]",
            "azure.vm_sizes",
        );
        // A valid VM with one field replaced or added.
        let vm = |key: &str, value: &str| {
            let mut fields = BTreeMap::from([
                ("image", "'a:b:c:latest'"),
                (
                    "subnet_id",
                    "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/gpu",
                ),
                ("ssh_public_keys", "['ssh-ed25519 AAAA']"),
            ]);
            fields.insert(key, value);
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("{{vm: {{{}}}}}", fields.join(", "))
        };
        bad(HEAD, &vm("image", "ubuntu"), "[]", "azure.vm.image");
        bad(HEAD, &vm("subnet_id", "gpu"), "[]", "azure.vm.subnet_id");
        bad(
            HEAD,
            &vm("admin_username", "root"),
            "[]",
            "azure.vm.admin_username",
        );
        bad(
            HEAD,
            &vm("ssh_public_keys", "[]"),
            "[]",
            "azure.vm.ssh_public_keys",
        );
        bad(HEAD, &vm("os_disk_gib", "10"), "[]", "azure.vm.os_disk_gib");
        bad(
            HEAD,
            &vm("os_disk_type", "pd-ssd"),
            "[]",
            "azure.vm.os_disk_type",
        );
        bad(
            HEAD,
            &vm("identities", "[kubelet]"),
            "[]",
            "azure.vm.identities[0]",
        );
        // The section is required with cloud: azure, refused with another.
        let e = check("cloud: azure\nregion: eastus\nnode_groups: []\n").expect_err("no azure");
        assert!(e.to_string().contains("azure"), "{e}");
    }

    fn scale_set(tags: &[(&str, &str)]) -> DiscoveredScaleSet {
        DiscoveredScaleSet {
            name: "nd-h100".into(),
            size: "Standard_ND96isr_H100_v5".into(),
            zones: vec!["eastus-1".into()],
            spot: true,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_tagged_scale_set_declares_a_group_the_way_ca_reads_it() {
        let g = scale_set(&[
            ("cluster-autoscaler-enabled", "true"),
            ("cluster-autoscaler-name", "prod"),
            (TAG_MIN, "1"),
            (TAG_MAX, "6"),
            (
                "k8s.io_cluster-autoscaler_node-template_label_gpupool.dev_team",
                "research",
            ),
            (
                "k8s.io_cluster-autoscaler_node-template_label_node~2pool",
                "gpu",
            ),
            (
                "k8s.io_cluster-autoscaler_node-template_taint_nvidia.com_gpu",
                "present:NoSchedule",
            ),
        ])
        .node_group()
        .expect("a group");
        assert_eq!((g.id.as_str(), g.min_size, g.max_size), ("nd-h100", 1, 6));
        assert_eq!(g.capacity_type, Some(gpupool_cloud::PurchaseOption::Spot));
        // The node-template tags are CA's template keys, which the group's
        // template node carries once the config is checked.
        let spec = group_spec(g.clone());
        assert_eq!(
            spec.labels.get("gpupool.dev/team").map(String::as_str),
            Some("research")
        );
        assert_eq!(
            spec.labels.get("node_pool").map(String::as_str),
            Some("gpu")
        );
        assert_eq!(spec.taints[0].key, "nvidia.com/gpu");
        assert_eq!(
            g.azure.and_then(|a| a.scale_set).as_deref(),
            Some("nd-h100")
        );
    }

    #[test]
    fn bad_discovery_tags_name_the_scale_set_and_the_tag() {
        let e = scale_set(&[]).node_group().expect_err("no max").to_string();
        assert!(e.contains("scale set nd-h100: tag max"), "{e}");
        let e = scale_set(&[(TAG_MAX, "many")])
            .node_group()
            .expect_err("bad max")
            .to_string();
        assert!(e.contains("tag max"), "{e}");
        let mut upper = scale_set(&[(TAG_MAX, "2")]);
        upper.name = "ND_H100".into();
        let e = upper.node_group().expect_err("not an id").to_string();
        assert!(e.contains(TAG_NODE_GROUP), "{e}");
        let e = scale_set(&[(TAG_MAX, "2"), (TAG_TEMPLATE_PREFIX, "x")])
            .node_group()
            .expect_err("no kind")
            .to_string();
        assert!(e.contains(&format!("tag {TAG_TEMPLATE_PREFIX}")), "{e}");
        // A malformed template tag is refused when the group is checked,
        // naming the CA template key it stands for.
        let g = scale_set(&[
            (TAG_MAX, "2"),
            (
                "k8s.io_cluster-autoscaler_node-template_taint_gpu",
                "present",
            ),
        ])
        .node_group()
        .expect("a group");
        let mut config: Config =
            serde_yaml::from_str(&format!("{HEAD}node_groups: []\n")).expect("parses");
        config.node_groups.push(g);
        let e = config
            .validate(&catalog(), None)
            .expect_err("bad taint")
            .to_string();
        assert!(
            e.contains("node-template/taint/gpu") && e.contains("<value>:<Effect>"),
            "{e}"
        );
    }

    /// A discovered group checked with the rest of an Azure config.
    fn group_spec(group: NodeGroupConfig) -> GroupSpec {
        let mut config: Config =
            serde_yaml::from_str(&format!("{HEAD}node_groups: []\n")).expect("parses");
        config.node_groups.push(group);
        config.validate(&catalog(), None).expect("valid").remove(0)
    }
}
