//! `gpupool serve` around the server: the ports bound once, leader election
//! (a standby serves only its operations port, not Ready), and the config
//! file (with the TLS files it names) reloaded on change without a restart.
//!
//! A reload is a new server generation on the same ports: the new config is
//! checked offline and its cloud connected first, so a bad file changes
//! nothing; then the running server stops as on SIGTERM (calls under way
//! finish, cloud work is awaited, bounded) and the new one starts. If the
//! new one cannot start, the old config is started again.

use crate::cluster::leader::{Election, Ended};
use crate::config::{CloudKind, Config, ConfigError};
use crate::metrics::ProcessMetrics;
use crate::server::{Backend, Listeners, ServeError, Server};
use gpupool_cloud::Clock;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(transparent)]
    Election(#[from] crate::cluster::leader::ElectionError),
    /// Stops the process: work begun as leader must not go on beside the
    /// new leader's.
    #[error("lost the leader lease {lease}: {why}")]
    LeaseLost { lease: String, why: String },
}

/// Where the config comes from: a file (watched) or the embedded example,
/// and the command line's overrides, applied again at each reload.
pub struct Source {
    pub path: Option<PathBuf>,
    pub overrides: Box<dyn Fn(&mut Config) + Send + Sync>,
}

impl Source {
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::from_file(path)?,
            None => Config::default_example(),
        };
        (self.overrides)(&mut config);
        Ok(config)
    }

    /// The files whose change means a reload: the config file and the TLS
    /// files it names (cert-manager renews those in place).
    fn watched(&self, config: &Config) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.path.iter().cloned().collect();
        if let Some(tls) = &config.server.tls {
            files.push(tls.cert.clone());
            files.push(tls.key.clone());
            files.extend(tls.cacert.clone());
        }
        files
    }
}

/// The watched files' contents, compared whole (a kubelet swaps a
/// ConfigMap volume's files atomically through a symlink, which file
/// events on the path itself miss).
#[derive(PartialEq, Eq)]
struct Fingerprint(Vec<Option<Vec<u8>>>);

impl Fingerprint {
    fn read(files: &[PathBuf]) -> Self {
        Self(files.iter().map(|f| std::fs::read(f).ok()).collect())
    }
}

/// A running server and what started it.
struct Generation {
    config: Config,
    backend: Backend,
    server: Server,
}

