//! `gpupool trace`: workload traces for `gpupool simulate`, made from a
//! cluster's pod history or written out from the built-in ones.

use anyhow::Context;
use gpupool::simulate::{builtin, import};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// A trace from `kubectl get pods -A -o json` of finished pods (docs/traces.md says
    /// what is read); prints it, and what was skipped and why on stderr
    Import {
        /// The JSON file (`-` for standard input)
        pods: PathBuf,
        /// The node label that names GPU types in node selectors
        #[arg(long, default_value = gpupool::config::DEFAULT_GPU_LABEL)]
        gpu_label: String,
        /// JSON lines instead of CSV
        #[arg(long)]
        jsonl: bool,
    },
    /// Print a built-in trace: notebooks, inference, training, batch
    Builtin {
        name: String,
        #[arg(long, default_value_t = 1)]
        days: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// JSON lines instead of CSV
        #[arg(long)]
        jsonl: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (trace, jsonl) = match args.command {
        Command::Import {
            pods,
            gpu_label,
            jsonl,
        } => {
            let text = if pods.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&pods)
                    .with_context(|| format!("reading {}", pods.display()))?
            };
            let name = pods.display().to_string();
            let (trace, report) = import::from_pod_list(&name, &text, &gpu_label)?;
            for (pod, why) in &report.skipped {
                eprintln!("skipped {pod}: {why}");
            }
            eprintln!(
                "{} pods in the trace, {} skipped",
                report.pods,
                report.skipped.len()
            );
            (trace, jsonl)
        }
        Command::Builtin {
            name,
            days,
            seed,
            jsonl,
        } => {
            let trace = builtin::trace(&name, days, seed).with_context(|| {
                format!(
                    "no built-in trace {name:?} of {days} days (traces: {}; days 1 to 366)",
                    builtin::NAMES.join(", ")
                )
            })?;
            (trace, jsonl)
        }
    };
    super::emit(&if jsonl {
        trace.to_jsonl()
    } else {
        trace.to_csv()
    })
}
