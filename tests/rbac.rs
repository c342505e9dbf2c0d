//! gpupool's RBAC in `deploy/` grants exactly the Kubernetes API calls its
//! code makes: every call found in `src/` (and in the crates it calls
//! through: kube's event recorder, kube-lease-manager) is allowed, and no
//! rule allows what nothing calls. A new call without its rule, or a rule
//! left behind, fails here.

use std::collections::BTreeSet;
use std::path::Path;

/// (API group, resource, verb).
type Grant = (String, String, String);

fn grant(group: &str, resource: &str, verb: &str) -> Grant {
    (group.to_owned(), resource.to_owned(), verb.to_owned())
}

/// The resource a typed `Api<K>` reaches.
fn resource_of(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "Node" => ("", "nodes"),
        "Pod" => ("", "pods"),
        "ConfigMap" => ("", "configmaps"),
        "CronJob" => ("batch", "cronjobs"),
        "Lease" => ("coordination.k8s.io", "leases"),
        other => panic!("Api<{other}>: add its resource to this test"),
    }
}

/// kube's `Api` methods and the verb each needs.
const METHODS: &[(&str, &[&str])] = &[
    ("get", &["get"]),
    ("get_opt", &["get"]),
    ("list", &["list"]),
    ("create", &["create"]),
    ("replace", &["update"]),
    ("patch", &["patch"]),
    ("delete", &["delete"]),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Names bound to a typed Api in `text`: `name: Api<K>`,
/// `name: kube::Api<K>`, and `let name: … = Api::…`.
fn api_bindings(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for marker in ["Api<", "kube::Api<"] {
        for (at, _) in text.match_indices(marker) {
            if marker == "Api<" && text[..at].ends_with("kube::") {
                continue;
            }
            let kind: String = text[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            // `name: Api<K>` or `name: kube::Api<K>`.
            let before = text[..at].trim_end();
            let Some(before) = before.strip_suffix(':') else {
                continue;
            };
            let name: String = before
                .trim_end()
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !name.is_empty() {
                out.insert((name, kind));
            }
        }
    }
    out
}

/// What the code in `src/` calls.
fn calls_in_code() -> BTreeSet<Grant> {
    let mut files = Vec::new();
    rust_files(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path(),
        &mut files,
    );
    let mut calls = BTreeSet::new();
    let mut seen_kinds = BTreeSet::new();
    for file in files {
        let raw = std::fs::read_to_string(&file).unwrap();
        // Method chains split over lines (`self.api\n    .create(`) joined.
        let text: String = raw
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
            .replace(" .", ".");
        for (name, kind) in api_bindings(&text) {
            seen_kinds.insert(kind.clone());
            let (group, resource) = resource_of(&kind);
            for (method, verbs) in METHODS {
                for receiver in [
                    format!("self.{name}.{method}("),
                    format!(" {name}.{method}("),
                ] {
                    if text.contains(&receiver) {
                        for verb in *verbs {
                            calls.insert(grant(group, resource, verb));
                        }
                    }
                }
            }
            // `watcher(api, …)`: a list, then a watch.
            if text.contains(&format!("watcher({name},")) {
                calls.insert(grant(group, resource, "list"));
                calls.insert(grant(group, resource, "watch"));
            }
            // `api.evict(…)`: a create on the eviction subresource.
            if text.contains(&format!(" {name}.evict(")) {
                calls.insert(grant(group, &format!("{resource}/eviction"), "create"));
            }
        }
        // kube's event recorder creates events.k8s.io/v1 Events, and
        // patches one that repeats (its `series`).
        if text.contains("Recorder::new(") {
            calls.insert(grant("events.k8s.io", "events", "create"));
            calls.insert(grant("events.k8s.io", "events", "patch"));
        }
        // kube-lease-manager reads and creates the Lease and takes, renews
        // and frees it with patches (server-side apply and strategic merge).
        if text.contains("LeaseManagerBuilder::new(") {
            for verb in ["get", "create", "patch"] {
                calls.insert(grant("coordination.k8s.io", "leases", verb));
            }
        }
    }
    assert!(
        seen_kinds.len() >= 5,
        "the scan found too few typed Apis ({seen_kinds:?}): has the code's style changed?"
    );
    calls
}

/// The rules of gpupool's ClusterRole and Role in the kustomize base, as
/// grants, and which were namespaced.
fn rules_in_manifests() -> (BTreeSet<Grant>, BTreeSet<Grant>) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kustomize/base");
    let mut cluster = BTreeSet::new();
    let mut namespaced = BTreeSet::new();
    let mut found = 0;
    for entry in std::fs::read_dir(&base).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let obj: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
            let kind = obj["kind"].as_str().unwrap_or_default();
            if !matches!(kind, "ClusterRole" | "Role") || obj["metadata"]["name"] != "gpupool" {
                continue;
            }
            found += 1;
            let into = if kind == "Role" {
                &mut namespaced
            } else {
                &mut cluster
            };
            for rule in obj["rules"].as_sequence().expect("rules") {
                assert!(
                    rule.get("resourceNames").is_none(),
                    "{}: resourceNames are not compared by this test",
                    path.display()
                );
                let strs = |key: &str| -> Vec<String> {
                    rule[key]
                        .as_sequence()
                        .unwrap_or_else(|| panic!("a rule without {key} in {}", path.display()))
                        .iter()
                        .map(|v| v.as_str().expect("a string").to_owned())
                        .collect()
                };
                for g in strs("apiGroups") {
                    for r in strs("resources") {
                        for v in strs("verbs") {
                            assert!(
                                g != "*" && r != "*" && v != "*",
                                "a wildcard rule in {}",
                                path.display()
                            );
                            into.insert((g.clone(), r.clone(), v));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(
        found,
        2,
        "gpupool's ClusterRole and Role in {}",
        base.display()
    );
    (cluster, namespaced)
}

#[test]
fn rbac_grants_exactly_what_the_code_calls() {
    let calls = calls_in_code();
    let (cluster, namespaced) = rules_in_manifests();
    let granted: BTreeSet<Grant> = cluster.union(&namespaced).cloned().collect();
    let missing: Vec<_> = calls.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&calls).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "calls without a rule: {missing:?}\nrules nothing calls: {unused:?}"
    );
}

#[test]
fn what_lives_in_gpupools_namespace_is_granted_there_only() {
    let (cluster, namespaced) = rules_in_manifests();
    for (group, resource, verb) in &namespaced {
        assert!(
            matches!(resource.as_str(), "configmaps" | "leases"),
            "{group}/{resource} {verb} in the Role: gpupool reaches only its ConfigMaps and Lease in its own namespace"
        );
    }
    for (group, resource, verb) in &cluster {
        assert!(
            !matches!(resource.as_str(), "configmaps" | "leases"),
            "{group}/{resource} {verb} cluster-wide: gpupool's state and Lease live in its own namespace"
        );
    }
}

#[test]
fn the_scan_reads_the_shapes_the_code_uses() {
    let text =
        "struct D { nodes: Api<Node>, pods: kube::Api<Pod> } let api: kube::Api<CronJob> = x;";
    let b: Vec<(String, String)> = api_bindings(text).into_iter().collect();
    let pair = |n: &str, k: &str| (n.to_owned(), k.to_owned());
    assert_eq!(
        b,
        [
            pair("api", "CronJob"),
            pair("nodes", "Node"),
            pair("pods", "Pod")
        ]
    );
}
