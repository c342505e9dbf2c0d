use super::model::*;
use std::time::Duration;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_prior_stands_until_enough_boots_then_the_window_decides() {
    let mut m = LatencyModel::new(Some(secs(360)));
    let q = m.quantiles();
    assert_eq!((q.p50, q.p90, q.p99), (secs(360), secs(450), secs(540)));
    assert!(q.from_prior());
    for s in [200, 210, 220, 230] {
        m.observe(secs(s));
    }
    assert!(m.quantiles().from_prior(), "4 boots are not enough");
    m.observe(secs(240));
    let q = m.quantiles();
    assert_eq!(q.samples, 5);
    // Nearest rank over 200..240: median the 3rd, p90 and p99 the 5th.
    assert_eq!((q.p50, q.p90, q.p99), (secs(220), secs(240), secs(240)));
}

#[test]
fn quantiles_match_known_samples_and_follow_the_window() {
    // 1..=100 seconds, shuffled: nearest-rank p50 = 50, p90 = 90, p99 = 99.
    let mut m = LatencyModel::new(None);
    let mut order: Vec<u64> = (1..=100).collect();
    order.reverse();
    order.swap(3, 70);
    for s in order {
        m.observe(secs(s));
    }
    let q = m.quantiles();
    assert_eq!(
        (q.p50, q.p90, q.p99, q.samples),
        (secs(50), secs(90), secs(99), 100)
    );

    // The window keeps the latest boots: after WINDOW slow boots the fast
    // ones are gone.
    for _ in 0..WINDOW {
        m.observe(secs(600));
    }
    assert_eq!(m.len(), WINDOW);
    assert_eq!(m.quantiles().p50, secs(600));
}

#[test]
fn samples_round_trip_and_nonsense_is_dropped() {
    let mut m = LatencyModel::new(None);
    for s in [300, 320, 340, 360, 380, 400] {
        m.observe(secs(s));
    }
    let saved = m.export();
    let mut back = LatencyModel::new(None);
    back.restore(&saved);
    assert_eq!(back, m);
    back.restore(&Samples {
        seconds: vec![f64::NAN, -1.0, 1e12, 300.0],
    });
    assert_eq!(back.export().seconds, vec![300.0]);
}

#[test]
fn the_provision_deadline_has_margin_over_p99_and_never_undercuts_ca() {
    let ca = Duration::from_secs(15 * 60);
    let mut m = LatencyModel::new(Some(secs(300)));
    // Prior: p99 = 450 s; × 1.5 = 675 s → 12 min, below CA's 15.
    assert_eq!(provision_deadline(&m.quantiles(), ca), ca);
    for s in [600, 700, 800, 900, 1000] {
        m.observe(secs(s));
    }
    // p99 = 1000 s; × 1.5 = 1500 s = 25 min.
    assert_eq!(provision_deadline(&m.quantiles(), ca), secs(25 * 60));
    m.observe(secs(1001));
    // 1501.5 s rounds up to 26 min.
    assert_eq!(provision_deadline(&m.quantiles(), ca), secs(26 * 60));
}

mod timelines {
    use crate::boot::timeline::*;
    use gpupool_cloud::{CapacityType, GroupId, Instance, InstanceId, InstanceState, ProviderId};
    use std::time::{Duration, SystemTime};

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn instance(id: &str, state: InstanceState, launched: u64) -> Instance {
        Instance {
            id: InstanceId::new(id),
            provider_id: ProviderId::new(format!("sim:///z/{id}")),
            node_name: None,
            group: GroupId::new("g"),
            instance_type: "gpu-1x-l4".into(),
            zone: "z".into(),
            capacity_type: CapacityType::OnDemand,
            state,
            launched_at: t(launched),
            request_id: None,
            state_reason: None,
        }
    }

    fn node(id: &str, registered: u64, ready: Option<u64>, gpus: bool) -> NodeObs {
        NodeObs {
            name: format!("node-{id}"),
            provider_id: format!("sim:///z/{id}"),
            registered: t(registered),
            ready_since: ready.map(t),
            gpus,
        }
    }

