//! A model of cluster-autoscaler's loop against gpupool, through the same
//! engine calls the gRPC service makes for it:
//! - pending pods that fit no node and no node still booting make CA scale
//!   up one group per loop, the one its price expander picks (the least
//!   cost per pod helped), by as many nodes as bin-packing says, up to max;
//! - `--enforce-node-group-min-size`: a group below its minSize (the
//!   configured min, raised by pre-provisioning floors and interruption
//!   replacements) is raised to it;
//! - nodes without pods for the group's scale-down-unneeded-time (CA's 10
//!   minutes by default) are deleted, down to minSize. Busy GPU nodes are
//!   not consolidated (their pods would be restarted).

use super::shape::Shape;
use super::world::{World, fits, take};
use crate::config::GroupSpec;
use crate::fleet::{Fleet, NodeRef, NodeState, Snapshot};
use crate::preprovision::Floors;
use crate::pricing::PriceBook;
use gpupool_cloud::{CapacityType, PurchaseOption};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// CA's `--scale-down-unneeded-time` default.
pub const UNNEEDED: Duration = Duration::from_secs(600);
/// Empty nodes CA deletes in one loop at most.
const DELETE_PER_LOOP: usize = 10;

pub struct Ca {
    pub scale_down: bool,
}

/// What one loop did, for the timeline.
#[derive(Default, Debug)]
pub struct LoopActions {
    pub scaled_up: Vec<(usize, u32)>,
    pub deleted: usize,
}

/// The minSize CA is told for a group (as the gRPC service computes it).
pub fn min_size(floors: &Floors, spec: &GroupSpec, group: usize, snapshot: &Snapshot) -> u32 {
    floors
        .min_size(group, spec.min_size)
        .max(snapshot.groups[group].replacement_floor)
}

/// A node of the group for an hour, as gpupool prices it for CA's price
/// expander (the dearest of its zones); spot for groups that buy spot.
fn hourly(book: &PriceBook, spec: &GroupSpec, now: SystemTime) -> f64 {
    let capacity = match spec.purchase {
        PurchaseOption::Spot | PurchaseOption::SpotThenOnDemand => CapacityType::Spot,
        PurchaseOption::OnDemand => CapacityType::OnDemand,
    };
    let hour = now + Duration::from_secs(3600);
    crate::pricing::node::group_cost(book, spec, capacity, now, hour)
        .or_else(|_| {
            crate::pricing::node::group_cost(book, spec, CapacityType::OnDemand, now, hour)
        })
        .unwrap_or(f64::MAX / 1e6)
}

