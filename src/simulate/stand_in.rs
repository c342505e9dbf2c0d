//! A real cloud's config run on the simulated cloud: the simulator sells the
//! config's cloud's instance types, by their real names, shapes and list
//! prices (the built-in price table of the config's region), in the
//! config's zones. What the simulator cannot know of a real cloud (how long
//! a type boots, how much spot capacity a zone has) is taken from its own
//! type with the same GPU model and count, else the same count.

use super::SimulateError;
use crate::config::{CloudKind, Config};
use gpupool_cloud::InstanceType;
use gpupool_sim::{SimConfig, SimType};
use std::collections::BTreeSet;

/// Spot interruptions per spot instance-hour for a real cloud's config that
/// sets none: about one a day, which GPU spot capacity sees in busy regions.
pub const REAL_CLOUD_INTERRUPTIONS_PER_HOUR: f64 = 0.04;

/// The simulated cloud's settings and catalog for `config`: its own for
/// `cloud: sim`, stand-ins for a real cloud's, with notes on what was
/// assumed.
pub fn cloud_for(config: &Config) -> Result<(SimConfig, Vec<SimType>, Vec<String>), SimulateError> {
    if config.cloud == CloudKind::Sim {
        return Ok((
            config.sim.clone(),
            gpupool_sim::builtin_catalog(),
            Vec::new(),
        ));
    }
    let mut notes = vec![format!(
        "{} config: its instance types are sold at the built-in list prices for {}, and boot like the simulator's types with the same GPUs",
        config.cloud.as_str(),
        config.region
    )];
    let mut sim = config.sim.clone();
    sim.region.clone_from(&config.region);
    sim.zones = zones(config);
    if sim.spot_interruptions_per_hour == 0.0 {
        sim.spot_interruptions_per_hour = REAL_CLOUD_INTERRUPTIONS_PER_HOUR;
        notes.push(format!(
            "spot instances are interrupted {REAL_CLOUD_INTERRUPTIONS_PER_HOUR} times per hour each (about once a day); set sim.spot_interruptions_per_hour in the config to change it"
        ));
    }
    let catalog = catalog(config.cloud, &config.region)?;
    Ok((sim, catalog, notes))
}

/// The zones the groups name, else three of the region's, written as the
/// cloud writes them.
fn zones(config: &Config) -> Vec<String> {
    let named: BTreeSet<&String> = config.node_groups.iter().flat_map(|g| &g.zones).collect();
    if !named.is_empty() {
        return named.into_iter().cloned().collect();
    }
    let region = &config.region;
    match config.cloud {
        CloudKind::Gcp => ["a", "b", "c"].map(|z| format!("{region}-{z}")).to_vec(),
        CloudKind::Azure => ["1", "2", "3"].map(|z| format!("{region}-{z}")).to_vec(),
        CloudKind::Aws | CloudKind::Sim => ["a", "b", "c"].map(|z| format!("{region}{z}")).to_vec(),
    }
}

/// Every built-in type of `cloud` with a list price in `region`.
fn catalog(cloud: CloudKind, region: &str) -> Result<Vec<SimType>, SimulateError> {
    let prices = crate::pricing::table::table(cloud)
        .map(|t| t.prices(region))
        .unwrap_or_default();
    let own = gpupool_sim::builtin_catalog();
    let out: Vec<SimType> = crate::catalog::builtin(cloud)
        .into_iter()
        .filter_map(|t| {
            let price = |capacity| {
                prices
                    .iter()
                    .find(|p| p.instance_type == t.name && p.capacity_type == capacity)
                    .map(|p| p.usd_per_hour)
            };
            let on_demand = price(gpupool_cloud::CapacityType::OnDemand)?;
            // Where no spot price is known, spot is priced as on demand.
            let spot = price(gpupool_cloud::CapacityType::Spot).unwrap_or(on_demand);
            let like = likeness(&t, &own)?;
            Some(SimType {
                name: t.name.clone(),
                shape_of: t.name.clone(),
                vcpus: t.vcpus,
                memory_mib: t.memory_mib,
                arch: t.arch,
                gpu: t.gpu.clone(),
                on_demand_usd_per_hour: on_demand,
                spot_usd_per_hour: spot,
                boot: like.boot,
                spot_capacity_per_zone: like.spot_capacity_per_zone,
            })
        })
        .collect();
    if out.is_empty() {
        return Err(SimulateError::NoPrices {
            cloud: cloud.as_str(),
            region: region.to_owned(),
        });
    }
    Ok(out)
}

