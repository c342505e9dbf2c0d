//! The local Kubernetes API server (tests/common/kube_api.rs) answers the
//! calls gpupool's spot-interruption engine makes, through a real kube
//! client: node get and patch (merge, strategic, stale resourceVersion),
//! pods by node, evictions (201, 404, 429 and kube's default retry of a
//! 429), events from kube's `Recorder`, configmaps by label and delete.

mod common;

use common::kube_api::KubeApi;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Node, ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Status;
use kube::runtime::events::{Event as Publish, EventType, Recorder, Reporter};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde_json::json;
use std::time::{Duration, SystemTime};

/// A client for `api`; `retry` keeps kube's default retry of 429/503/504.
fn client(api: &KubeApi, retry: bool) -> Client {
    gpupool::tls::install_crypto_provider();
    let mut config = Config::new(api.url.parse().unwrap());
    config.default_retry = retry;
    Client::try_from(config).unwrap()
}

/// The `Status` of a failed call.
fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Box<Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The next watch event, or a failure after 20 s (never a hang).
async fn next_event<S>(watch: &mut S) -> WatchEvent<Node>
where
    S: futures_util::Stream<Item = Result<WatchEvent<Node>, kube::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("a watch event within 20 s")
        .expect("the watch goes on")
        .unwrap()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn taints(node: &Node) -> Vec<(String, String)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect()
}

async fn with_node(name: &str) -> (KubeApi, Api<Node>) {
    let api = KubeApi::start().await;
    let t = SystemTime::now();
    api.put_node(name, &format!("sim:///{name}"), t, Some(t), 1);
    let nodes = Api::<Node>::all(client(&api, false));
    (api, nodes)
}

#[tokio::test]
async fn a_node_is_got_by_name_and_a_missing_one_is_not_found() {
    let (_api, nodes) = with_node("gpu-1").await;
    let node = nodes.get("gpu-1").await.unwrap();
    assert_eq!(
        node.spec.unwrap().provider_id.as_deref(),
        Some("sim:///gpu-1")
    );

    let s = api_error(nodes.get("gpu-9").await);
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (404, "NotFound", "nodes \"gpu-9\" not found")
    );
    let d = s.details.unwrap();
    assert_eq!((d.name.as_str(), d.kind.as_str()), ("gpu-9", "nodes"));
    assert!(
        api_error(
            nodes
                .patch("gpu-9", &PatchParams::default(), &Patch::Merge(json!({})))
                .await
        )
        .is_not_found()
    );
}

