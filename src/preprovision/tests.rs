use super::time::{at, instant};
use super::*;
use crate::config::{Config, GroupSpec};
use crate::metrics::Metrics;
use chrono::TimeZone as _;
use k8s_openapi::api::batch::v1::CronJob;

fn specs(groups: &str) -> Vec<Arc<GroupSpec>> {
    let yaml =
        format!("cloud: sim\nregion: sim-east-1\ntime_zone: Europe/Berlin\nnode_groups:\n{groups}");
    let config = Config::from_yaml(&yaml).unwrap();
    let catalog: Vec<_> = gpupool_sim::catalog::builtin()
        .iter()
        .map(|t| t.instance_type())
        .collect();
    config
        .validate(&catalog, Some(&config.sim.zones))
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect()
}

/// Floors over `specs`, with every group's boot prior at 8m: p90 10m.
fn floors(specs: &[Arc<GroupSpec>], hourly: &[f64]) -> Floors {
    let metrics = Arc::new(Metrics::new());
    let boots = Arc::new(Boots::new(specs, vec![true; specs.len()], metrics.clone()));
    let cx = crate::template::TemplateContext {
        region: "sim-east-1",
        gpu_label: crate::config::DEFAULT_GPU_LABEL,
    };
    let mut candidates = cronjob::candidates(
        specs,
        cx,
        &crate::pricing::PriceBook::new(Vec::new()),
        SystemTime::UNIX_EPOCH,
    );
    for (c, h) in candidates.iter_mut().zip(hourly) {
        c.hourly = Some(*h);
    }
    Floors::new(plans(specs), candidates, boots, metrics)
}

/// A wall-clock time in Berlin (2026-11-23 is a Monday).
fn berlin(day: u32, h: u32, m: u32) -> SystemTime {
    instant(
        &chrono_tz::Europe::Berlin
            .with_ymd_and_hms(2026, 11, day, h, m, 0)
            .unwrap(),
    )
}

fn utc(day: u32, h: u32, m: u32) -> SystemTime {
    instant(
        &chrono::Utc
            .with_ymd_and_hms(2026, 11, day, h, m, 0)
            .unwrap(),
    )
}

const OFFICE: &str = "
  - id: l4
    min_size: 0
    max_size: 6
    instance_type: gpu-1x-l4
    annotations:
      gpupool.dev/boot-latency: 8m
      gpupool.dev/preprovision: \"weekday-office=0 9 * * 1-5 for 10h: 4; 0 13 * * 1-5 for 1h: 5\"
";

#[test]
fn schedules_parse_with_names_and_refuse_what_is_wrong() {
    let list = Schedule::parse_list("weekday-office=0 9 * * MON-FRI for 10h: 4; @daily for 30m: 1")
        .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (
            list[0].name.as_str(),
            list[0].cron_text.as_str(),
            list[0].duration,
            list[0].count
        ),
        (
            "weekday-office",
            "0 9 * * MON-FRI",
            Duration::from_secs(36000),
            4
        )
    );
    assert_eq!(list[1].name, "@daily");
    for (bad, says) in [
        ("", "no schedule"),
        ("9am for 1h: 2", "cron \"9am\""),
        ("0 9 * * * * for 1h: 2", "5 fields"),
        ("0 9 * * 1-5 for 1h", "no ': <count>'"),
        ("0 9 * * 1-5: 2", "no 'for <duration>'"),
        ("0 9 * * 1-5 for soon: 2", "duration \"soon\""),
        ("0 9 * * 1-5 for 0s: 2", "longer than zero"),
        ("0 9 * * 1-5 for 500000000000y: 2", "at most 31 days"),
        ("0 9 * * 1-5 for 1h: -1", "not a whole number"),
        ("0 0 30 2 * for 1h: 1", "never fires"),
        (
            "0 9 L * * for 1h: 1",
            "'L' in \"L\" is not part of a Kubernetes cron field",
        ),
        ("0 9 * * 1#2 for 1h: 1", "'#' in \"1#2\""),
        ("0 9 * * +1 for 1h: 1", "'+' in \"+1\""),
        ("@every 1h for 1h: 1", "not a macro this takes"),
        ("a b=0 9 * * * for 1h: 1", "schedule name \"a b\""),
        (
            "x=0 9 * * * for 1h: 1; x=0 10 * * * for 1h: 1",
            "used twice",
        ),
    ] {
        let err = Schedule::parse_list(bad).unwrap_err();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}

