//! One operation's task: journal, (standby,) cordon, drain, release. Each
//! step is journalled once done, so a resume starts at the next one.

use super::{Engine, FaultPoint, Handle, Mode, Operation, Step};
use crate::cluster::drain::{Eviction, PodRef};
use crate::cluster::journal::{Created, JournalError};
use crate::fleet::{Released, Want};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Tries per journal write while the API server sheds or fails it.
const JOURNAL_TRIES: u32 = 5;

/// First wait before a failed removal of a closed operation's entry is
/// tried again.
const REMOVE_RETRY: Duration = Duration::from_secs(10);

/// How a drain ended.
#[derive(Debug, PartialEq, Eq)]
enum DrainEnd {
    Drained,
    TimedOut {
        left: usize,
    },
    /// The instance went first (the cloud took it, or CA deleted it).
    Gone,
    Cancelled,
}

impl Engine {
    pub(super) async fn run(self: Arc<Self>, h: Arc<Handle>, journalled: bool) {
        let (provider_id, group_id) = {
            let op = h.op();
            (op.provider_id.clone(), op.group.clone())
        };
        if !journalled {
            self.journal_new(&h).await;
        }
        if self.crashed_at(FaultPoint::Marked, &provider_id) {
            return;
        }

        if h.op().mode == Mode::Standby {
            self.event(&h, false, "ReplacementStandingBy", {
                let op = h.op();
                format!(
                    "Rebalance recommendation from {}: a replacement is asked of cluster-autoscaler (minSize {}); the node stays in service until its interruption notice",
                    op.cause.source,
                    op.want.unwrap_or_default()
                )
            })
            .await;
            let ends = h.op().received() + self.settings.rebalance_standby;
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = h.nudge.notified() => {}
                _ = tokio::time::sleep(self.until(ends)) => {}
            }
            if self.stand_down_if_still_standing_by(&h, &provider_id) {
                self.event(&h, false, "ReplacementStoodDown", "No interruption followed the rebalance recommendation; the node stays and cluster-autoscaler scales down what is not needed".into()).await;
                self.close_forgotten(&h, "stood_down").await;
                return;
            }
            // Interrupted after all: on with the drain, same replacement.
            self.journal_update(&h).await;
        }

        let received = h.op().received();
        let node = self.node_of(&h).await;
        let timeout = self.drain_timeout(h.group);
        if h.op().drain_started.is_none() {
            h.op().drain_started = Some(super::op::utc(self.now()));
        }
        let deadline = h.op().drain_deadline(self.settings.drain_margin, timeout);

        if h.op().step < Step::Cordoned {
            if let (Some(nodes), Some(node)) = (&self.nodes, &node) {
                let kind = h.op().cause.kind.clone();
                match nodes.cordon(node, &self.settings.taint_key, &kind).await {
                    Ok(true) => {
                        self.metrics.interruptions.step(
                            &group_id,
                            "cordoned",
                            self.since(received),
                        );
                        self.event(
                            &h,
                            false,
                            "Cordoned",
                            format!(
                                "Cordoned and tainted {}={kind}:NoSchedule",
                                self.settings.taint_key
                            ),
                        )
                        .await;
                    }
                    Ok(false) => tracing::info!(node, "node gone before its cordon"),
                    Err(e) => tracing::warn!(node, error = %e, "cordon failed; draining anyway"),
                }
            }
            h.op().step = Step::Cordoned;
            self.journal_update(&h).await;
            if self.crashed_at(FaultPoint::Cordoned, &provider_id) {
                return;
            }
        }

        let mut outcome = "released";
        if h.op().step < Step::Drained {
            let end = match (&self.nodes, &node) {
                (Some(_), Some(node)) => self.drain(&h, node, deadline).await,
                _ => self.wait_out(&h, deadline).await,
            };
            match end {
                DrainEnd::Cancelled => return,
                DrainEnd::Drained => {
                    self.metrics
                        .interruptions
                        .step(&group_id, "drained", self.since(received));
                    let evicted = h.op().evicted;
                    self.event(&h, false, "Drained", format!("{evicted} pods evicted"))
                        .await;
                }
                DrainEnd::TimedOut { left } => {
                    outcome = "drain_timed_out";
                    self.event(&h, true, "DrainTimedOut", format!("Drain deadline {} reached with {left} pods left; letting the instance go", humantime::format_rfc3339_seconds(deadline))).await;
                }
                DrainEnd::Gone => outcome = "gone",
            }
            h.op().step = Step::Drained;
            self.journal_update(&h).await;
            if self.crashed_at(FaultPoint::Drained, &provider_id) {
                return;
            }
        }

