//! A local Compute Engine: the REST paths, shapes and status codes of the
//! v1 API for the calls gpupool makes (regions.get, machineTypes.list,
//! acceleratorTypes.list, instanceTemplates.get/list, instances.bulkInsert,
//! list with label filters, aggregatedList, get, delete,
//! zoneOperations.get/wait), with the recorded resources and errors of
//! `../recorded/compute/`. It keeps instances and operations, honours
//! request ids and `minCount`, runs out of capacity per (zone, machine
//! type, provisioning model) when told, and answers an OAuth token
//! endpoint so Application Default Credentials can be used against it.
//! Also serves the billing catalog's SKU pages. Shared with the main
//! crate's tests through `#[path]`.

#![allow(dead_code)]
// Handlers answer early with a whole `Response`; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

pub const PROJECT: &str = "gpupool-test";
pub const REGION: &str = "us-central1";
/// The access token `/token` hands out, and the one required when
/// [`ComputeApi::require_token`] is on.
pub const TOKEN: &str = "ya29.gpupool-test-token";

const GOOGLEAPIS: &str = "https://www.googleapis.com/compute/v1";

/// One call as the server saw it.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: &'static str,
    pub zone: Option<String>,
    pub query: HashMap<String, String>,
    pub body: Option<Value>,
}

/// An error the next matching call answers with instead of its own.
#[derive(Clone, Debug)]
pub struct Fault {
    /// The method it hits, e.g. `instances.bulkInsert`.
    pub method: &'static str,
    pub status: u16,
    pub body: Value,
}

#[derive(Default)]
struct World {
    /// (zone, name) → instance.
    instances: BTreeMap<(String, String), Value>,
    /// (zone, name) → operation, and how many more polls it stays RUNNING.
    operations: BTreeMap<(String, String), (Value, u32)>,
    /// requestId → the operation it made.
    request_ids: HashMap<String, (String, String)>,
    /// Instances left per (zone, machine type, spot); absent: plenty.
    capacity: HashMap<(String, String, bool), u32>,
    /// The code a bulk insert's operation ends with, per zone, instead of
    /// placing anything (`QUOTA_EXCEEDED`, `PERMISSIONS_ERROR`).
    refuse: HashMap<String, String>,
    templates: BTreeMap<String, Value>,
    faults: VecDeque<Fault>,
    calls: Vec<Call>,
    polls_per_operation: u32,
    require_token: bool,
    /// Methods whose next call is carried out but answered with a 503, as
    /// when the answer is lost on the way back.
    lose_answer: Vec<&'static str>,
    next_id: u64,
}

#[derive(Clone)]
pub struct ComputeApi {
    pub base: String,
    world: Arc<Mutex<World>>,
}

fn recorded(name: &str) -> Value {
    let text = match name {
        "machine-types" => include_str!("../recorded/compute/machine-types.json"),
        "accelerator-types" => include_str!("../recorded/compute/accelerator-types.json"),
        "region" => include_str!("../recorded/compute/region.json"),
        "operation-errors" => include_str!("../recorded/compute/operation-errors.json"),
        "error-404" => include_str!("../recorded/compute/error-404.json"),
        "error-400" => include_str!("../recorded/compute/error-400.json"),
        "error-401" => include_str!("../recorded/compute/error-401.json"),
        "error-429" => include_str!("../recorded/compute/error-429.json"),
        _ => panic!("no recorded {name}"),
    };
    serde_json::from_str(text).expect("recorded JSON")
}

/// `{key}` placeholders of a recorded value filled in.
fn fill(value: &Value, vars: &[(&str, &str)]) -> Value {
    let mut text = value.to_string();
    for (k, v) in vars {
        text = text.replace(&format!("{{{k}}}"), v);
    }
    serde_json::from_str(&text).expect("filled JSON")
}

