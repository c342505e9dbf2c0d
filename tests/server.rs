//! The server as an operator meets it: TLS and mTLS, the ops port, the CLI
//! commands, a clean SIGTERM, Refresh surviving a failing cloud, and the
//! simulator's interruption API.

mod common;

use common::*;
use gpupool::proto::cloud_provider_client::CloudProviderClient;
use gpupool::proto::*;
use gpupool::server::{self, Backend};
use gpupool_cloud::{
    Cloud, CloudError, CreateOutcome, CreateRequest, Instance, InstanceId, InstanceType,
    ManualClock, Price,
};
use gpupool_sim::SimCloud;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const GROUPS: &str = "
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    capacity_type: spot
";

fn gpupool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gpupool"))
}

#[tokio::test]
async fn ops_port_serves_health_readiness_and_metrics() {
    let mut h = Harness::start(&config_yaml(GROUPS, "")).await;
    h.increase("l4", 2).await.unwrap();
    h.settle().await;
    h.refresh().await;
    let ops = h.server.http_addr;
    assert_eq!(http(ops, "GET", "/healthz").await, (200, "ok\n".into()));
    assert_eq!(http(ops, "GET", "/readyz").await.0, 200);
    let (status, body) = http(ops, "GET", "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "gpupool_grpc_requests_total{rpc=\"NodeGroupIncreaseSize\",code=\"OK\"} 1",
        "gpupool_node_group_target_size{group=\"l4\"} 2",
        "gpupool_node_group_creating{group=\"l4\"} 2",
        "gpupool_grpc_request_duration_seconds_count{rpc=\"Refresh\"} 1",
        "gpupool_cloud_requests_total{operation=\"create_instances\",outcome=\"ok\"} 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    assert!(
        body.contains("gpupool_cloud_last_sync_timestamp_seconds 1800000000"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn the_sim_interrupts_a_spot_instance_on_demand_and_the_group_shrinks() {
    let mut h = Harness::start(&config_yaml(GROUPS, "")).await;
    h.increase("l4", 2).await.unwrap();
    h.settle().await;
    h.clock.advance(Duration::from_secs(600));
    h.refresh().await;
    let victim = h.sim.list_instances().await.unwrap().remove(0);
    let ops = h.server.http_addr;
    let path = format!("/sim/v1/instances/{}/interrupt", victim.id);
    let (status, body) = http(ops, "POST", &path).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"state_reason\":\"spot-interruption\""),
        "{body}"
    );
    assert_eq!(
        http(ops, "POST", "/sim/v1/instances/i-nope/interrupt")
            .await
            .0,
        404
    );

    // After the two-minute notice the instance shuts down: reported as
    // deleting, and still counted in the target while it is reported (CA
    // counts its Node as the group's until then).
    h.clock.advance(Duration::from_secs(121));
    h.refresh().await;
    assert_eq!(h.target("l4").await, 2);
    let nodes = h.nodes("l4").await;
    let gone = nodes
        .iter()
        .find(|n| n.id == victim.provider_id.as_str())
        .unwrap();
    assert_eq!(
        state(gone),
        gpupool::proto::instance_status::InstanceState::InstanceDeleting
    );
    // Terminated (the sim's shutdown takes 30 s): gone, the group shrinks.
    h.clock.advance(Duration::from_secs(31));
    h.refresh().await;
    assert_eq!(h.target("l4").await, 1);
    assert!(
        h.nodes("l4")
            .await
            .iter()
            .all(|n| n.id != victim.provider_id.as_str())
    );
    h.stop().await;
}

/// The simulated cloud with switches that make listing or creating fail.
#[derive(Debug)]
struct Flaky {
    sim: Arc<SimCloud>,
    fail: AtomicBool,
    deny_create: AtomicBool,
}

#[async_trait::async_trait]
impl Cloud for Flaky {
    fn provider_name(&self) -> &str {
        self.sim.provider_name()
    }
    fn region(&self) -> &str {
        self.sim.region()
    }
    async fn zones(&self) -> Result<Vec<String>, CloudError> {
        self.sim.zones().await
    }
    async fn list_instances(&self) -> Result<Vec<Instance>, CloudError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(CloudError::throttled("RequestLimitExceeded", "slow down"));
        }
        self.sim.list_instances().await
    }
    async fn create_instances(&self, r: &CreateRequest) -> Result<CreateOutcome, CloudError> {
        if self.deny_create.load(Ordering::SeqCst) {
            return Err(CloudError::other(
                "UnauthorizedOperation",
                "You are not authorized to perform this operation.",
            ));
        }
        self.sim.create_instances(r).await
    }
    async fn delete_instances(&self, ids: &[InstanceId]) -> Result<(), CloudError> {
        self.sim.delete_instances(ids).await
    }
    async fn instance_types(&self) -> Result<Vec<InstanceType>, CloudError> {
        self.sim.instance_types().await
    }
    async fn prices(&self) -> Result<Vec<Price>, CloudError> {
        self.sim.prices().await
    }
}

