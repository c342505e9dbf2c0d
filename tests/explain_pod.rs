//! `gpupool explain-pod`: the manifests under `tests/fixtures/explain-pod/`
//! against the groups of `groups.yaml`, each with its expected verdict per
//! group (`expected.yaml`), and the command itself, offline and against a
//! running server.

mod common;

use common::{Harness, config_yaml};
use gpupool::config::Config;
use gpupool::explain::{self, Group, Report};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/explain-pod")
}

fn groups() -> Vec<Group> {
    let config = Config::from_file(&fixtures().join("groups.yaml")).unwrap();
    let specs = gpupool::backend::offline_specs(&config).unwrap();
    explain::groups_of(&config, &specs).unwrap()
}

fn report(fixture: &str) -> Report {
    let text = std::fs::read_to_string(fixtures().join(fixture)).unwrap();
    let m = explain::parse(&text).unwrap_or_else(|e| panic!("{fixture}: {e}"));
    assert_eq!(m.workloads.len(), 1, "{fixture}: one workload per fixture");
    explain::explain(&m.workloads[0], &m.daemonsets, &groups())
}

fn reasons(report: &Report, group: &str) -> Vec<String> {
    let (_, v) = report
        .verdicts
        .iter()
        .find(|(id, _)| id == group)
        .unwrap_or_else(|| panic!("no verdict for {group}"));
    v.reasons.iter().map(ToString::to_string).collect()
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Expected {
    Fits(String),
    Not(Vec<String>),
}

#[test]
fn every_fixture_gets_its_expected_verdict_for_every_group() {
    let text = std::fs::read_to_string(fixtures().join("expected.yaml")).unwrap();
    let expected: BTreeMap<String, BTreeMap<String, Expected>> =
        serde_yaml::from_str(&text).unwrap();
    // Every manifest in the folder has its expectations.
    let mut manifests: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "groups.yaml" && n != "expected.yaml")
        .collect();
    manifests.sort();
    assert_eq!(manifests, expected.keys().cloned().collect::<Vec<_>>());

    for (fixture, per_group) in &expected {
        let report = report(fixture);
        let ids: Vec<&str> = report.verdicts.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            ["cpu", "h100", "a100-mig", "l4-shared", "a100-dra"],
            "{fixture}"
        );
        for (group, verdict) in &report.verdicts {
            let mut got: Vec<String> = verdict.reasons.iter().map(|r| r.key()).collect();
            got.sort();
            let mut want = match &per_group[group] {
                Expected::Fits(s) => {
                    assert_eq!(s, "fits", "{fixture}/{group}");
                    Vec::new()
                }
                Expected::Not(keys) => keys.clone(),
            };
            want.sort();
            assert_eq!(got, want, "{fixture}: group {group}:\n{report}");
        }
    }
}

#[test]
fn reasons_say_by_how_much_and_what_is_offered_instead() {
    let r = report("h100-job.yaml");
    // gpu-1x-l4 has 8 vCPUs less the 90m reserved; time-slicing:4 makes 4 GPUs.
    let l4 = reasons(&r, "l4-shared");
    assert!(
        l4.contains(&"cpu: the pod requests 90, a new node offers 7.91 (short by 82.09)".into())
    );
    assert!(
        l4.contains(&"nvidia.com/gpu: the pod requests 8, a new node offers 4 (short by 4)".into())
    );
    assert!(l4.contains(
        &"nodeSelector gpupool.dev/accelerator=nvidia-h100-80gb: a new node has gpupool.dev/accelerator=nvidia-l4".into()
    ));
    // Mixed MIG: no nvidia.com/gpu, 3×1g.10gb + 2×2g.20gb on each of 8 GPUs.
    let mig = reasons(&r, "a100-mig");
    assert!(mig.contains(
        &"nvidia.com/gpu: the pod requests 8, a new node offers none; it offers nvidia.com/mig-1g.10gb: 24, nvidia.com/mig-2g.20gb: 16 instead".into()
    ), "{mig:?}");

    let r = report("untolerated.yaml");
    assert_eq!(
        reasons(&r, "h100"),
        ["taint nvidia.com/gpu=present:NoSchedule is not tolerated"]
    );
    assert_eq!(r.fitting().count(), 0);

    let r = report("affinity-inference.yaml");
    assert_eq!(
        reasons(&r, "cpu")[0],
        "required node affinity: no term matches (term 1: workload In [inference]: a new node has \"general\")"
    );

    let r = report("dra-too-many.yaml");
    assert_eq!(
        reasons(&r, "a100-dra"),
        [
            "resource claim \"accel\" request \"accel\" wants 16 devices of class mig.nvidia.com or 16 devices of class gpu.nvidia.com; a new node has 0 of class mig.nvidia.com, 8 of class gpu.nvidia.com free"
        ]
    );

    // Sidecar adds to the containers (15 + 1 CPUs), the init container sets
    // the memory floor (100Gi).
    let r = report("init-memory.yaml");
    assert_eq!(r.requests["cpu"], 16.0);
    assert_eq!(r.requests["memory"], 100.0 * 1024f64.powi(3));
}

