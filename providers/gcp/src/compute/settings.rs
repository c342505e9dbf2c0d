//! What the Compute Engine backend is told about the installation and its
//! groups: plain data from gpupool's config.

use gpupool_cloud::GroupId;
use std::collections::BTreeMap;

/// The installation: its project, cluster and the groups it runs.
#[derive(Clone, Debug, Default)]
pub struct GceSettings {
    pub project: String,
    /// The cluster's name: labelled on every instance (`gpupool-cluster`),
    /// and the filter that finds this installation's instances.
    pub cluster: String,
    pub groups: BTreeMap<GroupId, GroupSettings>,
}

/// How one group's instances are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    pub source: Source,
    /// The machine types the group may use, its own first; the backend
    /// tries them in this order in each zone.
    pub machine_types: Vec<String>,
    /// GPUs attached to a machine type that takes them by choice (N1 with
    /// T4, V100, P100, P4); `None` for the accelerator-optimized families
    /// (A2, A3, G2), whose GPUs come with the machine type.
    pub guest_accelerators: Option<Accelerators>,
}

/// Where an instance's disks, network and identity come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A global instance template, by name or by URL
    /// (`projects/P/global/instanceTemplates/N`). gpupool overrides its
    /// machine type, provisioning model and labels per request.
    Template(String),
    /// The parts named in the config.
    Machine(MachineSpec),
}

/// An instance described without a template.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MachineSpec {
    /// Boot image or image family URL, e.g.
    /// `projects/cos-cloud/global/images/family/cos-stable`.
    pub image: String,
    pub boot_disk_gib: u32,
    /// `pd-balanced`, `pd-ssd`, `hyperdisk-balanced`, …
    pub boot_disk_type: String,
    /// The VPC network (`global/networks/N`); `None`: `default`.
    pub network: Option<String>,
    /// The subnetwork (`regions/R/subnetworks/S`).
    pub subnetwork: Option<String>,
    /// The instance's service account; `None`: none attached.
    pub service_account: Option<String>,
    /// Network tags (firewall rules).
    pub network_tags: Vec<String>,
    /// Instance metadata (the node's bootstrap: `kube-env`, `user-data`,
    /// `startup-script`, …).
    pub metadata: BTreeMap<String, String>,
}

/// A GPU type and how many per instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accelerators {
    /// Compute Engine's accelerator type, e.g. `nvidia-tesla-t4`.
    pub accelerator_type: String,
    pub count: u32,
}
