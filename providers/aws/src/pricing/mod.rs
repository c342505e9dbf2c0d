//! Live EC2 prices: on demand from the Price List Query API, spot per zone
//! from the spot price history, one [`PriceSource`] over both.

mod price_list;
mod spot;

use crate::sdk::Connection;
use governor::{DefaultDirectRateLimiter, Quota};
use gpupool_cloud::{CloudError, Price, PriceSource};
use std::num::NonZeroU32;
use std::sync::Arc;

/// The region serving the Price List Query API for every region's prices
/// (it also answers in `eu-central-1` and `ap-south-1`).
pub const PRICE_LIST_REGION: &str = "us-east-1";

/// Calls per second to each API: well under both APIs' published request
/// rates, so a refresh never throttles the cluster's other AWS callers.
const CALLS_PER_SECOND: u32 = 5;

/// Live prices of one region's EC2 instances.
#[derive(Clone)]
pub struct AwsPrices {
    pricing: aws_sdk_pricing::Client,
    ec2: aws_sdk_ec2::Client,
    region: String,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for AwsPrices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsPrices")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsPrices {
    /// Clients for `region`'s prices: EC2 in that region, the Price List
    /// API in [`PRICE_LIST_REGION`].
    pub async fn connect(connection: &Connection, region: &str) -> Self {
        let ec2 = aws_sdk_ec2::Client::new(&connection.load(region).await);
        let pricing = aws_sdk_pricing::Client::new(&connection.load(PRICE_LIST_REGION).await);
        let per_second = NonZeroU32::new(CALLS_PER_SECOND).expect("a non-zero constant");
        Self {
            pricing,
            ec2,
            region: region.to_owned(),
            limiter: Arc::new(governor::RateLimiter::direct(Quota::per_second(per_second))),
        }
    }

    /// The current spot prices of `instance_types`, per zone, from the spot
    /// price history alone.
    pub async fn spot_prices(&self, instance_types: &[String]) -> Result<Vec<Price>, CloudError> {
        spot::current(&self.ec2, &self.limiter, instance_types).await
    }

    /// The region priced.
    pub fn region(&self) -> &str {
        &self.region
    }
}

#[async_trait::async_trait]
impl PriceSource for AwsPrices {
    async fn prices(&self, instance_types: &[String]) -> Result<Vec<Price>, CloudError> {
        let mut prices = Vec::new();
        for ty in instance_types {
            self.limiter.until_ready().await;
            if let Some(p) = price_list::on_demand(&self.pricing, &self.region, ty).await? {
                prices.push(p);
            }
        }
        prices.extend(self.spot_prices(instance_types).await?);
        Ok(prices)
    }
}