#[tokio::test]
async fn a_merge_patch_cordons_bumps_the_version_and_the_watch_sees_it() {
    let (api, nodes) = with_node("gpu-1").await;
    let listed = nodes.list(&ListParams::default()).await.unwrap();
    let from = listed.metadata.resource_version.unwrap();
    let mut watch = nodes
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    let before = api.node("gpu-1").unwrap()["metadata"]["resourceVersion"].clone();

    let patch = json!({
        "metadata": {"labels": {"gpupool.io/interrupted": "true", "gone": null}},
        "spec": {"unschedulable": true},
        // The main resource ignores status, as the real server does.
        "status": {"allocatable": {"nvidia.com/gpu": "0"}},
    });
    let node = nodes
        .patch("gpu-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(node.spec.as_ref().unwrap().unschedulable, Some(true));
    assert_eq!(node.labels()["gpupool.io/interrupted"], "true");
    assert_ne!(json!(node.resource_version()), before);
    assert_eq!(
        node.status.as_ref().unwrap().allocatable.as_ref().unwrap()["nvidia.com/gpu"].0,
        "1"
    );
    assert_eq!(
        api.node("gpu-1").unwrap()["spec"]["unschedulable"],
        json!(true)
    );
    assert_eq!(
        api.node_patches(),
        [(
            "gpu-1".to_owned(),
            "application/merge-patch+json".to_owned(),
            patch.clone()
        )]
    );

    match next_event(&mut watch).await {
        WatchEvent::Modified(n) => {
            assert_eq!(n.spec.unwrap().unschedulable, Some(true));
            assert_eq!(n.metadata.resource_version, node.metadata.resource_version);
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }

    // The same patch again changes nothing: no new version, no event.
    let again = nodes
        .patch("gpu-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(again.resource_version(), node.resource_version());
    assert!(api.delete_node("gpu-1"));
    match next_event(&mut watch).await {
        WatchEvent::Deleted(n) => assert_eq!(n.name_any(), "gpu-1"),
        other => panic!("expected DELETED, got {other:?}"),
    }
    assert_eq!(api.node("gpu-1"), None);
}

#[tokio::test]
async fn a_strategic_patch_adds_a_taint_but_replaces_the_list_like_the_real_server() {
    let (api, nodes) = with_node("gpu-1").await;
    let pp = PatchParams::default();
    let interrupt =
        json!({"key": "gpupool.io/interruption", "effect": "NoSchedule", "value": "spot"});

    // No taints yet: the strategic patch adds the one.
    let node = nodes
        .patch(
            "gpu-1",
            &pp,
            &Patch::Strategic(json!({"spec": {"taints": [interrupt]}})),
        )
        .await
        .unwrap();
    assert_eq!(
        taints(&node),
        pairs(&[("gpupool.io/interruption", "NoSchedule")])
    );

    // Node.spec.taints has no patch strategy (listType atomic): a strategic
    // patch with one taint replaces every other.
    api.modify_node("gpu-1", |n| {
        n["spec"]["taints"] = json!([{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]);
    });
    let node = nodes
        .patch(
            "gpu-1",
            &pp,
            &Patch::Strategic(json!({"spec": {"taints": [interrupt]}})),
        )
        .await
        .unwrap();
    assert_eq!(
        taints(&node),
        pairs(&[("gpupool.io/interruption", "NoSchedule")]),
        "the GPU taint is gone"
    );

    // The safe add: the whole list, guarded by the resourceVersion read.
    api.modify_node("gpu-1", |n| {
        n["spec"]["taints"] = json!([{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]);
    });
    let read = nodes.get("gpu-1").await.unwrap();
    let mut list = read.spec.clone().unwrap().taints.unwrap();
    list.push(serde_json::from_value(interrupt.clone()).unwrap());
    let node = nodes
        .patch(
            "gpu-1",
            &pp,
            &Patch::Strategic(json!({
                "metadata": {"resourceVersion": read.resource_version()},
                "spec": {"taints": list},
            })),
        )
        .await
        .unwrap();
    assert_eq!(
        taints(&node),
        pairs(&[
            ("nvidia.com/gpu", "NoSchedule"),
            ("gpupool.io/interruption", "NoSchedule")
        ])
    );

    // Lists Node does merge (finalizers as a set) merge; maps merge.
    nodes
        .patch(
            "gpu-1",
            &pp,
            &Patch::Strategic(json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1"}}})),
        )
        .await
        .unwrap();
    let node = nodes
        .patch(
            "gpu-1",
            &pp,
            &Patch::Strategic(json!({"metadata": {"finalizers": ["b"], "labels": {"y": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(node.finalizers(), ["a", "b"]);
    assert_eq!(
        (&node.labels()["x"][..], &node.labels()["y"][..]),
        ("1", "2")
    );
}

#[tokio::test]
async fn a_patch_with_a_stale_resource_version_is_a_conflict() {
    let (api, nodes) = with_node("gpu-1").await;
    let read = nodes.get("gpu-1").await.unwrap();
    // Another writer (the kubelet) changes the node meanwhile.
    api.modify_node("gpu-1", |n| n["metadata"]["labels"] = json!({"k": "v"}));
    for patch in [
        Patch::Merge(
            json!({"metadata": {"resourceVersion": read.resource_version()},
            "spec": {"unschedulable": true}}),
        ),
        Patch::Strategic(
            json!({"metadata": {"resourceVersion": read.resource_version()},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
        ),
    ] {
        let s = api_error(nodes.patch("gpu-1", &PatchParams::default(), &patch).await);
        assert_eq!(s.code, 409);
        assert_eq!(s.reason, "Conflict");
        assert_eq!(
            s.message,
            "Operation cannot be fulfilled on nodes \"gpu-1\": the object has been modified; \
             please apply your changes to the latest version and try again"
        );
    }
    let node = api.node("gpu-1").unwrap();
    assert_eq!(node["spec"].get("unschedulable"), None);
    assert_eq!(node["spec"].get("taints"), None);
}

#[tokio::test]
async fn pods_are_listed_by_node_across_namespaces_and_got_by_name() {
    let api = KubeApi::start().await;
    let c = client(&api, false);
    api.put_pod_full(
        "ml",
        "train-0",
        json!({"metadata": {"labels": {"app": "train"}},
            "spec": {"nodeName": "gpu-1", "priorityClassName": "high", "priority": 1000}}),
    );
    api.put_pod_full(
        "kube-system",
        "nvidia-dp-abc",
        json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                "name": "nvidia-dp", "uid": "ds-uid", "controller": true}]},
            "spec": {"nodeName": "gpu-1"}}),
    );
    api.put_pod_full(
        "kube-system",
        "static-gpu-1",
        json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "abc"}},
            "spec": {"nodeName": "gpu-1"}, "status": {"phase": "Succeeded"}}),
    );
    api.put_pod("ml", "train-1", json!({"app": "train"}), Some("gpu-2"));
    api.put_pod("ml", "pending", json!({"app": "train"}), None);

    let all = Api::<Pod>::all(c.clone());
    let on_1 = all
        .list(&ListParams::default().fields("spec.nodeName=gpu-1"))
        .await
        .unwrap();
    assert!(on_1.metadata.resource_version.is_some());
    let names: Vec<String> = on_1.iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["nvidia-dp-abc", "static-gpu-1", "train-0"]);
    let train = on_1.iter().find(|p| p.name_any() == "train-0").unwrap();
    let spec = train.spec.as_ref().unwrap();
    assert_eq!(
        (spec.priority_class_name.as_deref(), spec.priority),
        (Some("high"), Some(1000))
    );
    assert_eq!(
        train.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    let ds = on_1
        .iter()
        .find(|p| p.name_any() == "nvidia-dp-abc")
        .unwrap();
    assert_eq!(ds.owner_references()[0].kind, "DaemonSet");
    let mirror = on_1
        .iter()
        .find(|p| p.name_any() == "static-gpu-1")
        .unwrap();
    assert!(
        mirror
            .annotations()
            .contains_key("kubernetes.io/config.mirror")
    );

    // Field and label selectors together, and `!=`.
    let running = all
        .list(
            &ListParams::default()
                .fields("spec.nodeName=gpu-1,status.phase!=Succeeded")
                .labels("app=train"),
        )
        .await
        .unwrap();
    assert_eq!(
        running.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
        ["train-0"]
    );
    let unbound = Api::<Pod>::namespaced(c.clone(), "ml")
        .list(&ListParams::default().fields("spec.nodeName="))
        .await
        .unwrap();
    assert_eq!(
        unbound.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
        ["pending"]
    );
    assert_eq!(
        api.pod_queries()[0],
        ("".into(), "".into(), "spec.nodeName=gpu-1".into())
    );

    let s = api_error(
        all.list(&ListParams::default().fields("spec.nodeNames=gpu-1"))
            .await,
    );
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (
            400,
            "BadRequest",
            "field label not supported: spec.nodeNames"
        )
    );

    let ml = Api::<Pod>::namespaced(c, "ml");
    assert_eq!(
        ml.get("train-1")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("gpu-2")
    );
    let s = api_error(ml.get("nope").await);
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "pods \"nope\" not found")
    );
}

#[tokio::test]
async fn an_eviction_is_created_not_found_or_refused_by_a_disruption_budget() {
    let api = KubeApi::start().await;
    let pods = Api::<Pod>::namespaced(client(&api, false), "ml");
    api.put_pod("ml", "a", json!({}), Some("gpu-1"));
    api.put_pod("ml", "b", json!({}), Some("gpu-1"));

    let s = pods.evict("a", &EvictParams::default()).await.unwrap();
    assert_eq!(s.code, 201);
    assert!(s.is_success());
    assert_eq!(api.pod("ml", "a"), None);

    let s = api_error(pods.evict("a", &EvictParams::default()).await);
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (404, "NotFound", "pods \"a\" not found")
    );

    api.block_eviction("ml", "b", "train-pdb");
    let s = api_error(pods.evict("b", &EvictParams::default()).await);
    assert_eq!(s.code, 429);
    assert_eq!(s.reason, "TooManyRequests");
    assert_eq!(
        s.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let causes = s.details.unwrap().causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].reason, "DisruptionBudget");
    assert_eq!(
        causes[0].message,
        "The disruption budget train-pdb needs 1 healthy pods and has 1 currently"
    );
    assert!(api.pod("ml", "b").is_some());

    // A Pending pod is evicted whatever the budget says (canIgnorePDB).
    api.put_pod("ml", "c", json!({}), None);
    api.block_eviction("ml", "c", "train-pdb");
    assert_eq!(
        pods.evict("c", &EvictParams::default()).await.unwrap().code,
        201
    );

    api.unblock_eviction("ml", "b");
    assert_eq!(
        pods.evict("b", &EvictParams::default()).await.unwrap().code,
        201
    );
    let ml = |p: &str, c: u16| ("ml".to_owned(), p.to_owned(), c);
    assert_eq!(
        api.evictions(),
        [
            ml("a", 201),
            ml("a", 404),
            ml("b", 429),
            ml("c", 201),
            ml("b", 201)
        ]
    );
    // kube sends `delete_options` (snake_case), which the real server's
    // Eviction (`deleteOptions`) does not read.
    assert_eq!(
        api.eviction_bodies()[0],
        json!({"delete_options": null, "metadata": {"name": "a"}})
    );
}

