//! Load harness: one engine holding many in-flight deployments, each waiting on a callback.
//!
//! `cargo bench --bench engine_scale --features runtime,test-util -- [COUNT]` (default 100000)
//! starts COUNT deployments of a three-environment plan (in-memory store; webhook calls answered
//! 202 by an in-process transport), then reports resident memory per deployment, the number of
//! tokio tasks alive while they wait, and the time to fire COUNT due callback timeouts. The
//! same-run baselines are the core alone: the resident bytes of COUNT bare `Deployment`s in the
//! same state, and the time of COUNT `Deployment::handle_timeout` calls on them.
//!
//! With `late` (`-- COUNT late`), the deployments go all the way to prod's approval instead (the
//! plan's webhooks without callbacks, so each gate passes on the call's answer), and only their
//! resident memory is measured, against the core alone in the same state.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hookgate::config::Plan;
use hookgate::core::{Deployment, GateState};
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
    if std::env::args().any(|a| a == "late") {
        runtime.block_on(late(count));
    } else {
        runtime.block_on(run(count));
    }
}

async fn run(count: usize) {
    let start = Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    let engine = engine(clock.clone());
    let (mut cores, base_per) = core_baseline(PLAN, count, start);

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

/// An engine on `clock` over the memory store, its webhook calls answered 202 and its host
/// steps simulated.
fn engine(clock: ManualClock) -> Engine {
    Engine::builder(accepting_dispatcher(), SimulatedHost)
        .clock(clock)
        .ids(SequentialIds::default())
        .allow_concurrent_deployments(true)
        .build()
}

/// The baseline: the core alone, `count` deployments of `plan` in the state the engine's
/// reach, in the same process, and their resident bytes each. Built before the engine's
/// deployments and kept, so that neither side's figure is made of memory the other freed:
/// built after the engine fired its timeouts, the cores took the chunks its finished
/// deployments gave back.
fn core_baseline(plan: &str, count: usize, start: DateTime<Utc>) -> (Vec<Deployment>, f64) {
    let plan = Arc::new(Plan::from_yaml(plan).expect("the plan is valid"));
    let mut ids = SequentialIds::starting_at(1 << 64);
    let before = resident_bytes();
    let cores: Vec<Deployment> = (0..count)
        .map(|i| core_waiting(&plan, i, &mut ids, start))
        .collect();
    let per = (resident_bytes() - before) as f64 / count as f64;
    (cores, per)
}

/// [`PLAN`] with its webhooks' callbacks disabled, so that each gate passes on the call's 202:
/// a deployment goes all the way to prod's approval, the last gate before prod deploys, its
/// history and state as large as they get while it waits.
fn late_plan() -> String {
    PLAN.replace("uriTemplate:", "disableCallback: true, uriTemplate:")
}

/// How many deployments `late` starts for each one whose state it checks.
const SAMPLE_EVERY: usize = 1000;

/// `late` mode: COUNT deployments waiting on prod's approval, in a process of their own (freed
/// memory of the other mode's deployments would otherwise make them look smaller), against
/// the core alone in the same state.
async fn late(count: usize) {
    let start = Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap();
    let plan_text = late_plan();
    let (cores, base_per) = core_baseline(&plan_text, count, start);
    let engine = engine(ManualClock::new(start));
    // Every thousandth id is kept to check on, and its room taken before measuring, so that
    // what is measured is the engine's.
    let mut sample = Vec::with_capacity(count / SAMPLE_EVERY + 1);
    let before = resident_bytes();
    for i in 0..count {
        let deployment = engine
            .start(&plan_text, Default::default())
            .await
            .expect("the deployment starts");
        if i % SAMPLE_EVERY == 0 {
            sample.push(deployment.id);
        }
    }
    // Steps and calls answered at once are recorded inline; any left to tasks end here. No
    // scheduler runs, so the engine has no task that lasts: none alive means none left.
    while tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
        > 0
    {
        tokio::task::yield_now().await;
    }
    let per_deployment = (resident_bytes() - before) as f64 / count as f64;
    // Checked after measuring, as looking allocates.
    for id in &sample {
        let view = engine.view(id).await.expect("in memory");
        let open: Vec<_> = view.open_gates().collect();
        assert!(
            open.len() == 1
                && open[0].environment == "prod"
                && matches!(open[0].state, GateState::AwaitingApproval { .. }),
            "{id} is not waiting on prod's approval: {:?}",
            view.gates
        );
    }
    println!("deployments waiting on prod's approval: {count}");
    println!(
        "resident: {per_deployment:.0} bytes per deployment; core alone {base_per:.0} bytes (ratio {:.2})",
        per_deployment / base_per
    );
    std::hint::black_box(&cores);
}
