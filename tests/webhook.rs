//! The interruption webhook through `serve`: each cloud's notice format on
//! its route, SNS signatures (SignatureVersion 1 and 2, made with a test key:
//! tests/fixtures/sns/make.py), the shared secret (bearer, HMAC, `?token=`),
//! body and rate limits, duplicates, and notices matched to our instances.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const SECRET: &str = "a-test-secret-of-some-length";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:gpupool-interruptions";
const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";
const GROUP: &str = "
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    capacity_type: spot
";

struct Hook {
    h: Harness,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(per_second: u32) -> Hook {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let extra = format!(
        "webhook:\n  listen: 127.0.0.1:0\n  secret_file: {}\n  sns_topic_arns: [\"{TOPIC}\"]\n  body_limit_bytes: 4096\n  per_source_per_second: {per_second}\n",
        secret.display()
    );
    let h = Harness::start(&config_yaml(GROUP, &extra)).await;
    let (addr, hook) = h.server.webhook.clone().unwrap();
    let cert = std::fs::read("tests/fixtures/sns/cert.pem").unwrap();
    hook.certificates().insert(CERT_URL, &cert).unwrap();
    Hook {
        h,
        url: format!("http://{addr}"),
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Hook {
    async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<Vec<u8>>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .body(body.into());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn bearer(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post(
            path,
            &[("authorization", format!("Bearer {SECRET}"))],
            body.to_string(),
        )
        .await
    }

    async fn metric(&self, line: &str) -> bool {
        let (_, metrics) = http(self.h.server.http_addr, "GET", "/metrics").await;
        metrics.lines().any(|l| l == line)
    }
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("tests/fixtures/sns/{name}")).unwrap())
        .unwrap()
}

#[tokio::test]
async fn sns_messages_are_taken_only_when_signed_by_sns_for_an_allowed_topic() {
    let w = start(1000).await;
    let sns = "/notices/aws/sns";
    let v1 = fixture("notification-v1.json");
    let v2 = fixture("notification-v2.json");

    // SignatureVersion 1 (SHA1withRSA): accepted.
    let (status, body) = w.post(sns, &[], v1.to_string()).await;
    assert_eq!(
        (status, &body),
        (202, &json!({"accepted": 1, "duplicates": 0}))
    );
    // SignatureVersion 2 (SHA256withRSA), the same event by another message:
    // verified, and a duplicate of the first.
    let (status, body) = w.post(sns, &[], v2.to_string()).await;
    assert_eq!(
        (status, &body),
        (202, &json!({"accepted": 0, "duplicates": 1}))
    );
    // SNS redelivering a message: answered, nothing more.
    let (status, body) = w.post(sns, &[], v1.to_string()).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"accepted": 0, "duplicates": 1}))
    );

    // Tampered: another instance in the Message.
    let mut tampered = v2.clone();
    tampered["Message"] = json!(
        v2["Message"]
            .as_str()
            .unwrap()
            .replace("i-0fixture0000000001", "i-0attacker000000001")
    );
    let (status, body) = w.post(sns, &[], tampered.to_string()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "Signature does not verify");
    // A certificate from anywhere but SNS over https is never fetched.
    for url in [
        "https://evil.example.com/SimpleNotificationService.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
    ] {
        let mut foreign = v2.clone();
        foreign["SigningCertURL"] = json!(url);
        let (status, body) = w.post(sns, &[], foreign.to_string()).await;
        assert_eq!(status, 403, "{url}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("is not https on an SNS host"),
            "{body}"
        );
    }
    // Another topic, an unknown signature version, raw delivery, not JSON.
    let mut other = v2.clone();
    other["TopicArn"] = json!("arn:aws:sns:us-east-1:123456789012:other");
    let (status, body) = w.post(sns, &[], other.to_string()).await;
    assert_eq!(status, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not in webhook.sns_topic_arns")
    );
    let mut v3 = v2.clone();
    v3["SignatureVersion"] = json!("3");
    assert_eq!(w.post(sns, &[], v3.to_string()).await.0, 403);
    let raw = json!({"version": "0"});
    let (status, body) = w
        .post(
            sns,
            &[("x-amz-sns-rawdelivery", "true".into())],
            raw.to_string(),
        )
        .await;
    assert_eq!(status, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("raw message delivery")
    );
    assert_eq!(
        w.post(sns, &[], raw.to_string()).await.0,
        403,
        "raw body without the header"
    );
    assert_eq!(w.post(sns, &[], "{not json").await.0, 400);

    // A subscription is confirmed only for an allowed topic.
    let confirm = fixture("confirmation.json");
    let (status, body) = w.post(sns, &[], confirm.to_string()).await;
    assert_eq!((status, &body), (200, &json!({"confirming": TOPIC})));
    let mut foreign_topic = confirm.clone();
    foreign_topic["TopicArn"] = json!("arn:aws:sns:us-east-1:999999999999:theirs");
    assert_eq!(w.post(sns, &[], foreign_topic.to_string()).await.0, 403);

    // A valid message replayed an hour later is refused.
    w.h.clock.advance(Duration::from_secs(3601));
    let mut late = v1.clone();
    late["MessageId"] = json!("msg-late");
    assert_eq!(w.post(sns, &[], late.to_string()).await.0, 403);

    // The one accepted notice names an instance that is not ours.
    eventually("the notice is matched", async || {
        w.metric("gpupool_interruption_notices_total{source=\"aws\",kind=\"interruption\",outcome=\"not_ours\"} 1").await
    })
    .await;
    assert!(w.metric("gpupool_interruption_notices_total{source=\"aws\",kind=\"interruption\",outcome=\"accepted\"} 1").await);
    assert!(w.metric("gpupool_interruption_notices_total{source=\"aws\",kind=\"interruption\",outcome=\"duplicate\"} 1").await);
    w.h.stop().await;
}

