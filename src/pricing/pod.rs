//! What a pod asks of a node, from its Kubernetes protobuf encoding.

use crate::quantity;
use crate::template::GPU_RESOURCE;
use k8s_pb::api::core::v1::{Container, Pod};
use prost::Message;

/// A pod's effective requests: containers summed, the largest init container if
/// larger, plus the pod overhead; a limit stands in for a missing request (as
/// the API server defaults it).
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
    #[error("container {container:?}: {resource}: {reason}")]
    Quantity {
        container: String,
        resource: String,
        reason: String,
    },
}

pub fn pod_requests(bytes: &[u8]) -> Result<PodRequests, PodError> {
    let pod = Pod::decode(bytes).map_err(|e| PodError::Decode(e.to_string()))?;
    let spec = pod.spec.unwrap_or_default();
    let mut sum = PodRequests::default();
    for c in &spec.containers {
        let r = container(c)?;
        sum.cpu += r.cpu;
        sum.memory += r.memory;
        sum.gpu += r.gpu;
    }
    for c in &spec.init_containers {
        let r = container(c)?;
        sum.cpu = sum.cpu.max(r.cpu);
        sum.memory = sum.memory.max(r.memory);
        sum.gpu = sum.gpu.max(r.gpu);
    }
    for (resource, q) in &spec.overhead {
        let v = q
            .string
            .as_deref()
            .map(quantity::parse)
            .transpose()
            .map_err(|e| PodError::Quantity {
                container: "(overhead)".into(),
                resource: resource.clone(),
                reason: e.to_string(),
            })?
            .unwrap_or(0.0);
        match resource.as_str() {
            "cpu" => sum.cpu += v,
            "memory" => sum.memory += v,
            _ => {}
        }
    }
    Ok(sum)
}

fn container(c: &Container) -> Result<PodRequests, PodError> {
    let resources = c.resources.clone().unwrap_or_default();
    let get = |name: &str| -> Result<f64, PodError> {
        let q = resources
            .requests
            .get(name)
            .or_else(|| resources.limits.get(name))
            .and_then(|q| q.string.as_deref());
        match q {
            None => Ok(0.0),
            Some(s) => quantity::parse(s).map_err(|e| PodError::Quantity {
                container: c.name.clone().unwrap_or_default(),
                resource: name.to_owned(),
                reason: e.to_string(),
            }),
        }
    };
    Ok(PodRequests {
        cpu: get("cpu")?,
        memory: get("memory")?,
        gpu: get(GPU_RESOURCE)?,
    })
}
