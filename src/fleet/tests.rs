//! The rules of one group's state, without I/O.

use super::*;
use crate::config::GroupAnnotations;
use gpupool_cloud::{
    CapacityType, CreateFailure, CreateOutcome, Instance, InstanceId, InstanceState, ProviderId,
    PurchaseOption,
};

pub(super) fn spec(min: u32, max: u32) -> Arc<GroupSpec> {
    Arc::new(GroupSpec {
        id: GroupId::new("g"),
        min_size: min,
        max_size: max,
        instance_type: gpupool_cloud::InstanceType {
            name: "t".into(),
            vcpus: 8,
            memory_mib: 32768,
            arch: Default::default(),
            gpu: None,
        },
        instance_types: vec!["t".into()],
        zones: vec!["z".into()],
        purchase: PurchaseOption::OnDemand,
        labels: Default::default(),
        taints: vec![],
        annotations: GroupAnnotations::default(),
        sharing: crate::gpu::sharing::Sharing::none(),
        resources: Default::default(),
        time_zone: crate::preprovision::Tz::UTC,
    })
}

pub(super) fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub(super) fn instance(id: &str, request: &RequestId, state: InstanceState) -> Instance {
    Instance {
        id: InstanceId::new(id),
        provider_id: ProviderId::new(format!("p:///z/{id}")),
        node_name: Some(format!("node-{id}")),
        group: GroupId::new("g"),
        instance_type: "t".into(),
        zone: "z".into(),
        capacity_type: CapacityType::OnDemand,
        state,
        launched_at: t0(),
        request_id: Some(request.clone()),
        state_reason: None,
    }
}

fn node(provider_id: &str) -> NodeRef {
    NodeRef {
        provider_id: provider_id.into(),
        name: String::new(),
    }
}

pub(super) fn created(instances: Vec<Instance>) -> Result<CreateOutcome, CloudError> {
    Ok(CreateOutcome {
        created: instances,
        ..CreateOutcome::default()
    })
}

/// A listing of i0 (in `i0`'s state) and i1, i2 running, all of `r`.
fn three_listed(r: &RequestId, i0: InstanceState) -> Vec<Instance> {
    vec![
        instance("i0", r, i0),
        instance("i1", r, InstanceState::Running),
        instance("i2", r, InstanceState::Running),
    ]
}

/// A group with `n` live instances from request "r0".
fn with_live(min: u32, max: u32, n: u32) -> (GroupState, RequestId) {
    let mut g = GroupState::new(spec(min, max), "p");
    let r = RequestId::new("r0");
    g.increase(n as i32, r.clone()).unwrap();
    let made = (0..n)
        .map(|i| instance(&format!("i{i}"), &r, InstanceState::Running))
        .collect();
    assert!(g.create_finished(&r, created(made), t0()).is_empty());
    (g, r)
}

