//! The built-in catalog of GPU instance types of AWS, GCP and Azure
//! (`instance-types.yaml`, every entry with its source), so a template can be
//! built for any named type without writing capacity by hand. A backend's live
//! catalog (instance types / machine types / resource SKUs APIs) extends it and
//! wins where both name a type.

use crate::config::CloudKind;
use gpupool_cloud::{Arch, GpuInfo, InstanceType};
use serde::Deserialize;
use std::sync::OnceLock;

const DATA: &str = include_str!("instance-types.yaml");

/// One catalog entry, as in the data file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub cloud: CloudKind,
    pub family: String,
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub arch: Arch,
    pub gpu: EntryGpu,
    /// GPU-to-GPU link and RDMA network, in words.
    pub interconnect: String,
    /// Where the figures come from.
    pub source: String,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryGpu {
    pub accelerator: String,
    pub model: String,
    pub product: String,
    pub count: u32,
    pub memory_mib: u64,
    /// Whether the GPU model supports MIG.
    pub mig: bool,
    /// The fraction of one GPU (Azure's vGPU sizes), if not whole.
    pub partition: Option<String>,
}

impl Entry {
    pub fn instance_type(&self) -> InstanceType {
        InstanceType {
            name: self.name.clone(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            arch: self.arch,
            gpu: Some(GpuInfo {
                accelerator: self.gpu.accelerator.clone(),
                model: self.gpu.model.clone(),
                product: self.gpu.product.clone(),
                count: self.gpu.count,
                memory_mib: self.gpu.memory_mib,
            }),
        }
    }
}

/// Every entry of the built-in catalog.
pub fn entries() -> &'static [Entry] {
    static ENTRIES: OnceLock<Vec<Entry>> = OnceLock::new();
    // The data file is part of the build and covered by tests: failing to
    // parse it is a build defect, not an input error.
    ENTRIES.get_or_init(|| serde_yaml::from_str(DATA).expect("built-in catalog parses"))
}

/// The built-in instance types of one cloud.
pub fn builtin(cloud: CloudKind) -> Vec<InstanceType> {
    entries()
        .iter()
        .filter(|e| e.cloud == cloud)
        .map(Entry::instance_type)
        .collect()
}

/// The built-in types extended by a live catalog. Live figures win by name
/// (vCPUs, memory, GPU count and memory), but a built-in type keeps its
/// curated GPU names (accelerator label, model, product as GPU feature
/// discovery writes it): the cloud's own names for a GPU do not match what
/// the nodes will be labelled with.
pub fn merge(builtin: Vec<InstanceType>, live: Vec<InstanceType>) -> Vec<InstanceType> {
    let mut out: Vec<InstanceType> = Vec::with_capacity(builtin.len() + live.len());
    let mut live: Vec<Option<InstanceType>> = live.into_iter().map(Some).collect();
    for b in builtin {
        let found = live
            .iter_mut()
            .find(|l| l.as_ref().is_some_and(|l| l.name == b.name))
            .and_then(Option::take);
        out.push(match found {
            None => b,
            Some(mut l) => {
                if let (Some(lg), Some(bg)) = (l.gpu.as_mut(), b.gpu) {
                    lg.accelerator = bg.accelerator;
                    lg.model = bg.model;
                    lg.product = bg.product;
                }
                l
            }
        });
    }
    out.extend(live.into_iter().flatten());
    out
}

#[cfg(test)]
mod tests;
