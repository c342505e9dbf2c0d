//! `gpupool check-config FILE`: validate only.

use anyhow::Context;
use gpupool::config::Config;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The config file
    file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_file(&args.file)?;
    let specs = gpupool::backend::offline_specs(&config)
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
