//! The cluster as the simulation sees it: the trace's pods (waiting for
//! their arrival, pending, running on a node, done) and the nodes the
//! engine's running instances give. The scheduler places pending pods
//! best-fit; an instance that goes takes its pods with it, and each pod
//! keeps what it had checkpointed.

use super::shape::Shape;
use super::trace::{PodSpec, Trace};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// What a running pod holds on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Use {
    Gpus(u32),
    Slice(String),
    /// A slice asked for where no node shares: a whole GPU.
    WholeForSlice,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PodState {
    Waiting,
    Pending,
    Running {
        node: String,
        started: SystemTime,
        uses: Use,
        /// The GPUs it holds: its [`PodSpec::gpu_share`], divided by the
        /// node's time-slicing replicas.
        share: f64,
    },
    Done,
}

#[derive(Clone, Debug)]
pub struct Pod {
    pub state: PodState,
    /// Progress kept across evictions (checkpointed).
    pub saved: Duration,
    pub first_start: Option<SystemTime>,
    pub finished: Option<SystemTime>,
    pub evictions: u32,
    /// Progress lost to evictions.
    pub lost: Duration,
    /// Evicted with progress it could not keep (not checkpointed).
    pub lost_work: bool,
    /// GPU-seconds held while running (a MIG slice as n/7 of a GPU, a time-sliced
    /// replica as its share).
    pub gpu_seconds: f64,
}

/// A node that pods can use: a running instance of a group.
#[derive(Clone, Debug)]
pub struct Node {
    pub group: usize,
    pub name: String,
    pub free_gpus: u32,
    pub free_slices: BTreeMap<String, u32>,
    pub pods: BTreeSet<usize>,
    /// Since when it has had no pods.
    pub empty_since: Option<SystemTime>,
}

pub struct World<'t> {
    pub trace: &'t Trace,
    pub start: SystemTime,
    pub pods: Vec<Pod>,
    /// Running instances by provider id.
    pub nodes: BTreeMap<String, Node>,
    next: usize,
    /// Pods arrived and not done: what every pass looks at.
    active: BTreeSet<usize>,
}

/// What `pod` would hold on a node of `shape` with the free capacity given,
/// if it fits there.
pub fn fits(
    pod: &PodSpec,
    shape: &Shape,
    free_gpus: u32,
    free_slices: &BTreeMap<String, u32>,
) -> Option<Use> {
    // A slice resource names its GPU itself (mixed-strategy MIG nodes
    // carry no GPU label).
    let sliced = pod
        .slice
        .as_ref()
        .is_some_and(|p| shape.slices.contains_key(p));
    if pod.accelerator.is_some() && pod.accelerator != shape.accelerator && !sliced {
        return None;
    }
    if shape.spot && !pod.interruptible {
        return None;
    }
    if shape.replicas > 1 && !pod.shareable {
        return None;
    }
    match &pod.slice {
        Some(profile) => {
            if free_slices.get(profile).is_some_and(|n| *n > 0) {
                Some(Use::Slice(profile.clone()))
            } else if shape.slices.is_empty() && free_gpus >= 1 {
                Some(Use::WholeForSlice)
            } else {
                None
            }
        }
        None => (pod.gpus > 0 && free_gpus >= pod.gpus).then_some(Use::Gpus(pod.gpus)),
    }
}

/// Takes `uses` out of the free capacity.
pub fn take(uses: &Use, free_gpus: &mut u32, free_slices: &mut BTreeMap<String, u32>) {
    match uses {
        Use::Gpus(n) => *free_gpus -= n,
        Use::WholeForSlice => *free_gpus -= 1,
        Use::Slice(p) => {
            if let Some(n) = free_slices.get_mut(p) {
                *n -= 1;
            }
        }
    }
}

fn give_back(uses: &Use, node: &mut Node) {
    match uses {
        Use::Gpus(n) => node.free_gpus += n,
        Use::WholeForSlice => node.free_gpus += 1,
        Use::Slice(p) => *node.free_slices.entry(p.clone()).or_default() += 1,
    }
}

impl<'t> World<'t> {
    pub fn new(trace: &'t Trace, start: SystemTime) -> Self {
        let pods = trace
            .pods
            .iter()
            .map(|_| Pod {
                state: PodState::Waiting,
                saved: Duration::ZERO,
                first_start: None,
                finished: None,
                evictions: 0,
                lost: Duration::ZERO,
                lost_work: false,
                gpu_seconds: 0.0,
            })
            .collect();
        Self {
            trace,
            start,
            pods,
            nodes: BTreeMap::new(),
            next: 0,
            active: BTreeSet::new(),
        }
    }

    /// Pods whose arrival has come are pending.
    pub fn arrive(&mut self, now: SystemTime) {
        while let Some(spec) = self.trace.pods.get(self.next) {
            if self.start + spec.arrival > now {
                break;
            }
            self.pods[self.next].state = PodState::Pending;
            self.active.insert(self.next);
            self.next += 1;
        }
    }

    /// When the next pod arrives, if one is still to.
    pub fn next_arrival(&self) -> Option<SystemTime> {
        self.trace
            .pods
            .get(self.next)
            .map(|p| self.start + p.arrival)
    }

