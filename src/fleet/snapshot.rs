//! The immutable view every RPC answers from, swapped whole after each change.

use super::group::{GroupState, Leaving, Member};
use crate::metrics::GroupCounts;
use gpupool_cloud::{CloudError, InstanceState, ProviderId};
use std::sync::Arc;
use std::time::SystemTime;

/// How CA sees one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Creating,
    Running,
    Deleting,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InstanceView {
    pub provider_id: ProviderId,
    pub state: NodeState,
    pub error: Option<CloudError>,
    pub instance_type: String,
    pub capacity_type: Option<gpupool_cloud::CapacityType>,
    /// Where a live instance runs.
    pub zone: Option<String>,
    /// The Kubernetes node name the cloud reports, once known.
    pub node_name: Option<String>,
}

/// One group at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupView {
    pub target: u32,
    pub instances: Vec<InstanceView>,
    pub counts: GroupCounts,
    /// Kubernetes node names the cloud reported for the group's instances.
    pub node_names: Vec<String>,
    /// Members leaving through an interruption operation.
    pub leaving: Vec<(ProviderId, Leaving)>,
    /// The minSize their replacements ask of CA (0: none).
    pub replacement_floor: u32,
}

/// Every group at one moment, with the indexes per-node RPCs need.
///
/// The indexes are persistent maps: the next snapshot shares everything with
/// this one but the groups that changed, so a change to one group costs what
/// that group holds, not what the fleet holds.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// In config order; the index is the group's index everywhere.
    pub groups: Vec<Arc<GroupView>>,
    by_provider_id: imbl::HashMap<ProviderId, usize>,
    by_node_name: imbl::HashMap<String, usize>,
    /// When the fleet was last synced with the cloud successfully.
    pub synced_at: Option<SystemTime>,
}

impl GroupView {
    pub fn of(state: &GroupState) -> Self {
        let mut view = GroupView {
            target: state.target(),
            ..Default::default()
        };
        view.counts.target = view.target;
        view.leaving = state
            .leaving()
            .iter()
            .map(|(p, l)| (p.clone(), l.clone()))
            .collect();
        view.replacement_floor = state.replacement_floor();
        let slot = |placeholder: &ProviderId, error: Option<&CloudError>| InstanceView {
            provider_id: placeholder.clone(),
            state: NodeState::Creating,
            error: error.cloned(),
            instance_type: state.spec.instance_type.name.clone(),
            capacity_type: None,
            zone: None,
            node_name: None,
        };
        for member in state.members() {
            let iv = match member {
                Member::Requested { placeholder, .. } => {
                    view.counts.creating += 1;
                    slot(placeholder, None)
                }
                Member::Failed { placeholder, error } => {
                    view.counts.failed += 1;
                    slot(placeholder, Some(error))
                }
                Member::Live(i)
                    if state
                        .leaving()
                        .get(&i.provider_id)
                        .is_some_and(|l| l.draining) =>
                {
                    // Still a member (the target does not move), but CA
                    // must not count on it: it is being drained.
                    view.counts.deleting += 1;
                    view.live(i, NodeState::Deleting)
                }
                Member::Live(i) => {
                    let running = i.state == InstanceState::Running;
                    if running {
                        view.counts.ready += 1;
                    } else {
                        view.counts.creating += 1;
                    }
                    view.live(
                        i,
                        if running {
                            NodeState::Running
                        } else {
                            NodeState::Creating
                        },
                    )
                }
            };
            view.instances.push(iv);
        }
        for d in state.deleting() {
            view.counts.deleting += 1;
            let iv = view.live(&d.instance, NodeState::Deleting);
            view.instances.push(iv);
        }
        view
    }

    fn live(&mut self, i: &gpupool_cloud::Instance, state: NodeState) -> InstanceView {
        if let Some(name) = &i.node_name {
            self.node_names.push(name.clone());
        }
        InstanceView {
            provider_id: i.provider_id.clone(),
            state,
            error: None,
            instance_type: i.instance_type.clone(),
            capacity_type: Some(i.capacity_type),
            zone: Some(i.zone.clone()),
            node_name: i.node_name.clone(),
        }
    }
}

