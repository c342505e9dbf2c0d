//! Hourly prices with their history, so a cost over an interval is prorated
//! exactly across price changes (spot prices move; a refresh may land in the
//! middle of the interval CA asks about).

use arc_swap::ArcSwap;
use gpupool_cloud::{CapacityType, Price};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long superseded prices are kept to price past intervals.
pub const HISTORY: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("no {capacity_type} price known for instance type {instance_type}")]
pub struct NoPrice {
    pub instance_type: String,
    pub capacity_type: CapacityType,
}

/// Price of one (instance type, capacity type, zone) over time: each entry
/// holds from its instant until the next. The first holds since forever.
type Series = Vec<(SystemTime, f64)>;

/// One instance type's series, per capacity type and zone (a handful: a
/// linear scan beats hashing).
type ByType = Vec<(CapacityType, Option<String>, Series)>;

/// Prices by instance type, capacity type and zone, with history.
///
/// Keyed by instance type first, so a lookup borrows the caller's `&str`
/// instead of building an owned key (this runs per instance per sync).
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    series: HashMap<String, ByType>,
    /// When the last refresh landed (`None`: the starting table only).
    pub updated_at: Option<SystemTime>,
}

impl PriceBook {
    /// A book of one table that holds for all time.
    pub fn new(prices: Vec<Price>) -> Self {
        let mut book = Self::default();
        for p in prices {
            *book.entry(&p) = vec![(SystemTime::UNIX_EPOCH, p.usd_per_hour)];
        }
        book
    }

    /// The series of `p`'s instance type, capacity type and zone, created empty.
    fn entry(&mut self, p: &Price) -> &mut Series {
        let by_type = self.series.entry(p.instance_type.clone()).or_default();
        let at = match by_type
            .iter()
            .position(|(c, z, _)| *c == p.capacity_type && *z == p.zone)
        {
            Some(at) => at,
            None => {
                by_type.push((p.capacity_type, p.zone.clone(), Vec::new()));
                by_type.len() - 1
            }
        };
        &mut by_type[at].2
    }

    /// The next book: `prices` hold from `at` on. Prices absent from `prices`
    /// keep their last value (a partial refresh never loses a price); history
    /// older than [`HISTORY`] is dropped.
    pub fn with(&self, prices: &[Price], at: SystemTime) -> Self {
        let mut next = self.clone();
        for p in prices {
            let s = next.entry(p);
            match s.last() {
                Some((_, v)) if *v == p.usd_per_hour => {}
                // A type seen for the first time holds since forever.
                None => s.push((SystemTime::UNIX_EPOCH, p.usd_per_hour)),
                Some(_) => s.push((at, p.usd_per_hour)),
            }
        }
        let horizon = at.checked_sub(HISTORY).unwrap_or(SystemTime::UNIX_EPOCH);
        for (_, _, s) in next.series.values_mut().flatten() {
            // Keep the last entry at or before the horizon: it holds at it.
            let keep_from = s.iter().rposition(|(t, _)| *t <= horizon).unwrap_or(0);
            s.drain(..keep_from);
        }
        next.updated_at = Some(at);
        next
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The series that price `instance_type` in `zone`: that zone's, else the
    /// region-wide one, else (no zone given, or none known) every zone's, so
    /// the caller can take the highest and never understate.
    fn candidates(
        &self,
        instance_type: &str,
        capacity_type: CapacityType,
        zone: Option<&str>,
    ) -> impl Iterator<Item = &Series> {
        let by_type = self
            .series
            .get(instance_type)
            .map_or(&[][..], Vec::as_slice);
        let get = |zone: Option<&str>| {
            by_type
                .iter()
                .find(|(c, z, _)| *c == capacity_type && z.as_deref() == zone)
                .map(|(_, _, s)| s)
        };
        let exact = zone.and_then(|z| get(Some(z))).or_else(|| get(None));
        let every_zone = if exact.is_some() { &[][..] } else { by_type };
        exact.into_iter().chain(
            every_zone
                .iter()
                .filter(move |(c, _, _)| *c == capacity_type)
                .map(|(_, _, s)| s),
        )
    }

    fn no_price(instance_type: &str, capacity_type: CapacityType) -> NoPrice {
        NoPrice {
            instance_type: instance_type.to_owned(),
            capacity_type,
        }
    }

    /// The current hourly price (the highest of the region's zones when no
    /// zone is named).
    pub fn hourly(
        &self,
        instance_type: &str,
        capacity_type: CapacityType,
        zone: Option<&str>,
    ) -> Result<f64, NoPrice> {
        self.candidates(instance_type, capacity_type, zone)
            .filter_map(|s| s.last().map(|(_, v)| *v))
            .reduce(f64::max)
            .ok_or_else(|| Self::no_price(instance_type, capacity_type))
    }

    /// The cost of running one instance from `start` to `end`, each price
    /// counted for the part of the interval it held.
    pub fn cost(
        &self,
        instance_type: &str,
        capacity_type: CapacityType,
        zone: Option<&str>,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<f64, NoPrice> {
        self.candidates(instance_type, capacity_type, zone)
            .map(|s| integrate(s, start, end))
            .reduce(f64::max)
            .ok_or_else(|| Self::no_price(instance_type, capacity_type))
    }
}

fn hours(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from)
        .map_or(0.0, |d| d.as_secs_f64() / 3600.0)
}

/// Σ price × hours over the parts of [start, end] each entry of `s` held.
fn integrate(s: &Series, start: SystemTime, end: SystemTime) -> f64 {
    let mut total = 0.0;
    for (i, (from, price)) in s.iter().enumerate() {
        // The first entry holds since forever.
        let from = if i == 0 { start } else { (*from).max(start) };
        let to = s.get(i + 1).map_or(end, |(next, _)| (*next).min(end));
        if to > from {
            total += price * hours(from, to);
        }
    }
    total
}

/// The current price book, replaced whole when a refresh lands; readers never
/// wait on it.
#[derive(Debug, Default)]
pub struct Prices {
    book: ArcSwap<PriceBook>,
}

impl Prices {
    pub fn new(book: PriceBook) -> Self {
        Self {
            book: ArcSwap::from_pointee(book),
        }
    }

    pub fn load(&self) -> Arc<PriceBook> {
        self.book.load_full()
    }

    /// Folds a refresh in: `prices` hold from `at`.
    pub fn update(&self, prices: &[Price], at: SystemTime) {
        self.book.rcu(|b| b.with(prices, at));
    }
}
