//! Create requests from the first call to the listing, and after a restart.

use crate::fleet::group::{GroupState, LIST_GRACE, Member, Work};
use crate::fleet::tests::{created, instance, spec, t0};
use gpupool_cloud::{CloudError, CreateOutcome, CreateRequest, InstanceState, Offering, RequestId};
use std::time::Duration;

/// `increase` by `n` with request `r`, journalled as sent; the request.
fn sent(g: &mut GroupState, r: &str, n: i32) -> CreateRequest {
    let Work::Create(mut request) = g.increase(n, RequestId::new(r)).unwrap() else {
        panic!("a create")
    };
    // As the engine fitted it: what a repeat must send again.
    request.avoid.push(Offering {
        instance_type: "t".into(),
        zone: "z2".into(),
        capacity: gpupool_cloud::CapacityType::Spot,
    });
    g.record_sent(&request);
    request
}

fn running(ids: &[&str], r: &RequestId) -> Vec<gpupool_cloud::Instance> {
    ids.iter()
        .map(|id| instance(id, r, InstanceState::Running))
        .collect()
}

fn live(g: &GroupState) -> usize {
    g.members()
        .iter()
        .filter(|m| matches!(m, Member::Live(_)))
        .count()
}

#[test]
fn a_journalled_request_is_sent_again_as_it_was_and_cancelled_slots_are_deleted_on_arrival() {
    let mut g = GroupState::new(spec(0, 5), "p");
    let request = sent(&mut g, "r", 3);
    let r = request.request_id.clone();
    // The answer was lost: the call may have made all three.
    let lost = CloudError::throttled("RequestTimeout", "no answer");
    assert!(g.create_finished(&r, Err(lost), t0()).is_empty());
    g.decrease_target(-1).unwrap();
    assert_eq!(g.target(), 2);
    let work = g.reconcile(vec![], t0());
    assert_eq!(
        work,
        vec![Work::Resend(request.clone())],
        "the same count and fitting, not a request for the two slots left"
    );
    let work = g.create_finished(&r, created(running(&["i0", "i1", "i2"], &r)), t0());
    assert_eq!(g.target(), 2);
    assert_eq!(live(&g), 2);
    assert!(
        matches!(work.as_slice(), [Work::Delete(ids)] if ids.len() == 1),
        "the cancelled one is deleted: {work:?}"
    );
}

#[test]
fn a_journal_entry_closes_once_the_listing_shows_what_the_request_made() {
    let mut g = GroupState::new(spec(0, 5), "p");
    let request = sent(&mut g, "r", 2);
    let r = request.request_id;
    let work = g.create_finished(&r, created(running(&["i0", "i1"], &r)), t0());
    assert!(work.is_empty(), "open until listed: {work:?}");
    let later = t0() + Duration::from_secs(10);
    assert!(g.reconcile(running(&["i0"], &r), later).is_empty());
    assert_eq!(
        g.reconcile(running(&["i0", "i1"], &r), later),
        vec![Work::Close(r.clone())]
    );
    assert!(g.reconcile(running(&["i0", "i1"], &r), later).is_empty());

    // One never listed is closed after the grace, when the engine takes it
    // for gone anyway.
    let request = sent(&mut g, "r2", 1);
    let r2 = request.request_id;
    g.create_finished(&r2, created(running(&["i9"], &r2)), t0());
    let listed = running(&["i0", "i1"], &r);
    assert!(
        g.reconcile(listed.clone(), t0() + LIST_GRACE - Duration::from_secs(1))
            .is_empty()
    );
    assert_eq!(
        g.reconcile(listed, t0() + LIST_GRACE),
        vec![Work::Close(r2)]
    );
}

#[test]
fn a_request_that_made_nothing_is_closed_at_its_answer() {
    let mut g = GroupState::new(spec(0, 5), "p");
    let r = sent(&mut g, "r", 2).request_id;
    let refused = CloudError::out_of_resources("InsufficientInstanceCapacity", "none");
    assert_eq!(
        g.create_finished(&r, Err(refused), t0()),
        vec![Work::Close(r.clone())]
    );
    let r = sent(&mut g, "r2", 1).request_id;
    let outcome = CreateOutcome {
        failed: Some(gpupool_cloud::CreateFailure {
            count: 1,
            error: CloudError::out_of_resources("InsufficientInstanceCapacity", "none"),
        }),
        ..CreateOutcome::default()
    };
    assert_eq!(
        g.create_finished(&r, Ok(outcome), t0()),
        vec![Work::Close(r)]
    );
}

#[test]
fn a_request_never_journalled_and_cancelled_is_closed_in_case_its_entry_was_written() {
    let mut g = GroupState::new(spec(0, 5), "p");
    let Work::Create(request) = g.increase(1, RequestId::new("r")).unwrap() else {
        panic!("a create")
    };
    // The journal write failed (its answer may be lost): held back.
    let unjournalled = CloudError::throttled("WorkJournalUnavailable", "504");
    g.create_finished(&request.request_id, Err(unjournalled), t0());
    g.decrease_target(-1).unwrap();
    assert_eq!(g.target(), 0);
    assert_eq!(
        g.reconcile(vec![], t0()),
        vec![Work::Close(request.request_id)],
        "nothing sent; the entry, if written, goes"
    );
}

