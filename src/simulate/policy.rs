//! The policies compared: the same node groups, bought and scaled three
//! ways.

use crate::config::Config;
use gpupool_cloud::PurchaseOption;
use std::collections::BTreeMap;

/// How the groups are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Each group sized for its peak, on demand, never scaled down: what
    /// most clusters do.
    AlwaysOn,
    /// CA from zero, on demand, no pre-provisioning, no sharing.
    Reactive,
    /// The config as written: scale to zero, pre-provisioning, spot with
    /// interruption replacement, GPU sharing where the groups declare it.
    Gpupool,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::AlwaysOn, Policy::Reactive, Policy::Gpupool];

    pub fn name(self) -> &'static str {
        match self {
            Policy::AlwaysOn => "always-on",
            Policy::Reactive => "reactive",
            Policy::Gpupool => "gpupool",
        }
    }

    /// Whether CA scales the groups down.
    pub fn scales_down(self) -> bool {
        self != Policy::AlwaysOn
    }
}

/// What only the gpupool policy keeps: buying spot, scaling ahead of
/// demand, sharing GPUs, and acting on interruptions.
const GPUPOOL_ONLY: [&str; 6] = [
    "gpupool.dev/capacity-type",
    "gpupool.dev/preprovision",
    "gpupool.dev/gpu-sharing",
    "gpupool.dev/mig-strategy",
    "gpupool.dev/interruption",
    "gpupool.dev/rebalance",
];

/// `config` as `policy` runs it. `peaks`: for always-on, the nodes each
/// group needed at most (from the reactive run).
pub fn apply(policy: Policy, config: &Config, peaks: &BTreeMap<String, u32>) -> Config {
    let mut out = config.clone();
    if policy == Policy::Gpupool {
        return out;
    }
    for g in &mut out.node_groups {
        g.capacity_type = Some(PurchaseOption::OnDemand);
        g.annotations
            .retain(|k, _| !GPUPOOL_ONLY.contains(&k.as_str()));
        g.min_size = match policy {
            Policy::AlwaysOn => peaks.get(&g.id).copied().unwrap_or(0).min(g.max_size),
            _ => 0,
        };
    }
    out
}
