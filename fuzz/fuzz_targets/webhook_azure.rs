//! `POST /notices/azure/scheduled-events` and `POST /notices/azure/eventgrid`
//! bodies: `gpupool::webhook::azure::{scheduled_events, event_grid}`, at a
//! fixed `now` so a run is reproducible.
#![no_main]

use gpupool::webhook::azure;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

fuzz_target!(|body: &[u8]| {
    // 2027-01-15T08:00:00Z, the tests' clock.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if let Ok(notices) = azure::scheduled_events(body, now) {
        for n in &notices {
            let _ = n.target.to_string();
        }
    }
    if let Ok(azure::Delivery::Notices(notices)) = azure::event_grid(body, now) {
        for n in &notices {
            let _ = n.target.to_string();
        }
    }
});
