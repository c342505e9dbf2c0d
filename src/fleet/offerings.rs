//! Offerings (instance type, zone, capacity type) to stay away from for a
//! while: the spot pool an instance was just reclaimed from, or one the cloud
//! just said has no capacity. A replacement bought back into the pool that is
//! being reclaimed would be interrupted in turn.

pub use gpupool_cloud::Offering;
use gpupool_cloud::{CapacityType, CloudError, CreateRequest, ErrorClass, PurchaseOption};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How long an offering is skipped after an interruption or a capacity
/// error, unless configured otherwise.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(180);

/// The code of the error a request gets when every offering it could use
/// is skipped.
pub const RECENTLY_UNAVAILABLE: &str = "OfferingRecentlyUnavailable";

/// Offerings skipped until a time.
#[derive(Debug, Default)]
pub struct Unavailable {
    until: Mutex<HashMap<Offering, SystemTime>>,
}

impl Unavailable {
    /// Skips `offering` until `until` (a later mark extends it).
    pub fn mark(&self, offering: Offering, until: SystemTime, why: &str) {
        let mut map = self.lock();
        let entry = map.entry(offering.clone()).or_insert(until);
        *entry = (*entry).max(until);
        tracing::info!(offering = %offering, until = %humantime::format_rfc3339_seconds(*entry), reason = why, "offering skipped for a while");
    }

    /// How many offerings are skipped at `now`.
    pub fn count(&self, now: SystemTime) -> usize {
        self.lock().values().filter(|u| **u > now).count()
    }

    /// The request without the skipped offerings of `types` (the group's
    /// instance types): a zone is left out at a capacity type when every
    /// type is skipped there, a `spot-then-on-demand` request with no spot
    /// zone left is bought on demand, and the skipped offerings of the zones
    /// kept are listed in `avoid` for a backend that chooses among the
    /// types. `Err` (out of resources, so CA backs off and tries another
    /// group) when nothing is left.
    pub fn filter(
        &self,
        mut request: CreateRequest,
        types: &[String],
        now: SystemTime,
    ) -> Result<CreateRequest, CloudError> {
        let mut map = self.lock();
        map.retain(|_, until| *until > now);
        if map.is_empty() {
            return Ok(request);
        }
        let primary = std::slice::from_ref(&request.instance_type);
        let types = if types.is_empty() { primary } else { types };
        let offering = |ty: &str, zone: &str, capacity| Offering {
            instance_type: ty.to_owned(),
            zone: zone.to_owned(),
            capacity,
        };
        let skipped =
            |ty: &str, zone: &str, capacity| map.contains_key(&offering(ty, zone, capacity));
        let open = |capacity| -> Vec<String> {
            request
                .zones
                .iter()
                .filter(|z| types.iter().any(|t| !skipped(t, z, capacity)))
                .cloned()
                .collect()
        };
        let spot = open(CapacityType::Spot);
        let on_demand = open(CapacityType::OnDemand);
        let (purchase, zones) = match request.purchase {
            PurchaseOption::OnDemand => (PurchaseOption::OnDemand, on_demand),
            PurchaseOption::Spot => (PurchaseOption::Spot, spot),
            PurchaseOption::SpotThenOnDemand if spot.is_empty() => {
                (PurchaseOption::OnDemand, on_demand)
            }
            // Spot where it is open, on demand where that is: the zones of
            // either, the skipped pools in `avoid`.
            PurchaseOption::SpotThenOnDemand => {
                let either = request
                    .zones
                    .iter()
                    .filter(|z| spot.contains(z) || on_demand.contains(z))
                    .cloned()
                    .collect();
                (PurchaseOption::SpotThenOnDemand, either)
            }
        };
        if zones.is_empty() {
            return Err(CloudError::new(
                ErrorClass::OutOfResources,
                RECENTLY_UNAVAILABLE,
                format!(
                    "every {} offering of {} in {} was interrupted or out of capacity in the last minutes; skipped until it cools down",
                    request.purchase,
                    types.join(", "),
                    request.zones.join(", ")
                ),
            ));
        }
        let mut avoid: Vec<Offering> = map
            .keys()
            .filter(|o| types.contains(&o.instance_type) && request.zones.contains(&o.zone))
            .cloned()
            .collect();
        avoid.sort();
        if purchase != request.purchase || zones.len() != request.zones.len() || !avoid.is_empty() {
            tracing::info!(
                group = %request.group,
                request = %request.request_id,
                purchase = %purchase,
                zones = ?zones,
                avoid = avoid.len(),
                "skipping recently interrupted or exhausted offerings"
            );
        }
        request.purchase = purchase;
        request.zones = zones;
        request.avoid = avoid;
        Ok(request)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Offering, SystemTime>> {
        self.until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpupool_cloud::{GroupId, RequestId};

    fn request(purchase: PurchaseOption) -> CreateRequest {
        CreateRequest {
            request_id: RequestId::new("r1"),
            group: GroupId::new("g"),
            instance_type: "p5.48xlarge".into(),
            zones: vec!["a".into(), "b".into()],
            purchase,
            count: 1,
            max_spot_price: None,
            avoid: Vec::new(),
        }
    }

    fn offering(zone: &str, capacity: CapacityType) -> Offering {
        Offering {
            instance_type: "p5.48xlarge".into(),
            zone: zone.into(),
            capacity,
        }
    }

    /// Spot p5.48xlarge skipped in `zones` from `now` on.
    fn spot_out(zones: &[&str], now: SystemTime) -> Unavailable {
        let u = Unavailable::default();
        for z in zones {
            u.mark(
                offering(z, CapacityType::Spot),
                now + DEFAULT_COOLDOWN,
                "test",
            );
        }
        u
    }

    #[test]
    fn an_interrupted_spot_zone_is_left_out_until_it_cools_down() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let u = spot_out(&["a"], now);
        let r = u.filter(request(PurchaseOption::Spot), &[], now).unwrap();
        assert_eq!(r.zones, vec!["b".to_owned()]);
        assert_eq!(u.count(now), 1);
        let later = now + DEFAULT_COOLDOWN;
        let r = u.filter(request(PurchaseOption::Spot), &[], later).unwrap();
        assert_eq!(r.zones.len(), 2);
        assert_eq!(u.count(later), 0);
    }

    #[test]
    fn spot_then_on_demand_falls_back_to_on_demand_when_no_spot_zone_is_left() {
        let now = SystemTime::UNIX_EPOCH;
        let u = spot_out(&["a", "b"], now);
        let r = u
            .filter(request(PurchaseOption::SpotThenOnDemand), &[], now)
            .unwrap();
        assert_eq!(r.purchase, PurchaseOption::OnDemand);
        assert_eq!(r.zones.len(), 2);
        // The on-demand offerings are untouched by spot marks.
        let r = u
            .filter(request(PurchaseOption::OnDemand), &[], now)
            .unwrap();
        assert_eq!(r.zones.len(), 2);
    }

    #[test]
    fn a_spot_group_with_nothing_left_gets_an_out_of_resources_error_for_ca() {
        let now = SystemTime::UNIX_EPOCH;
        let u = spot_out(&["a", "b"], now);
        let e = u
            .filter(request(PurchaseOption::Spot), &[], now)
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::OutOfResources);
        assert!(e.message.contains("p5.48xlarge"), "{}", e.message);
    }

