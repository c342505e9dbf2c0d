//! CA-loop benchmark: `gpupool serve` (simulated cloud) with 500 node groups and
//! 10,000 running nodes, driven the way cluster-autoscaler drives it, next to a
//! transport-floor baseline measured in the same run.
//!
//! Run with `cargo bench --bench ca_loop`. It starts the real binary as a child
//! process, fills the fleet through the gRPC API, replays CA's per-loop calls
//! from one client, then measures throughput from 16 concurrent clients. Then it
//! does the same, with the same client code, node list and order, against the
//! baseline: this bench binary re-run (`--baseline-server`) as a minimal tonic
//! server that answers every call with constants and is served the way gpupool
//! serves (multi-thread runtime, TCP_NODELAY). What the baseline costs is what
//! gRPC over loopback costs on this machine with no provider work at all.
//!
//! It prints a markdown table with targets. Not a test: it panics only when a
//! server misbehaves (an RPC fails, a wrong answer from gpupool, or no progress
//! in time).

use gpupool::proto::cloud_provider_client::CloudProviderClient;
use gpupool::proto::instance_status::InstanceState;
use gpupool::proto::{
    ExternalGrpcNode, K8sDuration, NodeGroupAutoscalingOptions, NodeGroupAutoscalingOptionsRequest,
    NodeGroupForNodeRequest, NodeGroupIncreaseSizeRequest, NodeGroupNodesRequest,
    NodeGroupTargetSizeRequest, NodeGroupsRequest, RefreshRequest,
};
use std::fmt::Write as _;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};
use tonic::transport::{Channel, Endpoint};

type Client = CloudProviderClient<Channel>;

const GROUPS: usize = 500;
const NODES_PER_GROUP: usize = 20;
const MAX_SIZE: u32 = 40;
const NOT_OURS: usize = 1_000;
/// The first loop is a warm-up; the others are reported against the target.
const LOOPS: usize = 3;
const CLIENTS: usize = 16;
const CALLS_PER_CLIENT: usize = 10_000;

const START_LIMIT: Duration = Duration::from_secs(30);
const POPULATE_LIMIT: Duration = Duration::from_secs(60);
const POLL_EVERY: Duration = Duration::from_millis(50);
/// The server waits up to 20 s for cloud work under way when stopping.
const STOP_LIMIT: Duration = Duration::from_secs(30);

const FOR_NODE_P99_TARGET: Duration = Duration::from_micros(300);
const LOOP_TARGET: Duration = Duration::from_secs(5);
const THROUGHPUT_TARGET: f64 = 20_000.0;
const RSS_TARGET_BYTES: u64 = 100_000_000;
/// A per-node call this slow is counted as a stall in the report.
const STALL: Duration = Duration::from_millis(10);

const GPUPOOL_ADDR_PREFIX: &str = "gpupool serving externalgrpc on ";

fn main() {
    // `cargo bench` passes arguments of its own (`--bench`): look only for ours.
    if std::env::args().skip(1).any(|a| a == baseline::FLAG) {
        baseline::serve();
        return;
    }
    let bench_start = Instant::now();
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let config = dir.path().join("gpupool.yaml");
    std::fs::write(&config, config_yaml()).expect("writing the config");

    let mut command = Command::new(env!("CARGO_BIN_EXE_gpupool"));
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn");
    let (server, addr) = ServerProcess::start(
        "gpupool serve",
        command,
        GPUPOOL_ADDR_PREFIX,
        &dir.path().join("gpupool.log"),
    );
    let gpupool_endpoint = endpoint(addr);
    let populated = current_thread_runtime().block_on(populate(&gpupool_endpoint));
    let walk = Walk::new(&populated.nodes);
    let gpupool = measure(&gpupool_endpoint, server.pid(), &walk, Answers::Check);
    let hwm = read_status_kib(server.pid(), "VmHWM");
    let rss = read_status_kib(server.pid(), "VmRSS");
    let gpupool_stopped = server.stop();

    let mut command = Command::new(std::env::current_exe().expect("the bench binary's path"));
    command.arg(baseline::FLAG);
    let (server, addr) = ServerProcess::start(
        "baseline server",
        command,
        baseline::ADDR_PREFIX,
        &dir.path().join("baseline.log"),
    );
    // Its answers are constants, not the fleet's: nothing to check.
    let baseline = measure(&endpoint(addr), server.pid(), &walk, Answers::Ignore);
    let baseline_stopped = server.stop();

    print_report(&populated, &gpupool, &baseline, hwm, rss);
    println!();
    println!("gpupool server: {gpupool_stopped}");
    println!("baseline server: {baseline_stopped}");
    println!(
        "bench wall time (gpupool: start, populate, loops, throughput, stop; baseline: start, loops, throughput, stop): {:.1} s",
        bench_start.elapsed().as_secs_f64()
    );
}

