//! Every error the service returns, mapped to its gRPC status code here and
//! nowhere else.

use crate::fleet::FleetError;
use crate::pricing::PriceError;
use crate::pricing::pod::PodError;
use tonic::Status;

impl From<FleetError> for Status {
    fn from(e: FleetError) -> Self {
        let message = e.to_string();
        match e {
            FleetError::UnknownGroup(_) => Status::not_found(message),
            FleetError::NotSynced(_) | FleetError::JournalUnavailable { .. } => {
                Status::unavailable(message)
            }
            FleetError::InvalidArgument { .. } | FleetError::NodeNotInGroup { .. } => {
                Status::invalid_argument(message)
            }
            FleetError::AboveMax { .. }
            | FleetError::BelowMin { .. }
            | FleetError::WouldDeleteNodes { .. } => Status::failed_precondition(message),
        }
    }
}

impl From<PriceError> for Status {
    fn from(e: PriceError) -> Self {
        Status::not_found(e.to_string())
    }
}

impl From<PodError> for Status {
    fn from(e: PodError) -> Self {
        Status::invalid_argument(format!("pod_bytes: {e}"))
    }
}

/// A request field that had to be set and was not, or was wrong.
pub fn bad_field(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}
