//! The GPUs of an Azure VM size. Resource SKUs give a size's vCPUs,
//! memory and GPU count (`vCPUs`, `MemoryGB`, `GPUs`) but not the GPU's
//! model, so the series is read from the size's name
//! (<https://learn.microsoft.com/azure/virtual-machines/sizes/overview#gpu-accelerated>):
//! the ND H100 v5 and H200 v5, NC H100 v5 (H100 NVL), ND A100 v4, NC A100
//! v4, NV A10 v5 (a fraction of an A10 below the 36-vCPU size) and NC T4 v3.

use gpupool_cloud::GpuInfo;

/// One GPU of a series.
struct Series {
    /// Matched against the size's name, lower-cased.
    suffix: &'static str,
    accelerator: &'static str,
    model: &'static str,
    product: &'static str,
    memory_mib: u64,
}

const SERIES: &[Series] = &[
    Series {
        suffix: "_h200_v5",
        accelerator: "nvidia-h200-141gb",
        model: "H200",
        product: "NVIDIA-H200",
        memory_mib: 143_771,
    },
    Series {
        suffix: "isr_h100_v5",
        accelerator: "nvidia-h100-80gb",
        model: "H100",
        product: "NVIDIA-H100-80GB-HBM3",
        memory_mib: 81_559,
    },
    Series {
        suffix: "_h100_v5",
        accelerator: "nvidia-h100-94gb",
        model: "H100",
        product: "NVIDIA-H100-NVL",
        memory_mib: 95_830,
    },
    Series {
        suffix: "amsr_a100_v4",
        accelerator: "nvidia-a100-80gb",
        model: "A100",
        product: "NVIDIA-A100-SXM4-80GB",
        memory_mib: 81_920,
    },
    Series {
        suffix: "ads_a100_v4",
        accelerator: "nvidia-a100-80gb",
        model: "A100",
        product: "NVIDIA-A100-80GB-PCIe",
        memory_mib: 81_920,
    },
    Series {
        suffix: "96asr_v4",
        accelerator: "nvidia-a100-40gb",
        model: "A100",
        product: "NVIDIA-A100-SXM4-40GB",
        memory_mib: 40_960,
    },
    Series {
        suffix: "as_t4_v3",
        accelerator: "nvidia-tesla-t4",
        model: "T4",
        product: "Tesla-T4",
        memory_mib: 15_360,
    },
];

/// The NV A10 v5 sizes by vCPUs: GPUs (at least one, possibly a fraction
/// as a vGPU profile) and memory of each.
const NV_A10: &[(u32, u32, &str, u64)] = &[
    (6, 1, "NVIDIA-A10-4Q", 4_096),
    (12, 1, "NVIDIA-A10-8Q", 8_192),
    (18, 1, "NVIDIA-A10-12Q", 12_288),
    (36, 1, "NVIDIA-A10-24Q", 24_512),
    (72, 2, "NVIDIA-A10-24Q", 24_512),
];

/// The GPUs of `size`, with `count` from the SKU's `GPUs` capability;
/// `None` for a size of no series gpupool knows with no GPUs listed.
pub fn gpu_info(size: &str, vcpus: u32, count: u32) -> Option<GpuInfo> {
    let lower = size.to_ascii_lowercase();
    if lower.ends_with("_a10_v5") {
        let (_, gpus, product, memory) = NV_A10.iter().find(|(v, ..)| *v == vcpus)?;
        return Some(GpuInfo {
            accelerator: "nvidia-a10".into(),
            model: "A10".into(),
            product: (*product).into(),
            count: *gpus,
            memory_mib: *memory,
        });
    }
    let series = SERIES.iter().find(|s| lower.ends_with(s.suffix));
    match series {
        Some(s) if count > 0 => Some(GpuInfo {
            accelerator: s.accelerator.into(),
            model: s.model.into(),
            product: s.product.into(),
            count,
            memory_mib: s.memory_mib,
        }),
        Some(_) => None,
        None if count > 0 => Some(GpuInfo {
            accelerator: "nvidia".into(),
            model: "unknown".into(),
            product: "NVIDIA".into(),
            count,
            memory_mib: 0,
        }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::gpu_info;

    #[test]
    fn the_issue_sizes_have_their_gpus() {
        let nd = gpu_info("Standard_ND96isr_H100_v5", 96, 8).expect("ND H100");
        assert_eq!((nd.model.as_str(), nd.count), ("H100", 8));
        assert_eq!(nd.product, "NVIDIA-H100-80GB-HBM3");
        let nc = gpu_info("Standard_NC24ads_A100_v4", 24, 1).expect("NC A100");
        assert_eq!(nc.accelerator, "nvidia-a100-80gb");
        let nv = gpu_info("Standard_NV36ads_A10_v5", 36, 1).expect("NV A10");
        assert_eq!((nv.product.as_str(), nv.count), ("NVIDIA-A10-24Q", 1));
        let part = gpu_info("Standard_NV6ads_A10_v5", 6, 0).expect("a sixth of an A10");
        assert_eq!(part.memory_mib, 4_096);
        assert_eq!(gpu_info("Standard_D4s_v5", 4, 0), None);
    }
}
