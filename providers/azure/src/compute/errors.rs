//! Resource Manager errors as the engine (and CA) needs them: out of
//! capacity or quota (class 1: CA backs off the group and tries another),
//! throttled (asked again later with the same names), or anything else
//! (class 99). The codes are Compute's, from the `error.code` of a call's
//! answer or of a failed operation's status
//! (<https://learn.microsoft.com/troubleshoot/azure/virtual-machines/windows/allocation-failure>).

use gpupool_cloud::{CloudError, ErrorClass};
use serde::Deserialize;

/// The code gpupool gives a 404: a resource that is not there.
pub const NOT_FOUND: &str = "NotFound";

/// Codes that mean no capacity for this size, zone or priority now.
const OUT_OF_CAPACITY: &[&str] = &[
    "SkuNotAvailable",
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
];

/// Codes that mean the subscription's quota (regional or family vCPUs,
/// spot vCPUs) is used up.
const QUOTA: &[&str] = &["QuotaExceeded"];

/// The class of a Resource Manager error code. `OperationNotAllowed` is
/// Compute's answer both to a quota exceeded ("… exceeding approved
/// standardNDSH100v5Family Cores quota") and to an operation that conflicts
/// with the VM's state, so it is capacity only when its message says quota.
pub fn classify_code(code: &str, message: &str) -> ErrorClass {
    let quota_message = message.to_ascii_lowercase().contains("quota");
    if OUT_OF_CAPACITY.contains(&code)
        || QUOTA.contains(&code)
        || (code == "OperationNotAllowed" && quota_message)
    {
        ErrorClass::OutOfResources
    } else if matches!(
        code,
        "TooManyRequests" | "RetryableError" | "InternalExecutionError" | "OperationTimedOut"
    ) {
        ErrorClass::Throttled
    } else {
        ErrorClass::Other
    }
}

/// ARM's error body: `{"error": {"code", "message", "details": [...]}}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: Vec<ErrorBody>,
}

impl ErrorBody {
    /// The error, classified. A generic outer code whose details carry a
    /// capacity code (an operation failing with `InternalError` around an
    /// `AllocationFailed`) takes the detail's.
    pub fn into_cloud_error(self, what: &str) -> CloudError {
        let capacity_detail = self
            .details
            .iter()
            .find(|d| classify_code(&d.code, &d.message) == ErrorClass::OutOfResources);
        let (code, message) = match capacity_detail {
            Some(d) if classify_code(&self.code, &self.message) != ErrorClass::OutOfResources => {
                (d.code.clone(), format!("{}: {}", self.message, d.message))
            }
            _ => (self.code.clone(), self.message.clone()),
        };
        let code = if code.is_empty() {
            "Unknown".to_owned()
        } else {
            code
        };
        CloudError::new(
            classify_code(&code, &message),
            code,
            format!("{what}: {message}"),
        )
    }
}

/// An error of the SDK or the pipeline, classified: an HTTP answer by its
/// status and ARM code (429 and 5xx that outlived the retries are
/// throttled; 404 is [`NOT_FOUND`]), a failure to connect as throttled
/// (the engine asks again), the rest class 99.
pub fn classify(what: &str, error: &azure_core::Error) -> CloudError {
    use azure_core::error::ErrorKind;
    if let Some(http) = error.as_http_error() {
        let status = u16::from(http.status());
        let code = http.error_code().unwrap_or_default().to_owned();
        let message = http.error_message().unwrap_or_default().to_owned();
        let message = format!("{what}: HTTP {status} {code}: {message}");
        if status == 404 {
            return CloudError::other(NOT_FOUND, message);
        }
        if status == 429 || status == 408 || status >= 500 {
            let code = if code.is_empty() {
                format!("HTTP{status}")
            } else {
                code
            };
            return CloudError::throttled(code, message);
        }
        let code = if code.is_empty() {
            format!("HTTP{status}")
        } else {
            code
        };
        let class = classify_code(&code, &message);
        return CloudError::new(class, code, message);
    }
    match error.kind() {
        ErrorKind::Io => CloudError::throttled("Unreachable", format!("{what}: {error}")),
        ErrorKind::Credential => CloudError::other("Credentials", format!("{what}: {error}")),
        _ => CloudError::other("Azure", format!("{what}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_and_quota_codes_are_class_one() {
        for code in OUT_OF_CAPACITY {
            assert_eq!(
                classify_code(code, ""),
                ErrorClass::OutOfResources,
                "{code}"
            );
        }
        assert_eq!(
            classify_code(
                "OperationNotAllowed",
                "Operation could not be completed as it results in exceeding approved standardNDSH100v5Family Cores quota."
            ),
            ErrorClass::OutOfResources
        );
        assert_eq!(
            classify_code(
                "OperationNotAllowed",
                "Operation 'start' is not allowed since the VM is being deleted."
            ),
            ErrorClass::Other
        );
        assert_eq!(
            classify_code("InvalidParameter", "bad image"),
            ErrorClass::Other
        );
    }

    #[test]
    fn a_capacity_detail_names_the_error() {
        let body = ErrorBody {
            code: "InternalError".into(),
            message: "The operation failed".into(),
            details: vec![ErrorBody {
                code: "ZonalAllocationFailed".into(),
                message: "no capacity in zone 2".into(),
                details: Vec::new(),
            }],
        };
        let e = body.into_cloud_error("create vm-1");
        assert_eq!(e.code, "ZonalAllocationFailed");
        assert_eq!(e.class, ErrorClass::OutOfResources);
        assert!(e.message.contains("no capacity in zone 2"), "{e}");
    }
}