/// 500 groups of on-demand L4s, a fast simulated cloud and no cloud-call limit
/// worth mentioning, and no background sync that could land inside a timing.
fn config_yaml() -> String {
    let mut yaml = String::from(
        "cloud: sim\n\
         region: sim-east-1\n\
         server:\n  \
           grpc_listen: 127.0.0.1:0\n  \
           http_listen: 127.0.0.1:0\n  \
           cloud_calls_per_second: 100000\n  \
           cloud_call_burst: 100000\n  \
           sync_interval: 1h\n\
         sim:\n  \
           time_scale: 100000\n  \
           seed: 1\n\
         node_groups:\n",
    );
    for g in 0..GROUPS {
        writeln!(
            yaml,
            "  - {{ id: {}, min_size: 0, max_size: {MAX_SIZE}, instance_type: gpu-1x-l4, capacity_type: on-demand }}",
            group_id(g)
        )
        .expect("writing to a String");
    }
    yaml
}

fn group_id(g: usize) -> String {
    format!("g{g:03}")
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint")
        .connect_timeout(Duration::from_secs(5))
        // No call should take anywhere near this; a hung server fails the bench.
        .timeout(Duration::from_secs(30))
}

/// One TCP connection (one HTTP/2 connection) of its own.
async fn connect(endpoint: &Endpoint) -> Client {
    Client::new(
        endpoint
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", endpoint.uri())),
    )
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime")
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime")
}

// ---------------------------------------------------------------------------
// The server processes

/// A server child (gpupool or the baseline). Dropping it kills the process, so
/// a panic anywhere never leaves a server behind.
struct ServerProcess {
    name: &'static str,
    child: Option<Child>,
    /// Held for the child's life: the baseline stops when its stdin closes, so
    /// it cannot outlive this process even if this one is killed.
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `command` with stderr to `log` and waits (bounded) for the stdout
    /// line `<addr_prefix><address>[ anything]`.
    fn start(
        name: &'static str,
        mut command: Command,
        addr_prefix: &'static str,
        log: &Path,
    ) -> (Self, SocketAddr) {
        let log_file = std::fs::File::create(log).expect("creating the server log file");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        let server = Self {
            name,
            child: Some(child),
            stdin,
            log: log.to_owned(),
        };
        let (tx, rx) = mpsc::channel();
        // Reads the address line, then drains stdout until the server exits.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(addr_prefix) {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(START_LIMIT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name} printed no address line within {START_LIMIT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{name} exited before printing its address line")
            }
        };
        let addr = line
            .strip_prefix(addr_prefix)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("cannot parse {name}'s gRPC address from {line:?}"));
        (server, addr)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// SIGTERM, then a bounded wait; SIGKILL if it does not stop in time.
    fn stop(mut self) -> String {
        let mut child = self.child.take().expect("server is running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        if !sent.as_ref().is_ok_and(|s| s.success()) {
            let _ = child.kill();
            let _ = child.wait();
            return format!("could not send SIGTERM ({sent:?}); killed");
        }
        let start = Instant::now();
        while start.elapsed() < STOP_LIMIT {
            match child.try_wait() {
                Ok(Some(status)) => {
                    return format!(
                        "stopped on SIGTERM in {} ms, {status}",
                        start.elapsed().as_millis()
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return format!("waiting for the server failed: {e}"),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        format!("did NOT stop within {STOP_LIMIT:?} of SIGTERM; killed")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "{} killed; last lines of its log ({}):\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
        }
    }
}

/// User and system CPU time of a process, from `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, Default)]
struct CpuTime {
    user: Duration,
    system: Duration,
}

impl CpuTime {
    /// `pid` is a process id or `self`.
    fn of(pid: &str) -> Self {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
        // Fields after the command name (which may hold spaces) start at field 3
        // (state); utime and stime are fields 14 and 15, in clock ticks.
        let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> u64 {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .unwrap_or_else(|| panic!("unexpected /proc/{pid}/stat: {stat:?}"))
        };
        let hz = f64::from(clock_ticks_per_second());
        Self {
            user: Duration::from_secs_f64(ticks(11) as f64 / hz),
            system: Duration::from_secs_f64(ticks(12) as f64 / hz),
        }
    }

    fn total(self) -> Duration {
        self.user + self.system
    }
}

impl std::ops::Sub for CpuTime {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self {
            user: self.user.saturating_sub(rhs.user),
            system: self.system.saturating_sub(rhs.system),
        }
    }
}

impl std::ops::AddAssign for CpuTime {
    fn add_assign(&mut self, rhs: Self) {
        self.user += rhs.user;
        self.system += rhs.system;
    }
}

/// `getconf CLK_TCK`, or the usual 100.
fn clock_ticks_per_second() -> u32 {
    static TCK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// A `kB` field of `/proc/<pid>/status`.
fn read_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

// ---------------------------------------------------------------------------
// The benchmark

#[derive(Clone, Debug)]
struct Node {
    provider_id: String,
    group: String,
}

/// Client-side latencies of one kind of call.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn stats(&self) -> Stats {
        let mut v = self.0.clone();
        v.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1;
            v.get(i).copied().unwrap_or_default()
        };
        Stats {
            count: v.len(),
            median: rank(0.5),
            p99: rank(0.99),
            max: v.last().copied().unwrap_or_default(),
        }
    }
}

struct Stats {
    count: usize,
    median: Duration,
    p99: Duration,
    max: Duration,
}

/// Per-RPC samples of the measured CA loops.
#[derive(Default)]
struct LoopSamples {
    refresh: Samples,
    node_groups: Samples,
    for_node: Samples,
    for_node_not_ours: Samples,
    get_options: Samples,
    target_size: Samples,
}

