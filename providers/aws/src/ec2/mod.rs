//! The EC2 backend: gpupool's node groups as EC2 instances launched from a
//! launch template with CreateFleet, found again by their tags, terminated
//! by id. Every call is rate-limited per API with `governor`; throttling is
//! retried by the SDK's standard strategy (exponential backoff with jitter)
//! and, past it, classified so the engine retries at its next sync.

mod catalog;
mod create;
pub mod discovery;
pub mod settings;
pub mod tags;

pub use settings::{Ec2Settings, GroupSettings, LaunchTemplate};

use crate::errors::classify;
use crate::pricing::AwsPrices;
use crate::sdk::Connection;
use aws_sdk_ec2::types::Filter;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use gpupool_cloud::{
    Cloud, CloudError, CreateOutcome, CreateRequest, GroupId, Instance, InstanceId, InstanceType,
    Price, PriceSource,
};
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;

/// Calls per second per API: well inside EC2's request-rate buckets
/// (describe calls refill at 20/s, mutating ones at 5/s for most accounts),
/// so gpupool never starves the account's other callers.
const DESCRIBE_PER_SECOND: u32 = 10;
const MUTATE_PER_SECOND: u32 = 4;

/// EC2's answer for an instance id it does not know.
const NOT_FOUND: &str = "InvalidInstanceID.NotFound";

/// TerminateInstances takes at most this many ids per call.
const TERMINATE_BATCH: usize = 1000;

struct Limits {
    describe: DefaultDirectRateLimiter,
    create: DefaultDirectRateLimiter,
    terminate: DefaultDirectRateLimiter,
}

impl Limits {
    fn new() -> Self {
        let per = |n: u32| Quota::per_second(NonZeroU32::new(n).expect("a non-zero constant"));
        Self {
            describe: RateLimiter::direct(per(DESCRIBE_PER_SECOND)),
            create: RateLimiter::direct(per(MUTATE_PER_SECOND)),
            terminate: RateLimiter::direct(per(MUTATE_PER_SECOND)),
        }
    }
}

pub struct Ec2Cloud {
    client: aws_sdk_ec2::Client,
    region: String,
    settings: Ec2Settings,
    /// Each configured subnet's zone, from DescribeSubnets at connect.
    subnet_zones: BTreeMap<String, String>,
    prices: AwsPrices,
    limits: Limits,
}

impl std::fmt::Debug for Ec2Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2Cloud")
            .field("region", &self.region)
            .field("cluster", &self.settings.cluster)
            .finish_non_exhaustive()
    }
}

impl Ec2Cloud {
    /// Connects to EC2 in `region` and looks up the zones of the groups'
    /// subnets (an unknown subnet is an error naming it).
    pub async fn connect(
        connection: &Connection,
        region: &str,
        settings: Ec2Settings,
    ) -> Result<Self, CloudError> {
        let client = aws_sdk_ec2::Client::new(&connection.load(region).await);
        let prices = AwsPrices::connect(connection, region).await;
        let mut cloud = Self {
            client,
            region: region.to_owned(),
            settings,
            subnet_zones: BTreeMap::new(),
            prices,
            limits: Limits::new(),
        };
        cloud.subnet_zones = cloud.look_up_subnets().await?;
        Ok(cloud)
    }