#[test]
fn daemonsets_in_the_input_take_their_share_first() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    resources: {requests: {cpu: '15'}}\n";
    let ds = |name: &str, selector: &str| {
        format!(
            "---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: {name}, namespace: kube-system}}\nspec:\n  selector: {{matchLabels: {{app: x}}}}\n  template:\n    metadata: {{labels: {{app: x}}}}\n    spec:\n      nodeSelector: {selector}\n      containers:\n      - name: c\n        image: i\n        resources: {{requests: {{cpu: 500m}}}}\n"
        )
    };
    let groups = groups();
    let cpu = |text: &str| {
        let m = explain::parse(text).unwrap();
        explain::explain(&m.workloads[0], &m.daemonsets, &groups[..1])
    };
    // 15 of 15.89 CPUs fits; a DaemonSet taking 500m on every node leaves 15.39.
    assert!(cpu(pod).fitting().eq(["cpu"]));
    assert!(
        cpu(&format!("{pod}{}", ds("agent", "{}")))
            .fitting()
            .eq(["cpu"])
    );
    let two = cpu(&format!(
        "{pod}{}{}",
        ds("agent", "{}"),
        ds("logs", "{workload: general}")
    ));
    assert_eq!(
        two.verdicts[0].1.reasons[0].to_string(),
        "cpu: the pod requests 15, a new node offers 14.89 (short by 110m) after DaemonSet pods take 1"
    );
    // A DaemonSet whose pods would not run on the node takes nothing.
    let elsewhere = cpu(&format!(
        "{pod}{}{}",
        ds("agent", "{}"),
        ds("gpu-only", "{nvidia.com/gpu.present: 'true'}")
    ));
    assert!(elsewhere.fitting().eq(["cpu"]));
}

fn gpupool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gpupool"))
}

