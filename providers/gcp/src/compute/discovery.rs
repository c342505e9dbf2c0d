//! Node groups declared on global instance templates, for users coming
//! from CA on GCE: a template whose instance labels carry
//! `gpupool-cluster: <cluster>` and `gpupool-max-size` is a group (the
//! config decides what the other labels mean).

use super::errors::classify;
use super::{labels, paging};
use crate::sdk::Connection;
use google_cloud_compute_v1::client::InstanceTemplates;
use gpupool_cloud::CloudError;
use std::collections::BTreeMap;

/// The label that marks a template as a group's, besides the cluster's.
pub const MAX_SIZE_LABEL: &str = "gpupool-max-size";

/// A template labelled for the cluster, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledTemplate {
    pub name: String,
    pub machine_type: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The GPUs the template attaches (N1): type and count.
    pub guest_accelerators: Option<(String, u32)>,
}

/// Every global instance template of `project` labelled for `cluster`.
pub async fn discover(
    connection: &Connection,
    project: &str,
    cluster: &str,
) -> Result<Vec<LabelledTemplate>, CloudError> {
    let client: InstanceTemplates = connection
        .configure(InstanceTemplates::builder())
        .build()
        .await
        .map_err(|e| CloudError::other("ClientSetup", format!("instanceTemplates: {e}")))?;
    let templates = paging::all("instanceTemplates.list", async |token| {
        let page = client
            .list()
            .set_project(project)
            .set_max_results(500_u32)
            .set_page_token(token)
            .send()
            .await
            .map_err(|e| classify("instanceTemplates.list", &e))?;
        Ok((page.items, page.next_page_token))
    })
    .await?;
    let mut found = Vec::new();
    for t in templates {
        let Some(props) = t.properties else { continue };
        let ours = props.labels.get(labels::CLUSTER).map(String::as_str) == Some(cluster)
            && props.labels.contains_key(MAX_SIZE_LABEL);
        let Some(name) = t.name.filter(|_| ours) else {
            continue;
        };
        let guest_accelerators = props.guest_accelerators.first().and_then(|a| {
            Some((
                labels::last_segment(a.accelerator_type.as_deref()?).to_owned(),
                u32::try_from(a.accelerator_count?).ok()?,
            ))
        });
        found.push(LabelledTemplate {
            name,
            machine_type: props
                .machine_type
                .as_deref()
                .map(|m| labels::last_segment(m).to_owned()),
            labels: props.labels.into_iter().collect(),
            guest_accelerators,
        });
    }
    Ok(found)
}
