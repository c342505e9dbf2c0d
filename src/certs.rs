//! `gpupool certs`: a CA and the server and client certificates for mTLS
//! between cluster-autoscaler and gpupool, for clusters without
//! cert-manager. The files are the ones the server's `server.tls` and CA's
//! externalgrpc cloud-config name (`cert`, `key`, `cacert`).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: exists; pass --force to replace it")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// What to make.
#[derive(Clone, Debug)]
pub struct Request {
    /// The server certificate's names: DNS names and IP addresses, as CA
    /// dials gpupool (the Service's names).
    pub server_names: Vec<String>,
    /// The client certificate's common name.
    pub client_name: String,
    pub valid_for: Duration,
}

/// The six files, PEM.
pub struct Bundle {
    pub ca_cert: String,
    pub ca_key: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

/// The file names in the output directory, and whether each is secret.
pub const FILES: [(&str, bool); 6] = [
    ("ca.crt", false),
    ("ca.key", true),
    ("server.crt", false),
    ("server.key", true),
    ("client.crt", false),
    ("client.key", true),
];

fn validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks behind this one.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + valid_for;
}

/// Makes a CA, and a server and a client certificate signed by it.
pub fn generate(request: &Request) -> Result<Bundle, CertError> {
    if request.server_names.is_empty() {
        return Err(CertError::Invalid {
            field: "dns",
            reason: "the server certificate needs at least one name".into(),
        });
    }
    if request.valid_for < Duration::from_secs(3600) {
        return Err(CertError::Invalid {
            field: "days",
            reason: "must be at least 1".into(),
        });
    }
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gpupool CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca_params, request.valid_for);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf = |names: Vec<String>, cn: &str, usage| -> Result<(String, String), CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        validity(&mut params, request.valid_for);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(
        request.server_names.clone(),
        &request.server_names[0],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_cert, client_key) = leaf(
        vec![request.client_name.clone()],
        &request.client_name,
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    Ok(Bundle {
        ca_cert: ca.pem(),
        ca_key: ca_key.serialize_pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    })
}

/// Writes the bundle into `dir` (made if missing): keys readable by the
/// owner only. Nothing is written when a file exists and `force` is off.
pub fn write(dir: &Path, bundle: &Bundle, force: bool) -> Result<Vec<PathBuf>, CertError> {
    let contents = [
        &bundle.ca_cert,
        &bundle.ca_key,
        &bundle.server_cert,
        &bundle.server_key,
        &bundle.client_cert,
        &bundle.client_key,
    ];
    if !force && let Some((name, _)) = FILES.iter().find(|(n, _)| dir.join(n).exists()) {
        return Err(CertError::Exists {
            path: dir.join(name),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    for ((name, secret), pem) in FILES.iter().zip(contents) {
        let path = dir.join(name);
        let io = |source| CertError::Write {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(if *secret { 0o600 } else { 0o644 });
        }
        let mut file = options.open(&path).map_err(io)?;
        file.write_all(pem.as_bytes()).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}
