use super::*;
use crate::config::Config;
use crate::template::{Template, TemplateContext};
use k8s_pb::api::core::v1::Node;
use prost::Message;
use std::collections::HashSet;

#[test]
fn covers_the_families_of_all_three_clouds() {
    let names: HashSet<(CloudKind, &str)> = entries()
        .iter()
        .map(|e| (e.cloud, e.name.as_str()))
        .collect();
    assert_eq!(names.len(), entries().len(), "names are unique per cloud");
    for (cloud, name) in [
        (CloudKind::Aws, "p5.48xlarge"),
        (CloudKind::Aws, "p5e.48xlarge"),
        (CloudKind::Aws, "p5en.48xlarge"),
        (CloudKind::Aws, "p4d.24xlarge"),
        (CloudKind::Aws, "p4de.24xlarge"),
        (CloudKind::Aws, "g6.xlarge"),
        (CloudKind::Aws, "g6e.48xlarge"),
        (CloudKind::Aws, "g5.12xlarge"),
        (CloudKind::Aws, "g4dn.xlarge"),
        (CloudKind::Gcp, "a3-highgpu-8g"),
        (CloudKind::Gcp, "a3-megagpu-8g"),
        (CloudKind::Gcp, "a3-ultragpu-8g"),
        (CloudKind::Gcp, "a2-highgpu-1g"),
        (CloudKind::Gcp, "a2-ultragpu-8g"),
        (CloudKind::Gcp, "g2-standard-4"),
        (CloudKind::Azure, "Standard_ND96isr_H100_v5"),
        (CloudKind::Azure, "Standard_ND96isr_H200_v5"),
        (CloudKind::Azure, "Standard_ND96asr_v4"),
        (CloudKind::Azure, "Standard_NC24ads_A100_v4"),
        (CloudKind::Azure, "Standard_NC40ads_H100_v5"),
        (CloudKind::Azure, "Standard_NV36ads_A10_v5"),
    ] {
        assert!(names.contains(&(cloud, name)), "{cloud:?} {name}");
    }
    for e in entries() {
        assert!(
            e.source.starts_with("https://"),
            "{}: source {:?}",
            e.name,
            e.source
        );
        assert!(
            e.gpu.count >= 1 && e.gpu.memory_mib > 0 && e.vcpus > 0 && e.memory_mib > 0,
            "{}",
            e.name
        );
        assert_eq!(
            e.gpu.mig,
            crate::gpu::mig::geometry(&e.gpu.accelerator).is_some(),
            "{}: MIG capability agrees with the MIG geometry table",
            e.name
        );
    }
}

#[test]
fn every_entry_gives_a_template_with_its_gpus() {
    for e in entries() {
        let (top, group) = match e.cloud {
            CloudKind::Aws => (
                "aws: { cluster: c }\n",
                "    aws: { launch_template: { name: gpu-nodes } }\n",
            ),
            CloudKind::Gcp => (
                "gcp: { project: ml-prod-4821, cluster: c }\n",
                "    gcp: { instance_template: gpu-nodes }\n",
            ),
            CloudKind::Azure => (
                "azure: { subscription_id: 6e8f0d3a-6c1b-4f3e-9d2a-2f1b0c9e8d7a, resource_group: rg, cluster: c }\n",
                "    azure: { scale_set: gpu-nodes }\n",
            ),
            _ => ("", ""),
        };
        // Azure's zones are labelled `<location>-<n>`.
        let zone = if e.cloud == CloudKind::Azure {
            "r-1"
        } else {
            "ra"
        };
        let yaml = format!(
            "cloud: {}\nregion: r\n{top}node_groups:\n  - id: g\n    min_size: 0\n    max_size: 1\n    instance_type: {}\n    zones: [{zone}]\n{group}",
            e.cloud.as_str(),
            e.name
        );
        let config = Config::from_yaml(&yaml).unwrap();
        let spec = config
            .validate(&builtin(e.cloud), Some(&[zone.to_string()]))
            .unwrap()
            .remove(0);
        let t = Template::build(
            &spec,
            TemplateContext {
                region: "r",
                gpu_label: "gpu",
            },
        );
        let node = Node::decode(t.bytes.as_slice()).unwrap();
        let status = node.status.unwrap();
        assert_eq!(
            status.allocatable["nvidia.com/gpu"].string.as_deref(),
            Some(e.gpu.count.to_string().as_str()),
            "{}",
            e.name
        );
        let labels = node.metadata.unwrap().labels;
        assert_eq!(
            labels["nvidia.com/gpu.memory"],
            e.gpu.memory_mib.to_string(),
            "{}",
            e.name
        );
        assert_eq!(
            labels["nvidia.com/gpu.count"],
            e.gpu.count.to_string(),
            "{}",
            e.name
        );
        assert_eq!(labels["gpu"], e.gpu.accelerator, "{}", e.name);
        assert_eq!(
            status.capacity["cpu"].string.as_deref(),
            Some(e.vcpus.to_string().as_str())
        );
    }
}

#[test]
fn a_live_catalog_extends_and_overrides_the_builtin() {
    let builtin = builtin(CloudKind::Aws);
    let mut live = builtin
        .iter()
        .find(|t| t.name == "g5.xlarge")
        .cloned()
        .unwrap();
    live.vcpus = 5;
    // What DescribeInstanceTypes calls the GPU, not what the nodes carry.
    let gpu = live.gpu.as_mut().unwrap();
    gpu.accelerator = "nvidia-a10g-24gb".into();
    gpu.product = "A10G".into();
    gpu.memory_mib = 22_888;
    let extra = InstanceType {
        name: "g7.xlarge".into(),
        ..live.clone()
    };
    let merged = merge(builtin.clone(), vec![live, extra.clone()]);
    assert_eq!(merged.len(), builtin.len() + 1);
    let g5 = merged.iter().find(|t| t.name == "g5.xlarge").unwrap();
    let curated = builtin.iter().find(|t| t.name == "g5.xlarge").unwrap();
    assert_eq!(g5.vcpus, 5, "live figures win");
    let (g, c) = (g5.gpu.as_ref().unwrap(), curated.gpu.as_ref().unwrap());
    assert_eq!(g.memory_mib, 22_888, "live figures win");
    assert_eq!(
        (&g.accelerator, &g.product, &g.model),
        (&c.accelerator, &c.product, &c.model),
        "curated GPU names are kept"
    );
    assert_eq!(
        merged.iter().find(|t| t.name == "g7.xlarge"),
        Some(&extra),
        "a type only the cloud knows is taken as it is"
    );
}
