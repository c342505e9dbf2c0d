//! Prices for CA's `price` expander: a node's price over an interval, and a
//! pod's share of the cheapest node that fits it.
//!
//! Template nodes are priced by their group (from the name CA gives them,
//! `template-node-for-<group>-<random>`) or by their labels, never by looking up
//! the providerID they may carry.

pub mod pod;

pub use pod::{PodRequests, pod_requests};

use crate::config::GroupSpec;
use crate::fleet::Snapshot;
use crate::template::{CAPACITY_TYPE_LABEL, GPU_RESOURCE, Template};
use gpupool_cloud::{CapacityType, Price};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    #[error("no {capacity_type} price known for instance type {instance_type}")]
    NoPrice {
        instance_type: String,
        capacity_type: CapacityType,
    },
    #[error(
        "node {0:?} is not a node of ours and carries no node.kubernetes.io/instance-type label to price it by"
    )]
    UnknownNode(String),
}

/// Hourly prices by instance type and capacity type.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    hourly: HashMap<(String, CapacityType), f64>,
}

impl PriceBook {
    /// Zonal prices are folded to the highest of the region, so a price is
    /// never understated.
    pub fn new(prices: Vec<Price>) -> Self {
        let mut hourly: HashMap<(String, CapacityType), f64> = HashMap::new();
        for p in prices {
            let e = hourly
                .entry((p.instance_type, p.capacity_type))
                .or_insert(0.0);
            *e = e.max(p.usd_per_hour);
        }
        Self { hourly }
    }

    pub fn hourly(
        &self,
        instance_type: &str,
        capacity_type: CapacityType,
    ) -> Result<f64, PriceError> {
        self.hourly
            .get(&(instance_type.to_owned(), capacity_type))
            .copied()
            .ok_or_else(|| PriceError::NoPrice {
                instance_type: instance_type.to_owned(),
                capacity_type,
            })
    }
}

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

/// Hourly price of a node.
pub fn node_hourly(
    book: &PriceBook,
    specs: &[Arc<GroupSpec>],
    snapshot: &Snapshot,
    node: NodeRef<'_>,
) -> Result<f64, PriceError> {
    let labelled_capacity = node
        .labels
        .get(CAPACITY_TYPE_LABEL)
        .and_then(|v| match v.as_str() {
            "spot" => Some(CapacityType::Spot),
            "on-demand" => Some(CapacityType::OnDemand),
            _ => None,
        });
    if let Some(g) = template_group(node.name, specs) {
        let spec = &specs[g];
        let capacity = labelled_capacity.unwrap_or(spec.purchase.preferred());
        return book.hourly(&spec.instance_type.name, capacity);
    }
    if let Some((g, instance)) = snapshot.instance(node.provider_id) {
        let capacity = instance
            .capacity_type
            .unwrap_or(specs[g].purchase.preferred());
        return book.hourly(&instance.instance_type, capacity);
    }
    match node.labels.get("node.kubernetes.io/instance-type") {
        Some(ty) => book.hourly(ty, labelled_capacity.unwrap_or(CapacityType::OnDemand)),
        None => Err(PriceError::UnknownNode(node.name.to_owned())),
    }
}

/// Hourly price of a pod: its share of the cheapest group whose fresh node fits
/// it. The share is the largest of its CPU, memory and GPU fractions of the
/// node's allocatable (at least one pod slot). A pod that fits no group is
/// priced at the dearest group's whole node: conservative, never an error,
/// because CA's price expander drops options whose price fails.
pub fn pod_hourly(
    book: &PriceBook,
    groups: &[(Arc<GroupSpec>, Arc<Template>)],
    pod: &PodRequests,
) -> f64 {
    let mut best: Option<f64> = None;
    let mut dearest = 0.0f64;
    for (spec, template) in groups {
        let Ok(node_price) = book.hourly(&spec.instance_type.name, spec.purchase.preferred())
        else {
            continue;
        };
        dearest = dearest.max(node_price);
        let alloc = |r: &str| template.allocatable(r);
        let fractions = [
            (pod.cpu, alloc("cpu")),
            (pod.memory, alloc("memory")),
            (pod.gpu, alloc(GPU_RESOURCE)),
        ];
        if fractions.iter().any(|(want, have)| *want > *have) {
            continue;
        }
        let share = fractions
            .iter()
            .filter(|(want, _)| *want > 0.0)
            .map(|(want, have)| want / have)
            .fold(1.0 / f64::from(crate::template::MAX_PODS), f64::max);
        let price = node_price * share;
        best = Some(best.map_or(price, |b| b.min(price)));
    }
    best.unwrap_or(dearest)
}

/// A group's price table row: on-demand and spot per hour.
pub fn group_prices(book: &PriceBook, spec: &GroupSpec) -> BTreeMap<CapacityType, f64> {
    [CapacityType::OnDemand, CapacityType::Spot]
        .into_iter()
        .filter_map(|c| {
            book.hourly(&spec.instance_type.name, c)
                .ok()
                .map(|p| (c, p))
        })
        .collect()
}
