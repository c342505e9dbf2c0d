//! `gpupool check-config FILE`: validate only.

use anyhow::Context;
use gpupool::config::{CloudKind, Config};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The config file
    file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_file(&args.file)?;
    let specs = match config.cloud {
        CloudKind::Sim => {
            // Check the sim settings without touching its state file.
            let mut sim = config.sim.clone();
            sim.state_file = None;
            let sim =
                gpupool_sim::SimCloud::new(sim, std::sync::Arc::new(gpupool_cloud::SystemClock))
                    .map_err(anyhow::Error::from)
                    .with_context(|| format!("{}", args.file.display()))?;
            let catalog: Vec<_> = sim.catalog().iter().map(|t| t.instance_type()).collect();
            config.validate(&catalog, Some(&sim.config().zones))
        }
        // Offline: the built-in catalog of that cloud; zones are checked when
        // the server asks the cloud for them.
        cloud => config.validate(&gpupool::catalog::builtin(cloud), None),
    }
    .with_context(|| format!("{}", args.file.display()))?;
    println!(
        "{}: ok ({} node groups: {})",
        args.file.display(),
        specs.len(),
        specs
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
