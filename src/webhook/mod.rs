//! The interruption webhook: each cloud's notices, authenticated, bounded in
//! size and rate, answered at once (202) and handed to the background as
//! [`Notice`]s.
//!
//! Routes (all `POST`):
//! - `/notices/aws/sns`: an SNS HTTPS subscription carrying EventBridge
//!   events; authenticated by SNS's own signature and the topic allow-list.
//! - `/notices/aws/eventbridge`: EventBridge API destinations.
//! - `/notices/azure/scheduled-events`: a node agent posting the metadata
//!   service's Scheduled Events document.
//! - `/notices/azure/eventgrid`: Event Grid (validation handshake included).
//! - `/notices/gcp/pubsub`: a Pub/Sub push subscription on a log sink.
//! - `/notices/generic`: gpupool's own format ([`generic`]).
//!
//! Authentication:
//! - SNS: SNS's own signature and the topic allow-list ([`sns`]); no secret.
//! - Every other route takes the shared secret: `Authorization: Bearer`,
//!   an HMAC of the body in `X-Gpupool-Signature`, or (for senders that can
//!   set neither: Event Grid, Pub/Sub push without authentication) `?token=`
//!   in the URL ([`auth`]).
//! - `/notices/gcp/pubsub` also takes, when `webhook.gcp_pubsub` is set, the
//!   Google-signed OIDC ID token of a push subscription with authentication
//!   (`Authorization: Bearer <JWT>`): RS256 by a key of Google's JWKS, `iss`
//!   Google, `aud` the configured audience, not expired (60 s leeway, by the
//!   injected clock), `email_verified` and `email` an allowed service account
//!   ([`oidc`]). The shared secret still works there too (a node agent). A
//!   refused token is a 401 naming the reason; Google's keys not to be had is
//!   a 503, so Pub/Sub delivers again.

pub mod auth;
pub mod aws;
pub mod azure;
pub mod gcp;
pub mod generic;
pub mod notice;
pub mod oidc;
pub mod sns;

pub use notice::{BadNotice, Kind, Notice, Source, Target};

use crate::metrics::Metrics;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request, State,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use gpupool_cloud::Clock;
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// A notice as queued for the engine, with when the webhook took it.
pub type Queued = (Notice, SystemTime);

/// How long a notice is remembered to drop its repeats.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(3600);
/// Most notices remembered; past it the oldest are forgotten first.
const DEDUPE_CAPACITY: usize = 100_000;

/// How the webhook is set up.
#[derive(Clone, Debug)]
pub struct Settings {
    pub secret: auth::Secret,
    pub sns_topic_arns: Vec<String>,
    pub body_limit: usize,
    pub per_source_per_second: NonZeroU32,
    /// Pub/Sub push with authentication: the OIDC tokens taken on
    /// `/notices/gcp/pubsub` besides the shared secret.
    pub gcp_pubsub: Option<oidc::PushAuth>,
}

/// The webhook's shared state.
pub struct Webhook {
    settings: Settings,
    certificates: sns::Certificates,
    pubsub_tokens: Option<oidc::Verifier>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    seen: Mutex<Seen>,
    tx: mpsc::Sender<Queued>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Seen {
    /// Notices by what they are about, and when first seen.
    events: HashMap<(Kind, Target), SystemTime>,
    /// SNS MessageIds, and when first seen.
    messages: HashMap<String, SystemTime>,
}

impl Seen {
    fn prune(&mut self, now: SystemTime) {
        let fresh = |t: &SystemTime| now.duration_since(*t).map_or(true, |a| a < DEDUPE_WINDOW);
        if self.events.len() + self.messages.len() > DEDUPE_CAPACITY / 2 {
            self.events.retain(|_, t| fresh(t));
            self.messages.retain(|_, t| fresh(t));
        }
        while self.events.len() > DEDUPE_CAPACITY {
            let oldest = self
                .events
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.events.remove(&k),
                None => break,
            };
        }
        while self.messages.len() > DEDUPE_CAPACITY {
            let oldest = self
                .messages
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.messages.remove(&k),
                None => break,
            };
        }
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").finish_non_exhaustive()
    }
}

