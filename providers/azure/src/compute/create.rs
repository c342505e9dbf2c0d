//! Scale-up: VMs made one PUT each, pool by pool (zone, size, priority),
//! until the request is filled. Spot first for spot-then-on-demand, the
//! group's own size before its alternates, the request's zones in order;
//! pools the engine says to avoid, and zones Resource SKUs says lack the
//! size, are skipped. A pool that answers with a capacity or quota error
//! (`AllocationFailed`, `ZonalAllocationFailed`, `SkuNotAvailable`,
//! `OverconstrainedAllocationRequest`, `OperationNotAllowed` for quota) is
//! reported as exhausted and the next one is asked.
//!
//! Idempotent: a call first counts the VMs tagged with its request, in any
//! pool, and asks only for the rest; each VM's name is made from the
//! request and the pool, so a repeated PUT of a VM being made updates that
//! VM instead of making another. VMs whose PUT was accepted are reported
//! even when the list after them fails. A VM whose
//! creation failed is left in the `Failed` state by Azure; it is deleted
//! here, so no disk or NIC of it stays.

use super::AzureCloud;
use super::body::{self, Shape};
use super::errors::classify;
use super::names;
use super::operations::{self, Poll};
use super::settings::{GroupSettings, Source};
use azure_mgmt_compute::package_2024_07_01::models;
use gpupool_cloud::pools::{Filler, Pool, PoolResult};
use gpupool_cloud::{
    CloudError, CreateOutcome, CreateRequest, ErrorClass, Instance, InstanceState,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long one VM's creation is awaited: GPU VMs are usually placed
/// within a few minutes; past this the engine asks again with the same
/// names.
const CREATE_WAIT: Duration = Duration::from_secs(15 * 60);

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
        let requested = if request.zones.is_empty() {
            &self.zones
        } else {
            &request.zones
        };
        // A VM joins a Flexible scale set only in one of its zones.
        let set_zones = self.scale_set_zones(&request.group);
        let zones: Vec<String> = requested
            .iter()
            .filter(|z| set_zones.as_ref().is_none_or(|s| s.contains(z)))
            .cloned()
            .collect();
        // What earlier attempts of this request made, in any pool: a retry
        // may be asked with other zones, purchase or pools to avoid, so it
        // counts the request's VMs by their tag, not by the names it would
        // give them now.
        let initial = self.cluster_vms().await?;
        let outcome = CreateOutcome {
            created: initial
                .iter()
                .filter(|i| i.request_id.as_ref() == Some(&request.request_id))
                .filter(|i| !is_failed(i) && i.state != InstanceState::ShuttingDown)
                .cloned()
                .collect(),
            ..CreateOutcome::default()
        };
        // Names in use by the request are not given again, even a VM's
        // that is being deleted (a PUT would land on it); a failed one's is,
        // after it is deleted.
        let mut taken: BTreeSet<String> = initial
            .iter()
            .filter(|i| i.request_id.as_ref() == Some(&request.request_id) && !is_failed(i))
            .map(|i| i.id.to_string())
            .collect();
        let mut filler = Filler::new(
            request,
            &group.sizes,
            &zones,
            |zone, size| self.offers(zone, size),
            outcome,
        );
        while let Some((pool, count)) = filler.next_pool() {
            let result = self
                .create_in(request, group, &pool, count, &initial, &taken)
                .await;
            taken.extend(result.created.iter().map(|i| i.id.to_string()));
            filler.record(result);
        }
        filler.finish()
    }

    /// Up to `count` VMs in one pool, named past those the request
    /// already holds (`taken`). `initial` is the cluster's VMs as listed
    /// when the request started.
    async fn create_in(
        &self,
        request: &CreateRequest,
        group: &GroupSettings,
        pool: &Pool<'_>,
        count: u32,
        initial: &[Instance],
        taken: &BTreeSet<String>,
    ) -> PoolResult {
        let wanted: Vec<String> = (0..)
            .map(|i| {
                names::vm_name(
                    &request.group,
                    &request.request_id,
                    pool.zone,
                    pool.capacity,
                    pool.type_index,
                    i,
                )
            })
            .filter(|n| !taken.contains(n))
            .take(count as usize)
            .collect();
        let mut error = None;
        for name in &wanted {
            // A failed creation of an earlier attempt is made again from
            // scratch.
            if initial
                .iter()
                .any(|i| i.id.as_str() == name && is_failed(i))
                && let Err(e) = self.delete_one(name).await
            {
                return PoolResult {
                    created: Vec::new(),
                    error: Some(e),
                };
            }
        }
        let mut pending = Vec::new();
        let mut accepted = Vec::new();
        for name in &wanted {
            match self.put_vm(request, group, pool, name).await {
                Ok((poll, vm)) => {
                    accepted.push(vm);
                    if let Some(p) = poll {
                        pending.push((name.as_str(), p));
                    }
                }
                Err(e) => {
                    // The pool said no: ask it for no more.
                    error = Some(e);
                    break;
                }
            }
        }
        let waits = pending.into_iter().map(|(name, (poll, first))| async move {
            let what = format!("virtualMachines.createOrUpdate {name}");
            let result = operations::wait(&self.arm, &what, poll, first, CREATE_WAIT).await;
            (name, result)
        });
        let mut lost = BTreeSet::new();
        for (name, result) in futures_util::future::join_all(waits).await {
            if let Err(e) = result {
                if e.class != ErrorClass::Throttled {
                    lost.insert(name.to_owned());
                    // Azure keeps the failed VM (and, with it, its disk
                    // and NIC): delete it now.
                    if let Err(cleanup) = self.delete_one(name).await {
                        tracing::warn!(vm = name, error = %cleanup, "failed VM not deleted; the engine deletes it when it lists it");
                    }
                }
                error.get_or_insert(e);
            }
        }
        let created: Vec<Instance> = match self.cluster_vms().await {
            Ok(after) => after
                .into_iter()
                .filter(|i| wanted.iter().any(|n| n == i.id.as_str()) && !is_failed(i))
                .filter(|i| i.state != InstanceState::ShuttingDown)
                .collect(),
            // The PUTs Azure accepted made VMs whatever the list says now:
            // they are reported from their answers, so a retry cannot
            // ask for them again.
            Err(e) => {
                error.get_or_insert(e);
                accepted
                    .iter()
                    .filter_map(|vm| {
                        names::instance(vm, &self.location, &self.settings.cluster, None)
                    })
                    .filter(|i| !lost.contains(i.id.as_str()))
                    .map(|mut i| {
                        i.state = InstanceState::Pending;
                        i
                    })
                    .collect()
            }
        };
        if error.is_none() && created.len() < wanted.len() {
            error = Some(CloudError::other(
                "CreateShort",
                format!(
                    "{} of {} {} VMs in {} listed after their creation succeeded",
                    created.len(),
                    wanted.len(),
                    pool.instance_type,
                    pool.zone
                ),
            ));
        }
        PoolResult { created, error }
    }

    /// Sends one VM's PUT: where to poll its operation (`None` when the
    /// answer already says it is made), and the VM as answered.
    async fn put_vm(
        &self,
        request: &CreateRequest,
        group: &GroupSettings,
        pool: &Pool<'_>,
        name: &str,
    ) -> Result<(Option<(Poll, Duration)>, models::VirtualMachine), CloudError> {
        let tags = names::tags(&self.settings.cluster, &request.group, &request.request_id);
        let shape = Shape {
            name,
            location: &self.location,
            zone: names::arm_zone(pool.zone),
            size: pool.instance_type,
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
            .map_err(|e| classify(&format!("virtualMachines.createOrUpdate {name}"), &e))?;
        let headers = answer.as_raw_response().headers();
        let poll = Poll::from_headers(headers).map(|p| (p, operations::first_wait(headers)));
        let vm = answer
            .into_body()
            .await
            .map_err(|e| classify(&format!("virtualMachines.createOrUpdate {name}"), &e))?;
        Ok((poll, vm))
    }
}

/// A VM Azure left after its creation failed.
fn is_failed(i: &Instance) -> bool {
    i.state == InstanceState::Stopped
        && i.state_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("ProvisioningState/failed"))
}
