//! How gpupool marks its instances and finds them again: labels for the
//! cluster, group and creation request; names made from the request so a
//! repeated call can never make a second instance; and a Compute Engine
//! instance read back as gpupool's [`Instance`].

use google_cloud_compute_v1::model;
use gpupool_cloud::{
    CapacityType, GroupId, Instance, InstanceId, InstanceState, ProviderId, RequestId,
};
use std::collections::HashMap;
use std::time::SystemTime;

/// Label keys (Compute Engine labels allow `a-z0-9_-`, no `/` or `.`).
pub const CLUSTER: &str = "gpupool-cluster";
pub const GROUP: &str = "gpupool-group";
/// The creation request, without its `<group>-` prefix.
pub const REQUEST: &str = "gpupool-request";
pub const MANAGED_BY: &str = "gpupool-managed-by";

/// Labels and names are at most this long.
pub const MAX_LEN: usize = 63;

/// Whether `value` may be a label value: at most 63 of `a-z0-9_-`.
pub fn is_label_value(value: &str) -> bool {
    value.len() <= MAX_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The labels gpupool sets on an instance of `group` made by `request`.
pub fn labels(cluster: &str, group: &GroupId, request: &RequestId) -> HashMap<String, String> {
    HashMap::from([
        (CLUSTER.to_owned(), cluster.to_owned()),
        (GROUP.to_owned(), group.to_string()),
        (REQUEST.to_owned(), request_label(group, request)),
        (MANAGED_BY.to_owned(), "gpupool".to_owned()),
    ])
}

/// The request label: the engine's request ids are `<group>-<hex>`, and the
/// group has a label of its own, so the part after the group is enough
/// (the whole id can be longer than a label). Any other id is kept whole
/// when it fits, else shortened to a hash.
pub fn request_label(group: &GroupId, request: &RequestId) -> String {
    let id = request.as_str();
    let rest = id
        .strip_prefix(group.as_str())
        .and_then(|r| r.strip_prefix('-'))
        .filter(|r| !r.is_empty() && is_label_value(r));
    match rest {
        Some(rest) => rest.to_owned(),
        None if is_label_value(id) => format!("_{id}"),
        None => format!("_{}", &hash(id)[..16]),
    }
}

/// The request id back from an instance's labels.
fn request_id(group: &str, label: &str) -> RequestId {
    match label.strip_prefix('_') {
        Some(whole) => RequestId::new(whole),
        None => RequestId::new(format!("{group}-{label}")),
    }
}

/// The name of the `index`th instance of `request` that asks for
/// `machine_index` of the group's machine types in `zone` at `capacity`:
/// `<group>-<8 hex of the request>-<zone letter><s|o><machine index>-<index>`.
/// The same call gets the same names, so a repeat cannot create a second
/// instance (a name is unique in its zone), and no two calls of one
/// request share a name, so node names are unique in the cluster.
pub fn instance_name(
    group: &GroupId,
    request: &RequestId,
    zone: &str,
    capacity: CapacityType,
    machine_index: usize,
    index: u32,
) -> String {
    let zone_part = zone.rsplit('-').next().unwrap_or(zone);
    let cap = match capacity {
        CapacityType::Spot => 's',
        CapacityType::OnDemand => 'o',
    };
    let tail = format!(
        "-{}-{zone_part}{cap}{machine_index}-{index}",
        &hash(request.as_str())[..8]
    );
    let room = MAX_LEN.saturating_sub(tail.len());
    let head: String = group.as_str().chars().take(room).collect();
    format!("{head}{tail}")
}

/// The idempotency key Compute Engine takes (a UUID) of one call: the
/// request, zone, machine type and capacity make it, so a repeat of the
/// call is answered with the first call's operation.
pub fn call_request_id(
    request: &RequestId,
    zone: &str,
    machine_type: &str,
    capacity: CapacityType,
) -> String {
    let key = format!("{request}/{zone}/{machine_type}/{capacity}");
    uuid::Uuid::new_v5(&GPUPOOL_NAMESPACE, key.as_bytes()).to_string()
}

/// The idempotency key of deleting one instance: a repeat (a retry, the
/// next sync's) is answered with the first delete's operation.
pub fn delete_request_id(zone: &str, name: &str) -> String {
    let key = format!("delete/{zone}/{name}");
    uuid::Uuid::new_v5(&GPUPOOL_NAMESPACE, key.as_bytes()).to_string()
}

/// gpupool's UUID namespace for request ids (a v5 of the URL namespace).
const GPUPOOL_NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
    0x6f, 0x8c, 0x1a, 0x52, 0x3d, 0x7e, 0x5b, 0x0c, 0x9a, 0x41, 0x2e, 0x63, 0xd5, 0x18, 0x7b, 0x90,
]);

/// Hex of a v5 UUID of `text`: a stable short hash.
fn hash(text: &str) -> String {
    uuid::Uuid::new_v5(&GPUPOOL_NAMESPACE, text.as_bytes())
        .simple()
        .to_string()
}

