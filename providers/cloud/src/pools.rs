//! Filling a creation request pool by pool, for backends that create per
//! pool (a zone, an instance type and a capacity type; GCP and Azure): spot
//! before on demand for spot-then-on-demand, the request's type before the
//! group's alternates, the zones in order. Pools the engine avoids, and
//! pools the cloud does not offer, are skipped; a pool out of capacity is
//! reported as exhausted and the next one is asked; any other error stops
//! the request, because it fails the same way in every pool.

use crate::{
    CapacityType, CloudError, CreateFailure, CreateOutcome, CreateRequest, ErrorClass, Instance,
    Offering, PurchaseOption,
};
use std::collections::BTreeSet;

/// One place to buy.
#[derive(Clone, Copy, Debug)]
pub struct Pool<'a> {
    pub zone: &'a str,
    pub instance_type: &'a str,
    /// The type's place among those tried (0: the request's own), for names.
    pub type_index: usize,
    pub capacity: CapacityType,
}

/// What one pool made, and why it made fewer than asked.
#[derive(Debug, Default)]
pub struct PoolResult {
    pub created: Vec<Instance>,
    pub error: Option<CloudError>,
}

/// A request being filled: the pools in order, what they made, and why
/// the rest is missing. A backend asks [`Filler::next_pool`] for a pool, makes
/// what it can there, tells [`Filler::record`], and ends with
/// [`Filler::finish`]:
///
/// ```ignore
/// let mut filler = Filler::new(request, &group.types, zones, |z, t| self.offers(z, t), outcome);
/// while let Some((pool, count)) = filler.next_pool() {
///     let result = self.create_in(&pool, count).await;
///     filler.record(result);
/// }
/// filler.finish()
/// ```
#[derive(Debug)]
pub struct Filler {
    group: String,
    /// Every pool to ask, in order, with its type's index.
    pools: Vec<(Offering, usize)>,
    types: Vec<String>,
    zones: Vec<String>,
    /// The pool `next_pool` gave last.
    current: usize,
    remaining: u32,
    outcome: CreateOutcome,
    capacity_error: Option<CloudError>,
    /// A failure that ends the request.
    stopped: Option<CloudError>,
}

impl Filler {
    /// The pools of `request` in order: spot before on demand, the
    /// request's type before the rest of `group_types`, `zones` in order,
    /// less those the request avoids and those `offers(zone, type)` denies.
    /// `outcome` is what earlier attempts made (usually nothing): only the
    /// rest of `request.count` is asked for.
    pub fn new(
        request: &CreateRequest,
        group_types: &[String],
        zones: &[String],
        offers: impl Fn(&str, &str) -> bool,
        outcome: CreateOutcome,
    ) -> Self {
        let phases: &[CapacityType] = match request.purchase {
            PurchaseOption::OnDemand => &[CapacityType::OnDemand],
            PurchaseOption::Spot => &[CapacityType::Spot],
            PurchaseOption::SpotThenOnDemand => &[CapacityType::Spot, CapacityType::OnDemand],
        };
        let mut types = vec![request.instance_type.clone()];
        types.extend(
            group_types
                .iter()
                .filter(|t| **t != request.instance_type)
                .cloned(),
        );
        let avoid: BTreeSet<&Offering> = request.avoid.iter().collect();
        let mut pools = Vec::new();
        for &capacity in phases {
            for (type_index, instance_type) in types.iter().enumerate() {
                for zone in zones {
                    let offering = Offering {
                        instance_type: instance_type.clone(),
                        zone: zone.clone(),
                        capacity,
                    };
                    if !avoid.contains(&offering) && offers(zone, instance_type) {
                        pools.push((offering, type_index));
                    }
                }
            }
        }
        let found = u32::try_from(outcome.created.len()).unwrap_or(u32::MAX);
        Self {
            group: request.group.to_string(),
            pools,
            types,
            zones: zones.to_vec(),
            current: usize::MAX,
            remaining: request.count.saturating_sub(found),
            outcome,
            capacity_error: None,
            stopped: None,
        }
    }

    /// The next pool to ask and how many to ask it for; `None` once the
    /// request is filled or stopped, or every pool was asked.
    pub fn next_pool(&mut self) -> Option<(Pool<'_>, u32)> {
        if self.remaining == 0 || self.stopped.is_some() {
            return None;
        }
        self.current = self.current.wrapping_add(1);
        let (offering, type_index) = self.pools.get(self.current)?;
        Some((
            Pool {
                zone: &offering.zone,
                instance_type: &offering.instance_type,
                type_index: *type_index,
                capacity: offering.capacity,
            },
            self.remaining,
        ))
    }

    /// What the pool `next_pool` gave made. A capacity error marks it
    /// exhausted; any other stops the request, because it fails the same
    /// way in every pool (a bad template or image, permissions, throttling
    /// past retries).
    pub fn record(&mut self, result: PoolResult) {
        let made = u32::try_from(result.created.len()).unwrap_or(u32::MAX);
        self.remaining = self.remaining.saturating_sub(made);
        self.outcome.created.extend(result.created);
        match result.error {
            None => {}
            Some(e) if e.class == ErrorClass::OutOfResources => {
                if let Some((offering, _)) = self.pools.get(self.current) {
                    tracing::info!(
                        group = %self.group, pool = %offering, code = %e.code,
                        "pool out of capacity; trying the next"
                    );
                    self.outcome.exhausted.push(offering.clone());
                }
                self.capacity_error = Some(e);
            }
            Some(e) => self.stopped = Some(e),
        }
    }

