//! The config file: the cloud, its region, the server, and the node groups.
//!
//! Parsed into typed structs (`deny_unknown_fields` everywhere), then validated
//! as a whole; every error names the group and the key. Annotations are parsed
//! once, here, into [`GroupAnnotations`]; nothing else sees a raw annotation.

mod annotations;
pub(crate) mod aws;
pub(crate) mod azure;
pub(crate) mod gcp;
mod interruption;

pub use annotations::{
    CA_TEMPLATE_PREFIX, CaOptionOverrides, CaTemplate, GroupAnnotations, Interruption,
    MAX_DURATION, Rebalance,
};

use crate::gpu::sharing::{self, Sharing};
use crate::preprovision::time::{Tz, parse_tz};
pub use aws::{AwsConfig, AwsGroupConfig, DiscoveredTemplate, LaunchTemplateRef};
pub use azure::{AzureConfig, AzureGroupConfig, DiscoveredScaleSet, VmConfig};
pub use gcp::{
    DiscoveredInstanceTemplate, GcpConfig, GcpGroupConfig, GuestAccelerators, MachineConfig,
};
pub use interruption::InterruptionConfig;

use gpupool_cloud::{GroupId, InstanceType, PurchaseOption};
use gpupool_sim::SimConfig;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The example config `gpupool serve` runs when given none.
pub const DEFAULT_YAML: &str = include_str!("default.yaml");

/// The GPU label when the config names none.
pub const DEFAULT_GPU_LABEL: &str = "gpupool.dev/accelerator";

/// A config problem, with where it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("node group {group:?}: {key}: {reason}")]
    Group {
        group: String,
        key: String,
        reason: String,
    },
}

impl ConfigError {
    fn group(group: &str, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Group {
            group: group.to_owned(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Which cloud backs the node groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloudKind {
    /// The built-in simulated cloud.
    Sim,
    Aws,
    Gcp,
    Azure,
}

impl CloudKind {
    /// The name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
        }
    }
}

/// The whole config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub cloud: CloudKind,
    pub region: String,
    /// Node label whose presence marks a GPU node; its value is the GPU type.
    #[serde(default = "default_gpu_label")]
    pub gpu_label: String,
    #[serde(default)]
    pub server: ServerConfig,
    /// The simulated cloud, when `cloud: sim`.
    #[serde(default)]
    pub sim: SimConfig,
    /// The AWS installation, when `cloud: aws`.
    #[serde(default)]
    pub aws: Option<AwsConfig>,
    /// The GCP installation, when `cloud: gcp`.
    #[serde(default)]
    pub gcp: Option<GcpConfig>,
    /// The Azure installation, when `cloud: azure`.
    #[serde(default)]
    pub azure: Option<AzureConfig>,
    /// The cluster's Kubernetes API: Node watch for boot latency, the
    /// models' ConfigMap. Absent: gpupool runs without the cluster.
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
    /// The interruption webhook; absent: no webhook port.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// How interruption operations drain and replace.
    #[serde(default)]
    pub interruption: InterruptionConfig,
    /// IANA time zone that `gpupool.dev/preprovision` schedules are read in,
    /// unless a group sets `gpupool.dev/time-zone`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    pub node_groups: Vec<NodeGroupConfig>,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

fn default_gpu_label() -> String {
    DEFAULT_GPU_LABEL.to_owned()
}

/// How `gpupool serve` listens and talks to the cloud.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// gRPC address for CA (loopback by default).
    pub grpc_listen: SocketAddr,
    /// HTTP address for /healthz, /readyz and /metrics.
    pub http_listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    /// `serve`, or `unimplemented` for CA releases that would zero their
    /// max-node-startup time (see the README).
    pub node_group_options: OptionsMode,
    /// Cloud API calls per second, sustained.
    pub cloud_calls_per_second: u32,
    /// Cloud API calls allowed in a burst.
    pub cloud_call_burst: u32,
    /// Longest a `Refresh` waits for the cloud before answering from the last
    /// good state.
    #[serde(with = "humantime_serde")]
    pub refresh_timeout: Duration,
    /// How often the fleet is synced with the cloud when CA does not call Refresh.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// How often live prices are fetched from the cloud's pricing APIs; the
    /// last good prices are kept when a refresh fails.
    #[serde(with = "humantime_serde")]
    pub price_refresh_interval: Duration,
    /// How often pre-provisioning floors are re-evaluated (and CronJob runs'
    /// pods checked).
    #[serde(with = "humantime_serde")]
    pub preprovision_interval: Duration,
    /// How often the config file (and the TLS files it names) are read for
    /// changes, which are applied without a restart; `0s`: never.
    #[serde(with = "humantime_serde")]
    pub config_reload_interval: Duration,
    /// Largest gRPC request accepted; a larger one is refused with
    /// OUT_OF_RANGE before it is decoded.
    pub grpc_max_message_bytes: usize,
    /// Requests handled at once: gRPC streams per connection (more are
    /// refused by HTTP/2 and retried by the client), and HTTP requests
    /// on the operations and webhook ports (more are answered 503 with
    /// Retry-After).
    pub max_concurrent_requests: u32,
}

/// Bounds of `server.grpc_max_message_bytes`.
const GRPC_MESSAGE_BYTES: std::ops::RangeInclusive<usize> = 64 * 1024..=256 * 1024 * 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 8086)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8087)),
            tls: None,
            node_group_options: OptionsMode::Serve,
            cloud_calls_per_second: 10,
            cloud_call_burst: 20,
            refresh_timeout: Duration::from_secs(3),
            sync_interval: Duration::from_secs(30),
            price_refresh_interval: Duration::from_secs(3600),
            preprovision_interval: Duration::from_secs(10),
            config_reload_interval: Duration::from_secs(10),
            // grpc-go's own default receive limit, which CA's client keeps.
            grpc_max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_requests: 256,
        }
    }
}

