use gpupool_cloud::{
    CapacityType, Cloud, CreateRequest, ErrorClass, GroupId, InstanceState, ManualClock,
    PurchaseOption, RequestId,
};
use gpupool_sim::{SPOT_INTERRUPTION, SimCloud, SimConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn clock() -> ManualClock {
    ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
}

fn config() -> SimConfig {
    SimConfig {
        seed: Some(7),
        ..SimConfig::default()
    }
}

fn request(id: &str, ty: &str, purchase: PurchaseOption, count: u32) -> CreateRequest {
    CreateRequest {
        request_id: RequestId::new(id),
        group: GroupId::new("g"),
        instance_type: ty.into(),
        zones: vec!["sim-east-1a".into(), "sim-east-1b".into()],
        purchase,
        count,
        max_spot_price: None,
        avoid: Vec::new(),
    }
}

async fn states(cloud: &SimCloud) -> Vec<InstanceState> {
    let mut s: Vec<_> = cloud
        .list_instances()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.state)
        .collect();
    s.sort_by_key(|s| format!("{s:?}"));
    s
}

#[tokio::test]
async fn gpu_instances_boot_within_their_types_range() {
    let clock = clock();
    let cloud = SimCloud::new(config(), Arc::new(clock.clone())).unwrap();
    let out = cloud
        .create_instances(&request(
            "r1",
            "gpu-8x-h100-80gb",
            PurchaseOption::OnDemand,
            3,
        ))
        .await
        .unwrap();
    assert_eq!(out.created.len(), 3);
    assert!(out.failed.is_none());
    assert!(out.created.iter().all(|i| {
        i.provider_id
            .as_str()
            .starts_with("gpupool-sim:///sim-east-1")
            && i.provider_id.as_str().ends_with(i.id.as_str())
    }));
    // Spread over both zones.
    let zones: std::collections::BTreeSet<_> = out.created.iter().map(|i| i.zone.clone()).collect();
    assert_eq!(zones.len(), 2);

    clock.advance(Duration::from_secs(299));
    assert_eq!(
        states(&cloud).await,
        vec![InstanceState::Pending; 3],
        "H100 boots take at least 5m"
    );
    clock.advance(Duration::from_secs(8 * 60 - 299));
    assert_eq!(
        states(&cloud).await,
        vec![InstanceState::Running; 3],
        "and at most 8m"
    );
}

