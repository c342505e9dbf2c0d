//! The Retail Prices client against a local server that answers with
//! recorded pages in the API's shape (see `recorded/README.md`): paging,
//! meter selection, throttling, errors and malformed answers.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use gpupool_azure::RetailPrices;
use gpupool_cloud::{CapacityType, ErrorClass, Price, PriceSource};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Pages,
    Throttled,
    BadRequest,
    Malformed,
}

#[derive(Clone)]
struct Api {
    base: String,
    mode: Arc<Mutex<Mode>>,
    /// Every query string received.
    seen: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

async fn prices(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    api.seen.lock().unwrap().push(q.clone());
    let json = [("content-type", "application/json")];
    match *api.mode.lock().unwrap() {
        Mode::Throttled => (
            StatusCode::TOO_MANY_REQUESTS,
            json,
            r#"{"Error":{"Code":"TooManyRequests","Message":"Rate limit is exceeded. Try again later."}}"#.to_owned(),
        ),
        Mode::BadRequest => (
            StatusCode::BAD_REQUEST,
            json,
            include_str!("recorded/error-400.json").to_owned(),
        ),
        Mode::Malformed => (StatusCode::OK, json, r#"{"Items":[{"retailPrice":"#.to_owned()),
        Mode::Pages if q.get("$filter").map(String::as_str) == Some("page2") => (
            StatusCode::OK,
            json,
            include_str!("recorded/retail-prices-page2.json").to_owned(),
        ),
        Mode::Pages => (
            StatusCode::OK,
            json,
            include_str!("recorded/retail-prices-page1.json").replace("{base}", &api.base),
        ),
    }
}

async fn serve() -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = Api {
        base: format!("http://{}", listener.local_addr().unwrap()),
        mode: Arc::new(Mutex::new(Mode::Pages)),
        seen: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/api/retail/prices", get(prices))
        .with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    api
}

fn find(prices: &[Price], ty: &str, c: CapacityType) -> f64 {
    prices
        .iter()
        .find(|p| p.instance_type == ty && p.capacity_type == c)
        .unwrap_or_else(|| panic!("no {c} price for {ty} in {prices:?}"))
        .usd_per_hour
}

#[tokio::test]
async fn linux_on_demand_and_spot_meters_across_pages() {
    let api = serve().await;
    let client = RetailPrices::new(&api.base, "eastus").unwrap();
    let skus = vec![
        "Standard_ND96isr_H100_v5".to_owned(),
        "Standard_NC24ads_A100_v4".to_owned(),
    ];
    let prices = client.prices(&skus).await.unwrap();
    // Windows, Low Priority and DevTest meters are not the price of a Linux node.
    assert_eq!(prices.len(), 4, "{prices:?}");
    assert_eq!(
        find(&prices, "Standard_ND96isr_H100_v5", CapacityType::OnDemand),
        98.32
    );
    assert_eq!(
        find(&prices, "Standard_ND96isr_H100_v5", CapacityType::Spot),
        39.328
    );
    assert_eq!(
        find(&prices, "Standard_NC24ads_A100_v4", CapacityType::OnDemand),
        3.673
    );
    assert_eq!(
        find(&prices, "Standard_NC24ads_A100_v4", CapacityType::Spot),
        0.7346
    );
    assert!(prices.iter().all(|p| p.zone.is_none()));

    // The first request asks for exactly these sizes in this region; the
    // second follows NextPageLink.
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["api-version"], "2023-01-01-preview");
    assert_eq!(
        seen[0]["$filter"],
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq 'eastus' \
         and (armSkuName eq 'Standard_ND96isr_H100_v5' or armSkuName eq 'Standard_NC24ads_A100_v4')"
    );
    assert_eq!(seen[1]["$skip"], "1000");
}

#[tokio::test]
async fn throttling_errors_and_malformed_answers_are_errors_not_tables() {
    let api = serve().await;
    let client = RetailPrices::new(&api.base, "eastus").unwrap();
    let skus = vec!["Standard_ND96isr_H100_v5".to_owned()];

    *api.mode.lock().unwrap() = Mode::Throttled;
    let e = client.prices(&skus).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Throttled, "TooManyRequests")
    );
    assert_eq!(
        e.message,
        "TooManyRequests: Rate limit is exceeded. Try again later."
    );

    *api.mode.lock().unwrap() = Mode::BadRequest;
    let e = client.prices(&skus).await.unwrap_err();
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Other, "HTTP400"));
    assert_eq!(e.message, "BadRequest: Invalid OData parameters supplied");

    *api.mode.lock().unwrap() = Mode::Malformed;
    let e = client.prices(&skus).await.unwrap_err();
    assert_eq!(e.code, "MalformedResponse");

    // Unreachable: an error naming it.
    let gone = RetailPrices::new("http://127.0.0.1:1", "eastus").unwrap();
    assert_eq!(
        gone.prices(&skus).await.unwrap_err().code,
        "RetailPricesUnreachable"
    );
}
