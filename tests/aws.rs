//! `gpupool serve` with `cloud: aws`, end to end: the real binary against
//! moto's EC2 API behind the fault layer, CA's calls over gRPC. A pool
//! without spot capacity is a class-1 error CA sees and that pool is
//! skipped after; spot-then-on-demand buys on demand what spot could not
//! fill, after a throttled call retried with the same client token;
//! DeleteNodes terminates exactly the named instance; a group comes from a
//! launch template tagged for CA; a restarted process rebuilds the groups
//! from DescribeInstances alone.
#![cfg(feature = "aws")]

mod common;
#[path = "../providers/aws/tests/support/fault.rs"]
mod fault;
#[path = "../providers/aws/tests/support/moto.rs"]
mod moto;

use common::serve::{Serve, cloud_ids};
use common::{census, error_of, eventually};
use fault::{Fault, FaultProxy};
use gpupool::proto::*;
use moto::Moto;
use std::process::Command;

/// One EC2 query-protocol call for set-up, straight to moto.
async fn ec2(endpoint: &str, params: &[(&str, &str)]) -> String {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().copied().chain([("Version", "2016-11-15")]))
        .finish();
    reqwest::Client::new()
        .post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20261121/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body)
        .send()
        .await
        .expect("moto answers")
        .text()
        .await
        .expect("moto's body")
}

/// The text of every `<tag>` element.
fn values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_owned()))
        .collect()
}

/// An image, the `gpu-nodes` launch template, a `gpu-p5` one tagged for
/// CA, and the default subnets of zones a and b.
async fn world(moto: &str) -> (String, String) {
    let images = ec2(moto, &[("Action", "DescribeImages"), ("Owner.1", "amazon")]).await;
    let image = values(&images, "imageId").remove(0);
    ec2(
        moto,
        &[
            ("Action", "CreateLaunchTemplate"),
            ("LaunchTemplateName", "gpu-nodes"),
            ("LaunchTemplateData.ImageId", &image),
        ],
    )
    .await;
    let tags = [
        ("k8s.io/cluster-autoscaler/enabled", "true"),
        ("k8s.io/cluster-autoscaler/prod-east", "owned"),
        ("gpupool.dev/max-size", "2"),
        ("gpupool.dev/capacity-type", "on-demand"),
    ];
    let mut params = vec![
        ("Action", "CreateLaunchTemplate"),
        ("LaunchTemplateName", "gpu-p5"),
        ("LaunchTemplateData.ImageId", image.as_str()),
        ("LaunchTemplateData.InstanceType", "p5.48xlarge"),
        ("TagSpecification.1.ResourceType", "launch-template"),
    ];
    let keys: Vec<(String, String)> = (1..=tags.len())
        .map(|i| {
            (
                format!("TagSpecification.1.Tag.{i}.Key"),
                format!("TagSpecification.1.Tag.{i}.Value"),
            )
        })
        .collect();
    for ((k, v), (key, value)) in keys.iter().zip(tags) {
        params.push((k, key));
        params.push((v, value));
    }
    let made = ec2(moto, &params).await;
    assert!(made.contains("<launchTemplateId>"), "{made}");
    let subnet = |zone: &'static str| async move {
        let xml = ec2(
            moto,
            &[
                ("Action", "DescribeSubnets"),
                ("Filter.1.Name", "availability-zone"),
                ("Filter.1.Value.1", zone),
            ],
        )
        .await;
        values(&xml, "subnetId").remove(0)
    };
    (subnet("us-east-1a").await, subnet("us-east-1b").await)
}

fn config(endpoint: &str, subnet_a: &str, subnet_b: &str) -> String {
    format!(
        r#"cloud: aws
region: us-east-1
aws:
  cluster: prod-east
  endpoint_url: {endpoint}
  discover_launch_templates: true
server:
  grpc_listen: 127.0.0.1:0
  http_listen: 127.0.0.1:0
  sync_interval: 1h
node_groups:
  - id: l4
    min_size: 0
    max_size: 6
    instance_type: g6.xlarge
    capacity_type: spot-then-on-demand
    aws:
      launch_template: {{ name: gpu-nodes, version: "$Latest" }}
      instance_types: [g6.2xlarge]
      subnets: [{subnet_a}, {subnet_b}]
  - id: l4-spot
    min_size: 0
    max_size: 4
    instance_type: g6.xlarge
    capacity_type: spot
    aws:
      launch_template: {{ name: gpu-nodes }}
      subnets: [{subnet_a}]
"#
    )
}

/// `gpupool serve` with AWS credentials from the environment, as the
/// standard chain reads them.
fn command(config: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gpupool"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env("RUST_LOG", "info");
    command
}

