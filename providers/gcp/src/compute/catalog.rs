//! The live catalog, read at connect: `machineTypes.list` in each zone of
//! the region (every type with GPUs, and every type a group names) and
//! `acceleratorTypes.list` for the GPUs' names. N1 machine types take GPUs
//! by choice: a group's `guest_accelerators` make its type's GPUs.

use super::errors::classify;
use super::paging;
use super::{GceSettings, Limits};
use crate::machines::MachineShape;
use google_cloud_compute_v1::client::{AcceleratorTypes, MachineTypes};
use google_cloud_compute_v1::model;
use gpupool_cloud::{Arch, CloudError, GpuInfo, InstanceType};
use std::collections::{BTreeMap, BTreeSet};

const PAGE_SIZE: u32 = 500;

/// What connect learns of the region's machines.
pub(super) struct Live {
    pub types: Vec<InstanceType>,
    /// (zone, machine type) pairs offered.
    pub offered: BTreeSet<(String, String)>,
    /// The billed parts of the groups' machine types, for prices.
    pub shapes: Vec<MachineShape>,
}

pub(super) async fn read(
    machine_types: &MachineTypes,
    accelerator_types: &AcceleratorTypes,
    settings: &GceSettings,
    zones: &[String],
    limits: &Limits,
) -> Result<Live, CloudError> {
    // A machine type's GPUs chosen by its groups (N1 + T4).
    let mut attached: BTreeMap<&str, (&str, u32)> = BTreeMap::new();
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for g in settings.groups.values() {
        named.extend(g.machine_types.iter().map(String::as_str));
        if let Some(a) = &g.guest_accelerators {
            for t in &g.machine_types {
                attached.insert(t, (a.accelerator_type.as_str(), a.count));
            }
        }
    }
    let mut descriptions: BTreeMap<String, String> = BTreeMap::new();
    let mut types: BTreeMap<String, InstanceType> = BTreeMap::new();
    let mut shapes: BTreeMap<String, MachineShape> = BTreeMap::new();
    let mut offered = BTreeSet::new();
    for zone in zones {
        for a in accelerators_in(accelerator_types, &settings.project, zone, limits).await? {
            if let (Some(name), Some(d)) = (a.name, a.description) {
                descriptions.entry(name).or_insert(d);
            }
        }
        for m in machines_in(machine_types, &settings.project, zone, limits).await? {
            let Some(name) = m.name.clone() else { continue };
            let built_in = m.accelerators.iter().find_map(|a| {
                Some((
                    a.guest_accelerator_type.as_deref()?,
                    u32::try_from(a.guest_accelerator_count?).ok()?,
                ))
            });
            let gpus = built_in.or_else(|| attached.get(name.as_str()).copied());
            if gpus.is_none() && !named.contains(name.as_str()) {
                continue;
            }
            offered.insert((zone.clone(), name.clone()));
            if types.contains_key(&name) {
                continue;
            }
            let Some(vcpus) = m.guest_cpus.and_then(|c| u32::try_from(c).ok()) else {
                continue;
            };
            let Some(memory_mib) = m.memory_mb.and_then(|c| u64::try_from(c).ok()) else {
                continue;
            };
            let arch = match m.architecture {
                Some(model::machine_type::Architecture::Arm64) => Arch::Arm64,
                _ => Arch::Amd64,
            };
            let gpu = gpus.map(|(accelerator, count)| {
                gpu_info(
                    accelerator,
                    count,
                    descriptions.get(accelerator).map(String::as_str),
                )
            });
            if named.contains(name.as_str()) {
                let ssd = m
                    .bundled_local_ssds
                    .as_ref()
                    .and_then(|s| s.partition_count)
                    .and_then(|c| u32::try_from(c).ok())
                    .unwrap_or(0);
                shapes.insert(
                    name.clone(),
                    MachineShape {
                        name: name.clone(),
                        vcpus,
                        memory_gib: memory_mib as f64 / 1024.0,
                        gpus: gpus.map(|(a, c)| (a.to_owned(), c)),
                        local_ssd_partitions: ssd,
                    },
                );
            }
            types.insert(
                name.clone(),
                InstanceType {
                    name,
                    vcpus,
                    memory_mib,
                    arch,
                    gpu,
                },
            );
        }
    }
    Ok(Live {
        types: types.into_values().collect(),
        offered,
        shapes: shapes.into_values().collect(),
    })
}

