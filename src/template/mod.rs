//! The template node: what a new node of a group will look like, so CA can
//! scale up from zero for exactly the pods such a node can run.
//!
//! Encoded once per group at start with `k8s-pb` (a core/v1 Node in Kubernetes
//! protobuf encoding) and served from memory.

pub mod dra;
mod gpu;
pub mod reserve;

pub use gpu::{Advertised, GPU_RESOURCE, advertise};

use crate::config::GroupSpec;
use k8s_pb::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, Taint};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use prost::Message;
use std::collections::BTreeMap;

/// Pods per node, the kubelet's default.
pub const MAX_PODS: u32 = 110;
/// Root disk of a node, GiB (the ephemeral-storage capacity).
pub const DISK_GIB: u64 = 200;

/// Label with the node group's id.
pub const NODE_GROUP_LABEL: &str = "gpupool.dev/node-group";
/// Label with how the node is bought (`spot` / `on-demand`).
pub const CAPACITY_TYPE_LABEL: &str = "gpupool.dev/capacity-type";

/// A group's template, built once.
#[derive(Clone, Debug)]
pub struct Template {
    pub node: Node,
    /// `node` in Kubernetes protobuf encoding.
    pub bytes: Vec<u8>,
    /// The GPU label's value, if the type has GPUs.
    pub gpu_type: Option<String>,
    /// ResourceSlices a node would publish (DRA groups), each encoded.
    pub resource_slices: Vec<Vec<u8>>,
}

/// Where the group lives and how GPUs are labelled.
#[derive(Clone, Copy, Debug)]
pub struct TemplateContext<'a> {
    pub region: &'a str,
    pub gpu_label: &'a str,
}

impl Template {
    pub fn build(spec: &GroupSpec, cx: TemplateContext<'_>) -> Self {
        let (node, advertised) = node(spec, cx);
        let bytes = node.encode_to_vec();
        // The GPU type CA may see: only where the template carries the label.
        let gpu_type = advertised.and_then(|a| a.gpu_type);
        let name = node
            .metadata
            .as_ref()
            .and_then(|m| m.name.clone())
            .unwrap_or_default();
        let resource_slices = match (&spec.instance_type.gpu, spec.annotations.dra) {
            (Some(gpu), true) => {
                vec![dra::resource_slice(&name, gpu, &spec.sharing).encode_to_vec()]
            }
            _ => Vec::new(),
        };
        Self {
            node,
            bytes,
            gpu_type,
            resource_slices,
        }
    }

    /// The ResourceSlices, decoded.
    pub fn slices(&self) -> Vec<k8s_pb::api::resource::v1::ResourceSlice> {
        self.resource_slices
            .iter()
            .filter_map(|b| prost::Message::decode(b.as_slice()).ok())
            .collect()
    }
}

/// What a group's GPUs advertise. DRA groups get their GPUs through
/// ResourceClaims, so no extended resources and (as with mixed MIG) no GPU
/// label, which would make CA wait for an `nvidia.com/gpu` that never comes.
fn advertised(spec: &GroupSpec, gpu: &gpupool_cloud::GpuInfo) -> Advertised {
    let mut a = advertise(gpu, &spec.sharing);
    if spec.annotations.dra {
        a.resources.clear();
        a.gpu_type = None;
    }
    a
}

/// The template node, and what its GPUs advertise.
fn node(spec: &GroupSpec, cx: TemplateContext<'_>) -> (Node, Option<Advertised>) {
    let ty = &spec.instance_type;
    let name = format!("template-node-for-{}", spec.id);
    let zone = spec.zones.first().cloned().unwrap_or_default();

    let mut labels = BTreeMap::new();
    let mut label = |k: &str, v: String| {
        labels.insert(k.to_owned(), v);
    };
    label("kubernetes.io/os", "linux".into());
    label("kubernetes.io/arch", ty.arch.as_str().into());
    label("kubernetes.io/hostname", name.clone());
    label("node.kubernetes.io/instance-type", ty.name.clone());
    label("topology.kubernetes.io/region", cx.region.into());
    label("topology.kubernetes.io/zone", zone);
    label(NODE_GROUP_LABEL, spec.id.to_string());
    label(
        CAPACITY_TYPE_LABEL,
        spec.purchase.preferred().as_str().into(),
    );
    let advertised = ty.gpu.as_ref().map(|g| advertised(spec, g));
    if let Some(a) = &advertised {
        if let Some(gpu_type) = &a.gpu_type {
            label(cx.gpu_label, gpu_type.clone());
        }
        labels.extend(a.labels.clone());
    }
    labels.extend(spec.labels.clone());

    let q = |s: String| Quantity { string: Some(s) };
    let mut capacity = BTreeMap::new();
    let mut allocatable = BTreeMap::new();
    capacity.insert("cpu".to_owned(), q(ty.vcpus.to_string()));
    allocatable.insert(
        "cpu".to_owned(),
        q(format!(
            "{}m",
            u64::from(ty.vcpus) * 1000 - reserve::cpu_millis(ty.vcpus)
        )),
    );
    capacity.insert("memory".to_owned(), q(format!("{}Mi", ty.memory_mib)));
    allocatable.insert(
        "memory".to_owned(),
        q(format!(
            "{}Mi",
            ty.memory_mib
                .saturating_sub(reserve::memory_mib(ty.memory_mib))
        )),
    );
    for map in [&mut capacity, &mut allocatable] {
        map.insert("pods".to_owned(), q(MAX_PODS.to_string()));
    }
    capacity.insert("ephemeral-storage".to_owned(), q(format!("{DISK_GIB}Gi")));
    allocatable.insert(
        "ephemeral-storage".to_owned(),
        q(format!(
            "{}Gi",
            reserve::ephemeral_allocatable_gib(DISK_GIB)
        )),
    );
    for (resource, n) in advertised.iter().flat_map(|a| &a.resources) {
        for map in [&mut capacity, &mut allocatable] {
            map.insert(resource.clone(), q(n.to_string()));
        }
    }
    // CA's node-template resources tags say what the node really offers.
    for (resource, quantity) in &spec.resources {
        for map in [&mut capacity, &mut allocatable] {
            map.insert(resource.clone(), q(quantity.clone()));
        }
    }

    let node = Node {
        metadata: Some(ObjectMeta {
            name: Some(name),
            labels,
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            taints: spec
                .taints
                .iter()
                .map(|t| Taint {
                    key: Some(t.key.clone()),
                    value: Some(t.value.clone()),
                    effect: Some(t.effect.as_str().to_owned()),
                    time_added: None,
                })
                .collect(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity,
            allocatable,
            phase: Some("Running".into()),
            conditions: vec![NodeCondition {
                r#type: Some("Ready".into()),
                status: Some("True".into()),
                reason: Some("KubeletReady".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    };
    (node, advertised)
}

#[cfg(test)]
mod tests;
