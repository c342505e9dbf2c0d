//! The create journal through `serve`, against the local Kubernetes API
//! server (tests/common/kube_api.rs): a create waits for its ConfigMap
//! entry, the entry goes once the listing shows what the create made, a
//! restart while the listing lags takes the request up instead of letting
//! CA buy it again, and a journal that cannot be read holds changes back.

mod common;

use common::kube_api::KubeApi;
use common::kube_faults::Rates;
use common::*;
use gpupool_cloud::Cloud;
use std::time::Duration;

const GROUP: &str = "
  - id: l4
    min_size: 0
    max_size: 4
    instance_type: gpu-1x-l4
";

fn yaml(kubeconfig: &std::path::Path, list_lag: &str) -> String {
    config_yaml(
        GROUP,
        &format!(
            "sim:\n  faults:\n    list_lag: {list_lag}\nkubernetes:\n  kubeconfig: {}\n  namespace: gpupool\n",
            kubeconfig.display()
        ),
    )
}

fn entries(api: &KubeApi) -> Vec<serde_json::Value> {
    api.configmaps_labelled("gpupool", "gpupool.dev/operation", "create")
        .iter()
        .map(|cm| serde_json::from_str(cm["data"]["request.json"].as_str().unwrap()).unwrap())
        .collect()
}

async fn instances(h: &Harness) -> usize {
    h.sim.list_instances().await.unwrap().len()
}

#[tokio::test]
async fn a_create_waits_for_its_journal_entry_which_goes_once_the_listing_shows_what_it_made() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(&yaml(&api.kubeconfig(dir.path()), "0s")).await;

    // The entry cannot be written: nothing is bought, CA still sees its
    // target, and the create goes at the next sync.
    api.throttle_next_configmap_writes(1);
    h.increase("l4", 2).await.unwrap();
    h.settle().await;
    assert_eq!(h.target("l4").await, 2);
    assert_eq!(instances(&h).await, 0, "not sent unjournalled");
    assert!(entries(&api).is_empty());
    let (_, metrics) = http(h.server.http_addr, "GET", "/metrics").await;
    assert!(
        metrics.contains(
            "gpupool_work_journal_requests_total{operation=\"open\",outcome=\"error\"} 1"
        ),
        "{metrics}"
    );

    h.refresh().await;
    h.settle().await;
    assert_eq!(instances(&h).await, 2);
    let open = entries(&api);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["group"], "l4");
    assert_eq!(open[0]["count"], 2);
    assert_eq!(open[0]["instance_type"], "gpu-1x-l4");

    // The listing shows both: closed.
    h.refresh().await;
    h.settle().await;
    assert!(entries(&api).is_empty(), "{:?}", entries(&api));
    assert_eq!(h.target("l4").await, 2);
    h.stop().await;
}

#[tokio::test]
async fn a_restart_while_the_listing_lags_takes_the_request_up_instead_of_buying_again() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(&yaml(&api.kubeconfig(dir.path()), "60s")).await;
    h.increase("l4", 3).await.unwrap();
    h.settle().await;
    assert_eq!(entries(&api).len(), 1);

    // The listing does not show them yet when the new server starts.
    let mut h = h.restart().await;
    assert_eq!(
        h.target("l4").await,
        3,
        "the three on their way are counted"
    );
    let refused = h.increase("l4", 3).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    h.increase("l4", 1).await.unwrap();
    h.settle().await;

    h.clock.advance(Duration::from_secs(61));
    h.refresh().await;
    h.settle().await;
    assert_eq!(
        instances(&h).await,
        4,
        "three once, and the one asked after"
    );
    assert_eq!(h.target("l4").await, 4);
    h.refresh().await;
    h.settle().await;
    assert!(entries(&api).is_empty(), "{:?}", entries(&api));
    h.stop().await;
}

#[tokio::test]
async fn changes_wait_until_the_journal_can_be_read() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = yaml(&api.kubeconfig(dir.path()), "0s");
    api.faults.set(
        Rates {
            server_error: 1.0,
            ..Rates::default()
        },
        1,
    );
    let mut h = Harness::start(&yaml).await;
    let refused = h.increase("l4", 1).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("not synced"), "{refused:?}");

    api.faults.clear();
    h.refresh().await;
    h.increase("l4", 1).await.unwrap();
    h.settle().await;
    assert_eq!(instances(&h).await, 1);
    h.stop().await;
}

fn deletions(api: &KubeApi) -> Vec<serde_json::Value> {
    api.configmaps_labelled("gpupool", "gpupool.dev/operation", "delete")
        .iter()
        .map(|cm| serde_json::from_str(cm["data"]["deletion.json"].as_str().unwrap()).unwrap())
        .collect()
}

async fn decrease(h: &mut Harness, id: &str, delta: i32) -> Result<(), tonic::Status> {
    h.client
        .node_group_decrease_target_size(gpupool::proto::NodeGroupDecreaseTargetSizeRequest {
            id: id.into(),
            delta,
        })
        .await
        .map(|_| ())
}

/// A cancelled slot of a request that may be sent is journalled before CA
/// is answered: a write the API server sheds is tried again, and one that
/// cannot be made refuses the call with nothing changed. The request still
/// goes out for the count first asked (its entry may have landed with
/// it), and the cancelled slot's instance is deleted on arrival.
#[tokio::test]
async fn a_decrease_is_journalled_before_ca_is_answered_or_refused_with_nothing_changed() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(&yaml(&api.kubeconfig(dir.path()), "0s")).await;
    // The create's entry cannot be written: its slots wait, unfilled.
    api.throttle_next_configmap_writes_of("gpupool-create", 1);
    h.increase("l4", 3).await.unwrap();
    h.settle().await;
    assert_eq!(instances(&h).await, 0);

    // Every try shed, until the wait is spent: refused, nothing changed.
    api.throttle_next_configmap_writes_of("gpupool-delete", 100);
    let refused = decrease(&mut h, "l4", -1).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("journal"), "{refused:?}");
    assert_eq!(h.target("l4").await, 3);
    assert!(deletions(&api).is_empty(), "{:?}", deletions(&api));

    // One try shed: the next one lands, and CA is answered.
    api.throttle_next_configmap_writes_of("gpupool-delete", 1);
    decrease(&mut h, "l4", -1).await.unwrap();
    assert_eq!(h.target("l4").await, 2);
    let journalled = deletions(&api);
    assert_eq!(journalled.len(), 1, "{journalled:?}");
    let cancelled = journalled[0]["cancelled"].as_object().unwrap();
    assert_eq!(cancelled.len(), 1, "{journalled:?}");
    assert_eq!(cancelled.values().next().unwrap(), 1);

    // The request goes as first asked; the cancelled slot's instance goes
    // on arrival, and both entries close once the listing shows it all.
    h.refresh().await;
    h.settle().await;
    let open = entries(&api);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["count"], 3);
    let live = |h: &Harness| {
        let sim = h.sim.clone();
        async move {
            sim.list_instances()
                .await
                .unwrap()
                .into_iter()
                .filter(|i| {
                    matches!(
                        i.state,
                        gpupool_cloud::InstanceState::Pending
                            | gpupool_cloud::InstanceState::Running
                    )
                })
                .count()
        }
    };
    assert_eq!(live(&h).await, 2, "three made, the cancelled one deleted");
    assert_eq!(h.target("l4").await, 2);
    h.refresh().await;
    h.settle().await;
    h.refresh().await;
    h.settle().await;
    assert!(entries(&api).is_empty(), "{:?}", entries(&api));
    assert!(deletions(&api).is_empty(), "{:?}", deletions(&api));
    h.stop().await;
}