    /// The outcome: what was made, the exhausted pools, and why the rest
    /// is missing. `Err` only when nothing was made and the request
    /// stopped on an error other than capacity.
    pub fn finish(mut self) -> Result<CreateOutcome, CloudError> {
        if let Some(e) = self.stopped {
            if self.outcome.created.is_empty() {
                return Err(e);
            }
            self.outcome.failed = Some(CreateFailure {
                count: self.remaining,
                error: e,
            });
            return Ok(self.outcome);
        }
        if self.remaining > 0 {
            let error = self.capacity_error.unwrap_or_else(|| {
                CloudError::out_of_resources(
                    "NoOffering",
                    format!(
                        "no zone of {} offers {} without being avoided",
                        self.zones.join(", "),
                        self.types.join(" or ")
                    ),
                )
            });
            self.outcome.failed = Some(CreateFailure {
                count: self.remaining,
                error,
            });
        }
        Ok(self.outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GroupId, InstanceId, InstanceState, ProviderId, RequestId};

    fn request(purchase: PurchaseOption, count: u32, avoid: Vec<Offering>) -> CreateRequest {
        CreateRequest {
            request_id: RequestId::new("g-1"),
            group: GroupId::new("g"),
            instance_type: "big".into(),
            zones: Vec::new(),
            purchase,
            count,
            max_spot_price: None,
            avoid,
        }
    }

    fn made(pool: &Pool<'_>, n: u32) -> Vec<Instance> {
        (0..n)
            .map(|i| Instance {
                id: InstanceId::new(format!("{}-{}-{i}", pool.zone, pool.instance_type)),
                provider_id: ProviderId::new(format!("x://{i}")),
                node_name: None,
                group: GroupId::new("g"),
                instance_type: pool.instance_type.to_owned(),
                zone: pool.zone.to_owned(),
                capacity_type: pool.capacity,
                state: InstanceState::Pending,
                launched_at: std::time::UNIX_EPOCH,
                request_id: None,
                state_reason: None,
            })
            .collect()
    }

    #[test]
    fn pools_go_spot_first_own_type_first_zones_in_order_and_exhausted_ones_are_listed() {
        let zones = ["a".to_owned(), "b".to_owned()];
        let avoid = vec![Offering {
            instance_type: "big".into(),
            zone: "a".into(),
            capacity: CapacityType::Spot,
        }];
        let mut filler = Filler::new(
            &request(PurchaseOption::SpotThenOnDemand, 2, avoid),
            &["other".into(), "big".into()],
            &zones,
            // "other" is not offered in b.
            |zone, t| !(zone == "b" && t == "other"),
            CreateOutcome::default(),
        );
        let mut asked = Vec::new();
        while let Some((pool, count)) = filler.next_pool() {
            asked.push(format!(
                "{}/{}/{}",
                pool.capacity, pool.instance_type, pool.zone
            ));
            let result = if asked.len() == 1 {
                PoolResult {
                    created: Vec::new(),
                    error: Some(CloudError::out_of_resources("Stockout", "none left")),
                }
            } else {
                PoolResult {
                    created: made(&pool, count.min(1)),
                    error: None,
                }
            };
            filler.record(result);
        }
        assert_eq!(asked, ["spot/big/b", "spot/other/a", "on-demand/big/a"]);
        let outcome = filler.finish().expect("an outcome");
        assert_eq!(outcome.created.len(), 2);
        assert!(outcome.failed.is_none());
        assert_eq!(outcome.exhausted.len(), 1);
        assert_eq!(outcome.exhausted[0].zone, "b");
    }

    #[test]
    fn another_error_stops_and_is_the_answer_when_nothing_was_made() {
        let zones = ["a".to_owned(), "b".to_owned()];
        let mut filler = Filler::new(
            &request(PurchaseOption::OnDemand, 1, Vec::new()),
            &[],
            &zones,
            |_, _| true,
            CreateOutcome::default(),
        );
        let mut asked = 0;
        while filler.next_pool().is_some() {
            asked += 1;
            filler.record(PoolResult {
                created: Vec::new(),
                error: Some(CloudError::other("BadImage", "no such image")),
            });
        }
        assert_eq!(asked, 1, "the other zone is not asked");
        assert_eq!(filler.finish().expect_err("the error").code, "BadImage");

        // Nothing offered: out of resources, naming zones and types.
        let filler = Filler::new(
            &request(PurchaseOption::Spot, 1, Vec::new()),
            &[],
            &zones,
            |_, _| false,
            CreateOutcome::default(),
        );
        let failed = filler.finish().expect("an outcome").failed.expect("failed");
        assert_eq!(failed.error.code, "NoOffering");
        assert_eq!(failed.error.class, ErrorClass::OutOfResources);
    }
}
