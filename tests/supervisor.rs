//! `gpupool serve` as deployed: two replicas electing a leader through a
//! Lease on the (local) Kubernetes API, only the leader Ready and serving;
//! the handover when the leader's node is cordoned; a lost Lease ending the
//! process; and the config file reloaded on change without a restart.

mod common;

use common::kube_api::KubeApi;
use common::{connect, eventually, http};
use gpupool::proto::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// A `gpupool serve` child and the lines it prints.
struct Replica {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(config: &Path, env: &[(&str, &str)], log: std::path::PathBuf) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gpupool"))
            .args(["serve", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,kube_lease_manager=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("gpupool starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines, log }
    }

    /// The next printed line that starts with `prefix`.
    async fn line(&mut self, prefix: &str) -> String {
        let log = self.log.clone();
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line.starts_with(prefix) {
                    return line;
                }
            }
            panic!(
                "exited before printing {prefix:?}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        };
        tokio::time::timeout(Duration::from_secs(40), wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {prefix:?} line; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            })
    }

    /// Waits for the line saying it serves: (gRPC, ops) addresses.
    async fn serving(&mut self) -> (SocketAddr, SocketAddr) {
        let line = self.line("gpupool serving externalgrpc on ").await;
        let grpc = line
            .strip_prefix("gpupool serving externalgrpc on ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .expect("a gRPC address");
        (grpc, ops_addr(&line))
    }

    /// Waits for the line saying it stands by: its ops address.
    async fn standing_by(&mut self) -> SocketAddr {
        ops_addr(&self.line("gpupool standing by for lease ").await)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    async fn exit_code(&mut self) -> Option<i32> {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(started.elapsed() < Duration::from_secs(40), "never exited");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ops_addr(line: &str) -> SocketAddr {
    line.rsplit_once("ops on http://")
        .and_then(|(_, a)| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ops address in {line:?}"))
}

async fn ready(ops: SocketAddr) -> (u16, String) {
    http(ops, "GET", "/readyz").await
}

async fn metric(ops: SocketAddr, name: &str) -> Option<f64> {
    let (_, text) = http(ops, "GET", "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

const GROUPS: &str =
    "  - id: gpu-a\n    min_size: 0\n    max_size: 4\n    instance_type: gpu-1x-l4\n";

/// A 6 s Lease renewed every second: a replica stalls up to 5 s (a loaded
/// CI machine) before it must stop acting; a leader hands over after holding
/// it 12 s.
fn replica_config(dir: &Path, api: &KubeApi) -> std::path::PathBuf {
    let kubeconfig = api.kubeconfig(dir);
    let extra = format!(
        "kubernetes:\n  kubeconfig: {}\n  namespace: gpupool\n  leader_election:\n    enabled: true\n    lease_duration: 6s\n    renew_period: 1s\n",
        kubeconfig.display()
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, common::config_yaml(GROUPS, &extra)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_hands_over_on_cordon_and_a_standby_takes_over_a_dead_leader() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = replica_config(dir.path(), &api);
    for node in ["node-a", "node-b"] {
        api.put_node(node, "", SystemTime::now(), Some(SystemTime::now()), 0);
    }

    let mut a = Replica::start(
        &config,
        &[("POD_NAME", "gpupool-a"), ("NODE_NAME", "node-a")],
        dir.path().join("a.log"),
    );
    a.standing_by().await;
    let (a_grpc, a_ops) = a.serving().await;
    assert_eq!(
        api.lease_holder("gpupool", "gpupool").as_deref(),
        Some("gpupool-a")
    );
    let mut b = Replica::start(
        &config,
        &[("POD_NAME", "gpupool-b"), ("NODE_NAME", "node-b")],
        dir.path().join("b.log"),
    );
    let b_ops = b.standing_by().await;

    // Only the leader is Ready; the standby says why it is not.
    eventually("the leader is ready", async || ready(a_ops).await.0 == 200).await;
    let (code, body) = ready(b_ops).await;
    assert_eq!(code, 503);
    assert!(body.contains("standing by"), "{body}");
    assert_eq!(metric(a_ops, "gpupool_leader").await, Some(1.0));
    assert_eq!(metric(b_ops, "gpupool_leader").await, Some(0.0));
    let mut client = connect(a_grpc).await;
    client
        .node_groups(NodeGroupsRequest {})
        .await
        .expect("the leader serves CA");

    // A drain of the leader's node: it hands the Lease over, and the
    // standby becomes the Ready one.
    assert!(api.modify_node("node-a", |n| n["spec"]["unschedulable"] = json!(true)));
    let (_, b_ops_now) = b.serving().await;
    assert_eq!(b_ops_now, b_ops, "the same port across terms");
    assert_eq!(
        api.lease_holder("gpupool", "gpupool").as_deref(),
        Some("gpupool-b")
    );
    a.standing_by().await;
    eventually("the old leader is not ready", async || {
        ready(a_ops).await.0 == 503
    })
    .await;
    eventually("the new leader is ready", async || {
        ready(b_ops).await.0 == 200
    })
    .await;

    // The new leader dies without a word: its Lease expires and the only
    // other replica takes it, cordoned node or not.
    b.signal("-KILL");
    a.serving().await;
    eventually("a leads again", async || ready(a_ops).await.0 == 200).await;
    assert_eq!(
        api.lease_holder("gpupool", "gpupool").as_deref(),
        Some("gpupool-a")
    );

    // SIGTERM: a clean stop that frees the Lease for the next replica.
    a.signal("-TERM");
    assert_eq!(a.exit_code().await, Some(0), "{}", a.log());
    assert_eq!(api.lease_holder("gpupool", "gpupool"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_at_once() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = replica_config(dir.path(), &api);
    let mut a = Replica::start(
        &config,
        &[("POD_NAME", "gpupool-a")],
        dir.path().join("a.log"),
    );
    a.serving().await;
    // Another writer takes the Lease (as a forced apply would).
    api.set_lease_holder("gpupool", "gpupool", "intruder");
    assert_eq!(a.exit_code().await, Some(1), "{}", a.log());
    assert!(
        a.log()
            .contains("lost the leader lease gpupool/gpupool: intruder holds the lease"),
        "{}",
        a.log()
    );
}

/// Writes `files` into `dir` as a kubelet updates a ConfigMap or Secret
/// volume: each name a symlink through `..data`, which is swapped to a new
/// directory in one rename, so a reader sees all the old files or all the
/// new ones.
fn volume(dir: &Path, files: &[(&str, &[u8])]) {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(dir).unwrap();
    let version = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    std::fs::create_dir(dir.join(&version)).unwrap();
    for (name, data) in files {
        std::fs::write(dir.join(&version).join(name), data).unwrap();
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

fn reload_config(max: u32, more_groups: &str) -> String {
    format!(
        "cloud: sim\nregion: sim-east-1\nsim:\n  time_scale: 1000\nserver:\n  grpc_listen: 127.0.0.1:0\n  http_listen: 127.0.0.1:0\n  config_reload_interval: 100ms\nnode_groups:\n  - id: gpu-a\n    min_size: 0\n    max_size: {max}\n    instance_type: gpu-1x-l4\n{more_groups}"
    )
}

async fn groups(client: &mut common::Client) -> Option<Vec<(String, i32)>> {
    let groups = client.node_groups(NodeGroupsRequest {}).await.ok()?;
    Some(
        groups
            .into_inner()
            .node_groups
            .into_iter()
            .map(|g| (g.id, g.max_size))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_is_applied_without_a_restart_and_a_bad_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("config");
    let path = config_dir.join("config.yaml");
    let write = |yaml: String| volume(&config_dir, &[("config.yaml", yaml.as_bytes())]);
    write(reload_config(4, ""));
    let mut gp = Replica::start(&path, &[], dir.path().join("gp.log"));
    let (grpc, ops) = gp.serving().await;
    let mut client = connect(grpc).await;
    assert_eq!(
        groups(&mut client).await,
        Some(vec![("gpu-a".to_owned(), 4)])
    );
    client
        .node_group_increase_size(NodeGroupIncreaseSizeRequest {
            id: "gpu-a".into(),
            delta: 1,
        })
        .await
        .expect("increase");

    // A new max and a new group, applied on the same ports.
    write(reload_config(
        6,
        "  - id: gpu-b\n    min_size: 0\n    max_size: 2\n    instance_type: gpu-1x-l40s\n",
    ));
    let (grpc2, ops2) = gp.serving().await;
    assert_eq!((grpc2, ops2), (grpc, ops));
    eventually("the new groups are served", async || {
        groups(&mut client).await == Some(vec![("gpu-a".to_owned(), 6), ("gpu-b".to_owned(), 2)])
    })
    .await;
    assert_eq!(
        metric(ops, "gpupool_config_reloads_total{outcome=\"applied\"}").await,
        Some(1.0)
    );
    // The simulated fleet is the same cloud: the instance bought before
    // the reload is still the group's.
    eventually("the instance bought before is kept", async || {
        let _ = client.refresh(RefreshRequest {}).await;
        common::group_nodes(&mut client, "gpu-a").await.len() == 1
    })
    .await;

    // A file that does not validate: named in the log, nothing changes.
    std::fs::write(
        &path,
        reload_config(6, "").replace("max_size: 6", "max_size: -1"),
    )
    .unwrap();
    eventually("the bad file is rejected", async || {
        metric(ops, "gpupool_config_reloads_total{outcome=\"rejected\"}").await == Some(1.0)
    })
    .await;
    assert!(gp.log().contains("config reload rejected"), "{}", gp.log());
    assert_eq!(
        groups(&mut client).await,
        Some(vec![("gpu-a".to_owned(), 6), ("gpu-b".to_owned(), 2)])
    );
    // So does one that parses but names an unknown instance type.
    std::fs::write(
        &path,
        reload_config(6, "").replace("gpu-1x-l4", "gpu-1x-nope"),
    )
    .unwrap();
    eventually("the unknown type is rejected", async || {
        metric(ops, "gpupool_config_reloads_total{outcome=\"rejected\"}").await == Some(2.0)
    })
    .await;
    assert!(gp.log().contains("gpu-1x-nope"), "{}", gp.log());
    assert_eq!(
        groups(&mut client).await,
        Some(vec![("gpu-a".to_owned(), 6), ("gpu-b".to_owned(), 2)])
    );
}

fn bundle() -> gpupool::certs::Bundle {
    gpupool::certs::generate(&gpupool::certs::Request {
        server_names: vec!["localhost".into()],
        client_name: "cluster-autoscaler".into(),
        valid_for: Duration::from_secs(86_400),
    })
    .expect("certificates")
}

/// A node-groups call over mTLS with `bundle`'s client certificate.
async fn call_with(grpc: SocketAddr, bundle: &gpupool::certs::Bundle) -> Result<usize, String> {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let channel = Channel::from_shared(format!("https://localhost:{}", grpc.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&bundle.ca_cert))
                .domain_name("localhost")
                .identity(Identity::from_pem(&bundle.client_cert, &bundle.client_key)),
        )
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    gpupool::proto::cloud_provider_client::CloudProviderClient::new(channel)
        .node_groups(NodeGroupsRequest {})
        .await
        .map(|r| r.into_inner().node_groups.len())
        .map_err(|e| e.to_string())
}

fn tls_volume(dir: &Path, b: &gpupool::certs::Bundle, key: &[u8]) {
    volume(
        dir,
        &[
            ("tls.crt", b.server_cert.as_bytes()),
            ("tls.key", key),
            ("ca.crt", b.ca_cert.as_bytes()),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_are_served_without_a_restart_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let first = bundle();
    tls_volume(&tls, &first, first.server_key.as_bytes());
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        reload_config(4, "").replace(
            "  config_reload_interval: 100ms\n",
            &format!(
                "  config_reload_interval: 100ms\n  tls: {{ cert: {0}/tls.crt, key: {0}/tls.key, cacert: {0}/ca.crt }}\n",
                tls.display()
            ),
        ),
    )
    .unwrap();
    let mut gp = Replica::start(&path, &[], dir.path().join("gp.log"));
    let (grpc, ops) = gp.serving().await;
    assert_eq!(call_with(grpc, &first).await, Ok(1));

    // A key that is not one: refused, the running certificate kept.
    tls_volume(&tls, &first, b"not a key");
    eventually("the broken key is refused", async || {
        metric(ops, "gpupool_config_reloads_total{outcome=\"rejected\"}").await == Some(1.0)
    })
    .await;
    assert_eq!(call_with(grpc, &first).await, Ok(1));

    // cert-manager renews the Secret (here with a new CA too): served from
    // the next look on, and the old client certificate is no longer let in.
    let renewed = bundle();
    tls_volume(&tls, &renewed, renewed.server_key.as_bytes());
    eventually("the renewed certificate is served", async || {
        call_with(grpc, &renewed).await == Ok(1)
    })
    .await;
    assert_eq!(
        metric(ops, "gpupool_config_reloads_total{outcome=\"applied\"}").await,
        Some(1.0)
    );
    assert!(call_with(grpc, &first).await.is_err());
}
