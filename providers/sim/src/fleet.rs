//! The simulated fleet: every instance and how it moves through its life as
//! simulated time passes. Pure data and rules, no I/O; persisted as JSON.

use crate::catalog::SimType;
use crate::config::SimConfig;
use gpupool_cloud::{
    CapacityType, CloudError, CreateFailure, CreateOutcome, CreateRequest, Instance, InstanceId,
    InstanceState, ProviderId, PurchaseOption, RequestId,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

/// Why the simulator stopped an instance on its own.
pub const SPOT_INTERRUPTION: &str = "spot-interruption";

/// How long terminated instances stay listed (simulated time).
const TERMINATED_RETENTION: Duration = Duration::from_secs(600);

/// One simulated instance and its timers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimInstance {
    pub instance: Instance,
    /// When a pending instance becomes running.
    pub ready_at: SystemTime,
    /// When the current phase ends: the interruption notice (then shutting down),
    /// or shutting down (then terminated), or the retention of a terminated one.
    pub phase_ends_at: Option<SystemTime>,
}

/// What a past creation request produced, for idempotent retries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub created: Vec<InstanceId>,
    pub failed: Option<(u32, CloudError)>,
}

/// The whole simulated fleet.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Fleet {
    pub instances: BTreeMap<InstanceId, SimInstance>,
    pub requests: BTreeMap<RequestId, RecordedRequest>,
    /// Up to when interruptions have been drawn.
    pub last_tick: Option<SystemTime>,
}

impl Fleet {
    /// Moves every instance along to `now`.
    pub fn tick(&mut self, now: SystemTime, config: &SimConfig, rng: &mut impl Rng) {
        let elapsed = self
            .last_tick
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        self.last_tick = Some(self.last_tick.map_or(now, |t| t.max(now)));
        // Probability that one running spot instance is interrupted in `elapsed`
        // real time: a Poisson process at the (time-scaled) hourly rate.
        let rate_per_sec = config.spot_interruptions_per_hour * config.time_scale / 3600.0;
        let p_interrupt = 1.0 - (-rate_per_sec * elapsed.as_secs_f64()).exp();

        self.instances.retain(|_, sim| {
            advance(sim, now, config);
            let i = &sim.instance;
            if p_interrupt > 0.0
                && i.capacity_type == CapacityType::Spot
                && i.state == InstanceState::Running
                && i.state_reason.is_none()
                && rng.random_bool(p_interrupt.min(1.0))
            {
                notify_interruption(sim, now, config);
            }
            !(sim.instance.state == InstanceState::Terminated
                && sim.phase_ends_at.is_some_and(|end| end <= now))
        });
    }

    /// Every instance, as the cloud lists them.
    pub fn list(&self) -> Vec<Instance> {
        self.instances
            .values()
            .map(|s| s.instance.clone())
            .collect()
    }

    /// Per zone of the request: (spot instances of this type, instances of
    /// this group), counted once per request.
    fn zone_usage(&self, request: &CreateRequest) -> HashMap<String, (u32, usize)> {
        let mut usage: HashMap<String, (u32, usize)> =
            request.zones.iter().map(|z| (z.clone(), (0, 0))).collect();
        for s in self.instances.values() {
            let i = &s.instance;
            if i.state == InstanceState::Terminated {
                continue;
            }
            if let Some(u) = usage.get_mut(&i.zone) {
                if i.capacity_type == CapacityType::Spot && i.instance_type == request.instance_type
                {
                    u.0 += 1;
                }
                if i.group == request.group {
                    u.1 += 1;
                }
            }
        }
        usage
    }

