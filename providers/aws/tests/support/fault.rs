//! A fault layer in front of moto for what moto does not do: EC2's
//! throttling answer (HTTP 503, `RequestLimitExceeded` in EC2's XML error
//! shape), CreateFleet pools without capacity (an instant fleet's
//! `errorSet`, HTTP 200, fewer instances than asked), and any other
//! top-level EC2 error. Everything else is passed through unchanged. It
//! records each request's action and client token, so a test can prove
//! that a retried CreateFleet reuses its token.
//!
//! Shapes from the EC2 API reference: "Error codes" (the `<Response>
//! <Errors><Error>` body, `RequestLimitExceeded`, `InsufficientInstanceCapacity`)
//! and CreateFleet's response (`errorSet` of `CreateFleetError`: `errorCode`,
//! `errorMessage`, `lifecycle`, `launchTemplateAndOverrides`).
#![allow(dead_code)] // each test binary uses a different part

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What the layer does to matching requests.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The next `times` calls of `action` get HTTP 503 `RequestLimitExceeded`
    /// and never reach moto.
    Throttle { action: &'static str, times: u32 },
    /// The next `times` calls of `action` get this top-level EC2 error.
    Error {
        action: &'static str,
        status: u16,
        code: &'static str,
        message: &'static str,
        times: u32,
    },
    /// CreateFleet calls for `capacity` (`spot` or `on-demand`) launch at
    /// most `launch` instances; each pool asked reports `code` in the
    /// answer's `errorSet`. Holds until cleared.
    FleetShort {
        capacity: &'static str,
        launch: u32,
        code: &'static str,
    },
}

/// One request the layer saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub action: String,
    pub client_token: Option<String>,
    /// `TargetCapacitySpecification.DefaultTargetCapacityType` of a CreateFleet.
    pub capacity: Option<String>,
    /// `TargetCapacitySpecification.TotalTargetCapacity` as asked.
    pub count: Option<u32>,
    /// The (instance type, zone) pools of a CreateFleet's overrides.
    pub pools: Vec<(String, String)>,
    /// The HTTP status answered.
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    faults: Vec<Fault>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct Layer {
    upstream: String,
    http: reqwest::Client,
    inner: Arc<Mutex<Inner>>,
}

