//! gpupool's own notice format, for node agents and anything else:
//!
//! ```json
//! {"id": "evt-42", "kind": "interruption",
//!  "provider_id": "aws:///us-east-1a/i-0abc", "deadline": "2026-11-21T14:24:00Z"}
//! ```
//!
//! Exactly one of `provider_id`, `instance` (the cloud's id or VM name) and
//! `node` (the Kubernetes node name); `kind` is `interruption` (default),
//! `rebalance`, `termination` or `terminated`; `deadline` is optional.

use super::notice::{BadNotice, Kind, Notice, Source, Target, rfc3339};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    provider_id: Option<String>,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    deadline: Option<String>,
}

pub fn parse(body: &[u8], source: Source) -> Result<Vec<Notice>, BadNotice> {
    let b: Body = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
        .map_err(|e| BadNotice::new(e.path().to_string(), e.into_inner().to_string()))?;
    let kind = match b.kind.as_deref() {
        None => Kind::Interruption,
        Some(k) => Kind::parse(k).ok_or_else(|| {
            BadNotice::new(
                "kind",
                format!("{k:?} is not interruption, rebalance, termination or terminated"),
            )
        })?,
    };
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let target = match (
        non_empty(b.provider_id),
        non_empty(b.instance),
        non_empty(b.node),
    ) {
        (Some(p), None, None) => Target::ProviderId(p),
        (None, Some(i), None) => Target::Instance(i),
        (None, None, Some(n)) => Target::Node(n),
        _ => {
            return Err(BadNotice::new(
                "provider_id",
                "give exactly one of provider_id, instance and node",
            ));
        }
    };
    let deadline = b
        .deadline
        .as_deref()
        .map(|d| rfc3339("deadline", d))
        .transpose()?;
    let id = b.id.unwrap_or_else(|| format!("{}:{target}", kind.label()));
    Ok(vec![Notice {
        source,
        kind,
        target,
        deadline,
        id,
    }])
}
