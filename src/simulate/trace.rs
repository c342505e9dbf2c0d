//! Workload traces for `gpupool simulate`: the pods that arrive, how long each must run, what
//! GPU it asks for and whether it may run on spot capacity. Read from CSV or JSONL (the format
//! is in `docs/traces.md`), built in ([`super::builtin`]) or imported from a cluster's pod
//! history ([`super::import`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The columns of a CSV trace (and the keys of a JSONL one), in the order [`Trace::to_csv`]
/// writes them.
pub const COLUMNS: [&str; 10] = [
    "name",
    "namespace",
    "arrival",
    "duration",
    "gpus",
    "slice",
    "accelerator",
    "interruptible",
    "checkpoint_every",
    "shareable",
];

/// Columns a CSV header must have (the others may be left out: their defaults apply).
const REQUIRED: [&str; 3] = ["name", "arrival", "duration"];

/// A workload: pods sorted by (arrival, name), names unique.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub name: String,
    pub pods: Vec<PodSpec>,
}

/// One pod of a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSpec {
    /// Unique within the trace.
    pub name: String,
    /// The team; default `default`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Since the trace's start.
    #[serde(with = "humantime_serde")]
    pub arrival: Duration,
    /// Run time the pod needs to finish (> 0).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Whole GPUs; 0 when `slice` is set.
    #[serde(default)]
    pub gpus: u32,
    /// A MIG profile such as `1g.10gb`, then `gpus` is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    /// Required GPU type (the node's accelerator label value, e.g. `nvidia-l4`); None = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    /// May run on spot capacity.
    #[serde(default)]
    pub interruptible: bool,
    /// Checkpointed: an interruption loses at most this much progress. None: an interruption
    /// loses all progress.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub checkpoint_every: Option<Duration>,
    /// Accepts a time-sliced share of a GPU (a notebook idle most of the
    /// time, a light inference server): may run on nodes whose GPUs are
    /// shared by time-slicing, where it holds one replica. Others never do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shareable: bool,
}

fn default_namespace() -> String {
    "default".to_owned()
}

impl PodSpec {
    /// The GPUs the pod occupies: `gpus`, or `<n>/7` for a MIG slice `<n>g.<m>gb`.
    pub fn gpu_share(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // at most 7 × u32::MAX
        let sevenths = self.sevenths() as f64;
        sevenths / 7.0
    }

    /// The GPUs the pod occupies in sevenths of a GPU (exact, for sums).
    fn sevenths(&self) -> u64 {
        match &self.slice {
            Some(profile) => mig_profile(profile).map_or(0, |(n, _)| u64::from(n)),
            None => u64::from(self.gpus) * 7,
        }
    }
}

/// Why a trace could not be read. Every message names where: the line (1-based) and field of
/// a CSV or JSONL trace, or the pod of an imported one.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The whole file: it cannot be read, has no pods, an unknown extension.
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    /// One field of one line.
    #[error("{file} line {line}: {field}: {reason}")]
    Field {
        file: String,
        line: usize,
        field: String,
        reason: String,
    },
    /// A whole line (not JSON, a wrong number of cells).
    #[error("{file} line {line}: {reason}")]
    Line {
        file: String,
        line: usize,
        reason: String,
    },
    /// A name that an earlier line already has.
    #[error("{file} line {line}: name: {name:?} is also the name on line {first}")]
    Duplicate {
        file: String,
        line: usize,
        first: usize,
        name: String,
    },
    /// One field of one pod (of [`Trace::new`] or an imported pod list).
    #[error("{file}: pod {pod}: {field}: {reason}")]
    Pod {
        file: String,
        pod: String,
        field: String,
        reason: String,
    },
}

impl Trace {
    /// A trace of these pods, checked as a file's would be and sorted by (arrival, name).
    /// Errors name the pod.
    pub fn new(name: &str, pods: Vec<PodSpec>) -> Result<Trace, TraceError> {
        let mut seen = HashSet::new();
        for pod in &pods {
            check_pod(pod).map_err(|(field, reason)| TraceError::Pod {
                file: name.to_owned(),
                pod: pod.name.clone(),
                field: field.to_owned(),
                reason,
            })?;
            if !seen.insert(pod.name.as_str()) {
                return Err(TraceError::Pod {
                    file: name.to_owned(),
                    pod: pod.name.clone(),
                    field: "name".to_owned(),
                    reason: "two pods have this name".to_owned(),
                });
            }
        }
        if pods.is_empty() {
            return Err(empty(name));
        }
        Ok(Trace::sorted(name, pods))
    }

