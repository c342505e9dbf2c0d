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
    manager: Arc<LeaseManager>,
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

/// This replica's name in the Lease: configured, else `$POD_NAME`, else host
/// name and process id.
pub fn identity(config: &LeaderElectionConfig) -> String {
    if let Some(i) = &config.identity {
        return i.clone();
    }
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

impl Election {
    pub async fn new(
        client: kube::Client,
        namespace: &str,
        config: &LeaderElectionConfig,
    ) -> Result<Self, ElectionError> {
        let identity = identity(config);
        let lease = format!("{namespace}/{}", config.lease_name);
        let secs = config.lease_duration.as_secs().max(2);
        // Renewed `renew_period` after the last renewal: that much before it
        // would expire.
        let grace = secs
            .saturating_sub(config.renew_period.as_secs().max(1))
            .max(1);
        let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(namespace)
            .with_identity(&identity)
            .with_duration(secs)
            .with_grace(grace)
            .with_field_manager(format!("gpupool-{identity}"))
            .build()
            .await
            .map_err(|e| ElectionError {
                lease: lease.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            manager: Arc::new(manager),
            leases: Api::namespaced(client.clone(), namespace),
            nodes: Api::all(client),
            identity,
            lease,
            lease_name: config.lease_name.clone(),
            duration: Duration::from_secs(secs),
            renew_period: config.renew_period,
            node_name: std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()),
            renewer: std::sync::Mutex::new(None),
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn lease(&self) -> &str {
        &self.lease
    }

    /// Waits until this replica holds the Lease, then keeps it renewed in
    /// the background until [`Election::release`].
    pub async fn acquire(&self) {
        loop {
            match self.manager.changed().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %self.lease, error = %e, "leader election: cannot read or take the lease; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let manager = self.manager.clone();
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
    /// every renew period; leadership ends when it names another holder, or
    /// when it cannot be read before this replica's hold would expire. With
    /// `$NODE_NAME` set, ends with [`Ended::Handover`] once the node is
    /// cordoned and the Lease has been held for `min_hold`.
    pub async fn hold(&self, min_hold: Duration) -> Ended {
        let since = Instant::now();
        let mut confirmed = Instant::now();
        let mut tick = tokio::time::interval(self.renew_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tokio::time::timeout(self.renew_period, self.leases.get(&self.lease_name)).await {
                Ok(Ok(lease)) => match self.holding(&lease) {
                    Ok(()) => confirmed = Instant::now(),
                    Err(why) => return Ended::Lost(why),
                },
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.lease, error = %e, "leader election: cannot read the lease")
                }
                Err(_) => {
                    tracing::warn!(lease = %self.lease, "leader election: reading the lease timed out")
                }
            }
            // Renewed at most `duration` before it was last confirmed; stop
            // acting one renew period before anyone else may take it.
            let unconfirmed = confirmed.elapsed();
            if unconfirmed + self.renew_period >= self.duration {
                return Ended::Lost(format!(
                    "the lease could not be confirmed for {}s",
                    unconfirmed.as_secs()
                ));
            }
            if since.elapsed() >= min_hold && self.node_cordoned().await {
                return Ended::Handover;
            }
        }
    }

    /// `Ok` when the Lease names this replica and has not expired.
    fn holding(&self, lease: &Lease) -> Result<(), String> {
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
            Some(e) if e > SystemTime::now() => Ok(()),
            _ => Err("this replica's hold on the lease expired".to_owned()),
        }
    }

    async fn node_cordoned(&self) -> bool {
        let Some(name) = &self.node_name else {
            return false;
        };
        match self.nodes.get(name).await {
            Ok(node) => node.spec.and_then(|s| s.unschedulable).unwrap_or(false),
            Err(e) => {
                tracing::debug!(node = %name, error = %e, "cannot read this replica's node");
                false
            }
        }
    }

    /// Stops renewing and frees the Lease (when this replica holds it), so
    /// a standby takes it at once instead of after it expires.
    pub async fn release(&self) {
        if let Some(r) = self
            .renewer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            r.abort();
        }
        if let Err(e) = self.manager.release().await {
            tracing::warn!(lease = %self.lease, error = %e, "leader election: releasing the lease failed; it expires on its own");
        }
    }

    /// Stops renewing without touching the Lease (it was lost).
    pub fn abandon(&self) {
        if let Some(r) = self
            .renewer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            r.abort();
        }
    }

    /// Who holds the Lease now, for the standby's readiness message.
    pub async fn holder(&self) -> Option<String> {
        self.leases
            .get_opt(&self.lease_name)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }
}
