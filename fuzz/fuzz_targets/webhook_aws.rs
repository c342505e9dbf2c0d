//! `POST /notices/aws/eventbridge` bodies (and the `Message` of an SNS
//! notification): `gpupool::webhook::aws::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(notices) = gpupool::webhook::aws::parse(body) {
        for n in &notices {
            // What the webhook does next with a notice.
            let _ = n.dedupe_key();
            let _ = n.target.to_string();
        }
    }
});
