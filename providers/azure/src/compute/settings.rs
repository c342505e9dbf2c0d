//! What the Azure backend is told about the installation and its groups:
//! plain data from gpupool's config.

use gpupool_cloud::GroupId;
use std::collections::BTreeMap;

/// The installation: where its VMs live and the groups it runs.
#[derive(Clone, Debug, Default)]
pub struct AzureSettings {
    pub subscription_id: String,
    /// The resource group gpupool's VMs are made in (with AKS: the node
    /// resource group, `MC_…`).
    pub resource_group: String,
    /// The cluster's name: tagged on every VM (`gpupool-cluster`), and
    /// what finds this installation's VMs.
    pub cluster: String,
    pub groups: BTreeMap<GroupId, GroupSettings>,
}

/// How one group's VMs are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    pub source: Source,
    /// The sizes the group may use, its own first; tried in this order in
    /// each zone.
    pub sizes: Vec<String>,
}

/// Where a VM's image, disk, network and identity come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Virtual Machine Scale Set in Flexible orchestration mode, by name
    /// in the resource group. VMs are made from its `virtualMachineProfile`
    /// and join it (`properties.virtualMachineScaleSet`).
    ScaleSet(String),
    /// The parts named in the config.
    Vm(VmSpec),
}

/// A VM described without a scale set.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct VmSpec {
    /// A marketplace image URN (`publisher:offer:sku:version`) or an image
    /// resource id (a gallery image version, a managed image).
    pub image: String,
    /// The subnet's resource id.
    pub subnet_id: String,
    pub admin_username: String,
    /// OpenSSH public keys for `admin_username` (password log-in is off).
    pub ssh_public_keys: Vec<String>,
    pub os_disk_gib: u32,
    /// `Premium_LRS`, `StandardSSD_LRS`, `PremiumV2_LRS`, …
    pub os_disk_type: String,
    /// The node's bootstrap (cloud-init), sent base64-encoded as
    /// `osProfile.customData`.
    pub custom_data: Option<String>,
    /// User-assigned managed identities (resource ids) the VM runs as.
    pub identities: Vec<String>,
    pub accelerated_networking: bool,
}
