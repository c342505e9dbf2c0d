//! The EC2 backend against moto's EC2 API: scale-up (spot and on demand)
//! with CreateFleet from a launch template, the launch tags, a restart that
//! rebuilds the fleet from DescribeInstances alone, termination of exactly
//! the named instances, the live GPU catalog and the zones.

mod common;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use common::{Endpoint, Moto, REGION, connect, request, world};
use gpupool_cloud::{CapacityType, Cloud, InstanceId, InstanceState, PurchaseOption, RequestId};
use std::collections::BTreeMap;

#[tokio::test]
async fn spot_scale_up_is_tagged_and_a_restart_rebuilds_the_fleet_from_describe_instances() {
    let moto = Moto::start().await;
    let world = world(&moto).await;
    let cloud = connect(&moto, &world, &["us-east-1a", "us-east-1b"]).await;
    let outcome = cloud
        .create_instances(&request("l4-r1", PurchaseOption::Spot, 3))
        .await
        .unwrap();
    assert_eq!(outcome.created.len(), 3, "{outcome:?}");
    assert!(outcome.failed.is_none());
    for i in &outcome.created {
        assert_eq!(i.capacity_type, CapacityType::Spot);
        assert!(
            ["us-east-1a", "us-east-1b"].contains(&i.zone.as_str()),
            "{i:?}"
        );
        assert_eq!(
            i.provider_id.as_str(),
            format!("aws:///{}/{}", i.zone, i.id),
            "the EKS form"
        );
        assert_eq!(i.request_id, Some(RequestId::new("l4-r1")));
    }

    // Someone else's instance in the same account: not ours, never listed.
    let ec2 = moto.ec2(REGION).await;
    ec2.run_instances()
        .image_id(&world.image)
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(
                    Tag::builder()
                        .key("gpupool.dev/cluster")
                        .value("staging")
                        .build(),
                )
                .tags(Tag::builder().key("gpupool.dev/group").value("l4").build())
                .build(),
        )
        .send()
        .await
        .unwrap();

    // A restarted process knows nothing but what DescribeInstances says.
    let restarted = connect(&moto, &world, &["us-east-1a", "us-east-1b"]).await;
    let mut listed = restarted.list_instances().await.unwrap();
    listed.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let mut created = outcome.created.clone();
    created.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    assert_eq!(listed.len(), 3, "only this cluster's: {listed:?}");
    for (l, c) in listed.iter().zip(&created) {
        assert_eq!(
            (&l.id, &l.provider_id, &l.group),
            (&c.id, &c.provider_id, &c.group)
        );
        assert_eq!(l.request_id, Some(RequestId::new("l4-r1")));
        assert_eq!(l.capacity_type, CapacityType::Spot);
        assert_eq!(l.instance_type, "g6.xlarge");
        assert!(matches!(
            l.state,
            InstanceState::Pending | InstanceState::Running
        ));
        assert!(
            l.node_name
                .as_deref()
                .is_some_and(|n| n.ends_with(".ec2.internal")),
            "the node name is the private DNS name: {l:?}"
        );
    }
    // Every launch tag is on the instances.
    let described = ec2
        .describe_instances()
        .instance_ids(created[0].id.as_str())
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = described.reservations()[0].instances()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    for (k, v) in [
        ("gpupool.dev/cluster", "prod-east"),
        ("gpupool.dev/group", "l4"),
        ("gpupool.dev/request", "l4-r1"),
        ("gpupool.dev/managed-by", "gpupool"),
        ("kubernetes.io/cluster/prod-east", "owned"),
    ] {
        assert_eq!(tags.get(k).map(String::as_str), Some(v), "{k} in {tags:?}");
    }
}

#[tokio::test]
async fn on_demand_scale_up_and_deleting_exactly_the_named_instances() {
    let moto = Moto::start().await;
    let world = world(&moto).await;
    let cloud = connect(&moto, &world, &["us-east-1a"]).await;
    let outcome = cloud
        .create_instances(&request("l4-r2", PurchaseOption::OnDemand, 3))
        .await
        .unwrap();
    assert_eq!(outcome.created.len(), 3);
    assert!(
        outcome
            .created
            .iter()
            .all(|i| i.capacity_type == CapacityType::OnDemand && i.zone == "us-east-1a")
    );
    let listed = cloud.list_instances().await.unwrap();
    assert!(
        listed
            .iter()
            .all(|i| i.capacity_type == CapacityType::OnDemand)
    );

    // Two of the three, and one EC2 has never heard of: the goal holds.
    let doomed: Vec<InstanceId> = outcome.created[..2].iter().map(|i| i.id.clone()).collect();
    let mut ids = doomed.clone();
    ids.push(InstanceId::new("i-0123456789abcdef0"));
    cloud.delete_instances(&ids).await.unwrap();
    let after = cloud.list_instances().await.unwrap();
    for i in &after {
        let going = doomed.contains(&i.id);
        assert_eq!(
            matches!(
                i.state,
                InstanceState::ShuttingDown | InstanceState::Terminated
            ),
            going,
            "{i:?}"
        );
    }
    assert_eq!(after.len(), 3);

    // One someone stopped is reported stopped (the engine terminates it).
    let kept = outcome.created[2].id.clone();
    moto.ec2(REGION)
        .await
        .stop_instances()
        .instance_ids(kept.as_str())
        .send()
        .await
        .unwrap();
    let listed = cloud.list_instances().await.unwrap();
    let stopped = listed.iter().find(|i| i.id == kept).unwrap();
    assert_eq!(stopped.state, InstanceState::Stopped);
}

