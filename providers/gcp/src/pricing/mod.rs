//! Live Compute Engine prices from the Cloud Billing Catalog API
//! (<https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list>):
//! every SKU of the Compute Engine service, in USD, indexed by what it bills
//! in the region ([`skus`]), then summed per machine type: vCPUs × core SKU +
//! GiB × RAM SKU + GPUs × GPU SKU + bundled Local SSD. Spot is the
//! `Preemptible` usage type of the same parts.

mod errors;
mod skus;

use crate::machines::MachineShape;
use crate::sdk::Connection;
use google_cloud_billing_v1::client::CloudCatalog;
use gpupool_cloud::{CapacityType, CloudError, Price, PriceSource};
use skus::{Part, Rates};

/// The Compute Engine service in the billing catalog.
pub const COMPUTE_ENGINE: &str = "services/6F81-5844-456A";
/// SKUs per page (the API's maximum), and a bound on paging.
const PAGE_SIZE: i32 = 5000;
const MAX_PAGES: usize = 50;

/// One region's machine prices.
#[derive(Clone)]
pub struct CatalogPrices {
    client: CloudCatalog,
    region: String,
    shapes: Vec<MachineShape>,
}

impl std::fmt::Debug for CatalogPrices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogPrices")
            .field("region", &self.region)
            .field("machine_types", &self.shapes.len())
            .finish_non_exhaustive()
    }
}

impl CatalogPrices {
    /// A client with Application Default Credentials (GKE Workload
    /// Identity, a service-account key, `gcloud auth application-default`),
    /// or, given an `endpoint` (a test server), anonymous ones.
    pub async fn connect(
        endpoint: Option<&str>,
        region: &str,
        shapes: Vec<MachineShape>,
    ) -> Result<Self, CloudError> {
        let connection = Connection {
            endpoint: endpoint.map(str::to_owned),
            anonymous: endpoint.is_some(),
            no_retries: endpoint.is_some(),
        };
        Self::connect_with(&connection, region, shapes).await
    }

    /// A client reached through `connection`. Transient failures are
    /// retried briefly; the engine's next refresh is the real retry, with
    /// the last good prices kept meanwhile.
    pub async fn connect_with(
        connection: &Connection,
        region: &str,
        shapes: Vec<MachineShape>,
    ) -> Result<Self, CloudError> {
        let client = connection
            .configure(CloudCatalog::builder())
            .build()
            .await
            .map_err(|e| CloudError::other("CloudBillingClient", e.to_string()))?;
        Ok(Self {
            client,
            region: region.to_owned(),
            shapes,
        })
    }

    /// The machine types it prices.
    pub fn shapes(&self) -> &[MachineShape] {
        &self.shapes
    }

    /// The rates of every part billed in the region.
    async fn rates(&self) -> Result<Rates, CloudError> {
        let mut rates = Rates::new(&self.region);
        let mut token = String::new();
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .list_skus()
                .set_parent(COMPUTE_ENGINE)
                .set_currency_code("USD")
                .set_page_size(PAGE_SIZE)
                .set_page_token(token)
                .send()
                .await
                .map_err(errors::classify)?;
            for sku in &page.skus {
                rates.add(sku)?;
            }
            if page.next_page_token.is_empty() {
                return Ok(rates);
            }
            token = page.next_page_token;
        }
        Err(CloudError::other(
            "TooManyPages",
            format!("services.skus.list kept paging after {MAX_PAGES} pages"),
        ))
    }
}

/// The hourly price of `shape` from `rates`, `None` if a part has no SKU
/// in the region (never a price without its GPUs).
fn machine_price(rates: &Rates, shape: &MachineShape, capacity: CapacityType) -> Option<f64> {
    let series = shape.sku_series()?;
    let mut hourly = f64::from(shape.vcpus) * rates.get(&Part::Core(series.clone()), capacity)?
        + shape.memory_gib * rates.get(&Part::Ram(series), capacity)?;
    if let Some((accelerator, count)) = &shape.gpus {
        let name = crate::machines::gpu_sku_name(accelerator)?;
        hourly += f64::from(*count) * rates.get(&Part::Gpu(name.to_owned()), capacity)?;
    }
    if shape.local_ssd_partitions > 0 {
        let gib = f64::from(shape.local_ssd_partitions) * crate::machines::LOCAL_SSD_PARTITION_GIB;
        hourly += gib * rates.get(&Part::LocalSsd, capacity)?;
    }
    Some(hourly)
}

#[async_trait::async_trait]
impl PriceSource for CatalogPrices {
    async fn prices(&self, instance_types: &[String]) -> Result<Vec<Price>, CloudError> {
        let rates = self.rates().await?;
        let mut prices = Vec::new();
        let mut unpriced = Vec::new();
        let wanted =
            |s: &&MachineShape| instance_types.is_empty() || instance_types.contains(&s.name);
        for shape in self.shapes.iter().filter(wanted) {
            for capacity_type in [CapacityType::OnDemand, CapacityType::Spot] {
                match machine_price(&rates, shape, capacity_type) {
                    Some(usd_per_hour) => prices.push(Price {
                        instance_type: shape.name.clone(),
                        capacity_type,
                        zone: None,
                        usd_per_hour,
                    }),
                    None => unpriced.push(format!("{} ({capacity_type})", shape.name)),
                }
            }
        }
        if !unpriced.is_empty() {
            tracing::info!(
                region = %self.region,
                unpriced = %unpriced.join(", "),
                "the billing catalog lacks a part of these machine types here; their last prices stay"
            );
        }
        Ok(prices)
    }
}
