//! The catalog's SKUs indexed by the part of a VM they bill in one region.
//!
//! Descriptions name the part (`A2 Instance Core running in Americas`,
//! `Spot Preemptible A2 Instance Ram running in Americas`, `Nvidia L4 GPU
//! running in Belgium`, `Nvidia L4 GPU attached to Spot Preemptible VMs
//! running in Belgium`, `SSD backed Local Storage`); the region comes from
//! `serviceRegions`, not the description (whose place names vary: a
//! continent or a city). Only `OnDemand` and `Preemptible` usage types are
//! read: commitments, reservations, sole tenancy and DWS SKUs are other
//! prices, and their descriptions do not start like the parts'.

use google_cloud_billing_v1::model::Sku;
use gpupool_cloud::{CapacityType, CloudError};
use std::collections::HashMap;

/// Hours in a month, as Google converts monthly rates.
const HOURS_PER_MONTH: f64 = 730.0;

/// A billed part of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Part {
    /// A vCPU of a series (`A2 Instance`, `N1 Predefined Instance`).
    Core(String),
    /// A GiB of memory of a series.
    Ram(String),
    /// A GPU, by its SKU name (`Nvidia Tesla A100 GPU`).
    Gpu(String),
    /// A GiB of Local SSD.
    LocalSsd,
}

impl Part {
    /// The usage unit the part's rate must be in, and the divisor to hourly.
    fn unit(&self) -> (&'static str, f64) {
        match self {
            Part::Core(_) | Part::Gpu(_) => ("h", 1.0),
            Part::Ram(_) => ("GiBy.h", 1.0),
            Part::LocalSsd => ("GiBy.mo", HOURS_PER_MONTH),
        }
    }
}

/// Hourly USD rates per part and capacity type in one region.
#[derive(Debug)]
pub(super) struct Rates {
    region: String,
    rates: HashMap<(Part, CapacityType), f64>,
}

impl Rates {
    pub(super) fn new(region: &str) -> Self {
        Self {
            region: region.to_owned(),
            rates: HashMap::new(),
        }
    }

    pub(super) fn get(&self, part: &Part, capacity: CapacityType) -> Option<f64> {
        self.rates.get(&(part.clone(), capacity)).copied()
    }

    /// Index `sku` if it bills a part in the region. A SKU that names a part
    /// but prices it in another unit or currency is an error: the catalog
    /// changed shape, and a guess would misprice every node.
    pub(super) fn add(&mut self, sku: &Sku) -> Result<(), CloudError> {
        if !sku.service_regions.contains(&self.region) {
            return Ok(());
        }
        let Some(category) = &sku.category else {
            return Ok(());
        };
        let capacity = match category.usage_type.as_str() {
            "OnDemand" => CapacityType::OnDemand,
            "Preemptible" => CapacityType::Spot,
            _ => return Ok(()),
        };
        let Some(part) = part(
            &sku.description,
            &category.resource_family,
            &category.resource_group,
            capacity,
        ) else {
            return Ok(());
        };
        let rate = hourly(sku, &part)?;
        let e = self.rates.entry((part, capacity)).or_insert(rate);
        // Two SKUs for one part: the higher, so a price is never understated.
        *e = e.max(rate);
        Ok(())
    }
}

/// The part a SKU bills, from its description and category.
fn part(description: &str, family: &str, group: &str, capacity: CapacityType) -> Option<Part> {
    let spot = capacity == CapacityType::Spot;
    if family == "Storage" && group == "LocalSSD" {
        let expected = if spot {
            "SSD backed Local Storage attached to Spot Preemptible VMs"
        } else {
            "SSD backed Local Storage"
        };
        let rest = description.strip_prefix(expected)?;
        // Nothing more but a place ("… in Frankfurt").
        return (rest.is_empty() || rest.starts_with(" in ")).then_some(Part::LocalSsd);
    }
    if family != "Compute" || (!spot && description.contains("Spot Preemptible")) {
        return None;
    }
    if group == "GPU" {
        let sep = if spot {
            " attached to Spot Preemptible VMs running in "
        } else {
            " running in "
        };
        let (name, _) = description.split_once(sep)?;
        return Some(Part::Gpu(name.to_owned()));
    }
    let described = if spot {
        description.strip_prefix("Spot Preemptible ")?
    } else {
        description
    };
    if let Some((series, _)) = described.split_once(" Core running in ") {
        return Some(Part::Core(series.to_owned()));
    }
    if let Some((series, _)) = described.split_once(" Ram running in ") {
        return Some(Part::Ram(series.to_owned()));
    }
    None
}