#[tokio::test]
async fn refresh_never_fails_because_the_cloud_does() {
    let yaml = config_yaml(GROUPS, "");
    let config = gpupool::config::Config::from_yaml(&yaml).unwrap();
    let clock = ManualClock::new(t0());
    let sim = Arc::new(SimCloud::new(config.sim.clone(), Arc::new(clock.clone())).unwrap());
    let flaky = Arc::new(Flaky {
        sim,
        fail: AtomicBool::new(false),
        deny_create: AtomicBool::new(false),
    });
    let backend = Backend {
        cloud: flaky.clone(),
        clock: Arc::new(clock.clone()),
        extra_routes: None,
    };
    let server = server::start(&config, backend).await.unwrap();
    let mut client = connect(server.grpc_addr).await;
    client
        .node_group_increase_size(NodeGroupIncreaseSizeRequest {
            id: "l4".into(),
            delta: 3,
        })
        .await
        .unwrap();
    server.fleet.settle().await;
    client.refresh(RefreshRequest {}).await.unwrap();
    let before = client
        .node_group_nodes(NodeGroupNodesRequest { id: "l4".into() })
        .await
        .unwrap()
        .into_inner();

    flaky.fail.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(3600));
    client
        .refresh(RefreshRequest {})
        .await
        .expect("Refresh succeeds on a failing cloud");
    let after = client
        .node_group_nodes(NodeGroupNodesRequest { id: "l4".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, before, "the last good state is served");
    let (_, metrics) = http(server.http_addr, "GET", "/metrics").await;
    assert!(
        metrics.contains("gpupool_cloud_sync_failures_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "gpupool_cloud_requests_total{operation=\"list_instances\",outcome=\"error\"} 1"
    ));

    flaky.fail.store(false, Ordering::SeqCst);
    client.refresh(RefreshRequest {}).await.unwrap();
    let healed = client
        .node_group_nodes(NodeGroupNodesRequest { id: "l4".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        census(&healed.instances),
        (0, 3, 0),
        "fresh again once the cloud answers"
    );
    server.shutdown().await;
}

fn certificates(dir: &std::path::Path) -> (String, String, String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["cluster-autoscaler".into()]);
    let write = |name: &str, pem: &str| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p.display().to_string()
    };
    (
        write("ca.pem", &ca.pem()),
        write("server.pem", &server_cert),
        write("server-key.pem", &server_key),
        write("client.pem", &client_cert),
        write("client-key.pem", &client_key),
    )
}