#[test]
fn after_a_restart_a_journalled_request_counts_what_the_listing_misses_and_fills_it_from_the_answer()
 {
    let r = RequestId::new("r");
    let request = CreateRequest {
        request_id: r.clone(),
        ..sent(&mut GroupState::new(spec(0, 5), "p"), "r", 3)
    };
    // A new engine: the listing shows one of the three so far.
    let mut g = GroupState::new(spec(0, 5), "p");
    g.reconcile(running(&["i0"], &r), t0());
    assert_eq!(g.target(), 1);
    assert_eq!(g.restore(request.clone(), t0()), [Work::Resend(request)]);
    assert_eq!(g.target(), 3, "CA sees the two on their way");
    let work = g.create_finished(&r, created(running(&["i0", "i1", "i2"], &r)), t0());
    assert!(work.is_empty(), "{work:?}");
    assert_eq!(
        (g.target(), live(&g)),
        (3, 3),
        "filled, none adopted on top"
    );
}

#[test]
fn a_restored_request_stays_within_max_and_what_does_not_fit_is_deleted() {
    let r = RequestId::new("r");
    let request = sent(&mut GroupState::new(spec(0, 3), "p"), "r", 2);
    // Instances a lost DeleteNodes left running were adopted back.
    let other = RequestId::new("old");
    let mut g = GroupState::new(spec(0, 3), "p");
    g.reconcile(running(&["a", "b"], &other), t0());
    g.restore(request, t0());
    assert_eq!(g.target(), 3, "one slot: max 3");
    let work = g.create_finished(&r, created(running(&["i0", "i1"], &r)), t0());
    assert_eq!(g.target(), 3);
    assert!(
        matches!(work.as_slice(), [Work::Delete(ids)] if ids.len() == 1),
        "{work:?}"
    );
}

#[test]
fn a_restored_request_whose_instances_are_listed_or_gone_is_settled() {
    let r = RequestId::new("r");
    let request = sent(&mut GroupState::new(spec(0, 5), "p"), "r", 2);
    let mut g = GroupState::new(spec(0, 5), "p");
    g.reconcile(running(&["i0", "i1"], &r), t0());
    assert_eq!(g.restore(request.clone(), t0()), [Work::Close(r.clone())]);
    assert_eq!(g.target(), 2);

    // One CA deleted before the restart, no longer listed: its slot goes
    // with the answer instead of failing as missing.
    let mut g = GroupState::new(spec(0, 5), "p");
    g.reconcile(running(&["i0"], &r), t0());
    g.restore(request, t0());
    assert_eq!(g.target(), 2);
    let answer = vec![
        instance("i0", &r, InstanceState::Running),
        instance("i1", &r, InstanceState::Terminated),
    ];
    g.create_finished(&r, created(answer), t0());
    assert_eq!(g.target(), 1);
    assert!(
        g.members()
            .iter()
            .all(|m| !matches!(m, Member::Failed { .. })),
        "no failed slot: {:?}",
        g.members()
    );
}

#[test]
fn an_instance_ca_deleted_before_a_restart_is_deleted_when_a_resent_request_names_it() {
    let r = RequestId::new("r");
    let request = sent(&mut GroupState::new(spec(0, 5), "p"), "r", 2);
    // i1 was deleted by CA before the crash, its terminate not through,
    // and the listing lags: only i0 is shown.
    let mut g = GroupState::new(spec(0, 5), "p");
    g.reconcile(running(&["i0"], &r), t0());
    assert_eq!(
        g.restore_deletion(&[gpupool_cloud::InstanceId::new("i1")], t0()),
        None
    );
    g.restore(request, t0());
    let work = g.create_finished(&r, created(running(&["i0", "i1"], &r)), t0());
    assert!(
        matches!(work.as_slice(), [Work::Delete(ids)] if ids[0].as_str() == "i1"),
        "{work:?}"
    );
    assert_eq!((g.target(), live(&g)), (1, 1), "not adopted back");
}

/// Three asked for under request `r`, its journal write failed (it may
/// have landed), then one slot cancelled by CA.
fn three_asked_one_cancelled_unjournalled() -> (GroupState, CreateRequest) {
    let mut g = GroupState::new(spec(0, 5), "p");
    let Work::Create(request) = g.increase(3, RequestId::new("r")).unwrap() else {
        panic!("a create")
    };
    g.create_finished(
        &request.request_id,
        Err(CloudError::throttled("CreateJournalUnavailable", "504")),
        t0(),
    );
    g.decrease_target(-1).unwrap();
    (g, request)
}

