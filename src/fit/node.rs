//! A template node as the checks see it, decoded from the k8s-pb Node and
//! ResourceSlices the server sends CA.

use super::{Resources, Taint};
use crate::quantity;
use k8s_pb::api::core::v1::Node;
use k8s_pb::api::resource::v1::ResourceSlice;
use std::collections::BTreeMap;

/// A device a node publishes through DRA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub driver: String,
    pub name: String,
    /// The driver's `type` attribute (`gpu`, `mig`), if any.
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NodeShape {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    pub devices: Vec<Device>,
}

impl NodeShape {
    pub fn new(node: &Node, slices: &[ResourceSlice]) -> Self {
        let meta = node.metadata.clone().unwrap_or_default();
        let taints = node
            .spec
            .as_ref()
            .map(|s| {
                s.taints
                    .iter()
                    .map(|t| Taint {
                        key: t.key.clone().unwrap_or_default(),
                        value: t.value.clone().unwrap_or_default(),
                        effect: t.effect.clone().unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let allocatable = node
            .status
            .as_ref()
            .map(|s| {
                s.allocatable
                    .iter()
                    .filter_map(|(r, q)| {
                        let v = quantity::parse(q.string.as_deref()?).ok()?;
                        Some((r.clone(), v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let devices = slices
            .iter()
            .filter_map(|s| s.spec.as_ref())
            .flat_map(|spec| {
                let driver = spec.driver.clone().unwrap_or_default();
                spec.devices.iter().map(move |d| Device {
                    driver: driver.clone(),
                    name: d.name.clone().unwrap_or_default(),
                    kind: d.attributes.get("type").and_then(|a| a.string.clone()),
                })
            })
            .collect();
        Self {
            name: meta.name.unwrap_or_default(),
            labels: meta.labels,
            taints,
            allocatable,
            devices,
        }
    }

    /// What the node offers in place of `resource`: the other `nvidia.com/`
    /// GPU resources (whole GPUs for a MIG slice and the other way round).
    pub fn instead_of(&self, resource: &str) -> Vec<(String, f64)> {
        let gpu_like = |r: &str| r == "nvidia.com/gpu" || r.starts_with("nvidia.com/mig-");
        if !gpu_like(resource) {
            return Vec::new();
        }
        self.allocatable
            .iter()
            .filter(|(r, v)| gpu_like(r) && r.as_str() != resource && **v > 0.0)
            .map(|(r, v)| (r.clone(), *v))
            .collect()
    }
}
