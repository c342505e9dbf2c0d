use super::*;
use gpupool_sim::catalog;

fn sim_catalog() -> Vec<InstanceType> {
    catalog::builtin()
        .iter()
        .map(|t| t.instance_type())
        .collect()
}

fn check(yaml: &str) -> Result<Vec<GroupSpec>, ConfigError> {
    let config = Config::from_yaml(yaml)?;
    config.validate(&sim_catalog(), Some(&config.sim.zones))
}

const GOOD: &str = r#"
cloud: sim
region: sim-east-1
node_groups:
  - id: g1
    min_size: 1
    max_size: 3
    instance_type: gpu-1x-l4
"#;

fn with_group_line(line: &str) -> String {
    format!("{GOOD}    {line}\n")
}

#[test]
fn the_embedded_default_is_valid() {
    let config = Config::default_example();
    let specs = config
        .validate(&sim_catalog(), Some(&config.sim.zones))
        .unwrap();
    assert!(specs.len() >= 4);
    assert!(specs.iter().all(|s| s.instance_type.gpu.is_some()));
}

#[test]
fn defaults_fill_zones_capacity_and_label() {
    let specs = check(GOOD).unwrap();
    let g = &specs[0];
    assert_eq!(g.zones, vec!["sim-east-1a", "sim-east-1b", "sim-east-1c"]);
    assert_eq!(g.purchase, PurchaseOption::OnDemand);
    assert_eq!(
        Config::from_yaml(GOOD).unwrap().gpu_label,
        DEFAULT_GPU_LABEL
    );
}

#[test]
fn annotations_are_typed() {
    let yaml = format!(
        "{GOOD}    annotations:\n      gpupool.dev/scale-down-unneeded-time: 7m\n      gpupool.dev/capacity-type: spot\n      gpupool.dev/preprovision: \"0 9 * * 1-5 for 10h: 3\"\n      gpupool.dev/gpu-sharing: time-slicing:4\n      example.com/other: anything\n"
    );
    let g = &check(&yaml).unwrap()[0];
    assert_eq!(g.purchase, PurchaseOption::Spot);
    assert_eq!(
        g.annotations.ca_options.scale_down_unneeded_time,
        Some(Duration::from_secs(420))
    );
    let p = &g.annotations.preprovision[0];
    assert_eq!(
        (p.cron_text.as_str(), p.duration, p.count),
        ("0 9 * * 1-5", Duration::from_secs(36000), 3)
    );
    assert_eq!(g.sharing.replicas, 4);
    assert!(g.sharing.mig.is_none());
}

