//! `gpupool.dev/` node-group annotations, parsed once into typed options.
//!
//! Keys under `gpupool.dev/` that are not listed here are errors (a typo must not
//! silently do nothing). Keys under other prefixes are left alone.

use crate::gpu::sharing::{self, MigStrategy, SharingSpec};
use crate::preprovision::Schedule;
use crate::preprovision::time::{Tz, parse_tz};
use gpupool_cloud::PurchaseOption;
use std::collections::BTreeMap;
use std::time::Duration;

const PREFIX: &str = "gpupool.dev/";

/// CA's own node-template keys (AWS ASG tags, Azure VMSS tags, cluster-api
/// annotations), honoured with the same meaning so existing setups carry over.
pub const CA_TEMPLATE_PREFIX: &str = "k8s.io/cluster-autoscaler/node-template/";

/// Every annotation a node group may carry, typed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupAnnotations {
    /// `gpupool.dev/capacity-type`
    pub capacity_type: Option<PurchaseOption>,
    /// `gpupool.dev/boot-latency`: prior for the boot-latency model.
    pub boot_latency: Option<Duration>,
    /// `gpupool.dev/preprovision`: scheduled floors,
    /// `[name=]<cron> for <duration>: <count>`, `;`-separated.
    pub preprovision: Vec<Schedule>,
    /// `gpupool.dev/time-zone`: the zone the schedules are read in.
    pub time_zone: Option<Tz>,
    /// `gpupool.dev/gpu-sharing`, syntax only: checked against the GPU model
    /// when the config is validated.
    pub gpu_sharing: Option<SharingSpec>,
    /// `gpupool.dev/mig-strategy`
    pub mig_strategy: Option<MigStrategy>,
    /// `gpupool.dev/dra`: GPUs are handed out by NVIDIA's DRA driver
    /// (ResourceClaims), not by the device plugin.
    pub dra: bool,
    /// `gpupool.dev/interruption`
    pub interruption: Option<Interruption>,
    /// `gpupool.dev/drain-timeout`
    pub drain_timeout: Option<Duration>,
    /// `gpupool.dev/rebalance`: what an early warning (AWS rebalance
    /// recommendation) triggers; default nothing.
    pub rebalance: Rebalance,
    /// `gpupool.dev/max-hourly-price` in USD.
    pub max_hourly_price: Option<f64>,
    /// The CA per-group options (`NodeGroupGetOptions`).
    pub ca_options: CaOptionOverrides,
    /// Labels, taints and resources from CA's node-template keys.
    pub ca_template: CaTemplate,
}

/// What `k8s.io/cluster-autoscaler/node-template/{label,taint,resources}/…`
/// keys add to a group's template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaTemplate {
    /// `…/label/<key>: <value>`
    pub labels: BTreeMap<String, String>,
    /// `…/taint/<key>: <value>:<Effect>`
    pub taints: Vec<super::TaintConfig>,
    /// `…/resources/<name>: <quantity>`: overrides capacity and allocatable.
    pub resources: BTreeMap<String, String>,
}

/// CA's per-group autoscaling options that a group overrides; `None` keeps CA's
/// default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaOptionOverrides {
    pub scale_down_utilization_threshold: Option<f64>,
    pub scale_down_gpu_utilization_threshold: Option<f64>,
    pub scale_down_unneeded_time: Option<Duration>,
    pub scale_down_unready_time: Option<Duration>,
    pub max_node_provision_time: Option<Duration>,
    pub max_node_startup_time: Option<Duration>,
    pub zero_or_max_node_scaling: Option<bool>,
    pub ignore_daemonsets_utilization: Option<bool>,
    pub allow_non_atomic_scale_up_to_max: Option<bool>,
}

/// What a spot interruption triggers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interruption {
    Replace,
    DrainOnly,
}

/// What a rebalance recommendation (an instance at elevated risk of
/// interruption) triggers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rebalance {
    /// Logged and counted only.
    #[default]
    Ignore,
    /// The replacement is started at once; the node stays in service until
    /// its interruption notice comes (then it is drained, with no second
    /// replacement) or the standby ends.
    Replace,
    /// Replaced, cordoned and drained at once, like an interruption.
    ReplaceAndDrain,
}

type Reject = (String, String);

