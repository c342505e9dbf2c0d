//! `gpupool serve`: the fleet, the gRPC service for CA, the operations port and
//! the background sync, started together and stopped together.

use crate::config::{Config, ConfigError};
use crate::fleet::{Fleet, RateLimit};
use crate::grpc::{Service, ServiceSettings};
use crate::metrics::Metrics;
use crate::pricing::Prices;
use crate::proto::cloud_provider_server::CloudProviderServer;
use gpupool_cloud::{Clock, Cloud, CloudError};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cloud: {0}")]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("webhook: {0}")]
    Webhook(String),
}

/// The cloud to serve, how time passes, and extra HTTP routes it brings.
#[derive(Clone)]
pub struct Backend {
    pub cloud: Arc<dyn Cloud>,
    pub clock: Arc<dyn Clock>,
    pub extra_routes: Option<axum::Router>,
}

/// A running server.
pub struct Server {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The interruption webhook, when configured.
    pub webhook: Option<(SocketAddr, Arc<crate::webhook::Webhook>)>,
    /// Interruption operations.
    pub interruptions: Arc<crate::interrupt::Engine>,
    pub fleet: Arc<Fleet>,
    pub metrics: Arc<Metrics>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// The bound ports, kept across config reloads and leadership terms so that
/// connections wait in the backlog while a new server starts, never refused.
#[derive(Debug)]
pub struct Listeners {
    grpc: std::net::TcpListener,
    http: std::net::TcpListener,
    webhook: Option<std::net::TcpListener>,
}

impl Listeners {
    pub fn bind(config: &Config) -> Result<Self, ServeError> {
        let bind = |what, addr: SocketAddr| {
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| ServeError::Listen {
                    what,
                    addr,
                    reason: e.to_string(),
                })
        };
        Ok(Self {
            grpc: bind("gRPC", config.server.grpc_listen)?,
            http: bind("HTTP", config.server.http_listen)?,
            webhook: config
                .webhook
                .as_ref()
                .map(|w| bind("webhook", w.listen))
                .transpose()?,
        })
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.local_addr().ok()
    }

    /// The operations port, for a server of its own (a standby's).
    pub fn http(&self) -> Result<TcpListener, ServeError> {
        Self::share("HTTP", &self.http)
    }

    fn share(what: &'static str, l: &std::net::TcpListener) -> Result<TcpListener, ServeError> {
        let err = |e: std::io::Error| ServeError::Listen {
            what,
            addr: l
                .local_addr()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            reason: e.to_string(),
        };
        TcpListener::from_std(l.try_clone().map_err(err)?).map_err(err)
    }
}

/// Starts everything; returns once both ports listen and the first sync with the
/// cloud has been tried.
pub async fn start(config: &Config, backend: Backend) -> Result<Server, ServeError> {
    let listeners = Listeners::bind(config)?;
    let process = crate::metrics::ProcessMetrics::default();
    process.set_leader(true);
    start_on(config, backend, &listeners, &process).await
}

