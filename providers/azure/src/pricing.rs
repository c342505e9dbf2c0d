//! Live Azure VM prices from the Azure Retail Prices API
//! (<https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices>):
//! unauthenticated `GET https://prices.azure.com/api/retail/prices` with an
//! OData `$filter`, paged through `NextPageLink`.
//!
//! Of the meters returned for a VM size, the Linux pay-as-you-go one
//! (`type` `Consumption`, `productName` not ending in ` Windows`, `meterName`
//! without a ` Spot` or ` Low Priority` suffix) is the on-demand price, and
//! the Linux ` Spot` meter the spot price. `DevTestConsumption`,
//! `Reservation`, Windows and Low Priority meters are ignored. No SDK crate
//! covers this API (it is not part of ARM), so it is called with `reqwest`.

use gpupool_cloud::{CapacityType, CloudError, Price, PriceSource};
use serde::Deserialize;

/// The public endpoint.
pub const ENDPOINT: &str = "https://prices.azure.com";
/// The API version: values in `$filter` are case-sensitive from it on.
pub const API_VERSION: &str = "2023-01-01-preview";
/// SKUs per request: the `$filter` stays well under URL length limits.
const SKUS_PER_QUERY: usize = 15;
/// A bound on paging, against a server that never stops linking.
const MAX_PAGES: usize = 100;

/// One page of the answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page {
    items: Vec<Item>,
    next_page_link: Option<String>,
}

/// One meter's price.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    currency_code: String,
    retail_price: f64,
    arm_region_name: String,
    arm_sku_name: String,
    meter_name: String,
    product_name: String,
    unit_of_measure: String,
    #[serde(rename = "type")]
    price_type: String,
}

impl Item {
    /// The capacity type this meter prices, if it is a Linux hourly
    /// pay-as-you-go or spot meter in USD.
    fn capacity_type(&self) -> Option<CapacityType> {
        let linux = !self.product_name.ends_with(" Windows");
        let usable = self.price_type == "Consumption"
            && self.currency_code == "USD"
            && self.unit_of_measure == "1 Hour"
            && linux
            && !self.meter_name.ends_with(" Low Priority");
        if !usable {
            None
        } else if self.meter_name.ends_with(" Spot") {
            Some(CapacityType::Spot)
        } else {
            Some(CapacityType::OnDemand)
        }
    }
}

/// The Retail Prices API for one region.
#[derive(Debug, Clone)]
pub struct RetailPrices {
    http: reqwest::Client,
    endpoint: String,
    region: String,
}

impl RetailPrices {
    /// `endpoint` is [`ENDPOINT`] but in tests.
    pub fn new(endpoint: &str, region: &str) -> Result<Self, CloudError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("gpupool/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CloudError::other("HttpClient", e.to_string()))?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: region.to_owned(),
        })
    }

    fn filter(&self, skus: &[String]) -> String {
        let quote = |s: &str| s.replace('\'', "''");
        let mut f = format!(
            "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq '{}'",
            quote(&self.region)
        );
        if !skus.is_empty() {
            let any: Vec<String> = skus
                .iter()
                .map(|s| format!("armSkuName eq '{}'", quote(s)))
                .collect();
            f.push_str(&format!(" and ({})", any.join(" or ")));
        }
        f
    }

    async fn page(&self, request: reqwest::RequestBuilder) -> Result<Page, CloudError> {
        let response = request
            .send()
            .await
            .map_err(|e| CloudError::other("RetailPricesUnreachable", e.to_string()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| CloudError::other("RetailPricesUnreachable", e.to_string()))?;
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(CloudError::throttled(
                "TooManyRequests",
                error_message(&body),
            ));
        }
        if !status.is_success() {
            return Err(CloudError::other(
                format!("HTTP{}", status.as_u16()),
                error_message(&body),
            ));
        }
        serde_json::from_str(&body).map_err(|e| {
            CloudError::other(
                "MalformedResponse",
                format!("the Retail Prices API answered something that is not a price page: {e}"),
            )
        })
    }

    /// Every item for `skus` (all VM sizes of the region when empty).
    async fn items(&self, skus: &[String]) -> Result<Vec<Item>, CloudError> {
        let mut items = Vec::new();
        let mut request = self
            .http
            .get(format!("{}/api/retail/prices", self.endpoint))
            .query(&[
                ("api-version", API_VERSION),
                ("$filter", self.filter(skus).as_str()),
            ]);
        for _ in 0..MAX_PAGES {
            let page = self.page(request).await?;
            items.extend(page.items);
            match page.next_page_link {
                Some(next) if !next.is_empty() => request = self.http.get(next),
                _ => return Ok(items),
            }
        }
        Err(CloudError::other(
            "TooManyPages",
            format!("the Retail Prices API kept paging after {MAX_PAGES} pages"),
        ))
    }
}

/// The `Error.Message` of an error body, else the body.
fn error_message(body: &str) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        error: Detail,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Detail {
        code: String,
        message: String,
    }
    match serde_json::from_str::<Body>(body) {
        Ok(b) => format!("{}: {}", b.error.code, b.error.message),
        Err(_) => body.chars().take(300).collect(),
    }
}

#[async_trait::async_trait]
impl PriceSource for RetailPrices {
    async fn prices(&self, instance_types: &[String]) -> Result<Vec<Price>, CloudError> {
        let mut items = Vec::new();
        if instance_types.is_empty() {
            items = self.items(&[]).await?;
        } else {
            for chunk in instance_types.chunks(SKUS_PER_QUERY) {
                items.extend(self.items(chunk).await?);
            }
        }
        // Several meters may price a size (e.g. a newer effective date); the
        // highest stands, so a price is never understated.
        let mut best: std::collections::BTreeMap<(String, CapacityType), f64> =
            std::collections::BTreeMap::new();
        for item in items {
            if item.arm_region_name != self.region {
                continue;
            }
            let Some(capacity_type) = item.capacity_type() else {
                continue;
            };
            if !(item.retail_price.is_finite() && item.retail_price > 0.0) {
                continue;
            }
            let e = best
                .entry((item.arm_sku_name, capacity_type))
                .or_insert(0.0);
            *e = e.max(item.retail_price);
        }
        Ok(best
            .into_iter()
            .map(|((instance_type, capacity_type), usd_per_hour)| Price {
                instance_type,
                capacity_type,
                zone: None,
                usd_per_hour,
            })
            .collect())
    }
}
