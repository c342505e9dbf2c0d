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

/// Five fields only, as Kubernetes takes them.
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("cron {text:?}: {e}"))
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
        if duration.is_zero() {
            return Err(format!("{entry:?}: the duration must be longer than zero"));
        }
        let count = count.trim().parse::<u32>().map_err(|_| {
            format!(
                "{entry:?}: count {:?} is not a whole number of nodes",
                count.trim()
            )
        })?;
        // A pattern no date satisfies (`0 0 30 2 *`) would never raise the
        // floor: almost certainly a mistake.
        if cron
            .find_next_occurrence(&at(SystemTime::UNIX_EPOCH, Tz::UTC), false)
            .is_err()
        {
            return Err(format!("cron {cron_text:?} never fires"));
        }
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
        let start = self
            .cron
            .find_previous_occurrence(&at(now + lead, tz), true)
            .ok()?;
        let opens = instant(&start);
        let closes = opens + self.duration;
        (closes > now).then_some(Window { opens, closes })
    }

    /// When the floor next rises (the next start less `lead`), after `now`.
    pub fn next_rise(&self, now: SystemTime, lead: Duration, tz: Tz) -> Option<SystemTime> {
        let start = self
            .cron
            .find_next_occurrence(&at(now + lead, tz), false)
            .ok()?;
        Some(instant(&start) - lead)
    }
}
