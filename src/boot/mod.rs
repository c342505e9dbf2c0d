//! GPU boot latency: each instance's boot phases ([`timeline`]), a model per
//! group of the time to a schedulable GPU ([`model`]), and what gpupool
//! derives from it: CA's provision deadline, stuck instances, the lead time
//! of pre-provisioning.

pub mod model;
pub mod timeline;

pub use model::{LatencyModel, Quantiles, Samples, provision_deadline};
pub use timeline::{Boot, NodeObs, Phase, Tracker};

use crate::config::GroupSpec;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use gpupool_cloud::Instance;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// The error code of an instance not schedulable by its provision deadline.
pub const BOOT_TIMEOUT: &str = "BootTimeout";

/// A model for people: `boot p50 3m 10s, p90 4m, p99 5m (12 boots)`.
pub fn describe(q: &Quantiles) -> String {
    let d = |x: Duration| humantime::format_duration(Duration::from_secs(x.as_secs())).to_string();
    let basis = if q.from_prior() {
        "prior".to_owned()
    } else {
        format!("{} boots", q.samples)
    };
    format!(
        "boot p50 {}, p90 {}, p99 {} ({basis})",
        d(q.p50),
        d(q.p90),
        d(q.p99)
    )
}

/// Boot tracking and models of every group.
#[derive(Debug)]
pub struct Boots {
    groups: Vec<String>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// Each group's current estimate, recomputed when its model changes:
    /// `NodeGroupGetOptions`, CA's hottest call, reads it without a lock.
    estimates: ArcSwap<Vec<Quantiles>>,
    /// The group of every finished boot, for whoever waits on one.
    finished: tokio::sync::broadcast::Sender<usize>,
}

#[derive(Debug)]
struct State {
    tracker: Tracker,
    models: Vec<LatencyModel>,
    /// Node events arrive: without them every instance would look stuck.
    watching: bool,
    /// Boots seen since the models were last saved.
    unsaved: usize,
}

impl Boots {
    /// `needs_gpu[i]`: group i's boot ends at allocatable GPUs (its template
    /// advertises GPU resources), else at Ready.
    pub fn new(specs: &[Arc<GroupSpec>], needs_gpu: Vec<bool>, metrics: Arc<Metrics>) -> Self {
        let models: Vec<LatencyModel> = specs
            .iter()
            .map(|s| LatencyModel::new(s.annotations.boot_latency))
            .collect();
        let estimates: Vec<Quantiles> = models.iter().map(LatencyModel::quantiles).collect();
        for (spec, q) in specs.iter().zip(&estimates) {
            metrics.boot_model(spec.id.as_str(), q);
        }
        Self {
            groups: specs.iter().map(|s| s.id.as_str().to_owned()).collect(),
            metrics,
            estimates: ArcSwap::from_pointee(estimates),
            finished: tokio::sync::broadcast::channel(1024).0,
            state: Mutex::new(State {
                tracker: Tracker::new(needs_gpu),
                models,
                watching: false,
                unsaved: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every group's instances (indexed by group) as the cloud listed them.
    pub fn instances_listed(&self, per_group: &[Vec<Instance>], now: SystemTime) {
        let boots = self.lock().tracker.instances(per_group, now);
        self.record(boots);
    }

    /// A Node added or changed; `initial` when it comes from a (re)listing.
    pub fn node_seen(&self, obs: &NodeObs, now: SystemTime, initial: bool) {
        let boot = self.lock().tracker.node(obs, now, initial);
        self.record(boot.into_iter().collect());
    }

    pub fn node_gone(&self, provider_id: &str) {
        self.lock().tracker.node_gone(provider_id);
    }

    /// The group of each boot that finishes from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<usize> {
        self.finished.subscribe()
    }

    /// Node events are (or are no longer) arriving.
    pub fn set_watching(&self, watching: bool) {
        self.lock().watching = watching;
    }

    fn record(&self, boots: Vec<Boot>) {
        if boots.is_empty() {
            return;
        }
        let mut state = self.lock();
        for boot in boots {
            let group = &self.groups[boot.group];
            tracing::info!(
                group,
                instance = %boot.provider_id,
                seconds = boot.total.as_secs(),
                phases = ?boot.phases.iter().map(|(p, d)| (p.name(), d.as_secs())).collect::<Vec<_>>(),
                "boot finished"
            );
            for (phase, took) in &boot.phases {
                self.metrics.boot_phase(group, phase.name(), *took);
            }
            self.metrics.boot_phase(group, "total", boot.total);
            state.models[boot.group].observe(boot.total);
            let _ = self.finished.send(boot.group);
            state.unsaved += 1;
        }
        self.publish(&state);
    }

    /// Recomputes the estimates from the models.
    fn publish(&self, state: &State) {
        let estimates: Vec<Quantiles> = state.models.iter().map(LatencyModel::quantiles).collect();
        for (group, q) in self.groups.iter().zip(&estimates) {
            self.metrics.boot_model(group, q);
        }
        self.estimates.store(Arc::new(estimates));
    }

    pub fn quantiles(&self, group: usize) -> Quantiles {
        self.estimates.load()[group]
    }

    /// CA's `MaxNodeProvisionDuration` for the group.
    pub fn provision_deadline(&self, group: usize, ca_default: Duration) -> Duration {
        provision_deadline(&self.quantiles(group), ca_default)
    }

    /// For each of `provider_ids`, why it is not schedulable within
    /// `deadline` of purchase, if it is not; nothing while Node events are
    /// not arriving.
    pub fn stuck<'a>(
        &self,
        provider_ids: impl IntoIterator<Item = &'a str>,
        now: SystemTime,
        deadline: Duration,
    ) -> Vec<Option<String>> {
        let state = self.lock();
        provider_ids
            .into_iter()
            .map(|id| {
                state
                    .watching
                    .then(|| state.tracker.stuck(id, now, deadline))
                    .flatten()
            })
            .collect()
    }

    /// The models to persist, by group id, if boots were seen since the last
    /// call.
    pub fn unsaved(&self) -> Option<BTreeMap<String, Samples>> {
        let mut state = self.lock();
        if state.unsaved == 0 {
            return None;
        }
        state.unsaved = 0;
        Some(
            self.groups
                .iter()
                .zip(&state.models)
                .filter(|(_, m)| !m.is_empty())
                .map(|(g, m)| (g.clone(), m.export()))
                .collect(),
        )
    }

    /// The last [`Self::unsaved`] did not reach the store: offer it again.
    pub fn save_failed(&self) {
        self.lock().unsaved += 1;
    }

    /// Persisted models back; groups no longer configured are ignored.
    pub fn restore(&self, saved: &BTreeMap<String, Samples>) {
        let mut state = self.lock();
        for (i, g) in self.groups.iter().enumerate() {
            if let Some(s) = saved.get(g) {
                state.models[i].restore(s);
            }
        }
        self.publish(&state);
    }
}

#[cfg(test)]
mod tests;