/// What every CA loop walks: the same for both servers.
struct Walk {
    groups: Vec<String>,
    /// The nodes in the order the loops visit them.
    order: Vec<Node>,
    /// Nodes of another provider, asked about every nodes/NOT_OURS nodes.
    not_ours: Vec<String>,
}

impl Walk {
    fn new(nodes: &[Node]) -> Self {
        // CA walks nodes in the API server's order (by name), not by group.
        let mut order = nodes.to_vec();
        shuffle(&mut order, 0x5eed);
        Self {
            groups: (0..GROUPS).map(group_id).collect(),
            order,
            not_ours: (0..NOT_OURS)
                .map(|i| format!("gpupool-sim:///sim-east-1a/i-notours{i:09x}"))
                .collect(),
        }
    }
}

/// Whether replies are checked against the fleet: gpupool's must be right; the
/// baseline answers every call with the same constants.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answers {
    Check,
    Ignore,
}

/// What one server's measurements gave.
struct Measured {
    loops: Loops,
    throughput: Throughput,
}

/// What the CA loops from one client measured.
struct Loops {
    calls_per_loop: usize,
    /// Every loop's wall time, the warm-up first.
    wall: Vec<Duration>,
    /// Per-RPC samples of the measured loops.
    samples: LoopSamples,
    /// CPU used during the measured loops by the server and by this client.
    server_cpu: CpuTime,
    client_cpu: CpuTime,
}

impl Loops {
    fn measured(&self) -> &[Duration] {
        &self.wall[1..]
    }

    fn mean_measured(&self) -> Duration {
        let measured = self.measured();
        measured.iter().sum::<Duration>() / measured.len().max(1) as u32
    }

    /// CPU per call of the measured loops, in µs.
    fn cpu_per_call_us(&self, cpu: CpuTime) -> f64 {
        cpu.total().as_secs_f64() * 1e6 / (self.calls_per_loop * self.measured().len()) as f64
    }
}

/// What the many-client phase measured.
struct Throughput {
    calls: usize,
    wall: Duration,
    latency: Samples,
    server_cpu: CpuTime,
}

impl Throughput {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.wall.as_secs_f64()
    }

    /// Server CPU per call, in µs.
    fn server_cpu_per_call_us(&self) -> f64 {
        self.server_cpu.total().as_secs_f64() * 1e6 / self.calls as f64
    }
}

/// The same client code against either server: the CA loops from one client
/// (a warm-up, then the measured ones), then CLIENTS clients at once.
fn measure(endpoint: &Endpoint, server_pid: u32, walk: &Walk, answers: Answers) -> Measured {
    // One sequential client, like CA: on a current-thread runtime, so that the
    // client adds as little as it can (no cross-thread wake-ups) to what is
    // measured; a multi-thread client runtime added 50-100 µs to every call's
    // median on a 2-core VM.
    let loops = current_thread_runtime().block_on(async {
        let mut client = connect(endpoint).await;
        run_loops(&mut client, walk, server_pid, answers).await
    });
    // Many clients at once: a multi-thread runtime.
    let throughput = multi_thread_runtime().block_on(throughput(
        endpoint,
        Arc::new(walk.order.clone()),
        server_pid,
        answers,
    ));
    Measured { loops, throughput }
}

/// LOOPS CA loops from one client; the first is a warm-up, left out of the
/// samples and the CPU accounting.
async fn run_loops(client: &mut Client, walk: &Walk, server_pid: u32, answers: Answers) -> Loops {
    let server = server_pid.to_string();
    let mut samples = LoopSamples::default();
    let mut wall = Vec::with_capacity(LOOPS);
    let mut calls_per_loop = 0;
    let mut server_cpu = CpuTime::default();
    let mut client_cpu = CpuTime::default();
    for i in 0..LOOPS {
        let mut warmup = LoopSamples::default();
        let into = if i == 0 { &mut warmup } else { &mut samples };
        let before = (CpuTime::of(&server), CpuTime::of("self"));
        let (elapsed, calls) = ca_loop(client, walk, answers, into).await;
        if i > 0 {
            server_cpu += CpuTime::of(&server) - before.0;
            client_cpu += CpuTime::of("self") - before.1;
        }
        wall.push(elapsed);
        calls_per_loop = calls;
    }
    Loops {
        calls_per_loop,
        wall,
        samples,
        server_cpu,
        client_cpu,
    }
}

/// Awaits one RPC, adds its client-side latency to `samples`, returns its reply.
async fn timed<T>(
    samples: &mut Samples,
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    let start = Instant::now();
    let result = call.await;
    samples.0.push(start.elapsed());
    match result {
        Ok(response) => response.into_inner(),
        Err(status) => panic!("{what} failed: {status:?}"),
    }
}

async fn untimed<T>(
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    match call.await {
        Ok(response) => response.into_inner(),
        Err(status) => panic!("{what} failed: {status:?}"),
    }
}

struct Populated {
    /// From the first IncreaseSize to the last group seen fully running.
    wall: Duration,
    nodes: Vec<Node>,
    polls: usize,
    increase: Samples,
    refresh: Samples,
    list: Samples,
}

