//! GCP preemptions: the `compute.instances.preempted` audit-log entry, as a
//! Pub/Sub push subscription on a log sink delivers it (the entry is the
//! base64 `message.data`).

use super::notice::{BadNotice, Kind, Notice, Source, Target, rfc3339};
use base64::Engine as _;
use serde::Deserialize;
use std::time::Duration;

/// GCP stops a preempted VM 30 seconds after the notice.
pub const PREEMPT_NOTICE: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Push {
    message: Message,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    data: String,
    message_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogEntry {
    #[serde(default)]
    proto_payload: serde_json::Value,
    timestamp: String,
}

/// A Pub/Sub push body; an entry about anything but a preemption is
/// `Ok(vec![])`.
pub fn pubsub_push(body: &[u8]) -> Result<Vec<Notice>, BadNotice> {
    let push: Push =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| BadNotice::new(e.path().to_string(), e.into_inner().to_string()))?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(push.message.data.as_bytes())
        .map_err(|e| BadNotice::new("message.data", format!("not base64: {e}")))?;
    let entry: LogEntry =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&data))
            .map_err(|e| {
                BadNotice::new(
                    format!("message.data.{}", e.path()),
                    e.into_inner().to_string(),
                )
            })?;
    let method = entry
        .proto_payload
        .get("methodName")
        .and_then(|m| m.as_str());
    if method != Some("compute.instances.preempted") {
        return Ok(Vec::new());
    }
    let resource = entry
        .proto_payload
        .get("resourceName")
        .and_then(|r| r.as_str())
        .ok_or_else(|| {
            BadNotice::new(
                "message.data.protoPayload.resourceName",
                "missing or not a string",
            )
        })?;
    let time = rfc3339("message.data.timestamp", &entry.timestamp)?;
    Ok(vec![Notice {
        source: Source::Gcp,
        kind: Kind::Interruption,
        target: Target::ProviderId(provider_id(resource)?),
        deadline: Some(time + PREEMPT_NOTICE),
        id: push.message.message_id,
    }])
}

/// `projects/P/zones/Z/instances/N` as GKE's providerID `gce://P/Z/N`.
fn provider_id(resource: &str) -> Result<String, BadNotice> {
    let parts: Vec<&str> = resource.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "zones", z, "instances", n]
            if !p.is_empty() && !z.is_empty() && !n.is_empty() =>
        {
            Ok(format!("gce://{p}/{z}/{n}"))
        }
        _ => Err(BadNotice::new(
            "message.data.protoPayload.resourceName",
            format!("{resource:?} is not projects/<p>/zones/<z>/instances/<name>"),
        )),
    }
}
