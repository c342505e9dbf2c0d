//! gpupool's Azure backend. So far: live VM prices from the Azure Retail
//! Prices API ([`pricing::RetailPrices`]); the compute backend (VM scale sets
//! through `azure_mgmt_compute`) follows.

pub mod pricing;

pub use pricing::RetailPrices;
