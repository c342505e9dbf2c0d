//! Kubernetes manifests (one or many YAML documents) to the pods they create,
//! parsed into the API's own types (`k8s-openapi`), so a manifest the API
//! server would refuse is refused here too, with the field that is wrong.

use crate::fit::claims::ClaimRequest;
use crate::fit::requests::{self, BadResource, ContainerResources};
use crate::fit::{
    ClaimSource, Count, DeviceWant, PodClaim, PodShape, Requirement, Term, Toleration,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Container, NodeSelectorRequirement, Pod, PodSpec, ReplicationController,
};
use k8s_openapi::api::resource::v1::{DeviceRequest, ResourceClaim, ResourceClaimTemplate};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Kinds whose pods this reads.
pub const WORKLOAD_KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "StatefulSet",
    "ReplicaSet",
    "ReplicationController",
    "DaemonSet",
    "Job",
    "CronJob",
];

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("document {doc}: not YAML: {reason}")]
    Yaml { doc: String, reason: String },
    #[error("document {doc}: no `kind`; every Kubernetes object names its kind")]
    NoKind { doc: String },
    #[error("document {doc} ({kind} {name}): {path}: {reason}")]
    Field {
        doc: String,
        kind: String,
        name: String,
        path: String,
        reason: String,
    },
    #[error("document {doc} ({kind} {name}): {source}")]
    Resource {
        doc: String,
        kind: String,
        name: String,
        source: Box<BadResource>,
    },
    #[error("document {doc} ({kind} {name}): has no pod template (spec.template.spec)")]
    NoPodSpec {
        doc: String,
        kind: String,
        name: String,
    },
    #[error(
        "no workload in the input: give a Pod, Deployment, StatefulSet, ReplicaSet, Job or CronJob{}",
        if .skipped.is_empty() { String::new() } else { format!(" (skipped: {})", .skipped.join(", ")) }
    )]
    NoWorkload { skipped: Vec<String> },
    #[error(
        "the input has only DaemonSets: CA never scales up for DaemonSet pods; give the pod to explain along with them"
    )]
    OnlyDaemonSets,
}

/// A pod-creating object of the input.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub pod: PodShape,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What the input holds.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// The workloads to explain.
    pub workloads: Vec<Workload>,
    /// DaemonSets: their pods run on every node they fit and take their share.
    pub daemonsets: Vec<Workload>,
    /// Documents of other kinds, as `Kind name`.
    pub skipped: Vec<String>,
}

/// One document, typed, with what the error messages need.
struct Doc {
    /// `3`, or `3, item 2` inside a `List`.
    index: String,
    kind: String,
    name: String,
    value: serde_yaml::Value,
}

impl Doc {
    fn new(index: String, value: serde_yaml::Value) -> Result<Self, ManifestError> {
        let Some(kind) = value.get("kind").and_then(|k| k.as_str()) else {
            return Err(ManifestError::NoKind { doc: index });
        };
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("(unnamed)");
        Ok(Self {
            kind: kind.to_owned(),
            name: name.to_owned(),
            index,
            value,
        })
    }

    fn parse<T: DeserializeOwned + k8s_openapi::Resource>(&self) -> Result<T, ManifestError> {
        let version = self.value.get("apiVersion").and_then(|v| v.as_str());
        if version != Some(T::API_VERSION) {
            return Err(ManifestError::Field {
                doc: self.index.clone(),
                kind: self.kind.clone(),
                name: self.name.clone(),
                path: "apiVersion".into(),
                reason: format!(
                    "{} is not how Kubernetes serves {}: use {}",
                    version.map_or("missing".to_owned(), |v| format!("{v:?}")),
                    T::KIND,
                    T::API_VERSION
                ),
            });
        }
        serde_path_to_error::deserialize(self.value.clone()).map_err(|e| ManifestError::Field {
            doc: self.index.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            path: e.path().to_string(),
            reason: e.into_inner().to_string(),
        })
    }
}

/// Claim specs of the input by namespace and name.
#[derive(Default)]
struct ClaimSpecs {
    templates: BTreeMap<(String, String), Vec<ClaimRequest>>,
    claims: BTreeMap<(String, String), Vec<ClaimRequest>>,
}