#[tokio::test]
async fn time_scale_compresses_boots() {
    let clock = clock();
    let cloud = SimCloud::new(
        SimConfig {
            time_scale: 60.0,
            ..config()
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    cloud
        .create_instances(&request("r1", "gpu-1x-l4", PurchaseOption::OnDemand, 1))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        states(&cloud).await,
        vec![InstanceState::Running],
        "a 3-5m boot at 60x takes 3-5s"
    );
}

#[tokio::test]
async fn spot_capacity_runs_out_per_type_and_zone_and_comes_back() {
    let clock = clock();
    let mut cfg = config();
    cfg.spot_capacity = BTreeMap::from([(
        "gpu-8x-h100-80gb".to_string(),
        BTreeMap::from([
            ("sim-east-1a".to_string(), 1),
            ("sim-east-1b".to_string(), 2),
        ]),
    )]);
    let cloud = SimCloud::new(cfg, Arc::new(clock.clone())).unwrap();
    let out = cloud
        .create_instances(&request("r1", "gpu-8x-h100-80gb", PurchaseOption::Spot, 5))
        .await
        .unwrap();
    assert_eq!(out.created.len(), 3, "1 + 2 spot slots");
    assert!(
        out.created
            .iter()
            .all(|i| i.capacity_type == CapacityType::Spot)
    );
    let failed = out.failed.expect("two could not be placed");
    assert_eq!(failed.count, 2);
    assert_eq!(failed.error.class, ErrorClass::OutOfResources);
    assert_eq!(failed.error.code, "InsufficientSpotCapacity");

    // Another type still has capacity: the pools are per type.
    let l4 = cloud
        .create_instances(&request("r2", "gpu-1x-l4", PurchaseOption::Spot, 1))
        .await
        .unwrap();
    assert_eq!(l4.created.len(), 1);

    // Spot-then-on-demand falls back.
    let fallback = cloud
        .create_instances(&request(
            "r3",
            "gpu-8x-h100-80gb",
            PurchaseOption::SpotThenOnDemand,
            2,
        ))
        .await
        .unwrap();
    assert!(fallback.failed.is_none());
    assert!(
        fallback
            .created
            .iter()
            .all(|i| i.capacity_type == CapacityType::OnDemand)
    );

    // Capacity comes back once an instance has terminated.
    cloud
        .delete_instances(&[out.created[0].id.clone()])
        .await
        .unwrap();
    clock.advance(Duration::from_secs(31));
    let again = cloud
        .create_instances(&request("r4", "gpu-8x-h100-80gb", PurchaseOption::Spot, 1))
        .await
        .unwrap();
    assert_eq!(again.created.len(), 1);
}

#[tokio::test]
async fn a_repeated_request_id_creates_nothing_new() {
    let cloud = SimCloud::new(config(), Arc::new(clock())).unwrap();
    let req = request("same", "gpu-1x-a10g", PurchaseOption::OnDemand, 2);
    let first = cloud.create_instances(&req).await.unwrap();
    let second = cloud.create_instances(&req).await.unwrap();
    assert_eq!(first.created, second.created);
    assert_eq!(cloud.list_instances().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_bid_cap_below_the_spot_price_buys_no_spot() {
    let cloud = SimCloud::new(config(), Arc::new(clock())).unwrap();
    // gpu-1x-l40s: spot $0.90/h, on-demand $2.24/h.
    let capped = |id: &str, purchase, cap| CreateRequest {
        max_spot_price: Some(cap),
        ..request(id, "gpu-1x-l40s", purchase, 2)
    };
    let low = cloud
        .create_instances(&capped("low", PurchaseOption::Spot, 0.50))
        .await
        .unwrap();
    assert!(low.created.is_empty());
    let failed = low.failed.unwrap();
    assert_eq!(
        (failed.count, failed.error.class),
        (2, ErrorClass::OutOfResources)
    );
    assert_eq!(failed.error.code, "SpotMaxPriceTooLow");
    assert!(
        failed
            .error
            .message
            .contains("$0.5000/h is below the spot price $0.9000/h")
    );

    // At or above the spot price it buys; spot-then-on-demand falls back.
    let ok = cloud
        .create_instances(&capped("ok", PurchaseOption::Spot, 0.90))
        .await
        .unwrap();
    assert_eq!(ok.created.len(), 2);
    assert!(
        ok.created
            .iter()
            .all(|i| i.capacity_type == CapacityType::Spot)
    );
    let fallback = cloud
        .create_instances(&capped("fb", PurchaseOption::SpotThenOnDemand, 0.50))
        .await
        .unwrap();
    assert!(fallback.failed.is_none());
    assert!(
        fallback
            .created
            .iter()
            .all(|i| i.capacity_type == CapacityType::OnDemand)
    );
}

#[tokio::test]
async fn injected_interruption_gives_notice_then_terminates() {
    let clock = clock();
    let cloud = SimCloud::new(config(), Arc::new(clock.clone())).unwrap();
    let out = cloud
        .create_instances(&request("r1", "gpu-1x-l4", PurchaseOption::Spot, 1))
        .await
        .unwrap();
    let id = out.created[0].id.clone();
    clock.advance(Duration::from_secs(600));
    let noticed = cloud.interrupt(&id).unwrap();
    assert_eq!(noticed.state, InstanceState::Running);
    assert_eq!(noticed.state_reason.as_deref(), Some(SPOT_INTERRUPTION));
    assert!(cloud.interrupt(&id).is_ok(), "a second notice is harmless");
    clock.advance(Duration::from_secs(121));
    assert_eq!(states(&cloud).await, vec![InstanceState::ShuttingDown]);
    clock.advance(Duration::from_secs(30));
    assert_eq!(states(&cloud).await, vec![InstanceState::Terminated]);
    clock.advance(Duration::from_secs(600));
    assert!(
        states(&cloud).await.is_empty(),
        "terminated instances are listed for 10 minutes"
    );

    let od = cloud
        .create_instances(&request("r2", "gpu-1x-l4", PurchaseOption::OnDemand, 1))
        .await
        .unwrap();
    let err = cloud.interrupt(&od.created[0].id).unwrap_err();
    assert!(err.to_string().contains("on-demand"), "{err}");
}

#[tokio::test]
async fn interruptions_are_drawn_at_the_hourly_rate() {
    let clock = clock();
    let cfg = SimConfig {
        spot_interruptions_per_hour: 0.5,
        spot_capacity: BTreeMap::from([(
            "gpu-1x-l4".to_string(),
            BTreeMap::from([
                ("sim-east-1a".to_string(), 200),
                ("sim-east-1b".to_string(), 200),
            ]),
        )]),
        ..config()
    };
    let cloud = SimCloud::new(cfg, Arc::new(clock.clone())).unwrap();
    cloud
        .create_instances(&request("r1", "gpu-1x-l4", PurchaseOption::Spot, 400))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(600));
    cloud.list_instances().await.unwrap(); // all running, first tick
    // One hour in one-minute steps: expect 400 * e^-0.5 ≈ 243 untouched.
    for _ in 0..60 {
        clock.advance(Duration::from_secs(60));
        cloud.list_instances().await.unwrap();
    }
    let untouched = cloud
        .list_instances()
        .await
        .unwrap()
        .iter()
        .filter(|i| i.state == InstanceState::Running && i.state_reason.is_none())
        .count();
    assert!(
        (205..=280).contains(&untouched),
        "{untouched} of 400 not interrupted after an hour at 0.5/h"
    );
}

#[tokio::test]
async fn state_file_keeps_the_fleet_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        state_file: Some(dir.path().join("fleet.json")),
        ..config()
    };
    let clock = clock();
    let created = {
        let cloud = SimCloud::new(cfg.clone(), Arc::new(clock.clone())).unwrap();
        cloud
            .create_instances(&request(
                "r1",
                "gpu-8x-a100-40gb",
                PurchaseOption::OnDemand,
                2,
            ))
            .await
            .unwrap()
            .created
    };
    let cloud = SimCloud::new(cfg.clone(), Arc::new(clock.clone())).unwrap();
    let mut listed = cloud.list_instances().await.unwrap();
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    let mut created = created;
    created.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed, created);

    std::fs::write(dir.path().join("fleet.json"), b"{not json").unwrap();
    let err = SimCloud::new(cfg, Arc::new(clock)).unwrap_err();
    assert!(
        err.to_string().contains("fleet.json") && err.to_string().contains("not a simulated fleet"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_requests_and_config_are_refused_with_reasons() {
    let cloud = SimCloud::new(config(), Arc::new(clock())).unwrap();
    let err = cloud
        .create_instances(&request("r1", "p9.huge", PurchaseOption::OnDemand, 1))
        .await
        .unwrap_err();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::Other, "InvalidInstanceType")
    );
    let mut req = request("r2", "gpu-1x-l4", PurchaseOption::OnDemand, 1);
    req.zones = vec!["elsewhere-1a".into()];
    assert_eq!(
        cloud.create_instances(&req).await.unwrap_err().code,
        "InvalidZone"
    );

    let err = SimCloud::new(
        SimConfig {
            time_scale: 0.0,
            ..config()
        },
        Arc::new(clock()),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("sim.time_scale:"), "{err}");
    let mut cfg = config();
    cfg.spot_capacity.insert("nope".into(), BTreeMap::new());
    let err = SimCloud::new(cfg, Arc::new(clock())).unwrap_err();
    assert!(
        err.to_string().starts_with("sim.spot_capacity.nope:"),
        "{err}"
    );
}

