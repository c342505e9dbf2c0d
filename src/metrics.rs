//! Prometheus metrics: per-RPC counts and latencies, per-group sizes, cloud calls
//! and how fresh the fleet is. Served as text on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The externalgrpc RPCs, for labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    NodeGroups,
    NodeGroupForNode,
    PricingNodePrice,
    PricingPodPrice,
    GpuLabel,
    GetAvailableGpuTypes,
    Cleanup,
    Refresh,
    NodeGroupTargetSize,
    NodeGroupIncreaseSize,
    NodeGroupDeleteNodes,
    NodeGroupDecreaseTargetSize,
    NodeGroupNodes,
    NodeGroupTemplateNodeInfo,
    NodeGroupGetOptions,
}

impl Rpc {
    pub const ALL: [Rpc; 15] = [
        Rpc::NodeGroups,
        Rpc::NodeGroupForNode,
        Rpc::PricingNodePrice,
        Rpc::PricingPodPrice,
        Rpc::GpuLabel,
        Rpc::GetAvailableGpuTypes,
        Rpc::Cleanup,
        Rpc::Refresh,
        Rpc::NodeGroupTargetSize,
        Rpc::NodeGroupIncreaseSize,
        Rpc::NodeGroupDeleteNodes,
        Rpc::NodeGroupDecreaseTargetSize,
        Rpc::NodeGroupNodes,
        Rpc::NodeGroupTemplateNodeInfo,
        Rpc::NodeGroupGetOptions,
    ];