#[test]
fn increase_checks_delta_and_max_and_never_overshoots() {
    let mut g = GroupState::new(spec(0, 3), "p");
    assert!(matches!(
        g.increase(0, RequestId::new("a")),
        Err(FleetError::InvalidArgument { field: "delta", .. })
    ));
    assert!(matches!(
        g.increase(-2, RequestId::new("a")),
        Err(FleetError::InvalidArgument { .. })
    ));
    let Work::Create(req) = g.increase(2, RequestId::new("a")).unwrap() else {
        panic!("expected a create")
    };
    assert_eq!((req.count, req.instance_type.as_str()), (2, "t"));
    assert_eq!(g.target(), 2);
    let err = g.increase(2, RequestId::new("b")).unwrap_err();
    assert!(
        matches!(
            err,
            FleetError::AboveMax {
                target: 2,
                delta: 2,
                max: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(g.target(), 2, "a refused increase changes nothing");
    g.increase(1, RequestId::new("c")).unwrap();
    assert!(g.increase(1, RequestId::new("d")).is_err());
    assert_eq!(g.target(), 3);
}

#[test]
fn requested_members_become_instances_and_failures_keep_their_class() {
    let mut g = GroupState::new(spec(0, 5), "p");
    let r = RequestId::new("r");
    g.increase(4, r.clone()).unwrap();
    assert!(
        g.members()
            .iter()
            .all(|m| matches!(m, Member::Requested { .. }))
    );
    let outcome = CreateOutcome {
        created: vec![instance("a", &r, InstanceState::Pending)],
        failed: Some(CreateFailure {
            count: 2,
            error: CloudError::out_of_resources("InsufficientSpotCapacity", "none left"),
        }),
        exhausted: Vec::new(),
    };
    g.create_finished(&r, Ok(outcome), t0());
    assert_eq!(
        g.target(),
        4,
        "failed slots stay counted until CA removes them"
    );
    let failed: Vec<_> = g
        .members()
        .iter()
        .filter_map(|m| match m {
            Member::Failed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 3, "2 refused + 1 the cloud never explained");
    assert_eq!(
        failed
            .iter()
            .filter(|e| e.class == gpupool_cloud::ErrorClass::OutOfResources)
            .count(),
        2
    );
    assert_eq!(
        failed
            .iter()
            .filter(|e| e.code == "IncompleteCreation")
            .count(),
        1
    );
}

#[test]
fn throttled_creates_are_retried_with_the_same_request_at_the_next_sync() {
    let mut g = GroupState::new(spec(0, 5), "p");
    let r = RequestId::new("r");
    g.increase(2, r.clone()).unwrap();
    g.create_finished(
        &r,
        Err(CloudError::throttled("RequestLimitExceeded", "slow down")),
        t0(),
    );
    assert_eq!(g.target(), 2);
    assert!(
        g.members()
            .iter()
            .all(|m| matches!(m, Member::Requested { .. }))
    );
    let work = g.reconcile(vec![], t0());
    assert_eq!(work.len(), 1);
    assert!(matches!(&work[0], Work::Create(req) if req.request_id == r && req.count == 2));
    assert!(
        g.reconcile(vec![], t0()).is_empty(),
        "not sent twice while under way"
    );
}

#[test]
fn decrease_only_cancels_unfulfilled_members() {
    let (mut g, _) = with_live(0, 10, 2);
    let r = RequestId::new("r1");
    g.increase(3, r.clone()).unwrap();
    assert!(matches!(
        g.decrease_target(0),
        Err(FleetError::InvalidArgument { .. })
    ));
    assert!(matches!(
        g.decrease_target(1),
        Err(FleetError::InvalidArgument { .. })
    ));
    let err = g.decrease_target(-4).unwrap_err();
    assert!(
        matches!(
            err,
            FleetError::WouldDeleteNodes {
                target: 5,
                unfulfilled: 3,
                existing: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(g.target(), 5);
    g.decrease_target(-2).unwrap();
    assert_eq!(g.target(), 3);
    // The create under way brings 3 instances; CA wants only 1 of them now.
    let made = ["x", "y", "z"]
        .map(|id| instance(id, &r, InstanceState::Pending))
        .to_vec();
    let work = g.create_finished(&r, created(made), t0());
    assert_eq!(g.target(), 3);
    let deleted: Vec<_> = work
        .iter()
        .flat_map(|w| match w {
            Work::Delete(ids) => ids.clone(),
            _ => vec![],
        })
        .collect();
    assert_eq!(
        deleted.len(),
        2,
        "cancelled instances are deleted on arrival, not adopted"
    );
    assert_eq!(g.deleting().count(), 2);
}

#[test]
fn delete_nodes_is_all_or_nothing_and_respects_min() {
    let (mut g, _) = with_live(1, 10, 3);
    let err = g
        .delete_nodes(&[node("p:///z/i0"), node("p:///z/elsewhere")])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "node group g: node \"p:///z/elsewhere\" does not belong to it; nothing was deleted"
    );
    assert_eq!(g.target(), 3);
    assert_eq!(g.deleting().count(), 0);

    let err = g
        .delete_nodes(&[node("p:///z/i0"), node("p:///z/i1"), node("p:///z/i2")])
        .unwrap_err();
    assert!(
        matches!(
            err,
            FleetError::BelowMin {
                target: 3,
                deleting: 3,
                min: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(g.target(), 3);

    let work = g
        .delete_nodes(&[node("p:///z/i0"), node("p:///z/i0")])
        .unwrap();
    assert_eq!(work, Some(Work::Delete(vec![InstanceId::new("i0")])));
    assert_eq!(g.target(), 2);
    // Again (CA retries): already deleting, accepted, nothing more.
    assert_eq!(g.delete_nodes(&[node("p:///z/i0")]).unwrap(), None);
    assert_eq!(g.target(), 2);
    // By name when providerID is empty.
    let by_name = NodeRef {
        provider_id: String::new(),
        name: "node-i1".into(),
    };
    g.delete_nodes(&[by_name]).unwrap();
    assert_eq!(g.target(), 1);
}

#[test]
fn failed_placeholders_can_be_deleted_even_at_min() {
    let mut g = GroupState::new(spec(2, 4), "p");
    let r = RequestId::new("r");
    g.increase(2, r.clone()).unwrap();
    g.create_finished(
        &r,
        Err(CloudError::out_of_resources("Quota", "no quota")),
        t0(),
    );
    let ids: Vec<_> = g
        .members()
        .iter()
        .map(|m| node(m.provider_id().as_str()))
        .collect();
    assert!(ids[0].provider_id.starts_with("p:///placeholder/g/r-"));
    assert_eq!(
        g.delete_nodes(&ids).unwrap(),
        None,
        "no cloud call for slots"
    );
    assert_eq!(g.target(), 0);
}

#[test]
fn reconcile_adopts_drops_and_retries() {
    let (mut g, r) = with_live(0, 10, 2);
    // i0 terminated by the cloud (spot), i1 still there, "new" unknown to us.
    let mut gone = instance("i0", &r, InstanceState::ShuttingDown);
    gone.state_reason = Some("spot-interruption".into());
    let stranger = instance("new", &RequestId::new("other"), InstanceState::Running);
    let work = g.reconcile(
        vec![gone, instance("i1", &r, InstanceState::Running), stranger],
        t0() + Duration::from_secs(600),
    );
    assert!(work.is_empty());
    assert_eq!(
        g.target(),
        3,
        "'new' adopted; i0 departing: counted while reported"
    );
    assert_eq!(
        g.deleting().count(),
        1,
        "i0 reported as deleting until terminated"
    );
    let mut gone = instance("i0", &r, InstanceState::Terminated);
    gone.state_reason = Some("spot-interruption".into());
    let stranger = instance("new", &RequestId::new("other"), InstanceState::Running);
    g.reconcile(
        vec![gone, instance("i1", &r, InstanceState::Running), stranger],
        t0() + Duration::from_secs(650),
    );
    assert_eq!(g.target(), 2, "i0 gone");
    assert_eq!(g.deleting().count(), 0);

    // Delete i1; the call fails; the next sync retries it.
    g.delete_nodes(&[node("p:///z/i1")]).unwrap();
    g.delete_finished(&[InstanceId::new("i1")], false);
    let listed = vec![
        instance("i1", &r, InstanceState::Running),
        instance("new", &RequestId::new("other"), InstanceState::Running),
    ];
    let work = g.reconcile(listed, t0() + Duration::from_secs(700));
    assert_eq!(work, vec![Work::Delete(vec![InstanceId::new("i1")])]);
    assert_eq!(g.target(), 1, "a deleting instance is not adopted again");
}

#[test]
fn a_fresh_instance_missing_from_a_listing_is_kept_for_the_grace_period() {
    let (mut g, _) = with_live(0, 10, 1);
    g.reconcile(vec![], t0() + LIST_GRACE - Duration::from_secs(1));
    assert_eq!(g.target(), 1);
    g.reconcile(vec![], t0() + LIST_GRACE);
    assert_eq!(g.target(), 0);
}

#[test]
fn a_snapshot_rebuilt_for_one_group_keeps_the_others_and_drops_what_left() {
    let (a, _) = with_live(0, 10, 2);
    let mut b = GroupState::new(spec(0, 10), "p");
    b.increase(1, RequestId::new("rb")).unwrap();
    let mut states = vec![a, b];
    let first = Snapshot::build(&states, None);
    assert_eq!(first.group_of("p:///z/i0", ""), Some(0));
    assert_eq!(first.group_of("", "node-i1"), Some(0));
    let placeholder = states[1].members()[0].provider_id().to_string();
    assert_eq!(first.group_of(&placeholder, ""), Some(1));

    // Group 1's slot is cancelled; only group 1 is rebuilt.
    states[1].decrease_target(-1).unwrap();
    let (next, rebuilt) = first.with(&states, [1], Some(t0()));
    assert_eq!(rebuilt, [1]);
    assert_eq!(next.group_of(&placeholder, ""), None, "gone from the index");
    assert_eq!(
        next.group_of("p:///z/i0", ""),
        Some(0),
        "other groups untouched"
    );
    assert_eq!(next.group_of("", "node-i1"), Some(0));
    assert!(
        Arc::ptr_eq(&first.groups[0], &next.groups[0]),
        "shared, not rebuilt"
    );
    assert_eq!(next.groups[1].target, 0);
    assert_eq!(
        first.group_of(&placeholder, ""),
        Some(1),
        "the old snapshot is unchanged"
    );

    // A deleted instance stays findable (reported as deleting) under its group.
    states[0].delete_nodes(&[node("p:///z/i0")]).unwrap();
    let (last, rebuilt) = next.with(&states, [0, 1], Some(t0()));
    assert_eq!(rebuilt, [0], "group 1 rebuilt to the same view is kept");
    assert!(Arc::ptr_eq(&next.groups[1], &last.groups[1]));
    assert_eq!(last.group_of("p:///z/i0", ""), Some(0));
    assert_eq!(last.groups[0].counts.deleting, 1);
}

#[test]
fn a_leaving_member_keeps_the_target_and_asks_one_more_of_ca() {
    let (mut g, _) = with_live(0, 10, 3);
    let want = g.mark_leaving("p:///z/i0", Want::Next(0), true).unwrap();
    assert_eq!(want, Some(4));
    assert_eq!(g.target(), 3, "the target does not move at the mark");
    assert_eq!(g.replacement_floor(), 4);
    let view = GroupView::of(&g);
    let leaving = view
        .instances
        .iter()
        .find(|i| i.provider_id.as_str() == "p:///z/i0")
        .unwrap();
    assert_eq!(leaving.state, NodeState::Deleting);
    assert_eq!(view.counts.deleting, 1);
    assert_eq!(view.target, 3);

    // A repeated mark asks nothing more.
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Next(0), true).unwrap(),
        Some(4)
    );
    // A second interruption before CA scaled up asks one more on top.
    assert_eq!(
        g.mark_leaving("p:///z/i1", Want::Next(0), true).unwrap(),
        Some(5)
    );
    assert_eq!(g.replacement_floor(), 5);
}

#[test]
fn cas_scale_up_answers_the_replacement_and_a_release_departs_until_the_cloud_reports_it_gone() {
    let (mut g, r) = with_live(0, 10, 3);
    g.mark_leaving("p:///z/i0", Want::Next(0), true).unwrap();
    // CA sees target 3 < minSize 4 and scales up by one.
    let r1 = RequestId::new("r1");
    g.increase(1, r1.clone()).unwrap();
    assert_eq!(g.leaving()["p:///z/i0"].replacement, Some(r1.clone()));
    assert_eq!(g.target(), 4);
    assert!(g.target() >= g.replacement_floor(), "CA asks no more");
    // Let go: deleted and its floor dropped, but still in the target while
    // it is reported (CA counts its Node as registered until then).
    assert_eq!(
        g.release("p:///z/i0"),
        Release::Started(Work::Delete(vec![InstanceId::new("i0")]))
    );
    assert_eq!(g.target(), 4);
    assert_eq!(g.replacement_floor(), 0);
    let view = GroupView::of(&g);
    assert_eq!(
        view.instances
            .iter()
            .find(|i| i.provider_id.as_str() == "p:///z/i0")
            .map(|i| i.state),
        Some(NodeState::Deleting)
    );
    // Releasing again (a resumed operation) does nothing more.
    assert_eq!(g.release("p:///z/i0"), Release::AlreadyGoing);
    assert_eq!(g.target(), 4);
    let listed = |i0| three_listed(&r, i0);
    g.reconcile(listed(InstanceState::ShuttingDown), t0());
    assert_eq!(
        g.target(),
        4,
        "shutting down: still reported, still counted"
    );
    g.reconcile(listed(InstanceState::Terminated), t0());
    assert_eq!(g.target(), 3, "gone: out of the target");
    assert_eq!(g.release("p:///z/i0"), Release::Gone);
}

#[test]
fn a_member_the_cloud_stops_departs_and_ca_deleting_it_takes_it_out_at_once() {
    let (mut g, r) = with_live(0, 10, 3);
    let listed = |i0| three_listed(&r, i0);
    g.reconcile(listed(InstanceState::ShuttingDown), t0());
    assert_eq!(g.target(), 3, "reported deleting, still counted");
    assert_eq!(g.members().len(), 2);
    // CA deletes it itself: CA lowers its target for it, so must we.
    g.delete_nodes(&[node("p:///z/i0")]).unwrap();
    assert_eq!(g.target(), 2);
    g.delete_nodes(&[node("p:///z/i0")]).unwrap();
    assert_eq!(g.target(), 2, "a repeated call changes nothing");
    // A release after CA deleted it does not count it again.
    assert_eq!(g.release("p:///z/i0"), Release::AlreadyGoing);
    assert_eq!(g.target(), 2);
}

#[test]
fn a_member_the_cloud_stopped_is_terminated_and_counted_until_it_is() {
    let (mut g, r) = with_live(0, 10, 3);
    let listed = |i0| three_listed(&r, i0);
    let work = g.reconcile(listed(InstanceState::Stopped), t0());
    assert!(
        matches!(work.as_slice(), [Work::Delete(ids)] if ids == &[InstanceId::new("i0")]),
        "a stopped instance is sent a terminate: {work:?}"
    );
    assert_eq!(g.target(), 3, "departing: counted until terminated");
    // The terminate failed: asked again at the next sync.
    g.delete_finished(&[InstanceId::new("i0")], false);
    let work = g.reconcile(listed(InstanceState::Stopped), t0());
    assert!(matches!(work.as_slice(), [Work::Delete(_)]), "{work:?}");
    g.delete_finished(&[InstanceId::new("i0")], true);
    let work = g.reconcile(listed(InstanceState::ShuttingDown), t0());
    assert!(work.is_empty(), "terminating: nothing more to do: {work:?}");
    assert_eq!(g.target(), 3);
    g.reconcile(listed(InstanceState::Terminated), t0());
    assert_eq!(g.target(), 2, "gone: out of the target");
    // One found stopped after a restart is ours too: terminated, not counted.
    let mut fresh = GroupState::new(spec(0, 10), "p");
    let work = fresh.reconcile(listed(InstanceState::Stopped), t0());
    assert!(matches!(work.as_slice(), [Work::Delete(_)]), "{work:?}");
    assert_eq!(fresh.target(), 2);
}

#[test]
fn after_a_restart_a_journalled_release_counts_an_instance_found_shutting_down_again() {
    let mut g = GroupState::new(spec(0, 10), "p");
    let r = RequestId::new("r0");
    g.reconcile(
        vec![
            instance("i0", &r, InstanceState::ShuttingDown),
            instance("i1", &r, InstanceState::Running),
        ],
        t0(),
    );
    assert_eq!(g.target(), 1, "origin unknown: not counted");
    assert_eq!(g.release("p:///z/i0"), Release::AlreadyGoing);
    assert_eq!(g.target(), 2, "the journal knows it was let go");
}

#[test]
fn a_resumed_mark_asks_exactly_what_was_journalled_so_no_second_replacement() {
    let (mut g, _) = with_live(0, 10, 4); // the replacement already arrived
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Exactly(4), true).unwrap(),
        Some(4)
    );
    assert!(g.target() >= g.replacement_floor());
}

#[test]
fn the_mark_goes_with_its_member_and_a_full_group_gets_no_replacement() {
    let (mut g, _) = with_live(0, 3, 3);
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Next(0), true).unwrap(),
        None
    );
    assert_eq!(g.replacement_floor(), 0);
    assert_eq!(
        g.mark_leaving("p:///z/nope", Want::Next(0), true),
        Err(NotMember)
    );
    // CA deletes the leaving node itself: the mark goes too.
    let (mut g, _) = with_live(0, 10, 3);
    g.mark_leaving("p:///z/i1", Want::Next(0), true).unwrap();
    g.delete_nodes(&[node("p:///z/i1")]).unwrap();
    assert!(g.leaving().is_empty());
    assert_eq!(g.replacement_floor(), 0);
    // The cloud stops it: same.
    let (mut g, r) = with_live(0, 10, 2);
    g.mark_leaving("p:///z/i1", Want::Next(0), true).unwrap();
    let listed = vec![
        instance("i0", &r, InstanceState::Running),
        instance("i1", &r, InstanceState::Terminated),
    ];
    g.reconcile(listed, t0() + Duration::from_secs(600));
    assert!(g.leaving().is_empty());
    assert_eq!(g.target(), 1);
}

#[test]
fn a_standby_mark_stays_in_service_until_it_drains_or_stands_down() {
    let (mut g, _) = with_live(0, 10, 2);
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Next(0), false).unwrap(),
        Some(3)
    );
    let view = GroupView::of(&g);
    assert!(view.instances.iter().all(|i| i.state == NodeState::Running));
    g.mark_leaving("p:///z/i0", Want::Next(0), true).unwrap();
    assert!(g.leaving()["p:///z/i0"].draining);
    assert_eq!(g.replacement_floor(), 3, "the upgrade asks nothing more");
    g.stand_down("p:///z/i0");
    assert_eq!(g.replacement_floor(), 0);
    assert_eq!(g.target(), 2);
}

#[test]
fn a_notice_finds_its_instance_by_providerid_node_name_instance_id_or_azure_scale_set_vm_name() {
    let mut g = GroupState::new(spec(0, 10), "azure");
    let r = RequestId::new("r0");
    g.increase(2, r.clone()).unwrap();
    let mut vmss = instance("vm3", &r, InstanceState::Running);
    vmss.provider_id = ProviderId::new(
        "azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/gpu-ss/virtualMachines/3",
    );
    let plain = instance("i-0abc", &r, InstanceState::Running);
    g.create_finished(&r, created(vec![vmss, plain]), t0());
    let snapshot = Snapshot::build(std::slice::from_ref(&g), None);
    use crate::webhook::Target;
    let found = |t: Target| snapshot.find(&t).map(|(_, v)| v.provider_id.to_string());
    assert_eq!(
        found(Target::Instance("gpu-ss_3".into())).as_deref(),
        Some(
            "azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/gpu-ss/virtualMachines/3"
        )
    );
    assert_eq!(found(Target::Instance("gpu-ss_4".into())), None);
    assert_eq!(
        found(Target::Instance("i-0abc".into())).as_deref(),
        Some("p:///z/i-0abc")
    );
    assert_eq!(
        found(Target::Node("node-i-0abc".into())).as_deref(),
        Some("p:///z/i-0abc")
    );
    assert_eq!(
        found(Target::ProviderId("p:///z/i-0abc".into())).as_deref(),
        Some("p:///z/i-0abc")
    );
    assert_eq!(found(Target::Instance("i-other".into())), None);
}

#[test]
fn one_operation_ending_lowers_the_others_floor_so_ca_buys_nothing_extra() {
    let (mut g, _) = with_live(0, 10, 3);
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Next(0), true).unwrap(),
        Some(4)
    );
    g.increase(1, RequestId::new("r1")).unwrap(); // CA: 3 -> 4
    assert_eq!(
        g.mark_leaving("p:///z/i1", Want::Next(0), true).unwrap(),
        Some(5)
    );
    g.increase(1, RequestId::new("r2")).unwrap(); // CA: 4 -> 5
    assert!(matches!(g.release("p:///z/i0"), Release::Started(_)));
    assert_eq!(g.target(), 5, "i0 departs: still counted");
    assert_eq!(g.replacement_floor(), 5);
    let r = RequestId::new("r0");
    g.reconcile(
        vec![
            instance("i0", &r, InstanceState::Terminated),
            instance("i1", &r, InstanceState::Running),
            instance("i2", &r, InstanceState::Running),
        ],
        t0(),
    );
    assert_eq!(g.target(), 4);
    assert_eq!(
        g.replacement_floor(),
        4,
        "i1's floor follows the target down"
    );
    // The same when the cloud takes the other one first.
    let (mut g, r) = with_live(0, 10, 3);
    g.mark_leaving("p:///z/i0", Want::Next(0), true).unwrap();
    g.increase(1, RequestId::new("r1")).unwrap();
    g.mark_leaving("p:///z/i1", Want::Next(0), true).unwrap();
    g.increase(1, RequestId::new("r2")).unwrap();
    let listed = vec![
        instance("i0", &r, InstanceState::Terminated),
        instance("i1", &r, InstanceState::Running),
        instance("i2", &r, InstanceState::Running),
    ];
    g.reconcile(listed, t0());
    assert!(
        g.target() >= g.replacement_floor(),
        "{} < {}",
        g.target(),
        g.replacement_floor()
    );
}

