//! The cluster's Kubernetes API: the client ([`connect`]), the Node watch
//! that times boots ([`nodes`]), and the ConfigMap that keeps the
//! boot-latency models across restarts ([`store`]).

pub mod nodes;
pub mod store;

use crate::config::KubernetesConfig;

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
    kube::Client::try_from(client_config).map_err(|e| ClusterError::Client(e.to_string()))
}