#[tokio::test]
async fn pools_the_engine_avoids_are_left_out_spot_and_on_demand_apart() {
    let cloud = SimCloud::new(config(), Arc::new(clock())).unwrap();
    let pool = |zone: &str, capacity| gpupool_cloud::Offering {
        instance_type: "gpu-1x-l4".into(),
        zone: zone.into(),
        capacity,
    };
    let mut spot = request("r1", "gpu-1x-l4", PurchaseOption::Spot, 4);
    spot.avoid = vec![pool("sim-east-1a", CapacityType::Spot)];
    let out = cloud.create_instances(&spot).await.unwrap();
    assert_eq!(out.created.len(), 4);
    assert!(
        out.created.iter().all(|i| i.zone == "sim-east-1b"),
        "{out:?}"
    );
    // On-demand pools apart: spot avoided in a says nothing of on demand.
    let mut on_demand = request("r2", "gpu-1x-l4", PurchaseOption::OnDemand, 4);
    on_demand.avoid = vec![
        pool("sim-east-1a", CapacityType::Spot),
        pool("sim-east-1b", CapacityType::OnDemand),
    ];
    let out = cloud.create_instances(&on_demand).await.unwrap();
    assert_eq!(out.created.len(), 4);
    assert!(
        out.created.iter().all(|i| i.zone == "sim-east-1a"),
        "{out:?}"
    );
}

