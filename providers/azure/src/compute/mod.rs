//! The Azure backend: gpupool's node groups as VMs made one by one with
//! `PUT virtualMachines/{name}` (into the group's Flexible scale set, or
//! from the config's parts), found again by their tags with
//! `virtualMachines.list`, deleted by name. Every call is rate-limited with
//! `governor`; throttling (429 with `Retry-After`) and 5xx are retried by
//! the client, and past that classified so the engine retries at its next
//! sync.
//!
//! Why VMs made into the scale set rather than its capacity: a capacity
//! change cannot say which zone, size or priority the next VM gets, cannot
//! be retried without risking a second VM, and reports an allocation
//! failure for the whole scale set. A VM's PUT names the VM, so a repeat
//! finds the VM it made; it names one zone, size and priority, so an
//! `AllocationFailed` says exactly which pool is out and the next one can
//! be asked at once; and a delete removes exactly the named VM. A Flexible
//! scale set takes VMs made this way (a Uniform one does not), and keeps
//! them spread over fault domains.

mod body;
mod catalog;
mod create;
pub mod discovery;
mod errors;
pub mod names;
mod operations;
mod paging;
pub mod settings;

pub use errors::classify_code;
pub use settings::{AzureSettings, GroupSettings, Source, VmSpec};

use crate::arm::Arm;
use crate::pricing::RetailPrices;
use azure_mgmt_compute::package_2024_07_01::models;
use errors::{NOT_FOUND, classify};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use gpupool_cloud::{
    Cloud, CloudError, CreateOutcome, CreateRequest, GroupId, Instance, InstanceId, InstanceType,
    Price, PriceSource,
};
use operations::Poll;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::time::Duration;

/// Calls per second: well inside Resource Manager's per-subscription
/// limits (reads and writes per hour, Compute's per-minute VM budgets),
/// leaving room for the subscription's other callers.
const READ_PER_SECOND: u32 = 10;
const MUTATE_PER_SECOND: u32 = 4;

/// How long a delete's operation is awaited.
const DELETE_WAIT: Duration = Duration::from_secs(5 * 60);

/// A bound on paging the VM list.
const MAX_PAGES: usize = 1000;

pub(crate) struct Limits {
    read: DefaultDirectRateLimiter,
    mutate: DefaultDirectRateLimiter,
}

impl Limits {
    fn new() -> Self {
        let per = |n: u32| Quota::per_second(NonZeroU32::new(n).expect("a non-zero constant"));
        Self {
            read: RateLimiter::direct(per(READ_PER_SECOND)),
            mutate: RateLimiter::direct(per(MUTATE_PER_SECOND)),
        }
    }
}

pub struct AzureCloud {
    arm: Arm,
    settings: AzureSettings,
    location: String,
    /// The groups' scale sets, by name, read at connect.
    scale_sets: BTreeMap<String, models::VirtualMachineScaleSet>,
    /// The live catalog read at connect, where each size is offered, and
    /// the location's zones.
    catalog: Vec<InstanceType>,
    offered: BTreeSet<(String, String)>,
    zones: Vec<String>,
    prices: RetailPrices,
    limits: Limits,
}

impl std::fmt::Debug for AzureCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureCloud")
            .field("subscription", &self.settings.subscription_id)
            .field("resource_group", &self.settings.resource_group)
            .field("location", &self.location)
            .field("cluster", &self.settings.cluster)
            .finish_non_exhaustive()
    }
}

impl AzureCloud {
    /// Connects in `location`: reads the groups' scale sets (an unknown one,
    /// or one not in Flexible mode, is an error naming it) and the
    /// location's VM sizes from Resource SKUs. Prices come from the Retail
    /// Prices API at `prices`.
    pub async fn connect(
        arm: Arm,
        location: &str,
        settings: AzureSettings,
        prices: RetailPrices,
    ) -> Result<Self, CloudError> {
        let limits = Limits::new();
        let mut scale_sets = BTreeMap::new();
        for g in settings.groups.values() {
            if let Source::ScaleSet(name) = &g.source
                && !scale_sets.contains_key(name)
            {
                let set = scale_set(&arm, &settings, name, &limits).await?;
                scale_sets.insert(name.clone(), set);
            }
        }
        let named: BTreeSet<String> = settings
            .groups
            .values()
            .flat_map(|g| g.sizes.iter().cloned())
            .collect();
        let live =
            catalog::read(&arm, &settings.subscription_id, location, &named, &limits).await?;
        Ok(Self {
            arm,
            settings,
            location: location.to_owned(),
            scale_sets,
            catalog: live.types,
            offered: live.offered,
            zones: live.zones.into_iter().collect(),
            prices,
            limits,
        })
    }

