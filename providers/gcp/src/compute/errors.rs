//! Compute Engine's failures as [`CloudError`]s, classified for CA: a zone
//! out of a machine or GPU (`ZONE_RESOURCE_POOL_EXHAUSTED`, with or
//! without details), a quota (`QUOTA_EXCEEDED`, regional GPU quotas
//! included) or a resource the zone does not offer is class 1, so CA backs
//! the group off and tries another; rate limits are throttling (retried);
//! the rest is class 99. The codes are those of `Operation.error.errors[]`
//! and of the API's error answers
//! (<https://cloud.google.com/compute/docs/troubleshooting/troubleshooting-vm-creation>).

use crate::sdk;
use google_cloud_gax::error::Error;
use gpupool_cloud::CloudError;

/// Codes (exact, or by prefix for the `…_WITH_DETAILS` variants) that mean
/// "no capacity or quota for this here".
const OUT_OF_RESOURCES: &[&str] = &[
    "ZONE_RESOURCE_POOL_EXHAUSTED",
    "REGION_RESOURCE_POOL_EXHAUSTED",
    "QUOTA_EXCEEDED",
    "RESOURCE_NOT_AVAILABLE",
    "RESOURCE_AVAILABILITY",
    "IP_SPACE_EXHAUSTED",
    "STOCKOUT",
];

/// Codes of an operation that mean "too many requests, try later".
const THROTTLED: &[&str] = &[
    "RATE_LIMIT_EXCEEDED",
    "RESOURCE_OPERATION_RATE_EXCEEDED",
    "OPERATION_RATE_EXCEEDED",
];

/// The code a resource's absence comes with, in an operation or an answer.
pub(crate) const NOT_FOUND: &str = "RESOURCE_NOT_FOUND";
/// A name taken in the zone (an instance this request made before).
pub(crate) const ALREADY_EXISTS: &str = "RESOURCE_ALREADY_EXISTS";

/// One error code of an operation, classified.
pub fn classify_code(code: &str, message: String) -> CloudError {
    if OUT_OF_RESOURCES.iter().any(|c| code.starts_with(c)) {
        CloudError::out_of_resources(code, message)
    } else if THROTTLED.contains(&code) {
        CloudError::throttled(code, message)
    } else {
        CloudError::other(code, message)
    }
}

/// A failed call of `method`, classified.
pub(crate) fn classify(method: &str, e: &Error) -> CloudError {
    let message = |m: &str| format!("{method}: {m}");
    if let Some(status) = e.status() {
        let text = message(&status.message);
        // Quota refusals come as 403 with reason quotaExceeded, or as 429
        // RESOURCE_EXHAUSTED naming a quota metric: a resource quota (CPUs,
        // GPUs) is class 1, a request-rate quota is throttling.
        if sdk::reasons(e).any(|r| r == "quotaExceeded" || r == "QUOTA_EXCEEDED")
            && !is_rate_quota(&status.message)
        {
            return CloudError::out_of_resources("QUOTA_EXCEEDED", text);
        }
        if sdk::reasons(e).any(|r| r.starts_with("ZONE_RESOURCE_POOL_EXHAUSTED")) {
            return CloudError::out_of_resources("ZONE_RESOURCE_POOL_EXHAUSTED", text);
        }
        if sdk::is_retryable(e) {
            let code = sdk::reasons(e)
                .find(|r| sdk::RATE_LIMIT_REASONS.contains(r))
                .unwrap_or(status.code.name());
            return CloudError::throttled(code, text);
        }
        if e.http_status_code() == Some(404) {
            return CloudError::other(NOT_FOUND, text);
        }
        if e.http_status_code() == Some(409) {
            return CloudError::other(ALREADY_EXISTS, text);
        }
        return CloudError::other(status.code.name(), text);
    }
    if sdk::is_retryable(e) {
        return CloudError::throttled("UNAVAILABLE", message(&e.to_string()));
    }
    if let Some(code) = e.http_status_code() {
        return CloudError::other(format!("HTTP{code}"), message(&e.to_string()));
    }
    if e.is_deserialization() {
        return CloudError::other(
            "MalformedResponse",
            message(&format!("the answer is not the API's shape: {e}")),
        );
    }
    if e.is_timeout() {
        return CloudError::throttled("Timeout", message(&e.to_string()));
    }
    CloudError::other("Unreachable", message(&e.to_string()))
}

/// A quota on requests (per minute) rather than on resources.
fn is_rate_quota(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("per minute") || m.contains("requests") || m.contains("queries")
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpupool_cloud::ErrorClass;

    #[test]
    fn capacity_and_quota_codes_are_class_1() {
        for code in [
            "ZONE_RESOURCE_POOL_EXHAUSTED",
            "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
            "QUOTA_EXCEEDED",
            "RESOURCE_NOT_AVAILABLE",
        ] {
            assert_eq!(
                classify_code(code, String::new()).class,
                ErrorClass::OutOfResources,
                "{code}"
            );
        }
        assert_eq!(
            classify_code("RATE_LIMIT_EXCEEDED", String::new()).class,
            ErrorClass::Throttled
        );
        for code in [
            "INVALID_FIELD_VALUE",
            "PERMISSIONS_ERROR",
            "RESOURCE_NOT_FOUND",
        ] {
            assert_eq!(classify_code(code, String::new()).class, ErrorClass::Other);
        }
    }

    #[test]
    fn request_rate_quotas_are_not_resource_quotas() {
        assert!(is_rate_quota(
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute'"
        ));
        assert!(!is_rate_quota(
            "Quota 'NVIDIA_H100_GPUS' exceeded.  Limit: 0.0 in region us-central1."
        ));
    }
}
