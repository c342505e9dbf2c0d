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

const AWS: &str = r#"
cloud: aws
region: us-east-1
aws:
  cluster: prod-east
node_groups:
  - id: h100
    min_size: 0
    max_size: 4
    instance_type: p5.48xlarge
    capacity_type: spot-then-on-demand
    aws:
      launch_template: { name: gpu-nodes, version: "$Latest" }
      instance_types: [p5e.48xlarge]
      subnets: [subnet-0a1b2c3d, subnet-0a1b2c3e]
"#;

fn check_aws(yaml: &str) -> Result<Vec<GroupSpec>, ConfigError> {
    let config = Config::from_yaml(yaml)?;
    config.validate(&crate::catalog::builtin(CloudKind::Aws), None)
}

#[test]
fn an_aws_group_names_its_launch_template_types_and_subnets() {
    let specs = check_aws(AWS).unwrap();
    assert_eq!(specs[0].instance_types, vec!["p5.48xlarge", "p5e.48xlarge"]);
    let config = Config::from_yaml(AWS).unwrap();
    let aws = config.node_groups[0].aws.as_ref().unwrap();
    assert_eq!(aws.launch_template.version, "$Latest");
    // The version defaults to the template's default version.
    let default = AWS.replace(", version: \"$Latest\"", "");
    let config = Config::from_yaml(&default).unwrap();
    assert_eq!(
        config.node_groups[0]
            .aws
            .as_ref()
            .unwrap()
            .launch_template
            .version,
        "$Default"
    );
    check_aws(&default).unwrap();
}

#[test]
fn bad_aws_settings_are_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "aws:\n  cluster: prod-east\n",
            "",
            "aws: required with cloud: aws",
        ),
        (
            "cluster: prod-east",
            "cluster: \"\"",
            "aws.cluster: must not be empty",
        ),
        (
            "cluster: prod-east",
            "cluster: prod east",
            "aws.cluster: \"prod east\" must be",
        ),
        (
            "cluster: prod-east",
            "cluster: prod-east\n  endpoint_url: localhost:5000",
            "aws.endpoint_url: \"localhost:5000\" is not an http(s) URL",
        ),
        (
            "{ name: gpu-nodes, version: \"$Latest\" }",
            "{ name: gpu-nodes, id: lt-0123456789abcdef0 }",
            "node group \"h100\": aws.launch_template: give exactly one of id and name",
        ),
        (
            "{ name: gpu-nodes, version: \"$Latest\" }",
            "{ id: lt-xyz }",
            "aws.launch_template.id: \"lt-xyz\" is not a launch template id",
        ),
        (
            "version: \"$Latest\"",
            "version: latest",
            "aws.launch_template.version: \"latest\" must be $Default, $Latest or a version number",
        ),
        (
            "[p5e.48xlarge]",
            "[p4d.24xlarge]",
            "aws.instance_types[0]: p4d.24xlarge (8 GPUs, 96 vCPUs, 1179648 MiB) is smaller than or differs from instance_type p5.48xlarge",
        ),
        (
            "[p5e.48xlarge]",
            "[p5e.48xlarge, p5e.48xlarge]",
            "aws.instance_types[1]: \"p5e.48xlarge\" is listed twice",
        ),
        (
            "[p5e.48xlarge]",
            "[p9.huge]",
            "aws.instance_types[0]: \"p9.huge\" is not an instance type",
        ),
        (
            "subnet-0a1b2c3e]",
            "us-east-1a]",
            "aws.subnets[1]: \"us-east-1a\" is not a subnet id",
        ),
    ];
    for (from, to, expected) in cases {
        let yaml = AWS.replacen(from, to, 1);
        assert_ne!(yaml, AWS, "{from:?} is in the base config");
        let err = check_aws(&yaml).unwrap_err().to_string();
        assert!(err.contains(expected), "{from:?} -> {to:?}: {err}");
    }
    // A group without its launch template, and AWS settings on another cloud.
    let bare = AWS.replace(
        "    aws:\n      launch_template: { name: gpu-nodes, version: \"$Latest\" }\n      instance_types: [p5e.48xlarge]\n      subnets: [subnet-0a1b2c3d, subnet-0a1b2c3e]\n",
        "",
    );
    let err = check_aws(&bare).unwrap_err().to_string();
    assert!(
        err.contains("node group \"h100\": aws: required with cloud: aws"),
        "{err}"
    );
    let sim = with_group_line("aws: { launch_template: { name: gpu-nodes } }");
    let err = check(&sim).unwrap_err().to_string();
    assert!(
        err.contains("node group \"g1\": aws: set, but the cloud is sim"),
        "{err}"
    );
    let sim = GOOD.replace(
        "region: sim-east-1",
        "region: sim-east-1\naws: { cluster: c }",
    );
    let err = check(&sim).unwrap_err().to_string();
    assert!(err.contains("aws: set, but the cloud is sim"), "{err}");
}