#[tokio::test]
async fn the_live_catalog_has_the_gpus_and_the_zones_are_the_regions() {
    let moto = Moto::start().await;
    let world = world(&moto).await;
    let cloud = connect(&moto, &world, &["us-east-1a"]).await;
    let catalog = cloud.instance_types().await.unwrap();
    let p5 = catalog
        .iter()
        .find(|t| t.name == "p5.48xlarge")
        .expect("p5.48xlarge");
    let gpu = p5.gpu.as_ref().unwrap();
    assert_eq!((p5.vcpus, gpu.model.as_str(), gpu.count), (192, "H100", 8));
    assert_eq!(gpu.memory_mib, 81920);
    assert_eq!(gpu.accelerator, "nvidia-h100-80gb");
    let g6 = catalog
        .iter()
        .find(|t| t.name == "g6.xlarge")
        .expect("g6.xlarge");
    assert_eq!(
        g6.gpu.as_ref().map(|g| (g.model.as_str(), g.count)),
        Some(("L4", 1))
    );
    assert!(
        catalog.iter().all(|t| t.gpu.is_some()),
        "only GPU types (and named ones)"
    );
    let zones = cloud.zones().await.unwrap();
    assert!(
        zones.contains(&"us-east-1a".to_owned()) && zones.len() >= 3,
        "{zones:?}"
    );
}

#[tokio::test]
async fn launch_templates_tagged_for_ca_are_discovered_with_their_instance_type() {
    use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
    let moto = Moto::start().await;
    let ec2 = moto.ec2(REGION).await;
    let template = |name: &str, tags: &[(&str, &str)]| {
        let mut spec = TagSpecification::builder().resource_type(ResourceType::LaunchTemplate);
        for (k, v) in tags {
            spec = spec.tags(Tag::builder().key(*k).value(*v).build());
        }
        ec2.create_launch_template()
            .launch_template_name(name)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .instance_type(InstanceType::P548xlarge)
                    .build(),
            )
            .tag_specifications(spec.build())
            .send()
    };
    let ours = template(
        "gpu-p5",
        &[
            ("k8s.io/cluster-autoscaler/enabled", "true"),
            ("k8s.io/cluster-autoscaler/prod-east", "owned"),
            ("gpupool.dev/max-size", "4"),
        ],
    )
    .await
    .unwrap();
    template(
        "theirs",
        &[
            ("k8s.io/cluster-autoscaler/enabled", "true"),
            ("k8s.io/cluster-autoscaler/staging", "owned"),
        ],
    )
    .await
    .unwrap();
    template(
        "untagged",
        &[("k8s.io/cluster-autoscaler/prod-east", "owned")],
    )
    .await
    .unwrap();

    let found = gpupool_aws::discover(&moto.connection(), REGION, "prod-east")
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        1,
        "only prod-east's opted-in template: {found:?}"
    );
    let t = &found[0];
    assert_eq!(
        Some(t.id.as_str()),
        ours.launch_template().unwrap().launch_template_id()
    );
    assert_eq!(t.name, "gpu-p5");
    assert_eq!(t.version, "$Default");
    assert_eq!(t.instance_type.as_deref(), Some("p5.48xlarge"));
    assert_eq!(t.tags["gpupool.dev/max-size"], "4");
}

#[tokio::test]
async fn spot_prices_come_per_zone_from_the_spot_price_history() {
    let moto = Moto::start().await;
    let prices = gpupool_aws::AwsPrices::connect(&moto.connection(), REGION).await;
    let spot = prices.spot_prices(&["g6.xlarge".to_owned()]).await.unwrap();
    assert!(spot.len() >= 3, "one price per zone selling it: {spot:?}");
    let mut zones: Vec<&str> = spot.iter().filter_map(|p| p.zone.as_deref()).collect();
    zones.dedup();
    assert_eq!(zones.len(), spot.len(), "one record per zone, the latest");
    for p in &spot {
        assert_eq!(p.instance_type, "g6.xlarge");
        assert_eq!(p.capacity_type, CapacityType::Spot);
        assert!(
            p.zone
                .as_deref()
                .is_some_and(|z| z.starts_with("us-east-1"))
        );
        assert!(p.usd_per_hour > 0.0);
    }
}