    /// Creates what fits, at most `cap` (an injected partial failure makes
    /// fewer than asked); records the outcome under the request id.
    pub fn create(
        &mut self,
        request: &CreateRequest,
        ty: &SimType,
        now: SystemTime,
        config: &SimConfig,
        rng: &mut impl Rng,
        cap: u32,
    ) -> CreateOutcome {
        if let Some(recorded) = self.requests.get(&request.request_id) {
            return CreateOutcome {
                created: recorded
                    .created
                    .iter()
                    .filter_map(|id| self.instances.get(id).map(|s| s.instance.clone()))
                    .collect(),
                failed: recorded
                    .failed
                    .clone()
                    .map(|(count, error)| CreateFailure { count, error }),
                exhausted: Vec::new(),
            };
        }
        let mut created = Vec::new();
        let mut short = 0u32;
        let mut usage = self.zone_usage(request);
        // A bid cap below the spot price buys no spot instance (AWS answers
        // `SpotMaxPriceTooLow`; the on-demand fallback still runs).
        let bid_too_low = request
            .max_spot_price
            .is_some_and(|cap| cap < ty.spot_usd_per_hour);
        let spot = |usage: &_| {
            if bid_too_low {
                None
            } else {
                spot_zone(request, ty, config, usage)
            }
        };
        let mut capped = 0u32;
        for n in 0..request.count {
            if n >= cap {
                capped += 1;
                continue;
            }
            let placed = match request.purchase {
                PurchaseOption::OnDemand => on_demand_zone(request, &usage),
                PurchaseOption::Spot => spot(&usage),
                PurchaseOption::SpotThenOnDemand => {
                    spot(&usage).or_else(|| on_demand_zone(request, &usage))
                }
            };
            let Some((zone, capacity_type)) = placed else {
                short += 1;
                continue;
            };
            if let Some(u) = usage.get_mut(&zone) {
                u.0 += u32::from(capacity_type == CapacityType::Spot);
                u.1 += 1;
            }
            let instance = self.launch(request, ty, zone, capacity_type, now, config, rng);
            created.push(instance);
        }
        let failed = (short + capped > 0).then(|| CreateFailure {
            count: short + capped,
            error: match request.max_spot_price {
                _ if short == 0 => CloudError::out_of_resources(
                    "InsufficientInstanceCapacity",
                    format!(
                        "not enough {} capacity in zones {:?} ({} of {} not created)",
                        request.instance_type, request.zones, capped, request.count
                    ),
                ),
                Some(cap) if bid_too_low => CloudError::out_of_resources(
                    "SpotMaxPriceTooLow",
                    format!(
                        "your max price ${cap:.4}/h is below the spot price ${:.4}/h of {} ({} of {} not created)",
                        ty.spot_usd_per_hour, request.instance_type, short, request.count
                    ),
                ),
                _ => CloudError::out_of_resources(
                    "InsufficientSpotCapacity",
                    format!(
                        "no spot capacity left for {} in zones {:?} ({} of {} not created)",
                        request.instance_type, request.zones, short, request.count
                    ),
                ),
            },
        });
        self.requests.insert(
            request.request_id.clone(),
            RecordedRequest {
                created: created.iter().map(|i| i.id.clone()).collect(),
                failed: failed.as_ref().map(|f| (f.count, f.error.clone())),
            },
        );
        CreateOutcome {
            created,
            failed,
            exhausted: Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        &mut self,
        request: &CreateRequest,
        ty: &SimType,
        zone: String,
        capacity_type: CapacityType,
        now: SystemTime,
        config: &SimConfig,
        rng: &mut impl Rng,
    ) -> Instance {
        let id = loop {
            let id = InstanceId::new(format!("i-{:017x}", rng.random::<u64>() >> 4));
            if !self.instances.contains_key(&id) {
                break id;
            }
        };
        let boot = config.boot.get(&ty.name).copied().unwrap_or(ty.boot);
        let boot = if boot.max > boot.min {
            rng.random_range(boot.min..=boot.max)
        } else {
            boot.min
        };
        let instance = Instance {
            provider_id: ProviderId::new(format!("{}:///{zone}/{id}", crate::PROVIDER_NAME)),
            node_name: Some(format!("sim-{}", &id.as_str()[2..])),
            id: id.clone(),
            group: request.group.clone(),
            instance_type: ty.name.clone(),
            zone,
            capacity_type,
            state: InstanceState::Pending,
            launched_at: now,
            request_id: Some(request.request_id.clone()),
            state_reason: None,
        };
        self.instances.insert(
            id,
            SimInstance {
                instance: instance.clone(),
                ready_at: now + config.scaled(boot),
                phase_ends_at: None,
            },
        );
        instance
    }

    /// Starts terminating these instances; unknown ones are ignored.
    pub fn delete(&mut self, ids: &[InstanceId], now: SystemTime, config: &SimConfig) {
        for id in ids {
            if let Some(sim) = self.instances.get_mut(id)
                && matches!(
                    sim.instance.state,
                    InstanceState::Pending | InstanceState::Running
                )
            {
                sim.instance.state = InstanceState::ShuttingDown;
                sim.phase_ends_at = Some(now + config.scaled(config.shutdown));
            }
        }
    }

    /// Sends a spot interruption notice to one instance now.
    pub fn interrupt(
        &mut self,
        id: &InstanceId,
        now: SystemTime,
        config: &SimConfig,
    ) -> Result<Instance, crate::SimError> {
        let sim = self
            .instances
            .get_mut(id)
            .ok_or_else(|| crate::SimError::NoSuchInstance(id.clone()))?;
        if sim.instance.capacity_type != CapacityType::Spot {
            return Err(crate::SimError::NotSpot(id.clone()));
        }
        if !matches!(
            sim.instance.state,
            InstanceState::Pending | InstanceState::Running
        ) {
            return Err(crate::SimError::NotRunning(id.clone()));
        }
        notify_interruption(sim, now, config);
        Ok(sim.instance.clone())
    }
}

/// The zone with the fewest instances of the group.
fn on_demand_zone(
    request: &CreateRequest,
    usage: &HashMap<String, (u32, usize)>,
) -> Option<(String, CapacityType)> {
    request
        .zones
        .iter()
        .filter(|z| !avoided(request, z, CapacityType::OnDemand))
        .min_by_key(|z| usage.get(*z).map_or(0, |u| u.1))
        .map(|z| (z.clone(), CapacityType::OnDemand))
}

/// Whether the engine asked to leave this pool of the request's type out.
fn avoided(request: &CreateRequest, zone: &str, capacity: CapacityType) -> bool {
    request.avoid.iter().any(|o| {
        o.instance_type == request.instance_type && o.zone == zone && o.capacity == capacity
    })
}

/// The zone with the most free spot capacity, if any is left.
fn spot_zone(
    request: &CreateRequest,
    ty: &SimType,
    config: &SimConfig,
    usage: &HashMap<String, (u32, usize)>,
) -> Option<(String, CapacityType)> {
    request
        .zones
        .iter()
        .filter(|z| !avoided(request, z, CapacityType::Spot))
        .map(|z| {
            let capacity = config
                .spot_capacity
                .get(&ty.name)
                .and_then(|zones| zones.get(z))
                .copied()
                .unwrap_or(ty.spot_capacity_per_zone);
            let (spot, group) = usage.get(z).copied().unwrap_or_default();
            (z, capacity.saturating_sub(spot), group)
        })
        .filter(|(_, free, _)| *free > 0)
        .max_by_key(|(_, free, group)| (*free, std::cmp::Reverse(*group)))
        .map(|(z, _, _)| (z.clone(), CapacityType::Spot))
}

fn notify_interruption(sim: &mut SimInstance, now: SystemTime, config: &SimConfig) {
    sim.instance.state_reason = Some(SPOT_INTERRUPTION.to_owned());
    sim.phase_ends_at = Some(now + config.scaled(config.interruption_notice));
}

/// Moves one instance through the phases whose timers have run out.
fn advance(sim: &mut SimInstance, now: SystemTime, config: &SimConfig) {
    loop {
        let i = &mut sim.instance;
        match i.state {
            InstanceState::Pending if sim.ready_at <= now && i.state_reason.is_none() => {
                i.state = InstanceState::Running;
            }
            InstanceState::Pending | InstanceState::Running
                if i.state_reason.is_some() && sim.phase_ends_at.is_some_and(|t| t <= now) =>
            {
                // The interruption notice ran out.
                let notice_end = sim.phase_ends_at.unwrap_or(now);
                i.state = InstanceState::ShuttingDown;
                sim.phase_ends_at = Some(notice_end + config.scaled(config.shutdown));
            }
            InstanceState::ShuttingDown if sim.phase_ends_at.is_some_and(|t| t <= now) => {
                let ended = sim.phase_ends_at.unwrap_or(now);
                i.state = InstanceState::Terminated;
                sim.phase_ends_at = Some(ended + config.scaled(TERMINATED_RETENTION));
            }
            _ => return,
        }
    }
}
