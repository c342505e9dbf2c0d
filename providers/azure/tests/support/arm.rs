//! A local Azure Resource Manager for the Compute calls gpupool makes: the
//! REST paths, shapes and status codes of `Microsoft.Compute` 2024-07-01
//! (virtualMachines createOrUpdate / get / instanceView / list with
//! `nextLink` paging, taking `$expand=instanceView` only with a scale-set
//! `$filter` as the API does / delete, virtualMachineScaleSets get / list,
//! resourceSkus list, operation status through `Azure-AsyncOperation` and
//! `Location`), with the recorded resources and errors of
//! `../recorded/arm/`. It keeps VMs and operations (each stays in progress
//! for a number of polls), runs out of capacity per (zone, size, priority)
//! when told (`ZonalAllocationFailed` from the operation), refuses
//! synchronously (`SkuNotAvailable`, `OperationNotAllowed` for quota),
//! throttles with 429 and `Retry-After`, and answers Microsoft Entra's
//! token endpoint (`/{tenant}/oauth2/v2.0/token`) so `azure_identity`'s
//! credentials can be used against it. It also serves a Retail Prices
//! page. Shared with the main crate's tests through `#[path]`.

#![allow(dead_code)]
// Handlers answer early with a whole `Response`; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

pub const SUBSCRIPTION: &str = "6e8f0d3a-6c1b-4f3e-9d2a-2f1b0c9e8d7a";
pub const RESOURCE_GROUP: &str = "mc_gpu_prod_eastus";
pub const LOCATION: &str = "eastus";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The access token the token endpoint hands out, and the one required
/// when [`ArmApi::require_token`] is on.
pub const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.gpupool-test.";

const API_VERSION: &str = "2024-07-01";

/// One call as the server saw it.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: &'static str,
    /// The VM, scale set or operation named in the path.
    pub name: Option<String>,
    pub query: HashMap<String, String>,
    pub body: Option<Value>,
    pub at: Instant,
}

/// An error the next matching call answers with instead of its own.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: &'static str,
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

/// How a pool refuses a PUT at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 409 `SkuNotAvailable`: the size has no capacity (spot or regular).
    SkuNotAvailable,
    /// 409 `OperationNotAllowed`: the family's vCPU quota is used up.
    Quota,
}

#[derive(Clone, Debug)]
enum OpKind {
    Create(String),
    Delete(String),
}

#[derive(Clone, Debug)]
struct Operation {
    kind: OpKind,
    polls_left: u32,
    /// The error code it fails with, if it fails.
    fails_with: Option<String>,
    done: bool,
}

#[derive(Default)]
struct World {
    vms: BTreeMap<String, Value>,
    operations: HashMap<String, Operation>,
    next_operation: u64,
    /// VMs left per (zone, size, spot); absent: plenty.
    capacity: HashMap<(String, String, bool), u32>,
    refusals: HashMap<(String, String, bool), Refusal>,
    scale_sets: BTreeMap<String, Value>,
    faults: VecDeque<Fault>,
    /// Methods whose next call is carried out but answered with a 500.
    lose: Vec<&'static str>,
    calls: Vec<Call>,
    polls_per_operation: u32,
    require_token: bool,
    tokens_issued: u32,
}