/// The server's certificate and key, and for mTLS the CA that signs clients:
/// the same files CA's cloud-config names.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by it (mTLS).
    pub cacert: Option<PathBuf>,
}

/// How to reach the cluster's Kubernetes API.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig file; absent: in-cluster config (the pod's service
    /// account), else `$KUBECONFIG` or `~/.kube/config`.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; absent: its current one.
    #[serde(default)]
    pub context: Option<String>,
    /// gpupool's namespace, where its ConfigMap lives.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The ConfigMap that keeps the boot-latency models across restarts.
    #[serde(default = "default_state_configmap")]
    pub state_configmap: String,
    /// Several replicas, one acting: see the README's "Deploy".
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
}

/// Leader election through a `coordination.k8s.io/v1` Lease in
/// `kubernetes.namespace`: only the holder serves CA and acts on the cloud.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    pub enabled: bool,
    /// The Lease's name.
    pub lease_name: String,
    /// How long a holder that stops renewing keeps the Lease: the longest a
    /// dead leader delays its successor.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// How often the holder renews the Lease; at most a third of
    /// `lease_duration`. (Each replica's name in the Lease is `$POD_NAME`,
    /// never set here: every replica reads this file.)
    #[serde(with = "humantime_serde")]
    pub renew_period: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            lease_name: "gpupool".to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
        }
    }
}

impl LeaderElectionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if !is_dns_subdomain(&self.lease_name) {
            return Err(ConfigError::invalid(
                "kubernetes.leader_election.lease_name",
                format!(
                    "{:?} is not a valid object name (a DNS subdomain)",
                    self.lease_name
                ),
            ));
        }
        // The Lease counts whole seconds.
        check_duration(
            "kubernetes.leader_election.lease_duration",
            self.lease_duration,
            Duration::from_secs(3),
            Some(Duration::from_secs(300)),
        )?;
        // The leader renews, reads the Lease and must still have a renew
        // period before it expires: a third leaves room for one failed renewal.
        check_duration(
            "kubernetes.leader_election.renew_period",
            self.renew_period,
            Duration::from_secs(1),
            Some(self.lease_duration / 3),
        )?;
        Ok(())
    }
}

