//! `gpupool simulate`: what each policy costs and how long pods wait, on a
//! trace (a file, or a built-in one).

use anyhow::Context;
use gpupool::config::Config;
use gpupool::simulate::{self, Options, Policy, builtin, trace::Trace};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The workload: a .csv or .jsonl trace (docs/traces.md), or a built-in
    /// one by name: notebooks, inference, training, batch
    #[arg(long)]
    trace: String,
    /// The node groups: a gpupool config (a real cloud's runs on stand-ins for its
    /// instance types at their list prices); without it, the example groups of
    /// src/simulate/examples/ (a built-in trace's own, else all.yaml)
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Days of a built-in trace
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// Seed of the built-in trace and of the simulated cloud's draws
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of the table
    #[arg(long)]
    json: bool,
    /// Also draw the runs as an SVG: GPUs paid for over time per policy, with demand,
    /// and the money spent
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => simulate::example_config(&args.trace),
    };
    let trace = if simulate::builtin::NAMES.contains(&args.trace.as_str()) {
        builtin::trace(&args.trace, args.days, args.seed)
            .with_context(|| format!("--days {}: 1 to 366", args.days))?
    } else {
        Trace::from_path(std::path::Path::new(&args.trace))?
    };
    let options = Options {
        seed: args.seed,
        ..Options::default()
    };
    let quiet = args.json;
    // On stderr, and only on a terminal: scripts get the table or JSON alone.
    let bar = if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(1000)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>10} [{bar:40}] {percent:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("{} ({} pods)", trace.name, trace.pods.len()));
    let report = simulate::simulate(&config, &trace, &Policy::ALL, &options, &mut |p, f| {
        bar.set_prefix(p.name());
        bar.set_position((f * 1000.0) as u64);
    })?;
    bar.finish_and_clear();
    if let Some(path) = &args.plot {
        simulate::plot::svg(&report, path)?;
        if !quiet {
            eprintln!("plot written to {}", path.display());
        }
    }
    if args.json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))
    } else {
        super::emit(&report.table())
    }
}