#[test]
fn the_command_prints_verdicts_and_exits_by_whether_anything_fits() {
    let groups_yaml = fixtures().join("groups.yaml");
    let run = |fixture: &Path| {
        gpupool()
            .arg("explain-pod")
            .arg("--config")
            .arg(&groups_yaml)
            .arg(fixture)
            .output()
            .unwrap()
    };
    let out = run(&fixtures().join("h100-job.yaml"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(
            "Job ml/train: each pod requests cpu 90, memory 900Gi, nvidia.com/gpu 8\n"
        )
    );
    assert!(text.contains("\n  h100: fits\n"));
    assert!(text.contains("\n  cpu: does not fit\n    - nodeSelector gpupool.dev/accelerator=nvidia-h100-80gb: a new node has no gpupool.dev/accelerator label\n"));
    assert!(
        text.ends_with("  => fits 1 of 5 node groups: h100\n"),
        "{text}"
    );

    let out = run(&fixtures().join("untolerated.yaml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("no node group fits")
    );

    // Bad manifests: exit 1, the document and field named.
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    resources: {limits: {nvidia.com/gpu: lots}}\n",
            "document 1 (Pod p): containers[c].resources.limits: nvidia.com/gpu: \"lots\" is not a Kubernetes quantity",
        ),
        (
            "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n",
            "document 1 (Deployment d): apiVersion: \"apps/v1beta1\" is not how Kubernetes serves Deployment: use apps/v1",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    resources: {limits: [1]}\n",
            "document 2 (Pod p): spec.containers[0].resources.limits: invalid type: sequence, expected a map",
        ),
        (
            "kind: Pod\nmetadata: {name: p}\nspec: [",
            "document 1: not YAML",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            "no workload in the input: give a Pod, Deployment, StatefulSet, ReplicaSet, Job or CronJob (skipped: ConfigMap c)",
        ),
    ];
    for (i, (manifest, message)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&file, manifest).unwrap();
        let out = run(&file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{manifest}: {stderr}");
        assert!(stderr.contains(message), "{manifest}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_running_server_a_group_at_its_max_size_is_named() {
    const GROUPS: &str = "  - id: l4\n    min_size: 0\n    max_size: 2\n    instance_type: gpu-1x-l4\n  - id: a10g\n    min_size: 0\n    max_size: 2\n    instance_type: gpu-1x-a10g\n";
    let mut h = Harness::start(&config_yaml(GROUPS, "")).await;
    h.increase("l4", 2).await.unwrap();
    h.settle().await;
    let addr = h.server.grpc_addr.to_string();
    let manifest = fixtures().join("untolerated.yaml");
    let out = tokio::task::spawn_blocking(move || {
        gpupool()
            .args(["explain-pod", "--address", &addr])
            .arg(manifest)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("  l4: does not fit\n    - max size reached: target 2 of max 2\n"),
        "{text}"
    );
    assert!(text.contains("  a10g: fits\n"), "{text}");
    h.stop().await;
}

#[test]
fn a_claim_whose_template_is_not_given_is_noted_not_judged() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ml}\nspec:\n  tolerations: [{operator: Exists}]\n  resourceClaims: [{name: gpu, resourceClaimTemplateName: elsewhere}]\n  containers: [{name: c, image: i, resources: {claims: [{name: gpu}]}}]\n";
    let m = explain::parse(text).unwrap();
    let r = explain::explain(&m.workloads[0], &m.daemonsets, &groups());
    assert!(r.fitting().eq(["a100-dra"]), "{r}");
    let (_, dra) = r.verdicts.iter().find(|(id, _)| id == "a100-dra").unwrap();
    assert_eq!(
        dra.notes,
        [
            "claim \"gpu\": ResourceClaimTemplate elsewhere is not in the input, so its devices were not checked"
        ]
    );
}

#[test]
fn kubectl_output_on_stdin_is_read_list_and_all() {
    use std::io::Write;
    // What `kubectl get deploy -o yaml` prints: a List, with server-set fields.
    let list = r#"apiVersion: v1
kind: List
metadata: { resourceVersion: "" }
items:
  - apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      namespace: shop
      uid: 6f1c1e4e-3f6b-4f0a-9c1e-0d6a2b9f3e11
      generation: 3
      creationTimestamp: "2026-11-01T10:00:00Z"
      managedFields:
        - { manager: kubectl, operation: Update, apiVersion: apps/v1, time: "2026-11-01T10:00:00Z", fieldsType: FieldsV1, fieldsV1: {} }
    spec:
      replicas: 2
      selector: { matchLabels: { app: web } }
      template:
        metadata: { labels: { app: web } }
        spec:
          containers:
            - name: web
              image: nginx
              resources: { requests: { cpu: 250m, memory: 256Mi } }
    status: { replicas: 2, readyReplicas: 1, observedGeneration: 3 }
"#;
    let mut child = gpupool()
        .args(["explain-pod", "--config"])
        .arg(fixtures().join("groups.yaml"))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with(
            "Deployment shop/web: each pod requests cpu 250m, memory 256Mi\n  cpu: fits\n"
        ),
        "{text}"
    );
}
