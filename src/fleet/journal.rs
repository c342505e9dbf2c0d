//! Where the fleet journals cloud work a crash must not lose: create
//! requests between their first cloud call and the listing that shows what
//! they made (see `group::requests`), and what each DeleteNodes or
//! DecreaseTargetSize CA was answered for took away (instances until the
//! cloud took their terminate, cancelled slots until their request is
//! settled). In ConfigMaps
//! in the cluster, or (with no `kubernetes:` section) in memory, which a
//! process restart forgets.

use crate::cluster::cloud_work::WorkMaps;
use crate::cluster::journal::JournalError;
use gpupool_cloud::{CreateRequest, GroupId, InstanceId, RequestId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What one DeleteNodes or DecreaseTargetSize took away, journalled before
/// CA is answered: instances to terminate, and slots of requests already
/// sent that a restart must not ask for again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    /// Unique per call.
    pub key: String,
    pub group: GroupId,
    pub instances: Vec<InstanceId>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cancelled: BTreeMap<RequestId, u32>,
}

#[derive(Clone, Debug)]
pub enum WorkJournal {
    Cluster(Arc<WorkMaps>),
    /// Shared by clones: tests restart a fleet on the same one.
    Memory(Arc<Mutex<Memory>>),
}

#[derive(Debug, Default)]
pub struct Memory {
    creates: BTreeMap<RequestId, CreateRequest>,
    deletions: BTreeMap<String, Deletion>,
}

impl Default for WorkJournal {
    fn default() -> Self {
        WorkJournal::Memory(Arc::default())
    }
}

impl WorkJournal {
    pub fn cluster(maps: WorkMaps) -> Self {
        WorkJournal::Cluster(Arc::new(maps))
    }

    fn memory(m: &Mutex<Memory>) -> std::sync::MutexGuard<'_, Memory> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Journals a request; what the journal holds for it is returned (an
    /// earlier try's, if that one's answer was lost).
    pub async fn open(&self, request: &CreateRequest) -> Result<CreateRequest, JournalError> {
        match self {
            WorkJournal::Cluster(c) => c.open(request).await,
            WorkJournal::Memory(m) => Ok(Self::memory(m)
                .creates
                .entry(request.request_id.clone())
                .or_insert_with(|| request.clone())
                .clone()),
        }
    }

    pub async fn close(&self, request: &RequestId) -> Result<(), JournalError> {
        match self {
            WorkJournal::Cluster(c) => c.close(request).await,
            WorkJournal::Memory(m) => {
                Self::memory(m).creates.remove(request);
                Ok(())
            }
        }
    }

    pub async fn open_deletion(&self, deletion: &Deletion) -> Result<(), JournalError> {
        match self {
            WorkJournal::Cluster(c) => c.open_deletion(deletion).await,
            WorkJournal::Memory(m) => {
                Self::memory(m)
                    .deletions
                    .insert(deletion.key.clone(), deletion.clone());
                Ok(())
            }
        }
    }

    pub async fn close_deletion(&self, key: &str) -> Result<(), JournalError> {
        match self {
            WorkJournal::Cluster(c) => c.close_deletion(key).await,
            WorkJournal::Memory(m) => {
                Self::memory(m).deletions.remove(key);
                Ok(())
            }
        }
    }

    /// The open requests and deletions.
    pub async fn list(&self) -> Result<(Vec<CreateRequest>, Vec<Deletion>), JournalError> {
        match self {
            WorkJournal::Cluster(c) => c.list().await,
            WorkJournal::Memory(m) => {
                let m = Self::memory(m);
                Ok((
                    m.creates.values().cloned().collect(),
                    m.deletions.values().cloned().collect(),
                ))
            }
        }
    }
}