fn aws_ids(nodes: &[Instance]) -> Vec<&str> {
    cloud_ids(nodes, "aws")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_scales_aws_groups_through_gpupool_serve() {
    let moto = Moto::start().await;
    let faults = FaultProxy::start(&moto.endpoint).await;
    let (subnet_a, subnet_b) = world(&moto.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpupool.yaml");
    std::fs::write(&path, config(&faults.endpoint, &subnet_a, &subnet_b)).unwrap();
    let log = dir.path().join("gpupool.log");
    let mut serve = Serve::start(command(&path), &log).await;

    // The configured groups and the one its launch template's tags declare.
    let groups = serve
        .client
        .node_groups(NodeGroupsRequest {})
        .await
        .unwrap()
        .into_inner()
        .node_groups;
    let described: Vec<(&str, i32, i32)> = groups
        .iter()
        .map(|g| (g.id.as_str(), g.min_size, g.max_size))
        .collect();
    assert_eq!(
        described,
        vec![("l4", 0, 6), ("l4-spot", 0, 4), ("gpu-p5", 0, 2)]
    );

    // No spot g6.xlarge in us-east-1a: CA sees out-of-resources (class 1)
    // with AWS's code and message, for both slots.
    faults.add(Fault::FleetShort {
        capacity: "spot",
        launch: 0,
        code: "InsufficientInstanceCapacity",
    });
    serve.increase("l4-spot", 2).await;
    let failed = serve
        .nodes_when("l4-spot", |n| {
            n.iter().filter(|i| error_of(i).is_some()).count() == 2
        })
        .await;
    for i in &failed {
        let e = error_of(i).unwrap();
        assert_eq!(e.error_code, "InsufficientInstanceCapacity");
        assert_eq!(
            e.instance_error_class, 1,
            "out of resources, for CA's backoff"
        );
        assert!(e.error_message.contains("g6.xlarge"), "{}", e.error_message);
    }
    let fleets = faults.seen_of("CreateFleet");
    assert_eq!(fleets.len(), 1);
    assert_eq!(
        fleets[0].pools,
        vec![("g6.xlarge".to_owned(), "us-east-1a".to_owned())]
    );

    // Spot-then-on-demand, with the first try throttled: the SDK retries it
    // with the same client token; the emptied pool is not asked again; spot
    // fills one and on demand the other two.
    faults.clear();
    faults.add(Fault::Throttle {
        action: "CreateFleet",
        times: 1,
    });
    faults.add(Fault::FleetShort {
        capacity: "spot",
        launch: 1,
        code: "InsufficientInstanceCapacity",
    });
    serve.increase("l4", 3).await;
    let nodes = serve.nodes_when("l4", |n| aws_ids(n).len() == 3).await;
    let fleets = &faults.seen_of("CreateFleet")[1..];
    assert_eq!(
        fleets
            .iter()
            .map(|s| (
                s.status,
                s.capacity.as_deref().unwrap_or(""),
                s.count.unwrap_or(0)
            ))
            .collect::<Vec<_>>(),
        vec![(503, "spot", 3), (200, "spot", 3), (200, "on-demand", 2)]
    );
    let token = fleets[0].client_token.clone().expect("a client token");
    assert_eq!(
        fleets[1].client_token.as_ref(),
        Some(&token),
        "the retry reuses it"
    );
    assert_eq!(fleets[2].client_token, Some(format!("{token}-od")));
    assert!(
        !fleets[1]
            .pools
            .contains(&("g6.xlarge".to_owned(), "us-east-1a".to_owned())),
        "the pool found empty a moment ago is skipped: {:?}",
        fleets[1].pools
    );
    assert_eq!(fleets[1].pools.len(), 3);
    for id in aws_ids(&nodes) {
        assert!(
            id.starts_with("aws:///us-east-1a/i-") || id.starts_with("aws:///us-east-1b/i-"),
            "EKS form: {id}"
        );
    }

    // DeleteNodes terminates exactly the named instance.
    let doomed = aws_ids(&nodes)[0].to_owned();
    serve
        .client
        .node_group_delete_nodes(NodeGroupDeleteNodesRequest {
            id: "l4".into(),
            nodes: vec![common::node(&doomed)],
        })
        .await
        .unwrap();
    assert_eq!(serve.target("l4").await, 2);
    let instance_id = doomed.rsplit('/').next().unwrap().to_owned();
    eventually("the named instance terminated", async || {
        let described = ec2(
            &moto.endpoint,
            &[
                ("Action", "DescribeInstances"),
                ("InstanceId.1", &instance_id),
            ],
        )
        .await;
        // The fault layer records a call once moto's answer is back, which
        // can be after moto shows the instance terminating: wait for both.
        (described.contains("<name>terminated</name>")
            || described.contains("<name>shutting-down</name>"))
            && !faults.seen_of("TerminateInstances").is_empty()
    })
    .await;
    assert_eq!(faults.seen_of("TerminateInstances").len(), 1);
    let running = ec2(
        &moto.endpoint,
        &[
            ("Action", "DescribeInstances"),
            ("Filter.1.Name", "instance-state-name"),
            ("Filter.1.Value.1", "running"),
            ("Filter.1.Value.2", "pending"),
        ],
    )
    .await;
    assert_eq!(
        values(&running, "instanceId").len(),
        2,
        "exactly the named one terminated"
    );

    // A restarted process rebuilds every group from DescribeInstances.
    let before = serve.nodes("l4").await;
    drop(serve);
    let mut serve = Serve::start(command(&path), &log).await;
    let after = serve.nodes("l4").await;
    let live = |n: &[Instance]| {
        let mut ids: Vec<String> = n
            .iter()
            .filter(|i| common::state(i) != instance_status::InstanceState::InstanceDeleting)
            .map(|i| i.id.clone())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(live(&after), live(&before));
    assert_eq!(live(&after).len(), 2);
    assert_eq!(serve.target("l4").await, 2);
    let (creating, running, _) = census(&after);
    assert_eq!(creating + running, 2);
    drop(serve);

    // A zone none of a group's subnets is in: refused before serving.
    let bad = dir.path().join("bad.yaml");
    let text = config(&faults.endpoint, &subnet_a, &subnet_b).replace(
        &format!("      subnets: [{subnet_a}]\n"),
        &format!("      subnets: [{subnet_a}]\n    zones: [us-east-1c]\n"),
    );
    assert_ne!(text, config(&faults.endpoint, &subnet_a, &subnet_b));
    std::fs::write(&bad, text).unwrap();
    let out = command(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node group \"l4-spot\": zones: \"us-east-1c\" has none of the group's subnets (they are in us-east-1a)"),
        "{stderr}"
    );
}
