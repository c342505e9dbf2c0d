//! The offline price table: list prices of every catalog instance type per
//! region, on-demand and spot, shipped in the repo (`prices/<cloud>.yaml`,
//! each figure with its source and date), so a server without pricing
//! credentials or network still prices correctly. Live refreshes, where
//! configured, replace these figures as they land.

use super::PriceBook;
use crate::config::CloudKind;
use gpupool_cloud::{CapacityType, Price};
use serde::Deserialize;
use std::sync::OnceLock;
use std::time::SystemTime;

const AWS: &str = include_str!("prices/aws.yaml");
const GCP: &str = include_str!("prices/gcp.yaml");
const AZURE: &str = include_str!("prices/azure.yaml");

/// One cloud's table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub cloud: String,
    /// Date of the source data, `YYYY-MM-DD`.
    pub as_of: String,
    pub sources: Vec<Source>,
    pub prices: Vec<Row>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub id: String,
    pub url: String,
    pub retrieved: String,
    pub note: String,
}

/// Hourly USD prices of one instance type in one region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub instance_type: String,
    pub region: String,
    pub on_demand: f64,
    /// `None` where no spot price is known (not: where spot is not sold).
    pub spot: Option<f64>,
    /// A [`Source::id`].
    pub source: String,
}

/// The table of `cloud`; the simulator has none (its catalog holds prices).
pub fn table(cloud: CloudKind) -> Option<&'static Table> {
    static TABLES: OnceLock<[Table; 3]> = OnceLock::new();
    let [aws, gcp, azure] = TABLES.get_or_init(|| {
        [AWS, GCP, AZURE]
            .map(|text| serde_yaml::from_str(text).expect("built-in price table parses"))
    });
    match cloud {
        CloudKind::Sim => None,
        CloudKind::Aws => Some(aws),
        CloudKind::Gcp => Some(gcp),
        CloudKind::Azure => Some(azure),
    }
}

impl Table {
    /// When the table's figures were current.
    pub fn as_of(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(&format!("{} 00:00:00", self.as_of)).ok()
    }

    /// The prices of one region.
    pub fn prices(&self, region: &str) -> Vec<Price> {
        self.prices
            .iter()
            .filter(|r| r.region == region)
            .flat_map(|r| {
                let price = |capacity_type, usd_per_hour| Price {
                    instance_type: r.instance_type.clone(),
                    capacity_type,
                    zone: None,
                    usd_per_hour,
                };
                std::iter::once(price(CapacityType::OnDemand, r.on_demand))
                    .chain(r.spot.map(|s| price(CapacityType::Spot, s)))
            })
            .collect()
    }
}

/// The starting price book for a cloud's region (empty for the simulator).
pub fn book(cloud: CloudKind, region: &str) -> PriceBook {
    table(cloud).map_or_else(PriceBook::default, |t| PriceBook::new(t.prices(region)))
}