    /// When the first running pod finishes.
    pub fn next_finish(&self) -> Option<SystemTime> {
        self.active
            .iter()
            .map(|&i| (i, &self.pods[i]))
            .filter_map(|(i, p)| match &p.state {
                PodState::Running { started, .. } => {
                    Some(*started + self.trace.pods[i].duration.saturating_sub(p.saved))
                }
                _ => None,
            })
            .min()
    }

    pub fn all_done(&self) -> bool {
        self.next == self.pods.len() && self.active.is_empty()
    }

    /// Pending pods, in arrival order.
    pub fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        self.active
            .iter()
            .copied()
            .filter(|&i| self.pods[i].state == PodState::Pending)
    }

    /// The running instances now: (provider id, node name, group). Nodes
    /// that are gone take their pods with them.
    pub fn sync_nodes(
        &mut self,
        ready: &[(String, String, usize)],
        shapes: &[Shape],
        now: SystemTime,
    ) {
        let live: BTreeSet<&str> = ready.iter().map(|(id, _, _)| id.as_str()).collect();
        let gone: Vec<String> = self
            .nodes
            .keys()
            .filter(|id| !live.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(node) = self.nodes.remove(&id) {
                for pod in node.pods {
                    self.evict(pod, now);
                }
            }
        }
        for (id, name, group) in ready {
            self.nodes.entry(id.clone()).or_insert_with(|| Node {
                group: *group,
                name: name.clone(),
                free_gpus: shapes[*group].gpus,
                free_slices: shapes[*group].slices.clone(),
                pods: BTreeSet::new(),
                empty_since: Some(now),
            });
        }
    }

    /// A running pod loses its node: it keeps what it checkpointed and
    /// waits again.
    fn evict(&mut self, index: usize, now: SystemTime) {
        let spec = &self.trace.pods[index];
        let pod = &mut self.pods[index];
        let PodState::Running { started, share, .. } = pod.state else {
            return;
        };
        let ran = now.duration_since(started).unwrap_or_default();
        pod.gpu_seconds += ran.as_secs_f64() * share;
        let progress = pod.saved + ran;
        let kept = match spec.checkpoint_every {
            Some(every) if !every.is_zero() => {
                let n = progress.as_nanos() / every.as_nanos();
                every * u32::try_from(n).unwrap_or(u32::MAX)
            }
            _ => Duration::ZERO,
        };
        let kept = kept.min(progress);
        if spec.checkpoint_every.is_none() && !progress.is_zero() {
            pod.lost_work = true;
        }
        pod.lost += progress - kept;
        pod.saved = kept;
        pod.evictions += 1;
        pod.state = PodState::Pending;
    }

    /// Running pods whose work is done by `now` finish (at the exact time
    /// they would have).
    pub fn finish(&mut self, now: SystemTime) {
        let active: Vec<usize> = self.active.iter().copied().collect();
        for index in active {
            let pod = &mut self.pods[index];
            let PodState::Running {
                node,
                started,
                uses,
                share,
            } = &pod.state
            else {
                continue;
            };
            let spec = &self.trace.pods[index];
            let ends = *started + spec.duration.saturating_sub(pod.saved);
            if ends > now {
                continue;
            }
            pod.gpu_seconds += ends
                .duration_since(*started)
                .unwrap_or_default()
                .as_secs_f64()
                * share;
            if let Some(n) = self.nodes.get_mut(node) {
                give_back(uses, n);
                n.pods.remove(&index);
                if n.pods.is_empty() {
                    n.empty_since = Some(ends);
                }
            }
            pod.finished = Some(ends);
            pod.state = PodState::Done;
            self.active.remove(&index);
        }
    }

    /// Places pending pods, in arrival order, each on the node it fits
    /// tightest (fewest GPUs left), so whole nodes stay free to be removed.
    pub fn schedule(&mut self, now: SystemTime, shapes: &[Shape]) {
        let pending: Vec<usize> = self.pending().collect();
        for index in pending {
            let spec = &self.trace.pods[index];
            let best = self
                .nodes
                .iter()
                .filter_map(|(id, n)| {
                    fits(spec, &shapes[n.group], n.free_gpus, &n.free_slices)
                        .map(|u| (n.free_gpus, id.clone(), u))
                })
                .min_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            let Some((_, id, uses)) = best else {
                continue;
            };
            let node = self.nodes.get_mut(&id).expect("listed above");
            let share = spec.gpu_share() / f64::from(shapes[node.group].replicas.max(1));
            take(&uses, &mut node.free_gpus, &mut node.free_slices);
            node.pods.insert(index);
            node.empty_since = None;
            let pod = &mut self.pods[index];
            pod.first_start.get_or_insert(now);
            pod.state = PodState::Running {
                node: id,
                started: now,
                uses,
                share,
            };
        }
    }

    /// GPUs (as shares) the pods running now use, and those pending ask for.
    pub fn demand(&self) -> (f64, f64) {
        let mut running = 0.0;
        let mut pending = 0.0;
        for &i in &self.active {
            match self.pods[i].state {
                PodState::Running { share, .. } => running += share,
                PodState::Pending => pending += self.trace.pods[i].gpu_share(),
                _ => {}
            }
        }
        (running, pending)
    }
}
