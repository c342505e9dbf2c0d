//! The shipped observability files (deploy/observability/): every `gpupool_*`
//! metric the Grafana dashboard and the PrometheusRule name is one the server
//! serves on /metrics, and both files have the shape Grafana and
//! prometheus-operator expect. Prometheus's own `promtool` (from
//! `scripts/test-deps`) checks the rules and runs their unit tests,
//! deploy/observability/tests/rules-test.yaml.

mod common;

use common::{Harness, config_yaml, http};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DASHBOARD: &str = "deploy/observability/grafana-dashboard.json";
const RULES: &str = "deploy/observability/prometheus-rules.yaml";
const RULES_TEST: &str = "deploy/observability/tests/rules-test.yaml";

const GROUPS: &str = "
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    capacity_type: spot
";

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Every metric name starting with `gpupool_` in `text`, read as PromQL
/// reads names (letters, digits, `_`, `:`), where no such character comes
/// just before it. A trailing `:` is prose (`gpupool_x: what it is`).
fn gpupool_names(text: &str, into: &mut BTreeSet<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i..].starts_with(b"gpupool_") && (i == 0 || !is_ident(bytes[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < bytes.len() && is_ident(bytes[end]) {
            end += 1;
        }
        // ASCII on both ends, so both are char boundaries.
        into.insert(text[i..end].trim_end_matches(':').to_owned());
        i = end;
    }
}

/// The `gpupool_*` names of a document: those in queries (PromQL under
/// `expr`, a Grafana variable's `definition` and `query`) and those in
/// prose (titles, descriptions, summaries).
#[derive(Default)]
struct Referenced {
    queries: BTreeSet<String>,
    prose: BTreeSet<String>,
}

impl Referenced {
    fn add(&mut self, key: &str, text: &str) {
        let into = if matches!(key, "expr" | "definition" | "query") {
            &mut self.queries
        } else {
            &mut self.prose
        };
        gpupool_names(text, into);
    }

    fn json(&mut self, key: &str, value: &serde_json::Value) {
        match value {
            serde_json::Value::String(s) => self.add(key, s),
            serde_json::Value::Array(items) => items.iter().for_each(|v| self.json(key, v)),
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| self.json(k, v)),
            _ => {}
        }
    }

    fn yaml(&mut self, key: &str, value: &serde_yaml::Value) {
        match value {
            serde_yaml::Value::String(s) => self.add(key, s),
            serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| self.yaml(key, v)),
            serde_yaml::Value::Mapping(map) => map
                .iter()
                .for_each(|(k, v)| self.yaml(k.as_str().unwrap_or_default(), v)),
            serde_yaml::Value::Tagged(tagged) => self.yaml(key, &tagged.value),
            _ => {}
        }
    }
}

/// The names a query can use against this exposition: every sample's name
/// as served, and, from each `# TYPE` line (a family that has no samples
/// yet), the names its samples will have. OpenMetrics names a counter's
/// family without `_total` and its samples with it; the Prometheus text
/// format names both with it. A histogram is queried by `_bucket`, `_sum`
/// and `_count`, never by its family name: the histograms' family names
/// come second, for prose.
fn served_names(exposition: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            match kind {
                "counter" if name.ends_with("_total") => {
                    names.insert(name.to_owned());
                }
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    histograms.insert(name.to_owned());
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            if end > 0 {
                names.insert(line[..end].to_owned());
            }
        }
    }
    (names, histograms)
}

#[test]
fn names_are_read_as_promql_reads_them() {
    let mut names = BTreeSet::new();
    gpupool_names(
        "sum by (group) (rate(gpupool_boot_phase_seconds_bucket{phase=\"total\"}[1h])) \
         / xgpupool_not_this + gpupool:recorded + on(gpupool_leader)gpupool_a_total \
         (gpupool_b: prose)",
        &mut names,
    );
    let expected: BTreeSet<String> = [
        "gpupool_boot_phase_seconds_bucket",
        "gpupool_leader",
        "gpupool_a_total",
        "gpupool_b",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);

    let (served, histograms) = served_names(
        "# TYPE gpupool_x counter\n# TYPE gpupool_y_total counter\n# TYPE gpupool_h histogram\n\
         # TYPE gpupool_g gauge\ngpupool_s{a=\"b\"} 1\ngpupool_t 2\n# EOF\n",
    );
    let expected: BTreeSet<String> = [
        "gpupool_x_total",
        "gpupool_y_total",
        "gpupool_h_bucket",
        "gpupool_h_sum",
        "gpupool_h_count",
        "gpupool_g",
        "gpupool_s",
        "gpupool_t",
    ]
    .map(String::from)
    .into();
    assert_eq!(served, expected);
    assert_eq!(histograms, BTreeSet::from(["gpupool_h".to_owned()]));
}