pub fn parse(text: &str) -> Result<Manifests, ManifestError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = (i + 1).to_string();
        let value = serde_yaml::Value::deserialize(de).map_err(|e| ManifestError::Yaml {
            doc: index.clone(),
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue; // an empty document (`---` at the end)
        }
        // `kubectl get … -o yaml` of several objects gives a `List`.
        if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            let items = value.get("items").and_then(|i| i.as_sequence());
            for (j, item) in items.into_iter().flatten().enumerate() {
                docs.push(Doc::new(format!("{index}, item {}", j + 1), item.clone())?);
            }
        } else {
            docs.push(Doc::new(index, value)?);
        }
    }

    // Claim specs first: pods refer to them whatever the order.
    let mut specs = ClaimSpecs::default();
    for doc in &docs {
        match doc.kind.as_str() {
            "ResourceClaimTemplate" => {
                let t: ResourceClaimTemplate = doc.parse()?;
                let requests = t
                    .spec
                    .and_then(|s| s.spec)
                    .and_then(|s| s.devices)
                    .and_then(|d| d.requests)
                    .unwrap_or_default();
                specs.templates.insert(
                    key(&t.metadata),
                    requests.iter().map(claim_request).collect(),
                );
            }
            "ResourceClaim" => {
                let c: ResourceClaim = doc.parse()?;
                let requests = c
                    .spec
                    .and_then(|s| s.devices)
                    .and_then(|d| d.requests)
                    .unwrap_or_default();
                specs.claims.insert(
                    key(&c.metadata),
                    requests.iter().map(claim_request).collect(),
                );
            }
            _ => {}
        }
    }

    let mut out = Manifests::default();
    for doc in &docs {
        let (meta, template): (ObjectMeta, Option<PodSpec>) = match doc.kind.as_str() {
            "Pod" => {
                let p: Pod = doc.parse()?;
                (p.metadata, p.spec)
            }
            "Deployment" => {
                let d: Deployment = doc.parse()?;
                (d.metadata, d.spec.template.spec)
            }
            "StatefulSet" => {
                let d: StatefulSet = doc.parse()?;
                (d.metadata, d.spec.template.spec)
            }
            "ReplicaSet" => {
                let d: ReplicaSet = doc.parse()?;
                (d.metadata, d.spec.template.and_then(|t| t.spec))
            }
            "ReplicationController" => {
                let d: ReplicationController = doc.parse()?;
                let spec = d.spec.and_then(|s| s.template).and_then(|t| t.spec);
                (d.metadata, spec)
            }
            "DaemonSet" => {
                let d: DaemonSet = doc.parse()?;
                (d.metadata, d.spec.template.spec)
            }
            "Job" => {
                let d: Job = doc.parse()?;
                (d.metadata, d.spec.and_then(|s| s.template.spec))
            }
            "CronJob" => {
                let d: CronJob = doc.parse()?;
                let spec = d.spec.job_template.spec.and_then(|s| s.template.spec);
                (d.metadata, spec)
            }
            "ResourceClaimTemplate" | "ResourceClaim" => continue,
            other => {
                out.skipped.push(format!("{other} {}", doc.name));
                continue;
            }
        };
        let spec = template.ok_or_else(|| ManifestError::NoPodSpec {
            doc: doc.index.clone(),
            kind: doc.kind.clone(),
            name: doc.name.clone(),
        })?;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let pod = shape(&spec, &namespace, &specs).map_err(|source| ManifestError::Resource {
            doc: doc.index.clone(),
            kind: doc.kind.clone(),
            name: doc.name.clone(),
            source: Box::new(source),
        })?;
        let w = Workload {
            kind: doc.kind.clone(),
            namespace,
            name: meta.name.unwrap_or_else(|| doc.name.clone()),
            pod,
        };
        if w.kind == "DaemonSet" {
            out.daemonsets.push(w);
        } else {
            out.workloads.push(w);
        }
    }
    if out.workloads.is_empty() {
        return Err(if out.daemonsets.is_empty() {
            ManifestError::NoWorkload {
                skipped: out.skipped,
            }
        } else {
            ManifestError::OnlyDaemonSets
        });
    }
    Ok(out)
}

