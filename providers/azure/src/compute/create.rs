//! Scale-up: VMs made one PUT each, pool by pool (zone, size, priority),
//! until the request is filled. Spot first for spot-then-on-demand, the
//! group's own size before its alternates, the request's zones in order;
//! pools the engine says to avoid, and zones Resource SKUs says lack the
//! size, are skipped. A pool that answers with a capacity or quota error
//! (`AllocationFailed`, `ZonalAllocationFailed`, `SkuNotAvailable`,
//! `OverconstrainedAllocationRequest`, `OperationNotAllowed` for quota) is
//! reported as exhausted and the next one is asked.
//!
//! Idempotent: each VM's name is made from the request and the pool, so a
//! repeated call finds the VMs it made (they are counted, not asked for
//! again) and a repeated PUT of a VM being made updates that VM. A VM whose
//! creation failed is left in the `Failed` state by Azure; it is deleted
//! here, so no disk or NIC of it stays.

use super::AzureCloud;
use super::body::{self, Shape};
use super::errors::classify;
use super::names;
use super::operations::{self, Poll};
use super::settings::{GroupSettings, Source};
use gpupool_cloud::{
    CapacityType, CloudError, CreateFailure, CreateOutcome, CreateRequest, ErrorClass, Instance,
    InstanceState, Offering, PurchaseOption,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long one VM's creation is awaited: GPU VMs are usually placed
/// within a few minutes; past this the engine asks again with the same
/// names.
const CREATE_WAIT: Duration = Duration::from_secs(15 * 60);

/// One place to buy: a zone, a size (and its index among the group's, for
/// names) and a priority.
struct Pool<'a> {
    zone: &'a str,
    size: &'a str,
    size_index: usize,
    capacity: CapacityType,
}

/// What one pool made, and why it made fewer than asked.
struct PoolResult {
    created: Vec<Instance>,
    error: Option<CloudError>,
}