#[tokio::test]
async fn mtls_admits_only_clients_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key, client_cert, client_key) = certificates(dir.path());
    let yaml = format!(
        "cloud: sim\nregion: sim-east-1\nserver:\n  grpc_listen: 127.0.0.1:0\n  http_listen: 127.0.0.1:0\n  tls: {{ cert: {cert}, key: {key}, cacert: {ca} }}\nnode_groups:\n{GROUPS}"
    );
    let mut config = gpupool::config::Config::from_yaml(&yaml).unwrap();
    let clock = ManualClock::new(t0());
    let backend = gpupool::backend::from_config(&mut config, Arc::new(clock))
        .await
        .unwrap();
    let server = server::start(&config, backend).await.unwrap();
    let url = format!("https://localhost:{}", server.grpc_addr.port());
    let read = |p: &str| std::fs::read(p).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&ca)))
        .domain_name("localhost");

    let with_cert = Channel::from_shared(url.clone())
        .unwrap()
        .tls_config(
            tls.clone()
                .identity(Identity::from_pem(read(&client_cert), read(&client_key))),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let groups = CloudProviderClient::new(with_cert)
        .node_groups(NodeGroupsRequest {})
        .await
        .unwrap();
    assert_eq!(groups.into_inner().node_groups[0].id, "l4");

    let without_cert = async {
        let channel = Channel::from_shared(url.clone())
            .unwrap()
            .tls_config(tls.clone())
            .unwrap()
            .connect()
            .await?;
        CloudProviderClient::new(channel)
            .node_groups(NodeGroupsRequest {})
            .await
            .map_err(Into::into)
    };
    let result: Result<_, Box<dyn std::error::Error>> = without_cert.await;
    assert!(
        result.is_err(),
        "a client without a certificate is turned away"
    );

    let plaintext = CloudProviderClient::connect(format!("http://{}", server.grpc_addr)).await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(mut c) => c.node_groups(NodeGroupsRequest {}).await.is_err(),
    };
    assert!(refused, "plaintext is refused on a TLS port");

    // `gpupool groups` over mTLS.
    let out = tokio::task::spawn_blocking(move || {
        gpupool()
            .args([
                "groups",
                "--address",
                &format!("localhost:{}", server.grpc_addr.port()),
            ])
            .args([
                "--cacert",
                &ca,
                "--cert",
                &client_cert,
                "--key",
                &client_key,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("l4 "))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unreadable_tls_files_are_named() {
    let yaml = format!(
        "cloud: sim\nregion: sim-east-1\nserver:\n  grpc_listen: 127.0.0.1:0\n  http_listen: 127.0.0.1:0\n  tls: {{ cert: /nonexistent/cert.pem, key: /nonexistent/key.pem }}\nnode_groups:\n{GROUPS}"
    );
    let mut config = gpupool::config::Config::from_yaml(&yaml).unwrap();
    let backend = gpupool::backend::from_config(&mut config, Arc::new(ManualClock::new(t0())))
        .await
        .unwrap();
    let err = server::start(&config, backend)
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .starts_with("server.tls.cert (/nonexistent/cert.pem): "),
        "{err}"
    );
}

#[tokio::test]
async fn gpupool_groups_prints_a_table_from_the_running_server() {
    let mut h = Harness::start(&config_yaml(GROUPS, "")).await;
    h.increase("l4", 3).await.unwrap();
    h.settle().await;
    h.refresh().await;
    let addr = h.server.grpc_addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        gpupool()
            .args(["groups", "--address", &addr])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let header: Vec<_> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "GROUP",
            "MIN",
            "MAX",
            "TARGET",
            "READY",
            "CREATING",
            "FAILED",
            "DELETING",
            "$/NODE-HOUR",
            "$/HOUR",
            "BOOT-P50/P90/P99",
            "FLOOR"
        ]
    );
    let row: Vec<_> = text.lines().nth(1).unwrap().split_whitespace().collect();
    // 3 spot L4s booting at $0.39/h each.
    assert_eq!(
        row,
        [
            "l4",
            "0",
            "10",
            "3",
            "0",
            "3",
            "0",
            "0",
            "0.39",
            "1.17",
            "8m/10m/12m",
            "(prior)",
            "0"
        ]
    );
    h.stop().await;

    let out = gpupool()
        .args(["groups", "--address", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("connecting to gpupool at 127.0.0.1:1"));
}

#[test]
fn check_config_accepts_good_files_and_names_the_problem_in_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good = write("good.yaml", &config_yaml(GROUPS, ""));
    let out = gpupool().arg("check-config").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 node groups: l4)"));

    let cases = [
        (
            "unknown-key.yaml",
            config_yaml(
                &format!("{GROUPS}    annotations: {{ gpupool.dev/spot-ness: high }}\n"),
                "",
            ),
            "node group \"l4\": annotations.gpupool.dev/spot-ness: unknown gpupool.dev annotation",
        ),
        (
            "min-max.yaml",
            config_yaml(&GROUPS.replace("min_size: 0", "min_size: 11"), ""),
            "node group \"l4\": min_size: 11 is above max_size 10",
        ),
        (
            "type.yaml",
            config_yaml(&GROUPS.replace("gpu-1x-l4", "gpu-9x-b300"), ""),
            "node group \"l4\": instance_type: \"gpu-9x-b300\" is not offered",
        ),
        (
            "yaml.yaml",
            "cloud: sim\nregion: [\n".to_string(),
            "yaml.yaml: ",
        ),
        (
            "sim.yaml",
            config_yaml(GROUPS, "sim:\n  time_scale: -2\n"),
            "sim.time_scale: must be a positive number, got -2",
        ),
        (
            "field.yaml",
            config_yaml(GROUPS, "colour: blue\n"),
            "unknown field `colour`",
        ),
    ];
    for (name, text, expected) in cases {
        let path = write(name, &text);
        let out = gpupool().arg("check-config").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Other clouds are checked offline against the built-in catalog.
    let aws = "cloud: aws\nregion: us-east-1\naws:\n  cluster: prod\nnode_groups:\n  - id: h100\n    min_size: 0\n    max_size: 2\n    instance_type: p5.48xlarge\n    zones: [us-east-1a]\n    aws:\n      launch_template: { name: gpu-nodes, version: \"$Latest\" }\n      subnets: [subnet-0a1b2c3d]\n";
    let out = gpupool()
        .arg("check-config")
        .arg(write("aws.yaml", aws))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = write("aws-bad.yaml", &aws.replace("p5.48xlarge", "p9.huge"));
    let out = gpupool().arg("check-config").arg(bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("\"p9.huge\" is not offered by this cloud; known types: g4dn.xlarge")
    );
    let out = gpupool()
        .args(["check-config", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.yaml: No such file"));

    // serve refuses the same files before listening.
    let bad = dir.path().join("min-max.yaml");
    let out = gpupool()
        .arg("serve")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("min_size: 11 is above max_size 10"));
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, config_yaml(GROUPS, "")).unwrap();
    let mut child = gpupool()
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("gpupool serving externalgrpc on 127.0.0.1:"),
        "{line}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = child.stderr.take().unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait()));
    let Ok(exit) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("gpupool did not stop within 30 s of SIGTERM");
    };
    let exit = exit.unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut logs).unwrap();
    let last = logs.lines().last().unwrap();
    let json: serde_json::Value = serde_json::from_str(last).expect("JSON logs");
    assert_eq!(json["fields"]["message"], "gpupool stopped", "{logs}");
}

