//! The same CA conversation twice over real gRPC: once as CA ≤ 1.33 calls
//! (old fields only), once as CA ≥ 1.35 does (new fields only). Both must get
//! the template, the options and the prices right.

mod common;

use common::*;
use gpupool::proto::*;
use k8s_pb::api::core::v1::{Container, Node, Pod, PodSpec, ResourceRequirements, Toleration};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use prost::Message;
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::Code;

const GROUPS: &str = "
  - id: h100
    min_size: 0
    max_size: 4
    instance_type: gpu-8x-h100-80gb
    zones: [sim-east-1b]
    capacity_type: spot
    labels: { team: research }
    taints:
      - { key: nvidia.com/gpu, value: present, effect: NoSchedule }
    annotations:
      gpupool.dev/scale-down-unneeded-time: 3m
      gpupool.dev/zero-or-max-node-scaling: \"true\"
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
";

const EXTRA: &str = "gpu_label: k8s.amazonaws.com/accelerator\n";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ca {
    /// CA ≤ 1.33: reads template field 1, sends and reads option fields 3-7,
    /// sends meta/v1 Time and the embedded pod.
    Old,
    /// CA ≥ 1.35: template field 2, option fields 6-11, Timestamps, pod_bytes.
    New,
}

fn minutes(m: i64) -> i64 {
    m * 60 * 1_000_000_000
}

fn defaults(ca: Ca) -> NodeGroupAutoscalingOptions {
    let mut d = NodeGroupAutoscalingOptions {
        scale_down_utilization_threshold: 0.5,
        scale_down_gpu_utilization_threshold: 0.5,
        ..Default::default()
    };
    match ca {
        Ca::Old => {
            d.scale_down_unneeded_time = Some(K8sDuration {
                duration: minutes(10),
            });
            d.scale_down_unready_time = Some(K8sDuration {
                duration: minutes(20),
            });
            d.max_node_provision_time = Some(K8sDuration {
                duration: minutes(15),
            });
        }
        Ca::New => {
            let dur = |m: i64| {
                Some(prost_types::Duration {
                    seconds: m * 60,
                    nanos: 0,
                })
            };
            d.scale_down_unneeded_duration = dur(10);
            d.scale_down_unready_duration = dur(20);
            d.max_node_provision_duration = dur(15);
            d.max_node_startup_duration = dur(15);
            d.ignore_daemon_sets_utilization = true;
        }
    }
    d
}

/// Minutes from whichever duration fields this CA reads.
fn read_minutes(ca: Ca, o: &NodeGroupAutoscalingOptions) -> (i64, i64, i64) {
    match ca {
        Ca::Old => {
            let m =
                |d: &Option<K8sDuration>| d.as_ref().expect("old field set").duration / minutes(1);
            (
                m(&o.scale_down_unneeded_time),
                m(&o.scale_down_unready_time),
                m(&o.max_node_provision_time),
            )
        }
        Ca::New => {
            let m =
                |d: &Option<prost_types::Duration>| d.as_ref().expect("new field set").seconds / 60;
            (
                m(&o.scale_down_unneeded_duration),
                m(&o.scale_down_unready_duration),
                m(&o.max_node_provision_duration),
            )
        }
    }
}

