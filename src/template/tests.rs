//! The sharing matrix: GPU model × strategy × layout (× time-slicing), against
//! counts worked out by hand from NVIDIA's tables, read back from the encoded
//! template.

use super::*;
use crate::config::Config;
use gpupool_cloud::{GpuInfo, InstanceType};
use k8s_pb::api::core::v1::Node;

fn ty(name: &str, accelerator: &str, product: &str, count: u32, memory_mib: u64) -> InstanceType {
    let model = match accelerator {
        "nvidia-h100-80gb" => "H100",
        "nvidia-h200-141gb" => "H200",
        "nvidia-a30" => "A30",
        "nvidia-l4" => "L4",
        _ => "A100",
    };
    InstanceType {
        name: name.into(),
        vcpus: 96,
        memory_mib: 1_179_648,
        arch: Default::default(),
        gpu: Some(GpuInfo {
            accelerator: accelerator.into(),
            model: model.into(),
            product: product.into(),
            count,
            memory_mib,
        }),
    }
}

fn catalog() -> Vec<InstanceType> {
    vec![
        ty(
            "h100x8",
            "nvidia-h100-80gb",
            "NVIDIA-H100-80GB-HBM3",
            8,
            81559,
        ),
        ty(
            "a100-40x8",
            "nvidia-a100-40gb",
            "NVIDIA-A100-SXM4-40GB",
            8,
            40960,
        ),
        ty(
            "a100-80x8",
            "nvidia-a100-80gb",
            "NVIDIA-A100-SXM4-80GB",
            8,
            81920,
        ),
        ty("h200x8", "nvidia-h200-141gb", "NVIDIA-H200", 8, 143771),
        ty("a30x1", "nvidia-a30", "NVIDIA-A30", 1, 24576),
        ty("l4x1", "nvidia-l4", "NVIDIA-L4", 1, 23034),
    ]
}

/// The decoded template of one group with these gpupool.dev annotations.
fn template(instance_type: &str, annotations: &[(&str, &str)]) -> Node {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("      gpupool.dev/{k}: \"{v}\"\n"))
        .collect();
    template_with(instance_type, &annotations)
}

/// The decoded template of one group with these annotation lines.
fn template_with(instance_type: &str, annotations: &str) -> Node {
    Node::decode(build(instance_type, annotations).bytes.as_slice()).unwrap()
}

/// The template of one group with these annotation lines.
fn build(instance_type: &str, annotations: &str) -> Template {
    let yaml = format!(
        "cloud: sim\nregion: r\nnode_groups:\n  - id: g\n    min_size: 0\n    max_size: 1\n    instance_type: {instance_type}\n    zones: [ra]\n    annotations:\n{annotations}      x.example/keep: \"1\"\n"
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let spec = config
        .validate(&catalog(), Some(&["ra".into()]))
        .unwrap()
        .remove(0);
    Template::build(
        &spec,
        TemplateContext {
            region: "r",
            gpu_label: "gpu-type",
        },
    )
}

fn resources(node: &Node) -> BTreeMap<String, String> {
    let status = node.status.as_ref().unwrap();
    assert_eq!(
        status
            .capacity
            .iter()
            .filter(|(k, _)| k.starts_with("nvidia.com/"))
            .count(),
        status
            .allocatable
            .iter()
            .filter(|(k, _)| k.starts_with("nvidia.com/"))
            .count()
    );
    status
        .allocatable
        .iter()
        .filter(|(k, _)| k.starts_with("nvidia.com/"))
        .map(|(k, q)| (k.clone(), q.string.clone().unwrap()))
        .collect()
}

fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .as_ref()
        .unwrap()
        .labels
        .get(key)
        .map(String::as_str)
}

