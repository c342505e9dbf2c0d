//! Scale-up with CreateFleet, type `instant`: one synchronous call that
//! launches what it can across the group's instance types and zones and
//! says why it could not launch the rest. Spot uses the
//! `price-capacity-optimized` allocation (the pools least likely to be
//! interrupted, among the cheapest); on demand, the lowest price. A
//! `spot-then-on-demand` request asks on demand for what spot left. The
//! request id is the client token (and a tag on every instance), so a
//! retried call never launches a second set.

use super::Ec2Cloud;
use super::tags;
use crate::errors::{OUT_OF_RESOURCES, classify, classify_code};
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest,
    FleetOnDemandAllocationStrategy, FleetType, InstanceLifecycle, InstanceType,
    OnDemandOptionsRequest, ResourceType, SpotAllocationStrategy, SpotOptionsRequest,
    TagSpecification, TargetCapacitySpecificationRequest,
};
use gpupool_cloud::{
    CapacityType, CloudError, CreateFailure, CreateOutcome, CreateRequest, ErrorClass, Instance,
    InstanceId, InstanceState, Offering, PurchaseOption, RequestId,
};
use std::time::SystemTime;

impl Ec2Cloud {
    pub(super) async fn create(
        &self,
        request: &CreateRequest,
    ) -> Result<CreateOutcome, CloudError> {
        let first = match request.purchase {
            PurchaseOption::OnDemand => CapacityType::OnDemand,
            PurchaseOption::Spot | PurchaseOption::SpotThenOnDemand => CapacityType::Spot,
        };
        let fallback = request.purchase == PurchaseOption::SpotThenOnDemand;
        let token = client_token(&request.request_id, "");
        let mut outcome = match self.fleet(request, first, request.count, &token).await {
            Ok(outcome) => outcome,
            // Spot refused as a whole (a spot limit): on demand still may.
            Err(error) if fallback && error.class == ErrorClass::OutOfResources => CreateOutcome {
                failed: Some(CreateFailure {
                    count: request.count,
                    error,
                }),
                ..CreateOutcome::default()
            },
            Err(error) => return Err(error),
        };
        let short = outcome.failed.as_ref().map_or(0, |f| f.count);
        if fallback && short > 0 {
            // Its own client token: the spot call's is spent.
            let token = client_token(&request.request_id, "-od");
            match self
                .fleet(request, CapacityType::OnDemand, short, &token)
                .await
            {
                Ok(on_demand) => {
                    outcome.created.extend(on_demand.created);
                    outcome.failed = on_demand.failed;
                    outcome.exhausted.extend(on_demand.exhausted);
                }
                Err(e) => {
                    tracing::warn!(group = %request.group, error = %e, "on-demand fallback failed");
                    outcome.failed = Some(CreateFailure {
                        count: short,
                        error: e,
                    });
                }
            }
        }
        Ok(outcome)
    }

