//! A group's create requests between CA's IncreaseSize and the listing that
//! shows what they made, and the journal that lets a restart take them up.
//!
//! Cloud listings lag behind launches. An engine that restarts after a
//! create call and before the listing shows its instances would report a
//! target without them; CA would raise it again and the late instances
//! would be adopted on top: bought twice, past max. So each request is
//! journalled before its first call ([`GroupState::record_sent`]), sent
//! again only exactly as journalled (the cloud's idempotency key takes no
//! other parameters), and closed once the listing shows what it made and
//! the cloud took the terminate of any of it CA no longer counts (a
//! cancelled slot's late arrival). A
//! restart restores the open ones ([`GroupState::restore`]) as requested
//! slots and sends them again: the cloud answers with the instances it
//! made the first time.
//!
//! The same holds for scale-down: a DeleteNodes is journalled before CA is
//! answered, and a restart deletes again what the listing still shows
//! ([`GroupState::restore_deletion`]), instead of adopting back instances
//! CA no longer counts.

use super::{GroupState, LIST_GRACE, Member, Why, Work};
use gpupool_cloud::{CreateRequest, Instance, InstanceId, RequestId};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::SystemTime;

/// A create request not yet answered.
#[derive(Clone, Debug)]
pub(super) struct Flight {
    /// How many instances it asks for, first to last: slots CA cancels
    /// meanwhile are not taken off it but deleted on arrival, so every
    /// journal write of the request holds the count its journalled
    /// cancellations are counted against.
    pub(super) count: u32,
    /// A call is under way.
    pub(super) under_way: bool,
    /// The request as journalled before its first call; `None` until then.
    pub(super) sent: Option<CreateRequest>,
}

impl Flight {
    pub(super) fn new(count: u32) -> Self {
        Self {
            count,
            under_way: true,
            sent: None,
        }
    }
}

/// A journalled request the cloud answered, waiting for the listing to
/// show the instances it made.
#[derive(Clone, Debug)]
pub(super) struct Unlisted {
    pub(super) ids: BTreeSet<InstanceId>,
    pub(super) since: SystemTime,
}

impl GroupState {
    /// The request is journalled and about to be sent: a retry sends this
    /// again, not a request rebuilt from the slots left. It asks more than
    /// the slots left when CA cancelled some meanwhile: the surplus is
    /// deleted on arrival (nothing has arrived yet: this is its first
    /// call).
    pub fn record_sent(&mut self, request: &CreateRequest) {
        let id = &request.request_id;
        let Some(flight) = self.in_flight.get_mut(id) else {
            return;
        };
        let first = flight.sent.is_none();
        flight.sent = Some(request.clone());
        let slots = self.requested_of(id);
        if first {
            let surplus = request.count.saturating_sub(slots);
            if surplus > 0 {
                self.discard.insert(id.clone(), surplus);
            } else {
                self.discard.remove(id);
            }
        }
    }

    /// Whether a deletion's instance still waits for its terminate: a
    /// live member, or deleting without the cloud having taken it.
    pub fn awaiting_terminate(&self, id: &InstanceId) -> bool {
        self.deleting.get(id).is_some_and(|d| !d.confirmed)
            || self
                .members
                .iter()
                .any(|m| matches!(m, Member::Live(i) if &i.id == id))
            || self.doomed.contains_key(id)
    }

    /// Slots CA cancelled of requests that may be sent, since the last
    /// call: what a restart must not ask for again.
    pub fn take_cancelled(&mut self) -> BTreeMap<RequestId, u32> {
        std::mem::take(&mut self.cancelled)
    }

    /// Cancellations journalled before a restart, taken up before the
    /// requests they cancel.
    pub fn restore_cancelled(&mut self, cancelled: &BTreeMap<RequestId, u32>) {
        for (request, n) in cancelled {
            *self.cancelled_before.entry(request.clone()).or_default() += n;
        }
    }

    /// Whether the request was journalled (and sent).
    pub fn journalled(&self, request: &RequestId) -> bool {
        self.in_flight
            .get(request)
            .is_some_and(|f| f.sent.is_some())
    }

    /// A journal entry could not be removed: tried again at the next sync.
    pub fn close_failed(&mut self, request: RequestId) {
        self.closing.push(request);
    }

