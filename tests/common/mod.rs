//! Shared set-up: the real server on ephemeral loopback ports, the simulated
//! cloud on a manual clock, and a gRPC client generated from the same proto.
#![allow(dead_code)] // each test binary uses a different part

pub mod ca;
pub mod kube_api;
pub mod kube_faults;
pub mod serve;

use gpupool::config::Config;
use gpupool::proto::cloud_provider_client::CloudProviderClient;
use gpupool::proto::instance_status::InstanceState;
use gpupool::proto::*;
use gpupool::server::{self, Backend, Server};
use gpupool_cloud::ManualClock;
use gpupool_sim::SimCloud;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tonic::transport::Channel;

pub type Client = CloudProviderClient<Channel>;

pub fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A config with the given node groups (YAML list items, indented by two).
pub fn config_yaml(groups: &str, extra: &str) -> String {
    format!(
        "cloud: sim\nregion: sim-east-1\nserver:\n  grpc_listen: 127.0.0.1:0\n  http_listen: 127.0.0.1:0\n  sync_interval: 1h\n{extra}\nnode_groups:\n{groups}"
    )
}

pub struct Harness {
    pub server: Server,
    pub client: Client,
    pub clock: ManualClock,
    pub sim: Arc<SimCloud>,
    pub config: Config,
}

impl Harness {
    pub async fn start(yaml: &str) -> Self {
        Self::start_with_clock(yaml, ManualClock::new(t0())).await
    }

    pub async fn start_with_clock(yaml: &str, clock: ManualClock) -> Self {
        let config = Config::from_yaml(yaml).expect("test config parses");
        let sim = Arc::new(
            SimCloud::new(config.sim.clone(), Arc::new(clock.clone())).expect("sim starts"),
        );
        Self::serve(config, clock, sim).await
    }

    /// This server stopped and a new one started on the same cloud and
    /// clock: a restart.
    pub async fn restart(self) -> Self {
        let Harness {
            server,
            clock,
            sim,
            config,
            ..
        } = self;
        server.shutdown().await;
        Self::serve(config, clock, sim).await
    }

    async fn serve(config: Config, clock: ManualClock, sim: Arc<SimCloud>) -> Self {
        let backend = Backend {
            cloud: sim.clone(),
            clock: Arc::new(clock.clone()),
            extra_routes: Some(gpupool::backend::sim_routes(sim.clone())),
        };
        let server = server::start(&config, backend)
            .await
            .expect("server starts");
        let client = connect(server.grpc_addr).await;
        Self {
            server,
            client,
            clock,
            sim,
            config,
        }
    }

    /// Waits for the cloud work the server has started (creates, deletes).
    pub async fn settle(&self) {
        self.server.fleet.settle().await;
    }

    pub async fn refresh(&mut self) {
        self.client
            .refresh(RefreshRequest {})
            .await
            .expect("refresh");
    }

    pub async fn target(&mut self, id: &str) -> i32 {
        target_size(&mut self.client, id).await
    }

    pub async fn nodes(&mut self, id: &str) -> Vec<Instance> {
        group_nodes(&mut self.client, id).await
    }

    pub async fn increase(&mut self, id: &str, delta: i32) -> Result<(), tonic::Status> {
        self.client
            .node_group_increase_size(NodeGroupIncreaseSizeRequest {
                id: id.into(),
                delta,
            })
            .await
            .map(|_| ())
    }

    pub async fn delete(&mut self, id: &str, provider_ids: &[&str]) -> Result<(), tonic::Status> {
        self.client
            .node_group_delete_nodes(NodeGroupDeleteNodesRequest {
                id: id.into(),
                nodes: provider_ids.iter().map(|p| node(p)).collect(),
            })
            .await
            .map(|_| ())
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// A group's target size, as CA asks it.
pub async fn target_size(client: &mut Client, id: &str) -> i32 {
    client
        .node_group_target_size(NodeGroupTargetSizeRequest { id: id.into() })
        .await
        .expect("target size")
        .into_inner()
        .target_size
}

/// A group's instances, as CA asks them.
pub async fn group_nodes(client: &mut Client, id: &str) -> Vec<Instance> {
    client
        .node_group_nodes(NodeGroupNodesRequest { id: id.into() })
        .await
        .expect("nodes")
        .into_inner()
        .instances
}

pub async fn connect(addr: std::net::SocketAddr) -> Client {
    CloudProviderClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

pub fn node(provider_id: &str) -> ExternalGrpcNode {
    ExternalGrpcNode {
        provider_id: provider_id.into(),
        name: provider_id.into(),
        ..Default::default()
    }
}

pub fn state(i: &Instance) -> InstanceState {
    i.status
        .as_ref()
        .map_or(InstanceState::Unspecified, |s| s.instance_state())
}

pub fn error_of(i: &Instance) -> Option<&InstanceErrorInfo> {
    i.status
        .as_ref()
        .and_then(|s| s.error_info.as_ref())
        .filter(|e| !e.error_code.is_empty())
}

/// How many instances are in each state: (creating, running, deleting).
pub fn census(instances: &[Instance]) -> (usize, usize, usize) {
    let count = |s| instances.iter().filter(|i| state(i) == s).count();
    (
        count(InstanceState::InstanceCreating),
        count(InstanceState::InstanceRunning),
        count(InstanceState::InstanceDeleting),
    )
}

#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    message_part: &str,
) {
    let status = result.expect_err("expected an error status");
    assert_eq!(status.code(), code, "message: {}", status.message());
    assert!(
        status.message().contains(message_part),
        "{:?} does not contain {message_part:?}",
        status.message()
    );
}

/// Longest a test waits for something the server does in the background.
pub const EVENTUALLY_LIMIT: Duration = Duration::from_secs(30);

/// Waits until `f` holds, looking again every 10 ms; panics naming `what`
/// after [`EVENTUALLY_LIMIT`].
pub async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let started = std::time::Instant::now();
    while !f().await {
        assert!(started.elapsed() < EVENTUALLY_LIMIT, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A tool `scripts/test-deps` installs into its venv (`GPUPOOL_TEST_VENV`,
/// else `~/.cache/gpupool/venv`); panics, saying how to get it, if missing.
pub fn test_tool(name: &str) -> std::path::PathBuf {
    let venv = std::env::var_os("GPUPOOL_TEST_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/gpupool/venv")
        });
    let tool = venv.join("bin").join(name);
    assert!(
        tool.exists(),
        "{} not found: run scripts/test-deps (or .ci/run) to install the test tools",
        tool.display()
    );
    tool
}

/// A plain HTTP/1.1 GET or POST on loopback: (status, body).
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}
