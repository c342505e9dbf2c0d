//! The EC2 servers the tests run against: moto, and the fault layer in
//! front of it; both reached through the backend's own SDK configuration.
#![allow(dead_code, unused_imports)] // each test binary uses a different part

#[path = "../support/fault.rs"]
pub mod fault;
#[path = "../support/moto.rs"]
mod moto;

pub use fault::{Fault, FaultProxy};
pub use moto::Moto;

use aws_sdk_ec2::types::RequestLaunchTemplateData;
use gpupool_aws::sdk::Connection;
use gpupool_aws::{Ec2Cloud, Ec2Settings, GroupSettings, LaunchTemplate};
use gpupool_cloud::{CreateRequest, GroupId, PurchaseOption, RequestId};
use std::collections::BTreeMap;

/// An EC2 endpoint a test talks to.
pub trait Endpoint {
    fn url(&self) -> &str;

    /// How the backend reaches it: fixed endpoint, test credentials, no
    /// SDK retries (each answer seen once).
    fn connection(&self) -> Connection {
        Connection {
            endpoint: Some(self.url().to_owned()),
            static_credentials: true,
            no_retries: true,
        }
    }

    /// A raw EC2 client for set-up and for checking what the backend did.
    async fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.connection().load(region).await)
    }
}

impl Endpoint for Moto {
    fn url(&self) -> &str {
        &self.endpoint
    }
}

impl Endpoint for FaultProxy {
    fn url(&self) -> &str {
        &self.endpoint
    }
}

pub const REGION: &str = "us-east-1";

/// An image, a launch template of it, and the region's default subnets by
/// zone.
pub struct World {
    pub image: String,
    pub launch_template: String,
    pub subnets: BTreeMap<String, String>,
}

pub async fn world(moto: &impl Endpoint) -> World {
    let ec2 = moto.ec2(REGION).await;
    let image = ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap()
        .images()[0]
        .image_id()
        .unwrap()
        .to_owned();
    let lt = ec2
        .create_launch_template()
        .launch_template_name("gpu-nodes")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(image.clone())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let subnets = ec2
        .describe_subnets()
        .send()
        .await
        .unwrap()
        .subnets()
        .iter()
        .map(|s| {
            (
                s.availability_zone().unwrap().to_owned(),
                s.subnet_id().unwrap().to_owned(),
            )
        })
        .collect();
    World {
        image,
        launch_template: lt
            .launch_template()
            .unwrap()
            .launch_template_id()
            .unwrap()
            .to_owned(),
        subnets,
    }
}

/// The backend for the world's group in `zones`, as a test reaches it.
pub async fn connect(endpoint: &impl Endpoint, world: &World, zones: &[&str]) -> Ec2Cloud {
    Ec2Cloud::connect(&endpoint.connection(), REGION, settings(world, zones))
        .await
        .expect("the backend connects")
}

pub fn settings(world: &World, zones: &[&str]) -> Ec2Settings {
    let group = GroupSettings {
        launch_template: LaunchTemplate {
            id: Some(world.launch_template.clone()),
            name: None,
            version: "$Latest".into(),
        },
        instance_types: vec!["g6.xlarge".into(), "g6.2xlarge".into()],
        subnets: zones.iter().map(|z| world.subnets[*z].clone()).collect(),
    };
    Ec2Settings {
        cluster: "prod-east".into(),
        groups: [(GroupId::new("l4"), group)].into_iter().collect(),
    }
}

pub fn request(id: &str, purchase: PurchaseOption, count: u32) -> CreateRequest {
    CreateRequest {
        request_id: RequestId::new(id),
        group: GroupId::new("l4"),
        instance_type: "g6.xlarge".into(),
        zones: vec!["us-east-1a".into(), "us-east-1b".into()],
        purchase,
        count,
        max_spot_price: None,
        avoid: Vec::new(),
    }
}