#[test]
fn a_cron_field_with_an_empty_list_item_is_refused_without_a_search() {
    // Found by fuzzing (fuzz/fuzz_targets/annotations.rs): croner takes `,`
    // as a minute list matching nothing and searched about 15 s (release)
    // before giving up, for each such entry of `gpupool.dev/preprovision`.
    for bad in [
        ", * * * *",
        "0 0 , * *",
        "* * * * ,",
        "1, * * * *",
        "0 9 * * 1,,5",
    ] {
        // Refused before croner is asked, so no search.
        let err = Schedule::parse_list(&format!("{bad} for 1h: 1")).unwrap_err();
        assert!(err.contains("empty list item"), "{bad:?}: {err}");
    }
    assert!(Schedule::parse_list("0 9 * * 1,3,5 for 1h: 1").is_ok());
}

#[test]
fn config_refuses_a_schedule_past_max_and_an_unknown_time_zone() {
    let yaml = |annotations: &str, tz: &str| {
        format!(
            "cloud: sim\nregion: sim-east-1\ntime_zone: {tz}\nnode_groups:\n  - id: l4\n    min_size: 0\n    max_size: 3\n    instance_type: gpu-1x-l4\n    annotations: {{ {annotations} }}\n"
        )
    };
    let catalog: Vec<_> = gpupool_sim::catalog::builtin()
        .iter()
        .map(|t| t.instance_type())
        .collect();
    let check = |y: String| {
        let c = Config::from_yaml(&y).unwrap();
        c.validate(&catalog, None)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = check(yaml(
        "gpupool.dev/preprovision: \"big=0 9 * * * for 1h: 4\"",
        "UTC",
    ));
    assert!(
        e.contains("gpupool.dev/preprovision") && e.contains("more than max_size 3"),
        "{e}"
    );
    let e = check(yaml("", "Mars/Olympus"));
    assert!(
        e.starts_with("time_zone: \"Mars/Olympus\" is not an IANA"),
        "{e}"
    );
    let e = check(yaml("gpupool.dev/time-zone: Berlin", "UTC"));
    assert!(e.contains("annotations.gpupool.dev/time-zone"), "{e}");
}

#[test]
fn weekday_cron_follows_vixie_rules_and_local_time_across_dst() {
    let s = &Schedule::parse_list("0 9 * * 1-5 for 1h: 1").unwrap()[0];
    let tz = chrono_tz::Europe::Berlin;
    // Saturday 2026-11-28 10:00: the last window was Friday's.
    let w = s
        .window_at(berlin(28, 10, 0), Duration::ZERO, tz)
        .map(|w| w.opens);
    assert_eq!(w, None);
    let next = s.next_rise(berlin(28, 10, 0), Duration::ZERO, tz).unwrap();
    assert_eq!(next, berlin(30, 9, 0), "Monday, not Sunday");
    // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    let before_dst = instant(&tz.with_ymd_and_hms(2026, 3, 27, 12, 0, 0).unwrap());
    let rise = s.next_rise(before_dst, Duration::ZERO, tz).unwrap();
    assert_eq!(
        at(rise, chrono_tz::UTC).to_rfc3339(),
        "2026-03-30T07:00:00+00:00"
    );
}

#[test]
fn a_schedule_raises_the_floor_p90_ahead_and_lowers_it_after_the_window() {
    let specs = specs(OFFICE);
    let f = floors(&specs, &[1.0]);
    let at = |t: SystemTime| {
        f.evaluate(t);
        f.floor(0)
    };
    // Monday: p90 is 10m, so the 09:00 window's floor rises at 08:50.
    let fl = at(berlin(23, 8, 49));
    assert_eq!(fl.nodes, 0);
    assert_eq!(
        fl.describe(),
        "floor 0 (next: 4 at 08:50 CET: schedule 'weekday-office')"
    );
    let fl = at(berlin(23, 8, 50));
    assert_eq!(fl.nodes, 4);
    assert_eq!(
        fl.describe(),
        "floor 4: 4 from 09:00 CET until 19:00 CET: schedule 'weekday-office'"
    );
    assert_eq!(f.min_size(0, 0), 4);
    assert_eq!(
        f.min_size(0, 5),
        5,
        "a configured min above the floor stands"
    );
    assert_eq!(
        at(berlin(23, 9, 0)).reasons[0].text,
        "4 until 19:00 CET: schedule 'weekday-office'"
    );
    // The lunch schedule overlaps: the larger holds, not the sum.
    let fl = at(berlin(23, 12, 55));
    assert_eq!(fl.nodes, 5);
    assert_eq!(fl.reasons.len(), 2);
    assert_eq!(at(berlin(23, 14, 0)).nodes, 4);
    assert_eq!(at(berlin(23, 18, 59)).nodes, 4);
    let fl = at(berlin(23, 19, 0));
    assert_eq!(fl.nodes, 0, "the window closed");
    assert_eq!(
        fl.describe(),
        "floor 0 (next: 4 at Tue 08:50 CET: schedule 'weekday-office')"
    );
    assert_eq!(f.min_size(0, 0), 0);
    // Saturday: nothing.
    assert_eq!(at(berlin(28, 9, 30)).nodes, 0);
}

#[test]
fn the_floor_moves_with_the_learned_p90_and_stops_at_max() {
    let specs = specs(
        "
  - id: l4
    min_size: 0
    max_size: 2
    instance_type: gpu-1x-l4
    annotations:
      gpupool.dev/boot-latency: 8m
      gpupool.dev/preprovision: \"0 9 * * * for 1h: 2\"
",
    );
    let metrics = Arc::new(Metrics::new());
    let boots = Arc::new(Boots::new(&specs, vec![false], metrics.clone()));
    let f = Floors::new(plans(&specs), Vec::new(), boots.clone(), metrics.clone());
    f.evaluate(berlin(23, 8, 45));
    assert_eq!(f.floor(0).nodes, 0, "15 minutes ahead is before p90 10m");
    // Five slow boots of 20 minutes: p90 becomes 20m.
    boots.restore(
        &[(
            "l4".to_owned(),
            crate::boot::Samples {
                seconds: vec![1200.0; 5],
            },
        )]
        .into_iter()
        .collect(),
    );
    f.evaluate(berlin(23, 8, 45));
    assert_eq!(f.floor(0).nodes, 2);
    let text = metrics.encode();
    assert!(
        text.contains("gpupool_node_group_floor{group=\"l4\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("gpupool_preprovision_demand_nodes{group=\"l4\",kind=\"schedule\",source=\"0 9 * * *\"} 2"),
        "{text}"
    );
    f.evaluate(berlin(23, 10, 0));
    let text = metrics.encode();
    assert!(
        text.contains("gpupool_node_group_floor{group=\"l4\"} 0"),
        "{text}"
    );
    assert!(
        !text.contains("gpupool_preprovision_demand_nodes{"),
        "{text}"
    );
}

const GPU_GROUPS: &str = "
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    annotations: { gpupool.dev/boot-latency: 8m }
  - id: a10g
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-a10g
    annotations: { gpupool.dev/boot-latency: 8m }
  - id: cpu
    min_size: 0
    max_size: 10
    instance_type: cpu-16x
";

fn cronjob(json: serde_json::Value) -> CronJob {
    let mut base = serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": { "namespace": "ml", "name": "nightly-eval" },
        "spec": {
            "schedule": "0 2 * * *",
            "jobTemplate": { "spec": {
                "parallelism": 3,
                "template": { "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "eval",
                        "image": "eval",
                        "resources": { "limits": { "nvidia.com/gpu": "1" } }
                    }]
                }}
            }}
        }
    });
    merge(&mut base, json);
    serde_json::from_value(base).unwrap()
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn read(f: &Floors, cj: &CronJob) -> Result<Foreseen, Skip> {
    let spec = cj
        .spec
        .job_template
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let pod = crate::explain::manifest::pod_shape(spec, "ml").map_err(|e| e.to_string());
    cronjob::read(cj, pod, f.candidates())
}

