//! A trace from a cluster's pod history: `kubectl get pods -A -o json` of finished pods. The
//! rules are in `docs/traces.md`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::api::core::v1 as core;

use super::trace::{PodSpec, Trace, TraceError, mig_profile};

/// Marks a pod interruptible (`"true"`) or not (`"false"`), over its tolerations.
pub const INTERRUPTIBLE_ANNOTATION: &str = "gpupool.dev/interruptible";
/// How often a pod checkpoints (humantime, e.g. `30m`).
pub const CHECKPOINT_ANNOTATION: &str = "gpupool.dev/checkpoint-every";
/// Marks a pod as accepting a time-sliced GPU share (`"true"`) or not (`"false"`), over its
/// node selector.
pub const SHAREABLE_ANNOTATION: &str = "gpupool.dev/shareable";
/// The label NVIDIA's GPU feature discovery puts on time-sliced nodes (`time-slicing`), which
/// pods that accept a share select.
const SHARING_STRATEGY_LABEL: &str = "nvidia.com/gpu.sharing-strategy";

/// What an import took and what it left out.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportReport {
    /// Pods in the trace.
    pub pods: usize,
    /// (namespace/name, why) of each pod left out, in the list's order.
    pub skipped: Vec<(String, String)>,
}

/// A trace from `kubectl get pods -A -o json` (a v1 `List` or `PodList`) of finished pods
/// (phase Succeeded or Failed; others are skipped and reported). `gpu_label` is the node label
/// whose value is the GPU type (the config's `gpu_label`). `name` names the trace and errors.
pub fn from_pod_list(
    name: &str,
    json: &str,
    gpu_label: &str,
) -> Result<(Trace, ImportReport), TraceError> {
    let file_error = |reason: String| TraceError::File {
        file: name.to_owned(),
        reason,
    };
    let list: serde_json::Value =
        serde_json::from_str(json).map_err(|e| file_error(format!("not JSON: {e}")))?;
    let kind = list.get("kind").and_then(serde_json::Value::as_str);
    if !matches!(kind, Some("List" | "PodList")) {
        return Err(file_error(format!(
            "{}: expected a List or PodList, as `kubectl get pods -A -o json` prints",
            kind.map_or_else(|| "no kind".to_owned(), |k| format!("kind {k}"))
        )));
    }
    let Some(items) = list.get("items").and_then(serde_json::Value::as_array) else {
        return Err(file_error("no items list".to_owned()));
    };

    let mut report = ImportReport {
        pods: 0,
        skipped: Vec::new(),
    };
    // (creation in ns since the epoch, pod with arrival still 0)
    let mut taken: Vec<(i128, PodSpec)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let id = pod_id(item).unwrap_or_else(|| format!("items[{index}]"));
        let mut item = item.clone();
        if let Some(object) = item.as_object_mut() {
            match object.get("kind").and_then(serde_json::Value::as_str) {
                None => {
                    object.insert("kind".into(), "Pod".into());
                }
                Some("Pod") => {}
                Some(other) => {
                    report.skipped.push((id, format!("a {other}, not a Pod")));
                    continue;
                }
            }
            object.entry("apiVersion").or_insert_with(|| "v1".into());
        }
        let pod: core::Pod = serde_path_to_error::deserialize(item).map_err(|e| {
            let path = e.path().to_string();
            TraceError::Pod {
                file: name.to_owned(),
                pod: id.clone(),
                field: if path == "." {
                    "(the pod)".to_owned()
                } else {
                    path
                },
                reason: e.into_inner().to_string(),
            }
        })?;
        let pod_error = |field: String, reason: String| TraceError::Pod {
            file: name.to_owned(),
            pod: id.clone(),
            field,
            reason,
        };
        match convert(&pod, gpu_label, pod_error)? {
            Ok(taken_pod) => taken.push(taken_pod),
            Err(why) => report.skipped.push((id, why)),
        }
    }

    let Some(earliest) = taken.iter().map(|(created, _)| *created).min() else {
        let mut reason = format!("no finished GPU pod to import ({} in the list", items.len());
        for (pod, why) in report.skipped.iter().take(3) {
            let _ = write!(reason, "; {pod}: {why}");
        }
        if report.skipped.len() > 3 {
            reason.push_str("; …");
        }
        reason.push(')');
        return Err(file_error(reason));
    };
    let mut names = HashSet::new();
    let pods: Vec<PodSpec> = taken
        .into_iter()
        .map(|(created, mut pod)| {
            pod.arrival = nanos(created - earliest);
            pod.name = unique_name(&pod.name, &mut names);
            pod
        })
        .collect();
    report.pods = pods.len();
    Ok((Trace::new(name, pods)?, report))
}

