//! One node group's state and the rules for changing it. Pure: no I/O, no
//! clock of its own; the engine feeds it cloud results and carries out the
//! [`Work`] it returns.
//!
//! The target size is the number of members, plus the instances that are
//! departing. A member is an instance the cloud has (pending or running), or
//! a slot CA asked for that the cloud has not filled yet: requested (a create
//! call is queued or under way) or failed (the cloud refused it; reported to
//! CA with its error class until CA removes it). Instances being deleted are
//! listed apart. Those CA deleted are not counted: CA lowered its target for
//! them. Those that left without CA asking (let go by an interruption
//! operation, or stopped by the cloud) are *departing*: counted until the
//! cloud reports them gone, because until then they are reported to CA as
//! the group's (deleting) and CA counts their Nodes as registered. Dropping
//! them from the target earlier would make CA's `target - registered` miss
//! a node still on its way, so CA would end its scale-up early and buy a
//! second node for the same pods.

mod requests;

use super::error::FleetError;
use crate::config::GroupSpec;
use gpupool_cloud::{
    CloudError, CreateOutcome, CreateRequest, ErrorClass, Instance, InstanceId, InstanceState,
    ProviderId, RequestId,
};
use requests::{Flight, Unlisted};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// An instance missing from a cloud listing this soon after launch is assumed to
/// be not yet visible (cloud APIs are eventually consistent), not gone.
pub const LIST_GRACE: Duration = Duration::from_secs(120);

/// One unit of a group's target size.
#[derive(Clone, Debug, PartialEq)]
pub enum Member {
    Requested {
        request: RequestId,
        placeholder: ProviderId,
    },
    Failed {
        placeholder: ProviderId,
        error: CloudError,
    },
    Live(Instance),
}

impl Member {
    pub fn provider_id(&self) -> &ProviderId {
        match self {
            Member::Requested { placeholder, .. } | Member::Failed { placeholder, .. } => {
                placeholder
            }
            Member::Live(i) => &i.provider_id,
        }
    }
}

/// An instance on its way out.
#[derive(Clone, Debug, PartialEq)]
pub struct Deleting {
    pub instance: Instance,
    /// Whether a delete call succeeded (or the cloud stopped it by itself); a
    /// failed call is retried at the next sync.
    pub confirmed: bool,
    pub why: Why,
}

/// Why an instance is on its way out, which decides whether it still
/// counts in the target (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// CA deleted it (`DeleteNodes`, or the late arrival of a request it
    /// cancelled): CA lowered its target for it. Not counted.
    Ca,
    /// An interruption operation let it go. Departing.
    Released,
    /// The cloud stopped a member (with an interruption operation under
    /// way, or without a notice). Departing.
    Stopped,
    /// Found on its way out with nothing known of it (after a restart).
    /// Not counted.
    Found,
}

impl Deleting {
    /// Still counted in the target: it left without CA asking.
    pub fn departing(&self) -> bool {
        matches!(self.why, Why::Released | Why::Stopped)
    }
}

/// What letting a leaving member go did.
#[derive(Clone, Debug, PartialEq)]
pub enum Release {
    /// Out of the members and into deletion; departing until it is gone.
    Started(Work),
    /// Already on its way out (the cloud stopped it, or a run before a
    /// restart deleted it): departing until it is gone.
    AlreadyGoing,
    /// Not the group's any more.
    Gone,
}

/// An instance an interruption operation is taking out of the group (see
/// `crate::interrupt`). It stays a member, so the target size does not move
/// until it is released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaving {
    /// The minSize reported to CA while it leaves, so that CA scales up its
    /// replacement through its own path and counts it as coming; `None`:
    /// drain only, no replacement.
    pub want: Option<u32>,
    /// Reported to CA as deleting (its drain has begun); false while a
    /// rebalance replacement stands by with the node still in service.
    pub draining: bool,
    /// The scale-up request CA's replacement went out in, once CA asked.
    pub replacement: Option<RequestId>,
}

