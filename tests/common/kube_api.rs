//! A local Kubernetes API server for what gpupool uses, in the API's REST
//! shapes (see the API reference: Node and ConfigMap, list/watch, Status):
//! - `GET /api/v1/nodes` and `GET /apis/batch/v1/cronjobs` (every
//!   namespace) list (`NodeList`/`CronJobList` with
//!   `metadata.resourceVersion`), and with `watch=true` stream `WatchEvent`
//!   lines (`{"type","object"}`: ADDED, MODIFIED, DELETED) of every change
//!   after the given `resourceVersion`;
//! - `GET /api/v1/namespaces/{ns}/pods` lists the namespace's pods, filtered
//!   by an equality `labelSelector` (`k=v,k2=v2`; other selector forms get
//!   400 BadRequest here, as a malformed one does from the real server);
//! - `GET|PUT /api/v1/namespaces/{ns}/configmaps/{name}` and `POST
//!   /api/v1/namespaces/{ns}/configmaps`: 404 NotFound, 409 AlreadyExists,
//!   and 409 Conflict for a replace carrying a stale resourceVersion.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    rv: u64,
    nodes: BTreeMap<String, Value>,
    /// Every node change: (resourceVersion, type, object).
    log: Vec<(u64, &'static str, Value)>,
    /// CronJobs by `ns/name`, and their changes.
    cronjobs: BTreeMap<String, Value>,
    cronjob_log: Vec<(u64, &'static str, Value)>,
    /// Pods by `(ns, name)`.
    pods: BTreeMap<(String, String), Value>,
    /// Pod lists asked for: (namespace, labelSelector).
    pod_lists: Vec<(String, String)>,
    configmaps: BTreeMap<(String, String), Value>,
    /// Replaces answered 409 Conflict before the next one is taken.
    conflicts: u32,
    /// Every configmap write received: (method, name).
    writes: Vec<(&'static str, String)>,
}

#[derive(Clone, Default)]
pub struct KubeApi {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    pub url: String,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl KubeApi {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = KubeApi {
            url: format!("http://{}", listener.local_addr().unwrap()),
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/api/v1/nodes", axum::routing::get(nodes))
            .route("/apis/batch/v1/cronjobs", axum::routing::get(cronjobs))
            .route("/api/v1/namespaces/{ns}/pods", axum::routing::get(pods))
            .route(
                "/api/v1/namespaces/{ns}/configmaps",
                axum::routing::post(create_configmap),
            )
            .route(
                "/api/v1/namespaces/{ns}/configmaps/{name}",
                axum::routing::get(get_configmap).put(replace_configmap),
            )
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        api
    }

    /// A kubeconfig file pointing at this server.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n\
                 users:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
                 current-context: test\n",
                self.url
            ),
        )
        .unwrap();
        path
    }

    /// Adds or changes a Node: registered at `created`, Ready since `ready`,
    /// `gpus` allocatable `nvidia.com/gpu`.
    pub fn put_node(
        &self,
        name: &str,
        provider_id: &str,
        created: SystemTime,
        ready: Option<SystemTime>,
        gpus: u32,
    ) {
        let mut inner = self.inner.lock().unwrap();
        inner.rv += 1;
        let rv = inner.rv;
        let conditions = match ready {
            Some(t) => json!([{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": rfc3339(t), "lastTransitionTime": rfc3339(t)}]),
            None => json!([{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                "lastHeartbeatTime": rfc3339(created), "lastTransitionTime": rfc3339(created)}]),
        };
        let mut allocatable = json!({"cpu": "3920m", "memory": "15Gi", "pods": "110"});
        if gpus > 0 {
            allocatable["nvidia.com/gpu"] = json!(gpus.to_string());
        }
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": rv.to_string(),
                "creationTimestamp": rfc3339(created)},
            "spec": {"providerID": provider_id},
            "status": {"conditions": conditions, "allocatable": allocatable, "capacity": allocatable},
        });
        let kind = if inner.nodes.contains_key(name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner.nodes.insert(name.to_owned(), node.clone());
        inner.log.push((rv, kind, node));
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Adds or changes a CronJob (`metadata.namespace` and `.name` set).
    pub fn put_cronjob(&self, mut cj: Value) {
        let mut inner = self.inner.lock().unwrap();
        inner.rv += 1;
        let rv = inner.rv;
        let key = format!(
            "{}/{}",
            cj["metadata"]["namespace"].as_str().unwrap(),
            cj["metadata"]["name"].as_str().unwrap()
        );
        cj["apiVersion"] = json!("batch/v1");
        cj["kind"] = json!("CronJob");
        cj["metadata"]["resourceVersion"] = json!(rv.to_string());
        cj["metadata"]["uid"] = json!(format!("uid-{key}"));
        let kind = if inner.cronjobs.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner.cronjobs.insert(key, cj.clone());
        inner.cronjob_log.push((rv, kind, cj));
        drop(inner);
        self.changed.notify_waiters();
    }

    pub fn delete_cronjob(&self, ns: &str, name: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.rv += 1;
        let rv = inner.rv;
        let Some(mut cj) = inner.cronjobs.remove(&format!("{ns}/{name}")) else {
            return;
        };
        cj["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.cronjob_log.push((rv, "DELETED", cj));
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Adds or changes a Pod with `labels`, bound to `node` if given.
    pub fn put_pod(&self, ns: &str, name: &str, labels: Value, node: Option<&str>) {
        let mut inner = self.inner.lock().unwrap();
        inner.rv += 1;
        let mut spec = json!({"containers": [{"name": "main", "image": "main"}]});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": name, "labels": labels,
                "resourceVersion": inner.rv.to_string()},
            "spec": spec,
            "status": {"phase": if node.is_some() { "Running" } else { "Pending" }},
        });
        inner.pods.insert((ns.to_owned(), name.to_owned()), pod);
    }

    /// Every pod list asked for: (namespace, labelSelector).
    pub fn pod_lists(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().pod_lists.clone()
    }

    pub fn configmap(&self, ns: &str, name: &str) -> Option<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .configmaps
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The next `n` replaces fail with 409 Conflict (another writer won).
    pub fn conflict_next_replaces(&self, n: u32) {
        self.inner.lock().unwrap().conflicts = n;
    }

    pub fn configmap_writes(&self) -> Vec<(&'static str, String)> {
        self.inner.lock().unwrap().writes.clone()
    }
}

/// Which watched collection a route serves.
#[derive(Clone, Copy)]
enum Kind {
    Nodes,
    CronJobs,
}

impl Kind {
    fn items(self, inner: &Inner) -> Vec<Value> {
        match self {
            Kind::Nodes => inner.nodes.values().cloned().collect(),
            Kind::CronJobs => inner.cronjobs.values().cloned().collect(),
        }
    }

    fn log(self, inner: &Inner) -> &[(u64, &'static str, Value)] {
        match self {
            Kind::Nodes => &inner.log,
            Kind::CronJobs => &inner.cronjob_log,
        }
    }

    fn list_kind(self) -> (&'static str, &'static str) {
        match self {
            Kind::Nodes => ("v1", "NodeList"),
            Kind::CronJobs => ("batch/v1", "CronJobList"),
        }
    }
}

async fn nodes(State(api): State<KubeApi>, Query(q): Query<HashMap<String, String>>) -> Response {
    list_or_watch(api, q, Kind::Nodes).await
}

async fn cronjobs(
    State(api): State<KubeApi>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_or_watch(api, q, Kind::CronJobs).await
}

async fn pods(
    State(api): State<KubeApi>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    let mut wanted = Vec::new();
    for term in selector.split(',').filter(|t| !t.is_empty()) {
        match term.split_once('=') {
            Some((k, v)) if !k.ends_with('!') && !v.starts_with('=') => wanted.push((k, v)),
            _ => {
                return status(
                    400,
                    "BadRequest",
                    format!("unable to parse requirement: {term:?} (this server takes k=v only)"),
                );
            }
        }
    }
    let mut inner = api.inner.lock().unwrap();
    inner.pod_lists.push((ns.clone(), selector.clone()));
    let items: Vec<Value> = inner
        .pods
        .iter()
        .filter(|((n, _), _)| *n == ns)
        .map(|(_, p)| p)
        .filter(|p| {
            wanted
                .iter()
                .all(|(k, v)| p["metadata"]["labels"][*k].as_str() == Some(*v))
        })
        .cloned()
        .collect();
    let list = json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": inner.rv.to_string()},
        "items": items,
    });
    ([("content-type", "application/json")], list.to_string()).into_response()
}

