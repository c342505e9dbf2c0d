//! Would a pod fit a fresh node of a group? The checks CA's scheduler
//! simulation runs against a template node before it scales a group up:
//! resources (NodeResourcesFit), taints (TaintToleration), nodeSelector and
//! required node affinity (NodeAffinity), DRA device claims, and the group's
//! max size. Each failed check says exactly what is missing.
//!
//! Both sides are plain data here: [`PodShape`] from a manifest (see
//! [`crate::explain`]) and [`NodeShape`] decoded from the very template bytes
//! the server sends CA, so the answer is about what CA sees.

pub mod claims;
mod node;
pub mod pb;
pub mod requests;
mod selector;

#[cfg(test)]
mod tests;

pub use claims::{ClaimRequest, ClaimSource, Count, DeviceWant, PodClaim};
pub use node::NodeShape;
pub use requests::Resources;
pub use selector::{Requirement, Term};

use std::fmt;

/// A pod toleration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Toleration {
    /// Empty with `Exists`: every key.
    pub key: String,
    /// `Equal` (also when empty) or `Exists`.
    pub operator: String,
    pub value: String,
    /// Empty: every effect.
    pub effect: String,
}

impl Toleration {
    /// kube's `ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "Exists" => true,
            "" | "Equal" => self.value == taint.value,
            _ => false,
        }
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect)
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect)
        }
    }
}

/// What a pod needs from a node, in the terms the scheduler checks.
#[derive(Debug, Clone, Default)]
pub struct PodShape {
    pub requests: Resources,
    pub tolerations: Vec<Toleration>,
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// `requiredDuringSchedulingIgnoredDuringExecution` terms (any one must
    /// match); `None` when the pod has no required node affinity.
    pub required_terms: Option<Vec<Term>>,
    pub claims: Vec<PodClaim>,
    /// `spec.nodeName`: the pod is bound and never pending for CA.
    pub node_name: Option<String>,
    /// `spec.schedulingGates`: CA ignores gated pods.
    pub scheduling_gates: Vec<String>,
}

/// A group's size, as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSize {
    pub max: u32,
    /// The current target, when a running server was asked.
    pub target: Option<u32>,
}

/// Why a pod would not get a fresh node of a group.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// `spec.nodeName` is set: the pod is already bound.
    Bound {
        node: String,
    },
    /// Scheduling gates hold the pod back; CA does not act for it.
    Gated {
        gates: Vec<String>,
    },
    /// Not enough of a resource.
    Insufficient {
        resource: String,
        requested: f64,
        /// Allocatable, less what DaemonSet pods take.
        offered: f64,
        /// Taken by DaemonSet pods.
        daemons: f64,
        /// Related resources the node offers instead (e.g. MIG slices).
        instead: Vec<(String, f64)>,
    },
    Untolerated(Taint),
    NodeSelector {
        key: String,
        wanted: String,
        actual: Option<String>,
    },
    /// No required node affinity term matches; why, per term.
    Affinity {
        terms: Vec<String>,
    },
    /// A DRA claim cannot be met by the devices a new node publishes.
    Devices {
        claim: String,
        request: String,
        want: String,
        /// Free devices per device class of the request's alternatives.
        available: Vec<(String, usize)>,
    },
    /// The pod claims devices and the group's nodes publish none.
    NoSlices {
        claims: Vec<String>,
    },
    /// The group cannot grow.
    MaxSize(GroupSize),
}

