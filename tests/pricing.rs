//! Prices over the wire: the per-group price cap when buying, cost metrics,
//! and live price refreshes (prorated across a change; a failed refresh keeps
//! the last good prices).

mod common;

use common::*;
use gpupool::proto::*;
use gpupool::server::{self, Backend};
use gpupool_cloud::{
    Cloud, CloudError, CreateOutcome, CreateRequest, Instance, InstanceId, InstanceType,
    ManualClock, Price,
};
use gpupool_sim::SimCloud;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// The gauge's value in a Prometheus text exposition.
fn gauge(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
        .parse()
        .unwrap()
}

// gpu-1x-l4: on-demand $0.98/h, spot $0.39/h.
const CAPPED: &str = "
  - id: l4-capped
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    annotations: { gpupool.dev/max-hourly-price: \"0.50\" }
  - id: l4-fallback
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    capacity_type: spot-then-on-demand
    annotations: { gpupool.dev/max-hourly-price: \"0.50\" }
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
";

#[tokio::test]
async fn a_group_never_buys_above_its_price_cap_and_costs_are_exported() {
    let mut h = Harness::start(&config_yaml(CAPPED, "")).await;
    for g in ["l4-capped", "l4-fallback", "l4"] {
        h.increase(g, 2).await.unwrap();
    }
    h.settle().await;
    h.refresh().await;

    // On-demand above the cap: refused as out of resources, so CA backs off
    // to another group, and the cloud was never asked.
    let capped = h.nodes("l4-capped").await;
    assert_eq!(capped.len(), 2);
    for i in &capped {
        let e = error_of(i).expect("a failed creation");
        assert_eq!(
            e.instance_error_class,
            gpupool::grpc::OUT_OF_RESOURCES_CLASS
        );
        assert_eq!(e.error_code, "PriceCapExceeded");
        assert_eq!(
            e.error_message,
            "on-demand price $0.9800/h of gpu-1x-l4 is above the group's gpupool.dev/max-hourly-price $0.5000/h"
        );
    }
    // Spot-then-on-demand under a cap between the two buys spot only.
    let spot: Vec<_> = h
        .sim
        .list_instances()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.group.as_str() == "l4-fallback")
        .collect();
    assert_eq!(spot.len(), 2);
    assert!(
        spot.iter()
            .all(|i| i.capacity_type == gpupool_cloud::CapacityType::Spot)
    );

    let (_, metrics) = http(h.server.http_addr, "GET", "/metrics").await;
    let cost = |g: &str| {
        gauge(
            &metrics,
            &format!("gpupool_node_group_hourly_cost_usd{{group=\"{g}\"}}"),
        )
    };
    assert!(close(cost("l4-capped"), 0.0));
    assert!(close(cost("l4-fallback"), 2.0 * 0.39));
    assert!(close(cost("l4"), 2.0 * 0.98));
    assert!(close(
        gauge(&metrics, "gpupool_hourly_cost_usd"),
        2.0 * 0.39 + 2.0 * 0.98
    ));
    h.stop().await;
}

/// The simulated cloud whose price list can be scaled, or made to fail.
#[derive(Debug)]
struct Repriced {
    sim: Arc<SimCloud>,
    /// `None`: the pricing API is throttling.
    factor: Mutex<Option<f64>>,
}

#[async_trait::async_trait]
impl Cloud for Repriced {
    fn provider_name(&self) -> &str {
        self.sim.provider_name()
    }
    fn region(&self) -> &str {
        self.sim.region()
    }
    async fn zones(&self) -> Result<Vec<String>, CloudError> {
        self.sim.zones().await
    }
    async fn list_instances(&self) -> Result<Vec<Instance>, CloudError> {
        self.sim.list_instances().await
    }
    async fn create_instances(&self, r: &CreateRequest) -> Result<CreateOutcome, CloudError> {
        self.sim.create_instances(r).await
    }
    async fn delete_instances(&self, ids: &[InstanceId]) -> Result<(), CloudError> {
        self.sim.delete_instances(ids).await
    }
    async fn instance_types(&self) -> Result<Vec<InstanceType>, CloudError> {
        self.sim.instance_types().await
    }
    async fn prices(&self) -> Result<Vec<Price>, CloudError> {
        let factor = *self.factor.lock().unwrap();
        let Some(factor) = factor else {
            return Err(CloudError::throttled(
                "ThrottlingException",
                "Rate exceeded",
            ));
        };
        let mut prices = self.sim.prices().await?;
        for p in &mut prices {
            p.usd_per_hour *= factor;
        }
        Ok(prices)
    }
}

#[tokio::test]
async fn live_prices_are_prorated_across_a_change_and_a_failed_refresh_keeps_the_last_good() {
    let yaml = config_yaml(
        "  - id: l4\n    min_size: 0\n    max_size: 10\n    instance_type: gpu-1x-l4\n",
        "",
    );
    let config = gpupool::config::Config::from_yaml(&yaml).unwrap();
    let clock = ManualClock::new(t0());
    let sim = Arc::new(SimCloud::new(config.sim.clone(), Arc::new(clock.clone())).unwrap());
    let cloud = Arc::new(Repriced {
        sim,
        factor: Mutex::new(Some(1.0)),
    });
    let backend = Backend {
        cloud: cloud.clone(),
        clock: Arc::new(clock.clone()),
        extra_routes: None,
    };
    let server = server::start(&config, backend).await.unwrap();
    let mut client = connect(server.grpc_addr).await;
    let two_hours = || PricingNodePriceRequest {
        node: Some(ExternalGrpcNode {
            name: "template-node-for-l4-x7k2q".into(),
            ..Default::default()
        }),
        start_timestamp: Some(t0().into()),
        end_timestamp: Some((t0() + Duration::from_secs(7200)).into()),
        ..Default::default()
    };
    let price = client
        .pricing_node_price(two_hours())
        .await
        .unwrap()
        .into_inner()
        .price;
    assert!(close(price, 2.0 * 0.98), "{price}");

    // An hour in, the price doubles: the first hour at the old price, the
    // second at the new one.
    clock.advance(Duration::from_secs(3600));
    *cloud.factor.lock().unwrap() = Some(2.0);
    server.fleet.refresh_prices().await.unwrap();
    let price = client
        .pricing_node_price(two_hours())
        .await
        .unwrap()
        .into_inner()
        .price;
    assert!(close(price, 0.98 + 2.0 * 0.98), "{price}");

    // The pricing API throttles: the last good prices stay.
    clock.advance(Duration::from_secs(3600));
    *cloud.factor.lock().unwrap() = None;
    let err = server.fleet.refresh_prices().await.unwrap_err();
    assert_eq!(err.code, "ThrottlingException");
    let price = client
        .pricing_node_price(two_hours())
        .await
        .unwrap()
        .into_inner()
        .price;
    assert!(close(price, 0.98 + 2.0 * 0.98), "{price}");

    let (_, metrics) = http(server.http_addr, "GET", "/metrics").await;
    assert!(
        metrics.contains("gpupool_price_refreshes_total{operation=\"prices\",outcome=\"error\"} 1")
    );
    assert!(
        metrics.contains("gpupool_price_refreshes_total{operation=\"prices\",outcome=\"ok\"} 2")
    );
    let as_of = gauge(&metrics, "gpupool_prices_timestamp_seconds");
    let refreshed = (t0() + Duration::from_secs(3600))
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(close(as_of, refreshed), "the last good refresh: {as_of}");
    server.shutdown().await;
}

#[test]
fn gpupool_prices_prints_the_table_per_instance_and_per_gpu() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gpupool"))
            .arg("prices")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--cloud", "aws", "--region", "us-west-2", "--gpu", "h100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "CLOUD",
            "REGION",
            "INSTANCE-TYPE",
            "GPUS",
            "GPU",
            "$/H",
            "SPOT",
            "$/H",
            "$/GPU-H",
            "SPOT",
            "$/GPU-H",
            "SPOT",
            "SAVES"
        ]
    );
    let table = gpupool::pricing::table::table(gpupool::config::CloudKind::Aws).unwrap();
    let p5 = table
        .prices
        .iter()
        .find(|r| r.instance_type == "p5.48xlarge" && r.region == "us-west-2")
        .unwrap();
    let row: Vec<_> = lines
        .find(|l| l.contains("p5.48xlarge"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..5], ["aws", "us-west-2", "p5.48xlarge", "8", "H100"]);
    assert_eq!(row[5], format!("{:.3}", p5.on_demand));
    assert_eq!(row[7], format!("{:.3}", p5.on_demand / 8.0));
    assert!(
        text.lines()
            .all(|l| !l.starts_with("gcp") && !l.starts_with("azure"))
    );
    assert!(text.contains("# aws: figures as of "), "{text}");
    assert!(text.contains("https://github.com/skypilot-org/skypilot-catalog/blob/"));

    let out = run(&["--gpu", "Z9000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no prices match the filters"));
}

