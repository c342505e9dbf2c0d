//! On-demand prices from the Price List Query API (`GetProducts` on service
//! `AmazonEC2`). Each `PriceList` entry is a JSON document (a string) with
//! the product's attributes and its terms; the on-demand hourly price is at
//! `terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD`.
//! Reserved terms are ignored.

use crate::errors::classify;
use gpupool_cloud::{CapacityType, CloudError, Price};
use serde::Deserialize;
use std::collections::HashMap;

/// The attributes a plain Linux, shared-tenancy, on-demand instance has: the
/// request filters on them and each answer is checked against them.
pub(crate) const LINUX_ON_DEMAND: &[(&str, &str)] = &[
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
    ("licenseModel", "No License required"),
];

/// A bound on paging, against a server that never stops.
const MAX_PAGES: usize = 20;

#[derive(Debug, Deserialize)]
struct Product {
    product: ProductInfo,
    #[serde(default)]
    terms: Terms,
}

#[derive(Debug, Deserialize)]
struct ProductInfo {
    #[serde(default)]
    attributes: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct Terms {
    #[serde(rename = "OnDemand", default)]
    on_demand: HashMap<String, Term>,
}

#[derive(Debug, Deserialize)]
struct Term {
    #[serde(rename = "priceDimensions")]
    price_dimensions: HashMap<String, Dimension>,
}

#[derive(Debug, Deserialize)]
struct Dimension {
    unit: String,
    #[serde(rename = "pricePerUnit")]
    price_per_unit: HashMap<String, String>,
}

impl Product {
    /// Whether this is the plain Linux on-demand product of `ty` in `region`
    /// (and not, e.g., a Capacity Block offer).
    fn is_linux_on_demand(&self, region: &str, ty: &str) -> bool {
        let a = &self.product.attributes;
        let is = |k: &str, v: &str| a.get(k).map(String::as_str) == Some(v);
        is("instanceType", ty)
            && is("regionCode", region)
            && LINUX_ON_DEMAND.iter().all(|(k, v)| is(k, v))
            && a.get("marketoption").is_none_or(|m| m == "OnDemand")
    }

    /// The highest hourly USD rate among the on-demand terms, so a price is
    /// never understated.
    fn hourly_usd(&self, ty: &str) -> Result<Option<f64>, CloudError> {
        let mut best: Option<f64> = None;
        for dim in self
            .terms
            .on_demand
            .values()
            .flat_map(|t| t.price_dimensions.values())
        {
            if dim.unit != "Hrs" {
                continue;
            }
            let Some(usd) = dim.price_per_unit.get("USD") else {
                continue;
            };
            let rate: f64 = usd
                .parse()
                .map_err(|_| malformed(ty, &format!("price {usd:?}")))?;
            if !rate.is_finite() || rate < 0.0 {
                return Err(malformed(ty, &format!("price {usd:?}")));
            }
            if rate > 0.0 {
                best = Some(best.map_or(rate, |b| b.max(rate)));
            }
        }
        Ok(best)
    }
}

fn malformed(ty: &str, what: &str) -> CloudError {
    CloudError::other(
        "MalformedResponse",
        format!("GetProducts: the price list entry of {ty} is not a product price: {what}"),
    )
}

fn term_match(field: &str, value: &str) -> aws_sdk_pricing::types::Filter {
    aws_sdk_pricing::types::Filter::builder()
        .r#type(aws_sdk_pricing::types::FilterType::TermMatch)
        .field(field)
        .value(value)
        .build()
        .expect("type, field and value are set")
}

/// The on-demand hourly price of `ty` in `region`, `None` if AWS does not
/// sell it there.
pub(crate) async fn on_demand(
    client: &aws_sdk_pricing::Client,
    region: &str,
    ty: &str,
) -> Result<Option<Price>, CloudError> {
    let mut filters = vec![
        term_match("instanceType", ty),
        term_match("regionCode", region),
    ];
    filters.extend(LINUX_ON_DEMAND.iter().map(|(k, v)| term_match(k, v)));
    let mut best: Option<f64> = None;
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .get_products()
            .service_code("AmazonEC2")
            .format_version("aws_v1")
            .set_filters(Some(filters.clone()))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| classify("GetProducts", e))?;
        for entry in page.price_list() {
            let product: Product = serde_json::from_str(entry)
                .map_err(|e| malformed(ty, &format!("not a product document: {e}")))?;
            if !product.is_linux_on_demand(region, ty) {
                continue;
            }
            if let Some(rate) = product.hourly_usd(ty)? {
                best = Some(best.map_or(rate, |b| b.max(rate)));
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => {
                return Ok(best.map(|usd_per_hour| Price {
                    instance_type: ty.to_owned(),
                    capacity_type: CapacityType::OnDemand,
                    zone: None,
                    usd_per_hour,
                }));
            }
        }
    }
    Err(CloudError::other(
        "TooManyPages",
        format!("GetProducts kept paging after {MAX_PAGES} pages for {ty}"),
    ))
}