/// The interruption webhook (see the README's "Interruption notices").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Its own port, apart from the ops port, to be exposed to the clouds.
    #[serde(default = "default_webhook_listen")]
    pub listen: SocketAddr,
    /// File holding the shared secret (bearer token and HMAC key), at
    /// least 16 bytes.
    pub secret_file: PathBuf,
    /// SNS topics whose subscriptions are confirmed and messages taken.
    #[serde(default)]
    pub sns_topic_arns: Vec<String>,
    /// Largest request body, in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// Requests per second per source address.
    #[serde(default = "default_per_source")]
    pub per_source_per_second: u32,
    /// Pub/Sub push subscriptions with authentication: their Google-signed
    /// OIDC tokens are taken on `/notices/gcp/pubsub` (the shared secret
    /// still is too).
    #[serde(default)]
    pub gcp_pubsub: Option<GcpPubsubConfig>,
}

/// Which Google-signed OIDC tokens a Pub/Sub push request may carry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpPubsubConfig {
    /// The subscription's audience (`--push-auth-token-audience`; by
    /// default its push endpoint URL): the tokens' `aud`.
    pub audience: String,
    /// The push service accounts allowed (`--push-auth-service-account`):
    /// the tokens' `email`.
    pub service_accounts: Vec<String>,
    /// Where Google's signing keys are published (JWKS): https, or plain
    /// http on a loopback address for tests.
    #[serde(default = "default_gcp_jwks_url")]
    pub jwks_url: String,
}

fn default_webhook_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8088))
}

fn default_gcp_jwks_url() -> String {
    crate::webhook::oidc::GOOGLE_JWKS_URL.to_owned()
}

fn default_body_limit() -> usize {
    256 * 1024
}

fn default_per_source() -> u32 {
    50
}

fn default_namespace() -> String {
    "gpupool".to_owned()
}

fn default_state_configmap() -> String {
    "gpupool-boot-latency".to_owned()
}

/// Whether `NodeGroupGetOptions` is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptionsMode {
    #[default]
    Serve,
    Unimplemented,
}

/// A Kubernetes taint effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSchedule => "NoSchedule",
            Self::PreferNoSchedule => "PreferNoSchedule",
            Self::NoExecute => "NoExecute",
        }
    }
}

/// A taint every node of the group carries.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaintConfig {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: TaintEffect,
}

/// One node group as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroupConfig {
    pub id: String,
    pub min_size: u32,
    pub max_size: u32,
    pub instance_type: String,
    /// Zones the group may use; all zones of the region when empty.
    #[serde(default)]
    pub zones: Vec<String>,
    /// How instances are bought (also settable as `gpupool.dev/capacity-type`).
    #[serde(default)]
    pub capacity_type: Option<PurchaseOption>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<TaintConfig>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Its launch template, more instance types and subnets, when `cloud: aws`.
    #[serde(default)]
    pub aws: Option<AwsGroupConfig>,
    /// Its instance template or machine, more machine types and attached
    /// GPUs, when `cloud: gcp`.
    #[serde(default)]
    pub gcp: Option<GcpGroupConfig>,
    /// Its Flexible scale set or VM description and more sizes, when
    /// `cloud: azure`.
    #[serde(default)]
    pub azure: Option<AzureGroupConfig>,
}

/// A node group checked against the catalog, everything resolved and typed.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub id: GroupId,
    pub min_size: u32,
    pub max_size: u32,
    pub instance_type: InstanceType,
    /// Every instance type the cloud may launch for the group, `instance_type`
    /// first (more only where the backend chooses among several, as EC2
    /// fleets do).
    pub instance_types: Vec<String>,
    pub zones: Vec<String>,
    pub purchase: PurchaseOption,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<TaintConfig>,
    pub annotations: GroupAnnotations,
    /// What the device plugin will advertise (MIG, time-slicing), checked
    /// against the GPU model.
    pub sharing: Sharing,
    /// Resources set by CA's node-template keys: override capacity and
    /// allocatable in the template.
    pub resources: BTreeMap<String, String>,
    /// The zone the group's pre-provisioning schedules are read in.
    pub time_zone: Tz,
}

