//! gpupool: a cluster-autoscaler `externalgrpc` cloud provider for GPU node pools.

pub mod backend;
pub mod boot;
pub mod catalog;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod explain;

pub mod proto {
    //! The externalgrpc interface, generated from `proto/externalgrpc/externalgrpc.proto`.
    tonic::include_proto!("clusterautoscaler.cloudprovider.v1.externalgrpc");
}
pub mod fit;
pub mod fleet;
pub mod gpu;
pub mod grpc;
pub mod http;
pub mod interrupt;
pub mod metrics;
pub mod options;
pub mod preprovision;
pub mod pricing;
pub mod quantity;
pub mod server;
pub mod simulate;
pub mod supervisor;
pub mod template;
pub mod tls;
pub mod webhook;
