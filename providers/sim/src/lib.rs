//! The simulated GPU cloud: gpupool's embedded default backend.
//!
//! GPU instance types with real shapes, boot times drawn per type, spot capacity
//! per type and zone that runs out, spot interruptions injected on demand or drawn
//! at an hourly rate, and an optional state file so a restart keeps the fleet.
//! Simulated time follows the injected [`Clock`]; `time_scale` compresses it.

pub mod catalog;
mod config;
mod faults;
mod fleet;
mod persist;

pub use catalog::{BootRange, SimType, builtin as builtin_catalog};
pub use config::SimConfig;
pub use faults::{FaultCounts, Faults};
pub use fleet::SPOT_INTERRUPTION;

use fleet::Fleet;
use gpupool_cloud::{
    CapacityType, Clock, Cloud, CloudError, CreateOutcome, CreateRequest, Instance, InstanceId,
    InstanceType, Price,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::{Arc, Mutex, MutexGuard};

/// Scheme of the simulator's provider IDs: `gpupool-sim:///<zone>/<instance id>`.
pub const PROVIDER_NAME: &str = "gpupool-sim";

/// Errors of the simulator itself (not of the cloud it pretends to be).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{field}: {reason}")]
    Config { field: String, reason: String },
    #[error("sim state file {path}: {reason}")]
    StateFile { path: String, reason: String },
    #[error("no instance {0} in the simulated fleet")]
    NoSuchInstance(InstanceId),
    #[error("instance {0} is on-demand: only spot instances get interrupted")]
    NotSpot(InstanceId),
    #[error("instance {0} is already shutting down or terminated")]
    NotRunning(InstanceId),
}

struct Inner {
    fleet: Fleet,
    rng: StdRng,
    /// Fault draws, apart from the fleet's, so that faults leave the
    /// fleet's own draws as they would be without them.
    fault_rng: StdRng,
    faults: FaultCounts,
}

/// The simulated cloud. Cheap to share behind an `Arc`.
pub struct SimCloud {
    config: SimConfig,
    catalog: Vec<SimType>,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SimCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCloud")
            .field("region", &self.config.region)
            .field("zones", &self.config.zones)
            .field("time_scale", &self.config.time_scale)
            .finish_non_exhaustive()
    }
}

impl SimCloud {
    /// A simulated cloud with the built-in catalog; loads the state file if the
    /// config names one that exists.
    pub fn new(config: SimConfig, clock: Arc<dyn Clock>) -> Result<Self, SimError> {
        Self::with_catalog(config, catalog::builtin(), clock)
    }

