//! The config file: `gpupool::config::Config::from_yaml` on UTF-8 input and,
//! when it parses, the offline validation `gpupool check-config` runs
//! (`gpupool::backend::offline_specs`: the built-in catalog of the config's
//! cloud, or the simulated cloud's catalog and zones).
#![no_main]

use gpupool::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(config) = Config::from_yaml(text) else {
        return;
    };
    let _ = gpupool::backend::offline_specs(&config);
});
