//! The Compute Engine backend: gpupool's node groups as instances made
//! directly with `instances.bulkInsert` (one call per zone, machine type
//! and provisioning model, each with a request id and per-instance names),
//! found again by their labels with `instances.aggregatedList`, deleted by
//! name. Every call is rate-limited with `governor`; throttling and
//! transient errors are retried by the client with exponential backoff and
//! jitter, and past that classified so the engine retries at its next sync.
//!
//! Why not managed instance groups: a MIG resize hides a zone's stockout in
//! the group's own retries (`currentActions.creating` forever, errors only
//! in `listErrors`), ties a group to one template and provisioning model,
//! and cannot fall back to another zone or to on demand within one
//! request. Direct creation answers each call with its operation's error
//! (ZONE_RESOURCE_POOL_EXHAUSTED for that zone and model), so the engine
//! can tell CA at once, skip the exhausted pool and fall back.

mod catalog;
mod create;
pub mod discovery;
mod errors;
pub mod labels;
mod operations;
mod paging;
pub mod settings;

pub use errors::classify_code;
pub use settings::{Accelerators, GceSettings, GroupSettings, MachineSpec, Source};

use crate::pricing::CatalogPrices;
use crate::sdk::Connection;
use errors::{NOT_FOUND, classify};
use google_cloud_compute_v1::client::{
    AcceleratorTypes, InstanceTemplates, Instances, MachineTypes, Regions, ZoneOperations,
};
use google_cloud_compute_v1::model;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use gpupool_cloud::{
    Cloud, CloudError, CreateOutcome, CreateRequest, Instance, InstanceId, InstanceType, Price,
    PriceSource,
};
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::time::Duration;

/// Calls per second: inside Compute Engine's default per-project rate
/// quotas (read and mutating requests are counted per minute), so gpupool
/// leaves room for the project's other callers.
const READ_PER_SECOND: u32 = 10;
const MUTATE_PER_SECOND: u32 = 4;

/// How long a delete's operation is awaited: a GPU VM's shutdown takes up
/// to a minute or two (spot: 30 s notice).
const DELETE_WAIT: Duration = Duration::from_secs(5 * 60);

/// Instances per aggregatedList page (the API's maximum).
const PAGE_SIZE: u32 = 500;

struct Limits {
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

pub struct GceCloud {
    instances: Instances,
    operations: ZoneOperations,
    settings: GceSettings,
    region: String,
    /// The region's zones, from `regions.get` at connect.
    zones: Vec<String>,
    /// The groups' instance templates, by the name the config gives.
    templates: BTreeMap<String, model::InstanceTemplate>,
    /// The live catalog read at connect, and where each type is offered.
    catalog: Vec<InstanceType>,
    offered: BTreeSet<(String, String)>,
    prices: CatalogPrices,
    limits: Limits,
}

impl std::fmt::Debug for GceCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GceCloud")
            .field("project", &self.settings.project)
            .field("region", &self.region)
            .field("cluster", &self.settings.cluster)
            .finish_non_exhaustive()
    }
}

impl GceCloud {
    /// Connects to Compute Engine in `region`: reads the region's zones,
    /// the groups' instance templates (an unknown one is an error naming
    /// it), and the machine and accelerator types of the zones the groups
    /// use.
    pub async fn connect(
        connection: &Connection,
        region: &str,
        settings: GceSettings,
    ) -> Result<Self, CloudError> {
        let built = |what: &str, e: google_cloud_gax::client_builder::Error| {
            CloudError::other("ClientSetup", format!("{what}: {e}"))
        };
        let instances = connection
            .configure(Instances::builder())
            .build()
            .await
            .map_err(|e| built("instances", e))?;
        let operations = connection
            .configure(ZoneOperations::builder())
            .build()
            .await
            .map_err(|e| built("zoneOperations", e))?;
        let regions: Regions = connection
            .configure(Regions::builder())
            .build()
            .await
            .map_err(|e| built("regions", e))?;
        let limits = Limits::new();
        limits.read.until_ready().await;
        let zones = zones_of(&regions, &settings.project, region).await?;
        let templates = templates(connection, &settings, &limits).await?;
        let machine_types: MachineTypes = connection
            .configure(MachineTypes::builder())
            .build()
            .await
            .map_err(|e| built("machineTypes", e))?;
        let accelerator_types: AcceleratorTypes = connection
            .configure(AcceleratorTypes::builder())
            .build()
            .await
            .map_err(|e| built("acceleratorTypes", e))?;
        let live = catalog::read(
            &machine_types,
            &accelerator_types,
            &settings,
            &zones,
            &limits,
        )
        .await?;
        let prices = CatalogPrices::connect_with(connection, region, live.shapes).await?;
        Ok(Self {
            instances,
            operations,
            settings,
            region: region.to_owned(),
            zones,
            templates,
            catalog: live.types,
            offered: live.offered,
            prices,
            limits,
        })
    }

    /// Whether `machine_type` is offered in `zone` (as machineTypes.list
    /// said at connect).
    pub fn offers(&self, zone: &str, machine_type: &str) -> bool {
        self.offered
            .contains(&(zone.to_owned(), machine_type.to_owned()))
    }

