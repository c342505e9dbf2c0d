//! Each instance's way from purchase to a schedulable GPU, pieced together
//! from the cloud's listings and the Kubernetes API's Node events:
//! created → running (cloud) → node registered → Ready → GPUs allocatable.
//!
//! Where the API carries the moment it is used (`creationTimestamp` for
//! registration, the Ready condition's `lastTransitionTime`); the cloud's
//! `running` and the device plugin's first allocatable GPU carry none, so
//! they are the moment gpupool saw them (a sync interval or a watch event
//! late at most).

use gpupool_cloud::{Instance, InstanceState};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// The end of each boot phase, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Purchase → the cloud reports it running.
    Running,
    /// → its Node object exists.
    Registered,
    /// → the Node is Ready.
    Ready,
    /// → the Node advertises allocatable GPUs.
    GpuAllocatable,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Running,
        Phase::Registered,
        Phase::Ready,
        Phase::GpuAllocatable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Registered => "registered",
            Phase::Ready => "ready",
            Phase::GpuAllocatable => "gpu_allocatable",
        }
    }
}

/// What a Node tells about its boot.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeObs {
    pub name: String,
    pub provider_id: String,
    /// `metadata.creationTimestamp`
    pub registered: SystemTime,
    /// The Ready condition's `lastTransitionTime`, when it is True.
    pub ready_since: Option<SystemTime>,
    /// Whether it advertises allocatable GPUs (`nvidia.com/gpu` or
    /// `nvidia.com/mig-*` above zero).
    pub gpus: bool,
}

/// A finished boot.
#[derive(Clone, Debug, PartialEq)]
pub struct Boot {
    pub group: usize,
    pub provider_id: String,
    /// Purchase to schedulable.
    pub total: Duration,
    /// Each phase's own duration, where both of its ends are known.
    pub phases: Vec<(Phase, Duration)>,
}

#[derive(Clone, Debug, Default)]
struct Timeline {
    group: Option<usize>,
    launched: Option<SystemTime>,
    /// Ends of phases, indexed like [`Phase::ALL`].
    ends: [Option<SystemTime>; 4],
    node: Option<String>,
    /// Finished (or found finished): no more samples from it.
    done: bool,
    /// The listing that last saw it live.
    listed: u64,
}

/// Every instance's boot under way.
#[derive(Debug)]
pub struct Tracker {
    /// Per group: whether a boot ends at allocatable GPUs (else at Ready:
    /// groups without GPU resources in their template, e.g. DRA).
    needs_gpu: Vec<bool>,
    by_provider: HashMap<String, Timeline>,
    /// Listings so far: marks what each one saw, so the rest is swept
    /// without building a set of what it saw.
    listings: u64,
}

impl Tracker {
    pub fn new(needs_gpu: Vec<bool>) -> Self {
        Self {
            needs_gpu,
            by_provider: HashMap::new(),
            listings: 0,
        }
    }

    /// Every group's instances (indexed by group) as the cloud listed them
    /// at `now`; instances no longer listed live are forgotten.
    pub fn instances(&mut self, per_group: &[Vec<Instance>], now: SystemTime) -> Vec<Boot> {
        let is_live =
            |i: &&Instance| matches!(i.state, InstanceState::Pending | InstanceState::Running);
        self.listings += 1;
        let listing = self.listings;
        let mut boots = Vec::new();
        for (group, listed) in per_group.iter().enumerate() {
            for i in listed.iter().filter(is_live) {
                let id = i.provider_id.as_str();
                // Looked up before inserting: most are known, and an owned
                // key per instance per sync adds up.
                if !self.by_provider.contains_key(id) {
                    self.by_provider.insert(id.to_owned(), Timeline::default());
                }
                let Some(t) = self.by_provider.get_mut(id) else {
                    continue;
                };
                t.listed = listing;
                if t.done {
                    continue;
                }
                t.group = Some(group);
                t.launched = Some(i.launched_at);
                if i.state == InstanceState::Running && t.ends[0].is_none() {
                    // Registered already means running already: not later than that.
                    t.ends[0] = Some(t.ends[1].map_or(now, |r| r.min(now)));
                }
                boots.extend(self.finish(id));
            }
        }
        // One pass over everything tracked, whatever the number of groups:
        // what no longer runs is forgotten (a node seen before its
        // instance, without a group yet, is kept).
        self.by_provider
            .retain(|_, t| t.group.is_none() || t.listed == listing);
        boots
    }

