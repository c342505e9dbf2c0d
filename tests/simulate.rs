//! `gpupool simulate`: the engine in virtual time under each policy, on
//! traces whose outcome can be worked out by hand.

use gpupool::config::Config;
use gpupool::simulate::{self, Options, Policy, PolicyReport, trace::Trace};

/// One L4 group; boots take exactly 5 minutes; prices from the sim table.
fn config(extra_annotations: &str, sim: &str) -> Config {
    Config::from_yaml(&format!(
        "cloud: sim\nregion: sim-east-1\ntime_zone: UTC\nsim:\n  boot:\n    gpu-1x-l4: {{ min: 5m, max: 5m }}\n{sim}\nnode_groups:\n  - id: l4\n    min_size: 0\n    max_size: 12\n    instance_type: gpu-1x-l4\n    annotations:\n      gpupool.dev/boot-latency: 5m\n{extra_annotations}"
    ))
    .expect("test config")
}

fn run(config: &Config, trace: &Trace, seed: u64) -> Vec<PolicyReport> {
    simulate::simulate(
        config,
        trace,
        &Policy::ALL,
        &Options {
            seed,
            ..Options::default()
        },
        &mut |_, _| {},
    )
    .expect("simulates")
    .policies
}

fn of(reports: &[PolicyReport], p: Policy) -> &PolicyReport {
    reports.iter().find(|r| r.policy == p).expect("each policy")
}

const HEADER: &str =
    "name,namespace,arrival,duration,gpus,slice,accelerator,interruptible,checkpoint_every\n";

#[test]
fn one_pod_worked_out_by_hand() {
    // One 1-GPU pod at 01:00 (the start is a Monday, 00:00 UTC) for an hour.
    let trace = Trace::from_csv(
        "one",
        &format!("{HEADER}job,team,1h,1h,1,,nvidia-l4,false,\n"),
    )
    .expect("trace");
    // gpupool: a window from 01:00 for an hour with one node, raised one
    // p90 boot early, so the node is up when the pod comes.
    let config = config(
        "      gpupool.dev/preprovision: \"0 1 * * *  for 1h: 1\"\n",
        "",
    );
    let reports = run(&config, &trace, 1);
    let reactive = of(&reports, Policy::Reactive);
    let always_on = of(&reports, Policy::AlwaysOn);
    let gpupool = of(&reports, Policy::Gpupool);

    // Reactive: CA sees the pod at 01:00 and buys a node; it boots in 5
    // minutes; the pod runs from 01:05 to 02:05.
    assert_eq!(reactive.wait.median_s, 300.0);
    assert_eq!(reactive.wait.max_s, 300.0);
    assert!((reactive.gpu_hours_used - 1.0).abs() < 1e-9);
    // Paid from 01:00 until the node is gone: 10 minutes unneeded after
    // 02:05, then its shutdown (30 s) and the next loop (10 s): 1h15m to
    // 1h16m.
    assert!(
        (1.25..=1.27).contains(&reactive.gpu_hours_paid),
        "{}",
        reactive.gpu_hours_paid
    );
    // Always-on: the reactive run's peak (one node) from the start; the
    // pod starts on arrival and the run ends with it at 02:00.
    assert_eq!(always_on.wait.max_s, 0.0);
    assert!(
        (always_on.gpu_hours_paid - 2.0).abs() < 0.01,
        "{}",
        always_on.gpu_hours_paid
    );
    // The same node-hours at the same price: cost is paid hours × price.
    let price = reactive.cost_usd / reactive.gpu_hours_paid;
    assert!((always_on.cost_usd - 2.0 * price).abs() < 0.05);
    // gpupool: the floor came early enough that the pod did not wait.
    assert_eq!(gpupool.wait.max_s, 0.0);
    for r in &reports {
        assert_eq!(r.pods_unfinished, 0, "{:?}", r.policy);
        assert_eq!(r.pods_evicted, 0);
    }
}

#[test]
fn shareable_pods_share_a_time_sliced_gpu_and_others_never_land_there() {
    // Four sessions that accept a time-sliced share, and one job that does
    // not, all at 01:00 for an hour; the group's L4 is time-sliced 4 ways
    // under the gpupool policy only.
    let header = "name,arrival,duration,gpus,shareable\n";
    let sessions: String = (0..4).map(|i| format!("nb-{i},1h,1h,1,true\n")).collect();
    let trace = Trace::from_csv("shared", &format!("{header}{sessions}solo,1h,1h,1,false\n"))
        .expect("trace");
    let config = config("      gpupool.dev/gpu-sharing: \"time-slicing:4\"\n", "");
    let reports = run(&config, &trace, 1);
    let reactive = of(&reports, Policy::Reactive);
    let gpupool = of(&reports, Policy::Gpupool);

    // Reactive: no sharing, five pods on five nodes, each bought at 01:00
    // and paid 1h15m to 1h16m (see the test above); each pod held its GPU
    // for its hour.
    assert_eq!(reactive.pods_unfinished, 0);
    assert_eq!(reactive.wait.max_s, 300.0);
    assert!((reactive.gpu_hours_used - 5.0).abs() < 1e-9);
    assert!(
        (5.0 * 1.25..=5.0 * 1.27).contains(&reactive.gpu_hours_paid),
        "{}",
        reactive.gpu_hours_paid
    );
    // gpupool: the four sessions on one node, each holding a quarter of
    // its GPU; the job that takes no share never lands on it.
    assert_eq!(gpupool.pods_unfinished, 1, "the solo job has no group");
    assert_eq!(gpupool.wait.max_s, 300.0);
    assert!(
        (gpupool.gpu_hours_used - 1.0).abs() < 1e-9,
        "{}",
        gpupool.gpu_hours_used
    );
    assert!(
        (1.25..=1.27).contains(&gpupool.gpu_hours_paid),
        "{}",
        gpupool.gpu_hours_paid
    );
}