#[derive(Clone)]
pub struct ArmApi {
    pub base: String,
    world: Arc<Mutex<World>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for ArmApi {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

type Shared = (String, Arc<Mutex<World>>);

impl ArmApi {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let world = Arc::new(Mutex::new(World {
            polls_per_operation: 1,
            ..World::default()
        }));
        let rg = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute";
        let app = axum::Router::new()
            .route(
                "/subscriptions/{sub}/providers/Microsoft.Compute/skus",
                get(skus),
            )
            .route(
                "/subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/operations/{id}",
                get(operation),
            )
            .route(&format!("{rg}/virtualMachines"), get(list_vms))
            .route(
                &format!("{rg}/virtualMachines/{{name}}"),
                get(get_vm).put(put_vm).delete(delete_vm),
            )
            .route(
                &format!("{rg}/virtualMachines/{{name}}/instanceView"),
                get(instance_view),
            )
            .route(
                &format!("{rg}/virtualMachineScaleSets"),
                get(list_scale_sets),
            )
            .route(
                &format!("{rg}/virtualMachineScaleSets/{{name}}"),
                get(get_scale_set),
            )
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/api/retail/prices", get(prices))
            .with_state((base.clone(), world.clone()));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            base,
            world,
            task: Arc::new(task),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("world")
    }

    /// `n` more VMs of `size` fit in `zone` (a number, `1`) at that
    /// priority; past them the creation fails with `ZonalAllocationFailed`.
    pub fn set_capacity(&self, zone: &str, size: &str, spot: bool, n: u32) {
        self.world()
            .capacity
            .insert((zone.to_owned(), size.to_owned(), spot), n);
    }

    /// PUTs of `size` in `zone` at that priority are refused at once.
    pub fn refuse(&self, zone: &str, size: &str, spot: bool, refusal: Refusal) {
        self.world()
            .refusals
            .insert((zone.to_owned(), size.to_owned(), spot), refusal);
    }

    pub fn fail_next(&self, fault: Fault) {
        self.world().faults.push_back(fault);
    }

    /// The next call of `method` is answered 429 with `Retry-After`.
    pub fn throttle_next(&self, method: &'static str, retry_after: u64) {
        self.fail_next(Fault {
            method,
            status: 429,
            body: recorded("error-throttled.json"),
            retry_after: Some(retry_after),
        });
    }

    /// The next call of `method` is carried out, but its answer is a 500.
    pub fn lose_next_answer(&self, method: &'static str) {
        self.world().lose.push(method);
    }

    pub fn set_polls_per_operation(&self, polls: u32) {
        self.world().polls_per_operation = polls;
    }

    /// Calls without the token are answered 401.
    pub fn require_token(&self) {
        self.world().require_token = true;
    }

    pub fn tokens_issued(&self) -> u32 {
        self.world().tokens_issued
    }

    /// A Flexible scale set of `size` with the recorded profile and `tags`.
    pub fn add_scale_set(&self, name: &str, size: &str, tags: &[(&str, &str)]) {
        let text = include_str!("../recorded/arm/vmss-flex.json")
            .replace("{name}", name)
            .replace("{size}", size)
            .replace("{subscription}", SUBSCRIPTION)
            .replace("{resourceGroup}", RESOURCE_GROUP);
        let mut set: Value = serde_json::from_str(&text).expect("recorded scale set");
        let tags: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        set["tags"] = Value::Object(tags);
        self.world().scale_sets.insert(name.to_owned(), set);
    }

    /// A scale set changed by hand (e.g. to Uniform mode).
    pub fn edit_scale_set(&self, name: &str, edit: impl FnOnce(&mut Value)) {
        let mut world = self.world();
        let set = world.scale_sets.get_mut(name).expect("scale set");
        edit(set);
    }

    /// A VM put in place as if made outside (by an earlier gpupool).
    pub fn put_vm(&self, name: &str, vm: Value) {
        self.world().vms.insert(name.to_owned(), vm);
    }

    /// A spot VM evicted with policy Delete: gone.
    pub fn evict(&self, name: &str) {
        self.world().vms.remove(name);
    }

    pub fn vms(&self) -> BTreeMap<String, Value> {
        self.world().vms.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.world().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.world()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }
}

/// A recorded JSON file.
pub fn recorded(file: &str) -> Value {
    let text = match file {
        "error-sku-not-available.json" => {
            include_str!("../recorded/arm/error-sku-not-available.json")
        }
        "error-quota.json" => include_str!("../recorded/arm/error-quota.json"),
        "error-throttled.json" => include_str!("../recorded/arm/error-throttled.json"),
        "error-not-found.json" => include_str!("../recorded/arm/error-not-found.json"),
        "error-invalid-parameter.json" => {
            include_str!("../recorded/arm/error-invalid-parameter.json")
        }
        "operation-allocation-failed.json" => {
            include_str!("../recorded/arm/operation-allocation-failed.json")
        }
        "resource-skus.json" => include_str!("../recorded/arm/resource-skus.json"),
        other => panic!("no recorded file {other}"),
    };
    serde_json::from_str(text).expect("recorded JSON")
}

fn answer(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: u16, code: &str, message: &str) -> Response {
    answer(status, json!({"error": {"code": code, "message": message}}))
}

/// Records the call; answers a queued fault or a missing token instead.
fn enter(
    world: &mut World,
    method: &'static str,
    name: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Option<Response> {
    world.calls.push(Call {
        method,
        name: name.map(str::to_owned),
        query: query.clone(),
        body,
        at: Instant::now(),
    });
    if world.require_token {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if auth != format!("Bearer {TOKEN}") {
            return Some(error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing or invalid.",
            ));
        }
    }
    if query.get("api-version").is_none() && method != "prices" {
        return Some(error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    }
    let at = world.faults.iter().position(|f| f.method == method)?;
    let fault = world.faults.remove(at)?;
    let mut response = answer(fault.status, fault.body);
    if let Some(secs) = fault.retry_after {
        response.headers_mut().insert(
            "retry-after",
            secs.to_string().parse().expect("header value"),
        );
    }
    Some(response)
}

fn lost(world: &mut World, method: &'static str) -> bool {
    match world.lose.iter().position(|m| *m == method) {
        Some(i) => {
            world.lose.remove(i);
            true
        }
        None => false,
    }
}

async fn skus(
    State((_, world)): State<Shared>,
    Path(_sub): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut world = world.lock().expect("world");
    if let Some(r) = enter(&mut world, "resourceSkus.list", None, &q, &headers, None) {
        return r;
    }
    let wanted = q
        .get("$filter")
        .and_then(|f| f.strip_prefix("location eq '"))
        .and_then(|f| f.strip_suffix('\''))
        .map(str::to_ascii_lowercase);
    match wanted.as_deref() {
        Some(LOCATION) => answer(200, recorded("resource-skus.json")),
        Some(_) => answer(200, json!({"value": []})),
        None => error(
            400,
            "InvalidFilter",
            "A location filter is required by this test server.",
        ),
    }
}

/// A VM's resource id as Compute returns it: the resource group upper-cased.
fn vm_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{name}",
        RESOURCE_GROUP.to_ascii_uppercase()
    )
}

