//! Command-line interface.

mod check;
mod client;
mod explain;
mod groups;
mod serve;

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
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::CheckConfig(args) => check::run(args).map(|()| ExitCode::SUCCESS),
        Command::Groups(args) => groups::run(args).map(|()| ExitCode::SUCCESS),
        Command::ExplainPod(args) => explain::run(args),
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
