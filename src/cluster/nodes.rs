//! The Node watch: a `kube` watcher (list, then watch from its
//! resourceVersion, re-listing when the watch expires), each event handed
//! to the boot tracker. Nodes are matched to instances by `spec.providerID`.

use crate::boot::{Boots, NodeObs};
use futures_util::StreamExt;
use gpupool_cloud::Clock;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;

/// What a Node says about its boot; `None` without a providerID (not a
/// cloud instance, or not initialised by the cloud controller yet).
pub fn observe(node: &Node) -> Option<NodeObs> {
    let provider_id = node.spec.as_ref()?.provider_id.clone()?;
    let status = node.status.as_ref();
    let ready_since = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(SystemTime::UNIX_EPOCH, |t| SystemTime::from(t.0))
        });
    let gpus = status
        .and_then(|s| s.allocatable.as_ref())
        .is_some_and(|a| {
            a.iter().any(|(name, q)| {
                (name == "nvidia.com/gpu" || name.starts_with("nvidia.com/mig-"))
                    && crate::quantity::parse(&q.0).is_ok_and(|v| v > 0.0)
            })
        });
    Some(NodeObs {
        name: node.metadata.name.clone().unwrap_or_default(),
        provider_id,
        registered: node
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(SystemTime::UNIX_EPOCH, |t| SystemTime::from(t.0)),
        ready_since,
        gpus,
    })
}

/// Watches Nodes until `cancel`, feeding `boots`. Errors (API down, watch
/// expired) are logged and retried with the watcher's backoff; the boot
/// tracker is told whether events are flowing, so it reports no stuck
/// instances while blind.
pub async fn watch(
    client: kube::Client,
    boots: Arc<Boots>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let api: kube::Api<Node> = kube::Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut initial = false;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            e = events.next() => e,
        };
        let Some(event) = event else { break };
        match event {
            Ok(Event::Init) => initial = true,
            Ok(Event::InitApply(node)) => {
                if let Some(obs) = observe(&node) {
                    boots.node_seen(&obs, clock.now(), initial);
                }
            }
            Ok(Event::InitDone) => {
                initial = false;
                boots.set_watching(true);
                tracing::info!("node watch synced");
            }
            Ok(Event::Apply(node)) => {
                if let Some(obs) = observe(&node) {
                    boots.node_seen(&obs, clock.now(), false);
                }
            }
            Ok(Event::Delete(node)) => {
                if let Some(id) = node.spec.as_ref().and_then(|s| s.provider_id.as_deref()) {
                    boots.node_gone(id);
                }
            }
            Err(e) => {
                boots.set_watching(false);
                tracing::warn!(error = %e, "node watch failed; retrying");
            }
        }
    }
    boots.set_watching(false);
}
