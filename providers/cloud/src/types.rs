//! Plain data exchanged across the seam.

use crate::{CloudError, GroupId, InstanceId, ProviderId, RequestId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::SystemTime;

/// How one instance is billed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapacityType {
    OnDemand,
    Spot,
}

impl CapacityType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "on-demand",
            Self::Spot => "spot",
        }
    }
}

impl fmt::Display for CapacityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a creation request asks to buy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PurchaseOption {
    OnDemand,
    Spot,
    /// Spot where there is capacity, on-demand for the rest.
    SpotThenOnDemand,
}

impl PurchaseOption {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "on-demand",
            Self::Spot => "spot",
            Self::SpotThenOnDemand => "spot-then-on-demand",
        }
    }

    /// The capacity type a node of this option is most likely to get (what a
    /// template node advertises).
    pub fn preferred(self) -> CapacityType {
        match self {
            Self::OnDemand => CapacityType::OnDemand,
            Self::Spot | Self::SpotThenOnDemand => CapacityType::Spot,
        }
    }
}

impl fmt::Display for PurchaseOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// CPU architecture, with Kubernetes' names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[default]
    Amd64,
    Arm64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }
}

/// The GPUs of an instance type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// GPU type as the GPU label carries it, e.g. `nvidia-h100-80gb`.
    pub accelerator: String,
    /// Model, e.g. `H100`.
    pub model: String,
    /// What NVIDIA GPU feature discovery writes to `nvidia.com/gpu.product`.
    pub product: String,
    pub count: u32,
    /// Memory of one GPU, MiB (as `nvidia.com/gpu.memory`).
    pub memory_mib: u64,
}

/// One instance type of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceType {
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    #[serde(default)]
    pub arch: Arch,
    #[serde(default)]
    pub gpu: Option<GpuInfo>,
}

/// Hourly price of an instance type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub instance_type: String,
    pub capacity_type: CapacityType,
    /// `None`: the price holds in every zone of the region.
    pub zone: Option<String>,
    pub usd_per_hour: f64,
}

/// Lifecycle of an instance as the cloud reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Accepted, booting: not yet running.
    Pending,
    Running,
    /// Being terminated (by us, or by the cloud for a spot interruption).
    ShuttingDown,
    /// Stopped, or stopping, and not being terminated (a spot instance
    /// whose interruption behaviour is stop, or one someone stopped): it
    /// serves nothing and will not come back on its own, so the engine
    /// terminates it.
    Stopped,
    /// Gone; may still be listed for a while.
    Terminated,
}

/// One instance of a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    /// Exactly what the node's `spec.providerID` will be.
    pub provider_id: ProviderId,
    /// The Kubernetes node name the instance registers with, where the cloud knows
    /// it (private DNS name, VM name).
    pub node_name: Option<String>,
    pub group: GroupId,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub state: InstanceState,
    pub launched_at: SystemTime,
    /// The creation request that made it, from its tags.
    pub request_id: Option<RequestId>,
    /// Why the cloud stopped it, if it did so on its own (spot interruption).
    pub state_reason: Option<String>,
}

/// One way to buy an instance: a type, in a zone, at a capacity type (a
/// spot pool, or an on-demand one).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Offering {
    pub instance_type: String,
    pub zone: String,
    pub capacity: CapacityType,
}

impl fmt::Display for Offering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} in {}",
            self.capacity, self.instance_type, self.zone
        )
    }
}

/// A request to start instances for a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub request_id: RequestId,
    pub group: GroupId,
    pub instance_type: String,
    /// Zones the group may use; the backend spreads across them.
    pub zones: Vec<String>,
    pub purchase: PurchaseOption,
    pub count: u32,
    /// The most to pay per hour for a spot instance (the bid cap, where the
    /// cloud has one); `None`: up to the on-demand price.
    #[serde(default)]
    pub max_spot_price: Option<f64>,
    /// Offerings to leave out (just interrupted, or out of capacity), where
    /// the backend chooses among several types per zone.
    #[serde(default)]
    pub avoid: Vec<Offering>,
}

/// What a creation request achieved.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CreateOutcome {
    pub created: Vec<Instance>,
    /// The part that could not be created, and why.
    pub failed: Option<CreateFailure>,
    /// The offerings the cloud said are out of capacity, where it says
    /// (EC2 fleets do, per pool), even when another offering filled the
    /// request.
    pub exhausted: Vec<Offering>,
}

/// Instances of a request that the cloud would not create.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateFailure {
    pub count: u32,
    pub error: CloudError,
}
