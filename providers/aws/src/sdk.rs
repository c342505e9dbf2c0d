//! How the SDK clients are configured: the standard credential chain (env,
//! profile, SSO, IRSA web identity, EKS Pod Identity, IMDS) for real use; a
//! fixed endpoint, static credentials and no retries for tests.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_ec2::config::{Credentials, Region};

/// Where and how to reach AWS.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// One URL for every service (a test server); `None` for AWS itself.
    pub endpoint: Option<String>,
    /// Static credentials instead of the default chain (tests).
    pub static_credentials: bool,
    /// Turn the SDK's retries off: a test then sees each answer once, and a
    /// caller that retries on its own schedule is not multiplied.
    pub no_retries: bool,
}

impl Connection {
    /// The SDK configuration for `region`.
    pub async fn load(&self, region: &str) -> aws_config::SdkConfig {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_owned()));
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if self.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                "AKIDTEST",
                "test-secret",
                None,
                None,
                "gpupool-test",
            ));
        }
        if self.no_retries {
            loader = loader.retry_config(RetryConfig::disabled());
        }
        loader.load().await
    }
}