        // The instance goes only once CA has taken its replacement (or at
        // the drain deadline): a release before that would drop the floor
        // with the replacement never asked for.
        if !self.replacement_taken(&h, deadline).await {
            return;
        }
        if h.op().step < Step::Releasing {
            h.op().step = Step::Releasing;
            self.journal_update(&h).await;
            if self.crashed_at(FaultPoint::Releasing, &provider_id) {
                return;
            }
        }
        // Idempotent: after a restart it makes the instance departing
        // again, so CA keeps counting it until it is gone.
        match self.fleet.release(h.group, &provider_id) {
            Released::Now => {
                self.metrics
                    .interruptions
                    .step(&group_id, "released", self.since(received));
                self.event(
                    &h,
                    false,
                    "Released",
                    "Instance let go: deleted, and out of the node group's target size once the cloud reports it gone".into(),
                )
                .await;
            }
            Released::AlreadyGoing => {}
            Released::Gone if outcome == "released" && h.op().step < Step::Released => {
                outcome = "gone";
            }
            Released::Gone => {}
        }
        if h.op().step < Step::Released {
            h.op().step = Step::Released;
            self.journal_update(&h).await;
            if self.crashed_at(FaultPoint::Released, &provider_id) {
                return;
            }
        }
        // Open until the cloud reports it gone: a restart before then
        // makes it departing again from the journal.
        loop {
            if !self.fleet.reports(h.group, &provider_id) {
                break;
            }
            if !self.pause(&h).await {
                return;
            }
        }
        self.close(&h, outcome).await;
    }

    /// Waits until CA has scaled the group up to the replacement's minSize
    /// (or the drain deadline passes, or the instance goes); false when
    /// cancelled.
    async fn replacement_taken(&self, h: &Handle, deadline: SystemTime) -> bool {
        let (provider_id, want) = {
            let op = h.op();
            (op.provider_id.clone(), op.want)
        };
        if want.is_none() || h.op().step >= Step::Releasing {
            return true;
        }
        let group_id = self.fleet.specs()[h.group].id.to_string();
        loop {
            if self.launched(h) {
                return true;
            }
            if !self.still_member(h.group, &provider_id) {
                return true;
            }
            if self.now() >= deadline {
                tracing::warn!(group = %group_id, instance = %provider_id, "cluster-autoscaler did not take the replacement by the drain deadline (is it run with --enforce-node-group-min-size?); letting the instance go");
                self.event(h, true, "ReplacementNotTaken", "cluster-autoscaler did not scale the group up to its raised minSize by the drain deadline; is it run with --enforce-node-group-min-size=true?".into()).await;
                return true;
            }
            if !self.pause(h).await {
                return false;
            }
        }
    }

    /// Journals a new operation. If the instance already had one (a previous
    /// run or another replica started it), that one is taken up instead:
    /// same `minSize`, from its step.
    async fn journal_new(&self, h: &Handle) {
        let op = h.op().clone();
        match self.retried(|| self.journal.create(&op)).await {
            Ok(Created::New) => {}
            Ok(Created::Exists(existing)) if self.stale(h.group, &existing, &op) => {
                tracing::warn!(instance = %op.provider_id, step = existing.step.label(), received = %existing.received_at, "stale interruption journal entry for this instance (its operation cannot still be running); written over");
                self.journal_update(h).await;
            }
            Ok(Created::Exists(existing)) => {
                tracing::info!(instance = %op.provider_id, step = existing.step.label(), "instance already journalled: taking its operation up");
                let mut adopted = *existing;
                // A standby taken up for an interruption drains now, with
                // the replacement it already asked.
                let upgraded =
                    op.mode != Mode::Standby && adopted.interrupted(&op.cause.kind, op.deadline());
                // One change: the mark takes the journalled want over the
                // one just asked, so CA never reads a lower minSize between.
                let want = adopted.want.map_or(Want::Nothing, Want::Exactly);
                let _ = self.fleet.mark_leaving(
                    h.group,
                    &op.provider_id,
                    want,
                    adopted.mode != Mode::Standby,
                );
                *h.op() = adopted;
                if upgraded {
                    self.journal_update(h).await;
                }
                return;
            }
            Err(e) => {
                tracing::error!(instance = %op.provider_id, error = %e, "interruption operation not journalled; it goes on, but a restart would not resume it")
            }
        }
        let note = match (op.mode, op.want) {
            (Mode::DrainOnly, _) => "no replacement (drain only)".to_owned(),
            (_, Some(want)) => format!("replacement asked of cluster-autoscaler (minSize {want})"),
            (_, None) => "no replacement".to_owned(),
        };
        let deadline = op
            .deadline()
            .map(|d| {
                format!(
                    ", the cloud takes it at {}",
                    humantime::format_rfc3339_seconds(d)
                )
            })
            .unwrap_or_default();
        self.event(
            h,
            true,
            "InterruptionNotice",
            format!(
                "{} {} notice ({}){deadline}: {note}",
                op.cause.source, op.cause.kind, op.cause.notice_id
            ),
        )
        .await;
    }

    /// Whether a journal entry found for a new operation is left over
    /// rather than under way: older than any operation can last (standby,
    /// drain, an hour for the cloud to take the instance).
    fn stale(&self, group: usize, existing: &Operation, new: &Operation) -> bool {
        let lifetime =
            self.settings.rebalance_standby + self.drain_timeout(group) + Duration::from_secs(3600);
        existing.received() + lifetime < new.received()
    }

    /// The longest drain: the group's `gpupool.dev/drain-timeout`, else
    /// the configured one.
    fn drain_timeout(&self, group: usize) -> Duration {
        self.fleet.specs()[group]
            .annotations
            .drain_timeout
            .unwrap_or(self.settings.drain_timeout)
    }

    async fn journal_update(&self, h: &Handle) {
        let op = h.op().clone();
        if let Err(e) = self.retried(|| self.journal.update(&op)).await {
            tracing::warn!(instance = %op.provider_id, step = op.step.label(), error = %e, "interruption journal not updated; a restart would redo this step");
        }
    }

    async fn close(&self, h: &Handle, outcome: &'static str) {
        // The op's lock is let go before the map's is taken: every other
        // path takes the map's first.
        let id = h.op().provider_id.clone();
        self.forget(&id);
        self.close_forgotten(h, outcome).await;
    }

    /// Closes an operation already out of the map: its journal entry goes,
    /// after the group's other operations journal the `minSize` they ask
    /// now (one less for each member that left) with the instance counted
    /// in `lowered_for`, so a restart neither asks more nor lowers them
    /// again.
    async fn close_forgotten(&self, h: &Handle, outcome: &'static str) {
        let op = h.op().clone();
        let others: Vec<_> = self
            .lock_ops()
            .values()
            .filter(|o| o.group == h.group)
            .cloned()
            .collect();
        let snapshot = self.fleet.snapshot();
        // A standby that stood down stays a member: nothing left.
        let departed = outcome != "stood_down";
        for other in others {
            let changed = {
                let mut o = other.op();
                let current = snapshot.groups[h.group]
                    .leaving
                    .iter()
                    .find(|(p, _)| p.as_str() == o.provider_id)
                    .and_then(|(_, l)| l.want);
                let lowered = current.is_some() && current != o.want;
                if lowered {
                    o.want = current;
                }
                // Written even when memory already counts it (lowered by a
                // resume): once this entry goes, only the others' entries
                // can tell a restart not to lower them again.
                let counted = departed && o.want.is_some();
                if counted {
                    o.lowered_for.insert(op.provider_id.clone());
                }
                lowered || counted
            };
            if changed {
                self.journal_update(&other).await;
            }
        }
        self.metrics.interruptions.closed(&op.group, outcome);
        tracing::info!(instance = %op.provider_id, group = %op.group, outcome, evicted = op.evicted, "interruption operation closed");
        self.remove_entry(&op.provider_id).await;
    }

    /// Removes a closed operation's entry, trying again in the background
    /// (from 10 s, doubling to 5 min) until it goes or the engine stops: a
    /// stale entry would be taken up by a restart (a stood-down standby's
    /// would raise its floor again). A new operation for the instance
    /// meanwhile owns the entry: it is left to it.
    async fn remove_entry(&self, provider_id: &str) {
        let mut wait = REMOVE_RETRY;
        loop {
            if self.lock_ops().contains_key(provider_id) {
                return;
            }
            match self.retried(|| self.journal.remove(provider_id)).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(instance = provider_id, error = %e, retry_in = ?wait, "interruption journal entry not removed; trying again");
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(300));
        }
    }

    /// A standby that saw no interruption stands down, atomically with
    /// `notice`: the operation leaves the map and its mark goes under the
    /// map's lock, so an interruption either upgraded it first or starts an
    /// operation of its own after.
    fn stand_down_if_still_standing_by(&self, h: &Handle, provider_id: &str) -> bool {
        let mut ops = self.lock_ops();
        if h.op().mode != Mode::Standby {
            return false;
        }
        ops.remove(provider_id);
        self.metrics.interruptions.set_open(ops.len());
        self.fleet.stand_down(h.group, provider_id);
        true
    }

    /// The operation's node: as journalled, else as the cloud named it, else
    /// found by providerID.
    async fn node_of(&self, h: &Handle) -> Option<String> {
        let (known, provider_id) = {
            let op = h.op();
            (op.node.clone(), op.provider_id.clone())
        };
        let nodes = self.nodes.as_ref()?;
        match nodes.find_node(&provider_id, known.as_deref()).await {
            Ok(found) => {
                h.op().node = found.clone();
                found
            }
            Err(e) => {
                tracing::warn!(instance = %provider_id, error = %e, "node not looked up; using the cloud's name for it");
                known
            }
        }
    }

    /// Runs a journal write, trying again (backing off from 100 ms, at most
    /// `JOURNAL_TRIES` in all) while the API server sheds or fails it.
    async fn retried<T, F>(&self, mut write: impl FnMut() -> F) -> Result<T, JournalError>
    where
        F: Future<Output = Result<T, JournalError>>,
    {
        let mut wait = Duration::from_millis(100);
        let mut tries = 1;
        loop {
            match write().await {
                Err(e) if e.transient() && tries < JOURNAL_TRIES => {
                    tracing::debug!(error = %e, tries, "interruption journal write failed; trying again");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return Err(e),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait *= 2;
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Evicts the node's pods until none is left or `deadline`.
    async fn drain(&self, h: &Handle, node: &str, deadline: SystemTime) -> DrainEnd {
        let Some(nodes) = &self.nodes else {
            return DrainEnd::Drained;
        };
        let group_id = self.fleet.specs()[h.group].id.to_string();
        let provider_id = h.op().provider_id.clone();
        let mut blocked_told = BTreeSet::new();
        loop {
            self.launched(h);
            if !self.still_member(h.group, &provider_id) {
                return DrainEnd::Gone;
            }
            let pods = match nodes.pods_to_move(node).await {
                Ok(pods) => pods,
                Err(e) => {
                    tracing::warn!(node, error = %e, "pods on the node not listed; retrying");
                    if self.now() >= deadline {
                        return DrainEnd::TimedOut { left: 0 };
                    }
                    if !self.pause(h).await {
                        return DrainEnd::Cancelled;
                    }
                    continue;
                }
            };
            if pods.is_empty() {
                return DrainEnd::Drained;
            }
            if self.now() >= deadline {
                return DrainEnd::TimedOut { left: pods.len() };
            }
            // Critical pods only once every other pod has left.
            let critical_only = pods.iter().all(|p| p.critical);
            let wave: Vec<&PodRef> = pods
                .iter()
                .filter(|p| p.critical == critical_only && !p.terminating)
                .collect();
            let mut evicted = 0;
            for pod in wave {
                match nodes.evict(pod).await {
                    Ok(Eviction::Evicted) => {
                        evicted += 1;
                        let note = format!("Evicted pod {}/{}", pod.namespace, pod.name);
                        self.pod_event(h, false, "Evicted", note, Some(pod)).await;
                    }
                    Ok(Eviction::Gone) => {}
                    Ok(Eviction::Refused(why)) => {
                        let key = format!("{}/{}", pod.namespace, pod.name);
                        if blocked_told.insert(key.clone()) {
                            let note = format!(
                                "Pod {key}: {why}; retrying every {} until {}",
                                humantime::format_duration(self.settings.eviction_retry),
                                humantime::format_rfc3339_seconds(deadline)
                            );
                            self.pod_event(h, true, "EvictionRefused", note, Some(pod))
                                .await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(node, pod = %pod.name, error = %e, "eviction failed; retrying")
                    }
                }
            }
            if evicted > 0 {
                h.op().evicted += evicted;
                self.metrics.interruptions.evicted(&group_id, evicted);
            }
            if !self.pause(h).await {
                return DrainEnd::Cancelled;
            }
        }
    }

    /// With no cluster to drain: waits for the drain deadline (the pods get
    /// all the time the cloud gives), or until the instance goes.
    async fn wait_out(&self, h: &Handle, deadline: SystemTime) -> DrainEnd {
        let provider_id = h.op().provider_id.clone();
        loop {
            if !self.still_member(h.group, &provider_id) {
                return DrainEnd::Gone;
            }
            if self.now() >= deadline {
                return DrainEnd::Drained;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return DrainEnd::Cancelled,
                _ = h.nudge.notified() => {}
                _ = tokio::time::sleep(self.until(deadline).min(self.settings.eviction_retry)) => {}
            }
        }
    }

    /// Waits one retry interval (or a nudge); false when cancelled.
    async fn pause(&self, h: &Handle) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = h.nudge.notified() => true,
            _ = tokio::time::sleep(self.settings.eviction_retry) => true,
        }
    }

    /// Whether the instance is still a leaving member (the mark goes when
    /// the member does: deleted by CA, or stopped by the cloud).
    fn still_member(&self, group: usize, provider_id: &str) -> bool {
        self.fleet.snapshot().groups[group]
            .leaving
            .iter()
            .any(|(p, _)| p.as_str() == provider_id)
    }

    /// Whether CA has taken the replacement; the first time it is seen,
    /// the time from the notice is measured.
    fn launched(&self, h: &Handle) -> bool {
        use std::sync::atomic::Ordering;
        if h.launched.load(Ordering::Relaxed) {
            return true;
        }
        let (provider_id, received, want) = {
            let op = h.op();
            (op.provider_id.clone(), op.received(), op.want)
        };
        if want.is_none() || !self.replacement_launched(h.group, &provider_id) {
            return false;
        }
        h.launched.store(true, Ordering::Relaxed);
        self.metrics.interruptions.step(
            self.fleet.specs()[h.group].id.as_str(),
            "replacement_launched",
            self.since(received),
        );
        true
    }

    /// Whether CA has taken the replacement: its scale-up was matched to
    /// this instance, or the group's target reached the minSize it asked
    /// (after a restart, which forgets the match).
    fn replacement_launched(&self, group: usize, provider_id: &str) -> bool {
        let snapshot = self.fleet.snapshot();
        let view = &snapshot.groups[group];
        view.leaving.iter().any(|(p, l)| {
            p.as_str() == provider_id
                && (l.replacement.is_some() || l.want.is_some_and(|w| view.target >= w))
        })
    }

    async fn event(&self, h: &Handle, warning: bool, reason: &str, note: String) {
        self.pod_event(h, warning, reason, note, None).await;
    }

    async fn pod_event(
        &self,
        h: &Handle,
        warning: bool,
        reason: &str,
        note: String,
        pod: Option<&PodRef>,
    ) {
        let node = h.op().node.clone();
        if let (Some(nodes), Some(node)) = (&self.nodes, node) {
            nodes.event(&node, warning, reason, note, pod).await;
        }
    }

    /// Stops here, as a crash would, when the fault point is set (tests).
    fn crashed_at(&self, point: FaultPoint, provider_id: &str) -> bool {
        let hit = self.crash_at == Some(point);
        if hit {
            tracing::warn!(instance = provider_id, point = ?point, "fault injected: the operation stops here as if the process had died");
        }
        hit
    }

    fn now(&self) -> SystemTime {
        self.fleet.clock().now()
    }

    fn since(&self, t: SystemTime) -> Duration {
        self.now().duration_since(t).unwrap_or_default()
    }

    fn until(&self, t: SystemTime) -> Duration {
        t.duration_since(self.now()).unwrap_or_default()
    }
}
