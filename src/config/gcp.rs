//! The config's GCP parts: the installation (`gcp:`, its project, cluster
//! name and endpoint) and each group's instance template or machine
//! description, alternate machine types and attached GPUs
//! (`node_groups[].gcp`). Plain data, checked here; the backend turns it
//! into the Compute Engine crate's settings.

use super::aws::{check_endpoint_url, primary_first, validate_alternates};
use super::{ConfigError, NodeGroupConfig};
use gpupool_cloud::InstanceType;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `gcp:` — the installation, when `cloud: gcp`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    /// The project instances run in.
    pub project: String,
    /// The cluster's name: labelled on every instance gpupool creates
    /// (`gpupool-cluster`) and the filter that finds them again, so it
    /// must be unique per project. A label value: 1-63 of a-z, 0-9, '-', '_'.
    pub cluster: String,
    /// One URL for Compute Engine and the billing catalog instead of
    /// Google's (a test server, Private Service Connect). Credentials still
    /// come from Application Default Credentials.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Also serve the groups of global instance templates labelled
    /// `gpupool-cluster: <cluster>` and `gpupool-max-size` (read at start).
    #[serde(default)]
    pub discover_instance_templates: bool,
}

/// `node_groups[].gcp` — how a group's instances are made: from an
/// instance template, or from a machine description.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpGroupConfig {
    /// A global instance template by name or as
    /// `projects/<project>/global/instanceTemplates/<name>`. gpupool sets
    /// the machine type, provisioning model and labels per request and
    /// keeps the rest (disks, network, service account, metadata).
    #[serde(default)]
    pub instance_template: Option<String>,
    /// The instance described here instead of a template.
    #[serde(default)]
    pub machine: Option<MachineConfig>,
    /// More machine types to try besides the group's `instance_type`
    /// (which stays first and shapes the template node): each with as many
    /// GPUs and at least its vCPUs and memory.
    #[serde(default)]
    pub machine_types: Vec<String>,
    /// GPUs to attach to an N1 machine type (A2, A3 and G2 come with
    /// theirs).
    #[serde(default)]
    pub guest_accelerators: Option<GuestAccelerators>,
}

/// An instance without a template.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// Boot image or family, e.g. `projects/cos-cloud/global/images/family/cos-121-lts`.
    pub image: String,
    #[serde(default = "default_disk_gib")]
    pub boot_disk_gib: u32,
    #[serde(default = "default_disk_type")]
    pub boot_disk_type: String,
    /// `global/networks/<name>`; absent: `default`.
    #[serde(default)]
    pub network: Option<String>,
    /// `regions/<region>/subnetworks/<name>`.
    #[serde(default)]
    pub subnetwork: Option<String>,
    /// The nodes' service account (e-mail); absent: none.
    #[serde(default)]
    pub service_account: Option<String>,
    /// Network tags, for firewall rules.
    #[serde(default)]
    pub network_tags: Vec<String>,
    /// Instance metadata: the node's bootstrap (`kube-env`, `user-data`,
    /// `startup-script`, …).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn default_disk_gib() -> u32 {
    200
}

fn default_disk_type() -> String {
    "pd-balanced".to_owned()
}

/// A GPU type attached to each instance, and how many.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestAccelerators {
    /// Compute Engine's accelerator type: `nvidia-tesla-t4`, `nvidia-tesla-v100`, …
    #[serde(rename = "type")]
    pub accelerator_type: String,
    pub count: u32,
}

impl GcpConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.project;
        // Project ids: 6-30 of a-z, 0-9 and '-', starting with a letter;
        // legacy domain-scoped ones are `example.com:project`.
        let id = p.rsplit(':').next().unwrap_or(p);
        let id_ok = (6..=30).contains(&id.len())
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && !id.ends_with('-')
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(ConfigError::invalid(
                "gcp.project",
                format!(
                    "{p:?} is not a project id (6-30 of a-z, 0-9 and '-', starting with a letter)"
                ),
            ));
        }
        if !is_label_value(&self.cluster) || self.cluster.is_empty() {
            return Err(ConfigError::invalid(
                "gcp.cluster",
                format!(
                    "{:?} must be a label value: 1-63 of a-z, 0-9, '-' and '_' (it labels and finds this installation's instances)",
                    self.cluster
                ),
            ));
        }
        if let Some(url) = &self.endpoint_url {
            check_endpoint_url("gcp.endpoint_url", url)?;
        }
        Ok(())
    }
}

