//! What a machine type is made of, as far as its price goes: Compute Engine
//! bills a VM as vCPUs + memory + attached GPUs + bundled Local SSD, each by
//! its own SKU. The backend reads these from `machineTypes.list`
//! (`guestCpus`, `memoryMb`, `accelerators`, `bundledLocalSsds`); for the
//! accelerator-optimized families gpupool ships, [`MachineShape::bundled`]
//! knows them from the machine-type tables of
//! <https://cloud.google.com/compute/docs/accelerator-optimized-machines>.

/// GiB per Local SSD partition.
pub const LOCAL_SSD_PARTITION_GIB: f64 = 375.0;

/// The billed parts of one machine type.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineShape {
    /// The machine type, e.g. `a2-highgpu-1g`.
    pub name: String,
    pub vcpus: u32,
    pub memory_gib: f64,
    /// The GPU's Compute Engine accelerator type (`nvidia-tesla-a100`) and
    /// count, when it has GPUs.
    pub gpus: Option<(String, u32)>,
    /// Bundled Local SSD partitions (375 GiB each), billed with the VM.
    pub local_ssd_partitions: u32,
}

impl MachineShape {
    /// The shape of an accelerator-optimized machine type (A2, A3, G2) from
    /// its name, vCPUs, memory and GPU count: its accelerator and bundled
    /// Local SSD follow from the series. `None` for other series (N1 takes
    /// GPUs by choice, so the backend gives those).
    pub fn bundled(name: &str, vcpus: u32, memory_gib: f64, gpu_count: u32) -> Option<Self> {
        let (accelerator, ssd_per_gpu) = match series(name) {
            "a2-highgpu" | "a2-megagpu" => ("nvidia-tesla-a100", 0),
            "a2-ultragpu" => ("nvidia-a100-80gb", 1),
            "a3-highgpu" => ("nvidia-h100-80gb", 2),
            "a3-megagpu" => ("nvidia-h100-mega-80gb", 2),
            "a3-ultragpu" => ("nvidia-h200-141gb", 4),
            "g2-standard" => ("nvidia-l4", 0),
            _ => return None,
        };
        Some(Self {
            name: name.to_owned(),
            vcpus,
            memory_gib,
            gpus: Some((accelerator.to_owned(), gpu_count)),
            local_ssd_partitions: ssd_per_gpu * gpu_count,
        })
    }

    /// The words the billing catalog uses for this machine's series in its
    /// vCPU and memory SKUs: `A2 Instance`, `N1 Predefined Instance`.
    pub fn sku_series(&self) -> Option<String> {
        let family = self.name.split('-').next()?.to_ascii_uppercase();
        match family.as_str() {
            "N1" => Some("N1 Predefined Instance".to_owned()),
            "" => None,
            f => Some(format!("{f} Instance")),
        }
    }
}

/// `a2-highgpu-1g` → `a2-highgpu`.
fn series(name: &str) -> &str {
    name.rsplit_once('-').map_or(name, |(s, _)| s)
}

/// The billing catalog's name for a Compute Engine accelerator type, as it
/// starts its GPU SKUs' descriptions (`Nvidia Tesla A100 GPU running in
/// Americas`, `… GPU attached to Spot Preemptible VMs running in …`).
pub fn gpu_sku_name(accelerator: &str) -> Option<&'static str> {
    Some(match accelerator {
        "nvidia-tesla-a100" => "Nvidia Tesla A100 GPU",
        "nvidia-a100-80gb" => "Nvidia Tesla A100 80GB GPU",
        "nvidia-h100-80gb" => "Nvidia H100 80GB GPU",
        "nvidia-h100-mega-80gb" => "Nvidia H100 80GB Mega GPU",
        // Newer SKUs drop the vendor.
        "nvidia-h200-141gb" => "H200 141GB GPU",
        "nvidia-l4" => "Nvidia L4 GPU",
        "nvidia-tesla-t4" => "Nvidia Tesla T4 GPU",
        "nvidia-tesla-v100" => "Nvidia Tesla V100 GPU",
        "nvidia-tesla-p100" => "Nvidia Tesla P100 GPU",
        "nvidia-tesla-p4" => "Nvidia Tesla P4 GPU",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_shapes_follow_the_series() {
        let a3 = MachineShape::bundled("a3-highgpu-8g", 208, 1872.0, 8).unwrap();
        assert_eq!(a3.gpus, Some(("nvidia-h100-80gb".into(), 8)));
        assert_eq!(a3.local_ssd_partitions, 16);
        assert_eq!(a3.sku_series().as_deref(), Some("A3 Instance"));
        let a2 = MachineShape::bundled("a2-ultragpu-2g", 24, 340.0, 2).unwrap();
        assert_eq!(a2.local_ssd_partitions, 2);
        let g2 = MachineShape::bundled("g2-standard-24", 24, 96.0, 2).unwrap();
        assert_eq!(
            (g2.gpus.unwrap().0.as_str(), g2.local_ssd_partitions),
            ("nvidia-l4", 0)
        );
        assert_eq!(MachineShape::bundled("n1-standard-8", 8, 30.0, 0), None);
        let n1 = MachineShape {
            name: "n1-standard-8".into(),
            vcpus: 8,
            memory_gib: 30.0,
            gpus: Some(("nvidia-tesla-t4".into(), 1)),
            local_ssd_partitions: 0,
        };
        assert_eq!(n1.sku_series().as_deref(), Some("N1 Predefined Instance"));
        assert_eq!(gpu_sku_name("nvidia-h200-141gb"), Some("H200 141GB GPU"));
        assert_eq!(gpu_sku_name("nvidia-b999"), None);
    }
}
