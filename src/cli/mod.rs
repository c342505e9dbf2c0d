//! Command-line interface.

mod check;
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
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::CheckConfig(args) => check::run(args),
        Command::Groups(args) => groups::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
