//! Foreseen demand: a CronJob whose pods need a group's nodes, read into
//! when it runs next, which group it would land on and how many nodes it takes.
//!
//! The group is chosen with the same checks CA's simulation runs on the
//! template nodes ([`crate::fit`]): of the groups a pod fits, the one whose
//! nodes for the whole run cost least per hour (CA's `price` expander), or
//! the group the CronJob names in `gpupool.dev/node-group`.

use super::schedule::{latest_at_or_before, next_after, parse_cron};
use super::time::{Tz, parse_tz};
use crate::fit::{self, GroupSize, NodeShape, PodShape, Resources};
use croner::Cron;
use k8s_openapi::api::batch::v1::CronJob;
use std::time::{Duration, SystemTime};

/// The CronJob annotation that pins its pre-provisioning to one group.
pub const NODE_GROUP_ANNOTATION: &str = "gpupool.dev/node-group";

/// A group as the CronJob reader sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: String,
    pub node: NodeShape,
    pub max_size: u32,
    /// USD per node-hour, when known.
    pub hourly: Option<f64>,
}

/// A CronJob that will need nodes.
#[derive(Clone, Debug)]
pub struct Foreseen {
    pub namespace: String,
    pub name: String,
    pub schedule: String,
    cron: Cron,
    pub tz: Tz,
    /// Index of the group it lands on.
    pub group: usize,
    /// Pods one run starts (parallelism, at most completions).
    pub pods: u32,
    pub nodes: u32,
    /// `startingDeadlineSeconds`: how late the controller may still start a run.
    pub starting_deadline: Option<Duration>,
    /// `status.lastScheduleTime`: the latest run the controller started.
    pub last_schedule: Option<SystemTime>,
    /// `concurrencyPolicy: Allow` (the default): runs may overlap, each
    /// with its own pods.
    pub concurrent: bool,
}

impl Foreseen {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The first run strictly after `t`.
    pub fn run_after(&self, t: SystemTime) -> Option<SystemTime> {
        next_after(&self.cron, t, self.tz)
    }

    /// The latest run at or before `t`.
    pub fn run_at_or_before(&self, t: SystemTime) -> Option<SystemTime> {
        latest_at_or_before(&self.cron, t, self.tz)
    }

    /// Whether the controller started the run at `run` (its
    /// `lastScheduleTime` is that run's minute or later).
    pub fn started(&self, run: SystemTime) -> bool {
        self.last_schedule
            .is_some_and(|l| super::time::unix_minutes(l) >= super::time::unix_minutes(run))
    }

    /// The Job the controller creates for the run at `run`.
    pub fn job_name(&self, run: SystemTime) -> String {
        format!("{}-{}", self.name, super::time::unix_minutes(run))
    }
}

/// Why a CronJob raises no floor. `Ignored` ones are not GPU work at all and
/// are not logged; the others are the user's to know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("asks for no GPUs and targets no tainted group")]
    Ignored,
    #[error("suspended")]
    Suspended,
    #[error("spec.schedule: {0}")]
    Schedule(String),
    #[error("spec.timeZone: {0}")]
    TimeZone(String),
    #[error("spec.jobTemplate: {0}")]
    Template(String),
    #[error("fits no node group{0}")]
    NoGroup(String),
    #[error("annotation {NODE_GROUP_ANNOTATION}: {0}")]
    Pinned(String),
}

