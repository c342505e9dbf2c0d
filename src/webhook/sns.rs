//! Amazon SNS HTTP(S) deliveries: every message's signature verified
//! (SignatureVersion 1, SHA1withRSA, and 2, SHA256withRSA) over the
//! documented string to sign, with the signing certificate fetched only over
//! https from an SNS host and cached; subscriptions confirmed only for
//! allow-listed topics; raw deliveries refused (they carry no signature).

use super::notice::{BadNotice, rfc3339};
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A message older than this is a replay, signed or not.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// Largest certificate accepted from a SigningCertURL.
const MAX_CERT_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, Deserialize)]
pub struct Envelope {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "MessageId")]
    pub message_id: String,
    #[serde(rename = "TopicArn")]
    pub topic_arn: String,
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    #[serde(rename = "SignatureVersion")]
    pub signature_version: String,
    #[serde(rename = "Signature")]
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(rename = "Subject", default)]
    pub subject: Option<String>,
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
    #[serde(rename = "Token", default)]
    pub token: Option<String>,
}

/// Why an SNS delivery is refused.
#[derive(Debug, thiserror::Error)]
pub enum SnsError {
    /// Not an SNS message at all: 400.
    #[error(transparent)]
    Malformed(#[from] BadNotice),
    /// Signed wrongly, by the wrong party, for the wrong topic, or too old: 403.
    #[error("{0}")]
    Refused(String),
    /// The certificate could not be had: 503 (SNS retries).
    #[error("signing certificate: {0}")]
    Unavailable(String),
}

impl Envelope {
    pub fn parse(body: &[u8]) -> Result<Self, SnsError> {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| BadNotice::new("body", format!("not JSON: {e}")))?;
        if v.get("Signature").is_none() && v.get("Type").is_none() {
            return Err(SnsError::Refused(
                "not an SNS envelope: raw message delivery carries no signature; turn raw delivery off for this subscription".into(),
            ));
        }
        serde_path_to_error::deserialize(v)
            .map_err(|e| BadNotice::new(e.path().to_string(), e.into_inner().to_string()).into())
    }

    /// The documented string to sign for the message's type.
    pub fn string_to_sign(&self) -> Result<String, SnsError> {
        let mut out = String::new();
        let mut field = |name: &str, value: &str| {
            out.push_str(name);
            out.push('\n');
            out.push_str(value);
            out.push('\n');
        };
        match self.kind.as_str() {
            "Notification" => {
                field("Message", &self.message);
                field("MessageId", &self.message_id);
                if let Some(s) = &self.subject {
                    field("Subject", s);
                }
                field("Timestamp", &self.timestamp);
                field("TopicArn", &self.topic_arn);
                field("Type", &self.kind);
            }
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                let need = |v: &Option<String>, name: &str| {
                    v.clone()
                        .ok_or_else(|| SnsError::from(BadNotice::new(name, "missing")))
                };
                let url = need(&self.subscribe_url, "SubscribeURL")?;
                let token = need(&self.token, "Token")?;
                field("Message", &self.message);
                field("MessageId", &self.message_id);
                field("SubscribeURL", &url);
                field("Timestamp", &self.timestamp);
                field("Token", &token);
                field("TopicArn", &self.topic_arn);
                field("Type", &self.kind);
            }
            other => {
                return Err(BadNotice::new(
                    "Type",
                    format!("{other:?} is not an SNS message type"),
                )
                .into());
            }
        }
        Ok(out)
    }
}

/// Whether `url` is https on an SNS host
/// (`^sns\.[a-zA-Z0-9-]{3,}\.amazonaws\.com(\.cn)?$`).
pub fn is_sns_url(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    if u.scheme() != "https" || u.port().is_some() || !u.username().is_empty() {
        return false;
    }
    let Some(host) = u.host_str() else {
        return false;
    };
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"));
    region
        .is_some_and(|r| r.len() >= 3 && r.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
}

/// Signing certificates by URL: fetched once over https, kept.
#[derive(Clone)]
pub struct Certificates {
    keys: Arc<Mutex<HashMap<String, Arc<Vec<u8>>>>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Certificates")
    }
}

impl Certificates {
    /// An error if no https-only client can be built: a default client
    /// would follow redirects and take plain http.
    pub fn new() -> Result<Self, String> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .https_only(true)
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the https client for SNS certificates: {e}"))?;
        Ok(Self {
            keys: Arc::default(),
            http,
        })
    }

    /// Puts a certificate (PEM) in the cache as if fetched from `url`.
    pub fn insert(&self, url: &str, pem: &[u8]) -> Result<(), String> {
        let key = public_key(pem)?;
        self.lock().insert(url.to_owned(), Arc::new(key));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Vec<u8>>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn key(&self, url: &str) -> Result<Arc<Vec<u8>>, SnsError> {
        if let Some(k) = self.lock().get(url) {
            return Ok(k.clone());
        }
        let unavailable = |e: String| SnsError::Unavailable(format!("{url}: {e}"));
        let response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unavailable(e.to_string()))?;
        let pem = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if pem.len() > MAX_CERT_BYTES {
            return Err(unavailable("larger than a certificate".into()));
        }
        let key = Arc::new(public_key(&pem).map_err(unavailable)?);
        self.lock().insert(url.to_owned(), key.clone());
        Ok(key)
    }

    /// Verifies `envelope` was signed by SNS for one of `topics`, within
    /// [`MAX_AGE`] of `now`.
    pub async fn verify(
        &self,
        envelope: &Envelope,
        topics: &[String],
        now: SystemTime,
    ) -> Result<(), SnsError> {
        if !topics.contains(&envelope.topic_arn) {
            return Err(SnsError::Refused(format!(
                "TopicArn {} is not in webhook.sns_topic_arns",
                envelope.topic_arn
            )));
        }
        let algorithm: &dyn signature::VerificationAlgorithm =
            match envelope.signature_version.as_str() {
                "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
                v => {
                    return Err(SnsError::Refused(format!(
                        "SignatureVersion {v:?} is not 1 or 2"
                    )));
                }
            };
        if !is_sns_url(&envelope.signing_cert_url) {
            return Err(SnsError::Refused(format!(
                "SigningCertURL {} is not https on an SNS host",
                envelope.signing_cert_url
            )));
        }
        let sent = rfc3339("Timestamp", &envelope.timestamp)?;
        if now.duration_since(sent).is_ok_and(|age| age > MAX_AGE) {
            return Err(SnsError::Refused(format!(
                "Timestamp {} is more than an hour old",
                envelope.timestamp
            )));
        }
        use base64::Engine as _;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(envelope.signature.as_bytes())
            .map_err(|e| BadNotice::new("Signature", format!("not base64: {e}")))?;
        let text = envelope.string_to_sign()?;
        let key = self.key(&envelope.signing_cert_url).await?;
        UnparsedPublicKey::new(algorithm, key.as_slice())
            .verify(text.as_bytes(), &sig)
            .map_err(|_| SnsError::Refused("Signature does not verify".into()))
    }

    /// Confirms a subscription: GET its SubscribeURL (https, SNS host).
    pub async fn confirm(&self, subscribe_url: &str) -> Result<(), String> {
        if !is_sns_url(subscribe_url) {
            return Err(format!(
                "SubscribeURL {subscribe_url} is not https on an SNS host"
            ));
        }
        self.http
            .get(subscribe_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The RSA public key (PKCS#1 DER) of a PEM certificate.
fn public_key(pem: &[u8]) -> Result<Vec<u8>, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(cert
        .tbs_certificate
        .subject_pki
        .subject_public_key
        .data
        .to_vec())
}
