//! Size and concurrency limits on the ports: a gRPC request past
//! `server.grpc_max_message_bytes` is refused OUT_OF_RANGE before it is
//! decoded, and HTTP requests past `server.max_concurrent_requests` are
//! shed with 503 and Retry-After while the others are served.

mod common;

use common::*;
use gpupool::proto::*;
use tokio::io::AsyncWriteExt;

const GROUP: &str = "
  - id: l4
    min_size: 0
    max_size: 4
    instance_type: gpu-1x-l4
";

#[tokio::test]
async fn a_grpc_request_past_the_message_limit_is_refused_and_serving_goes_on() {
    let mut h = Harness::start(&config_yaml(GROUP, "  grpc_max_message_bytes: 65536\n")).await;
    let huge = ExternalGrpcNode {
        provider_id: "sim:///x".into(),
        name: "n".repeat(100_000),
        ..Default::default()
    };
    let refused = h
        .client
        .node_group_for_node(NodeGroupForNodeRequest { node: Some(huge) })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("65536"), "{refused:?}");
    // The same connection goes on serving.
    assert_eq!(h.target("l4").await, 0);
    h.stop().await;
}

/// Sends a request's head with a body it never finishes: the handler
/// waits for the body, holding its slot.
async fn hold(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: gpupool\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn http_requests_past_the_concurrency_limit_are_shed_with_503_and_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a-test-secret-of-some-length\n").unwrap();
    let extra = format!(
        "  max_concurrent_requests: 1\nwebhook:\n  listen: 127.0.0.1:0\n  secret_file: {}\n",
        secret.display()
    );
    let h = Harness::start(&config_yaml(GROUP, &extra)).await;
    let (addr, _) = h.server.webhook.clone().unwrap();

    // Another request while one holds the only slot is shed at once, not
    // queued behind it. (Each try holds anew: the second request may reach
    // the server first, and then it is the one served, with 401.)
    let mut shed = String::new();
    eventually(
        "a request is shed while another holds the only slot",
        async || {
            let held = hold(addr, "/notices/generic").await;
            let (code, body) = http(addr, "POST", "/notices/generic").await;
            drop(held);
            assert!(code == 503 || code == 401, "{code}: {body}");
            shed = body;
            code == 503
        },
    )
    .await;
    assert!(shed.contains("server.max_concurrent_requests"), "{shed}");

    // The slot comes back when the held request ends.
    eventually("the held request's slot is free", async || {
        http(addr, "POST", "/notices/generic").await.0 == 401
    })
    .await;
    h.stop().await;
}