async fn list_or_watch(api: KubeApi, q: HashMap<String, String>, kind: Kind) -> Response {
    if q.get("watch").map(String::as_str) != Some("true") {
        let inner = api.inner.lock().unwrap();
        let (version, list_kind) = kind.list_kind();
        let list = json!({
            "apiVersion": version, "kind": list_kind,
            "metadata": {"resourceVersion": inner.rv.to_string()},
            "items": kind.items(&inner),
        });
        return ([("content-type", "application/json")], list.to_string()).into_response();
    }
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stream = futures_util::stream::unfold((api, from), move |(api, seen)| async move {
        let changed = api.changed.clone();
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let inner = api.inner.lock().unwrap();
                kind.log(&inner)
                    .iter()
                    .find(|(rv, _, _)| *rv > seen)
                    .cloned()
            };
            if let Some((rv, kind, object)) = next {
                let line = format!("{}\n", json!({"type": kind, "object": object}));
                return Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from(line)),
                    (api, rv),
                ));
            }
            notified.await;
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn get_configmap(
    State(api): State<KubeApi>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match api.configmap(&ns, &name) {
        Some(cm) => ([("content-type", "application/json")], cm.to_string()).into_response(),
        None => status(404, "NotFound", format!("configmaps \"{name}\" not found")),
    }
}

