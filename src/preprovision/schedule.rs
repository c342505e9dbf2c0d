//! Scheduled floors: `gpupool.dev/preprovision` entries, each
//! `[name=]<cron> for <duration>: <count>`, separated by `;`.
//!
//! The cron is the five-field form Kubernetes CronJobs use (minute hour
//! day-of-month month day-of-week, names and `@daily`-style macros allowed,
//! Vixie semantics: a day matches if day-of-month *or* day-of-week does when
//! both are restricted), read in the group's time zone by `croner`.

use super::time::{Tz, at, instant};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use std::time::{Duration, SystemTime};

/// One window of a scheduled floor.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The name given before `=`, else the cron text.
    pub name: String,
    /// The cron as written.
    pub cron_text: String,
    cron: Cron,
    pub duration: Duration,
    pub count: u32,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.cron_text, self.duration, self.count)
            == (&other.name, &other.cron_text, other.duration, other.count)
    }
}

/// A window the floor holds for, lead time included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// When the window opens (the floor rose `lead` before).
    pub opens: SystemTime,
    pub closes: SystemTime,
}

const FORM: &str = "expected \"[name=]<cron> for <duration>: <count>\" (several separated by ';'), e.g. \"weekday-office=0 9 * * 1-5 for 10h: 4\"";

/// The macros Kubernetes' parser takes (besides `@every`, which is an
/// interval, not a time of day).
const MACROS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

const NAMES: &[&str] = &[
    "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "JAN", "FEB", "MAR", "APR", "MAY", "JUN",
    "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// A cron as Kubernetes CronJobs take it: five fields of numbers, names,
/// `*`, `?`, ranges, lists and steps, or a macro. croner's extensions
/// (`L`, `W`, `#`, a leading `+`) are refused, and so is a pattern no date
/// satisfies (`0 0 30 2 *`), which would never raise a floor.
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    let upper = text.trim().to_ascii_uppercase();
    if upper.starts_with('@') {
        if !MACROS.iter().any(|m| m.eq_ignore_ascii_case(text.trim())) {
            return Err(format!(
                "cron {text:?}: not a macro this takes ({})",
                MACROS.join(", ")
            ));
        }
    } else {
        for field in upper.split_whitespace() {
            // Kubernetes refuses an empty list item (`,`, `1,`); croner takes
            // it as matching nothing and searches for seconds before giving up.
            if field.split(',').any(str::is_empty) {
                return Err(format!("cron {text:?}: {field:?} has an empty list item"));
            }
            let mut rest = field.to_owned();
            for name in NAMES {
                rest = rest.replace(name, "");
            }
            if let Some(c) = rest
                .chars()
                .find(|c| !(c.is_ascii_digit() || "*?/,-".contains(*c)))
            {
                return Err(format!(
                    "cron {text:?}: {c:?} in {field:?} is not part of a Kubernetes cron field"
                ));
            }
        }
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("cron {text:?}: {e}"))?;
    // A Feb 29th pattern fires within 8 years; nothing later is a schedule.
    let from = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800); // 2000-01-01
    match next_after(&cron, from, Tz::UTC) {
        Some(t) if t < from + Duration::from_secs(9 * 366 * 86_400) => Ok(cron),
        _ => Err(format!("cron {text:?} never fires")),
    }
}

/// The first time `cron` fires strictly after `t` (whole seconds).
pub fn next_after(cron: &Cron, t: SystemTime, tz: Tz) -> Option<SystemTime> {
    let mut from = at(t, tz);
    // Around a daylight-saving change croner may answer a time at or before
    // the one asked; step past it.
    for _ in 0..4 {
        let found = cron.find_next_occurrence(&from, false).ok()?;
        if instant(&found) > t {
            return Some(instant(&found));
        }
        from = found + chrono::Duration::seconds(1);
    }
    None
}

/// The latest time `cron` fired at or before `t` (whole seconds).
pub fn latest_at_or_before(cron: &Cron, t: SystemTime, tz: Tz) -> Option<SystemTime> {
    let mut from = at(t, tz);
    for _ in 0..4 {
        let found = cron.find_previous_occurrence(&from, true).ok()?;
        if instant(&found) <= t {
            return Some(instant(&found));
        }
        from = found - chrono::Duration::seconds(1);
    }
    None
}

impl Schedule {
    /// Every entry of an annotation value; the error names the entry.
    pub fn parse_list(value: &str) -> Result<Vec<Self>, String> {
        let entries: Vec<&str> = value
            .split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Err(format!("no schedule; {FORM}"));
        }
        let list = entries
            .iter()
            .map(|e| Self::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, s) in list.iter().enumerate() {
            if list[..i].iter().any(|o| o.name == s.name) {
                return Err(format!("schedule name {:?} is used twice", s.name));
            }
        }
        Ok(list)
    }

    fn parse(entry: &str) -> Result<Self, String> {
        let (name, rest) = match entry.split_once('=') {
            Some((n, r)) => (Some(n.trim()), r.trim()),
            None => (None, entry),
        };
        if let Some(n) = name
            && (n.is_empty()
                || !n
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)))
        {
            return Err(format!(
                "schedule name {n:?} must be letters, digits, '-', '_' or '.'; {FORM}"
            ));
        }
        let (window, count) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{entry:?}: no ': <count>'; {FORM}"))?;
        let (cron_text, dur) = window
            .rsplit_once(" for ")
            .ok_or_else(|| format!("{entry:?}: no 'for <duration>'; {FORM}"))?;
        let cron_text = cron_text.split_whitespace().collect::<Vec<_>>().join(" ");
        let cron = parse_cron(&cron_text)?;
        let duration = humantime::parse_duration(dur.trim())
            .map_err(|e| format!("{entry:?}: duration {:?}: {e}", dur.trim()))?;
        if duration.is_zero() || duration > crate::config::MAX_DURATION {
            return Err(format!(
                "{entry:?}: the duration must be longer than zero and at most 31 days"
            ));
        }
        let count = count.trim().parse::<u32>().map_err(|_| {
            format!(
                "{entry:?}: count {:?} is not a whole number of nodes",
                count.trim()
            )
        })?;
        Ok(Self {
            name: name.map_or_else(|| cron_text.clone(), str::to_owned),
            cron_text,
            cron,
            duration,
            count,
        })
    }

    /// The window the floor holds for at `now`, if any: the latest start at or
    /// before `now + lead` whose window has not closed.
    pub fn window_at(&self, now: SystemTime, lead: Duration, tz: Tz) -> Option<Window> {
        let opens = latest_at_or_before(&self.cron, now + lead, tz)?;
        let closes = opens + self.duration;
        (closes > now).then_some(Window { opens, closes })
    }

    /// When the floor next rises (the next start less `lead`), after `now`.
    pub fn next_rise(&self, now: SystemTime, lead: Duration, tz: Tz) -> Option<SystemTime> {
        let start = next_after(&self.cron, now + lead, tz)?;
        Some(start.checked_sub(lead).unwrap_or(start))
    }
}