    /// A simulated cloud selling `catalog` instead of the built-in types
    /// (`gpupool simulate` stands a real cloud's types in this way).
    pub fn with_catalog(
        config: SimConfig,
        catalog: Vec<SimType>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SimError> {
        config.validate(&catalog)?;
        let fleet = match &config.state_file {
            Some(path) => persist::load(path)?.unwrap_or_default(),
            None => Fleet::default(),
        };
        let (rng, fault_rng) = match config.seed {
            Some(seed) => (
                StdRng::seed_from_u64(seed),
                StdRng::seed_from_u64(seed ^ 0xfa17_5eed),
            ),
            None => (StdRng::from_os_rng(), StdRng::from_os_rng()),
        };
        Ok(Self {
            config,
            catalog,
            clock,
            inner: Mutex::new(Inner {
                fleet,
                rng,
                fault_rng,
                faults: FaultCounts::default(),
            }),
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn catalog(&self) -> &[SimType] {
        &self.catalog
    }

    /// Sends a spot interruption notice to one instance now: after the notice it
    /// shuts down and terminates, and its spot capacity comes back.
    pub fn interrupt(&self, id: &InstanceId) -> Result<Instance, SimError> {
        self.with_fleet(|fleet, _, now, config| fleet.interrupt(id, now, config))
    }

    /// The faults injected so far.
    pub fn faults_injected(&self) -> FaultCounts {
        self.lock().faults
    }

    /// Draws from the fault stream with the configured faults, counting what
    /// is injected.
    fn with_faults<T>(&self, f: impl FnOnce(&Faults, &mut StdRng, &mut FaultCounts) -> T) -> T {
        let mut inner = self.lock();
        let Inner {
            fault_rng,
            faults: counts,
            ..
        } = &mut *inner;
        f(&self.config.faults, fault_rng, counts)
    }

    /// A call's injected latency and whether it is refused before it takes
    /// effect (throttled, or a server error).
    async fn enter(&self, call: &str) -> Result<(), CloudError> {
        if self.config.faults.is_off() {
            return Ok(());
        }
        let (delay, before) =
            self.with_faults(|faults, rng, counts| (faults.delay(rng), faults.before(rng, counts)));
        match before {
            faults::Before::Proceed => {}
            faults::Before::Throttle => {
                return Err(CloudError::throttled(
                    "RequestLimitExceeded",
                    format!("{call}: request limit exceeded (injected)"),
                ));
            }
            faults::Before::ServerError => {
                return Err(CloudError::throttled(
                    "InternalError",
                    format!("{call}: 503 service unavailable (injected)"),
                ));
            }
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// Whether a call that took effect loses its answer (the caller times out).
    fn answer_lost(&self, call: &str) -> Result<(), CloudError> {
        if self.with_faults(|faults, rng, counts| faults.loses_answer(rng, counts)) {
            return Err(CloudError::throttled(
                "RequestTimeout",
                format!("{call}: no answer within the deadline (injected; the call took effect)"),
            ));
        }
        Ok(())
    }

    /// Runs `f` on the fleet moved along to now, then saves it.
    fn with_fleet<T>(
        &self,
        f: impl FnOnce(&mut Fleet, &mut StdRng, std::time::SystemTime, &SimConfig) -> T,
    ) -> T {
        let now = self.clock.now();
        let mut inner = self.lock();
        let Inner { fleet, rng, .. } = &mut *inner;
        fleet.tick(now, &self.config, rng);
        let out = f(fleet, rng, now, &self.config);
        if let Some(path) = &self.config.state_file {
            // Losing the sim's state file is not a reason to fail the cloud call;
            // the fleet in memory stays right and the next save tries again.
            if let Err(e) = persist::save(path, fleet) {
                tracing::warn!(error = %e, "could not save the simulated fleet");
            }
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl Cloud for SimCloud {
    fn provider_name(&self) -> &str {
        PROVIDER_NAME
    }

    fn region(&self) -> &str {
        &self.config.region
    }

    async fn zones(&self) -> Result<Vec<String>, CloudError> {
        Ok(self.config.zones.clone())
    }

    async fn list_instances(&self) -> Result<Vec<Instance>, CloudError> {
        self.enter("DescribeInstances").await?;
        let lag = self.config.faults.list_lag;
        let (listed, hidden) = self.with_fleet(|fleet, _, now, _| {
            let mut listed = fleet.list();
            let before = listed.len();
            if !lag.is_zero() {
                // Eventual consistency: what was launched just now is not
                // listed yet.
                listed.retain(|i| now.duration_since(i.launched_at).unwrap_or_default() >= lag);
            }
            let hidden = before - listed.len();
            (listed, hidden)
        });
        self.lock().faults.hidden_from_lists += hidden as u64;
        Ok(listed)
    }

    async fn create_instances(&self, request: &CreateRequest) -> Result<CreateOutcome, CloudError> {
        let ty = self
            .catalog
            .iter()
            .find(|t| t.name == request.instance_type)
            .ok_or_else(|| {
                CloudError::other(
                    "InvalidInstanceType",
                    format!("instance type {:?} does not exist", request.instance_type),
                )
            })?;
        if let Some(zone) = request
            .zones
            .iter()
            .find(|z| !self.config.zones.contains(z))
        {
            return Err(CloudError::other(
                "InvalidZone",
                format!("zone {zone:?} is not in region {}", self.config.region),
            ));
        }
        if request.zones.is_empty() {
            return Err(CloudError::other("InvalidZone", "no zone given"));
        }
        self.enter("CreateInstances").await?;
        let cap =
            self.with_faults(|faults, rng, counts| faults.partial(request.count, rng, counts));
        let outcome = self
            .with_fleet(|fleet, rng, now, config| fleet.create(request, ty, now, config, rng, cap));
        self.answer_lost("CreateInstances")?;
        Ok(outcome)
    }

    async fn delete_instances(&self, ids: &[InstanceId]) -> Result<(), CloudError> {
        self.enter("TerminateInstances").await?;
        self.with_fleet(|fleet, _, now, config| fleet.delete(ids, now, config));
        self.answer_lost("TerminateInstances")
    }

    async fn instance_types(&self) -> Result<Vec<InstanceType>, CloudError> {
        Ok(self.catalog.iter().map(SimType::instance_type).collect())
    }

    async fn prices(&self) -> Result<Vec<Price>, CloudError> {
        Ok(self
            .catalog
            .iter()
            .flat_map(|t| {
                [
                    (CapacityType::OnDemand, t.on_demand_usd_per_hour),
                    (CapacityType::Spot, t.spot_usd_per_hour),
                ]
                .map(|(capacity_type, usd_per_hour)| Price {
                    instance_type: t.name.clone(),
                    capacity_type,
                    zone: None,
                    usd_per_hour,
                })
            })
            .collect())
    }
}
