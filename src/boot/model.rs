//! The boot-latency model of one group: the median, p90 and p99 of the time
//! from purchase to a schedulable GPU, over a sliding window of the group's
//! most recent boots (so it follows a change of image, driver or region),
//! seeded by the group's `gpupool.dev/boot-latency` prior until enough boots
//! are seen.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// Boots kept per group: the estimate is over the latest these many.
pub const WINDOW: usize = 256;
/// Boots seen before the observed quantiles replace the prior.
pub const MIN_SAMPLES: usize = 5;
/// The prior of a group without `gpupool.dev/boot-latency`: the slow end of
/// a GPU node's usual 3–8 minutes, so deadlines err long.
pub const DEFAULT_PRIOR: Duration = Duration::from_secs(8 * 60);
/// The prior's spread: p90 and p99 as multiples of the prior median.
const PRIOR_P90: f64 = 1.25;
const PRIOR_P99: f64 = 1.5;

/// Estimated time to GPU-allocatable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantiles {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    /// Boots the estimate rests on; 0 while it is the prior's.
    pub samples: usize,
}

impl Quantiles {
    pub fn from_prior(&self) -> bool {
        self.samples == 0
    }
}

/// One group's model.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyModel {
    prior: Duration,
    /// Seconds, oldest first.
    samples: VecDeque<f64>,
}

/// What is persisted: the samples alone (the prior comes from the config).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// Boot times in seconds, oldest first.
    pub seconds: Vec<f64>,
}

impl LatencyModel {
    pub fn new(prior: Option<Duration>) -> Self {
        Self {
            prior: prior.unwrap_or(DEFAULT_PRIOR),
            samples: VecDeque::new(),
        }
    }

    /// One more boot.
    pub fn observe(&mut self, took: Duration) {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(took.as_secs_f64());
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The current estimate: the prior's until [`MIN_SAMPLES`] boots, then
    /// the window's (nearest-rank quantiles).
    pub fn quantiles(&self) -> Quantiles {
        if self.samples.len() < MIN_SAMPLES {
            return Quantiles {
                p50: self.prior,
                p90: self.prior.mul_f64(PRIOR_P90),
                p99: self.prior.mul_f64(PRIOR_P99),
                samples: 0,
            };
        }
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = (q * sorted.len() as f64).ceil() as usize;
            Duration::from_secs_f64(sorted[i.clamp(1, sorted.len()) - 1])
        };
        Quantiles {
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            samples: sorted.len(),
        }
    }

    pub fn export(&self) -> Samples {
        Samples {
            seconds: self.samples.iter().copied().collect(),
        }
    }

    /// Takes persisted samples back (the latest [`WINDOW`]; nonsense values
    /// are dropped rather than trusted).
    pub fn restore(&mut self, saved: &Samples) {
        self.samples.clear();
        let valid = saved
            .seconds
            .iter()
            .copied()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 86_400.0 * 7.0);
        for s in valid {
            self.observe(Duration::from_secs_f64(s));
        }
    }
}

/// CA's `MaxNodeProvisionDuration` for a group: p99 with half again as
/// margin, rounded up to a whole minute, never below CA's own value.
pub fn provision_deadline(q: &Quantiles, ca_default: Duration) -> Duration {
    let with_margin = q.p99.mul_f64(1.5).as_secs().div_ceil(60) * 60;
    ca_default.max(Duration::from_secs(with_margin))
}
