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

pub fn server_config(tls: &TlsConfig) -> Result<ServerTlsConfig, TlsError> {
    let cert = read_pem("cert", &tls.cert)?;
    let key = read_pem("key", &tls.key)?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.cacert {
        config = config.client_ca_root(Certificate::from_pem(read_pem("cacert", ca)?));
    }
    Ok(config)
}
