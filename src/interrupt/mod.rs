//! Interruption replacement: one operation per interrupted instance, from
//! the notice to the instance let go.
//!
//! 1. **Mark** the instance leaving. It stays a member, so the group's
//!    target size does not move; `NodeGroupNodes` reports it deleting, so CA
//!    does not count on it. Its replacement is asked of CA by raising the
//!    group's reported `minSize` to one past what the group has or was
//!    already promised ([`crate::fleet::GroupState::mark_leaving`]); CA, run
//!    with `--enforce-node-group-min-size`, scales the group up through its
//!    own path within a loop and counts the node as coming, so the evicted
//!    pods wait for it instead of making CA buy a second one.
//! 2. **Cordon** the node and taint it, so nothing new lands.
//! 3. **Drain** it through the Eviction API (PodDisruptionBudgets hold; 429
//!    is retried), DaemonSet and mirror pods left alone, non-critical pods
//!    before critical ones, until the cloud's deadline less a margin and the
//!    group's `gpupool.dev/drain-timeout` at most.
//! 4. **Release** it: deleted (if the cloud has not) and its floor dropped,
//!    but still counted in the target until the cloud reports it gone
//!    (departing, see [`crate::fleet::GroupState`]): until then CA counts
//!    its Node as the group's, and a lower target would end CA's scale-up
//!    before the replacement registered. The operation closes when it is
//!    gone.
//!
//! Each step is journalled (a ConfigMap per operation, [`journal`]) once
//! done; a restart resumes every journalled operation from its step with the
//! same `minSize` it asked before, never a second replacement: the fleet's
//! sync takes the marks up with its listing ([`crate::fleet::Resumes`]), so
//! CA is never answered without them. A repeated
//! notice for an instance under way does nothing; one for an instance that
//! is not ours is logged and counted only.

pub mod journal;
pub mod metrics;
pub mod op;
mod resume;
mod run;

pub use journal::Journal;
pub use op::{Cause, Mode, Operation, Step};

use crate::cluster::drain::NodeOps;
use crate::config::{InterruptionConfig, Rebalance};
use crate::fleet::{Fleet, NodeState, Offering, Resumes, Want};
use crate::metrics::Metrics;
use crate::preprovision::Floors;
use crate::webhook::{Kind, Notice};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where an operation stops as if the process had died there (fault
/// injection for tests; never set from a config file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// Marked and journalled.
    Marked,
    Cordoned,
    Drained,
    /// Journalled as releasing, before the instance is let go.
    Releasing,
    /// Let go and journalled as released, before the cloud reports it gone.
    Released,
}

/// What became of a notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An operation started.
    Started(Mode),
    /// A standing-by rebalance replacement moved on to the drain.
    Upgraded,
    /// The instance already has an operation: nothing more is done.
    InProgress,
    /// The instance is already on its way out, or gone.
    Late,
    /// Not one of our instances.
    NotOurs,
    /// Ours, but nothing to do (a rebalance the group does not act on).
    Ignored(&'static str),
}

/// An operation under way.
struct Handle {
    op: Mutex<Operation>,
    group: usize,
    /// Wakes the task: an interruption came for a standby, or the instance
    /// was reported gone.
    nudge: Notify,
    /// CA's scale-up for the replacement was seen (measured once).
    launched: std::sync::atomic::AtomicBool,
}

