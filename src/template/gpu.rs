//! The GPU part of a template: the resources the NVIDIA device plugin will
//! advertise and the labels GPU feature discovery (GFD) will set, for whole
//! GPUs, time-slicing, and MIG with the single or mixed strategy.

use crate::gpu::sharing::{MigStrategy, Sharing};
use gpupool_cloud::GpuInfo;
use std::collections::BTreeMap;

/// The device plugin's resource for whole GPUs (and single-strategy slices).
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// What a node's GPUs will look like to Kubernetes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Advertised {
    pub labels: BTreeMap<String, String>,
    /// Extended resources and their counts (capacity = allocatable).
    pub resources: BTreeMap<String, u64>,
    /// The GPU label's value, or `None` when the node must not carry the GPU
    /// label (see [`advertise`]).
    pub gpu_type: Option<String>,
}

/// What `gpus` will advertise under `sharing`.
///
/// With the mixed MIG strategy the node has no `nvidia.com/gpu` at all, and CA
/// treats a node that carries the GPU label without allocatable
/// `nvidia.com/gpu` as a GPU node whose device plugin is not up yet, i.e.
/// unready, forever. So mixed-strategy templates leave the GPU label off, and
/// their nodes must not carry it either.
pub fn advertise(gpu: &GpuInfo, sharing: &Sharing) -> Advertised {
    let mut out = Advertised::default();
    let count = u64::from(gpu.count);
    let replicas = u64::from(sharing.replicas.max(1));
    let shared = replicas > 1;
    let mut label = |k: &str, v: String| {
        out.labels.insert(k.to_owned(), v);
    };
    label("nvidia.com/gpu.present", "true".into());
    if shared {
        label("nvidia.com/gpu.replicas", replicas.to_string());
        label("nvidia.com/gpu.sharing-strategy", "time-slicing".into());
    }
    // GFD marks a shared GPU's product with `-SHARED`.
    let suffix = if shared { "-SHARED" } else { "" };
    match &sharing.mig {
        None => {
            label("nvidia.com/gpu.product", format!("{}{suffix}", gpu.product));
            label("nvidia.com/gpu.count", gpu.count.to_string());
            label("nvidia.com/gpu.memory", gpu.memory_mib.to_string());
            out.resources.insert(GPU_RESOURCE.into(), count * replicas);
            out.gpu_type = Some(gpu.accelerator.clone());
        }
        Some(mig) => {
            label("nvidia.com/mig.config", mig.config_name.clone());
            match mig.strategy {
                MigStrategy::Single => {
                    let (profile, per_gpu) = mig.layout[0];
                    let slices = u64::from(per_gpu) * count;
                    label("nvidia.com/mig.strategy", "single".into());
                    label(
                        "nvidia.com/gpu.product",
                        format!("{}-MIG-{}{suffix}", gpu.product, profile.name),
                    );
                    label("nvidia.com/gpu.count", slices.to_string());
                    label(
                        "nvidia.com/gpu.memory",
                        (profile.memory_gb * 1024).to_string(),
                    );
                    label(
                        "nvidia.com/gpu.slices.gi",
                        profile.compute_slices.to_string(),
                    );
                    label(
                        "nvidia.com/gpu.slices.ci",
                        profile.compute_slices.to_string(),
                    );
                    out.resources.insert(GPU_RESOURCE.into(), slices * replicas);
                    out.gpu_type = Some(gpu.accelerator.clone());
                }
                MigStrategy::Mixed => {
                    label("nvidia.com/mig.strategy", "mixed".into());
                    label("nvidia.com/gpu.product", gpu.product.clone());
                    label("nvidia.com/gpu.count", gpu.count.to_string());
                    label("nvidia.com/gpu.memory", gpu.memory_mib.to_string());
                    for (profile, per_gpu) in &mig.layout {
                        let slices = u64::from(*per_gpu) * count;
                        let key = format!("nvidia.com/mig-{}", profile.name);
                        label(&format!("{key}.count"), slices.to_string());
                        label(
                            &format!("{key}.memory"),
                            (profile.memory_gb * 1024).to_string(),
                        );
                        label(
                            &format!("{key}.slices.gi"),
                            profile.compute_slices.to_string(),
                        );
                        label(
                            &format!("{key}.slices.ci"),
                            profile.compute_slices.to_string(),
                        );
                        if shared {
                            label(&format!("{key}.replicas"), replicas.to_string());
                            label(&format!("{key}.sharing-strategy"), "time-slicing".into());
                        }
                        out.resources.insert(key, slices * replicas);
                    }
                }
            }
        }
    }
    out
}
