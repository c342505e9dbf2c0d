//! The operations port: /healthz, /readyz, /metrics, plus whatever routes the
//! cloud backend adds (the simulator's admin API).

use crate::fleet::Fleet;
use crate::metrics::Metrics;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

#[derive(Clone)]
struct Ops {
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
}

pub fn router(fleet: Arc<Fleet>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Ops { fleet, metrics })
}

/// Ready once the fleet has been synced with the cloud at least once: before
/// that, answers would claim empty groups.
async fn readyz(axum::extract::State(ops): axum::extract::State<Ops>) -> impl IntoResponse {
    match ops.fleet.snapshot().synced_at {
        Some(_) => (StatusCode::OK, "ready\n"),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no successful sync with the cloud yet\n",
        ),
    }
}

async fn metrics_text(axum::extract::State(ops): axum::extract::State<Ops>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.metrics.encode(),
    )
}