impl ComputeApi {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = Self {
            base: format!("http://{}", listener.local_addr().unwrap()),
            world: Arc::new(Mutex::new(World {
                polls_per_operation: 1,
                next_id: 7_000_000_000_000_000_000,
                ..World::default()
            })),
        };
        let p = "/compute/v1/projects/{project}";
        let app = axum::Router::new()
            .route("/token", post(token))
            .route(&format!("{p}/regions/{{region}}"), get(region))
            .route(
                &format!("{p}/zones/{{zone}}/machineTypes"),
                get(machine_types),
            )
            .route(
                &format!("{p}/zones/{{zone}}/acceleratorTypes"),
                get(accelerator_types),
            )
            .route(
                &format!("{p}/global/instanceTemplates"),
                get(list_templates),
            )
            .route(
                &format!("{p}/global/instanceTemplates/{{name}}"),
                get(get_template),
            )
            .route(
                &format!("{p}/zones/{{zone}}/instances/bulkInsert"),
                post(bulk_insert),
            )
            .route(
                &format!("{p}/zones/{{zone}}/instances"),
                get(list_instances),
            )
            .route(
                &format!("{p}/aggregated/instances"),
                get(aggregated_instances),
            )
            .route(
                &format!("{p}/zones/{{zone}}/instances/{{name}}"),
                get(get_instance).delete(delete_instance),
            )
            .route(
                &format!("{p}/zones/{{zone}}/operations/{{operation}}"),
                get(get_operation),
            )
            .route(
                &format!("{p}/zones/{{zone}}/operations/{{operation}}/wait"),
                post(wait_operation),
            )
            .route("/v1/services/6F81-5844-456A/skus", get(skus))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        api
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Only `capacity` more instances of `machine_type` in `zone` at that
    /// provisioning model.
    pub fn set_capacity(&self, zone: &str, machine_type: &str, spot: bool, capacity: u32) {
        self.world()
            .capacity
            .insert((zone.into(), machine_type.into(), spot), capacity);
    }

    /// Bulk inserts in `zone` end with `code` (a key of
    /// `operation-errors.json`).
    pub fn refuse(&self, zone: &str, code: &str) {
        self.world().refuse.insert(zone.into(), code.into());
    }

    /// The next call of `fault.method` answers with its error.
    pub fn fail_next(&self, fault: Fault) {
        self.world().faults.push_back(fault);
    }

    /// A 429 rate-limit answer for the next call of `method`.
    pub fn throttle_next(&self, method: &'static str) {
        self.fail_next(Fault {
            method,
            status: 429,
            body: recorded("error-429"),
        });
    }

    /// The next call of `method` is carried out, then answered with 503.
    pub fn lose_next_answer(&self, method: &'static str) {
        self.world().lose_answer.push(method);
    }

    /// Operations stay RUNNING for this many polls.
    pub fn set_polls_per_operation(&self, polls: u32) {
        self.world().polls_per_operation = polls;
    }

    /// Calls without `Authorization: Bearer TOKEN` get 401.
    pub fn require_token(&self) {
        self.world().require_token = true;
    }

    /// A global instance template for `machine_type`, with `labels` added
    /// to its instance labels.
    pub fn add_template(&self, name: &str, machine_type: &str, labels: &[(&str, &str)]) {
        let extra: String = labels
            .iter()
            .map(|(k, v)| format!(", \"{k}\": \"{v}\""))
            .collect();
        let text = include_str!("../recorded/compute/instance-template.json")
            .replace("{name}", name)
            .replace("{machineType}", machine_type)
            .replace("{project}", PROJECT)
            .replace("{extraLabels}", &extra);
        let template: Value = serde_json::from_str(&text).expect("template JSON");
        self.world().templates.insert(name.into(), template);
    }

    /// An instance as if made by someone, in `status`.
    pub fn put_instance(&self, zone: &str, instance: Value) {
        let name = instance["name"].as_str().unwrap().to_owned();
        self.world().instances.insert((zone.into(), name), instance);
    }