impl AzureCloud {
    pub(super) async fn create(
        &self,
        request: &CreateRequest,
    ) -> Result<CreateOutcome, CloudError> {
        let group = self.settings.groups.get(&request.group).ok_or_else(|| {
            CloudError::other(
                "UnknownGroup",
                format!("group {} has no Azure settings", request.group),
            )
        })?;
        let phases: &[CapacityType] = match request.purchase {
            PurchaseOption::OnDemand => &[CapacityType::OnDemand],
            PurchaseOption::Spot => &[CapacityType::Spot],
            PurchaseOption::SpotThenOnDemand => &[CapacityType::Spot, CapacityType::OnDemand],
        };
        let mut sizes = vec![request.instance_type.clone()];
        sizes.extend(
            group
                .sizes
                .iter()
                .filter(|s| **s != request.instance_type)
                .cloned(),
        );
        let zones = if request.zones.is_empty() {
            &self.zones
        } else {
            &request.zones
        };
        let avoid: BTreeSet<&Offering> = request.avoid.iter().collect();
        let mut outcome = CreateOutcome::default();
        let mut remaining = request.count;
        let mut capacity_error: Option<CloudError> = None;
        'pools: for &capacity in phases {
            for (size_index, size) in sizes.iter().enumerate() {
                for zone in zones {
                    if remaining == 0 {
                        break 'pools;
                    }
                    let offering = Offering {
                        instance_type: size.clone(),
                        zone: zone.clone(),
                        capacity,
                    };
                    if avoid.contains(&offering) || !self.offers(zone, size) {
                        continue;
                    }
                    let pool = Pool {
                        zone,
                        size,
                        size_index,
                        capacity,
                    };
                    let result = self.create_in(request, group, &pool, remaining).await;
                    let made = u32::try_from(result.created.len()).unwrap_or(u32::MAX);
                    remaining = remaining.saturating_sub(made);
                    outcome.created.extend(result.created);
                    match result.error {
                        None => {}
                        Some(e) if e.class == ErrorClass::OutOfResources => {
                            tracing::info!(
                                group = %request.group, pool = %offering, code = %e.code,
                                "pool out of capacity; trying the next"
                            );
                            outcome.exhausted.push(offering);
                            capacity_error = Some(e);
                        }
                        // Anything else (a bad image, permissions,
                        // throttling past retries) fails the same way in
                        // every pool: stop here.
                        Some(e) if outcome.created.is_empty() => return Err(e),
                        Some(e) => {
                            outcome.failed = Some(CreateFailure {
                                count: remaining,
                                error: e,
                            });
                            return Ok(outcome);
                        }
                    }
                }
            }
        }
        if remaining > 0 {
            let error = capacity_error.unwrap_or_else(|| {
                CloudError::out_of_resources(
                    "NoOffering",
                    format!(
                        "no zone of {} offers {} without being avoided",
                        zones.join(", "),
                        sizes.join(" or ")
                    ),
                )
            });
            outcome.failed = Some(CreateFailure {
                count: remaining,
                error,
            });
        }
        Ok(outcome)
    }

    /// Up to `count` VMs in one pool.
    async fn create_in(
        &self,
        request: &CreateRequest,
        group: &GroupSettings,
        pool: &Pool<'_>,
        count: u32,
    ) -> PoolResult {
        let wanted: Vec<String> = (0..count)
            .map(|i| {
                names::vm_name(
                    &request.group,
                    &request.request_id,
                    pool.zone,
                    pool.capacity,
                    pool.size_index,
                    i,
                )
            })
            .collect();
        let fail = |error| PoolResult {
            created: Vec::new(),
            error: Some(error),
        };
        // What an earlier attempt of this request made here.
        let before = match self.cluster_vms().await {
            Ok(all) => all,
            Err(e) => return fail(e),
        };
        let mut error = None;
        let mut missing = Vec::new();
        for name in &wanted {
            match before.iter().find(|i| i.id.as_str() == name) {
                Some(i) if is_failed(i) => {
                    // A failed creation is retried from scratch.
                    if let Err(e) = self.delete_one(name).await {
                        return fail(e);
                    }
                    missing.push(name.as_str());
                }
                Some(_) => {}
                None => missing.push(name.as_str()),
            }
        }
        let mut pending = Vec::new();
        for name in &missing {
            match self.put_vm(request, group, pool, name).await {
                Ok(Some(p)) => pending.push((*name, p)),
                Ok(None) => {}
                Err(e) => {
                    // The pool said no: ask it for no more.
                    error = Some(e);
                    break;
                }
            }
        }
        let waits = pending.into_iter().map(|(name, (poll, first))| async move {
            let what = format!("create VM {name}");
            let result = operations::wait(&self.arm, &what, poll, first, CREATE_WAIT).await;
            (name, result)
        });
        for (name, result) in futures_util::future::join_all(waits).await {
            if let Err(e) = result {
                if e.class != ErrorClass::Throttled {
                    // Azure keeps the failed VM (and, with it, its disk
                    // and NIC): delete it now.
                    if let Err(cleanup) = self.delete_one(name).await {
                        tracing::warn!(vm = name, error = %cleanup, "failed VM not deleted; the engine deletes it when it lists it");
                    }
                }
                error.get_or_insert(e);
            }
        }
        let after = match self.cluster_vms().await {
            Ok(all) => all,
            Err(e) => return fail(error.unwrap_or(e)),
        };
        let created: Vec<Instance> = after
            .into_iter()
            .filter(|i| wanted.iter().any(|n| n == i.id.as_str()) && !is_failed(i))
            .filter(|i| i.state != InstanceState::ShuttingDown)
            .collect();
        if error.is_none() && created.len() < wanted.len() {
            error = Some(CloudError::other(
                "CreateShort",
                format!(
                    "{} of {} {} VMs in {} listed after their creation succeeded",
                    created.len(),
                    wanted.len(),
                    pool.size,
                    pool.zone
                ),
            ));
        }
        PoolResult { created, error }
    }

    /// Sends one VM's PUT; `Some` with where to poll its operation, `None`
    /// when the answer already says it is made.
    async fn put_vm(
        &self,
        request: &CreateRequest,
        group: &GroupSettings,
        pool: &Pool<'_>,
        name: &str,
    ) -> Result<Option<(Poll, Duration)>, CloudError> {
        let tags = names::tags(&self.settings.cluster, &request.group, &request.request_id);
        let shape = Shape {
            name,
            location: &self.location,
            zone: names::arm_zone(pool.zone),
            size: pool.size,
            capacity: pool.capacity,
            max_price: request.max_spot_price,
            tags: &tags,
        };
        let vm = match &group.source {
            Source::ScaleSet(set) => {
                let set = self.scale_sets.get(set).ok_or_else(|| {
                    CloudError::other("UnknownScaleSet", format!("scale set {set:?} not read"))
                })?;
                body::from_scale_set(set, &shape)?
            }
            Source::Vm(spec) => body::from_spec(spec, &shape)?,
        };
        self.limits.mutate.until_ready().await;
        let answer = self
            .arm
            .client
            .virtual_machines_client()
            .create_or_update(
                &self.settings.resource_group,
                name,
                vm,
                &self.settings.subscription_id,
            )
            .send()
            .await
            .map_err(|e| classify(&format!("create VM {name}"), &e))?;
        let headers = answer.as_raw_response().headers();
        Ok(Poll::from_headers(headers).map(|p| (p, operations::first_wait(headers))))
    }
}

/// A VM Azure left after its creation failed.
fn is_failed(i: &Instance) -> bool {
    i.state == InstanceState::Stopped
        && i.state_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("ProvisioningState/failed"))
}
