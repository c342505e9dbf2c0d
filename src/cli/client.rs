//! A gRPC client of a running gpupool, for the commands that ask it.

use anyhow::Context;
use gpupool::proto::cloud_provider_client::CloudProviderClient;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// How to reach the server securely.
#[derive(clap::Args, Debug, Clone)]
pub struct Tls {
    /// CA certificate (PEM) to verify the server with; turns TLS on
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Client key (PEM) for mTLS
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the address's host)
    #[arg(long)]
    server_name: Option<String>,
}

pub async fn connect(address: &str, tls: &Tls) -> anyhow::Result<CloudProviderClient<Channel>> {
    let scheme = if tls.cacert.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{address}"))
        .with_context(|| format!("--address {address:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if let Some(ca) = &tls.cacert {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("{}", p.display()));
        gpupool::tls::install_crypto_provider();
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        let host = tls.server_name.clone().unwrap_or_else(|| {
            address
                .rsplit_once(':')
                .map_or(address.to_owned(), |(h, _)| h.to_owned())
        });
        endpoint = endpoint.tls_config(config.domain_name(host))?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to gpupool at {address}"))?;
    Ok(CloudProviderClient::new(channel))
}

/// A runtime for one command's few calls.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