/// The last path segment of a Compute Engine URL (`…/zones/us-central1-a`).
pub fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// gpupool's id of an instance: `<zone>/<name>` (names are unique per
/// zone, and deleting needs the zone).
pub fn instance_id(zone: &str, name: &str) -> InstanceId {
    InstanceId::new(format!("{zone}/{name}"))
}

/// `(zone, name)` of an id made by [`instance_id`].
pub fn split_id(id: &InstanceId) -> Option<(&str, &str)> {
    id.as_str()
        .split_once('/')
        .filter(|(z, n)| !z.is_empty() && !n.is_empty())
}

/// A labelled Compute Engine instance as gpupool's; `None` without a name,
/// zone or group label.
pub fn instance(project: &str, i: &model::Instance) -> Option<Instance> {
    use model::instance::Status;
    use model::scheduling::ProvisioningModel;
    let name = i.name.as_deref()?;
    let zone = last_segment(i.zone.as_deref()?);
    let group = i.labels.get(GROUP)?;
    let state = match i.status.as_ref()? {
        Status::Provisioning | Status::Staging | Status::Pending => InstanceState::Pending,
        Status::Running | Status::Repairing => InstanceState::Running,
        Status::Stopping | Status::PendingStop => InstanceState::ShuttingDown,
        // TERMINATED is Compute Engine's "stopped": the instance is kept
        // and could be started again, so the engine deletes it.
        Status::Stopped | Status::Terminated | Status::Suspending | Status::Suspended => {
            InstanceState::Stopped
        }
        Status::Deprovisioning => InstanceState::Terminated,
        _ => InstanceState::Pending,
    };
    let scheduling = i.scheduling.as_ref();
    let spot = scheduling.is_some_and(|s| {
        s.provisioning_model == Some(ProvisioningModel::Spot) || s.preemptible == Some(true)
    });
    Some(Instance {
        id: instance_id(zone, name),
        provider_id: ProviderId::new(format!("gce://{project}/{zone}/{name}")),
        node_name: Some(name.to_owned()),
        group: GroupId::new(group.clone()),
        instance_type: last_segment(i.machine_type.as_deref().unwrap_or_default()).to_owned(),
        zone: zone.to_owned(),
        capacity_type: if spot {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        },
        state,
        launched_at: i
            .creation_timestamp
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(SystemTime::UNIX_EPOCH),
        request_id: i.labels.get(REQUEST).map(|r| request_id(group, r)),
        state_reason: i.status_message.clone().filter(|m| !m.is_empty()),
    })
}

/// Compute Engine's RFC 3339 timestamps (`2026-11-21T09:14:03.123-08:00`).
fn parse_time(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_labels_round_trip() {
        let group = GroupId::new("h100-spot");
        let id = RequestId::new("h100-spot-00000000deadbeef");
        assert_eq!(request_label(&group, &id), "00000000deadbeef");
        assert_eq!(request_id("h100-spot", "00000000deadbeef"), id);
        let other = RequestId::new("manual-1");
        assert_eq!(
            request_id("h100-spot", &request_label(&group, &other)),
            other
        );
        let long = RequestId::new("X".repeat(80));
        let label = request_label(&group, &long);
        assert!(is_label_value(&label), "{label}");
    }

    #[test]
    fn names_are_valid_distinct_and_stable() {
        let group = GroupId::new(format!("g{}", "x".repeat(62)));
        let req = RequestId::new(format!("{group}-00000000deadbeef"));
        let a = instance_name(&group, &req, "us-central1-a", CapacityType::Spot, 0, 0);
        let b = instance_name(&group, &req, "us-central1-b", CapacityType::Spot, 0, 0);
        let c = instance_name(&group, &req, "us-central1-a", CapacityType::OnDemand, 0, 0);
        let d = instance_name(&group, &req, "us-central1-a", CapacityType::Spot, 1, 0);
        assert_eq!(
            a,
            instance_name(&group, &req, "us-central1-a", CapacityType::Spot, 0, 0)
        );
        let all = [&a, &b, &c, &d];
        for (i, n) in all.iter().enumerate() {
            assert!(n.len() <= MAX_LEN, "{n}");
            assert!(n.starts_with('g') && n.ends_with(|c: char| c.is_ascii_digit()));
            assert!(is_label_value(n), "{n}");
            assert!(all.iter().skip(i + 1).all(|m| m != n), "{n} twice");
        }
        let short = instance_name(
            &GroupId::new("l4"),
            &req,
            "us-central1-a",
            CapacityType::Spot,
            0,
            12,
        );
        assert!(
            short.starts_with("l4-") && short.ends_with("-as0-12"),
            "{short}"
        );
    }

    #[test]
    fn call_ids_are_uuids_per_call() {
        let req = RequestId::new("l4-1");
        let a = call_request_id(&req, "us-central1-a", "g2-standard-4", CapacityType::Spot);
        assert_eq!(a.len(), 36);
        assert_eq!(
            a,
            call_request_id(&req, "us-central1-a", "g2-standard-4", CapacityType::Spot)
        );
        assert_ne!(
            a,
            call_request_id(
                &req,
                "us-central1-a",
                "g2-standard-4",
                CapacityType::OnDemand
            )
        );
        assert!(parse_time("2026-11-21T09:14:03.123-08:00").is_some());
    }
}
