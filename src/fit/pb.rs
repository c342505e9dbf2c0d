//! A pod as CA sends it (core/v1 Pod in Kubernetes protobuf encoding, k8s-pb)
//! to the scheduler's view of it.

use super::requests::{self, BadResource, ContainerResources};
use super::{ClaimSource, PodClaim, PodShape, Requirement, Term, Toleration};
use k8s_pb::api::core::v1::{Container, NodeSelectorRequirement, PodSpec};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

fn pairs(m: &BTreeMap<String, Quantity>) -> Vec<(&str, &str)> {
    m.iter()
        .filter_map(|(k, q)| Some((k.as_str(), q.string.as_deref()?)))
        .collect()
}

fn container(c: &Container) -> ContainerResources<'_> {
    let r = c.resources.as_ref();
    ContainerResources {
        name: c.name.as_deref().unwrap_or_default(),
        requests: r.map(|r| pairs(&r.requests)).unwrap_or_default(),
        limits: r.map(|r| pairs(&r.limits)).unwrap_or_default(),
        sidecar: c.restart_policy.as_deref() == Some("Always"),
    }
}

fn requirement(r: &NodeSelectorRequirement) -> Requirement {
    Requirement {
        key: r.key.clone().unwrap_or_default(),
        operator: r.operator.clone().unwrap_or_default(),
        values: r.values.clone(),
    }
}

/// The scheduler's view of `spec`. Claims carry no requests: their
/// templates are not part of the pod.
pub fn pod_shape(spec: &PodSpec) -> Result<PodShape, BadResource> {
    let containers: Vec<_> = spec.containers.iter().map(container).collect();
    let init: Vec<_> = spec.init_containers.iter().map(container).collect();
    let pod_level = spec
        .resources
        .as_ref()
        .map(|r| pairs(&r.requests))
        .unwrap_or_default();
    let requests = requests::pod(&containers, &init, &pairs(&spec.overhead), &pod_level)?;
    Ok(PodShape {
        requests,
        tolerations: spec
            .tolerations
            .iter()
            .map(|t| Toleration {
                key: t.key.clone().unwrap_or_default(),
                operator: t.operator.clone().unwrap_or_default(),
                value: t.value.clone().unwrap_or_default(),
                effect: t.effect.clone().unwrap_or_default(),
            })
            .collect(),
        node_selector: spec.node_selector.clone(),
        required_terms: spec
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
                        match_expressions: t.match_expressions.iter().map(requirement).collect(),
                        match_fields: t.match_fields.iter().map(requirement).collect(),
                    })
                    .collect()
            }),
        claims: spec
            .resource_claims
            .iter()
            .map(|c| {
                let source = match (&c.resource_claim_template_name, &c.resource_claim_name) {
                    (Some(t), _) => ClaimSource::Template(t.clone()),
                    (None, Some(n)) => ClaimSource::Claim(n.clone()),
                    (None, None) => ClaimSource::Claim(c.name.clone().unwrap_or_default()),
                };
                PodClaim {
                    name: c.name.clone().unwrap_or_default(),
                    source,
                    requests: None,
                }
            })
            .collect(),
        node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
        scheduling_gates: spec
            .scheduling_gates
            .iter()
            .filter_map(|g| g.name.clone())
            .collect(),
    })
}