/// What a request got.
#[derive(Debug)]
enum Refusal {
    TooFast,
    Denied(auth::Denied),
    Bad(BadNotice),
    Sns(sns::SnsError),
    Oidc(oidc::OidcError),
    Busy,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (code, message) = match &self {
            Refusal::TooFast => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests from this source".to_owned(),
            ),
            Refusal::Denied(d) => (StatusCode::UNAUTHORIZED, d.to_string()),
            Refusal::Bad(b) => (StatusCode::BAD_REQUEST, b.to_string()),
            Refusal::Sns(sns::SnsError::Malformed(b)) => (StatusCode::BAD_REQUEST, b.to_string()),
            Refusal::Sns(sns::SnsError::Refused(r)) => (StatusCode::FORBIDDEN, r.clone()),
            Refusal::Sns(e @ sns::SnsError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            Refusal::Oidc(e) if e.is_unavailable() => {
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            Refusal::Oidc(e) => (StatusCode::UNAUTHORIZED, e.to_string()),
            Refusal::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "notice queue full; retry".to_owned(),
            ),
        };
        let mut r = (code, axum::Json(json!({ "error": message }))).into_response();
        if matches!(self, Refusal::TooFast | Refusal::Busy) {
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        r
    }
}

impl Webhook {
    /// The webhook and the receiving end of its notices.
    pub fn new(
        settings: Settings,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Self>, mpsc::Receiver<Queued>), String> {
        let certificates = sns::Certificates::new()?;
        let pubsub_tokens = settings
            .gcp_pubsub
            .clone()
            .map(oidc::Verifier::new)
            .transpose()
            .map_err(|e| format!("webhook.gcp_pubsub: {e}"))?;
        let (tx, rx) = mpsc::channel(10_000);
        let quota = Quota::per_second(settings.per_source_per_second);
        Ok((
            Arc::new(Self {
                limiter: RateLimiter::keyed(quota),
                settings,
                certificates,
                pubsub_tokens,
                seen: Mutex::default(),
                tx,
                clock,
                metrics,
            }),
            rx,
        ))
    }