fn spot_warning(instance: &str) -> Value {
    json!({
        "version": "0", "id": "e1", "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2", "account": "123456789012", "time": "2027-01-15T08:00:00Z",
        "region": "us-east-1", "resources": [format!("arn:aws:ec2:us-east-1a:instance/{instance}")],
        "detail": {"instance-id": instance, "instance-action": "terminate"}
    })
}

#[tokio::test]
async fn eventbridge_needs_the_secret_and_its_notice_finds_our_instance() {
    let mut w = start(1000).await;
    w.h.increase("l4", 1).await.unwrap();
    w.h.settle().await;
    w.h.refresh().await;
    let provider_id = w.h.nodes("l4").await[0].id.clone();
    let instance = provider_id.rsplit('/').next().unwrap().to_owned();
    let route = "/notices/aws/eventbridge";
    let body = spot_warning(&instance);

    assert_eq!(w.post(route, &[], body.to_string()).await.0, 401);
    let wrong = [("authorization", "Bearer not-the-secret".to_owned())];
    assert_eq!(w.post(route, &wrong, body.to_string()).await.0, 401);
    let (status, answer) = w.bearer(route, &body).await;
    assert_eq!(
        (status, &answer),
        (202, &json!({"accepted": 1, "duplicates": 0}))
    );
    eventually("the notice is matched to the l4 instance", async || {
        w.metric("gpupool_interruption_notices_total{source=\"aws\",kind=\"interruption\",outcome=\"ours\"} 1").await
    })
    .await;

    // HMAC of the body instead of the token; a signature over another body fails.
    let secret = gpupool::webhook::auth::Secret::new(SECRET).unwrap();
    let mut rebalance = body.clone();
    rebalance["detail-type"] = json!("EC2 Instance Rebalance Recommendation");
    let text = rebalance.to_string();
    let signed = [("x-gpupool-signature", secret.sign(text.as_bytes()))];
    assert_eq!(w.post(route, &signed, text.clone()).await.0, 202);
    let forged = [("x-gpupool-signature", secret.sign(b"something else"))];
    assert_eq!(w.post(route, &forged, text).await.0, 401);

    // Malformed: the field and the reason; oversized: 413.
    let mut broken = body.clone();
    broken["detail"] = json!({});
    let (status, answer) = w.bearer(route, &broken).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "detail.instance-id: missing or not a string"
    );
    let (status, answer) = w.bearer(route, &json!({"id": "x"})).await;
    assert_eq!(status, 400, "{answer}");
    let big = json!({"padding": "x".repeat(5000)});
    assert_eq!(w.bearer(route, &big).await.0, 413);
    // An event about something else is answered and ignored.
    let mut other = body.clone();
    other["detail-type"] = json!("EC2 AMI State Change");
    let (status, answer) = w.bearer(route, &other).await;
    assert_eq!(
        (status, &answer),
        (202, &json!({"accepted": 0, "duplicates": 0}))
    );
    w.h.stop().await;
}

