//! The CronJob watch and the check on started runs: CronJobs are read into
//! foreseen demand ([`crate::preprovision::cronjob`]) as they change, and a
//! run's floor is released once its pods are all scheduled.

use crate::preprovision::{Floors, cronjob};
use futures_util::StreamExt;
use gpupool_cloud::Clock;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn key(cj: &CronJob) -> String {
    format!(
        "{}/{}",
        cj.metadata.namespace.as_deref().unwrap_or("default"),
        cj.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Reads one CronJob against the groups.
pub fn read(cj: &CronJob, floors: &Floors) -> Result<cronjob::Foreseen, cronjob::Skip> {
    let namespace = cj.metadata.namespace.as_deref().unwrap_or("default");
    let pod = cj
        .spec
        .job_template
        .spec
        .as_ref()
        .and_then(|j| j.template.spec.as_ref())
        .ok_or_else(|| "has no pod template".to_owned())
        .and_then(|spec| {
            crate::explain::manifest::pod_shape(spec, namespace).map_err(|e| e.to_string())
        });
    cronjob::read(cj, pod, floors.candidates())
}

/// Watches CronJobs in every namespace until `cancel`.
pub async fn watch(
    client: kube::Client,
    floors: Arc<Floors>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let api: kube::Api<CronJob> = kube::Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed = Vec::new();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            e = events.next() => e,
        };
        let Some(event) = event else { break };
        match event {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(cj)) => {
                let k = key(&cj);
                floors.cronjob_seen(&k, read(&cj, &floors));
                listed.push(k);
            }
            Ok(Event::InitDone) => {
                floors.cronjobs_relisted(&listed);
                floors.evaluate(clock.now());
                tracing::info!(cronjobs = listed.len(), "CronJob watch synced");
            }
            Ok(Event::Apply(cj)) => {
                floors.cronjob_seen(&key(&cj), read(&cj, &floors));
                floors.evaluate(clock.now());
            }
            Ok(Event::Delete(cj)) => {
                floors.cronjob_gone(&key(&cj));
                floors.evaluate(clock.now());
            }
            Err(e) => tracing::warn!(error = %e, "CronJob watch failed; retrying"),
        }
    }
}

/// Every `period` until `cancel`: for each started run gpupool holds a floor
/// for, lists the Job's pods (label `job-name`, set by the Job controller on
/// every release) and releases the floor once all of them are scheduled.
pub async fn check_runs(
    client: kube::Client,
    floors: Arc<Floors>,
    clock: Arc<dyn Clock>,
    period: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut released = false;
        for w in floors.waiting() {
            let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), &w.namespace);
            let selector = format!("job-name={}", w.job);
            match pods
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
            {
                Ok(list) => {
                    // A failed pod was scheduled once, but its replacement
                    // may not be: it does not count.
                    let scheduled = list
                        .items
                        .iter()
                        .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
                        .filter(|p| {
                            p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed")
                        })
                        .count();
                    if scheduled >= w.pods as usize {
                        floors.run_scheduled(&w.key, w.run);
                        released = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(cronjob = %w.key, job = %w.job, error = %e, "cannot list the run's pods; keeping its floor")
                }
            }
        }
        if released {
            floors.evaluate(clock.now());
        }
    }
}