/// What minSize a leaving instance asks of CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// No replacement (`gpupool.dev/interruption: drain-only`).
    Nothing,
    /// One node more than the group has, is already promised, or must
    /// keep: the `u32` is its floor apart from replacements (its configured
    /// min raised to its pre-provisioning floor), which CA is scaling the
    /// group to anyway; a replacement counted inside it would be no
    /// replacement.
    Next(u32),
    /// As journalled by an operation being resumed.
    Exactly(u32),
}

/// Work the engine must carry out after a change.
#[derive(Clone, Debug, PartialEq)]
pub enum Work {
    /// A new request: fitted to the offerings and price cap, journalled,
    /// then sent.
    Create(CreateRequest),
    /// A journalled request sent again exactly as it was (a retry, or one
    /// taken up from the journal after a restart): the cloud answers it
    /// by its request id with what the first call made.
    Resend(CreateRequest),
    /// A request is settled: its journal entry goes.
    Close(RequestId),
    Delete(Vec<InstanceId>),
}

/// The instance is not a live member of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotMember;

/// A node named by CA: by providerID, or by name when that is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    pub provider_id: String,
    pub name: String,
}

impl NodeRef {
    fn describe(&self) -> String {
        if self.provider_id.is_empty() {
            format!("{:?}", self.name)
        } else {
            format!("{:?}", self.provider_id)
        }
    }
}

/// Cloneable so a change can be tried on a copy first (to journal what it
/// would cancel before making it).
#[derive(Clone, Debug)]
pub struct GroupState {
    pub spec: Arc<GroupSpec>,
    provider: String,
    members: Vec<Member>,
    deleting: BTreeMap<InstanceId, Deleting>,
    /// Members being replaced or drained, by providerID.
    leaving: BTreeMap<ProviderId, Leaving>,
    /// Create requests not yet answered.
    in_flight: HashMap<RequestId, Flight>,
    /// Journalled requests the cloud answered whose instances no listing
    /// has shown yet.
    unlisted: HashMap<RequestId, Unlisted>,
    /// Journal entries whose removal failed, retried at the next sync.
    closing: Vec<RequestId>,
    /// Per request: instances CA no longer wants; delete them when they arrive.
    discard: HashMap<RequestId, u32>,
    /// Slots CA cancelled of requests that may still be sent (every one
    /// but a request never sent and left with no slot) since the engine
    /// last took them ([`GroupState::take_cancelled`]), to journal.
    cancelled: BTreeMap<RequestId, u32>,
    /// Cancellations journalled before a restart, per request, for
    /// [`GroupState::restore`].
    cancelled_before: HashMap<RequestId, u32>,
    /// Instances CA deleted before a restart that no listing has shown
    /// since: deleted when they appear (see
    /// [`GroupState::restore_deletion`]).
    /// (With when that was learned: after the listing grace they are taken
    /// for gone.)
    doomed: HashMap<InstanceId, SystemTime>,
    serial: u64,
}

impl GroupState {
    pub fn new(spec: Arc<GroupSpec>, provider: &str) -> Self {
        Self {
            spec,
            provider: provider.to_owned(),
            members: Vec::new(),
            deleting: BTreeMap::new(),
            leaving: BTreeMap::new(),
            in_flight: HashMap::new(),
            unlisted: HashMap::new(),
            closing: Vec::new(),
            discard: HashMap::new(),
            cancelled: BTreeMap::new(),
            cancelled_before: HashMap::new(),
            doomed: Default::default(),
            serial: 0,
        }
    }

    pub fn target(&self) -> u32 {
        let departing = self.deleting.values().filter(|d| d.departing()).count();
        u32::try_from(self.members.len() + departing).unwrap_or(u32::MAX)
    }