#[test]
fn the_same_trace_config_and_seed_give_the_same_numbers() {
    let trace = simulate::builtin::trace("batch", 1, 7).expect("builtin");
    let config = simulate::example_config("batch");
    let a = serde_json::to_string(&run(&config, &trace, 7)).unwrap();
    let b = serde_json::to_string(&run(&config, &trace, 7)).unwrap();
    assert_eq!(a, b);
    let c = serde_json::to_string(&run(&config, &trace, 8)).unwrap();
    assert_ne!(a, c, "another seed draws other boots and interruptions");
}

#[test]
fn interruptions_replace_spot_nodes_and_no_checkpointed_pod_is_lost() {
    // Ten 2-hour checkpointed jobs on spot nodes interrupted about twice an
    // hour each: every job is evicted at some point and still finishes,
    // losing at most its last 10 minutes each time.
    let mut csv = HEADER.to_owned();
    for i in 0..10 {
        csv.push_str(&format!("job-{i},team,{i}m,2h,1,,nvidia-l4,true,10m\n"));
    }
    let trace = Trace::from_csv("spot", &csv).expect("trace");
    let config = config(
        "      gpupool.dev/interruption: replace\n    capacity_type: spot-then-on-demand\n",
        "  spot_interruptions_per_hour: 2\n",
    );
    let gpupool = of(&run(&config, &trace, 3), Policy::Gpupool).clone();
    assert!(gpupool.interruptions > 0);
    assert!(gpupool.pods_evicted > 0);
    assert_eq!(gpupool.pods_unfinished, 0, "every job finished");
    assert_eq!(
        gpupool.pods_lost_work, 0,
        "checkpointed jobs keep their work"
    );
    // Lost progress is at most one checkpoint interval per eviction.
    assert!(gpupool.gpu_hours_lost <= f64::from(gpupool.interruptions) * (10.0 / 60.0) + 1e-9);
    // Work done is the jobs' own, not more: lost progress is redone.
    assert!((gpupool.gpu_hours_used - 20.0 - gpupool.gpu_hours_lost).abs() < 1e-6);
}

#[test]
fn a_non_checkpointed_pod_on_an_interrupted_node_counts_as_lost_work() {
    let trace = Trace::from_csv(
        "spot",
        &format!("{HEADER}job,team,0s,3h,1,,nvidia-l4,true,\n"),
    )
    .expect("trace");
    let config = config(
        "      gpupool.dev/interruption: replace\n    capacity_type: spot-then-on-demand\n",
        "  spot_interruptions_per_hour: 3\n",
    );
    let gpupool = of(&run(&config, &trace, 5), Policy::Gpupool).clone();
    // Interrupted about every 20 minutes, it starts over each time (it may
    // never finish: that is what spot does to work that is not saved).
    assert!(
        gpupool.pods_evicted == 1 && gpupool.pods_lost_work == 1,
        "{gpupool:?}"
    );
    assert!(gpupool.gpu_hours_lost > 0.0);
}

#[test]
fn the_embedded_simulation_configs_parse() {
    for t in ["notebooks", "inference", "training", "batch", "all"] {
        let c = simulate::example_config(t);
        gpupool::backend::offline_specs(&c).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

#[test]
fn a_real_clouds_config_runs_on_stand_ins_at_its_list_prices() {
    // An AWS config as written for production: g6.xlarge (one L4) from a
    // launch template, with an alternative that has no list price in the
    // region; and a pod no group can take.
    let config = Config::from_yaml(
        "cloud: aws\nregion: us-east-1\naws:\n  cluster: prod\nnode_groups:\n  - id: l4\n    min_size: 0\n    max_size: 4\n    instance_type: g6.xlarge\n    aws:\n      launch_template: { name: eks-gpu }\n  - id: h100\n    min_size: 0\n    max_size: 1\n    instance_type: p5.48xlarge\n    capacity_type: spot\n    aws:\n      launch_template: { name: eks-gpu }\n      instance_types: [p5e.48xlarge]\n",
    )
    .expect("aws config");
    let trace = Trace::from_csv(
        "aws",
        &format!(
            "{HEADER}job,team,1h,1h,1,,nvidia-l4,false,\nbig,team,1h,1h,1,,nvidia-b200,false,\n"
        ),
    )
    .expect("trace");
    let report = simulate::simulate(
        &config,
        &trace,
        &Policy::ALL,
        &Options::default(),
        &mut |_, _| {},
    )
    .expect("simulates");
    let reactive = of(&report.policies, Policy::Reactive);
    // The job ran on a g6.xlarge paid at its us-east-1 on-demand list
    // price (src/pricing/prices/aws.yaml: 0.8048 USD an hour).
    assert!(reactive.gpu_hours_paid > 1.0);
    let per_hour = reactive.cost_usd / reactive.gpu_hours_paid;
    assert!((per_hour - 0.8048).abs() < 1e-6, "{per_hour}");
    assert_eq!(reactive.pods_unfinished, 1, "the B200 pod has no group");
    let notes = report.notes.join("\n");
    assert!(notes.contains("aws config"), "{notes}");
    assert!(
        notes.contains("node group h100: p5e.48xlarge has no list price for us-east-1"),
        "{notes}"
    );
    assert!(
        notes.contains("1 pods fit no node group's node under reactive, always-on, gpupool, so they never run: the first is big (1 GPU(s) of nvidia-b200)"),
        "{notes}"
    );
}
