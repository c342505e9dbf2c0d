//! gpupool's GCP backend: node groups as Compute Engine instances
//! ([`GceCloud`]: `instances.bulkInsert` per zone and provisioning model,
//! found again by labels), and live prices from the Cloud Billing Catalog
//! API behind [`gpupool_cloud::PriceSource`].

pub mod compute;
pub mod machines;
pub mod pricing;
pub mod sdk;

pub use compute::discovery::{LabelledTemplate, discover};
pub use compute::{GceCloud, GceSettings, GroupSettings};
pub use machines::MachineShape;
pub use pricing::CatalogPrices;
pub use sdk::Connection;
