//! Picks the cloud backend named in the config and what it adds to the
//! operations port.

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "azure")]
mod azure;
#[cfg(feature = "gcp")]
mod gcp;

use crate::config::{CloudKind, Config, ConfigError, GroupSpec};
use crate::server::Backend;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use gpupool_cloud::{Clock, InstanceId};
use gpupool_sim::{SimCloud, SimError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("sim: {0}")]
    Sim(#[from] SimError),
    #[error(
        "cloud: {0} is not available in this build yet; use `cloud: sim` (the AWS, GCP and Azure backends are separate features)"
    )]
    NotBuilt(&'static str),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cloud: {0}")]
    Cloud(#[from] gpupool_cloud::CloudError),
}

/// The config's groups checked without a cloud: against the simulator's
/// catalog and zones, or the built-in catalog of a real cloud (whose zones
/// are checked when the server asks the cloud for them). Touches no state file.
pub fn offline_specs(config: &Config) -> Result<Vec<GroupSpec>, BackendError> {
    Ok(match config.cloud {
        CloudKind::Sim => {
            let mut sim = config.sim.clone();
            sim.state_file = None;
            let sim = SimCloud::new(sim, Arc::new(gpupool_cloud::SystemClock))?;
            let catalog: Vec<_> = sim.catalog().iter().map(|t| t.instance_type()).collect();
            config.validate(&catalog, Some(&sim.config().zones))?
        }
        CloudKind::Gcp => {
            let mut catalog = crate::catalog::builtin(CloudKind::Gcp);
            catalog.extend(crate::config::gcp::offline_n1_types(&config.node_groups));
            config.validate(&catalog, None)?
        }
        cloud => config.validate(&crate::catalog::builtin(cloud), None)?,
    })
}

/// The backend for `config.cloud`, connected. Groups the cloud declares
/// (AWS launch templates tagged for CA, GCP instance templates labelled
/// for the cluster, Azure scale sets tagged for CA) are added to `config.node_groups`.
pub async fn from_config(
    config: &mut Config,
    clock: Arc<dyn Clock>,
) -> Result<Backend, BackendError> {
    match config.cloud {
        CloudKind::Sim => {
            let sim = Arc::new(SimCloud::new(config.sim.clone(), clock.clone())?);
            Ok(Backend {
                cloud: sim.clone(),
                clock,
                extra_routes: Some(sim_routes(sim)),
            })
        }
        #[cfg(feature = "aws")]
        CloudKind::Aws => aws::backend(config, clock).await,
        #[cfg(not(feature = "aws"))]
        CloudKind::Aws => Err(BackendError::NotBuilt("aws")),
        #[cfg(feature = "gcp")]
        CloudKind::Gcp => gcp::backend(config, clock).await,
        #[cfg(not(feature = "gcp"))]
        CloudKind::Gcp => Err(BackendError::NotBuilt("gcp")),
        #[cfg(feature = "azure")]
        CloudKind::Azure => azure::backend(config, clock).await,
        #[cfg(not(feature = "azure"))]
        CloudKind::Azure => Err(BackendError::NotBuilt("azure")),
    }
}

/// Groups a cloud declares (each with where it was found, e.g. `launch
/// template gpu-p5 (lt-0abc)`) added to the config's, all or none: a
/// group both declared and discovered is an error, not a silent winner,
/// and so are two found with one id (`rename` says how to tell them apart).
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn add_discovered(
    config: &mut Config,
    found: Vec<(String, crate::config::NodeGroupConfig)>,
    rename: &str,
) -> Result<(), ConfigError> {
    let mut discovered: Vec<crate::config::NodeGroupConfig> = Vec::new();
    for (source, group) in found {
        let clash = |why: String| ConfigError::Invalid {
            key: source.clone(),
            reason: format!("its node group {:?} {why}", group.id),
        };
        if config.node_groups.iter().any(|g| g.id == group.id) {
            return Err(clash(
                "is also declared in node_groups; drop one of them".into(),
            ));
        }
        if discovered.iter().any(|g| g.id == group.id) {
            return Err(clash(format!(
                "is another discovered template's too; {rename}"
            )));
        }
        tracing::info!(group = %group.id, from = %source, "node group discovered");
        discovered.push(group);
    }
    config.node_groups.extend(discovered);
    Ok(())
}

/// How a cloud says where it offers a type, for start-up errors.
#[cfg(any(feature = "gcp", feature = "azure"))]
struct OfferedBy<'a> {
    /// `offered` or `offered to this subscription`.
    offered: &'a str,
    /// The call that said so: `machineTypes.list`.
    source: &'a str,
    /// `type` or `size`.
    kind: &'a str,
}

/// Every zone a group names must offer its type (a region's zones differ:
/// the big GPU types are in few of them), and a group that names none needs
/// one zone of the region that does. Nothing is changed, so all groups are
/// checked before serving.
#[cfg(any(feature = "gcp", feature = "azure"))]
fn check_offered_zones(
    config: &Config,
    group: &crate::config::NodeGroupConfig,
    region_zones: &[String],
    offers: impl Fn(&str, &str) -> bool,
    by: &OfferedBy<'_>,
) -> Result<(), ConfigError> {
    let t = &group.instance_type;
    let err = |key: &str, reason: String| ConfigError::Group {
        group: group.id.clone(),
        key: key.into(),
        reason,
    };
    if group.zones.is_empty() && !region_zones.iter().any(|z| offers(z, t)) {
        return Err(err(
            "instance_type",
            format!(
                "{t} is not {} in any zone of {} ({})",
                by.offered, config.region, by.source
            ),
        ));
    }
    if let Some(zone) = group.zones.iter().find(|z| !offers(z, t)) {
        return Err(err(
            "zones",
            format!(
                "{t} is not {} in {zone} ({}); drop the zone or pick another {}",
                by.offered, by.source, by.kind
            ),
        ));
    }
    Ok(())
}

/// The simulator's admin API: `POST /sim/v1/instances/{id}/interrupt` sends a
/// spot interruption notice to one instance now.
pub fn sim_routes(sim: Arc<SimCloud>) -> axum::Router {
    axum::Router::new()
        .route("/sim/v1/instances/{id}/interrupt", post(interrupt))
        .with_state(sim)
}

async fn interrupt(
    State(sim): State<Arc<SimCloud>>,
    Path(id): Path<String>,
) -> Result<Json<gpupool_cloud::Instance>, (StatusCode, String)> {
    sim.interrupt(&InstanceId::new(id)).map(Json).map_err(|e| {
        let code = match e {
            SimError::NoSuchInstance(_) => StatusCode::NOT_FOUND,
            SimError::NotSpot(_) | SimError::NotRunning(_) => StatusCode::CONFLICT,
            SimError::Config { .. } | SimError::StateFile { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (code, format!("{e}\n"))
    })
}
