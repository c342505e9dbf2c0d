//! The immutable view every RPC answers from, swapped whole after each change.

use super::group::{GroupState, Member};
use crate::metrics::GroupCounts;
use gpupool_cloud::{CloudError, InstanceState, ProviderId};
use std::collections::HashMap;
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
}

/// One group at one moment.
#[derive(Clone, Debug, Default)]
pub struct GroupView {
    pub target: u32,
    pub instances: Vec<InstanceView>,
    pub counts: GroupCounts,
}

/// Every group at one moment, with the indexes per-node RPCs need.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// In config order; the index is the group's index everywhere.
    pub groups: Vec<GroupView>,
    by_provider_id: HashMap<ProviderId, usize>,
    by_node_name: HashMap<String, usize>,
    /// When the fleet was last synced with the cloud successfully.
    pub synced_at: Option<SystemTime>,
}

impl Snapshot {
    pub fn build(states: &[GroupState], synced_at: Option<SystemTime>) -> Self {
        let mut snapshot = Snapshot {
            groups: Vec::with_capacity(states.len()),
            synced_at,
            ..Default::default()
        };
        for (index, state) in states.iter().enumerate() {
            let mut view = GroupView {
                target: state.target(),
                ..Default::default()
            };
            view.counts.target = view.target;
            for member in state.members() {
                let iv = match member {
                    Member::Requested { placeholder, .. } => {
                        view.counts.creating += 1;
                        InstanceView {
                            provider_id: placeholder.clone(),
                            state: NodeState::Creating,
                            error: None,
                            instance_type: state.spec.instance_type.name.clone(),
                            capacity_type: None,
                        }
                    }
                    Member::Failed { placeholder, error } => {
                        view.counts.failed += 1;
                        InstanceView {
                            provider_id: placeholder.clone(),
                            state: NodeState::Creating,
                            error: Some(error.clone()),
                            instance_type: state.spec.instance_type.name.clone(),
                            capacity_type: None,
                        }
                    }
                    Member::Live(i) => {
                        let running = i.state == InstanceState::Running;
                        if running {
                            view.counts.ready += 1;
                        } else {
                            view.counts.creating += 1;
                        }
                        if let Some(name) = &i.node_name {
                            snapshot.by_node_name.insert(name.clone(), index);
                        }
                        InstanceView {
                            provider_id: i.provider_id.clone(),
                            state: if running {
                                NodeState::Running
                            } else {
                                NodeState::Creating
                            },
                            error: None,
                            instance_type: i.instance_type.clone(),
                            capacity_type: Some(i.capacity_type),
                        }
                    }
                };
                snapshot
                    .by_provider_id
                    .insert(iv.provider_id.clone(), index);
                view.instances.push(iv);
            }
            for d in state.deleting() {
                view.counts.deleting += 1;
                let i = &d.instance;
                snapshot.by_provider_id.insert(i.provider_id.clone(), index);
                if let Some(name) = &i.node_name {
                    snapshot.by_node_name.insert(name.clone(), index);
                }
                view.instances.push(InstanceView {
                    provider_id: i.provider_id.clone(),
                    state: NodeState::Deleting,
                    error: None,
                    instance_type: i.instance_type.clone(),
                    capacity_type: Some(i.capacity_type),
                });
            }
            snapshot.groups.push(view);
        }
        snapshot
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