impl Handle {
    fn op(&self) -> MutexGuard<'_, Operation> {
        self.op.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A replacement asked of CA whose boot is awaited, for the metric.
struct Awaited {
    group: usize,
    received: SystemTime,
}

pub struct Engine {
    fleet: Arc<Fleet>,
    /// The pre-provisioning floors: a replacement is asked on top of them.
    floors: Arc<Floors>,
    journal: Journal,
    nodes: Option<Arc<NodeOps>>,
    metrics: Arc<Metrics>,
    settings: InterruptionConfig,
    crash_at: Option<FaultPoint>,
    ops: Mutex<HashMap<String, Arc<Handle>>>,
    awaited: Mutex<Vec<Awaited>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// The journalled operations whose marks the fleet's sync is taking up.
    resuming: Mutex<Vec<Operation>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(
        fleet: Arc<Fleet>,
        floors: Arc<Floors>,
        journal: Journal,
        nodes: Option<Arc<NodeOps>>,
        metrics: Arc<Metrics>,
        settings: InterruptionConfig,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        if nodes.is_none() {
            tracing::warn!(
                "no kubernetes section: interrupted nodes are neither cordoned nor drained, only replaced and let go at their drain deadline, and operations are not journalled across restarts"
            );
        }
        let engine = Arc::new(Self {
            fleet: fleet.clone(),
            floors,
            journal,
            nodes,
            metrics,
            crash_at: settings.crash_at,
            settings,
            ops: Mutex::new(HashMap::new()),
            awaited: Mutex::new(Vec::new()),
            tasks: TaskTracker::new(),
            cancel,
            resuming: Mutex::new(Vec::new()),
        });
        // Built before the fleet's first sync (as `serve` does), the
        // operations journalled before a restart are in its first answer.
        fleet.resume_with(Arc::downgrade(&engine) as std::sync::Weak<dyn Resumes>);
        engine
    }

    /// Operations under way, by providerID, with their step.
    pub fn operations(&self) -> Vec<Operation> {
        self.lock_ops().values().map(|h| h.op().clone()).collect()
    }

    /// Acts on one notice, taken by the webhook at `received` (every step's
    /// time is measured from then). Quick: the fleet is marked (and the
    /// replacement asked of CA) before this returns; the journal, cordon and
    /// drain go on in the operation's own task.
    pub fn notice(self: &Arc<Self>, n: &Notice, received: SystemTime) -> Outcome {
        let snapshot = self.fleet.snapshot();
        let Some((group, instance)) = snapshot.find(&n.target) else {
            self.metrics
                .notice(n.source.label(), n.kind.label(), "not_ours");
            tracing::info!(
                source = n.source.label(),
                kind = n.kind.label(),
                target = %n.target,
                id = %n.id,
                "notice for an instance that is not ours; not acted on"
            );
            return Outcome::NotOurs;
        };
        self.metrics
            .notice(n.source.label(), n.kind.label(), "ours");
        let spec = self.fleet.specs()[group].clone();
        let provider_id = instance.provider_id.as_str().to_owned();
        tracing::info!(
            source = n.source.label(),
            kind = n.kind.label(),
            group = %spec.id,
            instance = %provider_id,
            deadline = ?n.deadline.map(humantime::format_rfc3339_seconds),
            id = %n.id,
            "interruption notice"
        );
        let drain_only =
            spec.annotations.interruption == Some(crate::config::Interruption::DrainOnly);
        let mode = match n.kind {
            Kind::Interruption | Kind::Termination if drain_only => Mode::DrainOnly,
            Kind::Interruption | Kind::Termination => Mode::Replace,
            Kind::Rebalance => match spec.annotations.rebalance {
                Rebalance::Ignore => {
                    return Outcome::Ignored(
                        "the group does not act on rebalance recommendations (gpupool.dev/rebalance)",
                    );
                }
                Rebalance::Replace if drain_only => {
                    return Outcome::Ignored("a drain-only group has no replacement to stand by");
                }
                Rebalance::Replace => Mode::Standby,
                Rebalance::ReplaceAndDrain if drain_only => Mode::DrainOnly,
                Rebalance::ReplaceAndDrain => Mode::Replace,
            },
            Kind::Terminated => {
                // Gone already: an operation under way lets go; otherwise the
                // next sync takes it out of the group.
                if let Some(h) = self.lock_ops().get(&provider_id) {
                    h.nudge.notify_one();
                    return Outcome::InProgress;
                }
                return Outcome::Late;
            }
        };

        // Not for a rebalance the group ignores: nothing is reclaimed yet.
        if instance.capacity_type == Some(gpupool_cloud::CapacityType::Spot)
            && matches!(
                n.kind,
                Kind::Interruption | Kind::Rebalance | Kind::Terminated
            )
            && let Some(zone) = &instance.zone
        {
            self.fleet.offering_unavailable(
                Offering {
                    instance_type: instance.instance_type.clone(),
                    zone: zone.clone(),
                    capacity: gpupool_cloud::CapacityType::Spot,
                },
                n.kind.label(),
            );
        }
        let mut ops = self.lock_ops();
        if let Some(h) = ops.get(&provider_id) {
            let mut op = h.op();
            if mode != Mode::Standby && op.interrupted(n.kind.label(), n.deadline) {
                drop(op);
                let _ = self
                    .fleet
                    .mark_leaving(group, &provider_id, self.next(group), true);
                h.nudge.notify_one();
                tracing::info!(instance = %provider_id, "interruption for a standing-by rebalance replacement: draining now, no second replacement");
                return Outcome::Upgraded;
            }
            tracing::info!(instance = %provider_id, step = op.step.label(), "notice for an instance whose operation is under way; nothing more to do");
            return Outcome::InProgress;
        }
        if instance.state == NodeState::Deleting {
            tracing::info!(instance = %provider_id, "late notice: the instance is already on its way out");
            return Outcome::Late;
        }
        let want = match mode {
            Mode::DrainOnly => Want::Nothing,
            Mode::Replace | Mode::Standby => self.next(group),
        };
        let Ok(want) = self
            .fleet
            .mark_leaving(group, &provider_id, want, mode != Mode::Standby)
        else {
            return Outcome::Late;
        };
        let mode = match (mode, want) {
            (Mode::Standby, None) => {
                self.fleet.stand_down(group, &provider_id);
                return Outcome::Ignored(
                    "the group is at its max size: no room to stand a replacement by",
                );
            }
            (Mode::Replace, None) => Mode::DrainOnly,
            (m, _) => m,
        };
        if want.is_some() {
            self.metrics.interruptions.step(
                spec.id.as_str(),
                "replacement_requested",
                self.fleet
                    .clock()
                    .now()
                    .duration_since(received)
                    .unwrap_or_default(),
            );
            self.await_boot(group, received);
        }
        let op = Operation {
            provider_id: provider_id.clone(),
            group: spec.id.to_string(),
            node: instance.node_name.clone(),
            cause: Cause {
                source: n.source.label().to_owned(),
                kind: n.kind.label().to_owned(),
                notice_id: n.id.clone(),
            },
            mode,
            received_at: op::utc(received),
            deadline: n.deadline.map(op::utc),
            want,
            lowered_for: Default::default(),
            step: Step::Marked,
            drain_started: None,
            evicted: 0,
        };
        let handle = Arc::new(Handle {
            op: Mutex::new(op),
            group,
            nudge: Notify::new(),
            launched: Default::default(),
        });
        ops.insert(provider_id, handle.clone());
        self.metrics.interruptions.set_open(ops.len());
        drop(ops);
        self.spawn(handle, false);
        Outcome::Started(mode)
    }

