//! One policy's run: gpupool's engine (fleet, templates, prices, boot
//! models, pre-provisioning floors, interruption replacement) on the
//! simulated cloud, in virtual time, driven by the CA model and the trace.

use super::SimulateError;
use super::ca::Ca;
use super::clock::VirtualClock;
use super::policy::{self, Policy};
use super::shape::Shape;
use super::trace::Trace;
use super::world::{PodState, World};
use crate::config::Config;
use crate::fleet::{Fleet, GroupView, NodeState, RateLimit};
use crate::metrics::Metrics;
use crate::pricing::Prices;
use crate::template::TemplateContext;
use crate::webhook::{Kind, Notice, Source, Target};
use gpupool_cloud::{CapacityType, Clock, Cloud};
use gpupool_sim::SimCloud;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How a run is set up.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    /// CA's scan interval: how often the loop runs.
    pub step: Duration,
    /// Virtual wall-clock time of the trace's start (a Monday, 00:00 UTC by
    /// default, so weekdays and hours mean what the trace says).
    pub start: SystemTime,
    /// How long past the trace's last pod a run may go on for pods still
    /// waiting.
    pub tail: Duration,
    /// How often the timeline is sampled.
    pub sample: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seed: 1,
            step: Duration::from_secs(10),
            // 2026-01-05, a Monday.
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_571_200),
            tail: Duration::from_secs(6 * 3600),
            sample: Duration::from_secs(300),
        }
    }
}

/// One sample of the timeline.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sample {
    /// Hours since the start.
    pub hour: f64,
    /// Instances per group (creating, running or leaving).
    pub nodes: Vec<u32>,
    /// The GPUs those instances have: what is paid for.
    pub paid_gpus: f64,
    /// GPUs running pods use, and pending pods ask for.
    pub used_gpus: f64,
    pub pending_gpus: f64,
    /// Dollars spent so far.
    pub cost: f64,
}

/// An instance's life, for its cost.
struct Life {
    instance_type: String,
    capacity: CapacityType,
    zone: Option<String>,
    gpus: u32,
    from: SystemTime,
}

/// What one policy's run gives.
pub struct Run {
    pub policy: Policy,
    pub groups: Vec<String>,
    pub pods: Vec<super::world::Pod>,
    pub cost: f64,
    pub gpu_hours_paid: f64,
    pub interruptions: u32,
    pub timeline: Vec<Sample>,
    /// Most instances each group had at once.
    pub peaks: BTreeMap<String, u32>,
    /// Virtual time the run covered.
    pub span: Duration,
    /// What the run changed of the config to run it, for the report.
    pub notes: Vec<String>,
    /// Pods no group's empty node could take, by name.
    pub unplaceable: Vec<String>,
}