    /// A Node as seen at `now`. `initial`: from the first listing after a
    /// (re)start, so whatever it already finished happened unobserved.
    pub fn node(&mut self, obs: &NodeObs, now: SystemTime, initial: bool) -> Option<Boot> {
        let t = self.by_provider.entry(obs.provider_id.clone()).or_default();
        t.node = Some(obs.name.clone());
        let registered = *t.ends[1].get_or_insert(obs.registered);
        // Seen running late (at a sync) but registered before: it ran by then.
        if t.ends[0].is_some_and(|r| r > registered) {
            t.ends[0] = Some(registered);
        }
        if let Some(ready) = obs.ready_since {
            t.ends[2].get_or_insert(ready);
        }
        if obs.gpus && t.ends[3].is_none() {
            t.ends[3] = Some(now);
            if initial {
                t.done = true;
            }
        }
        let gpu_pending = t.ends[3].is_none();
        let needs_gpu = self.needs_gpu_of(&self.by_provider[&obs.provider_id]);
        if initial
            && gpu_pending
            && obs.ready_since.is_some()
            && !needs_gpu
            && let Some(t) = self.by_provider.get_mut(&obs.provider_id)
        {
            t.done = true;
        }
        self.finish(&obs.provider_id)
    }

    /// A Node deleted: its instance, if still listed, boots no more.
    pub fn node_gone(&mut self, provider_id: &str) {
        match self.by_provider.get_mut(provider_id) {
            // Not one of ours (or not listed yet): nothing to keep.
            Some(t) if t.group.is_none() => {
                self.by_provider.remove(provider_id);
            }
            Some(t) => t.done = true,
            None => {}
        }
    }

    fn needs_gpu_of(&self, t: &Timeline) -> bool {
        t.group
            .and_then(|g| self.needs_gpu.get(g).copied())
            .unwrap_or(true)
    }

    /// The boot of `provider_id` if it just finished.
    fn finish(&mut self, provider_id: &str) -> Option<Boot> {
        let needs_gpu = self.needs_gpu_of(self.by_provider.get(provider_id)?);
        let t = self.by_provider.get_mut(provider_id)?;
        let (Some(group), Some(launched)) = (t.group, t.launched) else {
            return None;
        };
        let last = if needs_gpu { 3 } else { 2 };
        let end = t.ends[last]?;
        if t.done {
            return None;
        }
        t.done = true;
        let mut phases = Vec::new();
        let mut from = Some(launched);
        for (i, phase) in Phase::ALL.iter().enumerate().take(last + 1) {
            let to = t.ends[i];
            if let (Some(a), Some(b)) = (from, to) {
                phases.push((*phase, b.duration_since(a).unwrap_or_default()));
            }
            from = to;
        }
        Some(Boot {
            group,
            provider_id: provider_id.to_owned(),
            total: end.duration_since(launched).unwrap_or_default(),
            phases,
        })
    }

    /// Why the instance `provider_id` is still not schedulable `deadline`
    /// after purchase, if it is not.
    pub fn stuck(&self, provider_id: &str, now: SystemTime, deadline: Duration) -> Option<String> {
        let t = self.by_provider.get(provider_id)?;
        if t.done || t.group.is_none() {
            return None;
        }
        let age = now.duration_since(t.launched?).ok()?;
        if age <= deadline {
            return None;
        }
        let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
        let node = t.node.as_deref().unwrap_or("?");
        Some(match t.ends {
            [_, None, _, _] => format!("no node registered {age} after purchase"),
            [_, Some(_), None, _] => format!("node {node} not Ready {age} after purchase"),
            _ => format!(
                "node {node} Ready but no allocatable GPUs {age} after purchase \
                 (GPU driver or device plugin not up)"
            ),
        })
    }
}
