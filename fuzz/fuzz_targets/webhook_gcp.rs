//! `POST /notices/gcp/pubsub` bodies: `gpupool::webhook::gcp::pubsub_push`
//! (the push envelope, the base64 `message.data`, the audit-log entry in it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(notices) = gpupool::webhook::gcp::pubsub_push(body) {
        for n in &notices {
            let _ = n.dedupe_key();
            let _ = n.target.to_string();
        }
    }
});