/// [`start`] on ports already bound (a webhook port only if the config has a
/// webhook), with the process-wide metrics.
pub async fn start_on(
    config: &Config,
    backend: Backend,
    listeners: &Listeners,
    process: &crate::metrics::ProcessMetrics,
) -> Result<Server, ServeError> {
    let Backend {
        cloud,
        clock,
        extra_routes,
    } = backend;
    let catalog = crate::catalog::merge(
        crate::catalog::builtin(config.cloud),
        cloud.instance_types().await?,
    );
    let zones = cloud.zones().await?;
    let specs = config.validate(&catalog, Some(&zones))?;
    let prices = Arc::new(Prices::new(crate::pricing::table::book(
        config.cloud,
        &config.region,
    )));
    let table_date = crate::pricing::table::table(config.cloud).and_then(|t| t.as_of());
    // Everything that can fail is done before anything is spawned, so a
    // start that fails (a reload's, say) leaves nothing running.
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = config
        .server
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()?
    {
        builder = builder.tls_config(tls)?;
    }
    let grpc_listener = Listeners::share("gRPC", &listeners.grpc)?;
    let http_listener = listeners.http()?;
    let grpc_addr = grpc_listener.local_addr().map_err(|e| ServeError::Listen {
        what: "gRPC",
        addr: config.server.grpc_listen,
        reason: e.to_string(),
    })?;
    let http_addr = http_listener.local_addr().map_err(|e| ServeError::Listen {
        what: "HTTP",
        addr: config.server.http_listen,
        reason: e.to_string(),
    })?;

    let metrics = Arc::new(Metrics::with_process(process));
    let webhook_parts = match &config.webhook {
        Some(w) => {
            let settings = w.settings()?;
            let (hook, notices) =
                crate::webhook::Webhook::new(settings, clock.clone(), metrics.clone())
                    .map_err(ServeError::Webhook)?;
            let listener = match &listeners.webhook {
                Some(l) => Listeners::share("webhook", l)?,
                None => {
                    return Err(ServeError::Webhook(format!(
                        "webhook.listen ({}) was not bound at start: a webhook added by a reload needs a restart",
                        w.listen
                    )));
                }
            };
            let addr = listener.local_addr().map_err(|e| ServeError::Listen {
                what: "webhook",
                addr: w.listen,
                reason: e.to_string(),
            })?;
            Some((hook, notices, listener, addr))
        }
        None => None,
    };
    let client = match &config.kubernetes {
        Some(k) => Some(crate::cluster::connect(k).await?),
        None => None,
    };
    let rate = RateLimit {
        per_second: NonZeroU32::new(config.server.cloud_calls_per_second)
            .unwrap_or(NonZeroU32::MIN),
        burst: NonZeroU32::new(config.server.cloud_call_burst).unwrap_or(NonZeroU32::MIN),
        offering_cooldown: config.interruption.offering_cooldown,
    };
    // Durable only in the cluster: without it a restart inside the listing
    // lag of a create can buy its instances twice (README "Guarantees").
    let journal = match (&config.kubernetes, &client) {
        (Some(k), Some(client)) => crate::fleet::WorkJournal::cluster(
            crate::cluster::cloud_work::WorkMaps::new(client.clone(), &k.namespace),
        ),
        _ => crate::fleet::WorkJournal::default(),
    };
    let fleet = Fleet::new(
        cloud,
        clock,
        metrics.clone(),
        prices.clone(),
        specs,
        rate,
        journal,
    );
    if let Some(t) = table_date {
        metrics.prices_as_of(unix_seconds(t));
    }
    if let Err(e) = fleet.refresh_prices().await {
        tracing::warn!(error = %e, "no live prices from the cloud; serving the offline price table");
    }
    let floors = Arc::new(crate::preprovision::Floors::new(
        crate::preprovision::plans(fleet.specs()),
        crate::preprovision::cronjob::candidates(
            fleet.specs(),
            crate::template::TemplateContext {
                region: &config.region,
                gpu_label: &config.gpu_label,
            },
            &prices.load(),
            fleet.clock().now(),
        ),
        fleet.boots().clone(),
        metrics.clone(),
    ));
    floors.evaluate(fleet.clock().now());
    let service = Service::new(
        fleet.clone(),
        floors.clone(),
        ServiceSettings {
            region: config.region.clone(),
            gpu_label: config.gpu_label.clone(),
            options_mode: config.server.node_group_options,
            refresh_timeout: config.server.refresh_timeout,
        },
        prices,
        metrics.clone(),
    );
    let cancel = CancellationToken::new();
    let mut cluster_tasks = match (&config.kubernetes, &client) {
        (Some(k), Some(client)) => {
            crate::cluster::attach(
                client.clone(),
                k,
                crate::cluster::Watched {
                    boots: fleet.boots().clone(),
                    floors: floors.clone(),
                },
                fleet.clock().clone(),
                config.server.preprovision_interval,
                cancel.clone(),
            )
            .await
        }
        _ => Vec::new(),
    };
    let interruptions = crate::interrupt::Engine::new(
        fleet.clone(),
        floors.clone(),
        match (&config.kubernetes, &client) {
            (Some(k), Some(client)) => crate::interrupt::Journal::Cluster(Arc::new(
                crate::cluster::journal::ConfigMaps::new(client.clone(), &k.namespace),
            )),
            _ => crate::interrupt::Journal::memory(),
        },
        client
            .clone()
            .map(|c| Arc::new(crate::cluster::drain::NodeOps::new(c))),
        metrics.clone(),
        config.interruption.clone(),
        cancel.clone(),
    );
    // After the interruption engine is built: the first sync takes up the
    // operations it journalled before a restart with the listing.
    if let Err(e) = fleet.sync().await {
        tracing::warn!(error = %e, "first sync with the cloud failed; not ready until one succeeds");
    }
    cluster_tasks.push(tokio::spawn({
        let mut boots = fleet.boots().subscribe();
        let engine = interruptions.clone();
        let cancel = cancel.clone();
        async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    b = boots.recv() => match b {
                        Ok(group) => engine.booted(group),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        }
    }));
    let max_requests = config.server.max_concurrent_requests as usize;
    let grpc = builder
        .max_concurrent_streams(Some(config.server.max_concurrent_requests))
        .add_service(
            CloudProviderServer::new(service)
                .max_decoding_message_size(config.server.grpc_max_message_bytes),
        )
        .serve_with_incoming_shutdown(
            // Nagle off: without it a reply larger than one segment waits for
            // the peer's delayed ACK (~40 ms) before its tail is sent.
            TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            cancel.clone().cancelled_owned(),
        );
    let mut routes = crate::http::router(fleet.clone(), metrics.clone());
    if let Some(extra) = extra_routes {
        routes = routes.merge(extra);
    }
    let routes = crate::http::shed(routes, max_requests);
    let http =
        axum::serve(http_listener, routes).with_graceful_shutdown(cancel.clone().cancelled_owned());

    let mut webhook = None;
    let mut webhook_tasks = Vec::new();
    if let Some((hook, notices, listener, addr)) = webhook_parts {
        let app = crate::http::shed(hook.router(), max_requests)
            .into_make_service_with_connect_info::<SocketAddr>();
        let serve =
            axum::serve(listener, app).with_graceful_shutdown(cancel.clone().cancelled_owned());
        webhook_tasks.push(tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "webhook server stopped");
            }
        }));
        webhook_tasks.push(tokio::spawn(crate::webhook::consume(
            notices,
            interruptions.clone(),
            cancel.clone(),
        )));
        webhook = Some((addr, hook));
    }
    let mut tasks = vec![
        tokio::spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        }),
        tokio::spawn(async move {
            if let Err(e) = http.await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }),
        // Keeps the fleet fresh when CA is not calling Refresh (metrics,
        // `gpupool groups`).
        tokio::spawn(every(config.server.sync_interval, cancel.clone(), {
            let fleet = fleet.clone();
            move || {
                let fleet = fleet.clone();
                async move {
                    if let Err(e) = fleet.sync().await {
                        tracing::warn!(error = %e, "background sync failed; keeping the last good state");
                    }
                }
            }
        })),
        tokio::spawn(every(
            config.server.price_refresh_interval,
            cancel.clone(),
            {
                let fleet = fleet.clone();
                move || {
                    let fleet = fleet.clone();
                    async move {
                        if let Err(e) = fleet.refresh_prices().await {
                            tracing::warn!(error = %e, "price refresh failed; keeping the last good prices");
                        }
                    }
                }
            },
        )),
        // Floors move with the clock, the boot models and the CronJobs.
        tokio::spawn(every(
            config.server.preprovision_interval,
            cancel.clone(),
            {
                let floors = floors.clone();
                let clock = fleet.clock().clone();
                move || {
                    floors.evaluate(clock.now());
                    std::future::ready(())
                }
            },
        )),
    ];
    tasks.extend(cluster_tasks);
    tasks.extend(webhook_tasks);
    tracing::info!(%grpc_addr, %http_addr, groups = fleet.specs().len(), "gpupool serving");
    Ok(Server {
        grpc_addr,
        http_addr,
        webhook,
        interruptions,
        fleet,
        metrics,
        cancel,
        tasks,
    })
}

/// Runs `work` every `period` (the first time one period in) until cancelled;
/// a slow run delays the next instead of piling up.
async fn every<F, Fut>(period: Duration, cancel: CancellationToken, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => work().await,
        }
    }
}

fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Server {
    /// Stops accepting calls, lets calls under way finish, and waits (bounded)
    /// for cloud work under way.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.interruptions.stopped().await;
        self.fleet.shutdown(Duration::from_secs(20)).await;
        tracing::info!("gpupool stopped");
    }
}