impl Config {
    /// Reads and parses a config file (not yet checked against a catalog).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse(reason) => {
                ConfigError::Parse(format!("{}: {reason}", path.display()))
            }
            other => other,
        })
    }

    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let mut config: Self =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.sim = std::mem::take(&mut config.sim).in_region(&config.region);
        Ok(config)
    }

    /// The embedded example config.
    pub fn default_example() -> Self {
        // Covered by a test; a failure here is a build defect.
        Self::from_yaml(DEFAULT_YAML).expect("embedded default config parses")
    }

    /// Checks the whole config against the cloud's catalog and zones (`None`:
    /// zones not known, as in an offline check) and returns the typed node
    /// groups. Nothing is half-accepted: any error rejects it all.
    pub fn validate(
        &self,
        catalog: &[InstanceType],
        zones: Option<&[String]>,
    ) -> Result<Vec<GroupSpec>, ConfigError> {
        if self.region.trim().is_empty() {
            return Err(ConfigError::invalid("region", "must not be empty"));
        }
        if !is_label_key(&self.gpu_label) {
            return Err(ConfigError::invalid(
                "gpu_label",
                format!("{:?} is not a valid Kubernetes label key", self.gpu_label),
            ));
        }
        if self.server.cloud_calls_per_second == 0 || self.server.cloud_call_burst == 0 {
            return Err(ConfigError::invalid(
                "server.cloud_calls_per_second",
                "rate and burst must be at least 1",
            ));
        }
        for (field, value, least) in [
            (
                "server.refresh_timeout",
                self.server.refresh_timeout,
                Duration::from_millis(1),
            ),
            (
                "server.sync_interval",
                self.server.sync_interval,
                Duration::from_secs(1),
            ),
            (
                "server.preprovision_interval",
                self.server.preprovision_interval,
                Duration::from_millis(10),
            ),
            (
                "server.price_refresh_interval",
                self.server.price_refresh_interval,
                Duration::from_secs(60),
            ),
        ] {
            check_duration(field, value, least, None)?;
        }
        if !GRPC_MESSAGE_BYTES.contains(&self.server.grpc_max_message_bytes) {
            return Err(ConfigError::invalid(
                "server.grpc_max_message_bytes",
                format!(
                    "{} is outside {}..={} bytes",
                    self.server.grpc_max_message_bytes,
                    GRPC_MESSAGE_BYTES.start(),
                    GRPC_MESSAGE_BYTES.end()
                ),
            ));
        }
        if !(1..=65_536).contains(&self.server.max_concurrent_requests) {
            return Err(ConfigError::invalid(
                "server.max_concurrent_requests",
                format!(
                    "{} is outside 1..=65536",
                    self.server.max_concurrent_requests
                ),
            ));
        }
        if self.server.config_reload_interval != Duration::ZERO {
            check_duration(
                "server.config_reload_interval",
                self.server.config_reload_interval,
                Duration::from_millis(100),
                None,
            )?;
        }
        if let Some(w) = &self.webhook {
            w.validate()?;
        }
        if let Some(k) = &self.kubernetes {
            k.leader_election.validate()?;
        }
        self.interruption.validate()?;
        match (self.cloud, &self.aws) {
            (CloudKind::Aws, Some(aws)) => aws.validate()?,
            (CloudKind::Aws, None) => {
                return Err(ConfigError::invalid(
                    "aws",
                    "required with cloud: aws: at least `cluster`, the name that tags and finds this installation's instances",
                ));
            }
            (_, Some(_)) => {
                return Err(ConfigError::invalid(
                    "aws",
                    format!("set, but the cloud is {}", self.cloud.as_str()),
                ));
            }
            (_, None) => {}
        }
        match (self.cloud, &self.gcp) {
            (CloudKind::Gcp, Some(gcp)) => gcp.validate()?,
            (CloudKind::Gcp, None) => {
                return Err(ConfigError::invalid(
                    "gcp",
                    "required with cloud: gcp: at least `project` and `cluster`, the name that labels and finds this installation's instances",
                ));
            }
            (_, Some(_)) => {
                return Err(ConfigError::invalid(
                    "gcp",
                    format!("set, but the cloud is {}", self.cloud.as_str()),
                ));
            }
            (_, None) => {}
        }
        match (self.cloud, &self.azure) {
            (CloudKind::Azure, Some(azure)) => azure.validate()?,
            (CloudKind::Azure, None) => {
                return Err(ConfigError::invalid(
                    "azure",
                    "required with cloud: azure: at least `subscription_id`, `resource_group` and `cluster`, the name that tags and finds this installation's VMs",
                ));
            }
            (_, Some(_)) => {
                return Err(ConfigError::invalid(
                    "azure",
                    format!("set, but the cloud is {}", self.cloud.as_str()),
                ));
            }
            (_, None) => {}
        }
        let time_zone = parse_tz(&self.time_zone)
            .map_err(|reason| ConfigError::invalid("time_zone", reason))?;
        let discovering = self
            .aws
            .as_ref()
            .is_some_and(|a| a.discover_launch_templates)
            || self
                .gcp
                .as_ref()
                .is_some_and(|g| g.discover_instance_templates)
            || self.azure.as_ref().is_some_and(|a| a.discover_scale_sets);
        if self.node_groups.is_empty() && !discovering {
            return Err(ConfigError::invalid(
                "node_groups",
                "declare at least one node group",
            ));
        }
        if self.cloud == CloudKind::Azure {
            for g in &self.node_groups {
                azure::check_zones(&self.region, &g.zones)
                    .map_err(|(key, reason)| ConfigError::group(&g.id, &key, reason))?;
            }
        }
        let mut seen = BTreeSet::new();
        let specs = self
            .node_groups
            .iter()
            .map(|g| {
                if !seen.insert(g.id.as_str()) {
                    return Err(ConfigError::group(&g.id, "id", "declared twice"));
                }
                g.validate(self.cloud, catalog, zones, time_zone)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(specs)
    }
}

impl WebhookConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1024..=16 * 1024 * 1024).contains(&self.body_limit_bytes) {
            return Err(ConfigError::invalid(
                "webhook.body_limit_bytes",
                "must be from 1024 to 16777216",
            ));
        }
        if self.per_source_per_second == 0 {
            return Err(ConfigError::invalid(
                "webhook.per_source_per_second",
                "must be at least 1",
            ));
        }
        for (i, arn) in self.sns_topic_arns.iter().enumerate() {
            let parts: Vec<&str> = arn.split(':').collect();
            let ok = parts.len() == 6
                && parts[0] == "arn"
                && parts[1].starts_with("aws")
                && parts[2] == "sns"
                && parts[3..].iter().all(|p| !p.is_empty());
            if !ok {
                return Err(ConfigError::invalid(
                    format!("webhook.sns_topic_arns[{i}]"),
                    format!(
                        "{arn:?} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)"
                    ),
                ));
            }
        }
        if let Some(g) = &self.gcp_pubsub {
            g.push_auth()?;
        }
        Ok(())
    }

    /// The webhook's settings, with the secret read from its file.
    pub fn settings(&self) -> Result<crate::webhook::Settings, ConfigError> {
        let err = |reason: String| ConfigError::Read {
            path: self.secret_file.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(&self.secret_file).map_err(|e| err(e.to_string()))?;
        let secret = crate::webhook::auth::Secret::new(&text)
            .map_err(|reason| ConfigError::invalid("webhook.secret_file", reason))?;
        Ok(crate::webhook::Settings {
            secret,
            sns_topic_arns: self.sns_topic_arns.clone(),
            body_limit: self.body_limit_bytes,
            per_source_per_second: std::num::NonZeroU32::new(self.per_source_per_second)
                .unwrap_or(std::num::NonZeroU32::MIN),
            gcp_pubsub: self
                .gcp_pubsub
                .as_ref()
                .map(GcpPubsubConfig::push_auth)
                .transpose()?,
        })
    }
}

