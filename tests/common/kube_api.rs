//! A local Kubernetes API server for what gpupool uses, in the API's REST
//! shapes, status codes and `Status` bodies (checked against the Kubernetes
//! API reference and the apiserver sources: `k8s.io/apimachinery` errors,
//! `pkg/registry/core/pod/storage/eviction.go`, the generic registry's
//! delete, `pkg/apis/core/validation/events.go`). Routes:
//!
//! Nodes
//! - `GET /api/v1/nodes` lists (`NodeList` with `metadata.resourceVersion`)
//!   and with `watch=true` streams `WatchEvent` lines (`{"type","object"}`:
//!   ADDED, MODIFIED, DELETED) of every node change after the given
//!   `resourceVersion`;
//! - `GET /api/v1/nodes/{name}`: the Node, or 404 NotFound
//!   (`nodes "x" not found`);
//! - `PATCH /api/v1/nodes/{name}` with `application/merge-patch+json` (RFC
//!   7386) or `application/strategic-merge-patch+json`. The strategic patch
//!   merges the lists Node declares `patchStrategy: merge` for
//!   (`metadata.ownerReferences` by `uid`, `metadata.finalizers`,
//!   `spec.podCIDRs`, `status.conditions`/`status.addresses` by `type`) and,
//!   like the real server, REPLACES every other list: `spec.taints` has no
//!   patch strategy (`+listType=atomic`), so a strategic patch carrying one
//!   taint leaves exactly that taint. `$patch: replace|delete` is honoured,
//!   `$setElementOrder/…` and `$retainKeys` are ignored. A
//!   `metadata.resourceVersion` in the patch other than the stored one gets
//!   409 Conflict; `status` is ignored (it is the status subresource's, as in
//!   `nodeStrategy.PrepareForUpdate`); a patch changing nothing answers 200
//!   without a new resourceVersion or watch event; otherwise the node gets a
//!   new resourceVersion and a MODIFIED watch event. JSON patch and apply
//!   patch get 415 UnsupportedMediaType here (kube is built without its
//!   `jsonpatch` feature anyway).
//!
//! CronJobs
//! - `GET /apis/batch/v1/cronjobs` (every namespace): list and watch as for
//!   nodes (`CronJobList`).
//!
//! Pods
//! - `GET /api/v1/pods` (every namespace) and `GET
//!   /api/v1/namespaces/{ns}/pods` list (`PodList` with
//!   `metadata.resourceVersion`), filtered by an equality `labelSelector`
//!   (`k=v,k2=v2`; other selector forms get 400 BadRequest here, as a
//!   malformed one does from the real server) and a `fieldSelector` of `=`,
//!   `==` or `!=` terms on the fields the real server indexes for pods
//!   (`metadata.name`, `metadata.namespace`, `spec.nodeName`,
//!   `spec.restartPolicy`, `spec.schedulerName`, `spec.serviceAccountName`,
//!   `spec.hostNetwork`, `status.phase`, `status.podIP`,
//!   `status.nominatedNodeName`; a missing field compares as ""); any other
//!   field gets 400 BadRequest `field label not supported: f`;
//! - `GET /api/v1/namespaces/{ns}/pods/{name}`: the Pod or 404 NotFound;
//! - `POST /api/v1/namespaces/{ns}/pods/{name}/eviction` (a policy/v1
//!   `Eviction`, as `Api::<Pod>::evict` sends): 201 Created with `Status`
//!   `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",
//!   "code":201}` and the pod deleted (or, after
//!   [`KubeApi::keep_evicted_pods_terminating`], left Terminating with
//!   `metadata.deletionTimestamp` until [`KubeApi::finish_termination`]);
//!   404 NotFound for no such pod; 400 BadRequest when the body's
//!   `metadata.name` is not the URL's; 429 TooManyRequests when
//!   [`KubeApi::block_eviction`] put a PodDisruptionBudget in the way —
//!   unless the pod is Pending, Succeeded, Failed or already terminating,
//!   which the real server evicts without looking at budgets
//!   (`canIgnorePDB`). `?dryRun=All` answers without deleting.
//!
//! Events
//! - `POST /apis/events.k8s.io/v1/namespaces/{ns}/events` (what
//!   `kube::runtime::events::Recorder` creates) and `POST
//!   /api/v1/namespaces/{ns}/events` (core/v1): 201 with the stored event;
//!   an empty `metadata.namespace` takes the URL's, another one gets 400
//!   BadRequest; 409 AlreadyExists for a taken name; 422 Invalid for what
//!   the real validation refuses (events.k8s.io: `eventTime`,
//!   `reportingController`, `reportingInstance`, `action`, `reason`
//!   required, `type` Normal or Warning, the deprecated fields unset; both:
//!   a cluster-scoped `regarding`/`involvedObject` needs the event in
//!   `default` or `kube-system`);
//! - `PATCH /apis/events.k8s.io/v1/namespaces/{ns}/events/{name}` (the
//!   Recorder's merge patch adding `series` when an event repeats) and
//!   `PATCH /api/v1/namespaces/{ns}/events/{name}`: merge patch, 404
//!   NotFound, and for events.k8s.io 422 Invalid when an immutable field
//!   (`reason`, `note`, `regarding`, `related`, `eventTime`, `action`,
//!   `type`, `reportingController`, `reportingInstance`) changes or the
//!   series is malformed (count < 2, no `lastObservedTime`).
//!
//! ConfigMaps
//! - `GET /api/v1/namespaces/{ns}/configmaps` lists (`ConfigMapList`), with
//!   an equality `labelSelector` as for pods;
//! - `GET|PUT /api/v1/namespaces/{ns}/configmaps/{name}` and `POST
//!   /api/v1/namespaces/{ns}/configmaps`: 404 NotFound, 409 AlreadyExists,
//!   and 409 Conflict for a replace carrying a stale resourceVersion;
//! - `DELETE /api/v1/namespaces/{ns}/configmaps/{name}`: 200 with the
//!   generic registry's `Status` `{"kind":"Status","apiVersion":"v1",
//!   "metadata":{},"status":"Success","details":{"name":…,"kind":
//!   "configmaps","uid":…}}` (no `code`), 404 NotFound, 409 Conflict when
//!   the body's `preconditions` (`uid`, `resourceVersion`) do not hold;
//! - after [`KubeApi::throttle_next_configmap_writes`], writes shed as API
//!   Priority and Fairness sheds them: 429 `TooManyRequests`, "Too many
//!   requests, please try again later.", `details.retryAfterSeconds` 1.
//!
//! Leases (`coordination.k8s.io/v1`, what `kube-lease-manager` calls)
//! - `GET …/namespaces/{ns}/leases/{name}`, `POST …/namespaces/{ns}/leases`:
//!   404 NotFound, 409 AlreadyExists;
//! - `PATCH …/leases/{name}`: server-side apply (`application/apply-patch+yaml`,
//!   `fieldManager` required, else 422) with field ownership per `spec`
//!   field and manager/operation, as the structured-merge-diff field
//!   manager keeps it: an apply changing a field another manager owns gets
//!   409 `Conflict` ("Apply failed with 1 conflict: conflict with
//!   \"m\" using coordination.k8s.io/v1: .spec.holderIdentity", causes of
//!   type `FieldManagerConflict`) unless `force=true`; merge and strategic
//!   merge updates take ownership of what they set, and null removes.
//!
//! Error bodies are `Status` objects as `k8s.io/apimachinery/pkg/api/errors`
//! builds them (`details` with `name`, `group`, `kind` = the resource).
//! Every change, and every request recorded for a test to look at, wakes
//! [`KubeApi::wait_for`] and the watches. [`KubeApi::faults`] injects the
//! apiserver's stress answers and latency (see `kube_faults`).
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    rv: u64,
    nodes: BTreeMap<String, Value>,
    /// Every node change: (resourceVersion, type, object).
    log: Vec<(u64, &'static str, Value)>,
    /// Node patches received: (name, content type, patch).
    node_patches: Vec<(String, String, Value)>,
    /// Node patches that changed the node, and when each was applied.
    applied_node_patches: Vec<(String, Instant)>,
    /// CronJobs by `ns/name`, and their changes.
    cronjobs: BTreeMap<String, Value>,
    cronjob_log: Vec<(u64, &'static str, Value)>,
    /// Pods by `(ns, name)`.
    pods: BTreeMap<(String, String), Value>,
    /// Namespaced pod lists asked for: (namespace, labelSelector).
    pod_lists: Vec<(String, String)>,
    /// Every pod list asked for: (namespace or "", labelSelector, fieldSelector).
    pod_queries: Vec<(String, String, String)>,
    /// PodDisruptionBudgets in the way of a pod's eviction: (ns, pod) → PDB.
    pdb_blocks: BTreeMap<(String, String), String>,
    /// Every eviction asked for: (ns, pod, HTTP status answered), and its body.
    evictions: Vec<(String, String, u16)>,
    eviction_bodies: Vec<Value>,
    /// Evicted pods that would terminate gracefully stay, Terminating.
    keep_terminating: bool,
    /// Events of both APIs, in the order created.
    events: Vec<Value>,
    configmaps: BTreeMap<(String, String), Value>,
    /// Replaces answered 409 Conflict before the next one is taken.
    conflicts: u32,
    /// ConfigMap writes answered 429 TooManyRequests (API Priority and
    /// Fairness shedding load) before the next one is taken.
    throttled_writes: u32,
    /// Only ConfigMaps whose names start with this are shed ("": all).
    throttled_prefix: String,
    /// Every configmap write received: (method, name).
    writes: Vec<(&'static str, String)>,
    /// Leases by `(ns, name)`, and who owns each `spec` field as server-side
    /// apply tracks it: `manager` plus `Apply` or `Update`.
    leases: BTreeMap<(String, String), Value>,
    lease_owners: BTreeMap<(String, String), BTreeMap<String, std::collections::BTreeSet<String>>>,
}

impl Inner {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }
}

#[derive(Clone, Default)]
pub struct KubeApi {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    /// Error rates and latency on every route (off by default).
    pub faults: super::kube_faults::Faults,
    pub url: String,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A UID in the UUID shape the real server gives, unique per resourceVersion.
fn uid(rv: u64) -> String {
    format!("00000000-0000-4000-8000-{rv:012x}")
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// A failure `Status` as `k8s.io/apimachinery/pkg/api/errors` builds it.
fn status_with(code: u16, reason: &str, message: String, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    body["code"] = json!(code);
    json_response(StatusCode::from_u16(code).unwrap(), &body)
}

fn status(code: u16, reason: &str, message: String) -> Response {
    status_with(code, reason, message, None)
}

/// What API Priority and Fairness answers a request it sheds.
fn shed() -> Response {
    status_with(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.".into(),
        Some(json!({"retryAfterSeconds": 1})),
    )
}

impl Inner {
    /// Whether this ConfigMap write is shed (see
    /// [`KubeApi::throttle_next_configmap_writes`]).
    fn shed_write(&mut self, name: &str) -> bool {
        if !name.starts_with(&self.throttled_prefix) {
            return false;
        }
        let shed = self.throttled_writes > 0;
        self.throttled_writes = self.throttled_writes.saturating_sub(1);
        shed
    }
}

/// A failure answered with a `Status` without details: code, reason, message.
struct Failure(u16, &'static str, String);

impl Failure {
    fn response(self) -> Response {
        status(self.0, self.1, self.2)
    }
}

/// `group` "" for core; `resource` plural (`nodes`).
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

fn details(group: &str, kind: &str, name: &str) -> Value {
    let mut d = json!({"name": name});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d["kind"] = json!(kind);
    d
}

/// `errors.NewNotFound`: 404, `pods "x" not found`.
fn not_found(group: &str, resource: &str, name: &str) -> Response {
    status_with(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", qualified(group, resource)),
        Some(details(group, resource, name)),
    )
}

/// `errors.NewAlreadyExists`: 409.
fn already_exists(group: &str, resource: &str, name: &str) -> Response {
    status_with(
        409,
        "AlreadyExists",
        format!("{} \"{name}\" already exists", qualified(group, resource)),
        Some(details(group, resource, name)),
    )
}

/// `errors.NewConflict` with `OptimisticLockErrorMsg`: 409.
fn conflict(group: &str, resource: &str, name: &str) -> Response {
    conflict_because(
        group,
        resource,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

fn conflict_because(group: &str, resource: &str, name: &str, why: &str) -> Response {
    status_with(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            qualified(group, resource)
        ),
        Some(details(group, resource, name)),
    )
}

/// One field error: (cause type, field, message as `field.Error.ErrorBody`).
type FieldError = (&'static str, String, String);

fn required(field: &str) -> FieldError {
    (
        "FieldValueRequired",
        field.to_owned(),
        "Required value".into(),
    )
}

fn invalid(field: &str, value: &Value, detail: &str) -> FieldError {
    (
        "FieldValueInvalid",
        field.to_owned(),
        format!("Invalid value: {value}: {detail}"),
    )
}

/// `errors.NewInvalid`: 422, `Event.events.k8s.io "x" is invalid: …`.
fn invalid_status(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Response {
    let qualified_kind = if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    };
    let texts: Vec<String> = errs.iter().map(|(_, f, m)| format!("{f}: {m}")).collect();
    let all = if texts.len() == 1 {
        texts[0].clone()
    } else {
        format!("[{}]", texts.join(", "))
    };
    let mut d = details(group, kind, name);
    d["causes"] = errs
        .iter()
        .map(|(t, f, m)| json!({"reason": t, "message": m, "field": f}))
        .collect();
    status_with(
        422,
        "Invalid",
        format!("{qualified_kind} \"{name}\" is invalid: {all}"),
        Some(d),
    )
}

/// RFC 7386 JSON merge patch of `target` by `patch`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Lists a Node's strategic merge patch merges by a key (its Go types'
/// `patchStrategy:"merge" patchMergeKey`); every other list is replaced.
const SMP_KEYED: &[(&str, &str)] = &[
    ("metadata.ownerReferences", "uid"),
    ("status.conditions", "type"),
    ("status.addresses", "type"),
];
/// Lists of scalars a Node's strategic merge patch unites.
const SMP_SETS: &[&str] = &["metadata.finalizers", "spec.podCIDRs"];

/// A strategic merge patch of a Node (or anything whose merged lists are in
/// [`SMP_KEYED`] / [`SMP_SETS`]); `path` is the dotted path of `target`.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value, path: &str) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = p.clone();
        p.remove("$patch");
        *target = Value::Object(p);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (t.get_mut(field), v) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        let sub = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let slot = t.entry(k.clone()).or_insert(Value::Null);
        let merge_key = SMP_KEYED.iter().find(|(p, _)| *p == sub).map(|(_, k)| *k);
        match (v, merge_key) {
            (Value::Array(items), Some(key)) => {
                if !slot.is_array() {
                    *slot = json!([]);
                }
                let list = slot.as_array_mut().unwrap();
                for item in items {
                    let id = &item[key];
                    let at = list.iter().position(|x| &x[key] == id);
                    if item["$patch"] == "delete" {
                        if let Some(i) = at {
                            list.remove(i);
                        }
                    } else if let Some(i) = at {
                        strategic_merge_patch(&mut list[i], item, &sub);
                    } else {
                        let mut fresh = Value::Null;
                        strategic_merge_patch(&mut fresh, item, &sub);
                        list.push(fresh);
                    }
                }
            }
            (Value::Array(items), None) if SMP_SETS.contains(&sub.as_str()) => {
                if !slot.is_array() {
                    *slot = json!([]);
                }
                let list = slot.as_array_mut().unwrap();
                for item in items {
                    if !list.contains(item) {
                        list.push(item.clone());
                    }
                }
            }
            (Value::Object(_), _) => strategic_merge_patch(slot, v, &sub),
            // Scalars, and atomic lists such as `spec.taints`: replaced.
            _ => *slot = v.clone(),
        }
    }
}

/// Equality label selector terms (`k=v,k2=v2`), or a 400 answer.
fn label_terms(selector: &str) -> Result<Vec<(String, String)>, Failure> {
    let mut wanted = Vec::new();
    for term in selector.split(',').filter(|t| !t.is_empty()) {
        match term.split_once('=') {
            Some((k, v)) if !k.ends_with('!') && !v.starts_with('=') => {
                wanted.push((k.to_owned(), v.to_owned()))
            }
            _ => {
                return Err(Failure(
                    400,
                    "BadRequest",
                    format!("unable to parse requirement: {term:?} (this server takes k=v only)"),
                ));
            }
        }
    }
    Ok(wanted)
}

fn labels_match(obj: &Value, wanted: &[(String, String)]) -> bool {
    wanted
        .iter()
        .all(|(k, v)| obj["metadata"]["labels"][k].as_str() == Some(v.as_str()))
}

/// Pod fields the real server selects on (`pkg/apis/core/v1/conversion.go`),
/// but `status.podIPs`.
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

/// A pod field selector's terms: (field, equal?, value), or a 400 answer.
fn pod_field_terms(selector: &str) -> Result<Vec<(String, bool, String)>, Failure> {
    let mut terms = Vec::new();
    for term in selector.split(',').filter(|t| !t.is_empty()) {
        let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = term.split_once("==") {
            (f, true, v)
        } else if let Some((f, v)) = term.split_once('=') {
            (f, true, v)
        } else {
            return Err(Failure(
                400,
                "BadRequest",
                format!("invalid selector: '{selector}'; can't understand '{term}'"),
            ));
        };
        let field = if field == "spec.host" {
            "spec.nodeName"
        } else {
            field
        };
        if !POD_FIELDS.contains(&field) {
            return Err(Failure(
                400,
                "BadRequest",
                format!("field label not supported: {field}"),
            ));
        }
        terms.push((field.to_owned(), eq, value.to_owned()));
    }
    Ok(terms)
}

fn pod_field(pod: &Value, field: &str) -> String {
    let (top, key) = field.split_once('.').unwrap();
    match &pod[top][key] {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null if field == "spec.hostNetwork" => "false".into(),
        _ => String::new(),
    }
}

/// Whether the real server evicts `pod` without looking at budgets.
fn can_ignore_pdb(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Pending")
    ) || !pod["metadata"]["deletionTimestamp"].is_null()
}

impl KubeApi {
    pub async fn start() -> Self {
        use axum::routing::{get, post};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = KubeApi {
            url: format!("http://{}", listener.local_addr().unwrap()),
            ..Default::default()
        };
        let app = axum::Router::new()
            .route("/api/v1/nodes", get(nodes))
            .route("/api/v1/nodes/{name}", get(get_node).patch(patch_node))
            .route("/apis/batch/v1/cronjobs", get(cronjobs))
            .route("/api/v1/pods", get(all_pods))
            .route("/api/v1/namespaces/{ns}/pods", get(pods))
            .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}/eviction",
                post(evict_pod),
            )
            .route(
                "/apis/events.k8s.io/v1/namespaces/{ns}/events",
                post(create_events_event),
            )
            .route(
                "/apis/events.k8s.io/v1/namespaces/{ns}/events/{name}",
                axum::routing::patch(patch_events_event),
            )
            .route("/api/v1/namespaces/{ns}/events", post(create_core_event))
            .route(
                "/api/v1/namespaces/{ns}/events/{name}",
                axum::routing::patch(patch_core_event),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                post(create_lease),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
                get(get_lease).patch(patch_lease),
            )
            .route(
                "/api/v1/namespaces/{ns}/configmaps",
                get(list_configmaps).post(create_configmap),
            )
            .route(
                "/api/v1/namespaces/{ns}/configmaps/{name}",
                get(get_configmap)
                    .put(replace_configmap)
                    .delete(delete_configmap),
            )
            .layer(axum::middleware::from_fn_with_state(
                api.faults.clone(),
                super::kube_faults::layer,
            ))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        api
    }

    fn read(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Runs `f` on the state, then wakes every watch and [`Self::wait_for`].
    fn write<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let r = f(&mut self.inner.lock().unwrap());
        self.changed.notify_waiters();
        r
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

    /// Waits until `f` gives `Some`, re-checking after every change and every
    /// recorded request; panics naming `what` after 20 s.
    pub async fn wait_for<T>(&self, what: &str, f: impl Fn(&KubeApi) -> Option<T>) -> T {
        self.wait_for_within(what, Duration::from_secs(20), f).await
    }

    /// [`Self::wait_for`] with another time limit.
    pub async fn wait_for_within<T>(
        &self,
        what: &str,
        limit: Duration,
        f: impl Fn(&KubeApi) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so no change slips in between.
            notified.as_mut().enable();
            if let Some(t) = f(self) {
                return t;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out after {limit:?} waiting for {what}");
            }
        }
    }

    /// [`Self::wait_for`] a condition.
    pub async fn wait_until(&self, what: &str, f: impl Fn(&KubeApi) -> bool) {
        self.wait_for(what, |api| f(api).then_some(())).await
    }

    // ----- Nodes -----

    /// Adds or REPLACES a Node: registered at `created`, Ready since `ready`,
    /// `gpus` allocatable `nvidia.com/gpu`. A replaced node keeps nothing of
    /// the old one (a `spec.unschedulable` or `spec.taints` a patch set is
    /// gone); use [`Self::modify_node`] to change one field.
    pub fn put_node(
        &self,
        name: &str,
        provider_id: &str,
        created: SystemTime,
        ready: Option<SystemTime>,
        gpus: u32,
    ) {
        self.write(|inner| {
            let rv = inner.next_rv();
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
        })
    }

    /// Changes a stored Node as another writer would (kubelet, a controller):
    /// new resourceVersion, MODIFIED watch event. False if there is none.
    pub fn modify_node(&self, name: &str, f: impl FnOnce(&mut Value)) -> bool {
        self.write(|inner| {
            let rv = inner.next_rv();
            let Some(node) = inner.nodes.get_mut(name) else {
                return false;
            };
            f(node);
            node["metadata"]["resourceVersion"] = json!(rv.to_string());
            let node = node.clone();
            inner.log.push((rv, "MODIFIED", node));
            true
        })
    }

    /// Removes a Node (DELETED watch event). False if there is none.
    pub fn delete_node(&self, name: &str) -> bool {
        self.write(|inner| {
            let rv = inner.next_rv();
            let Some(mut node) = inner.nodes.remove(name) else {
                return false;
            };
            node["metadata"]["resourceVersion"] = json!(rv.to_string());
            inner.log.push((rv, "DELETED", node));
            true
        })
    }

    pub fn node(&self, name: &str) -> Option<Value> {
        self.read().nodes.get(name).cloned()
    }

    /// Every Node.
    pub fn nodes(&self) -> Vec<Value> {
        self.read().nodes.values().cloned().collect()
    }

    /// Every node patch received: (name, content type, patch body).
    pub fn node_patches(&self) -> Vec<(String, String, Value)> {
        self.read().node_patches.clone()
    }

    /// Every node patch that changed its node (a new resourceVersion), with
    /// when it was applied, in order: (name, when). Patches refused or
    /// changing nothing are not in it.
    pub fn applied_node_patches(&self) -> Vec<(String, Instant)> {
        self.read().applied_node_patches.clone()
    }

    // ----- CronJobs -----

    /// Adds or changes a CronJob (`metadata.namespace` and `.name` set).
    pub fn put_cronjob(&self, mut cj: Value) {
        self.write(|inner| {
            let rv = inner.next_rv();
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
        })
    }

    pub fn delete_cronjob(&self, ns: &str, name: &str) {
        self.write(|inner| {
            let rv = inner.next_rv();
            let Some(mut cj) = inner.cronjobs.remove(&format!("{ns}/{name}")) else {
                return;
            };
            cj["metadata"]["resourceVersion"] = json!(rv.to_string());
            inner.cronjob_log.push((rv, "DELETED", cj));
        })
    }

    // ----- Pods -----

    /// Adds or replaces a Pod with `labels`, bound to `node` if given
    /// (Running, else Pending).
    pub fn put_pod(&self, ns: &str, name: &str, labels: Value, node: Option<&str>) {
        self.put_pod_full(
            ns,
            name,
            json!({"metadata": {"labels": labels}, "spec": {"nodeName": node}}),
        );
    }

    /// Adds or replaces a Pod: `pod` (any fields: `metadata.ownerReferences`,
    /// `metadata.annotations["kubernetes.io/config.mirror"]`,
    /// `spec.priorityClassName`/`spec.priority`, `status.phase`, …) merged
    /// (RFC 7386) over a default one container pod whose phase is Running
    /// with a Ready condition when `spec.nodeName` is set, else Pending.
    /// The namespace, name, uid (kept across replaces), resourceVersion and
    /// creationTimestamp are the server's.
    pub fn put_pod_full(&self, ns: &str, name: &str, pod: Value) {
        self.write(|inner| {
            let rv = inner.next_rv();
            let key = (ns.to_owned(), name.to_owned());
            let (uid, created) = match inner.pods.get(&key) {
                Some(old) => (
                    old["metadata"]["uid"].clone(),
                    old["metadata"]["creationTimestamp"].clone(),
                ),
                None => (json!(uid(rv)), json!(rfc3339(SystemTime::now()))),
            };
            let bound = pod["spec"]["nodeName"].is_string();
            let mut full = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {},
                "spec": {"containers": [{"name": "main", "image": "main"}],
                    "restartPolicy": "Always", "terminationGracePeriodSeconds": 30},
                "status": {"phase": if bound { "Running" } else { "Pending" }},
            });
            if bound {
                full["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
            }
            merge_patch(&mut full, &pod);
            let meta = &mut full["metadata"];
            meta["namespace"] = json!(ns);
            meta["name"] = json!(name);
            meta["uid"] = uid;
            meta["creationTimestamp"] = created;
            meta["resourceVersion"] = json!(rv.to_string());
            inner.pods.insert(key, full);
        })
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<Value> {
        self.read()
            .pods
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Removes a pod at once. False if there was none.
    pub fn delete_pod(&self, ns: &str, name: &str) -> bool {
        self.write(|inner| {
            inner.next_rv();
            inner
                .pods
                .remove(&(ns.to_owned(), name.to_owned()))
                .is_some()
        })
    }

    /// Namespaced pod lists asked for: (namespace, labelSelector).
    pub fn pod_lists(&self) -> Vec<(String, String)> {
        self.read().pod_lists.clone()
    }

    /// Every pod list asked for, either route: (namespace, "" for every
    /// namespace; labelSelector; fieldSelector).
    pub fn pod_queries(&self) -> Vec<(String, String, String)> {
        self.read().pod_queries.clone()
    }

    // ----- Evictions -----

    /// Evictions of `ns/name` get 429: PodDisruptionBudget `pdb` "needs 1
    /// healthy pods and has 1 currently".
    pub fn block_eviction(&self, ns: &str, name: &str, pdb: &str) {
        self.write(|inner| {
            inner
                .pdb_blocks
                .insert((ns.to_owned(), name.to_owned()), pdb.to_owned())
        });
    }

    pub fn unblock_eviction(&self, ns: &str, name: &str) {
        self.write(|inner| inner.pdb_blocks.remove(&(ns.to_owned(), name.to_owned())));
    }

    /// From now on an evicted pod that would terminate gracefully (bound to
    /// a node, not Succeeded/Failed, grace period > 0) stays, Terminating:
    /// `metadata.deletionTimestamp` and `deletionGracePeriodSeconds` set,
    /// until [`Self::finish_termination`]. Off: evicted pods go at once.
    pub fn keep_evicted_pods_terminating(&self, on: bool) {
        self.write(|inner| inner.keep_terminating = on);
    }

    /// The kubelet is done with a Terminating pod: it goes. False if none.
    pub fn finish_termination(&self, ns: &str, name: &str) -> bool {
        self.delete_pod(ns, name)
    }

    /// Every eviction asked for, in order: (namespace, pod, HTTP status).
    pub fn evictions(&self) -> Vec<(String, String, u16)> {
        self.read().evictions.clone()
    }

    /// Every eviction request body, in order.
    pub fn eviction_bodies(&self) -> Vec<Value> {
        self.read().eviction_bodies.clone()
    }

    // ----- Events -----

    /// Every event created through either API (as last patched), in order.
    pub fn events(&self) -> Vec<Value> {
        self.read().events.clone()
    }

    /// Reasons of the events about an object named `name` (`regarding` for
    /// events.k8s.io, `involvedObject` for core/v1), in order created.
    pub fn event_reasons_for(&self, name: &str) -> Vec<String> {
        self.read()
            .events
            .iter()
            .filter(|e| {
                e["regarding"]["name"].as_str() == Some(name)
                    || e["involvedObject"]["name"].as_str() == Some(name)
            })
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }

    // ----- ConfigMaps -----

    /// Adds or replaces a ConfigMap (`metadata.namespace` and `.name` set).
    pub fn put_configmap(&self, mut cm: Value) {
        self.write(|inner| {
            let rv = inner.next_rv();
            let ns = cm["metadata"]["namespace"].as_str().unwrap().to_owned();
            let name = cm["metadata"]["name"].as_str().unwrap().to_owned();
            cm["apiVersion"] = json!("v1");
            cm["kind"] = json!("ConfigMap");
            cm["metadata"]["uid"] = json!(uid(rv));
            cm["metadata"]["resourceVersion"] = json!(rv.to_string());
            cm["metadata"]["creationTimestamp"] = json!(rfc3339(SystemTime::now()));
            inner.configmaps.insert((ns, name), cm);
        })
    }

    pub fn configmap(&self, ns: &str, name: &str) -> Option<Value> {
        self.read()
            .configmaps
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// ConfigMaps in `ns` labelled `key=value`, by name.
    pub fn configmaps_labelled(&self, ns: &str, key: &str, value: &str) -> Vec<Value> {
        let wanted = [(key.to_owned(), value.to_owned())];
        self.read()
            .configmaps
            .iter()
            .filter(|((n, _), cm)| n == ns && labels_match(cm, &wanted))
            .map(|(_, cm)| cm.clone())
            .collect()
    }

    /// The next `n` ConfigMap writes (create, replace, delete) are shed as
    /// API Priority and Fairness does: 429 TooManyRequests,
    /// `details.retryAfterSeconds` 1.
    pub fn throttle_next_configmap_writes(&self, n: u32) {
        self.throttle_next_configmap_writes_of("", n);
    }

    /// As [`Self::throttle_next_configmap_writes`], for the ConfigMaps
    /// whose names start with `prefix` only.
    pub fn throttle_next_configmap_writes_of(&self, prefix: &str, n: u32) {
        self.write(|inner| {
            inner.throttled_writes = n;
            inner.throttled_prefix = prefix.to_owned();
        });
    }

    /// The next `n` replaces fail with 409 Conflict (another writer won).
    pub fn conflict_next_replaces(&self, n: u32) {
        self.write(|inner| inner.conflicts = n);
    }

    /// Every configmap write received: (method: POST, PUT, DELETE; name).
    pub fn configmap_writes(&self) -> Vec<(&'static str, String)> {
        self.read().writes.clone()
    }

    pub fn lease(&self, ns: &str, name: &str) -> Option<Value> {
        self.read()
            .leases
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Another writer takes the Lease: a new holder, renewed now.
    pub fn set_lease_holder(&self, ns: &str, name: &str, holder: &str) {
        self.write(|inner| {
            let rv = inner.next_rv();
            let key = (ns.to_owned(), name.to_owned());
            let lease = inner.leases.get_mut(&key).expect("the lease exists");
            lease["spec"]["holderIdentity"] = json!(holder);
            lease["spec"]["renewTime"] =
                json!(humantime::format_rfc3339_micros(SystemTime::now()).to_string());
            lease["metadata"]["resourceVersion"] = json!(rv.to_string());
            let owners = inner.lease_owners.entry(key).or_default();
            for field in ["holderIdentity", "renewTime"] {
                owners.insert(field.to_owned(), [format!("{holder}/Update")].into());
            }
        });
    }

    /// The Lease's holder, when it has one.
    pub fn lease_holder(&self, ns: &str, name: &str) -> Option<String> {
        self.lease(ns, name)
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
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

async fn list_or_watch(api: KubeApi, q: HashMap<String, String>, kind: Kind) -> Response {
    if q.get("watch").map(String::as_str) != Some("true") {
        let inner = api.read();
        let (version, list_kind) = kind.list_kind();
        let list = json!({
            "apiVersion": version, "kind": list_kind,
            "metadata": {"resourceVersion": inner.rv.to_string()},
            "items": kind.items(&inner),
        });
        return ok(&list);
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
                let inner = api.read();
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

async fn get_node(State(api): State<KubeApi>, Path(name): Path<String>) -> Response {
    match api.node(&name) {
        Some(node) => ok(&node),
        None => not_found("", "nodes", &name),
    }
}

/// The patch's media type, without parameters.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_owned()
}

/// Merge or strategic merge, or the 415 the real server gives other types.
fn patch_kind(ct: &str) -> Result<bool, Failure> {
    match ct {
        "application/merge-patch+json" => Ok(false),
        "application/strategic-merge-patch+json" => Ok(true),
        _ => Err(Failure(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/merge-patch+json, application/strategic-merge-patch+json \
                 (this test server serves no {ct:?})"
            ),
        )),
    }
}

fn parse_body(body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        Failure(
            400,
            "BadRequest",
            format!("error decoding request body: {e}"),
        )
    })
}

async fn patch_node(
    State(api): State<KubeApi>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = content_type(&headers);
    let patch = match parse_body(&body) {
        Ok(p) => p,
        Err(f) => return f.response(),
    };
    api.write(|inner| {
        inner
            .node_patches
            .push((name.clone(), ct.clone(), patch.clone()));
        let strategic = match patch_kind(&ct) {
            Ok(s) => s,
            Err(f) => return f.response(),
        };
        let Some(old) = inner.nodes.get(&name).cloned() else {
            return not_found("", "nodes", &name);
        };
        if !patch.is_object() {
            return status(400, "BadRequest", "the patch is not a JSON object".into());
        }
        let wanted_rv = &patch["metadata"]["resourceVersion"];
        if !wanted_rv.is_null() && *wanted_rv != old["metadata"]["resourceVersion"] {
            return conflict("", "nodes", &name);
        }
        let mut new = old.clone();
        if strategic {
            strategic_merge_patch(&mut new, &patch, "");
        } else {
            merge_patch(&mut new, &patch);
        }
        if new["metadata"]["name"] != old["metadata"]["name"] {
            return status(
                400,
                "BadRequest",
                format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    new["metadata"]["name"]
                ),
            );
        }
        // The server's fields stay; status is the status subresource's.
        for f in ["apiVersion", "kind", "status"] {
            match old.get(f) {
                Some(v) => new[f] = v.clone(),
                None => {
                    new.as_object_mut().unwrap().remove(f);
                }
            }
        }
        for f in ["uid", "creationTimestamp", "resourceVersion"] {
            new["metadata"][f] = old["metadata"][f].clone();
        }
        if new == old {
            return ok(&old);
        }
        let rv = inner.next_rv();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.nodes.insert(name.clone(), new.clone());
        inner.log.push((rv, "MODIFIED", new.clone()));
        inner
            .applied_node_patches
            .push((name.clone(), Instant::now()));
        ok(&new)
    })
}

async fn all_pods(
    State(api): State<KubeApi>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_pods(api, None, q)
}

async fn pods(
    State(api): State<KubeApi>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_pods(api, Some(ns), q)
}

fn list_pods(api: KubeApi, ns: Option<String>, q: HashMap<String, String>) -> Response {
    let labels = q.get("labelSelector").cloned().unwrap_or_default();
    let fields = q.get("fieldSelector").cloned().unwrap_or_default();
    api.write(|inner| {
        if let Some(ns) = &ns {
            inner.pod_lists.push((ns.clone(), labels.clone()));
        }
        inner.pod_queries.push((
            ns.clone().unwrap_or_default(),
            labels.clone(),
            fields.clone(),
        ));
        let wanted = match label_terms(&labels) {
            Ok(w) => w,
            Err(f) => return f.response(),
        };
        let terms = match pod_field_terms(&fields) {
            Ok(t) => t,
            Err(f) => return f.response(),
        };
        let items: Vec<Value> = inner
            .pods
            .iter()
            .filter(|((n, _), _)| ns.as_ref().is_none_or(|ns| n == ns))
            .map(|(_, p)| p)
            .filter(|p| labels_match(p, &wanted))
            .filter(|p| {
                terms
                    .iter()
                    .all(|(f, eq, v)| (pod_field(p, f) == *v) == *eq)
            })
            .cloned()
            .collect();
        ok(&json!({
            "apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": inner.rv.to_string()},
            "items": items,
        }))
    })
}

async fn get_pod(State(api): State<KubeApi>, Path((ns, name)): Path<(String, String)>) -> Response {
    match api.pod(&ns, &name) {
        Some(pod) => ok(&pod),
        None => not_found("", "pods", &name),
    }
}

async fn evict_pod(
    State(api): State<KubeApi>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let eviction = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    api.write(|inner| {
        let (code, response) = eviction_answer(inner, &ns, &name, &eviction, dry_run);
        inner.evictions.push((ns.clone(), name.clone(), code));
        inner.eviction_bodies.push(eviction.clone());
        response
    })
}

/// What the real eviction subresource does (`EvictionREST.Create`).
fn eviction_answer(
    inner: &mut Inner,
    ns: &str,
    name: &str,
    eviction: &Value,
    dry_run: bool,
) -> (u16, Response) {
    if !eviction.is_object() {
        return (
            400,
            status(400, "BadRequest", "error decoding the Eviction".into()),
        );
    }
    if eviction["metadata"]["name"].as_str() != Some(name) {
        return (
            400,
            status(
                400,
                "BadRequest",
                "name in URL does not match name in Eviction object".into(),
            ),
        );
    }
    let key = (ns.to_owned(), name.to_owned());
    let Some(pod) = inner.pods.get(&key).cloned() else {
        return (404, not_found("", "pods", name));
    };
    if let Some(pdb) = inner.pdb_blocks.get(&key)
        && !can_ignore_pdb(&pod)
    {
        let response = status_with(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            Some(json!({"causes": [{"reason": "DisruptionBudget",
                "message": format!("The disruption budget {pdb} needs 1 healthy pods and has 1 currently")}]})),
        );
        return (429, response);
    }
    if !dry_run {
        // `podStrategy.CheckGracefulDelete`.
        let options = &eviction["deleteOptions"];
        let grace = options["gracePeriodSeconds"]
            .as_i64()
            .or(pod["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        let graceful = grace > 0
            && pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
            && !matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
        let rv = inner.next_rv();
        if inner.keep_terminating && graceful {
            let pod = inner.pods.get_mut(&key).unwrap();
            if pod["metadata"]["deletionTimestamp"].is_null() {
                let at = SystemTime::now() + Duration::from_secs(grace as u64);
                pod["metadata"]["deletionTimestamp"] = json!(rfc3339(at));
                pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                pod["metadata"]["resourceVersion"] = json!(rv.to_string());
            }
        } else {
            inner.pods.remove(&key);
        }
    }
    let created = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Success", "code": 201});
    (201, json_response(StatusCode::CREATED, &created))
}

/// The two Event APIs: core/v1 and events.k8s.io/v1.
#[derive(Clone, Copy, PartialEq)]
enum EventApi {
    Core,
    Events,
}

impl EventApi {
    fn group(self) -> &'static str {
        match self {
            EventApi::Core => "",
            EventApi::Events => "events.k8s.io",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            EventApi::Core => "v1",
            EventApi::Events => "events.k8s.io/v1",
        }
    }

    /// The object an event is about.
    fn subject(self, event: &Value) -> &Value {
        match self {
            EventApi::Core => &event["involvedObject"],
            EventApi::Events => &event["regarding"],
        }
    }
}

async fn create_events_event(
    State(api): State<KubeApi>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    create_event(api, ns, &body, EventApi::Events)
}

async fn create_core_event(
    State(api): State<KubeApi>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    create_event(api, ns, &body, EventApi::Core)
}

/// `ValidateEventCreate`: the legacy checks for both APIs, the strict ones
/// for events.k8s.io.
fn validate_event(event: &Value, ns: &str, which: EventApi) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let subject_ns = which.subject(event)["namespace"].as_str().unwrap_or("");
    let has_time = event["eventTime"].is_string();
    if !has_time && which == EventApi::Core {
        if (subject_ns.is_empty() && ns != "default")
            || (!subject_ns.is_empty() && subject_ns != ns)
        {
            errs.push(invalid(
                "involvedObject.namespace",
                &json!(subject_ns),
                "does not match event.namespace",
            ));
        }
    } else {
        if subject_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(invalid(
                "involvedObject.namespace",
                &json!(subject_ns),
                "does not match event.namespace",
            ));
        }
        let controller = match which {
            EventApi::Core => "reportingComponent",
            EventApi::Events => "reportingController",
        };
        for (field, limit) in [
            (controller, usize::MAX),
            ("reportingInstance", 128),
            ("action", 128),
            ("reason", 128),
        ] {
            match event[field].as_str() {
                None | Some("") => errs.push(required(field)),
                Some(s) if s.len() > limit => errs.push(invalid(
                    field,
                    &json!(""),
                    &format!("can have at most {limit} characters"),
                )),
                Some(_) => {}
            }
        }
    }
    let note = match which {
        EventApi::Core => "message",
        EventApi::Events => "note",
    };
    if event[note].as_str().is_some_and(|n| n.len() > 1024) {
        errs.push(invalid(
            "message",
            &json!(""),
            "can have at most 1024 characters",
        ));
    }
    if which == EventApi::Events {
        if !has_time {
            errs.push(required("eventTime"));
        }
        if !matches!(event["type"].as_str(), Some("Normal" | "Warning")) {
            errs.push(invalid(
                "type",
                &json!(""),
                &format!(
                    "has invalid value: {}",
                    event["type"].as_str().unwrap_or("")
                ),
            ));
        }
        for field in [
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedCount",
            "deprecatedSource",
        ] {
            if !event[field].is_null() && event[field] != json!({}) && event[field] != json!(0) {
                errs.push(invalid(field, &json!(""), "needs to be unset"));
            }
        }
        errs.extend(validate_series(event));
    }
    errs
}

fn validate_series(event: &Value) -> Vec<FieldError> {
    let series = &event["series"];
    let mut errs = Vec::new();
    if series.is_object() {
        if series["count"].as_i64().unwrap_or(0) < 2 {
            errs.push(invalid("series.count", &json!(""), "should be at least 2"));
        }
        if !series["lastObservedTime"].is_string() {
            errs.push(required("series.lastObservedTime"));
        }
    }
    errs
}

fn create_event(api: KubeApi, ns: String, body: &[u8], which: EventApi) -> Response {
    let mut event = match parse_body(body) {
        Ok(e) => e,
        Err(f) => return f.response(),
    };
    api.write(|inner| {
        match event["metadata"]["namespace"].as_str() {
            None | Some("") => event["metadata"]["namespace"] = json!(ns),
            Some(n) if n != ns => {
                return status(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .into(),
                );
            }
            Some(_) => {}
        }
        let rv = inner.next_rv();
        let name = match (
            event["metadata"]["name"].as_str(),
            event["metadata"]["generateName"].as_str(),
        ) {
            (Some(n), _) if !n.is_empty() => n.to_owned(),
            (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{rv:05x}"),
            _ => {
                let err = (
                    "FieldValueRequired",
                    "metadata.name".to_owned(),
                    "Required value: name or generateName is required".to_owned(),
                );
                return invalid_status(which.group(), "Event", "", &[err]);
            }
        };
        let errs = validate_event(&event, &ns, which);
        if !errs.is_empty() {
            return invalid_status(which.group(), "Event", &name, &errs);
        }
        if inner.events.iter().any(|e| {
            e["metadata"]["namespace"] == json!(ns) && e["metadata"]["name"] == json!(name)
        }) {
            return already_exists(which.group(), "events", &name);
        }
        event["apiVersion"] = json!(which.api_version());
        event["kind"] = json!("Event");
        let meta = &mut event["metadata"];
        meta["name"] = json!(name);
        meta["uid"] = json!(uid(rv));
        meta["resourceVersion"] = json!(rv.to_string());
        meta["creationTimestamp"] = json!(rfc3339(SystemTime::now()));
        inner.events.push(event.clone());
        json_response(StatusCode::CREATED, &event)
    })
}

async fn patch_events_event(
    State(api): State<KubeApi>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch_event(api, ns, name, &headers, &body, EventApi::Events)
}

async fn patch_core_event(
    State(api): State<KubeApi>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch_event(api, ns, name, &headers, &body, EventApi::Core)
}

/// Fields `ValidateEventUpdate` keeps for events.k8s.io updates.
const EVENT_IMMUTABLE: &[&str] = &[
    "reason",
    "note",
    "regarding",
    "related",
    "eventTime",
    "action",
    "type",
    "reportingController",
    "reportingInstance",
];

fn patch_event(
    api: KubeApi,
    ns: String,
    name: String,
    headers: &HeaderMap,
    body: &[u8],
    which: EventApi,
) -> Response {
    let ct = content_type(headers);
    if let Err(f) = patch_kind(&ct) {
        return f.response();
    }
    let patch = match parse_body(body) {
        Ok(p) => p,
        Err(f) => return f.response(),
    };
    api.write(|inner| {
        let Some(at) = inner.events.iter().position(|e| {
            e["metadata"]["namespace"] == json!(ns) && e["metadata"]["name"] == json!(name)
        }) else {
            return not_found(which.group(), "events", &name);
        };
        let old = inner.events[at].clone();
        let wanted_rv = &patch["metadata"]["resourceVersion"];
        if !wanted_rv.is_null() && *wanted_rv != old["metadata"]["resourceVersion"] {
            return conflict(which.group(), "events", &name);
        }
        // Event has no lists a strategic merge patch merges.
        let mut new = old.clone();
        merge_patch(&mut new, &patch);
        for f in ["namespace", "name", "uid", "creationTimestamp"] {
            new["metadata"][f] = old["metadata"][f].clone();
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = old["kind"].clone();
        if which == EventApi::Events {
            let mut errs: Vec<FieldError> = EVENT_IMMUTABLE
                .iter()
                .filter(|f| new[**f] != old[**f])
                .map(|f| invalid(f, &new[*f], "field is immutable"))
                .collect();
            if new["series"] != old["series"] {
                errs.extend(validate_series(&new));
            }
            if !errs.is_empty() {
                return invalid_status(which.group(), "Event", &name, &errs);
            }
        }
        let rv = inner.next_rv();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.events[at] = new.clone();
        ok(&new)
    })
}

async fn list_configmaps(
    State(api): State<KubeApi>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let wanted = match label_terms(q.get("labelSelector").map_or("", String::as_str)) {
        Ok(w) => w,
        Err(f) => return f.response(),
    };
    let inner = api.read();
    let items: Vec<Value> = inner
        .configmaps
        .iter()
        .filter(|((n, _), cm)| *n == ns && labels_match(cm, &wanted))
        .map(|(_, cm)| cm.clone())
        .collect();
    ok(&json!({
        "apiVersion": "v1", "kind": "ConfigMapList",
        "metadata": {"resourceVersion": inner.rv.to_string()},
        "items": items,
    }))
}

async fn get_configmap(
    State(api): State<KubeApi>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match api.configmap(&ns, &name) {
        Some(cm) => ok(&cm),
        None => not_found("", "configmaps", &name),
    }
}

async fn create_configmap(
    State(api): State<KubeApi>,
    Path(ns): Path<String>,
    body: String,
) -> Response {
    let mut cm: Value = serde_json::from_str(&body).unwrap();
    let name = cm["metadata"]["name"].as_str().unwrap().to_owned();
    api.write(|inner| {
        inner.writes.push(("POST", name.clone()));
        if inner.shed_write(&name) {
            return shed();
        }
        let key = (ns.clone(), name.clone());
        if inner.configmaps.contains_key(&key) {
            return already_exists("", "configmaps", &name);
        }
        let rv = inner.next_rv();
        cm["metadata"]["namespace"] = json!(ns);
        cm["metadata"]["resourceVersion"] = json!(rv.to_string());
        cm["metadata"]["uid"] = json!(uid(rv));
        cm["metadata"]["creationTimestamp"] = json!(rfc3339(SystemTime::now()));
        inner.configmaps.insert(key, cm.clone());
        json_response(StatusCode::CREATED, &cm)
    })
}

async fn replace_configmap(
    State(api): State<KubeApi>,
    Path((ns, name)): Path<(String, String)>,
    body: String,
) -> Response {
    let mut cm: Value = serde_json::from_str(&body).unwrap();
    api.write(|inner| {
        inner.writes.push(("PUT", name.clone()));
        if inner.shed_write(&name) {
            return shed();
        }
        let key = (ns, name.clone());
        let Some(current) = inner.configmaps.get(&key).cloned() else {
            return not_found("", "configmaps", &name);
        };
        let stale = cm["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"];
        if stale || inner.conflicts > 0 {
            if inner.conflicts > 0 {
                // Another writer changed it meanwhile.
                inner.conflicts -= 1;
                let rv = inner.next_rv();
                if let Some(c) = inner.configmaps.get_mut(&key) {
                    c["metadata"]["resourceVersion"] = json!(rv.to_string());
                }
            }
            return conflict("", "configmaps", &name);
        }
        let rv = inner.next_rv();
        cm["metadata"]["resourceVersion"] = json!(rv.to_string());
        for f in ["uid", "creationTimestamp"] {
            if !current["metadata"][f].is_null() {
                cm["metadata"][f] = current["metadata"][f].clone();
            }
        }
        inner.configmaps.insert(key, cm.clone());
        ok(&cm)
    })
}

async fn delete_configmap(
    State(api): State<KubeApi>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    // DeleteOptions; kube sends `{}` (or its DeleteParams) as the body.
    let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    api.write(|inner| {
        inner.writes.push(("DELETE", name.clone()));
        if inner.shed_write(&name) {
            return shed();
        }
        let key = (ns, name.clone());
        let Some(current) = inner.configmaps.get(&key).cloned() else {
            return not_found("", "configmaps", &name);
        };
        let pre = &options["preconditions"];
        for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if !pre[field].is_null() && pre[field] != current["metadata"][field] {
                return conflict_because(
                    "",
                    "configmaps",
                    &name,
                    &format!(
                        "Precondition failed: {what} in precondition: {}, {what} in object meta: {}",
                        pre[field].as_str().unwrap_or(""),
                        current["metadata"][field].as_str().unwrap_or("")
                    ),
                );
            }
        }
        inner.next_rv();
        inner.configmaps.remove(&key);
        // The generic registry's `finalizeDelete`: no code, kind = resource.
        ok(&json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "kind": "configmaps", "uid": current["metadata"]["uid"]},
        }))
    })
}

