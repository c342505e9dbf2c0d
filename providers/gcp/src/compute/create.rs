//! Scale-up: one `instances.bulkInsert` per (zone, machine type,
//! provisioning model), tried in order until the request is filled
//! ([`gpupool_cloud::pools`]: spot first for spot-then-on-demand, the
//! group's own machine type before its alternates, the request's zones in
//! order); a pool that runs out (ZONE_RESOURCE_POOL_EXHAUSTED, a GPU quota)
//! is reported as exhausted and the next one is asked.
//!
//! Idempotent: each call carries a request id (a UUID of the request and
//! the pool), so Compute Engine answers a repeat within its retention with
//! the first call's operation; and each instance has a name made from the
//! request and pool, so even a later repeat cannot make a second instance.
//! Names already taken by the request are counted, not asked again.

use super::errors::classify;
use super::operations::error_of;
use super::settings::{GroupSettings, Source};
use super::{GceCloud, labels};
use google_cloud_compute_v1::model;
use google_cloud_gax::options::RequestOptionsBuilder;
use gpupool_cloud::pools::{Filler, Pool, PoolResult};
use gpupool_cloud::{CapacityType, CloudError, CreateOutcome, CreateRequest, Instance};
use std::collections::HashMap;
use std::time::Duration;

/// How long one pool's bulkInsert operation is awaited: GPU instances are
/// usually placed within a minute or two; past this the engine asks again
/// with the same request id.
const CREATE_WAIT: Duration = Duration::from_secs(10 * 60);

impl GceCloud {
    pub(super) async fn create(
        &self,
        request: &CreateRequest,
    ) -> Result<CreateOutcome, CloudError> {
        let group = self.settings.groups.get(&request.group).ok_or_else(|| {
            CloudError::other(
                "UnknownGroup",
                format!("group {} has no GCP settings", request.group),
            )
        })?;
        let zones = if request.zones.is_empty() {
            &self.zones
        } else {
            &request.zones
        };
        let mut filler = Filler::new(
            request,
            &group.machine_types,
            zones,
            |zone, machine_type| self.offers(zone, machine_type),
            CreateOutcome::default(),
        );
        while let Some((pool, count)) = filler.next_pool() {
            let result = self.create_in(request, group, &pool, count).await;
            filler.record(result);
        }
        filler.finish()
    }

    /// Up to `count` instances in one pool.
    async fn create_in(
        &self,
        request: &CreateRequest,
        group: &GroupSettings,
        pool: &Pool<'_>,
        count: u32,
    ) -> PoolResult {
        let names: Vec<String> = (0..count)
            .map(|i| {
                labels::instance_name(
                    &request.group,
                    &request.request_id,
                    pool.zone,
                    pool.capacity,
                    pool.type_index,
                    i,
                )
            })
            .collect();
        // Names this request already holds here (an earlier attempt).
        let before = match self.request_instances(request, pool.zone).await {
            Ok(found) => found,
            Err(error) => {
                return PoolResult {
                    created: Vec::new(),
                    error: Some(error),
                };
            }
        };
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !before.iter().any(|i| i.node_name.as_ref() == Some(*n)))
            .collect();
        let mut error = None;
        if !missing.is_empty() {
            error = self.bulk_insert(request, group, pool, &missing).await.err();
        }
        let after = if missing.is_empty() {
            Ok(before)
        } else {
            self.request_instances(request, pool.zone).await
        };
        let created = match after {
            Ok(found) => found
                .into_iter()
                .filter(|i| i.node_name.as_ref().is_some_and(|n| names.contains(n)))
                .collect::<Vec<_>>(),
            Err(e) => {
                // The instances exist or not; the next sync's list adopts
                // them by their labels either way.
                return PoolResult {
                    created: Vec::new(),
                    error: Some(error.unwrap_or(e)),
                };
            }
        };
        if error.is_none() && created.len() < names.len() {
            error = Some(CloudError::other(
                "BulkInsertShort",
                format!(
                    "instances.bulkInsert in {} made {} of {} {} instances without an error",
                    pool.zone,
                    created.len(),
                    names.len(),
                    pool.instance_type
                ),
            ));
        }
        PoolResult { created, error }
    }

    /// The instances of `request` in `zone`, by their labels.
    async fn request_instances(
        &self,
        request: &CreateRequest,
        zone: &str,
    ) -> Result<Vec<Instance>, CloudError> {
        let filter = format!(
            "(labels.{} = \"{}\") AND (labels.{} = \"{}\") AND (labels.{} = \"{}\")",
            labels::CLUSTER,
            self.settings.cluster,
            labels::GROUP,
            request.group,
            labels::REQUEST,
            labels::request_label(&request.group, &request.request_id),
        );
        self.limits.read.until_ready().await;
        let page = self
            .instances
            .list()
            .set_project(&self.settings.project)
            .set_zone(zone)
            .set_filter(filter)
            .set_max_results(500_u32)
            .send()
            .await
            .map_err(|e| classify("instances.list", &e))?;
        Ok(page
            .items
            .iter()
            .filter_map(|i| labels::instance(&self.settings.project, i))
            .filter(|i| i.state != gpupool_cloud::InstanceState::Terminated)
            .collect())
    }

    /// One bulkInsert, awaited; `Err` is the call's or the operation's error.
    async fn bulk_insert(
        &self,
        request: &CreateRequest,
        group: &GroupSettings,
        pool: &Pool<'_>,
        names: &[&String],
    ) -> Result<(), CloudError> {
        let mut body = model::BulkInsertInstanceResource::default();
        body.count = Some(names.len() as i64);
        // Partial success is kept: what was placed serves, the rest is
        // asked of the next pool.
        body.min_count = Some(1);
        body.per_instance_properties = names
            .iter()
            .map(|n| {
                let mut p = model::BulkInsertInstanceResourcePerInstanceProperties::default();
                p.name = Some((*n).clone());
                ((*n).clone(), p)
            })
            .collect();
        body.instance_properties = Some(self.properties(request, group, pool));
        if let Source::Template(t) = &group.source {
            body.source_instance_template = Some(template_url(&self.settings.project, t));
        }
        let call_id = labels::call_request_id(
            &request.request_id,
            pool.zone,
            pool.instance_type,
            pool.capacity,
        );
        self.limits.mutate.until_ready().await;
        let op = self
            .instances
            .bulk_insert()
            .set_project(&self.settings.project)
            .set_zone(pool.zone)
            .set_request_id(call_id)
            .set_body(body)
            .with_idempotency(true)
            .send()
            .await
            .map_err(|e| classify("instances.bulkInsert", &e))?;
        let done = self.wait(pool.zone, op, CREATE_WAIT).await?;
        match error_of(&done) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The instance as gpupool wants it: the pool's machine type and
    /// provisioning model, its labels on top of the template's, GPUs
    /// attached where the group chooses them.
    fn properties(
        &self,
        request: &CreateRequest,
        group: &GroupSettings,
        pool: &Pool<'_>,
    ) -> model::InstanceProperties {
        let template = match &group.source {
            Source::Template(t) => self.templates.get(t).and_then(|t| t.properties.clone()),
            Source::Machine(_) => None,
        };
        let mut labels: HashMap<String, String> = template
            .as_ref()
            .map(|p| p.labels.clone())
            .unwrap_or_default();
        labels.extend(labels::labels(
            &self.settings.cluster,
            &request.group,
            &request.request_id,
        ));
        let mut scheduling = template
            .as_ref()
            .and_then(|p| p.scheduling.clone())
            .unwrap_or_default();
        scheduling_for(&mut scheduling, pool.capacity);
        let mut p = match &group.source {
            Source::Template(_) => model::InstanceProperties::default(),
            Source::Machine(spec) => machine_properties(spec),
        };
        p.machine_type = Some(pool.instance_type.to_owned());
        p.labels = labels;
        p.scheduling = Some(scheduling);
        if let Some(a) = &group.guest_accelerators {
            let mut config = model::AcceleratorConfig::default();
            config.accelerator_type = Some(a.accelerator_type.clone());
            config.accelerator_count = Some(i32::try_from(a.count).unwrap_or(i32::MAX));
            p.guest_accelerators = vec![config];
        }
        p
    }
}

