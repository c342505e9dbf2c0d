//! Client errors as [`CloudError`]s: Google's status name kept, quota
//! exhaustion (HTTP 429) told apart as throttling.

use google_cloud_gax::error::rpc::Code;
use gpupool_cloud::CloudError;

pub(super) fn classify(e: google_cloud_billing_v1::Error) -> CloudError {
    let what = "services.skus.list";
    if let Some(status) = e.status() {
        let message = format!("{what}: {}", status.message);
        if status.code == Code::ResourceExhausted || e.http_status_code() == Some(429) {
            return CloudError::throttled(status.code.name(), message);
        }
        return CloudError::other(status.code.name(), message);
    }
    if e.http_status_code() == Some(429) {
        return CloudError::throttled("RESOURCE_EXHAUSTED", format!("{what}: {e}"));
    }
    if let Some(code) = e.http_status_code() {
        return CloudError::other(format!("HTTP{code}"), format!("{what}: {e}"));
    }
    if e.is_deserialization() {
        return CloudError::other(
            "MalformedResponse",
            format!("{what}: the answer is not a SKU page: {e}"),
        );
    }
    if e.is_timeout() {
        return CloudError::other("Timeout", format!("{what}: {e}"));
    }
    CloudError::other("Unreachable", format!("{what}: {e}"))
}
