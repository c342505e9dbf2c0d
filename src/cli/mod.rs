//! Command-line interface.

mod certs;
mod check;
mod client;
mod explain;
mod groups;
mod live_prices;
mod prices;
mod serve;
mod simulate;
mod trace;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "gpupool",
    version,
    about = "A cluster-autoscaler externalgrpc cloud provider for GPU node pools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the externalgrpc interface (the embedded example on the simulated cloud if no --config)
    Serve(serve::Args),
    /// Check a config file and exit: 0 if valid, 1 with the reason if not
    CheckConfig(check::Args),
    /// Print the node groups of a running server (asks it over gRPC)
    Groups(groups::Args),
    /// For each node group: would a new node fit the pod, and if not, why.
    /// Exits 0 if every workload fits some group, 2 if one fits none
    ExplainPod(explain::Args),
    /// Print the built-in price table: per instance and per GPU, on-demand and spot
    Prices(prices::Args),
    /// Write a CA and the server and client certificates for mTLS between CA and gpupool
    Certs(certs::Args),
    /// Replay a workload trace under each policy (always-on, reactive, gpupool) in virtual
    /// time on the simulated cloud: cost, GPU-hours, pod waits, interruptions
    Simulate(simulate::Args),
    /// Workload traces for simulate: import a cluster's pod history, or print a built-in one
    Trace(trace::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::CheckConfig(args) => check::run(args).map(|()| ExitCode::SUCCESS),
        Command::Groups(args) => groups::run(args).map(|()| ExitCode::SUCCESS),
        Command::ExplainPod(args) => explain::run(args),
        Command::Prices(args) => prices::run(args).map(|()| ExitCode::SUCCESS),
        Command::Certs(args) => certs::run(args).map(|()| ExitCode::SUCCESS),
        Command::Simulate(args) => simulate::run(args).map(|()| ExitCode::SUCCESS),
        Command::Trace(args) => trace::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Rows as aligned columns: the first left-aligned, the rest right-aligned.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