    /// Whether `size` may be made in `zone` (a label, `eastus-1`), as
    /// Resource SKUs said at connect.
    pub fn offers(&self, zone: &str, size: &str) -> bool {
        self.offered.contains(&(zone.to_owned(), size.to_owned()))
    }

    /// The zones (labels) of a group's scale set, as read at connect;
    /// `None` for a group made from a VM description. A regional scale set
    /// has none.
    pub fn scale_set_zones(&self, group: &GroupId) -> Option<Vec<String>> {
        let Source::ScaleSet(name) = &self.settings.groups.get(group)?.source else {
            return None;
        };
        let set = self.scale_sets.get(name)?;
        Some(
            set.zones
                .iter()
                .map(|z| names::zone_label(&self.location, z))
                .collect(),
        )
    }

    /// Every size a group names, once.
    fn named_sizes(&self) -> Vec<String> {
        self.settings
            .groups
            .values()
            .flat_map(|g| g.sizes.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Every VM of the resource group tagged for this cluster, with its
    /// power state. The resource group's list carries no instance view
    /// unless it is filtered to one scale set, so: one list of the resource
    /// group; one list with `$expand=instanceView` per scale set holding
    /// gpupool's VMs; and an `instanceView` read of each other VM whose
    /// power state matters (made and not being deleted). Everything stays
    /// within the resource group, where the role is assigned.
    async fn cluster_vms(&self) -> Result<Vec<Instance>, CloudError> {
        let client = self.arm.client.virtual_machines_client();
        let (rg, sub) = (
            &self.settings.resource_group,
            &self.settings.subscription_id,
        );
        let ours: Vec<models::VirtualMachine> = self
            .all_vms("virtualMachines.list", client.list(rg, sub).into_stream())
            .await?
            .into_iter()
            .filter(|vm| names::is_ours(vm, &self.settings.cluster))
            .collect();
        let key =
            |vm: &models::VirtualMachine| vm.resource.id.as_deref().map(str::to_ascii_lowercase);
        let sets: BTreeSet<String> = ours
            .iter()
            .filter_map(|vm| {
                vm.properties
                    .as_ref()?
                    .virtual_machine_scale_set
                    .as_ref()?
                    .id
                    .clone()
            })
            .collect();
        let mut statuses: BTreeMap<String, Vec<models::InstanceViewStatus>> = BTreeMap::new();
        for set in &sets {
            let listed = self
                .all_vms(
                    "virtualMachines.list",
                    client
                        .list(rg, sub)
                        .filter(format!("'virtualMachineScaleSet/id' eq '{set}'"))
                        .expand("instanceView")
                        .into_stream(),
                )
                .await?;
            for vm in listed {
                if let (Some(id), Some(view)) =
                    (key(&vm), vm.properties.and_then(|p| p.instance_view))
                {
                    statuses.insert(id, view.statuses);
                }
            }
        }
        for vm in &ours {
            let Some(id) = key(vm) else { continue };
            let provisioning = vm
                .properties
                .as_ref()
                .and_then(|p| p.provisioning_state.as_deref());
            let settled = !matches!(provisioning, Some("Creating" | "Deleting"));
            if statuses.contains_key(&id) || !settled {
                continue;
            }
            let Some(name) = vm.resource.name.as_deref() else {
                continue;
            };
            self.limits.read.until_ready().await;
            match client.instance_view(rg, name, sub).await {
                Ok(view) => {
                    statuses.insert(id, view.statuses);
                }
                // Gone since the list: the next list drops it.
                Err(e) if classify("", &e).code == NOT_FOUND => {}
                Err(e) => {
                    return Err(classify(
                        &format!("virtualMachines.instanceView {name}"),
                        &e,
                    ));
                }
            }
        }
        Ok(ours
            .iter()
            .filter_map(|vm| {
                let status = key(vm).and_then(|id| statuses.get(&id)).map(Vec::as_slice);
                names::instance(vm, &self.location, &self.settings.cluster, status)
            })
            .collect())
    }

    /// Every VM of a paged list.
    async fn all_vms(
        &self,
        what: &str,
        pages: azure_core::Pageable<models::VirtualMachineListResult, azure_core::Error>,
    ) -> Result<Vec<models::VirtualMachine>, CloudError> {
        let pages = paging::all(what, &self.limits, MAX_PAGES, pages).await?;
        Ok(pages.into_iter().flat_map(|p| p.value).collect())
    }

    /// Sends one delete; `None` when it finished in its answer or the VM
    /// was already gone.
    async fn delete_call(&self, name: &str) -> Result<Option<(Poll, Duration)>, CloudError> {
        self.limits.mutate.until_ready().await;
        let sent = self
            .arm
            .client
            .virtual_machines_client()
            .delete(
                &self.settings.resource_group,
                name,
                &self.settings.subscription_id,
            )
            .send()
            .await;
        match sent {
            Ok(answer) => {
                let headers = answer.as_raw_response().headers();
                Ok(Poll::from_headers(headers).map(|p| (p, operations::first_wait(headers))))
            }
            Err(e) => match classify(&format!("virtualMachines.delete {name}"), &e) {
                e if e.code == NOT_FOUND => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Deletes `name` and awaits it.
    async fn delete_one(&self, name: &str) -> Result<(), CloudError> {
        self.delete_instances(&[InstanceId::new(name)]).await
    }
}

/// A group's scale set, which must be in Flexible orchestration mode.
async fn scale_set(
    arm: &Arm,
    settings: &AzureSettings,
    name: &str,
    limits: &Limits,
) -> Result<models::VirtualMachineScaleSet, CloudError> {
    limits.read.until_ready().await;
    let what = format!("virtualMachineScaleSets.get {name}");
    let set = arm
        .client
        .virtual_machine_scale_sets_client()
        .get(&settings.resource_group, name, &settings.subscription_id)
        .expand("userData")
        .await
        .map_err(|e| {
            let mut e = classify(&what, &e);
            e.message = format!("scale set {name:?}: {}", e.message);
            e
        })?;
    let mode = set
        .properties
        .as_ref()
        .and_then(|p| p.orchestration_mode.clone());
    if mode != Some(models::OrchestrationMode::Flexible) {
        return Err(CloudError::other(
            "NotFlexible",
            format!(
                "scale set {name:?} is not in Flexible orchestration mode: gpupool makes VMs into it, which only a Flexible scale set takes"
            ),
        ));
    }
    if set
        .properties
        .as_ref()
        .and_then(|p| p.virtual_machine_profile.as_ref())
        .is_none()
    {
        return Err(CloudError::other(
            "NoProfile",
            format!("scale set {name:?} has no virtualMachineProfile to make VMs from"),
        ));
    }
    Ok(set)
}

#[async_trait::async_trait]
impl Cloud for AzureCloud {
    fn provider_name(&self) -> &str {
        "azure"
    }

    fn region(&self) -> &str {
        &self.location
    }

    async fn zones(&self) -> Result<Vec<String>, CloudError> {
        Ok(self.zones.clone())
    }

    async fn list_instances(&self) -> Result<Vec<Instance>, CloudError> {
        self.cluster_vms().await
    }

    async fn create_instances(&self, request: &CreateRequest) -> Result<CreateOutcome, CloudError> {
        self.create(request).await
    }

    async fn delete_instances(&self, ids: &[InstanceId]) -> Result<(), CloudError> {
        // Every delete is sent before any is awaited: they run together.
        let mut pending = Vec::new();
        let mut failed: Option<CloudError> = None;
        for id in ids {
            match self.delete_call(id.as_str()).await {
                Ok(Some(p)) => pending.push((id.as_str(), p)),
                Ok(None) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        let waits = pending.into_iter().map(|(name, (poll, first))| async move {
            operations::wait(
                &self.arm,
                &format!("virtualMachines.delete {name}"),
                poll,
                first,
                DELETE_WAIT,
            )
            .await
        });
        for result in futures_util::future::join_all(waits).await {
            match result {
                Err(e) if e.code != NOT_FOUND => {
                    failed.get_or_insert(e);
                }
                _ => {}
            }
        }
        failed.map_or(Ok(()), Err)
    }

    async fn instance_types(&self) -> Result<Vec<InstanceType>, CloudError> {
        Ok(self.catalog.clone())
    }

    async fn prices(&self) -> Result<Vec<Price>, CloudError> {
        self.prices.prices(&self.named_sizes()).await
    }
}
