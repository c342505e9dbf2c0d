//! The tags gpupool puts on every instance at launch, and reading an
//! instance back from them: a restart rebuilds the fleet from
//! DescribeInstances alone.

use aws_sdk_ec2::types::{Instance as Ec2Instance, InstanceLifecycleType, InstanceStateName, Tag};
use gpupool_cloud::{
    CapacityType, GroupId, Instance, InstanceId, InstanceState, ProviderId, RequestId,
};
use std::time::SystemTime;

/// The installation's cluster: the filter that finds its instances.
pub const CLUSTER: &str = "gpupool.dev/cluster";
/// The node group.
pub const GROUP: &str = "gpupool.dev/group";
/// The creation request the instance answers (the CreateFleet client token).
pub const REQUEST: &str = "gpupool.dev/request";
/// Who launched it.
pub const MANAGED_BY: &str = "gpupool.dev/managed-by";

/// The tags of an instance launched for `group` by `request`.
pub fn launch_tags(cluster: &str, group: &GroupId, request: &RequestId) -> Vec<Tag> {
    [
        (CLUSTER.to_owned(), cluster.to_owned()),
        (GROUP.to_owned(), group.to_string()),
        (REQUEST.to_owned(), request.to_string()),
        (MANAGED_BY.to_owned(), "gpupool".to_owned()),
        // What EKS and the AWS cloud controller look for on a cluster's nodes.
        (
            format!("kubernetes.io/cluster/{cluster}"),
            "owned".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| Tag::builder().key(k).value(v).build())
    .collect()
}

/// The EKS providerID of an instance: `aws:///<zone>/<instance-id>`.
pub fn provider_id(zone: &str, id: &str) -> ProviderId {
    ProviderId::new(format!("aws:///{zone}/{id}"))
}

/// One of the installation's instances as gpupool sees it; `None` when it
/// carries no group tag (not launched by gpupool) or no id.
pub fn instance(i: &Ec2Instance) -> Option<Instance> {
    let tag = |key: &str| {
        i.tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
    };
    let group = tag(GROUP)?;
    let id = i.instance_id()?;
    let zone = i
        .placement()
        .and_then(|p| p.availability_zone())
        .unwrap_or_default();
    let state = match i.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::Terminated) => InstanceState::Terminated,
        // A stopped GPU node serves nothing and still costs its volumes:
        // gpupool terminates it.
        Some(InstanceStateName::Stopping | InstanceStateName::Stopped) => InstanceState::Stopped,
        _ => InstanceState::ShuttingDown,
    };
    let capacity_type = match i.instance_lifecycle() {
        Some(InstanceLifecycleType::Spot) => CapacityType::Spot,
        _ => CapacityType::OnDemand,
    };
    Some(Instance {
        id: InstanceId::new(id),
        provider_id: provider_id(zone, id),
        node_name: i
            .private_dns_name()
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        group: GroupId::new(group),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        zone: zone.to_owned(),
        capacity_type,
        state,
        launched_at: i
            .launch_time()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH),
        request_id: tag(REQUEST).map(RequestId::new),
        state_reason: i
            .state_reason()
            .and_then(|r| r.code())
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
    })
}