    /// The SNS signing certificates (tests put theirs here).
    pub fn certificates(&self) -> &sns::Certificates {
        &self.certificates
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/notices/aws/sns", post(aws_sns))
            .route("/notices/aws/eventbridge", post(aws_eventbridge))
            .route("/notices/azure/scheduled-events", post(azure_scheduled))
            .route("/notices/azure/eventgrid", post(azure_eventgrid))
            .route("/notices/gcp/pubsub", post(gcp_pubsub))
            .route("/notices/generic", post(generic_route))
            .layer(DefaultBodyLimit::max(self.settings.body_limit))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                observe_refusals,
            ))
            .with_state(self.clone())
    }

    fn admit(&self, peer: SocketAddr) -> Result<(), Refusal> {
        self.limiter
            .check_key(&peer.ip())
            .map_err(|_| Refusal::TooFast)
    }

    /// The shared secret, for every route but SNS; the request's body.
    fn authenticate<'a>(&self, a: &'a Admitted) -> Result<&'a [u8], Refusal> {
        let header = |name: &str| a.headers.get(name).and_then(|v| v.to_str().ok());
        let bearer = a.query.get("token").map(|t| format!("Bearer {t}"));
        let authorization = header("authorization").or(bearer.as_deref());
        self.settings
            .secret
            .check(authorization, header(auth::SIGNATURE_HEADER), &a.body)
            .map_err(Refusal::Denied)?;
        Ok(&a.body)
    }

    /// `/notices/gcp/pubsub`: the shared secret, or with `gcp_pubsub` set, a
    /// bearer JWT verified as the push subscription's OIDC token.
    async fn authenticate_pubsub<'a>(&self, a: &'a Admitted) -> Result<&'a [u8], Refusal> {
        let denied = match self.authenticate(a) {
            Ok(body) => return Ok(body),
            Err(denied) => denied,
        };
        let jwt = auth::bearer(a.headers.get("authorization").and_then(|v| v.to_str().ok()))
            .filter(|t| t.matches('.').count() == 2);
        let (Some(verifier), Some(jwt)) = (&self.pubsub_tokens, jwt) else {
            return Err(denied);
        };
        let account = verifier
            .verify(jwt, self.clock.now())
            .await
            .map_err(Refusal::Oidc)?;
        tracing::debug!(%account, "Pub/Sub push OIDC token verified");
        Ok(&a.body)
    }

    /// Queues the new notices; repeats of one already seen are dropped.
    /// All or nothing: with no room for every new one, none is queued nor
    /// remembered, so the sender's retry is not taken for a repeat.
    fn accept(&self, notices: Vec<Notice>) -> Result<Response, Refusal> {
        let now = self.clock.now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.prune(now);
        let (fresh, repeats): (Vec<Notice>, Vec<Notice>) = notices.into_iter().partition(|n| {
            !seen
                .events
                .get(&n.dedupe_key())
                .is_some_and(|t| now.duration_since(*t).map_or(true, |a| a < DEDUPE_WINDOW))
        });
        let permits = match fresh.len() {
            0 => None,
            n => Some(self.tx.try_reserve_many(n).map_err(|_| Refusal::Busy)?),
        };
        for n in &repeats {
            self.metrics
                .notice(n.source.label(), n.kind.label(), "duplicate");
        }
        let accepted = fresh.len();
        for (n, permit) in fresh.into_iter().zip(permits.into_iter().flatten()) {
            seen.events.insert(n.dedupe_key(), now);
            self.metrics
                .notice(n.source.label(), n.kind.label(), "accepted");
            permit.send((n, now));
        }
        let repeats = repeats.len();
        Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({ "accepted": accepted, "duplicates": repeats })),
        )
            .into_response())
    }

    /// An SNS message id already taken (SNS redelivers until it gets a 2xx).
    fn sns_repeat(&self, message_id: &str) -> bool {
        let now = self.clock.now();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.messages
            .get(message_id)
            .is_some_and(|t| now.duration_since(*t).map_or(true, |a| a < DEDUPE_WINDOW))
    }

    /// Remembers an SNS message once it was taken, not before: a message
    /// refused for a full queue must be taken when SNS redelivers it.
    fn sns_taken(&self, message_id: &str) {
        let now = self.clock.now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.prune(now);
        seen.messages.insert(message_id.to_owned(), now);
    }
}

type Hook = State<Arc<Webhook>>;

/// Every refused request is counted and logged (without its body), so a
/// sender whose notices are refused shows on gpupool's side too.
async fn observe_refusals(State(w): Hook, req: Request, next: axum::middleware::Next) -> Response {
    const ROUTES: [&str; 6] = [
        "/notices/aws/sns",
        "/notices/aws/eventbridge",
        "/notices/azure/scheduled-events",
        "/notices/azure/eventgrid",
        "/notices/gcp/pubsub",
        "/notices/generic",
    ];
    let path = req.uri().path().to_owned();
    let route = ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other");
    let response = next.run(req).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        w.metrics.interruptions.refused(route, status.as_u16());
        tracing::info!(route, status = status.as_u16(), "webhook request refused");
    }
    response
}

/// A request past the source's rate limit (checked before its body is
/// read), with what authentication needs.
struct Admitted {
    headers: HeaderMap,
    query: HashMap<String, String>,
    body: Bytes,
}

impl FromRequest<Arc<Webhook>> for Admitted {
    type Rejection = Response;

    async fn from_request(req: Request, w: &Arc<Webhook>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(&mut parts, w)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Err(refusal) = w.admit(peer) {
            // SNS retries only 5xx answers (and timeouts): a 429 would lose
            // the notice, a 503 has it delivered again.
            if parts.uri.path() == "/notices/aws/sns" {
                return Err(Refusal::Busy.into_response());
            }
            return Err(refusal.into_response());
        }
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(&mut parts, w)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let body = Bytes::from_request(Request::from_parts(parts, body), w)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            headers,
            query,
            body,
        })
    }
}