fn template(tags: &[(&str, &str)]) -> DiscoveredTemplate {
    DiscoveredTemplate {
        id: "lt-0123456789abcdef0".into(),
        name: "gpu-p5".into(),
        version: "$Default".into(),
        instance_type: Some("p5.48xlarge".into()),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn a_launch_template_tagged_for_ca_declares_a_group() {
    let t = template(&[
        ("k8s.io/cluster-autoscaler/enabled", "true"),
        ("k8s.io/cluster-autoscaler/prod-east", "owned"),
        ("gpupool.dev/max-size", "8"),
        ("gpupool.dev/min-size", "1"),
        ("gpupool.dev/subnets", "subnet-0a1b2c3d,subnet-0a1b2c3e"),
        ("gpupool.dev/capacity-type", "spot"),
        ("gpupool.dev/interruption", "replace"),
        ("k8s.io/cluster-autoscaler/node-template/label/team", "ml"),
        ("Name", "gpu nodes"),
    ]);
    let group = t.node_group().unwrap();
    assert_eq!(group.id, "gpu-p5", "named after the template");
    assert_eq!((group.min_size, group.max_size), (1, 8));
    assert_eq!(group.instance_type, "p5.48xlarge", "the template's type");
    let aws = group.aws.as_ref().unwrap();
    assert_eq!(
        aws.launch_template.id.as_deref(),
        Some("lt-0123456789abcdef0")
    );
    assert_eq!(aws.subnets, vec!["subnet-0a1b2c3d", "subnet-0a1b2c3e"]);
    assert_eq!(
        group.annotations.keys().collect::<Vec<_>>(),
        vec![
            "gpupool.dev/capacity-type",
            "gpupool.dev/interruption",
            "k8s.io/cluster-autoscaler/node-template/label/team"
        ],
        "gpupool's and CA's node-template tags are the annotations; other tags are not"
    );
    // It validates like a declared group: typed annotations and all.
    let mut config = Config::from_yaml(AWS).unwrap();
    config.node_groups.push(group);
    let specs = config
        .validate(&crate::catalog::builtin(CloudKind::Aws), None)
        .unwrap();
    assert_eq!(specs[1].purchase, PurchaseOption::Spot);
    assert_eq!(specs[1].labels["team"], "ml");

    // The id and types from gpupool's tags win over the name and the template.
    let t = template(&[
        ("gpupool.dev/max-size", "2"),
        ("gpupool.dev/node-group", "h200"),
        ("gpupool.dev/instance-types", "p5e.48xlarge p5en.48xlarge"),
    ]);
    let group = t.node_group().unwrap();
    assert_eq!(group.id, "h200");
    assert_eq!(group.instance_type, "p5e.48xlarge");
    assert_eq!(group.aws.unwrap().instance_types, vec!["p5en.48xlarge"]);
}

#[test]
fn bad_discovery_tags_name_the_template_and_the_tag() {
    type Tags<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Tags, Option<&str>, &str)] = &[
        (
            &[],
            Some("p5.48xlarge"),
            "launch template gpu-p5 (lt-0123456789abcdef0): tag gpupool.dev/max-size: missing",
        ),
        (
            &[("gpupool.dev/max-size", "eight")],
            Some("p5.48xlarge"),
            "tag gpupool.dev/max-size: \"eight\" is not a whole number",
        ),
        (
            &[("gpupool.dev/max-size", "8")],
            None,
            "tag gpupool.dev/instance-types: missing, and version $Default of the template names no instance type",
        ),
    ];
    for (tags, ty, expected) in cases {
        let mut t = template(tags);
        t.instance_type = ty.map(str::to_owned);
        let err = t.node_group().unwrap_err().to_string();
        assert!(err.contains(expected), "{tags:?}: {err}");
    }
    // A misspelt gpupool tag fails validation as an annotation would.
    let group = template(&[
        ("gpupool.dev/max-size", "8"),
        ("gpupool.dev/capcity-type", "spot"),
    ])
    .node_group()
    .unwrap();
    let mut config = Config::from_yaml(AWS).unwrap();
    config.node_groups.push(group);
    let err = config
        .validate(&crate::catalog::builtin(CloudKind::Aws), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node group \"gpu-p5\": annotations.gpupool.dev/capcity-type: unknown gpupool.dev annotation"),
        "{err}"
    );
}

#[test]
fn a_config_that_only_discovers_declares_no_groups_and_bad_template_names_are_named() {
    let yaml = "cloud: aws\nregion: us-east-1\naws: { cluster: prod-east, discover_launch_templates: true }\nnode_groups: []\n";
    assert!(check_aws(yaml).unwrap().is_empty());
    let err = check_aws(&yaml.replace(", discover_launch_templates: true", ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("declare at least one node group"), "{err}");

    let mut t = template(&[("gpupool.dev/max-size", "2")]);
    t.name = "GPU_nodes".into();
    let err = t.node_group().unwrap_err().to_string();
    assert!(
        err.contains("tag gpupool.dev/node-group: missing, and the template's name \"GPU_nodes\" is no group id"),
        "{err}"
    );
}

#[test]
fn request_limits_out_of_range_are_named() {
    for (line, field) in [
        (
            "grpc_max_message_bytes: 1024",
            "server.grpc_max_message_bytes",
        ),
        (
            "max_concurrent_requests: 0",
            "server.max_concurrent_requests",
        ),
    ] {
        let yaml = format!("server:\n  {line}\n{GOOD}");
        let err = check(&yaml).unwrap_err().to_string();
        assert!(err.contains(field), "{line}: {err}");
    }
    let yaml =
        format!("server:\n  grpc_max_message_bytes: 65536\n  max_concurrent_requests: 1\n{GOOD}");
    assert!(check(&yaml).is_ok());
}