    /// Sorts without checking (for pods known to be valid).
    pub(crate) fn sorted(name: &str, mut pods: Vec<PodSpec>) -> Trace {
        pods.sort_by(|a, b| (a.arrival, &a.name).cmp(&(b.arrival, &b.name)));
        Trace {
            name: name.to_owned(),
            pods,
        }
    }

    /// Reads a `.csv` or `.jsonl` trace; the trace is named after the file's stem, errors after
    /// the path.
    pub fn from_path(path: &Path) -> Result<Trace, TraceError> {
        let file = path.display().to_string();
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let parse = match extension {
            "csv" => parse_csv,
            "jsonl" => parse_jsonl,
            _ => {
                let had = if extension.is_empty() {
                    "no extension".to_owned()
                } else {
                    format!("the extension .{extension}")
                };
                return Err(TraceError::File {
                    file,
                    reason: format!("{had}: a trace is a .csv or a .jsonl file"),
                });
            }
        };
        let text = std::fs::read_to_string(path).map_err(|e| TraceError::File {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let name = path
            .file_stem()
            .map_or_else(|| file.clone(), |s| s.to_string_lossy().into_owned());
        let pods = parse(&file, &text)?;
        finish(&name, &file, pods)
    }

    /// A CSV trace (header line first); `name` names the trace and its errors.
    pub fn from_csv(name: &str, text: &str) -> Result<Trace, TraceError> {
        finish(name, name, parse_csv(name, text)?)
    }

    /// A JSONL trace (one JSON object per line); `name` names the trace and its errors.
    pub fn from_jsonl(name: &str, text: &str) -> Result<Trace, TraceError> {
        finish(name, name, parse_jsonl(name, text)?)
    }

    /// The trace as CSV, every column present; [`Trace::from_csv`] reads it back.
    pub fn to_csv(&self) -> String {
        let mut out = COLUMNS.join(",");
        out.push('\n');
        for pod in &self.pods {
            let optional = |d: Option<Duration>| d.map(fmt_duration).unwrap_or_default();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                pod.name,
                pod.namespace,
                fmt_duration(pod.arrival),
                fmt_duration(pod.duration),
                pod.gpus,
                pod.slice.as_deref().unwrap_or(""),
                pod.accelerator.as_deref().unwrap_or(""),
                pod.interruptible,
                optional(pod.checkpoint_every),
                pod.shareable,
            );
        }
        out
    }

    /// The trace as JSONL; [`Trace::from_jsonl`] reads it back.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for pod in &self.pods {
            out.push_str(&serde_json::to_string(pod).expect("a PodSpec serialises"));
            out.push('\n');
        }
        out
    }

    /// When the last pod would finish if every pod started on arrival.
    pub fn span(&self) -> Duration {
        self.pods
            .iter()
            .map(|p| p.arrival + p.duration)
            .max()
            .unwrap_or_default()
    }

    /// Peak concurrent demand if every pod started on arrival, per accelerator (None: pods
    /// that take any), in GPUs; a MIG slice `<n>g.<m>gb` counts as `n/7` of a GPU.
    pub fn peak_gpus(&self) -> BTreeMap<Option<String>, f64> {
        // (time, is start, sevenths): at equal times ends come first, so a pod that ends
        // when another starts does not overlap it.
        let mut events: BTreeMap<&Option<String>, Vec<(Duration, bool, u64)>> = BTreeMap::new();
        for pod in &self.pods {
            let share = pod.sevenths();
            let list = events.entry(&pod.accelerator).or_default();
            list.push((pod.arrival, true, share));
            list.push((pod.arrival + pod.duration, false, share));
        }
        events
            .into_iter()
            .map(|(accelerator, mut list)| {
                list.sort_unstable();
                let (mut now, mut peak) = (0u64, 0u64);
                for (_, start, share) in list {
                    if start {
                        now += share;
                        peak = peak.max(now);
                    } else {
                        now -= share;
                    }
                }
                (accelerator.clone(), peak as f64 / 7.0)
            })
            .collect()
    }
}

fn empty(file: &str) -> TraceError {
    TraceError::File {
        file: file.to_owned(),
        reason: "the trace has no pods".to_owned(),
    }
}