    /// One CreateFleet call for `count` instances of `capacity`.
    async fn fleet(
        &self,
        request: &CreateRequest,
        capacity: CapacityType,
        count: u32,
        token: &RequestId,
    ) -> Result<CreateOutcome, CloudError> {
        let group = self.settings.groups.get(&request.group).ok_or_else(|| {
            CloudError::other(
                "UnknownGroup",
                format!("no AWS settings for node group {}", request.group),
            )
        })?;
        let count_i32 = i32::try_from(count).map_err(|_| {
            CloudError::other("InvalidCount", format!("cannot launch {count} at once"))
        })?;
        let mut spec = FleetLaunchTemplateSpecificationRequest::builder()
            .version(group.launch_template.version.clone());
        if let Some(id) = &group.launch_template.id {
            spec = spec.launch_template_id(id);
        } else if let Some(name) = &group.launch_template.name {
            spec = spec.launch_template_name(name);
        }
        let placements = self.placements(&request.group, &request.zones);
        if placements.is_empty() {
            return Err(CloudError::out_of_resources(
                "NoUsableZone",
                format!(
                    "node group {}: none of the zones asked ({}) has one of its subnets",
                    request.group,
                    request.zones.join(", ")
                ),
            ));
        }
        // The group's types, or the request's one when it names none.
        let types = if group.instance_types.is_empty() {
            std::slice::from_ref(&request.instance_type)
        } else {
            group.instance_types.as_slice()
        };
        let mut config =
            FleetLaunchTemplateConfigRequest::builder().launch_template_specification(spec.build());
        let mut pools = 0;
        for ty in types {
            for (zone, subnet) in &placements {
                let avoided = request
                    .avoid
                    .iter()
                    .any(|o| &o.instance_type == ty && &o.zone == zone && o.capacity == capacity);
                if avoided {
                    continue;
                }
                pools += 1;
                let mut o = FleetLaunchTemplateOverridesRequest::builder()
                    .instance_type(InstanceType::from(ty.as_str()))
                    .availability_zone(zone);
                if let Some(subnet) = subnet {
                    o = o.subnet_id(subnet);
                }
                if capacity == CapacityType::Spot
                    && let Some(max) = request.max_spot_price
                {
                    o = o.max_price(format!("{max:.4}"));
                }
                config = config.overrides(o.build());
            }
        }
        if pools == 0 {
            return Ok(CreateOutcome {
                created: Vec::new(),
                failed: Some(CreateFailure {
                    count,
                    error: CloudError::out_of_resources(
                        "OfferingRecentlyUnavailable",
                        format!(
                            "every {capacity} pool of node group {} ({} in {}) was out of capacity or interrupted in the last minutes",
                            request.group,
                            types.join(", "),
                            request.zones.join(", ")
                        ),
                    ),
                }),
                exhausted: Vec::new(),
            });
        }
        let mut target =
            TargetCapacitySpecificationRequest::builder().total_target_capacity(count_i32);
        target = match capacity {
            CapacityType::Spot => target
                .default_target_capacity_type(DefaultTargetCapacityType::Spot)
                .spot_target_capacity(count_i32),
            CapacityType::OnDemand => target
                .default_target_capacity_type(DefaultTargetCapacityType::OnDemand)
                .on_demand_target_capacity(count_i32),
        };
        let target = target.build();
        let mut tag_spec = TagSpecification::builder().resource_type(ResourceType::Instance);
        for t in tags::launch_tags(&self.settings.cluster, &request.group, &request.request_id) {
            tag_spec = tag_spec.tags(t);
        }
        self.limits.create.until_ready().await;
        let answer = self
            .client
            .create_fleet()
            .r#type(FleetType::Instant)
            .client_token(token.as_str())
            .launch_template_configs(config.build())
            .target_capacity_specification(target)
            .spot_options(
                SpotOptionsRequest::builder()
                    .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                    .build(),
            )
            .on_demand_options(
                OnDemandOptionsRequest::builder()
                    .allocation_strategy(FleetOnDemandAllocationStrategy::LowestPrice)
                    .build(),
            )
            .tag_specifications(tag_spec.build())
            .send()
            .await
            .map_err(|e| classify("CreateFleet", e))?;

        let now = SystemTime::now();
        let mut created = Vec::new();
        for launched in answer.instances() {
            let overrides = launched
                .launch_template_and_overrides()
                .and_then(|l| l.overrides());
            let zone = overrides
                .and_then(|o| o.availability_zone())
                .map(str::to_owned)
                .or_else(|| {
                    overrides
                        .and_then(|o| o.subnet_id())
                        .and_then(|s| self.zone_of_subnet(s))
                })
                .unwrap_or_default();
            let capacity = match launched.lifecycle() {
                Some(InstanceLifecycle::Spot) => CapacityType::Spot,
                Some(InstanceLifecycle::OnDemand) => CapacityType::OnDemand,
                _ => capacity,
            };
            for id in launched.instance_ids() {
                created.push(Instance {
                    id: InstanceId::new(id),
                    provider_id: tags::provider_id(&zone, id),
                    node_name: None,
                    group: request.group.clone(),
                    instance_type: launched
                        .instance_type()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_else(|| types[0].clone()),
                    zone: zone.clone(),
                    capacity_type: capacity,
                    state: InstanceState::Pending,
                    launched_at: now,
                    request_id: Some(request.request_id.clone()),
                    state_reason: None,
                });
            }
        }
        let made = u32::try_from(created.len()).unwrap_or(u32::MAX);
        let failed = (made < count).then(|| CreateFailure {
            count: count - made,
            error: fleet_error(answer.errors(), capacity),
        });
        let exhausted = self.exhausted(answer.errors(), capacity);
        if made > count {
            tracing::warn!(group = %request.group, made, count, "CreateFleet launched more than asked");
        }
        Ok(CreateOutcome {
            created,
            failed,
            exhausted,
        })
    }