#[tokio::test]
async fn dashboard_and_alerts_name_only_metrics_the_server_serves() {
    let mut h = Harness::start(&config_yaml(GROUPS, "")).await;
    h.increase("l4", 1).await.unwrap();
    h.settle().await;
    h.refresh().await;
    // prometheus-client leaves a labelled family out of the exposition
    // entirely (no HELP or TYPE line) until it has a series, and these only
    // get one when something happens (a boot seen on a Node, a notice, an
    // interruption step, a webhook refusal). One observation each, through
    // the server's own registry, makes them served under their real names.
    let m = &h.server.metrics;
    m.boot_phase("l4", "total", Duration::from_secs(300));
    m.price_refresh(true);
    m.notice("generic", "interruption", "accepted");
    m.set_floor_demand("l4", "schedule", "office", 1);
    m.interruptions
        .step("l4", "replacement_requested", Duration::from_secs(1));
    m.interruptions.evicted("l4", 1);
    m.interruptions.closed("l4", "released");
    m.interruptions.refused("/notices/generic", 401);

    let (status, exposition) = http(h.server.http_addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let (served, histograms) = served_names(&exposition);

    let mut referenced = Referenced::default();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    referenced.json("", &dashboard);
    let rules: serde_yaml::Value = serde_yaml::from_str(&read(RULES)).expect("the rules are YAML");
    referenced.yaml("", &rules);

    // The scan found the expressions at all.
    for name in [
        "gpupool_node_group_target_size",
        "gpupool_grpc_requests_total",
        "gpupool_boot_phase_seconds_bucket",
        "gpupool_boot_model_seconds",
        "gpupool_leader",
        "gpupool_config_reloads_total",
    ] {
        assert!(referenced.queries.contains(name), "{name} is in no query");
    }
    let missing: Vec<&String> = referenced.queries.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "queried in {DASHBOARD} or {RULES} but not served on /metrics: {missing:?}\n\nexposition:\n{exposition}"
    );
    let missing: Vec<&String> = referenced
        .prose
        .iter()
        .filter(|n| !served.contains(*n) && !histograms.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "named in the text of {DASHBOARD} or {RULES} but not served on /metrics: {missing:?}\n\nexposition:\n{exposition}"
    );
    h.stop().await;
}

#[test]
fn dashboard_has_its_identity_variables_and_queries() {
    let d: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).expect("JSON");
    assert_eq!(d["uid"], "gpupool");
    assert_eq!(d["title"], "gpupool");
    assert_eq!(d["schemaVersion"], 39);

    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no {name} variable"))
    };
    let datasource = var("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let group = var("group");
    assert_eq!(group["type"], "query");
    assert_eq!(group["multi"].as_bool(), Some(true));
    assert_eq!(
        group["definition"],
        "label_values(gpupool_node_group_target_size, group)"
    );
    assert_eq!(group["datasource"]["uid"], "${datasource}");

    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {p}");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "id twice: {title}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title}: empty query");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            queries += 1;
        }
    }
    assert!(queries > 20, "{queries} queries");
}

