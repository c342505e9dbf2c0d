//! `NodeGroupGetOptions`: CA's defaults echoed back in both encodings, with only
//! what the group's annotations set overridden.
//!
//! CA rebuilds its options struct from the reply: anything left unset becomes
//! zero (not CA's default), and CA 1.31–1.34 dereference the old duration fields
//! 3, 4 and 5 unchecked. So every duration is written in the old (meta/v1,
//! nanoseconds) and the new (google.protobuf.Duration) field, always.

use crate::config::CaOptionOverrides;
use crate::proto::{K8sDuration, NodeGroupAutoscalingOptions};
use std::time::Duration;

/// CA's `--max-node-provision-time` default.
pub const CA_DEFAULT_MAX_NODE_PROVISION: Duration = Duration::from_secs(15 * 60);

/// Merges a group's overrides over the defaults CA sent. Without an
/// override, the provision deadline comes from the group's boot-latency
/// `model` (margin over p99), never below CA's own.
pub fn merge(
    defaults: Option<&NodeGroupAutoscalingOptions>,
    o: &CaOptionOverrides,
    model: Option<&crate::boot::Quantiles>,
) -> NodeGroupAutoscalingOptions {
    let d = defaults.cloned().unwrap_or_default();
    let unneeded = o.scale_down_unneeded_time.or_else(|| {
        read(
            d.scale_down_unneeded_duration.as_ref(),
            d.scale_down_unneeded_time.as_ref(),
        )
    });
    let unready = o.scale_down_unready_time.or_else(|| {
        read(
            d.scale_down_unready_duration.as_ref(),
            d.scale_down_unready_time.as_ref(),
        )
    });
    let provision = o.max_node_provision_time.or_else(|| {
        let ca = read(
            d.max_node_provision_duration.as_ref(),
            d.max_node_provision_time.as_ref(),
        );
        match (ca, model) {
            (ca, Some(q)) => Some(crate::boot::provision_deadline(
                q,
                ca.unwrap_or(CA_DEFAULT_MAX_NODE_PROVISION),
            )),
            (ca, None) => ca,
        }
    });
    let startup = o
        .max_node_startup_time
        .or_else(|| read(d.max_node_startup_duration.as_ref(), None));
    let unneeded = unneeded.unwrap_or_default();
    let unready = unready.unwrap_or_default();
    let provision = provision.unwrap_or_default();
    NodeGroupAutoscalingOptions {
        scale_down_utilization_threshold: o
            .scale_down_utilization_threshold
            .unwrap_or(d.scale_down_utilization_threshold),
        scale_down_gpu_utilization_threshold: o
            .scale_down_gpu_utilization_threshold
            .unwrap_or(d.scale_down_gpu_utilization_threshold),
        scale_down_unneeded_time: Some(old(unneeded)),
        scale_down_unready_time: Some(old(unready)),
        max_node_provision_time: Some(old(provision)),
        zero_or_max_node_scaling: o
            .zero_or_max_node_scaling
            .unwrap_or(d.zero_or_max_node_scaling),
        ignore_daemon_sets_utilization: o
            .ignore_daemonsets_utilization
            .unwrap_or(d.ignore_daemon_sets_utilization),
        scale_down_unneeded_duration: Some(new(unneeded)),
        scale_down_unready_duration: Some(new(unready)),
        max_node_provision_duration: Some(new(provision)),
        // No old field exists for these two: echo them only when known.
        max_node_startup_duration: startup.map(new),
        allow_non_atomic_scale_up_to_max: o
            .allow_non_atomic_scale_up_to_max
            .unwrap_or(d.allow_non_atomic_scale_up_to_max),
    }
}

/// A duration from whichever encoding CA set (the new one wins).
fn read(new: Option<&prost_types::Duration>, old: Option<&K8sDuration>) -> Option<Duration> {
    match (new, old) {
        (Some(n), _) => Some(
            Duration::try_from(*n).unwrap_or_default(), // negative → zero
        ),
        (None, Some(o)) => Some(Duration::from_nanos(u64::try_from(o.duration).unwrap_or(0))),
        (None, None) => None,
    }
}

fn old(d: Duration) -> K8sDuration {
    K8sDuration {
        duration: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
    }
}

fn new(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    fn old_ca_defaults() -> NodeGroupAutoscalingOptions {
        NodeGroupAutoscalingOptions {
            scale_down_utilization_threshold: 0.5,
            scale_down_gpu_utilization_threshold: 0.5,
            scale_down_unneeded_time: Some(old(mins(10))),
            scale_down_unready_time: Some(old(mins(20))),
            max_node_provision_time: Some(old(mins(15))),
            ..Default::default()
        }
    }

    #[test]
    fn old_defaults_come_back_in_both_encodings() {
        let out = merge(
            Some(&old_ca_defaults()),
            &CaOptionOverrides::default(),
            None,
        );
        assert_eq!(out.scale_down_unneeded_time, Some(old(mins(10))));
        assert_eq!(out.scale_down_unneeded_duration, Some(new(mins(10))));
        assert_eq!(out.scale_down_unready_duration, Some(new(mins(20))));
        assert_eq!(out.max_node_provision_duration, Some(new(mins(15))));
        assert_eq!(out.scale_down_utilization_threshold, 0.5);
        assert_eq!(out.max_node_startup_duration, None);
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let defaults = NodeGroupAutoscalingOptions {
            scale_down_unneeded_duration: Some(new(mins(10))),
            max_node_startup_duration: Some(new(mins(15))),
            ignore_daemon_sets_utilization: true,
            ..Default::default()
        };
        let o = CaOptionOverrides {
            scale_down_unneeded_time: Some(mins(3)),
            scale_down_gpu_utilization_threshold: Some(0.2),
            zero_or_max_node_scaling: Some(true),
            ..Default::default()
        };
        let out = merge(Some(&defaults), &o, None);
        assert_eq!(out.scale_down_unneeded_time, Some(old(mins(3))));
        assert_eq!(out.scale_down_unneeded_duration, Some(new(mins(3))));
        assert_eq!(out.scale_down_gpu_utilization_threshold, 0.2);
        assert!(out.zero_or_max_node_scaling);
        assert!(out.ignore_daemon_sets_utilization, "echoed");
        assert_eq!(out.max_node_startup_duration, Some(new(mins(15))), "echoed");
        assert_eq!(
            out.scale_down_unready_time,
            Some(old(Duration::ZERO)),
            "never left out"
        );
    }
}