#[tokio::test]
async fn an_evicted_pod_can_stay_terminating_until_the_kubelet_is_done() {
    let api = KubeApi::start().await;
    let pods = Api::<Pod>::namespaced(client(&api, false), "ml");
    api.keep_evicted_pods_terminating(true);
    api.put_pod("ml", "a", json!({}), Some("gpu-1"));
    assert_eq!(
        pods.evict("a", &EvictParams::default()).await.unwrap().code,
        201
    );
    let pod = pods.get("a").await.unwrap();
    assert!(pod.metadata.deletion_timestamp.is_some());
    assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(30));
    // Terminating pods are evicted again without a budget check.
    api.block_eviction("ml", "a", "pdb");
    assert_eq!(
        pods.evict("a", &EvictParams::default()).await.unwrap().code,
        201
    );

    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            api.wait_until("pod ml/a gone", |a| a.pod("ml", "a").is_none())
                .await
        })
    };
    assert!(api.finish_termination("ml", "a"));
    waiter.await.unwrap();
    assert!(api_error(pods.get("a").await).is_not_found());
}

#[tokio::test]
async fn kubes_default_retry_keeps_evicting_through_429s_until_the_budget_allows() {
    let api = KubeApi::start().await;
    api.put_pod("ml", "a", json!({}), Some("gpu-1"));
    api.block_eviction("ml", "a", "pdb");
    // The default client retries 429 (up to 15 times, backoff up to 1000 s):
    // the call does not return the 429 at all.
    let pods = Api::<Pod>::namespaced(client(&api, true), "ml");
    let evict = tokio::spawn(async move { pods.evict("a", &EvictParams::default()).await });
    api.wait_until("two refused evictions", |a| {
        a.evictions().iter().filter(|e| e.2 == 429).count() >= 2
    })
    .await;
    assert!(!evict.is_finished());
    api.unblock_eviction("ml", "a");
    let evicted = tokio::time::timeout(Duration::from_secs(20), evict)
        .await
        .expect("the retried eviction ends within 20 s");
    assert_eq!(evicted.unwrap().unwrap().code, 201);
    assert_eq!(api.evictions().last().unwrap().2, 201);
}