/// A Compute Engine label value.
pub(crate) fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A Compute Engine resource name: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`.
fn is_resource_name(n: &str) -> bool {
    (1..=63).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && !n.ends_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Machine families whose GPUs are attached by choice.
fn takes_guest_gpus(machine_type: &str) -> bool {
    machine_type.starts_with("n1-")
}

impl GcpGroupConfig {
    /// Checks the group's GCP settings against the catalog and its primary
    /// type; `Err((key under gcp., reason))`.
    pub(super) fn validate(
        &self,
        primary: &InstanceType,
        catalog: &[InstanceType],
    ) -> Result<(), (String, String)> {
        self.validate_shape(&primary.name)?;
        validate_alternates("gcp.machine_types", &self.machine_types, primary, catalog)
    }

    /// What can be checked without a catalog.
    pub fn validate_shape(&self, instance_type: &str) -> Result<(), (String, String)> {
        match (&self.instance_template, &self.machine) {
            (Some(_), Some(_)) | (None, None) => {
                return Err((
                    "gcp".into(),
                    "give exactly one of instance_template and machine".into(),
                ));
            }
            (Some(t), None) => {
                let name = match t.strip_prefix("projects/") {
                    Some(rest) => {
                        let parts: Vec<&str> = rest.split('/').collect();
                        match parts.as_slice() {
                            [_, "global", "instanceTemplates", name] => *name,
                            [_, "regions", ..] => {
                                return Err((
                                    "gcp.instance_template".into(),
                                    format!(
                                        "{t:?} is a regional template; use a global one (projects/P/global/instanceTemplates/N)"
                                    ),
                                ));
                            }
                            _ => "",
                        }
                    }
                    None => t.as_str(),
                };
                if !is_resource_name(name) {
                    return Err((
                        "gcp.instance_template".into(),
                        format!(
                            "{t:?} is not a template name (1-63 of a-z, 0-9, '-') or projects/P/global/instanceTemplates/N"
                        ),
                    ));
                }
            }
            (None, Some(m)) => m.validate()?,
        }
        match &self.guest_accelerators {
            Some(a) => {
                let all = primary_first(instance_type, &self.machine_types);
                if let Some(t) = all.iter().find(|t| !takes_guest_gpus(t)) {
                    return Err((
                        "gcp.guest_accelerators".into(),
                        format!(
                            "{t} comes with its GPUs (A2, A3 and G2 bundle them); attach GPUs only to N1 machine types"
                        ),
                    ));
                }
                if !is_resource_name(&a.accelerator_type) {
                    return Err((
                        "gcp.guest_accelerators.type".into(),
                        format!(
                            "{:?} is not an accelerator type (nvidia-tesla-t4)",
                            a.accelerator_type
                        ),
                    ));
                }
                if ![1, 2, 4, 8].contains(&a.count) {
                    return Err((
                        "gcp.guest_accelerators.count".into(),
                        format!("{} must be 1, 2, 4 or 8", a.count),
                    ));
                }
            }
            None => {
                if let Some(t) = primary_first(instance_type, &self.machine_types)
                    .iter()
                    .find(|t| takes_guest_gpus(t))
                {
                    return Err((
                        "gcp.guest_accelerators".into(),
                        format!("required for {t}: N1 machine types have no GPUs of their own"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The machine types tried: the group's own first.
    pub fn all_types(&self, primary: &str) -> Vec<String> {
        primary_first(primary, &self.machine_types)
    }
}

impl MachineConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.image.trim().is_empty() || self.image.contains(char::is_whitespace) {
            return Err((
                "gcp.machine.image".into(),
                format!(
                    "{:?} is not an image URL (projects/P/global/images/family/F)",
                    self.image
                ),
            ));
        }
        if !(10..=65_536).contains(&self.boot_disk_gib) {
            return Err((
                "gcp.machine.boot_disk_gib".into(),
                format!("{} must be 10-65536", self.boot_disk_gib),
            ));
        }
        if !is_resource_name(&self.boot_disk_type) {
            return Err((
                "gcp.machine.boot_disk_type".into(),
                format!(
                    "{:?} is not a disk type (pd-balanced, pd-ssd, hyperdisk-balanced)",
                    self.boot_disk_type
                ),
            ));
        }
        for (i, tag) in self.network_tags.iter().enumerate() {
            if !is_resource_name(tag) {
                return Err((
                    format!("gcp.machine.network_tags[{i}]"),
                    format!("{tag:?} is not a network tag (1-63 of a-z, 0-9, '-')"),
                ));
            }
        }
        if let Some(sa) = &self.service_account
            && !sa.contains('@')
        {
            return Err((
                "gcp.machine.service_account".into(),
                format!("{sa:?} is not a service account e-mail"),
            ));
        }
        Ok(())
    }
}

/// A global instance template labelled for the cluster, as the backend
/// found it: plain data, so the rules below need no SDK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredInstanceTemplate {
    pub name: String,
    /// The machine type its properties name.
    pub machine_type: Option<String>,
    /// Its instance labels (`properties.labels`).
    pub labels: BTreeMap<String, String>,
    /// The GPUs its properties attach (N1): type and count.
    pub guest_accelerators: Option<(String, u32)>,
}

/// Labels that make a discovered group (label keys cannot hold `/` or `.`,
/// so these are the `gpupool.dev/` tags of AWS spelled as labels).
pub const LABEL_CLUSTER: &str = "gpupool-cluster";
pub const LABEL_NODE_GROUP: &str = "gpupool-node-group";
pub const LABEL_MIN_SIZE: &str = "gpupool-min-size";
pub const LABEL_MAX_SIZE: &str = "gpupool-max-size";
/// Zones as their letters, `a-c` for us-central1-a and us-central1-c
/// (label values cannot hold ',').
pub const LABEL_ZONES: &str = "gpupool-zones";
/// `spot`, `on-demand` or `spot-then-on-demand`.
pub const LABEL_CAPACITY: &str = "gpupool-capacity-type";

impl DiscoveredInstanceTemplate {
    /// The node group its labels declare in `region`, checked later with
    /// the rest of the config. Errors name the template and the label.
    pub fn node_group(&self, region: &str) -> Result<NodeGroupConfig, ConfigError> {
        let err = |label: &str, reason: String| {
            ConfigError::invalid(
                format!("instance template {}: label {label}", self.name),
                reason,
            )
        };
        let size = |label: &str| -> Result<Option<u32>, ConfigError> {
            self.labels
                .get(label)
                .map(|v| {
                    v.parse::<u32>()
                        .map_err(|_| err(label, format!("{v:?} is not a whole number")))
                })
                .transpose()
        };
        if !self.labels.contains_key(LABEL_CLUSTER) {
            return Err(err(
                LABEL_CLUSTER,
                "missing: only templates labelled for the cluster are groups".into(),
            ));
        }
        let max_size = size(LABEL_MAX_SIZE)?.ok_or_else(|| {
            err(
                LABEL_MAX_SIZE,
                "missing: a discovered group needs its largest size".into(),
            )
        })?;
        let instance_type = self.machine_type.clone().ok_or_else(|| {
            err(
                "properties.machineType",
                "the template names no machine type".into(),
            )
        })?;
        let zones = self
            .labels
            .get(LABEL_ZONES)
            .map(|v| {
                v.split('-')
                    .filter(|s| !s.is_empty())
                    .map(|letter| format!("{region}-{letter}"))
                    .collect()
            })
            .unwrap_or_default();
        let capacity_type = self
            .labels
            .get(LABEL_CAPACITY)
            .map(|v| {
                serde_yaml::from_str(v).map_err(|_| {
                    err(
                        LABEL_CAPACITY,
                        format!("{v:?} is not spot, on-demand or spot-then-on-demand"),
                    )
                })
            })
            .transpose()?;
        let id = match self.labels.get(LABEL_NODE_GROUP) {
            Some(id) => id.clone(),
            None => self.name.clone(),
        };
        if !super::is_group_id(&id) {
            return Err(err(
                LABEL_NODE_GROUP,
                format!("{id:?} is no group id (1-63 of a-z, 0-9 and '-')"),
            ));
        }
        Ok(NodeGroupConfig {
            id,
            min_size: size(LABEL_MIN_SIZE)?.unwrap_or(0),
            max_size,
            instance_type,
            zones,
            capacity_type,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            annotations: BTreeMap::new(),
            aws: None,
            gcp: Some(GcpGroupConfig {
                instance_template: Some(self.name.clone()),
                machine: None,
                machine_types: Vec::new(),
                guest_accelerators: self.guest_accelerators.clone().map(
                    |(accelerator_type, count)| GuestAccelerators {
                        accelerator_type,
                        count,
                    },
                ),
            }),
            azure: None,
        })
    }
}

/// The N1 machine types the config's groups attach GPUs to, as the live
/// catalog will hold them, for checks without Compute Engine
/// (`check-config`): N1 shapes follow from the name (`n1-standard-8`: 8
/// vCPUs × 3.75 GB), the GPUs from the group.
pub fn offline_n1_types(groups: &[NodeGroupConfig]) -> Vec<InstanceType> {
    let mut out: Vec<InstanceType> = Vec::new();
    for g in groups {
        let Some(gcp) = &g.gcp else { continue };
        let Some(a) = &gcp.guest_accelerators else {
            continue;
        };
        for name in gcp.all_types(&g.instance_type) {
            let Some((vcpus, memory_mib)) = n1_shape(&name) else {
                continue;
            };
            if out.iter().any(|t| t.name == name) {
                continue;
            }
            let (model, product, memory) = match a.accelerator_type.as_str() {
                "nvidia-tesla-t4" => ("T4", "Tesla-T4", 15_360),
                "nvidia-tesla-v100" => ("V100", "Tesla-V100-SXM2-16GB", 16_384),
                "nvidia-tesla-p100" => ("P100", "Tesla-P100-PCIE-16GB", 16_384),
                "nvidia-tesla-p4" => ("P4", "Tesla-P4", 7_680),
                _ => continue,
            };
            out.push(InstanceType {
                name,
                vcpus,
                memory_mib,
                arch: gpupool_cloud::Arch::Amd64,
                gpu: Some(gpupool_cloud::GpuInfo {
                    accelerator: a.accelerator_type.clone(),
                    model: model.into(),
                    product: product.into(),
                    count: a.count,
                    memory_mib: memory,
                }),
            });
        }
    }
    out
}

/// vCPUs and memory of a predefined N1 type from its name.
fn n1_shape(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("n1-")?;
    let (kind, cpus) = rest.rsplit_once('-')?;
    let vcpus: u32 = cpus.parse().ok()?;
    // GB per vCPU, in MiB (Compute Engine's GB here are GiB: 3.75 GB = 3840 MiB).
    let per_cpu = match kind {
        "standard" => 3840,
        "highmem" => 6656,
        "highcpu" => 921,
        _ => return None,
    };
    Some((vcpus, u64::from(vcpus) * per_cpu))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CloudKind, Config, GroupSpec};

    const GCP: &str = r#"
cloud: gcp
region: us-central1
gcp:
  project: ml-prod-4821
  cluster: prod-gpu
node_groups:
  - id: h100
    min_size: 0
    max_size: 4
    instance_type: a3-highgpu-8g
    capacity_type: spot-then-on-demand
    gcp:
      instance_template: gpu-a3
  - id: l4
    min_size: 0
    max_size: 8
    instance_type: g2-standard-4
    gcp:
      machine:
        image: projects/cos-cloud/global/images/family/cos-121-lts
        subnetwork: regions/us-central1/subnetworks/gpu-nodes
      machine_types: [g2-standard-8]
"#;

    /// The built-in GCP catalog and an N1 type with a T4 attached, as the
    /// backend's live catalog has it.
    fn catalog() -> Vec<InstanceType> {
        let mut types = crate::catalog::builtin(CloudKind::Gcp);
        types.push(InstanceType {
            name: "n1-standard-8".into(),
            vcpus: 8,
            memory_mib: 30_720,
            arch: gpupool_cloud::Arch::Amd64,
            gpu: Some(gpupool_cloud::GpuInfo {
                accelerator: "nvidia-tesla-t4".into(),
                model: "T4".into(),
                product: "Tesla-T4".into(),
                count: 1,
                memory_mib: 15_360,
            }),
        });
        types
    }

    fn check(yaml: &str) -> Result<Vec<GroupSpec>, ConfigError> {
        Config::from_yaml(yaml)?.validate(&catalog(), None)
    }

    #[test]
    fn gcp_groups_name_a_template_or_a_machine_and_their_types() {
        let specs = check(GCP).unwrap();
        assert_eq!(specs[0].instance_types, ["a3-highgpu-8g"]);
        assert_eq!(specs[1].instance_types, ["g2-standard-4", "g2-standard-8"]);
        let config = Config::from_yaml(GCP).unwrap();
        let machine = config.node_groups[1]
            .gcp
            .as_ref()
            .unwrap()
            .machine
            .clone()
            .unwrap();
        assert_eq!(
            (machine.boot_disk_gib, machine.boot_disk_type.as_str()),
            (200, "pd-balanced")
        );
        let n1 = GCP.replace(
            "      instance_template: gpu-a3\n",
            "      instance_template: projects/ml-prod-4821/global/instanceTemplates/gpu-n1\n      guest_accelerators: { type: nvidia-tesla-t4, count: 1 }\n",
        )
        .replace("a3-highgpu-8g", "n1-standard-8");
        check(&n1).unwrap();
        // Offline, the N1 type's shape comes from its name, its GPUs from
        // the group.
        let config = Config::from_yaml(&n1).unwrap();
        let mut offline = crate::catalog::builtin(CloudKind::Gcp);
        let n1_types = offline_n1_types(&config.node_groups);
        assert_eq!(n1_types.len(), 1);
        assert_eq!((n1_types[0].vcpus, n1_types[0].memory_mib), (8, 30_720));
        offline.extend(n1_types);
        config.validate(&offline, None).unwrap();
    }

    #[test]
    fn bad_gcp_settings_are_named() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "project: ml-prod-4821",
                "project: ML",
                "gcp.project: \"ML\" is not a project id",
            ),
            (
                "cluster: prod-gpu",
                "cluster: Prod.GPU",
                "gcp.cluster: \"Prod.GPU\" must be a label value",
            ),
            (
                "cluster: prod-gpu",
                "cluster: prod-gpu\n  endpoint_url: localhost:1",
                "gcp.endpoint_url: \"localhost:1\" is not an http(s) URL",
            ),
            (
                "instance_template: gpu-a3",
                "instance_template: gpu-a3\n      machine: { image: x }",
                "node group \"h100\": gcp: give exactly one of instance_template and machine",
            ),
            (
                "instance_template: gpu-a3",
                "instance_template: projects/p/regions/us-central1/instanceTemplates/t",
                "gcp.instance_template: \"projects/p/regions/us-central1/instanceTemplates/t\" is a regional template",
            ),
            (
                "instance_template: gpu-a3",
                "instance_template: GPU_A3",
                "gcp.instance_template: \"GPU_A3\" is not a template name",
            ),
            (
                "instance_template: gpu-a3",
                "instance_template: gpu-a3\n      guest_accelerators: { type: nvidia-tesla-t4, count: 1 }",
                "gcp.guest_accelerators: a3-highgpu-8g comes with its GPUs",
            ),
            (
                "[g2-standard-8]",
                "[a3-highgpu-8g]",
                "gcp.machine_types[0]: a3-highgpu-8g (8 GPUs",
            ),
            (
                "subnetwork: regions/us-central1/subnetworks/gpu-nodes",
                "subnetwork: regions/us-central1/subnetworks/gpu-nodes\n        boot_disk_gib: 5",
                "gcp.machine.boot_disk_gib: 5 must be 10-65536",
            ),
            (
                "subnetwork: regions/us-central1/subnetworks/gpu-nodes",
                "subnetwork: regions/us-central1/subnetworks/gpu-nodes\n        service_account: nodes",
                "gcp.machine.service_account: \"nodes\" is not a service account e-mail",
            ),
        ];
        for (from, to, expected) in cases {
            let yaml = GCP.replacen(from, to, 1);
            assert_ne!(yaml, GCP, "{from:?} is in the base config");
            let err = check(&yaml).unwrap_err().to_string();
            assert!(err.contains(expected), "{from:?} -> {to:?}: {err}");
        }
        let n1_bare = GCP.replacen("a3-highgpu-8g", "n1-standard-8", 1);
        let err = check(&n1_bare).unwrap_err().to_string();
        assert!(
            err.contains("gcp.guest_accelerators: required for n1-standard-8"),
            "{err}"
        );
        let n1_eight = GCP
            .replacen("a3-highgpu-8g", "n1-standard-8", 1)
            .replace(
                "instance_template: gpu-a3",
                "instance_template: gpu-a3\n      guest_accelerators: { type: nvidia-tesla-t4, count: 3 }",
            );
        let err = check(&n1_eight).unwrap_err().to_string();
        assert!(
            err.contains("gcp.guest_accelerators.count: 3 must be 1, 2, 4 or 8"),
            "{err}"
        );
        let missing = GCP.replace("gcp:\n  project: ml-prod-4821\n  cluster: prod-gpu\n", "");
        let err = check(&missing).unwrap_err().to_string();
        assert!(err.contains("gcp: required with cloud: gcp"), "{err}");
        let bare = GCP.replace("    gcp:\n      instance_template: gpu-a3\n", "");
        let err = check(&bare).unwrap_err().to_string();
        assert!(
            err.contains("node group \"h100\": gcp: required with cloud: gcp"),
            "{err}"
        );
        let on_aws = GCP.replace("cloud: gcp", "cloud: aws\naws: { cluster: c }");
        let err = Config::from_yaml(&on_aws)
            .and_then(|c| c.validate(&crate::catalog::builtin(CloudKind::Aws), None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gcp: set, but the cloud is aws"), "{err}");
    }

    fn template(labels: &[(&str, &str)]) -> DiscoveredInstanceTemplate {
        DiscoveredInstanceTemplate {
            name: "gpu-g2-spot".into(),
            machine_type: Some("g2-standard-4".into()),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            guest_accelerators: None,
        }
    }

    #[test]
    fn a_labelled_instance_template_declares_a_group() {
        let t = template(&[
            (LABEL_CLUSTER, "prod-gpu"),
            (LABEL_MAX_SIZE, "3"),
            (LABEL_MIN_SIZE, "1"),
            (LABEL_ZONES, "a-c"),
            (LABEL_CAPACITY, "spot"),
        ]);
        let g = t.node_group("us-central1").unwrap();
        assert_eq!(
            (g.id.as_str(), g.min_size, g.max_size),
            ("gpu-g2-spot", 1, 3)
        );
        assert_eq!(g.zones, ["us-central1-a", "us-central1-c"]);
        assert_eq!(g.capacity_type, Some(gpupool_cloud::PurchaseOption::Spot));
        assert_eq!(g.instance_type, "g2-standard-4");
        assert_eq!(
            g.gcp.unwrap().instance_template.as_deref(),
            Some("gpu-g2-spot")
        );
        let named = template(&[
            (LABEL_CLUSTER, "c"),
            (LABEL_MAX_SIZE, "3"),
            (LABEL_NODE_GROUP, "l4"),
        ]);
        assert_eq!(named.node_group("us-central1").unwrap().id, "l4");
    }

    #[test]
    fn bad_discovery_labels_name_the_template_and_the_label() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(LABEL_CLUSTER, "c")],
                "instance template gpu-g2-spot: label gpupool-max-size: missing",
            ),
            (
                &[(LABEL_CLUSTER, "c"), (LABEL_MAX_SIZE, "many")],
                "label gpupool-max-size: \"many\" is not a whole number",
            ),
            (
                &[
                    (LABEL_CLUSTER, "c"),
                    (LABEL_MAX_SIZE, "2"),
                    (LABEL_CAPACITY, "cheap"),
                ],
                "label gpupool-capacity-type: \"cheap\" is not spot, on-demand or spot-then-on-demand",
            ),
            (&[(LABEL_MAX_SIZE, "2")], "label gpupool-cluster: missing"),
        ];
        for (labels, expected) in cases {
            let err = template(labels)
                .node_group("us-central1")
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{labels:?}: {err}");
        }
    }
}