#[tokio::test]
async fn azure_gcp_and_generic_formats_are_read_on_their_routes() {
    let w = start(1000).await;
    // Azure Scheduled Events from a node agent: Preempt taken, Freeze not.
    let doc = json!({"DocumentIncarnation": 2, "Events": [
        {"EventId": "A1", "EventStatus": "Scheduled", "EventType": "Preempt",
         "ResourceType": "VirtualMachine", "Resources": ["gpu-vm-1"],
         "NotBefore": "Fri, 15 Jan 2027 08:00:30 GMT", "EventSource": "Platform", "DurationInSeconds": -1},
        {"EventId": "A2", "EventStatus": "Scheduled", "EventType": "Freeze",
         "ResourceType": "VirtualMachine", "Resources": ["gpu-vm-2"], "NotBefore": ""}
    ]});
    let (status, answer) = w.bearer("/notices/azure/scheduled-events", &doc).await;
    assert_eq!(
        (status, &answer),
        (202, &json!({"accepted": 1, "duplicates": 0}))
    );
    let bad = json!({"Events": [{"EventId": "A3", "EventType": "Preempt", "Resources": [], "NotBefore": "soon"}]});
    let (status, answer) = w.bearer("/notices/azure/scheduled-events", &bad).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("Events[0].NotBefore: \"soon\""),
        "{answer}"
    );

    // Event Grid: the validation handshake, with the secret in the URL.
    let handshake = json!([{"id": "v1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "subject": "", "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
        "eventTime": "2027-01-15T08:00:00Z", "dataVersion": "1"}]);
    let (status, answer) = w
        .post(
            &format!("/notices/azure/eventgrid?token={SECRET}"),
            &[],
            handshake.to_string(),
        )
        .await;
    assert_eq!(
        (status, &answer),
        (
            200,
            &json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
        )
    );
    assert_eq!(
        w.post(
            "/notices/azure/eventgrid?token=wrong",
            &[],
            handshake.to_string()
        )
        .await
        .0,
        401
    );

    // GCP: a preemption audit-log entry through Pub/Sub push.
    use base64::Engine as _;
    let entry = json!({"protoPayload": {"methodName": "compute.instances.preempted",
        "resourceName": "projects/acme/zones/us-central1-a/instances/gpu-1"},
        "resource": {"type": "gce_instance"}, "timestamp": "2027-01-15T08:00:00Z"});
    let push = json!({"message": {"data": base64::engine::general_purpose::STANDARD.encode(entry.to_string()),
        "messageId": "p1", "publishTime": "2027-01-15T08:00:01Z"},
        "subscription": "projects/acme/subscriptions/gpupool"});
    let (status, answer) = w
        .post(
            &format!("/notices/gcp/pubsub?token={SECRET}"),
            &[],
            push.to_string(),
        )
        .await;
    assert_eq!(
        (status, &answer),
        (202, &json!({"accepted": 1, "duplicates": 0}))
    );
    let garbled = json!({"message": {"data": "%%%", "messageId": "p2"}});
    let (status, answer) = w.bearer("/notices/gcp/pubsub", &garbled).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("message.data: not base64")
    );

    // Generic: exactly one way of naming the instance.
    let (status, _) = w
        .bearer(
            "/notices/generic",
            &json!({"node": "gpu-node-7", "kind": "interruption"}),
        )
        .await;
    assert_eq!(status, 202);
    let (status, answer) = w
        .bearer("/notices/generic", &json!({"node": "a", "instance": "b"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "provider_id: give exactly one of provider_id, instance and node"
    );
    let (status, answer) = w
        .bearer("/notices/generic", &json!({"node": "a", "kind": "soon"}))
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("kind: \"soon\" is not")
    );
    w.h.stop().await;
}

#[tokio::test]
async fn each_source_is_rate_limited() {
    let w = start(1).await;
    let body = json!({"node": "gpu-node-1"});
    assert_eq!(w.bearer("/notices/generic", &body).await.0, 202);
    let (status, _) = w
        .bearer("/notices/generic", &json!({"node": "gpu-node-2"}))
        .await;
    assert_eq!(
        status, 429,
        "a second request in the same second from the same source"
    );
    // SNS retries only 5xx: past the limit it is told 503, so it redelivers.
    let (status, _) = w
        .post(
            "/notices/aws/sns",
            &[],
            fixture("notification-v2.json").to_string(),
        )
        .await;
    assert_eq!(status, 503);
    // Refusals show on gpupool's side.
    assert!(
        w.metric("gpupool_webhook_refusals_total{route=\"/notices/generic\",status=\"429\"} 1")
            .await
    );
    assert!(
        w.metric("gpupool_webhook_refusals_total{route=\"/notices/aws/sns\",status=\"503\"} 1")
            .await
    );
    w.h.stop().await;
}
