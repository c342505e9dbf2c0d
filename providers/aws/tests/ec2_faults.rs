//! The EC2 backend where moto cannot go: pools without capacity (an
//! instant fleet's `errorSet`), throttling, and account limits, put in by a
//! fault layer in front of moto with EC2's own answer shapes.

mod common;

use common::{Endpoint, Fault, FaultProxy, Moto, REGION, request, settings, world};
use gpupool_aws::Ec2Cloud;
use gpupool_aws::sdk::Connection;
use gpupool_cloud::{CapacityType, Cloud, ErrorClass, Offering, PurchaseOption};

const ZONES: &[&str] = &["us-east-1a", "us-east-1b"];

fn spot_pool(ty: &str, zone: &str) -> Offering {
    Offering {
        instance_type: ty.into(),
        zone: zone.into(),
        capacity: CapacityType::Spot,
    }
}

/// Moto with the fault layer in front, and the backend connected through it.
async fn rig(connection: impl FnOnce(&FaultProxy) -> Connection) -> (Moto, FaultProxy, Ec2Cloud) {
    let moto = Moto::start().await;
    let faults = FaultProxy::start(&moto.endpoint).await;
    let world = world(&moto).await;
    let cloud = Ec2Cloud::connect(&connection(&faults), REGION, settings(&world, ZONES))
        .await
        .unwrap();
    (moto, faults, cloud)
}

#[tokio::test]
async fn spot_then_on_demand_buys_on_demand_what_spot_could_not_fill() {
    let (_moto, faults, cloud) = rig(|f| f.connection()).await;
    faults.add(Fault::FleetShort {
        capacity: "spot",
        launch: 1,
        code: "InsufficientInstanceCapacity",
    });
    let outcome = cloud
        .create_instances(&request("l4-r1", PurchaseOption::SpotThenOnDemand, 3))
        .await
        .unwrap();
    let spot = |c| {
        outcome
            .created
            .iter()
            .filter(|i| i.capacity_type == c)
            .count()
    };
    assert_eq!(
        (spot(CapacityType::Spot), spot(CapacityType::OnDemand)),
        (1, 2),
        "{outcome:?}"
    );
    assert!(outcome.failed.is_none(), "on demand filled the rest");
    // The pools spot ran out in are reported, so the engine skips them;
    // the one that launched is not.
    assert_eq!(
        outcome.exhausted,
        vec![
            spot_pool("g6.2xlarge", "us-east-1a"),
            spot_pool("g6.2xlarge", "us-east-1b"),
            spot_pool("g6.xlarge", "us-east-1b"),
        ]
    );
    let launched = &outcome
        .created
        .iter()
        .find(|i| i.capacity_type == CapacityType::Spot)
        .unwrap();
    assert_eq!(
        (launched.instance_type.as_str(), launched.zone.as_str()),
        ("g6.xlarge", "us-east-1a")
    );
    let fleets = faults.seen_of("CreateFleet");
    assert_eq!(fleets.len(), 2, "{fleets:?}");
    assert_eq!(
        (fleets[0].capacity.as_deref(), fleets[0].count),
        (Some("spot"), Some(3))
    );
    assert_eq!(
        (fleets[1].capacity.as_deref(), fleets[1].count),
        (Some("on-demand"), Some(2))
    );
    assert_eq!(fleets[0].client_token.as_deref(), Some("l4-r1"));
    assert_eq!(
        fleets[1].client_token.as_deref(),
        Some("l4-r1-od"),
        "its own token: the spot call's is spent"
    );
    // Every pool of the group's types and zones was offered to CreateFleet.
    assert_eq!(fleets[0].pools.len(), 4);
}

