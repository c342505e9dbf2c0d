//! Marks that other parts journal on the groups' state: an interruption
//! operation marks its instance leaving and raises the group's floor for
//! its replacement. After a restart those marks are read by a sync, with
//! the fleet's own journal, and applied under the lock that publishes the
//! groups, so no answer to CA is made from a group without them: a
//! replacement's floor missing for a moment is all CA needs to scale the
//! replacement down and buy it again.
//!
//! A mark's `want` is a minSize counted on the target of its notice's
//! time; every member counted there that leaves through another operation
//! lowers it by one (as [`GroupState`]'s departures do while running). A
//! marked instance that left while the process was down (let go, or taken
//! by the cloud) is not in the first listing: the others' wants drop for
//! it here, once each (`lowered_for`, journalled), or CA would be told to
//! buy its replacement again.

use super::{GroupState, NotMember, Want};
use std::collections::BTreeSet;
use std::sync::{Mutex, Weak};

/// One instance marked leaving, as journalled.
#[derive(Clone, Debug)]
pub struct Mark {
    /// Index of the group in the fleet.
    pub group: usize,
    pub provider_id: String,
    pub want: Want,
    pub draining: bool,
    /// Marked instances whose departure `want` already dropped for.
    pub lowered_for: BTreeSet<String>,
    /// The operation had let it go (or was letting it go): found on its
    /// way out, it counts in the target as departing from the first
    /// answer on, as before the restart. Its floor is gone (`want` is
    /// `Nothing`).
    pub released: bool,
}

/// Applies the marks to the groups, as the first sync after the
/// registration does: instances let go count as departing again; then
/// each `want` drops for the marked instances no longer counted in the
/// target; then the rest are marked leaving. Gives what each mark did.
pub(super) fn apply(
    mut marks: Vec<Mark>,
    groups: &mut [GroupState],
) -> Vec<(Mark, Result<Option<u32>, NotMember>)> {
    for m in marks.iter().filter(|m| m.released) {
        if let Some(g) = groups.get_mut(m.group)
            && !g.has_member(&m.provider_id)
        {
            // A member is let go by its operation, as it was going to be;
            // one on its way out is counted again (or is gone).
            g.release(&m.provider_id);
        }
    }
    lower_for_departed(&mut marks, groups);
    marks
        .into_iter()
        .map(|m| {
            let out = match groups.get_mut(m.group) {
                Some(g) => g.mark_leaving(&m.provider_id, m.want, m.draining),
                None => Err(NotMember),
            };
            (m, out)
        })
        .collect()
}

/// Lowers each mark's `want` once for every other marked instance of its
/// group no longer counted in the target, recording it in `lowered_for`.
pub(super) fn lower_for_departed(marks: &mut [Mark], groups: &[GroupState]) {
    let departed: Vec<(usize, String)> = marks
        .iter()
        .filter(|m| {
            groups
                .get(m.group)
                .is_none_or(|g| !g.counts_in_target(&m.provider_id))
        })
        .map(|m| (m.group, m.provider_id.clone()))
        .collect();
    for m in marks.iter_mut() {
        for (group, gone) in &departed {
            if *group == m.group
                && *gone != m.provider_id
                && m.lowered_for.insert(gone.clone())
                && let Want::Exactly(n) = &mut m.want
            {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// A part whose journal holds marks (the interruption engine).
#[tonic::async_trait]
pub trait Resumes: Send + Sync {
    /// The marks journalled before the restart. An error fails the sync
    /// that reads them; the next one reads them again.
    async fn marks(&self) -> Result<Vec<Mark>, String>;

    /// The sync applied and published the marks, lowered for departures
    /// (in the order given): what each did, for the part to take its work
    /// up again.
    fn taken_up(self: std::sync::Arc<Self>, marked: Vec<(Mark, Result<Option<u32>, NotMember>)>);
}

/// The part waiting to be taken up by the next sync: the first sync, when
/// it registered before it (as `serve` does), so the marks are there from
/// the first answer. Held weakly: the part holds the fleet.
#[derive(Default)]
pub(super) struct Pending(Mutex<Option<Weak<dyn Resumes>>>);

impl Pending {
    pub(super) fn set(&self, part: Weak<dyn Resumes>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(part);
    }

    /// The part to take up, if one waits and is still alive.
    pub(super) fn take(&self) -> Option<std::sync::Arc<dyn Resumes>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .and_then(|w| w.upgrade())
    }

    /// Puts back a part whose marks could not be read or applied (the
    /// sync failed), unless another registered meanwhile.
    pub(super) fn put_back(&self, part: &std::sync::Arc<dyn Resumes>) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(std::sync::Arc::downgrade(part));
        }
    }
}