fn node_ref(node: &Node) -> ObjectReference {
    node.object_ref(&())
}

#[tokio::test]
async fn the_recorder_publishes_node_events_in_default_and_patches_a_series() {
    let (api, nodes) = with_node("gpu-1").await;
    let c = client(&api, false);
    let node = nodes.get("gpu-1").await.unwrap();
    let recorder = Recorder::new(
        c.clone(),
        Reporter {
            controller: "gpupool".into(),
            instance: Some("gpupool-0".into()),
        },
    );
    let publish = |reason: &str, note: &str| Publish {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Drain".into(),
        secondary: None,
    };
    recorder
        .publish(
            &publish("SpotInterruption", "reclaimed in 120s"),
            &node_ref(&node),
        )
        .await
        .unwrap();
    let events = api.events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["apiVersion"], "events.k8s.io/v1");
    assert_eq!(e["metadata"]["namespace"], "default");
    assert!(
        e["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("gpu-1.")
    );
    assert_eq!(
        (&e["regarding"]["kind"], &e["regarding"]["name"]),
        (&json!("Node"), &json!("gpu-1"))
    );
    assert_eq!(e["reportingController"], "gpupool");
    assert_eq!(e["reportingInstance"], "gpupool-0");
    assert_eq!(e["type"], "Warning");

    // The same event again (reason, action, type, regarding) is a PATCH of
    // the first one with a series; its new note is dropped.
    recorder
        .publish(
            &publish("SpotInterruption", "reclaimed in 60s"),
            &node_ref(&node),
        )
        .await
        .unwrap();
    let events = api.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["series"]["count"], 2);
    assert_eq!(events[0]["note"], "reclaimed in 120s");

    recorder
        .publish(&publish("Drained", "3 pods evicted"), &node_ref(&node))
        .await
        .unwrap();
    assert_eq!(
        api.event_reasons_for("gpu-1"),
        ["SpotInterruption", "Drained"]
    );

    // core/v1 events are taken too; a cluster-scoped object's event
    // outside default/kube-system is refused as the real server does.
    let core = |ns: &str| CoreEvent {
        metadata: kube::core::ObjectMeta {
            name: Some(format!("gpu-1.{ns}")),
            ..Default::default()
        },
        involved_object: node_ref(&node),
        reason: Some("NodeNotReady".into()),
        message: Some("kubelet stopped".into()),
        type_: Some("Normal".into()),
        ..Default::default()
    };
    let created = Api::<CoreEvent>::namespaced(c.clone(), "default")
        .create(&PostParams::default(), &core("default"))
        .await
        .unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    let s = api_error(
        Api::<CoreEvent>::namespaced(c.clone(), "ml")
            .create(&PostParams::default(), &core("ml"))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        api.event_reasons_for("gpu-1"),
        ["SpotInterruption", "Drained", "NodeNotReady"]
    );

    // events.k8s.io validation: an event without eventTime or action.
    let bare = Event {
        metadata: kube::core::ObjectMeta {
            name: Some("bare".into()),
            ..Default::default()
        },
        reason: Some("X".into()),
        regarding: Some(node_ref(&node)),
        ..Default::default()
    };
    let s = api_error(
        Api::<Event>::namespaced(c, "default")
            .create(&PostParams::default(), &bare)
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = s
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    for f in ["eventTime", "action", "reportingController", "type"] {
        assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
    }
}

