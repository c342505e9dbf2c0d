//! `PricingNodePrice`: what a node costs over an interval.
//!
//! Template nodes are priced by their group (from the name CA gives them,
//! `template-node-for-<group>-<random>`) and their labels, never by looking up
//! the providerID they may carry (CA copies one from another node).

use super::{PriceBook, PriceError};
use crate::config::GroupSpec;
use crate::fleet::Snapshot;
use crate::template::CAPACITY_TYPE_LABEL;
use gpupool_cloud::CapacityType;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";

/// The node CA asks about.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'a> {
    pub name: &'a str,
    pub provider_id: &'a str,
    pub labels: &'a HashMap<String, String>,
}

/// The group a template node stands for, from `template-node-for-<id>-<random>`.
pub fn template_group(name: &str, specs: &[Arc<GroupSpec>]) -> Option<usize> {
    let rest = name.strip_prefix("template-node-for-")?;
    specs
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            let id = s.id.as_str();
            rest == id || rest.strip_prefix(id).is_some_and(|r| r.starts_with('-'))
        })
        .max_by_key(|(_, s)| s.id.as_str().len())
        .map(|(i, _)| i)
}

fn labelled_capacity(labels: &HashMap<String, String>) -> Option<CapacityType> {
    labels
        .get(CAPACITY_TYPE_LABEL)
        .or_else(|| labels.get("karpenter.sh/capacity-type"))
        .and_then(|v| match v.as_str() {
            "spot" => Some(CapacityType::Spot),
            "on-demand" => Some(CapacityType::OnDemand),
            _ => None,
        })
}

/// A group's node over [start, end]: the dearest of its zones, since CA's
/// template stands for a node in any of them.
pub fn group_cost(
    book: &PriceBook,
    spec: &GroupSpec,
    capacity: CapacityType,
    start: SystemTime,
    end: SystemTime,
) -> Result<f64, PriceError> {
    let ty = &spec.instance_type.name;
    if spec.zones.is_empty() {
        return Ok(book.cost(ty, capacity, None, start, end)?);
    }
    let mut dearest: Option<f64> = None;
    for zone in &spec.zones {
        let c = book.cost(ty, capacity, Some(zone), start, end)?;
        dearest = Some(dearest.map_or(c, |d| d.max(c)));
    }
    Ok(dearest.unwrap_or(0.0))
}

/// What `node` costs from `start` to `end`.
pub fn node_cost(
    book: &PriceBook,
    specs: &[Arc<GroupSpec>],
    snapshot: &Snapshot,
    node: NodeRef<'_>,
    start: SystemTime,
    end: SystemTime,
) -> Result<f64, PriceError> {
    let capacity = labelled_capacity(node.labels);
    let zone = node.labels.get(ZONE_LABEL).map(String::as_str);
    if let Some(g) = template_group(node.name, specs) {
        let spec = &specs[g];
        let capacity = capacity.unwrap_or(spec.purchase.preferred());
        return group_cost(book, spec, capacity, start, end);
    }
    if let Some((g, instance)) = snapshot.instance(node.provider_id) {
        let capacity = instance
            .capacity_type
            .or(capacity)
            .unwrap_or(specs[g].purchase.preferred());
        let zone = instance.zone.as_deref().or(zone);
        return Ok(book.cost(&instance.instance_type, capacity, zone, start, end)?);
    }
    match node.labels.get(INSTANCE_TYPE_LABEL) {
        Some(ty) => Ok(book.cost(
            ty,
            capacity.unwrap_or(CapacityType::OnDemand),
            zone,
            start,
            end,
        )?),
        None => Err(PriceError::UnknownNode(node.name.to_owned())),
    }
}
