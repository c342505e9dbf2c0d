//! Virtual time: the simulation runs on a tokio runtime whose clock is
//! paused, so every timer in the engine (the interruption operations'
//! waits, the boot timers of the simulated cloud) fires in order as
//! virtual time jumps forward, and a day takes as long as its events.

use gpupool_cloud::Clock;
use std::time::{Duration, SystemTime};

/// `SystemTime` read off tokio's (paused) clock: `start` plus the virtual
/// time elapsed since the run began.
#[derive(Debug, Clone, Copy)]
pub struct VirtualClock {
    start: SystemTime,
    origin: tokio::time::Instant,
}

impl VirtualClock {
    /// Call inside the runtime.
    pub fn new(start: SystemTime) -> Self {
        Self {
            start,
            origin: tokio::time::Instant::now(),
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.origin)
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> SystemTime {
        self.start + self.elapsed()
    }
}