#[tokio::test]
async fn configmaps_are_listed_by_label_and_deleted() {
    let api = KubeApi::start().await;
    let c = client(&api, false);
    for (name, kind) in [("j-1", "journal"), ("j-2", "journal"), ("other", "x")] {
        api.put_configmap(json!({
            "metadata": {"namespace": "gpupool", "name": name,
                "labels": {"gpupool.io/kind": kind}},
            "data": {"k": name},
        }));
    }
    let cms = Api::<ConfigMap>::namespaced(c, "gpupool");
    let listed = cms
        .list(&ListParams::default().labels("gpupool.io/kind=journal"))
        .await
        .unwrap();
    assert!(listed.metadata.resource_version.is_some());
    assert_eq!(
        listed.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
        ["j-1", "j-2"]
    );
    assert_eq!(
        api.configmaps_labelled("gpupool", "gpupool.io/kind", "journal")
            .len(),
        2
    );

    let uid = api.configmap("gpupool", "j-1").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = cms
        .delete("j-1", &DeleteParams::default())
        .await
        .unwrap()
        .right()
        .expect("a Status, not the object");
    assert!(status.is_success());
    let d = status.details.unwrap();
    assert_eq!(
        (d.name.as_str(), d.kind.as_str(), d.uid.as_str()),
        ("j-1", "configmaps", uid.as_str())
    );
    assert_eq!(api.configmap("gpupool", "j-1"), None);
    let s = api_error(cms.delete("j-1", &DeleteParams::default()).await);
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "configmaps \"j-1\" not found")
    );

    // A delete guarded by a stale resourceVersion is a conflict.
    let stale = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..Default::default()
    };
    assert_eq!(api_error(cms.delete("j-2", &stale).await).code, 409);
    assert_eq!(
        api.configmaps_labelled("gpupool", "gpupool.io/kind", "journal")
            .len(),
        1
    );
    assert_eq!(
        api.configmap_writes(),
        [
            ("DELETE", "j-1".to_owned()),
            ("DELETE", "j-1".to_owned()),
            ("DELETE", "j-2".to_owned())
        ]
    );
}