/// From one client: scales every group up by 20 and waits (bounded, polling
/// with Refresh) until every group has 20 running instances. Returns the nodes
/// and how many polls.
async fn populate(endpoint: &Endpoint) -> Populated {
    let mut client = connect(endpoint).await;
    let groups: Vec<String> = (0..GROUPS).map(group_id).collect();
    let start = Instant::now();
    let mut increase = Samples::default();
    let mut refresh = Samples::default();
    let mut list = Samples::default();
    for id in &groups {
        timed(
            &mut increase,
            "NodeGroupIncreaseSize",
            client.node_group_increase_size(NodeGroupIncreaseSizeRequest {
                id: id.clone(),
                delta: NODES_PER_GROUP as i32,
            }),
        )
        .await;
    }
    let polling = Instant::now();
    let mut done: Vec<Option<Vec<Node>>> = vec![None; groups.len()];
    let mut polls = 0;
    loop {
        timed(&mut refresh, "Refresh", client.refresh(RefreshRequest {})).await;
        polls += 1;
        let mut worst: Option<(String, usize, usize)> = None;
        for (g, id) in groups.iter().enumerate() {
            if done[g].is_some() {
                continue;
            }
            let reply = timed(
                &mut list,
                "NodeGroupNodes",
                client.node_group_nodes(NodeGroupNodesRequest { id: id.clone() }),
            )
            .await;
            let running = reply
                .instances
                .iter()
                .filter(|i| {
                    i.status.as_ref().map(|s| s.instance_state)
                        == Some(InstanceState::InstanceRunning as i32)
                })
                .count();
            if running == NODES_PER_GROUP && reply.instances.len() == NODES_PER_GROUP {
                done[g] = Some(
                    reply
                        .instances
                        .into_iter()
                        .map(|i| Node {
                            provider_id: i.id,
                            group: id.clone(),
                        })
                        .collect(),
                );
            } else if worst.as_ref().is_none_or(|w| running < w.1) {
                worst = Some((id.clone(), running, reply.instances.len()));
            }
        }
        let pending = done.iter().filter(|d| d.is_none()).count();
        if pending == 0 {
            break;
        }
        if polling.elapsed() > POPULATE_LIMIT {
            let (id, running, total) = worst.unwrap_or_default();
            panic!(
                "fleet not populated after {POPULATE_LIMIT:?} ({polls} Refresh polls): \
                 {pending} of {GROUPS} groups lack {NODES_PER_GROUP} running instances; \
                 worst is {id} with {running} running of {total} instances"
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    let nodes: Vec<Node> = done.into_iter().flatten().flatten().collect();
    assert_eq!(nodes.len(), GROUPS * NODES_PER_GROUP);
    let mut ids: Vec<&str> = nodes.iter().map(|n| n.provider_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        nodes.len(),
        "duplicate providerIDs across groups"
    );
    assert!(
        ids.iter().all(|id| id.starts_with("gpupool-sim:///")),
        "unexpected providerID format, e.g. {:?}",
        ids.first()
    );
    Populated {
        wall: start.elapsed(),
        nodes,
        polls,
        increase,
        refresh,
        list,
    }
}

/// Deterministic Fisher-Yates with splitmix64.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    let mut next = || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

fn for_node_request(provider_id: &str) -> NodeGroupForNodeRequest {
    NodeGroupForNodeRequest {
        node: Some(ExternalGrpcNode {
            provider_id: provider_id.to_owned(),
            name: provider_id.to_owned(),
            ..Default::default()
        }),
    }
}

fn minutes(m: i64) -> (Option<K8sDuration>, Option<prost_types::Duration>) {
    (
        Some(K8sDuration {
            duration: m * 60 * 1_000_000_000,
        }),
        Some(prost_types::Duration {
            seconds: m * 60,
            nanos: 0,
        }),
    )
}

/// The defaults CA sends with every NodeGroupGetOptions (its flag defaults),
/// each duration in the old (nanoseconds) and the new field.
fn ca_defaults() -> NodeGroupAutoscalingOptions {
    let (unneeded_old, unneeded_new) = minutes(10);
    let (unready_old, unready_new) = minutes(20);
    let (provision_old, provision_new) = minutes(15);
    NodeGroupAutoscalingOptions {
        scale_down_utilization_threshold: 0.5,
        scale_down_gpu_utilization_threshold: 0.5,
        scale_down_unneeded_time: unneeded_old,
        scale_down_unready_time: unready_old,
        max_node_provision_time: provision_old,
        scale_down_unneeded_duration: unneeded_new,
        scale_down_unready_duration: unready_new,
        max_node_provision_duration: provision_new,
        ..Default::default()
    }
}

fn options_request(
    group: &str,
    defaults: &NodeGroupAutoscalingOptions,
) -> NodeGroupAutoscalingOptionsRequest {
    NodeGroupAutoscalingOptionsRequest {
        id: group.to_owned(),
        defaults: Some(*defaults),
    }
}

fn check_options(group: &str, reply: Option<NodeGroupAutoscalingOptions>) {
    let o = reply.unwrap_or_else(|| panic!("NodeGroupGetOptions({group}): no options"));
    let ten_minutes = minutes(10);
    assert!(
        o.scale_down_unneeded_time == ten_minutes.0
            && o.scale_down_unneeded_duration == ten_minutes.1
            && o.scale_down_utilization_threshold == 0.5,
        "NodeGroupGetOptions({group}) did not echo CA's defaults: {o:?}"
    );
}

/// One CA loop from one client: Refresh, NodeGroups, per node NodeGroupForNode
/// and 2 × NodeGroupGetOptions, 1 foreign NodeGroupForNode every
/// nodes/NOT_OURS nodes, per group 3 × NodeGroupTargetSize. Returns the loop's
/// wall time and how many calls it made.
async fn ca_loop(
    client: &mut Client,
    walk: &Walk,
    answers: Answers,
    s: &mut LoopSamples,
) -> (Duration, usize) {
    let check = answers == Answers::Check;
    let defaults = ca_defaults();
    let every = (walk.order.len() / walk.not_ours.len().max(1)).max(1);
    let mut foreign = walk.not_ours.iter();
    let mut calls = 0;
    let start = Instant::now();

    timed(&mut s.refresh, "Refresh", client.refresh(RefreshRequest {})).await;
    let reply = timed(
        &mut s.node_groups,
        "NodeGroups",
        client.node_groups(NodeGroupsRequest {}),
    )
    .await;
    if check {
        assert_eq!(reply.node_groups.len(), walk.groups.len(), "NodeGroups");
    }
    calls += 2;

    for (i, node) in walk.order.iter().enumerate() {
        let reply = timed(
            &mut s.for_node,
            "NodeGroupForNode",
            client.node_group_for_node(for_node_request(&node.provider_id)),
        )
        .await;
        if check {
            let got = reply.node_group.map(|g| g.id).unwrap_or_default();
            assert_eq!(got, node.group, "NodeGroupForNode({})", node.provider_id);
        }
        for _ in 0..2 {
            let reply = timed(
                &mut s.get_options,
                "NodeGroupGetOptions",
                client.node_group_get_options(options_request(&node.group, &defaults)),
            )
            .await;
            if check {
                check_options(&node.group, reply.node_group_autoscaling_options);
            }
        }
        calls += 3;
        if i % every == every - 1
            && let Some(id) = foreign.next()
        {
            let reply = timed(
                &mut s.for_node_not_ours,
                "NodeGroupForNode (not ours)",
                client.node_group_for_node(for_node_request(id)),
            )
            .await;
            if check {
                let got = reply.node_group.map(|g| g.id).unwrap_or_default();
                assert!(
                    got.is_empty(),
                    "NodeGroupForNode({id}) claimed it for {got}"
                );
            }
            calls += 1;
        }
    }
    for id in &walk.groups {
        for _ in 0..3 {
            let reply = timed(
                &mut s.target_size,
                "NodeGroupTargetSize",
                client.node_group_target_size(NodeGroupTargetSizeRequest { id: id.clone() }),
            )
            .await;
            if check {
                assert_eq!(
                    reply.target_size, NODES_PER_GROUP as i32,
                    "NodeGroupTargetSize({id})"
                );
            }
            calls += 1;
        }
    }
    (start.elapsed(), calls)
}

/// CLIENTS tasks, each on its own TCP connection, each making CALLS_PER_CLIENT
/// calls (NodeGroupForNode : NodeGroupGetOptions = 1 : 2) over the node list.
async fn throughput(
    endpoint: &Endpoint,
    nodes: Arc<Vec<Node>>,
    server_pid: u32,
    answers: Answers,
) -> Throughput {
    // Connect (each `connect` is its own TCP connection) and make one call each
    // to finish the HTTP/2 handshakes, all before the clock starts.
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut client = connect(endpoint).await;
        untimed("NodeGroups", client.node_groups(NodeGroupsRequest {})).await;
        clients.push(client);
    }
    // Nothing that can fail comes before the barrier, so no task can leave the
    // others waiting on it.
    let ready = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut tasks = Vec::with_capacity(CLIENTS);
    for (c, mut client) in clients.into_iter().enumerate() {
        let nodes = nodes.clone();
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let check = answers == Answers::Check;
            let defaults = ca_defaults();
            ready.wait().await;
            let mut lat = Samples(Vec::with_capacity(CALLS_PER_CLIENT));
            let offset = c * nodes.len() / CLIENTS;
            for i in 0..CALLS_PER_CLIENT {
                let node = &nodes[(offset + i / 3) % nodes.len()];
                if i % 3 == 0 {
                    let reply = timed(
                        &mut lat,
                        "NodeGroupForNode",
                        client.node_group_for_node(for_node_request(&node.provider_id)),
                    )
                    .await;
                    if check {
                        let got = reply.node_group.map(|g| g.id).unwrap_or_default();
                        assert_eq!(got, node.group, "NodeGroupForNode({})", node.provider_id);
                    }
                } else {
                    let reply = timed(
                        &mut lat,
                        "NodeGroupGetOptions",
                        client.node_group_get_options(options_request(&node.group, &defaults)),
                    )
                    .await;
                    if check {
                        assert!(reply.node_group_autoscaling_options.is_some());
                    }
                }
            }
            lat
        }));
    }
    let pid = server_pid.to_string();
    let cpu_before = CpuTime::of(&pid);
    ready.wait().await;
    let start = Instant::now();
    let mut all = Samples(Vec::with_capacity(CLIENTS * CALLS_PER_CLIENT));
    for task in tasks {
        let lat = task.await.expect("a throughput client panicked");
        all.0.extend(lat.0);
    }
    let wall = start.elapsed();
    Throughput {
        calls: all.0.len(),
        wall,
        latency: all,
        server_cpu: CpuTime::of(&pid) - cpu_before,
    }
}

