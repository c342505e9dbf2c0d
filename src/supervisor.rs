//! `gpupool serve` around the server: the ports bound once, leader election
//! (a standby serves only its operations port, not Ready), and the config
//! file (with the files it names) reloaded on change without a restart.
//!
//! A reload is a new server generation on the same ports: the new config is
//! checked offline (its TLS and webhook files too) and its cloud connected
//! first, so a bad file changes nothing; then the running server stops as
//! on SIGTERM (calls under way finish, cloud work is awaited, then ended)
//! and the new one starts. If the new one cannot start, the last good config
//! is started again.
//!
//! While leading, a watchdog reads the Lease; if it is lost, the process
//! exits at once, whatever it is doing, so no work goes on beside the next
//! leader's.

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

    /// The files whose change means a reload: the config file, and the TLS
    /// and webhook secret files it names (renewed in place by cert-manager
    /// and by secret rotation).
    fn watched(&self, config: &Config) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.path.iter().cloned().collect();
        if let Some(tls) = &config.server.tls {
            files.push(tls.cert.clone());
            files.push(tls.key.clone());
            files.extend(tls.cacert.clone());
        }
        if let Some(w) = &config.webhook {
            files.push(w.secret_file.clone());
        }
        files
    }

    /// The file as it is now, if it may replace `running`: parsed, checked
    /// offline (as `check-config`), its TLS and webhook files readable, and
    /// nothing changed that only a restart applies.
    fn candidate(&self, running: &Config) -> Result<Config, String> {
        let next = self.load().map_err(|e| e.to_string())?;
        crate::backend::offline_specs(&next).map_err(|e| e.to_string())?;
        if let Some(tls) = &next.server.tls {
            let tls = crate::tls::server_config(tls).map_err(|e| e.to_string())?;
            tonic::transport::Server::builder()
                .tls_config(tls)
                .map_err(|e| format!("server.tls: {e}"))?;
        }
        if let Some(w) = &next.webhook {
            w.settings().map_err(|e| e.to_string())?;
        }
        if let Some(why) = needs_restart(running, &next) {
            return Err(format!("{why} changed: that takes a restart"));
        }
        Ok(next)
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

/// What became of a changed file.
enum Reloaded {
    Applied(Generation),
    /// Kept the running server; `retry`: the file may be fine and the
    /// failure passing (its cloud could not be reached), so look again.
    Kept {
        running: Generation,
        retry: bool,
    },
}

/// Serves until `stop` resolves (SIGTERM). With leader election, stands by
/// until this replica holds the Lease; a lost Lease exits the process.
pub async fn run(
    source: Source,
    clock: Arc<dyn Clock>,
    stop: impl Future<Output = ()>,
) -> Result<(), SupervisorError> {
    let mut last_good = source.load()?;
    let listeners = Listeners::bind(&last_good)?;
    let process = ProcessMetrics::default();
    let election = match &last_good.kubernetes {
        Some(k) if k.leader_election.enabled => {
            let client = crate::cluster::connect(k).await?;
            Some(Arc::new(Election::new(
                client,
                &k.namespace,
                &k.leader_election,
            )))
        }
        _ => None,
    };
    let handover_after = last_good
        .kubernetes
        .as_ref()
        .map_or(Duration::ZERO, |k| k.leader_election.lease_duration * 2);
    tokio::pin!(stop);
    // The last term's backend and the config it was made for.
    let mut kept: Option<(Config, Backend)> = None;
    let mut first_term = true;
    loop {
        // Answers on the ops port until this term's server does.
        let mut switching: Option<Standby> = None;
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
            let standby = Standby::start(&listeners, &process, standing_by(e))?;
            let acquired = tokio::select! {
                () = e.acquire() => true,
                () = &mut stop => false,
            };
            if !acquired {
                standby.stop().await;
                // The Lease may have been taken just as the signal came.
                e.release().await;
                return Ok(());
            }
            tracing::info!(lease = %e.lease(), identity = %e.identity(), "leading");
            switching = Some(standby);
        }
        process.set_leader(true);
        // A new term reads the file again: it may have changed meanwhile.
        let config = if first_term {
            last_good.clone()
        } else {
            match source.candidate(&last_good) {
                Ok(c) => c,
                Err(why) => {
                    tracing::error!(error = %why, "config file not usable; serving the last good one");
                    last_good.clone()
                }
            }
        };
        first_term = false;
        let backend = kept
            .take()
            .filter(|(c, _)| same_sim(c, &config))
            .map(|(_, b)| b);
        let generation = match start(config, backend, clock.clone(), &listeners, &process).await {
            Ok(g) => g,
            Err(e) if election.is_some() => {
                tracing::error!(error = %e, "cannot start with the config file; starting the last good one");
                match start(last_good.clone(), None, clock.clone(), &listeners, &process).await {
                    Ok(g) => g,
                    Err(e) => {
                        if let Some(el) = &election {
                            el.release().await;
                        }
                        return Err(e);
                    }
                }
            }
            Err(e) => return Err(e),
        };
        if let Some(s) = switching.take() {
            s.stop().await;
        }
        last_good = generation.config.clone();
        announce(&generation);
        // The watchdog: runs beside everything below, reloads and shutdown
        // included.
        let (handover_tx, mut handover) = tokio::sync::oneshot::channel::<()>();
        let watchdog = election.clone().map(|e| {
            tokio::spawn(async move {
                match e.hold(Some(handover_after)).await {
                    Ended::Lost(why) => {
                        tracing::error!(lease = %e.lease(), "lost the leader lease {}: {why}; exiting", e.lease());
                        std::process::exit(1);
                    }
                    Ended::Handover => {
                        let _ = handover_tx.send(());
                    }
                }
            })
        });
        let mut running = generation;
        let mut files = source.watched(&running.config);
        let mut seen = Fingerprint::read(&files);
        let period = running.config.server.config_reload_interval;
        let mut tick = tokio::time::interval(if period.is_zero() {
            Duration::from_secs(3600)
        } else {
            period
        });
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let handed_over = loop {
            tokio::select! {
                () = &mut stop => break false,
                r = &mut handover, if watchdog.is_some() => break r.is_ok(),
                _ = tick.tick(), if !period.is_zero() => {
                    let now = Fingerprint::read(&files);
                    if now == seen {
                        continue;
                    }
                    match reload(&source, running, &listeners, &process).await {
                        Ok(Reloaded::Applied(next)) => {
                            announce(&next);
                            last_good = next.config.clone();
                            let next_files = source.watched(&next.config);
                            // What was read before loading: a change made
                            // during the reload is seen at the next look.
                            seen = if next_files == files { now } else { Fingerprint::read(&next_files) };
                            files = next_files;
                            running = next;
                        }
                        Ok(Reloaded::Kept { running: kept_gen, retry }) => {
                            if !retry {
                                seen = now;
                            }
                            running = kept_gen;
                        }
                        Err(e) => {
                            if let Some(el) = &election {
                                el.release().await;
                            }
                            return Err(e);
                        }
                    }
                }
            }
        };
        // Still watched while it stops: cloud work may run up to its bound.
        running.server.shutdown().await;
        if let Some(w) = &watchdog {
            w.abort();
        }
        kept = Some((running.config, running.backend));
        let Some(e) = &election else {
            return Ok(());
        };
        e.release().await;
        if !handed_over {
            return Ok(());
        }
        tracing::info!(lease = %e.lease(), "this replica's node is being drained: the lease is handed over");
        // Long enough for a standby to take it; without one, this replica
        // takes it back (and hands it over again while the drain lasts: the
        // drain's evictions go through while it is not Ready).
        process.set_leader(false);
        let standby = Standby::start(&listeners, &process, standing_by(e))?;
        let stopped = tokio::select! {
            () = tokio::time::sleep(handover_after) => false,
            () = &mut stop => true,
        };
        standby.stop().await;
        if stopped {
            return Ok(());
        }
    }
}