#[tokio::test]
#[should_panic(expected = "waiting for a node that never comes")]
async fn wait_for_names_what_never_happened() {
    let api = KubeApi::start().await;
    api.wait_for_within("a node that never comes", Duration::from_millis(200), |a| {
        a.node("never")
    })
    .await;
}

#[test]
fn merge_patches_follow_rfc_7386_and_the_node_patch_strategies() {
    use common::kube_api::{merge_patch, strategic_merge_patch};
    // RFC 7386, appendix A.
    for (target, patch, result) in [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ] {
        let mut t = target.clone();
        merge_patch(&mut t, &patch);
        assert_eq!(t, result, "{target} + {patch}");
    }

    let mut node = json!({
        "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"],
            "ownerReferences": [{"uid": "u1", "name": "one"}]},
        "spec": {"taints": [{"key": "t1", "effect": "NoSchedule"}]},
        "status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
            {"type": "MemoryPressure", "status": "False"}]},
    });
    strategic_merge_patch(
        &mut node,
        &json!({
            "metadata": {"labels": {"$patch": "replace", "z": "9"},
                "$deleteFromPrimitiveList/finalizers": ["x"],
                "ownerReferences": [{"uid": "u1", "controller": true}, {"uid": "u2"}]},
            "spec": {"taints": [{"key": "t2", "effect": "NoExecute"}],
                "$setElementOrder/taints": [{"key": "t2"}]},
            "status": {"conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "MemoryPressure", "$patch": "delete"},
                {"type": "Interrupted", "status": "True"}]},
        }),
        "",
    );
    assert_eq!(
        node,
        json!({
            "metadata": {"labels": {"z": "9"}, "finalizers": ["y"],
                "ownerReferences": [{"uid": "u1", "name": "one", "controller": true}, {"uid": "u2"}]},
            "spec": {"taints": [{"key": "t2", "effect": "NoExecute"}]},
            "status": {"conditions": [
                {"type": "Ready", "status": "False", "reason": "KubeletReady"},
                {"type": "Interrupted", "status": "True"}]},
        })
    );
}