    /// Sets an instance's status (a spot preemption: `STOPPING`; stopped:
    /// `TERMINATED`).
    pub fn set_status(&self, zone: &str, name: &str, status: &str) {
        if let Some(i) = self
            .world()
            .instances
            .get_mut(&(zone.to_owned(), name.to_owned()))
        {
            i["status"] = json!(status);
        }
    }

    /// Removes an instance at once (preempted with action DELETE).
    pub fn remove_instance(&self, zone: &str, name: &str) {
        self.world()
            .instances
            .remove(&(zone.to_owned(), name.to_owned()));
    }

    /// Every instance, as `(zone, instance)`.
    pub fn instances(&self) -> Vec<(String, Value)> {
        self.world()
            .instances
            .iter()
            .map(|((z, _), i)| (z.clone(), i.clone()))
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.world().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }
}

fn error(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn not_found(resource: &str) -> Response {
    error(404, fill(&recorded("error-404"), &[("resource", resource)]))
}

fn invalid(field: &str, value: &str, why: &str) -> Response {
    error(
        400,
        fill(
            &recorded("error-400"),
            &[("field", field), ("value", value), ("why", why)],
        ),
    )
}

/// Records the call; answers with a queued fault or a missing token.
fn enter(
    api: &ComputeApi,
    headers: &HeaderMap,
    method: &'static str,
    zone: Option<&str>,
    query: &HashMap<String, String>,
    body: Option<&Value>,
) -> Result<(), Response> {
    let mut w = api.world();
    w.calls.push(Call {
        method,
        zone: zone.map(str::to_owned),
        query: query.clone(),
        body: body.cloned(),
    });
    if w.require_token {
        let want = format!("Bearer {TOKEN}");
        let got = headers.get("authorization").and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return Err(error(401, recorded("error-401")));
        }
    }
    if let Some(i) = w.faults.iter().position(|f| f.method == method) {
        let fault = w.faults.remove(i).unwrap();
        return Err(error(fault.status, fault.body));
    }
    Ok(())
}

async fn token() -> Json<Value> {
    Json(json!({
        "access_token": TOKEN,
        "expires_in": 3599,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "token_type": "Bearer"
    }))
}

async fn region(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path((project, region)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "regions.get", None, &q, None) {
        return r;
    }
    if region != REGION {
        return not_found(&format!("projects/{project}/regions/{region}"));
    }
    Json(fill(
        &recorded("region"),
        &[("project", &project), ("region", &region)],
    ))
    .into_response()
}

/// A recorded list for one zone: items offered there, `@zones` removed.
fn zonal_list(name: &str, project: &str, zone: &str) -> Value {
    let mut list = fill(&recorded(name), &[("project", project), ("zone", zone)]);
    let zone_url = format!("{GOOGLEAPIS}/projects/{project}/zones/{zone}");
    let items: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["@zones"]
                .as_array()
                .is_some_and(|zs| zs.iter().any(|z| z == zone))
        })
        .map(|i| {
            let mut i = i.clone();
            i.as_object_mut().unwrap().remove("@zones");
            i["zone"] = json!(zone_url);
            i
        })
        .collect();
    list["items"] = json!(items);
    list
}

fn known_zone(zone: &str) -> bool {
    ["a", "b", "c", "f"]
        .iter()
        .any(|s| zone == format!("{REGION}-{s}"))
}

async fn machine_types(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path((project, zone)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "machineTypes.list", Some(&zone), &q, None) {
        return r;
    }
    if !known_zone(&zone) {
        return not_found(&format!("projects/{project}/zones/{zone}"));
    }
    Json(zonal_list("machine-types", &project, &zone)).into_response()
}

