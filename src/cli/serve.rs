//! `gpupool serve`.

use anyhow::Context;
use gpupool::config::{Config, TlsConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Config file; without it, the embedded example (simulated cloud, example GPU groups)
    #[arg(long, short, env = "GPUPOOL_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC address for cluster-autoscaler (overrides server.grpc_listen)
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// Address of /healthz, /readyz and /metrics (overrides server.http_listen)
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Simulated cloud: run simulated time this many times faster (overrides sim.time_scale)
    #[arg(long)]
    time_scale: Option<f64>,
    /// Simulated cloud: keep the fleet in this file across restarts (overrides sim.state_file)
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// TLS certificate (PEM) of the gRPC port; with --tls-key
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that client certificates must be signed by (mTLS)
    #[arg(long, requires = "tls_cert")]
    tls_cacert: Option<PathBuf>,
    /// Log format
    #[arg(long, value_enum, default_value = "text", env = "GPUPOOL_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let Args {
        config,
        grpc_listen,
        http_listen,
        time_scale,
        state_file,
        tls_cert,
        tls_key,
        tls_cacert,
        log_format: _,
    } = args;
    // Applied to the file at start and at every reload.
    let overrides = move |config: &mut Config| {
        if let Some(a) = grpc_listen {
            config.server.grpc_listen = a;
        }
        if let Some(a) = http_listen {
            config.server.http_listen = a;
        }
        if let Some(s) = time_scale {
            config.sim.time_scale = s;
        }
        if let Some(p) = &state_file {
            config.sim.state_file = Some(p.clone());
        }
        if let (Some(cert), Some(key)) = (&tls_cert, &tls_key) {
            config.server.tls = Some(TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                cacert: tls_cacert.clone(),
            });
        }
    };
    let source = gpupool::supervisor::Source {
        path: config,
        overrides: Box::new(overrides),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // Before anything listens, so a SIGTERM at any point after start-up
        // is a clean shutdown, never the default kill.
        let signals = shutdown_signal()?;
        let stop = async move {
            signals.await;
            tracing::info!("signal received; shutting down");
        };
        let clock: Arc<dyn gpupool_cloud::Clock> = Arc::new(gpupool_cloud::SystemClock);
        gpupool::supervisor::run(source, clock, stop).await?;
        tracing::info!("gpupool stopped");
        Ok(())
    })
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
