//! Pre-provisioning: raising a group's floor ahead of demand that can be
//! foreseen, so its nodes are schedulable when the demand arrives.
//!
//! Two sources: the group's own schedules (`gpupool.dev/preprovision`,
//! [`schedule`]) and CronJobs whose pods need the group's nodes
//! ([`cronjob`]). Each raises the floor one p90 boot latency (the group's
//! learned model) before its start. The floor is reported to CA as the
//! group's `minSize`; CA, run with `--enforce-node-group-min-size`, scales up
//! to it through its own path, so it counts the nodes as coming. gpupool never
//! raises a target size itself.
//!
//! A floor is a request to CA, not a lock: gpupool's own checks keep the
//! configured min, so CA can still delete a node that never came up.
//!
//! [`Floors::evaluate`] recomputes every floor at an instant and publishes it;
//! the server runs it on a timer and readers take the published floors
//! without locking. Every change is logged with its reason and exported as
//! metrics.

pub mod cronjob;
pub mod schedule;
pub mod time;

#[cfg(test)]
mod tests;

pub use cronjob::{Candidate, Foreseen, Skip};
pub use schedule::Schedule;
pub use time::Tz;

use crate::boot::Boots;
use crate::metrics::Metrics;
use crate::options::CA_DEFAULT_MAX_NODE_PROVISION;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How long after its time a CronJob run that has not started is still
/// waited for, when the CronJob sets no `startingDeadlineSeconds`.
pub const RUN_GRACE: Duration = Duration::from_secs(300);

/// One group's schedules, as configured.
#[derive(Clone, Debug)]
pub struct Plan {
    pub id: String,
    pub max_size: u32,
    /// `gpupool.dev/max-node-provision-time`, over the model's deadline.
    pub provision_override: Option<Duration>,
    pub tz: Tz,
    pub schedules: Vec<Schedule>,
}

/// What a reason is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Schedule,
    CronJob,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Schedule => "schedule",
            Kind::CronJob => "cronjob",
        }
    }
}

/// One reason a floor is up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    pub kind: Kind,
    /// The schedule's name, or the CronJob's `namespace/name`.
    pub source: String,
    pub nodes: u32,
    /// For people: `4 until 19:00 CET: schedule 'weekday-office'`.
    pub text: String,
}

/// A group's floor at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Floor {
    /// Nodes the group is held at, at least (its max at most).
    pub nodes: u32,
    pub reasons: Vec<Reason>,
    /// When the floor next rises and why, while it is down.
    pub next: Option<String>,
}

impl Floor {
    /// For `gpupool groups` and NodeGroups' debug: `floor 4: …`, or what
    /// comes next while the floor is down.
    pub fn describe(&self) -> String {
        if self.reasons.is_empty() {
            return match &self.next {
                Some(next) => format!("floor 0 (next: {next})"),
                None => "floor 0".to_owned(),
            };
        }
        let reasons: Vec<&str> = self.reasons.iter().map(|r| r.text.as_str()).collect();
        format!("floor {}: {}", self.nodes, reasons.join(" + "))
    }
}

/// A CronJob run gpupool holds capacity for, started but not yet scheduled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub key: String,
    pub namespace: String,
    pub job: String,
    pub run: SystemTime,
    pub pods: u32,
}

pub struct Floors {
    plans: Vec<Plan>,
    candidates: Vec<Candidate>,
    boots: Arc<Boots>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    current: ArcSwap<Vec<Floor>>,
}

#[derive(Default)]
struct State {
    cronjobs: BTreeMap<String, Foreseen>,
    /// Why each CronJob that needs GPUs raises nothing, as last logged.
    skipped: BTreeMap<String, String>,
    /// Per CronJob, the run whose pods were seen scheduled.
    released: BTreeMap<String, SystemTime>,
    /// Per CronJob, the runs that are being waited for.
    waiting: Vec<Waiting>,
    last: Vec<Floor>,
}

impl std::fmt::Debug for Floors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floors")
            .field("groups", &self.plans.len())
            .finish_non_exhaustive()
    }
}

impl Floors {
    /// `plans` and `candidates` are per group, in config order.
    pub fn new(
        plans: Vec<Plan>,
        candidates: Vec<Candidate>,
        boots: Arc<Boots>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let n = plans.len();
        Self {
            plans,
            candidates,
            boots,
            metrics,
            state: Mutex::new(State {
                last: vec![Floor::default(); n],
                ..State::default()
            }),
            current: ArcSwap::from_pointee(vec![Floor::default(); n]),
        }
    }

    /// The group's floor as last evaluated. Lock-free.
    pub fn floor(&self, group: usize) -> Floor {
        self.current.load().get(group).cloned().unwrap_or_default()
    }