pub struct FaultProxy {
    pub endpoint: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port, passing requests on to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let layer = Layer {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            inner: inner.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fault layer serves");
        });
        Self {
            endpoint,
            inner,
            task,
        }
    }

    pub fn add(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    pub fn clear(&self) {
        self.lock().faults.clear();
    }

    /// Every request seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// The requests of one action.
    pub fn seen_of(&self, action: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.action == action)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the layer decided for one request.
enum Plan {
    Pass,
    Answer(StatusCode, String),
    Short { launch: u32, code: &'static str },
}

async fn handle(
    State(layer): State<Layer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let action = field("Action").unwrap_or_default();
    let capacity = field("TargetCapacitySpecification.DefaultTargetCapacityType");
    let count =
        field("TargetCapacitySpecification.TotalTargetCapacity").and_then(|c| c.parse().ok());
    let pools = overrides(&form);
    let plan = {
        let mut inner = layer.inner.lock().unwrap_or_else(|p| p.into_inner());
        plan(&mut inner.faults, &action, capacity.as_deref())
    };
    let (status, text) = match plan {
        Plan::Answer(status, text) => (status, text),
        Plan::Pass => forward(&layer, &method, &uri, &headers, body.to_vec()).await,
        Plan::Short { launch, code } => {
            let asked = count.unwrap_or(0);
            let keep = launch.min(asked);
            if keep == 0 {
                (
                    StatusCode::OK,
                    empty_fleet(&form, capacity.as_deref(), code),
                )
            } else {
                let body = with_count(&form, keep);
                let (status, text) = forward(&layer, &method, &uri, &headers, body).await;
                (status, add_errors(&text, &form, capacity.as_deref(), code))
            }
        }
    };
    layer
        .inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .seen
        .push(Seen {
            action,
            client_token: field("ClientToken"),
            capacity,
            count,
            pools,
            status: status.as_u16(),
        });
    (status, [("content-type", "text/xml;charset=UTF-8")], text).into_response()
}

fn plan(faults: &mut Vec<Fault>, action: &str, capacity: Option<&str>) -> Plan {
    let mut plan = Plan::Pass;
    for f in faults.iter_mut() {
        match f {
            Fault::Throttle { action: a, times } if *a == action && *times > 0 => {
                *times -= 1;
                plan = Plan::Answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    error_xml("RequestLimitExceeded", "Request limit exceeded."),
                );
                break;
            }
            Fault::Error {
                action: a,
                status,
                code,
                message,
                times,
            } if *a == action && *times > 0 => {
                *times -= 1;
                plan = Plan::Answer(
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                    error_xml(code, message),
                );
                break;
            }
            Fault::FleetShort {
                capacity: c,
                launch,
                code,
            } if action == "CreateFleet" && capacity == Some(*c) => {
                plan = Plan::Short {
                    launch: *launch,
                    code,
                };
                break;
            }
            _ => {}
        }
    }
    faults.retain(|f| {
        !matches!(
            f,
            Fault::Throttle { times: 0, .. } | Fault::Error { times: 0, .. }
        )
    });
    plan
}

async fn forward(
    layer: &Layer,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let url = format!(
        "{}{}",
        layer.upstream,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut request = layer.http.request(method.clone(), url).body(body);
    // The signature covers the host header; moto does not check it.
    for (k, v) in headers {
        if k != "host" && k != "content-length" {
            request = request.header(k, v);
        }
    }
    let answer = request.send().await.expect("moto answers");
    let status = answer.status();
    (status, answer.text().await.expect("moto's body"))
}

/// The form with the fleet's target capacity set to `keep`.
fn with_count(form: &[(String, String)], keep: u32) -> Vec<u8> {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        let v = match k.as_str() {
            "TargetCapacitySpecification.TotalTargetCapacity"
            | "TargetCapacitySpecification.SpotTargetCapacity"
            | "TargetCapacitySpecification.OnDemandTargetCapacity" => keep.to_string(),
            _ => v.clone(),
        };
        out.append_pair(k, &v);
    }
    out.finish().into_bytes()
}

/// The (instance type, zone, subnet) of each override of the first launch
/// template config, in order.
fn overrides(form: &[(String, String)]) -> Vec<(String, String)> {
    let mut by_index: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
    for (k, v) in form {
        let Some(rest) = k.strip_prefix("LaunchTemplateConfigs.1.Overrides.") else {
            continue;
        };
        let Some((i, key)) = rest.split_once('.') else {
            continue;
        };
        if let Ok(i) = i.parse() {
            by_index
                .entry(i)
                .or_default()
                .insert(key.to_owned(), v.clone());
        }
    }
    by_index
        .into_values()
        .map(|o| {
            (
                o.get("InstanceType").cloned().unwrap_or_default(),
                o.get("AvailabilityZone").cloned().unwrap_or_default(),
            )
        })
        .collect()
}

/// EC2's error body.
fn error_xml(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>5e2a3b4c-fault</RequestID></Response>"
    )
}

/// One `errorSet` item per pool asked, but the first `launched_from` ones
/// (moto launches from a fleet's first override only).
fn error_set(
    form: &[(String, String)],
    capacity: Option<&str>,
    code: &str,
    launched_from: usize,
) -> String {
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let template = field("LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId");
    let version = field("LaunchTemplateConfigs.1.LaunchTemplateSpecification.Version");
    let lifecycle = capacity.unwrap_or("on-demand");
    let mut items = String::new();
    for (ty, zone) in overrides(form).into_iter().skip(launched_from) {
        items.push_str(&format!(
            "<item><launchTemplateAndOverrides><launchTemplateSpecification><launchTemplateId>{template}</launchTemplateId><version>{version}</version></launchTemplateSpecification><overrides><instanceType>{ty}</instanceType><availabilityZone>{zone}</availabilityZone></overrides></launchTemplateAndOverrides><lifecycle>{lifecycle}</lifecycle><errorCode>{code}</errorCode><errorMessage>We currently do not have sufficient {ty} capacity in the Availability Zone you requested ({zone}). Our system will be working on provisioning additional capacity.</errorMessage></item>"
        ));
    }
    format!("<errorSet>{items}</errorSet>")
}

/// An instant fleet that launched nothing.
fn empty_fleet(form: &[(String, String)], capacity: Option<&str>, code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateFleetResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>5e2a3b4c-fault</requestId><fleetId>fleet-0123456789abcdef0</fleetId>{}<fleetInstanceSet/></CreateFleetResponse>",
        error_set(form, capacity, code, 0)
    )
}

/// Moto's answer with the pools' errors added.
fn add_errors(text: &str, form: &[(String, String)], capacity: Option<&str>, code: &str) -> String {
    let set = error_set(form, capacity, code, 1);
    match text.rfind("</CreateFleetResponse>") {
        Some(at) => format!("{}{set}{}", &text[..at], &text[at..]),
        None => text.to_owned(),
    }
}