fn key(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

fn claim_request(r: &DeviceRequest) -> ClaimRequest {
    let want = |class: &str, mode: Option<&str>, count: Option<i64>, selectors: usize| DeviceWant {
        class: class.to_owned(),
        count: match mode {
            Some("All") => Count::All,
            _ => Count::Exact(count.unwrap_or(1).clamp(0, i64::from(u32::MAX)) as u32),
        },
        selectors,
    };
    let mut alternatives = Vec::new();
    if let Some(e) = &r.exactly {
        alternatives.push(want(
            &e.device_class_name,
            e.allocation_mode.as_deref(),
            e.count,
            e.selectors.as_ref().map_or(0, Vec::len),
        ));
    }
    for s in r.first_available.iter().flatten() {
        alternatives.push(want(
            &s.device_class_name,
            s.allocation_mode.as_deref(),
            s.count,
            s.selectors.as_ref().map_or(0, Vec::len),
        ));
    }
    ClaimRequest {
        name: r.name.clone(),
        alternatives,
    }
}

fn pairs(map: &Option<BTreeMap<String, Quantity>>) -> Vec<(&str, &str)> {
    map.iter()
        .flatten()
        .map(|(k, q)| (k.as_str(), q.0.as_str()))
        .collect()
}

fn container(c: &Container) -> ContainerResources<'_> {
    let r = c.resources.as_ref();
    ContainerResources {
        name: &c.name,
        requests: r.map(|r| pairs(&r.requests)).unwrap_or_default(),
        limits: r.map(|r| pairs(&r.limits)).unwrap_or_default(),
        sidecar: c.restart_policy.as_deref() == Some("Always"),
    }
}

fn requirement(r: &NodeSelectorRequirement) -> Requirement {
    Requirement {
        key: r.key.clone(),
        operator: r.operator.clone(),
        values: r.values.clone().unwrap_or_default(),
    }
}

/// The scheduler's view of a pod spec in `namespace`, with no claim specs
/// at hand (claims are known by name only).
pub fn pod_shape(spec: &PodSpec, namespace: &str) -> Result<PodShape, BadResource> {
    shape(spec, namespace, &ClaimSpecs::default())
}

/// The scheduler's view of a pod spec in `namespace`.
fn shape(spec: &PodSpec, namespace: &str, claims: &ClaimSpecs) -> Result<PodShape, BadResource> {
    let containers: Vec<_> = spec.containers.iter().map(container).collect();
    let init: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .map(container)
        .collect();
    let pod_level = spec
        .resources
        .as_ref()
        .map(|r| pairs(&r.requests))
        .unwrap_or_default();
    let requests = requests::pod(&containers, &init, &pairs(&spec.overhead), &pod_level)?;
    let tolerations = spec
        .tolerations
        .iter()
        .flatten()
        .map(|t| Toleration {
            key: t.key.clone().unwrap_or_default(),
            operator: t.operator.clone().unwrap_or_default(),
            value: t.value.clone().unwrap_or_default(),
            effect: t.effect.clone().unwrap_or_default(),
        })
        .collect();
    let required_terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|s| {
            s.node_selector_terms
                .iter()
                .map(|t| Term {
                    match_expressions: t
                        .match_expressions
                        .iter()
                        .flatten()
                        .map(requirement)
                        .collect(),
                    match_fields: t.match_fields.iter().flatten().map(requirement).collect(),
                })
                .collect()
        });
    let pod_claims = spec
        .resource_claims
        .iter()
        .flatten()
        .map(|c| {
            let (source, found) = match (&c.resource_claim_template_name, &c.resource_claim_name) {
                (Some(t), _) => (
                    ClaimSource::Template(t.clone()),
                    claims.templates.get(&(namespace.to_owned(), t.clone())),
                ),
                (None, Some(n)) => (
                    ClaimSource::Claim(n.clone()),
                    claims.claims.get(&(namespace.to_owned(), n.clone())),
                ),
                (None, None) => (ClaimSource::Claim(c.name.clone()), None),
            };
            PodClaim {
                name: c.name.clone(),
                source,
                requests: found.cloned(),
            }
        })
        .collect();
    Ok(PodShape {
        requests,
        tolerations,
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        required_terms,
        claims: pod_claims,
        node_name: spec.node_name.clone(),
        scheduling_gates: spec
            .scheduling_gates
            .iter()
            .flatten()
            .map(|g| g.name.clone())
            .collect(),
    })
}