impl GcpPubsubConfig {
    /// Checked, as the webhook takes it.
    fn push_auth(&self) -> Result<crate::webhook::oidc::PushAuth, ConfigError> {
        let key = |k: &str| format!("webhook.gcp_pubsub.{k}");
        if self.audience.trim().is_empty() {
            return Err(ConfigError::invalid(
                key("audience"),
                "must not be empty: the subscription's audience, by default its push endpoint URL",
            ));
        }
        if self.audience.trim() != self.audience {
            return Err(ConfigError::invalid(
                key("audience"),
                "has leading or trailing whitespace; it must equal the token's aud exactly",
            ));
        }
        if self.service_accounts.is_empty() {
            return Err(ConfigError::invalid(
                key("service_accounts"),
                "list at least one push service account email",
            ));
        }
        for (i, sa) in self.service_accounts.iter().enumerate() {
            let ok = sa.split_once('@').is_some_and(|(user, domain)| {
                !user.is_empty() && domain.contains('.') && !domain.contains('@')
            }) && !sa.chars().any(char::is_whitespace);
            if !ok {
                return Err(ConfigError::invalid(
                    format!("webhook.gcp_pubsub.service_accounts[{i}]"),
                    format!("{sa:?} is not a service account email"),
                ));
            }
        }
        let jwks_url = crate::webhook::oidc::jwks_url(&self.jwks_url)
            .map_err(|reason| ConfigError::invalid(key("jwks_url"), reason))?;
        Ok(crate::webhook::oidc::PushAuth {
            audience: self.audience.clone(),
            service_accounts: self.service_accounts.clone(),
            jwks_url,
        })
    }
}