/// Checks names are unique (naming both lines), that there is a pod, and sorts.
fn finish(name: &str, file: &str, pods: Vec<(usize, PodSpec)>) -> Result<Trace, TraceError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (line, pod) in &pods {
        if let Some(first) = seen.insert(pod.name.as_str(), *line) {
            return Err(TraceError::Duplicate {
                file: file.to_owned(),
                line: *line,
                first,
                name: pod.name.clone(),
            });
        }
    }
    if pods.is_empty() {
        return Err(empty(file));
    }
    Ok(Trace::sorted(
        name,
        pods.into_iter().map(|(_, pod)| pod).collect(),
    ))
}

/// `humantime`'s format (`2h 30m`, `0s`), which `humantime::parse_duration` reads back.
fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Parses a CSV trace into (line, pod) pairs.
fn parse_csv(file: &str, text: &str) -> Result<Vec<(usize, PodSpec)>, TraceError> {
    let field_error = |line: usize, field: &str, reason: String| TraceError::Field {
        file: file.to_owned(),
        line,
        field: field.to_owned(),
        reason,
    };
    let mut header: Option<Vec<&str>> = None;
    let mut pods = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = if index == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        let Some(columns) = &header else {
            for (i, cell) in cells.iter().enumerate() {
                if cell.is_empty() {
                    return Err(TraceError::Line {
                        file: file.to_owned(),
                        line,
                        reason: format!("header: column {} has no name (a trailing comma?)", i + 1),
                    });
                }
                if !COLUMNS.contains(cell) {
                    return Err(field_error(
                        line,
                        cell,
                        format!(
                            "unknown column (the first line is the header; the columns are {})",
                            COLUMNS.join(", ")
                        ),
                    ));
                }
                if cells[..i].contains(cell) {
                    return Err(field_error(
                        line,
                        cell,
                        "a second column of this name".into(),
                    ));
                }
            }
            if let Some(missing) = REQUIRED.iter().find(|c| !cells.contains(c)) {
                return Err(field_error(
                    line,
                    missing,
                    "the header has no such column; every trace needs name, arrival and duration"
                        .into(),
                ));
            }
            header = Some(cells);
            continue;
        };
        if cells.len() != columns.len() {
            return Err(TraceError::Line {
                file: file.to_owned(),
                line,
                reason: format!(
                    "{} cells, but the header has {} columns (no cell may contain a comma)",
                    cells.len(),
                    columns.len()
                ),
            });
        }
        let get = |column: &str| {
            columns
                .iter()
                .position(|c| *c == column)
                .map(|i| cells[i])
                .filter(|cell| !cell.is_empty())
        };
        let pod =
            pod_from_cells(get).map_err(|(field, reason)| field_error(line, field, reason))?;
        pods.push((line, pod));
    }
    if header.is_none() {
        return Err(TraceError::File {
            file: file.to_owned(),
            reason: format!("no header line (expected {})", COLUMNS.join(",")),
        });
    }
    Ok(pods)
}

/// Parses a JSONL trace into (line, pod) pairs.
fn parse_jsonl(file: &str, text: &str) -> Result<Vec<(usize, PodSpec)>, TraceError> {
    let mut pods = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = if index == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        };
        if raw.trim().is_empty() {
            continue;
        }
        let line_error = |reason: String| TraceError::Line {
            file: file.to_owned(),
            line,
            reason,
        };
        let field_error = |field: &str, reason: String| TraceError::Field {
            file: file.to_owned(),
            line,
            field: field.to_owned(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| line_error(format!("not a JSON object: {e}")))?;
        let serde_json::Value::Object(object) = value else {
            return Err(line_error("not a JSON object".into()));
        };
        // Every value as the text a CSV cell would hold, after checking its JSON type.
        let mut cells: HashMap<&str, String> = HashMap::new();
        for (key, value) in &object {
            let Some(column) = COLUMNS.iter().find(|c| **c == key.as_str()) else {
                return Err(field_error(
                    key,
                    format!("unknown key (the keys are {})", COLUMNS.join(", ")),
                ));
            };
            let text = match (*column, value) {
                (_, serde_json::Value::Null) => continue,
                ("gpus", serde_json::Value::Number(n)) => n.to_string(),
                ("gpus", other) => {
                    return Err(field_error(key, format!("{other} is not a number")));
                }
                ("interruptible" | "shareable", serde_json::Value::Bool(b)) => b.to_string(),
                ("interruptible" | "shareable", other) => {
                    return Err(field_error(key, format!("{other} is not true or false")));
                }
                (_, serde_json::Value::String(s)) => s.clone(),
                (_, other) => {
                    return Err(field_error(key, format!("{other} is not a string")));
                }
            };
            cells.insert(column, text);
        }
        let get = |column: &str| cells.get(column).map(String::as_str);
        let pod = pod_from_cells(get).map_err(|(field, reason)| field_error(field, reason))?;
        pods.push((line, pod));
    }
    Ok(pods)
}

