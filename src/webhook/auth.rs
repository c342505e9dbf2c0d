//! The shared secret of the non-cloud-signed routes: `Authorization: Bearer
//! <secret>`, or `X-Gpupool-Signature: sha256=<hex HMAC-SHA256 of the body>`
//! for senders that sign rather than send the secret. Compared in constant
//! time.

use ring::hmac;
use subtle::ConstantTimeEq;

pub const SIGNATURE_HEADER: &str = "x-gpupool-signature";

#[derive(Clone)]
pub struct Secret {
    token: Vec<u8>,
    key: hmac::Key,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)") // never the value
    }
}

/// Why a request is not let in; the caller answers 401.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "no credentials: send Authorization: Bearer <token> or X-Gpupool-Signature: sha256=<hmac>"
    )]
    Missing,
    #[error("wrong credentials")]
    Wrong,
}

impl Secret {
    /// From the file's contents (surrounding whitespace trimmed); at least
    /// 16 bytes.
    pub fn new(contents: &str) -> Result<Self, String> {
        let token = contents.trim().as_bytes().to_vec();
        if token.len() < 16 {
            return Err("the secret must be at least 16 bytes".into());
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, &token);
        Ok(Self { token, key })
    }

    /// Checks one request's credentials against the body it came with.
    pub fn check(
        &self,
        authorization: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), Denied> {
        if let Some(sig) = signature {
            let mac = sig
                .trim()
                .strip_prefix("sha256=")
                .and_then(|h| hex::decode(h).ok())
                .ok_or(Denied::Wrong)?;
            return hmac::verify(&self.key, body, &mac).map_err(|_| Denied::Wrong);
        }
        let token = bearer(authorization).ok_or(Denied::Missing)?;
        if bool::from(token.as_bytes().ct_eq(&self.token)) {
            Ok(())
        } else {
            Err(Denied::Wrong)
        }
    }

    /// `sha256=<hex>` of `body`, as a sender computes it.
    pub fn sign(&self, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(hmac::sign(&self.key, body).as_ref())
        )
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is
/// case-insensitive (RFC 9110 §11.1): Azure sends `BEARER`.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    authorization
        .map(str::trim)
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}
