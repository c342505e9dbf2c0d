//! How the simulated cloud behaves: region, zones, time scale, spot capacity,
//! interruption rate, where its state is kept.

use crate::SimError;
use crate::catalog::{BootRange, SimType};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The `sim:` section of gpupool's config file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Set by the embedding program from its own `region` setting.
    #[serde(skip)]
    pub region: String,
    /// Zones of the region; gpupool fills in `<region>a`, `b` and `c` when empty.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Simulated time runs this many times faster for boots, interruption notices
    /// and shutdowns, and interruptions come this many times more often: 60 turns
    /// a 6-minute GPU boot into 6 seconds for a demo.
    pub time_scale: f64,
    /// Keep the fleet in this JSON file so a restart finds it again.
    pub state_file: Option<PathBuf>,
    /// Seed of the random draws (boot times, interruptions, ids); random if unset.
    pub seed: Option<u64>,
    /// Mean spot interruptions per running spot instance per hour.
    pub spot_interruptions_per_hour: f64,
    /// Per instance type and zone: how many spot instances fit at once
    /// (overrides the catalog's `spot_capacity_per_zone`).
    pub spot_capacity: BTreeMap<String, BTreeMap<String, u32>>,
    /// Per instance type: boot time range (overrides the catalog).
    pub boot: BTreeMap<String, BootRange>,
    /// From a spot interruption notice to the instance shutting down.
    #[serde(with = "humantime_serde")]
    pub interruption_notice: Duration,
    /// From shutting down to terminated.
    #[serde(with = "humantime_serde")]
    pub shutdown: Duration,
    /// Faults to inject into the cloud's answers (all off by default).
    pub faults: crate::Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            region: "sim-east-1".into(),
            zones: vec![
                "sim-east-1a".into(),
                "sim-east-1b".into(),
                "sim-east-1c".into(),
            ],
            time_scale: 1.0,
            state_file: None,
            seed: None,
            spot_interruptions_per_hour: 0.0,
            spot_capacity: BTreeMap::new(),
            boot: BTreeMap::new(),
            interruption_notice: Duration::from_secs(120),
            shutdown: Duration::from_secs(30),
            faults: crate::Faults::default(),
        }
    }
}

impl SimConfig {
    /// This config placed in `region`, with its default zones if none are listed.
    pub fn in_region(mut self, region: &str) -> Self {
        self.region = region.to_owned();
        if self.zones.is_empty() {
            self.zones = ["a", "b", "c"].map(|z| format!("{region}{z}")).to_vec();
        }
        self
    }

    /// Checks every field against the catalog; the error names the field.
    pub fn validate(&self, catalog: &[SimType]) -> Result<(), SimError> {
        let bad = |field: &str, reason: String| {
            Err(SimError::Config {
                field: field.to_owned(),
                reason,
            })
        };
        if self.region.is_empty() {
            return bad("sim.region", "must not be empty".into());
        }
        if self.zones.is_empty() {
            return bad("sim.zones", "must list at least one zone".into());
        }
        if let Some(zone) = self.zones.iter().find(|z| !z.starts_with(&self.region)) {
            return bad(
                "sim.zones",
                format!("zone {zone:?} is not in region {:?}", self.region),
            );
        }
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return bad(
                "sim.time_scale",
                format!("must be a positive number, got {}", self.time_scale),
            );
        }
        if !(self.spot_interruptions_per_hour.is_finite()
            && self.spot_interruptions_per_hour >= 0.0)
        {
            return bad(
                "sim.spot_interruptions_per_hour",
                format!(
                    "must be zero or more, got {}",
                    self.spot_interruptions_per_hour
                ),
            );
        }
        if let Err((field, reason)) = self.faults.validate() {
            return bad(&field, reason);
        }
        let known = |name: &str| catalog.iter().any(|t| t.name == name);
        for (ty, zones) in &self.spot_capacity {
            if !known(ty) {
                return bad(
                    &format!("sim.spot_capacity.{ty}"),
                    "no such instance type in the simulator's catalog".into(),
                );
            }
            if let Some(zone) = zones.keys().find(|z| !self.zones.contains(z)) {
                return bad(
                    &format!("sim.spot_capacity.{ty}.{zone}"),
                    format!("zone is not one of sim.zones {:?}", self.zones),
                );
            }
        }
        for (ty, range) in &self.boot {
            if !known(ty) {
                return bad(
                    &format!("sim.boot.{ty}"),
                    "no such instance type in the simulator's catalog".into(),
                );
            }
            if range.min > range.max {
                return bad(&format!("sim.boot.{ty}"), "min is above max".into());
            }
        }
        Ok(())
    }

    /// A simulated duration in real time.
    pub fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(self.time_scale)
    }
}
