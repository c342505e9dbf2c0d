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

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    instance_type: String,
    capacity_type: CapacityType,
    /// `None`: every zone of the region.
    zone: Option<String>,
}

/// Prices by instance type, capacity type and zone, with history.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    series: HashMap<Key, Series>,
    /// When the last refresh landed (`None`: the starting table only).
    pub updated_at: Option<SystemTime>,
}

impl PriceBook {
    /// A book of one table that holds for all time.
    pub fn new(prices: Vec<Price>) -> Self {
        let mut book = Self::default();
        for p in prices {
            book.series
                .insert(key(&p), vec![(SystemTime::UNIX_EPOCH, p.usd_per_hour)]);
        }
        book
    }

    /// The next book: `prices` hold from `at` on. Prices absent from `prices`
    /// keep their last value (a partial refresh never loses a price); history
    /// older than [`HISTORY`] is dropped.
    pub fn with(&self, prices: &[Price], at: SystemTime) -> Self {
        let mut next = self.clone();
        for p in prices {
            let s = next.series.entry(key(p)).or_default();
            match s.last() {
                Some((_, v)) if *v == p.usd_per_hour => {}
                // A type seen for the first time holds since forever.
                None => s.push((SystemTime::UNIX_EPOCH, p.usd_per_hour)),
                Some(_) => s.push((at, p.usd_per_hour)),
            }
        }
        let horizon = at.checked_sub(HISTORY).unwrap_or(SystemTime::UNIX_EPOCH);
        for s in next.series.values_mut() {
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
    ) -> Vec<&Series> {
        let get = |zone: Option<&str>| {
            self.series.get(&Key {
                instance_type: instance_type.to_owned(),
                capacity_type,
                zone: zone.map(str::to_owned),
            })
        };
        if let Some(s) = zone.and_then(|z| get(Some(z))).or_else(|| get(None)) {
            return vec![s];
        }
        self.series
            .iter()
            .filter(|(k, _)| k.instance_type == instance_type && k.capacity_type == capacity_type)
            .map(|(_, s)| s)
            .collect()
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
            .iter()
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
            .iter()
            .map(|s| integrate(s, start, end))
            .reduce(f64::max)
            .ok_or_else(|| Self::no_price(instance_type, capacity_type))
    }
}

fn key(p: &Price) -> Key {
    Key {
        instance_type: p.instance_type.clone(),
        capacity_type: p.capacity_type,
        zone: p.zone.clone(),
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