/// The simulator's type most like `t`: the same GPU model and count, else
/// the same count, else the nearest count; a CPU type for a CPU type.
fn likeness<'a>(t: &InstanceType, own: &'a [SimType]) -> Option<&'a SimType> {
    let Some(gpu) = &t.gpu else {
        return own.iter().find(|s| s.gpu.is_none());
    };
    let gpus = own.iter().filter_map(|s| s.gpu.as_ref().map(|g| (s, g)));
    gpus.clone()
        .find(|(_, g)| g.model == gpu.model && g.count == gpu.count)
        .or_else(|| gpus.clone().find(|(_, g)| g.count == gpu.count))
        .or_else(|| gpus.min_by_key(|(_, g)| g.count.abs_diff(gpu.count)))
        .map(|(s, _)| s)
}

/// Each group's instance type must be one the stand-in cloud sells (it
/// has a list price in the region). Alternatives that are not are left out
/// of the group, as types the cloud has none of; the notes say which.
pub fn keep_sold(
    specs: &mut [crate::config::GroupSpec],
    catalog: &[SimType],
    region: &str,
) -> Result<Vec<String>, SimulateError> {
    let mut notes = Vec::new();
    let sold = |name: &str| catalog.iter().any(|s| s.name == name);
    for spec in specs {
        if !sold(&spec.instance_type.name) {
            return Err(SimulateError::Unpriced {
                group: spec.id.to_string(),
                instance_type: spec.instance_type.name.clone(),
                region: region.to_owned(),
            });
        }
        let id = spec.id.to_string();
        spec.instance_types.retain(|name| {
            let keep = sold(name);
            if !keep {
                notes.push(format!(
                    "node group {id}: {name} has no list price for {region} in the built-in table; the simulation leaves this alternative out"
                ));
            }
            keep
        });
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_types_are_sold_at_their_list_prices_and_boot_like_their_gpus() {
        let catalog = catalog(CloudKind::Aws, "us-east-1").expect("priced");
        let table = crate::pricing::table::table(CloudKind::Aws).expect("aws table");
        let row = table
            .prices
            .iter()
            .find(|r| r.instance_type == "g6.xlarge" && r.region == "us-east-1")
            .expect("g6.xlarge is in the table");
        let g6 = catalog
            .iter()
            .find(|s| s.name == "g6.xlarge")
            .expect("stood in");
        assert_eq!(g6.on_demand_usd_per_hour, row.on_demand);
        assert_eq!(g6.spot_usd_per_hour, row.spot.unwrap_or(row.on_demand));
        assert_eq!(g6.gpu.as_ref().map(|g| g.count), Some(1));
        // An L4 boots like the simulator's L4.
        let own = gpupool_sim::builtin_catalog();
        let l4 = own.iter().find(|s| s.name == "gpu-1x-l4").expect("sim L4");
        assert_eq!(g6.boot, l4.boot);
        // Eight H100s boot like the simulator's eight H100s.
        let p5 = catalog
            .iter()
            .find(|s| s.name == "p5.48xlarge")
            .expect("p5 stood in");
        let h100 = own
            .iter()
            .find(|s| s.name == "gpu-8x-h100-80gb")
            .expect("sim H100");
        assert_eq!(p5.boot, h100.boot);
        assert_eq!(p5.spot_capacity_per_zone, h100.spot_capacity_per_zone);
    }

    #[test]
    fn a_region_without_prices_is_named() {
        let err = catalog(CloudKind::Gcp, "mars-north1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mars-north1"), "{err}");
        assert!(err.contains("gcp"), "{err}");
    }

    #[test]
    fn zones_are_the_groups_or_three_of_the_region_as_each_cloud_writes_them() {
        let config = |cloud: &str, region: &str, zones: &str| {
            let extra = match cloud {
                "aws" => "    aws: { launch_template: { name: lt } }\n",
                "gcp" => "    gcp: { instance_template: projects/p/global/instanceTemplates/t }\n",
                _ => "",
            };
            Config::from_yaml(&format!(
                "cloud: {cloud}\nregion: {region}\nnode_groups:\n  - id: g\n    min_size: 0\n    max_size: 1\n    instance_type: x\n    zones: {zones}\n{extra}"
            ))
            .expect("config")
        };
        assert_eq!(
            zones(&config("aws", "us-east-1", "[]")),
            ["us-east-1a", "us-east-1b", "us-east-1c"]
        );
        assert_eq!(
            zones(&config("gcp", "us-central1", "[]")),
            ["us-central1-a", "us-central1-b", "us-central1-c"]
        );
        assert_eq!(
            zones(&config("aws", "us-east-1", "[us-east-1d, us-east-1a]")),
            ["us-east-1a", "us-east-1d"]
        );
    }
}
