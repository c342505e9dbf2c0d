//! SDK errors as [`CloudError`]s: the AWS error code kept, throttling told
//! apart so callers back off instead of failing over.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use gpupool_cloud::CloudError;

/// AWS's throttling codes across the query, JSON and REST protocols.
pub(crate) const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// `err` from `operation`, classified.
pub(crate) fn classify<E, R>(operation: &str, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = format!("{operation}: {}", e.message().unwrap_or("(no message)"));
            if THROTTLING.contains(&code.as_str()) {
                CloudError::throttled(code, message)
            } else {
                CloudError::other(code, message)
            }
        }
        SdkError::ResponseError(_) => CloudError::other(
            "MalformedResponse",
            format!("{operation}: the answer could not be read: {}", chain(&err)),
        ),
        SdkError::TimeoutError(_) => {
            CloudError::other("Timeout", format!("{operation}: {}", chain(&err)))
        }
        _ => CloudError::other("Unreachable", format!("{operation}: {}", chain(&err))),
    }
}

/// An error and its sources on one line (the SDK's top-level messages alone
/// say little, e.g. "dispatch failure").
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
