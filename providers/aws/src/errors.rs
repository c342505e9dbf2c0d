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

/// EC2's codes for "no capacity or quota for this", which CA must see as
/// out of resources (class 1) to back the group off and try another. They
/// come per launch in CreateFleet's error set, or for the whole call.
pub(crate) const OUT_OF_RESOURCES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "MaxSpotInstanceCountExceeded",
    "MaxSpotFleetRequestCountExceeded",
    "VcpuLimitExceeded",
    "InstanceLimitExceeded",
    "UnfulfillableCapacity",
    "SpotMaxPriceTooLow",
];

/// An EC2 error code, classified for CA.
pub fn classify_code(code: &str, message: String) -> CloudError {
    if OUT_OF_RESOURCES.contains(&code) {
        CloudError::out_of_resources(code, message)
    } else if THROTTLING.contains(&code) {
        CloudError::throttled(code, message)
    } else {
        CloudError::other(code, message)
    }
}

/// `err` from `operation`, classified.
pub(crate) fn classify<E, R>(operation: &str, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown");
            let message = format!("{operation}: {}", e.message().unwrap_or("(no message)"));
            classify_code(code, message)
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
