//! The `interruption:` section: how interruption operations drain and
//! replace (see the README's "Interruption replacement").

use super::{ConfigError, MAX_DURATION};
use serde::Deserialize;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InterruptionConfig {
    /// The drain ends this long before the cloud's termination time, so the
    /// instance is let go (and its pods' last writes land) before the cloud
    /// pulls it.
    #[serde(with = "humantime_serde")]
    pub drain_margin: Duration,
    /// Longest drain when a group sets no `gpupool.dev/drain-timeout` (and
    /// for notices without a termination time).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How often an eviction refused by a PodDisruptionBudget is retried,
    /// and the node's pods looked at again.
    #[serde(with = "humantime_serde")]
    pub eviction_retry: Duration,
    /// How long an (instance type, zone, capacity type) offering is skipped
    /// after an interruption or a capacity error.
    #[serde(with = "humantime_serde")]
    pub offering_cooldown: Duration,
    /// How long a rebalance replacement (`gpupool.dev/rebalance: replace`)
    /// waits for the interruption before standing down.
    #[serde(with = "humantime_serde")]
    pub rebalance_standby: Duration,
    /// The taint put on a node being drained (effect NoSchedule).
    pub taint_key: String,
    /// Fault injection for tests: operations stop at this point as if the
    /// process had died. Not settable from a file.
    #[serde(skip)]
    pub crash_at: Option<crate::interrupt::FaultPoint>,
}

impl Default for InterruptionConfig {
    fn default() -> Self {
        Self {
            drain_margin: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(600),
            eviction_retry: Duration::from_secs(5),
            offering_cooldown: crate::fleet::offerings::DEFAULT_COOLDOWN,
            rebalance_standby: Duration::from_secs(1800),
            taint_key: "gpupool.dev/interrupted".to_owned(),
            crash_at: None,
        }
    }
}

impl InterruptionConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value, least) in [
            (
                "interruption.drain_margin",
                self.drain_margin,
                Duration::ZERO,
            ),
            (
                "interruption.drain_timeout",
                self.drain_timeout,
                Duration::from_secs(1),
            ),
            (
                "interruption.eviction_retry",
                self.eviction_retry,
                Duration::from_millis(10),
            ),
            (
                "interruption.offering_cooldown",
                self.offering_cooldown,
                Duration::ZERO,
            ),
            (
                "interruption.rebalance_standby",
                self.rebalance_standby,
                Duration::ZERO,
            ),
        ] {
            super::check_duration(field, value, least, Some(MAX_DURATION))?;
        }
        if !super::is_label_key(&self.taint_key) {
            return Err(ConfigError::invalid(
                "interruption.taint_key",
                format!("{:?} is not a valid Kubernetes taint key", self.taint_key),
            ));
        }
        Ok(())
    }
}
