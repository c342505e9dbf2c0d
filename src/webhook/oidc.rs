//! Google-signed OpenID Connect ID tokens, as a Pub/Sub push subscription
//! with authentication sends them: `Authorization: Bearer <JWT>`.
//!
//! Checked as Google's "Authentication for push subscriptions" asks:
//! - an RS256 signature by one of the keys Google publishes as a JWKS
//!   (`https://www.googleapis.com/oauth2/v3/certs`), picked by the header's
//!   `kid`;
//! - `iss` is `https://accounts.google.com` or `accounts.google.com`;
//! - `aud` is the audience set on the subscription (by default its push
//!   endpoint URL): `webhook.gcp_pubsub.audience`;
//! - `exp` not passed and `iat`/`nbf` not ahead, with [`LEEWAY`] for clock
//!   skew, by the webhook's injected clock (tokens on push requests are up to
//!   an hour old);
//! - `email_verified` is true and `email` (the push service account) is in
//!   `webhook.gcp_pubsub.service_accounts`.
//!
//! The keys are cached by `kid` for the JWKS response's `Cache-Control:
//! max-age` (held to [`MIN_KEY_TTL`]..=[`MAX_KEY_TTL`]); a token with a `kid`
//! not in the cache fetches them again, at most once per
//! [`REFETCH_INTERVAL`], so random key ids cannot make us hammer Google.
//!
//! The JWT is decoded here (base64url, the header and claims with serde) and
//! its signature verified with ring, not with `jsonwebtoken`: that crate's
//! RSA needs either its `aws_lc_rs` or its `rust_crypto` (the `rsa` crate,
//! RUSTSEC-2023-0071) feature, a custom backend would be a process-wide
//! global, and its expiry check reads the system clock.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where Google publishes the keys that sign its ID tokens.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The `iss` of Google's ID tokens, either form.
pub const ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// Clock skew allowed on `exp`, `iat` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(60);
/// Shortest time the keys are kept, whatever the JWKS response says.
pub const MIN_KEY_TTL: Duration = Duration::from_secs(5 * 60);
/// Longest time the keys are kept, whatever the JWKS response says.
pub const MAX_KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Least time between two fetches of the keys (an unknown `kid`, or a fetch
/// that failed, does not fetch again sooner).
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Longest bearer token looked at (Google's are about 1 KB).
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Largest JWKS document read (Google's is about 2 KB).
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Longest an attacker-chosen value is echoed back in a refusal.
const SHOWN_CHARS: usize = 100;

/// Which tokens a push subscription's requests must carry.
#[derive(Clone, Debug)]
pub struct PushAuth {
    /// The subscription's audience (by default its push endpoint URL).
    pub audience: String,
    /// The push service accounts allowed (`email` claim).
    pub service_accounts: Vec<String>,
    /// Where the signing keys are published: checked with [`jwks_url`].
    pub jwks_url: reqwest::Url,
}

/// Why a token is refused (401), or the keys could not be had (503).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("OIDC token is malformed: {0}")]
    Malformed(String),
    #[error("OIDC token alg {0:?} is not RS256")]
    Algorithm(String),
    #[error("OIDC token has no key id (kid)")]
    NoKeyId,
    #[error("OIDC token has an unknown key id {0:?}: not among Google's signing keys")]
    UnknownKey(String),
    #[error("OIDC token has a bad signature")]
    BadSignature,
    #[error("OIDC token expired at {0}")]
    Expired(String),
    #[error("OIDC token is not valid yet: {0}")]
    NotYetValid(String),
    #[error("OIDC token has the wrong issuer {0:?}: not accounts.google.com")]
    Issuer(String),
    #[error("OIDC token has the wrong audience {0:?}: not webhook.gcp_pubsub.audience")]
    Audience(String),
    #[error("OIDC token's email_verified is not true")]
    EmailNotVerified,
    #[error("OIDC token has no email claim")]
    NoEmail,
    #[error(
        "OIDC token's account {0:?} is not allowed: not in webhook.gcp_pubsub.service_accounts"
    )]
    Account(String),
    /// Not the sender's fault: 503, and Pub/Sub delivers again later.
    #[error("Google's signing keys are unavailable: {0}")]
    Unavailable(String),
}