    /// The group's `minSize` for CA: its configured min, raised to its floor.
    pub fn min_size(&self, group: usize, configured: u32) -> u32 {
        self.current
            .load()
            .get(group)
            .map_or(configured, |f| f.nodes.max(configured))
    }

    /// The groups CronJobs are fitted against.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// A CronJob was added or changed: what it foresees, or why nothing.
    pub fn cronjob_seen(&self, key: &str, read: Result<Foreseen, Skip>) {
        let mut st = self.lock();
        match read {
            Ok(f) => {
                st.skipped.remove(key);
                let group = &self.plans[f.group].id;
                let known = st
                    .cronjobs
                    .get(key)
                    .map(|o| (o.group, o.nodes, &o.schedule));
                if known != Some((f.group, f.nodes, &f.schedule)) {
                    tracing::info!(
                        cronjob = key,
                        group = %group,
                        schedule = %f.schedule,
                        pods = f.pods,
                        nodes = f.nodes,
                        "CronJob foreseen: its runs raise the group's floor"
                    );
                }
                st.cronjobs.insert(key.to_owned(), f);
            }
            Err(Skip::Ignored) => {
                st.cronjobs.remove(key);
                st.skipped.remove(key);
            }
            Err(why) => {
                st.cronjobs.remove(key);
                let why = why.to_string();
                if st.skipped.get(key) != Some(&why) {
                    tracing::info!(cronjob = key, reason = %why, "CronJob needs GPUs but raises no floor");
                    st.skipped.insert(key.to_owned(), why);
                }
            }
        }
    }

    /// A CronJob was deleted.
    pub fn cronjob_gone(&self, key: &str) {
        let mut st = self.lock();
        st.cronjobs.remove(key);
        st.skipped.remove(key);
        st.released.remove(key);
    }

    /// The watch (re)listed: CronJobs not among `keys` are gone.
    pub fn cronjobs_relisted(&self, keys: &[String]) {
        let keys: std::collections::BTreeSet<&String> = keys.iter().collect();
        let mut st = self.lock();
        st.cronjobs.retain(|k, _| keys.contains(k));
        st.skipped.retain(|k, _| keys.contains(k));
        st.released.retain(|k, _| keys.contains(k));
    }

    /// The runs started and not yet released, whose pods the cluster side
    /// checks.
    pub fn waiting(&self) -> Vec<Waiting> {
        self.lock().waiting.clone()
    }

    /// The pods of `key`'s run at `run` are all scheduled: its floor goes.
    pub fn run_scheduled(&self, key: &str, run: SystemTime) {
        let mut st = self.lock();
        if st.released.get(key) != Some(&run) {
            tracing::info!(
                cronjob = key,
                "CronJob run's pods are scheduled; releasing its floor"
            );
            st.released.insert(key.to_owned(), run);
        }
    }

