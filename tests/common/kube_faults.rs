//! A fault layer for the local Kubernetes API server ([`super::kube_api`]):
//! what the real apiserver answers under stress, at seeded rates, with
//! latency. Off until [`Faults::set`].
//!
//! - 429 `TooManyRequests` with `details.retryAfterSeconds` 1, as API
//!   Priority and Fairness sheds a request: before any effect;
//! - 500 `InternalError` ("Internal error occurred: …", as
//!   `apierrors.NewInternalError` builds it, e.g. etcd unavailable): before
//!   any effect;
//! - 504 `Timeout` after a write took effect ("Timeout: request did not
//!   complete within the allotted timeout", as the apiserver's timeout
//!   filter answers with `apierrors.NewTimeoutError`; the handler goes on
//!   and its change stays);
//! - latency, uniform up to the maximum, before the request is handled.
#![allow(dead_code)] // the interruption bench uses the server without faults

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default)]
pub struct Rates {
    pub throttle: f64,
    pub server_error: f64,
    /// Writes only (POST, PUT, PATCH, DELETE).
    pub lost_answer: f64,
    pub latency: Duration,
}

/// Faults injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    pub throttled: u64,
    pub server_errors: u64,
    pub lost_answers: u64,
}

impl Injected {
    pub fn total(&self) -> u64 {
        self.throttled + self.server_errors + self.lost_answers
    }
}

#[derive(Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<Option<Drawn>>>,
    injected: Arc<Mutex<Injected>>,
}

struct Drawn {
    rates: Rates,
    rng: StdRng,
}

enum Kind {
    Throttle,
    ServerError,
    LostAnswer,
}

impl Faults {
    /// Injects at `rates` from now, drawn from `seed`.
    pub fn set(&self, rates: Rates, seed: u64) {
        *self.state.lock().unwrap() = Some(Drawn {
            rates,
            rng: StdRng::seed_from_u64(seed),
        });
    }

    pub fn clear(&self) {
        *self.state.lock().unwrap() = None;
    }

    pub fn injected(&self) -> Injected {
        *self.injected.lock().unwrap()
    }

    fn draw(&self, write: bool) -> (Duration, Option<Kind>) {
        let mut state = self.state.lock().unwrap();
        let Some(Drawn { rates, rng }) = state.as_mut() else {
            return (Duration::ZERO, None);
        };
        let latency = rates.latency.mul_f64(rng.random::<f64>());
        let kind = if rng.random_bool(rates.throttle) {
            Some(Kind::Throttle)
        } else if rng.random_bool(rates.server_error) {
            Some(Kind::ServerError)
        } else if write && rng.random_bool(rates.lost_answer) {
            Some(Kind::LostAnswer)
        } else {
            None
        };
        let mut injected = self.injected.lock().unwrap();
        match kind {
            Some(Kind::Throttle) => injected.throttled += 1,
            Some(Kind::ServerError) => injected.server_errors += 1,
            Some(Kind::LostAnswer) => injected.lost_answers += 1,
            None => {}
        }
        (latency, kind)
    }
}

fn status(code: u16, reason: &str, message: &str, details: serde_json::Value) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason,
        "details": details, "code": code,
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(body.to_string().into())
        .unwrap()
}

/// The axum middleware.
pub async fn layer(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let write = !matches!(request.method().as_str(), "GET" | "HEAD");
    let (latency, kind) = faults.draw(write);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match kind {
        None => next.run(request).await,
        Some(Kind::Throttle) => status(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            json!({"retryAfterSeconds": 1}),
        ),
        Some(Kind::ServerError) => status(
            500,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out",
            json!({"causes": [{"message": "etcdserver: request timed out"}]}),
        ),
        Some(Kind::LostAnswer) => {
            drop(next.run(request).await);
            status(
                504,
                "Timeout",
                "Timeout: request did not complete within the allotted timeout",
                json!({"retryAfterSeconds": 0}),
            )
        }
    }
}