fn faulty(faults: &str) -> SimConfig {
    SimConfig {
        faults: serde_yaml::from_str(faults).expect("faults"),
        ..config()
    }
}

#[tokio::test]
async fn a_lost_answer_took_effect_and_the_same_request_finds_it_again() {
    let clock = clock();
    let cloud = SimCloud::new(faulty("lost_answer: 1.0"), Arc::new(clock.clone())).unwrap();
    let r = request("r1", "gpu-1x-l4", PurchaseOption::OnDemand, 2);
    let err = cloud.create_instances(&r).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Throttled, "a timeout is retried");
    assert_eq!(err.code, "RequestTimeout");
    let listed = cloud.list_instances().await.unwrap();
    assert_eq!(listed.len(), 2, "the create took effect");
    assert!(
        listed
            .iter()
            .all(|i| i.request_id == Some(RequestId::new("r1")))
    );
    // The retry with the same request id makes nothing new (its answer is
    // lost again here, but the cloud still has two).
    let _ = cloud.create_instances(&r).await;
    assert_eq!(cloud.list_instances().await.unwrap().len(), 2);
    assert_eq!(cloud.faults_injected().lost_answers, 2);
}

#[tokio::test]
async fn throttling_and_server_errors_refuse_before_any_effect() {
    for (faults, code) in [
        ("throttle: 0.5", "RequestLimitExceeded"),
        ("server_error: 0.5", "InternalError"),
    ] {
        let cloud = SimCloud::new(faulty(faults), Arc::new(clock())).unwrap();
        let (mut created, mut refused) = (0usize, 0u64);
        for n in 0..40 {
            let r = request(&format!("r{n}"), "gpu-1x-l4", PurchaseOption::OnDemand, 1);
            match cloud.create_instances(&r).await {
                Ok(out) => created += out.created.len(),
                Err(err) => {
                    assert_eq!(
                        (err.class, err.code.as_str()),
                        (ErrorClass::Throttled, code)
                    );
                    refused += 1;
                }
            }
        }
        assert!(
            refused > 0 && created > 0,
            "{faults}: {refused} refused, {created} created"
        );
        // What the refused calls asked for does not exist: the cloud runs
        // exactly what the accepted calls answered.
        let listed = loop {
            if let Ok(listed) = cloud.list_instances().await {
                break listed;
            }
        };
        assert_eq!(listed.len(), created, "{faults}");
        let counts = cloud.faults_injected();
        // Counted: each refused create, and any refused listing.
        assert!(
            counts.throttled + counts.server_errors >= refused,
            "{faults}"
        );
    }
}

#[tokio::test]
async fn a_partial_create_makes_some_and_fails_the_rest_as_out_of_capacity() {
    let cloud = SimCloud::new(faulty("partial_create: 1.0"), Arc::new(clock())).unwrap();
    let out = cloud
        .create_instances(&request("r1", "gpu-1x-l4", PurchaseOption::OnDemand, 5))
        .await
        .unwrap();
    let failed = out.failed.expect("some fail");
    assert!(out.created.len() < 5);
    assert_eq!(out.created.len() as u32 + failed.count, 5);
    assert_eq!(failed.error.class, ErrorClass::OutOfResources);
    assert_eq!(failed.error.code, "InsufficientInstanceCapacity");
    assert_eq!(
        cloud.list_instances().await.unwrap().len(),
        out.created.len()
    );
    assert_eq!(cloud.faults_injected().partial_creates, 1);
}

#[tokio::test]
async fn a_listing_lags_behind_launches() {
    let clock = clock();
    let cloud = SimCloud::new(faulty("list_lag: 30s"), Arc::new(clock.clone())).unwrap();
    cloud
        .create_instances(&request("r1", "gpu-1x-l4", PurchaseOption::OnDemand, 1))
        .await
        .unwrap();
    assert!(cloud.list_instances().await.unwrap().is_empty());
    clock.advance(Duration::from_secs(30));
    assert_eq!(cloud.list_instances().await.unwrap().len(), 1);
    assert_eq!(cloud.faults_injected().hidden_from_lists, 1);
}

#[test]
fn fault_rates_out_of_range_are_refused_naming_the_field() {
    let err = SimCloud::new(faulty("throttle: 1.5"), Arc::new(clock())).unwrap_err();
    assert!(err.to_string().contains("sim.faults.throttle"), "{err}");
    let err = SimCloud::new(
        faulty("throttle: 0.6\nserver_error: 0.6"),
        Arc::new(clock()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("sim.faults"), "{err}");
}