/// `namespace/name` from the raw item, if it has a name.
fn pod_id(item: &serde_json::Value) -> Option<String> {
    let metadata = item.get("metadata")?;
    let name = metadata.get("name")?.as_str()?;
    let namespace = metadata
        .get("namespace")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("default");
    Some(format!("{namespace}/{name}"))
}

/// A pod's name made unique among `taken` (pods of different namespaces may share one):
/// `<name>-2`, `<name>-3`, …
fn unique_name(name: &str, taken: &mut HashSet<String>) -> String {
    let mut candidate = name.to_owned();
    let mut n = 1;
    while taken.contains(&candidate) {
        n += 1;
        let suffix = format!("-{n}");
        let base = &name[..name.len().min(253 - suffix.len())];
        candidate = format!("{}{suffix}", base.trim_end_matches(['-', '.']));
    }
    taken.insert(candidate.clone());
    candidate
}

/// Nanoseconds (≥ 0) as a Duration.
fn nanos(ns: i128) -> Duration {
    let ns = u128::try_from(ns).unwrap_or(0);
    Duration::new(
        u64::try_from(ns / 1_000_000_000).unwrap_or(u64::MAX),
        u32::try_from(ns % 1_000_000_000).expect("under a second"),
    )
}

/// The trace pod (with its creation time) of a finished GPU pod, or why it is skipped
/// (`Ok(Err(why))`); `Err` for what the pod's owner must fix (a bad quantity or annotation).
fn convert(
    pod: &core::Pod,
    gpu_label: &str,
    error: impl Fn(String, String) -> TraceError,
) -> Result<Result<(i128, PodSpec), String>, TraceError> {
    let status = pod.status.as_ref();
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded" | "Failed") => {}
        phase => {
            return Ok(Err(format!(
                "{}: only Succeeded and Failed pods have finished",
                phase.map_or_else(|| "no phase".to_owned(), |p| format!("phase {p}"))
            )));
        }
    }
    let Some(name) = pod.metadata.name.clone() else {
        return Ok(Err("no metadata.name".to_owned()));
    };
    let Some(created) = &pod.metadata.creation_timestamp else {
        return Ok(Err("no metadata.creationTimestamp".to_owned()));
    };
    let Some(spec) = &pod.spec else {
        return Ok(Err("no spec".to_owned()));
    };

    // Run time: from the pod's start to its last container's end.
    let terminated: Vec<&core::ContainerStateTerminated> = status
        .into_iter()
        .flat_map(|s| {
            let init = s.init_container_statuses.iter().flatten();
            init.chain(s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .collect();
    let started = status.and_then(|s| s.start_time.as_ref()).or_else(|| {
        terminated
            .iter()
            .filter_map(|t| t.started_at.as_ref())
            .min()
    });
    let Some(started) = started else {
        return Ok(Err(
            "no status.startTime and no container's state.terminated.startedAt".to_owned(),
        ));
    };
    let Some(finished) = terminated
        .iter()
        .filter_map(|t| t.finished_at.as_ref())
        .max()
    else {
        return Ok(Err("no container's state.terminated.finishedAt".to_owned()));
    };
    let ran = finished.0.as_nanosecond() - started.0.as_nanosecond();
    if ran <= 0 {
        return Ok(Err(format!(
            "finished at {} but started at {}: no run time",
            finished.0, started.0
        )));
    }

    // GPUs: whole ones and MIG slices, summed over the containers.
    let mut gpus = 0u32;
    let mut slices: BTreeMap<String, u32> = BTreeMap::new();
    for (c, container) in spec.containers.iter().enumerate() {
        let resources = container.resources.as_ref();
        let limits = resources.and_then(|r| r.limits.as_ref());
        let requests = resources.and_then(|r| r.requests.as_ref());
        let keys: std::collections::BTreeSet<&String> = limits
            .into_iter()
            .chain(requests)
            .flat_map(BTreeMap::keys)
            .filter(|k| *k == "nvidia.com/gpu" || k.starts_with("nvidia.com/mig-"))
            .collect();
        for key in keys {
            let (which, quantity) = match limits.and_then(|l| l.get(key)) {
                Some(q) => ("limits", q),
                None => (
                    "requests",
                    &requests.expect("the key is in one of them")[key],
                ),
            };
            let field = format!("spec.containers[{c}].resources.{which}[{key}]");
            let count = crate::quantity::parse(&quantity.0)
                .ok()
                .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
                .ok_or_else(|| {
                    error(
                        field,
                        format!("{:?} is not a whole number of devices", quantity.0),
                    )
                })?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked above
            let count = count as u32;
            match key.strip_prefix("nvidia.com/mig-") {
                None => gpus = gpus.saturating_add(count),
                Some(_) if count == 0 => {}
                Some(profile) => *slices.entry(profile.to_owned()).or_default() += count,
            }
        }
    }
    let slice = match (gpus, slices.len()) {
        (0, 0) => return Ok(Err("no GPU".to_owned())),
        (_, 0) => None,
        (0, 1) => {
            let (profile, count) = slices.pop_first().expect("one");
            if count > 1 {
                return Ok(Err(format!(
                    "{count} MIG slices {profile}: a trace pod asks for one slice"
                )));
            }
            if mig_profile(&profile).is_none() {
                return Ok(Err(format!(
                    "MIG profile {profile:?} is not of the form <n>g.<m>gb"
                )));
            }
            Some(profile)
        }
        (0, _) => {
            let profiles: Vec<_> = slices.keys().map(String::as_str).collect();
            return Ok(Err(format!(
                "MIG slices of several profiles ({}): a trace pod asks for one slice",
                profiles.join(", ")
            )));
        }
        _ => {
            return Ok(Err(
                "both whole GPUs and MIG slices: a trace pod asks for one kind".to_owned(),
            ));
        }
    };

    let annotations = pod.metadata.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    let interruptible = match annotation(INTERRUPTIBLE_ANNOTATION) {
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(error(
                format!("metadata.annotations[{INTERRUPTIBLE_ANNOTATION}]"),
                format!("{other:?} is not true or false"),
            ));
        }
        None => spec.tolerations.iter().flatten().any(|t| {
            t.key.as_deref().is_some_and(|key| {
                let key = key.to_ascii_lowercase();
                key.contains("spot")
                    || key.contains("preemptible")
                    || key == "kubernetes.azure.com/scalesetpriority"
            })
        }),
    };
    let shareable = match annotation(SHAREABLE_ANNOTATION) {
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(error(
                format!("metadata.annotations[{SHAREABLE_ANNOTATION}]"),
                format!("{other:?} is not true or false"),
            ));
        }
        None => spec
            .node_selector
            .as_ref()
            .and_then(|s| s.get(SHARING_STRATEGY_LABEL))
            .is_some_and(|v| v == "time-slicing"),
    };
    let checkpoint_every = annotation(CHECKPOINT_ANNOTATION)
        .map(|text| {
            humantime::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    error(
                        format!("metadata.annotations[{CHECKPOINT_ANNOTATION}]"),
                        format!("{text:?} is not a duration above 0 (e.g. 30m)"),
                    )
                })
        })
        .transpose()?;

    Ok(Ok((
        created.0.as_nanosecond(),
        PodSpec {
            name,
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            arrival: Duration::ZERO,
            duration: nanos(ran),
            gpus,
            slice,
            accelerator: accelerator(spec, gpu_label),
            interruptible,
            checkpoint_every,
            shareable,
        },
    )))
}