    async fn look_up_subnets(&self) -> Result<BTreeMap<String, String>, CloudError> {
        let wanted: Vec<String> = self
            .settings
            .groups
            .values()
            .flat_map(|g| g.subnets.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if wanted.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.limits.describe.until_ready().await;
        let answer = self
            .client
            .describe_subnets()
            .set_subnet_ids(Some(wanted))
            .send()
            .await
            .map_err(|e| classify("DescribeSubnets", e))?;
        Ok(answer
            .subnets()
            .iter()
            .filter_map(|s| Some((s.subnet_id()?.to_owned(), s.availability_zone()?.to_owned())))
            .collect())
    }

    /// The zone of one of the groups' subnets, as EC2 said at connect.
    pub fn zone_of_subnet(&self, subnet: &str) -> Option<String> {
        self.subnet_zones.get(subnet).cloned()
    }

    /// Where a group may launch in `zones`: (zone, subnet) per subnet of
    /// the group in one of them, or (zone, none) per zone when the group
    /// names no subnets (the launch template's network then holds).
    fn placements(&self, group: &GroupId, zones: &[String]) -> Vec<(String, Option<String>)> {
        let Some(settings) = self.settings.groups.get(group) else {
            return Vec::new();
        };
        if settings.subnets.is_empty() {
            return zones.iter().map(|z| (z.clone(), None)).collect();
        }
        settings
            .subnets
            .iter()
            .filter_map(|s| {
                let zone = self.subnet_zones.get(s)?;
                (zones.is_empty() || zones.contains(zone)).then(|| (zone.clone(), Some(s.clone())))
            })
            .collect()
    }

    /// Terminates one batch; ids EC2 does not know are skipped (the goal
    /// state holds for them): one unknown id fails the whole call, so the
    /// batch is then terminated one id at a time.
    async fn terminate(&self, ids: &[InstanceId]) -> Result<(), CloudError> {
        match self.terminate_call(ids).await {
            Err(e) if e.code == NOT_FOUND && ids.len() > 1 => {
                for id in ids {
                    match self.terminate_call(std::slice::from_ref(id)).await {
                        Err(e) if e.code == NOT_FOUND => {}
                        other => other?,
                    }
                }
                Ok(())
            }
            Err(e) if e.code == NOT_FOUND => Ok(()),
            other => other,
        }
    }

    async fn terminate_call(&self, ids: &[InstanceId]) -> Result<(), CloudError> {
        self.limits.terminate.until_ready().await;
        self.client
            .terminate_instances()
            .set_instance_ids(Some(ids.iter().map(|i| i.to_string()).collect()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("TerminateInstances", e))
    }

    /// Every instance type a group names, once.
    fn named_types(&self) -> BTreeSet<&str> {
        self.settings
            .groups
            .values()
            .flat_map(|g| g.instance_types.iter().map(String::as_str))
            .collect()
    }
}

#[async_trait::async_trait]
impl Cloud for Ec2Cloud {
    fn provider_name(&self) -> &str {
        "aws"
    }

    fn region(&self) -> &str {
        &self.region
    }

    async fn zones(&self) -> Result<Vec<String>, CloudError> {
        self.limits.describe.until_ready().await;
        let answer = self
            .client
            .describe_availability_zones()
            .filters(Filter::builder().name("state").values("available").build())
            .filters(
                Filter::builder()
                    .name("zone-type")
                    .values("availability-zone")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("DescribeAvailabilityZones", e))?;
        let mut zones: Vec<String> = answer
            .availability_zones()
            .iter()
            .filter_map(|z| z.zone_name().map(str::to_owned))
            .collect();
        zones.sort();
        Ok(zones)
    }

    async fn list_instances(&self) -> Result<Vec<Instance>, CloudError> {
        let mut instances = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.limits.describe.until_ready().await;
            let page = self
                .client
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{}", tags::CLUSTER))
                        .values(&self.settings.cluster)
                        .build(),
                )
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("DescribeInstances", e))?;
            instances.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(tags::instance),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(instances)
    }

    async fn create_instances(&self, request: &CreateRequest) -> Result<CreateOutcome, CloudError> {
        self.create(request).await
    }

    async fn delete_instances(&self, ids: &[InstanceId]) -> Result<(), CloudError> {
        for batch in ids.chunks(TERMINATE_BATCH) {
            self.terminate(batch).await?;
        }
        Ok(())
    }

    async fn instance_types(&self) -> Result<Vec<InstanceType>, CloudError> {
        self.catalog().await
    }

    async fn prices(&self) -> Result<Vec<Price>, CloudError> {
        let types: Vec<String> = self.named_types().into_iter().map(str::to_owned).collect();
        self.prices.prices(&types).await
    }
}
