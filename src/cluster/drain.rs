//! What an interruption operation does to a node through the Kubernetes
//! API: find it, cordon and taint it, list the pods a drain must move, evict
//! them through the Eviction API (so PodDisruptionBudgets hold), and record
//! an Event on the node for each step.

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;

/// PriorityClass value from which a pod counts as critical (system-*
/// classes are 2000000000 and up).
const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// What an eviction got.
#[derive(Debug, PartialEq, Eq)]
pub enum Eviction {
    Evicted,
    /// Refused for now (429: a PodDisruptionBudget, or the API server
    /// throttling); retried.
    Refused(String),
    /// The pod is already gone.
    Gone,
}

/// A pod a drain must move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub critical: bool,
    /// Already being deleted (an eviction was taken): waited for, not
    /// evicted again.
    pub terminating: bool,
}

pub struct NodeOps {
    nodes: Api<Node>,
    pods: Api<Pod>,
    client: kube::Client,
    recorder: Recorder,
}

impl std::fmt::Debug for NodeOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOps").finish_non_exhaustive()
    }
}

impl NodeOps {
    pub fn new(client: kube::Client) -> Self {
        let reporter = Reporter {
            controller: "gpupool".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            nodes: Api::all(client.clone()),
            pods: Api::all(client.clone()),
            recorder: Recorder::new(client.clone(), reporter),
            client,
        }
    }

    /// The node of an instance: `hint` (the name the cloud reported) if it
    /// is that instance's node, else the node whose `spec.providerID` it is.
    pub async fn find_node(
        &self,
        provider_id: &str,
        hint: Option<&str>,
    ) -> Result<Option<String>, kube::Error> {
        if let Some(name) = hint
            && let Some(node) = self.nodes.get_opt(name).await?
        {
            let pid = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
            if pid.is_none_or(|p| p == provider_id) {
                return Ok(Some(name.to_owned()));
            }
        }
        let list = self.nodes.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .find(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(provider_id))
            .and_then(|n| n.metadata.name))
    }

    /// Marks the node unschedulable and adds the `taint_key=value:NoSchedule`
    /// taint. Written with the node's resourceVersion, retried when another
    /// writer got there first. False when the node is gone.
    pub async fn cordon(
        &self,
        node: &str,
        taint_key: &str,
        value: &str,
    ) -> Result<bool, kube::Error> {
        let mut last = None;
        for _ in 0..5 {
            let Some(current) = self.nodes.get_opt(node).await? else {
                return Ok(false);
            };
            let spec = current.spec.clone().unwrap_or_default();
            let mut taints = spec.taints.unwrap_or_default();
            let tainted = taints
                .iter()
                .any(|t| t.key == taint_key && t.effect == "NoSchedule");
            if spec.unschedulable == Some(true) && tainted {
                return Ok(true);
            }
            if !tainted {
                taints.push(k8s_openapi::api::core::v1::Taint {
                    key: taint_key.to_owned(),
                    value: Some(value.to_owned()),
                    effect: "NoSchedule".to_owned(),
                    time_added: None,
                });
            }
            let patch = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {"unschedulable": true, "taints": taints},
            });
            match self
                .nodes
                .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => last = Some(kube::Error::Api(s)),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Err(last
            .unwrap_or_else(|| kube::Error::Service("node kept changing under the cordon".into())))
    }

    /// The pods a drain must move off `node`: all but DaemonSet pods (their
    /// controller would put them straight back), mirror pods (the kubelet
    /// owns them) and finished pods. Non-critical pods first.
    pub async fn pods_to_move(&self, node: &str) -> Result<Vec<PodRef>, kube::Error> {
        let list = self
            .pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?;
        let mut pods: Vec<PodRef> = list
            .items
            .iter()
            .filter(|p| !is_daemonset(p) && !is_mirror(p) && !is_finished(p))
            .map(|p| PodRef {
                namespace: p.metadata.namespace.clone().unwrap_or_default(),
                name: p.metadata.name.clone().unwrap_or_default(),
                critical: is_critical(p),
                terminating: p.metadata.deletion_timestamp.is_some(),
            })
            .collect();
        pods.sort_by_key(|p| p.critical);
        Ok(pods)
    }

    /// Asks the Eviction API to move one pod.
    pub async fn evict(&self, pod: &PodRef) -> Result<Eviction, kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        match api.evict(&pod.name, &EvictParams::default()).await {
            Ok(_) => Ok(Eviction::Evicted),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Eviction::Gone),
            Err(kube::Error::Api(s)) if s.code == 429 => Ok(Eviction::Refused(s.message.clone())),
            Err(e) => Err(e),
        }
    }

    /// Records an Event on the node (about `pod` too, if given: events with
    /// the same reason are told apart by it, else the recorder folds them
    /// into one series); a failure is logged, never fatal.
    pub async fn event(
        &self,
        node: &str,
        warning: bool,
        reason: &str,
        note: String,
        pod: Option<&PodRef>,
    ) {
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_owned()),
            ..Default::default()
        };
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: "Interruption".into(),
            secondary: pod.map(|p| ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(p.namespace.clone()),
                name: Some(p.name.clone()),
                ..Default::default()
            }),
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(node, reason, error = %e, "node event not recorded");
        }
    }
}

fn is_daemonset(p: &Pod) -> bool {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet" && o.controller == Some(true))
}

fn is_mirror(p: &Pod) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
}

fn is_finished(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_critical(p: &Pod) -> bool {
    let Some(spec) = &p.spec else { return false };
    spec.priority.is_some_and(|v| v >= CRITICAL_PRIORITY)
        || spec
            .priority_class_name
            .as_deref()
            .is_some_and(|c| c == "system-cluster-critical" || c == "system-node-critical")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn daemonset_mirror_and_finished_pods_are_not_moved_and_critical_ones_are_known() {
        let ds = pod(json!({"metadata": {"name": "dcgm", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "dcgm", "uid": "u", "controller": true}]}}));
        assert!(is_daemonset(&ds));
        let rs = pod(json!({"metadata": {"name": "web", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u", "controller": true}]}}));
        assert!(!is_daemonset(&rs));
        let mirror = pod(
            json!({"metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "abc"}}}),
        );
        assert!(is_mirror(&mirror));
        let done = pod(json!({"metadata": {"name": "d"}, "status": {"phase": "Succeeded"}}));
        assert!(is_finished(&done));
        let critical = pod(
            json!({"metadata": {"name": "c"}, "spec": {"containers": [], "priorityClassName": "system-node-critical"}}),
        );
        assert!(is_critical(&critical));
        let high = pod(
            json!({"metadata": {"name": "h"}, "spec": {"containers": [], "priority": 2000001000}}),
        );
        assert!(is_critical(&high));
        let normal =
            pod(json!({"metadata": {"name": "n"}, "spec": {"containers": [], "priority": 1000}}));
        assert!(!is_critical(&normal));
    }
}