/// A pod from its cells (absent or empty: the default), checked; an error is (field, reason).
fn pod_from_cells<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<PodSpec, (&'static str, String)> {
    let required = |field: &'static str| get(field).ok_or((field, "missing".to_owned()));
    let duration = |field: &'static str, text: &str| {
        humantime::parse_duration(text)
            .map_err(|e| (field, format!("{text:?} is not a duration ({e})")))
    };
    let flag = |field: &'static str| match get(field) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err((field, format!("{other:?} is not true or false"))),
    };
    let pod = PodSpec {
        name: required("name")?.to_owned(),
        namespace: get("namespace").map_or_else(default_namespace, str::to_owned),
        arrival: duration("arrival", required("arrival")?)?,
        duration: duration("duration", required("duration")?)?,
        gpus: match get("gpus") {
            None => 0,
            Some(text) => text.parse().map_err(|_| {
                (
                    "gpus",
                    format!("{text:?} is not a whole number of GPUs (0 to {})", u32::MAX),
                )
            })?,
        },
        slice: get("slice").map(str::to_owned),
        accelerator: get("accelerator").map(str::to_owned),
        interruptible: flag("interruptible")?,
        checkpoint_every: get("checkpoint_every")
            .map(|text| duration("checkpoint_every", text))
            .transpose()?,
        shareable: flag("shareable")?,
    };
    check_pod(&pod)?;
    Ok(pod)
}

/// What every trace pod must satisfy; an error is (field, reason).
fn check_pod(pod: &PodSpec) -> Result<(), (&'static str, String)> {
    if !is_dns_subdomain(&pod.name) {
        return Err((
            "name",
            format!(
                "{:?} is not a Kubernetes name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)",
                pod.name
            ),
        ));
    }
    if !is_dns_label(&pod.namespace) {
        return Err((
            "namespace",
            format!(
                "{:?} is not a Kubernetes namespace (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)",
                pod.namespace
            ),
        ));
    }
    if pod.duration.is_zero() {
        return Err(("duration", "must be more than 0".to_owned()));
    }
    match (&pod.slice, pod.gpus) {
        (None, 0) => {
            return Err((
                "gpus",
                "a trace pod asks for whole GPUs (gpus, at least 1) or a MIG slice (slice)"
                    .to_owned(),
            ));
        }
        (Some(_), 1..) => {
            return Err((
                "gpus",
                format!(
                    "{} with a MIG slice: a pod asks for whole GPUs or one slice, not both (leave gpus empty or 0)",
                    pod.gpus
                ),
            ));
        }
        (Some(profile), 0) if mig_profile(profile).is_none() => {
            return Err((
                "slice",
                format!(
                    "{profile:?} is not a MIG profile <n>g.<m>gb such as 1g.10gb or 3g.40gb (n from 1 to 7)"
                ),
            ));
        }
        _ => {}
    }
    if let Some(accelerator) = &pod.accelerator
        && !is_label_value(accelerator)
    {
        return Err((
            "accelerator",
            format!(
                "{accelerator:?} is not a label value (letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters)"
            ),
        ));
    }
    if pod.checkpoint_every.is_some_and(|d| d.is_zero()) {
        return Err(("checkpoint_every", "must be more than 0".to_owned()));
    }
    Ok(())
}

/// A MIG profile `<n>g.<m>gb` as (n, m): n compute slices of 7, m GB of memory.
pub fn mig_profile(profile: &str) -> Option<(u32, u32)> {
    let (compute, memory) = profile.split_once("g.")?;
    let memory = memory.strip_suffix("gb")?;
    let digits =
        |s: &str| !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(compute) || !digits(memory) {
        return None;
    }
    let n: u32 = compute.parse().ok()?;
    let m: u32 = memory.parse().ok()?;
    (1..=7).contains(&n).then_some((n, m))
}

