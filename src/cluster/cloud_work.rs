//! The journal of cloud work in the cluster: one ConfigMap per create
//! request, and one per DeleteNodes or DecreaseTargetSize CA was answered
//! (see `crate::fleet::journal::Deletion`), in gpupool's
//! namespace, labelled so a restart lists them all. A create's is written
//! (POST) before its first cloud call and deleted once the cloud's listing
//! shows what it made; a deletion's before CA is answered and deleted once
//! the cloud took the terminate. See `crate::fleet::journal`.

use super::journal::{JournalError, OPERATION_LABEL, dns_name};
use crate::fleet::journal::Deletion;
use gpupool_cloud::{CreateRequest, RequestId};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use std::collections::BTreeMap;

/// The label value that marks create-request entries.
pub const CREATE: &str = "create";
/// The label value that marks deletion entries.
pub const DELETE: &str = "delete";
const REQUEST_KEY: &str = "request.json";
const DELETION_KEY: &str = "deletion.json";

pub struct WorkMaps {
    api: Api<ConfigMap>,
}

impl std::fmt::Debug for WorkMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkMaps").finish_non_exhaustive()
    }
}

impl WorkMaps {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
        }
    }

    pub fn name(request: &RequestId) -> String {
        dns_name("gpupool-create", request.as_str())
    }

    pub fn deletion_name(key: &str) -> String {
        dns_name("gpupool-delete", key)
    }

    /// Journals a request, and returns what the journal holds for it: an
    /// entry already there (request ids are unique) was written by an
    /// earlier try whose answer was lost, and is the one to send.
    pub async fn open(&self, request: &CreateRequest) -> Result<CreateRequest, JournalError> {
        let name = Self::name(&request.request_id);
        let json = serde_json::to_string_pretty(request).map_err(|e| JournalError::Corrupt {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        let annotations = BTreeMap::from([
            (
                "gpupool.dev/request-id".to_owned(),
                request.request_id.to_string(),
            ),
            (
                "gpupool.dev/node-group".to_owned(),
                request.group.to_string(),
            ),
        ]);
        if self
            .post(name.clone(), CREATE, annotations, REQUEST_KEY, json)
            .await?
        {
            return Ok(request.clone());
        }
        let existing = self.api.get(&name).await?;
        existing
            .data
            .as_ref()
            .and_then(|d| d.get(REQUEST_KEY))
            .ok_or_else(|| format!("no {REQUEST_KEY}"))
            .and_then(|text| serde_json::from_str(text).map_err(|e| e.to_string()))
            .map_err(|reason| JournalError::Corrupt { name, reason })
    }

    /// Journals what a DeleteNodes or DecreaseTargetSize takes away; an
    /// entry already there (409: an earlier try whose answer was lost)
    /// counts as written, keys being unique.
    pub async fn open_deletion(&self, deletion: &Deletion) -> Result<(), JournalError> {
        let name = Self::deletion_name(&deletion.key);
        let json = serde_json::to_string_pretty(deletion).map_err(|e| JournalError::Corrupt {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        let annotations = BTreeMap::from([(
            "gpupool.dev/node-group".to_owned(),
            deletion.group.to_string(),
        )]);
        self.post(name, DELETE, annotations, DELETION_KEY, json)
            .await
            .map(|_| ())
    }

    async fn post(
        &self,
        name: String,
        kind: &str,
        annotations: BTreeMap<String, String>,
        key: &str,
        json: String,
    ) -> Result<bool, JournalError> {
        let labels = BTreeMap::from([
            (OPERATION_LABEL.to_owned(), kind.to_owned()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "gpupool".to_owned(),
            ),
        ]);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name),
                labels: Some(labels),
                annotations: Some(annotations),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(key.to_owned(), json)])),
            ..Default::default()
        };
        // Created, or (409) written by an earlier try whose answer was lost.
        match self.api.create(&PostParams::default(), &cm).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a settled request's entry; one already gone is fine.
    pub async fn close(&self, request: &RequestId) -> Result<(), JournalError> {
        self.delete(&Self::name(request)).await
    }

    /// Removes a deletion's entry once the cloud took its terminate.
    pub async fn close_deletion(&self, key: &str) -> Result<(), JournalError> {
        self.delete(&Self::deletion_name(key)).await
    }

    async fn delete(&self, name: &str) -> Result<(), JournalError> {
        match self.api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every open request and deletion; an unreadable entry is logged and
    /// left for a person to look at.
    pub async fn list(&self) -> Result<(Vec<CreateRequest>, Vec<Deletion>), JournalError> {
        Ok((
            self.read(CREATE, REQUEST_KEY).await?,
            self.read(DELETE, DELETION_KEY).await?,
        ))
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Vec<T>, JournalError> {
        let list = self
            .api
            .list(&ListParams::default().labels(&format!("{OPERATION_LABEL}={kind}")))
            .await?;
        let mut open = Vec::new();
        for cm in &list.items {
            let name = cm.metadata.name.clone().unwrap_or_default();
            let parsed = cm
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .ok_or_else(|| format!("no {key}"))
                .and_then(|text| serde_json::from_str::<T>(text).map_err(|e| e.to_string()));
            match parsed {
                Ok(entry) => open.push(entry),
                Err(reason) => tracing::error!(
                    configmap = %name,
                    reason,
                    "journal entry unreadable; left in place"
                ),
            }
        }
        Ok(open)
    }
}