impl GroupAnnotations {
    /// Parses every `gpupool.dev/` key; the error is `(key, reason)`.
    pub fn parse(raw: &BTreeMap<String, String>) -> Result<Self, Reject> {
        let mut out = Self::default();
        let mut ca_options = CaOptionOverrides::default();
        for (key, value) in raw {
            if let Some(rest) = key.strip_prefix(CA_TEMPLATE_PREFIX) {
                ca_template_key(rest, value.trim(), &mut out.ca_template, &mut ca_options)
                    .map_err(|reason| (key.clone(), reason))?;
                continue;
            }
            let Some(name) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let reject = |reason: String| (key.clone(), reason);
            let v = value.trim();
            let o = &mut out.ca_options;
            match name {
                "capacity-type" => {
                    out.capacity_type = Some(match v {
                        "spot" => PurchaseOption::Spot,
                        "on-demand" => PurchaseOption::OnDemand,
                        "spot-then-on-demand" => PurchaseOption::SpotThenOnDemand,
                        _ => {
                            return Err(reject(format!(
                                "{v:?} is not one of spot, on-demand, spot-then-on-demand"
                            )));
                        }
                    })
                }
                "boot-latency" => out.boot_latency = Some(duration(v).map_err(reject)?),
                "preprovision" => out.preprovision = Schedule::parse_list(v).map_err(reject)?,
                "time-zone" => out.time_zone = Some(parse_tz(v).map_err(reject)?),
                "gpu-sharing" => out.gpu_sharing = Some(sharing::parse(v).map_err(reject)?),
                "dra" => out.dra = boolean(v).map_err(reject)?,
                "mig-strategy" => {
                    out.mig_strategy = Some(match v {
                        "single" => MigStrategy::Single,
                        "mixed" => MigStrategy::Mixed,
                        _ => return Err(reject(format!("{v:?} is not one of single, mixed"))),
                    })
                }
                "interruption" => {
                    out.interruption = Some(match v {
                        "replace" => Interruption::Replace,
                        "drain-only" => Interruption::DrainOnly,
                        _ => {
                            return Err(reject(format!("{v:?} is not one of replace, drain-only")));
                        }
                    })
                }
                "drain-timeout" => out.drain_timeout = Some(duration(v).map_err(reject)?),
                "rebalance" => {
                    out.rebalance = match v {
                        "ignore" => Rebalance::Ignore,
                        "replace" => Rebalance::Replace,
                        "replace-and-drain" => Rebalance::ReplaceAndDrain,
                        _ => {
                            return Err(reject(format!(
                                "{v:?} is not one of ignore, replace, replace-and-drain"
                            )));
                        }
                    }
                }
                "max-hourly-price" => {
                    out.max_hourly_price = Some(
                        v.parse::<f64>()
                            .ok()
                            .filter(|p| p.is_finite() && *p > 0.0)
                            .ok_or_else(|| {
                                reject(format!("{v:?} is not a positive price in USD per hour"))
                            })?,
                    )
                }
                "scale-down-utilization-threshold" => {
                    o.scale_down_utilization_threshold = Some(fraction(v).map_err(reject)?)
                }
                "scale-down-gpu-utilization-threshold" => {
                    o.scale_down_gpu_utilization_threshold = Some(fraction(v).map_err(reject)?)
                }
                "scale-down-unneeded-time" => {
                    o.scale_down_unneeded_time = Some(duration(v).map_err(reject)?)
                }
                "scale-down-unready-time" => {
                    o.scale_down_unready_time = Some(duration(v).map_err(reject)?)
                }
                "max-node-provision-time" => {
                    o.max_node_provision_time = Some(duration(v).map_err(reject)?)
                }
                "max-node-startup-time" => {
                    o.max_node_startup_time = Some(duration(v).map_err(reject)?)
                }
                "zero-or-max-node-scaling" => {
                    o.zero_or_max_node_scaling = Some(boolean(v).map_err(reject)?)
                }
                "ignore-daemonsets-utilization" => {
                    o.ignore_daemonsets_utilization = Some(boolean(v).map_err(reject)?)
                }
                "allow-non-atomic-scale-up-to-max" => {
                    o.allow_non_atomic_scale_up_to_max = Some(boolean(v).map_err(reject)?)
                }
                _ => {
                    return Err(reject(format!(
                        "unknown gpupool.dev annotation; known keys: {}",
                        KNOWN.join(", ")
                    )));
                }
            }
        }
        out.ca_options = merge_options(out.ca_options, ca_options)?;
        Ok(out)
    }
}

