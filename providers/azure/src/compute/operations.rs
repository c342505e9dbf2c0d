//! Long-running operations: a PUT or DELETE of a VM is answered at once
//! (201 or 202) with the URL of its status, in `Azure-AsyncOperation`
//! (a status resource: `{"status": "InProgress" | "Succeeded" | "Failed" |
//! "Canceled", "error": {...}}`) or else `Location` (202 while running;
//! 200 or 204 when done, an error status when it failed). gpupool polls
//! that URL, waiting what the answer's `Retry-After` says between polls
//! (<https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations>).
//!
//! The SDK's own `.await` of an operation re-sends the PUT and reads the
//! body's `provisioningState`, which loses the failure's code
//! (`AllocationFailed` becomes "Long running operation failed"), so it is
//! not used.

use super::errors::{ErrorBody, classify};
use crate::arm::Arm;
use azure_core::headers::{AZURE_ASYNCOPERATION, Headers, LOCATION, RETRY_AFTER};
use azure_core::{StatusCode, Url};
use gpupool_cloud::CloudError;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Between polls when the answer names no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// A `Retry-After` longer than this is taken as this.
const MAX_POLL: Duration = Duration::from_secs(60);

/// Where an operation's status is read.
#[derive(Clone, Debug)]
pub(crate) enum Poll {
    AsyncOperation(Url),
    Location(Url),
}

impl Poll {
    /// The status URL an answer names; `None` when the call finished in
    /// its answer (200 with the resource, 204, or a 404 delete).
    pub fn from_headers(headers: &Headers) -> Option<Self> {
        let url = |name: &azure_core::headers::HeaderName| {
            headers
                .get_optional_str(name)
                .and_then(|u| Url::parse(u).ok())
        };
        let (operation, location) = (AZURE_ASYNCOPERATION, LOCATION);
        url(&operation)
            .map(Self::AsyncOperation)
            .or_else(|| url(&location).map(Self::Location))
    }
}

/// The wait the answer asks for before the next poll.
fn retry_after(headers: &Headers) -> Duration {
    headers
        .get_optional_str(&RETRY_AFTER)
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(DEFAULT_POLL, |s| Duration::from_secs(s).min(MAX_POLL))
}

#[derive(Deserialize)]
struct Status {
    status: String,
    #[serde(default)]
    error: Option<ErrorBody>,
}

/// Polls `poll` until the operation ends or `limit` passes; `first_wait`
/// is the call's own `Retry-After`. `Err` is the operation's error,
/// classified, or a throttled `OperationTimedOut` (the engine asks again
/// with the same names, which finds the VM if it was made).
pub(crate) async fn wait(
    arm: &Arm,
    what: &str,
    poll: Poll,
    first_wait: Duration,
    limit: Duration,
) -> Result<(), CloudError> {
    let started = Instant::now();
    let mut pause = first_wait;
    loop {
        if started.elapsed() + pause > limit {
            return Err(CloudError::throttled(
                "OperationTimedOut",
                format!("{what}: not finished after {}s", limit.as_secs()),
            ));
        }
        tokio::time::sleep(pause).await;
        match &poll {
            Poll::AsyncOperation(url) => {
                let answer = arm.get(url.clone()).await.map_err(|e| classify(what, &e))?;
                pause = retry_after(answer.headers());
                let body = answer
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| classify(what, &e))?;
                let status: Status = serde_json::from_slice(&body)
                    .map_err(|e| CloudError::other("BadOperationStatus", format!("{what}: {e}")))?;
                match status.status.as_str() {
                    "Succeeded" => return Ok(()),
                    "Failed" | "Canceled" | "Cancelled" => {
                        let error = status.error.unwrap_or_else(|| ErrorBody {
                            code: status.status.clone(),
                            message: format!("operation {}", status.status),
                            details: Vec::new(),
                        });
                        return Err(error.into_cloud_error(what));
                    }
                    _ => {}
                }
            }
            Poll::Location(url) => {
                let answer = arm.get(url.clone()).await.map_err(|e| classify(what, &e))?;
                if answer.status() != StatusCode::Accepted {
                    return Ok(());
                }
                pause = retry_after(answer.headers());
            }
        }
    }
}

/// The first wait an answer asks for.
pub(crate) fn first_wait(headers: &Headers) -> Duration {
    retry_after(headers)
}
