//! Leader election: replicas contend for a `coordination.k8s.io/v1` Lease
//! (through `kube-lease-manager`, which renews it); only the holder serves CA
//! and acts on the cloud.
//!
//! Leadership is decided from the Lease as read, not from the renewer's
//! belief: a replica leads while its last read of the Lease, no older than
//! the Lease's remaining life, names it as holder. So a replica cut off
//! from the API server stops acting before a successor can start.

use crate::config::LeaderElectionConfig;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
#[error("kubernetes.leader_election: lease {lease}: {reason}")]
pub struct ElectionError {
    lease: String,
    reason: String,
}

/// Why this replica stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Another replica holds the Lease, or it could not be confirmed before
    /// it would expire.
    Lost(String),
    /// This replica's node is cordoned: it hands the Lease over so that a
    /// drain can evict it (its successor becomes the Ready one).
    Handover,
}

/// One replica's part in the election.
pub struct Election {
    client: kube::Client,
    namespace: String,
    /// The renewer of the current term: a new one each term, so that a
    /// release that failed leaves no stale "I lead" behind.
    manager: tokio::sync::Mutex<Option<Arc<LeaseManager>>>,
    leases: Api<Lease>,
    nodes: Api<Node>,
    identity: String,
    /// `namespace/name`, for messages.
    lease: String,
    lease_name: String,
    duration: Duration,
    renew_period: Duration,
    /// The node this replica runs on (`$NODE_NAME`), watched for a cordon.
    node_name: Option<String>,
    renewer: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("lease", &self.lease)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// This replica's name in the Lease: `$POD_NAME`, else host name and
/// process id. Never from the config file, which every replica shares.
pub fn identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "gpupool".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Taints that say a node is being emptied without a cordon:
/// cluster-autoscaler's scale-down and Karpenter's disruption.
const LEAVING_TAINTS: [&str; 2] = ["ToBeDeletedByClusterAutoscaler", "karpenter.sh/disrupted"];

impl Election {
    pub fn new(client: kube::Client, namespace: &str, config: &LeaderElectionConfig) -> Self {
        Self {
            manager: tokio::sync::Mutex::new(None),
            leases: Api::namespaced(client.clone(), namespace),
            nodes: Api::all(client.clone()),
            client,
            namespace: namespace.to_owned(),
            identity: identity(),
            lease: format!("{namespace}/{}", config.lease_name),
            lease_name: config.lease_name.clone(),
            duration: Duration::from_secs(config.lease_duration.as_secs().max(2)),
            renew_period: config.renew_period,
            node_name: std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()),
            renewer: std::sync::Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn lease(&self) -> &str {
        &self.lease
    }

    /// How long a read of the Lease or the Node may take.
    fn read_timeout(&self) -> Duration {
        (self.renew_period / 2).min(Duration::from_secs(2))
    }

    async fn new_manager(&self) -> Result<LeaseManager, ElectionError> {
        // Renewed `renew_period` after the last renewal: that much before it
        // would expire.
        let secs = self.duration.as_secs();
        let grace = secs
            .saturating_sub(self.renew_period.as_secs().max(1))
            .max(1);
        LeaseManagerBuilder::new(self.client.clone(), &self.lease_name)
            .with_namespace(&self.namespace)
            .with_identity(&self.identity)
            .with_duration(secs)
            .with_grace(grace)
            .with_field_manager(format!("gpupool-{}", self.identity))
            .build()
            .await
            .map_err(|e| ElectionError {
                lease: self.lease.clone(),
                reason: e.to_string(),
            })
    }

    /// Waits until this replica holds the Lease (creating it if missing),
    /// then keeps it renewed in the background until [`Election::release`].
    pub async fn acquire(&self) {
        let manager = loop {
            match self.new_manager().await {
                Ok(m) => break Arc::new(m),
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: cannot read or create the lease; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        *self.manager.lock().await = Some(manager.clone());
        loop {
            match manager.changed().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %self.lease, error = %e, "leader election: cannot read or take the lease; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let lease = self.lease.clone();
        let renewer = tokio::spawn(async move {
            loop {
                match manager.changed().await {
                    // Lost or regained: `hold` reads the Lease itself.
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%lease, error = %e, "leader election: renewing the lease failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        if let Some(old) = self
            .renewer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(renewer)
        {
            old.abort();
        }
    }

    /// While leading: resolves when this replica must stop. Reads the Lease
    /// every renew period (each read bounded); leadership ends when the
    /// Lease names another holder, or when, unrenewed, it would expire
    /// before the next read could tell: so this replica stops acting before
    /// a standby may take the Lease (clocks agreeing). With `$NODE_NAME`
    /// and `handover_after`, ends with [`Ended::Handover`] once the node is
    /// cordoned or tainted for removal and the Lease has been held that long.
    pub async fn hold(&self, handover_after: Option<Duration>) -> Ended {
        let since = Instant::now();
        let timeout = self.read_timeout();
        // Just taken: renewed no earlier than this.
        let mut expires = SystemTime::now() + self.duration - self.renew_period;
        let mut tick = tokio::time::interval(self.renew_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tokio::time::timeout(timeout, self.leases.get(&self.lease_name)).await {
                Ok(Ok(lease)) => match self.holding(&lease) {
                    Ok(e) => expires = e,
                    Err(why) => return Ended::Lost(why),
                },
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.lease, error = %e, "leader election: cannot read the lease")
                }
                Err(_) => {
                    tracing::warn!(lease = %self.lease, "leader election: reading the lease timed out")
                }
            }
            let left = expires
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            if left <= self.renew_period + timeout {
                return Ended::Lost(format!(
                    "the lease was not renewed: it expires in {}s, before the next look",
                    left.as_secs()
                ));
            }
            if handover_after.is_some_and(|h| since.elapsed() >= h)
                && self.node_leaving(timeout).await
            {
                return Ended::Handover;
            }
        }
    }

    /// When the Lease names this replica: when it expires.
    fn holding(&self, lease: &Lease) -> Result<SystemTime, String> {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        if holder != self.identity {
            return Err(if holder.is_empty() {
                "the lease has no holder".to_owned()
            } else {
                format!("{holder} holds the lease")
            });
        }
        let expires = spec.renew_time.map(|t| {
            SystemTime::from(t.0)
                + Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64)
        });
        match expires {
            Some(e) if e > SystemTime::now() => Ok(e),
            _ => Err("this replica's hold on the lease expired".to_owned()),
        }
    }

    /// Whether this replica's node is cordoned or tainted for removal.
    async fn node_leaving(&self, timeout: Duration) -> bool {
        let Some(name) = &self.node_name else {
            return false;
        };
        match tokio::time::timeout(timeout, self.nodes.get(name)).await {
            Ok(Ok(node)) => node.spec.is_some_and(|s| {
                s.unschedulable.unwrap_or(false)
                    || s.taints
                        .unwrap_or_default()
                        .iter()
                        .any(|t| LEAVING_TAINTS.contains(&t.key.as_str()))
            }),
            Ok(Err(e)) => {
                tracing::debug!(node = %name, error = %e, "cannot read this replica's node");
                false
            }
            Err(_) => false,
        }
    }

    /// Stops renewing and frees the Lease when this replica holds it, so
    /// that a standby takes it when its wait ends (at the latest when the
    /// Lease would have expired), whatever this replica does next.
    pub async fn release(&self) {
        if let Some(r) = self
            .renewer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            r.abort();
        }
        let Some(manager) = self.manager.lock().await.take() else {
            return;
        };
        match tokio::time::timeout(self.duration, manager.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(lease = %self.lease, error = %e, "leader election: releasing the lease failed; it expires on its own")
            }
            Err(_) => {
                tracing::warn!(lease = %self.lease, "leader election: releasing the lease timed out; it expires on its own")
            }
        }
    }

    /// Who holds the Lease now, if anyone does and it has not expired.
    pub async fn holder(&self) -> Option<String> {
        let lease =
            tokio::time::timeout(self.read_timeout(), self.leases.get_opt(&self.lease_name))
                .await
                .ok()?
                .ok()??;
        let spec = lease.spec?;
        let expires = SystemTime::from(spec.renew_time?.0)
            + Duration::from_secs(spec.lease_duration_seconds?.max(0) as u64);
        (expires > SystemTime::now())
            .then_some(spec.holder_identity)
            .flatten()
    }
}
