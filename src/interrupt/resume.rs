//! Taking up after a restart: the operations journalled before it are read
//! by the fleet's sync and their marks applied with its listing
//! ([`crate::fleet::Resumes`]); then each task goes on from its step.

use super::{Engine, Handle, Mode, Step};
use crate::fleet::{Mark, NotMember, Resumes, Want};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Every journalled operation is taken up again by the fleet's sync: its
/// instance marked leaving and its floor raised as journalled, in the same
/// publish as the listing (before the listing every instance would look
/// gone, and the operation be closed with nothing drained); then its task
/// goes on from its step.
#[tonic::async_trait]
impl Resumes for Engine {
    async fn marks(&self) -> Result<Vec<Mark>, String> {
        let ops = self.journal.list().await.map_err(|e| e.to_string())?;
        let mut marks = Vec::with_capacity(ops.len());
        let mut resuming = Vec::with_capacity(ops.len());
        for op in ops {
            let Ok(group) = self.fleet.group_index(&op.group) else {
                tracing::error!(instance = %op.provider_id, group = %op.group, "journalled interruption operation for a node group no longer configured; left in the journal");
                continue;
            };
            marks.push(Mark {
                group,
                provider_id: op.provider_id.clone(),
                // Its floor went with the release (CA had taken the
                // replacement): raised again, CA would buy another.
                want: match op.want {
                    Some(n) if op.step < Step::Releasing => Want::Exactly(n),
                    _ => Want::Nothing,
                },
                draining: op.mode != Mode::Standby,
                lowered_for: op.lowered_for.clone(),
                released: op.step >= Step::Releasing,
            });
            resuming.push(op);
        }
        *self.resuming.lock().unwrap_or_else(|p| p.into_inner()) = resuming;
        Ok(marks)
    }

    fn taken_up(self: Arc<Self>, marked: Vec<(Mark, Result<Option<u32>, NotMember>)>) {
        let resuming =
            std::mem::take(&mut *self.resuming.lock().unwrap_or_else(|p| p.into_inner()));
        for (mut op, (mark, marked)) in resuming.into_iter().zip(marked) {
            // Lowered for instances that left while the process was down;
            // journalled when they close.
            if let (Ok(want), Want::Exactly(_)) = (marked, mark.want) {
                op.want = want;
                op.lowered_for = mark.lowered_for;
            }
            let group = mark.group;
            tracing::info!(
                instance = %op.provider_id,
                group = %op.group,
                step = op.step.label(),
                want = ?op.want,
                still_member = marked.is_ok(),
                "resuming interruption operation from the journal"
            );
            self.metrics.interruptions.resumed();
            let handle = Arc::new(Handle {
                op: Mutex::new(op.clone()),
                group,
                nudge: Notify::new(),
                launched: Default::default(),
            });
            self.lock_ops()
                .insert(op.provider_id.clone(), handle.clone());
            if op.want.is_some() {
                self.await_boot(group, op.received());
            }
            self.spawn(handle, true);
        }
        self.metrics.interruptions.set_open(self.lock_ops().len());
    }
}