async fn machines_in(
    client: &MachineTypes,
    project: &str,
    zone: &str,
    limits: &Limits,
) -> Result<Vec<model::MachineType>, CloudError> {
    paging::all(&format!("machineTypes.list in {zone}"), async |token| {
        limits.read.until_ready().await;
        let page = client
            .list()
            .set_project(project)
            .set_zone(zone)
            .set_max_results(PAGE_SIZE)
            .set_page_token(token)
            .send()
            .await
            .map_err(|e| classify("machineTypes.list", &e))?;
        Ok((page.items, page.next_page_token))
    })
    .await
}

async fn accelerators_in(
    client: &AcceleratorTypes,
    project: &str,
    zone: &str,
    limits: &Limits,
) -> Result<Vec<model::AcceleratorType>, CloudError> {
    paging::all(&format!("acceleratorTypes.list in {zone}"), async |token| {
        limits.read.until_ready().await;
        let page = client
            .list()
            .set_project(project)
            .set_zone(zone)
            .set_max_results(PAGE_SIZE)
            .set_page_token(token)
            .send()
            .await
            .map_err(|e| classify("acceleratorTypes.list", &e))?;
        Ok((page.items, page.next_page_token))
    })
    .await
}

/// A Compute Engine accelerator type as the GPUs a node shows: model,
/// product (as NVIDIA GPU feature discovery writes it) and memory for the
/// GPUs gpupool knows, else from the type's description
/// (`NVIDIA H100 80GB`) and name (`-80gb`).
pub fn gpu_info(accelerator: &str, count: u32, description: Option<&str>) -> GpuInfo {
    let known: Option<(&str, &str, u64)> = match accelerator {
        "nvidia-h100-80gb" => Some(("H100", "NVIDIA-H100-80GB-HBM3", 81_559)),
        "nvidia-h100-mega-80gb" => Some(("H100", "NVIDIA-H100-80GB-HBM3", 81_559)),
        "nvidia-h200-141gb" => Some(("H200", "NVIDIA-H200", 143_771)),
        "nvidia-tesla-a100" => Some(("A100", "NVIDIA-A100-SXM4-40GB", 40_960)),
        "nvidia-a100-80gb" => Some(("A100", "NVIDIA-A100-SXM4-80GB", 81_920)),
        "nvidia-l4" => Some(("L4", "NVIDIA-L4", 23_034)),
        "nvidia-tesla-t4" => Some(("T4", "Tesla-T4", 15_360)),
        "nvidia-tesla-v100" => Some(("V100", "Tesla-V100-SXM2-16GB", 16_384)),
        "nvidia-tesla-p100" => Some(("P100", "Tesla-P100-PCIE-16GB", 16_384)),
        "nvidia-tesla-p4" => Some(("P4", "Tesla-P4", 7_680)),
        _ => None,
    };
    let (model, product, memory_mib) = match known {
        Some((m, p, mem)) => (m.to_owned(), p.to_owned(), mem),
        None => {
            let words: Vec<&str> = description
                .unwrap_or(accelerator)
                .split_whitespace()
                .collect();
            let model = words
                .iter()
                .find(|w| w.chars().any(|c| c.is_ascii_digit()) && !w.ends_with("GB"))
                .map_or_else(|| accelerator.to_owned(), |w| (*w).to_owned());
            let gb = accelerator
                .rsplit('-')
                .next()
                .and_then(|s| s.strip_suffix("gb"))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            (model, words.join("-"), gb * 1024)
        }
    };
    GpuInfo {
        accelerator: accelerator.to_owned(),
        model,
        product,
        count,
        memory_mib,
    }
}
