//! What the EC2 backend is told about the installation and its groups:
//! plain data from gpupool's config.

use gpupool_cloud::GroupId;
use std::collections::BTreeMap;

/// The installation: its cluster and the groups it runs.
#[derive(Clone, Debug, Default)]
pub struct Ec2Settings {
    /// The cluster's name: tagged on every instance, and the filter that
    /// finds this installation's instances (and no one else's).
    pub cluster: String,
    pub groups: BTreeMap<GroupId, GroupSettings>,
}

/// How one group's instances are launched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    pub launch_template: LaunchTemplate,
    /// The instance types the group may use, its template's type first;
    /// CreateFleet chooses among them (price-capacity-optimized for spot,
    /// lowest price on demand).
    pub instance_types: Vec<String>,
    /// The subnets instances go into; their zones are the zones the group
    /// can use. Empty: the launch template's own network settings, in
    /// every zone asked for.
    pub subnets: Vec<String>,
}

/// A launch template by id or name, at a version (`$Default`, `$Latest` or
/// a number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchTemplate {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: String,
}
