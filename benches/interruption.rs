//! Interruption-burst benchmark: 100 spot interruption notices arriving at
//! once, and how long each takes to get its replacement asked of
//! cluster-autoscaler and its node cordoned.
//!
//! Run with `cargo bench --bench interruption`. Every round starts afresh:
//! the local Kubernetes API test server (`tests/common/kube_api.rs`), a
//! simulated cloud on the real clock (time scaled 100,000×, so boots take
//! milliseconds), and the real server (`gpupool::server::start`: gRPC, the
//! webhook, the interruption engine, the journal in the test server's
//! ConfigMaps). Five spot groups of 20, 25, 30, 35 and 40 `gpu-1x-l4`
//! instances (150, max size 80 each, so every notice gets a replacement)
//! are scaled up over gRPC; each instance gets a Ready Node (the providerID
//! and node name the fleet reports) and one ReplicaSet pod. Then 100 tasks,
//! released together by a barrier, each POST one notice to
//! `/notices/generic` (bearer secret; 13, 17, 20, 23 and 27 of the groups'
//! nodes, named by node), each over a connection of its own (connection
//! set-up is inside the measured time, as for a real sender).
//!
//! What is measured, per notice, from the instant its POST starts:
//!
//! - **notice → replacement requested**: until the replacement is visible to
//!   CA. A poller (its own gRPC connection) loops: `Engine::operations()`,
//!   then `NodeGroups` over gRPC, then `Instant::now()`; a notice counts as
//!   requested at the first loop whose operations hold its instance with the
//!   minSize it asks (`want`) and whose `NodeGroups` reply reports the group's
//!   `minSize ≥ want`. The time is when that reply arrived, so it is an upper
//!   bound: it includes up to one poll cycle (a gRPC round trip plus a 1 ms
//!   pause; its median and max are reported as the measure's resolution).
//!   The server's own `gpupool_interruption_step_seconds{step=
//!   "replacement_requested"}` starts when the webhook took the notice, after
//!   connection set-up and the request's parsing, and ends at the mark, before
//!   CA can read it: measured from outside, the bench covers both.
//! - **notice → cordon**: until the test API server applied the node's
//!   cordon PATCH (`unschedulable` and the taint), timestamped inside the
//!   server's lock as the node changes (`KubeApi::applied_node_patches`).
//!   Same process, same monotonic clock as the POST's start: no polling.
//!   The server's own `step="cordoned"` histogram (which starts when the
//!   webhook took the notice) is shown next to it as a check.
//!
//! The gpupool server, the Kubernetes API test server and the bench's
//! clients run on three tokio runtimes of their own (2 workers each), as
//! three processes would, but share the machine's cores. After the
//! measurement the bench plays CA once per group (`IncreaseSize` by minSize −
//! target, as `--enforce-node-group-min-size` does), waits for every
//! operation to close (counted from `/metrics`), checks the nodes are
//! cordoned and tainted and their pods evicted, and reports the journal's
//! ConfigMap writes and any entry left once every operation closed (there
//! should be none); none of that is timed.
//!
//! Each round reports p50, p90, p99 and max; the table gives the median of
//! each across rounds (and the 500 notices pooled). Not a test: it panics
//! only when the server misbehaves (a notice refused, no progress in time).

#[path = "../tests/common/kube_api.rs"]
mod kube_api;
#[path = "../tests/common/kube_faults.rs"]
mod kube_faults;

use gpupool::config::Config;
use gpupool::interrupt::Engine;
use gpupool::proto::cloud_provider_client::CloudProviderClient;
use gpupool::proto::{
    NodeGroupIncreaseSizeRequest, NodeGroupTargetSizeRequest, NodeGroupsRequest, RefreshRequest,
};
use gpupool::server::{self, Server};
use gpupool_cloud::SystemClock;
use kube_api::KubeApi;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Barrier;
use tonic::transport::Channel;

type Client = CloudProviderClient<Channel>;

const ROUNDS: usize = 5;
/// Per group: (instances, notices for its first instances).
const GROUPS: [(usize, usize); 5] = [(20, 13), (25, 17), (30, 20), (35, 23), (40, 27)];
/// Room for every replacement (40 + 27 < 80).
const MAX_SIZE: u32 = 80;
const NOTICES: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < GROUPS.len() {
        n += GROUPS[i].1;
        i += 1;
    }
    n
};
const TARGET: Duration = Duration::from_secs(1);