impl OidcError {
    /// The keys could not be had (as opposed to a token refused).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// `url` if it may serve the keys: https, or plain http on a loopback IP
/// address (a test's local server); no credentials in it.
pub fn jwks_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("{url:?} must not carry credentials"));
    }
    let host = u.host_str().unwrap_or_default();
    let loopback = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    match u.scheme() {
        "https" if !host.is_empty() => Ok(u),
        "http" if loopback => Ok(u),
        "http" => Err(format!(
            "{url:?} is plain http: use https (http only on a loopback address such as 127.0.0.1, for tests)"
        )),
        _ => Err(format!("{url:?} is not an https URL")),
    }
}

/// Verifies the ID tokens of one push subscription's requests.
pub struct Verifier {
    audience: String,
    accounts: Vec<String>,
    keys: Keys,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("audience", &self.audience)
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// An error if the URL is not allowed or no client without redirects
    /// (https-only unless the URL is loopback http) can be built.
    pub fn new(auth: PushAuth) -> Result<Self, String> {
        let url = jwks_url(auth.jwks_url.as_str())?;
        if auth.audience.trim().is_empty() {
            return Err("the audience must not be empty".into());
        }
        if auth.service_accounts.is_empty() {
            return Err("the service account allow-list must not be empty".into());
        }
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .https_only(url.scheme() == "https")
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the https client for Google's signing keys: {e}"))?;
        Ok(Self {
            audience: auth.audience,
            accounts: auth.service_accounts,
            keys: Keys {
                url,
                http,
                cache: Mutex::default(),
                fetching: tokio::sync::Mutex::new(()),
            },
        })
    }

    /// Checks `token` at `now`; the push service account it names.
    pub async fn verify(&self, token: &str, now: SystemTime) -> Result<String, OidcError> {
        let jwt = Jwt::parse(token)?;
        let key = self.keys.get(&jwt.kid, now).await?;
        key.verify(jwt.signed, &jwt.signature)?;
        check_claims(&jwt.claims()?, &self.audience, &self.accounts, now)
    }
}

/// A JWT split and its header read; the claims not yet trusted.
struct Jwt<'a> {
    kid: String,
    /// `header.payload`, what the signature covers.
    signed: &'a [u8],
    payload: &'a str,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Extensions the recipient must understand (RFC 7515 §4.1.11): none are.
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
}

/// `aud`: Google sends one string; RFC 7519 also allows a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl<'a> Jwt<'a> {
    fn parse(token: &'a str) -> Result<Self, OidcError> {
        let malformed = |why: &str| OidcError::Malformed(why.to_owned());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(malformed("longer than any Google ID token"));
        }
        let mut parts = token.splitn(4, '.');
        let (Some(head), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("not a JWT (header.payload.signature)"));
        };
        let header: Header = serde_json::from_slice(&b64("header", head)?)
            .map_err(|e| OidcError::Malformed(format!("header: {e}")))?;
        if header.crit.is_some() {
            return Err(malformed("header: crit extensions are not supported"));
        }
        if header.alg != "RS256" {
            return Err(OidcError::Algorithm(shown(&header.alg)));
        }
        let kid = header.kid.ok_or(OidcError::NoKeyId)?;
        Ok(Self {
            kid,
            signed: &token.as_bytes()[..head.len() + 1 + payload.len()],
            payload,
            signature: b64("signature", signature)?,
        })
    }

    /// The claims; only once the signature is verified.
    fn claims(&self) -> Result<Claims, OidcError> {
        serde_json::from_slice(&b64("payload", self.payload)?)
            .map_err(|e| OidcError::Malformed(format!("claims: {e}")))
    }
}

/// Base64url without padding, as JWS segments are (RFC 7515 §2).
fn b64(part: &str, s: &str) -> Result<Vec<u8>, OidcError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| OidcError::Malformed(format!("{part}: not base64url: {e}")))
}