#[test]
fn every_alert_has_a_for_a_severity_and_its_annotations() {
    let doc: serde_yaml::Value = serde_yaml::from_str(&read(RULES)).expect("YAML");
    assert_eq!(doc["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    assert_eq!(doc["kind"].as_str(), Some("PrometheusRule"));
    assert_eq!(doc["metadata"]["name"].as_str(), Some("gpupool"));
    assert!(
        doc["metadata"].get("namespace").is_none(),
        "the namespace is left to kustomize or the chart"
    );

    let groups = doc["spec"]["groups"].as_sequence().expect("spec.groups");
    assert!(!groups.is_empty());
    let mut alerts = BTreeSet::new();
    for group in groups {
        let group_name = group["name"].as_str().expect("group name");
        let rules = group["rules"].as_sequence().expect("rules");
        assert!(!rules.is_empty(), "{group_name} has no rules");
        for rule in rules {
            let name = rule["alert"]
                .as_str()
                .unwrap_or_else(|| panic!("{group_name}: a rule that is not an alert: {rule:?}"));
            assert!(alerts.insert(name.to_owned()), "{name} twice");
            let expr = rule["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{name}: no expr");
            let r#for = rule["for"].as_str().unwrap_or_default();
            assert!(
                r#for.len() > 1
                    && r#for.ends_with(['s', 'm', 'h'])
                    && r#for[..r#for.len() - 1].bytes().all(|b| b.is_ascii_digit()),
                "{name}: `for` is {:?}",
                rule["for"]
            );
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["critical", "warning", "info"].contains(&severity),
                "{name}: severity {severity:?}"
            );
            for key in ["summary", "description"] {
                let text = rule["annotations"][key].as_str().unwrap_or_default();
                assert!(!text.trim().is_empty(), "{name}: no {key}");
            }
        }
    }
    for name in [
        "GpupoolGroupBelowTarget",
        "GpupoolBootSlowerThanModel",
        "GpupoolInterruptionReplacementNotLaunched",
        "GpupoolPriceTableStale",
        "GpupoolPriceRefreshFailing",
        "GpupoolCloudSyncStale",
        "GpupoolGrpcErrors",
        "GpupoolNoLeader",
        "GpupoolMultipleLeaders",
        "GpupoolConfigReloadRejected",
        "GpupoolOrphanInstances",
        "GpupoolGpuNodesIdle",
    ] {
        assert!(alerts.contains(name), "no {name} alert");
    }
}

fn promtool() -> PathBuf {
    common::test_tool("promtool")
}

/// The PrometheusRule's `spec`, which is a plain Prometheus rule file, as
/// `rules.yaml` in `dir`. Without `descriptions`, every rule's `description`
/// annotation is left out (rules-test.yaml says why).
fn write_rule_file(dir: &Path, descriptions: bool) {
    let doc: serde_yaml::Value = serde_yaml::from_str(&read(RULES)).expect("YAML");
    let mut spec = doc["spec"].clone();
    if !descriptions {
        let groups = spec["groups"].as_sequence_mut().expect("spec.groups");
        for rule in groups
            .iter_mut()
            .flat_map(|g| g["rules"].as_sequence_mut().expect("rules").iter_mut())
        {
            if let Some(annotations) = rule.get_mut("annotations").and_then(|a| a.as_mapping_mut())
            {
                annotations.remove("description");
            }
        }
    }
    std::fs::write(
        dir.join("rules.yaml"),
        serde_yaml::to_string(&spec).expect("YAML out"),
    )
    .expect("write rules.yaml");
}

/// Runs `promtool args` in `dir`: whether it succeeded, and all it printed.
fn promtool_in(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn alert_names() -> BTreeSet<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(&read(RULES)).expect("YAML");
    doc["spec"]["groups"]
        .as_sequence()
        .expect("spec.groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules"))
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn promtool_checks_the_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_rule_file(dir.path(), true);
    let (ok, text) = promtool_in(dir.path(), &["check", "rules", "rules.yaml"]);
    assert!(ok, "promtool check rules of {RULES}'s spec failed:\n{text}");
    // Every rule of the file is read (all of them alerts).
    let found = format!("SUCCESS: {} rules found", alert_names().len());
    assert!(text.contains(&found), "expected {found:?}:\n{text}");
}

#[test]
fn promtool_unit_tests_of_the_alerts_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_rule_file(dir.path(), false);
    std::fs::write(dir.path().join("rules-test.yaml"), read(RULES_TEST)).expect("copy");
    let (ok, text) = promtool_in(dir.path(), &["test", "rules", "rules-test.yaml"]);
    assert!(
        ok && text.contains("SUCCESS"),
        "promtool test rules {RULES_TEST} failed:\n{text}"
    );
}

/// Every alert of the rules file has a unit test where it fires and one where
/// it does not; every alert a test names is one of the file (a misspelled name
/// would pass an `exp_alerts: []` case without testing anything).
#[test]
fn every_alert_has_unit_tests_that_fire_it_and_keep_it_silent() {
    let alerts = alert_names();
    let tests: serde_yaml::Value = serde_yaml::from_str(&read(RULES_TEST)).expect("YAML");
    assert_eq!(
        tests["rule_files"].as_sequence().map(Vec::as_slice),
        Some([serde_yaml::Value::from("rules.yaml")].as_slice()),
        "{RULES_TEST} reads the rule file the harness writes, rules.yaml"
    );
    // alert -> (fires in some case, is silent in some case)
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for case in tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
    {
        let name = case["alertname"].as_str().expect("alertname");
        let fires = case["exp_alerts"]
            .as_sequence()
            .is_some_and(|a| !a.is_empty());
        let entry = seen.entry(name.to_owned()).or_default();
        if fires {
            entry.0 = true;
        } else {
            entry.1 = true;
        }
    }
    let unknown: Vec<&String> = seen.keys().filter(|n| !alerts.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "{RULES_TEST} tests alerts that {RULES} does not have: {unknown:?}"
    );
    for name in &alerts {
        let (fires, silent) = seen.get(name).copied().unwrap_or_default();
        assert!(
            fires && silent,
            "{name} needs unit tests in {RULES_TEST}: one where it fires ({}) and one where it \
             does not ({})",
            if fires { "there" } else { "missing" },
            if silent { "there" } else { "missing" },
        );
    }
}
