//! Faults the simulated cloud injects, as real clouds show them: throttling,
//! server errors, answers lost after the call took effect (a timeout),
//! creates that make only part of a batch, listings that lag behind
//! launches (eventual consistency), and latency. Drawn from their own seeded
//! stream, so the fleet's draws (boot times, interruptions) are the same
//! with and without faults. `sim.faults` in the config; all off by default.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The `sim.faults` section: each rate is the share of calls it hits (0 to 1).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Calls refused as throttled before they take effect
    /// (`RequestLimitExceeded`).
    pub throttle: f64,
    /// Calls failing with a server error before they take effect
    /// (`InternalError`, HTTP 503).
    pub server_error: f64,
    /// Creates and deletes that take effect but whose answer is lost: the
    /// caller sees a timeout.
    pub lost_answer: f64,
    /// Creates of more than one instance that make only some of them; the
    /// rest fail as out of capacity.
    pub partial_create: f64,
    /// Instances launched this recently are missing from listings.
    #[serde(with = "humantime_serde")]
    pub list_lag: Duration,
    /// Each call takes up to this long (uniformly drawn).
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
}

/// How many faults were injected, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    pub throttled: u64,
    pub server_errors: u64,
    pub lost_answers: u64,
    pub partial_creates: u64,
    /// Instances left out of a listing because they were launched too
    /// recently (counted per listing).
    pub hidden_from_lists: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.throttled
            + self.server_errors
            + self.lost_answers
            + self.partial_creates
            + self.hidden_from_lists
    }
}

/// What a call draws before it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Before {
    Proceed,
    Throttle,
    ServerError,
}

impl Faults {
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (name, rate) in [
            ("throttle", self.throttle),
            ("server_error", self.server_error),
            ("lost_answer", self.lost_answer),
            ("partial_create", self.partial_create),
        ] {
            if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
                return Err((
                    format!("sim.faults.{name}"),
                    format!("must be a share of calls from 0 to 1, got {rate}"),
                ));
            }
        }
        if self.throttle + self.server_error > 1.0 {
            return Err((
                "sim.faults".into(),
                format!(
                    "throttle + server_error must be at most 1, got {}",
                    self.throttle + self.server_error
                ),
            ));
        }
        Ok(())
    }

    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a call is refused before it takes effect.
    pub fn before(&self, rng: &mut impl Rng, counts: &mut FaultCounts) -> Before {
        if self.throttle == 0.0 && self.server_error == 0.0 {
            return Before::Proceed;
        }
        let draw: f64 = rng.random();
        if draw < self.throttle {
            counts.throttled += 1;
            Before::Throttle
        } else if draw < self.throttle + self.server_error {
            counts.server_errors += 1;
            Before::ServerError
        } else {
            Before::Proceed
        }
    }

    /// Whether a call that took effect loses its answer.
    pub fn loses_answer(&self, rng: &mut impl Rng, counts: &mut FaultCounts) -> bool {
        let lost = self.lost_answer > 0.0 && rng.random_bool(self.lost_answer);
        counts.lost_answers += u64::from(lost);
        lost
    }

    /// How many of `count` a create makes: `count`, or fewer (at least 0).
    pub fn partial(&self, count: u32, rng: &mut impl Rng, counts: &mut FaultCounts) -> u32 {
        if count < 2 || self.partial_create == 0.0 || !rng.random_bool(self.partial_create) {
            return count;
        }
        counts.partial_creates += 1;
        rng.random_range(0..count)
    }

    /// A call's latency.
    pub fn delay(&self, rng: &mut impl Rng) -> Duration {
        if self.latency.is_zero() {
            return Duration::ZERO;
        }
        self.latency.mul_f64(rng.random::<f64>())
    }
}
