//! What the runs give, per policy: cost, GPU-hours paid and used, pod
//! waits, interruptions and lost work; as a table for people and JSON for
//! scripts.

use super::policy::Policy;
use super::run::{Run, Sample};
use super::world::PodState;
use std::time::Duration;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Waits {
    pub median_s: f64,
    pub p95_s: f64,
    pub max_s: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicyReport {
    pub policy: Policy,
    pub cost_usd: f64,
    /// (always-on − this) / always-on, when always-on was run.
    pub savings_vs_always_on: Option<f64>,
    pub gpu_hours_paid: f64,
    pub gpu_hours_used: f64,
    pub utilisation: f64,
    /// From a pod's arrival to its first start, over the pods that started.
    pub wait: Waits,
    pub pods: usize,
    pub pods_unfinished: usize,
    pub interruptions: u32,
    pub pods_evicted: usize,
    /// Evicted with progress they could not keep (not checkpointed).
    pub pods_lost_work: usize,
    pub gpu_hours_lost: f64,
    pub hours: f64,
    #[serde(skip)]
    pub timeline: Vec<Sample>,
    #[serde(skip)]
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub trace: String,
    pub seed: u64,
    pub policies: Vec<PolicyReport>,
    /// What to know to read the numbers: alternatives left out, pods that
    /// no node group can take.
    pub notes: Vec<String>,
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl PolicyReport {
    pub fn of(run: &Run, trace: &super::trace::Trace, start: std::time::SystemTime) -> Self {
        let mut waits: Vec<f64> = run
            .pods
            .iter()
            .zip(&trace.pods)
            .filter_map(|(p, spec)| {
                p.first_start.map(|s| {
                    s.duration_since(start + spec.arrival)
                        .unwrap_or_default()
                        .as_secs_f64()
                })
            })
            .collect();
        waits.sort_by(f64::total_cmp);
        let used: f64 = run.pods.iter().map(|p| p.gpu_seconds).sum::<f64>() / 3600.0;
        let lost: f64 = run
            .pods
            .iter()
            .zip(&trace.pods)
            .map(|(p, spec)| p.lost.as_secs_f64() * spec.gpu_share())
            .sum::<f64>()
            / 3600.0;
        Self {
            policy: run.policy,
            cost_usd: run.cost,
            savings_vs_always_on: None,
            gpu_hours_paid: run.gpu_hours_paid,
            gpu_hours_used: used,
            utilisation: if run.gpu_hours_paid > 0.0 {
                used / run.gpu_hours_paid
            } else {
                0.0
            },
            wait: Waits {
                median_s: quantile(&waits, 0.5),
                p95_s: quantile(&waits, 0.95),
                max_s: waits.last().copied().unwrap_or(0.0),
            },
            pods: run.pods.len(),
            pods_unfinished: run
                .pods
                .iter()
                .filter(|p| p.state != PodState::Done)
                .count(),
            interruptions: run.interruptions,
            pods_evicted: run.pods.iter().filter(|p| p.evictions > 0).count(),
            pods_lost_work: run.pods.iter().filter(|p| p.lost_work).count(),
            gpu_hours_lost: lost,
            hours: run.span.as_secs_f64() / 3600.0,
            timeline: run.timeline.clone(),
            groups: run.groups.clone(),
        }
    }
}

fn duration(seconds: f64) -> String {
    let d = Duration::from_secs(seconds.round() as u64);
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string().replace(' ', "")
}

impl Report {
    /// The comparison as a terminal table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "trace {} (seed {}), {} pods\n",
            self.trace,
            self.seed,
            self.policies.first().map_or(0, |p| p.pods)
        );
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>8} {:>10} {:>10} {:>6} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>10}",
            "POLICY",
            "COST $",
            "SAVED",
            "GPU-H PAID",
            "GPU-H USED",
            "UTIL",
            "WAIT P50",
            "WAIT P95",
            "WAIT MAX",
            "INTERR",
            "EVICTED",
            "LOST WORK",
            "UNFINISHED"
        );
        for p in &self.policies {
            let _ = writeln!(
                out,
                "{:<10} {:>10.2} {:>8} {:>10.1} {:>10.1} {:>5.0}% {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>10}",
                p.policy.name(),
                p.cost_usd,
                p.savings_vs_always_on
                    .map_or_else(|| "-".to_owned(), |s| format!("{:.0}%", s * 100.0)),
                p.gpu_hours_paid,
                p.gpu_hours_used,
                p.utilisation * 100.0,
                duration(p.wait.median_s),
                duration(p.wait.p95_s),
                duration(p.wait.max_s),
                p.interruptions,
                p.pods_evicted,
                p.pods_lost_work,
                p.pods_unfinished,
            );
        }
        for note in &self.notes {
            let _ = write!(out, "\nnote: {note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}