/// Reads a CronJob against the groups. `pod` is its pod template's shape,
/// or the error that the template's resources gave.
pub fn read(
    cj: &CronJob,
    pod: Result<PodShape, String>,
    groups: &[Candidate],
) -> Result<Foreseen, Skip> {
    let spec = &cj.spec;
    let pod = pod.map_err(Skip::Template)?;
    let gpu = wants_gpu(&pod);
    let eligible = |c: &Candidate| gpu || targets_tainted(&pod, &c.node);
    if !groups.iter().any(eligible) {
        return Err(Skip::Ignored);
    }
    if spec.suspend == Some(true) {
        return Err(Skip::Suspended);
    }
    let job = spec.job_template.spec.as_ref();
    let parallelism = job.and_then(|j| j.parallelism).unwrap_or(1);
    let pods = match job.and_then(|j| j.completions) {
        Some(c) => parallelism.min(c),
        None => parallelism,
    };
    let pods = u32::try_from(pods).unwrap_or(0);
    if pods == 0 {
        return Err(Skip::Template("runs no pods (parallelism 0)".into()));
    }
    let tz = match &spec.time_zone {
        Some(name) => parse_tz(name).map_err(Skip::TimeZone)?,
        // The controller reads a schedule without a zone in its own, which
        // is UTC on every managed control plane.
        None => Tz::UTC,
    };
    let cron = parse_cron(&spec.schedule).map_err(Skip::Schedule)?;

    let meta = &cj.metadata;
    let pinned = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_GROUP_ANNOTATION));
    let mut best: Option<(usize, u32, f64)> = None;
    let mut why_not = Vec::new();
    for (i, c) in groups.iter().enumerate() {
        if pinned.is_some_and(|p| *p != c.id) || !eligible(c) {
            continue;
        }
        let size = GroupSize {
            max: c.max_size,
            target: None,
        };
        let verdict = fit::check(&pod, &c.node, &Resources::new(), size);
        if !verdict.fits() {
            let reasons: Vec<String> = verdict.reasons.iter().map(|r| r.to_string()).collect();
            why_not.push(format!("{}: {}", c.id, reasons.join("; ")));
            continue;
        }
        let nodes = pods.div_ceil(per_node(&pod, &c.node));
        if nodes > c.max_size {
            why_not.push(format!(
                "{}: a run needs {nodes} nodes, past max size {}",
                c.id, c.max_size
            ));
            continue;
        }
        let cost = c.hourly.map_or(f64::INFINITY, |h| h * f64::from(nodes));
        if best.is_none_or(|(_, _, b)| cost < b) {
            best = Some((i, nodes, cost));
        }
    }
    let Some((group, nodes, _)) = best else {
        let detail = if why_not.is_empty() {
            String::new()
        } else {
            format!(" ({})", why_not.join(" | "))
        };
        return Err(match pinned {
            Some(p) if !groups.iter().any(|c| &c.id == p) => {
                Skip::Pinned(format!("{p:?} is not a node group"))
            }
            Some(p) => Skip::Pinned(format!("does not fit {p}{detail}")),
            None => Skip::NoGroup(detail),
        });
    };
    Ok(Foreseen {
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        name: meta.name.clone().unwrap_or_default(),
        schedule: spec.schedule.clone(),
        cron,
        tz,
        group,
        pods,
        nodes,
        starting_deadline: spec
            .starting_deadline_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        last_schedule: cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .map(|t| SystemTime::from(t.0)),
        concurrent: !matches!(
            spec.concurrency_policy.as_deref(),
            Some("Forbid") | Some("Replace")
        ),
    })
}

/// GPUs by the device plugin (whole, MIG slices) or by DRA claims.
fn wants_gpu(pod: &PodShape) -> bool {
    !pod.claims.is_empty()
        || pod.requests.iter().any(|(r, v)| {
            *v > 0.0
                && (r == "nvidia.com/gpu"
                    || r.starts_with("nvidia.com/mig-")
                    || r == "amd.com/gpu"
                    || r.starts_with("gpu.intel.com/"))
        })
}

/// A pod meant for a group without asking for GPUs: it tolerates one of the
/// group's taints and selects the group's nodes.
fn targets_tainted(pod: &PodShape, node: &NodeShape) -> bool {
    let tolerates = node.taints.iter().any(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && pod.tolerations.iter().any(|tol| tol.tolerates(t))
    });
    let selects = !pod.node_selector.is_empty() || pod.required_terms.is_some();
    tolerates && selects && fit::placement(pod, node).is_empty()
}

/// How many of the pods one fresh node holds: by each requested resource
/// and the node's pod count. DRA claims are not counted per device here,
/// so a pod with claims is taken to fill its node.
fn per_node(pod: &PodShape, node: &NodeShape) -> u32 {
    if !pod.claims.is_empty() {
        return 1;
    }
    let mut n = node
        .allocatable
        .get("pods")
        .map_or(110.0, |p| p.floor())
        .max(1.0);
    for (r, &want) in &pod.requests {
        if want > 0.0 {
            let have = node.allocatable.get(r).copied().unwrap_or(0.0);
            n = n.min(((have + 1e-9) / want).floor());
        }
    }
    (n.max(1.0)) as u32
}

/// The groups as CronJobs are fitted against: the template node CA is sent,
/// priced an hour from `now` at the group's usual capacity type.
pub fn candidates(
    specs: &[std::sync::Arc<crate::config::GroupSpec>],
    cx: crate::template::TemplateContext<'_>,
    book: &crate::pricing::PriceBook,
    now: SystemTime,
) -> Vec<Candidate> {
    use gpupool_cloud::{CapacityType, PurchaseOption};
    specs
        .iter()
        .map(|spec| {
            let template = crate::template::Template::build(spec, cx);
            let capacity = match spec.purchase {
                PurchaseOption::OnDemand => CapacityType::OnDemand,
                PurchaseOption::Spot | PurchaseOption::SpotThenOnDemand => CapacityType::Spot,
            };
            let hour = now + Duration::from_secs(3600);
            Candidate {
                id: spec.id.to_string(),
                node: NodeShape::new(&template.node, &template.slices()),
                max_size: spec.max_size,
                hourly: crate::pricing::node::group_cost(book, spec, capacity, now, hour).ok(),
            }
        })
        .collect()
}