/// The GPU type a pod requires: `spec.nodeSelector[gpu_label]`, else the one value of the
/// required node-affinity `In` expressions on `gpu_label` (when they all name the same one).
fn accelerator(spec: &core::PodSpec, gpu_label: &str) -> Option<String> {
    if let Some(value) = spec.node_selector.as_ref().and_then(|s| s.get(gpu_label)) {
        return Some(value.clone());
    }
    let required = spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    let mut found: Option<&String> = None;
    for term in &required.node_selector_terms {
        for expression in term.match_expressions.iter().flatten() {
            if expression.key != gpu_label || expression.operator != "In" {
                continue;
            }
            match expression.values.as_deref() {
                Some([value]) if found.is_none_or(|f| f == value) => found = Some(value),
                _ => return None,
            }
        }
    }
    found.cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "gpupool.dev/accelerator";

    /// Four pods: an H100 training pod, a MIG notebook, a running pod and a CPU pod.
    const FOUR: &str = r#"{
      "apiVersion": "v1",
      "kind": "List",
      "metadata": {"resourceVersion": ""},
      "items": [
        {
          "apiVersion": "v1", "kind": "Pod",
          "metadata": {
            "name": "train-a", "namespace": "research",
            "creationTimestamp": "2025-03-03T10:00:00Z",
            "annotations": {"gpupool.dev/checkpoint-every": "15m"}
          },
          "spec": {
            "nodeSelector": {"gpupool.dev/accelerator": "nvidia-h100-80gb"},
            "tolerations": [
              {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
              {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
            ],
            "containers": [
              {"name": "trainer", "image": "t",
               "resources": {"limits": {"nvidia.com/gpu": "4", "cpu": "8"}, "requests": {"nvidia.com/gpu": "4"}}},
              {"name": "helper", "image": "h",
               "resources": {"requests": {"nvidia.com/gpu": "2", "memory": "1Gi"}}},
              {"name": "logger", "image": "l"}
            ]
          },
          "status": {
            "phase": "Succeeded",
            "startTime": "2025-03-03T10:02:00Z",
            "containerStatuses": [
              {"name": "trainer", "image": "t", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 0, "startedAt": "2025-03-03T10:02:30Z", "finishedAt": "2025-03-03T12:32:30Z"}}},
              {"name": "helper", "image": "h", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 0, "startedAt": "2025-03-03T10:02:30Z", "finishedAt": "2025-03-03T12:30:00Z"}}}
            ]
          }
        },
        {
          "metadata": {
            "name": "nb-x", "namespace": "data-science",
            "creationTimestamp": "2025-03-03T09:00:00Z",
            "annotations": {"gpupool.dev/interruptible": "true"}
          },
          "spec": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
              "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]},
                {"key": "gpupool.dev/accelerator", "operator": "In", "values": ["nvidia-a100-80gb"]}
              ]}]
            }}},
            "initContainers": [{"name": "fetch", "image": "f"}],
            "containers": [
              {"name": "lab", "image": "j", "resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}}}
            ]
          },
          "status": {
            "phase": "Failed",
            "initContainerStatuses": [
              {"name": "fetch", "image": "f", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 0, "startedAt": "2025-03-03T09:00:10Z", "finishedAt": "2025-03-03T09:00:20Z"}}}
            ],
            "containerStatuses": [
              {"name": "lab", "image": "j", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 137, "startedAt": "2025-03-03T09:00:20Z", "finishedAt": "2025-03-03T09:45:10.5Z"}}}
            ]
          }
        },
        {
          "apiVersion": "v1", "kind": "Pod",
          "metadata": {"name": "serve-1", "namespace": "serving", "creationTimestamp": "2025-03-03T08:00:00Z"},
          "spec": {"containers": [{"name": "s", "image": "s", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
          "status": {"phase": "Running", "startTime": "2025-03-03T08:01:00Z"}
        },
        {
          "apiVersion": "v1", "kind": "Pod",
          "metadata": {"name": "etl", "creationTimestamp": "2025-03-03T07:00:00Z"},
          "spec": {"containers": [{"name": "e", "image": "e", "resources": {"limits": {"cpu": "2"}}}]},
          "status": {
            "phase": "Succeeded", "startTime": "2025-03-03T07:00:05Z",
            "containerStatuses": [
              {"name": "e", "image": "e", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 0, "finishedAt": "2025-03-03T07:10:00Z"}}}
            ]
          }
        }
      ]
    }"#;

    /// A finished pod with these extra metadata, spec and status keys (JSON fragments).
    fn pod(name: &str, metadata: &str, spec: &str, status: &str) -> String {
        format!(
            r#"{{"kind": "Pod", "apiVersion": "v1",
              "metadata": {{"name": "{name}", "namespace": "ns", "creationTimestamp": "2025-01-01T00:00:00Z" {metadata}}},
              "spec": {{"containers": [{{"name": "c", "resources": {{"limits": {{"nvidia.com/gpu": "1"}}}}}}] {spec}}},
              "status": {{"phase": "Succeeded", "startTime": "2025-01-01T00:01:00Z",
                "containerStatuses": [{{"name": "c", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                  "state": {{"terminated": {{"exitCode": 0, "finishedAt": "2025-01-01T01:01:00Z"}}}}}}] {status}}}}}"#
        )
    }

    fn list(items: &[String]) -> String {
        format!(
            r#"{{"kind": "PodList", "apiVersion": "v1", "items": [{}]}}"#,
            items.join(",")
        )
    }

    #[test]
    fn imports_gpu_and_mig_pods_and_skips_the_rest() {
        let (trace, report) = from_pod_list("history", FOUR, LABEL).unwrap();
        assert_eq!(trace.name, "history");
        assert_eq!(
            trace.pods,
            [
                PodSpec {
                    name: "nb-x".into(),
                    namespace: "data-science".into(),
                    arrival: Duration::ZERO,
                    // From the init container's start to the last container's end.
                    duration: Duration::from_millis(45 * 60 * 1000 + 500),
                    gpus: 0,
                    slice: Some("1g.10gb".into()),
                    accelerator: Some("nvidia-a100-80gb".into()),
                    interruptible: true,
                    checkpoint_every: None,
                    shareable: false,
                },
                PodSpec {
                    name: "train-a".into(),
                    namespace: "research".into(),
                    arrival: Duration::from_secs(3600),
                    // From status.startTime to the latest finishedAt.
                    duration: Duration::from_secs(2 * 3600 + 30 * 60 + 30),
                    // 4 from limits, 2 from the helper's requests.
                    gpus: 6,
                    slice: None,
                    accelerator: Some("nvidia-h100-80gb".into()),
                    interruptible: true,
                    checkpoint_every: Some(Duration::from_secs(15 * 60)),
                    shareable: false,
                },
            ]
        );
        assert_eq!(
            report,
            ImportReport {
                pods: 2,
                skipped: vec![
                    (
                        "serving/serve-1".into(),
                        "phase Running: only Succeeded and Failed pods have finished".into()
                    ),
                    ("default/etl".into(), "no GPU".into()),
                ],
            }
        );
    }

    #[test]
    fn names_made_unique_across_namespaces() {
        let a = pod("job", "", "", "");
        let b = a.replace(r#""namespace": "ns""#, r#""namespace": "other""#);
        let (trace, report) = from_pod_list("h", &list(&[a, b]), LABEL).unwrap();
        let names: Vec<_> = trace
            .pods
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        assert_eq!(names, ["ns/job", "other/job-2"]);
        assert_eq!(report.pods, 2);
        assert!(report.skipped.is_empty());
    }

    #[test]
    fn shareable_from_the_time_slicing_selector_and_annotation() {
        let shareable =
            |json: String| from_pod_list("h", &list(&[json]), LABEL).unwrap().0.pods[0].shareable;
        let selecting = |strategy: &str| {
            pod(
                "p",
                "",
                &format!(
                    r#", "nodeSelector": {{"nvidia.com/gpu.sharing-strategy": "{strategy}"}}"#
                ),
                "",
            )
        };
        assert!(shareable(selecting("time-slicing")));
        assert!(!shareable(selecting("mps")));
        assert!(!shareable(pod("p", "", "", "")));
        // The annotation wins over the selector.
        let annotated = selecting("time-slicing").replace(
            r#""creationTimestamp""#,
            r#""annotations": {"gpupool.dev/shareable": "false"}, "creationTimestamp""#,
        );
        assert!(!shareable(annotated));
        let marked = pod(
            "p",
            r#", "annotations": {"gpupool.dev/shareable": "true"}"#,
            "",
            "",
        );
        assert!(shareable(marked));
        let bad = pod(
            "a",
            r#", "annotations": {"gpupool.dev/shareable": "1"}"#,
            "",
            "",
        );
        assert_eq!(
            from_pod_list("hist.json", &list(&[bad]), LABEL)
                .unwrap_err()
                .to_string(),
            "hist.json: pod ns/a: metadata.annotations[gpupool.dev/shareable]: \"1\" is not true or false"
        );
    }

    #[test]
    fn interruptible_from_tolerations_and_annotation() {
        let tolerating = |key: &str| {
            pod(
                "p",
                "",
                &format!(r#", "tolerations": [{{"key": "{key}", "operator": "Exists"}}]"#),
                "",
            )
        };
        let interruptible = |json: String| {
            from_pod_list("h", &list(&[json]), LABEL).unwrap().0.pods[0].interruptible
        };
        assert!(interruptible(tolerating(
            "cloud.google.com/gke-preemptible"
        )));
        assert!(interruptible(tolerating(
            "kubernetes.azure.com/scalesetpriority"
        )));
        assert!(interruptible(tolerating("eks.amazonaws.com/Spot")));
        assert!(!interruptible(tolerating("nvidia.com/gpu")));
        assert!(!interruptible(pod("p", "", "", "")));
        // The annotation wins over the tolerations.
        let annotated = tolerating("cloud.google.com/gke-spot").replace(
            r#""creationTimestamp""#,
            r#""annotations": {"gpupool.dev/interruptible": "false"}, "creationTimestamp""#,
        );
        assert!(!interruptible(annotated));
    }

    #[test]
    fn accelerator_from_affinity_only_when_unambiguous() {
        let affinity = |values: &str, operator: &str| {
            pod(
                "p",
                "",
                &format!(
                    r#", "affinity": {{"nodeAffinity": {{"requiredDuringSchedulingIgnoredDuringExecution": {{"nodeSelectorTerms": [{{"matchExpressions": [{{"key": "{LABEL}", "operator": "{operator}", "values": {values}}}]}}]}}}}}}"#
                ),
                "",
            )
        };
        let accelerator = |json: String| {
            from_pod_list("h", &list(&[json]), LABEL).unwrap().0.pods[0]
                .accelerator
                .clone()
        };
        assert_eq!(
            accelerator(affinity(r#"["nvidia-l4"]"#, "In")),
            Some("nvidia-l4".into())
        );
        assert_eq!(
            accelerator(affinity(r#"["nvidia-l4", "nvidia-a10g"]"#, "In")),
            None
        );
        assert_eq!(accelerator(affinity(r#"["nvidia-l4"]"#, "NotIn")), None);
        assert_eq!(accelerator(pod("p", "", "", "")), None);
    }

    #[test]
    fn skips_say_why() {
        let skipped = |json: String| {
            let with_good = list(&[json, pod("good", "", "", "")]);
            let (_, report) = from_pod_list("h", &with_good, LABEL).unwrap();
            assert_eq!(report.pods, 1);
            report.skipped[0].1.clone()
        };
        let no_start = pod("a", "", "", "").replace(r#""startTime": "2025-01-01T00:01:00Z","#, "");
        assert_eq!(
            skipped(no_start),
            "no status.startTime and no container's state.terminated.startedAt"
        );
        let no_finish = pod("a", "", "", "").replace(
            r#""finishedAt": "2025-01-01T01:01:00Z""#,
            r#""reason": "x""#,
        );
        assert_eq!(
            skipped(no_finish),
            "no container's state.terminated.finishedAt"
        );
        let backwards = pod("a", "", "", "").replace("T01:01:00Z", "T00:00:30Z");
        assert!(skipped(backwards).ends_with(": no run time"));
        let mixed = pod("a", "", "", "").replace(
            r#""nvidia.com/gpu": "1""#,
            r#""nvidia.com/gpu": "1", "nvidia.com/mig-1g.10gb": "1""#,
        );
        assert_eq!(
            skipped(mixed),
            "both whole GPUs and MIG slices: a trace pod asks for one kind"
        );
        let two_slices = pod("a", "", "", "").replace(
            r#""nvidia.com/gpu": "1""#,
            r#""nvidia.com/mig-1g.10gb": "2""#,
        );
        assert_eq!(
            skipped(two_slices),
            "2 MIG slices 1g.10gb: a trace pod asks for one slice"
        );
        let profiles = pod("a", "", "", "").replace(
            r#""nvidia.com/gpu": "1""#,
            r#""nvidia.com/mig-1g.10gb": "1", "nvidia.com/mig-2g.20gb": "1""#,
        );
        assert_eq!(
            skipped(profiles),
            "MIG slices of several profiles (1g.10gb, 2g.20gb): a trace pod asks for one slice"
        );
        let pending = pod("a", "", "", "").replace("Succeeded", "Pending");
        assert_eq!(
            skipped(pending),
            "phase Pending: only Succeeded and Failed pods have finished"
        );
        let job = r#"{"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": "j", "namespace": "ns"}}"#;
        assert_eq!(skipped(job.to_owned()), "a Job, not a Pod");
    }

    #[test]
    fn errors_name_the_pod() {
        let err = |json: &str| {
            from_pod_list("hist.json", json, LABEL)
                .unwrap_err()
                .to_string()
        };
        let bad_checkpoint = pod(
            "a",
            r#", "annotations": {"gpupool.dev/checkpoint-every": "soon"}"#,
            "",
            "",
        );
        assert_eq!(
            err(&list(&[bad_checkpoint])),
            "hist.json: pod ns/a: metadata.annotations[gpupool.dev/checkpoint-every]: \"soon\" is not a duration above 0 (e.g. 30m)"
        );
        let bad_flag = pod(
            "a",
            r#", "annotations": {"gpupool.dev/interruptible": "yes"}"#,
            "",
            "",
        );
        assert_eq!(
            err(&list(&[bad_flag])),
            "hist.json: pod ns/a: metadata.annotations[gpupool.dev/interruptible]: \"yes\" is not true or false"
        );
        let half_gpu =
            pod("a", "", "", "").replace(r#""nvidia.com/gpu": "1""#, r#""nvidia.com/gpu": "500m""#);
        assert_eq!(
            err(&list(&[half_gpu])),
            "hist.json: pod ns/a: spec.containers[0].resources.limits[nvidia.com/gpu]: \"500m\" is not a whole number of devices"
        );
        let malformed =
            pod("a", "", "", "").replace(r#""restartCount": 0"#, r#""restartCount": "many""#);
        let message = err(&list(&[malformed]));
        assert!(
            message.starts_with("hist.json: pod ns/a: status.containerStatuses[0].restartCount: invalid type: string"),
            "{message}"
        );
        assert_eq!(
            err(r#"{"kind": "Pod", "items": []}"#),
            "hist.json: kind Pod: expected a List or PodList, as `kubectl get pods -A -o json` prints"
        );
        assert_eq!(err(r#"{"kind": "List"}"#), "hist.json: no items list");
        assert!(err("[").starts_with("hist.json: not JSON: "));
        let running = pod("a", "", "", "").replace("Succeeded", "Running");
        assert_eq!(
            err(&list(&[running])),
            "hist.json: no finished GPU pod to import (1 in the list; ns/a: phase Running: only Succeeded and Failed pods have finished)"
        );
    }
}