const SECRET: &str = "a-bench-secret-of-some-length";
const NS: &str = "gpupool";
const TAINT: &str = "gpupool.dev/interrupted";
/// The poller's pause between cycles.
const POLL_PAUSE: Duration = Duration::from_millis(1);
/// No step of a round may take longer.
const LIMIT: Duration = Duration::from_secs(30);
/// The whole bench may not take longer.
const WATCHDOG: Duration = Duration::from_secs(180);
/// How long the journal may take to empty once every operation closed.
const JOURNAL_GRACE: Duration = Duration::from_secs(1);

fn main() {
    let bench_start = Instant::now();
    // A hung server (a deadlock blocks runtime threads, so no async limit
    // fires) must not hang the bench.
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("interruption bench: no end after {WATCHDOG:?}; a server hung? exiting");
        std::process::exit(2);
    });
    gpupool::tls::install_crypto_provider();
    let kube_rt = runtime("kube-api");
    let client_rt = runtime("bench-client");
    let rounds: Vec<Round> = (0..ROUNDS)
        .map(|r| round(r, &kube_rt, &client_rt))
        .collect();
    print_report(&rounds);
    println!();
    println!(
        "bench wall time ({ROUNDS} rounds: start, populate, {NOTICES} notices, CA pass, close, stop): {:.1} s",
        bench_start.elapsed().as_secs_f64()
    );
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("starting a tokio runtime")
}

fn group_id(g: usize) -> String {
    format!("spot-{g}")
}

fn config_yaml(dir: &std::path::Path, kubeconfig: &std::path::Path) -> String {
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).expect("writing the secret");
    let mut yaml = format!(
        "cloud: sim
region: sim-east-1
server:
  grpc_listen: 127.0.0.1:0
  http_listen: 127.0.0.1:0
  sync_interval: 1h
  cloud_calls_per_second: 100000
  cloud_call_burst: 100000
kubernetes:
  kubeconfig: {}
  namespace: {NS}
webhook:
  listen: 127.0.0.1:0
  secret_file: {}
  per_source_per_second: 100000
interruption:
  eviction_retry: 50ms
  drain_margin: 15s
sim:
  seed: 7
  time_scale: 100000
  spot_capacity:
    gpu-1x-l4: {{ sim-east-1a: 1000, sim-east-1b: 1000, sim-east-1c: 1000 }}
node_groups:
",
        kubeconfig.display(),
        secret.display()
    );
    for g in 0..GROUPS.len() {
        yaml.push_str(&format!(
            "  - {{ id: {}, min_size: 0, max_size: {MAX_SIZE}, instance_type: gpu-1x-l4, capacity_type: spot, annotations: {{ gpupool.dev/drain-timeout: 5m }} }}\n",
            group_id(g)
        ));
    }
    yaml
}

async fn connect(addr: std::net::SocketAddr) -> Client {
    CloudProviderClient::connect(format!("http://{addr}"))
        .await
        .expect("connecting to gpupool's gRPC port")
}

/// One interrupted instance.
#[derive(Clone, Debug)]
struct Victim {
    group: String,
    provider_id: String,
    node: String,
}

/// What one round measured.
struct Round {
    /// Per notice, in victim order.
    replacement: Vec<Duration>,
    cordon: Vec<Duration>,
    /// POST start → 202 received.
    answered: Vec<Duration>,
    /// The poller's cycles: the replacement measure's resolution.
    poll_cycles: Vec<Duration>,
    /// First POST → last cordon.
    burst: Duration,
    /// The server's own `step="cordoned"` histogram: (≤ 1 s, count, sum s).
    server_cordoned: (u64, u64, f64),
    closed: Closed,
}

fn round(
    index: usize,
    kube_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
) -> Round {
    let kube = kube_rt.block_on(KubeApi::start());
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let mut config = Config::from_yaml(&config_yaml(dir.path(), &kube.kubeconfig(dir.path())))
        .expect("the bench config parses");
    let server_rt = runtime("gpupool");
    let backend = server_rt
        .block_on(gpupool::backend::from_config(
            &mut config,
            Arc::new(SystemClock),
        ))
        .expect("the simulated cloud starts");
    let server = server_rt
        .block_on(server::start(&config, backend))
        .expect("gpupool starts");
    let measured = client_rt.block_on(drive(index, &server, &kube));
    server_rt.block_on(server.shutdown());
    server_rt.shutdown_timeout(Duration::from_secs(5));
    measured
}

