//! Where operations are journalled: ConfigMaps in the cluster, or (with no
//! `kubernetes:` section) memory only, which a restart forgets.

use super::Operation;
use crate::cluster::journal::{ConfigMaps, Created, JournalError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Clones share the journal: a test restarts the engine on the same one,
/// as a restarted process finds the same ConfigMaps.
#[derive(Clone)]
pub enum Journal {
    Cluster(Arc<ConfigMaps>),
    Memory(Arc<Mutex<BTreeMap<String, Operation>>>),
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Journal::Cluster(_) => f.write_str("Journal::Cluster"),
            Journal::Memory(_) => f.write_str("Journal::Memory"),
        }
    }
}

impl Journal {
    pub fn memory() -> Self {
        Journal::Memory(Arc::default())
    }

    fn mem(
        m: &Mutex<BTreeMap<String, Operation>>,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, Operation>> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Journals a new operation; `Exists` when the instance already has one
    /// (a previous run, or another replica, started it).
    pub async fn create(&self, op: &Operation) -> Result<Created, JournalError> {
        match self {
            Journal::Cluster(c) => c.create(op).await,
            Journal::Memory(m) => {
                let mut m = Self::mem(m);
                match m.get(&op.provider_id) {
                    Some(existing) => Ok(Created::Exists(Box::new(existing.clone()))),
                    None => {
                        m.insert(op.provider_id.clone(), op.clone());
                        Ok(Created::New)
                    }
                }
            }
        }
    }

    pub async fn update(&self, op: &Operation) -> Result<(), JournalError> {
        match self {
            Journal::Cluster(c) => c.update(op).await,
            Journal::Memory(m) => {
                Self::mem(m).insert(op.provider_id.clone(), op.clone());
                Ok(())
            }
        }
    }

    pub async fn remove(&self, provider_id: &str) -> Result<(), JournalError> {
        match self {
            Journal::Cluster(c) => c.remove(provider_id).await,
            Journal::Memory(m) => {
                Self::mem(m).remove(provider_id);
                Ok(())
            }
        }
    }

    pub async fn list(&self) -> Result<Vec<Operation>, JournalError> {
        match self {
            Journal::Cluster(c) => c.list().await,
            Journal::Memory(m) => Ok(Self::mem(m).values().cloned().collect()),
        }
    }
}
