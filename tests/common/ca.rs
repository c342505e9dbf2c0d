//! cluster-autoscaler's loop for one node group, as far as counting nodes
//! goes: what CA believes is on its way, and so what it buys. After CA's
//! `clusterstate` (readiness per group, `GetUpcomingNodes`, scale-up requests
//! kept while `target > registered - notStarted`) and `static_autoscaler`
//! (scale-up for unschedulable pods first, then `--enforce-node-group-min-size`
//! against a fresh `TargetSize`), with the rule of CA 1.36+ from the spec:
//! upcoming nodes count only while CA has its own scale-up request open.
//!
//! Everything it knows comes through gpupool's gRPC answers (group of each
//! Node by `NodeGroupForNode`, instances by `NodeGroupNodes`) and the
//! Kubernetes API's Nodes, as CA's does.

use super::Client;
use super::kube_api::KubeApi;
use gpupool::proto::*;
use std::time::{Duration, SystemTime};

/// CA's `MaxNodeStartupTime`: a registered node not Ready for this long
/// is Unready rather than NotStarted.
const MAX_NODE_STARTUP: Duration = Duration::from_secs(15 * 60);

/// One loop's view and decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loop {
    /// The target after this loop's scale-ups.
    pub target: i32,
    /// Nodes CA counted as on their way to the group.
    pub upcoming: i32,
    /// Registered Nodes CA attributes to the group.
    pub registered: usize,
    /// Delta of the scale-up for unschedulable pods (0: none).
    pub for_pods: i32,
    /// Delta of the scale-up to minSize (0: none).
    pub for_min: i32,
}

/// CA, for one group.
pub struct Ca {
    group: String,
    /// The open scale-up request: nodes asked and not yet registered.
    request: Option<i32>,
    /// Every IncreaseSize CA sent.
    pub increases: Vec<i32>,
}

impl Ca {
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            request: None,
            increases: Vec::new(),
        }
    }

    /// Nodes CA has bought in all.
    pub fn bought(&self) -> i32 {
        self.increases.iter().sum()
    }

    /// Whether CA holds a scale-up request for the group.
    pub fn scaling_up(&self) -> bool {
        self.request.is_some()
    }

    /// One loop at `now`, with `unschedulable` pending pods that each need
    /// a node of the group of their own.
    pub async fn run_once(
        &mut self,
        client: &mut Client,
        kube: &KubeApi,
        now: SystemTime,
        unschedulable: i32,
    ) -> Loop {
        client.refresh(RefreshRequest {}).await.unwrap();
        let group = client
            .node_groups(NodeGroupsRequest {})
            .await
            .unwrap()
            .into_inner()
            .node_groups
            .into_iter()
            .find(|g| g.id == self.group)
            .expect("the group is served");
        let target = self.target(client).await;

        // Readiness: every Node, attributed by NodeGroupForNode.
        let (mut ready, mut unready, mut not_started, mut registered) = (0, 0, 0, 0usize);
        for node in kube.nodes() {
            let provider_id = node["spec"]["providerID"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let name = node["metadata"]["name"].as_str().unwrap().to_owned();
            let of = client
                .node_group_for_node(NodeGroupForNodeRequest {
                    node: Some(ExternalGrpcNode {
                        provider_id,
                        name,
                        ..Default::default()
                    }),
                })
                .await
                .unwrap()
                .into_inner()
                .node_group
                .map(|g| g.id)
                .unwrap_or_default();
            if of != self.group {
                continue;
            }
            registered += 1;
            let is_ready = node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let created = node["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .unwrap_or(now);
            if is_ready {
                ready += 1;
            } else if created + MAX_NODE_STARTUP > now {
                not_started += 1;
            } else {
                unready += 1;
            }
        }
        // updateScaleRequests: the request ends once nothing is on its way.
        let provisioned = i32::try_from(registered - not_started).unwrap();
        if self.request.is_some() && target <= provisioned {
            self.request = None;
        }
        let upcoming = if self.request.is_some() {
            (target - (ready + unready)).max(0)
        } else {
            0
        };

        let mut out = Loop {
            upcoming,
            registered,
            ..Default::default()
        };
        let room = group.max_size - target;
        let for_pods = (unschedulable - upcoming).max(0).min(room);
        if for_pods > 0 {
            self.increase(client, for_pods).await;
            out.for_pods = for_pods;
        }
        // ScaleUpToNodeGroupMinSize reads the target afresh.
        let target = self.target(client).await;
        if target < group.min_size {
            let delta = group.min_size - target;
            self.increase(client, delta).await;
            out.for_min = delta;
        }
        out.target = self.target(client).await;
        out
    }

    async fn increase(&mut self, client: &mut Client, delta: i32) {
        client
            .node_group_increase_size(NodeGroupIncreaseSizeRequest {
                id: self.group.clone(),
                delta,
            })
            .await
            .unwrap();
        self.increases.push(delta);
        *self.request.get_or_insert(0) += delta;
    }

    async fn target(&self, client: &mut Client) -> i32 {
        client
            .node_group_target_size(NodeGroupTargetSizeRequest {
                id: self.group.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .target_size
    }
}
