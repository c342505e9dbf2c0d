//! Why a node-group operation was refused. Mapped to gRPC codes in one place
//! (`grpc::status`).

use crate::cluster::journal::JournalError;
use gpupool_cloud::{CloudError, GroupId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("node group {0:?} not found")]
    UnknownGroup(String),
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error(
        "node group {group}: size increase too large: target {target} + delta {delta} is above max size {max}"
    )]
    AboveMax {
        group: GroupId,
        target: u32,
        delta: u32,
        max: u32,
    },
    #[error(
        "node group {group}: min size reached: deleting {deleting} of target {target} would go below min size {min}"
    )]
    BelowMin {
        group: GroupId,
        target: u32,
        deleting: u32,
        min: u32,
    },
    #[error(
        "node group {group}: attempt to delete existing nodes: target {target}, delta {delta}, only {unfulfilled} requested instances are not yet created ({existing} exist)"
    )]
    WouldDeleteNodes {
        group: GroupId,
        target: u32,
        delta: i32,
        unfulfilled: u32,
        existing: u32,
    },
    #[error("node group {group}: node {node} does not belong to it; nothing was deleted")]
    NodeNotInGroup { group: GroupId, node: String },
    /// No listing of the cloud has succeeded since the start: the group's
    /// size is not known, so changing it could create instances twice.
    #[error(
        "node group {0}: not synced with the cloud since the start, so its size is unknown; retry after the next Refresh"
    )]
    NotSynced(GroupId),
    /// The deletion could not be journalled: answering it would let a
    /// crash before the terminate bring its instances back.
    #[error(
        "node group {group}: the deletion could not be journalled ({reason}); nothing was deleted, retry"
    )]
    JournalUnavailable { group: GroupId, reason: String },
}

/// Why a sync with the cloud failed; the last good state stays.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// The first sync reads the journal (creates and deletions under way
    /// before a restart); until it can, changes stay refused.
    #[error("journal of cloud work not read: {0}")]
    Journal(JournalError),
    /// Marks journalled by another part (interruption operations under
    /// way before a restart) are read with the listing they apply to.
    #[error("interruption journal not read: {0}")]
    Marks(String),
}