    /// The members alone: the target once every departing instance is gone.
    fn staying(&self) -> u32 {
        u32::try_from(self.members.len()).unwrap_or(u32::MAX)
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn deleting(&self) -> impl Iterator<Item = &Deleting> {
        self.deleting.values()
    }

    /// Members on their way out through an interruption operation.
    pub fn leaving(&self) -> &BTreeMap<ProviderId, Leaving> {
        &self.leaving
    }

    /// The minSize the leaving members ask of CA: the largest `want`.
    pub fn replacement_floor(&self) -> u32 {
        self.leaving
            .values()
            .filter_map(|l| l.want)
            .max()
            .unwrap_or(0)
    }

    /// Marks a live member as leaving and returns the minSize it asks of CA
    /// for its replacement. Marking one already leaving with `Want::Next`
    /// keeps its `want` (a repeated notice never asks twice) and only moves
    /// it on to draining; `Exactly` and `Nothing` set both (an operation
    /// taken up from the journal asks and is reported as it was before). `Err(NotMember)`: not
    /// a live member (gone, or never ours).
    pub fn mark_leaving(
        &mut self,
        provider_id: &str,
        want: Want,
        draining: bool,
    ) -> Result<Option<u32>, NotMember> {
        if !self.has_member(provider_id) {
            return Err(NotMember);
        }
        let max = self.spec.max_size;
        if let Some(known) = self.leaving.get_mut(provider_id) {
            match want {
                Want::Next(_) => known.draining |= draining,
                Want::Exactly(n) => (known.want, known.draining) = (Some(n.min(max)), draining),
                Want::Nothing => (known.want, known.draining) = (None, draining),
            }
            return Ok(known.want);
        }
        let want = match want {
            Want::Nothing => None,
            Want::Exactly(n) => Some(n.min(max)),
            Want::Next(floor) => {
                let promised = self.target().max(self.replacement_floor()).max(floor);
                if promised >= self.spec.max_size {
                    tracing::warn!(
                        group = %self.spec.id,
                        instance = provider_id,
                        max = self.spec.max_size,
                        "group at its max size: no room for a replacement; draining only"
                    );
                    None
                } else {
                    Some(promised + 1)
                }
            }
        };
        self.leaving.insert(
            ProviderId::new(provider_id),
            Leaving {
                want,
                draining,
                replacement: None,
            },
        );
        Ok(want)
    }

    /// Lets a leaving member go: into deletion, its floor dropped, and
    /// departing (still in the target) until the cloud reports it gone, so
    /// CA never sees the target below a minSize still asked for nor below
    /// the nodes it counts as the group's. Idempotent: an instance already
    /// on its way out is made departing (after a restart, the journal knows
    /// it was let go; the cloud listing alone does not).
    pub fn release(&mut self, provider_id: &str) -> Release {
        self.leaving.remove(provider_id);
        let found = self
            .members
            .extract_if(
                ..,
                |m| matches!(m, Member::Live(i) if i.provider_id.as_str() == provider_id),
            )
            .next();
        if let Some(Member::Live(instance)) = found {
            let id = self.start_deleting(instance, Why::Released);
            return Release::Started(Work::Delete(vec![id]));
        }
        match self
            .deleting
            .values_mut()
            .find(|d| d.instance.provider_id.as_str() == provider_id)
        {
            Some(d) => {
                // Not one CA deleted: CA lowered its target for that one.
                if d.why != Why::Ca {
                    d.why = Why::Released;
                }
                Release::AlreadyGoing
            }
            None => Release::Gone,
        }
    }

    /// A rebalance replacement stood by and no interruption came: the
    /// member stays, its floor goes (CA scales down what is not needed).
    pub fn stand_down(&mut self, provider_id: &str) {
        self.leaving.remove(provider_id);
    }

    /// Leaving entries whose member left the target (deleted by CA, or
    /// missing from the cloud's listing) go, taking their floor with them;
    /// every other leaving entry's `want` drops by one per member gone,
    /// since the target it was counted against lost that member. (A
    /// member let go or stopped by the cloud departs instead: its entry
    /// goes at once, and the wants drop when it is gone, as for any member
    /// the cloud stops.)
    fn prune_leaving(&mut self) {
        if self.leaving.is_empty() {
            return;
        }
        let members = &self.members;
        let before = self.leaving.len();
        self.leaving.retain(|p, _| {
            members
                .iter()
                .any(|m| matches!(m, Member::Live(i) if &i.provider_id == p))
        });
        self.lower_wants(before - self.leaving.len());
    }

    /// `gone` instances counted in the target have left it without CA
    /// asking (let go by an interruption operation, or stopped by the
    /// cloud, with a notice or without): each operation's `want` was counted
    /// with them, so it asks that much less. Else CA would buy a node for
    /// an unannounced loss on top of the replacements, whether the lost
    /// node's pods need one or not; they go pending, and CA's own scale-up
    /// decides.
    fn lower_wants(&mut self, gone: usize) {
        let gone = u32::try_from(gone).unwrap_or(u32::MAX);
        if gone > 0 {
            for l in self.leaving.values_mut() {
                l.want = l.want.map(|w| w.saturating_sub(gone));
            }
        }
    }

    /// Whether a live member has this providerID.
    pub fn has_member(&self, provider_id: &str) -> bool {
        self.members
            .iter()
            .any(|m| matches!(m, Member::Live(i) if i.provider_id.as_str() == provider_id))
    }

    /// Whether the instance counts in the target: a live member, or
    /// departing.
    pub fn counts_in_target(&self, provider_id: &str) -> bool {
        self.has_member(provider_id)
            || self
                .deleting
                .values()
                .any(|d| d.departing() && d.instance.provider_id.as_str() == provider_id)
    }

    fn live(&self) -> u32 {
        let n = self
            .members
            .iter()
            .filter(|m| matches!(m, Member::Live(_)))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// `NodeGroupIncreaseSize`: adds `delta` requested members and asks for them.
    pub fn increase(&mut self, delta: i32, request: RequestId) -> Result<Work, FleetError> {
        let spec = &self.spec;
        let delta = u32::try_from(delta)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| FleetError::InvalidArgument {
                field: "delta",
                reason: format!("must be positive, got {delta}"),
            })?;
        let target = self.target();
        if u64::from(target) + u64::from(delta) > u64::from(spec.max_size) {
            return Err(FleetError::AboveMax {
                group: spec.id.clone(),
                target,
                delta,
                max: spec.max_size,
            });
        }
        for _ in 0..delta {
            let placeholder = self.placeholder(&request);
            self.members.push(Member::Requested {
                request: request.clone(),
                placeholder,
            });
        }
        // CA's scale-up answers the floors of leaving members first.
        for l in self
            .leaving
            .values_mut()
            .filter(|l| l.want.is_some() && l.replacement.is_none())
            .take(delta as usize)
        {
            l.replacement = Some(request.clone());
        }
        self.in_flight.insert(request.clone(), Flight::new(delta));
        Ok(Work::Create(self.create_request(request, delta)))
    }

    /// `NodeGroupDecreaseTargetSize`: cancels not-yet-created members only.
    pub fn decrease_target(&mut self, delta: i32) -> Result<(), FleetError> {
        if delta >= 0 {
            return Err(FleetError::InvalidArgument {
                field: "delta",
                reason: format!("must be negative, got {delta}"),
            });
        }
        let n = delta.unsigned_abs();
        let unfulfilled = self.staying() - self.live();
        if n > unfulfilled {
            return Err(FleetError::WouldDeleteNodes {
                group: self.spec.id.clone(),
                target: self.target(),
                delta,
                unfulfilled,
                existing: self.live(),
            });
        }
        // Failed slots first (nothing will come of them), then the newest requests.
        for _ in 0..n {
            let index = self
                .members
                .iter()
                .rposition(|m| matches!(m, Member::Failed { .. }))
                .or_else(|| {
                    self.members
                        .iter()
                        .rposition(|m| matches!(m, Member::Requested { .. }))
                });
            if let Some(index) = index {
                let removed = self.members.remove(index);
                self.forget_requested(&removed);
            }
        }
        Ok(())
    }

    /// `NodeGroupDeleteNodes`: all of them or none. Real instances may not take
    /// the group below its min size; unfilled slots can always be removed.
    pub fn delete_nodes(&mut self, nodes: &[NodeRef]) -> Result<Option<Work>, FleetError> {
        let (mut indices, departing) = self.check_delete(nodes)?;
        indices.sort_unstable_by(|a, b| b.cmp(a));
        Ok(self.apply_delete(indices, departing))
    }

    /// The members `nodes` name (by index) and the departing instances
    /// they name, or why the call is refused.
    fn check_delete(&self, nodes: &[NodeRef]) -> Result<(Vec<usize>, Vec<InstanceId>), FleetError> {
        let mut indices = Vec::new();
        let mut departing = Vec::new();
        for node in nodes {
            if let Some(i) = self.find_member(node) {
                if !indices.contains(&i) {
                    indices.push(i);
                }
            } else if let Some(id) = self.deleting_id(node) {
                departing.push(id);
            } else {
                return Err(FleetError::NodeNotInGroup {
                    group: self.spec.id.clone(),
                    node: node.describe(),
                });
            }
        }
        let live = indices
            .iter()
            .filter(|i| matches!(self.members[**i], Member::Live(_)))
            .count();
        let live = u32::try_from(live).unwrap_or(u32::MAX);
        // Against the members alone: departing instances are going anyway.
        if live > 0 && self.staying().saturating_sub(live) < self.spec.min_size {
            return Err(FleetError::BelowMin {
                group: self.spec.id.clone(),
                target: self.target(),
                deleting: live,
                min: self.spec.min_size,
            });
        }
        Ok((indices, departing))
    }

    fn apply_delete(&mut self, indices: Vec<usize>, departing: Vec<InstanceId>) -> Option<Work> {
        let mut ids = Vec::new();
        for i in indices {
            match self.members.remove(i) {
                Member::Live(instance) => ids.push(self.start_deleting(instance, Why::Ca)),
                slot => self.forget_requested(&slot),
            }
        }
        // CA deleting a departing instance lowers its own target for it:
        // it is counted no more (a repeated call changes nothing).
        let mut uncounted = 0;
        for id in departing {
            if let Some(d) = self.deleting.get_mut(&id).filter(|d| d.departing()) {
                uncounted += 1;
                d.why = Why::Ca;
            }
        }
        self.lower_wants(uncounted);
        self.prune_leaving();
        (!ids.is_empty()).then_some(Work::Delete(ids))
    }

    /// A create call came back. A journalled request's entry is closed
    /// once the listing shows what it made (see [`Unlisted`]), or at once
    /// when it made nothing.
    pub fn create_finished(
        &mut self,
        request: &RequestId,
        result: Result<CreateOutcome, CloudError>,
        now: SystemTime,
    ) -> Vec<Work> {
        let mut work = Vec::new();
        let journalled = self
            .in_flight
            .get(request)
            .is_some_and(|f| f.sent.is_some());
        match result {
            Ok(outcome) => {
                let mut made = std::collections::BTreeSet::new();
                for instance in outcome.created {
                    if matches!(
                        instance.state,
                        InstanceState::Pending | InstanceState::Running
                    ) {
                        made.insert(instance.id.clone());
                        work.extend(self.arrive(instance));
                    } else {
                        self.made_and_gone(request, instance);
                    }
                }
                let mut unexplained = self.requested_of(request);
                if let Some(failed) = outcome.failed {
                    let n = failed.count.min(unexplained);
                    self.fail_requested(request, n, &failed.error);
                    unexplained -= n;
                }
                if unexplained > 0 {
                    let error = CloudError::other(
                        "IncompleteCreation",
                        format!(
                            "the cloud created fewer instances than requested ({unexplained} missing, no reason given)"
                        ),
                    );
                    self.fail_requested(request, unexplained, &error);
                }
                self.in_flight.remove(request);
                self.discard.remove(request);
                if journalled {
                    if made.is_empty() {
                        work.push(Work::Close(request.clone()));
                    } else {
                        self.unlisted.insert(
                            request.clone(),
                            Unlisted {
                                ids: made,
                                since: now,
                            },
                        );
                    }
                }
            }
            Err(error) if error.class == ErrorClass::Throttled => {
                // Sent again at the next sync, under the same request id. A
                // journalled one is sent again even with no slot left: the
                // lost answer may have made instances, which its answer names
                // (and the discard deletes).
                if self.requested_of(request) > 0 || journalled {
                    if let Some(f) = self.in_flight.get_mut(request) {
                        f.under_way = false;
                    }
                } else {
                    self.in_flight.remove(request);
                    self.closing.push(request.clone());
                }
            }
            Err(error) => {
                let n = self.requested_of(request);
                self.fail_requested(request, n, &error);
                self.in_flight.remove(request);
                self.discard.remove(request);
                if journalled {
                    work.push(Work::Close(request.clone()));
                }
            }
        }
        work
    }

    /// A delete call came back.
    pub fn delete_finished(&mut self, ids: &[InstanceId], ok: bool) {
        for id in ids {
            if let Some(d) = self.deleting.get_mut(id) {
                d.confirmed = ok;
            }
        }
    }

    /// Brings the group in line with a cloud listing of its instances.
    pub fn reconcile(&mut self, listed: Vec<Instance>, now: SystemTime) -> Vec<Work> {
        let mut work = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for instance in listed {
            seen.insert(instance.id.clone());
            match instance.state {
                InstanceState::Pending | InstanceState::Running => {
                    work.extend(self.arrive(instance));
                }
                InstanceState::ShuttingDown
                | InstanceState::Stopped
                | InstanceState::Terminated => {
                    self.stopped(instance);
                }
            }
        }
        // Gone from the listing without a stop seen (terminated and no
        // longer listed): a loss like any stop. Leaving members are
        // counted by the pruning.
        let leaving = &self.leaving;
        let mut vanished = 0;
        self.members.retain(|m| match m {
            Member::Live(i) => {
                let kept = seen.contains(&i.id)
                    || now.duration_since(i.launched_at).unwrap_or_default() < LIST_GRACE;
                if !kept && !leaving.contains_key(&i.provider_id) {
                    vanished += 1;
                }
                kept
            }
            _ => true,
        });
        self.lower_wants(vanished);
        self.prune_leaving();
        // Gone once the listing misses it, but for one launched too
        // recently to be listed yet: its delete may not have got through.
        let mut gone = 0;
        self.deleting.retain(|id, d| {
            let kept = seen.contains(id)
                || now
                    .duration_since(d.instance.launched_at)
                    .unwrap_or_default()
                    < LIST_GRACE;
            if !kept && d.departing() {
                gone += 1;
            }
            kept
        });
        self.lower_wants(gone);
        let unconfirmed: Vec<_> = self
            .deleting
            .values()
            .filter(|d| !d.confirmed)
            .map(|d| d.instance.id.clone())
            .collect();
        if !unconfirmed.is_empty() {
            work.push(Work::Delete(unconfirmed));
        }
        self.doomed
            .retain(|_, since| now.duration_since(*since).unwrap_or_default() < LIST_GRACE);
        work.extend(self.close_listed(&seen, now));
        work.extend(self.retry());
        work
    }

    /// Instances found in the cloud past the group's max (left running by
    /// work a crash cut short, such as the terminate of a cancelled slot's
    /// late instance) are deleted: newest and unregistered first, never
    /// one an interruption operation holds. CA may never be shown a target
    /// past max.
    pub fn trim_past_max(&mut self) -> Option<Work> {
        let past = self.target().saturating_sub(self.spec.max_size) as usize;
        if past == 0 {
            return None;
        }
        let ids = self.delete_newest(past, |_| true);
        if ids.is_empty() {
            return None;
        }
        tracing::warn!(
            group = %self.spec.id,
            max = self.spec.max_size,
            deleting = ids.len(),
            "instances found past the group's max; deleting the newest"
        );
        Some(Work::Delete(ids))
    }

    /// Deletes `n` live members that `pick` takes, none leaving,
    /// unregistered first, then newest: the ones CA is least likely to
    /// count as nodes already. CA no longer counts them (`Why::Ca`).
    fn delete_newest(&mut self, n: usize, pick: impl Fn(&Instance) -> bool) -> Vec<InstanceId> {
        let mut candidates: Vec<(bool, std::time::SystemTime, InstanceId)> = self
            .members
            .iter()
            .filter_map(|m| match m {
                Member::Live(i) if pick(i) && !self.leaving.contains_key(&i.provider_id) => {
                    Some((i.node_name.is_some(), i.launched_at, i.id.clone()))
                }
                _ => None,
            })
            .collect();
        candidates.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut ids = Vec::new();
        for (_, _, id) in candidates.into_iter().take(n) {
            if let Some(at) = self
                .members
                .iter()
                .position(|m| matches!(m, Member::Live(i) if i.id == id))
                && let Member::Live(instance) = self.members.remove(at)
            {
                ids.push(self.start_deleting(instance, Why::Ca));
            }
        }
        ids
    }

    /// An instance the cloud has, pending or running.
    fn arrive(&mut self, instance: Instance) -> Option<Work> {
        if let Some(d) = self.deleting.get_mut(&instance.id) {
            d.instance = instance;
            return None;
        }
        if self.doomed.remove(&instance.id).is_some() {
            // A restored request's slot was counted for it: it goes too.
            if let Some(request) = &instance.request_id
                && let Some(slot) = self
                    .members
                    .iter()
                    .position(|m| matches!(m, Member::Requested { request: r, .. } if r == request))
            {
                self.members.remove(slot);
            }
            return Some(Work::Delete(vec![self.start_deleting(instance, Why::Ca)]));
        }
        if let Some(Member::Live(known)) = self
            .members
            .iter_mut()
            .find(|m| matches!(m, Member::Live(i) if i.id == instance.id))
        {
            *known = instance;
            return None;
        }
        if let Some(request) = &instance.request_id {
            if let Some(slot) = self
                .members
                .iter_mut()
                .find(|m| matches!(m, Member::Requested { request: r, .. } if r == request))
            {
                *slot = Member::Live(instance);
                return None;
            }
            if let Some(n) = self.discard.get_mut(request).filter(|n| **n > 0) {
                *n -= 1;
                return Some(Work::Delete(vec![self.start_deleting(instance, Why::Ca)]));
            }
        }
        tracing::info!(group = %self.spec.id, instance = %instance.id, "adopting an instance found in the cloud");
        self.members.push(Member::Live(instance));
        None
    }

    /// An instance shutting down, stopped or terminated. A member stopped
    /// by the cloud departs: counted until it is terminated (see the module
    /// doc). One stopped and not terminating is sent a terminate.
    fn stopped(&mut self, instance: Instance) {
        let member = self
            .members
            .extract_if(.., |m| matches!(m, Member::Live(i) if i.id == instance.id))
            .next()
            .is_some();
        self.leaving.remove(&instance.provider_id);
        if member {
            tracing::warn!(
                group = %self.spec.id,
                instance = %instance.id,
                reason = instance.state_reason.as_deref().unwrap_or("unknown"),
                "instance stopped by the cloud; out of the target once terminated"
            );
        }
        let why = match self.deleting.remove(&instance.id) {
            Some(known) => known.why,
            None if member => Why::Stopped,
            None => Why::Found,
        };
        if instance.state == InstanceState::Terminated {
            let gone = Deleting {
                instance,
                confirmed: true,
                why,
            };
            if gone.departing() {
                self.lower_wants(1);
            }
        } else {
            // A stopped instance is not on its way out until terminated.
            let confirmed = instance.state != InstanceState::Stopped;
            self.deleting.insert(
                instance.id.clone(),
                Deleting {
                    instance,
                    confirmed,
                    why,
                },
            );
        }
    }

    /// Moves an instance to the deleting list, its delete call still to
    /// be confirmed; its id is returned for the call.
    fn start_deleting(&mut self, instance: Instance, why: Why) -> InstanceId {
        let id = instance.id.clone();
        self.deleting.insert(
            id.clone(),
            Deleting {
                instance,
                confirmed: false,
                why,
            },
        );
        id
    }

    fn find_member(&self, node: &NodeRef) -> Option<usize> {
        if node.provider_id.is_empty() {
            if node.name.is_empty() {
                return None;
            }
            // Unregistered instances are named by their providerID.
            return self
                .members
                .iter()
                .position(|m| match m {
                    Member::Live(i) => i.node_name.as_deref() == Some(node.name.as_str()),
                    _ => false,
                })
                .or_else(|| {
                    self.members
                        .iter()
                        .position(|m| m.provider_id().as_str() == node.name)
                });
        }
        self.members
            .iter()
            .position(|m| m.provider_id().as_str() == node.provider_id)
    }

    fn deleting_id(&self, node: &NodeRef) -> Option<InstanceId> {
        self.deleting.values().find_map(|d| {
            let i = &d.instance;
            let hit = if node.provider_id.is_empty() {
                i.node_name.as_deref() == Some(node.name.as_str())
            } else {
                i.provider_id.as_str() == node.provider_id
            };
            hit.then(|| i.id.clone())
        })
    }

    fn requested_of(&self, request: &RequestId) -> u32 {
        let n = self
            .members
            .iter()
            .filter(|m| matches!(m, Member::Requested { request: r, .. } if r == request))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn fail_requested(&mut self, request: &RequestId, n: u32, error: &CloudError) {
        let mut left = n;
        for m in &mut self.members {
            if left == 0 {
                break;
            }
            if let Member::Requested {
                request: r,
                placeholder,
            } = m
                && r == request
            {
                *m = Member::Failed {
                    placeholder: placeholder.clone(),
                    error: error.clone(),
                };
                left -= 1;
            }
        }
    }

    /// A requested slot was cancelled. Its request still asks for it (see
    /// [`Flight::count`]): the instance it brings is deleted on arrival,
    /// and the cancellation is journalled against the request. A request
    /// never sent and left with no slot is dropped instead.
    fn forget_requested(&mut self, removed: &Member) {
        let Member::Requested { request, .. } = removed else {
            return;
        };
        let Some(flight) = self.in_flight.get(request) else {
            return;
        };
        let idle = !flight.under_way && flight.sent.is_none();
        if idle && self.requested_of(request) == 0 {
            self.in_flight.remove(request);
            self.discard.remove(request);
            self.cancelled.remove(request);
            // Its journal write failed, but may have been made.
            self.closing.push(request.clone());
        } else {
            *self.discard.entry(request.clone()).or_default() += 1;
            *self.cancelled.entry(request.clone()).or_default() += 1;
        }
    }

    fn placeholder(&mut self, request: &RequestId) -> ProviderId {
        self.serial += 1;
        ProviderId::new(format!(
            "{}:///placeholder/{}/{}-{}",
            self.provider, self.spec.id, request, self.serial
        ))
    }

    fn create_request(&self, request_id: RequestId, count: u32) -> CreateRequest {
        CreateRequest {
            request_id,
            group: self.spec.id.clone(),
            instance_type: self.spec.instance_type.name.clone(),
            zones: self.spec.zones.clone(),
            purchase: self.spec.purchase,
            count,
            max_spot_price: None,
            avoid: Vec::new(),
        }
    }
}
