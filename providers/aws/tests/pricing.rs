//! The live EC2 price refresher against a local server that speaks the Price
//! List Query API (JSON protocol) and EC2's query protocol with recorded
//! answers (see `recorded/README.md`): filters, paging, per-zone spot,
//! throttling and malformed answers.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gpupool_aws::AwsPrices;
use gpupool_aws::sdk::Connection;
use gpupool_cloud::{CapacityType, ErrorClass, Price, PriceSource};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Recorded,
    PricingThrottled,
    PricingMalformed,
    SpotThrottled,
    SpotMalformed,
}

/// A query-protocol request's parameters, in order.
type Form = Vec<(String, String)>;

#[derive(Clone)]
struct Api {
    base: String,
    mode: Arc<Mutex<Mode>>,
    /// Every GetProducts body received.
    products_asked: Arc<Mutex<Vec<Value>>>,
    /// Every EC2 form received.
    ec2_asked: Arc<Mutex<Vec<Form>>>,
}

/// GetProducts over the recorded products: TERM_MATCH filters applied, one
/// product per page, `NextToken` the offset.
fn get_products(body: &Value) -> Value {
    let products: Vec<Value> =
        serde_json::from_str(include_str!("recorded/price-list-products.json")).unwrap();
    assert_eq!(body["ServiceCode"], "AmazonEC2");
    let filters = body["Filters"].as_array().cloned().unwrap_or_default();
    let matching: Vec<&Value> = products
        .iter()
        .filter(|p| {
            filters.iter().all(|f| {
                assert_eq!(f["Type"], "TERM_MATCH");
                let field = f["Field"].as_str().unwrap();
                p["product"]["attributes"][field] == f["Value"]
            })
        })
        .collect();
    let from: usize = body["NextToken"].as_str().map_or(0, |t| t.parse().unwrap());
    let page: Vec<String> = matching
        .iter()
        .skip(from)
        .take(1)
        .map(|p| p.to_string())
        .collect();
    let mut answer = json!({"FormatVersion": "aws_v1", "PriceList": page});
    if from + 1 < matching.len() {
        answer["NextToken"] = json!((from + 1).to_string());
    }
    answer
}

async fn endpoint(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let mode = *api.mode.lock().unwrap();
    let target = headers
        .get("x-amz-target")
        .map(|v| v.to_str().unwrap().to_owned());
    if let Some(target) = target {
        assert_eq!(target, "AWSPriceListService.GetProducts");
        let body: Value = serde_json::from_slice(&body).unwrap();
        api.products_asked.lock().unwrap().push(body.clone());
        let json = [("content-type", "application/x-amz-json-1.1")];
        return match mode {
            Mode::PricingThrottled => (
                StatusCode::BAD_REQUEST,
                json,
                include_str!("recorded/pricing-throttling.json").to_owned(),
            )
                .into_response(),
            Mode::PricingMalformed => (
                StatusCode::OK,
                json,
                json!({"FormatVersion": "aws_v1", "PriceList": ["{\"product\": {\"attrib"]})
                    .to_string(),
            )
                .into_response(),
            _ => (StatusCode::OK, json, get_products(&body).to_string()).into_response(),
        };
    }
    let form: Form = form_urlencoded::parse(&body).into_owned().collect();
    api.ec2_asked.lock().unwrap().push(form.clone());
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("Action"), Some("DescribeSpotPriceHistory"));
    let xml = [("content-type", "text/xml;charset=UTF-8")];
    match mode {
        Mode::SpotThrottled => (
            StatusCode::SERVICE_UNAVAILABLE,
            xml,
            include_str!("recorded/ec2-request-limit-exceeded.xml").to_owned(),
        )
            .into_response(),
        Mode::SpotMalformed => (
            StatusCode::OK,
            xml,
            include_str!("recorded/spot-price-history-page2.xml")
                .replace("31.402900", "unavailable"),
        )
            .into_response(),
        _ if get("NextToken") == Some("page2") => (
            StatusCode::OK,
            xml,
            include_str!("recorded/spot-price-history-page2.xml").to_owned(),
        )
            .into_response(),
        _ => (
            StatusCode::OK,
            xml,
            include_str!("recorded/spot-price-history-page1.xml").replace("{next}", "page2"),
        )
            .into_response(),
    }
}

async fn serve() -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = Api {
        base: format!("http://{}", listener.local_addr().unwrap()),
        mode: Arc::new(Mutex::new(Mode::Recorded)),
        products_asked: Arc::default(),
        ec2_asked: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/", axum::routing::post(endpoint))
        .with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    api
}

async fn client(api: &Api) -> AwsPrices {
    let connection = Connection {
        endpoint: Some(api.base.clone()),
        static_credentials: true,
        no_retries: true,
    };
    AwsPrices::connect(&connection, "us-east-1").await
}

fn types() -> Vec<String> {
    ["p4d.24xlarge", "p5.48xlarge", "g6.xlarge", "g5.xlarge"]
        .map(String::from)
        .to_vec()
}

fn find(prices: &[Price], ty: &str, c: CapacityType, zone: Option<&str>) -> f64 {
    prices
        .iter()
        .find(|p| p.instance_type == ty && p.capacity_type == c && p.zone.as_deref() == zone)
        .unwrap_or_else(|| panic!("no {c} price for {ty} in {zone:?}: {prices:?}"))
        .usd_per_hour
}