/// An attacker-chosen value, cut short for a refusal message.
fn shown(s: &str) -> String {
    s.chars().take(SHOWN_CHARS).collect()
}

fn check_claims(
    claims: &Claims,
    audience: &str,
    accounts: &[String],
    now: SystemTime,
) -> Result<String, OidcError> {
    let iss = claims.iss.as_deref().unwrap_or_default();
    if !ISSUERS.contains(&iss) {
        return Err(OidcError::Issuer(shown(iss)));
    }
    match &claims.aud {
        Some(Audience::One(a)) if a == audience => {}
        Some(Audience::Many(all)) if all.iter().any(|a| a == audience) => {}
        Some(Audience::One(a)) => return Err(OidcError::Audience(shown(a))),
        Some(Audience::Many(all)) => return Err(OidcError::Audience(shown(&all.join(",")))),
        None => return Err(OidcError::Audience(String::new())),
    }
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let leeway = LEEWAY.as_secs();
    let exp = claims
        .exp
        .ok_or_else(|| OidcError::Malformed("claims: no exp".into()))?;
    if exp.saturating_add(leeway) < now_s {
        // exp < now: a time that formats.
        let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(exp));
        return Err(OidcError::Expired(at.to_string()));
    }
    for (name, t) in [("iat", claims.iat), ("nbf", claims.nbf)] {
        if let Some(t) = t
            && t > now_s.saturating_add(leeway)
        {
            return Err(OidcError::NotYetValid(format!(
                "{name} {t} is more than {leeway} s after now ({now_s})"
            )));
        }
    }
    let verified = match &claims.email_verified {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "true",
        _ => false,
    };
    if !verified {
        return Err(OidcError::EmailNotVerified);
    }
    let email = claims.email.as_deref().ok_or(OidcError::NoEmail)?;
    if !accounts.iter().any(|a| a.eq_ignore_ascii_case(email)) {
        return Err(OidcError::Account(shown(email)));
    }
    Ok(email.to_owned())
}

/// One RSA public key of the JWKS.
#[derive(Debug, PartialEq, Eq)]
struct RsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    fn verify(&self, signed: &[u8], signature: &[u8]) -> Result<(), OidcError> {
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, signed, signature)
        .map_err(|_| OidcError::BadSignature)
    }
}

/// The signing keys: fetched, cached by `kid`, fetched again when stale or
/// for an unknown `kid`, never more than once per [`REFETCH_INTERVAL`].
struct Keys {
    url: reqwest::Url,
    http: reqwest::Client,
    cache: Mutex<Cache>,
    /// Held while fetching: one fetch at a time; waiters then see its keys.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<RsaKey>>,
    /// Until when `keys` may be used.
    expires: Option<SystemTime>,
    /// When a fetch was last started, successful or not.
    last_fetch: Option<SystemTime>,
}

impl Cache {
    fn fresh(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| now < e)
    }

    fn get(&self, kid: &str, now: SystemTime) -> Option<Arc<RsaKey>> {
        self.keys.get(kid).filter(|_| self.fresh(now)).cloned()
    }

    fn may_fetch(&self, now: SystemTime) -> bool {
        // A clock that went back does not block fetches.
        self.last_fetch.is_none_or(|t| {
            now.duration_since(t)
                .map_or(true, |since| since >= REFETCH_INTERVAL)
        })
    }
}

impl Keys {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn get(&self, kid: &str, now: SystemTime) -> Result<Arc<RsaKey>, OidcError> {
        if let Some(k) = self.cache().get(kid, now) {
            return Ok(k);
        }
        let _one = self.fetching.lock().await;
        {
            let mut cache = self.cache();
            // Fetched by another request while this one waited.
            if let Some(k) = cache.get(kid, now) {
                return Ok(k);
            }
            if !cache.may_fetch(now) {
                return Err(if cache.fresh(now) {
                    OidcError::UnknownKey(shown(kid))
                } else {
                    OidcError::Unavailable("the last fetch failed less than a minute ago".into())
                });
            }
            cache.last_fetch = Some(now);
        }
        let (keys, ttl) = self.fetch().await.map_err(|e| {
            tracing::warn!(url = %self.url, error = %e, "Google's signing keys not fetched");
            OidcError::Unavailable(format!("{}: {e}", self.url))
        })?;
        tracing::info!(url = %self.url, keys = keys.len(), ttl = ?ttl, "Google's signing keys fetched");
        let mut cache = self.cache();
        cache.keys = keys;
        cache.expires = Some(now + ttl);
        cache
            .get(kid, now)
            .ok_or_else(|| OidcError::UnknownKey(shown(kid)))
    }