#[test]
fn a_journal_entry_from_an_earlier_try_is_sent_and_its_surplus_deleted() {
    // The first journal write's answer was lost (it landed); CA cancelled
    // one slot; the retry finds the earlier entry and sends it.
    let (mut g, request) = three_asked_one_cancelled_unjournalled();
    let r = request.request_id.clone();
    g.record_sent(&request);
    let work = g.create_finished(&r, created(running(&["i0", "i1", "i2"], &r)), t0());
    assert_eq!(g.target(), 2);
    assert!(
        matches!(work.as_slice(), [Work::Delete(ids)] if ids.len() == 1),
        "{work:?}"
    );
}

#[test]
fn a_request_whose_journal_write_failed_is_sent_for_the_count_first_asked_against_its_cancellations()
 {
    let (mut g, request) = three_asked_one_cancelled_unjournalled();
    let r = request.request_id;
    // The entry may have landed with three: the cancellation counts
    // against that, and is journalled.
    assert_eq!(
        g.take_cancelled(),
        std::collections::BTreeMap::from([(r.clone(), 1)])
    );
    let work = g.reconcile(vec![], t0());
    let [Work::Create(retry)] = work.as_slice() else {
        panic!("a create: {work:?}")
    };
    assert_eq!(retry.count, 3, "the count first asked, not the slots left");
    g.record_sent(retry);
    let work = g.create_finished(&r, created(running(&["i0", "i1", "i2"], &r)), t0());
    assert_eq!(g.target(), 2);
    assert_eq!(live(&g), 2);
    assert!(
        matches!(work.as_slice(), [Work::Delete(ids)] if ids.len() == 1),
        "one deleted, not two: {work:?}"
    );
}

#[test]
fn instances_found_past_max_are_deleted_newest_and_unregistered_first() {
    let mut g = GroupState::new(spec(0, 2), "p");
    let r = RequestId::new("r");
    let mut found = running(&["old", "new", "unregistered"], &r);
    found[1].launched_at = t0() + Duration::from_secs(60);
    found[2].node_name = None;
    g.reconcile(found, t0() + Duration::from_secs(90));
    assert_eq!(g.target(), 3, "adopted as found");
    let Some(Work::Delete(ids)) = g.trim_past_max() else {
        panic!("a delete")
    };
    assert_eq!(ids, vec![gpupool_cloud::InstanceId::new("unregistered")]);
    assert_eq!(g.target(), 2);
    assert_eq!(g.trim_past_max(), None, "within max now");
    let mut g = GroupState::new(spec(0, 1), "p");
    let mut found = running(&["old", "new"], &r);
    found[1].launched_at = t0() + Duration::from_secs(60);
    g.reconcile(found, t0() + Duration::from_secs(90));
    assert_eq!(
        g.trim_past_max(),
        Some(Work::Delete(vec![gpupool_cloud::InstanceId::new("new")]))
    );
}

#[test]
fn a_cancelled_slots_instance_found_running_after_a_restart_is_deleted_and_its_request_kept_until_the_terminate_is_taken()
 {
    // Before the crash: r asked 2, CA cancelled 1; both instances came,
    // and the crash came before the surplus one's terminate landed.
    let r = RequestId::new("r");
    let mut g = GroupState::new(spec(0, 10), "p");
    let mut a = instance("a", &r, InstanceState::Running);
    a.node_name = Some("node-a".into());
    let mut b = instance("b", &r, InstanceState::Running);
    b.node_name = None; // not registered yet: the one to go
    g.reconcile(vec![a.clone(), b.clone()], t0());
    assert_eq!(g.target(), 2, "the restart adopted both");
    g.restore_cancelled(&[(r.clone(), 1)].into_iter().collect());
    let sent = CreateRequest {
        request_id: r.clone(),
        group: gpupool_cloud::GroupId::new("g"),
        instance_type: "t".into(),
        zones: vec!["z".into()],
        purchase: gpupool_cloud::PurchaseOption::OnDemand,
        count: 2,
        max_spot_price: None,
        avoid: vec![],
    };
    assert_eq!(
        g.restore_surplus(&sent),
        Some(Work::Delete(vec![gpupool_cloud::InstanceId::new("b")]))
    );
    assert_eq!(g.restore(sent, t0()), [], "all it made is known");
    assert_eq!(g.target(), 1, "CA's count: 2 asked, 1 cancelled");
    // Not closed until the cloud takes b's terminate: a second crash
    // finds it again.
    let later = t0() + LIST_GRACE + Duration::from_secs(1);
    let work = g.reconcile(vec![a.clone(), b.clone()], later);
    assert!(!work.contains(&Work::Close(r.clone())), "{work:?}");
    g.delete_finished(std::slice::from_ref(&b.id), true);
    b.state = InstanceState::ShuttingDown;
    let work = g.reconcile(vec![a, b], later);
    assert!(
        work.contains(&Work::Close(r)),
        "closed once b's terminate is taken: {work:?}"
    );
    assert_eq!(g.target(), 1);
}
