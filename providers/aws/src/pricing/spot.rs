//! Spot prices per zone from `DescribeSpotPriceHistory`. Asked with a start
//! time of now, EC2 answers with the price in effect in each zone (the last
//! change before now), for Linux/UNIX only.

use crate::errors::classify;
use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::InstanceType;
use governor::DefaultDirectRateLimiter;
use gpupool_cloud::{CapacityType, CloudError, Price};
use std::collections::BTreeMap;

/// The product description of Linux instances (VPC ones read the same).
const LINUX: &[&str] = &["Linux/UNIX", "Linux/UNIX (Amazon VPC)"];
/// Instance types per request, and a bound on paging.
const TYPES_PER_CALL: usize = 50;
const MAX_PAGES: usize = 50;

/// The current spot price of each of `types` in each zone that sells it.
pub(crate) async fn current(
    client: &aws_sdk_ec2::Client,
    limiter: &DefaultDirectRateLimiter,
    types: &[String],
) -> Result<Vec<Price>, CloudError> {
    // (type, zone) → (timestamp, price): the latest record wins.
    let mut latest: BTreeMap<(String, String), (DateTime, f64)> = BTreeMap::new();
    let now = DateTime::from(std::time::SystemTime::now());
    for chunk in types.chunks(TYPES_PER_CALL) {
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(CloudError::other(
                    "TooManyPages",
                    format!("DescribeSpotPriceHistory kept paging after {MAX_PAGES} pages"),
                ));
            }
            limiter.until_ready().await;
            let page = client
                .describe_spot_price_history()
                .set_instance_types(Some(
                    chunk
                        .iter()
                        .map(|t| InstanceType::from(t.as_str()))
                        .collect(),
                ))
                .product_descriptions(LINUX[0])
                .start_time(now)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("DescribeSpotPriceHistory", e))?;
            for record in page.spot_price_history() {
                let linux = record
                    .product_description()
                    .is_some_and(|d| LINUX.contains(&d.as_str()));
                if !linux {
                    continue;
                }
                let (Some(ty), Some(zone), Some(price), Some(at)) = (
                    record.instance_type(),
                    record.availability_zone(),
                    record.spot_price(),
                    record.timestamp(),
                ) else {
                    return Err(malformed(&format!(
                        "a record without its fields: {record:?}"
                    )));
                };
                let usd: f64 = price
                    .parse()
                    .ok()
                    .filter(|p: &f64| p.is_finite() && *p > 0.0)
                    .ok_or_else(|| malformed(&format!("spot price {price:?} of {ty} in {zone}")))?;
                let key = (ty.as_str().to_owned(), zone.to_owned());
                match latest.get(&key) {
                    Some((seen, _)) if seen >= at => {}
                    _ => {
                        latest.insert(key, (*at, usd));
                    }
                }
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
    }
    Ok(latest
        .into_iter()
        .map(|((instance_type, zone), (_, usd_per_hour))| Price {
            instance_type,
            capacity_type: CapacityType::Spot,
            zone: Some(zone),
            usd_per_hour,
        })
        .collect())
}

fn malformed(what: &str) -> CloudError {
    CloudError::other(
        "MalformedResponse",
        format!("DescribeSpotPriceHistory: {what}"),
    )
}
