//! The seam between gpupool's engine and a cloud.
//!
//! Every backend (the simulated cloud, AWS, GCP, Azure) implements [`Cloud`]; the
//! engine holds an `Arc<dyn Cloud>` and never names a cloud SDK type. The types here
//! are plain data so the engine can cache, index and serialize them.

mod clock;
mod error;
mod ids;
pub mod pools;
mod types;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{CloudError, ErrorClass};
pub use ids::{GroupId, InstanceId, ProviderId, RequestId};
pub use types::{
    Arch, CapacityType, CreateFailure, CreateOutcome, CreateRequest, GpuInfo, Instance,
    InstanceState, InstanceType, Offering, Price, PurchaseOption,
};

/// A cloud's pricing API: current list prices of instance types in a region,
/// on-demand and spot. Implemented in each cloud's crate; the engine refreshes
/// its price book from it.
#[async_trait::async_trait]
pub trait PriceSource: Send + Sync + std::fmt::Debug {
    /// Current hourly USD prices of `instance_types` (all the source knows of
    /// when empty). A malformed or throttled answer is an error, never a
    /// partial table.
    async fn prices(&self, instance_types: &[String]) -> Result<Vec<Price>, CloudError>;
}

/// A cloud that can run instances for gpupool's node groups.
///
/// # Contract
/// - **Cancellation-safe.** Any of these futures may be dropped at an `.await` (a
///   gRPC deadline, shutdown). Dropping a `create_instances` future may leave some
///   or all of the instances created; every instance a backend creates carries the
///   request's [`RequestId`] and group (as tags or labels) so `list_instances`
///   reveals it and the engine adopts it instead of creating it again.
/// - **Idempotent creation.** A second `create_instances` with the same
///   [`RequestId`] must not create a second set (AWS `ClientToken`, GCP `requestId`).
/// - **Classified errors.** Failures say whether they mean out of capacity or quota
///   (CA backs off the group and tries another), throttling (retry later) or
///   anything else: see [`ErrorClass`].
#[async_trait::async_trait]
pub trait Cloud: Send + Sync + std::fmt::Debug {
    /// Scheme of this cloud's provider IDs, e.g. `aws` in `aws:///us-east-1a/i-0abc`.
    fn provider_name(&self) -> &str;

    /// The region this backend operates in.
    fn region(&self) -> &str;

    /// The zones of the region that instances can be placed in.
    async fn zones(&self) -> Result<Vec<String>, CloudError>;

    /// Every instance this installation manages in the region (tagged as
    /// gpupool's), in any state but long gone, each with its group: one call for
    /// the whole fleet. Instances of groups no longer configured are included,
    /// so the engine can report them rather than leave them running unseen.
    async fn list_instances(&self) -> Result<Vec<Instance>, CloudError>;

    /// Starts `request.count` instances for a group. Partial success is normal
    /// (spot capacity for 3 of 5): the outcome lists what was created and why the
    /// rest was not. An `Err` means nothing was created.
    async fn create_instances(&self, request: &CreateRequest) -> Result<CreateOutcome, CloudError>;

    /// Terminates these instances. Unknown or already terminated ones are not an
    /// error (the goal state holds).
    async fn delete_instances(&self, ids: &[InstanceId]) -> Result<(), CloudError>;

    /// The instance types this cloud offers in its region.
    async fn instance_types(&self) -> Result<Vec<InstanceType>, CloudError>;

    /// Hourly prices of instance types in this region, per capacity type (and per
    /// zone where the cloud prices zones differently, as AWS spot does).
    async fn prices(&self) -> Result<Vec<Price>, CloudError>;
}
