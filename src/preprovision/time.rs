//! Instants and wall-clock times in a named time zone.

use chrono::{DateTime, Utc};
use std::time::SystemTime;

pub use chrono_tz::Tz;

/// An IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!(
            "{name:?} is not an IANA time zone name (e.g. Europe/Berlin, America/New_York, UTC)"
        )
    })
}

/// `t` on the clocks of `tz`, to the whole second (cron times are whole
/// minutes; a fraction would be carried into every time croner finds).
pub fn at(t: SystemTime, tz: Tz) -> DateTime<Tz> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let whole = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    DateTime::<Utc>::from(whole).with_timezone(&tz)
}

pub fn instant<Z: chrono::TimeZone>(t: &DateTime<Z>) -> SystemTime {
    SystemTime::from(t.with_timezone(&Utc))
}

/// `t` as a person in `tz` would say it, seen from `now`: `19:00 CET` on the
/// same day, `Mon 09:00 CET` within the week ahead, else the date.
pub fn clock(t: SystemTime, now: SystemTime, tz: Tz) -> String {
    let local = at(t, tz);
    let ahead = t.duration_since(now).unwrap_or_default().as_secs();
    let format = if local.date_naive() == at(now, tz).date_naive() {
        "%H:%M %Z"
    } else if ahead > 0 && ahead < 6 * 86400 {
        "%a %H:%M %Z"
    } else {
        "%Y-%m-%d %H:%M %Z"
    };
    local.format(format).to_string()
}

/// Minutes since the epoch: the suffix the CronJob controller gives each
/// Job it creates (`<cronjob>-<minutes>`).
pub fn unix_minutes(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}
