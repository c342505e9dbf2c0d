//! Built-in example traces that mirror what GPU clusters run, on the example config's
//! accelerators: interactive notebooks, a diurnal inference service, nightly training and a
//! batch-inference queue. Day 0 is a Monday; times are from midnight of day 0. The same
//! (name, days, seed) always gives the same trace. `docs/traces.md` describes each.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::trace::{PodSpec, Trace};

/// The built-in traces, as `gpupool simulate --trace` names them.
pub const NAMES: [&str; 4] = ["notebooks", "inference", "training", "batch"];

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// A built-in trace of `days` days (1..=366) from `seed`; an unknown name or a number of days
/// out of range gives None.
pub fn trace(name: &str, days: u32, seed: u64) -> Option<Trace> {
    if !(1..=366).contains(&days) {
        return None;
    }
    let index = NAMES.iter().position(|n| *n == name)?;
    // One stream per trace, so two traces of one seed are not in step.
    let mut rng =
        StdRng::seed_from_u64(seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let days = u64::from(days);
    let pods = match index {
        0 => notebooks(&mut rng, days),
        1 => inference(&mut rng, days),
        2 => training(&mut rng, days),
        _ => batch(&mut rng, days),
    };
    Some(Trace::sorted(name, pods))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Monday to Friday (day 0 is a Monday).
fn weekday(day: u64) -> bool {
    day % 7 < 5
}

/// The team of data scientists.
const USERS: u64 = 20;
/// Sessions start no earlier than this (plus up to 90 minutes)…
const FIRST_SESSION: u64 = 8 * HOUR + 45 * MINUTE;
/// …no later than this…
const LAST_START: u64 = 17 * HOUR + 30 * MINUTE;
/// …and end by this.
const LAST_END: u64 = 18 * HOUR + 30 * MINUTE;

/// 20 data scientists on weekdays: each opens 1–3 notebook sessions of 30 min–3 h between
/// ~09:00 and ~18:30, one GPU each: an A10G (shareable: a time-sliced share serves a
/// session), or (a quarter of them) a MIG slice of an A100 80GB. Not interruptible: a
/// notebook's state is in memory.
fn notebooks(rng: &mut StdRng, days: u64) -> Vec<PodSpec> {
    // Each user keeps their kind of GPU all along.
    let kinds: Vec<Option<&str>> = (0..USERS)
        .map(|_| {
            rng.random_bool(0.25)
                .then(|| match rng.random_range(0..10) {
                    0..5 => "1g.10gb",
                    5..8 => "2g.20gb",
                    _ => "3g.40gb",
                })
        })
        .collect();
    let mut pods = Vec::new();
    for day in (0..days).filter(|d| weekday(*d)) {
        let midnight = day * DAY;
        for (user, kind) in kinds.iter().enumerate() {
            let sessions = rng.random_range(1..=3);
            let mut start = FIRST_SESSION + rng.random_range(0..=90) * MINUTE;
            for n in 0..sessions {
                if start > LAST_START {
                    break;
                }
                let length = (rng.random_range(30..=180) * MINUTE + rng.random_range(0..MINUTE))
                    .min(LAST_END - start);
                pods.push(PodSpec {
                    name: format!("nb-{day}-{user:02}-{n}"),
                    namespace: "data-science".to_owned(),
                    arrival: secs(midnight + start),
                    duration: secs(length),
                    gpus: u32::from(kind.is_none()),
                    slice: kind.map(str::to_owned),
                    accelerator: Some(
                        if kind.is_some() {
                            "nvidia-a100-80gb"
                        } else {
                            "nvidia-a10g"
                        }
                        .to_owned(),
                    ),
                    interruptible: false,
                    checkpoint_every: None,
                    // A session computes in bursts between long idle
                    // stretches: a time-sliced share serves it.
                    shareable: kind.is_none(),
                });
                start += length + rng.random_range(10..=90) * MINUTE;
            }
        }
    }
    pods
}

/// Replicas are resized every this often…
const INFERENCE_STEP: u64 = 15 * MINUTE;
/// …and a replica lives at least this long once started.
const MIN_REPLICA_LIFE: u64 = 30 * MINUTE;

/// Replicas the service needs at `t` (seconds since day 0's midnight), before noise: 2 at
/// 03:00, rising to 12 (weekdays) or 7 (weekends) at 15:00.
fn inference_demand(t: u64) -> f64 {
    let day = t / DAY;
    #[allow(clippy::cast_precision_loss)] // under a day of seconds
    let hour = (t % DAY) as f64 / HOUR as f64;
    let rise = (1.0 - (std::f64::consts::TAU * (hour - 3.0) / 24.0).cos()) / 2.0;
    let peak = if weekday(day) { 10.0 } else { 5.0 };
    2.0 + peak * rise * rise
}

/// A diurnal inference service on L4s: every 15 minutes the replica count follows the day's
/// demand curve (plus noise). A new replica is a new pod; on scale-down the youngest replicas
/// at least 30 min old go. Interruptible, with a 1 s checkpoint: a stateless replica loses
/// no work when interrupted, only its capacity until replaced.
fn inference(rng: &mut StdRng, days: u64) -> Vec<PodSpec> {
    let mut pods = Vec::new();
    let end = days * DAY;
    // (start, name) of the running replicas, oldest first.
    let mut running: Vec<(u64, String)> = Vec::new();
    let mut started_today = 0u32;
    fn stop(pods: &mut Vec<PodSpec>, (start, name): (u64, String), t: u64) {
        pods.push(PodSpec {
            name,
            namespace: "serving".to_owned(),
            arrival: secs(start),
            duration: secs(t - start),
            gpus: 1,
            slice: None,
            accelerator: Some("nvidia-l4".to_owned()),
            interruptible: true,
            checkpoint_every: Some(secs(1)),
            shareable: false,
        });
    }
    for t in (0..end).step_by(usize::try_from(INFERENCE_STEP).expect("small")) {
        if t % DAY == 0 {
            started_today = 0;
        }
        let noise = rng.random_range(-0.7..=0.7);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 1 to 13
        let want = (inference_demand(t) + noise).round().max(1.0) as usize;
        while running.len() < want {
            running.push((t, format!("inf-{}-{started_today}", t / DAY)));
            started_today += 1;
        }
        let mut excess = running.len().saturating_sub(want);
        let mut i = running.len();
        while excess > 0 && i > 0 {
            i -= 1;
            if t - running[i].0 >= MIN_REPLICA_LIFE {
                let replica = running.remove(i);
                stop(&mut pods, replica, t);
                excess -= 1;
            }
        }
    }
    for replica in running {
        stop(&mut pods, replica, end);
    }
    pods
}

/// Nightly training: 1–2 single-node jobs a night, each one pod of 8 H100s starting around
/// 01:00 (00:40–01:40) for 3–6 h, checkpointing every 30 min, on spot when it can; a quarter of
/// the nights also a 2-node job (two pods, same start and length).
fn training(rng: &mut StdRng, days: u64) -> Vec<PodSpec> {
    fn job(pods: &mut Vec<PodSpec>, rng: &mut StdRng, day: u64, n: u32, nodes: u32) {
        let arrival = day * DAY + HOUR - 20 * MINUTE + rng.random_range(0..=60 * MINUTE);
        let duration = rng.random_range(180..=360) * MINUTE;
        for pod in 0..nodes {
            pods.push(PodSpec {
                name: format!("tr-{day}-{n}-{pod}"),
                namespace: "research".to_owned(),
                arrival: secs(arrival),
                duration: secs(duration),
                gpus: 8,
                slice: None,
                accelerator: Some("nvidia-h100-80gb".to_owned()),
                interruptible: true,
                checkpoint_every: Some(secs(30 * MINUTE)),
                shareable: false,
            });
        }
    }
    let mut pods = Vec::new();
    for day in 0..days {
        let single = rng.random_range(1..=2);
        for n in 0..single {
            job(&mut pods, rng, day, n, 1);
        }
        if rng.random_bool(0.25) {
            job(&mut pods, rng, day, single, 2);
        }
    }
    pods
}

/// When the batch queue takes submissions (plus up to 20 minutes).
const SUBMISSIONS: [u64; 4] = [6 * HOUR, 11 * HOUR, 15 * HOUR, 20 * HOUR];

/// A batch-inference queue: at four submission times a day (06:00, 11:00, 15:00, 20:00; on
/// weekends each only half the time) a burst of 20–60 jobs arrives within 5 minutes, each one
/// L40S for 10–40 min, interruptible and checkpointing every 5 min.
fn batch(rng: &mut StdRng, days: u64) -> Vec<PodSpec> {
    let mut pods = Vec::new();
    for day in 0..days {
        for (burst, at) in SUBMISSIONS.iter().enumerate() {
            if !weekday(day) && !rng.random_bool(0.5) {
                continue;
            }
            let submitted = day * DAY + at + rng.random_range(0..=20 * MINUTE);
            for n in 0..rng.random_range(20..=60) {
                pods.push(PodSpec {
                    name: format!("bt-{day}-{burst}-{n}"),
                    namespace: "batch".to_owned(),
                    arrival: secs(submitted + rng.random_range(0..=5 * MINUTE)),
                    duration: secs(rng.random_range(10 * MINUTE..=40 * MINUTE)),
                    gpus: 1,
                    slice: None,
                    accelerator: Some("nvidia-l40s".to_owned()),
                    interruptible: true,
                    checkpoint_every: Some(secs(5 * MINUTE)),
                    shareable: false,
                });
            }
        }
    }
    pods
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The day, and seconds since its midnight.
    fn clock(d: Duration) -> (u64, u64) {
        (d.as_secs() / DAY, d.as_secs() % DAY)
    }

    /// Pods running at `t` seconds.
    fn running_at(trace: &Trace, t: u64) -> usize {
        let t = secs(t);
        trace
            .pods
            .iter()
            .filter(|p| p.arrival <= t && t < p.arrival + p.duration)
            .count()
    }

    #[test]
    fn deterministic_per_seed_and_valid() {
        for name in NAMES {
            let a = trace(name, 14, 7).unwrap();
            assert_eq!(a, trace(name, 14, 7).unwrap(), "{name}");
            assert_ne!(a, trace(name, 14, 8).unwrap(), "{name}");
            assert_eq!(a.name, name);
            // Valid, sorted and unique: it round-trips through the checked readers.
            assert_eq!(Trace::from_csv(name, &a.to_csv()).unwrap(), a, "{name}");
            assert_eq!(Trace::new(name, a.pods.clone()).unwrap(), a, "{name}");
            assert!(a.span() <= secs(15 * DAY), "{name}");
        }
    }

    #[test]
    fn unknown_names_and_day_counts() {
        assert!(trace("chaos", 7, 1).is_none());
        assert!(trace("notebooks", 0, 1).is_none());
        assert!(trace("notebooks", 367, 1).is_none());
        assert!(trace("batch", 366, 1).unwrap().span() > secs(365 * DAY));
    }

    #[test]
    fn notebooks_on_weekdays_in_working_hours() {
        let trace = trace("notebooks", 14, 42).unwrap();
        let mut per_user_day = std::collections::BTreeMap::new();
        let mut kinds = std::collections::BTreeSet::new();
        for pod in &trace.pods {
            let (day, at) = clock(pod.arrival);
            assert!(weekday(day), "{pod:?}");
            assert!((FIRST_SESSION..=LAST_START).contains(&at), "{pod:?}");
            assert!(at + pod.duration.as_secs() <= LAST_END, "{pod:?}");
            assert!(pod.duration >= secs(30 * MINUTE), "{pod:?}");
            assert!(pod.duration <= secs(3 * HOUR + MINUTE), "{pod:?}");
            assert_eq!(pod.namespace, "data-science");
            assert!(!pod.interruptible && pod.checkpoint_every.is_none());
            match (pod.accelerator.as_deref(), pod.slice.as_deref(), pod.gpus) {
                (Some("nvidia-a10g"), None, 1) => {}
                (Some("nvidia-a100-80gb"), Some(s @ ("1g.10gb" | "2g.20gb" | "3g.40gb")), 0) => {
                    kinds.insert(s);
                }
                other => panic!("unexpected GPU {other:?}"),
            }
            let user = pod.name.split('-').nth(2).unwrap().to_owned();
            assert!(pod.name.starts_with(&format!("nb-{day}-")), "{}", pod.name);
            *per_user_day.entry((day, user)).or_insert(0) += 1;
        }
        // 20 users on each of the 10 weekdays, 1–3 sessions each.
        assert_eq!(per_user_day.len(), 200);
        assert!(per_user_day.values().all(|n| (1..=3).contains(n)));
        assert!(!kinds.is_empty());
        let a10g = trace
            .pods
            .iter()
            .filter(|p| p.accelerator.as_deref() == Some("nvidia-a10g"))
            .count();
        assert!(a10g * 2 > trace.pods.len(), "mostly A10G");
    }

    #[test]
    fn inference_follows_the_day() {
        let trace = trace("inference", 7, 42).unwrap();
        for pod in &trace.pods {
            assert_eq!(pod.accelerator.as_deref(), Some("nvidia-l4"));
            assert_eq!((pod.gpus, pod.namespace.as_str()), (1, "serving"));
            assert!(pod.interruptible && pod.checkpoint_every == Some(secs(1)));
            // Pods live at least 30 min, except those the trace's end cuts.
            assert!(
                pod.duration >= secs(MIN_REPLICA_LIFE)
                    || pod.arrival + pod.duration == secs(7 * DAY),
                "{pod:?}"
            );
        }
        for day in 0..7 {
            let night = running_at(&trace, day * DAY + 3 * HOUR);
            let peak = running_at(&trace, day * DAY + 15 * HOUR);
            assert!((1..=4).contains(&night), "day {day} night {night}");
            assert!(peak > night + 2, "day {day}: peak {peak}, night {night}");
            if weekday(day) {
                assert!((10..=14).contains(&peak), "day {day} peak {peak}");
            } else {
                assert!((5..=9).contains(&peak), "day {day} peak {peak}");
            }
        }
        assert_eq!(trace.peak_gpus().len(), 1);
    }

    #[test]
    fn training_starts_near_one() {
        let trace = trace("training", 28, 42).unwrap();
        let mut two_node = 0;
        for pod in &trace.pods {
            let (_, at) = clock(pod.arrival);
            assert!((40 * MINUTE..=100 * MINUTE).contains(&at), "{pod:?}");
            assert!((secs(3 * HOUR)..=secs(6 * HOUR)).contains(&pod.duration));
            assert_eq!(pod.gpus, 8);
            assert_eq!(pod.accelerator.as_deref(), Some("nvidia-h100-80gb"));
            assert!(pod.interruptible && pod.checkpoint_every == Some(secs(30 * MINUTE)));
            assert_eq!(pod.namespace, "research");
            if pod.name.ends_with("-1") {
                two_node += 1;
                let partner = pod.name.strip_suffix('1').unwrap().to_owned() + "0";
                let partner = trace.pods.iter().find(|p| p.name == partner).unwrap();
                assert_eq!(
                    (partner.arrival, partner.duration),
                    (pod.arrival, pod.duration)
                );
            }
        }
        assert!(two_node > 0);
        let jobs_per_night = trace.pods.len() as f64 / 28.0;
        assert!((1.0..=3.0).contains(&jobs_per_night), "{jobs_per_night}");
    }

    #[test]
    fn batch_arrives_in_bursts() {
        let trace = trace("batch", 7, 42).unwrap();
        for pod in &trace.pods {
            let (day, at) = clock(pod.arrival);
            assert!(
                SUBMISSIONS
                    .iter()
                    .any(|s| (*s..=*s + 25 * MINUTE).contains(&at)),
                "{pod:?}"
            );
            assert!((secs(10 * MINUTE)..=secs(40 * MINUTE)).contains(&pod.duration));
            assert_eq!(
                (pod.gpus, pod.accelerator.as_deref()),
                (1, Some("nvidia-l40s"))
            );
            assert!(pod.interruptible && pod.checkpoint_every == Some(secs(5 * MINUTE)));
            assert_eq!(pod.namespace, "batch");
            assert!(pod.name.starts_with(&format!("bt-{day}-")));
        }
        // Every weekday has its four bursts of 20–60.
        for day in 0..5 {
            for burst in 0..4 {
                let prefix = format!("bt-{day}-{burst}-");
                let n = trace
                    .pods
                    .iter()
                    .filter(|p| p.name.starts_with(&prefix))
                    .count();
                assert!((20..=60).contains(&n), "{prefix}: {n}");
            }
        }
        // A burst asks for at least 20 L40S at once; none run between bursts.
        assert!(trace.peak_gpus()[&Some("nvidia-l40s".to_owned())] >= 20.0);
        assert_eq!(running_at(&trace, 9 * HOUR), 0);
    }
}
