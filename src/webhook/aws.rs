//! AWS EventBridge events about EC2 instances, as EventBridge delivers them
//! (to an API destination directly, or as the `Message` of an SNS
//! notification): spot interruption warnings, rebalance recommendations,
//! state changes and AWS Health scheduled changes for EC2.

use super::notice::{BadNotice, Kind, Notice, Source, Target, rfc1123, rfc3339};
use serde::Deserialize;
use std::time::Duration;

/// A spot interruption warning comes two minutes before the instance goes.
pub const SPOT_NOTICE: Duration = Duration::from_secs(120);

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    time: String,
    #[serde(default)]
    detail: serde_json::Value,
}

/// The notices of one event; an event about something else is `Ok(vec![])`.
pub fn parse(body: &[u8]) -> Result<Vec<Notice>, BadNotice> {
    let event: Event =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| BadNotice::new(e.path().to_string(), e.into_inner().to_string()))?;
    let time = rfc3339("time", &event.time)?;
    let str_field = |name: &str| -> Result<String, BadNotice> {
        event
            .detail
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| BadNotice::new(format!("detail.{name}"), "missing or not a string"))
    };
    let notice = |kind, instance: String, deadline| Notice {
        source: Source::Aws,
        kind,
        target: Target::Instance(instance),
        deadline,
        id: event.id.clone(),
    };
    Ok(match (event.source.as_str(), event.detail_type.as_str()) {
        ("aws.ec2", "EC2 Spot Instance Interruption Warning") => vec![notice(
            Kind::Interruption,
            str_field("instance-id")?,
            Some(time + SPOT_NOTICE),
        )],
        ("aws.ec2", "EC2 Instance Rebalance Recommendation") => {
            vec![notice(Kind::Rebalance, str_field("instance-id")?, None)]
        }
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            match str_field("state")?.as_str() {
                "stopping" | "shutting-down" => vec![notice(
                    Kind::Termination,
                    str_field("instance-id")?,
                    Some(time),
                )],
                "terminated" | "stopped" => {
                    vec![notice(
                        Kind::Terminated,
                        str_field("instance-id")?,
                        Some(time),
                    )]
                }
                _ => Vec::new(),
            }
        }
        ("aws.health", "AWS Health Event") => health(&event, time)?,
        _ => Vec::new(),
    })
}

/// AWS Health scheduled changes for EC2 (retirement, maintenance): every
/// affected instance, by the event's start.
fn health(event: &Event, time: std::time::SystemTime) -> Result<Vec<Notice>, BadNotice> {
    let d = &event.detail;
    let service = d.get("service").and_then(|v| v.as_str());
    let category = d.get("eventTypeCategory").and_then(|v| v.as_str());
    if service != Some("EC2") || category != Some("scheduledChange") {
        return Ok(Vec::new());
    }
    // AWS Health writes its times as HTTP dates ("Wed, 16 Aug 2023
    // 23:18:51 GMT"); RFC 3339 is taken too.
    let deadline = match d.get("startTime").and_then(|v| v.as_str()) {
        Some(t) => rfc1123("detail.startTime", t)
            .or_else(|_| rfc3339("detail.startTime", t))
            .map_err(|_| {
                BadNotice::new(
                    "detail.startTime",
                    format!("{t:?} is neither an HTTP date nor an RFC 3339 time"),
                )
            })?,
        None => time,
    };
    let entities = d
        .get("affectedEntities")
        .and_then(|v| v.as_array())
        .ok_or_else(|| BadNotice::new("detail.affectedEntities", "missing or not a list"))?;
    entities
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let value = e.get("entityValue").and_then(|v| v.as_str());
            match value {
                Some(v) if v.starts_with("i-") => Some(Ok(Notice {
                    source: Source::Aws,
                    kind: Kind::Termination,
                    target: Target::Instance(v.to_owned()),
                    deadline: Some(deadline),
                    id: format!("{}/{i}", event.id),
                })),
                Some(_) => None,
                None => Some(Err(BadNotice::new(
                    format!("detail.affectedEntities[{i}].entityValue"),
                    "missing or not a string",
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn an_aws_health_scheduled_change_takes_its_http_date_start_as_the_deadline() {
        // The shape AWS Health sends to EventBridge (startTime as an HTTP date).
        let body = br#"{
          "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
          "detail-type": "AWS Health Event", "source": "aws.health",
          "account": "123456789012", "time": "2023-01-27T01:43:21Z", "region": "us-east-1",
          "resources": ["i-abcd1111"],
          "detail": {
            "eventArn": "arn:aws:health:us-east-1::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED_1",
            "service": "EC2",
            "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
            "eventTypeCategory": "scheduledChange",
            "startTime": "Fri, 27 Jan 2023 06:00:00 GMT",
            "eventDescription": [{"language": "en_US", "latestDescription": "retirement"}],
            "affectedEntities": [{"entityValue": "i-abcd1111"}]
          }
        }"#;
        let notices = parse(body).expect("a real Health event parses");
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].kind, Kind::Termination);
        assert_eq!(notices[0].target, Target::Instance("i-abcd1111".into()));
        let expected = chrono::DateTime::parse_from_rfc3339("2023-01-27T06:00:00Z").unwrap();
        assert_eq!(notices[0].deadline, Some(SystemTime::from(expected)));
    }

    #[test]
    fn a_health_start_time_in_neither_format_names_the_field() {
        let body = br#"{"version": "0", "id": "x", "detail-type": "AWS Health Event",
          "source": "aws.health", "time": "2023-01-27T01:43:21Z",
          "detail": {"service": "EC2", "eventTypeCategory": "scheduledChange",
            "startTime": "soon", "affectedEntities": [{"entityValue": "i-1"}]}}"#;
        let e = parse(body).unwrap_err();
        assert_eq!(e.field, "detail.startTime");
    }
}