pub async fn run(
    config: &Config,
    trace: &Trace,
    policy: Policy,
    peaks: &BTreeMap<String, u32>,
    options: &Options,
    progress: &mut dyn FnMut(f64),
) -> Result<Run, SimulateError> {
    let config = policy::apply(policy, config, peaks);
    let clock = Arc::new(VirtualClock::new(options.start));
    // A real cloud's config runs on stand-ins for its instance types.
    let (mut sim, sold, mut notes) = super::stand_in::cloud_for(&config)?;
    sim.time_scale = 1.0;
    sim.state_file = None;
    sim.seed = Some(options.seed);
    if policy != Policy::Gpupool {
        sim.spot_interruptions_per_hour = 0.0;
    }
    let cloud = Arc::new(SimCloud::with_catalog(sim, sold.clone(), clock.clone())?);
    let catalog = crate::catalog::merge(
        crate::catalog::builtin(config.cloud),
        cloud.instance_types().await?,
    );
    let zones = cloud.zones().await?;
    let mut specs = config.validate(&catalog, Some(&zones))?;
    notes.extend(super::stand_in::keep_sold(
        &mut specs,
        &sold,
        &config.region,
    )?);
    let cx = TemplateContext {
        region: &config.region,
        gpu_label: &config.gpu_label,
    };
    let shapes: Vec<Shape> = specs.iter().map(|s| Shape::of(s, cx)).collect();
    let unplaceable = trace
        .pods
        .iter()
        .filter(|pod| {
            !shapes
                .iter()
                .any(|s| super::world::fits(pod, s, s.gpus, &s.slices).is_some())
        })
        .map(|pod| pod.name.clone())
        .collect();
    let metrics = Arc::new(Metrics::new());
    let prices = Arc::new(Prices::new(crate::pricing::table::book(
        config.cloud,
        &config.region,
    )));
    let unlimited = NonZeroU32::new(1_000_000).unwrap_or(NonZeroU32::MIN);
    let fleet = Fleet::new(
        cloud.clone(),
        clock.clone(),
        metrics.clone(),
        prices.clone(),
        specs,
        RateLimit {
            per_second: unlimited,
            burst: unlimited,
            offering_cooldown: config.interruption.offering_cooldown,
        },
        crate::fleet::WorkJournal::default(),
    );
    let _ = fleet.refresh_prices().await;
    let floors = Arc::new(crate::preprovision::Floors::new(
        crate::preprovision::plans(fleet.specs()),
        crate::preprovision::cronjob::candidates(fleet.specs(), cx, &prices.load(), clock.now()),
        fleet.boots().clone(),
        metrics.clone(),
    ));
    let cancel = tokio_util::sync::CancellationToken::new();
    let engine = crate::interrupt::Engine::new(
        fleet.clone(),
        floors.clone(),
        crate::interrupt::Journal::memory(),
        None,
        metrics.clone(),
        config.interruption.clone(),
        cancel.clone(),
    );
    let ca = Ca {
        scale_down: policy.scales_down(),
    };
    let groups: Vec<String> = fleet.specs().iter().map(|s| s.id.to_string()).collect();

    let mut world = World::new(trace, options.start);
    // Per group, what the last loop saw of it: the view, the instances
    // alive then (what ended is summed once, when it ends), and its ready
    // nodes. A group whose view is the same `Arc` as last loop's has not
    // changed, so it is not walked again.
    let mut seen: Vec<Option<Arc<GroupView>>> = vec![None; groups.len()];
    let mut lives: Vec<BTreeMap<String, Life>> =
        (0..groups.len()).map(|_| BTreeMap::new()).collect();
    let mut ready: Vec<Vec<(String, String, usize)>> = vec![Vec::new(); groups.len()];
    let mut ended = Spent::default();
    let mut notified: BTreeSet<String> = BTreeSet::new();
    let mut interruptions = 0;
    let mut timeline = Vec::new();
    let mut peak = vec![0u32; groups.len()];
    let mut next_sample = options.start;
    let last = options.start + trace.span() + options.tail;
    let mut boots = fleet.boots().subscribe();
    loop {
        let now = clock.now();
        while let Ok(group) = boots.try_recv() {
            engine.booted(group);
        }
        world.arrive(now);
        // CA's Refresh.
        if let Err(e) = fleet.sync().await {
            tracing::debug!(error = %e, "simulated sync failed");
        }
        let snapshot = fleet.snapshot();
        let mut changed = false;
        for (g, view) in snapshot.groups.iter().enumerate() {
            if seen[g].as_ref().is_some_and(|v| Arc::ptr_eq(v, view)) {
                continue;
            }
            changed = true;
            seen[g] = Some(view.clone());
            let live: BTreeSet<&str> = view
                .instances
                .iter()
                .map(|i| i.provider_id.as_str())
                .collect();
            if lives[g].keys().any(|id| !live.contains(id.as_str())) {
                let book = prices.load();
                lives[g].retain(|id, life| {
                    if live.contains(id.as_str()) {
                        return true;
                    }
                    ended.add(life, &book, now);
                    false
                });
            }
            ready[g].clear();
            for i in &view.instances {
                let id = i.provider_id.as_str();
                if !lives[g].contains_key(id) {
                    lives[g].insert(
                        id.to_owned(),
                        Life {
                            instance_type: i.instance_type.clone(),
                            capacity: i.capacity_type.unwrap_or(CapacityType::OnDemand),
                            zone: i.zone.clone(),
                            gpus: shapes[g].physical_gpus,
                            from: now,
                        },
                    );
                }
                if i.state == NodeState::Running {
                    let name = i.node_name.clone().unwrap_or_else(|| id.to_owned());
                    ready[g].push((id.to_owned(), name, g));
                }
            }
            peak[g] = peak[g].max(u32::try_from(view.instances.len()).unwrap_or(u32::MAX));
        }
        // The cloud's interruption notices, as its event channel would
        // deliver them (only spot instances get them).
        let spot = snapshot.groups.iter().any(|v| {
            v.instances
                .iter()
                .any(|i| i.capacity_type == Some(CapacityType::Spot))
        });
        if spot && let Ok(instances) = cloud.list_instances().await {
            for i in instances {
                if i.state_reason.as_deref() == Some(gpupool_sim::SPOT_INTERRUPTION)
                    && notified.insert(i.id.to_string())
                {
                    interruptions += 1;
                    let notice = Notice {
                        source: Source::Generic,
                        kind: Kind::Interruption,
                        target: Target::Instance(i.id.to_string()),
                        deadline: None,
                        id: format!("sim-{}", i.id),
                    };
                    engine.notice(&notice, now);
                }
            }
        }
        if changed {
            world.sync_nodes(&ready.concat(), &shapes, now);
        }
        world.finish(now);
        world.schedule(now, &shapes);
        floors.evaluate(now);
        ca.run_loop(now, &world, &fleet, &floors, &shapes, &prices.load())
            .await;

        if now >= next_sample {
            let (used, pending) = world.demand();
            timeline.push(Sample {
                hour: now
                    .duration_since(options.start)
                    .unwrap_or_default()
                    .as_secs_f64()
                    / 3600.0,
                nodes: snapshot
                    .groups
                    .iter()
                    .map(|v| u32::try_from(v.instances.len()).unwrap_or(u32::MAX))
                    .collect(),
                paid_gpus: snapshot
                    .groups
                    .iter()
                    .zip(&shapes)
                    .map(|(v, s)| v.instances.len() as f64 * f64::from(s.physical_gpus))
                    .sum(),
                used_gpus: used,
                pending_gpus: pending,
                cost: ended.cost
                    + Spent::of(lives.iter().flat_map(BTreeMap::values), &prices.load(), now).cost,
            });
            next_sample = now + options.sample;
            let span = trace.span().as_secs_f64().max(1.0);
            progress(
                (now.duration_since(options.start)
                    .unwrap_or_default()
                    .as_secs_f64()
                    / span)
                    .min(1.0),
            );
        }
        // Done when every pod is, and (but for always-on, which never
        // scales down) the groups are back at their minSize with nothing
        // being created or deleted: nothing the workload caused is paid
        // for any more.
        let settled = || {
            let snapshot = fleet.snapshot();
            snapshot.groups.iter().enumerate().all(|(g, v)| {
                let min = super::ca::min_size(&floors, &fleet.specs()[g], g, &snapshot);
                v.instances.len() as u32 <= min
                    && v.instances.iter().all(|i| i.state == NodeState::Running)
            })
        };
        if now >= last || (world.all_done() && (policy == Policy::AlwaysOn || settled())) {
            break;
        }
        let wake = quiet_until(now, &world, &fleet, options);
        tokio::time::sleep(wake.duration_since(now).unwrap_or(options.step)).await;
    }
    let end = clock.now();
    cancel.cancel();
    fleet.shutdown(Duration::ZERO).await;
    let book = prices.load();
    let open = Spent::of(lives.iter().flat_map(BTreeMap::values), &book, end);
    let cost = ended.cost + open.cost;
    let gpu_hours_paid = ended.gpu_hours + open.gpu_hours;
    let pods = world.pods.clone();
    let unfinished = pods
        .iter()
        .filter(|p| !matches!(p.state, PodState::Done))
        .count();
    if unfinished > 0 {
        tracing::info!(
            policy = policy.name(),
            unfinished,
            "pods still unfinished when the run ended"
        );
    }
    Ok(Run {
        policy,
        peaks: groups.iter().cloned().zip(peak).collect(),
        groups,
        pods,
        cost,
        gpu_hours_paid,
        interruptions,
        timeline,
        span: end.duration_since(options.start).unwrap_or_default(),
        notes,
        unplaceable,
    })
}