    /// The RPC's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::NodeGroups => "NodeGroups",
            Rpc::NodeGroupForNode => "NodeGroupForNode",
            Rpc::PricingNodePrice => "PricingNodePrice",
            Rpc::PricingPodPrice => "PricingPodPrice",
            Rpc::GpuLabel => "GPULabel",
            Rpc::GetAvailableGpuTypes => "GetAvailableGPUTypes",
            Rpc::Cleanup => "Cleanup",
            Rpc::Refresh => "Refresh",
            Rpc::NodeGroupTargetSize => "NodeGroupTargetSize",
            Rpc::NodeGroupIncreaseSize => "NodeGroupIncreaseSize",
            Rpc::NodeGroupDeleteNodes => "NodeGroupDeleteNodes",
            Rpc::NodeGroupDecreaseTargetSize => "NodeGroupDecreaseTargetSize",
            Rpc::NodeGroupNodes => "NodeGroupNodes",
            Rpc::NodeGroupTemplateNodeInfo => "NodeGroupTemplateNodeInfo",
            Rpc::NodeGroupGetOptions => "NodeGroupGetOptions",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcCodeLabels {
    rpc: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BootLabels {
    group: String,
    phase: &'static str,
}

/// Boot phase histogram buckets, seconds: 10 s to 40 min.
const BOOT_BUCKETS: [f64; 14] = [
    10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 420.0, 600.0, 900.0, 1200.0, 2400.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoticeLabels {
    source: &'static str,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DemandLabels {
    group: String,
    kind: &'static str,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloudLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    group: String,
    quantile: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// What lives as long as the process, across config reloads and
/// leadership terms: registered into each server's [`Metrics`] and served
/// alone while standing by.
#[derive(Clone, Debug, Default)]
pub struct ProcessMetrics {
    leader: Gauge,
    reloads: Family<OutcomeLabels, Counter>,
}

impl ProcessMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "leader",
            "1 on the replica that holds the leader Lease (or runs without leader election), 0 on a standby",
            self.leader.clone(),
        );
        registry.register(
            "config_reloads",
            "Config file changes seen while serving, by outcome (applied, rejected)",
            self.reloads.clone(),
        );
        for outcome in ["applied", "rejected"] {
            let _ = self.reloads.get_or_create(&OutcomeLabels { outcome });
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// `applied` or `rejected`.
    pub fn reloaded(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The exposition of these alone, for a standby replica.
    pub fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("gpupool");
        self.register(&mut registry);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// One instance's counts for a group, as published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCounts {
    pub target: u32,
    pub ready: u32,
    pub creating: u32,
    pub deleting: u32,
    pub failed: u32,
}

/// Every metric gpupool exports.
pub struct Metrics {
    registry: Registry,
    rpc_total: Family<RpcCodeLabels, Counter>,
    rpc_seconds: Vec<Histogram>,
    group_target: Family<GroupLabels, Gauge>,
    group_ready: Family<GroupLabels, Gauge>,
    group_creating: Family<GroupLabels, Gauge>,
    group_deleting: Family<GroupLabels, Gauge>,
    group_failed: Family<GroupLabels, Gauge>,
    cloud_calls: Family<CloudLabels, Counter>,
    journal_calls: Family<CloudLabels, Counter>,
    past_max_deletions: Family<GroupLabels, Counter>,
    last_sync: Gauge<f64, AtomicU64>,
    sync_failures: Counter,
    orphans: Gauge,
    group_cost: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    pool_cost: Gauge<f64, AtomicU64>,
    prices_as_of: Gauge<f64, AtomicU64>,
    price_refreshes: Family<CloudLabels, Counter>,
    boot_seconds: Family<BootLabels, Histogram>,
    boot_model: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    floor: Family<GroupLabels, Gauge>,
    floor_demand: Family<DemandLabels, Gauge>,
    notices: Family<NoticeLabels, Counter>,
    /// Interruption operations: step timings, evictions, resumes.
    pub interruptions: crate::interrupt::metrics::InterruptionMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let process = ProcessMetrics::default();
        process.set_leader(true);
        Self::with_process(&process)
    }

    /// With the process-wide metrics kept by the caller.
    pub fn with_process(process: &ProcessMetrics) -> Self {
        let mut registry = Registry::with_prefix("gpupool");
        process.register(&mut registry);
        let rpc_total = Family::<RpcCodeLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "externalgrpc calls by RPC and status code",
            rpc_total.clone(),
        );
        let latency = Family::<RpcLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3,
                50e-3, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        registry.register(
            "grpc_request_duration_seconds",
            "Server-side time of externalgrpc calls",
            latency.clone(),
        );
        let rpc_seconds = Rpc::ALL
            .iter()
            .map(|r| latency.get_or_create(&RpcLabels { rpc: r.name() }).clone())
            .collect();
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<GroupLabels, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        };
        let group_target = gauge(
            &mut registry,
            "node_group_target_size",
            "Target size of the node group",
        );
        let group_ready = gauge(&mut registry, "node_group_ready", "Instances running");
        let group_creating = gauge(
            &mut registry,
            "node_group_creating",
            "Instances requested or booting",
        );
        let group_deleting = gauge(
            &mut registry,
            "node_group_deleting",
            "Instances being deleted",
        );
        let group_failed = gauge(
            &mut registry,
            "node_group_failed_creations",
            "Requested instances the cloud could not create, until CA removes them",
        );
        let cloud_calls = Family::<CloudLabels, Counter>::default();
        registry.register(
            "cloud_requests",
            "Cloud API calls by operation and outcome",
            cloud_calls.clone(),
        );
        let journal_calls = Family::<CloudLabels, Counter>::default();
        registry.register(
            "work_journal_requests",
            "Work journal reads and writes by operation (list; open and close of a create; open_deletion and close_deletion of a DeleteNodes or DecreaseTargetSize) and outcome; a failed open holds the create back until the next sync, an open_deletion that fails past its retries refuses the call",
            journal_calls.clone(),
        );
        let past_max_deletions = Family::<GroupLabels, Counter>::default();
        registry.register(
            "node_group_past_max_deletions",
            "Instances found running past the group's max and deleted (a crash cut short the terminate of a cancelled slot's late instance); expected to stay 0",
            past_max_deletions.clone(),
        );
        let last_sync = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "cloud_last_sync_timestamp_seconds",
            "When the fleet was last synced with the cloud (staleness = time() - this)",
            last_sync.clone(),
        );
        let sync_failures = Counter::default();
        registry.register(
            "cloud_sync_failures",
            "Syncs with the cloud that failed; the last good state was kept",
            sync_failures.clone(),
        );
        let orphans = Gauge::default();
        registry.register(
            "orphan_instances",
            "Live instances with the cluster's tag whose group is not in the config, or that carry no group (orphans: they cost money and nobody scales them)",
            orphans.clone(),
        );
        let group_cost = Family::<GroupLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "node_group_hourly_cost_usd",
            "What the group's instances (booting and running) cost per hour at current prices",
            group_cost.clone(),
        );
        let pool_cost = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "hourly_cost_usd",
            "What all node groups' instances cost per hour at current prices",
            pool_cost.clone(),
        );
        let prices_as_of = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "prices_timestamp_seconds",
            "When the prices in use were current: the last good refresh, else the offline table's date (age = time() - this)",
            prices_as_of.clone(),
        );
        let price_refreshes = Family::<CloudLabels, Counter>::default();
        registry.register(
            "price_refreshes",
            "Live price refreshes by outcome; on error the last good prices are kept",
            price_refreshes.clone(),
        );
        let boot_seconds =
            Family::<BootLabels, Histogram>::new_with_constructor(|| Histogram::new(BOOT_BUCKETS));
        registry.register(
            "boot_phase_seconds",
            "Observed boots per group and phase (running, registered, ready, gpu_allocatable: each phase's own time; total: purchase to schedulable GPU)",
            boot_seconds.clone(),
        );
        let floor = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "node_group_floor",
            "Pre-provisioning floor: nodes the group is held at ahead of foreseen demand (its minSize for CA is the larger of this and its configured min)",
            floor.clone(),
        );
        let floor_demand = Family::<DemandLabels, Gauge>::default();
        registry.register(
            "preprovision_demand_nodes",
            "Nodes each active pre-provisioning reason asks of a group (kind: schedule or cronjob; source: the schedule's name or the CronJob's namespace/name)",
            floor_demand.clone(),
        );
        let notices = Family::<NoticeLabels, Counter>::default();
        registry.register(
            "interruption_notices",
            "Interruption notices received by source (aws, gcp, azure, generic), kind and outcome (accepted, duplicate, ours, not_ours)",
            notices.clone(),
        );
        let boot_model = Family::<ModelLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "boot_model_seconds",
            "Each group's boot-latency model (purchase to schedulable GPU) at quantiles 0.5, 0.9 and 0.99",
            boot_model.clone(),
        );
        let interruptions = crate::interrupt::metrics::InterruptionMetrics::register(&mut registry);
        Self {
            boot_model,
            registry,
            rpc_total,
            rpc_seconds,
            group_target,
            group_ready,
            group_creating,
            group_deleting,
            group_failed,
            cloud_calls,
            journal_calls,
            past_max_deletions,
            last_sync,
            sync_failures,
            orphans,
            group_cost,
            pool_cost,
            prices_as_of,
            price_refreshes,
            boot_seconds,
            floor,
            floor_demand,
            notices,
            interruptions,
        }
    }

    /// Offerings skipped for a while after interruptions or capacity errors.
    pub fn set_offerings_unavailable(&self, n: usize) {
        self.interruptions.set_offerings_unavailable(n);
    }

    pub fn notice(&self, source: &'static str, kind: &'static str, outcome: &'static str) {
        self.notices
            .get_or_create(&NoticeLabels {
                source,
                kind,
                outcome,
            })
            .inc();
    }

    pub fn set_floor(&self, group: &str, nodes: u32) {
        self.floor
            .get_or_create(&GroupLabels {
                group: group.to_owned(),
            })
            .set(nodes.into());
    }

    /// One pre-provisioning reason is active.
    pub fn set_floor_demand(&self, group: &str, kind: &'static str, source: &str, nodes: u32) {
        self.floor_demand
            .get_or_create(&DemandLabels {
                group: group.to_owned(),
                kind,
                source: source.to_owned(),
            })
            .set(nodes.into());
    }

    /// A reason ended: its series goes, so the family holds only live ones.
    pub fn clear_floor_demand(&self, group: &str, kind: &'static str, source: &str) {
        self.floor_demand.remove(&DemandLabels {
            group: group.to_owned(),
            kind,
            source: source.to_owned(),
        });
    }

    /// One boot phase of a group took `took`.
    pub fn boot_phase(&self, group: &str, phase: &'static str, took: Duration) {
        self.boot_seconds
            .get_or_create(&BootLabels {
                group: group.to_owned(),
                phase,
            })
            .observe(took.as_secs_f64());
    }

    /// A group's boot-latency model now.
    pub fn boot_model(&self, group: &str, q: &crate::boot::Quantiles) {
        for (quantile, d) in [("0.5", q.p50), ("0.9", q.p90), ("0.99", q.p99)] {
            self.boot_model
                .get_or_create(&ModelLabels {
                    group: group.to_owned(),
                    quantile,
                })
                .set(d.as_secs_f64());
        }
    }

    /// What a group's instances cost per hour.
    pub fn set_group_cost(&self, group: &str, usd_per_hour: f64) {
        self.group_cost
            .get_or_create(&GroupLabels {
                group: group.to_owned(),
            })
            .set(usd_per_hour);
    }

    /// What all groups' instances cost per hour.
    pub fn set_pool_cost(&self, usd_per_hour: f64) {
        self.pool_cost.set(usd_per_hour);
    }

    pub fn prices_as_of(&self, unix_seconds: f64) {
        self.prices_as_of.set(unix_seconds);
    }

    pub fn price_refresh(&self, ok: bool) {
        self.price_refreshes
            .get_or_create(&CloudLabels {
                operation: "prices",
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Records one RPC's outcome and server-side time.
    pub fn observe_rpc(&self, rpc: Rpc, code: tonic::Code, elapsed: Duration) {
        // `Rpc::ALL` is in declaration order, so the discriminant is the index.
        self.rpc_seconds[rpc as usize].observe(elapsed.as_secs_f64());
        self.rpc_total
            .get_or_create(&RpcCodeLabels {
                rpc: rpc.name(),
                code: code_name(code),
            })
            .inc();
    }

    pub fn set_group(&self, group: &str, counts: GroupCounts) {
        let labels = GroupLabels {
            group: group.to_owned(),
        };
        self.group_target
            .get_or_create(&labels)
            .set(counts.target.into());
        self.group_ready
            .get_or_create(&labels)
            .set(counts.ready.into());
        self.group_creating
            .get_or_create(&labels)
            .set(counts.creating.into());
        self.group_deleting
            .get_or_create(&labels)
            .set(counts.deleting.into());
        self.group_failed
            .get_or_create(&labels)
            .set(counts.failed.into());
    }

    pub fn cloud_call(&self, operation: &'static str, ok: bool) {
        self.cloud_calls
            .get_or_create(&CloudLabels {
                operation,
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Instances found past a group's max, deleted.
    pub fn past_max_deleted(&self, group: &str, n: usize) {
        self.past_max_deletions
            .get_or_create(&GroupLabels {
                group: group.to_owned(),
            })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// A work journal read or write (`list`, `open`, `close`,
    /// `open_deletion`, `close_deletion`).
    pub fn journal_call(&self, operation: &'static str, ok: bool) {
        self.journal_calls
            .get_or_create(&CloudLabels {
                operation,
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    pub fn synced(&self, unix_seconds: f64, orphans: usize) {
        self.last_sync.set(unix_seconds);
        self.orphans.set(i64::try_from(orphans).unwrap_or(i64::MAX));
    }

    pub fn sync_failed(&self) {
        self.sync_failures.inc();
    }

    /// The Prometheus text exposition of everything.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::Rpc;

    #[test]
    fn rpc_discriminants_index_all() {
        // observe_rpc indexes the latency handles by discriminant.
        for (i, rpc) in Rpc::ALL.iter().enumerate() {
            assert_eq!(*rpc as usize, i, "{}", rpc.name());
        }
    }
}
