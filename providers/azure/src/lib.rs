//! gpupool's Azure backend: node groups as VMs made through
//! `azure_mgmt_compute` ([`compute::AzureCloud`]), into a Flexible scale
//! set or from the config's parts; the live catalog from Resource SKUs;
//! live prices from the Azure Retail Prices API ([`pricing::RetailPrices`]).

pub mod arm;
pub mod compute;
pub mod pricing;
pub mod sizes;

pub use arm::{Arm, Connection, default_credential};
pub use compute::discovery::{TaggedScaleSet, discover};
pub use compute::{AzureCloud, AzureSettings, GroupSettings, Source, VmSpec};
pub use pricing::RetailPrices;