#[test]
fn a_cronjob_is_fitted_to_the_cheapest_group_and_sized_by_its_pods() {
    let specs = specs(GPU_GROUPS);
    assert_eq!(specs[2].instance_type.name, "cpu-16x");
    let f = floors(&specs, &[0.9, 1.2, 0.3]);
    let got = read(&f, &cronjob(serde_json::json!({}))).unwrap();
    assert_eq!(
        (got.group, got.pods, got.nodes),
        (0, 3, 3),
        "l4 is cheaper than a10g; cpu has no GPU"
    );
    assert_eq!(got.key(), "ml/nightly-eval");

    let f = floors(&specs, &[1.5, 1.2, 0.3]);
    assert_eq!(read(&f, &cronjob(serde_json::json!({}))).unwrap().group, 1);
    // Pinned to a group, whatever it costs.
    let pinned =
        cronjob(serde_json::json!({"metadata": {"annotations": {"gpupool.dev/node-group": "l4"}}}));
    assert_eq!(read(&f, &pinned).unwrap().group, 0);
    let pinned = cronjob(
        serde_json::json!({"metadata": {"annotations": {"gpupool.dev/node-group": "cpu"}}}),
    );
    assert!(matches!(read(&f, &pinned), Err(Skip::Pinned(_))));
    // completions caps the pods of one run.
    let capped =
        cronjob(serde_json::json!({"spec": {"jobTemplate": {"spec": {"completions": 2}}}}));
    assert_eq!(read(&f, &capped).unwrap().nodes, 2);
    // Not GPU work, suspended, bad zone, a run larger than any group.
    let cpu_only = cronjob(
        serde_json::json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "c", "resources": {"requests": {"cpu": "1"}}}]}}}}}}),
    );
    assert_eq!(read(&f, &cpu_only).unwrap_err(), Skip::Ignored);
    let suspended = cronjob(serde_json::json!({"spec": {"suspend": true}}));
    assert_eq!(read(&f, &suspended).unwrap_err(), Skip::Suspended);
    let zone = cronjob(serde_json::json!({"spec": {"timeZone": "Nowhere/Land"}}));
    assert!(matches!(read(&f, &zone), Err(Skip::TimeZone(_))));
    let huge = cronjob(serde_json::json!({"spec": {"jobTemplate": {"spec": {"parallelism": 50}}}}));
    let e = read(&f, &huge).unwrap_err().to_string();
    assert!(e.contains("a run needs 50 nodes, past max size 10"), "{e}");
    let bad = cronjob(serde_json::json!({"spec": {"schedule": "every night"}}));
    assert!(matches!(read(&f, &bad), Err(Skip::Schedule(_))));
}