// ---------------------------------------------------------------------------
// The report

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "pass" } else { "FAIL" }
}

fn print_report(
    populated: &Populated,
    gpupool: &Measured,
    baseline: &Measured,
    hwm_kib: u64,
    rss_kib: u64,
) {
    let nproc = Command::new("nproc")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or("?".into(), |n| n.to_string())
        });
    println!();
    println!(
        "{} (UTC) · `cargo bench --bench ca_loop` · nproc {nproc} · {GROUPS} groups × {NODES_PER_GROUP} nodes, {NOT_OURS} foreign nodes per loop · latencies client-side; 1 client = current-thread tokio runtime, {CLIENTS} clients = multi-thread runtime · baseline = a tonic server with constant answers, served like gpupool, same client code and node order",
        utc_date()
    );
    println!();
    println!("| metric | value | target | result |");
    println!("|---|---|---|---|");
    let row = |metric: &str, value: String, target: &str, result: &str| {
        println!("| {metric} | {value} | {target} | {result} |");
    };
    row(
        "populate: 500 × IncreaseSize(+20) until 10,000 instances running",
        format!(
            "{:.2} s ({} Refresh polls)",
            populated.wall.as_secs_f64(),
            populated.polls
        ),
        "< 60 s",
        verdict(populated.wall < POPULATE_LIMIT),
    );
    for (name, samples) in [
        ("NodeGroupIncreaseSize", &populated.increase),
        ("Refresh", &populated.refresh),
        ("NodeGroupNodes", &populated.list),
    ] {
        let st = samples.stats();
        let total: Duration = samples.0.iter().sum();
        row(
            &format!("{name} during populate"),
            format!(
                "n={} total {:.2} s, median {} µs, p99 {} µs (max {} µs)",
                st.count,
                total.as_secs_f64(),
                us(st.median),
                us(st.p99),
                us(st.max)
            ),
            "—",
            "info",
        );
    }
    let r = &gpupool.loops;
    let s = &r.samples;
    let rpcs: [(&str, &Samples, Option<Duration>); 6] = [
        ("Refresh", &s.refresh, None),
        ("NodeGroups", &s.node_groups, None),
        (
            "NodeGroupForNode (ours)",
            &s.for_node,
            Some(FOR_NODE_P99_TARGET),
        ),
        (
            "NodeGroupForNode (not ours)",
            &s.for_node_not_ours,
            Some(FOR_NODE_P99_TARGET),
        ),
        ("NodeGroupGetOptions", &s.get_options, None),
        ("NodeGroupTargetSize", &s.target_size, None),
    ];
    for (name, samples, target) in rpcs {
        let st = samples.stats();
        let value = latencies(&st);
        match target {
            Some(t) => row(
                &format!("{name}, 1 client, loops 2–{LOOPS}"),
                value,
                &format!("p99 < {} µs", us(t)),
                verdict(st.p99 < t),
            ),
            None => row(
                &format!("{name}, 1 client, loops 2–{LOOPS}"),
                value,
                "—",
                "info",
            ),
        }
    }
    // Calls that took 10 ms or more: far beyond any handler's work, so waits
    // (e.g. a 40 ms delayed ACK), not computation.
    let per_node = [
        &s.for_node,
        &s.for_node_not_ours,
        &s.get_options,
        &s.target_size,
    ];
    let stalls: Vec<Duration> = per_node
        .iter()
        .flat_map(|x| x.0.iter().copied())
        .filter(|d| *d >= STALL)
        .collect();
    row(
        &format!(
            "per-node/per-group calls ≥ {} ms, loops 2–{LOOPS}",
            STALL.as_millis()
        ),
        format!(
            "{} of {} calls, {:.2} s in all",
            stalls.len(),
            per_node.iter().map(|x| x.0.len()).sum::<usize>(),
            stalls.iter().sum::<Duration>().as_secs_f64()
        ),
        "—",
        "info",
    );
    for (i, elapsed) in r.wall.iter().enumerate() {
        let warmup = i == 0;
        row(
            &format!(
                "CA loop {} wall time ({} calls, 1 client){}",
                i + 1,
                r.calls_per_loop,
                if warmup { ", warm-up" } else { "" }
            ),
            format!("{:.3} s", elapsed.as_secs_f64()),
            "< 5 s",
            if warmup {
                "info"
            } else {
                verdict(*elapsed < LOOP_TARGET)
            },
        );
    }
    row(
        &format!("CPU per call in loops 2–{LOOPS}: server, client (user+sys)"),
        loop_cpu(r),
        "—",
        "info",
    );
    let t = &gpupool.throughput;
    row(
        &format!(
            "throughput, {CLIENTS} clients × {CALLS_PER_CLIENT} calls (ForNode : GetOptions = 1 : 2)"
        ),
        throughput_value(t),
        "≥ 20,000 calls/s",
        verdict(t.rate() >= THROUGHPUT_TARGET),
    );
    row(
        &format!("server CPU per call under {CLIENTS}-client load (user+sys)"),
        load_cpu(t),
        "—",
        "info",
    );
    row(
        &format!("latency under {CLIENTS}-client load"),
        load_latency(t),
        "—",
        "info",
    );
    row(
        "server peak RSS (VmHWM, after all phases)",
        format!(
            "{:.1} MiB = {:.1} MB (VmRSS now {:.1} MiB)",
            hwm_kib as f64 / 1024.0,
            hwm_kib as f64 * 1024.0 / 1e6,
            rss_kib as f64 / 1024.0
        ),
        "< 100 MB",
        verdict(hwm_kib * 1024 < RSS_TARGET_BYTES),
    );

    // The same phases against the transport floor.
    let b = &baseline.loops;
    let bt = &baseline.throughput;
    row(
        &format!("baseline: NodeGroupForNode, 1 client, loops 2–{LOOPS}"),
        latencies(&b.samples.for_node.stats()),
        "—",
        "info",
    );
    row(
        &format!(
            "baseline: CA loop wall time ({} calls, 1 client)",
            b.calls_per_loop
        ),
        b.wall
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let name = if i == 0 {
                    "warm-up".to_owned()
                } else {
                    format!("loop {}", i + 1)
                };
                format!("{name} {:.3} s", d.as_secs_f64())
            })
            .collect::<Vec<_>>()
            .join(" · "),
        "—",
        "info",
    );
    row(
        &format!("baseline: CPU per call in loops 2–{LOOPS}: server, client (user+sys)"),
        loop_cpu(b),
        "—",
        "info",
    );
    row(
        &format!("baseline: throughput, {CLIENTS} clients × {CALLS_PER_CLIENT} calls"),
        throughput_value(bt),
        "—",
        "info",
    );
    row(
        &format!("baseline: server CPU per call under {CLIENTS}-client load (user+sys)"),
        load_cpu(bt),
        "—",
        "info",
    );
    row(
        &format!("baseline: latency under {CLIENTS}-client load"),
        load_latency(bt),
        "—",
        "info",
    );
    let (gp_p99, base_p99) = (s.for_node.stats().p99, b.samples.for_node.stats().p99);
    let (gp_cpu, base_cpu) = (
        r.cpu_per_call_us(r.server_cpu),
        b.cpu_per_call_us(b.server_cpu),
    );
    row(
        "gpupool over baseline",
        format!(
            "loop time × {:.2} ({:.3} s / {:.3} s, mean of loops 2–{LOOPS}) · NodeGroupForNode p99 × {:.2} ({} µs / {} µs) · server CPU per sequential call {:+.0} µs ({:.0} µs − {:.0} µs)",
            r.mean_measured().as_secs_f64() / b.mean_measured().as_secs_f64(),
            r.mean_measured().as_secs_f64(),
            b.mean_measured().as_secs_f64(),
            gp_p99.as_secs_f64() / base_p99.as_secs_f64(),
            us(gp_p99),
            us(base_p99),
            gp_cpu - base_cpu,
            gp_cpu,
            base_cpu,
        ),
        "—",
        "info",
    );
}

