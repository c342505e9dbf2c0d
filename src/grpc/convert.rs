//! Between the wire's shapes and ours: instants in either encoding, instance
//! views.

use super::status::bad_field;
use crate::fleet::{InstanceView, NodeState};
use crate::proto::{self, K8sTime, instance_status::InstanceState as WireState};
use gpupool_cloud::ErrorClass;
use std::time::{Duration, SystemTime};
use tonic::Status;

/// CA's instance error classes.
pub const OUT_OF_RESOURCES_CLASS: i32 = 1;
pub const OTHER_ERROR_CLASS: i32 = 99;

/// An instant from the new (Timestamp) field, else the old (meta/v1 Time) one.
fn instant(
    new: Option<&prost_types::Timestamp>,
    old: Option<&K8sTime>,
    names: (&str, &str),
) -> Result<SystemTime, Status> {
    let (seconds, nanos, field) = match (new, old) {
        (Some(t), _) => (t.seconds, t.nanos, names.0),
        (None, Some(t)) => (t.seconds, t.nanos, names.1),
        (None, None) => {
            return Err(bad_field(
                names.0,
                format!("missing (neither {} nor {} is set)", names.0, names.1),
            ));
        }
    };
    let seconds = u64::try_from(seconds).map_err(|_| bad_field(field, "before 1970"))?;
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| bad_field(field, "nanos out of range"))?;
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::new(seconds, nanos))
        .ok_or_else(|| bad_field(field, "out of range"))
}

/// One instant as CA may send it: (new Timestamp field, old meta/v1 Time field).
pub type EitherTime<'a> = (Option<&'a prost_types::Timestamp>, Option<&'a K8sTime>);

/// The interval a pricing request names, from whichever fields are set; an
/// interval that ends before it starts is refused.
pub fn interval(
    start: EitherTime<'_>,
    end: EitherTime<'_>,
) -> Result<(SystemTime, SystemTime), Status> {
    let start = instant(start.0, start.1, ("startTimestamp", "startTime"))?;
    let end = instant(end.0, end.1, ("endTimestamp", "endTime"))?;
    if end < start {
        return Err(bad_field("endTimestamp", "is before startTimestamp"));
    }
    Ok((start, end))
}

pub fn instance(view: &InstanceView) -> proto::Instance {
    let state = match view.state {
        NodeState::Creating => WireState::InstanceCreating,
        NodeState::Running => WireState::InstanceRunning,
        NodeState::Deleting => WireState::InstanceDeleting,
    };
    proto::Instance {
        id: view.provider_id.to_string(),
        status: Some(proto::InstanceStatus {
            instance_state: state as i32,
            error_info: view.error.as_ref().map(|e| proto::InstanceErrorInfo {
                error_code: e.code.clone(),
                error_message: e.message.clone(),
                instance_error_class: match e.class {
                    ErrorClass::OutOfResources => OUT_OF_RESOURCES_CLASS,
                    ErrorClass::Throttled | ErrorClass::Other => OTHER_ERROR_CLASS,
                },
            }),
        }),
    }
}