#[test]
fn bad_configs_name_the_group_key_and_reason() {
    let cases: &[(String, &str)] = &[
        (
            GOOD.replace("min_size: 1", "min_size: 5"),
            "node group \"g1\": min_size: 5 is above max_size 3",
        ),
        (
            GOOD.replace("gpu-1x-l4", "p9.huge"),
            "node group \"g1\": instance_type: \"p9.huge\" is not offered by this cloud; known types: ",
        ),
        (
            with_group_line("zones: [mars-1a]"),
            "node group \"g1\": zones: \"mars-1a\" is not a zone of the region",
        ),
        (
            with_group_line("annotations: { gpupool.dev/drain-timout: 90s }"),
            "node group \"g1\": annotations.gpupool.dev/drain-timout: unknown gpupool.dev annotation; known keys: capacity-type",
        ),
        (
            with_group_line("annotations: { gpupool.dev/drain-timeout: 9x }"),
            "node group \"g1\": annotations.gpupool.dev/drain-timeout: \"9x\" is not a duration",
        ),
        (
            with_group_line(
                "annotations: { gpupool.dev/scale-down-utilization-threshold: \"1.5\" }",
            ),
            "\"1.5\" is not a number from 0 to 1",
        ),
        (
            with_group_line("annotations: { gpupool.dev/zero-or-max-node-scaling: \"yes\" }"),
            "\"yes\" is not true or false",
        ),
        (
            with_group_line("annotations: { gpupool.dev/gpu-sharing: \"time-slicing:1\" }"),
            "must be a whole number from 2 to 64",
        ),
        (
            with_group_line("annotations: { gpupool.dev/preprovision: \"9am for 1h: 2\" }"),
            "cron \"9am\": ",
        ),
        (
            with_group_line("annotations: { gpupool.dev/boot-latency: 300000y }"),
            "\"300000y\" is longer than 31 days",
        ),
        (
            with_group_line("annotations: { gpupool.dev/max-hourly-price: \"-3\" }"),
            "is not a positive price",
        ),
        (
            with_group_line(
                "capacity_type: spot\n    annotations: { gpupool.dev/capacity-type: on-demand }",
            ),
            "node group \"g1\": capacity_type: spot disagrees with annotation gpupool.dev/capacity-type on-demand",
        ),
        (
            with_group_line("capacity_type: cheap"),
            "unknown variant `cheap`",
        ),
        (with_group_line("colour: blue"), "unknown field `colour`"),
        (
            with_group_line(
                "annotations: { gpupool.dev/dra: \"true\", gpupool.dev/gpu-sharing: \"time-slicing:2\" }",
            ),
            "annotations.gpupool.dev/dra: time-slicing of DRA-managed GPUs is set in the ResourceClaim's config",
        ),
        (
            with_group_line("annotations: { gpupool.dev/dra: \"yes\" }"),
            "annotations.gpupool.dev/dra: \"yes\" is not true or false",
        ),
        (
            with_group_line("annotations: { gpupool.dev/gpu-sharing: \"mig:all-1g.10gb\" }"),
            "node group \"g1\": annotations.gpupool.dev/gpu-sharing: nvidia-l4 GPUs do not support MIG",
        ),
        (
            with_group_line("annotations: { gpupool.dev/mig-strategy: mixed }"),
            "node group \"g1\": annotations.gpupool.dev/mig-strategy: set without a MIG layout",
        ),
        (
            with_group_line("taints: [{ key: \"bad key\", effect: NoSchedule }]"),
            "node group \"g1\": taints[0].key: \"bad key\" is not a valid taint key",
        ),
        (
            with_group_line("taints: [{ key: a, effect: Sometimes }]"),
            "unknown variant `Sometimes`",
        ),
        (
            GOOD.replace("id: g1", "id: G_1"),
            "node group \"G_1\": id: must be 1-63 characters",
        ),
        (
            format!(
                "{GOOD}  - id: g1\n    min_size: 0\n    max_size: 1\n    instance_type: gpu-1x-l4\n"
            ),
            "node group \"g1\": id: declared twice",
        ),
        (
            GOOD.replace("max_size: 3", "max_size: 0")
                .replace("min_size: 1", "min_size: 0"),
            "node group \"g1\": max_size: must be at least 1",
        ),
        (
            GOOD.replace("min_size: 1", "min_size: -1"),
            "node_groups[0].min_size: invalid type: integer `-1`, expected u32",
        ),
        (
            GOOD.replace("cloud: sim", "cloud: moon"),
            "unknown variant `moon`",
        ),
        (
            format!("{GOOD}gpu_label: \"not a label!\"\n"),
            "gpu_label: \"not a label!\" is not a valid Kubernetes label key",
        ),
        (
            format!("{GOOD}sim: {{ time_scale: 0 }}\n"),
            "sim.time_scale: must be a positive number",
        ),
        (
            "cloud: sim\nregion: sim-east-1\nnode_groups: []\n".into(),
            "node_groups: declare at least one node group",
        ),
    ];
    for (yaml, expected) in cases {
        let err = match Config::from_yaml(yaml) {
            Err(e) => e,
            Ok(config) => match gpupool_sim::SimCloud::new(
                config.sim.clone(),
                std::sync::Arc::new(gpupool_cloud::SystemClock),
            ) {
                Err(e) => ConfigError::Parse(e.to_string()),
                Ok(_) => config
                    .validate(&sim_catalog(), Some(&config.sim.zones))
                    .unwrap_err(),
            },
        };
        assert!(
            err.to_string().contains(expected),
            "for\n{yaml}\nexpected {expected:?}\ngot {err}"
        );
    }
}

const CA: &str = "k8s.io/cluster-autoscaler/node-template";

