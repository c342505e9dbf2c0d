//! The connection to Azure Resource Manager: credentials the standard way
//! (`azure_identity`'s default chain: a client secret or workload identity
//! from the environment, then managed identity), an endpoint (the public
//! cloud's, or a local server in tests), and the retry policy every call
//! goes through: 408, 429 and 5xx are retried with exponential backoff and
//! jitter, waiting at least as long as the `Retry-After` of a 429 or 503.

use azure_core::auth::TokenCredential;
use azure_core::{ClientOptions, Context, ExponentialRetryOptions, Method, Pipeline, Request};
use azure_core::{RetryOptions, Url};
use azure_mgmt_compute::package_2024_07_01::Client;
use gpupool_cloud::CloudError;
use std::sync::Arc;
use std::time::Duration;

/// The public cloud's Resource Manager.
pub const PUBLIC_ENDPOINT: &str = "https://management.azure.com";

/// Where and how to reach Resource Manager.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// `None`: the public cloud. Otherwise another cloud's Resource
    /// Manager (`https://management.usgovcloudapi.net`) or a test server.
    pub endpoint: Option<String>,
    /// Tests that count calls turn the client's retries off.
    pub no_retries: bool,
}

impl Connection {
    /// The retry policy: ARM answers throttling with 429 and a
    /// `Retry-After` of seconds to a minute, which the policy waits out
    /// (the larger of it and the backoff); 90 s in all, then the call is
    /// reported as throttled and the engine asks again at its next sync.
    fn retry(&self) -> RetryOptions {
        if self.no_retries {
            return RetryOptions::none();
        }
        RetryOptions::exponential(
            ExponentialRetryOptions::default()
                .initial_delay(Duration::from_millis(500))
                .max_retries(6_u32)
                .max_total_elapsed(Duration::from_secs(90))
                .max_delay(Duration::from_secs(60)),
        )
    }

    fn endpoint_url(&self) -> Result<Url, CloudError> {
        let text = self.endpoint.as_deref().unwrap_or(PUBLIC_ENDPOINT);
        Url::parse(text)
            .map_err(|e| CloudError::other("ClientSetup", format!("endpoint {text:?}: {e}")))
    }

    /// A client for `credential`.
    pub fn connect(&self, credential: Arc<dyn TokenCredential>) -> Result<Arm, CloudError> {
        let endpoint = self.endpoint_url()?;
        // Tokens are for Resource Manager itself: its audience is the
        // endpoint (`https://management.azure.com/.default`).
        let scope = endpoint
            .join("/.default")
            .map_err(|e| CloudError::other("ClientSetup", format!("token scope: {e}")))?
            .to_string();
        let client = Client::builder(credential.clone())
            .endpoint(endpoint.clone())
            .scopes(&[scope.as_str()])
            .retry(self.retry())
            .build()
            .map_err(|e| CloudError::other("ClientSetup", e.to_string()))?;
        let pipeline = Pipeline::new(
            option_env!("CARGO_PKG_NAME"),
            option_env!("CARGO_PKG_VERSION"),
            ClientOptions::default().retry(self.retry()),
            Vec::new(),
            Vec::new(),
        );
        Ok(Arm {
            client,
            pipeline,
            credential,
            scope,
        })
    }
}

/// The standard credential chain of `azure_identity`: a client secret or
/// certificate, or workload identity (`AZURE_FEDERATED_TOKEN_FILE`, as the
/// AKS workload-identity webhook injects it), from the environment; then
/// managed identity (App Service, then the VM's IMDS).
pub fn default_credential() -> Result<Arc<dyn TokenCredential>, CloudError> {
    azure_identity::create_default_credential()
        .map_err(|e| CloudError::other("Credentials", e.to_string()))
}

/// A connected Resource Manager client: the SDK's for typed calls, and a
/// pipeline with the same retries for what the SDK does not cover
/// (polling an operation's status URL).
#[derive(Clone)]
pub struct Arm {
    pub(crate) client: Client,
    pipeline: Pipeline,
    credential: Arc<dyn TokenCredential>,
    scope: String,
}

impl std::fmt::Debug for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arm").field("scope", &self.scope).finish()
    }
}

impl Arm {
    /// `GET url` with a bearer token, through the retry policy.
    pub(crate) async fn get(&self, url: Url) -> azure_core::Result<azure_core::Response> {
        let token = self.credential.get_token(&[self.scope.as_str()]).await?;
        let mut request = Request::new(url, Method::Get);
        request.insert_header(
            azure_core::headers::AUTHORIZATION,
            format!("Bearer {}", token.token.secret()),
        );
        self.pipeline.send(&Context::default(), &mut request).await
    }
}
