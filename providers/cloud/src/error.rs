//! Classified cloud errors: CA must be told out-of-capacity apart from the rest.

use serde::{Deserialize, Serialize};

/// What a failure means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// No capacity (spot pool empty, zone out of a type) or quota exhausted: CA
    /// backs off this group and scales another one (its error class 1).
    OutOfResources,
    /// Rate limited or temporarily unavailable: retry later, same request.
    Throttled,
    /// Anything else (bad request, permissions, …): CA's error class 99.
    Other,
}

/// A failure reported by a cloud, with the cloud's own code and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct CloudError {
    pub class: ErrorClass,
    /// The cloud's error code, e.g. `InsufficientInstanceCapacity`.
    pub code: String,
    pub message: String,
}

impl CloudError {
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn out_of_resources(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::OutOfResources, code, message)
    }

    pub fn throttled(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Throttled, code, message)
    }

    pub fn other(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Other, code, message)
    }
}
