//! gpupool's AWS backend: node groups as EC2 instances ([`Ec2Cloud`],
//! CreateFleet from a launch template, found again by tags), and live EC2
//! prices, on demand from the AWS Price List Query API (`GetProducts`) and
//! spot per zone from EC2's `DescribeSpotPriceHistory`, behind
//! [`gpupool_cloud::PriceSource`].

pub mod ec2;
mod errors;
pub mod pricing;
pub mod sdk;

pub use ec2::discovery::{TaggedTemplate, discover};
pub use ec2::{Ec2Cloud, Ec2Settings, GroupSettings, LaunchTemplate};
pub use errors::classify_code;
pub use pricing::AwsPrices;
