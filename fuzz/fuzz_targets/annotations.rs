//! Node-group annotations: `gpupool::config::GroupAnnotations::parse` on a
//! map built from the input, one `key=value` per line (the value may hold
//! `=`; a line without one is a key with an empty value).
#![no_main]

use gpupool::config::GroupAnnotations;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let raw: BTreeMap<String, String> = text
        .lines()
        .map(|line| {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let _ = GroupAnnotations::parse(&raw);
});