async fn aws_sns(State(w): Hook, a: Admitted) -> Result<Response, Refusal> {
    let (headers, body) = (&a.headers, &a.body);
    if headers
        .get("x-amz-sns-rawdelivery")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        return Err(Refusal::Sns(sns::SnsError::Refused(
            "raw message delivery carries no signature; turn it off for this subscription".into(),
        )));
    }
    let envelope = sns::Envelope::parse(body).map_err(Refusal::Sns)?;
    w.certificates
        .verify(&envelope, &w.settings.sns_topic_arns, w.clock.now())
        .await
        .map_err(Refusal::Sns)?;
    match envelope.kind.as_str() {
        "SubscriptionConfirmation" => {
            let url = envelope.subscribe_url.clone().unwrap_or_default();
            let certificates = w.certificates.clone();
            let topic = envelope.topic_arn.clone();
            tokio::spawn(async move {
                match certificates.confirm(&url).await {
                    Ok(()) => tracing::info!(topic = %topic, "SNS subscription confirmed"),
                    Err(e) => {
                        tracing::warn!(topic = %topic, error = %e, "SNS subscription not confirmed")
                    }
                }
            });
            Ok((
                StatusCode::OK,
                axum::Json(json!({ "confirming": envelope.topic_arn })),
            )
                .into_response())
        }
        "UnsubscribeConfirmation" => {
            tracing::warn!(topic = %envelope.topic_arn, "SNS subscription removed");
            Ok(StatusCode::OK.into_response())
        }
        _ => {
            if w.sns_repeat(&envelope.message_id) {
                return Ok((
                    StatusCode::OK,
                    axum::Json(json!({ "accepted": 0, "duplicates": 1 })),
                )
                    .into_response());
            }
            let notices = aws::parse(envelope.message.as_bytes()).map_err(|e| {
                Refusal::Bad(BadNotice::new(format!("Message.{}", e.field), e.reason))
            })?;
            let answer = w.accept(notices)?;
            w.sns_taken(&envelope.message_id);
            Ok(answer)
        }
    }
}

async fn aws_eventbridge(State(w): Hook, a: Admitted) -> Result<Response, Refusal> {
    let body = w.authenticate(&a)?;
    w.accept(aws::parse(body).map_err(Refusal::Bad)?)
}

async fn azure_scheduled(State(w): Hook, a: Admitted) -> Result<Response, Refusal> {
    let body = w.authenticate(&a)?;
    w.accept(azure::scheduled_events(body, w.clock.now()).map_err(Refusal::Bad)?)
}

async fn azure_eventgrid(State(w): Hook, a: Admitted) -> Result<Response, Refusal> {
    let body = w.authenticate(&a)?;
    match azure::event_grid(body, w.clock.now()).map_err(Refusal::Bad)? {
        azure::Delivery::Validate(code) => {
            tracing::info!("Event Grid subscription validated");
            Ok((
                StatusCode::OK,
                axum::Json(json!({ "validationResponse": code })),
            )
                .into_response())
        }
        azure::Delivery::Notices(n) => w.accept(n),
    }
}

async fn gcp_pubsub(State(w): Hook, a: Admitted) -> Result<Response, Refusal> {
    let body = w.authenticate_pubsub(&a).await?;
    w.accept(gcp::pubsub_push(body).map_err(Refusal::Bad)?)
}

async fn generic_route(State(w): Hook, a: Admitted) -> Result<Response, Refusal> {
    let body = w.authenticate(&a)?;
    w.accept(generic::parse(body, Source::Generic).map_err(Refusal::Bad)?)
}

/// Hands every notice to the interruption engine, in arrival order.
pub async fn consume(
    mut notices: mpsc::Receiver<Queued>,
    engine: Arc<crate::interrupt::Engine>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => return,
            n = notices.recv() => match n {
                Some(queued) => queued,
                None => return,
            },
        };
        let (n, received) = n;
        let outcome = engine.notice(&n, received);
        tracing::debug!(id = %n.id, outcome = ?outcome, "notice handled");
    }
}
