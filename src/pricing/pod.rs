//! `PricingPodPrice`: a pod's share of the cheapest group whose fresh node
//! fits it (the same checks `explain-pod` runs), GPU-aware.
//!
//! The share of a node is the largest of
//! - its GPU share: GPU units it requests over the node's GPU units, where a
//!   whole GPU or a time-sliced replica (`nvidia.com/gpu`) counts 1 and a MIG
//!   slice (`nvidia.com/mig-<n>g.…`) counts its `n` compute slices; so 1 of 8
//!   GPUs pays 1/8, a replica of a GPU time-sliced 4 ways 1/32 on an 8-GPU
//!   node, and a 1g slice on a GPU split 3×1g + 2×2g pays 1/7 of that GPU;
//! - its CPU and memory fractions of allocatable (a CPU-only pod on a GPU
//!   node pays for the share of the node it takes, GPUs included);
//! - one pod slot (1/110).
//!
//! A pod with DRA resource claims pays for a whole node of the group (the
//! claims' device counts are not part of the pod). A pod that fits no group
//! is priced at the dearest group's whole node: never an error, because CA's
//! price expander drops options whose price fails.

use super::PriceBook;
use super::node::group_cost;
use crate::config::GroupSpec;
use crate::fit::requests::BadResource;
use crate::fit::{self, GroupSize, NodeShape, PodShape, Resources};
use crate::template::{GPU_RESOURCE, MAX_PODS};
use k8s_pb::api::core::v1::Pod;
use prost::Message;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    #[error("not a core/v1 Pod in Kubernetes protobuf encoding: {0}")]
    Decode(String),
    #[error(transparent)]
    Quantity(#[from] BadResource),
}

/// The pod CA sends, decoded.
pub fn decode(bytes: &[u8]) -> Result<PodShape, PodError> {
    let pod = Pod::decode(bytes).map_err(|e| PodError::Decode(e.to_string()))?;
    let mut shape = fit::pb::pod_shape(&pod.spec.unwrap_or_default())?;
    // CA asks the price of placing the pod; binding and gates do not matter.
    shape.node_name = None;
    shape.scheduling_gates.clear();
    Ok(shape)
}

/// A group as pod pricing sees it.
#[derive(Debug, Clone)]
pub struct PricedGroup {
    pub spec: Arc<GroupSpec>,
    pub node: NodeShape,
}

/// GPU units of a GPU resource: 1 for `nvidia.com/gpu`, the compute slices
/// for a MIG profile (`nvidia.com/mig-3g.40gb` → 3, `mig-1c.3g.40gb` → 1);
/// `None` for other resources.
fn gpu_weight(resource: &str) -> Option<f64> {
    if resource == GPU_RESOURCE {
        return Some(1.0);
    }
    let profile = resource.strip_prefix("nvidia.com/mig-")?;
    let digits: String = profile.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<f64>().ok().filter(|w| *w > 0.0)
}

fn gpu_units(r: &Resources) -> f64 {
    r.iter()
        .filter_map(|(name, v)| gpu_weight(name).map(|w| w * v))
        .sum()
}

/// The pod's share of one node of the group (0–1].
pub fn share(pod: &PodShape, node: &NodeShape) -> f64 {
    if !pod.claims.is_empty() {
        return 1.0;
    }
    let alloc = |r: &str| node.allocatable.get(r).copied().unwrap_or(0.0);
    let want = |r: &str| pod.requests.get(r).copied().unwrap_or(0.0);
    let node_gpu = gpu_units(&node.allocatable);
    let gpu = if node_gpu > 0.0 {
        gpu_units(&pod.requests) / node_gpu
    } else {
        0.0
    };
    let fraction = |r: &str| {
        let a = alloc(r);
        if a > 0.0 { want(r) / a } else { 0.0 }
    };
    let slots = alloc("pods").max(1.0).min(f64::from(MAX_PODS));
    [gpu, fraction("cpu"), fraction("memory"), 1.0 / slots]
        .into_iter()
        .fold(0.0, f64::max)
        .min(1.0)
}

/// What the pod costs from `start` to `end` on the cheapest group that fits it.
pub fn pod_cost(
    book: &PriceBook,
    groups: &[PricedGroup],
    pod: &PodShape,
    start: SystemTime,
    end: SystemTime,
) -> f64 {
    let mut best: Option<f64> = None;
    let mut dearest = 0.0f64;
    for g in groups {
        let Ok(node) = group_cost(book, &g.spec, g.spec.purchase.preferred(), start, end) else {
            continue;
        };
        dearest = dearest.max(node);
        let size = GroupSize {
            max: g.spec.max_size,
            target: None,
        };
        if !fit::check(pod, &g.node, &Resources::new(), size).fits() {
            continue;
        }
        let price = node * share(pod, &g.node);
        best = Some(best.map_or(price, |b| b.min(price)));
    }
    best.unwrap_or(dearest)
}
