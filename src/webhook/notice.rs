//! What every cloud's notice becomes: which instance, what is happening to
//! it, and by when it will be gone.

use std::time::SystemTime;

/// Whose format a notice came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Aws,
    Gcp,
    Azure,
    Generic,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Aws => "aws",
            Source::Gcp => "gcp",
            Source::Azure => "azure",
            Source::Generic => "generic",
        }
    }
}

/// What the cloud says will happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The instance is being reclaimed (AWS spot interruption warning, GCP
    /// preemption, Azure Preempt): replace it and drain it before `deadline`.
    Interruption,
    /// The instance is at elevated risk (AWS rebalance recommendation): start
    /// the replacement early where the group opts in.
    Rebalance,
    /// The instance is stopping or shutting down now (AWS state change, Azure
    /// Terminate), or a scheduled change will take it (AWS Health).
    Termination,
    /// The instance is already gone (AWS state change `terminated`).
    Terminated,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Interruption => "interruption",
            Kind::Rebalance => "rebalance",
            Kind::Termination => "termination",
            Kind::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "interruption" => Kind::Interruption,
            "rebalance" => Kind::Rebalance,
            "termination" => Kind::Termination,
            "terminated" => Kind::Terminated,
            _ => return None,
        })
    }
}

/// How a notice names its instance; matched against the fleet's instances.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A full providerID (`aws:///us-east-1a/i-…`, `gce://p/z/name`,
    /// `azure:///subscriptions/…`).
    ProviderId(String),
    /// The cloud's instance id or VM name (`i-0abc…`, a VM name): the last
    /// segment of a providerID.
    Instance(String),
    /// A Kubernetes node name.
    Node(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::ProviderId(p) => write!(f, "providerID {p}"),
            Target::Instance(i) => write!(f, "instance {i}"),
            Target::Node(n) => write!(f, "node {n}"),
        }
    }
}

/// One instance's notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub source: Source,
    pub kind: Kind,
    pub target: Target,
    /// When the cloud takes the instance, if it says.
    pub deadline: Option<SystemTime>,
    /// The cloud's own id of the notice (EventBridge `id`, SNS `MessageId`,
    /// Azure `EventId`, Pub/Sub `messageId`): a redelivery carries the same.
    pub id: String,
}

impl Notice {
    /// What makes two notices the same event: one instance, one kind.
    /// Redeliveries and a second channel for the same event agree on it.
    pub fn dedupe_key(&self) -> (Kind, Target) {
        (self.kind, self.target.clone())
    }
}

/// A body that is not a notice: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct BadNotice {
    pub field: String,
    pub reason: String,
}

impl BadNotice {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Parses an RFC 3339 time field (`2026-11-21T14:22:00Z`, offsets and
/// fractions allowed).
pub fn rfc3339(field: &str, value: &str) -> Result<SystemTime, BadNotice> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(SystemTime::from)
        .map_err(|e| BadNotice::new(field, format!("{value:?} is not an RFC 3339 time ({e})")))
}

/// Parses an HTTP-date / RFC 1123 time field (`Mon, 19 Sep 2016 18:29:47 GMT`).
pub fn rfc1123(field: &str, value: &str) -> Result<SystemTime, BadNotice> {
    chrono::DateTime::parse_from_rfc2822(value)
        .map(SystemTime::from)
        .map_err(|e| BadNotice::new(field, format!("{value:?} is not an HTTP date ({e})")))
}
