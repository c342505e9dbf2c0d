//! The signing certificate an SNS message names (`SigningCertURL`), as
//! fetched: PEM bytes parsed for the RSA key its signatures verify with
//! (`gpupool::webhook::sns::Certificates::insert` runs the same parse the
//! fetch does). Fetched only from https on an SNS host, but parsed as
//! untrusted bytes all the same.
#![no_main]

use gpupool::webhook::sns::Certificates;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|pem: &[u8]| {
    static CERTIFICATES: OnceLock<Certificates> = OnceLock::new();
    let certificates =
        CERTIFICATES.get_or_init(|| Certificates::new().expect("an https client builds"));
    let _ = certificates.insert(
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-fuzz.pem",
        pem,
    );
});