#[test]
fn ca_node_template_keys_are_honoured() {
    let yaml = format!(
        "{GOOD}    labels: {{ team: ml }}\n    annotations:\n      {CA}/label/team: ml\n      {CA}/label/workload: training\n      {CA}/taint/dedicated: \"gpu:NoSchedule\"\n      {CA}/resources/ephemeral-storage: 500Gi\n      {CA}/autoscaling-options/scaledownunneededtime: 7m\n      {CA}/autoscaling-options/scaledownutilizationthreshold: \"0.4\"\n      gpupool.dev/scale-down-utilization-threshold: \"0.4\"\n"
    );
    let g = &check(&yaml).unwrap()[0];
    assert_eq!(
        g.labels.get("workload").map(String::as_str),
        Some("training")
    );
    assert_eq!(
        g.labels.get("team").map(String::as_str),
        Some("ml"),
        "the same value both ways is fine"
    );
    assert_eq!(
        g.taints,
        vec![TaintConfig {
            key: "dedicated".into(),
            value: "gpu".into(),
            effect: TaintEffect::NoSchedule
        }]
    );
    assert_eq!(
        g.resources.get("ephemeral-storage").map(String::as_str),
        Some("500Gi")
    );
    assert_eq!(
        g.annotations.ca_options.scale_down_unneeded_time,
        Some(Duration::from_secs(420))
    );
    assert_eq!(
        g.annotations.ca_options.scale_down_utilization_threshold,
        Some(0.4)
    );
}

#[test]
fn ca_node_template_keys_that_conflict_or_are_malformed_are_refused() {
    let cases: Vec<(String, String)> = vec![
        (
            format!(
                "{GOOD}    labels: {{ team: ml }}\n    annotations: {{ {CA}/label/team: web }}\n"
            ),
            format!(
                "node group \"g1\": annotations.{CA}/label/team: \"web\" conflicts with labels.team \"ml\""
            ),
        ),
        (
            format!(
                "{GOOD}    annotations: {{ {CA}/autoscaling-options/scaledownunneededtime: 7m, gpupool.dev/scale-down-unneeded-time: 5m }}\n"
            ),
            format!(
                "node group \"g1\": annotations.{CA}/autoscaling-options/scaledownunneededtime: 420s conflicts with gpupool.dev/scale-down-unneeded-time 300s; set one of them"
            ),
        ),
        (
            format!(
                "{GOOD}    taints: [{{ key: dedicated, value: gpu, effect: NoSchedule }}]\n    annotations: {{ {CA}/taint/dedicated: \"cpu:NoSchedule\" }}\n"
            ),
            format!(
                "annotations.{CA}/taint/dedicated: value \"cpu\" conflicts with taints entry dedicated=gpu:NoSchedule"
            ),
        ),
        (
            format!("{GOOD}    annotations: {{ {CA}/taint/dedicated: gpu }}\n"),
            "\"gpu\" is not <value>:<Effect>".into(),
        ),
        (
            format!("{GOOD}    annotations: {{ {CA}/taint/dedicated: \"gpu:Never\" }}\n"),
            "effect \"Never\" is not NoSchedule".into(),
        ),
        (
            format!("{GOOD}    annotations: {{ {CA}/resources/ephemeral-storage: lots }}\n"),
            "\"lots\" is not a Kubernetes quantity".into(),
        ),
        (
            format!(
                "{GOOD}    annotations: {{ {CA}/autoscaling-options/scaledownfast: \"true\" }}\n"
            ),
            "unknown autoscaling option".into(),
        ),
        (
            format!("{GOOD}    annotations: {{ {CA}/colour/x: blue }}\n"),
            "\"colour\" is not label, taint, resources or autoscaling-options".into(),
        ),
        (
            format!(
                "{GOOD}    annotations: {{ {CA}/resources/nvidia.com/gpu: \"4\", gpupool.dev/gpu-sharing: \"time-slicing:4\" }}\n"
            ),
            format!(
                "annotations.{CA}/resources/nvidia.com/gpu: conflicts with gpupool.dev/gpu-sharing"
            ),
        ),
    ];
    for (yaml, expected) in cases {
        let err = check(&yaml).unwrap_err().to_string();
        assert!(err.contains(&expected), "expected {expected:?}\ngot {err}");
    }
}