/// The SKU's current hourly USD rate for `part`: the highest tier's price.
fn hourly(sku: &Sku, part: &Part) -> Result<f64, CloudError> {
    let bad = |why: String| {
        CloudError::other(
            "MalformedResponse",
            format!("SKU {} ({}): {why}", sku.sku_id, sku.description),
        )
    };
    let expression = sku
        .pricing_info
        .last()
        .and_then(|p| p.pricing_expression.as_ref())
        .ok_or_else(|| bad("no pricing expression".into()))?;
    let (unit, per_hour) = part.unit();
    if expression.usage_unit != unit {
        return Err(bad(format!(
            "priced per {:?}, expected per {unit:?}",
            expression.usage_unit
        )));
    }
    let mut best: Option<f64> = None;
    for tier in &expression.tiered_rates {
        let money = tier
            .unit_price
            .as_ref()
            .ok_or_else(|| bad("a tier without a price".into()))?;
        if money.currency_code != "USD" {
            return Err(bad(format!("priced in {:?}", money.currency_code)));
        }
        let value = money.units as f64 + f64::from(money.nanos) / 1e9;
        if !value.is_finite() || value < 0.0 {
            return Err(bad(format!("price {value}")));
        }
        best = Some(best.map_or(value, |b| b.max(value)));
    }
    best.map(|b| b / per_hour)
        .ok_or_else(|| bad("no tiered rates".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_name_parts() {
        let od = CapacityType::OnDemand;
        let spot = CapacityType::Spot;
        let core = |s: &str| Some(Part::Core(s.into()));
        assert_eq!(
            part("A2 Instance Core running in Americas", "Compute", "CPU", od),
            core("A2 Instance")
        );
        assert_eq!(
            part(
                "Spot Preemptible N1 Predefined Instance Core running in Americas",
                "Compute",
                "N1Standard",
                spot
            ),
            core("N1 Predefined Instance")
        );
        assert_eq!(
            part("G2 Instance Ram running in Iowa", "Compute", "RAM", od),
            Some(Part::Ram("G2 Instance".into()))
        );
        assert_eq!(
            part(
                "Nvidia L4 GPU attached to Spot Preemptible VMs running in Belgium",
                "Compute",
                "GPU",
                spot
            ),
            Some(Part::Gpu("Nvidia L4 GPU".into()))
        );
        assert_eq!(
            part(
                "SSD backed Local Storage attached to Spot Preemptible VMs",
                "Storage",
                "LocalSSD",
                spot
            ),
            Some(Part::LocalSsd)
        );
        // Not parts: a spot SKU read as on-demand, commitments, sole tenancy.
        assert_eq!(
            part(
                "Spot Preemptible A2 Instance Core running in Americas",
                "Compute",
                "CPU",
                od
            ),
            None
        );
        assert_eq!(
            part(
                "A2 Instance Core running in Americas",
                "Compute",
                "CPU",
                spot
            ),
            None
        );
        assert_eq!(
            part(
                "Commitment v1: A2 Cpu in Americas for 1 Year",
                "Compute",
                "CPU",
                od
            ),
            None
        );
        assert_eq!(
            part(
                "SSD backed Local Storage attached to Sole Tenancy VMs",
                "Storage",
                "LocalSSD",
                od
            ),
            None
        );
    }
}