async fn accelerator_types(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path((project, zone)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(
        &api,
        &headers,
        "acceleratorTypes.list",
        Some(&zone),
        &q,
        None,
    ) {
        return r;
    }
    if !known_zone(&zone) {
        return not_found(&format!("projects/{project}/zones/{zone}"));
    }
    Json(zonal_list("accelerator-types", &project, &zone)).into_response()
}

async fn get_template(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path((project, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "instanceTemplates.get", None, &q, None) {
        return r;
    }
    match api.world().templates.get(&name) {
        Some(t) => Json(t.clone()).into_response(),
        None => not_found(&format!(
            "projects/{project}/global/instanceTemplates/{name}"
        )),
    }
}

async fn list_templates(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "instanceTemplates.list", None, &q, None) {
        return r;
    }
    let items: Vec<Value> = api.world().templates.values().cloned().collect();
    Json(json!({
        "kind": "compute#instanceTemplateList",
        "id": format!("projects/{project}/global/instanceTemplates"),
        "items": items,
        "selfLink": format!("{GOOGLEAPIS}/projects/{project}/global/instanceTemplates"),
    }))
    .into_response()
}

/// `labels.k = "v"` terms joined by AND (parenthesised or not), the
/// filters gpupool sends. Anything else is refused as the API refuses a
/// filter it cannot parse.
fn parse_filter(filter: &str) -> Result<Vec<(String, String)>, String> {
    let mut terms = Vec::new();
    for part in filter.split(" AND ") {
        let part = part
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("no '=' in {part:?}"))?;
        let key = key
            .trim()
            .strip_prefix("labels.")
            .ok_or_else(|| format!("unsupported field in {part:?}"))?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        terms.push((key.to_owned(), value.to_owned()));
    }
    Ok(terms)
}

fn matches(instance: &Value, terms: &[(String, String)]) -> bool {
    terms
        .iter()
        .all(|(k, v)| instance["labels"][k].as_str() == Some(v.as_str()))
}

fn filter_of(q: &HashMap<String, String>) -> Result<Vec<(String, String)>, Response> {
    match q.get("filter") {
        None => Ok(Vec::new()),
        Some(f) => parse_filter(f).map_err(|why| invalid("filter", f, &why)),
    }
}

async fn list_instances(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path((project, zone)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "instances.list", Some(&zone), &q, None) {
        return r;
    }
    let terms = match filter_of(&q) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let items: Vec<Value> = api
        .world()
        .instances
        .iter()
        .filter(|((z, _), i)| *z == zone && matches(i, &terms))
        .map(|(_, i)| i.clone())
        .collect();
    let mut list = json!({
        "kind": "compute#instanceList",
        "id": format!("projects/{project}/zones/{zone}/instances"),
        "selfLink": format!("{GOOGLEAPIS}/projects/{project}/zones/{zone}/instances"),
    });
    if !items.is_empty() {
        list["items"] = json!(items);
    }
    Json(list).into_response()
}

async fn aggregated_instances(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "instances.aggregatedList", None, &q, None) {
        return r;
    }
    let terms = match filter_of(&q) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let page_size: usize = q
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(500);
    let offset: usize = q
        .get("pageToken")
        .and_then(|t| t.strip_prefix("offset-"))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let w = api.world();
    let all: Vec<(&String, &Value)> = w
        .instances
        .iter()
        .filter(|(_, i)| matches(i, &terms))
        .map(|((z, _), i)| (z, i))
        .collect();
    let mut items: BTreeMap<String, Value> = BTreeMap::new();
    for zone in ["a", "b", "c", "f"] {
        let scope = format!("zones/{REGION}-{zone}");
        items.insert(
            scope.clone(),
            json!({"warning": {
                "code": "NO_RESULTS_ON_PAGE",
                "message": format!("There are no results for scope '{scope}' on this page."),
                "data": [{"key": "scope", "value": scope}]
            }}),
        );
    }
    for (zone, instance) in all.iter().skip(offset).take(page_size) {
        let scope = format!("zones/{zone}");
        let entry = items.entry(scope).or_insert_with(|| json!({}));
        entry.as_object_mut().unwrap().remove("warning");
        match entry["instances"].as_array_mut() {
            Some(list) => list.push((*instance).clone()),
            None => entry["instances"] = json!([instance]),
        }
    }
    let mut answer = json!({
        "kind": "compute#instanceAggregatedList",
        "id": format!("projects/{project}/aggregated/instances"),
        "items": items,
        "selfLink": format!("{GOOGLEAPIS}/projects/{project}/aggregated/instances"),
    });
    if offset + page_size < all.len() {
        answer["nextPageToken"] = json!(format!("offset-{}", offset + page_size));
    }
    Json(answer).into_response()
}