fn expect(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn whole_gpus() {
    let n = template("h100x8", &[]);
    assert_eq!(resources(&n), expect(&[("nvidia.com/gpu", "8")]));
    assert_eq!(label(&n, "gpu-type"), Some("nvidia-h100-80gb"));
    assert_eq!(
        label(&n, "nvidia.com/gpu.product"),
        Some("NVIDIA-H100-80GB-HBM3")
    );
    assert_eq!(label(&n, "nvidia.com/gpu.replicas"), None);
}

#[test]
fn time_slicing_multiplies_gpus() {
    let n = template("l4x1", &[("gpu-sharing", "time-slicing:4")]);
    assert_eq!(resources(&n), expect(&[("nvidia.com/gpu", "4")]));
    assert_eq!(label(&n, "nvidia.com/gpu.replicas"), Some("4"));
    assert_eq!(
        label(&n, "nvidia.com/gpu.sharing-strategy"),
        Some("time-slicing")
    );
    assert_eq!(
        label(&n, "nvidia.com/gpu.product"),
        Some("NVIDIA-L4-SHARED")
    );
    assert_eq!(label(&n, "nvidia.com/gpu.count"), Some("1"));
    assert_eq!(label(&n, "gpu-type"), Some("nvidia-l4"));
}

#[test]
fn mig_single_advertises_slices_as_gpus() {
    // 7 × 1g.5gb per A100 40GB, 8 GPUs.
    let n = template("a100-40x8", &[("gpu-sharing", "mig:all-1g.5gb")]);
    assert_eq!(resources(&n), expect(&[("nvidia.com/gpu", "56")]));
    assert_eq!(label(&n, "nvidia.com/mig.strategy"), Some("single"));
    assert_eq!(label(&n, "nvidia.com/mig.config"), Some("all-1g.5gb"));
    assert_eq!(
        label(&n, "nvidia.com/gpu.product"),
        Some("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb")
    );
    assert_eq!(label(&n, "nvidia.com/gpu.count"), Some("56"));
    assert_eq!(label(&n, "nvidia.com/gpu.memory"), Some("5120"));
    assert_eq!(label(&n, "nvidia.com/gpu.slices.gi"), Some("1"));
    assert_eq!(label(&n, "gpu-type"), Some("nvidia-a100-40gb"));

    // A30: 2 × 2g.12gb.
    let n = template(
        "a30x1",
        &[
            ("gpu-sharing", "mig:all-2g.12gb"),
            ("mig-strategy", "single"),
        ],
    );
    assert_eq!(resources(&n), expect(&[("nvidia.com/gpu", "2")]));
}

#[test]
fn mig_mixed_advertises_each_profile_and_leaves_the_gpu_label_off() {
    // all-balanced on H100 80GB: 2 × 1g.10gb, 1 × 2g.20gb, 1 × 3g.40gb per GPU.
    let n = template(
        "h100x8",
        &[
            ("gpu-sharing", "mig:all-balanced"),
            ("mig-strategy", "mixed"),
        ],
    );
    assert_eq!(
        resources(&n),
        expect(&[
            ("nvidia.com/mig-1g.10gb", "16"),
            ("nvidia.com/mig-2g.20gb", "8"),
            ("nvidia.com/mig-3g.40gb", "8"),
        ])
    );
    assert_eq!(label(&n, "nvidia.com/mig.strategy"), Some("mixed"));
    assert_eq!(label(&n, "nvidia.com/mig-3g.40gb.count"), Some("8"));
    assert_eq!(label(&n, "nvidia.com/mig-3g.40gb.memory"), Some("40960"));
    assert_eq!(label(&n, "nvidia.com/mig-2g.20gb.slices.ci"), Some("2"));
    assert_eq!(
        label(&n, "nvidia.com/gpu.product"),
        Some("NVIDIA-H100-80GB-HBM3")
    );
    assert_eq!(
        label(&n, "gpu-type"),
        None,
        "CA would hold such nodes unready forever"
    );
    assert_eq!(
        label(&n, "x.example/keep"),
        None,
        "annotations are not labels"
    );
}

#[test]
fn mig_and_time_slicing_multiply_as_the_device_plugin_does() {
    // Single: 2 × 3g.40gb × 8 GPUs × 2 replicas.
    let n = template(
        "a100-80x8",
        &[("gpu-sharing", "mig:3g.40gb=2+time-slicing:2")],
    );
    assert_eq!(resources(&n), expect(&[("nvidia.com/gpu", "32")]));
    assert_eq!(
        label(&n, "nvidia.com/gpu.product"),
        Some("NVIDIA-A100-SXM4-80GB-MIG-3g.40gb-SHARED")
    );
    assert_eq!(label(&n, "nvidia.com/gpu.count"), Some("16"));
    assert_eq!(label(&n, "nvidia.com/gpu.replicas"), Some("2"));
    // Mixed: 7 × 1g.18gb × 8 GPUs × 3 replicas.
    let n = template(
        "h200x8",
        &[
            ("gpu-sharing", "mig:all-1g.18gb+time-slicing:3"),
            ("mig-strategy", "mixed"),
        ],
    );
    assert_eq!(resources(&n), expect(&[("nvidia.com/mig-1g.18gb", "168")]));
    assert_eq!(label(&n, "nvidia.com/mig-1g.18gb.replicas"), Some("3"));
    assert_eq!(label(&n, "nvidia.com/mig-1g.18gb.count"), Some("56"));
}

#[test]
fn ca_resource_and_label_tags_reach_the_template() {
    let n = template_with(
        "l4x1",
        "      k8s.io/cluster-autoscaler/node-template/resources/ephemeral-storage: 900Gi\n      k8s.io/cluster-autoscaler/node-template/label/pool: inference\n      k8s.io/cluster-autoscaler/node-template/taint/dedicated: \"ml:NoExecute\"\n",
    );
    let status = n.status.as_ref().unwrap();
    for map in [&status.capacity, &status.allocatable] {
        assert_eq!(map["ephemeral-storage"].string.as_deref(), Some("900Gi"));
    }
    assert_eq!(label(&n, "pool"), Some("inference"));
    let taints = &n.spec.as_ref().unwrap().taints;
    assert!(
        taints
            .iter()
            .any(|t| t.key.as_deref() == Some("dedicated")
                && t.effect.as_deref() == Some("NoExecute"))
    );
}

#[test]
fn only_templates_with_the_gpu_label_report_a_gpu_type() {
    assert_eq!(
        build("h100x8", "").gpu_type.as_deref(),
        Some("nvidia-h100-80gb")
    );
    let mixed =
        "      gpupool.dev/gpu-sharing: mig:all-1g.10gb\n      gpupool.dev/mig-strategy: mixed\n";
    assert_eq!(build("h100x8", mixed).gpu_type, None);
    assert_eq!(
        build("h100x8", "      gpupool.dev/dra: \"true\"\n").gpu_type,
        None
    );
}

fn slice_of(t: &Template) -> k8s_pb::api::resource::v1::ResourceSlice {
    assert_eq!(t.resource_slices.len(), 1);
    k8s_pb::api::resource::v1::ResourceSlice::decode(t.resource_slices[0].as_slice()).unwrap()
}

#[test]
fn dra_groups_publish_one_device_per_gpu_and_no_device_plugin_resources() {
    let t = build("h100x8", "      gpupool.dev/dra: \"true\"\n");
    let node = Node::decode(t.bytes.as_slice()).unwrap();
    assert!(
        resources(&node).is_empty(),
        "no nvidia.com/gpu: the DRA driver hands GPUs out"
    );
    assert_eq!(label(&node, "gpu-type"), None);
    let spec = slice_of(&t).spec.unwrap();
    assert_eq!(spec.driver.as_deref(), Some("gpu.nvidia.com"));
    assert_eq!(spec.node_name.as_deref(), Some("template-node-for-g"));
    assert_eq!(spec.pool.as_ref().unwrap().resource_slice_count, Some(1));
    let names: Vec<_> = spec
        .devices
        .iter()
        .map(|d| d.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        (0..8).map(|i| format!("gpu-{i}")).collect::<Vec<_>>()
    );
    let d = &spec.devices[0];
    let attr = |k: &str| {
        let a = &d.attributes[k];
        a.string.clone().or(a.version.clone()).unwrap()
    };
    assert_eq!(attr("type"), "gpu");
    assert_eq!(attr("productName"), "NVIDIA H100 80GB HBM3");
    assert_eq!(attr("brand"), "Nvidia");
    assert_eq!(attr("architecture"), "Hopper");
    assert_eq!(attr("cudaComputeCapability"), "9.0.0");
    assert_eq!(
        d.capacity["memory"]
            .value
            .as_ref()
            .unwrap()
            .string
            .as_deref(),
        Some("81559Mi")
    );
    assert!(
        build("h100x8", "").resource_slices.is_empty(),
        "only DRA groups publish slices"
    );
}

#[test]
fn dra_mig_devices_are_named_and_placed_as_the_driver_names_them() {
    // 2 × 3g.20gb per A100 40GB: GI profile id 9, at memory slices 0 and 4.
    let t = build(
        "a100-40x8",
        "      gpupool.dev/dra: \"true\"\n      gpupool.dev/gpu-sharing: mig:all-3g.20gb\n",
    );
    let spec = slice_of(&t).spec.unwrap();
    assert_eq!(spec.devices.len(), 16);
    let names: Vec<_> = spec.devices[..2]
        .iter()
        .map(|d| d.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["gpu-0-mig-9-0-4", "gpu-0-mig-9-4-4"]);
    let d = &spec.devices[1];
    assert_eq!(d.attributes["type"].string.as_deref(), Some("mig"));
    assert_eq!(d.attributes["profile"].string.as_deref(), Some("3g.20gb"));
    assert_eq!(
        d.attributes["productName"].string.as_deref(),
        Some("NVIDIA A100-SXM4-40GB")
    );
    let slices: Vec<_> = d
        .capacity
        .keys()
        .filter(|k| k.starts_with("memorySlice"))
        .cloned()
        .collect();
    assert_eq!(
        slices,
        [
            "memorySlice4",
            "memorySlice5",
            "memorySlice6",
            "memorySlice7"
        ]
    );
    assert_eq!(
        d.capacity["memory"]
            .value
            .as_ref()
            .unwrap()
            .string
            .as_deref(),
        Some("20Gi")
    );
}
