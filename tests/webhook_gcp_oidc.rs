//! Pub/Sub push with authentication on `/notices/gcp/pubsub`: OIDC tokens
//! as Google signs them (made here with a throwaway key,
//! tests/fixtures/gcp/test-signing-key.pem), verified against a local JWKS
//! server in Google's shape, on the harness's manual clock: the claims
//! checked and refused with their reason, keys cached for max-age and
//! fetched again for an unknown key id at most once a minute, and the
//! `webhook.gcp_pubsub` config checked.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use gpupool::config::{Config, ConfigError};
use gpupool_cloud::Clock as _;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

const SECRET: &str = "a-test-secret-of-some-length";
const AUDIENCE: &str = "https://gpupool.example.com/notices/gcp/pubsub";
const ACCOUNT: &str = "pubsub-push@acme-prod.iam.gserviceaccount.com";
const KID: &str = "7d680d8c70d44e947133cbd499ebc1a61c3d5abc";
/// What the JWKS server says; Google's is some hours.
const MAX_AGE: u64 = 3600;
const ROUTE: &str = "/notices/gcp/pubsub";
const GROUP: &str = "
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    capacity_type: spot
";

/// The throwaway test key: signs tokens, and its public half is the JWKS.
struct Signer {
    key: RsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl Signer {
    fn load() -> Self {
        let pem = std::fs::read_to_string("tests/fixtures/gcp/test-signing-key.pem").unwrap();
        let body: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let der = STANDARD.decode(body).unwrap();
        Self {
            key: RsaKeyPair::from_pkcs8(&der).unwrap(),
            rng: ring::rand::SystemRandom::new(),
        }
    }

    /// A JWKS entry exactly as Google publishes one.
    fn jwk(&self, kid: &str) -> Value {
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(self.key.public());
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
               "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)})
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, signed.as_bytes(), &mut sig)
            .unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn token(&self, kid: &str, claims: &Value) -> String {
        self.sign(&json!({"alg": "RS256", "kid": kid, "typ": "JWT"}), claims)
    }
}

/// A local stand-in for `https://www.googleapis.com/oauth2/v3/certs`.
#[derive(Clone)]
struct Jwks {
    keys: Arc<Mutex<Vec<Value>>>,
    hits: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Jwks {
    async fn start(keys: Vec<Value>) -> (Self, String) {
        let jwks = Self {
            keys: Arc::new(Mutex::new(keys)),
            hits: Arc::default(),
            down: Arc::default(),
        };
        let state = jwks.clone();
        let app = axum::Router::new().route(
            "/oauth2/v3/certs",
            axum::routing::get(move || {
                let state = state.clone();
                async move { state.serve() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (jwks, format!("http://{addr}/oauth2/v3/certs"))
    }

    fn serve(&self) -> axum::response::Response {
        use axum::http::{HeaderValue, StatusCode, header};
        use axum::response::IntoResponse;
        let state = self;
        state.hits.fetch_add(1, Ordering::SeqCst);
        if state.down.load(Ordering::SeqCst) {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        let body = json!({"keys": *state.keys.lock().unwrap()}).to_string();
        let mut r = body.into_response();
        let cache = format!("public, max-age={MAX_AGE}, must-revalidate, no-transform");
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&cache).unwrap(),
        );
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        r
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

struct Hook {
    h: Harness,
    url: String,
    http: reqwest::Client,
    signer: Signer,
    jwks: Jwks,
    _dir: tempfile::TempDir,
}

fn webhook_yaml(secret: &std::path::Path, gcp_pubsub: &str) -> String {
    format!(
        "webhook:\n  listen: 127.0.0.1:0\n  secret_file: {}\n  per_source_per_second: 1000\n{gcp_pubsub}",
        secret.display()
    )
}

async fn start() -> Hook {
    let signer = Signer::load();
    let (jwks, jwks_url) = Jwks::start(vec![signer.jwk(KID)]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let gcp = format!(
        "  gcp_pubsub:\n    audience: {AUDIENCE}\n    service_accounts: [\"{ACCOUNT}\"]\n    jwks_url: {jwks_url}\n"
    );
    let h = Harness::start(&config_yaml(GROUP, &webhook_yaml(&secret, &gcp))).await;
    let (addr, _) = h.server.webhook.clone().unwrap();
    Hook {
        h,
        url: format!("http://{addr}"),
        http: reqwest::Client::new(),
        signer,
        jwks,
        _dir: dir,
    }
}

/// A Pub/Sub push of a `compute.instances.preempted` audit-log entry.
fn preempted(instance: &str) -> Value {
    let entry = json!({"protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "methodName": "compute.instances.preempted",
            "resourceName": format!("projects/acme-prod/zones/us-central1-a/instances/{instance}"),
            "serviceName": "compute.googleapis.com"},
        "resource": {"type": "gce_instance", "labels": {"instance_id": "4183052918350124313",
            "project_id": "acme-prod", "zone": "us-central1-a"}},
        "severity": "INFO", "timestamp": "2027-01-15T08:00:00.123456Z",
        "logName": "projects/acme-prod/logs/cloudaudit.googleapis.com%2Fsystem_event"});
    json!({"message": {"data": STANDARD.encode(entry.to_string()),
            "messageId": format!("m-{instance}"), "message_id": format!("m-{instance}"),
            "publishTime": "2027-01-15T08:00:01.5Z", "publish_time": "2027-01-15T08:00:01.5Z"},
        "subscription": "projects/acme-prod/subscriptions/gpupool-preemptions"})
}

impl Hook {
    fn now(&self) -> u64 {
        self.h
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// The claims Google puts in a push request's token, issued now.
    fn claims(&self) -> Value {
        let now = self.now();
        json!({"aud": AUDIENCE, "azp": "113774264463038321964", "email": ACCOUNT,
               "email_verified": true, "exp": now + 3600, "iat": now,
               "iss": "https://accounts.google.com", "sub": "113774264463038321964"})
    }

    fn claims_with(&self, change: impl FnOnce(&mut Value)) -> Value {
        let mut c = self.claims();
        change(&mut c);
        c
    }

    async fn post(&self, path: &str, authorization: Option<String>, body: &Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .body(body.to_string());
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn push(&self, token: &str, instance: &str) -> (u16, Value) {
        self.post(ROUTE, Some(format!("Bearer {token}")), &preempted(instance))
            .await
    }

    /// A push with `token` is refused with 401 and a reason containing `why`.
    async fn refused(&self, token: &str, why: &str) {
        let (status, body) = self.push(token, "gpu-refused").await;
        assert_eq!(status, 401, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(why), "{error:?} does not say {why:?}");
    }

    async fn metric(&self, line: &str) -> bool {
        let (_, metrics) = http(self.h.server.http_addr, "GET", "/metrics").await;
        metrics.lines().any(|l| l == line)
    }
}

#[tokio::test]
async fn a_google_signed_token_for_our_audience_and_account_is_accepted() {
    let w = start().await;
    let token = w.signer.token(KID, &w.claims());
    assert_eq!(
        w.push(&token, "gpu-1").await,
        (202, json!({"accepted": 1, "duplicates": 0}))
    );
    assert_eq!(w.jwks.hits(), 1, "the keys are fetched on first use");

    // The other spelling of Google's issuer; a token that expired 30 s ago
    // (within the 60 s leeway); the same notice again is a duplicate.
    let bare_iss = w.claims_with(|c| c["iss"] = json!("accounts.google.com"));
    let (status, _) = w.push(&w.signer.token(KID, &bare_iss), "gpu-2").await;
    assert_eq!(status, 202);
    let now = w.now();
    let just_expired = w.claims_with(|c| {
        c["iat"] = json!(now - 3630);
        c["exp"] = json!(now - 30);
    });
    let (status, body) = w.push(&w.signer.token(KID, &just_expired), "gpu-1").await;
    assert_eq!(
        (status, &body),
        (202, &json!({"accepted": 0, "duplicates": 1}))
    );
    assert_eq!(w.jwks.hits(), 1, "the cached keys serve the later tokens");

    // The shared secret still works on this route (a node agent, or a
    // subscription without authentication).
    let (status, _) = w
        .post(
            &format!("{ROUTE}?token={SECRET}"),
            None,
            &preempted("gpu-3"),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = w
        .post(ROUTE, Some(format!("Bearer {SECRET}")), &preempted("gpu-4"))
        .await;
    assert_eq!(status, 202);
    // Only this route takes the token.
    let (status, _) = w
        .post(
            "/notices/generic",
            Some(format!("Bearer {token}")),
            &json!({"node": "gpu-node-1"}),
        )
        .await;
    assert_eq!(status, 401);

    assert!(w.metric("gpupool_interruption_notices_total{source=\"gcp\",kind=\"interruption\",outcome=\"accepted\"} 4").await);
    w.h.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_reason() {
    let w = start().await;
    let now = w.now();
    let sign = |c: &Value| w.signer.token(KID, c);

    let expired = w.claims_with(|c| {
        c["iat"] = json!(now - 3661);
        c["exp"] = json!(now - 61);
    });
    w.refused(
        &sign(&expired),
        "OIDC token expired at 2027-01-15T07:58:59Z",
    )
    .await;
    let future = w.claims_with(|c| c["iat"] = json!(now + 3600));
    w.refused(&sign(&future), "not valid yet").await;
    let audience = w.claims_with(|c| c["aud"] = json!("https://other.example.com/push"));
    w.refused(
        &sign(&audience),
        "wrong audience \"https://other.example.com/push\"",
    )
    .await;
    let issuer = w.claims_with(|c| c["iss"] = json!("https://evil.example.com"));
    w.refused(&sign(&issuer), "wrong issuer").await;
    let account = w.claims_with(|c| c["email"] = json!("intruder@evil.iam.gserviceaccount.com"));
    w.refused(
        &sign(&account),
        "account \"intruder@evil.iam.gserviceaccount.com\" is not allowed",
    )
    .await;
    let unverified = w.claims_with(|c| c["email_verified"] = json!(false));
    w.refused(&sign(&unverified), "email_verified is not true")
        .await;
    let no_email = w.claims_with(|c| {
        c.as_object_mut().unwrap().remove("email");
    });
    w.refused(&sign(&no_email), "no email claim").await;

    // A valid token with its payload swapped for one that would pass.
    let valid = sign(&w.claims());
    let parts: Vec<&str> = valid.split('.').collect();
    let forged = w.claims_with(|c| c["exp"] = json!(now + 86_400));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        parts[2]
    );
    w.refused(&tampered, "bad signature").await;
    // The signature of another token.
    let other = sign(&w.claims_with(|c| c["sub"] = json!("1")));
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        other.rsplit('.').next().unwrap()
    );
    w.refused(&spliced, "bad signature").await;
    // alg confusion: HS256 or none with Google's key id.
    let hs256 = w
        .signer
        .sign(&json!({"alg": "HS256", "kid": KID}), &w.claims());
    w.refused(&hs256, "alg \"HS256\" is not RS256").await;
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        parts[1]
    );
    w.refused(&none, "alg \"none\" is not RS256").await;
    let no_kid = w.signer.sign(&json!({"alg": "RS256"}), &w.claims());
    w.refused(&no_kid, "no key id").await;
    w.refused("not.a.jwt", "malformed").await;

    // No credentials; a wrong shared secret is not taken for a token.
    let (status, body) = w.post(ROUTE, None, &preempted("gpu-x")).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("no credentials")
    );
    let (status, body) = w
        .post(
            ROUTE,
            Some("Bearer not-the-secret".into()),
            &preempted("gpu-x"),
        )
        .await;
    assert_eq!(
        (status, &body),
        (401, &json!({"error": "wrong credentials"}))
    );

    // Nothing was let in, and the keys were fetched once for all of it.
    assert_eq!(w.push(&valid, "gpu-ok").await.0, 202);
    assert_eq!(w.jwks.hits(), 1);
    w.h.stop().await;
}

#[tokio::test]
async fn an_unknown_key_id_fetches_the_keys_again_at_most_once_a_minute() {
    let w = start().await;
    assert_eq!(
        w.push(&w.signer.token(KID, &w.claims()), "gpu-1").await.0,
        202
    );
    assert_eq!(w.jwks.hits(), 1);
    // The keys were just fetched: an unknown key id does not fetch again.
    let rotated = "f1c2a1b9e5d04c8aa0e6a3c7b4d2e8f901234567";
    w.refused(&w.signer.token(rotated, &w.claims()), "unknown key id")
        .await;
    assert_eq!(w.jwks.hits(), 1);

    // A minute on: Google rotated? The keys are fetched again: still unknown.
    w.h.clock.advance(Duration::from_secs(60));
    w.refused(&w.signer.token(rotated, &w.claims()), "unknown key id")
        .await;
    assert_eq!(w.jwks.hits(), 2);
    // Within the minute, random key ids fetch nothing.
    for i in 0..20 {
        let kid = format!("attacker-{i}");
        w.refused(&w.signer.token(&kid, &w.claims()), "unknown key id")
            .await;
    }
    assert_eq!(w.jwks.hits(), 2);
    // Not even once the key is published: it is seen after the minute.
    w.jwks.keys.lock().unwrap().push(w.signer.jwk(rotated));
    w.refused(&w.signer.token(rotated, &w.claims()), "unknown key id")
        .await;
    assert_eq!(w.jwks.hits(), 2);
    w.h.clock.advance(Duration::from_secs(61));
    assert_eq!(
        w.push(&w.signer.token(rotated, &w.claims()), "gpu-2")
            .await
            .0,
        202
    );
    assert_eq!(w.jwks.hits(), 3);
    // Both keys now serve from the cache.
    assert_eq!(
        w.push(&w.signer.token(KID, &w.claims()), "gpu-3").await.0,
        202
    );
    assert_eq!(w.jwks.hits(), 3);

    // Unknown key ids arriving together: one fetch between them.
    w.h.clock.advance(Duration::from_secs(61));
    let tokens: Vec<String> = (0..10)
        .map(|i| w.signer.token(&format!("burst-{i}"), &w.claims()))
        .collect();
    let answers =
        futures_util::future::join_all(tokens.iter().map(|t| w.push(t, "gpu-burst"))).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 401),
        "{answers:?}"
    );
    assert_eq!(w.jwks.hits(), 4);
    w.h.stop().await;
}

#[tokio::test]
async fn keys_are_kept_for_max_age_and_an_outage_is_a_503() {
    let w = start().await;
    assert_eq!(
        w.push(&w.signer.token(KID, &w.claims()), "gpu-1").await.0,
        202
    );
    w.h.clock.advance(Duration::from_secs(MAX_AGE - 1));
    assert_eq!(
        w.push(&w.signer.token(KID, &w.claims()), "gpu-2").await.0,
        202
    );
    assert_eq!(w.jwks.hits(), 1, "kept for max-age");
    w.h.clock.advance(Duration::from_secs(2));
    assert_eq!(
        w.push(&w.signer.token(KID, &w.claims()), "gpu-3").await.0,
        202
    );
    assert_eq!(w.jwks.hits(), 2, "fetched again once max-age passed");

    // Google unreachable once the keys are stale: 503, Pub/Sub retries;
    // fetched again only after a minute.
    w.jwks.down.store(true, Ordering::SeqCst);
    w.h.clock.advance(Duration::from_secs(MAX_AGE + 1));
    let (status, body) = w.push(&w.signer.token(KID, &w.claims()), "gpu-4").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Google's signing keys are unavailable")
    );
    assert_eq!(
        w.push(&w.signer.token(KID, &w.claims()), "gpu-4").await.0,
        503
    );
    assert_eq!(w.jwks.hits(), 3);
    w.jwks.down.store(false, Ordering::SeqCst);
    w.h.clock.advance(Duration::from_secs(61));
    assert_eq!(
        w.push(&w.signer.token(KID, &w.claims()), "gpu-4").await.0,
        202
    );
    assert_eq!(w.jwks.hits(), 4);
    w.h.stop().await;
}

#[test]
fn the_gcp_pubsub_config_is_checked_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let config = |gcp: &str| Config::from_yaml(&config_yaml(GROUP, &webhook_yaml(&secret, gcp)));
    let invalid = |gcp: &str| match config(gcp).unwrap().validate(&[], None) {
        Err(ConfigError::Invalid { key, reason }) => (key, reason),
        other => panic!("{gcp}: {other:?}"),
    };

    // Google's keys by default; http only to a loopback address.
    let ok = config("  gcp_pubsub:\n    audience: https://a.example/push\n    service_accounts: [\"push@p.iam.gserviceaccount.com\"]\n").unwrap();
    let webhook = ok.webhook.as_ref().unwrap();
    let g = webhook.gcp_pubsub.as_ref().unwrap();
    assert_eq!(g.jwks_url, "https://www.googleapis.com/oauth2/v3/certs");
    let settings = webhook.settings().unwrap().gcp_pubsub.unwrap();
    assert_eq!(settings.audience, "https://a.example/push");
    assert_eq!(
        settings.service_accounts,
        ["push@p.iam.gserviceaccount.com"]
    );
    let local = "  gcp_pubsub:\n    audience: a\n    service_accounts: [\"push@p.iam.gserviceaccount.com\"]\n    jwks_url: http://127.0.0.1:9/certs\n";
    assert!(config(local).unwrap().webhook.unwrap().settings().is_ok());

    let (key, reason) = invalid(
        "  gcp_pubsub:\n    audience: a\n    service_accounts: [\"push@p.iam.gserviceaccount.com\"]\n    jwks_url: http://www.googleapis.com/oauth2/v3/certs\n",
    );
    assert_eq!(key, "webhook.gcp_pubsub.jwks_url");
    assert!(reason.contains("plain http"), "{reason}");
    let (key, _) = invalid(
        "  gcp_pubsub:\n    audience: a\n    service_accounts: [\"push@p.iam.gserviceaccount.com\"]\n    jwks_url: https://user:pw@keys.example/certs\n",
    );
    assert_eq!(key, "webhook.gcp_pubsub.jwks_url");
    let (key, reason) = invalid("  gcp_pubsub:\n    audience: a\n    service_accounts: []\n");
    assert_eq!(key, "webhook.gcp_pubsub.service_accounts");
    assert!(reason.contains("at least one"), "{reason}");
    let (key, _) = invalid("  gcp_pubsub:\n    audience: a\n    service_accounts: [pubsub-push]\n");
    assert_eq!(key, "webhook.gcp_pubsub.service_accounts[0]");
    let (key, _) = invalid(
        "  gcp_pubsub:\n    audience: \"\"\n    service_accounts: [\"push@p.iam.gserviceaccount.com\"]\n",
    );
    assert_eq!(key, "webhook.gcp_pubsub.audience");

    // Required keys and unknown ones: serde names them.
    for (gcp, says) in [
        (
            "  gcp_pubsub:\n    service_accounts: [\"push@p.iam.gserviceaccount.com\"]\n",
            "missing field `audience`",
        ),
        (
            "  gcp_pubsub:\n    audience: a\n",
            "missing field `service_accounts`",
        ),
        (
            "  gcp_pubsub:\n    audience: a\n    service_accounts: [\"push@p.iam.gserviceaccount.com\"]\n    issuer: x\n",
            "unknown field `issuer`",
        ),
    ] {
        match config(gcp) {
            Err(ConfigError::Parse(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{gcp}: {other:?}"),
        }
    }
}
