//! DRA: can the devices a new node publishes meet the pod's ResourceClaims?
//!
//! Devices are matched to a request by device class. The classes known here
//! are the ones NVIDIA's DRA driver installs: `gpu.nvidia.com` (devices of
//! driver `gpu.nvidia.com` with `type` `gpu`) and `mig.nvidia.com` (`type`
//! `mig`). CEL selectors are not evaluated; the verdict then says so.

use super::node::Device;
use super::{NodeShape, Reason, Verdict};
use std::fmt;

/// Where a pod's claim comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimSource {
    /// `resourceClaimTemplateName`.
    Template(String),
    /// `resourceClaimName`: an existing ResourceClaim.
    Claim(String),
}

impl fmt::Display for ClaimSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Template(n) => write!(f, "ResourceClaimTemplate {n}"),
            Self::Claim(n) => write!(f, "ResourceClaim {n}"),
        }
    }
}

/// How many devices a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exact(u32),
    /// `allocationMode: All`: every matching device, at least one.
    All,
}

/// One way to meet a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceWant {
    pub class: String,
    pub count: Count,
    /// How many CEL selectors it carries (not evaluated).
    pub selectors: usize,
}

impl fmt::Display for DeviceWant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count {
            Count::Exact(1) => write!(f, "1 device of class {}", self.class),
            Count::Exact(n) => write!(f, "{n} devices of class {}", self.class),
            Count::All => write!(f, "all devices (at least one) of class {}", self.class),
        }
    }
}

/// A request of a claim: `exactly` (one alternative) or `firstAvailable`
/// (the alternatives in order of preference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub name: String,
    pub alternatives: Vec<DeviceWant>,
}

/// A claim of the pod; `requests` is `None` when its template or claim was not
/// given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodClaim {
    pub name: String,
    pub source: ClaimSource,
    pub requests: Option<Vec<ClaimRequest>>,
}

/// Whether NVIDIA's device class `class` selects `d`; `None` for a class not
/// known here.
fn in_class(class: &str, d: &Device) -> Option<bool> {
    let kind = match class {
        "gpu.nvidia.com" => "gpu",
        "mig.nvidia.com" => "mig",
        _ => return None,
    };
    Some(d.driver == crate::template::dra::DRIVER && d.kind.as_deref() == Some(kind))
}

/// Adds to `v` what the node's devices cannot meet.
pub fn check(claims: &[PodClaim], node: &NodeShape, v: &mut Verdict) {
    if claims.is_empty() {
        return;
    }
    if node.devices.is_empty() {
        v.reasons.push(Reason::NoSlices {
            claims: claims.iter().map(|c| c.name.clone()).collect(),
        });
        return;
    }
    let mut taken = vec![false; node.devices.len()];
    for claim in claims {
        let Some(requests) = &claim.requests else {
            v.notes.push(format!(
                "claim {:?}: {} is not in the input, so its devices were not checked",
                claim.name, claim.source
            ));
            continue;
        };
        for request in requests {
            let mut met = false;
            for want in &request.alternatives {
                let free: Vec<usize> = (0..node.devices.len())
                    .filter(|&i| !taken[i] && in_class(&want.class, &node.devices[i]) == Some(true))
                    .collect();
                let n = match want.count {
                    Count::Exact(n) => n as usize,
                    Count::All => free.len().max(1),
                };
                if free.len() >= n {
                    for &i in &free[..n] {
                        taken[i] = true;
                    }
                    if want.selectors > 0 {
                        v.notes.push(format!(
                            "claim {:?} request {:?}: {} CEL selector(s) not evaluated",
                            claim.name, request.name, want.selectors
                        ));
                    }
                    met = true;
                    break;
                }
            }
            if !met {
                let first = request.alternatives.first();
                let available = request
                    .alternatives
                    .iter()
                    .map(|w| {
                        let n = (0..node.devices.len())
                            .filter(|&i| {
                                !taken[i] && in_class(&w.class, &node.devices[i]) == Some(true)
                            })
                            .count();
                        (w.class.clone(), n)
                    })
                    .collect();
                let want = request
                    .alternatives
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ");
                if let Some(w) = first
                    && in_class(&w.class, &node.devices[0]).is_none()
                {
                    v.notes.push(format!(
                        "device class {} is not one of NVIDIA's DRA driver (gpu.nvidia.com, mig.nvidia.com); its devices were taken to be absent",
                        w.class
                    ));
                }
                v.reasons.push(Reason::Devices {
                    claim: claim.name.clone(),
                    request: request.name.clone(),
                    want,
                    available,
                });
            }
        }
    }
}
