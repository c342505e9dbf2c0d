//! gpupool's GCP backend. For now: live Compute Engine prices from the
//! Cloud Billing Catalog API, behind [`gpupool_cloud::PriceSource`].

pub mod machines;
pub mod pricing;

pub use machines::MachineShape;
pub use pricing::CatalogPrices;