    /// Every machine type a group names, once.
    fn named_types(&self) -> Vec<String> {
        self.settings
            .groups
            .values()
            .flat_map(|g| g.machine_types.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Sends one delete; an instance already gone is not an error.
    async fn delete_call(
        &self,
        zone: &str,
        name: &str,
    ) -> Result<Option<model::Operation>, CloudError> {
        self.limits.mutate.until_ready().await;
        let sent = self
            .instances
            .delete()
            .set_project(&self.settings.project)
            .set_zone(zone)
            .set_instance(name)
            .set_request_id(labels::delete_request_id(zone, name))
            .send()
            .await;
        match sent {
            Ok(op) => Ok(Some(op)),
            Err(e) => match classify("instances.delete", &e) {
                e if e.code == NOT_FOUND => Ok(None),
                e => Err(e),
            },
        }
    }
}

/// The zones of `region`, sorted.
async fn zones_of(
    regions: &Regions,
    project: &str,
    region: &str,
) -> Result<Vec<String>, CloudError> {
    let answer = regions
        .get()
        .set_project(project)
        .set_region(region)
        .send()
        .await
        .map_err(|e| classify("regions.get", &e))?;
    let mut zones: Vec<String> = answer
        .zones
        .iter()
        .map(|z| labels::last_segment(z).to_owned())
        .collect();
    zones.sort();
    Ok(zones)
}

/// Each group's instance template, read once: gpupool keeps the template's
/// labels and scheduling when it overrides them.
async fn templates(
    connection: &Connection,
    settings: &GceSettings,
    limits: &Limits,
) -> Result<BTreeMap<String, model::InstanceTemplate>, CloudError> {
    let names: BTreeSet<&str> = settings
        .groups
        .values()
        .filter_map(|g| match &g.source {
            Source::Template(t) => Some(t.as_str()),
            Source::Machine(_) => None,
        })
        .collect();
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return Ok(out);
    }
    let client: InstanceTemplates = connection
        .configure(InstanceTemplates::builder())
        .build()
        .await
        .map_err(|e| CloudError::other("ClientSetup", format!("instanceTemplates: {e}")))?;
    for name in names {
        limits.read.until_ready().await;
        let template = client
            .get()
            .set_project(&settings.project)
            .set_instance_template(labels::last_segment(name))
            .send()
            .await
            .map_err(|e| {
                let mut e = classify("instanceTemplates.get", &e);
                e.message = format!("instance template {name:?}: {}", e.message);
                e
            })?;
        out.insert(name.to_owned(), template);
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Cloud for GceCloud {
    fn provider_name(&self) -> &str {
        "gce"
    }

    fn region(&self) -> &str {
        &self.region
    }

    async fn zones(&self) -> Result<Vec<String>, CloudError> {
        Ok(self.zones.clone())
    }

    async fn list_instances(&self) -> Result<Vec<Instance>, CloudError> {
        let filter = format!("labels.{} = \"{}\"", labels::CLUSTER, self.settings.cluster);
        paging::all("instances.aggregatedList", async |token| {
            self.limits.read.until_ready().await;
            let page = self
                .instances
                .aggregated_list()
                .set_project(&self.settings.project)
                .set_filter(&filter)
                .set_max_results(PAGE_SIZE)
                .set_page_token(token)
                .send()
                .await
                .map_err(|e| classify("instances.aggregatedList", &e))?;
            // A zone that did not answer would look empty, its instances
            // gone: the whole list is refused instead.
            let ours: Vec<&String> = page
                .unreachables
                .iter()
                .filter(|u| self.zones.iter().any(|z| u.ends_with(z.as_str())))
                .collect();
            if !ours.is_empty() {
                return Err(CloudError::throttled(
                    "Unreachable",
                    format!("instances.aggregatedList: no answer from {ours:?}"),
                ));
            }
            let instances: Vec<Instance> = page
                .items
                .iter()
                .filter(|(scope, _)| {
                    let zone = labels::last_segment(scope);
                    self.zones.iter().any(|z| z == zone)
                })
                .flat_map(|(_, list)| list.instances.iter())
                .filter_map(|i| labels::instance(&self.settings.project, i))
                .collect();
            Ok((instances, page.next_page_token))
        })
        .await
    }

    async fn create_instances(&self, request: &CreateRequest) -> Result<CreateOutcome, CloudError> {
        self.create(request).await
    }

    async fn delete_instances(&self, ids: &[InstanceId]) -> Result<(), CloudError> {
        // Every delete is sent before any is awaited: they run together.
        let mut pending = Vec::new();
        let mut failed: Option<CloudError> = None;
        for id in ids {
            let Some((zone, name)) = labels::split_id(id) else {
                failed.get_or_insert(CloudError::other(
                    "InvalidInstanceId",
                    format!("{id} is not <zone>/<name>"),
                ));
                continue;
            };
            match self.delete_call(zone, name).await {
                Ok(Some(op)) => pending.push((zone.to_owned(), op)),
                Ok(None) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        for (zone, op) in pending {
            match self.wait(&zone, op, DELETE_WAIT).await {
                Ok(done) => match operations::error_of(&done) {
                    Some(e) if e.code != NOT_FOUND => {
                        failed.get_or_insert(e);
                    }
                    _ => {}
                },
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    async fn instance_types(&self) -> Result<Vec<InstanceType>, CloudError> {
        Ok(self.catalog.clone())
    }

    async fn prices(&self) -> Result<Vec<Price>, CloudError> {
        self.prices.prices(&self.named_types()).await
    }
}