/// Longest a quiet stretch is skipped in one go: bounds how late a
/// pre-provisioning window or a spot interruption is seen.
const QUIET_MAX: Duration = Duration::from_secs(60);

/// When the loop must next run. CA runs every `step`; while nothing can
/// change (no pod pending, every instance running, none leaving), loops
/// until the next arrival, finish or scale-down would do nothing, so they
/// are skipped, up to [`QUIET_MAX`]. Wake-ups stay on CA's `step` grid.
fn quiet_until(now: SystemTime, world: &World<'_>, fleet: &Fleet, options: &Options) -> SystemTime {
    let step = now + options.step;
    let snapshot = fleet.snapshot();
    let busy = world.pending().next().is_some()
        || snapshot.groups.iter().any(|v| {
            !v.leaving.is_empty() || v.instances.iter().any(|i| i.state != NodeState::Running)
        });
    if busy {
        return step;
    }
    let scale_down = world
        .nodes
        .values()
        .filter_map(|n| {
            let unneeded = fleet.specs()[n.group]
                .annotations
                .ca_options
                .scale_down_unneeded_time
                .unwrap_or(super::ca::UNNEEDED);
            n.empty_since.map(|t| t + unneeded)
        })
        .min();
    let wake = [world.next_arrival(), world.next_finish(), scale_down]
        .into_iter()
        .flatten()
        .fold(now + QUIET_MAX, SystemTime::min)
        .max(step);
    // Onto the grid: the first loop time at or after `wake`.
    let since = wake.duration_since(options.start).unwrap_or_default();
    let steps = since.as_nanos().div_ceil(options.step.as_nanos().max(1));
    options.start + options.step * u32::try_from(steps).unwrap_or(u32::MAX)
}

/// Dollars and GPU-hours spent on instances.
#[derive(Default)]
struct Spent {
    cost: f64,
    gpu_hours: f64,
}

impl Spent {
    /// An instance's life from its start to `to`.
    fn add(&mut self, l: &Life, book: &crate::pricing::PriceBook, to: SystemTime) {
        if to <= l.from {
            return;
        }
        self.cost += book
            .cost(&l.instance_type, l.capacity, l.zone.as_deref(), l.from, to)
            .or_else(|_| book.cost(&l.instance_type, l.capacity, None, l.from, to))
            .unwrap_or(0.0);
        self.gpu_hours += to.duration_since(l.from).unwrap_or_default().as_secs_f64() / 3600.0
            * f64::from(l.gpus);
    }

    /// What the instances still alive have spent up to `now`.
    fn of<'a>(
        lives: impl Iterator<Item = &'a Life>,
        book: &crate::pricing::PriceBook,
        now: SystemTime,
    ) -> Self {
        let mut spent = Self::default();
        for l in lives {
            spent.add(l, book, now);
        }
        spent
    }
}
