//! `gpupool.dev/max-hourly-price`: a group never buys a node above its cap.
//!
//! Spot is bought with the cap as the bid (the cloud refuses spot above it,
//! where it has bids); what the price book already shows above the cap is not
//! asked for at all: the request is narrowed to the capacity types under it
//! (spot-then-on-demand may become spot or on-demand only), or refused as an
//! out-of-resources creation error, so CA moves on to another group.

use super::PriceBook;
use crate::config::GroupSpec;
use gpupool_cloud::{CapacityType, CloudError, CreateRequest, PurchaseOption};

/// The error code of a refused purchase.
pub const PRICE_CAP_EXCEEDED: &str = "PriceCapExceeded";

/// Whether `capacity` is under the cap: `Ok(None)` if its price is unknown.
fn under(
    book: &PriceBook,
    spec: &GroupSpec,
    capacity: CapacityType,
    cap: f64,
) -> Result<Option<f64>, f64> {
    let ty = &spec.instance_type.name;
    let zones: Vec<Option<&str>> = if spec.zones.is_empty() {
        vec![None]
    } else {
        spec.zones.iter().map(|z| Some(z.as_str())).collect()
    };
    // The cheapest zone decides: the cloud picks among the group's zones.
    let price = zones
        .into_iter()
        .filter_map(|z| book.hourly(ty, capacity, z).ok())
        .reduce(f64::min);
    match price {
        Some(p) if p > cap => Err(p),
        p => Ok(p),
    }
}

/// The request to send under the group's cap, or the refusal.
pub fn apply(
    book: &PriceBook,
    spec: &GroupSpec,
    mut request: CreateRequest,
) -> Result<CreateRequest, CloudError> {
    let Some(cap) = spec.annotations.max_hourly_price else {
        return Ok(request);
    };
    let spot = under(book, spec, CapacityType::Spot, cap);
    let on_demand = under(book, spec, CapacityType::OnDemand, cap);
    let refuse = |what: &str, price: f64| {
        CloudError::out_of_resources(
            PRICE_CAP_EXCEEDED,
            format!(
                "{what} price ${price:.4}/h of {} is above the group's gpupool.dev/max-hourly-price ${cap:.4}/h",
                spec.instance_type.name
            ),
        )
    };
    request.purchase = match (request.purchase, spot, on_demand) {
        (PurchaseOption::OnDemand, _, Err(p)) => return Err(refuse("on-demand", p)),
        (PurchaseOption::Spot, Err(p), _) => return Err(refuse("spot", p)),
        (PurchaseOption::SpotThenOnDemand, Err(s), Err(_)) => return Err(refuse("spot", s)),
        (PurchaseOption::SpotThenOnDemand, Err(_), Ok(_)) => PurchaseOption::OnDemand,
        (PurchaseOption::SpotThenOnDemand, Ok(_), Err(_)) => PurchaseOption::Spot,
        (purchase, _, _) => purchase,
    };
    if request.purchase != PurchaseOption::OnDemand {
        request.max_spot_price = Some(cap);
    }
    Ok(request)
}
