//! Load harness: one engine holding many in-flight deployments, each waiting on a callback.
//!
//! `cargo bench --bench engine_scale --features runtime,test-util -- [COUNT]` (default 100000)
//! starts COUNT deployments of a three-environment plan (in-memory store; webhook calls answered
//! 202 by an in-process transport), then reports resident memory per deployment, the number of
//! tokio tasks alive while they wait, and the time to fire COUNT due callback timeouts. The
//! same-run baselines are the core alone: the resident bytes of COUNT bare `Deployment`s in the
//! same state, and the time of COUNT `Deployment::handle_timeout` calls on them.

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeDelta, TimeZone, Utc};
use hookgate::config::Plan;
use hookgate::core::Deployment;
use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::test_util::{ManualClock, SequentialIds};

mod support;

use support::{
    THREE_ENVIRONMENTS as PLAN, accepting_dispatcher, core_waiting, count_arg, resident_bytes,
    two_workers,
};

fn main() {
    let count = count_arg(100_000);
    let runtime = two_workers();
    runtime.block_on(run(count));
}

async fn run(count: usize) {
    let start = Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    let engine = Engine::builder(accepting_dispatcher(), SimulatedHost)
        .clock(clock.clone())
        .ids(SequentialIds::default())
        .allow_concurrent_deployments(true)
        .build();

    let before = resident_bytes();
    let started = Instant::now();
    for _ in 0..count {
        engine
            .start(PLAN, Default::default())
            .await
            .expect("the deployment starts");
    }
    while engine.armed_deadlines() < count {
        tokio::task::yield_now().await;
    }
    let start_time = started.elapsed();
    let after = resident_bytes();
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let per_deployment = (after - before) as f64 / count as f64;

    clock.advance(TimeDelta::hours(25));
    let fire = Instant::now();
    let fired = engine.fire_due().await;
    let fire_time = fire.elapsed();

    // Baseline: the core alone, in the same state, in the same process.
    let plan = Arc::new(Plan::from_yaml(PLAN).expect("the plan is valid"));
    let mut ids = SequentialIds::starting_at(1 << 64);
    let base_before = resident_bytes();
    let mut cores: Vec<Deployment> = (0..count)
        .map(|i| core_waiting(&plan, i, &mut ids, start))
        .collect();
    let base_after = resident_bytes();
    let base_per = (base_after - base_before) as f64 / count as f64;
    let later = start + TimeDelta::hours(25);
    let base_fire = Instant::now();
    for d in &mut cores {
        d.handle_timeout(later);
    }
    let base_fire_time = base_fire.elapsed();

    println!("deployments waiting on a callback: {count} (started in {start_time:.2?})");
    println!(
        "resident: {:.1} MiB, {per_deployment:.0} bytes per deployment; core alone {base_per:.0} bytes (ratio {:.2})",
        (after - before) as f64 / (1 << 20) as f64,
        per_deployment / base_per
    );
    println!("tokio tasks alive while waiting: {tasks}");
    println!(
        "fired {fired} due callback timeouts in {fire_time:.2?}; core alone {base_fire_time:.2?} (ratio {:.1})",
        fire_time.as_secs_f64() / base_fire_time.as_secs_f64()
    );
    std::hint::black_box(&cores);
}
