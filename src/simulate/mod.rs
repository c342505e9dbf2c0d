//! `gpupool simulate`: a workload trace replayed on the simulated cloud in
//! virtual time, with gpupool's own engine and a model of CA's decisions,
//! under each policy; what each costs and how long pods wait.

pub mod builtin;
mod ca;
mod clock;
pub mod import;
pub mod plot;
pub mod policy;
pub mod report;
mod run;
mod shape;
mod stand_in;
pub mod trace;
mod world;

pub use policy::Policy;
pub use report::{PolicyReport, Report};
pub use run::Options;

use crate::config::{Config, ConfigError};
use std::collections::BTreeMap;

/// The node groups `gpupool simulate` runs without `--config`: for a
/// built-in trace, the groups its workload uses; else all of them.
pub fn example_yaml(trace: &str) -> &'static str {
    match trace {
        "notebooks" => include_str!("examples/notebooks.yaml"),
        "inference" => include_str!("examples/inference.yaml"),
        "training" => include_str!("examples/training.yaml"),
        "batch" => include_str!("examples/batch.yaml"),
        _ => include_str!("examples/all.yaml"),
    }
}

/// [`example_yaml`], parsed.
pub fn example_config(trace: &str) -> Config {
    // Each is covered by a test; a failure here is a build defect.
    Config::from_yaml(example_yaml(trace)).expect("the embedded simulation configs parse")
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("sim: {0}")]
    Sim(#[from] gpupool_sim::SimError),
    #[error("cloud: {0}")]
    Cloud(#[from] gpupool_cloud::CloudError),
    #[error(
        "region: the built-in {cloud} price table has no prices for {region:?}, and the simulation sells the config's instance types at those prices"
    )]
    NoPrices { cloud: &'static str, region: String },
    #[error(
        "node_groups[{group}]: instance type {instance_type} has no list price for {region} in the built-in table, so the simulation cannot sell it"
    )]
    Unpriced {
        group: String,
        instance_type: String,
        region: String,
    },
    #[error("cannot start the simulation's runtime: {0}")]
    Runtime(String),
}

/// Runs each of `policies` on `trace` and compares them. Reactive runs
/// before always-on, which is sized by the reactive run's peaks. `progress`
/// is told, as each policy runs, how far through the trace it is (0 to 1).
pub fn simulate(
    config: &Config,
    trace: &trace::Trace,
    policies: &[Policy],
    options: &Options,
    progress: &mut dyn FnMut(Policy, f64),
) -> Result<Report, SimulateError> {
    // Virtual time: one thread, the clock paused, so timers fire in order
    // as time jumps and the same inputs give the same run.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| SimulateError::Runtime(e.to_string()))?;
    let mut order: Vec<Policy> = policies.to_vec();
    order.sort_by_key(|p| match p {
        Policy::Reactive => 0,
        Policy::AlwaysOn => 1,
        Policy::Gpupool => 2,
    });
    if order.contains(&Policy::AlwaysOn) && !order.contains(&Policy::Reactive) {
        order.insert(0, Policy::Reactive);
    }
    let mut peaks = BTreeMap::new();
    let mut runs = Vec::new();
    for policy in order {
        progress(policy, 0.0);
        let run = runtime.block_on(run::run(config, trace, policy, &peaks, options, &mut |f| {
            progress(policy, f)
        }))?;
        progress(policy, 1.0);
        if policy == Policy::Reactive {
            peaks = run.peaks.clone();
        }
        runs.push(run);
    }
    let mut reports: Vec<PolicyReport> = policies
        .iter()
        .filter_map(|p| runs.iter().find(|r| r.policy == *p))
        .map(|r| PolicyReport::of(r, trace, options.start))
        .collect();
    let always_on = reports
        .iter()
        .find(|r| r.policy == Policy::AlwaysOn)
        .map(|r| r.cost_usd);
    if let Some(base) = always_on.filter(|b| *b > 0.0) {
        for r in &mut reports {
            r.savings_vs_always_on = Some((base - r.cost_usd) / base);
        }
    }
    Ok(Report {
        trace: trace.name.clone(),
        seed: options.seed,
        policies: reports,
        notes: notes(&runs, trace),
    })
}

/// The runs' notes once each, then the pods some policy could not place
/// anywhere, per set of policies alike.
fn notes(runs: &[run::Run], trace: &trace::Trace) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for note in runs.iter().flat_map(|r| &r.notes) {
        if !out.contains(note) {
            out.push(note.clone());
        }
    }
    let mut alike: Vec<(&[String], Vec<&str>)> = Vec::new();
    for r in runs.iter().filter(|r| !r.unplaceable.is_empty()) {
        match alike
            .iter_mut()
            .find(|(u, _)| *u == r.unplaceable.as_slice())
        {
            Some((_, policies)) => policies.push(r.policy.name()),
            None => alike.push((&r.unplaceable, vec![r.policy.name()])),
        }
    }
    for (pods, policies) in alike {
        let first = trace.pods.iter().find(|p| p.name == pods[0]);
        let asks = first.map_or_else(String::new, |p| {
            let what = match &p.slice {
                Some(slice) => format!("a {slice} slice"),
                None => format!("{} GPU(s)", p.gpus),
            };
            let on = p.accelerator.as_deref().unwrap_or("any GPU");
            let flags = [
                (p.interruptible, "interruptible"),
                (p.shareable, "shareable"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>();
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!(", {}", flags.join(", "))
            };
            format!(" ({what} of {on}{flags})")
        });
        out.push(format!(
            "{} pods fit no node group's node under {}, so they never run: the first is {}{asks}",
            pods.len(),
            policies.join(", "),
            pods[0],
        ));
    }
    out
}
