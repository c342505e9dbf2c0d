//! The Kubernetes deployment in `deploy/`: `kubectl kustomize` of the base,
//! every overlay and the documented components; Helm's own engine (through
//! helm-python-sdk) rendering and linting the chart with several value sets;
//! every object validated against the Kubernetes schemas
//! (kubernetes-validate, offline); and the chart's defaults giving the
//! kustomize base's objects. The checks are `tests/deploy/check.py`; its
//! tools come from `scripts/test-deps`' venv.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn check(stage: &str) {
    let kubectl = common::test_tool("kubectl");
    let out = Command::new(common::test_tool("python"))
        .args(["tests/deploy/check.py", "--only", stage])
        .env("KUBECTL", &kubectl)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "check.py --only {stage} failed:\n{text}"
    );
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let passed: u32 = last
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        passed > 0 && last.ends_with(" passed, 0 failed"),
        "check.py --only {stage} ran no check or failed some: {last:?}\n{text}"
    );
}

#[test]
fn kustomize_and_the_chart_render_and_fit_together() {
    check("render");
}

#[test]
fn the_chart_lints_and_its_schema_holds_its_values() {
    check("lint");
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    check("validate");
}

#[test]
fn the_charts_defaults_are_the_kustomize_base() {
    check("compare");
}

/// Every gpupool config the manifests ship passes gpupool's own offline
/// check (what `gpupool check-config` does); the chart renders the same
/// configs (the compare stage above).
#[test]
fn every_shipped_config_passes_gpupools_own_check() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/kustomize");
    let mut files = vec![
        root.join("base/config.yaml"),
        root.join("components/webhook/config.yaml"),
    ];
    for cloud in ["aws", "gcp", "azure"] {
        files.push(root.join(format!("overlays/{cloud}/config/config.yaml")));
    }
    for file in files {
        let config = gpupool::config::Config::from_file(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let specs = gpupool::backend::offline_specs(&config)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!specs.is_empty(), "{}: no node groups", file.display());
        let k = config
            .kubernetes
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no kubernetes section", file.display()));
        assert!(
            k.leader_election.enabled,
            "{}: two replicas need leader election",
            file.display()
        );
        assert_eq!(
            config.server.grpc_listen.port(),
            8086,
            "{}: the Services name 8086",
            file.display()
        );
    }
}