    async fn fetch(&self) -> Result<(HashMap<String, Arc<RsaKey>>, Duration), String> {
        let mut response = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        // A redirect is not followed, and is not an answer either.
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let ttl = key_ttl(response.headers());
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err("larger than a JWKS".into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("larger than a JWKS".into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((parse_jwks(&body)?, ttl))
    }
}

/// How long a JWKS response may be kept: its `Cache-Control: max-age` less
/// its `Age`, held to [`MIN_KEY_TTL`]..=[`MAX_KEY_TTL`]; without a max-age,
/// the least.
fn key_ttl(headers: &reqwest::header::HeaderMap) -> Duration {
    let max_age = headers
        .get_all(reqwest::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("max-age") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        });
    let age = headers
        .get(reqwest::header::AGE)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    max_age.map_or(MIN_KEY_TTL, |m| {
        Duration::from_secs(m.saturating_sub(age)).clamp(MIN_KEY_TTL, MAX_KEY_TTL)
    })
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: String,
    n: String,
    e: String,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
}

/// The RS256 signing keys of a JWKS document, by `kid`; other keys (EC,
/// encryption, another alg, too short for ring) are skipped.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<RsaKey>>, String> {
    // Google's n and e are unpadded; padding is tolerated.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if jwk.kty != "RSA"
            || jwk.alg.as_deref().is_some_and(|a| a != "RS256")
            || jwk.usage.as_deref().is_some_and(|u| u != "sig")
        {
            continue;
        }
        let (Ok(n), Ok(e)) = (LENIENT.decode(&jwk.n), LENIENT.decode(&jwk.e)) else {
            continue;
        };
        let n = without_leading_zeros(n);
        let e = without_leading_zeros(e);
        // ring verifies 2048- to 8192-bit moduli.
        if !(256..=1024).contains(&n.len()) || e.is_empty() {
            continue;
        }
        keys.insert(jwk.kid, Arc::new(RsaKey { n, e }));
    }
    if keys.is_empty() {
        return Err("no RS256 signing key in the JWKS".into());
    }
    Ok(keys)
}