#[test]
fn a_journalled_want_takes_over_the_one_just_asked_in_one_change() {
    let (mut g, _) = with_live(0, 10, 3);
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Next(0), true).unwrap(),
        Some(4)
    );
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Exactly(6), false)
            .unwrap(),
        Some(6)
    );
    assert!(!g.leaving()["p:///z/i0"].draining);
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Nothing, true).unwrap(),
        None
    );
    assert_eq!(g.replacement_floor(), 0);
}

#[test]
fn a_replacement_is_asked_on_top_of_the_floor_ca_is_scaling_to_anyway() {
    // Pre-provisioning asks 5 of a group with 3: the replacement is the 6th,
    // not one of the 5 (it would replace nothing).
    let (mut g, _) = with_live(0, 10, 3);
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Next(5), true).unwrap(),
        Some(6)
    );
    // A floor below what the group has changes nothing.
    let (mut g, _) = with_live(0, 10, 3);
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Next(2), true).unwrap(),
        Some(4)
    );
    // At max with the floor: no room.
    let (mut g, _) = with_live(0, 6, 3);
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Next(6), true).unwrap(),
        None
    );
}

#[test]
fn marks_taken_up_after_a_restart_drop_once_for_each_marked_instance_gone_meanwhile() {
    // i0 left while the process was down; i1 and i2 are still members.
    let mut g = GroupState::new(spec(0, 10), "p");
    let r = RequestId::new("r0");
    g.reconcile(
        vec![
            instance("i1", &r, InstanceState::Running),
            instance("i2", &r, InstanceState::Running),
        ],
        t0(),
    );
    let mark = |id: &str, want: u32, lowered_for: &[&str]| Mark {
        group: 0,
        provider_id: format!("p:///z/{id}"),
        want: Want::Exactly(want),
        draining: true,
        lowered_for: lowered_for.iter().map(|i| format!("p:///z/{i}")).collect(),
        released: false,
    };
    let mut marks = vec![
        mark("i0", 5, &[]),
        mark("i1", 5, &[]),
        // Already lowered for i0 before the crash (i0's close wrote it).
        mark("i2", 4, &["i0"]),
    ];
    resume::lower_for_departed(&mut marks, std::slice::from_ref(&g));
    let wants: Vec<_> = marks.iter().map(|m| m.want).collect();
    assert_eq!(
        wants,
        [Want::Exactly(5), Want::Exactly(4), Want::Exactly(4)],
        "i1 drops for i0; i2 did already; i0 is gone itself"
    );
    assert!(marks[1].lowered_for.contains("p:///z/i0"));
    // A second restart before anything is journalled lowers nothing more.
    resume::lower_for_departed(&mut marks, std::slice::from_ref(&g));
    assert_eq!(marks[1].want, Want::Exactly(4));
}

#[test]
fn a_member_the_cloud_stops_without_a_notice_lowers_the_replacement_floor_once_gone() {
    let (mut g, r) = with_live(0, 10, 3);
    assert_eq!(
        g.mark_leaving("p:///z/i0", Want::Next(0), true).unwrap(),
        Some(4)
    );
    g.increase(1, RequestId::new("r1")).unwrap(); // CA: 3 -> 4, i0's replacement
    // i1 is taken with no notice: departing, still counted.
    g.reconcile(three_listed(&r, InstanceState::Running), t0());
    g.reconcile(
        vec![
            instance("i0", &r, InstanceState::Running),
            instance("i1", &r, InstanceState::ShuttingDown),
            instance("i2", &r, InstanceState::Running),
        ],
        t0(),
    );
    assert_eq!((g.target(), g.replacement_floor()), (4, 4));
    g.reconcile(
        vec![
            instance("i0", &r, InstanceState::Running),
            instance("i1", &r, InstanceState::Terminated),
            instance("i2", &r, InstanceState::Running),
        ],
        t0(),
    );
    assert_eq!(
        (g.target(), g.replacement_floor()),
        (3, 3),
        "i0's floor was counted with i1: CA is asked for no node in its place"
    );
}