    /// Before any request is taken up after a restart (so that what goes
    /// makes room within max for the others' slots): the instances of a
    /// journalled request past what CA counts of it (its count less the
    /// slots it cancelled) are late arrivals of cancelled slots that a
    /// crash kept from their terminate. They go again, unregistered and
    /// newest first.
    pub fn restore_surplus(&mut self, sent: &CreateRequest) -> Option<Work> {
        let id = &sent.request_id;
        let ours = |i: &Instance| i.request_id.as_ref() == Some(id);
        let live = self.live_of(id);
        // CA counts its count less the slots it cancelled, less those of
        // its instances it deleted. Instances found on their way out with
        // nothing known of them are left out: a terminated surplus one, or
        // one the cloud stopped (CA buys that again); never a live one
        // taken for a surplus.
        let deleted = self
            .deleting
            .values()
            .filter(|d| d.why == Why::Ca && ours(&d.instance))
            .count();
        let cancelled = self.cancelled_before.get(id).copied().unwrap_or(0);
        let counted = (sent.count.saturating_sub(cancelled) as usize).saturating_sub(deleted);
        let surplus = live.saturating_sub(counted);
        if surplus == 0 {
            return None;
        }
        let ids = self.delete_newest(surplus, ours);
        tracing::warn!(
            group = %self.spec.id,
            request = %id,
            deleting = ids.len(),
            "instances of cancelled slots found running after the restart; deleting them again"
        );
        (!ids.is_empty()).then_some(Work::Delete(ids))
    }

    /// The live members the request made.
    fn live_of(&self, request: &RequestId) -> usize {
        self.members
            .iter()
            .filter(|m| matches!(m, Member::Live(i) if i.request_id.as_ref() == Some(request)))
            .count()
    }

    /// Whether an instance the request made that CA no longer counts
    /// waits for the cloud to take its terminate: the request's entry
    /// stays until then, so a restart finds it.
    fn discarding(&self, request: &RequestId) -> bool {
        self.deleting.values().any(|d| {
            d.why == Why::Ca && !d.confirmed && d.instance.request_id.as_ref() == Some(request)
        })
    }

    /// Takes up a request journalled before a restart, after the first
    /// listing: the instances it made that the listing does not show yet
    /// are requested slots again (within max; any past it are deleted when
    /// they come), and the request is sent again; the cloud answers with
    /// what it made. A request whose instances are all known is closed,
    /// once the cloud took the terminate of any of them CA no longer counts.
    pub fn restore(&mut self, sent: CreateRequest, now: SystemTime) -> Vec<Work> {
        let id = &sent.request_id;
        let ours = |i: &Instance| i.request_id.as_ref() == Some(id);
        let known = self.live_of(id) + self.deleting.values().filter(|d| ours(&d.instance)).count();
        let known = u32::try_from(known).unwrap_or(u32::MAX);
        // Within max: instances a lost DeleteNodes left running may have
        // been adopted back meanwhile. Past it, what the request made is
        // deleted on arrival.
        let room = self.spec.max_size.saturating_sub(self.target());
        // Those CA cancelled are not asked for again, but deleted when
        // they come.
        let cancelled = self.cancelled_before.remove(id).unwrap_or(0);
        let missing = sent.count.saturating_sub(known);
        let wanted = missing.saturating_sub(cancelled);
        let slots = wanted.min(room);
        let mut work = Vec::new();
        if missing == 0 || self.in_flight.contains_key(id) {
            if self.discarding(id) {
                // Open until their terminate is taken (see `close_listed`).
                self.unlisted.insert(
                    id.clone(),
                    Unlisted {
                        ids: BTreeSet::new(),
                        since: now,
                    },
                );
            } else {
                work.push(Work::Close(id.clone()));
            }
            return work;
        }
        tracing::info!(
            group = %self.spec.id,
            request = %id,
            count = sent.count,
            unlisted = missing,
            cancelled,
            past_max = wanted - slots,
            "taking up a create request journalled before the restart"
        );
        if missing > slots {
            self.discard.insert(id.clone(), missing - slots);
        }
        for _ in 0..slots {
            let placeholder = self.placeholder(id);
            self.members.push(Member::Requested {
                request: id.clone(),
                placeholder,
            });
        }
        self.in_flight.insert(
            id.clone(),
            Flight {
                count: sent.count,
                under_way: true,
                sent: Some(sent.clone()),
            },
        );
        work.push(Work::Resend(sent));
        work
    }