#[tokio::test]
async fn on_demand_from_the_price_list_and_spot_per_zone() {
    let api = serve().await;
    let prices = client(&api).await.prices(&types()).await.unwrap();

    // On demand: the Linux, shared-tenancy, used-capacity product of the
    // region; not Windows, Dedicated, an unused reservation, a Capacity
    // Block or a Reserved term.
    assert_eq!(
        find(&prices, "p4d.24xlarge", CapacityType::OnDemand, None),
        21.96
    );
    assert_eq!(
        find(&prices, "p5.48xlarge", CapacityType::OnDemand, None),
        55.1
    );
    assert_eq!(
        find(&prices, "g6.xlarge", CapacityType::OnDemand, None),
        0.805
    );
    // A type not sold here has no price rather than a made-up one.
    assert!(prices.iter().all(|p| p.instance_type != "g5.xlarge"));

    // Spot: per zone, the latest record of each zone across both pages.
    let p4d = |z| find(&prices, "p4d.24xlarge", CapacityType::Spot, Some(z));
    assert_eq!(p4d("us-east-1a"), 9.1273);
    assert_eq!(p4d("us-east-1b"), 13.9933);
    assert_eq!(
        find(
            &prices,
            "p5.48xlarge",
            CapacityType::Spot,
            Some("us-east-1c")
        ),
        31.4029
    );
    assert_eq!(
        find(&prices, "g6.xlarge", CapacityType::Spot, Some("us-east-1a")),
        0.5525
    );
    assert_eq!(prices.len(), 3 + 4, "{prices:?}");

    // One GetProducts query per type with the Linux on-demand filters.
    let asked = api.products_asked.lock().unwrap().clone();
    let filters = |body: &Value| -> HashMap<String, String> {
        body["Filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["Field"].as_str().unwrap().to_owned(),
                    f["Value"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let first = filters(&asked[0]);
    assert_eq!(first["instanceType"], "p4d.24xlarge");
    assert_eq!(first["regionCode"], "us-east-1");
    assert_eq!(first["operatingSystem"], "Linux");
    assert_eq!(first["tenancy"], "Shared");
    assert_eq!(first["preInstalledSw"], "NA");
    assert_eq!(first["capacitystatus"], "Used");
    assert_eq!(asked[0]["FormatVersion"], "aws_v1");
    // p5.48xlarge matches twice (on demand and a Capacity Block offer), so
    // its answer takes two pages: the second asked with the NextToken.
    let types_asked: Vec<(String, Option<&str>)> = asked
        .iter()
        .map(|b| (filters(b)["instanceType"].clone(), b["NextToken"].as_str()))
        .collect();
    let expected = [
        ("p4d.24xlarge", None),
        ("p5.48xlarge", None),
        ("p5.48xlarge", Some("1")),
        ("g6.xlarge", None),
        ("g5.xlarge", None),
    ]
    .map(|(t, n)| (t.to_owned(), n));
    assert_eq!(types_asked, expected);

    // Spot history: every type in one call, Linux only, from now; the
    // second call follows nextToken.
    let ec2 = api.ec2_asked.lock().unwrap().clone();
    assert_eq!(ec2.len(), 2);
    let get = |form: &[(String, String)], k: &str| {
        form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    assert_eq!(
        get(&ec2[0], "ProductDescription.1").as_deref(),
        Some("Linux/UNIX")
    );
    assert_eq!(get(&ec2[0], "InstanceType.4").as_deref(), Some("g5.xlarge"));
    assert!(get(&ec2[0], "StartTime").is_some());
    assert_eq!(get(&ec2[0], "NextToken"), None);
    assert_eq!(get(&ec2[1], "NextToken").as_deref(), Some("page2"));
}

#[tokio::test]
async fn throttled_and_malformed_answers_are_errors_not_partial_tables() {
    let api = serve().await;
    let prices = client(&api).await;
    let types = types();

    *api.mode.lock().unwrap() = Mode::PricingThrottled;
    let e = prices.prices(&types).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Throttled, "ThrottlingException")
    );
    assert_eq!(e.message, "GetProducts: Rate exceeded");

    *api.mode.lock().unwrap() = Mode::SpotThrottled;
    let e = prices.prices(&types).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Throttled, "RequestLimitExceeded")
    );
    assert_eq!(
        e.message,
        "DescribeSpotPriceHistory: Request limit exceeded."
    );

    *api.mode.lock().unwrap() = Mode::PricingMalformed;
    let e = prices.prices(&types).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Other, "MalformedResponse")
    );
    assert!(
        e.message.contains("price list entry of p4d.24xlarge"),
        "{e}"
    );

    *api.mode.lock().unwrap() = Mode::SpotMalformed;
    let e = prices.prices(&types).await.unwrap_err();
    assert_eq!(e.code, "MalformedResponse");
    assert!(
        e.message
            .contains("\"unavailable\" of p5.48xlarge in us-east-1c"),
        "{e}"
    );

    // Unreachable: an error, not an empty table.
    let gone = AwsPrices::connect(
        &Connection {
            endpoint: Some("http://127.0.0.1:1".into()),
            static_credentials: true,
            no_retries: true,
        },
        "us-east-1",
    )
    .await;
    assert_eq!(gone.prices(&types).await.unwrap_err().code, "Unreachable");
}
