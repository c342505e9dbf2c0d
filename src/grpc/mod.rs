//! The externalgrpc `CloudProvider` service: every RPC answered from the fleet's
//! snapshot and data built once at start; only `Refresh` waits on the cloud.

mod convert;
pub mod status;

pub use convert::{OTHER_ERROR_CLASS, OUT_OF_RESOURCES_CLASS};

use crate::config::OptionsMode;
use crate::fleet::{Fleet, InstanceView, NodeRef, NodeState};
use crate::metrics::{Metrics, Rpc};
use crate::preprovision::Floors;
use crate::pricing::{self, PricedGroup, Prices};
use crate::proto::cloud_provider_server::CloudProvider;
use crate::proto::*;
use crate::template::{Template, TemplateContext};
use status::bad_field;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// What the service needs besides the fleet.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    pub region: String,
    pub gpu_label: String,
    pub options_mode: OptionsMode,
    pub refresh_timeout: Duration,
}

/// What never changes about a group while the server runs.
#[derive(Debug)]
struct GroupCard {
    wire: NodeGroup,
    template: Arc<Template>,
}

pub struct Service {
    fleet: Arc<Fleet>,
    /// Pre-provisioning floors: raise the minSize CA is told.
    floors: Arc<Floors>,
    cards: Vec<GroupCard>,
    /// Each group with its template node, for pod pricing.
    priced: Vec<PricedGroup>,
    settings: ServiceSettings,
    gpu_types: HashMap<String, prost_types::Any>,
    prices: Arc<Prices>,
    metrics: Arc<Metrics>,
}

impl Service {
    pub fn new(
        fleet: Arc<Fleet>,
        floors: Arc<Floors>,
        settings: ServiceSettings,
        prices: Arc<Prices>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cx = TemplateContext {
            region: &settings.region,
            gpu_label: &settings.gpu_label,
        };
        let cards: Vec<_> = fleet
            .specs()
            .iter()
            .map(|spec| GroupCard {
                wire: NodeGroup {
                    id: spec.id.to_string(),
                    min_size: i32::try_from(spec.min_size).unwrap_or(i32::MAX),
                    max_size: i32::try_from(spec.max_size).unwrap_or(i32::MAX),
                    debug: format!(
                        "{} ({}) in {} [{}]",
                        spec.id,
                        spec.instance_type.name,
                        spec.zones.join(","),
                        spec.purchase
                    ),
                },
                template: Arc::new(Template::build(spec, cx)),
            })
            .collect();
        let gpu_types = cards
            .iter()
            .filter_map(|c| c.template.gpu_type.clone())
            .map(|t| (t, prost_types::Any::default()))
            .collect();
        let priced = fleet
            .specs()
            .iter()
            .zip(&cards)
            .map(|(spec, card)| PricedGroup {
                spec: spec.clone(),
                node: crate::fit::NodeShape::new(&card.template.node, &card.template.slices()),
            })
            .collect();
        Self {
            fleet,
            floors,
            cards,
            priced,
            settings,
            gpu_types,
            prices,
            metrics,
        }
    }

    /// Runs one RPC and records its code and time.
    async fn observed<T>(
        &self,
        rpc: Rpc,
        f: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let start = Instant::now();
        let result = f.await;
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.metrics.observe_rpc(rpc, code, start.elapsed());
        if let Err(status) = &result {
            tracing::debug!(rpc = rpc.name(), code = ?status.code(), message = status.message(), "request refused");
        }
        result.map(Response::new)
    }

    fn card(&self, id: &str) -> Result<&GroupCard, Status> {
        Ok(&self.cards[self.fleet.group_index(id)?])
    }
}

impl Service {
    /// The minSize CA is told: the configured min, raised to the
    /// pre-provisioning floor and to what interruption replacements ask.
    fn min_size(&self, group: usize, snapshot: &crate::fleet::Snapshot) -> i32 {
        let min = self
            .floors
            .min_size(group, self.fleet.specs()[group].min_size)
            .max(snapshot.groups[group].replacement_floor);
        i32::try_from(min).unwrap_or(i32::MAX)
    }
}

