//! Node groups found from launch templates, the way CA's AWS provider finds
//! Auto Scaling groups: by the tags `k8s.io/cluster-autoscaler/enabled` and
//! `k8s.io/cluster-autoscaler/<cluster>`. What the group is (sizes, types,
//! subnets, annotations) is read from the template's other tags by the
//! engine; this module only fetches the templates, their tags and the
//! instance type their version launches.

use crate::errors::classify;
use crate::sdk::Connection;
use aws_sdk_ec2::types::Filter;
use gpupool_cloud::CloudError;
use std::collections::BTreeMap;

/// CA's opt-in tag (any value).
pub const CA_ENABLED: &str = "k8s.io/cluster-autoscaler/enabled";
/// The tag naming a template's launch-template version; `$Default` without it.
pub const VERSION_TAG: &str = "gpupool.dev/launch-template-version";
/// The tag listing a group's instance types; without it, the type the
/// template's version names is looked up.
pub const TYPES_TAG: &str = "gpupool.dev/instance-types";
/// Bound on paging through DescribeLaunchTemplates.
const MAX_PAGES: usize = 100;

/// CA's per-cluster tag (any value).
pub fn ca_cluster_tag(cluster: &str) -> String {
    format!("k8s.io/cluster-autoscaler/{cluster}")
}

/// A launch template tagged for the cluster's autoscaler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedTemplate {
    pub id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// The version groups launch (from [`VERSION_TAG`], else `$Default`).
    pub version: String,
    /// The instance type that version names, if any.
    pub instance_type: Option<String>,
}

/// Every launch template in `region` carrying both CA tags for `cluster`.
pub async fn discover(
    connection: &Connection,
    region: &str,
    cluster: &str,
) -> Result<Vec<TaggedTemplate>, CloudError> {
    let client = aws_sdk_ec2::Client::new(&connection.load(region).await);
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .describe_launch_templates()
            .filters(Filter::builder().name("tag-key").values(CA_ENABLED).build())
            .filters(
                Filter::builder()
                    .name("tag-key")
                    .values(ca_cluster_tag(cluster))
                    .build(),
            )
            .max_results(200)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| classify("DescribeLaunchTemplates", e))?;
        for t in page.launch_templates() {
            let (Some(id), Some(name)) = (t.launch_template_id(), t.launch_template_name()) else {
                continue;
            };
            let tags: BTreeMap<String, String> = t
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
                .collect();
            // EC2 ands the two filters; checked again so a lax server
            // cannot hand over another cluster's template.
            if !tags.contains_key(CA_ENABLED) || !tags.contains_key(&ca_cluster_tag(cluster)) {
                continue;
            }
            found.push(TaggedTemplate {
                id: id.to_owned(),
                name: name.to_owned(),
                version: tags
                    .get(VERSION_TAG)
                    .cloned()
                    .unwrap_or_else(|| "$Default".to_owned()),
                tags,
                instance_type: None,
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    for t in &mut found {
        if t.tags.contains_key(TYPES_TAG) {
            continue;
        }
        t.instance_type = instance_type(&client, &t.id, &t.version)
            .await
            .map_err(|mut e| {
                e.message = format!(
                    "launch template {} ({}) version {:?}: {}",
                    t.name, t.id, t.version, e.message
                );
                e
            })?;
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The instance type a template's version launches.
async fn instance_type(
    client: &aws_sdk_ec2::Client,
    id: &str,
    version: &str,
) -> Result<Option<String>, CloudError> {
    let answer = client
        .describe_launch_template_versions()
        .launch_template_id(id)
        .versions(version)
        .send()
        .await
        .map_err(|e| classify("DescribeLaunchTemplateVersions", e))?;
    Ok(answer
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .and_then(|d| d.instance_type())
        .map(|t| t.as_str().to_owned()))
}
