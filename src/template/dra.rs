//! Dynamic Resource Allocation: the `resource.k8s.io/v1` ResourceSlice a new
//! node of a DRA group would publish through NVIDIA's DRA driver
//! (`gpu.nvidia.com`), so CA can scale up from zero for pods whose
//! ResourceClaims ask for GPUs or MIG slices.
//!
//! Device names and attribute names are the driver's (`gpu-<minor>`,
//! `gpu-<minor>-mig-<profile id>-<start>-<size>`; `type`, `productName`,
//! `brand`, `architecture`, `cudaComputeCapability`, `profile`; capacities
//! `memory` and `memorySlice<n>`). What only a booted node knows (UUIDs, PCIe
//! bus ids, driver versions) is left out: a claim that selects on it cannot be
//! judged before the node exists.

use crate::gpu::sharing::Sharing;
use gpupool_cloud::GpuInfo;
use k8s_pb::api::resource::v1::{
    Device, DeviceAttribute, DeviceCapacity, ResourcePool, ResourceSlice, ResourceSliceSpec,
};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// NVIDIA's DRA driver.
pub const DRIVER: &str = "gpu.nvidia.com";

/// Architecture and CUDA compute capability of a GPU model, as NVML reports them.
pub fn architecture(model: &str) -> Option<(&'static str, &'static str)> {
    Some(match model {
        "H100" | "H200" => ("Hopper", "9.0.0"),
        "A100" | "A30" => ("Ampere", "8.0.0"),
        "A10" | "A10G" => ("Ampere", "8.6.0"),
        "L4" | "L40S" => ("Ada Lovelace", "8.9.0"),
        "T4" => ("Turing", "7.5.0"),
        _ => return None,
    })
}

/// nvidia-smi's product name from GFD's label form (spaces became `-`).
pub fn product_name(product_label: &str) -> String {
    match product_label {
        "NVIDIA-A100-SXM4-40GB" => "NVIDIA A100-SXM4-40GB".into(),
        "NVIDIA-A100-SXM4-80GB" => "NVIDIA A100-SXM4-80GB".into(),
        other => other.replace('-', " "),
    }
}

/// The slice a template node named `node_name` would publish.
pub fn resource_slice(node_name: &str, gpu: &GpuInfo, sharing: &Sharing) -> ResourceSlice {
    let (arch, cc) = architecture(&gpu.model).unwrap_or(("", "0.0.0"));
    let common = |kind: &str| {
        let mut a = BTreeMap::new();
        let s = |v: &str| DeviceAttribute {
            string: Some(v.to_owned()),
            ..Default::default()
        };
        a.insert("type".to_owned(), s(kind));
        a.insert("productName".to_owned(), s(&product_name(&gpu.product)));
        a.insert("brand".to_owned(), s("Nvidia"));
        if !arch.is_empty() {
            a.insert("architecture".to_owned(), s(arch));
            a.insert(
                "cudaComputeCapability".to_owned(),
                DeviceAttribute {
                    version: Some(cc.to_owned()),
                    ..Default::default()
                },
            );
        }
        a
    };
    let qty = |s: String| DeviceCapacity {
        value: Some(Quantity { string: Some(s) }),
        ..Default::default()
    };
    let mut devices = Vec::new();
    for minor in 0..gpu.count {
        match &sharing.mig {
            None => devices.push(Device {
                name: Some(format!("gpu-{minor}")),
                attributes: common("gpu"),
                capacity: BTreeMap::from([(
                    "memory".to_owned(),
                    qty(format!("{}Mi", gpu.memory_mib)),
                )]),
                ..Default::default()
            }),
            Some(mig) => {
                let placed = mig.geometry.placements(&mig.layout).unwrap_or_default();
                for (profile, start) in placed {
                    let mut attributes = common("mig");
                    attributes.insert(
                        "profile".to_owned(),
                        DeviceAttribute {
                            string: Some(profile.name.to_owned()),
                            ..Default::default()
                        },
                    );
                    let mut capacity = BTreeMap::from([(
                        "memory".to_owned(),
                        qty(format!("{}Gi", profile.memory_gb)),
                    )]);
                    for slice in start..start + profile.memory_slices {
                        capacity.insert(format!("memorySlice{slice}"), qty("1".into()));
                    }
                    devices.push(Device {
                        name: Some(format!(
                            "gpu-{minor}-mig-{}-{start}-{}",
                            profile.id, profile.memory_slices
                        )),
                        attributes,
                        capacity,
                        ..Default::default()
                    });
                }
            }
        }
    }
    ResourceSlice {
        metadata: Some(ObjectMeta {
            name: Some(format!("{node_name}-{DRIVER}")),
            ..Default::default()
        }),
        spec: Some(ResourceSliceSpec {
            driver: Some(DRIVER.to_owned()),
            pool: Some(ResourcePool {
                name: Some(node_name.to_owned()),
                generation: Some(1),
                resource_slice_count: Some(1),
            }),
            node_name: Some(node_name.to_owned()),
            devices,
            ..Default::default()
        }),
    }
}