impl Reason {
    /// A short stable name for the reason and its subject, e.g.
    /// `insufficient nvidia.com/gpu` or `untolerated nvidia.com/gpu`.
    pub fn key(&self) -> String {
        match self {
            Self::Bound { .. } => "bound".into(),
            Self::Gated { .. } => "gated".into(),
            Self::Insufficient { resource, .. } => format!("insufficient {resource}"),
            Self::Untolerated(t) => format!("untolerated {}", t.key),
            Self::NodeSelector { key, .. } => format!("node-selector {key}"),
            Self::Affinity { .. } => "affinity".into(),
            Self::Devices { claim, request, .. } => format!("devices {claim}/{request}"),
            Self::NoSlices { .. } => "no-resource-slices".into(),
            Self::MaxSize(_) => "max-size".into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use requests::show;
        match self {
            Self::Bound { node } => write!(
                f,
                "spec.nodeName is {node:?}: the pod is bound to a node and CA never scales up for it"
            ),
            Self::Gated { gates } => write!(
                f,
                "scheduling gates {} hold the pod: CA ignores it until they are removed",
                gates.join(", ")
            ),
            Self::Insufficient {
                resource,
                requested,
                offered,
                daemons,
                instead,
            } => {
                write!(
                    f,
                    "{resource}: the pod requests {}, a new node offers ",
                    show(resource, *requested)
                )?;
                if *offered <= 0.0 && *daemons <= 0.0 {
                    write!(f, "none")?;
                } else {
                    write!(
                        f,
                        "{} (short by {})",
                        show(resource, offered.max(0.0)),
                        show(resource, requested - offered.max(0.0))
                    )?;
                }
                if *daemons > 0.0 {
                    write!(f, " after DaemonSet pods take {}", show(resource, *daemons))?;
                }
                if !instead.is_empty() {
                    let list: Vec<String> = instead
                        .iter()
                        .map(|(r, v)| format!("{r}: {}", show(r, *v)))
                        .collect();
                    write!(f, "; it offers {} instead", list.join(", "))?;
                }
                Ok(())
            }
            Self::Untolerated(t) => write!(f, "taint {t} is not tolerated"),
            Self::NodeSelector {
                key,
                wanted,
                actual,
            } => match actual {
                Some(a) => write!(f, "nodeSelector {key}={wanted}: a new node has {key}={a}"),
                None => write!(
                    f,
                    "nodeSelector {key}={wanted}: a new node has no {key} label"
                ),
            },
            Self::Affinity { terms } => write!(
                f,
                "required node affinity: no term matches ({})",
                terms.join("; ")
            ),
            Self::Devices {
                claim,
                request,
                want,
                available,
            } => {
                let free: Vec<String> = available
                    .iter()
                    .map(|(class, n)| format!("{n} of class {class}"))
                    .collect();
                write!(
                    f,
                    "resource claim {claim:?} request {request:?} wants {want}; a new node has {} free",
                    free.join(", ")
                )
            }
            Self::NoSlices { claims } => write!(
                f,
                "the pod claims devices through DRA ({}) and nodes of this group publish no ResourceSlices",
                claims.join(", ")
            ),
            Self::MaxSize(GroupSize { max, target }) => match target {
                Some(t) if *max > 0 => {
                    write!(f, "max size reached: target {t} of max {max}")
                }
                _ => write!(f, "max size is 0"),
            },
        }
    }
}

/// The outcome for one group: it fits if there are no reasons.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub reasons: Vec<Reason>,
    /// What was not judged and why (CEL selectors, claims not in the input).
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn fits(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// Taints, nodeSelector and required affinity: where the pod may go at all.
pub fn placement(pod: &PodShape, node: &NodeShape) -> Vec<Reason> {
    let mut out = Vec::new();
    for taint in &node.taints {
        let blocking = taint.effect == "NoSchedule" || taint.effect == "NoExecute";
        if blocking && !pod.tolerations.iter().any(|t| t.tolerates(taint)) {
            out.push(Reason::Untolerated(taint.clone()));
        }
    }
    for (key, wanted) in &pod.node_selector {
        let actual = node.labels.get(key);
        if actual != Some(wanted) {
            out.push(Reason::NodeSelector {
                key: key.clone(),
                wanted: wanted.clone(),
                actual: actual.cloned(),
            });
        }
    }
    if let Some(terms) = &pod.required_terms
        && let Err(why) = selector::any_matches(terms, node)
    {
        out.push(Reason::Affinity { terms: why });
    }
    out
}

/// Everything: would `pod` fit a fresh node of a group of `size`, with
/// `daemons` already taken by DaemonSet pods?
pub fn check(pod: &PodShape, node: &NodeShape, daemons: &Resources, size: GroupSize) -> Verdict {
    let mut v = Verdict::default();
    if let Some(n) = &pod.node_name {
        v.reasons.push(Reason::Bound { node: n.clone() });
    }
    if !pod.scheduling_gates.is_empty() {
        v.reasons.push(Reason::Gated {
            gates: pod.scheduling_gates.clone(),
        });
    }
    if size.max == 0 || size.target.is_some_and(|t| t >= size.max) {
        v.reasons.push(Reason::MaxSize(size));
    }
    v.reasons.extend(placement(pod, node));
    for (resource, &requested) in &pod.requests {
        let taken = daemons.get(resource).copied().unwrap_or(0.0);
        let offered = node.allocatable.get(resource).copied().unwrap_or(0.0) - taken;
        if requested > offered + 1e-9 {
            v.reasons.push(Reason::Insufficient {
                resource: resource.clone(),
                requested,
                offered,
                daemons: taken,
                instead: node.instead_of(resource),
            });
        }
    }
    claims::check(&pod.claims, node, &mut v);
    v
}