#[test]
fn a_cronjob_run_raises_the_floor_ahead_and_releases_it_when_its_pods_are_scheduled() {
    let specs = specs(GPU_GROUPS);
    let f = floors(&specs, &[0.9, 1.2, 0.3]);
    let cj = cronjob(serde_json::json!({}));
    f.cronjob_seen("ml/nightly-eval", read(&f, &cj));
    let key = "ml/nightly-eval";

    f.evaluate(utc(24, 1, 49));
    assert_eq!(f.floor(0).nodes, 0);
    assert_eq!(
        f.floor(0).describe(),
        "floor 0 (next: 3 nodes at 01:50 UTC: CronJob ml/nightly-eval runs at 02:00 UTC)"
    );
    f.evaluate(utc(24, 1, 50));
    assert_eq!(
        f.floor(0).describe(),
        "floor 3: 3 nodes for CronJob ml/nightly-eval at 02:00 UTC"
    );
    assert_eq!(f.floor(1).nodes, 0, "only the chosen group");

    // 02:00: the controller started the run (lastScheduleTime); its pods
    // are checked until all are scheduled.
    let started =
        cronjob(serde_json::json!({"status": {"lastScheduleTime": "2026-11-24T02:00:00Z"}}));
    f.cronjob_seen(key, read(&f, &started));
    // A clock with a fraction of a second (as the wall clock has) finds
    // the same whole-minute run.
    f.evaluate(utc(24, 2, 3) + Duration::from_millis(250));
    assert_eq!(f.floor(0).nodes, 3);
    assert_eq!(
        f.floor(0).reasons[0].text,
        "3 nodes for CronJob ml/nightly-eval's 02:00 UTC run, until its pods are scheduled"
    );
    let run = utc(24, 2, 0);
    let minutes = run
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60;
    assert_eq!(
        f.waiting(),
        vec![Waiting {
            key: key.into(),
            namespace: "ml".into(),
            job: format!("nightly-eval-{minutes}"),
            run,
            pods: 3,
        }]
    );
    f.run_scheduled(key, run);
    f.evaluate(utc(24, 2, 4));
    assert_eq!(f.floor(0).nodes, 0, "released");
    assert!(f.waiting().is_empty());

    // The next night's run never starts: after the grace it is let go.
    f.evaluate(utc(25, 2, 4));
    assert_eq!(f.floor(0).nodes, 3, "within the grace");
    f.evaluate(utc(25, 2, 5));
    assert_eq!(f.floor(0).nodes, 0, "the run did not come");

    // Deleted: nothing more.
    f.cronjob_gone(key);
    f.evaluate(utc(26, 1, 55));
    assert_eq!(f.floor(0).nodes, 0);
}