    /// Recomputes every floor at `now`, publishes them, logs what changed
    /// and sets the metrics.
    pub fn evaluate(&self, now: SystemTime) {
        let mut st = self.lock();
        let leads: Vec<Duration> = (0..self.plans.len())
            .map(|i| self.boots.quantiles(i).p90)
            .collect();
        let mut floors = vec![Floor::default(); self.plans.len()];
        let mut next: Vec<Option<(SystemTime, String)>> = vec![None; self.plans.len()];
        let soonest = |slot: &mut Option<(SystemTime, String)>, at: SystemTime, why: String| {
            if slot.as_ref().is_none_or(|(t, _)| at < *t) {
                *slot = Some((at, why));
            }
        };

        for (i, plan) in self.plans.iter().enumerate() {
            let lead = leads[i];
            for s in &plan.schedules {
                match s.window_at(now, lead, plan.tz) {
                    Some(w) => {
                        let when = if w.opens > now {
                            format!(
                                "from {} until {}",
                                time::clock(w.opens, now, plan.tz),
                                time::clock(w.closes, now, plan.tz)
                            )
                        } else {
                            format!("until {}", time::clock(w.closes, now, plan.tz))
                        };
                        floors[i].reasons.push(Reason {
                            kind: Kind::Schedule,
                            source: s.name.clone(),
                            nodes: s.count,
                            text: format!("{} {when}: schedule '{}'", s.count, s.name),
                        });
                    }
                    None => {
                        if let Some(rise) = s.next_rise(now, lead, plan.tz) {
                            let why = format!(
                                "{} at {}: schedule '{}'",
                                s.count,
                                time::clock(rise, now, plan.tz),
                                s.name
                            );
                            soonest(&mut next[i], rise, why);
                        }
                    }
                }
            }
        }

        let mut waiting = Vec::new();
        let State {
            cronjobs, released, ..
        } = &mut *st;
        for (key, cj) in cronjobs.iter() {
            let g = cj.group;
            let lead = leads[g];
            let hold = self.plans[g].provision_override.unwrap_or_else(|| {
                self.boots
                    .provision_deadline(g, CA_DEFAULT_MAX_NODE_PROVISION)
            });
            let nodes = cj.nodes;
            let noun = |n: u32| if n == 1 { "node" } else { "nodes" };
            let upcoming = cj.run_after(now);
            let coming = upcoming.filter(|run| *run <= now + lead);
            // The latest run, while its pods may still need the nodes.
            let held = cj
                .run_at_or_before(now)
                .filter(|run| now < *run + hold && released.get(key) != Some(run))
                .filter(|run| {
                    let grace = cj.starting_deadline.unwrap_or(RUN_GRACE).min(hold);
                    cj.started(*run) || now < *run + grace
                });
            if let Some(run) = held
                && cj.started(run)
            {
                waiting.push(Waiting {
                    key: key.clone(),
                    namespace: cj.namespace.clone(),
                    job: cj.job_name(run),
                    run,
                    pods: cj.pods,
                });
            }
            let clock = |t: SystemTime| time::clock(t, now, cj.tz);
            let reason = match (held, coming) {
                (Some(h), Some(c)) if cj.concurrent => Some((
                    2 * nodes,
                    format!(
                        "{} {} for CronJob {key}: its {} run, until its pods are scheduled, and its {} run",
                        2 * nodes,
                        noun(2 * nodes),
                        clock(h),
                        clock(c)
                    ),
                )),
                // Forbid or Replace: one run at a time needs the nodes.
                (_, Some(c)) => Some((
                    nodes,
                    format!("{nodes} {} for CronJob {key} at {}", noun(nodes), clock(c)),
                )),
                (Some(h), None) => Some((
                    nodes,
                    format!(
                        "{nodes} {} for CronJob {key}'s {} run, until its pods are scheduled",
                        noun(nodes),
                        clock(h)
                    ),
                )),
                (None, None) => None,
            };
            match reason {
                Some((n, text)) => floors[g].reasons.push(Reason {
                    kind: Kind::CronJob,
                    source: key.clone(),
                    nodes: n,
                    text,
                }),
                None => {
                    if let Some(run) = upcoming {
                        let rise = run.checked_sub(lead).unwrap_or(run);
                        let why = format!(
                            "{nodes} {} at {}: CronJob {key} runs at {}",
                            noun(nodes),
                            clock(rise),
                            clock(run)
                        );
                        soonest(&mut next[g], rise, why);
                    }
                }
            }
        }
        st.waiting = waiting;

        for (i, floor) in floors.iter_mut().enumerate() {
            // The schedules' floors overlap (the largest holds); CronJob runs
            // come on top of them, since their pods need nodes of their own.
            let scheduled = floor
                .reasons
                .iter()
                .filter(|r| r.kind == Kind::Schedule)
                .map(|r| r.nodes)
                .max()
                .unwrap_or(0);
            let foreseen: u32 = floor
                .reasons
                .iter()
                .filter(|r| r.kind == Kind::CronJob)
                .map(|r| r.nodes)
                .sum();
            floor.nodes = (scheduled + foreseen).min(self.plans[i].max_size);
            if floor.reasons.is_empty() {
                floor.next = next[i].take().map(|(_, why)| why);
            }
        }

        for (i, (new, old)) in floors.iter().zip(&st.last).enumerate() {
            let id = self.plans[i].id.as_str();
            for r in &new.reasons {
                if !old.reasons.iter().any(|o| o.source == r.source) {
                    tracing::info!(group = id, kind = r.kind.label(), source = %r.source, nodes = r.nodes, reason = %r.text, "pre-provisioning floor raised");
                }
                self.metrics
                    .set_floor_demand(id, r.kind.label(), &r.source, r.nodes);
            }
            for o in &old.reasons {
                if !new.reasons.iter().any(|r| r.source == o.source) {
                    tracing::info!(group = id, kind = o.kind.label(), source = %o.source, "pre-provisioning floor released");
                    self.metrics
                        .clear_floor_demand(id, o.kind.label(), &o.source);
                }
            }
            if new.nodes != old.nodes {
                tracing::info!(
                    group = id,
                    floor = new.nodes,
                    was = old.nodes,
                    reason = %new.describe(),
                    "node group floor changed; reported to CA as minSize"
                );
            }
            self.metrics.set_floor(id, new.nodes);
        }
        st.last = floors.clone();
        self.current.store(Arc::new(floors));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The groups' schedules, in config order.
pub fn plans(specs: &[Arc<crate::config::GroupSpec>]) -> Vec<Plan> {
    specs
        .iter()
        .map(|s| Plan {
            id: s.id.to_string(),
            max_size: s.max_size,
            provision_override: s.annotations.ca_options.max_node_provision_time,
            tz: s.time_zone,
            schedules: s.annotations.preprovision.clone(),
        })
        .collect()
}