impl Ca {
    pub async fn run_loop(
        &self,
        now: SystemTime,
        world: &World<'_>,
        fleet: &Arc<Fleet>,
        floors: &Floors,
        shapes: &[Shape],
        book: &PriceBook,
    ) -> LoopActions {
        let snapshot = fleet.snapshot();
        let specs = fleet.specs();
        let mut actions = LoopActions::default();

        // Capacity already coming: instances still being created.
        let mut upcoming: Vec<(usize, u32, BTreeMap<String, u32>)> = Vec::new();
        for (g, view) in snapshot.groups.iter().enumerate() {
            for i in &view.instances {
                if i.state == NodeState::Creating {
                    upcoming.push((g, shapes[g].gpus, shapes[g].slices.clone()));
                }
            }
        }
        let mut unhelped = Vec::new();
        for index in world.pending() {
            let spec = &world.trace.pods[index];
            let slot = upcoming.iter_mut().find_map(|(g, gpus, slices)| {
                fits(spec, &shapes[*g], *gpus, slices).map(|u| (u, gpus, slices))
            });
            match slot {
                Some((uses, gpus, slices)) => take(&uses, gpus, slices),
                None => unhelped.push(index),
            }
        }

        // Scale-up: the expander's pick among the groups that help.
        if !unhelped.is_empty() {
            let mut best: Option<(f64, usize, u32)> = None;
            for (g, spec) in specs.iter().enumerate() {
                let target = snapshot.groups[g].target;
                let headroom = spec.max_size.saturating_sub(target);
                if headroom == 0 {
                    continue;
                }
                let (nodes, helped) = binpack(world, &unhelped, &shapes[g], headroom);
                if helped == 0 {
                    continue;
                }
                let per_pod = hourly(book, spec, now) * f64::from(nodes) / helped as f64;
                if best.is_none_or(|(c, bg, _)| per_pod < c || (per_pod == c && g < bg)) {
                    best = Some((per_pod, g, nodes));
                }
            }
            if let Some((_, g, nodes)) = best
                && fleet
                    .increase_size(
                        specs[g].id.as_str(),
                        i32::try_from(nodes).unwrap_or(i32::MAX),
                    )
                    .is_ok()
            {
                actions.scaled_up.push((g, nodes));
            }
        }

        // --enforce-node-group-min-size.
        let snapshot = fleet.snapshot();
        for (g, spec) in specs.iter().enumerate() {
            let min = min_size(floors, spec, g, &snapshot);
            let target = snapshot.groups[g].target;
            if target < min
                && fleet
                    .increase_size(spec.id.as_str(), i32::try_from(min - target).unwrap_or(0))
                    .is_ok()
            {
                actions.scaled_up.push((g, min - target));
            }
        }

        // Scale-down of empty nodes.
        if self.scale_down {
            let snapshot = fleet.snapshot();
            let mut removable: Vec<u32> = specs
                .iter()
                .enumerate()
                .map(|(g, spec)| {
                    snapshot.groups[g]
                        .target
                        .saturating_sub(min_size(floors, spec, g, &snapshot))
                })
                .collect();
            let leaving: std::collections::BTreeSet<String> = snapshot
                .groups
                .iter()
                .flat_map(|v| v.leaving.iter().map(|(id, _)| id.to_string()))
                .collect();
            for (id, node) in &world.nodes {
                if actions.deleted >= DELETE_PER_LOOP {
                    break;
                }
                let spec = &specs[node.group];
                let unneeded = spec
                    .annotations
                    .ca_options
                    .scale_down_unneeded_time
                    .unwrap_or(UNNEEDED);
                let idle = node
                    .empty_since
                    .is_some_and(|t| now.duration_since(t).unwrap_or_default() >= unneeded);
                if !idle || removable[node.group] == 0 || leaving.contains(id) {
                    continue;
                }
                let r = NodeRef {
                    provider_id: id.clone(),
                    name: node.name.clone(),
                };
                if fleet.delete_nodes(spec.id.as_str(), &[r]).await.is_ok() {
                    removable[node.group] -= 1;
                    actions.deleted += 1;
                }
            }
        }
        actions
    }
}

/// New nodes of `shape` the pods need (at most `headroom`), and how many
/// of them those nodes take.
fn binpack(world: &World<'_>, pods: &[usize], shape: &Shape, headroom: u32) -> (u32, usize) {
    let mut nodes: Vec<(u32, BTreeMap<String, u32>)> = Vec::new();
    let mut helped = 0;
    for &index in pods {
        let spec = &world.trace.pods[index];
        if fits(spec, shape, shape.gpus, &shape.slices).is_none() {
            continue;
        }
        let placed = nodes
            .iter_mut()
            .find_map(|(gpus, slices)| fits(spec, shape, *gpus, slices).map(|u| (u, gpus, slices)));
        match placed {
            Some((uses, gpus, slices)) => take(&uses, gpus, slices),
            None => {
                if nodes.len() as u32 >= headroom {
                    continue;
                }
                let (mut gpus, mut slices) = (shape.gpus, shape.slices.clone());
                if let Some(uses) = fits(spec, shape, gpus, &slices) {
                    take(&uses, &mut gpus, &mut slices);
                }
                nodes.push((gpus, slices));
            }
        }
        helped += 1;
    }
    (nodes.len() as u32, helped)
}
