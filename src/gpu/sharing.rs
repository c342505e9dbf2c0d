//! `gpupool.dev/gpu-sharing`: what the NVIDIA device plugin will advertise when
//! GPUs are split (MIG) or shared (time-slicing), checked against the GPU model.
//!
//! Syntax: `time-slicing:<N>`, `mig:<layout>`, or both joined by `+`
//! (`mig:all-1g.10gb+time-slicing:2`). A layout is `all-<profile>` (as many as
//! fit), `all-balanced` (the GPU operator's balanced layout) or a list
//! `<profile>=<count>,…` per GPU. Every GPU of a node gets the same layout.
//! `gpupool.dev/mig-strategy: single|mixed` is the device plugin's MIG strategy
//! (default `single`, as the GPU operator's).

use super::mig::{self, Geometry, Layout, MigError};
use gpupool_cloud::GpuInfo;

/// The annotation as written, before the GPU model is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharingSpec {
    pub mig: Option<MigSpec>,
    /// Time-slicing replicas per GPU (or per MIG instance).
    pub replicas: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigSpec {
    All(String),
    Balanced,
    Custom(Vec<(String, u32)>),
}

impl MigSpec {
    /// The name the GPU operator's MIG manager knows the layout by
    /// (`nvidia.com/mig.config`).
    pub fn config_name(&self) -> String {
        match self {
            MigSpec::All(p) => format!("all-{p}"),
            MigSpec::Balanced => "all-balanced".into(),
            MigSpec::Custom(list) => list
                .iter()
                .map(|(p, n)| format!("{p}x{n}"))
                .collect::<Vec<_>>()
                .join("-"),
        }
    }
}

/// The device plugin's MIG strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MigStrategy {
    /// Every GPU split the same way, slices advertised as `nvidia.com/gpu`.
    #[default]
    Single,
    /// Each profile advertised as its own resource, `nvidia.com/mig-<profile>`.
    Mixed,
}

/// Sharing resolved against the group's GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sharing {
    pub mig: Option<MigSharing>,
    /// Time-slicing replicas; 1 when not time-sliced.
    pub replicas: u32,
}

impl Sharing {
    /// Whole GPUs, each advertised once.
    pub fn none() -> Self {
        Self {
            mig: None,
            replicas: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigSharing {
    pub geometry: &'static Geometry,
    /// Instances per GPU.
    pub layout: Layout,
    pub strategy: MigStrategy,
    pub config_name: String,
}

pub fn parse(value: &str) -> Result<SharingSpec, String> {
    let mut spec = SharingSpec {
        mig: None,
        replicas: None,
    };
    for term in value.split('+').map(str::trim) {
        if let Some(n) = term.strip_prefix("time-slicing:") {
            if spec.replicas.is_some() {
                return Err("time-slicing given twice".into());
            }
            spec.replicas = Some(match n.parse::<u32>() {
                Ok(r) if (2..=64).contains(&r) => r,
                _ => {
                    return Err(format!(
                        "time-slicing replicas {n:?} must be a whole number from 2 to 64"
                    ));
                }
            });
        } else if let Some(layout) = term.strip_prefix("mig:") {
            if spec.mig.is_some() {
                return Err("mig given twice".into());
            }
            spec.mig = Some(parse_layout(layout)?);
        } else {
            return Err(format!(
                "{term:?} is not time-slicing:N or mig:<layout> (e.g. mig:all-1g.10gb, mig:1g.10gb=3,2g.20gb=2, mig:all-1g.10gb+time-slicing:2)"
            ));
        }
    }
    Ok(spec)
}

fn parse_layout(layout: &str) -> Result<MigSpec, String> {
    if layout.is_empty() {
        return Err("mig: needs a layout, e.g. mig:all-1g.10gb".into());
    }
    if layout == "all-balanced" {
        return Ok(MigSpec::Balanced);
    }
    if let Some(profile) = layout.strip_prefix("all-") {
        return Ok(MigSpec::All(profile.to_owned()));
    }
    layout
        .split(',')
        .map(|item| {
            let (profile, count) = item.split_once('=').ok_or_else(|| {
                format!("layout item {item:?} is not <profile>=<count>, e.g. 1g.10gb=3")
            })?;
            let count = count
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("count {count:?} of {profile} is not a positive whole number")
                })?;
            Ok((profile.trim().to_owned(), count))
        })
        .collect::<Result<Vec<_>, String>>()
        .map(MigSpec::Custom)
}

/// Checks the spec against the GPU and works out what will be advertised.
pub fn resolve(
    spec: &SharingSpec,
    strategy: MigStrategy,
    gpu: Option<&GpuInfo>,
) -> Result<Sharing, String> {
    let gpu = gpu.ok_or("the instance type has no GPU to share")?;
    let replicas = spec.replicas.unwrap_or(1);
    let Some(mig_spec) = &spec.mig else {
        return Ok(Sharing {
            mig: None,
            replicas,
        });
    };
    let geometry = mig::geometry(&gpu.accelerator).ok_or_else(|| {
        let capable: Vec<_> = mig::GEOMETRIES.iter().map(|g| g.accelerator).collect();
        format!(
            "{} GPUs do not support MIG (MIG-capable: {})",
            gpu.accelerator,
            capable.join(", ")
        )
    })?;
    let unknown = |name: &str| {
        let names: Vec<_> = geometry.profiles.iter().map(|p| p.name).collect();
        format!(
            "{} has no MIG profile {name:?}; its profiles: {}",
            geometry.accelerator,
            names.join(", ")
        )
    };
    let layout: Layout = match mig_spec {
        MigSpec::All(name) => {
            let profile = geometry.profile(name).ok_or_else(|| unknown(name))?;
            vec![(profile, geometry.max_of(profile))]
        }
        MigSpec::Balanced => geometry
            .balanced
            .iter()
            .map(|(name, n)| Ok((geometry.profile(name).ok_or_else(|| unknown(name))?, *n)))
            .collect::<Result<_, String>>()?,
        MigSpec::Custom(list) => {
            let mut layout: Layout = Vec::new();
            for (name, n) in list {
                let profile = geometry.profile(name).ok_or_else(|| unknown(name))?;
                match layout.iter_mut().find(|(p, _)| p.name == profile.name) {
                    // Saturating: a repeated profile's counts may add past
                    // u32 (`1g.10gb=4294967295,1g.10gb=2`); check refuses it.
                    Some((_, count)) => *count = count.saturating_add(*n),
                    None => layout.push((profile, *n)),
                }
            }
            layout
        }
    };
    geometry.check(&layout).map_err(|e| {
        let limit = match e {
            MigError::TooManyCompute { .. } => {
                format!(", the GPU has {}", geometry.compute_slices)
            }
            MigError::TooManyMemory { .. } => format!(", the GPU has {}", geometry.memory_slices),
            _ => String::new(),
        };
        format!(
            "MIG layout {} does not fit {}: it {e}{limit}; layouts that fit: {}",
            mig_spec.config_name(),
            geometry.accelerator,
            geometry.fitting_layouts().join(", ")
        )
    })?;
    if strategy == MigStrategy::Single && layout.len() > 1 {
        return Err(format!(
            "the single MIG strategy advertises one kind of slice, but layout {} has {}; use gpupool.dev/mig-strategy: mixed or an all-<profile> layout",
            mig_spec.config_name(),
            layout
                .iter()
                .map(|(p, _)| p.name)
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }
    Ok(Sharing {
        mig: Some(MigSharing {
            geometry,
            layout,
            strategy,
            config_name: mig_spec.config_name(),
        }),
        replicas,
    })
}
