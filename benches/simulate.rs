//! `gpupool simulate` speed: a month (30 days) of the built-in inference
//! trace under all three policies, in virtual time. Target: under 10 s on
//! this machine (2 cores). Runs it three times and prints the median and
//! the spread, with the trace's size.
//!
//! Run with `cargo bench --bench simulate`.

use gpupool::simulate::{self, Options, Policy};
use std::time::{Duration, Instant};

fn main() {
    let days = 30;
    let trace = simulate::builtin::trace("inference", days, 1).expect("the built-in trace");
    let config = simulate::example_config("inference");
    let mut times = Vec::new();
    let mut cost = 0.0;
    for _ in 0..3 {
        let started = Instant::now();
        let report = simulate::simulate(
            &config,
            &trace,
            &Policy::ALL,
            &Options::default(),
            &mut |_, _| {},
        )
        .expect("simulates");
        times.push(started.elapsed());
        cost = report.policies.iter().map(|p| p.cost_usd).sum();
    }
    times.sort();
    let secs = |d: Duration| d.as_secs_f64();
    println!("| what | value |");
    println!("|---|---|");
    println!(
        "| trace | inference, {days} days, {} pods |",
        trace.pods.len()
    );
    println!("| policies | always-on, reactive, gpupool (reactive's peaks size always-on) |");
    println!("| median wall time | {:.2} s |", secs(times[1]));
    println!(
        "| min / max | {:.2} s / {:.2} s |",
        secs(times[0]),
        secs(times[2])
    );
    println!(
        "| target | < 10 s: {} |",
        if secs(times[1]) < 10.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("| (check: total cost of the runs) | {cost:.2} USD |");
}