    #[test]
    fn phases_are_timed_from_a_sequence_of_events() {
        let mut tr = Tracker::new(vec![true]);
        // Bought at 0, pending at the first sync, running at the sync at 60.
        assert_eq!(
            tr.instances(&[vec![instance("a", InstanceState::Pending, 0)]], t(10)),
            vec![]
        );
        assert_eq!(
            tr.instances(&[vec![instance("a", InstanceState::Running, 0)]], t(60)),
            vec![]
        );
        // Registers at 95, Ready at 130, the device plugin's GPU seen at 200.
        assert_eq!(tr.node(&node("a", 95, None, false), t(96), false), None);
        assert_eq!(
            tr.node(&node("a", 95, Some(130), false), t(131), false),
            None
        );
        let boot = tr
            .node(&node("a", 95, Some(130), true), t(200), false)
            .unwrap();
        assert_eq!(boot.total, Duration::from_secs(200));
        let secs: Vec<(&str, u64)> = boot
            .phases
            .iter()
            .map(|(p, d)| (p.name(), d.as_secs()))
            .collect();
        assert_eq!(
            secs,
            [
                ("running", 60),
                ("registered", 35),
                ("ready", 35),
                ("gpu_allocatable", 70)
            ]
        );
        // Once only.
        assert_eq!(
            tr.node(&node("a", 95, Some(130), true), t(300), false),
            None
        );
        assert_eq!(
            tr.instances(&[vec![instance("a", InstanceState::Running, 0)]], t(310)),
            vec![]
        );
    }

    #[test]
    fn boots_finished_before_a_restart_are_not_samples_and_late_running_is_clamped() {
        let mut tr = Tracker::new(vec![true, false]);
        // After a restart the first listing shows a node long done.
        assert_eq!(
            tr.node(&node("old", 5, Some(50), true), t(1000), true),
            None
        );
        assert_eq!(
            tr.instances(&[vec![instance("old", InstanceState::Running, 0)]], t(1001)),
            vec![]
        );

        // Running first seen at a late sync (300) after the node registered
        // at 120: it was running by 120.
        tr.instances(&[vec![instance("b", InstanceState::Running, 100)]], t(300));
        let boot = tr
            .node(&node("b", 120, Some(150), true), t(310), false)
            .unwrap();
        assert_eq!(boot.phases[0], (Phase::Running, Duration::from_secs(20)));
        assert_eq!(boot.phases[1], (Phase::Registered, Duration::ZERO));

        // A group without GPU resources finishes at Ready, and the node may
        // come before the instance is listed.
        assert_eq!(tr.node(&node("c", 40, Some(70), false), t(71), false), None);
        let mut other = instance("c", InstanceState::Running, 0);
        other.group = gpupool_cloud::GroupId::new("cpu");
        let boots = tr.instances(&[vec![], vec![other]], t(80));
        assert_eq!(boots.len(), 1);
        assert_eq!(
            (boots[0].group, boots[0].total),
            (1, Duration::from_secs(70))
        );
    }

    #[test]
    fn stuck_instances_say_how_far_they_got() {
        let mut tr = Tracker::new(vec![true]);
        let listed = [
            instance("never", InstanceState::Running, 0),
            instance("notready", InstanceState::Running, 0),
            instance("nogpu", InstanceState::Running, 0),
            instance("young", InstanceState::Pending, 900),
        ];
        tr.instances(&[listed.to_vec()], t(60));
        // Every listed instance that is stuck, by provider id.
        let stuck = |tr: &Tracker, now, deadline| -> Vec<(String, String)> {
            let mut out: Vec<_> = listed
                .iter()
                .filter_map(|i| {
                    let id = i.provider_id.as_str();
                    Some((id.to_owned(), tr.stuck(id, now, deadline)?))
                })
                .collect();
            out.sort();
            out
        };
        tr.node(&node("notready", 90, None, false), t(90), false);
        tr.node(&node("nogpu", 90, Some(120), false), t(120), false);
        let deadline = Duration::from_secs(15 * 60);
        assert_eq!(stuck(&tr, t(900), deadline), vec![]);
        let stuck_now = stuck(&tr, t(1000), deadline);
        let ids: Vec<&str> = stuck_now.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            ["sim:///z/never", "sim:///z/nogpu", "sim:///z/notready"]
        );
        assert_eq!(stuck_now[0].1, "no node registered 16m 40s after purchase");
        assert!(
            stuck_now[1]
                .1
                .starts_with("node node-nogpu Ready but no allocatable GPUs 16m 40s")
        );
        assert_eq!(
            stuck_now[2].1,
            "node node-notready not Ready 16m 40s after purchase"
        );
        // Gone from the cloud: no longer tracked.
        tr.instances(&[listed[3..].to_vec()], t(1001));
        assert_eq!(stuck(&tr, t(2000), deadline).len(), 1);
    }
}