    #[test]
    fn a_zone_stays_while_another_type_of_the_group_is_open_there() {
        let now = SystemTime::UNIX_EPOCH;
        let u = spot_out(&["a"], now);
        let types = ["p5.48xlarge".to_owned(), "p5e.48xlarge".to_owned()];
        let r = u
            .filter(request(PurchaseOption::Spot), &types, now)
            .unwrap();
        assert_eq!(r.zones.len(), 2, "p5e.48xlarge is still open in a");
        assert_eq!(r.avoid, vec![offering("a", CapacityType::Spot)]);
        u.mark(
            Offering {
                instance_type: "p5e.48xlarge".into(),
                zone: "a".into(),
                capacity: CapacityType::Spot,
            },
            now + DEFAULT_COOLDOWN,
            "test",
        );
        let r = u
            .filter(request(PurchaseOption::Spot), &types, now)
            .unwrap();
        assert_eq!(r.zones, vec!["b".to_owned()], "both types skipped in a");
    }

    #[test]
    fn spot_then_on_demand_keeps_a_zone_where_only_spot_ran_out_for_its_on_demand_part() {
        let now = SystemTime::UNIX_EPOCH;
        let u = spot_out(&["a"], now);
        let r = u
            .filter(request(PurchaseOption::SpotThenOnDemand), &[], now)
            .unwrap();
        assert_eq!(r.purchase, PurchaseOption::SpotThenOnDemand);
        assert_eq!(r.zones, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(
            r.avoid,
            vec![offering("a", CapacityType::Spot)],
            "spot in a is left out, on demand in a is not"
        );
    }
}