/// GPU instances cannot live-migrate: host maintenance terminates them.
/// Spot instances are deleted when preempted (a stopped one would leave
/// its pods Terminating on a node that never returns) and never restarted.
pub(crate) fn scheduling_for(s: &mut model::Scheduling, capacity: CapacityType) {
    use model::scheduling::{InstanceTerminationAction, OnHostMaintenance, ProvisioningModel};
    s.on_host_maintenance = Some(OnHostMaintenance::Terminate);
    s.preemptible = None;
    match capacity {
        CapacityType::Spot => {
            s.provisioning_model = Some(ProvisioningModel::Spot);
            s.instance_termination_action = Some(InstanceTerminationAction::Delete);
            s.automatic_restart = Some(false);
        }
        CapacityType::OnDemand => {
            s.provisioning_model = Some(ProvisioningModel::Standard);
            s.instance_termination_action = None;
            s.automatic_restart = Some(true);
        }
    }
}

/// An instance described by the config instead of a template.
fn machine_properties(spec: &super::MachineSpec) -> model::InstanceProperties {
    let mut init = model::AttachedDiskInitializeParams::default();
    init.source_image = Some(spec.image.clone());
    init.disk_size_gb = Some(i64::from(spec.boot_disk_gib));
    init.disk_type = Some(spec.boot_disk_type.clone());
    let mut disk = model::AttachedDisk::default();
    disk.boot = Some(true);
    disk.auto_delete = Some(true);
    disk.initialize_params = Some(init);
    let mut nic = model::NetworkInterface::default();
    nic.network = spec.network.clone();
    nic.subnetwork = spec.subnetwork.clone();
    let mut p = model::InstanceProperties::default();
    p.disks = vec![disk];
    p.network_interfaces = vec![nic];
    if let Some(email) = &spec.service_account {
        let mut sa = model::ServiceAccount::default();
        sa.email = Some(email.clone());
        sa.scopes = vec!["https://www.googleapis.com/auth/cloud-platform".to_owned()];
        p.service_accounts = vec![sa];
    }
    if !spec.network_tags.is_empty() {
        let mut tags = model::Tags::default();
        tags.items = spec.network_tags.clone();
        p.tags = Some(tags);
    }
    if !spec.metadata.is_empty() {
        let mut metadata = model::Metadata::default();
        metadata.items = spec
            .metadata
            .iter()
            .map(|(k, v)| {
                let mut item = model::metadata::Items::default();
                item.key = Some(k.clone());
                item.value = Some(v.clone());
                item
            })
            .collect();
        p.metadata = Some(metadata);
    }
    p
}

/// A template named by the config as the URL bulkInsert takes.
fn template_url(project: &str, template: &str) -> String {
    if template.contains('/') {
        template.trim_start_matches('/').to_owned()
    } else {
        format!("projects/{project}/global/instanceTemplates/{template}")
    }
}