async fn get_lease(
    State(api): State<KubeApi>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match api.lease(&ns, &name) {
        Some(l) => ok(&l),
        None => not_found("coordination.k8s.io", "leases", &name),
    }
}

async fn create_lease(State(api): State<KubeApi>, Path(ns): Path<String>, body: Bytes) -> Response {
    let mut lease = match parse_body(&body) {
        Ok(l) => l,
        Err(f) => return f.response(),
    };
    let Some(name) = lease["metadata"]["name"].as_str().map(str::to_owned) else {
        return invalid_status(
            "coordination.k8s.io",
            "Lease",
            "",
            &[required("metadata.name")],
        );
    };
    api.write(|inner| {
        let key = (ns.clone(), name.clone());
        if inner.leases.contains_key(&key) {
            return already_exists("coordination.k8s.io", "leases", &name);
        }
        let rv = inner.next_rv();
        lease["apiVersion"] = json!("coordination.k8s.io/v1");
        lease["kind"] = json!("Lease");
        lease["metadata"]["namespace"] = json!(ns);
        lease["metadata"]["resourceVersion"] = json!(rv.to_string());
        lease["metadata"]["uid"] = json!(uid(rv));
        lease["metadata"]["creationTimestamp"] = json!(rfc3339(SystemTime::now()));
        if !lease["spec"].is_object() {
            lease["spec"] = json!({});
        }
        let owners = inner.lease_owners.entry(key.clone()).or_default();
        owners.clear();
        if let Some(spec) = lease["spec"].as_object() {
            for field in spec.keys() {
                owners.insert(field.clone(), ["/Update".to_owned()].into());
            }
        }
        inner.leases.insert(key, lease.clone());
        json_response(StatusCode::CREATED, &lease)
    })
}

