//! gpupool's AWS backend. For now: live EC2 prices, on demand from the AWS
//! Price List Query API (`GetProducts`) and spot per zone from EC2's
//! `DescribeSpotPriceHistory`, behind [`gpupool_cloud::PriceSource`].

mod errors;
pub mod pricing;
pub mod sdk;

pub use pricing::AwsPrices;