fn without_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const NOW: u64 = 1_800_000_000;
    const AUD: &str = "https://gpupool.example.com/notices/gcp/pubsub";
    const SA: &str = "pubsub-push@acme.iam.gserviceaccount.com";

    fn claims() -> Claims {
        Claims {
            iss: Some("https://accounts.google.com".into()),
            aud: Some(Audience::One(AUD.into())),
            exp: Some(NOW + 3600),
            iat: Some(NOW),
            nbf: None,
            email: Some(SA.into()),
            email_verified: Some(serde_json::Value::Bool(true)),
        }
    }

    fn check(c: &Claims) -> Result<String, OidcError> {
        check_claims(c, AUD, &[SA.to_owned()], at(NOW))
    }

    #[test]
    fn claims_are_checked_with_leeway_and_the_injected_time() {
        assert_eq!(check(&claims()), Ok(SA.to_owned()));
        let mut c = claims();
        c.iss = Some("accounts.google.com".into());
        c.aud = Some(Audience::Many(vec!["other".into(), AUD.into()]));
        c.email_verified = Some(serde_json::json!("true"));
        c.email = Some(SA.to_uppercase());
        assert!(check(&c).is_ok());

        // Expired 60 s ago: within leeway; 61 s: not.
        c.exp = Some(NOW - 60);
        assert!(check(&c).is_ok());
        c.exp = Some(NOW - 61);
        assert_eq!(
            check(&c),
            Err(OidcError::Expired("2027-01-15T07:58:59Z".into()))
        );
        // Out-of-range times do not panic.
        c.exp = Some(u64::MAX);
        c.iat = Some(u64::MAX);
        assert!(matches!(check(&c), Err(OidcError::NotYetValid(_))));
        c.iat = Some(NOW + 60);
        c.nbf = Some(NOW + 61);
        assert!(matches!(check(&c), Err(OidcError::NotYetValid(m)) if m.starts_with("nbf")));
        c.exp = Some(0);
        assert_eq!(
            check(&c),
            Err(OidcError::Expired("1970-01-01T00:00:00Z".into()))
        );
        c.exp = None;
        assert!(matches!(check(&c), Err(OidcError::Malformed(_))));
    }

    #[test]
    fn each_claim_refusal_names_its_reason() {
        let refused = |f: &dyn Fn(&mut Claims)| {
            let mut c = claims();
            f(&mut c);
            check(&c).unwrap_err()
        };
        assert_eq!(
            refused(&|c| c.iss = Some("https://evil.example".into())),
            OidcError::Issuer("https://evil.example".into())
        );
        assert_eq!(refused(&|c| c.iss = None), OidcError::Issuer(String::new()));
        assert_eq!(
            refused(&|c| c.aud = Some(Audience::One("https://other".into()))),
            OidcError::Audience("https://other".into())
        );
        assert_eq!(
            refused(&|c| c.aud = Some(Audience::Many(vec!["a".into(), "b".into()]))),
            OidcError::Audience("a,b".into())
        );
        assert_eq!(
            refused(&|c| c.email_verified = Some(serde_json::Value::Bool(false))),
            OidcError::EmailNotVerified
        );
        assert_eq!(
            refused(&|c| c.email_verified = None),
            OidcError::EmailNotVerified
        );
        assert_eq!(refused(&|c| c.email = None), OidcError::NoEmail);
        let long = format!("{}@evil.example", "x".repeat(500));
        let err = refused(&|c| c.email = Some(long.clone()));
        assert_eq!(err, OidcError::Account("x".repeat(SHOWN_CHARS)));
        assert!(err.to_string().contains("not allowed"));
    }

    #[test]
    fn malformed_tokens_are_refused_never_panicking() {
        let header = |h: &str| URL_SAFE_NO_PAD.encode(h);
        let rs256 = header(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
        let cases = [
            ("", "not a JWT"),
            ("abc", "not a JWT"),
            ("a.b", "not a JWT"),
            ("a.b.c.d", "not a JWT"),
            ("..", "header: EOF"),
            ("%%%.e30.c2ln", "header: not base64url"),
            ("e30.e30.c2ln", "header: missing field `alg`"),
            (&format!("{rs256}.e30.c2ln="), "signature: not base64url"),
        ];
        for (token, why) in cases {
            match Jwt::parse(token) {
                Err(OidcError::Malformed(m)) => assert!(m.starts_with(why), "{token:?}: {m}"),
                Err(e) => panic!("{token:?}: {e}"),
                Ok(_) => panic!("{token:?} parsed"),
            }
        }
        let none = format!("{}.e30.", header(r#"{"alg":"none"}"#));
        assert_eq!(
            Jwt::parse(&none).err(),
            Some(OidcError::Algorithm("none".into()))
        );
        let hs = format!("{}.e30.c2ln", header(r#"{"alg":"HS256","kid":"k1"}"#));
        assert_eq!(
            Jwt::parse(&hs).err(),
            Some(OidcError::Algorithm("HS256".into()))
        );
        let no_kid = format!("{}.e30.c2ln", header(r#"{"alg":"RS256"}"#));
        assert_eq!(Jwt::parse(&no_kid).err(), Some(OidcError::NoKeyId));
        let crit = format!(
            "{}.e30.c2ln",
            header(r#"{"alg":"RS256","kid":"k","crit":["exp"]}"#)
        );
        assert!(matches!(Jwt::parse(&crit), Err(OidcError::Malformed(_))));
        let long = format!("{rs256}.{}.c2ln", "A".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(Jwt::parse(&long), Err(OidcError::Malformed(_))));

        // Standard base64 ('+', '/', '=') is not base64url.
        let std_header = general_purpose::STANDARD.encode(r#"{"alg":"RS256","kid":"??>>"}"#);
        assert!(std_header.contains('/'));
        assert!(matches!(
            Jwt::parse(&format!("{std_header}.e30.c2ln")),
            Err(OidcError::Malformed(m)) if m.starts_with("header: not base64url")
        ));

        let good = format!("{rs256}.e30.c2ln");
        let ok = Jwt::parse(&good).unwrap();
        assert_eq!(ok.kid, "k1");
        assert_eq!(ok.signed, format!("{rs256}.e30").as_bytes());
        assert_eq!(ok.signature, b"sig");
        // Claims that are not JSON are malformed.
        assert!(ok.claims().is_ok());
        let not_json = format!("{rs256}.bm90IGpzb24.c2ln");
        let bad = Jwt::parse(&not_json).unwrap();
        assert!(matches!(bad.claims(), Err(OidcError::Malformed(m)) if m.starts_with("claims:")));
    }

    #[test]
    fn the_jwks_url_is_https_or_loopback_http() {
        assert!(jwks_url(GOOGLE_JWKS_URL).is_ok());
        assert!(jwks_url("http://127.0.0.1:8080/certs").is_ok());
        assert!(jwks_url("http://[::1]:8080/certs").is_ok());
        for bad in [
            "http://www.googleapis.com/oauth2/v3/certs",
            "http://localhost/certs",
            "http://10.0.0.1/certs",
            "ftp://127.0.0.1/certs",
            "https://user:pw@www.googleapis.com/oauth2/v3/certs",
            "certs",
        ] {
            assert!(jwks_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_kept_for_max_age_within_bounds() {
        use reqwest::header::{AGE, CACHE_CONTROL, HeaderMap, HeaderValue};
        let ttl = |cc: Option<&'static str>, age: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(cc) = cc {
                h.insert(CACHE_CONTROL, HeaderValue::from_static(cc));
            }
            if let Some(age) = age {
                h.insert(AGE, HeaderValue::from_static(age));
            }
            key_ttl(&h)
        };
        let secs = Duration::from_secs;
        assert_eq!(
            ttl(
                Some("public, max-age=21074, must-revalidate, no-transform"),
                None
            ),
            secs(21074)
        );
        assert_eq!(ttl(Some("public, Max-Age=3600"), Some("600")), secs(3000));
        assert_eq!(ttl(Some("max-age=10"), None), MIN_KEY_TTL);
        assert_eq!(ttl(Some("max-age=31536000"), None), MAX_KEY_TTL);
        assert_eq!(ttl(Some("max-age=3600"), Some("7200")), MIN_KEY_TTL);
        assert_eq!(ttl(Some("no-store"), None), MIN_KEY_TTL);
        assert_eq!(ttl(Some("max-age=soon"), None), MIN_KEY_TTL);
        assert_eq!(ttl(None, None), MIN_KEY_TTL);
    }

    #[test]
    fn only_rs256_signing_keys_are_taken_from_the_jwks() {
        let n = URL_SAFE_NO_PAD.encode([0xc5; 256]);
        let padded_n = general_purpose::URL_SAFE.encode([[0u8].as_slice(), &[0xc5; 256]].concat());
        let body = serde_json::json!({"keys": [
            {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "a", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "b", "n": padded_n, "e": "AQAB"},
            {"kty": "RSA", "alg": "RS512", "kid": "c", "n": n, "e": "AQAB"},
            {"kty": "RSA", "use": "enc", "kid": "d", "n": n, "e": "AQAB"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "f", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "g", "n": "%%%", "e": "AQAB"},
            "not a key"
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
        assert_eq!(keys["a"], keys["b"], "leading zero and padding dropped");
        assert_eq!(keys["a"].e, [1, 0, 1]);
        assert!(parse_jwks(br#"{"keys": []}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
        assert!(keys["a"].verify(b"x", b"y").is_err());
    }
}
