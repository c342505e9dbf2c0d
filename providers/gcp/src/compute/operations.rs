//! Zonal long-running operations awaited: `zoneOperations.wait` returns
//! when the operation is done or after about two minutes, so it is called
//! again until the operation is `DONE` or the caller's limit passes. A
//! done operation's `error.errors[]` are classified; an operation still
//! running at the limit is reported as throttled, so the engine asks again
//! with the same request id and Compute Engine answers with this operation.

use super::GceCloud;
use super::errors::{classify, classify_code};
use google_cloud_compute_v1::model::Operation;
use google_cloud_compute_v1::model::operation::Status;
use gpupool_cloud::CloudError;
use std::time::{Duration, Instant};

impl GceCloud {
    /// Waits for `op` in `zone` until it is done, at most `limit`.
    pub(super) async fn wait(
        &self,
        zone: &str,
        mut op: Operation,
        limit: Duration,
    ) -> Result<Operation, CloudError> {
        let started = Instant::now();
        while op.status != Some(Status::Done) {
            let Some(name) = op.name.clone() else {
                return Err(CloudError::other(
                    "MalformedResponse",
                    "zoneOperations: an operation without a name",
                ));
            };
            if started.elapsed() >= limit {
                return Err(CloudError::throttled(
                    "OperationTimeout",
                    format!("operation {name} in {zone} was not done after {limit:?}"),
                ));
            }
            self.limits.read.until_ready().await;
            op = self
                .operations
                .wait()
                .set_project(&self.settings.project)
                .set_zone(zone)
                .set_operation(&name)
                .send()
                .await
                .map_err(|e| classify("zoneOperations.wait", &e))?;
        }
        Ok(op)
    }
}

/// The errors of a done operation, classified: the first capacity or quota
/// error wins (it decides what CA is told), then the first of the rest.
pub(super) fn error_of(op: &Operation) -> Option<CloudError> {
    let errors: Vec<CloudError> = op
        .error
        .iter()
        .flat_map(|e| e.errors.iter())
        .map(|e| {
            let code = e.code.clone().unwrap_or_else(|| "UNKNOWN".to_owned());
            let message = e.message.clone().unwrap_or_default();
            classify_code(&code, message)
        })
        .collect();
    if errors.is_empty() {
        // An HTTP error status with no error list.
        return op.http_error_status_code.filter(|c| *c >= 400).map(|c| {
            let message = op.http_error_message.clone().unwrap_or_default();
            CloudError::other(format!("HTTP{c}"), message)
        });
    }
    let first_capacity = errors
        .iter()
        .position(|e| e.class == gpupool_cloud::ErrorClass::OutOfResources)
        .unwrap_or(0);
    errors.into_iter().nth(first_capacity)
}
