//! TLS and mTLS for the gRPC port from PEM files, the same files CA's
//! cloud-config names (`cert`, `key`, `cacert`).

use crate::config::TlsConfig;
use std::path::Path;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
#[error("server.tls.{field} ({path}): {reason}")]
pub struct TlsError {
    pub field: &'static str,
    pub path: String,
    pub reason: String,
}

fn read_pem(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let err = |reason: String| TlsError {
        field,
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(err("not a PEM file".into()));
    }
    Ok(bytes)
}

/// Make ring the process's rustls crypto provider, once. tonic builds its
/// TLS configs from the process default, and with the cloud SDKs built in
/// rustls has two providers compiled (ring, aws-lc-rs) and cannot pick one
/// itself: it would panic on the first TLS handshake set-up. Idempotent.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only if another provider was installed first: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn server_config(tls: &TlsConfig) -> Result<ServerTlsConfig, TlsError> {
    install_crypto_provider();
    let cert = read_pem("cert", &tls.cert)?;
    let key = read_pem("key", &tls.key)?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.cacert {
        config = config.client_ca_root(Certificate::from_pem(read_pem("cacert", ca)?));
    }
    Ok(config)
}
