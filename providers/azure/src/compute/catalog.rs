//! The live catalog, read once at connect from the Resource SKUs API
//! (`GET /subscriptions/S/providers/Microsoft.Compute/skus?$filter=location
//! eq 'L'`): each VM size's vCPUs, memory and GPUs (its `capabilities`),
//! the zones of the location that offer it (`locationInfo`) less those the
//! subscription may not use (`restrictions`: `NotAvailableForSubscription`
//! for the location or some zones).

use super::Limits;
use super::names::zone_label;
use super::paging;
use crate::arm::Arm;
use crate::sizes::gpu_info;
use azure_mgmt_compute::package_2024_07_01::models::{
    self, resource_sku_restrictions::Type as RestrictionType,
};
use gpupool_cloud::{Arch, CloudError, InstanceType};
use std::collections::BTreeSet;

/// A bound on paging, against a server that never stops linking.
const MAX_PAGES: usize = 200;

/// What connect learns of the location's sizes.
#[derive(Debug, Default)]
pub(super) struct Live {
    /// GPU sizes and the sizes groups name.
    pub types: Vec<InstanceType>,
    /// (zone label, size) pairs the subscription may use.
    pub offered: BTreeSet<(String, String)>,
    /// The location's zones (labels), over every size read.
    pub zones: BTreeSet<String>,
}

pub(super) async fn read(
    arm: &Arm,
    subscription: &str,
    location: &str,
    named: &BTreeSet<String>,
    limits: &Limits,
) -> Result<Live, CloudError> {
    let pages = arm
        .client
        .resource_skus_client()
        .list(subscription)
        .filter(format!("location eq '{location}'"))
        .into_stream();
    let mut live = Live::default();
    for page in paging::all("resourceSkus.list", limits, MAX_PAGES, pages).await? {
        for sku in &page.value {
            read_sku(sku, location, named, &mut live);
        }
    }
    Ok(live)
}

fn read_sku(sku: &models::ResourceSku, location: &str, named: &BTreeSet<String>, live: &mut Live) {
    if sku.resource_type.as_deref() != Some("virtualMachines") {
        return;
    }
    let Some(name) = sku.name.clone() else {
        return;
    };
    let capability = |key: &str| {
        sku.capabilities
            .iter()
            .find(|c| c.name.as_deref() == Some(key))
            .and_then(|c| c.value.clone())
    };
    let number = |key: &str| capability(key).and_then(|v| v.parse::<f64>().ok());
    let vcpus = number("vCPUs").unwrap_or(0.0) as u32;
    let gpus = number("GPUs").unwrap_or(0.0) as u32;
    let gpu = gpu_info(&name, vcpus, gpus);
    if gpu.is_none() && !named.contains(&name) {
        return;
    }
    let in_location = |l: &str| l.eq_ignore_ascii_case(location);
    let mut zones: BTreeSet<String> = sku
        .location_info
        .iter()
        .filter(|i| i.location.as_deref().is_some_and(in_location))
        .flat_map(|i| i.zones.iter().cloned())
        .collect();
    live.zones
        .extend(zones.iter().map(|z| zone_label(location, z)));
    for r in &sku.restrictions {
        let info = r.restriction_info.as_ref();
        match r.type_ {
            Some(RestrictionType::Location) => {
                let here = info.is_none_or(|i| i.locations.iter().any(|l| in_location(l)));
                if here {
                    zones.clear();
                }
            }
            Some(RestrictionType::Zone) => {
                if let Some(i) = info {
                    zones.retain(|z| !i.zones.contains(z));
                }
            }
            None => {}
        }
    }
    for z in &zones {
        live.offered.insert((zone_label(location, z), name.clone()));
    }
    let arch = match capability("CpuArchitectureType").as_deref() {
        Some("Arm64") => Arch::Arm64,
        _ => Arch::Amd64,
    };
    live.types.push(InstanceType {
        name,
        vcpus,
        memory_mib: (number("MemoryGB").unwrap_or(0.0) * 1024.0) as u64,
        arch,
        gpu,
    });
}