/// `PATCH` of a Lease: server-side apply (`application/apply-patch+yaml`,
/// `fieldManager` required, conflicts with other managers' fields answered
/// 409 unless `force=true`, fields this applier stops applying removed when
/// no one else owns them) or a merge/strategic merge update (null removes a
/// field; the updater takes ownership of what it sets). Only `spec`'s
/// fields are tracked; a Lease has no lists.
async fn patch_lease(
    State(api): State<KubeApi>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = content_type(&headers);
    let patch = match parse_body(&body) {
        Ok(p) => p,
        Err(f) => return f.response(),
    };
    let apply = ct == "application/apply-patch+yaml";
    if !apply && let Err(f) = patch_kind(&ct) {
        return f.response();
    }
    let manager = q.get("fieldManager").cloned().unwrap_or_default();
    if apply && manager.is_empty() {
        return invalid_status(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[required("fieldManager")],
        );
    }
    let force = q.get("force").is_some_and(|f| f == "true");
    let me = format!("{manager}/{}", if apply { "Apply" } else { "Update" });
    let spec = patch["spec"].as_object().cloned().unwrap_or_default();
    api.write(|inner| {
        let key = (ns.clone(), name.clone());
        let Some(mut lease) = inner.leases.get(&key).cloned() else {
            return not_found("coordination.k8s.io", "leases", &name);
        };
        let mut owners = inner.lease_owners.get(&key).cloned().unwrap_or_default();
        if !lease["spec"].is_object() {
            lease["spec"] = json!({});
        }
        if apply {
            let mut conflicts = Vec::new();
            for (field, value) in &spec {
                let current = &lease["spec"][field.as_str()];
                if current.is_null() || current == value {
                    continue;
                }
                for other in owners.get(field).into_iter().flatten() {
                    if *other != me {
                        conflicts.push((other.split('/').next().unwrap_or("").to_owned(), field.clone()));
                    }
                }
            }
            if !conflicts.is_empty() && !force {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|(m, f)| {
                        json!({
                            "type": "FieldManagerConflict",
                            "message": format!("conflict with {m:?} using coordination.k8s.io/v1"),
                            "field": format!(".spec.{f}"),
                        })
                    })
                    .collect();
                let list = conflicts
                    .iter()
                    .map(|(m, f)| format!("conflict with {m:?} using coordination.k8s.io/v1: .spec.{f}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                return status_with(
                    409,
                    "Conflict",
                    format!("Apply failed with {} conflict(s): {list}", conflicts.len()),
                    Some(json!({"name": name, "group": "coordination.k8s.io", "kind": "leases", "causes": causes})),
                );
            }
            // What this applier no longer applies goes, when only it owned it.
            let dropped: Vec<String> = owners
                .iter()
                .filter(|(f, o)| o.contains(&me) && !spec.contains_key(f.as_str()))
                .map(|(f, _)| f.clone())
                .collect();
            for field in dropped {
                let o = owners.get_mut(&field).expect("listed above");
                o.remove(&me);
                if o.is_empty() {
                    owners.remove(&field);
                    if let Some(s) = lease["spec"].as_object_mut() {
                        s.remove(&field);
                    }
                }
            }
        }
        for (field, value) in &spec {
            let s = lease["spec"].as_object_mut().expect("an object above");
            if value.is_null() {
                if !apply {
                    s.remove(field);
                    owners.remove(field);
                }
                continue;
            }
            let o = owners.entry(field.clone()).or_default();
            if s.get(field) != Some(value) {
                // A changed value is the writer's alone (a forced apply
                // takes it from the others too).
                o.clear();
                s.insert(field.clone(), value.clone());
            }
            o.insert(me.clone());
        }
        let rv = inner.next_rv();
        lease["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner.lease_owners.insert(key.clone(), owners);
        inner.leases.insert(key, lease.clone());
        ok(&lease)
    })
}
