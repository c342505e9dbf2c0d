//! `gpupool explain-pod`: for each workload of a manifest, would a fresh node
//! of each node group fit its pods, and if not, exactly why.
//!
//! The groups are judged on the template nodes the server serves CA (from a
//! config, through the same [`crate::template`] code, or asked of a running
//! server over gRPC), decoded back from their Kubernetes protobuf encoding.

pub mod manifest;

pub use manifest::{ManifestError, Manifests, Workload, parse};

use crate::config::{Config, GroupSpec};
use crate::fit::requests::show;
use crate::fit::{self, GroupSize, NodeShape, Resources, Verdict};
use crate::template::{Template, TemplateContext};
use k8s_pb::api::core::v1::Node;
use k8s_pb::api::resource::v1::ResourceSlice;
use prost::Message;
use std::fmt;

/// A node group as CA sees it.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub size: GroupSize,
    pub node: NodeShape,
}

#[derive(Debug, thiserror::Error)]
#[error("group {group}: the template {what} does not decode: {reason}")]
pub struct TemplateError {
    pub group: String,
    pub what: &'static str,
    pub reason: String,
}

impl Group {
    /// From the encoded template node and ResourceSlices, as CA receives them.
    pub fn decode(
        id: &str,
        size: GroupSize,
        node: &[u8],
        slices: &[Vec<u8>],
    ) -> Result<Self, TemplateError> {
        let err = |what, e: prost::DecodeError| TemplateError {
            group: id.to_owned(),
            what,
            reason: e.to_string(),
        };
        let node = Node::decode(node).map_err(|e| err("node", e))?;
        let slices = slices
            .iter()
            .map(|b| ResourceSlice::decode(b.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("ResourceSlice", e))?;
        Ok(Self {
            id: id.to_owned(),
            size,
            node: NodeShape::new(&node, &slices),
        })
    }

    /// From a group of a config: the template the server would serve.
    pub fn local(spec: &GroupSpec, template: &Template) -> Result<Self, TemplateError> {
        let size = GroupSize {
            max: spec.max_size,
            target: None,
        };
        Self::decode(
            spec.id.as_str(),
            size,
            &template.bytes,
            &template.resource_slices,
        )
    }
}

/// The groups of a config, judged on the templates the server would build.
pub fn groups_of(config: &Config, specs: &[GroupSpec]) -> Result<Vec<Group>, TemplateError> {
    let cx = TemplateContext {
        region: &config.region,
        gpu_label: &config.gpu_label,
    };
    specs
        .iter()
        .map(|spec| Group::local(spec, &Template::build(spec, cx)))
        .collect()
}

/// The verdicts for one workload.
#[derive(Debug, Clone)]
pub struct Report {
    pub workload: String,
    pub requests: Resources,
    /// DaemonSets whose pods take their share of each node they would run on.
    pub daemonsets: Vec<String>,
    /// Per group, in the order given.
    pub verdicts: Vec<(String, Verdict)>,
}

impl Report {
    pub fn fitting(&self) -> impl Iterator<Item = &str> {
        self.verdicts
            .iter()
            .filter(|(_, v)| v.fits())
            .map(|(id, _)| id.as_str())
    }
}

/// Judges `workload` against every group; `daemonsets` take their share of
/// each node they would run on first, as in CA's simulation.
pub fn explain(workload: &Workload, daemonsets: &[Workload], groups: &[Group]) -> Report {
    let verdicts = groups
        .iter()
        .map(|g| {
            let mut daemons = Resources::new();
            for ds in daemonsets {
                if fit::placement(&ds.pod, &g.node).is_empty() {
                    for (r, v) in &ds.pod.requests {
                        *daemons.entry(r.clone()).or_default() += v;
                    }
                }
            }
            (
                g.id.clone(),
                fit::check(&workload.pod, &g.node, &daemons, g.size),
            )
        })
        .collect();
    Report {
        workload: workload.to_string(),
        requests: workload.pod.requests.clone(),
        daemonsets: daemonsets
            .iter()
            .map(|d| format!("{}/{}", d.namespace, d.name))
            .collect(),
        verdicts,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let requests: Vec<String> = self
            .requests
            .iter()
            .map(|(r, v)| format!("{r} {}", show(r, *v)))
            .collect();
        let requests = if requests.is_empty() {
            "nothing".to_owned()
        } else {
            requests.join(", ")
        };
        writeln!(f, "{}: each pod requests {requests}", self.workload)?;
        if !self.daemonsets.is_empty() {
            writeln!(
                f,
                "  (DaemonSet pods take their share of each node they would run on: {})",
                self.daemonsets.join(", ")
            )?;
        }
        for (id, v) in &self.verdicts {
            if v.fits() {
                writeln!(f, "  {id}: fits")?;
            } else {
                writeln!(f, "  {id}: does not fit")?;
                for r in &v.reasons {
                    writeln!(f, "    - {r}")?;
                }
            }
            for n in &v.notes {
                writeln!(f, "    note: {n}")?;
            }
        }
        let fitting: Vec<&str> = self.fitting().collect();
        if fitting.is_empty() {
            writeln!(
                f,
                "  => no node group fits: CA will not scale up for this pod"
            )
        } else {
            writeln!(
                f,
                "  => fits {} of {} node groups: {}",
                fitting.len(),
                self.verdicts.len(),
                fitting.join(", ")
            )
        }
    }
}