async fn get_instance(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path((project, zone, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "instances.get", Some(&zone), &q, None) {
        return r;
    }
    match api.world().instances.get(&(zone.clone(), name.clone())) {
        Some(i) => Json(i.clone()).into_response(),
        None => not_found(&format!("projects/{project}/zones/{zone}/instances/{name}")),
    }
}

impl World {
    fn operation(
        &mut self,
        project: &str,
        zone: &str,
        kind: &str,
        target: &str,
        extra: Value,
    ) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let name = format!("operation-1763712000000-{id:x}-8d2f1c3a-5be0d9e1");
        let zone_url = format!("{GOOGLEAPIS}/projects/{project}/zones/{zone}");
        let mut op = json!({
            "kind": "compute#operation",
            "id": id.to_string(),
            "name": name,
            "zone": zone_url,
            "operationType": kind,
            "targetLink": format!("{zone_url}/{target}"),
            "status": "RUNNING",
            "user": "gpupool@gpupool-test.iam.gserviceaccount.com",
            "progress": 0,
            "insertTime": "2026-11-21T09:14:03.123-08:00",
            "startTime": "2026-11-21T09:14:03.456-08:00",
            "selfLink": format!("{zone_url}/operations/{name}"),
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            op[k] = v.clone();
        }
        let polls = self.polls_per_operation;
        if polls == 0 {
            finish(&mut op);
        }
        self.operations
            .insert((zone.to_owned(), name), (op.clone(), polls));
        op
    }
}

fn finish(op: &mut Value) {
    op["status"] = json!("DONE");
    op["progress"] = json!(100);
    op["endTime"] = json!("2026-11-21T09:14:41.789-08:00");
}

async fn bulk_insert(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path((project, zone)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = enter(
        &api,
        &headers,
        "instances.bulkInsert",
        Some(&zone),
        &q,
        Some(&body),
    ) {
        return r;
    }
    let mut w = api.world();
    if let Some(key) = q
        .get("requestId")
        .and_then(|r| w.request_ids.get(r))
        .cloned()
    {
        // A repeat: the first call's operation, as it is now.
        return Json(w.operations[&key].0.clone()).into_response();
    }
    let props = body["instanceProperties"].clone();
    let template = match body["sourceInstanceTemplate"].as_str() {
        Some(url) => {
            let name = url.rsplit('/').next().unwrap_or(url);
            match w.templates.get(name) {
                Some(t) => Some(t["properties"].clone()),
                None => {
                    drop(w);
                    return not_found(&format!(
                        "projects/{project}/global/instanceTemplates/{name}"
                    ));
                }
            }
        }
        None => None,
    };
    let machine_type = props["machineType"]
        .as_str()
        .or_else(|| template.as_ref().and_then(|t| t["machineType"].as_str()))
        .unwrap_or_default()
        .to_owned();
    let offered = zonal_list("machine-types", &project, &zone)["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == machine_type.as_str());
    if !offered {
        drop(w);
        return invalid(
            "resource.instanceProperties.machineType",
            &machine_type,
            "Machine type with name does not exist in zone.",
        );
    }
    let names: Vec<String> = body["perInstanceProperties"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let count = body["count"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .or_else(|| body["count"].as_u64())
        .unwrap_or(0) as usize;
    let min_count = body["minCount"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .or_else(|| body["minCount"].as_u64())
        .map_or(count, |m| m as usize);
    if names.len() != count || count == 0 {
        drop(w);
        return invalid(
            "resource.count",
            &count.to_string(),
            "Count must equal the number of per-instance properties.",
        );
    }
    let valid = |n: &str| {
        n.len() <= 63
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.ends_with('-')
    };
    if let Some(bad) = names.iter().find(|n| !valid(n)) {
        let bad = bad.clone();
        drop(w);
        return invalid(
            "resource.perInstanceProperties",
            &bad,
            "Must be a match of regex '[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'",
        );
    }
    let mut scheduling = template
        .as_ref()
        .map(|t| t["scheduling"].clone())
        .unwrap_or(json!({}));
    for (k, v) in props["scheduling"].as_object().into_iter().flatten() {
        scheduling[k] = v.clone();
    }
    let spot = scheduling["provisioningModel"] == "SPOT";
    let labels = if props["labels"].is_object() {
        props["labels"].clone()
    } else {
        template
            .as_ref()
            .map(|t| t["labels"].clone())
            .unwrap_or(json!({}))
    };
    let zone_url = format!("{GOOGLEAPIS}/projects/{project}/zones/{zone}");
    let free: Vec<&String> = names
        .iter()
        .filter(|n| !w.instances.contains_key(&(zone.clone(), (*n).clone())))
        .collect();
    if free.len() < names.len() {
        let taken = names
            .iter()
            .find(|n| !free.contains(n))
            .cloned()
            .unwrap_or_default();
        drop(w);
        return error(
            409,
            json!({"error": {"code": 409,
                "message": format!("The resource 'projects/{project}/zones/{zone}/instances/{taken}' already exists"),
                "errors": [{"message": format!("The resource 'projects/{project}/zones/{zone}/instances/{taken}' already exists"),
                    "domain": "global", "reason": "alreadyExists"}]}}),
        );
    }
    let refused = w.refuse.get(&zone).cloned();
    let key = (zone.clone(), machine_type.clone(), spot);
    let room = match (&refused, w.capacity.get(&key)) {
        (Some(_), _) => 0,
        (None, Some(left)) => (*left as usize).min(count),
        (None, None) => count,
    };
    let placed = if room >= min_count { room } else { 0 };
    if let Some(left) = w.capacity.get_mut(&key) {
        *left -= placed as u32;
    }
    let mut made = Vec::new();
    for name in names.iter().take(placed) {
        w.next_id += 1;
        let id = w.next_id;
        let mut instance = json!({
            "kind": "compute#instance",
            "id": id.to_string(),
            "creationTimestamp": "2026-11-21T09:14:05.001-08:00",
            "name": name,
            "machineType": format!("{zone_url}/machineTypes/{machine_type}"),
            "status": "PROVISIONING",
            "zone": zone_url,
            "labels": labels,
            "scheduling": scheduling,
            "selfLink": format!("{zone_url}/instances/{name}"),
        });
        if let Some(acc) = props["guestAccelerators"].as_array() {
            instance["guestAccelerators"] = json!(acc
                .iter()
                .map(|a| json!({
                    "acceleratorType": format!("{zone_url}/acceleratorTypes/{}", a["acceleratorType"].as_str().unwrap_or_default()),
                    "acceleratorCount": a["acceleratorCount"],
                }))
                .collect::<Vec<_>>());
        }
        w.instances.insert((zone.clone(), name.clone()), instance);
        made.push(name.clone());
    }
    let mut extra = json!({
        "instancesBulkInsertOperationMetadata": {"perLocationStatus": {
            format!("zones/{zone}"): {
                "status": if placed > 0 { "DONE" } else { "FAILED" },
                "targetVmCount": count,
                "createdVmCount": placed,
                "failedToCreateVmCount": count - placed,
                "deletedVmCount": 0
            }
        }}
    });
    if placed < count {
        let code = refused.unwrap_or_else(|| "ZONE_RESOURCE_POOL_EXHAUSTED".to_owned());
        // The regional GPU quota the request would exceed.
        let gpu = match props["guestAccelerators"][0]["acceleratorType"].as_str() {
            Some("nvidia-tesla-t4") => "T4",
            _ if machine_type.starts_with("a3-") => "H100",
            _ if machine_type.starts_with("g2-") => "L4",
            _ => "A100",
        };
        let quota = format!(
            "{}NVIDIA_{gpu}_GPUS",
            if spot { "PREEMPTIBLE_" } else { "" }
        );
        let metric = quota.to_ascii_lowercase();
        let errors = fill(
            &recorded("operation-errors")[&code],
            &[
                ("project", &project),
                ("zone", &zone),
                ("name", names.first().map(String::as_str).unwrap_or("")),
                ("quota", &quota),
                ("metric", &metric),
            ],
        );
        for (k, v) in errors.as_object().into_iter().flatten() {
            extra[k] = v.clone();
        }
    }
    let op = w.operation(&project, &zone, "bulkInsert", "instances", extra);
    if let Some(r) = q.get("requestId") {
        let name = op["name"].as_str().unwrap().to_owned();
        w.request_ids.insert(r.clone(), (zone.clone(), name));
    }
    if let Some(i) = w
        .lose_answer
        .iter()
        .position(|m| *m == "instances.bulkInsert")
    {
        w.lose_answer.remove(i);
        drop(w);
        return error(
            503,
            json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}),
        );
    }
    Json(op).into_response()
}

async fn delete_instance(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path((project, zone, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "instances.delete", Some(&zone), &q, None) {
        return r;
    }
    let mut w = api.world();
    if let Some(key) = q
        .get("requestId")
        .and_then(|r| w.request_ids.get(r))
        .cloned()
    {
        return Json(w.operations[&key].0.clone()).into_response();
    }
    if w.instances.remove(&(zone.clone(), name.clone())).is_none() {
        drop(w);
        return not_found(&format!("projects/{project}/zones/{zone}/instances/{name}"));
    }
    let op = w.operation(
        &project,
        &zone,
        "delete",
        &format!("instances/{name}"),
        json!({}),
    );
    if let Some(r) = q.get("requestId") {
        let op_name = op["name"].as_str().unwrap().to_owned();
        w.request_ids.insert(r.clone(), (zone.clone(), op_name));
    }
    Json(op).into_response()
}

fn poll(api: &ComputeApi, project: &str, zone: &str, name: &str) -> Response {
    let mut guard = api.world();
    let w = &mut *guard;
    let Some((op, left)) = w.operations.get_mut(&(zone.to_owned(), name.to_owned())) else {
        drop(guard);
        return not_found(&format!(
            "projects/{project}/zones/{zone}/operations/{name}"
        ));
    };
    *left = left.saturating_sub(1);
    let mut boot = false;
    if *left == 0 && op["status"] != "DONE" {
        finish(op);
        boot = op["operationType"] == "bulkInsert";
    }
    let answer = op.clone();
    if boot {
        // Placed instances boot once the operation is done.
        for ((z, _), i) in w.instances.iter_mut() {
            if z == zone && i["status"] == "PROVISIONING" {
                i["status"] = json!("RUNNING");
            }
        }
    }
    Json(answer).into_response()
}

async fn get_operation(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path((project, zone, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "zoneOperations.get", Some(&zone), &q, None) {
        return r;
    }
    poll(&api, &project, &zone, &name)
}

async fn wait_operation(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Path((project, zone, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "zoneOperations.wait", Some(&zone), &q, None) {
        return r;
    }
    poll(&api, &project, &zone, &name)
}

/// The billing catalog's SKU pages (`../recorded/skus-page*.json`).
async fn skus(
    State(api): State<ComputeApi>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = enter(&api, &headers, "services.skus.list", None, &q, None) {
        return r;
    }
    let json = [("content-type", "application/json; charset=UTF-8")];
    if q.get("pageToken").map(String::as_str) == Some("page2") {
        return (
            StatusCode::OK,
            json,
            include_str!("../recorded/skus-page2.json"),
        )
            .into_response();
    }
    let page1 = include_str!("../recorded/skus-page1.json").replace("{next}", "page2");
    (StatusCode::OK, json, page1).into_response()
}
