//! `gpupool explain-pod FILE`: why a pod does (not) make CA scale a group up.

use super::client;
use anyhow::Context;
use gpupool::config::Config;
use gpupool::explain::{self, Group};
use gpupool::fit::GroupSize;
use gpupool::proto::*;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code when some workload fits no node group.
pub const FITS_NOWHERE: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Manifest with the workloads to explain (Pod, Deployment, StatefulSet,
    /// ReplicaSet, Job, CronJob), `-` for stdin. DaemonSets in it take their
    /// share of each node; ResourceClaimTemplates and ResourceClaims in it are
    /// checked against the DRA devices of a node.
    file: PathBuf,
    /// Judge the node groups of this config (default: the embedded example)
    #[arg(long, conflicts_with = "address")]
    config: Option<PathBuf>,
    /// Ask a running server instead: its groups, the very templates it sends
    /// CA, and whether a group has reached its max size
    #[arg(long)]
    address: Option<String>,
    #[command(flatten)]
    tls: client::Tls,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the manifest from stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let manifests = explain::parse(&text).with_context(|| format!("{}", args.file.display()))?;
    let groups = match &args.address {
        Some(address) => client::runtime()?.block_on(remote(address, &args.tls))?,
        None => local(args.config.as_ref())?,
    };
    let mut nowhere = false;
    let mut out = String::new();
    for w in &manifests.workloads {
        let report = explain::explain(w, &manifests.daemonsets, &groups);
        nowhere |= report.fitting().next().is_none();
        out.push_str(&report.to_string());
    }
    if !manifests.skipped.is_empty() {
        let skipped = manifests.skipped.join(", ");
        out.push_str(&format!("(not workloads, skipped: {skipped})\n"));
    }
    super::emit(&out)?;
    Ok(if nowhere {
        ExitCode::from(FITS_NOWHERE)
    } else {
        ExitCode::SUCCESS
    })
}

/// The groups of a config, with the templates the server would build.
fn local(path: Option<&PathBuf>) -> anyhow::Result<Vec<Group>> {
    let config = match path {
        Some(p) => Config::from_file(p)?,
        None => Config::default_example(),
    };
    let where_ = || {
        path.map_or("the embedded example config".to_owned(), |p| {
            p.display().to_string()
        })
    };
    let specs = gpupool::backend::offline_specs(&config).with_context(where_)?;
    Ok(explain::groups_of(&config, &specs)?)
}

/// The groups of a running server, asked the way CA asks.
async fn remote(address: &str, tls: &client::Tls) -> anyhow::Result<Vec<Group>> {
    let mut c = client::connect(address, tls).await?;
    let groups = c
        .node_groups(NodeGroupsRequest {})
        .await
        .context("NodeGroups")?
        .into_inner()
        .node_groups;
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let id = g.id.clone();
        let target = c
            .node_group_target_size(NodeGroupTargetSizeRequest { id: id.clone() })
            .await
            .with_context(|| format!("NodeGroupTargetSize of {id}"))?
            .into_inner()
            .target_size;
        let t = c
            .node_group_template_node_info(NodeGroupTemplateNodeInfoRequest { id: id.clone() })
            .await
            .with_context(|| format!("NodeGroupTemplateNodeInfo of {id}"))?
            .into_inner();
        let node = if t.node_bytes.is_empty() {
            &t.node_info
        } else {
            &t.node_bytes
        };
        let size = GroupSize {
            max: u32::try_from(g.max_size).unwrap_or(0),
            target: u32::try_from(target).ok(),
        };
        out.push(Group::decode(&id, size, node, &t.resource_slice_bytes)?);
    }
    Ok(out)
}