fn latencies(st: &Stats) -> String {
    format!(
        "n={} median {} µs, p99 {} µs (max {} µs)",
        st.count,
        us(st.median),
        us(st.p99),
        us(st.max)
    )
}

fn loop_cpu(l: &Loops) -> String {
    format!(
        "server {:.0} µs ({:.2} s user, {:.2} s sys) · client {:.0} µs ({:.2} s user, {:.2} s sys)",
        l.cpu_per_call_us(l.server_cpu),
        l.server_cpu.user.as_secs_f64(),
        l.server_cpu.system.as_secs_f64(),
        l.cpu_per_call_us(l.client_cpu),
        l.client_cpu.user.as_secs_f64(),
        l.client_cpu.system.as_secs_f64(),
    )
}

fn throughput_value(t: &Throughput) -> String {
    format!(
        "{:.0} calls/s ({} calls in {:.2} s)",
        t.rate(),
        t.calls,
        t.wall.as_secs_f64()
    )
}

fn load_cpu(t: &Throughput) -> String {
    format!(
        "{:.0} µs ({:.2} s user, {:.2} s sys)",
        t.server_cpu_per_call_us(),
        t.server_cpu.user.as_secs_f64(),
        t.server_cpu.system.as_secs_f64()
    )
}

fn load_latency(t: &Throughput) -> String {
    let st = t.latency.stats();
    format!(
        "median {} µs, p99 {} µs (max {} µs)",
        us(st.median),
        us(st.p99),
        us(st.max)
    )
}