async fn create_configmap(
    State(api): State<KubeApi>,
    Path(ns): Path<String>,
    body: String,
) -> Response {
    let mut cm: Value = serde_json::from_str(&body).unwrap();
    let name = cm["metadata"]["name"].as_str().unwrap().to_owned();
    let mut inner = api.inner.lock().unwrap();
    inner.writes.push(("POST", name.clone()));
    let key = (ns, name.clone());
    if inner.configmaps.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("configmaps \"{name}\" already exists"),
        );
    }
    inner.rv += 1;
    cm["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    inner.configmaps.insert(key, cm.clone());
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        cm.to_string(),
    )
        .into_response()
}

async fn replace_configmap(
    State(api): State<KubeApi>,
    Path((ns, name)): Path<(String, String)>,
    body: String,
) -> Response {
    let mut cm: Value = serde_json::from_str(&body).unwrap();
    let mut inner = api.inner.lock().unwrap();
    inner.writes.push(("PUT", name.clone()));
    let key = (ns, name.clone());
    let Some(current) = inner.configmaps.get(&key).cloned() else {
        return status(404, "NotFound", format!("configmaps \"{name}\" not found"));
    };
    let stale = cm["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"];
    if stale || inner.conflicts > 0 {
        if inner.conflicts > 0 {
            // Another writer changed it meanwhile.
            inner.conflicts -= 1;
            inner.rv += 1;
            let rv = inner.rv;
            if let Some(c) = inner.configmaps.get_mut(&key) {
                c["metadata"]["resourceVersion"] = json!(rv.to_string());
            }
        }
        return status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on configmaps \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        );
    }
    inner.rv += 1;
    cm["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    inner.configmaps.insert(key, cm.clone());
    ([("content-type", "application/json")], cm.to_string()).into_response()
}
