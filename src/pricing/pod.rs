//! What a pod asks of a node, from its Kubernetes protobuf encoding.

use crate::fit::requests::{self, BadResource, ContainerResources};
use crate::template::GPU_RESOURCE;
use k8s_pb::api::core::v1::{Container, Pod};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use prost::Message;
use std::collections::BTreeMap;

/// A pod's effective requests, aggregated as kube-scheduler does (see
/// [`crate::fit::requests`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PodRequests {
    /// Cores.
    pub cpu: f64,
    /// Bytes.
    pub memory: f64,
    /// Whole GPUs.
    pub gpu: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    #[error("not a core/v1 Pod in Kubernetes protobuf encoding: {0}")]
    Decode(String),
    #[error(transparent)]
    Quantity(#[from] BadResource),
}

pub fn pod_requests(bytes: &[u8]) -> Result<PodRequests, PodError> {
    let pod = Pod::decode(bytes).map_err(|e| PodError::Decode(e.to_string()))?;
    let spec = pod.spec.unwrap_or_default();
    let containers: Vec<_> = spec.containers.iter().map(container).collect();
    let init: Vec<_> = spec.init_containers.iter().map(container).collect();
    let pod_level = spec
        .resources
        .as_ref()
        .map(|r| pairs(&r.requests))
        .unwrap_or_default();
    let r = requests::pod(&containers, &init, &pairs(&spec.overhead), &pod_level)?;
    let get = |name: &str| r.get(name).copied().unwrap_or(0.0);
    Ok(PodRequests {
        cpu: get("cpu"),
        memory: get("memory"),
        gpu: get(GPU_RESOURCE),
    })
}

fn pairs(m: &BTreeMap<String, Quantity>) -> Vec<(&str, &str)> {
    m.iter()
        .filter_map(|(k, q)| Some((k.as_str(), q.string.as_deref()?)))
        .collect()
}

fn container(c: &Container) -> ContainerResources<'_> {
    let r = c.resources.as_ref();
    ContainerResources {
        name: c.name.as_deref().unwrap_or_default(),
        requests: r.map(|r| pairs(&r.requests)).unwrap_or_default(),
        limits: r.map(|r| pairs(&r.limits)).unwrap_or_default(),
        sidecar: c.restart_policy.as_deref() == Some("Always"),
    }
}
