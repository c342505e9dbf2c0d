//! `POST /notices/aws/sns` bodies: the SNS envelope
//! (`gpupool::webhook::sns::Envelope::parse`), its documented string to sign,
//! and the SNS-host check the signing certificate and subscribe URLs go
//! through (`is_sns_url`), on the envelope's URLs and on the raw bytes.
//! A notification's `Message` then goes to the EventBridge parser, as the
//! webhook does.
#![no_main]

use gpupool::webhook::{aws, sns};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(s) = std::str::from_utf8(body) {
        let _ = sns::is_sns_url(s);
    }
    let Ok(envelope) = sns::Envelope::parse(body) else {
        return;
    };
    let _ = envelope.string_to_sign();
    let _ = sns::is_sns_url(&envelope.signing_cert_url);
    if let Some(url) = &envelope.subscribe_url {
        let _ = sns::is_sns_url(url);
    }
    if envelope.kind == "Notification" {
        let _ = aws::parse(envelope.message.as_bytes());
    }
});