async fn drive(round: usize, server: &Server, kube: &KubeApi) -> Round {
    let mut client = connect(server.grpc_addr).await;
    let victims = populate(server, &mut client, kube).await;
    // Let the server's Node watch take the new nodes in before the burst.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let url = format!(
        "http://{}/notices/generic",
        server
            .webhook
            .as_ref()
            .expect("the webhook is configured")
            .0
    );
    // Senders, the poller and this task start together.
    let ready = Arc::new(Barrier::new(NOTICES + 2));
    let poller = tokio::spawn(poll_replacements(
        server.interruptions.clone(),
        connect(server.grpc_addr).await,
        victims.clone(),
        ready.clone(),
    ));
    let deadline =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(120)).to_string();
    let mut senders = Vec::with_capacity(NOTICES);
    for (i, v) in victims.iter().enumerate() {
        // A client (so a connection) of its own per notice.
        let http = reqwest::Client::builder()
            .build()
            .expect("building an HTTP client");
        let body = json!({"id": format!("bench-{round}-{i}"), "kind": "interruption",
                          "node": v.node, "deadline": deadline})
        .to_string();
        let url = url.clone();
        let ready = ready.clone();
        senders.push(tokio::spawn(async move {
            ready.wait().await;
            let sent = Instant::now();
            let response = http
                .post(&url)
                .header("authorization", format!("Bearer {SECRET}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("posting a notice");
            let status = response.status().as_u16();
            let text = response.text().await.expect("reading the webhook's answer");
            let answered = Instant::now();
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            assert_eq!(
                (status, &answer["accepted"]),
                (202, &json!(1)),
                "notice {i} not accepted: {answer}"
            );
            (sent, answered)
        }));
    }
    ready.wait().await;
    let mut posts = Vec::with_capacity(NOTICES);
    for s in senders {
        posts.push(s.await.expect("a sender panicked"));
    }
    let (confirmed, poll_cycles) = poller.await.expect("the poller panicked");

    // Cordons: the first applied PATCH of each victim's node.
    let names: Vec<String> = victims.iter().map(|v| v.node.clone()).collect();
    let cordoned = kube
        .wait_for_within("every victim's node patched", LIMIT, |api| {
            let mut first: HashMap<String, Instant> = HashMap::new();
            for (name, at) in api.applied_node_patches() {
                first.entry(name).or_insert(at);
            }
            names
                .iter()
                .map(|n| first.get(n).copied())
                .collect::<Option<Vec<Instant>>>()
        })
        .await;

    let first_post = posts.iter().map(|p| p.0).min().expect("notices were sent");
    let last_cordon = cordoned.iter().max().copied().expect("nodes were cordoned");
    let replacement = posts
        .iter()
        .zip(&confirmed)
        .map(|(p, c)| c.saturating_duration_since(p.0))
        .collect();
    let cordon = posts
        .iter()
        .zip(&cordoned)
        .map(|(p, c)| c.saturating_duration_since(p.0))
        .collect();
    let answered = posts.iter().map(|(s, a)| *a - *s).collect();

    play_ca(&mut client).await;
    let closed = close_all(server, kube, &victims).await;
    let server_cordoned = server_histogram(server, "cordoned").await;
    Round {
        replacement,
        cordon,
        answered,
        poll_cycles,
        burst: last_cordon.saturating_duration_since(first_post),
        server_cordoned,
        closed,
    }
}

/// Scales every group up over gRPC, waits (bounded) until all are running
/// with node names, gives each a Ready Node and a pod, and returns the
/// victims: the first instances of each group.
async fn populate(server: &Server, client: &mut Client, kube: &KubeApi) -> Vec<Victim> {
    for (g, (size, _)) in GROUPS.iter().enumerate() {
        client
            .node_group_increase_size(NodeGroupIncreaseSizeRequest {
                id: group_id(g),
                delta: *size as i32,
            })
            .await
            .expect("NodeGroupIncreaseSize");
    }
    server.fleet.settle().await;
    let start = Instant::now();
    let snapshot = loop {
        client.refresh(RefreshRequest {}).await.expect("Refresh");
        let snapshot = server.fleet.snapshot();
        let ready = GROUPS.iter().enumerate().all(|(g, (size, _))| {
            let view = &snapshot.groups[g];
            view.instances.len() == *size
                && view
                    .instances
                    .iter()
                    .all(|i| i.state == gpupool::fleet::NodeState::Running && i.node_name.is_some())
        });
        if ready {
            break snapshot;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the fleet was not running within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let now = SystemTime::now();
    let mut victims = Vec::with_capacity(NOTICES);
    for (g, (_, notices)) in GROUPS.iter().enumerate() {
        for (i, instance) in snapshot.groups[g].instances.iter().enumerate() {
            let name = instance.node_name.clone().expect("a node name");
            let provider_id = instance.provider_id.as_str().to_owned();
            kube.put_node(&name, &provider_id, now, Some(now), 1);
            kube.put_pod_full(
                "ml",
                &format!("work-{name}"),
                json!({
                    "metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "work", "uid": "uid-work", "controller": true}]},
                    "spec": {"nodeName": name, "containers": [{"name": "main", "image": "work"}]},
                    "status": {"phase": "Running"}}),
            );
            if i < *notices {
                victims.push(Victim {
                    group: group_id(g),
                    provider_id,
                    node: name,
                });
            }
        }
    }
    assert_eq!(victims.len(), NOTICES);
    victims
}

/// Loops `operations()` + `NodeGroups` until every victim's replacement is
/// visible to CA; returns when each was first seen, and every cycle's time.
/// Only while no operation can close (see [`close_all`]).
async fn poll_replacements(
    engine: Arc<Engine>,
    mut client: Client,
    victims: Vec<Victim>,
    ready: Arc<Barrier>,
) -> (Vec<Instant>, Vec<Duration>) {
    let index: HashMap<&str, usize> = victims
        .iter()
        .enumerate()
        .map(|(i, v)| (v.provider_id.as_str(), i))
        .collect();
    let mut seen: Vec<Option<Instant>> = vec![None; victims.len()];
    let mut cycles = Vec::new();
    let mut left = victims.len();
    ready.wait().await;
    let start = Instant::now();
    while left > 0 {
        assert!(
            start.elapsed() < LIMIT,
            "{left} of {} replacements not requested within {LIMIT:?}",
            victims.len()
        );
        let cycle = Instant::now();
        let ops = engine.operations();
        let groups = client
            .node_groups(NodeGroupsRequest {})
            .await
            .expect("NodeGroups")
            .into_inner()
            .node_groups;
        let at = Instant::now();
        cycles.push(at - cycle);
        let min: HashMap<&str, i32> = groups.iter().map(|g| (g.id.as_str(), g.min_size)).collect();
        for op in &ops {
            let Some(&i) = index.get(op.provider_id.as_str()) else {
                continue;
            };
            if seen[i].is_some() {
                continue;
            }
            let want = op.want.unwrap_or_else(|| {
                panic!(
                    "no replacement asked for {} (mode {:?})",
                    op.provider_id, op.mode
                )
            });
            assert_eq!(op.group, victims[i].group);
            if min.get(op.group.as_str()).copied().unwrap_or(0) >= want as i32 {
                seen[i] = Some(at);
                left -= 1;
            }
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    (seen.into_iter().flatten().collect(), cycles)
}

/// CA with `--enforce-node-group-min-size`, once per group: a group whose
/// target is below its minSize is scaled up by the difference.
async fn play_ca(client: &mut Client) {
    client.refresh(RefreshRequest {}).await.expect("Refresh");
    let groups = client
        .node_groups(NodeGroupsRequest {})
        .await
        .expect("NodeGroups")
        .into_inner()
        .node_groups;
    for (g, (size, notices)) in GROUPS.iter().enumerate() {
        let id = group_id(g);
        let group = groups
            .iter()
            .find(|x| x.id == id)
            .expect("every group listed");
        let target = client
            .node_group_target_size(NodeGroupTargetSizeRequest { id: id.clone() })
            .await
            .expect("NodeGroupTargetSize")
            .into_inner()
            .target_size;
        assert_eq!(
            (target, group.min_size),
            (*size as i32, (size + notices) as i32),
            "{id}: (target, minSize) with every replacement asked"
        );
        client
            .node_group_increase_size(NodeGroupIncreaseSizeRequest {
                id,
                delta: group.min_size - target,
            })
            .await
            .expect("NodeGroupIncreaseSize");
    }
}

/// What closing the operations left behind.
struct Closed {
    /// Journal ConfigMaps still there once every operation closed (and a
    /// grace period passed): (name, step, ConfigMap writes to it in order).
    left: Vec<(String, String, Vec<&'static str>)>,
    /// ConfigMap writes over the round: (POST, PUT, DELETE).
    writes: (usize, usize, usize),
}

/// Waits (bounded) for every operation to close, then checks what it did.
///
/// Counted from `/metrics` and the journal, not with `Engine::operations()`:
/// that takes the operations map's lock, then each operation's, while an
/// operation closing takes its own lock, then the map's
/// (`self.forget(&h.op().provider_id)` in `run.rs`), and the two deadlock
/// on a multi-thread runtime. While the notices are measured no operation
/// can close (each waits for CA to take its replacement), so the poller may
/// call it then.
async fn close_all(server: &Server, kube: &KubeApi, victims: &[Victim]) -> Closed {
    let journal = || kube.configmaps_labelled(NS, "gpupool.dev/operation", "interruption");
    let start = Instant::now();
    loop {
        let closed = metric_sum(server, "gpupool_interruption_operations_closed_total").await;
        if closed as usize == NOTICES {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{closed} of {NOTICES} operations closed after {LIMIT:?}"
        );
        // An operation closes once a sync sees its instance gone (CA's
        // Refresh does this every loop).
        let _ = server.fleet.sync().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.fleet.settle().await;
    // Every operation closed has removed its entry; give stragglers a moment.
    let all_closed = Instant::now();
    while !journal().is_empty() && all_closed.elapsed() < JOURNAL_GRACE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for v in victims {
        let node = kube.node(&v.node).expect("the node is still there");
        let tainted = node["spec"]["taints"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["key"] == TAINT && t["effect"] == "NoSchedule")
        });
        assert!(
            node["spec"]["unschedulable"] == json!(true) && tainted,
            "{} not cordoned and tainted: {}",
            v.node,
            node["spec"]
        );
        assert!(
            kube.pod("ml", &format!("work-{}", v.node)).is_none(),
            "{}'s pod not evicted",
            v.node
        );
    }
    let evicted = kube.evictions().iter().filter(|e| e.2 == 201).count();
    assert_eq!(evicted, NOTICES, "one eviction per interrupted node");

    let writes = kube.configmap_writes();
    let count = |m: &str| writes.iter().filter(|(w, _)| *w == m).count();
    let left = journal()
        .iter()
        .map(|cm| {
            let name = cm["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let step = cm["metadata"]["annotations"]["gpupool.dev/step"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let seq = writes
                .iter()
                .filter(|(_, n)| *n == name)
                .map(|(m, _)| *m)
                .collect();
            (name, step, seq)
        })
        .collect();
    Closed {
        left,
        writes: (count("POST"), count("PUT"), count("DELETE")),
    }
}

async fn metrics(server: &Server) -> String {
    reqwest::Client::new()
        .get(format!("http://{}/metrics", server.http_addr))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("reading /metrics")
}

/// A sample's value in a line of the text format.
fn sample_value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every series of `name`.
async fn metric_sum(server: &Server, name: &str) -> f64 {
    metrics(server)
        .await
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .map(sample_value)
        .sum()
}

/// The server's own histogram of `step`, over every group: (observations
/// ≤ 1 s, observations, sum in seconds).
async fn server_histogram(server: &Server, step: &str) -> (u64, u64, f64) {
    let text = metrics(server).await;
    let label = format!("step=\"{step}\"");
    let (mut le1, mut count, mut sum) = (0.0, 0.0, 0.0);
    for line in text
        .lines()
        .filter(|l| l.starts_with("gpupool_interruption_step_seconds") && l.contains(&label))
    {
        if line.starts_with("gpupool_interruption_step_seconds_bucket")
            && line.contains("le=\"1.0\"")
        {
            le1 += sample_value(line);
        } else if line.starts_with("gpupool_interruption_step_seconds_count") {
            count += sample_value(line);
        } else if line.starts_with("gpupool_interruption_step_seconds_sum") {
            sum += sample_value(line);
        }
    }
    (le1 as u64, count as u64, sum)
}

// ---------------------------------------------------------------------------
// The report

/// p50, p90, p99 and max (nearest rank).
#[derive(Clone, Copy, Default)]
struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(samples: &[Duration]) -> Self {
        let mut v = samples.to_vec();
        v.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1;
            v.get(i).copied().unwrap_or_default()
        };
        Self {
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: v.last().copied().unwrap_or_default(),
        }
    }

    /// The median of each statistic across rounds.
    fn median_of(per_round: &[Stats]) -> Self {
        let med = |f: fn(&Stats) -> Duration| {
            let mut v: Vec<Duration> = per_round.iter().map(f).collect();
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or_default()
        };
        Self {
            p50: med(|s| s.p50),
            p90: med(|s| s.p90),
            p99: med(|s| s.p99),
            max: med(|s| s.max),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "pass" } else { "FAIL" }
}

fn print_report(rounds: &[Round]) {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let per = |f: fn(&Round) -> &Vec<Duration>| -> Vec<Stats> {
        rounds.iter().map(|r| Stats::of(f(r))).collect()
    };
    let pooled = |f: fn(&Round) -> &Vec<Duration>| -> Stats {
        Stats::of(
            &rounds
                .iter()
                .flat_map(|r| f(r).iter().copied())
                .collect::<Vec<_>>(),
        )
    };
    let replacement = per(|r| &r.replacement);
    let cordon = per(|r| &r.cordon);
    let answered = per(|r| &r.answered);
    let cycles = per(|r| &r.poll_cycles);
    println!();
    println!(
        "`cargo bench --bench interruption` · nproc {nproc} · {} rounds × {NOTICES} notices posted at once (100 tasks, a connection each) to /notices/generic · 5 spot groups of {} instances · a fresh server, Kubernetes API test server and simulated cloud per round · latencies from each POST's start",
        rounds.len(),
        GROUPS
            .iter()
            .map(|g| g.0.to_string())
            .collect::<Vec<_>>()
            .join("/"),
    );
    println!();
    println!("| metric | p50 | p90 | p99 | max | target | result |");
    println!("|---|---|---|---|---|---|---|");
    let row = |metric: &str, s: Stats, target: &str, result: &str| {
        println!(
            "| {metric} | {} | {} | {} | {} | {target} | {result} |",
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max)
        );
    };
    let n = rounds.len();
    let rr = Stats::median_of(&replacement);
    let co = Stats::median_of(&cordon);
    row(
        &format!("notice → replacement requested (minSize over gRPC), median of {n} rounds"),
        rr,
        "p99 < 1 s",
        verdict(rr.p99 < TARGET),
    );
    row(
        &format!("notice → cordon (node PATCH applied), median of {n} rounds"),
        co,
        "p99 < 1 s",
        verdict(co.p99 < TARGET),
    );
    row(
        &format!(
            "notice → replacement requested, {} notices pooled",
            n * NOTICES
        ),
        pooled(|r| &r.replacement),
        "—",
        "info",
    );
    row(
        &format!("notice → cordon, {} notices pooled", n * NOTICES),
        pooled(|r| &r.cordon),
        "—",
        "info",
    );
    row(
        &format!("POST → 202 answered, median of {n} rounds"),
        Stats::median_of(&answered),
        "—",
        "info",
    );
    row(
        &format!("replacement poller cycle (the measure's resolution), median of {n} rounds"),
        Stats::median_of(&cycles),
        "—",
        "info",
    );
    println!();
    println!(
        "| round | replacement requested p50 / p90 / p99 / max | cordon p50 / p90 / p99 / max | POST → 202 p99 | first POST → last cordon | server's own `cordoned` histogram: ≤ 1 s of n, mean | journal ConfigMap writes over the round, POST / PUT / DELETE; entries left once all {NOTICES} closed (expect 0) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let four = |s: &Stats| {
        format!(
            "{} / {} / {} / {}",
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max)
        )
    };
    for (i, r) in rounds.iter().enumerate() {
        let (le1, count, sum) = r.server_cordoned;
        let (post, put, delete) = r.closed.writes;
        println!(
            "| {} | {} | {} | {} | {} | {le1} of {count}, {} | {post} / {put} / {delete}; {} left |",
            i + 1,
            four(&replacement[i]),
            four(&cordon[i]),
            ms(answered[i].p99),
            ms(r.burst),
            ms(Duration::from_secs_f64(if count > 0 {
                sum / count as f64
            } else {
                0.0
            })),
            r.closed.left.len(),
        );
    }
    let left: usize = rounds.iter().map(|r| r.closed.left.len()).sum();
    if let Some((name, step, writes)) = rounds.iter().flat_map(|r| r.closed.left.iter()).next() {
        println!();
        println!(
            "journal: {left} entries (of {} operations) still there {JOURNAL_GRACE:?} after every operation closed; e.g. {name} (step {step}), its writes in order: {}",
            rounds.len() * NOTICES,
            writes.join(" ")
        );
    }
}
