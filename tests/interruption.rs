//! Interruption replacement through `serve`: a notice on the webhook (each
//! cloud's format), the replacement asked of CA through `minSize` (this test
//! plays CA with `--enforce-node-group-min-size`: every loop it scales a
//! group whose target is below its minSize up by the difference), cordon and
//! taint, drain through the Eviction API of the local Kubernetes API server
//! (PDB answers included), release, and the journal that lets a restart
//! resume after a crash at any step without a second replacement.

mod common;

use common::ca::{Ca, Loop as CaLoop};
use common::kube_api::KubeApi;
use common::*;
use gpupool::config::Config;
use gpupool::interrupt::FaultPoint;
use gpupool::proto::*;
use gpupool::server::{self, Backend, Server};
use gpupool_cloud::{Clock, ManualClock};
use gpupool_sim::SimCloud;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const SECRET: &str = "a-test-secret-of-some-length";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:gpupool-interruptions";
const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";
const NS: &str = "gpupool";
const TAINT: &str = "gpupool.dev/interrupted";

/// A simulated cloud, a Kubernetes API server and a clock that outlive the
/// gpupool processes started on them.
struct Rig {
    kube: KubeApi,
    sim: Arc<SimCloud>,
    clock: ManualClock,
    config: Config,
    _dir: tempfile::TempDir,
}

/// One gpupool process.
struct Run {
    server: Server,
    client: Client,
    webhook: String,
}

