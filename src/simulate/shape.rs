//! What a node of each group offers pods, read off the group's real node
//! template (the one CA is sent): whole GPUs, MIG slices by profile, the
//! accelerator label, and whether its pods must tolerate spot.

use crate::config::GroupSpec;
use crate::template::{Template, TemplateContext};
use gpupool_cloud::PurchaseOption;
use std::collections::BTreeMap;

/// One group's node, as pods see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// `nvidia.com/gpu` the node advertises (slices, under MIG's single
    /// strategy, are counted under `slices` instead).
    pub gpus: u32,
    /// `nvidia.com/mig-<profile>` counts.
    pub slices: BTreeMap<String, u32>,
    /// The GPUs the instance has (what is paid for).
    pub physical_gpus: u32,
    /// The GPU label's value.
    pub accelerator: Option<String>,
    /// Spot or spot-then-on-demand: only interruptible pods are placed.
    pub spot: bool,
    /// Time-slicing replicas per GPU (or MIG instance); 1: not shared.
    /// Above 1, each advertised GPU is a share, and only pods that accept
    /// one are placed (as a shared group's taint or selector would do).
    pub replicas: u32,
}

impl Shape {
    pub fn of(spec: &GroupSpec, cx: TemplateContext<'_>) -> Self {
        let template = Template::build(spec, cx);
        // The node as the fit checks read it (allocatable parsed, labels).
        let node = crate::fit::NodeShape::new(&template.node, &template.slices());
        let count = |v: f64| v.max(0.0) as u32;
        let mut gpus = 0;
        let mut slices = BTreeMap::new();
        for (resource, v) in &node.allocatable {
            if resource == "nvidia.com/gpu" {
                gpus = count(*v);
            } else if let Some(profile) = resource.strip_prefix("nvidia.com/mig-") {
                slices.insert(profile.to_owned(), count(*v));
            }
        }
        // MIG's single strategy advertises its slices as nvidia.com/gpu.
        if let Some(mig) = &spec.sharing.mig
            && mig.strategy == crate::gpu::sharing::MigStrategy::Single
            && slices.is_empty()
            && let Some(profile) = single_profile(&mig.config_name)
        {
            slices.insert(profile, gpus);
            gpus = 0;
        }
        let accelerator = node.labels.get(cx.gpu_label).cloned();
        Self {
            gpus,
            slices,
            physical_gpus: spec.instance_type.gpu.as_ref().map_or(0, |g| g.count),
            accelerator,
            spot: matches!(
                spec.purchase,
                PurchaseOption::Spot | PurchaseOption::SpotThenOnDemand
            ),
            replicas: spec.sharing.replicas.max(1),
        }
    }
}

/// `all-1g.10gb` → `1g.10gb`.
fn single_profile(config_name: &str) -> Option<String> {
    config_name
        .strip_prefix("all-")
        .filter(|p| *p != "balanced")
        .map(str::to_owned)
}
