//! Journalled deletions: the instances of a DeleteNodes and the slots it or
//! a DecreaseTargetSize cancelled of requests that may be sent, from the journal
//! write (before CA is answered) until the cloud took every terminate and
//! every cancelled request is settled; and, after a restart, taken up
//! again before anything else.

use super::journal::Deletion;
use super::{Fleet, GroupState, JOURNAL_WAIT, Work};
use gpupool_cloud::{GroupId, InstanceId, RequestId};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

/// The first pause before a journal write is tried again; doubled each
/// time, within [`JOURNAL_WAIT`].
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// One deletion's entry stays until the cloud took the terminate of each
/// of its instances and each request it cancelled slots of is settled
/// (its own entry closed, or answered unjournalled).
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) group: usize,
    pub(super) instances: BTreeSet<InstanceId>,
    pub(super) requests: BTreeSet<RequestId>,
}

/// The deletions not settled yet, by key, and entries whose removal
/// failed (tried again at the next settling).
#[derive(Debug, Default)]
pub(super) struct Deletions {
    open: HashMap<String, Pending>,
    unclosed: Vec<String>,
}

impl Deletions {
    pub(super) fn forget(&mut self, key: &str) {
        self.open.remove(key);
    }

    /// The instances the call actually deleted (a concurrent call may have
    /// taken some of those planned).
    pub(super) fn applied(&mut self, key: &str, ids: &[InstanceId]) {
        if let Some(p) = self.open.get_mut(key) {
            p.instances = ids.iter().cloned().collect();
        }
    }

    /// Runs `settle` on every open deletion; the keys of those left with
    /// nothing to wait for, and of removals that failed before, are
    /// returned for closing.
    pub(super) fn settle(&mut self, mut settle: impl FnMut(&mut Pending)) -> Vec<String> {
        let mut done = std::mem::take(&mut self.unclosed);
        self.open.retain(|key, p| {
            settle(p);
            let open = !p.instances.is_empty() || !p.requests.is_empty();
            if !open {
                done.push(key.clone());
            }
            open
        });
        done
    }

    /// Takes up the deletions journalled before a restart, after the first
    /// listing: each one's instances are deleted again (or when they
    /// appear), its cancellations kept for the requests (`open`: those
    /// still journalled); the keys of those already settled are returned.
    pub(super) fn restore(
        &mut self,
        journalled: Vec<Deletion>,
        groups: &mut [GroupState],
        index: &HashMap<GroupId, usize>,
        open: &HashSet<RequestId>,
        now: SystemTime,
        work: &mut [(usize, Vec<Work>)],
    ) -> Vec<String> {
        let mut settled = Vec::new();
        for deletion in journalled {
            let Some(&i) = index.get(&deletion.group) else {
                settled.push(deletion.key);
                continue;
            };
            let group = &mut groups[i];
            group.restore_cancelled(&deletion.cancelled);
            if let Some(w) = group.restore_deletion(&deletion.instances, now) {
                work[i].1.push(w);
            }
            let pending = Pending {
                group: i,
                instances: deletion
                    .instances
                    .into_iter()
                    .filter(|id| group.awaiting_terminate(id))
                    .collect(),
                requests: deletion
                    .cancelled
                    .into_keys()
                    .filter(|r| open.contains(r))
                    .collect(),
            };
            if pending.instances.is_empty() && pending.requests.is_empty() {
                settled.push(deletion.key);
            } else {
                self.open.insert(deletion.key, pending);
            }
        }
        settled
    }
}

impl Fleet {
    /// Journals a deletion CA is about to be answered for, so that a crash
    /// before the cloud takes the terminate does not bring its instances
    /// back (nor its cancelled slots); its key, or why it could not be
    /// written (logged and counted). Nothing to journal: no key.
    ///
    /// A write the API server shed or failed is tried again, with the same
    /// key, until [`JOURNAL_WAIT`] is spent: an entry that landed although
    /// its answer was lost answers the next try 409, which is success, so
    /// a lost answer does not turn into a refusal whose entry is there.
    pub(super) async fn journal_deletion(
        &self,
        index: usize,
        ids: &[InstanceId],
        cancelled: BTreeMap<RequestId, u32>,
    ) -> Result<Option<String>, (String, String)> {
        if ids.is_empty() && cancelled.is_empty() {
            return Ok(None);
        }
        let group = self.specs[index].id.clone();
        let deletion = Deletion {
            key: self.new_id(&group),
            group,
            instances: ids.to_vec(),
            cancelled,
        };
        // Tracked even when the write seems to fail: it may have landed,
        // and closing one that did not is harmless.
        self.lock().deletions.open.insert(
            deletion.key.clone(),
            Pending {
                group: index,
                instances: ids.iter().cloned().collect(),
                requests: deletion.cancelled.keys().cloned().collect(),
            },
        );
        let deadline = tokio::time::Instant::now() + JOURNAL_WAIT;
        let mut pause = RETRY_PAUSE;
        let error = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let written = tokio::time::timeout(left, self.journal.open_deletion(&deletion)).await;
            match written {
                Ok(Ok(())) => {
                    self.metrics.journal_call("open_deletion", true);
                    return Ok(Some(deletion.key));
                }
                Ok(Err(e)) => {
                    self.metrics.journal_call("open_deletion", false);
                    let again = tokio::time::Instant::now() + pause;
                    if !e.transient() || again >= deadline {
                        break e.to_string();
                    }
                    tracing::debug!(group = %deletion.group, error = %e, "deletion journal write failed; trying again");
                    tokio::time::sleep_until(again).await;
                    pause *= 2;
                }
                Err(_) => {
                    self.metrics.journal_call("open_deletion", false);
                    break format!("no answer within {JOURNAL_WAIT:?}");
                }
            }
        };
        tracing::warn!(group = %deletion.group, error, "deletion not journalled");
        Err((deletion.key, error))
    }

    /// Deletions settled by `settle` (an instance's terminate taken, a
    /// request settled) are closed.
    pub(super) async fn settle_deletions(&self, settle: impl FnMut(&mut Pending)) {
        let done = self.lock().deletions.settle(settle);
        for key in done {
            self.close_deletion(&key).await;
        }
    }

    pub(super) async fn close_deletion(&self, key: &str) {
        let closed = self.journal.close_deletion(key).await;
        self.metrics.journal_call("close_deletion", closed.is_ok());
        if let Err(e) = closed {
            tracing::warn!(deletion = key, error = %e, "deletion journal entry not removed; retried at the next sync");
            self.lock().deletions.unclosed.push(key.to_owned());
        }
    }
}
