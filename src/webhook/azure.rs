//! Azure Scheduled Events (the instance metadata service's document, posted
//! by a node agent) and Event Grid deliveries (the subscription validation
//! handshake, and events whose `data` is a Scheduled Event).

use super::notice::{BadNotice, Kind, Notice, Source, Target, rfc1123};
use serde::Deserialize;
use std::time::{Duration, SystemTime};

/// Azure gives a Spot VM at least 30 seconds after a Preempt event.
pub const PREEMPT_NOTICE: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Document {
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    event_id: String,
    event_type: String,
    #[serde(default)]
    resource_type: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    not_before: Option<String>,
}

/// A Scheduled Events document: Preempt and Terminate of VMs; the other
/// types (Freeze, Reboot, Redeploy) are not the end of a node.
pub fn scheduled_events(body: &[u8], now: SystemTime) -> Result<Vec<Notice>, BadNotice> {
    let doc: Document =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| BadNotice::new(e.path().to_string(), e.into_inner().to_string()))?;
    let mut out = Vec::new();
    for (i, e) in doc.events.iter().enumerate() {
        out.extend(event(e, &format!("Events[{i}]"), now)?);
    }
    Ok(out)
}

fn event(e: &Event, at: &str, now: SystemTime) -> Result<Vec<Notice>, BadNotice> {
    let kind = match e.event_type.as_str() {
        "Preempt" => Kind::Interruption,
        "Terminate" => Kind::Termination,
        _ => return Ok(Vec::new()),
    };
    if e.resource_type
        .as_deref()
        .is_some_and(|t| t != "VirtualMachine")
    {
        return Ok(Vec::new());
    }
    let deadline = match e.not_before.as_deref().filter(|s| !s.is_empty()) {
        Some(t) => rfc1123(&format!("{at}.NotBefore"), t)?,
        None => now + PREEMPT_NOTICE,
    };
    if e.resources.is_empty() {
        return Err(BadNotice::new(format!("{at}.Resources"), "names no VM"));
    }
    Ok(e.resources
        .iter()
        .map(|vm| Notice {
            source: Source::Azure,
            kind,
            target: Target::Instance(vm.clone()),
            deadline: Some(deadline),
            id: format!("{}/{vm}", e.event_id),
        })
        .collect())
}

/// What an Event Grid delivery asks of us.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The subscription handshake: answer `{"validationResponse": code}`.
    Validate(String),
    Notices(Vec<Notice>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GridEvent {
    id: String,
    event_type: String,
    #[serde(default)]
    data: serde_json::Value,
}

const VALIDATION: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";

/// An Event Grid delivery (Event Grid schema: a JSON array of events).
pub fn event_grid(body: &[u8], now: SystemTime) -> Result<Delivery, BadNotice> {
    let events: Vec<GridEvent> =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| BadNotice::new(e.path().to_string(), e.into_inner().to_string()))?;
    if let Some(v) = events.iter().find(|e| e.event_type == VALIDATION) {
        let code = v
            .data
            .get("validationCode")
            .and_then(|c| c.as_str())
            .ok_or_else(|| BadNotice::new("[].data.validationCode", "missing or not a string"))?;
        return Ok(Delivery::Validate(code.to_owned()));
    }
    let mut out = Vec::new();
    for (i, g) in events.iter().enumerate() {
        let at = format!("[{i}].data");
        let Ok(e) = serde_json::from_value::<Event>(g.data.clone()) else {
            continue; // not a Scheduled Event: another event type on the topic
        };
        for mut n in event(&e, &at, now)? {
            n.id = format!("{}/{}", g.id, n.id);
            out.push(n);
        }
    }
    Ok(Delivery::Notices(out))
}
