//! The Cloud Billing Catalog client against a local server that answers
//! `services.skus.list` with recorded pages in the API's shape (see
//! `recorded/README.md`): machine prices summed from core, RAM, GPU and
//! Local SSD SKUs, spot from the preemptible ones, region by
//! `serviceRegions`, paging, throttling and malformed answers.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use gpupool_cloud::{CapacityType, ErrorClass, Price, PriceSource};
use gpupool_gcp::{CatalogPrices, MachineShape};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Recorded,
    Throttled,
    Malformed,
    UnitChanged,
}

#[derive(Clone)]
struct Api {
    base: String,
    mode: Arc<Mutex<Mode>>,
    /// Every query string received.
    seen: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

async fn skus(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    api.seen.lock().unwrap().push(q.clone());
    let json = [("content-type", "application/json; charset=UTF-8")];
    let page1 = || include_str!("recorded/skus-page1.json").replace("{next}", "page2");
    match *api.mode.lock().unwrap() {
        Mode::Throttled => (
            StatusCode::TOO_MANY_REQUESTS,
            json,
            include_str!("recorded/error-429.json").to_owned(),
        ),
        Mode::Malformed => (StatusCode::OK, json, r#"{"skus":[{"skuId":"#.to_owned()),
        Mode::UnitChanged => (StatusCode::OK, json, page1().replace("GiBy.h", "GiBy.mo")),
        Mode::Recorded if q.get("pageToken").map(String::as_str) == Some("page2") => (
            StatusCode::OK,
            json,
            include_str!("recorded/skus-page2.json").to_owned(),
        ),
        Mode::Recorded => (StatusCode::OK, json, page1()),
    }
}

async fn serve() -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = Api {
        base: format!("http://{}", listener.local_addr().unwrap()),
        mode: Arc::new(Mutex::new(Mode::Recorded)),
        seen: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/v1/services/6F81-5844-456A/skus", axum::routing::get(skus))
        .with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    api
}

fn shapes() -> Vec<MachineShape> {
    [
        ("a2-highgpu-1g", 12, 85.0, 1),
        ("a2-ultragpu-1g", 12, 170.0, 1),
        ("a3-highgpu-8g", 208, 1872.0, 8),
        ("a3-megagpu-8g", 208, 1872.0, 8),
        ("g2-standard-4", 4, 16.0, 1),
    ]
    .into_iter()
    .map(|(name, cpus, gib, gpus)| MachineShape::bundled(name, cpus, gib, gpus).unwrap())
    .collect()
}

fn find(prices: &[Price], ty: &str, c: CapacityType) -> f64 {
    prices
        .iter()
        .find(|p| p.instance_type == ty && p.capacity_type == c)
        .unwrap_or_else(|| panic!("no {c} price for {ty} in {prices:?}"))
        .usd_per_hour
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn machine_prices_sum_core_ram_gpu_and_local_ssd_skus() {
    let api = serve().await;
    let client = CatalogPrices::connect(Some(&api.base), "us-central1", shapes())
        .await
        .unwrap();
    let prices = client.prices(&[]).await.unwrap();
    let od = CapacityType::OnDemand;
    let spot = CapacityType::Spot;

    // vCPUs × core + GiB × RAM + GPUs × GPU, on demand and spot.
    let a2 = find(&prices, "a2-highgpu-1g", od);
    assert!(
        close(a2, 12.0 * 0.031611 + 85.0 * 0.004237 + 2.933908),
        "{a2}"
    );
    let a2s = find(&prices, "a2-highgpu-1g", spot);
    assert!(
        close(a2s, 12.0 * 0.012644 + 85.0 * 0.001695 + 1.173563),
        "{a2s}"
    );
    // Bundled Local SSD is billed per GiB-month: /730 an hour.
    let ultra = find(&prices, "a2-ultragpu-1g", od);
    assert!(
        close(
            ultra,
            12.0 * 0.031611 + 170.0 * 0.004237 + 3.92808 + 375.0 * 0.08 / 730.0
        ),
        "{ultra}"
    );
    let a3 = find(&prices, "a3-highgpu-8g", od);
    assert!(
        close(
            a3,
            208.0 * 0.03222 + 1872.0 * 0.002817 + 8.0 * 11.06 + 6000.0 * 0.08 / 730.0
        ),
        "{a3}"
    );
    let a3s = find(&prices, "a3-highgpu-8g", spot);
    assert!(
        close(
            a3s,
            208.0 * 0.014499 + 1872.0 * 0.001268 + 8.0 * 2.25 + 6000.0 * 0.032 / 730.0
        ),
        "{a3s}"
    );
    // G2's SKUs name a city, not a continent: the region comes from
    // serviceRegions.
    let g2 = find(&prices, "g2-standard-4", od);
    assert!(close(g2, 4.0 * 0.024988 + 16.0 * 0.002927 + 0.56), "{g2}");
    let g2s = find(&prices, "g2-standard-4", spot);
    assert!(
        close(g2s, 4.0 * 0.009995 + 16.0 * 0.001171 + 0.224),
        "{g2s}"
    );
    // No "H100 80GB Mega" GPU SKU here: no price, rather than the host's
    // without its GPUs (the "H100 80GB Plus" SKU is another GPU).
    assert!(prices.iter().all(|p| p.instance_type != "a3-megagpu-8g"));
    assert_eq!(prices.len(), 8, "{prices:?}");
    assert!(prices.iter().all(|p| p.zone.is_none()));

    // Compute Engine's SKUs in USD, the largest pages, then the next page.
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["currencyCode"], "USD");
    assert_eq!(seen[0]["pageSize"], "5000");
    assert_eq!(seen[1]["pageToken"], "page2");

    // Asked for some types: only those.
    let some = client.prices(&["g2-standard-4".to_owned()]).await.unwrap();
    assert_eq!(some.len(), 2);
    assert!(some.iter().all(|p| p.instance_type == "g2-standard-4"));

    // Another region: the Americas SKUs do not apply, and a lone core SKU
    // prices nothing.
    let eu = CatalogPrices::connect(Some(&api.base), "europe-west4", shapes())
        .await
        .unwrap();
    assert_eq!(eu.prices(&[]).await.unwrap(), vec![]);
}

#[tokio::test]
async fn throttled_and_malformed_answers_are_errors_not_tables() {
    let api = serve().await;
    let client = CatalogPrices::connect(Some(&api.base), "us-central1", shapes())
        .await
        .unwrap();

    *api.mode.lock().unwrap() = Mode::Throttled;
    let e = client.prices(&[]).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Throttled, "RESOURCE_EXHAUSTED")
    );
    assert!(
        e.message.starts_with("services.skus.list: Quota exceeded"),
        "{e}"
    );

    *api.mode.lock().unwrap() = Mode::Malformed;
    let e = client.prices(&[]).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Other, "MalformedResponse")
    );

    // A part priced in another unit than expected: an error naming the SKU,
    // not a misprice.
    *api.mode.lock().unwrap() = Mode::UnitChanged;
    let e = client.prices(&[]).await.unwrap_err();
    assert_eq!(e.code, "MalformedResponse");
    assert!(
        e.message.contains(
            "(A2 Instance Ram running in Americas): priced per \"GiBy.mo\", expected per \"GiBy.h\""
        ),
        "{e}"
    );

    let gone = CatalogPrices::connect(Some("http://127.0.0.1:1"), "us-central1", shapes())
        .await
        .unwrap();
    assert_eq!(gone.prices(&[]).await.unwrap_err().code, "Unreachable");
}
