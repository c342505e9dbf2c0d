//! The cluster's Kubernetes API: the client ([`connect`]), the Node watch
//! that times boots ([`nodes`]), the ConfigMap that keeps the
//! boot-latency models across restarts ([`store`]), the CronJob watch
//! that foresees GPU demand ([`cronjobs`]), and what interruption
//! operations do to nodes ([`drain`]) and where they are journalled
//! ([`journal`]), and the journal of cloud creates and deletions ([`cloud_work`]).

pub mod cloud_work;
pub mod cronjobs;
pub mod drain;
pub mod journal;
pub mod leader;
pub mod nodes;
pub mod store;

use crate::boot::Boots;
use crate::config::KubernetesConfig;
use crate::preprovision::Floors;
use gpupool_cloud::Clock;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often learned boots are written to the ConfigMap.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubernetes.kubeconfig ({path}): {reason}")]
    Kubeconfig { path: String, reason: String },
    #[error("kubernetes: no cluster configuration found: {0}")]
    NoConfig(String),
    #[error("kubernetes: cannot build a client: {0}")]
    Client(String),
}

/// A client as configured: the kubeconfig named, else in-cluster, else
/// `$KUBECONFIG` / `~/.kube/config`.
pub async fn connect(config: &KubernetesConfig) -> Result<kube::Client, ClusterError> {
    crate::tls::install_crypto_provider();
    let options = kube::config::KubeConfigOptions {
        context: config.context.clone(),
        ..Default::default()
    };
    let client_config = match &config.kubeconfig {
        Some(path) => {
            let err = |reason: String| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                reason,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| err(e.to_string()))?
        }
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| ClusterError::NoConfig(e.to_string()))?,
        },
    };
    // No built-in retry of 429/503: kube-client would back off up to 15
    // times (minutes) inside one call, and a drain must see a PDB's 429
    // at once to keep its own deadline. Every caller here retries in its
    // own loop.
    let mut client_config = client_config;
    client_config.default_retry = false;
    kube::Client::try_from(client_config).map_err(|e| ClusterError::Client(e.to_string()))
}

/// What the cluster's objects feed.
#[derive(Clone, Debug)]
pub struct Watched {
    pub boots: Arc<Boots>,
    pub floors: Arc<Floors>,
}

/// Restores the saved boot models, and starts the Node watch, the
/// periodic save (a last save at `cancel`), the CronJob watch and the check
/// on CronJob runs (every `run_check`). A ConfigMap that cannot be read
/// leaves the priors in place and is logged, not fatal.
pub async fn attach(
    client: kube::Client,
    config: &KubernetesConfig,
    watched: Watched,
    clock: Arc<dyn Clock>,
    run_check: Duration,
    cancel: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let Watched { boots, floors } = watched;
    let store = store::ModelStore::new(client.clone(), &config.namespace, &config.state_configmap);
    match store.load().await {
        Ok(saved) => {
            tracing::info!(groups = saved.len(), "boot-latency models restored");
            boots.restore(&saved);
        }
        Err(e) => {
            tracing::warn!(error = %e, "boot-latency models not restored; starting from the priors")
        }
    }
    let watch = tokio::spawn(nodes::watch(
        client.clone(),
        boots.clone(),
        clock.clone(),
        cancel.clone(),
    ));
    let cronjobs = tokio::spawn(cronjobs::watch(
        client.clone(),
        floors.clone(),
        clock.clone(),
        cancel.clone(),
    ));
    let runs = tokio::spawn(cronjobs::check_runs(
        client,
        floors,
        clock,
        run_check,
        cancel.clone(),
    ));
    let save = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAVE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let last = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tick.tick() => false,
            };
            if let Some(models) = boots.unsaved()
                && let Err(e) = store.save(&models).await
            {
                boots.save_failed();
                tracing::warn!(error = %e, "boot-latency models not saved; retrying");
            }
            if last {
                return;
            }
        }
    });
    vec![watch, save, cronjobs, runs]
}