#[tokio::test]
async fn a_spot_fleet_without_capacity_is_an_out_of_resources_error_naming_the_pools() {
    let (_moto, faults, cloud) = rig(|f| f.connection()).await;
    faults.add(Fault::FleetShort {
        capacity: "spot",
        launch: 0,
        code: "InsufficientInstanceCapacity",
    });
    let outcome = cloud
        .create_instances(&request("l4-r2", PurchaseOption::Spot, 2))
        .await
        .unwrap();
    assert!(outcome.created.is_empty());
    let failed = outcome.failed.expect("the whole request failed");
    assert_eq!(failed.count, 2);
    assert_eq!(failed.error.class, ErrorClass::OutOfResources);
    assert_eq!(failed.error.code, "InsufficientInstanceCapacity");
    assert!(
        failed.error.message.contains("g6.xlarge in us-east-1a")
            && failed.error.message.contains("do not have sufficient"),
        "the AWS message, with the pool: {}",
        failed.error.message
    );
    assert_eq!(outcome.exhausted.len(), 4);

    // The engine's skip list goes into the next call: those pools are not
    // offered again.
    let mut next = request("l4-r3", PurchaseOption::Spot, 1);
    next.avoid = vec![
        spot_pool("g6.xlarge", "us-east-1a"),
        spot_pool("g6.2xlarge", "us-east-1a"),
    ];
    faults.clear();
    let outcome = cloud.create_instances(&next).await.unwrap();
    assert_eq!(outcome.created.len(), 1);
    let pools = &faults.seen_of("CreateFleet")[1].pools;
    assert_eq!(
        pools,
        &vec![
            ("g6.xlarge".to_owned(), "us-east-1b".to_owned()),
            ("g6.2xlarge".to_owned(), "us-east-1b".to_owned()),
        ]
    );
    // Nothing left to offer: no call, an out-of-resources answer.
    next.request_id = gpupool_cloud::RequestId::new("l4-r4");
    next.zones = vec!["us-east-1a".into()];
    let outcome = cloud.create_instances(&next).await.unwrap();
    let failed = outcome.failed.unwrap();
    assert_eq!(
        (failed.error.class, failed.error.code.as_str()),
        (ErrorClass::OutOfResources, "OfferingRecentlyUnavailable")
    );
    assert_eq!(faults.seen_of("CreateFleet").len(), 2, "no third call");
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_with_the_same_client_token() {
    // The backend as it runs in production: the SDK's standard retries.
    let (_moto, faults, cloud) = rig(|f| Connection {
        no_retries: false,
        ..f.connection()
    })
    .await;
    faults.add(Fault::Throttle {
        action: "CreateFleet",
        times: 2,
    });
    let outcome = cloud
        .create_instances(&request("l4-r5", PurchaseOption::OnDemand, 2))
        .await
        .unwrap();
    assert_eq!(outcome.created.len(), 2);
    let fleets = faults.seen_of("CreateFleet");
    assert_eq!(
        fleets.iter().map(|s| s.status).collect::<Vec<_>>(),
        vec![503, 503, 200]
    );
    assert!(
        fleets
            .iter()
            .all(|s| s.client_token.as_deref() == Some("l4-r5")),
        "one client token for every try, so EC2 launches once: {fleets:?}"
    );
    let listed = cloud.list_instances().await.unwrap();
    assert_eq!(listed.len(), 2, "launched once");
}

#[tokio::test]
async fn throttling_past_the_retries_and_account_limits_are_classified() {
    let (_moto, faults, cloud) = rig(|f| f.connection()).await;
    faults.add(Fault::Throttle {
        action: "DescribeInstances",
        times: 1,
    });
    let e = cloud.list_instances().await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Throttled, "RequestLimitExceeded")
    );
    // A whole call refused for the account's vCPU quota: class 1 for CA.
    faults.add(Fault::Error {
        action: "CreateFleet",
        status: 400,
        code: "VcpuLimitExceeded",
        message: "You have requested more vCPU capacity than your current vCPU limit of 64 allows for the instance bucket that the specified instance type belongs to.",
        times: 1,
    });
    let e = cloud
        .create_instances(&request("l4-r6", PurchaseOption::OnDemand, 1))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::OutOfResources, "VcpuLimitExceeded")
    );
    assert!(e.message.contains("vCPU limit of 64"), "{}", e.message);
    // Anything else is class 99.
    faults.add(Fault::Error {
        action: "CreateFleet",
        status: 400,
        code: "InvalidLaunchTemplateId.NotFound",
        message: "The specified launch template, with template ID lt-0abc, does not exist.",
        times: 1,
    });
    let e = cloud
        .create_instances(&request("l4-r7", PurchaseOption::OnDemand, 1))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Other);
}
