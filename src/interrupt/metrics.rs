//! Interruption operations' metrics: how long each step took from the
//! notice, pods evicted, operations open, closed and resumed.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Seconds from a notice: 10 ms to ~20 min.
const STEP_BUCKETS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0, 120.0, 300.0, 1200.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    group: String,
    step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    group: String,
    outcome: &'static str,
}

pub struct InterruptionMetrics {
    steps: Family<StepLabels, Histogram>,
    evicted: Family<GroupLabels, Counter>,
    open: Gauge,
    closed: Family<OutcomeLabels, Counter>,
    resumed: Counter,
    offerings_unavailable: Gauge,
    refused: Family<RefusalLabels, Counter>,
}

impl std::fmt::Debug for InterruptionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InterruptionMetrics")
    }
}

impl InterruptionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let steps =
            Family::<StepLabels, Histogram>::new_with_constructor(|| Histogram::new(STEP_BUCKETS));
        registry.register(
            "interruption_step_seconds",
            "Time from an interruption notice to each step of its operation: replacement_requested (minSize raised for CA), cordoned, replacement_launched (CA's scale-up taken), replacement_ready (a new node of the group booted), drained, released",
            steps.clone(),
        );
        let evicted = Family::<GroupLabels, Counter>::default();
        registry.register(
            "interruption_pods_evicted",
            "Pods moved off interrupted nodes through the Eviction API",
            evicted.clone(),
        );
        let open = Gauge::default();
        registry.register(
            "interruption_operations_open",
            "Interruption operations under way",
            open.clone(),
        );
        let closed = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "interruption_operations_closed",
            "Interruption operations closed, by outcome: released (drained and let go), drain_timed_out (let go at the deadline with pods left), gone (the instance went first), stood_down (a rebalance standby with no interruption)",
            closed.clone(),
        );
        let resumed = Counter::default();
        registry.register(
            "interruption_operations_resumed",
            "Interruption operations taken up again from the journal after a restart",
            resumed.clone(),
        );
        let offerings_unavailable = Gauge::default();
        registry.register(
            "offerings_unavailable",
            "(instance type, zone, capacity type) offerings skipped for a while after an interruption or a capacity error",
            offerings_unavailable.clone(),
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "webhook_refusals",
            "Webhook requests refused, by route (other: an unknown path) and HTTP status (400 malformed, 401 unauthenticated, 403 SNS signature or topic, 413 too large, 429 rate limited, 503 busy or keys unavailable)",
            refused.clone(),
        );
        Self {
            refused,
            steps,
            evicted,
            open,
            closed,
            resumed,
            offerings_unavailable,
        }
    }

    pub fn step(&self, group: &str, step: &'static str, since_notice: Duration) {
        self.steps
            .get_or_create(&StepLabels {
                group: group.to_owned(),
                step,
            })
            .observe(since_notice.as_secs_f64());
    }

    pub fn evicted(&self, group: &str, n: u32) {
        self.evicted
            .get_or_create(&GroupLabels {
                group: group.to_owned(),
            })
            .inc_by(n.into());
    }

    pub fn set_open(&self, n: usize) {
        self.open.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn closed(&self, group: &str, outcome: &'static str) {
        self.closed
            .get_or_create(&OutcomeLabels {
                group: group.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn refused(&self, route: &'static str, status: u16) {
        self.refused
            .get_or_create(&RefusalLabels { route, status })
            .inc();
    }

    pub fn resumed(&self) {
        self.resumed.inc();
    }

    pub fn set_offerings_unavailable(&self, n: usize) {
        self.offerings_unavailable
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