/// Serves `app` on loopback as the cloud's pricing API and runs `gpupool
/// prices --live --cloud <cloud> --region <region>` against it; its stdout.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
async fn prices_live(cloud: &str, region: &str, app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let args = ["prices", "--live", "--cloud", cloud, "--region", region].map(String::from);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gpupool"))
            .args(args)
            .args(["--endpoint", &endpoint])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `gpupool prices --live` asks the cloud's pricing API: here Azure's Retail
/// Prices API, answered by a local server with a recorded page.
#[cfg(feature = "azure")]
#[tokio::test]
async fn gpupool_prices_live_asks_the_pricing_api() {
    let app = axum::Router::new().route(
        "/api/retail/prices",
        axum::routing::get(|| async {
            (
                [("content-type", "application/json")],
                include_str!("../providers/azure/tests/recorded/retail-prices-page2.json"),
            )
        }),
    );
    let text = prices_live("azure", "eastus", app).await;
    let row: Vec<_> = text
        .lines()
        .find(|l| l.contains("Standard_NC24ads_A100_v4"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            "azure",
            "eastus",
            "Standard_NC24ads_A100_v4",
            "1",
            "A100",
            "3.673",
            "0.735",
            "3.673",
            "0.735",
            "80%"
        ]
    );
    assert!(
        text.contains("# azure: live from the Azure Retail Prices API (http://"),
        "{text}"
    );
}

#[cfg(not(feature = "azure"))]
#[test]
fn gpupool_prices_live_names_the_missing_feature() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpupool"))
        .args(["prices", "--live", "--cloud", "azure", "--region", "eastus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("build gpupool with `--features azure`"));
}

/// `gpupool prices --live --cloud aws` asks the Price List API for on-demand
/// and EC2 for spot, both answered by a local server with recorded answers.
#[cfg(feature = "aws")]
#[tokio::test]
async fn gpupool_prices_live_asks_the_aws_price_list_and_spot_history() {
    use axum::http::HeaderMap;
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(|headers: HeaderMap| async move {
            if headers.contains_key("x-amz-target") {
                // Every query gets the p4d.24xlarge product: the client keeps
                // it only for the type it asked about.
                let products: Vec<serde_json::Value> = serde_json::from_str(include_str!(
                    "../providers/aws/tests/recorded/price-list-products.json"
                ))
                .unwrap();
                let page = serde_json::json!({
                    "FormatVersion": "aws_v1",
                    "PriceList": [products[0].to_string()],
                });
                (
                    [("content-type", "application/x-amz-json-1.1")],
                    page.to_string(),
                )
            } else {
                (
                    [("content-type", "text/xml;charset=UTF-8")],
                    include_str!("../providers/aws/tests/recorded/spot-price-history-page1.xml")
                        .replace("{next}", ""),
                )
            }
        }),
    );
    let text = prices_live("aws", "us-east-1", app).await;
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("aws"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    // Spot: the dearest of us-east-1a (9.1273) and us-east-1b (13.9933).
    assert_eq!(
        rows,
        [[
            "aws",
            "us-east-1",
            "p4d.24xlarge",
            "8",
            "A100",
            "21.960",
            "13.993",
            "2.745",
            "1.749",
            "36%"
        ]]
    );
    assert!(
        text.contains(
            "# aws: live from the AWS Price List API and EC2 spot price history (http://"
        ),
        "{text}"
    );
}

/// `gpupool prices --live --cloud gcp` sums the Cloud Billing Catalog's
/// SKUs per machine type, answered by a local server with recorded pages.
#[cfg(feature = "gcp")]
#[tokio::test]
async fn gpupool_prices_live_sums_the_gcp_billing_catalog() {
    let app = axum::Router::new().route(
        "/v1/services/6F81-5844-456A/skus",
        axum::routing::get(|| async {
            // Page 2 alone: A3 and G2 parts.
            (
                [("content-type", "application/json")],
                include_str!("../providers/gcp/tests/recorded/skus-page2.json"),
            )
        }),
    );
    let text = prices_live("gcp", "us-central1", app).await;
    let row = |ty: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().nth(2) == Some(ty))
            .unwrap_or_else(|| panic!("no {ty} in\n{text}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    // g2-standard-4: 4 × 0.024988 + 16 × 0.002927 + 0.56 = 0.706784 on
    // demand; 4 × 0.009995 + 16 × 0.001171 + 0.224 = 0.282716 spot.
    assert_eq!(
        row("g2-standard-4"),
        [
            "gcp",
            "us-central1",
            "g2-standard-4",
            "1",
            "L4",
            "0.707",
            "0.283",
            "0.707",
            "0.283",
            "60%"
        ]
    );
    // a3-highgpu-8g has no Local SSD SKU in this page: no live price.
    assert!(!text.contains("a3-highgpu-8g"), "{text}");
    // No A2 SKUs in this page: no A2 rows.
    assert!(!text.contains("a2-"), "{text}");
    assert!(
        text.contains("# gcp: live from the Cloud Billing Catalog (http://"),
        "{text}"
    );
}