/// The VM as answered: with its instance view when asked.
fn shown(vm: &Value, expand: bool) -> Value {
    let mut vm = vm.clone();
    if !expand && let Some(p) = vm["properties"].as_object_mut() {
        p.remove("instanceView");
    }
    vm
}

fn set_state(vm: &mut Value, provisioning: &str, statuses: &[&str]) {
    vm["properties"]["provisioningState"] = json!(provisioning);
    let statuses: Vec<Value> = statuses
        .iter()
        .map(|c| json!({"code": c, "level": "Info"}))
        .collect();
    vm["properties"]["instanceView"] = json!({"statuses": statuses});
}

async fn list_vms(
    State((base, world)): State<Shared>,
    Path((_sub, _rg)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut world = world.lock().expect("world");
    if let Some(r) = enter(&mut world, "virtualMachines.list", None, &q, &headers, None) {
        return r;
    }
    let expand = q.get("$expand").map(String::as_str) == Some("instanceView");
    // The one filter the API takes: the VMs of a scale set.
    let set = match q.get("$filter") {
        Some(f) => match f
            .strip_prefix("'virtualMachineScaleSet/id' eq '")
            .and_then(|r| r.strip_suffix('\''))
        {
            Some(id) => Some(id.to_ascii_lowercase()),
            None => {
                return error(400, "InvalidParameter", &format!("invalid $filter {f:?}"));
            }
        },
        None => None,
    };
    if expand && set.is_none() {
        return error(
            400,
            "InvalidParameter",
            "$expand=instanceView can only be specified with a valid $filter ('virtualMachineScaleSet/id' eq ...).",
        );
    }
    // Two VMs a page, so paging is exercised.
    let skip: usize = q
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let all: Vec<Value> = world
        .vms
        .values()
        .filter(|v| {
            set.as_ref().is_none_or(|id| {
                v["properties"]["virtualMachineScaleSet"]["id"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(id))
            })
        })
        .map(|v| shown(v, expand))
        .collect();
    let page: Vec<Value> = all.iter().skip(skip).take(2).cloned().collect();
    let mut body = json!({"value": page});
    if skip + 2 < all.len() {
        let mut next = format!(
            "{base}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines?api-version={API_VERSION}&$skiptoken={}",
            skip + 2
        );
        if let Some(f) = q.get("$filter") {
            next.push_str(&format!(
                "&$filter={}",
                f.replace(' ', "%20").replace('\'', "%27")
            ));
        }
        if expand {
            next.push_str("&$expand=instanceView");
        }
        body["nextLink"] = json!(next);
    }
    answer(200, body)
}

async fn get_vm(
    State((_, world)): State<Shared>,
    Path((_sub, _rg, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut world = world.lock().expect("world");
    if let Some(r) = enter(
        &mut world,
        "virtualMachines.get",
        Some(&name),
        &q,
        &headers,
        None,
    ) {
        return r;
    }
    match world.vms.get(&name) {
        Some(vm) => answer(200, shown(vm, q.contains_key("$expand"))),
        None => not_found(&name),
    }
}

/// `virtualMachines/{name}/instanceView`: the VM's statuses.
async fn instance_view(
    State((_, world)): State<Shared>,
    Path((_sub, _rg, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut world = world.lock().expect("world");
    if let Some(r) = enter(
        &mut world,
        "virtualMachines.instanceView",
        Some(&name),
        &q,
        &headers,
        None,
    ) {
        return r;
    }
    match world.vms.get(&name) {
        Some(vm) => {
            let mut view = vm["properties"]["instanceView"].clone();
            if view.is_null() {
                view = json!({"statuses": []});
            }
            view["computerName"] = json!(name);
            answer(200, view)
        }
        None => not_found(&name),
    }
}

fn not_found(name: &str) -> Response {
    let text = include_str!("../recorded/arm/error-not-found.json")
        .replace("{name}", name)
        .replace("{resourceGroup}", RESOURCE_GROUP);
    answer(404, serde_json::from_str(&text).expect("recorded"))
}

fn async_headers(base: &str, id: &str, location_only: bool) -> Vec<(&'static str, String)> {
    let url = format!(
        "{base}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/{LOCATION}/operations/{id}?p=571046f6&api-version={API_VERSION}"
    );
    let mut headers = vec![("retry-after", "0".to_owned())];
    if location_only {
        headers.push(("location", format!("{url}&monitor=true")));
    } else {
        headers.push(("azure-asyncoperation", url));
    }
    headers
}

fn with_headers(mut response: Response, headers: Vec<(&'static str, String)>) -> Response {
    for (k, v) in headers {
        response
            .headers_mut()
            .insert(k, v.parse().expect("header value"));
    }
    response
}

/// What ARM checks of a VM's body before it accepts it, by the
/// documented rules: a location, a size the location has, one zone that
/// offers it, the OS profile's computer name, an image, a network profile,
/// and an eviction policy exactly for Spot.
fn check_body(name: &str, vm: &Value) -> Result<(String, String, bool), Response> {
    let bad = |target: &str, message: String| {
        Err(answer(
            400,
            json!({"error": {"code": "InvalidParameter", "message": message, "target": target}}),
        ))
    };
    let location = vm["location"].as_str().unwrap_or_default();
    if !location.eq_ignore_ascii_case(LOCATION) {
        return bad(
            "location",
            format!("location {location:?} is not {LOCATION}"),
        );
    }
    let p = &vm["properties"];
    let Some(size) = p["hardwareProfile"]["vmSize"].as_str() else {
        return bad("hardwareProfile.vmSize", "vmSize is required".into());
    };
    let skus = recorded("resource-skus.json");
    let sku = skus["value"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .find(|s| s["name"] == size && s["resourceType"] == "virtualMachines")
        })
        .cloned();
    let Some(sku) = sku else {
        return bad(
            "hardwareProfile.vmSize",
            format!("The value {size} provided for the VM size is not valid."),
        );
    };
    let zones = vm["zones"].as_array().cloned().unwrap_or_default();
    let [zone] = zones.as_slice() else {
        return bad(
            "zones",
            "exactly one zone is expected by this test server".into(),
        );
    };
    let zone = zone.as_str().unwrap_or_default().to_owned();
    let offered = sku["locationInfo"][0]["zones"]
        .as_array()
        .is_some_and(|z| z.iter().any(|x| x == zone.as_str()));
    if !offered {
        return bad("zones", format!("zone {zone} does not offer {size}"));
    }
    if p["osProfile"]["computerName"].as_str() != Some(name) {
        return bad(
            "osProfile.computerName",
            "computerName must be the VM's name here".into(),
        );
    }
    if p["storageProfile"]["imageReference"].is_null() {
        return bad(
            "storageProfile.imageReference",
            "an image is required".into(),
        );
    }
    let nics = p["networkProfile"]["networkInterfaceConfigurations"]
        .as_array()
        .map_or(0, Vec::len);
    if nics == 0 {
        return bad(
            "networkProfile",
            "at least one network interface is required".into(),
        );
    }
    if p["networkProfile"]["networkApiVersion"].is_null() {
        return bad(
            "networkProfile.networkApiVersion",
            "networkInterfaceConfigurations need networkApiVersion".into(),
        );
    }
    let spot = p["priority"] == "Spot";
    let has_policy = !p["evictionPolicy"].is_null();
    if spot != has_policy {
        return bad(
            "evictionPolicy",
            "evictionPolicy is set exactly for Spot and Low priority VMs".into(),
        );
    }
    Ok((zone, size.to_owned(), spot))
}

async fn put_vm(
    State((base, world)): State<Shared>,
    Path((_sub, _rg, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut world = world.lock().expect("world");
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, "InvalidRequestContent", &e.to_string()),
    };
    let method = "virtualMachines.createOrUpdate";
    if let Some(r) = enter(
        &mut world,
        method,
        Some(&name),
        &q,
        &headers,
        Some(body.clone()),
    ) {
        return r;
    }
    // A repeat of a PUT whose creation is running answers with it.
    if let Some(vm) = world.vms.get(&name) {
        let running = world
            .operations
            .iter()
            .find(|(_, op)| !op.done && matches!(&op.kind, OpKind::Create(n) if *n == name));
        let response = match running {
            Some((id, _)) => with_headers(
                answer(201, shown(vm, false)),
                async_headers(&base, id, false),
            ),
            None => answer(200, shown(vm, false)),
        };
        return response;
    }
    let (zone, size, spot) = match check_body(&name, &body) {
        Ok(pool) => pool,
        Err(r) => return r,
    };
    let key = (zone.clone(), size.clone(), spot);
    match world.refusals.get(&key) {
        Some(Refusal::SkuNotAvailable) => {
            return answer(409, recorded("error-sku-not-available.json"));
        }
        Some(Refusal::Quota) => return answer(409, recorded("error-quota.json")),
        None => {}
    }
    let fails_with = match world.capacity.get_mut(&key) {
        Some(0) => Some("ZonalAllocationFailed".to_owned()),
        Some(n) => {
            *n -= 1;
            None
        }
        None => None,
    };
    let mut vm = body;
    vm["id"] = json!(vm_id(&name));
    vm["name"] = json!(name);
    vm["type"] = json!("Microsoft.Compute/virtualMachines");
    vm["properties"]["vmId"] = json!(format!(
        "{:08x}-0000-4000-8000-{:012x}",
        world.next_operation,
        world.vms.len()
    ));
    vm["properties"]["timeCreated"] = json!("2026-11-21T10:00:00.0000000+00:00");
    if let Some(p) = vm["properties"]["osProfile"].as_object_mut() {
        // Secrets are never returned.
        p.remove("customData");
    }
    set_state(
        &mut vm,
        "Creating",
        &["ProvisioningState/creating", "PowerState/starting"],
    );
    world.next_operation += 1;
    let id = format!("0c1a9d6e-3f2b-4c5d-8e7f-{:012x}", world.next_operation);
    let polls = world.polls_per_operation;
    world.operations.insert(
        id.clone(),
        Operation {
            kind: OpKind::Create(name.clone()),
            polls_left: polls,
            fails_with,
            done: false,
        },
    );
    world.vms.insert(name.clone(), vm.clone());
    if lost(&mut world, method) {
        return error(
            500,
            "InternalServerError",
            "The answer was lost on its way.",
        );
    }
    with_headers(
        answer(201, shown(&vm, false)),
        async_headers(&base, &id, false),
    )
}

async fn delete_vm(
    State((base, world)): State<Shared>,
    Path((_sub, _rg, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut world = world.lock().expect("world");
    let method = "virtualMachines.delete";
    if let Some(r) = enter(&mut world, method, Some(&name), &q, &headers, None) {
        return r;
    }
    let Some(vm) = world.vms.get_mut(&name) else {
        // Compute answers 204 for a VM that is not there; 404 is the
        // resource group's or a gone parent's. Both mean done.
        return (StatusCode::NO_CONTENT, "").into_response();
    };
    set_state(
        vm,
        "Deleting",
        &["ProvisioningState/deleting", "PowerState/stopping"],
    );
    world.next_operation += 1;
    let id = format!("7d2e4f60-1a2b-4c3d-9e8f-{:012x}", world.next_operation);
    let polls = world.polls_per_operation;
    world.operations.insert(
        id.clone(),
        Operation {
            kind: OpKind::Delete(name.clone()),
            polls_left: polls,
            fails_with: None,
            done: false,
        },
    );
    // Deletes are polled through `Location`.
    with_headers(
        (StatusCode::ACCEPTED, "").into_response(),
        async_headers(&base, &id, true),
    )
}

async fn operation(
    State((_, world)): State<Shared>,
    Path((_sub, _loc, id)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut world = world.lock().expect("world");
    if let Some(r) = enter(&mut world, "operations.get", Some(&id), &q, &headers, None) {
        return r;
    }
    let monitor = q.get("monitor").map(String::as_str) == Some("true");
    let Some(op) = world.operations.get_mut(&id) else {
        return error(404, "NotFound", &format!("operation {id} not found"));
    };
    let retry = vec![("retry-after", "0".to_owned())];
    if op.polls_left > 0 {
        op.polls_left -= 1;
        return with_headers(
            if monitor {
                (StatusCode::ACCEPTED, "").into_response()
            } else {
                answer(
                    200,
                    json!({"name": id, "status": "InProgress", "startTime": "2026-11-21T10:00:00.0000000+00:00"}),
                )
            },
            retry,
        );
    }
    let first_time = !op.done;
    op.done = true;
    let op = op.clone();
    if first_time {
        match &op.kind {
            OpKind::Create(name) => {
                if let Some(vm) = world.vms.get_mut(name) {
                    match &op.fails_with {
                        Some(code) => set_state(
                            vm,
                            "Failed",
                            &[
                                &format!("ProvisioningState/failed/{code}"),
                                "PowerState/deallocated",
                            ],
                        ),
                        None => set_state(
                            vm,
                            "Succeeded",
                            &["ProvisioningState/succeeded", "PowerState/running"],
                        ),
                    }
                }
            }
            OpKind::Delete(name) => {
                world.vms.remove(name);
            }
        }
    }
    if monitor {
        return (StatusCode::OK, "").into_response();
    }
    match &op.fails_with {
        Some(code) => {
            let text = include_str!("../recorded/arm/operation-allocation-failed.json")
                .replace("{code}", code)
                .replace("{name}", &id);
            answer(200, serde_json::from_str(&text).expect("recorded"))
        }
        None => answer(
            200,
            json!({"name": id, "status": "Succeeded", "startTime": "2026-11-21T10:00:00.0000000+00:00", "endTime": "2026-11-21T10:00:31.0000000+00:00"}),
        ),
    }
}

async fn list_scale_sets(
    State((_, world)): State<Shared>,
    Path((_sub, _rg)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut world = world.lock().expect("world");
    if let Some(r) = enter(
        &mut world,
        "virtualMachineScaleSets.list",
        None,
        &q,
        &headers,
        None,
    ) {
        return r;
    }
    let sets: Vec<Value> = world
        .scale_sets
        .values()
        .map(|s| {
            let mut s = s.clone();
            // userData comes only with `$expand=userData` on a get.
            if let Some(p) = s["properties"]["virtualMachineProfile"].as_object_mut() {
                p.remove("userData");
            }
            s
        })
        .collect();
    answer(200, json!({"value": sets}))
}

async fn get_scale_set(
    State((_, world)): State<Shared>,
    Path((_sub, _rg, name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut world = world.lock().expect("world");
    if let Some(r) = enter(
        &mut world,
        "virtualMachineScaleSets.get",
        Some(&name),
        &q,
        &headers,
        None,
    ) {
        return r;
    }
    match world.scale_sets.get(&name) {
        Some(set) => {
            let mut set = set.clone();
            if q.get("$expand").map(String::as_str) != Some("userData")
                && let Some(p) = set["properties"]["virtualMachineProfile"].as_object_mut()
            {
                p.remove("userData");
            }
            answer(200, set)
        }
        None => error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.Compute/virtualMachineScaleSets/{name}' under resource group '{RESOURCE_GROUP}' was not found."
            ),
        ),
    }
}

/// Microsoft Entra's token endpoint, as the client-credentials flow (a
/// secret, or a federated token as `client_assertion` for workload
/// identity) calls it.
async fn token(
    State((_, world)): State<Shared>,
    Path(tenant): Path<String>,
    body: String,
) -> Response {
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if tenant != TENANT {
        return answer(
            400,
            json!({"error": "invalid_request", "error_description": format!("AADSTS90002: Tenant '{tenant}' not found.")}),
        );
    }
    let proof = form.contains_key("client_assertion") || form.contains_key("client_secret");
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") || !proof {
        return answer(
            400,
            json!({"error": "invalid_client", "error_description": "AADSTS7000218: The request body must contain client_assertion or client_secret."}),
        );
    }
    world.lock().expect("world").tokens_issued += 1;
    answer(
        200,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": TOKEN}),
    )
}

/// One Retail Prices page for the sizes of the tests.
async fn prices(
    State((_, world)): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    world.lock().expect("world").calls.push(Call {
        method: "prices",
        name: None,
        query: q,
        body: None,
        at: Instant::now(),
    });
    let item = |sku: &str, meter: &str, price: f64| {
        json!({
            "currencyCode": "USD", "retailPrice": price, "unitPrice": price,
            "armRegionName": LOCATION, "location": "US East", "armSkuName": sku,
            "meterName": meter, "productName": "Virtual Machines ND H100 v5 Series",
            "unitOfMeasure": "1 Hour", "type": "Consumption", "serviceName": "Virtual Machines",
        })
    };
    answer(
        200,
        json!({
            "BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
            "Items": [
                item("Standard_ND96isr_H100_v5", "ND96isr H100 v5", 98.32),
                item("Standard_ND96isr_H100_v5", "ND96isr H100 v5 Spot", 39.33),
                item("Standard_NC24ads_A100_v4", "NC24ads A100 v4", 3.67),
                item("Standard_NC24ads_A100_v4", "NC24ads A100 v4 Spot", 1.47),
            ],
            "NextPageLink": null, "Count": 4,
        }),
    )
}