impl NodeGroupConfig {
    fn validate(
        &self,
        cloud: CloudKind,
        catalog: &[InstanceType],
        region_zones: Option<&[String]>,
        default_tz: Tz,
    ) -> Result<GroupSpec, ConfigError> {
        let id = &self.id;
        let err = |key: &str, reason: String| ConfigError::group(id, key, reason);
        if !is_group_id(id) {
            return Err(err(
                "id",
                "must be 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit".into(),
            ));
        }
        if self.max_size == 0 {
            return Err(err("max_size", "must be at least 1".into()));
        }
        if self.min_size > self.max_size {
            return Err(err(
                "min_size",
                format!("{} is above max_size {}", self.min_size, self.max_size),
            ));
        }
        if self.max_size > i32::MAX as u32 {
            return Err(err("max_size", format!("must be at most {}", i32::MAX)));
        }
        let instance_type = catalog
            .iter()
            .find(|t| t.name == self.instance_type)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<_> = catalog.iter().map(|t| t.name.as_str()).collect();
                err(
                    "instance_type",
                    format!(
                        "{:?} is not offered by this cloud; known types: {}",
                        self.instance_type,
                        names.join(", ")
                    ),
                )
            })?;
        let instance_types = match (cloud, &self.aws) {
            (CloudKind::Aws, Some(aws)) => {
                aws.validate(&instance_type, catalog)
                    .map_err(|(key, reason)| err(&key, reason))?;
                aws.all_types(&instance_type.name)
            }
            (CloudKind::Aws, None) => {
                return Err(err(
                    "aws",
                    "required with cloud: aws: the launch template instances start from (aws.launch_template.id or .name)".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(err(
                    "aws",
                    format!("set, but the cloud is {}", cloud.as_str()),
                ));
            }
            (_, None) => vec![instance_type.name.clone()],
        };
        let instance_types = match (cloud, &self.gcp) {
            (CloudKind::Gcp, Some(gcp)) => {
                gcp.validate(&instance_type, catalog)
                    .map_err(|(key, reason)| err(&key, reason))?;
                gcp.all_types(&instance_type.name)
            }
            (CloudKind::Gcp, None) => {
                return Err(err(
                    "gcp",
                    "required with cloud: gcp: the instance template (gcp.instance_template) or machine (gcp.machine) instances are made from".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(err(
                    "gcp",
                    format!("set, but the cloud is {}", cloud.as_str()),
                ));
            }
            (_, None) => instance_types,
        };
        let instance_types = match (cloud, &self.azure) {
            (CloudKind::Azure, Some(azure)) => {
                azure
                    .validate(&instance_type, catalog)
                    .map_err(|(key, reason)| err(&key, reason))?;
                azure.all_sizes(&instance_type.name)
            }
            (CloudKind::Azure, None) => {
                return Err(err(
                    "azure",
                    "required with cloud: azure: the Flexible scale set (azure.scale_set) or VM description (azure.vm) VMs are made from".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(err(
                    "azure",
                    format!("set, but the cloud is {}", cloud.as_str()),
                ));
            }
            (_, None) => instance_types,
        };
        let zones = match (self.zones.is_empty(), region_zones) {
            (false, _) => self.zones.clone(),
            (true, Some(all)) => all.to_vec(),
            (true, None) => Vec::new(),
        };
        if let Some(all) = region_zones
            && let Some(z) = zones.iter().find(|z| !all.contains(z))
        {
            return Err(err(
                "zones",
                format!("{z:?} is not a zone of the region ({})", all.join(", ")),
            ));
        }
        for key in self.labels.keys() {
            if !is_label_key(key) {
                return Err(err(
                    &format!("labels.{key}"),
                    "not a valid Kubernetes label key".into(),
                ));
            }
        }
        for (i, t) in self.taints.iter().enumerate() {
            if !is_label_key(&t.key) {
                return Err(err(
                    &format!("taints[{i}].key"),
                    format!("{:?} is not a valid taint key", t.key),
                ));
            }
        }
        let annotations = GroupAnnotations::parse(&self.annotations)
            .map_err(|(key, reason)| err(&format!("annotations.{key}"), reason))?;
        if let Some(s) = annotations
            .preprovision
            .iter()
            .find(|s| s.count > self.max_size)
        {
            return Err(err(
                "annotations.gpupool.dev/preprovision",
                format!(
                    "schedule '{}' asks for {} nodes, more than max_size {}",
                    s.name, s.count, self.max_size
                ),
            ));
        }
        let time_zone = annotations.time_zone.unwrap_or(default_tz);
        let sharing_key = "annotations.gpupool.dev/gpu-sharing";
        let sharing = match &annotations.gpu_sharing {
            Some(spec) => sharing::resolve(
                spec,
                annotations.mig_strategy.unwrap_or_default(),
                instance_type.gpu.as_ref(),
            )
            .map_err(|reason| err(sharing_key, reason))?,
            None if annotations.mig_strategy.is_some() => {
                return Err(err(
                    "annotations.gpupool.dev/mig-strategy",
                    "set without a MIG layout in gpupool.dev/gpu-sharing".into(),
                ));
            }
            None => Sharing::none(),
        };
        if annotations.dra {
            if instance_type.gpu.is_none() {
                return Err(err(
                    "annotations.gpupool.dev/dra",
                    "the instance type has no GPU".into(),
                ));
            }
            if sharing.replicas > 1 {
                return Err(err(
                    "annotations.gpupool.dev/dra",
                    "time-slicing of DRA-managed GPUs is set in the ResourceClaim's config, not on the group; drop time-slicing from gpupool.dev/gpu-sharing".into(),
                ));
            }
        }
        let (labels, taints, resources) =
            self.merge_ca_template(&annotations.ca_template, &sharing)?;
        let purchase = match (self.capacity_type, annotations.capacity_type) {
            (Some(field), Some(annotation)) if field != annotation => {
                return Err(err(
                    "capacity_type",
                    format!(
                        "{field} disagrees with annotation gpupool.dev/capacity-type {annotation}"
                    ),
                ));
            }
            (field, annotation) => field.or(annotation).unwrap_or(PurchaseOption::OnDemand),
        };
        Ok(GroupSpec {
            id: GroupId::new(id.clone()),
            min_size: self.min_size,
            max_size: self.max_size,
            instance_type,
            instance_types,
            zones,
            purchase,
            labels,
            taints,
            annotations,
            sharing,
            resources,
            time_zone,
        })
    }

    /// Labels, taints and resources from CA's node-template keys, merged with
    /// the group's own; a disagreement is an error, not a silent winner.
    #[allow(clippy::type_complexity)]
    fn merge_ca_template(
        &self,
        ca: &CaTemplate,
        sharing: &Sharing,
    ) -> Result<
        (
            BTreeMap<String, String>,
            Vec<TaintConfig>,
            BTreeMap<String, String>,
        ),
        ConfigError,
    > {
        let key = |kind: &str, name: &str| format!("annotations.{CA_TEMPLATE_PREFIX}{kind}/{name}");
        let mut labels = self.labels.clone();
        for (k, v) in &ca.labels {
            if !is_label_key(k) {
                return Err(ConfigError::group(
                    &self.id,
                    key("label", k),
                    "not a valid Kubernetes label key",
                ));
            }
            match labels.get(k) {
                Some(ours) if ours != v => {
                    return Err(ConfigError::group(
                        &self.id,
                        key("label", k),
                        format!("{v:?} conflicts with labels.{k} {ours:?}"),
                    ));
                }
                _ => {
                    labels.insert(k.clone(), v.clone());
                }
            }
        }
        let mut taints = self.taints.clone();
        for t in &ca.taints {
            if !is_label_key(&t.key) {
                return Err(ConfigError::group(
                    &self.id,
                    key("taint", &t.key),
                    "not a valid taint key",
                ));
            }
            match taints
                .iter()
                .find(|o| o.key == t.key && o.effect == t.effect)
            {
                Some(ours) if ours.value != t.value => {
                    return Err(ConfigError::group(
                        &self.id,
                        key("taint", &t.key),
                        format!(
                            "value {:?} conflicts with taints entry {}={}:{}",
                            t.value,
                            ours.key,
                            ours.value,
                            ours.effect.as_str()
                        ),
                    ));
                }
                Some(_) => {}
                None => taints.push(t.clone()),
            }
        }
        let shared = sharing.replicas > 1 || sharing.mig.is_some();
        if let Some(r) = ca
            .resources
            .keys()
            .find(|r| shared && r.starts_with("nvidia.com/"))
        {
            return Err(ConfigError::group(
                &self.id,
                key("resources", r),
                "conflicts with gpupool.dev/gpu-sharing, which decides the nvidia.com resources",
            ));
        }
        Ok((labels, taints, ca.resources.clone()))
    }
}

/// A node group id: a DNS label, so it is safe in names, tags and label values.
pub(super) fn is_group_id(id: &str) -> bool {
    let b = id.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `[prefix/]name` as Kubernetes label keys are.
/// A duration setting within `least ..= most`; the error names the field.
fn check_duration(
    field: &'static str,
    value: Duration,
    least: Duration,
    most: Option<Duration>,
) -> Result<(), ConfigError> {
    let (bound, bad) = if value < least {
        ("short: at least", least)
    } else if let Some(most) = most.filter(|m| value > *m) {
        ("long: at most", most)
    } else {
        return Ok(());
    };
    Err(ConfigError::invalid(
        field,
        format!(
            "{} is too {bound} {}",
            humantime::format_duration(value),
            humantime::format_duration(bad)
        ),
    ))
}

/// An object name as most kinds take it: a lowercase RFC 1123 subdomain.
fn is_dns_subdomain(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    let prefix_ok = prefix.is_none_or(|p| {
        (1..=253).contains(&p.len())
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            })
    });
    name_ok && prefix_ok
}

#[cfg(test)]
mod tests;