fn pod(gpus: u32) -> Pod {
    let q = |s: &str| Quantity {
        string: Some(s.into()),
    };
    Pod {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: Some("trainer".into()),
                resources: Some(ResourceRequirements {
                    requests: BTreeMap::from([
                        ("cpu".to_string(), q("4")),
                        ("memory".to_string(), q("16Gi")),
                    ]),
                    limits: BTreeMap::from([("nvidia.com/gpu".to_string(), q(&gpus.to_string()))]),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            // The H100 group is tainted for GPU pods.
            tolerations: vec![Toleration {
                key: Some("nvidia.com/gpu".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_request(ca: Ca, pod: &Pod, hours: u64) -> PricingPodPriceRequest {
    let bytes = pod.encode_to_vec();
    let start = t0();
    let end = start + Duration::from_secs(hours * 3600);
    match ca {
        Ca::Old => PricingPodPriceRequest {
            pod: bytes,
            start_time: Some(k8s_time(start)),
            end_time: Some(k8s_time(end)),
            ..Default::default()
        },
        Ca::New => PricingPodPriceRequest {
            pod_bytes: bytes,
            start_timestamp: Some(start.into()),
            end_timestamp: Some(end.into()),
            ..Default::default()
        },
    }
}

/// CA's price for a pod asking for `gpus` GPUs, over `hours`.
async fn pod_price(c: &mut Client, ca: Ca, gpus: u32, hours: u64) -> f64 {
    c.pricing_pod_price(pod_request(ca, &pod(gpus), hours))
        .await
        .unwrap()
        .into_inner()
        .price
}

fn node_request(ca: Ca, node: ExternalGrpcNode, minutes: u64) -> PricingNodePriceRequest {
    let start = t0();
    let end = start + Duration::from_secs(minutes * 60);
    match ca {
        Ca::Old => PricingNodePriceRequest {
            node: Some(node),
            start_time: Some(k8s_time(start)),
            end_time: Some(k8s_time(end)),
            ..Default::default()
        },
        Ca::New => PricingNodePriceRequest {
            node: Some(node),
            start_timestamp: Some(start.into()),
            end_timestamp: Some(end.into()),
            ..Default::default()
        },
    }
}

fn k8s_time(t: std::time::SystemTime) -> K8sTime {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
    K8sTime {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

async fn template(h: &mut Harness, ca: Ca, id: &str) -> Node {
    let r = h
        .client
        .node_group_template_node_info(NodeGroupTemplateNodeInfoRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    let bytes = match ca {
        Ca::Old => r.node_info,
        Ca::New => r.node_bytes,
    };
    Node::decode(bytes.as_slice()).expect("a core/v1 Node in Kubernetes protobuf encoding")
}

async fn conversation(ca: Ca) {
    let mut h = Harness::start(&config_yaml(GROUPS, EXTRA)).await;
    let c = &mut h.client;

    // Start of a loop.
    c.refresh(RefreshRequest {}).await.unwrap();
    let groups = c
        .node_groups(NodeGroupsRequest {})
        .await
        .unwrap()
        .into_inner()
        .node_groups;
    let ids: Vec<_> = groups
        .iter()
        .map(|g| (g.id.as_str(), g.min_size, g.max_size))
        .collect();
    assert_eq!(ids, vec![("h100", 0, 4), ("l4", 0, 10)]);

    // GPU label and types agree with the templates.
    let label = c
        .gpu_label(GpuLabelRequest {})
        .await
        .unwrap()
        .into_inner()
        .label;
    assert_eq!(label, "k8s.amazonaws.com/accelerator");
    let mut types: Vec<_> = c
        .get_available_gpu_types(GetAvailableGpuTypesRequest {})
        .await
        .unwrap()
        .into_inner()
        .gpu_types
        .into_keys()
        .collect();
    types.sort();
    assert_eq!(types, vec!["nvidia-h100-80gb", "nvidia-l4"]);

    // The template, from the field this CA reads, is what was configured.
    let node = template(&mut h, ca, "h100").await;
    let meta = node.metadata.unwrap();
    let labels = meta.labels;
    for (k, v) in [
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("node.kubernetes.io/instance-type", "gpu-8x-h100-80gb"),
        ("topology.kubernetes.io/region", "sim-east-1"),
        ("topology.kubernetes.io/zone", "sim-east-1b"),
        ("k8s.amazonaws.com/accelerator", "nvidia-h100-80gb"),
        ("gpupool.dev/capacity-type", "spot"),
        ("gpupool.dev/node-group", "h100"),
        ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
        ("nvidia.com/gpu.count", "8"),
        ("nvidia.com/gpu.memory", "81559"),
        ("team", "research"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    assert!(
        types.contains(&labels[&label]),
        "the GPU label's value is an available GPU type"
    );
    let taints: Vec<_> = node
        .spec
        .unwrap()
        .taints
        .into_iter()
        .map(|t| (t.key.unwrap(), t.value.unwrap(), t.effect.unwrap()))
        .collect();
    assert_eq!(
        taints,
        vec![(
            "nvidia.com/gpu".into(),
            "present".into(),
            "NoSchedule".into()
        )]
    );
    let status = node.status.unwrap();
    let qty = |m: &BTreeMap<String, Quantity>, k: &str| m[k].string.clone().unwrap();
    assert_eq!(qty(&status.capacity, "cpu"), "192");
    assert_eq!(qty(&status.capacity, "nvidia.com/gpu"), "8");
    assert_eq!(qty(&status.allocatable, "nvidia.com/gpu"), "8");
    assert_eq!(qty(&status.capacity, "memory"), "2097152Mi");
    // 192 vCPU: 60 + 10 + 2×5 + 188×2.5 = 550m reserved.
    assert_eq!(qty(&status.allocatable, "cpu"), "191450m");
    let reserved_mib = 2_097_152
        - qty(&status.allocatable, "memory")
            .trim_end_matches("Mi")
            .parse::<u64>()
            .unwrap();
    assert_eq!(
        reserved_mib,
        gpupool::template::reserve::memory_mib(2_097_152)
    );
    assert_eq!(qty(&status.allocatable, "pods"), "110");
    assert_eq!(qty(&status.allocatable, "ephemeral-storage"), "180Gi");
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.r#type.as_deref() == Some("Ready") && c.status.as_deref() == Some("True"))
    );

    // Options: CA's defaults echoed, the group's annotations over them.
    let c = &mut h.client;
    let options = |id: &str| NodeGroupAutoscalingOptionsRequest {
        id: id.into(),
        defaults: Some(defaults(ca)),
    };
    let o = c
        .node_group_get_options(options("h100"))
        .await
        .unwrap()
        .into_inner()
        .node_group_autoscaling_options
        .unwrap();
    // The provision deadline comes from the boot-latency model: with no
    // boots seen, the default 8m prior's p99 (12m) × 1.5 = 18m, above CA's 15m.
    assert_eq!(read_minutes(ca, &o), (3, 20, 18));
    assert!(o.zero_or_max_node_scaling);
    assert_eq!(o.scale_down_utilization_threshold, 0.5);
    let o = c
        .node_group_get_options(options("l4"))
        .await
        .unwrap()
        .into_inner()
        .node_group_autoscaling_options
        .unwrap();
    assert_eq!(
        read_minutes(ca, &o),
        (10, 20, 18),
        "no annotations: the defaults, but the provision deadline from the boot model"
    );
    assert!(!o.zero_or_max_node_scaling);
    if ca == Ca::New {
        assert!(o.ignore_daemon_sets_utilization);
        assert_eq!(o.max_node_startup_duration.unwrap().seconds, 15 * 60);
    }
    assert_status(
        c.node_group_get_options(options("nope")).await,
        Code::NotFound,
        "nope",
    );

    // Prices: a template node priced by its group (spot H100: $22.02/h).
    let template_node = ExternalGrpcNode {
        name: "template-node-for-h100-5xk2p".into(),
        provider_id: "gpupool-sim:///sim-east-1a/i-someoneelses".into(),
        labels: labels.into_iter().collect(),
        ..Default::default()
    };
    let price = c
        .pricing_node_price(node_request(ca, template_node, 30))
        .await
        .unwrap()
        .into_inner()
        .price;
    assert!(close(price, 22.02 / 2.0), "{price}");
    // A one-GPU pod: cheapest on the L4 group ($0.98/h whole node).
    let price = pod_price(c, ca, 1, 2).await;
    assert!(close(price, 0.98 * 2.0), "{price}");
    // Two GPUs fit only the H100 group: a quarter of the node.
    let price = pod_price(c, ca, 2, 1).await;
    assert!(close(price, 22.02 / 4.0), "{price}");
    // Nine GPUs fit nowhere: conservatively the dearest whole node, not an error.
    let price = pod_price(c, ca, 9, 1).await;
    assert!(close(price, 22.02), "{price}");

    // Scale up and find the nodes again.
    c.node_group_increase_size(NodeGroupIncreaseSizeRequest {
        id: "l4".into(),
        delta: 1,
    })
    .await
    .unwrap();
    h.settle().await;
    h.refresh().await;
    let instance = h.nodes("l4").await.remove(0);
    let c = &mut h.client;
    let group_of = |provider_id: &str, name: &str| NodeGroupForNodeRequest {
        node: Some(ExternalGrpcNode {
            provider_id: provider_id.into(),
            name: name.into(),
            ..Default::default()
        }),
    };
    let g = c
        .node_group_for_node(group_of(&instance.id, "whatever"))
        .await
        .unwrap()
        .into_inner()
        .node_group
        .unwrap();
    assert_eq!((g.id.as_str(), g.max_size), ("l4", 10));
    let g = c
        .node_group_for_node(group_of("", &instance.id))
        .await
        .unwrap()
        .into_inner()
        .node_group
        .unwrap();
    assert_eq!(
        g.id, "l4",
        "an unregistered instance is named by its providerID"
    );
    let g = c
        .node_group_for_node(group_of("aws:///us-east-1a/i-0abc", "ip-10-0-0-1"))
        .await
        .unwrap()
        .into_inner()
        .node_group
        .unwrap();
    assert_eq!(g, NodeGroup::default(), "not ours: the empty group");
    // A real node is priced by its instance (on-demand L4 $0.98/h).
    let real = ExternalGrpcNode {
        provider_id: instance.id.clone(),
        name: "n".into(),
        ..Default::default()
    };
    let price = c
        .pricing_node_price(node_request(ca, real, 60))
        .await
        .unwrap()
        .into_inner()
        .price;
    assert!(close(price, 0.98), "{price}");

    c.cleanup(CleanupRequest {}).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn an_old_ca_gets_everything_from_the_old_fields() {
    conversation(Ca::Old).await;
}

#[tokio::test]
async fn a_new_ca_gets_everything_from_the_new_fields() {
    conversation(Ca::New).await;
}

#[tokio::test]
async fn template_fields_1_and_2_carry_the_same_node_and_options_both_encodings() {
    let mut h = Harness::start(&config_yaml(GROUPS, EXTRA)).await;
    assert_eq!(
        template(&mut h, Ca::Old, "h100").await,
        template(&mut h, Ca::New, "h100").await
    );
    assert_status(
        h.client
            .node_group_template_node_info(NodeGroupTemplateNodeInfoRequest { id: "nope".into() })
            .await,
        Code::NotFound,
        "nope",
    );
    for ca in [Ca::Old, Ca::New] {
        let o = h
            .client
            .node_group_get_options(NodeGroupAutoscalingOptionsRequest {
                id: "h100".into(),
                defaults: Some(defaults(ca)),
            })
            .await
            .unwrap()
            .into_inner()
            .node_group_autoscaling_options
            .unwrap();
        // Whatever CA sent, the reply carries both encodings (CA 1.31-1.34
        // dereference the old ones unchecked).
        assert_eq!(
            read_minutes(Ca::Old, &o),
            read_minutes(Ca::New, &o),
            "{ca:?}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn options_can_be_switched_to_unimplemented_for_cas_that_would_zero_startup_time() {
    let extra = "server:\n  grpc_listen: 127.0.0.1:0\n  http_listen: 127.0.0.1:0\n  node_group_options: unimplemented\n";
    let yaml = format!("cloud: sim\nregion: sim-east-1\n{extra}node_groups:\n{GROUPS}");
    let mut h = Harness::start(&yaml).await;
    assert_status(
        h.client
            .node_group_get_options(NodeGroupAutoscalingOptionsRequest {
                id: "h100".into(),
                defaults: Some(defaults(Ca::New)),
            })
            .await,
        Code::Unimplemented,
        "node_group_options: unimplemented",
    );
    h.stop().await;
}

#[tokio::test]
async fn bad_pricing_requests_name_the_field() {
    let mut h = Harness::start(&config_yaml(GROUPS, EXTRA)).await;
    let c = &mut h.client;
    let n = ExternalGrpcNode {
        name: "template-node-for-l4-x".into(),
        ..Default::default()
    };
    assert_status(
        c.pricing_node_price(PricingNodePriceRequest {
            node: Some(n.clone()),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "startTimestamp: missing",
    );
    let mut backwards = node_request(Ca::New, n.clone(), 60);
    std::mem::swap(&mut backwards.start_timestamp, &mut backwards.end_timestamp);
    assert_status(
        c.pricing_node_price(backwards).await,
        Code::InvalidArgument,
        "endTimestamp: is before startTimestamp",
    );
    assert_status(
        c.pricing_node_price(node_request(
            Ca::New,
            ExternalGrpcNode {
                name: "stranger".into(),
                ..Default::default()
            },
            60,
        ))
        .await,
        Code::NotFound,
        "\"stranger\" is not a node of ours",
    );
    let labelled = ExternalGrpcNode {
        name: "stranger".into(),
        labels: [
            (
                "node.kubernetes.io/instance-type".to_string(),
                "gpu-1x-l40s".to_string(),
            ),
            ("gpupool.dev/capacity-type".to_string(), "spot".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let price = c
        .pricing_node_price(node_request(Ca::New, labelled, 60))
        .await
        .unwrap()
        .into_inner()
        .price;
    assert!(close(price, 0.90), "priced by its labels: {price}");

    let mut garbage = pod_request(Ca::New, &pod(1), 1);
    garbage.pod_bytes = vec![0xff, 0xff, 0xff];
    assert_status(
        c.pricing_pod_price(garbage).await,
        Code::InvalidArgument,
        "pod_bytes: not a core/v1 Pod",
    );
    let mut empty = pod_request(Ca::New, &pod(1), 1);
    empty.pod_bytes.clear();
    assert_status(
        c.pricing_pod_price(empty).await,
        Code::InvalidArgument,
        "pod_bytes: missing",
    );
    assert_status(
        c.node_group_for_node(NodeGroupForNodeRequest { node: None })
            .await,
        Code::InvalidArgument,
        "node: missing",
    );
    h.stop().await;
}

#[tokio::test]
async fn dra_groups_send_resource_slices_in_field_3_and_no_gpu_type() {
    let groups = "
  - id: h100-dra
    min_size: 0
    max_size: 2
    instance_type: gpu-8x-h100-80gb
    annotations: { gpupool.dev/dra: \"true\" }
  - id: a100-mixed
    min_size: 0
    max_size: 2
    instance_type: gpu-8x-a100-80gb
    annotations: { gpupool.dev/gpu-sharing: \"mig:all-balanced\", gpupool.dev/mig-strategy: mixed }
  - id: l4
    min_size: 0
    max_size: 2
    instance_type: gpu-1x-l4
";
    let mut h = Harness::start(&config_yaml(groups, "")).await;
    let r = h
        .client
        .node_group_template_node_info(NodeGroupTemplateNodeInfoRequest {
            id: "h100-dra".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.resource_slice_bytes.len(), 1);
    let slice =
        k8s_pb::api::resource::v1::ResourceSlice::decode(r.resource_slice_bytes[0].as_slice())
            .expect("a resource.k8s.io/v1 ResourceSlice");
    let spec = slice.spec.unwrap();
    assert_eq!(spec.driver.as_deref(), Some("gpu.nvidia.com"));
    assert_eq!(spec.devices.len(), 8);
    assert_eq!(r.node_info, r.node_bytes);

    // The GPU types CA learns are exactly those the templates label.
    let types: Vec<_> = h
        .client
        .get_available_gpu_types(GetAvailableGpuTypesRequest {})
        .await
        .unwrap()
        .into_inner()
        .gpu_types
        .into_keys()
        .collect();
    assert_eq!(types, vec!["nvidia-l4"]);
    for id in ["h100-dra", "a100-mixed"] {
        let node = template(&mut h, Ca::New, id).await;
        assert!(
            !node
                .metadata
                .unwrap()
                .labels
                .contains_key("gpupool.dev/accelerator"),
            "{id}"
        );
    }
    h.stop().await;
}
