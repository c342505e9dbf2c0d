//! What a pod asks of a node, aggregated the way kube-scheduler does
//! (`resourcehelper.PodRequests`): regular containers summed; sidecars
//! (init containers with `restartPolicy: Always`) added for the pod's life;
//! each regular init container, plus the sidecars started before it, as a
//! floor; the pod overhead on top; pod-level requests, where set, replacing
//! the aggregate for their resources. A limit stands in for a missing request,
//! as the API server defaults it.

use crate::quantity;
use std::collections::BTreeMap;

/// Amounts by resource name, in base units (cores, bytes, counts).
pub type Resources = BTreeMap<String, f64>;

/// One container's resources as written, before defaulting.
#[derive(Debug, Clone, Default)]
pub struct ContainerResources<'a> {
    pub name: &'a str,
    pub requests: Vec<(&'a str, &'a str)>,
    pub limits: Vec<(&'a str, &'a str)>,
    /// An init container with `restartPolicy: Always`.
    pub sidecar: bool,
}

/// A quantity that does not parse, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {resource}: {reason}")]
pub struct BadResource {
    /// Where, e.g. `containers[trainer].resources.limits`.
    pub field: String,
    pub resource: String,
    pub reason: String,
}

/// Parses `pairs` written at `field`.
pub fn parse(field: &str, pairs: &[(&str, &str)]) -> Result<Resources, BadResource> {
    pairs
        .iter()
        .map(|(resource, q)| {
            quantity::parse(q)
                .map(|v| ((*resource).to_owned(), v))
                .map_err(|e| BadResource {
                    field: field.to_owned(),
                    resource: (*resource).to_owned(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

/// A container's effective requests: its requests, and its limits where a
/// request is missing.
fn container(kind: &str, c: &ContainerResources<'_>) -> Result<Resources, BadResource> {
    let at = |what: &str| format!("{kind}[{}].resources.{what}", c.name);
    let mut out = parse(&at("limits"), &c.limits)?;
    out.extend(parse(&at("requests"), &c.requests)?);
    Ok(out)
}

fn add(into: &mut Resources, from: &Resources) {
    for (r, v) in from {
        *into.entry(r.clone()).or_default() += v;
    }
}

fn max(into: &mut Resources, from: &Resources) {
    for (r, v) in from {
        let e = into.entry(r.clone()).or_default();
        *e = e.max(*v);
    }
}

/// The pod's requests.
pub fn pod(
    containers: &[ContainerResources<'_>],
    init_containers: &[ContainerResources<'_>],
    overhead: &[(&str, &str)],
    pod_level: &[(&str, &str)],
) -> Result<Resources, BadResource> {
    let mut sum = Resources::new();
    for c in containers {
        add(&mut sum, &container("containers", c)?);
    }
    let mut sidecars = Resources::new();
    let mut init_floor = Resources::new();
    for c in init_containers {
        let r = container("initContainers", c)?;
        if c.sidecar {
            add(&mut sum, &r);
            add(&mut sidecars, &r);
            max(&mut init_floor, &sidecars);
        } else {
            let mut during = r;
            add(&mut during, &sidecars);
            max(&mut init_floor, &during);
        }
    }
    max(&mut sum, &init_floor);
    // Pod-level requests (spec.resources) replace the aggregate for their
    // resources; the overhead comes on top either way.
    sum.extend(parse("resources.requests", pod_level)?);
    add(&mut sum, &parse("overhead", overhead)?);
    sum.retain(|_, v| *v > 0.0);
    Ok(sum)
}

/// A resource amount the way a user writes it: cores for `cpu`, binary units
/// for bytes, plain counts otherwise.
pub fn show(resource: &str, v: f64) -> String {
    let bytes = resource == "memory"
        || resource == "ephemeral-storage"
        || resource.starts_with("hugepages-");
    if resource == "cpu" && v > 0.0 && v < 1.0 {
        format!("{}m", (v * 1000.0).round())
    } else if resource == "cpu" {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else if bytes {
        const UNITS: [(&str, f64); 4] = [
            ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
            ("Gi", 1024.0 * 1024.0 * 1024.0),
            ("Mi", 1024.0 * 1024.0),
            ("Ki", 1024.0),
        ];
        UNITS
            .iter()
            .find(|(_, f)| v >= *f)
            .map_or_else(|| trim(v), |(u, f)| format!("{}{u}", trim(v / f)))
    } else {
        trim(v)
    }
}

/// At most two decimals, none if whole.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
