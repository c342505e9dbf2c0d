//! The boot-latency models kept in a ConfigMap (`data["models.json"]`), so a
//! restart keeps what was learned. Written with the object's
//! resourceVersion: a concurrent writer makes the write fail with 409
//! Conflict, and it is read again and retried.

use crate::boot::Samples;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use std::collections::BTreeMap;

/// The key of the models in the ConfigMap.
pub const KEY: &str = "models.json";
/// Attempts at a write that keeps conflicting.
const ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ConfigMap {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("ConfigMap {namespace}/{name}: data[{KEY}] is not the models' JSON: {reason}")]
    Malformed {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("ConfigMap {namespace}/{name}: still conflicting after {ATTEMPTS} attempts")]
    Conflicts { namespace: String, name: String },
}

/// Where the models live.
#[derive(Clone)]
pub struct ModelStore {
    api: kube::Api<ConfigMap>,
    namespace: String,
    name: String,
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

impl ModelStore {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: kube::Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn api_error(&self, source: kube::Error) -> StoreError {
        StoreError::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// The saved models; empty when the ConfigMap does not exist yet.
    pub async fn load(&self) -> Result<BTreeMap<String, Samples>, StoreError> {
        let Some(cm) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.api_error(e))?
        else {
            return Ok(BTreeMap::new());
        };
        let Some(json) = cm.data.as_ref().and_then(|d| d.get(KEY)) else {
            return Ok(BTreeMap::new());
        };
        serde_json::from_str(json).map_err(|e| StoreError::Malformed {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            reason: e.to_string(),
        })
    }

    /// Writes `models`, creating the ConfigMap if needed.
    pub async fn save(&self, models: &BTreeMap<String, Samples>) -> Result<(), StoreError> {
        let json = serde_json::to_string(models).expect("samples serialise");
        for _ in 0..ATTEMPTS {
            let current = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|e| self.api_error(e))?;
            let result = match current {
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            namespace: Some(self.namespace.clone()),
                            labels: Some(BTreeMap::from([(
                                "app.kubernetes.io/managed-by".to_owned(),
                                "gpupool".to_owned(),
                            )])),
                            ..Default::default()
                        },
                        data: Some(BTreeMap::from([(KEY.to_owned(), json.clone())])),
                        ..Default::default()
                    };
                    self.api
                        .create(&PostParams::default(), &cm)
                        .await
                        .map(|_| ())
                }
                Some(mut cm) => {
                    // Replace carries the resourceVersion just read: a
                    // concurrent change makes it fail with 409.
                    cm.data
                        .get_or_insert_with(BTreeMap::new)
                        .insert(KEY.to_owned(), json.clone());
                    self.api
                        .replace(&self.name, &PostParams::default(), &cm)
                        .await
                        .map(|_| ())
                }
            };
            match result {
                Ok(()) => return Ok(()),
                // 409: changed or created meanwhile; read again.
                Err(e) if status_code(&e) == Some(409) => {
                    tracing::debug!(configmap = %self.name, "conflict; retrying");
                }
                Err(e) => return Err(self.api_error(e)),
            }
        }
        Err(StoreError::Conflicts {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        })
    }
}
