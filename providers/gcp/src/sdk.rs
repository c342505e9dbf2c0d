//! How the Google Cloud clients are built: Application Default Credentials
//! (GKE Workload Identity through the metadata server, a service-account
//! key or `gcloud auth application-default login` through
//! `GOOGLE_APPLICATION_CREDENTIALS`), Google's endpoints, and retries of
//! throttling and transient failures with exponential backoff and jitter.
//! Tests point the clients at a local server.

use google_cloud_gax::backoff_policy::BackoffPolicyArg;
use google_cloud_gax::client_builder::ClientBuilder;
use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::{RetryPolicy, RetryPolicyExt};
use google_cloud_gax::retry_result::RetryResult;
use google_cloud_gax::retry_state::RetryState;
use std::time::Duration;

/// Where and how to reach Google Cloud.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// One URL for Compute Engine and the billing catalog instead of
    /// Google's own (a test server, or a Private Service Connect endpoint).
    pub endpoint: Option<String>,
    /// No credentials at all instead of ADC (tests against a local server).
    pub anonymous: bool,
    /// One attempt per call: a test sees each answer once.
    pub no_retries: bool,
}

/// Attempts per call, and the longest a call retries, when retrying.
const ATTEMPTS: u32 = 4;
const RETRY_FOR: Duration = Duration::from_secs(30);

impl Connection {
    /// `builder` with this connection's endpoint, credentials and retries.
    pub(crate) fn configure<F, Cr>(&self, mut builder: ClientBuilder<F, Cr>) -> ClientBuilder<F, Cr>
    where
        google_cloud_auth::credentials::Credentials: Into<Cr>,
    {
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        if self.anonymous {
            builder = builder.with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let attempts = if self.no_retries { 1 } else { ATTEMPTS };
        builder
            .with_retry_policy(
                Throttling
                    .with_attempt_limit(attempts)
                    .with_time_limit(RETRY_FOR),
            )
            .with_backoff_policy(backoff())
    }
}

fn backoff() -> BackoffPolicyArg {
    // Exponential with full jitter (the policy's own), 1 s then doubling.
    ExponentialBackoffBuilder::new()
        .with_initial_delay(Duration::from_secs(1))
        .with_maximum_delay(Duration::from_secs(10))
        .with_scaling(2.0)
        .build()
        .map(Into::into)
        .unwrap_or_else(|_| {
            google_cloud_gax::exponential_backoff::ExponentialBackoff::default().into()
        })
}

/// Retries what Google says to retry: transient failures (503, lost
/// connections) and rate limits (429, 403 `rateLimitExceeded`). Creation
/// calls carry a request id, so Compute Engine answers a repeat with the
/// first call's operation and never creates twice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Throttling;

impl RetryPolicy for Throttling {
    fn on_error(&self, state: &RetryState, error: Error) -> RetryResult {
        if error.is_transient_and_before_rpc() {
            return RetryResult::Continue(error);
        }
        if !state.idempotent {
            return RetryResult::Permanent(error);
        }
        if error.is_io() || is_retryable(&error) {
            return RetryResult::Continue(error);
        }
        RetryResult::Permanent(error)
    }
}

/// Rate limited, or temporarily unavailable.
pub(crate) fn is_retryable(error: &Error) -> bool {
    if matches!(error.http_status_code(), Some(429 | 502 | 503 | 504)) {
        return true;
    }
    let Some(status) = error.status() else {
        return false;
    };
    if matches!(status.code, Code::Unavailable | Code::ResourceExhausted) {
        return true;
    }
    reasons(error).any(|r| RATE_LIMIT_REASONS.contains(&r))
}

/// The `reason`s of an error's details (`errors[].reason` in Compute
/// Engine's answers, `ErrorInfo.reason` in newer ones).
pub(crate) fn reasons(error: &Error) -> impl Iterator<Item = &str> {
    error
        .status()
        .into_iter()
        .flat_map(|s| s.details.iter())
        .filter_map(|d| match d {
            StatusDetails::ErrorInfo(info) => Some(info.reason.as_str()),
            _ => None,
        })
}

/// Google's reasons for "too many requests" (the Compute API's per-minute
/// rate quotas answer 403 with these as well as 429).
pub(crate) const RATE_LIMIT_REASONS: &[&str] = &[
    "rateLimitExceeded",
    "userRateLimitExceeded",
    "RATE_LIMIT_EXCEEDED",
    "RESOURCE_OPERATION_RATE_EXCEEDED",
];
