//! Secrets never reach the log: the webhook's shared secret, right or
//! wrong, stays out of every line `serve` logs at debug level (JSON, as
//! production runs it) while notices are refused and taken.

mod common;

use common::*;
use std::io::Write;
use std::sync::{Arc, Mutex};

const SECRET: &str = "s3cret-that-must-never-be-logged-4f1c";
const WRONG: &str = "a-wrong-guess-that-must-not-be-logged-9d2e";

/// Every log line, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_webhook_secret_is_never_logged() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .init();

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let extra = format!(
        "webhook:\n  listen: 127.0.0.1:0\n  secret_file: {}\n",
        secret.display()
    );
    let groups = "
  - id: l4
    min_size: 0
    max_size: 4
    instance_type: gpu-1x-l4
    capacity_type: spot
";
    let mut h = Harness::start(&config_yaml(groups, &extra)).await;
    h.increase("l4", 1).await.unwrap();
    h.settle().await;
    h.refresh().await;
    let (addr, _) = h.server.webhook.clone().unwrap();
    let client = reqwest::Client::new();
    let body = serde_json::json!({"instance": "i-none", "kind": "interruption"}).to_string();
    // Refused with the wrong secret, let in with the right one.
    for (token, refused) in [(WRONG, true), (SECRET, false)] {
        let status = client
            .post(format!("http://{addr}/notices/generic"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status == 401, refused, "{token}: {status}");
    }
    h.stop().await;

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(text.lines().count() > 10, "the log was captured: {text}");
    assert!(text.contains("webhook"), "the webhook logged: {text}");
    for secret in [SECRET, WRONG] {
        assert!(!text.contains(secret), "{secret} logged");
    }
}