fn standing_by(e: &Election) -> String {
    format!("standing by; another replica holds lease {}", e.lease())
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
/// An error: neither the new config nor the running one could be started.
async fn reload(
    source: &Source,
    running: Generation,
    listeners: &Listeners,
    process: &ProcessMetrics,
) -> Result<Reloaded, SupervisorError> {
    let kept = |why: String, running: Generation, retry: bool| {
        tracing::error!(error = %why, "config reload rejected; serving the running config");
        process.reloaded("rejected");
        Ok(Reloaded::Kept { running, retry })
    };
    let mut next = match source.candidate(&running.config) {
        Ok(c) => c,
        Err(why) => return kept(why, running, false),
    };
    let backend = if same_sim(&running.config, &next) {
        running.backend.clone()
    } else {
        match crate::backend::from_config(&mut next, running.backend.clock.clone()).await {
            Ok(b) => b,
            Err(e) => return kept(e.to_string(), running, true),
        }
    };
    // /healthz answers throughout, so the switch is never taken for a hang
    // (without it, the switch goes on: only the probes would miss it).
    let switching = Standby::start(listeners, process, "reloading the config".to_owned())
        .inspect_err(|e| tracing::warn!(error = %e, "no ops port while reloading"))
        .ok();
    let Generation {
        config: old_config,
        backend: old_backend,
        server,
    } = running;
    server.shutdown().await;
    let started = crate::server::start_on(&next, backend.clone(), listeners, process).await;
    let started = match started {
        Ok(s) => Ok(s),
        Err(e) => {
            tracing::error!(error = %e, "config reload rejected when starting; starting the previous config again");
            process.reloaded("rejected");
            Err(crate::server::start_on(&old_config, old_backend.clone(), listeners, process).await)
        }
    };
    if let Some(s) = switching {
        s.stop().await;
    }
    match started {
        Ok(server) => {
            tracing::info!(groups = next.node_groups.len(), "config reloaded");
            process.reloaded("applied");
            Ok(Reloaded::Applied(Generation {
                config: next,
                backend,
                server,
            }))
        }
        Err(again) => {
            let server = again?;
            Ok(Reloaded::Kept {
                running: Generation {
                    config: old_config,
                    backend: old_backend,
                    server,
                },
                retry: false,
            })
        }
    }
}

/// What a reload cannot change: the bound ports, how the cluster is
/// reached and the election.
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
    let cluster = |c: &Config| {
        c.kubernetes.as_ref().map(|k| {
            (
                k.kubeconfig.clone(),
                k.context.clone(),
                k.namespace.clone(),
                k.leader_election.enabled,
                k.leader_election.lease_name.clone(),
                k.leader_election.lease_duration,
                k.leader_election.renew_period,
            )
        })
    };
    if cluster(old) != cluster(new) {
        return Some("kubernetes (the cluster, namespace or leader_election)");
    }
    None
}

/// The operations port while no server answers on it (standing by, or
/// between two servers): alive, not Ready, the process's metrics. It
/// shares the listener, so it may run beside a server stopping or starting.
struct Standby {
    cancel: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Standby {
    /// `why`: what `/readyz` says.
    fn start(
        listeners: &Listeners,
        process: &ProcessMetrics,
        why: String,
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
                    let why = why.clone();
                    async move {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
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
