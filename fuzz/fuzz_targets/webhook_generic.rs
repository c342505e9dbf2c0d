//! `POST /notices/generic` bodies: `gpupool::webhook::generic::parse`, for
//! every `Source` the notice may be labelled with.
#![no_main]

use gpupool::webhook::{Source, generic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    for source in [Source::Aws, Source::Gcp, Source::Azure, Source::Generic] {
        if let Ok(notices) = generic::parse(body, source) {
            assert!(notices.iter().all(|n| n.source == source));
            for n in &notices {
                let _ = n.target.to_string();
            }
        }
    }
});