/// Serves until `stop` resolves (SIGTERM), or until the leader lease is
/// lost (an error: the process must exit).
pub async fn run(
    source: Source,
    clock: Arc<dyn Clock>,
    stop: impl Future<Output = ()>,
) -> Result<(), SupervisorError> {
    let config = source.load()?;
    let listeners = Listeners::bind(&config)?;
    let process = ProcessMetrics::default();
    let election = match &config.kubernetes {
        Some(k) if k.leader_election.enabled => {
            let client = crate::cluster::connect(k).await?;
            Some(Election::new(client, &k.namespace, &k.leader_election).await?)
        }
        _ => None,
    };
    let min_hold = config
        .kubernetes
        .as_ref()
        .map_or(Duration::ZERO, |k| k.leader_election.lease_duration * 2);
    tokio::pin!(stop);
    let mut config = config;
    // The last term's backend and the config it was made for.
    let mut backend: Option<(Config, Backend)> = None;
    loop {
        if let Some(e) = &election {
            process.set_leader(false);
            println!(
                "gpupool standing by for lease {} as {}; ops on http://{}",
                e.lease(),
                e.identity(),
                listeners
                    .http_addr()
                    .map_or_else(|| "?".to_owned(), |a| a.to_string())
            );
            let standby = Standby::start(&listeners, &process, e.lease().to_owned())?;
            let acquired = tokio::select! {
                () = e.acquire() => true,
                () = &mut stop => false,
            };
            standby.stop().await;
            if !acquired {
                return Ok(());
            }
            tracing::info!(lease = %e.lease(), identity = %e.identity(), "leading");
        }
        process.set_leader(true);
        // A new term reads the file again: it may have changed meanwhile.
        if election.is_some() {
            match source.load() {
                Ok(c) => config = c,
                Err(e) => {
                    tracing::error!(error = %e, "config file no longer valid; serving the last good one")
                }
            }
        }
        let kept = backend
            .take()
            .filter(|(c, _)| same_sim(c, &config))
            .map(|(_, b)| b);
        let generation =
            match start(config.clone(), kept, clock.clone(), &listeners, &process).await {
                Ok(g) => g,
                Err(e) => {
                    if let Some(el) = &election {
                        el.release().await;
                    }
                    return Err(e);
                }
            };
        announce(&generation);
        let mut generation = Some(generation);
        let hold = async {
            match &election {
                Some(e) => e.hold(min_hold).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(hold);
        let mut files = source.watched(&config);
        let mut seen = Fingerprint::read(&files);
        let period = config.server.config_reload_interval;
        let mut tick = tokio::time::interval(if period.is_zero() {
            Duration::from_secs(3600)
        } else {
            period
        });
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let ended = loop {
            tokio::select! {
                () = &mut stop => break None,
                ended = &mut hold => break Some(ended),
                _ = tick.tick(), if !period.is_zero() => {
                    let now = Fingerprint::read(&files);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    let Some(running) = generation.take() else { continue };
                    let next = reload(&source, running, &listeners, &process).await?;
                    announce(&next);
                    files = source.watched(&next.config);
                    seen = Fingerprint::read(&files);
                    generation = Some(next);
                }
            }
        };
        if let (Some(Ended::Lost(why)), Some(e)) = (&ended, &election) {
            // No graceful stop: its wait for cloud work would let that work
            // go on beside the new leader's. The process exits.
            e.abandon();
            return Err(SupervisorError::LeaseLost {
                lease: e.lease().to_owned(),
                why: why.clone(),
            });
        }
        if let Some(g) = generation.take() {
            g.server.shutdown().await;
            backend = Some((g.config.clone(), g.backend));
            config = g.config;
        }
        match (ended, &election) {
            (None, Some(e)) => {
                e.release().await;
                return Ok(());
            }
            (None, None) => return Ok(()),
            (Some(Ended::Lost(_)), Some(_)) => unreachable!("returned above"),
            (Some(Ended::Handover), Some(e)) => {
                tracing::info!(lease = %e.lease(), "this replica's node is cordoned: handing the lease over");
                e.release().await;
                // Long enough for a standby to take it; without one, this
                // replica takes it back.
                process.set_leader(false);
                let standby = Standby::start(&listeners, &process, e.lease().to_owned())?;
                let stopped = tokio::select! {
                    () = tokio::time::sleep(min_hold) => false,
                    () = &mut stop => true,
                };
                standby.stop().await;
                if stopped {
                    return Ok(());
                }
            }
            (Some(_), None) => unreachable!("no election, no end of a term"),
        }
    }
}

fn announce(g: &Generation) {
    println!(
        "gpupool serving externalgrpc on {} ({}), ops on http://{}",
        g.server.grpc_addr,
        if g.config.server.tls.is_some() {
            "TLS"
        } else {
            "plaintext"
        },
        g.server.http_addr
    );
}

/// Starts a server for `config`, on `backend` when it can be kept.
async fn start(
    config: Config,
    backend: Option<Backend>,
    clock: Arc<dyn Clock>,
    listeners: &Listeners,
    process: &ProcessMetrics,
) -> Result<Generation, SupervisorError> {
    let mut config = config;
    let backend = match backend {
        Some(b) => b,
        None => crate::backend::from_config(&mut config, clock).await?,
    };
    let server = crate::server::start_on(&config, backend.clone(), listeners, process).await?;
    Ok(Generation {
        config,
        backend,
        server,
    })
}

/// Whether a backend made for `old` serves `new` as is: only the
/// simulator's, whose fleet lives in it, with the same settings. A real
/// cloud's backend is made again, so that its discovery runs again.
fn same_sim(old: &Config, new: &Config) -> bool {
    old.cloud == CloudKind::Sim && new.cloud == CloudKind::Sim && old.sim == new.sim
}

/// Replaces `running` with a server for the file as it is now, or keeps it.
async fn reload(
    source: &Source,
    running: Generation,
    listeners: &Listeners,
    process: &ProcessMetrics,
) -> Result<Generation, SupervisorError> {
    let rejected = |why: String, running: Generation| {
        tracing::error!(error = %why, "config reload rejected; serving the running config");
        process.reloaded("rejected");
        Ok(running)
    };
    let mut next = match source.load() {
        Ok(c) => c,
        Err(e) => return rejected(e.to_string(), running),
    };
    if let Err(e) = crate::backend::offline_specs(&next) {
        return rejected(e.to_string(), running);
    }
    if let Some(why) = needs_restart(&running.config, &next) {
        return rejected(format!("{why} changed: that takes a restart"), running);
    }
    let backend = if same_sim(&running.config, &next) {
        running.backend.clone()
    } else {
        match crate::backend::from_config(&mut next, running.backend.clock.clone()).await {
            Ok(b) => b,
            Err(e) => return rejected(e.to_string(), running),
        }
    };
    let Generation {
        config: old_config,
        backend: old_backend,
        server,
    } = running;
    server.shutdown().await;
    match crate::server::start_on(&next, backend.clone(), listeners, process).await {
        Ok(server) => {
            tracing::info!(groups = next.node_groups.len(), "config reloaded");
            process.reloaded("applied");
            Ok(Generation {
                config: next,
                backend,
                server,
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload rejected when starting; starting the previous config again");
            process.reloaded("rejected");
            let server =
                crate::server::start_on(&old_config, old_backend.clone(), listeners, process)
                    .await?;
            Ok(Generation {
                config: old_config,
                backend: old_backend,
                server,
            })
        }
    }
}

/// What a reload cannot change: the bound ports and the Lease.
fn needs_restart(old: &Config, new: &Config) -> Option<&'static str> {
    if old.server.grpc_listen != new.server.grpc_listen {
        return Some("server.grpc_listen");
    }
    if old.server.http_listen != new.server.http_listen {
        return Some("server.http_listen");
    }
    if old.webhook.as_ref().map(|w| w.listen) != new.webhook.as_ref().map(|w| w.listen) {
        return Some("webhook (its port)");
    }
    let election = |c: &Config| {
        c.kubernetes.as_ref().map(|k| {
            (
                k.namespace.clone(),
                k.leader_election.enabled,
                k.leader_election.lease_name.clone(),
            )
        })
    };
    if election(old) != election(new) {
        return Some("kubernetes (namespace or leader_election)");
    }
    None
}

/// A standby's operations port: alive, not Ready, its own metrics.
struct Standby {
    cancel: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Standby {
    fn start(
        listeners: &Listeners,
        process: &ProcessMetrics,
        lease: String,
    ) -> Result<Self, ServeError> {
        use axum::http::{StatusCode, header};
        use axum::routing::get;
        let listener = listeners.http()?;
        let metrics = process.clone();
        let routes = axum::Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/readyz",
                get(move || {
                    let lease = lease.clone();
                    async move {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "not ready: standing by; another replica holds lease {lease}\n"
                            ),
                        )
                    }
                }),
            )
            .route(
                "/metrics",
                get(move || {
                    let text = metrics.encode();
                    async move {
                        (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                    }
                }),
            );
        let cancel = tokio_util::sync::CancellationToken::new();
        let serve =
            axum::serve(listener, routes).with_graceful_shutdown(cancel.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "standby HTTP server stopped");
            }
        });
        Ok(Self { cancel, task })
    }

    async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}