#[tokio::test]
async fn instances_of_groups_no_longer_configured_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "sim:\n  state_file: {}\n",
        dir.path().join("fleet.json").display()
    );
    let retired = "
  - id: retired
    min_size: 0
    max_size: 5
    instance_type: gpu-1x-a10g
";
    let mut h = Harness::start(&config_yaml(&format!("{GROUPS}{retired}"), &extra)).await;
    h.increase("retired", 2).await.unwrap();
    h.settle().await;
    let clock = h.clock.clone();
    h.stop().await;

    // The group is gone from the config; its two instances still run.
    let h = Harness::start_with_clock(&config_yaml(GROUPS, &extra), clock).await;
    let (_, metrics) = http(h.server.http_addr, "GET", "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "gpupool_orphan_instances 2"),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn gpupool_certs_writes_what_mtls_needs_and_keeps_existing_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tls");
    let run = {
        let out = out.clone();
        move |extra: &[&str]| {
            gpupool()
                .args(["certs", "--out"])
                .arg(&out)
                .args(["--dns", "localhost"])
                .args(extra)
                .output()
                .unwrap()
        }
    };
    let made = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&[])
    })
    .await
    .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let path = |name: &str| out.join(name).display().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "keys are the owner's only");
    }
    // The server takes them, and a client with the client certificate is
    // let in over mTLS.
    let yaml = format!(
        "cloud: sim\nregion: sim-east-1\nserver:\n  grpc_listen: 127.0.0.1:0\n  http_listen: 127.0.0.1:0\n  tls: {{ cert: {}, key: {}, cacert: {} }}\nnode_groups:\n{GROUPS}",
        path("server.crt"),
        path("server.key"),
        path("ca.crt")
    );
    let mut config = gpupool::config::Config::from_yaml(&yaml).unwrap();
    let backend = gpupool::backend::from_config(&mut config, Arc::new(ManualClock::new(t0())))
        .await
        .unwrap();
    let server = server::start(&config, backend).await.unwrap();
    let read = |name: &str| std::fs::read(out.join(name)).unwrap();
    let channel = Channel::from_shared(format!("https://localhost:{}", server.grpc_addr.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read("ca.crt")))
                .domain_name("localhost")
                .identity(Identity::from_pem(read("client.crt"), read("client.key"))),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let groups = CloudProviderClient::new(channel)
        .node_groups(NodeGroupsRequest {})
        .await
        .unwrap();
    assert_eq!(groups.into_inner().node_groups[0].id, "l4");
    server.shutdown().await;

    // Run again, it keeps what is there unless told.
    let before = read("ca.crt");
    let again = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(&[])
    })
    .await
    .unwrap();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("ca.crt: exists; pass --force"), "{stderr}");
    assert_eq!(read("ca.crt"), before);
    let forced = tokio::task::spawn_blocking(move || run(&["--force"]))
        .await
        .unwrap();
    assert!(forced.status.success());
    assert_ne!(read("ca.crt"), before, "--force makes a new CA");
}
