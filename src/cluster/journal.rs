//! The interruption journal in the cluster: one ConfigMap per operation in
//! gpupool's namespace, labelled so a restart lists them all. Created with
//! POST (so a second writer for the same instance gets 409 AlreadyExists and
//! resumes the first's operation instead of starting its own), replaced with
//! its resourceVersion, deleted when the operation closes.

use crate::interrupt::Operation;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Marks gpupool's operation ConfigMaps.
pub const OPERATION_LABEL: &str = "gpupool.dev/operation";
const OPERATION_KEY: &str = "operation.json";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("kubernetes: {0}")]
    Api(#[from] kube::Error),
    #[error("configmap {name}: {OPERATION_KEY} is not an operation: {reason}")]
    Corrupt { name: String, reason: String },
}

impl JournalError {
    /// Worth another try: the API server shed the request (429), failed
    /// inside (5xx), or could not be reached.
    pub fn transient(&self) -> bool {
        match self {
            JournalError::Api(kube::Error::Api(s)) => s.code == 429 || s.code >= 500,
            JournalError::Api(kube::Error::HyperError(_) | kube::Error::Service(_)) => true,
            _ => false,
        }
    }
}

/// `prefix-<readable end of key>-<digest of key>`: a DNS-1123 label (at
/// most 63 characters) unique per key.
pub fn dns_name(prefix: &str, key: &str) -> String {
    let last = key.rsplit('/').next().unwrap_or_default();
    let mut readable: String = last
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(52usize.saturating_sub(prefix.len()))
        .collect();
    readable = readable.trim_matches('-').to_owned();
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let short = hex::encode(&digest.as_ref()[..4]);
    if readable.is_empty() {
        format!("{prefix}-{short}")
    } else {
        format!("{prefix}-{readable}-{short}")
    }
}

pub struct ConfigMaps {
    api: Api<ConfigMap>,
    /// The last resourceVersion written, per ConfigMap; `None` once removed
    /// (a late update of a closed operation must not bring it back).
    versions: Mutex<HashMap<String, Option<String>>>,
}

impl std::fmt::Debug for ConfigMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMaps").finish_non_exhaustive()
    }
}

/// Whether `create` made the entry or found one.
pub enum Created {
    New,
    Exists(Box<Operation>),
}

impl ConfigMaps {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// A DNS-1123 name per instance: readable, and unique by a digest of the
    /// whole providerID.
    pub fn name(provider_id: &str) -> String {
        dns_name("gpupool-interruption", provider_id)
    }

    fn object(op: &Operation, resource_version: Option<String>) -> ConfigMap {
        let mut labels = BTreeMap::new();
        labels.insert(OPERATION_LABEL.to_owned(), "interruption".to_owned());
        labels.insert(
            "app.kubernetes.io/managed-by".to_owned(),
            "gpupool".to_owned(),
        );
        let mut annotations = BTreeMap::new();
        annotations.insert("gpupool.dev/provider-id".to_owned(), op.provider_id.clone());
        annotations.insert("gpupool.dev/step".to_owned(), op.step.label().to_owned());
        let mut data = BTreeMap::new();
        data.insert(
            OPERATION_KEY.to_owned(),
            serde_json::to_string_pretty(op).unwrap_or_default(),
        );
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(Self::name(&op.provider_id)),
                labels: Some(labels),
                annotations: Some(annotations),
                resource_version,
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }
    }

    fn read(cm: &ConfigMap) -> Result<Operation, JournalError> {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(OPERATION_KEY))
            .ok_or_else(|| JournalError::Corrupt {
                name: name.clone(),
                reason: "missing".into(),
            })?;
        serde_json::from_str(text).map_err(|e| JournalError::Corrupt {
            name,
            reason: e.to_string(),
        })
    }

    fn remember(&self, cm: &ConfigMap) {
        if let (Some(name), Some(rv)) = (&cm.metadata.name, &cm.metadata.resource_version) {
            self.lock().insert(name.clone(), Some(rv.clone()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn create(&self, op: &Operation) -> Result<Created, JournalError> {
        match self
            .api
            .create(&PostParams::default(), &Self::object(op, None))
            .await
        {
            Ok(cm) => {
                self.remember(&cm);
                Ok(Created::New)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let cm = self.api.get(&Self::name(&op.provider_id)).await?;
                self.remember(&cm);
                Ok(Created::Exists(Box::new(Self::read(&cm)?)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the operation over its entry (recreating it if it went).
    pub async fn update(&self, op: &Operation) -> Result<(), JournalError> {
        let name = Self::name(&op.provider_id);
        for _ in 0..3 {
            let rv = match self.lock().get(&name).cloned() {
                Some(None) => return Ok(()), // closed
                Some(Some(rv)) => Some(rv),
                None => None,
            };
            let result = match rv {
                Some(rv) => {
                    self.api
                        .replace(&name, &PostParams::default(), &Self::object(op, Some(rv)))
                        .await
                }
                None => {
                    self.api
                        .create(&PostParams::default(), &Self::object(op, None))
                        .await
                }
            };
            match result {
                Ok(cm) => {
                    self.remember(&cm);
                    return Ok(());
                }
                // Someone else wrote it: take the current version and
                // write ours over it. Gone: closed (by another writer).
                Err(kube::Error::Api(s)) if s.code == 409 => match self.api.get_opt(&name).await? {
                    Some(cm) => self.remember(&cm),
                    None => return Ok(()),
                },
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(JournalError::Corrupt {
            name,
            reason: "kept changing under gpupool's writes".into(),
        })
    }

    pub async fn remove(&self, provider_id: &str) -> Result<(), JournalError> {
        let name = Self::name(provider_id);
        self.lock().insert(name.clone(), None);
        match self.api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every journalled operation; unreadable entries are logged and left
    /// for a person to look at.
    pub async fn list(&self) -> Result<Vec<Operation>, JournalError> {
        let list = self
            .api
            .list(&ListParams::default().labels(&format!("{OPERATION_LABEL}=interruption")))
            .await?;
        let mut ops = Vec::new();
        for cm in &list.items {
            match Self::read(cm) {
                Ok(op) => {
                    self.remember(cm);
                    ops.push(op);
                }
                Err(e) => {
                    tracing::error!(error = %e, "interruption journal entry unreadable; left in place")
                }
            }
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::ConfigMaps;

    #[test]
    fn names_are_dns_labels_unique_per_provider_id() {
        let a = ConfigMaps::name("aws:///us-east-1a/i-0ABC123");
        assert!(a.starts_with("gpupool-interruption-i-0abc123-"), "{a}");
        let b = ConfigMaps::name("aws:///us-east-1b/i-0ABC123");
        assert_ne!(a, b);
        let c = ConfigMaps::name(
            "azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/gpu/virtualMachines/gpu_0",
        );
        assert!(c.len() <= 63, "{c}");
        assert!(
            c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'),
            "{c}"
        );
    }
}