/// Today's date in UTC as YYYY-MM-DD (civil-from-days, proleptic Gregorian).
fn utc_date() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

// ---------------------------------------------------------------------------
// The baseline server

/// The transport-floor server: run as `<this bench> --baseline-server`.
mod baseline {
    use gpupool::proto as pb;
    use gpupool::proto::cloud_provider_server::{CloudProvider, CloudProviderServer};
    use tonic::transport::server::TcpIncoming;
    use tonic::{Request, Response, Status};

    pub const FLAG: &str = "--baseline-server";
    pub const ADDR_PREFIX: &str = "ca_loop baseline serving externalgrpc on ";

    /// Serves until SIGTERM or until stdin closes (the bench is gone), the way
    /// `gpupool serve` serves: a multi-thread runtime, the server in a task of
    /// its own, TCP_NODELAY on every connection.
    pub fn serve() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("starting the async runtime");
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
            let stdin_closed = stdin_closed();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binding 127.0.0.1:0");
            let addr = listener.local_addr().expect("the listener's address");
            let server = tonic::transport::Server::builder()
                .add_service(CloudProviderServer::new(Constant))
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    async move {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = stdin_closed => {}
                        }
                    },
                );
            let task = tokio::spawn(server);
            println!("{ADDR_PREFIX}{addr}");
            task.await
                .expect("the baseline server task panicked")
                .expect("the baseline server failed");
        });
    }

    /// Resolves once stdin reaches its end (or fails).
    fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = tx.send(());
        });
        rx
    }

    /// Answers as cheaply as tonic allows, with replies shaped like gpupool's.
    struct Constant;

    fn group() -> pb::NodeGroup {
        pb::NodeGroup {
            id: "g000".to_owned(),
            min_size: 0,
            max_size: super::MAX_SIZE as i32,
            debug: "g000 (baseline constant)".to_owned(),
        }
    }

    fn unimplemented<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not in the ca_loop baseline"))
    }

    #[tonic::async_trait]
    impl CloudProvider for Constant {
        async fn node_groups(
            &self,
            _: Request<pb::NodeGroupsRequest>,
        ) -> Result<Response<pb::NodeGroupsResponse>, Status> {
            Ok(Response::new(pb::NodeGroupsResponse {
                node_groups: vec![group()],
            }))
        }

        async fn node_group_for_node(
            &self,
            _: Request<pb::NodeGroupForNodeRequest>,
        ) -> Result<Response<pb::NodeGroupForNodeResponse>, Status> {
            Ok(Response::new(pb::NodeGroupForNodeResponse {
                node_group: Some(group()),
            }))
        }

        async fn refresh(
            &self,
            _: Request<pb::RefreshRequest>,
        ) -> Result<Response<pb::RefreshResponse>, Status> {
            Ok(Response::new(pb::RefreshResponse {}))
        }

        async fn node_group_target_size(
            &self,
            _: Request<pb::NodeGroupTargetSizeRequest>,
        ) -> Result<Response<pb::NodeGroupTargetSizeResponse>, Status> {
            Ok(Response::new(pb::NodeGroupTargetSizeResponse {
                target_size: super::NODES_PER_GROUP as i32,
            }))
        }

        async fn node_group_get_options(
            &self,
            request: Request<pb::NodeGroupAutoscalingOptionsRequest>,
        ) -> Result<Response<pb::NodeGroupAutoscalingOptionsResponse>, Status> {
            Ok(Response::new(pb::NodeGroupAutoscalingOptionsResponse {
                node_group_autoscaling_options: request.into_inner().defaults,
            }))
        }

        async fn pricing_node_price(
            &self,
            _: Request<pb::PricingNodePriceRequest>,
        ) -> Result<Response<pb::PricingNodePriceResponse>, Status> {
            unimplemented()
        }

        async fn pricing_pod_price(
            &self,
            _: Request<pb::PricingPodPriceRequest>,
        ) -> Result<Response<pb::PricingPodPriceResponse>, Status> {
            unimplemented()
        }

        async fn gpu_label(
            &self,
            _: Request<pb::GpuLabelRequest>,
        ) -> Result<Response<pb::GpuLabelResponse>, Status> {
            unimplemented()
        }

        async fn get_available_gpu_types(
            &self,
            _: Request<pb::GetAvailableGpuTypesRequest>,
        ) -> Result<Response<pb::GetAvailableGpuTypesResponse>, Status> {
            unimplemented()
        }

        async fn cleanup(
            &self,
            _: Request<pb::CleanupRequest>,
        ) -> Result<Response<pb::CleanupResponse>, Status> {
            unimplemented()
        }

        async fn node_group_increase_size(
            &self,
            _: Request<pb::NodeGroupIncreaseSizeRequest>,
        ) -> Result<Response<pb::NodeGroupIncreaseSizeResponse>, Status> {
            unimplemented()
        }

        async fn node_group_delete_nodes(
            &self,
            _: Request<pb::NodeGroupDeleteNodesRequest>,
        ) -> Result<Response<pb::NodeGroupDeleteNodesResponse>, Status> {
            unimplemented()
        }

        async fn node_group_decrease_target_size(
            &self,
            _: Request<pb::NodeGroupDecreaseTargetSizeRequest>,
        ) -> Result<Response<pb::NodeGroupDecreaseTargetSizeResponse>, Status> {
            unimplemented()
        }

        async fn node_group_nodes(
            &self,
            _: Request<pb::NodeGroupNodesRequest>,
        ) -> Result<Response<pb::NodeGroupNodesResponse>, Status> {
            unimplemented()
        }

        async fn node_group_template_node_info(
            &self,
            _: Request<pb::NodeGroupTemplateNodeInfoRequest>,
        ) -> Result<Response<pb::NodeGroupTemplateNodeInfoResponse>, Status> {
            unimplemented()
        }
    }
}
