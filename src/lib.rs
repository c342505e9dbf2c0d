//! gpupool: a cluster-autoscaler `externalgrpc` cloud provider for GPU node pools.

pub mod config;

pub mod proto {
    //! The externalgrpc interface, generated from `proto/externalgrpc/externalgrpc.proto`.
    tonic::include_proto!("clusterautoscaler.cloudprovider.v1.externalgrpc");
}
pub mod fleet;
pub mod metrics;