impl Snapshot {
    /// The first snapshot: every group.
    pub fn build(states: &[GroupState], synced_at: Option<SystemTime>) -> Self {
        let empty = Snapshot {
            groups: states.iter().map(|_| Arc::default()).collect(),
            ..Default::default()
        };
        empty.with(states, 0..states.len(), synced_at).0
    }

    /// The next snapshot: `changed` groups rebuilt from `states`, the rest
    /// shared, and the groups whose view did change. A group rebuilt to the
    /// same view keeps its old one (and its index entries), so a sync that
    /// finds nothing new costs a comparison per group, not a rebuild of the
    /// indexes.
    pub fn with(
        &self,
        states: &[GroupState],
        changed: impl IntoIterator<Item = usize>,
        synced_at: Option<SystemTime>,
    ) -> (Self, Vec<usize>) {
        let mut next = self.clone();
        next.synced_at = synced_at;
        let mut rebuilt = Vec::new();
        for index in changed {
            let view = GroupView::of(&states[index]);
            let old = &self.groups[index];
            if **old == view {
                continue;
            }
            rebuilt.push(index);
            for i in &old.instances {
                if next.by_provider_id.get(&i.provider_id) == Some(&index) {
                    next.by_provider_id.remove(&i.provider_id);
                }
            }
            for name in &old.node_names {
                if next.by_node_name.get(name) == Some(&index) {
                    next.by_node_name.remove(name);
                }
            }
            for i in &view.instances {
                next.by_provider_id.insert(i.provider_id.clone(), index);
            }
            for name in &view.node_names {
                next.by_node_name.insert(name.clone(), index);
            }
            next.groups[index] = Arc::new(view);
        }
        (next, rebuilt)
    }

    /// The group of a node: by providerID, or by name when that is empty.
    /// Unregistered instances are named by their providerID, so a name is
    /// tried as a providerID too.
    pub fn group_of(&self, provider_id: &str, name: &str) -> Option<usize> {
        if !provider_id.is_empty() {
            return self.by_provider_id.get(provider_id).copied();
        }
        if name.is_empty() {
            return None;
        }
        self.by_node_name
            .get(name)
            .or_else(|| self.by_provider_id.get(name))
            .copied()
    }

    /// The instance a notice names, if it is one of ours: by providerID, by
    /// node name, or by the cloud's instance id or VM name (the last segment
    /// of a providerID).
    pub fn find(&self, target: &crate::webhook::Target) -> Option<(usize, &InstanceView)> {
        use crate::webhook::Target;
        match target {
            Target::ProviderId(p) => self.instance(p),
            Target::Node(n) => {
                let group = *self.by_node_name.get(n)?;
                self.groups[group]
                    .instances
                    .iter()
                    .find(|v| v.node_name.as_deref() == Some(n.as_str()))
                    .map(|v| (group, v))
            }
            Target::Instance(id) => {
                // Azure names a Uniform scale set's VMs `<scaleset>_<n>` in
                // Scheduled Events; their providerID ends in
                // `virtualMachineScaleSets/<scaleset>/virtualMachines/<n>`.
                let scale_set_vm = id
                    .rsplit_once('_')
                    .map(|(set, n)| format!("/virtualMachineScaleSets/{set}/virtualMachines/{n}"));
                self.groups.iter().enumerate().find_map(|(g, view)| {
                    view.instances
                        .iter()
                        .find(|v| {
                            let p = v.provider_id.as_str();
                            p.rsplit('/').next() == Some(id.as_str())
                                || scale_set_vm
                                    .as_deref()
                                    .is_some_and(|s| ends_with_ignoring_case(p, s))
                        })
                        .map(|v| (g, v))
                })
            }
        }
    }

    /// The instance behind a providerID, if it is one of ours.
    pub fn instance(&self, provider_id: &str) -> Option<(usize, &InstanceView)> {
        let group = *self.by_provider_id.get(provider_id)?;
        self.groups[group]
            .instances
            .iter()
            .find(|i| i.provider_id.as_str() == provider_id)
            .map(|i| (group, i))
    }
}

/// Azure's resource names are case-insensitive: `a` ends with `suffix` in
/// any case, without allocating (this runs per instance per notice).
fn ends_with_ignoring_case(a: &str, suffix: &str) -> bool {
    a.len() >= suffix.len()
        && a.as_bytes()[a.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}