#[test]
fn cronjob_nodes_come_on_top_of_a_schedule() {
    let specs = specs(
        "
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    annotations:
      gpupool.dev/boot-latency: 8m
      gpupool.dev/time-zone: UTC
      gpupool.dev/preprovision: \"night=0 1 * * * for 3h: 2\"
",
    );
    let f = floors(&specs, &[1.0]);
    f.cronjob_seen("ml/nightly-eval", read(&f, &cronjob(serde_json::json!({}))));
    f.evaluate(utc(24, 1, 55));
    let fl = f.floor(0);
    assert_eq!(fl.nodes, 5);
    assert_eq!(
        fl.describe(),
        "floor 5: 2 until 04:00 UTC: schedule 'night' + 3 nodes for CronJob ml/nightly-eval at 02:00 UTC"
    );
}

#[test]
fn overlapping_runs_count_twice_unless_the_cronjob_forbids_or_replaces() {
    let specs = specs(GPU_GROUPS);
    let f = floors(&specs, &[0.9, 1.2, 0.3]);
    let key = "ml/nightly-eval";
    // Every 15 minutes; the 12:00 run started and its pods are not all
    // scheduled at 12:07, when the 12:15 run is within p90 (10m).
    let every = |policy: &str| {
        cronjob(serde_json::json!({
            "spec": {"schedule": "*/15 * * * *", "concurrencyPolicy": policy},
            "status": {"lastScheduleTime": "2026-11-24T12:00:00Z"}
        }))
    };
    f.cronjob_seen(key, read(&f, &every("Allow")));
    f.evaluate(utc(24, 12, 7));
    assert_eq!(f.floor(0).nodes, 6);
    assert_eq!(
        f.floor(0).reasons[0].text,
        "6 nodes for CronJob ml/nightly-eval: its 12:00 UTC run, until its pods are scheduled, and its 12:15 UTC run"
    );
    assert_eq!(
        f.waiting().len(),
        1,
        "the started run's pods are still checked"
    );
    f.cronjob_seen(key, read(&f, &every("Forbid")));
    f.evaluate(utc(24, 12, 7));
    assert_eq!(f.floor(0).nodes, 3);
    assert_eq!(f.waiting().len(), 1);
}

#[test]
fn a_group_provision_time_override_bounds_how_long_a_run_is_held() {
    let specs = specs(
        "
  - id: l4
    min_size: 0
    max_size: 10
    instance_type: gpu-1x-l4
    annotations:
      gpupool.dev/boot-latency: 8m
      gpupool.dev/max-node-provision-time: 40m
",
    );
    let f = floors(&specs, &[1.0]);
    let key = "ml/nightly-eval";
    let started =
        cronjob(serde_json::json!({"status": {"lastScheduleTime": "2026-11-24T02:00:00Z"}}));
    f.cronjob_seen(key, read(&f, &started));
    // The model's deadline would be 15m; the group says 40m.
    f.evaluate(utc(24, 2, 39));
    assert_eq!(f.floor(0).nodes, 3);
    f.evaluate(utc(24, 2, 40));
    assert_eq!(f.floor(0).nodes, 0);
}