/// One `k8s.io/cluster-autoscaler/node-template/…` key.
fn ca_template_key(
    rest: &str,
    v: &str,
    template: &mut CaTemplate,
    options: &mut CaOptionOverrides,
) -> Result<(), String> {
    let (kind, name) = rest.split_once('/').ok_or_else(|| {
        "expected label/<key>, taint/<key>, resources/<name> or autoscaling-options/<option>"
            .to_owned()
    })?;
    if name.is_empty() {
        return Err(format!("{kind}/ needs a name after it"));
    }
    match kind {
        "label" => {
            template.labels.insert(name.to_owned(), v.to_owned());
        }
        "taint" => {
            let (value, effect) = v.rsplit_once(':').ok_or_else(|| {
                format!("{v:?} is not <value>:<Effect> (e.g. present:NoSchedule)")
            })?;
            let effect = match effect {
                "NoSchedule" => super::TaintEffect::NoSchedule,
                "PreferNoSchedule" => super::TaintEffect::PreferNoSchedule,
                "NoExecute" => super::TaintEffect::NoExecute,
                _ => {
                    return Err(format!(
                        "effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
                    ));
                }
            };
            template.taints.push(super::TaintConfig {
                key: name.to_owned(),
                value: value.to_owned(),
                effect,
            });
        }
        "resources" => {
            crate::quantity::parse(v).map_err(|e| e.to_string())?;
            template.resources.insert(name.to_owned(), v.to_owned());
        }
        "autoscaling-options" => match name {
            "scaledownutilizationthreshold" => {
                options.scale_down_utilization_threshold = Some(fraction(v)?)
            }
            "scaledowngpuutilizationthreshold" => {
                options.scale_down_gpu_utilization_threshold = Some(fraction(v)?)
            }
            "scaledownunneededtime" => options.scale_down_unneeded_time = Some(duration(v)?),
            "scaledownunreadytime" => options.scale_down_unready_time = Some(duration(v)?),
            "maxnodeprovisiontime" => options.max_node_provision_time = Some(duration(v)?),
            "ignoredaemonsetsutilization" => {
                options.ignore_daemonsets_utilization = Some(boolean(v)?)
            }
            _ => {
                return Err("unknown autoscaling option; CA's are scaledownutilizationthreshold, scaledowngpuutilizationthreshold, scaledownunneededtime, scaledownunreadytime, maxnodeprovisiontime, ignoredaemonsetsutilization".into());
            }
        },
        _ => {
            return Err(format!(
                "{kind:?} is not label, taint, resources or autoscaling-options"
            ));
        }
    }
    Ok(())
}

/// Options set both ways must agree.
fn merge_options(
    ours: CaOptionOverrides,
    ca: CaOptionOverrides,
) -> Result<CaOptionOverrides, Reject> {
    fn pick<T: PartialEq + std::fmt::Debug>(
        ours: Option<T>,
        theirs: Option<T>,
        our_key: &str,
        their_key: &str,
    ) -> Result<Option<T>, Reject> {
        match (ours, theirs) {
            (Some(a), Some(b)) if a != b => Err((
                format!("{CA_TEMPLATE_PREFIX}autoscaling-options/{their_key}"),
                format!("{b:?} conflicts with {PREFIX}{our_key} {a:?}; set one of them"),
            )),
            (a, b) => Ok(a.or(b)),
        }
    }
    Ok(CaOptionOverrides {
        scale_down_utilization_threshold: pick(
            ours.scale_down_utilization_threshold,
            ca.scale_down_utilization_threshold,
            "scale-down-utilization-threshold",
            "scaledownutilizationthreshold",
        )?,
        scale_down_gpu_utilization_threshold: pick(
            ours.scale_down_gpu_utilization_threshold,
            ca.scale_down_gpu_utilization_threshold,
            "scale-down-gpu-utilization-threshold",
            "scaledowngpuutilizationthreshold",
        )?,
        scale_down_unneeded_time: pick(
            ours.scale_down_unneeded_time,
            ca.scale_down_unneeded_time,
            "scale-down-unneeded-time",
            "scaledownunneededtime",
        )?,
        scale_down_unready_time: pick(
            ours.scale_down_unready_time,
            ca.scale_down_unready_time,
            "scale-down-unready-time",
            "scaledownunreadytime",
        )?,
        max_node_provision_time: pick(
            ours.max_node_provision_time,
            ca.max_node_provision_time,
            "max-node-provision-time",
            "maxnodeprovisiontime",
        )?,
        ignore_daemonsets_utilization: pick(
            ours.ignore_daemonsets_utilization,
            ca.ignore_daemonsets_utilization,
            "ignore-daemonsets-utilization",
            "ignoredaemonsetsutilization",
        )?,
        ..ours
    })
}

/// Every key this version understands (without the prefix).
pub const KNOWN: &[&str] = &[
    "capacity-type",
    "boot-latency",
    "preprovision",
    "time-zone",
    "gpu-sharing",
    "mig-strategy",
    "dra",
    "interruption",
    "drain-timeout",
    "rebalance",
    "max-hourly-price",
    "scale-down-utilization-threshold",
    "scale-down-gpu-utilization-threshold",
    "scale-down-unneeded-time",
    "scale-down-unready-time",
    "max-node-provision-time",
    "max-node-startup-time",
    "zero-or-max-node-scaling",
    "ignore-daemonsets-utilization",
    "allow-non-atomic-scale-up-to-max",
];

/// The longest duration any key takes: no option means anything past it,
/// and the bound keeps time arithmetic far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(31 * 86_400);

fn duration(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v)
        .map_err(|e| format!("{v:?} is not a duration like 90s, 5m or 1h30m ({e})"))?;
    if d > MAX_DURATION {
        return Err(format!("{v:?} is longer than 31 days"));
    }
    Ok(d)
}

fn fraction(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| format!("{v:?} is not a number from 0 to 1"))
}

fn boolean(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    }
}
