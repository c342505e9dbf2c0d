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

/// At most `max` requests handled at once; more are answered 503 with
/// `Retry-After: 1` at once, shed rather than queued, so a flood cannot
/// hold memory or starve the requests already in.
pub fn shed(router: Router, max: usize) -> Router {
    router.layer(
        tower::ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(
                |_: tower::BoxError| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, "1")],
                        "busy: too many requests at once (server.max_concurrent_requests); retry\n",
                    )
                },
            ))
            .load_shed()
            // Global: axum builds a handler's service again per connection
            // (and per request where the router has no state), and each
            // build of a plain `concurrency_limit` would get its own count.
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(max)),
    )
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use std::sync::Arc;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_past_the_limit_are_shed_with_503_and_retry_after_not_queued() {
        let entered = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (e, r) = (entered.clone(), release.clone());
        let app = super::shed(
            axum::Router::new().route(
                "/slow",
                axum::routing::get(move || async move {
                    e.notify_one();
                    r.notified().await;
                    "done"
                }),
            ),
            1,
        );
        let get = || Request::get("/slow").body(Body::empty()).unwrap();
        let first = tokio::spawn(app.clone().oneshot(get()));
        entered.notified().await;
        let shed = app.clone().oneshot(get()).await.unwrap();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        // The slot is back.
        let (e, r) = (entered.clone(), release.clone());
        let again = tokio::spawn(app.oneshot(get()));
        e.notified().await;
        r.notify_one();
        assert_eq!(again.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}