/// `; replacing 2 interrupted (minSize 5)` while replacements are asked.
fn replacing(view: &crate::fleet::GroupView) -> String {
    let asked = view
        .leaving
        .iter()
        .filter(|(_, l)| l.want.is_some())
        .count();
    let draining = view.leaving.iter().filter(|(_, l)| l.draining).count();
    match (asked, draining) {
        (0, 0) => String::new(),
        (0, d) => format!("; draining {d} interrupted"),
        (a, _) => format!(
            "; replacing {a} interrupted (minSize {})",
            view.replacement_floor
        ),
    }
}

#[tonic::async_trait]
impl CloudProvider for Service {
    async fn node_groups(
        &self,
        _: Request<NodeGroupsRequest>,
    ) -> Result<Response<NodeGroupsResponse>, Status> {
        self.observed(Rpc::NodeGroups, async {
            let boots = self.fleet.boots();
            let snapshot = self.fleet.snapshot();
            Ok(NodeGroupsResponse {
                node_groups: self
                    .cards
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let mut wire = c.wire.clone();
                        wire.min_size = self.min_size(i, &snapshot);
                        let q = boots.quantiles(i);
                        wire.debug = format!(
                            "{}; {}{}; {}",
                            wire.debug,
                            crate::boot::describe(&q),
                            replacing(&snapshot.groups[i]),
                            self.floors.floor(i).describe()
                        );
                        wire
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn node_group_for_node(
        &self,
        request: Request<NodeGroupForNodeRequest>,
    ) -> Result<Response<NodeGroupForNodeResponse>, Status> {
        self.observed(Rpc::NodeGroupForNode, async {
            let node = request
                .get_ref()
                .node
                .as_ref()
                .ok_or_else(|| bad_field("node", "missing"))?;
            let snapshot = self.fleet.snapshot();
            let group = snapshot.group_of(&node.provider_id, &node.name);
            Ok(NodeGroupForNodeResponse {
                node_group: Some(match group {
                    Some(i) => {
                        let mut wire = self.cards[i].wire.clone();
                        // The same minSize as NodeGroups, floors included.
                        wire.min_size = self.min_size(i, &snapshot);
                        wire
                    }
                    // "Not ours": CA ignores the node.
                    None => NodeGroup::default(),
                }),
            })
        })
        .await
    }

    async fn pricing_node_price(
        &self,
        request: Request<PricingNodePriceRequest>,
    ) -> Result<Response<PricingNodePriceResponse>, Status> {
        self.observed(Rpc::PricingNodePrice, async {
            let r = request.get_ref();
            let node = r
                .node
                .as_ref()
                .ok_or_else(|| bad_field("node", "missing"))?;
            let (start, end) = convert::interval(
                (r.start_timestamp.as_ref(), r.start_time.as_ref()),
                (r.end_timestamp.as_ref(), r.end_time.as_ref()),
            )?;
            let price = pricing::node_cost(
                &self.prices.load(),
                self.fleet.specs(),
                &self.fleet.snapshot(),
                pricing::NodeRef {
                    name: &node.name,
                    provider_id: &node.provider_id,
                    labels: &node.labels,
                },
                start,
                end,
            )?;
            Ok(PricingNodePriceResponse { price })
        })
        .await
    }

    async fn pricing_pod_price(
        &self,
        request: Request<PricingPodPriceRequest>,
    ) -> Result<Response<PricingPodPriceResponse>, Status> {
        self.observed(Rpc::PricingPodPrice, async {
            let r = request.get_ref();
            let bytes = if r.pod_bytes.is_empty() {
                &r.pod
            } else {
                &r.pod_bytes
            };
            if bytes.is_empty() {
                return Err(bad_field(
                    "pod_bytes",
                    "missing (neither pod_bytes nor pod is set)",
                ));
            }
            let (start, end) = convert::interval(
                (r.start_timestamp.as_ref(), r.start_time.as_ref()),
                (r.end_timestamp.as_ref(), r.end_time.as_ref()),
            )?;
            let pod = pricing::pod::decode(bytes)?;
            Ok(PricingPodPriceResponse {
                price: pricing::pod_cost(&self.prices.load(), &self.priced, &pod, start, end),
            })
        })
        .await
    }

    async fn gpu_label(
        &self,
        _: Request<GpuLabelRequest>,
    ) -> Result<Response<GpuLabelResponse>, Status> {
        self.observed(Rpc::GpuLabel, async {
            Ok(GpuLabelResponse {
                label: self.settings.gpu_label.clone(),
            })
        })
        .await
    }

    async fn get_available_gpu_types(
        &self,
        _: Request<GetAvailableGpuTypesRequest>,
    ) -> Result<Response<GetAvailableGpuTypesResponse>, Status> {
        self.observed(Rpc::GetAvailableGpuTypes, async {
            Ok(GetAvailableGpuTypesResponse {
                gpu_types: self.gpu_types.clone(),
            })
        })
        .await
    }

    async fn cleanup(
        &self,
        _: Request<CleanupRequest>,
    ) -> Result<Response<CleanupResponse>, Status> {
        self.observed(Rpc::Cleanup, async {
            tracing::info!("cluster-autoscaler is shutting down (Cleanup)");
            Ok(CleanupResponse {})
        })
        .await
    }

    async fn refresh(
        &self,
        _: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        self.observed(Rpc::Refresh, async {
            // A failed or slow cloud must not abort CA's loop: serve the last good
            // state and let metrics show the staleness.
            match tokio::time::timeout(self.settings.refresh_timeout, self.fleet.sync()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "refresh: cloud sync failed; serving the last good state"),
                Err(_) => {
                    self.metrics.sync_failed();
                    tracing::warn!(timeout = ?self.settings.refresh_timeout, "refresh: cloud sync timed out; serving the last good state");
                }
            }
            Ok(RefreshResponse {})
        })
        .await
    }

    async fn node_group_target_size(
        &self,
        request: Request<NodeGroupTargetSizeRequest>,
    ) -> Result<Response<NodeGroupTargetSizeResponse>, Status> {
        self.observed(Rpc::NodeGroupTargetSize, async {
            let index = self.fleet.group_index(&request.get_ref().id)?;
            let target = self.fleet.snapshot().groups[index].target;
            Ok(NodeGroupTargetSizeResponse {
                target_size: i32::try_from(target).unwrap_or(i32::MAX),
            })
        })
        .await
    }

    async fn node_group_increase_size(
        &self,
        request: Request<NodeGroupIncreaseSizeRequest>,
    ) -> Result<Response<NodeGroupIncreaseSizeResponse>, Status> {
        self.observed(Rpc::NodeGroupIncreaseSize, async {
            let r = request.get_ref();
            self.fleet.increase_size(&r.id, r.delta)?;
            Ok(NodeGroupIncreaseSizeResponse {})
        })
        .await
    }

    async fn node_group_delete_nodes(
        &self,
        request: Request<NodeGroupDeleteNodesRequest>,
    ) -> Result<Response<NodeGroupDeleteNodesResponse>, Status> {
        self.observed(Rpc::NodeGroupDeleteNodes, async {
            let r = request.get_ref();
            if r.nodes.is_empty() {
                return Err(bad_field("nodes", "empty: name at least one node"));
            }
            if let Some(i) = r
                .nodes
                .iter()
                .position(|n| n.provider_id.is_empty() && n.name.is_empty())
            {
                return Err(bad_field(
                    &format!("nodes[{i}]"),
                    "has neither providerID nor name",
                ));
            }
            let nodes: Vec<_> = r
                .nodes
                .iter()
                .map(|n| NodeRef {
                    provider_id: n.provider_id.clone(),
                    name: n.name.clone(),
                })
                .collect();
            self.fleet.delete_nodes(&r.id, &nodes).await?;
            Ok(NodeGroupDeleteNodesResponse {})
        })
        .await
    }

    async fn node_group_decrease_target_size(
        &self,
        request: Request<NodeGroupDecreaseTargetSizeRequest>,
    ) -> Result<Response<NodeGroupDecreaseTargetSizeResponse>, Status> {
        self.observed(Rpc::NodeGroupDecreaseTargetSize, async {
            let r = request.get_ref();
            self.fleet.decrease_target_size(&r.id, r.delta).await?;
            Ok(NodeGroupDecreaseTargetSizeResponse {})
        })
        .await
    }

    async fn node_group_nodes(
        &self,
        request: Request<NodeGroupNodesRequest>,
    ) -> Result<Response<NodeGroupNodesResponse>, Status> {
        self.observed(Rpc::NodeGroupNodes, async {
            let index = self.fleet.group_index(&request.get_ref().id)?;
            let snapshot = self.fleet.snapshot();
            // Instances still not schedulable past the provision deadline:
            // reported as failed creations, so CA deletes them instead of
            // paying for them forever.
            let spec = &self.fleet.specs()[index];
            let deadline = spec
                .annotations
                .ca_options
                .max_node_provision_time
                .unwrap_or_else(|| {
                    self.fleet
                        .boots()
                        .provision_deadline(index, crate::options::CA_DEFAULT_MAX_NODE_PROVISION)
                });
            let instances = &snapshot.groups[index].instances;
            let stuck = self.fleet.boots().stuck(
                instances.iter().map(|i| i.provider_id.as_str()),
                self.fleet.clock().now(),
                deadline,
            );
            Ok(NodeGroupNodesResponse {
                instances: instances
                    .iter()
                    .zip(&stuck)
                    .map(|(view, stuck)| match stuck {
                        Some(why) if view.error.is_none() && view.state != NodeState::Deleting => {
                            convert::instance(&InstanceView {
                                state: NodeState::Creating,
                                error: Some(gpupool_cloud::CloudError::other(
                                    crate::boot::BOOT_TIMEOUT,
                                    why.clone(),
                                )),
                                ..view.clone()
                            })
                        }
                        _ => convert::instance(view),
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn node_group_template_node_info(
        &self,
        request: Request<NodeGroupTemplateNodeInfoRequest>,
    ) -> Result<Response<NodeGroupTemplateNodeInfoResponse>, Status> {
        self.observed(Rpc::NodeGroupTemplateNodeInfo, async {
            let card = self.card(&request.get_ref().id)?;
            // Field 1 for CA <= 1.33, field 2 for 1.34+: the same bytes; field
            // 3 the ResourceSlices of DRA groups (newest CA).
            Ok(NodeGroupTemplateNodeInfoResponse {
                node_info: card.template.bytes.clone(),
                node_bytes: card.template.bytes.clone(),
                resource_slice_bytes: card.template.resource_slices.clone(),
            })
        })
        .await
    }

    async fn node_group_get_options(
        &self,
        request: Request<NodeGroupAutoscalingOptionsRequest>,
    ) -> Result<Response<NodeGroupAutoscalingOptionsResponse>, Status> {
        self.observed(Rpc::NodeGroupGetOptions, async {
            if self.settings.node_group_options() {
                let r = request.get_ref();
                let index = self.fleet.group_index(&r.id)?;
                let spec = &self.fleet.specs()[index];
                let model = self.fleet.boots().quantiles(index);
                Ok(NodeGroupAutoscalingOptionsResponse {
                    node_group_autoscaling_options: Some(crate::options::merge(
                        r.defaults.as_ref(),
                        &spec.annotations.ca_options,
                        Some(&model),
                    )),
                })
            } else {
                Err(Status::unimplemented(
                    "NodeGroupGetOptions is switched off (server.node_group_options: unimplemented); CA uses its own defaults",
                ))
            }
        })
        .await
    }
}

impl ServiceSettings {
    fn node_group_options(&self) -> bool {
        self.options_mode == OptionsMode::Serve
    }
}
