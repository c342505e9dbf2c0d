//! The simulator's instance types, from `data/catalog.yaml`.

use gpupool_cloud::{Arch, GpuInfo, InstanceType};
use serde::Deserialize;
use std::time::Duration;

/// A simulated instance type: its shape and how the simulator treats it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimType {
    pub name: String,
    /// The real instance type whose shape this copies.
    pub shape_of: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    #[serde(default)]
    pub arch: Arch,
    #[serde(default)]
    pub gpu: Option<GpuInfo>,
    pub on_demand_usd_per_hour: f64,
    pub spot_usd_per_hour: f64,
    pub boot: BootRange,
    /// Spot instances of this type that fit in one zone at once.
    pub spot_capacity_per_zone: u32,
}

/// Boot time (start to GPUs allocatable), drawn uniformly from `[min, max]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BootRange {
    #[serde(with = "humantime_serde")]
    pub min: Duration,
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl SimType {
    pub fn instance_type(&self) -> InstanceType {
        InstanceType {
            name: self.name.clone(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            arch: self.arch,
            gpu: self.gpu.clone(),
        }
    }
}

const CATALOG_YAML: &str = include_str!("../data/catalog.yaml");

/// The built-in catalog.
pub fn builtin() -> Vec<SimType> {
    // The file is part of this crate and covered by a test: failing here is a
    // build defect, not an input error.
    serde_yaml::from_str(CATALOG_YAML).expect("built-in sim catalog parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_the_gpu_shapes_demos_need() {
        let catalog = builtin();
        let shape = |model: &str, count: u32| {
            catalog.iter().any(|t| {
                t.gpu
                    .as_ref()
                    .is_some_and(|g| g.model == model && g.count == count)
            })
        };
        assert!(shape("H100", 8));
        assert!(shape("A100", 8));
        assert!(shape("A100", 1));
        assert!(shape("L4", 1));
        assert!(shape("L40S", 1));
        assert!(shape("A10G", 1));
        for t in &catalog {
            assert!(t.boot.min <= t.boot.max, "{}: boot min above max", t.name);
            assert!(
                t.spot_usd_per_hour < t.on_demand_usd_per_hour,
                "{}: spot not cheaper",
                t.name
            );
            if t.gpu.is_some() {
                assert!(t.boot.min >= Duration::from_secs(180), "{}", t.name);
                assert!(t.boot.max <= Duration::from_secs(480), "{}", t.name);
            }
        }
    }
}