fn yaml(dir: &std::path::Path, kubeconfig: &std::path::Path, annotations: &str) -> String {
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    format!(
        "cloud: sim
region: sim-east-1
server:
  grpc_listen: 127.0.0.1:0
  http_listen: 127.0.0.1:0
  sync_interval: 1h
kubernetes:
  kubeconfig: {}
  namespace: {NS}
webhook:
  listen: 127.0.0.1:0
  secret_file: {}
  sns_topic_arns: [\"{TOPIC}\"]
  per_source_per_second: 1000
interruption:
  eviction_retry: 20ms
  drain_margin: 15s
sim:
  seed: 7
node_groups:
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    capacity_type: spot
    annotations:
      gpupool.dev/drain-timeout: 5m
{annotations}",
        kubeconfig.display(),
        secret.display()
    )
}

impl Rig {
    async fn new(annotations: &str) -> Self {
        let kube = KubeApi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let config =
            Config::from_yaml(&yaml(dir.path(), &kube.kubeconfig(dir.path()), annotations))
                .expect("config parses");
        let clock = ManualClock::new(t0());
        let sim = Arc::new(
            SimCloud::new(config.sim.clone(), Arc::new(clock.clone())).expect("sim starts"),
        );
        Self {
            kube,
            sim,
            clock,
            config,
            _dir: dir,
        }
    }

    async fn serve(&self, crash_at: Option<FaultPoint>) -> Run {
        let mut config = self.config.clone();
        config.interruption.crash_at = crash_at;
        let backend = Backend {
            cloud: self.sim.clone(),
            clock: Arc::new(self.clock.clone()),
            extra_routes: None,
        };
        let server = server::start(&config, backend)
            .await
            .expect("server starts");
        let (addr, hook) = server.webhook.clone().unwrap();
        let cert = std::fs::read("tests/fixtures/sns/cert.pem").unwrap();
        hook.certificates().insert(CERT_URL, &cert).unwrap();
        let client = connect(server.grpc_addr).await;
        Run {
            server,
            client,
            webhook: format!("http://{addr}"),
        }
    }

    /// The journal's entries: (providerID, step).
    fn journal(&self) -> Vec<(String, String)> {
        self.kube
            .configmaps_labelled(NS, "gpupool.dev/operation", "interruption")
            .iter()
            .map(|cm| {
                let a = &cm["metadata"]["annotations"];
                (
                    a["gpupool.dev/provider-id"].as_str().unwrap().to_owned(),
                    a["gpupool.dev/step"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn cordoned(&self, node: &str) -> bool {
        let Some(n) = self.kube.node(node) else {
            return false;
        };
        n["spec"]["unschedulable"] == json!(true)
            && n["spec"]["taints"].as_array().is_some_and(|t| {
                t.iter()
                    .any(|t| t["key"] == TAINT && t["effect"] == "NoSchedule")
            })
    }

    /// Journal writes the API server received with `method`, shed or not.
    /// Writes to the interruption journal (not the create journal's).
    fn journal_writes(&self, method: &str) -> usize {
        self.kube
            .configmap_writes()
            .iter()
            .filter(|(m, name)| *m == method && name.starts_with("gpupool-interruption-"))
            .count()
    }

    /// Successful evictions of a pod.
    fn evicted(&self, ns: &str, name: &str) -> usize {
        self.kube
            .evictions()
            .iter()
            .filter(|(n, p, code)| n == ns && p == name && *code == 201)
            .count()
    }
}

/// What CA does about one group in one loop, as far as this test needs:
/// Refresh, then scale up to minSize if the target is below it. Returns
/// (target after, delta asked).
async fn ca_loop(run: &mut Run) -> (i32, i32) {
    run.client.refresh(RefreshRequest {}).await.unwrap();
    let group = run
        .client
        .node_groups(NodeGroupsRequest {})
        .await
        .unwrap()
        .into_inner()
        .node_groups
        .remove(0);
    let target = target(run).await;
    if target < group.min_size {
        let delta = group.min_size - target;
        run.client
            .node_group_increase_size(NodeGroupIncreaseSizeRequest {
                id: "l4".into(),
                delta,
            })
            .await
            .unwrap();
        return (target + delta, delta);
    }
    (target, 0)
}

async fn target(run: &mut Run) -> i32 {
    run.client
        .node_group_target_size(NodeGroupTargetSizeRequest { id: "l4".into() })
        .await
        .unwrap()
        .into_inner()
        .target_size
}

async fn min_size(run: &mut Run) -> i32 {
    run.client
        .node_groups(NodeGroupsRequest {})
        .await
        .unwrap()
        .into_inner()
        .node_groups[0]
        .min_size
}

/// Waits (bounded) until `f` holds; the server works in its own tasks.
/// One loop of the CA model with `pending` evicted pods waiting for a node.
async fn ca_step(rig: &Rig, run: &mut Run, ca: &mut Ca, pending: i32) -> CaLoop {
    ca.run_once(&mut run.client, &rig.kube, rig.clock.now(), pending)
        .await
}

/// Waits until the operation has let its instance go (journalled as
/// released: deleted, still counted while the cloud reports it).
async fn released(rig: &Rig, victim: &Node) {
    eventually("let go", async || {
        rig.journal()
            .iter()
            .any(|(p, s)| *p == victim.provider_id && s == "released")
    })
    .await;
}

/// The cloud finishes deleting what was let go (the sim's shutdown takes
/// 30 s) and a sync sees it gone; the operations close.
async fn cloud_finishes(rig: &Rig, run: &mut Run) {
    rig.clock.advance(Duration::from_secs(60));
    run.client.refresh(RefreshRequest {}).await.unwrap();
    eventually("the operations closed", async || {
        rig.journal().is_empty() && run.server.interruptions.operations().is_empty()
    })
    .await;
}

/// The kubelet's part: a Ready Node for every running instance of the
/// group that has none yet. Returns the names registered.
async fn register_running(rig: &Rig, run: &mut Run) -> Vec<String> {
    run.client.refresh(RefreshRequest {}).await.unwrap();
    let now = rig.clock.now();
    let snapshot = run.server.fleet.snapshot();
    let mut names = Vec::new();
    for i in &snapshot.groups[0].instances {
        if i.state == gpupool::fleet::NodeState::Running
            && let Some(name) = &i.node_name
            && rig.kube.node(name).is_none()
        {
            rig.kube
                .put_node(name, i.provider_id.as_str(), now, Some(now), 1);
            names.push(name.clone());
        }
    }
    names
}

/// One of the group's instances, as the fleet knows it.
#[derive(Clone, Debug)]
struct Node {
    provider_id: String,
    instance: String,
    name: String,
}

/// A pod's `ownerReferences`: controlled by `kind` `name`.
fn owner(kind: &str, name: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true}])
}

/// Three running spot instances with Ready nodes; the first carries a
/// workload pod, a critical pod, a DaemonSet pod and a mirror pod.
async fn three_nodes(rig: &Rig, run: &mut Run) -> Vec<Node> {
    run.client
        .node_group_increase_size(NodeGroupIncreaseSizeRequest {
            id: "l4".into(),
            delta: 3,
        })
        .await
        .unwrap();
    run.server.fleet.settle().await;
    rig.clock.advance(Duration::from_secs(900));
    run.client.refresh(RefreshRequest {}).await.unwrap();
    let snapshot = run.server.fleet.snapshot();
    let nodes: Vec<Node> = snapshot.groups[0]
        .instances
        .iter()
        .map(|i| Node {
            provider_id: i.provider_id.to_string(),
            instance: i
                .provider_id
                .as_str()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
            name: i.node_name.clone().unwrap(),
        })
        .collect();
    assert_eq!(nodes.len(), 3);
    let now = rig.clock.now();
    for n in &nodes {
        rig.kube
            .put_node(&n.name, &n.provider_id, now, Some(now), 1);
    }
    let victim = &nodes[0].name;
    rig.kube.put_pod_full(
        "ml",
        "train-0",
        json!({
        "metadata": {"ownerReferences": owner("ReplicaSet", "train")},
        "spec": {"nodeName": victim, "containers": [{"name": "main", "image": "train"}]},
        "status": {"phase": "Running"}}),
    );
    rig.kube.put_pod_full("kube-system", "gpu-critical", json!({
        "spec": {"nodeName": victim, "priorityClassName": "system-node-critical", "priority": 2000001000,
                 "containers": [{"name": "main", "image": "c"}]},
        "status": {"phase": "Running"}}));
    rig.kube.put_pod_full(
        "kube-system",
        "dcgm-exporter-x1",
        json!({
        "metadata": {"ownerReferences": owner("DaemonSet", "dcgm-exporter")},
        "spec": {"nodeName": victim, "containers": [{"name": "main", "image": "dcgm"}]},
        "status": {"phase": "Running"}}),
    );
    rig.kube.put_pod_full(
        "kube-system",
        "static-x1",
        json!({
        "metadata": {"annotations": {"kubernetes.io/config.mirror": "abc"}},
        "spec": {"nodeName": victim, "containers": [{"name": "main", "image": "s"}]},
        "status": {"phase": "Running"}}),
    );
    nodes
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn eventbridge(detail_type: &str, instance: &str, at: SystemTime) -> Value {
    json!({
        "version": "0", "id": format!("evt-{detail_type}-{instance}"), "detail-type": detail_type,
        "source": "aws.ec2", "account": "123456789012", "time": rfc3339(at),
        "region": "us-east-1", "resources": [format!("arn:aws:ec2:us-east-1a:instance/{instance}")],
        "detail": {"instance-id": instance, "instance-action": "terminate"}
    })
}

/// An SNS Notification carrying `event`, signed (SignatureVersion 2) with the
/// fixtures' throwaway key over SNS's string to sign.
fn sns(event: &Value, at: SystemTime, message_id: &str) -> Value {
    let mut m = json!({
        "Type": "Notification", "MessageId": message_id, "TopicArn": TOPIC,
        "Message": event.to_string(), "Timestamp": humantime::format_rfc3339_millis(at).to_string(),
        "SignatureVersion": "2", "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        "Signature": "",
    });
    let envelope = gpupool::webhook::sns::Envelope::parse(m.to_string().as_bytes()).unwrap();
    let text = envelope.string_to_sign().unwrap();
    let pem = std::fs::read_to_string("tests/fixtures/sns/key.pem").unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        text.as_bytes(),
        &mut sig,
    )
    .unwrap();
    m["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(sig));
    m
}

/// Azure's Scheduled Events document with one Preempt for `vm`.
fn azure_preempt(vm: &str, at: SystemTime) -> Value {
    json!({"DocumentIncarnation": 3, "Events": [{
        "EventId": "C7061BAC-AFDC-4513-B24B-AA5F13A16123", "EventType": "Preempt",
        "ResourceType": "VirtualMachine", "Resources": [vm], "EventStatus": "Scheduled",
        "NotBefore": httpdate(at + Duration::from_secs(30)),
        "Description": "Virtual machine is being preempted.", "EventSource": "Platform",
        "DurationInSeconds": -1}]})
}

fn httpdate(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

async fn post(run: &Run, path: &str, body: &Value, bearer: bool) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", run.webhook))
        .body(body.to_string());
    if bearer {
        req = req.header("authorization", format!("Bearer {SECRET}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn metrics(run: &Run) -> String {
    http(run.server.http_addr, "GET", "/metrics").await.1
}

/// How an interruption is delivered.
#[derive(Clone, Copy, Debug)]
enum Format {
    EventBridge,
    Sns,
    Azure,
    Generic,
}

async fn deliver(rig: &Rig, run: &Run, format: Format, victim: &Node) {
    let now = rig.clock.now();
    let (status, body) = match format {
        Format::EventBridge => {
            let e = eventbridge(
                "EC2 Spot Instance Interruption Warning",
                &victim.instance,
                now,
            );
            post(run, "/notices/aws/eventbridge", &e, true).await
        }
        Format::Sns => {
            let e = eventbridge(
                "EC2 Spot Instance Interruption Warning",
                &victim.instance,
                now,
            );
            post(run, "/notices/aws/sns", &sns(&e, now, "msg-1"), false).await
        }
        Format::Azure => {
            let doc = azure_preempt(&victim.instance, now);
            post(run, "/notices/azure/scheduled-events", &doc, true).await
        }
        Format::Generic => {
            let n = json!({"id": "agent-1", "kind": "interruption", "node": victim.name,
                           "deadline": rfc3339(now + Duration::from_secs(120))});
            post(run, "/notices/generic", &n, true).await
        }
    };
    assert_eq!(
        (status, &body["accepted"]),
        (202, &json!(1)),
        "{format:?}: {body}"
    );
}

/// The whole operation, from a notice in `format`: one replacement under
/// CA's counting (the CA model buys exactly one node, from the notice until
/// the evicted pod lands on the replacement), the node cordoned, tainted and
/// drained (DaemonSet and mirror pods left, the critical pod last), the
/// instance let go, the journal emptied, an Event per step.
async fn full_replacement(format: Format) {
    let rig = Rig::new("").await;
    let mut run = rig.serve(None).await;
    let nodes = three_nodes(&rig, &mut run).await;
    let victim = nodes[0].clone();
    let mut ca = Ca::new("l4");
    let l = ca_step(&rig, &mut run, &mut ca, 0).await;
    assert_eq!((l.target, l.registered, ca.bought()), (3, 3, 0));

    deliver(&rig, &run, format, &victim).await;
    eventually("the replacement asked of CA: minSize 4", async || {
        min_size(&mut run).await == 4
    })
    .await;
    // The target did not move; the leaving instance is reported deleting.
    assert_eq!(target(&mut run).await, 3);
    let instances = run
        .client
        .node_group_nodes(NodeGroupNodesRequest { id: "l4".into() })
        .await
        .unwrap()
        .into_inner()
        .instances;
    let leaving = instances
        .iter()
        .find(|i| i.id == victim.provider_id)
        .unwrap();
    assert_eq!(
        state(leaving),
        gpupool::proto::instance_status::InstanceState::InstanceDeleting
    );
    // CA scales up to the raised minSize, by one, and counts it as coming.
    let l = ca_step(&rig, &mut run, &mut ca, 0).await;
    assert_eq!((l.target, l.for_min), (4, 1));
    // Not bought back into the spot pool being reclaimed.
    run.server.fleet.settle().await;
    let snapshot = run.server.fleet.snapshot();
    let zone_of = |p: &str| {
        snapshot.groups[0]
            .instances
            .iter()
            .find(|i| i.provider_id.as_str() == p)
            .and_then(|i| i.zone.clone())
    };
    let victim_zone = zone_of(&victim.provider_id).unwrap();
    let replacement = snapshot.groups[0]
        .instances
        .iter()
        .find(|i| {
            nodes
                .iter()
                .all(|n| n.provider_id != i.provider_id.as_str())
        })
        .expect("the replacement");
    assert_ne!(replacement.zone.as_deref(), Some(victim_zone.as_str()));
    assert!(
        metrics(&run)
            .await
            .contains("gpupool_offerings_unavailable 1")
    );

    eventually("cordoned and tainted", async || rig.cordoned(&victim.name)).await;
    eventually("the workload evicted", async || {
        rig.evicted("ml", "train-0") == 1
    })
    .await;
    // From here its pod waits for a node: CA counts the replacement.
    let l = ca_step(&rig, &mut run, &mut ca, 1).await;
    assert_eq!((l.target, l.upcoming, l.for_pods), (4, 1, 0));

    released(&rig, &victim).await;
    // Let go and shutting down, its Node still registered: it stays in the
    // target, so CA still sees the replacement on its way.
    let l = ca_step(&rig, &mut run, &mut ca, 1).await;
    assert_eq!(
        (l.target, l.registered, l.upcoming, l.for_pods),
        (4, 3, 1, 0),
        "no second node while the old one shuts down"
    );
    cloud_finishes(&rig, &mut run).await;
    // Gone from the cloud, its Node not yet removed (the cloud controller
    // lags): no longer the group's, out of the target.
    let l = ca_step(&rig, &mut run, &mut ca, 1).await;
    assert_eq!(
        (l.target, l.registered, l.upcoming, l.for_pods),
        (3, 2, 1, 0)
    );
    assert!(rig.kube.delete_node(&victim.name));
    let l = ca_step(&rig, &mut run, &mut ca, 1).await;
    assert_eq!((l.target, l.upcoming, l.for_pods), (3, 1, 0));
    // The replacement registers; the pod lands on it; CA's scale-up ends.
    rig.clock.advance(Duration::from_secs(900));
    assert_eq!(register_running(&rig, &mut run).await.len(), 1);
    let l = ca_step(&rig, &mut run, &mut ca, 0).await;
    assert_eq!(
        (l.target, l.registered, l.for_pods, l.for_min),
        (3, 3, 0, 0)
    );
    assert!(!ca.scaling_up());
    assert_eq!(ca.increases, [1], "exactly one node bought");

    // Drained through the Eviction API, critical pod last; DaemonSet and
    // mirror pods left alone.
    let evictions: Vec<String> = rig
        .kube
        .evictions()
        .iter()
        .filter(|e| e.2 == 201)
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(evictions, ["train-0", "gpu-critical"]);
    assert!(rig.kube.pod("kube-system", "dcgm-exporter-x1").is_some());
    assert!(rig.kube.pod("kube-system", "static-x1").is_some());
    assert_eq!(min_size(&mut run).await, 0);
    let reasons = rig.kube.event_reasons_for(&victim.name);
    for step in [
        "InterruptionNotice",
        "Cordoned",
        "Evicted",
        "Drained",
        "Released",
    ] {
        assert!(
            reasons.iter().any(|r| r == step),
            "{step} not in {reasons:?}"
        );
    }
    let m = metrics(&run).await;
    assert!(
        m.contains(
            "gpupool_interruption_operations_closed_total{group=\"l4\",outcome=\"released\"} 1"
        ),
        "{m}"
    );
    for step in ["replacement_requested", "cordoned", "drained", "released"] {
        assert!(
            m.contains(&format!(
                "gpupool_interruption_step_seconds_count{{group=\"l4\",step=\"{step}\"}} 1"
            )),
            "{step}: {m}"
        );
    }
    assert!(m.contains("gpupool_interruption_pods_evicted_total{group=\"l4\"} 2"));
    run.server.shutdown().await;
}

#[tokio::test]
async fn an_eventbridge_interruption_is_replaced_once_cordoned_drained_and_released() {
    full_replacement(Format::EventBridge).await;
}

#[tokio::test]
async fn a_signed_sns_interruption_is_replaced_the_same_way() {
    full_replacement(Format::Sns).await;
}

#[tokio::test]
async fn an_azure_preempt_scheduled_event_is_replaced_the_same_way() {
    full_replacement(Format::Azure).await;
}

#[tokio::test]
async fn a_node_agents_generic_notice_is_replaced_the_same_way() {
    full_replacement(Format::Generic).await;
}

#[tokio::test]
async fn a_second_interruption_while_the_first_departs_buys_one_more_node_not_two() {
    let rig = Rig::new("").await;
    let mut run = rig.serve(None).await;
    let nodes = three_nodes(&rig, &mut run).await;
    let (first, second) = (nodes[0].clone(), nodes[1].clone());
    rig.kube.put_pod_full(
        "ml",
        "train-1",
        json!({
        "metadata": {"ownerReferences": owner("ReplicaSet", "train")},
        "spec": {"nodeName": second.name, "containers": [{"name": "main", "image": "train"}]},
        "status": {"phase": "Running"}}),
    );
    let mut ca = Ca::new("l4");

    deliver(&rig, &run, Format::EventBridge, &first).await;
    eventually("minSize 4", async || min_size(&mut run).await == 4).await;
    assert_eq!(ca_step(&rig, &mut run, &mut ca, 0).await.for_min, 1);
    released(&rig, &first).await;
    assert_eq!(rig.evicted("ml", "train-0"), 1);

    // The first is shutting down (still counted) when the second comes:
    // its replacement is asked one past that.
    let notice = json!({"id": "agent-2", "kind": "interruption", "node": second.name,
                        "deadline": rfc3339(rig.clock.now() + Duration::from_secs(120))});
    assert_eq!(post(&run, "/notices/generic", &notice, true).await.0, 202);
    eventually("minSize 5", async || min_size(&mut run).await == 5).await;
    let l = ca_step(&rig, &mut run, &mut ca, 1).await;
    assert_eq!((l.target, l.upcoming, l.for_pods, l.for_min), (5, 1, 0, 1));
    released(&rig, &second).await;
    assert_eq!(rig.evicted("ml", "train-1"), 1);
    let l = ca_step(&rig, &mut run, &mut ca, 2).await;
    assert_eq!(
        (l.target, l.registered, l.upcoming, l.for_pods),
        (5, 3, 2, 0)
    );

    cloud_finishes(&rig, &mut run).await;
    let l = ca_step(&rig, &mut run, &mut ca, 2).await;
    assert_eq!((l.target, l.upcoming, l.for_pods, l.for_min), (3, 2, 0, 0));
    assert_eq!(min_size(&mut run).await, 0);
    assert!(rig.kube.delete_node(&first.name) && rig.kube.delete_node(&second.name));
    rig.clock.advance(Duration::from_secs(900));
    assert_eq!(register_running(&rig, &mut run).await.len(), 2);
    let l = ca_step(&rig, &mut run, &mut ca, 0).await;
    assert_eq!((l.target, l.registered), (3, 3));
    assert!(!ca.scaling_up());
    assert_eq!(ca.increases, [1, 1], "one node per interruption");
    run.server.shutdown().await;
}

/// A journal entry as another writer (a replica, a run before) left it.
fn put_journal_entry(rig: &Rig, op: &gpupool::interrupt::Operation) {
    rig.kube.put_configmap(json!({
        "metadata": {
            "name": gpupool::cluster::journal::ConfigMaps::name(&op.provider_id),
            "namespace": NS,
            "labels": {"gpupool.dev/operation": "interruption"},
            "annotations": {"gpupool.dev/provider-id": op.provider_id, "gpupool.dev/step": op.step.label()},
        },
        "data": {"operation.json": serde_json::to_string(op).unwrap()},
    }));
}

/// A rebalance standby journalled for `victim` at `received`, asking `want`.
fn standby(victim: &Node, received: SystemTime, want: u32) -> gpupool::interrupt::Operation {
    use gpupool::interrupt::{Cause, Mode, Operation, Step, op::utc};
    Operation {
        provider_id: victim.provider_id.clone(),
        group: "l4".into(),
        node: Some(victim.name.clone()),
        cause: Cause {
            source: "aws".into(),
            kind: "rebalance".into(),
            notice_id: "rebalance-1".into(),
        },
        mode: Mode::Standby,
        received_at: utc(received),
        deadline: None,
        want: Some(want),
        lowered_for: Default::default(),
        step: Step::Marked,
        drain_started: None,
        evicted: 0,
    }
}

#[tokio::test]
async fn an_interruption_takes_up_a_journalled_standby_and_drains_with_its_replacement() {
    let rig = Rig::new("      gpupool.dev/rebalance: replace\n").await;
    let mut run = rig.serve(None).await;
    let nodes = three_nodes(&rig, &mut run).await;
    let victim = nodes[0].clone();
    // Another replica stood a replacement by (minSize 4) and journalled
    // it; this process has no operation for it.
    let mut ca = Ca::new("l4");
    put_journal_entry(&rig, &standby(&victim, rig.clock.now(), 4));
    deliver(&rig, &run, Format::EventBridge, &victim).await;
    // Taken up and drained now (not left standing by), with the
    // replacement it asked.
    eventually("minSize 4", async || min_size(&mut run).await == 4).await;
    assert_eq!(ca_step(&rig, &mut run, &mut ca, 0).await.for_min, 1);
    released(&rig, &victim).await;
    assert_eq!(rig.evicted("ml", "train-0"), 1);
    assert!(rig.cordoned(&victim.name));
    let l = ca_step(&rig, &mut run, &mut ca, 1).await;
    assert_eq!((l.target, l.for_pods, l.for_min), (4, 0, 0));
    cloud_finishes(&rig, &mut run).await;
    assert_eq!(ca.increases, [1], "no second replacement");
    run.server.shutdown().await;
}

#[tokio::test]
async fn a_stale_journal_entry_is_written_over_not_taken_up() {
    let rig = Rig::new("").await;
    let mut run = rig.serve(None).await;
    let nodes = three_nodes(&rig, &mut run).await;
    let victim = nodes[0].clone();
    // Left over from a day ago (its removal failed), asking minSize 9.
    put_journal_entry(
        &rig,
        &standby(&victim, rig.clock.now() - Duration::from_secs(86_400), 9),
    );
    deliver(&rig, &run, Format::EventBridge, &victim).await;
    eventually("minSize 4", async || min_size(&mut run).await == 4).await;
    eventually("written over", async || {
        rig.journal()
            .iter()
            .any(|(p, s)| *p == victim.provider_id && s != "marked")
    })
    .await;
    assert_eq!(min_size(&mut run).await, 4, "not the stale entry's 9");
    run.server.shutdown().await;
}

#[tokio::test]
async fn journal_writes_the_api_server_sheds_are_tried_again() {
    let rig = Rig::new("").await;
    let mut run = rig.serve(None).await;
    let nodes = three_nodes(&rig, &mut run).await;
    let victim = nodes[0].clone();
    rig.kube
        .throttle_next_configmap_writes_of("gpupool-interruption-", 3);
    deliver(&rig, &run, Format::EventBridge, &victim).await;
    eventually("minSize 4", async || min_size(&mut run).await == 4).await;
    assert_eq!(ca_loop(&mut run).await, (4, 1));
    released(&rig, &victim).await;
    let posts = rig.journal_writes("POST");
    assert_eq!(posts, 4, "three shed, the fourth taken");
    rig.kube
        .throttle_next_configmap_writes_of("gpupool-interruption-", 2);
    cloud_finishes(&rig, &mut run).await;
    let deletes = rig.journal_writes("DELETE");
    assert_eq!(deletes, 3, "two shed, the third taken");
    run.server.shutdown().await;
}

#[tokio::test]
async fn duplicate_late_and_foreign_notices_change_nothing() {
    let rig = Rig::new("").await;
    let mut run = rig.serve(None).await;
    let nodes = three_nodes(&rig, &mut run).await;
    let victim = nodes[0].clone();
    // Hold the drain so the operation stays open while the repeats come.
    rig.kube.block_eviction("ml", "train-0", "train-pdb");
    deliver(&rig, &run, Format::EventBridge, &victim).await;
    eventually("minSize 4", async || min_size(&mut run).await == 4).await;
    assert_eq!(ca_loop(&mut run).await, (4, 1));
    // The same event again: the webhook knows it.
    let now = rig.clock.now();
    let e = eventbridge(
        "EC2 Spot Instance Interruption Warning",
        &victim.instance,
        now,
    );
    let (_, body) = post(&run, "/notices/aws/eventbridge", &e, true).await;
    assert_eq!(body, json!({"accepted": 0, "duplicates": 1}));
    // The same interruption by other channels and names, and a rebalance
    // after it (out of order): the operation under way answers them all.
    deliver(&rig, &run, Format::Generic, &victim).await;
    let doc = azure_preempt(&victim.instance, now);
    let (status, _) = post(&run, "/notices/azure/scheduled-events", &doc, true).await;
    assert_eq!(status, 202);
    let r = eventbridge(
        "EC2 Instance Rebalance Recommendation",
        &victim.instance,
        now,
    );
    post(&run, "/notices/aws/eventbridge", &r, true).await;
    // Not ours: answered and counted, not acted on.
    let foreign = json!({"id": "x", "instance": "i-0notours000000001"});
    let (status, _) = post(&run, "/notices/generic", &foreign, true).await;
    assert_eq!(status, 202);
    eventually("the foreign notice counted", async || {
        metrics(&run).await.contains(
            "gpupool_interruption_notices_total{source=\"generic\",kind=\"interruption\",outcome=\"not_ours\"} 1",
        )
    })
    .await;
    for _ in 0..3 {
        assert_eq!(ca_loop(&mut run).await, (4, 0), "still one replacement");
    }
    assert_eq!(rig.journal().len(), 1);
    assert_eq!(run.server.interruptions.operations().len(), 1);
    assert_eq!(min_size(&mut run).await, 4);
    run.server.shutdown().await;
}

#[tokio::test]
async fn a_pdb_holds_the_drain_until_the_deadline_then_the_instance_goes() {
    let rig = Rig::new("").await;
    let mut run = rig.serve(None).await;
    let nodes = three_nodes(&rig, &mut run).await;
    let victim = nodes[0].clone();
    rig.kube.block_eviction("ml", "train-0", "train-pdb");
    deliver(&rig, &run, Format::EventBridge, &victim).await;
    eventually("minSize 4", async || min_size(&mut run).await == 4).await;
    assert_eq!(ca_loop(&mut run).await, (4, 1));
    // Refused and retried while the PDB holds; the critical pod waits for it.
    eventually("evictions retried on 429", async || {
        rig.kube
            .evictions()
            .iter()
            .filter(|e| e.1 == "train-0" && e.2 == 429)
            .count()
            >= 3
    })
    .await;
    assert_eq!(rig.evicted("kube-system", "gpu-critical"), 0);
    assert!(
        rig.kube
            .event_reasons_for(&victim.name)
            .iter()
            .any(|r| r == "EvictionRefused")
    );
    assert_eq!(rig.journal().len(), 1);
    // The notice's deadline is its time + 120 s; the drain stops 15 s before.
    rig.clock.advance(Duration::from_secs(106));
    released(&rig, &victim).await;
    cloud_finishes(&rig, &mut run).await;
    assert!(
        rig.kube.pod("ml", "train-0").is_some(),
        "the PDB was never broken"
    );
    assert!(
        rig.kube
            .event_reasons_for(&victim.name)
            .iter()
            .any(|r| r == "DrainTimedOut")
    );
    assert_eq!(target(&mut run).await, 3);
    assert_eq!(ca_loop(&mut run).await, (3, 0));
    assert!(metrics(&run).await.contains(
        "gpupool_interruption_operations_closed_total{group=\"l4\",outcome=\"drain_timed_out\"} 1"
    ));
    run.server.shutdown().await;
}

#[tokio::test]
async fn a_drain_only_group_drains_without_a_replacement() {
    let rig = Rig::new("      gpupool.dev/interruption: drain-only\n").await;
    let mut run = rig.serve(None).await;
    let nodes = three_nodes(&rig, &mut run).await;
    deliver(&rig, &run, Format::EventBridge, &nodes[0]).await;
    released(&rig, &nodes[0]).await;
    assert_eq!(min_size(&mut run).await, 0);
    assert_eq!(
        target(&mut run).await,
        3,
        "counted until the cloud reports it gone"
    );
    cloud_finishes(&rig, &mut run).await;
    assert!(rig.cordoned(&nodes[0].name));
    assert_eq!(rig.evicted("ml", "train-0"), 1);
    assert_eq!(
        ca_loop(&mut run).await,
        (2, 0),
        "the target drops by the one let go"
    );
    run.server.shutdown().await;
}

#[tokio::test]
async fn a_rebalance_starts_the_replacement_early_where_the_group_opts_in() {
    let rig = Rig::new("      gpupool.dev/rebalance: replace\n").await;
    let mut run = rig.serve(None).await;
    let nodes = three_nodes(&rig, &mut run).await;
    let victim = nodes[0].clone();
    let now = rig.clock.now();
    let r = eventbridge(
        "EC2 Instance Rebalance Recommendation",
        &victim.instance,
        now,
    );
    let (status, _) = post(&run, "/notices/aws/eventbridge", &r, true).await;
    assert_eq!(status, 202);
    eventually("minSize 4 at the rebalance", async || {
        min_size(&mut run).await == 4
    })
    .await;
    assert_eq!(ca_loop(&mut run).await, (4, 1));
    eventually("journalled", async || rig.journal().len() == 1).await;
    // Still in service: neither cordoned nor reported deleting.
    assert!(!rig.cordoned(&victim.name));
    assert_eq!(rig.kube.evictions().len(), 0);
    // The interruption follows: drained now, with no second replacement.
    rig.clock.advance(Duration::from_secs(600));
    deliver(&rig, &run, Format::EventBridge, &victim).await;
    released(&rig, &victim).await;
    cloud_finishes(&rig, &mut run).await;
    assert!(rig.cordoned(&victim.name));
    assert_eq!(rig.evicted("ml", "train-0"), 1);
    assert_eq!(ca_loop(&mut run).await, (3, 0));
    run.server.shutdown().await;
}

/// The step a crash at `point` leaves in the journal.
fn journalled_at(point: FaultPoint) -> &'static str {
    match point {
        FaultPoint::Marked => "marked",
        FaultPoint::Cordoned => "cordoned",
        FaultPoint::Drained => "drained",
        FaultPoint::Releasing => "releasing",
        FaultPoint::Released => "released",
    }
}

#[tokio::test]
async fn a_crash_after_any_step_resumes_from_the_journal_with_exactly_one_replacement() {
    for point in [
        FaultPoint::Marked,
        FaultPoint::Cordoned,
        FaultPoint::Drained,
        FaultPoint::Releasing,
        FaultPoint::Released,
    ] {
        let rig = Rig::new("").await;
        let mut run = rig.serve(Some(point)).await;
        let nodes = three_nodes(&rig, &mut run).await;
        let victim = nodes[0].clone();
        // CA keeps running across gpupool's restart; the evicted pod waits
        // for a node from its eviction on (the replacement never registers
        // here, so CA must keep counting it as coming throughout).
        let mut ca = Ca::new("l4");
        let pending = |rig: &Rig| i32::from(rig.evicted("ml", "train-0") > 0);
        let mut targets = vec![target(&mut run).await];
        deliver(&rig, &run, Format::EventBridge, &victim).await;
        eventually("minSize 4", async || min_size(&mut run).await == 4).await;
        targets.push(ca_step(&rig, &mut run, &mut ca, pending(&rig)).await.target);
        eventually(&format!("{point:?}: journalled"), async || {
            rig.journal()
                .iter()
                .any(|(p, s)| *p == victim.provider_id && s == journalled_at(point))
        })
        .await;
        run.server.fleet.settle().await;
        targets.push(ca_step(&rig, &mut run, &mut ca, pending(&rig)).await.target);
        // The process dies here (its operation stopped at the point).
        run.server.shutdown().await;

        // Taken up by the first sync, before the first answer to CA: the
        // replacement's minSize until the instance is let go, none after.
        let mut run = rig.serve(None).await;
        assert_eq!(
            run.server.interruptions.operations().len(),
            1,
            "{point:?}: resumed"
        );
        let first = min_size(&mut run).await;
        match point {
            FaultPoint::Marked | FaultPoint::Cordoned | FaultPoint::Drained => {
                assert_eq!(first, 4, "{point:?}: the replacement's minSize at once");
            }
            FaultPoint::Releasing | FaultPoint::Released => {
                assert!(first < 4, "{point:?}: floor dropped with the release");
            }
        }
        targets.push(ca_step(&rig, &mut run, &mut ca, pending(&rig)).await.target);
        released(&rig, &victim).await;
        targets.push(ca_step(&rig, &mut run, &mut ca, pending(&rig)).await.target);
        cloud_finishes(&rig, &mut run).await;
        run.server.fleet.settle().await;
        let last = ca_step(&rig, &mut run, &mut ca, pending(&rig)).await;
        assert_eq!(ca.increases, [1], "{point:?}: exactly one replacement");
        assert!(
            targets.iter().all(|t| *t >= 3),
            "{point:?}: the target never dipped before the instance was gone: {targets:?}"
        );
        assert_eq!((last.target, last.upcoming), (3, 1), "{point:?}");
        assert!(rig.cordoned(&victim.name), "{point:?}");
        assert_eq!(rig.evicted("ml", "train-0"), 1, "{point:?}: evicted once");
        assert!(
            metrics(&run)
                .await
                .contains("gpupool_interruption_operations_resumed_total 1"),
            "{point:?}"
        );
        run.server.shutdown().await;
    }
}

#[tokio::test]
async fn refused_notices_change_nothing() {
    let rig = Rig::new("").await;
    let mut run = rig.serve(None).await;
    let nodes = three_nodes(&rig, &mut run).await;
    let victim = &nodes[0];
    let now = rig.clock.now();
    let e = eventbridge(
        "EC2 Spot Instance Interruption Warning",
        &victim.instance,
        now,
    );
    // No credentials, and wrong ones.
    assert_eq!(
        post(&run, "/notices/aws/eventbridge", &e, false).await.0,
        401
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/notices/aws/eventbridge", run.webhook))
        .header("authorization", "Bearer not-the-secret-at-all")
        .body(e.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Oversized (the default limit is 256 KiB).
    let mut big = e.clone();
    big["detail"]["padding"] = json!("x".repeat(300 * 1024));
    assert_eq!(
        post(&run, "/notices/aws/eventbridge", &big, true).await.0,
        413
    );
    // Malformed: the field is named.
    let mut bad = e.clone();
    bad["time"] = json!("yesterday");
    let (status, body) = post(&run, "/notices/aws/eventbridge", &bad, true).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("time"), "{body}");
    // A forged SNS message (signed, then its instance changed).
    let mut forged = sns(&e, now, "msg-forged");
    forged["Message"] = json!(
        e.to_string()
            .replace(&victim.instance, "i-0ffffffffffffffff")
    );
    assert_eq!(post(&run, "/notices/aws/sns", &forged, false).await.0, 403);

    // Nothing changed: no operation, no journal, no cordon, no raised minSize.
    assert!(run.server.interruptions.operations().is_empty());
    assert!(rig.journal().is_empty());
    assert!(!rig.cordoned(&victim.name));
    assert_eq!(min_size(&mut run).await, 0);
    assert_eq!(ca_loop(&mut run).await, (3, 0));
    let m = metrics(&run).await;
    assert!(!m.contains("outcome=\"ours\""), "{m}");
    run.server.shutdown().await;
}