    /// The pools CreateFleet said have no capacity: each error of an
    /// out-of-resources code with its type and zone.
    fn exhausted(
        &self,
        errors: &[aws_sdk_ec2::types::CreateFleetError],
        capacity: CapacityType,
    ) -> Vec<Offering> {
        let mut pools: Vec<Offering> = errors
            .iter()
            .filter(|e| {
                e.error_code()
                    .is_some_and(|c| OUT_OF_RESOURCES.contains(&c))
            })
            .filter_map(|e| {
                let o = e.launch_template_and_overrides()?.overrides()?;
                let zone = o
                    .availability_zone()
                    .map(str::to_owned)
                    .or_else(|| o.subnet_id().and_then(|s| self.zone_of_subnet(s)))?;
                Some(Offering {
                    instance_type: o.instance_type()?.as_str().to_owned(),
                    zone,
                    capacity: match e.lifecycle() {
                        Some(InstanceLifecycle::Spot) => CapacityType::Spot,
                        Some(InstanceLifecycle::OnDemand) => CapacityType::OnDemand,
                        _ => capacity,
                    },
                })
            })
            .collect();
        pools.sort();
        pools.dedup();
        pools
    }
}

/// EC2's client tokens hold at most 64 ASCII characters; a request id is
/// `<group>-<16 hex digits>` and a group id up to 63 characters. A longer
/// one keeps its end (the random part, so still unique), with `suffix`.
fn client_token(request: &RequestId, suffix: &str) -> RequestId {
    const MAX: usize = 64;
    let id = request.as_str();
    let room = MAX - suffix.len();
    let start = id.len().saturating_sub(room);
    let start = (start..=id.len())
        .find(|i| id.is_char_boundary(*i))
        .unwrap_or(id.len());
    RequestId::new(format!("{}{suffix}", &id[start..]))
}

/// Why a fleet fell short: its most telling error (capacity before the
/// rest), every distinct one in the message.
fn fleet_error(
    errors: &[aws_sdk_ec2::types::CreateFleetError],
    capacity: CapacityType,
) -> CloudError {
    let mut classified: Vec<CloudError> = errors
        .iter()
        .map(|e| {
            let code = e.error_code().unwrap_or("Unknown");
            let placed = e
                .launch_template_and_overrides()
                .and_then(|l| l.overrides())
                .map(|o| {
                    format!(
                        " ({} in {})",
                        o.instance_type().map(|t| t.as_str()).unwrap_or("?"),
                        o.availability_zone().or(o.subnet_id()).unwrap_or("?")
                    )
                })
                .unwrap_or_default();
            classify_code(
                code,
                format!(
                    "CreateFleet {capacity}{placed}: {}",
                    e.error_message().unwrap_or("(no message)")
                ),
            )
        })
        .collect();
    classified.sort_by_key(|e| match e.class {
        ErrorClass::OutOfResources => 0,
        ErrorClass::Other => 1,
        ErrorClass::Throttled => 2,
    });
    classified.dedup_by(|a, b| a.code == b.code && a.message == b.message);
    match classified.split_first() {
        Some((first, rest)) => {
            let mut e = first.clone();
            for other in rest.iter().take(3) {
                e.message.push_str("; ");
                e.message.push_str(&other.to_string());
            }
            e
        }
        None => CloudError::out_of_resources(
            "UnfulfillableCapacity",
            format!("CreateFleet {capacity}: fewer instances launched than asked, no error given"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_fit_ec2s_64_characters_and_stay_unique() {
        let short = RequestId::new("l4-00000000deadbeef");
        assert_eq!(client_token(&short, "").as_str(), "l4-00000000deadbeef");
        assert_eq!(
            client_token(&short, "-od").as_str(),
            "l4-00000000deadbeef-od"
        );
        let group = "g".repeat(63);
        let long = RequestId::new(format!("{group}-00000000deadbeef"));
        for suffix in ["", "-od"] {
            let token = client_token(&long, suffix);
            assert_eq!(token.as_str().len(), 64);
            assert!(
                token
                    .as_str()
                    .ends_with(&format!("-00000000deadbeef{suffix}"))
            );
        }
        assert_ne!(client_token(&long, ""), client_token(&long, "-od"));
    }
}