    /// Takes up a DeleteNodes journalled before a restart, after the first
    /// listing: CA was told these instances go, so those the listing still
    /// shows live are deleted again (and leave the target, as they had);
    /// those already on their way out count as CA's, and those not listed
    /// are deleted if they appear.
    pub fn restore_deletion(&mut self, instances: &[InstanceId], now: SystemTime) -> Option<Work> {
        let mut ids = Vec::new();
        for id in instances {
            let live = self
                .members
                .iter()
                .position(|m| matches!(m, Member::Live(i) if &i.id == id));
            if let Some(Member::Live(instance)) = live.map(|at| self.members.remove(at)) {
                ids.push(self.start_deleting(instance, Why::Ca));
            } else if let Some(d) = self.deleting.get_mut(id) {
                d.why = Why::Ca;
            } else {
                // Not listed yet (or gone): if a request sent again names
                // it, or a listing shows it, it is deleted then.
                self.doomed.insert(id.clone(), now);
            }
        }
        self.prune_leaving();
        if !ids.is_empty() {
            tracing::info!(
                group = %self.spec.id,
                instances = ids.len(),
                "deleting again instances CA deleted before the restart"
            );
        }
        (!ids.is_empty()).then_some(Work::Delete(ids))
    }

    /// The answer named an instance already on its way out (after a
    /// restart, one CA deleted or the cloud stopped): it takes its slot
    /// with it.
    pub(super) fn made_and_gone(&mut self, request: &RequestId, instance: Instance) {
        let known = self.deleting.contains_key(&instance.id)
            || self
                .members
                .iter()
                .any(|m| matches!(m, Member::Live(i) if i.id == instance.id));
        if !known {
            if let Some(slot) = self
                .members
                .iter()
                .position(|m| matches!(m, Member::Requested { request: r, .. } if r == request))
            {
                self.members.remove(slot);
            } else if let Some(n) = self.discard.get_mut(request).filter(|n| **n > 0) {
                *n -= 1;
            }
        }
        self.stopped(instance);
    }

    /// Journal entries to remove: answered requests whose instances the
    /// listing has now shown, or that are past the grace after which a
    /// missing instance counts as gone anyway, and removals that failed.
    pub(super) fn close_listed(
        &mut self,
        seen: &HashSet<InstanceId>,
        now: SystemTime,
    ) -> Vec<Work> {
        let mut closed = std::mem::take(&mut self.closing);
        let discarding: BTreeSet<RequestId> = self
            .unlisted
            .keys()
            .filter(|r| self.discarding(r))
            .cloned()
            .collect();
        self.unlisted.retain(|request, u| {
            u.ids.retain(|id| !seen.contains(id));
            let listing =
                !u.ids.is_empty() && now.duration_since(u.since).unwrap_or_default() < LIST_GRACE;
            // Kept while an instance it made that CA no longer counts (a
            // cancelled slot's late arrival, or one CA deleted) waits for
            // its terminate: a restart before it lands finds the instance
            // through the entry and its cancellations, instead of adopting
            // it.
            let waiting = listing || discarding.contains(request);
            if !waiting {
                closed.push(request.clone());
            }
            waiting
        });
        closed.into_iter().map(Work::Close).collect()
    }

    /// Requests whose last call did not get through, sent again: as
    /// journalled, or (never journalled) for the count first asked, its
    /// cancelled slots deleted on arrival (the first journal write may
    /// have landed with that count, and the cancellations journalled
    /// count against it).
    pub(super) fn retry(&mut self) -> Vec<Work> {
        let mut waiting: Vec<_> = self
            .in_flight
            .iter()
            .filter(|(_, f)| !f.under_way)
            .map(|(r, f)| (r.clone(), f.count, f.sent.clone()))
            .collect();
        // A map has no order: by id, the same state sends in the same
        // order.
        waiting.sort_by(|a, b| a.0.cmp(&b.0));
        let mut work = Vec::new();
        for (request, count, sent) in waiting {
            if let Some(f) = self.in_flight.get_mut(&request) {
                f.under_way = true;
            }
            work.push(match sent {
                Some(sent) => Work::Resend(sent),
                None => Work::Create(self.create_request(request, count)),
            });
        }
        work
    }
}

#[cfg(test)]
mod tests;