/// An RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns_label(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().next().is_some_and(|b| b != b'-')
        && s.bytes().last().is_some_and(|b| b != b'-')
}

/// An RFC 1123 subdomain (a pod's name): dot-separated labels, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A Kubernetes label value, not empty: `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, ≤ 63.
fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn sample() -> Trace {
        Trace::new(
            "sample",
            vec![
                PodSpec {
                    name: "train-1".into(),
                    namespace: "research".into(),
                    arrival: secs(3600),
                    duration: secs(2 * 3600 + 30 * MIN),
                    gpus: 8,
                    slice: None,
                    accelerator: Some("nvidia-h100-80gb".into()),
                    interruptible: true,
                    checkpoint_every: Some(secs(30 * MIN)),
                    shareable: false,
                },
                PodSpec {
                    name: "nb-a".into(),
                    namespace: "data-science".into(),
                    arrival: Duration::ZERO,
                    duration: Duration::from_millis(90_500),
                    gpus: 0,
                    slice: Some("1g.10gb".into()),
                    accelerator: Some("nvidia-a100-80gb".into()),
                    interruptible: false,
                    checkpoint_every: None,
                    shareable: false,
                },
                PodSpec {
                    name: "any.gpu".into(),
                    namespace: "default".into(),
                    arrival: secs(86_400),
                    duration: secs(1),
                    gpus: 1,
                    slice: None,
                    accelerator: None,
                    interruptible: false,
                    checkpoint_every: None,
                    shareable: true,
                },
            ],
        )
        .unwrap()
    }

    const HEADER: &str =
        "name,namespace,arrival,duration,gpus,slice,accelerator,interruptible,checkpoint_every\n";

    fn csv_error(body: &str) -> String {
        Trace::from_csv("trace.csv", &format!("{HEADER}{body}"))
            .unwrap_err()
            .to_string()
    }

    fn jsonl_error(body: &str) -> String {
        Trace::from_jsonl("trace.jsonl", body)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn new_sorts_by_arrival_then_name() {
        let trace = sample();
        let names: Vec<_> = trace.pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["nb-a", "train-1", "any.gpu"]);
    }

    #[test]
    fn csv_round_trips() {
        let trace = sample();
        let csv = trace.to_csv();
        assert!(
            csv.starts_with(&format!("{},shareable\n", HEADER.trim_end())),
            "{csv}"
        );
        assert!(
            csv.contains("train-1,research,1h,2h 30m,8,,nvidia-h100-80gb,true,30m,false\n"),
            "{csv}"
        );
        assert!(
            csv.contains(
                "nb-a,data-science,0s,1m 30s 500ms,0,1g.10gb,nvidia-a100-80gb,false,,false\n"
            ),
            "{csv}"
        );
        assert!(
            csv.contains("any.gpu,default,1day,1s,1,,,false,,true\n"),
            "{csv}"
        );
        assert_eq!(Trace::from_csv("sample", &csv).unwrap(), trace);
    }

    #[test]
    fn jsonl_round_trips() {
        let trace = sample();
        let jsonl = trace.to_jsonl();
        assert_eq!(jsonl.lines().count(), 3);
        assert!(
            jsonl.contains(
                r#"{"name":"train-1","namespace":"research","arrival":"1h","duration":"2h 30m","gpus":8,"accelerator":"nvidia-h100-80gb","interruptible":true,"checkpoint_every":"30m"}"#
            ),
            "{jsonl}"
        );
        // `shareable` is written only when true.
        assert!(
            jsonl.contains(r#""gpus":1,"interruptible":false,"shareable":true}"#),
            "{jsonl}"
        );
        assert_eq!(Trace::from_jsonl("sample", &jsonl).unwrap(), trace);
        // The derived Deserialize reads the same lines.
        let first: PodSpec = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
        assert_eq!(first, trace.pods[0]);
    }

    #[test]
    fn csv_columns_in_any_order_with_defaults_comments_and_blank_lines() {
        // Columns reordered and some left out; line 5 has neither gpus nor a slice.
        let text = "\u{feff}# a hand-written trace\n\n duration , arrival,name ,slice\n# one pod\n30m, 90s ,nb-1,\r\n\n1d,2h 30m,nb-2,3g.40gb\n";
        let err = Trace::from_csv("t.csv", text).unwrap_err().to_string();
        assert_eq!(
            err,
            "t.csv line 5: gpus: a trace pod asks for whole GPUs (gpus, at least 1) or a MIG slice (slice)"
        );
        let text = text.replace("30m, 90s ,nb-1,", "30m, 90s ,nb-1,2g.20gb");
        let trace = Trace::from_csv("t", &text).unwrap();
        assert_eq!(trace.name, "t");
        assert_eq!(
            trace.pods,
            [
                PodSpec {
                    name: "nb-1".into(),
                    namespace: "default".into(),
                    arrival: secs(90),
                    duration: secs(30 * MIN),
                    gpus: 0,
                    slice: Some("2g.20gb".into()),
                    accelerator: None,
                    interruptible: false,
                    checkpoint_every: None,
                    shareable: false,
                },
                PodSpec {
                    name: "nb-2".into(),
                    namespace: "default".into(),
                    arrival: secs(9000),
                    duration: secs(86_400),
                    gpus: 0,
                    slice: Some("3g.40gb".into()),
                    accelerator: None,
                    interruptible: false,
                    checkpoint_every: None,
                    shareable: false,
                },
            ]
        );
    }

    #[test]
    fn csv_header_errors() {
        let err = |text: &str| Trace::from_csv("t.csv", text).unwrap_err().to_string();
        assert_eq!(
            err("# only a comment\n\n"),
            "t.csv: no header line (expected name,namespace,arrival,duration,gpus,slice,accelerator,interruptible,checkpoint_every,shareable)"
        );
        assert_eq!(
            err("name,arrival,duration,gpu\n"),
            "t.csv line 1: gpu: unknown column (the first line is the header; the columns are name, namespace, arrival, duration, gpus, slice, accelerator, interruptible, checkpoint_every, shareable)"
        );
        assert_eq!(
            err("name,arrival,duration,\n"),
            "t.csv line 1: header: column 4 has no name (a trailing comma?)"
        );
        assert_eq!(
            err("# c\nname,arrival,duration,name\n"),
            "t.csv line 2: name: a second column of this name"
        );
        assert_eq!(
            err("name,arrival,gpus\n"),
            "t.csv line 1: duration: the header has no such column; every trace needs name, arrival and duration"
        );
        assert_eq!(
            err("name,arrival,duration,gpus\n"),
            "t.csv: the trace has no pods"
        );
    }

    #[test]
    fn csv_field_errors_name_line_and_field() {
        let cases = [
            (
                "a,default,0s,-5m,1,,,false,",
                "duration: \"-5m\" is not a duration (expected number at 0)",
            ),
            (
                "a,default,soon,5m,1,,,false,",
                "arrival: \"soon\" is not a duration",
            ),
            (
                "a,default,0s,0s,1,,,false,",
                "duration: must be more than 0",
            ),
            (",default,0s,5m,1,,,false,", "name: missing"),
            ("a,default,,5m,1,,,false,", "arrival: missing"),
            ("a,default,0s,,1,,,false,", "duration: missing"),
            (
                "Nb_1,default,0s,5m,1,,,false,",
                "name: \"Nb_1\" is not a Kubernetes name",
            ),
            (
                "a,Team,0s,5m,1,,,false,",
                "namespace: \"Team\" is not a Kubernetes namespace",
            ),
            (
                "a,default,0s,5m,-1,,,false,",
                "gpus: \"-1\" is not a whole number of GPUs",
            ),
            (
                "a,default,0s,5m,1.5,,,false,",
                "gpus: \"1.5\" is not a whole number of GPUs",
            ),
            (
                "a,default,0s,5m,0,,,false,",
                "gpus: a trace pod asks for whole GPUs",
            ),
            (
                "a,default,0s,5m,2,1g.10gb,,false,",
                "gpus: 2 with a MIG slice",
            ),
            (
                "a,default,0s,5m,,1g.10g,,false,",
                "slice: \"1g.10g\" is not a MIG profile",
            ),
            (
                "a,default,0s,5m,,8g.80gb,,false,",
                "slice: \"8g.80gb\" is not a MIG profile",
            ),
            (
                "a,default,0s,5m,1,,nvidia l4,false,",
                "accelerator: \"nvidia l4\" is not a label value",
            ),
            (
                "a,default,0s,5m,1,,,yes,",
                "interruptible: \"yes\" is not true or false",
            ),
            (
                "a,default,0s,5m,1,,,true,0s",
                "checkpoint_every: must be more than 0",
            ),
            (
                "a,default,0s,5m,1,,,true,often",
                "checkpoint_every: \"often\" is not a duration",
            ),
        ];
        for (row, expected) in cases {
            let err = csv_error(&format!("ok,default,0s,5m,1,,,false,\n{row}\n"));
            assert!(
                err.starts_with(&format!("trace.csv line 3: {expected}")),
                "{row}: {err}"
            );
        }
        assert_eq!(
            csv_error("a,default,0s,5m\n"),
            "trace.csv line 2: 4 cells, but the header has 9 columns (no cell may contain a comma)"
        );
        assert_eq!(
            Trace::from_csv(
                "t.csv",
                "name,arrival,duration,gpus,shareable\na,0s,5m,1,maybe\n"
            )
            .unwrap_err()
            .to_string(),
            "t.csv line 2: shareable: \"maybe\" is not true or false"
        );
    }

    #[test]
    fn duplicate_names_name_both_lines() {
        assert_eq!(
            csv_error(
                "a,default,0s,5m,1,,,false,\n# gap\nb,default,0s,5m,1,,,false,\na,x,1m,5m,1,,,false,\n"
            ),
            "trace.csv line 5: name: \"a\" is also the name on line 2"
        );
        assert_eq!(
            jsonl_error(
                "{\"name\":\"a\",\"arrival\":\"0s\",\"duration\":\"1m\",\"gpus\":1}\n\n{\"name\":\"a\",\"arrival\":\"0s\",\"duration\":\"1m\",\"gpus\":1}\n"
            ),
            "trace.jsonl line 3: name: \"a\" is also the name on line 1"
        );
    }

    #[test]
    fn jsonl_defaults_and_nulls() {
        let trace = Trace::from_jsonl(
            "j",
            "\n{\"name\":\"a\",\"arrival\":\"2h 30m\",\"duration\":\"1d\",\"slice\":\"1g.10gb\",\"accelerator\":null}\n  \n",
        )
        .unwrap();
        assert_eq!(
            trace.pods,
            [PodSpec {
                name: "a".into(),
                namespace: "default".into(),
                arrival: secs(9000),
                duration: secs(86_400),
                gpus: 0,
                slice: Some("1g.10gb".into()),
                accelerator: None,
                interruptible: false,
                checkpoint_every: None,
                shareable: false,
            }]
        );
    }

    #[test]
    fn jsonl_errors_name_line_and_field() {
        let ok = "{\"name\":\"ok\",\"arrival\":\"0s\",\"duration\":\"1m\",\"gpus\":1}\n";
        let cases = [
            (
                r#"{"name":"a","arrival":"0s","duration":"1m","gpus":1,"team":"x"}"#,
                "team: unknown key (the keys are name, namespace,",
            ),
            (
                r#"{"name":"a","arrival":"0s","duration":"-5m","gpus":1}"#,
                "duration: \"-5m\" is not a duration",
            ),
            (
                r#"{"name":"a","arrival":0,"duration":"5m","gpus":1}"#,
                "arrival: 0 is not a string",
            ),
            (
                r#"{"name":"a","arrival":"0s","duration":"5m","gpus":"1"}"#,
                "gpus: \"1\" is not a number",
            ),
            (
                r#"{"name":"a","arrival":"0s","duration":"5m","gpus":1.5}"#,
                "gpus: \"1.5\" is not a whole number of GPUs",
            ),
            (
                r#"{"name":"a","arrival":"0s","duration":"5m","gpus":1,"interruptible":"true"}"#,
                "interruptible: \"true\" is not true or false",
            ),
            (
                r#"{"name":"a","arrival":"0s","duration":"5m","gpus":1,"shareable":1}"#,
                "shareable: 1 is not true or false",
            ),
            (
                r#"{"name":"a","arrival":"0s","duration":"5m"}"#,
                "gpus: a trace pod asks for whole GPUs",
            ),
            (
                r#"{"arrival":"0s","duration":"5m","gpus":1}"#,
                "name: missing",
            ),
            (
                r#"{"name":"a","arrival":"0s","duration":"5m","gpus":1,"checkpoint_every":"0s"}"#,
                "checkpoint_every: must be more than 0",
            ),
            (
                r#"{"name":"a","arrival":"0s","#,
                "not a JSON object: EOF while parsing",
            ),
            (r#"["a"]"#, "not a JSON object"),
        ];
        for (line, expected) in cases {
            let err = jsonl_error(&format!("{ok}{line}\n"));
            assert!(
                err.starts_with(&format!("trace.jsonl line 2: {expected}")),
                "{line}: {err}"
            );
        }
        assert_eq!(jsonl_error("\n\n"), "trace.jsonl: the trace has no pods");
    }

    #[test]
    fn from_path_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let trace = sample();
        let csv = dir.path().join("week.csv");
        std::fs::write(&csv, trace.to_csv()).unwrap();
        let jsonl = dir.path().join("week.jsonl");
        std::fs::write(&jsonl, trace.to_jsonl()).unwrap();
        let expected = Trace {
            name: "week".into(),
            ..trace.clone()
        };
        assert_eq!(Trace::from_path(&csv).unwrap(), expected);
        assert_eq!(Trace::from_path(&jsonl).unwrap(), expected);

        let json = dir.path().join("week.json");
        std::fs::write(&json, trace.to_jsonl()).unwrap();
        let err = Trace::from_path(&json).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: the extension .json: a trace is a .csv or a .jsonl file",
                json.display()
            )
        );
        let bare = dir.path().join("week");
        let err = Trace::from_path(&bare).unwrap_err().to_string();
        assert!(
            err.ends_with(": no extension: a trace is a .csv or a .jsonl file"),
            "{err}"
        );
        let missing = dir.path().join("gone.csv");
        let err = Trace::from_path(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: ", missing.display())),
            "{err}"
        );

        std::fs::write(&csv, format!("{HEADER}a,default,0s,1m,1,,,maybe,\n")).unwrap();
        let err = Trace::from_path(&csv).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} line 2: interruptible: \"maybe\" is not true or false",
                csv.display()
            )
        );
    }

    #[test]
    fn new_checks_pods_and_names_them() {
        let mut pods = sample().pods;
        pods[1].slice = Some("big".into());
        pods[1].gpus = 0;
        let err = Trace::new("x", pods.clone()).unwrap_err().to_string();
        assert!(
            err.starts_with("x: pod train-1: slice: \"big\" is not a MIG profile"),
            "{err}"
        );
        pods[1] = pods[0].clone();
        let err = Trace::new("x", pods).unwrap_err().to_string();
        assert_eq!(err, "x: pod nb-a: name: two pods have this name");
        assert_eq!(
            Trace::new("x", vec![]).unwrap_err().to_string(),
            "x: the trace has no pods"
        );
    }

    #[test]
    fn span_and_peak() {
        let trace = sample();
        assert_eq!(trace.span(), secs(86_401));
        let mut pods = trace.pods.clone();
        // Two more A100 slices: 3g.40gb overlapping nb-a, 2g.20gb starting as nb-a ends.
        let mut overlap = pods[0].clone();
        overlap.name = "nb-b".into();
        overlap.slice = Some("3g.40gb".into());
        overlap.arrival = secs(30);
        pods.push(overlap);
        let mut after = pods[0].clone();
        after.name = "nb-c".into();
        after.slice = Some("2g.20gb".into());
        after.arrival = pods[0].duration;
        pods.push(after);
        // A second 8-GPU H100 pod overlapping train-1, and one more "any" pod far away.
        let mut train = pods[1].clone();
        train.name = "train-2".into();
        train.arrival = secs(2 * 3600);
        pods.push(train);
        let peak = Trace::new("p", pods).unwrap().peak_gpus();
        let expected: BTreeMap<Option<String>, f64> = [
            (None, 1.0),
            (Some("nvidia-a100-80gb".to_owned()), 5.0 / 7.0),
            (Some("nvidia-h100-80gb".to_owned()), 16.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(peak, expected);
    }

    #[test]
    fn mig_profiles() {
        assert_eq!(mig_profile("1g.10gb"), Some((1, 10)));
        assert_eq!(mig_profile("7g.80gb"), Some((7, 80)));
        for bad in [
            "0g.5gb",
            "8g.80gb",
            "1g.10",
            "g.10gb",
            "1g.gb",
            "01g.10gb",
            "1g.10gb+me",
            "1x.10gb",
        ] {
            assert_eq!(mig_profile(bad), None, "{bad}");
        }
    }
}