    /// A boot finished in `group`: the oldest replacement awaited there is
    /// taken to be it.
    pub fn booted(&self, group: usize) {
        let now = self.fleet.clock().now();
        let mut awaited = self.lock_awaited();
        awaited.retain(|a| {
            now.duration_since(a.received).unwrap_or_default() < Duration::from_secs(3600)
        });
        if let Some(i) = awaited.iter().position(|a| a.group == group) {
            let a = awaited.remove(i);
            self.metrics.interruptions.step(
                self.fleet.specs()[group].id.as_str(),
                "replacement_ready",
                now.duration_since(a.received).unwrap_or_default(),
            );
        }
    }

    /// Waits for operation tasks to stop (after cancel).
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// A replacement on top of what the group must keep anyway.
    fn next(&self, group: usize) -> Want {
        Want::Next(
            self.floors
                .min_size(group, self.fleet.specs()[group].min_size),
        )
    }

    fn await_boot(&self, group: usize, received: SystemTime) {
        self.lock_awaited().push(Awaited { group, received });
    }

    fn spawn(self: &Arc<Self>, handle: Arc<Handle>, journalled: bool) {
        let engine = self.clone();
        self.tasks
            .spawn(async move { engine.run(handle, journalled).await });
    }

    pub(crate) fn forget(&self, provider_id: &str) {
        let mut ops = self.lock_ops();
        ops.remove(provider_id);
        self.metrics.interruptions.set_open(ops.len());
    }

    fn lock_ops(&self) -> MutexGuard<'_, HashMap<String, Arc<Handle>>> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_awaited(&self) -> MutexGuard<'_, Vec<Awaited>> {
        self.awaited.lock().unwrap_or_else(|p| p.into_inner())
    }
}
