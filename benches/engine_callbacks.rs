//! The engine's own cost per callback, without HTTP or threads: what hookgate adds to a
//! callback beyond the server in front of it.
//!
//! `cargo bench --bench engine_callbacks --features runtime,test-util -- [COUNT]` (default
//! 20000) opens COUNT gates (deployments of a one-gate plan, in-memory store, webhook calls
//! answered 202 by an in-process transport) on a current-thread runtime, then applies one
//! approving callback to each through [`GateService::callback`], which records the callback,
//! runs the simulated host's deploy step and finishes the deployment. The same-run baseline is
//! the core alone: the same transitions on COUNT bare `Deployment`s, with their actions and
//! events drained. Five rounds each, alternating; the fastest of each is reported, with the
//! allocations per callback counted by a global allocator that wraps the system's.
//!
//! Then the same callbacks under contention: 64 at a time from as many tasks on a runtime with
//! two workers, five rounds, the lowest CPU time per callback of the workers' threads (from
//! their `schedstat`, Linux) reported against the one-thread time above.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hookgate::auth::Principal;
use hookgate::config::Plan;
use hookgate::core::{Action, CallbackId, Deployment, StepOutcome};
use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::server::{CallbackReport, GateService};
use hookgate::test_util::{RecordingTransport, SequentialIds};

mod support;

use support::{ONE_GATE as PLAN, core_waiting, count_arg, two_workers};

const ROUNDS: usize = 5;

/// How many callbacks are under way at once in the contended rounds: the load harness's default.
const CONCURRENCY: usize = 64;

/// The system allocator, counting allocations (a `realloc` counts as one).
struct Counting;

thread_local! {
    /// This thread's allocations: one count for the whole process would be a cache line the
    /// contended rounds' two workers hand back and forth at every allocation, about 15 a
    /// callback, and would add that to their figure.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    ALLOCATIONS.with(|count| count.set(count.get() + 1));
}

// SAFETY: every call is passed on unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `System`; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as for `System`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One round's time and allocations, over all its callbacks (on this thread, where the round
/// runs).
#[derive(Clone, Copy)]
struct Round {
    time: Duration,
    allocations: usize,
}

impl Round {
    /// Where the counts stand when a round starts.
    fn start() -> (Instant, usize) {
        (Instant::now(), ALLOCATIONS.get())
    }

    /// The round since `start`.
    fn since((started, allocations): (Instant, usize)) -> Self {
        Self {
            time: started.elapsed(),
            allocations: ALLOCATIONS.get() - allocations,
        }
    }

    fn fastest(self, other: Self) -> Self {
        if other.time < self.time { other } else { self }
    }
}

fn main() {
    let count = count_arg(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (ours, base) = (0..ROUNDS)
        .map(|_| (runtime.block_on(engine_round(count)), core_round(count)))
        .reduce(|(ours, base), (o, b)| (ours.fastest(o), base.fastest(b)))
        .expect("at least one round");
    let per = |r: Round| r.time.as_nanos() as f64 / count as f64;
    let allocations = |r: Round| r.allocations as f64 / count as f64;
    println!(
        "{count} callbacks, each recorded, its deploy step run and the deployment finished: engine {:.0} ns and {:.1} allocations per callback; core alone {:.0} ns and {:.1} allocations (ratio {:.1})",
        per(ours),
        allocations(ours),
        per(base),
        allocations(base),
        per(ours) / per(base)
    );
    let workers = two_workers();
    let two = (0..ROUNDS)
        .map(|_| workers.block_on(contended_round(count)))
        .fold(f64::INFINITY, f64::min);
    // The one-thread figure is the time of the rounds above: their thread does nothing else.
    println!(
        "the same callbacks {CONCURRENCY} at a time on two workers: {:.0} ns CPU per callback, against {:.0} ns one at a time on one thread (ratio {:.2})",
        two * 1e9 / count as f64,
        per(ours),
        two * 1e9 / count as f64 / per(ours)
    );
}

/// Opens `count` gates on a fresh engine and applies one approving callback to each,
/// [`CONCURRENCY`] at a time from as many tasks; returns the CPU seconds this process's threads
/// spent on the callbacks ([`threads_cpu_time`]).
async fn contended_round(count: usize) -> f64 {
    let (engine, callbacks) = open_gates(count).await;
    let engine = Arc::new(engine);
    let mut shares: Vec<Vec<CallbackId>> = vec![Vec::new(); CONCURRENCY];
    for (i, callback) in callbacks.into_iter().enumerate() {
        shares[i % CONCURRENCY].push(callback);
    }
    let before = threads_cpu_time();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move {
                let by = Principal::new("bench");
                for &callback in &share {
                    engine
                        .callback(callback, approving(), &by)
                        .await
                        .expect("the callback is applied");
                }
                // Freed after the round is measured: freeing it on a worker consolidated the
                // allocator's free chunks there, 5% of the round's CPU time in a profile.
                share
            })
        })
        .collect();
    let mut shares = Vec::with_capacity(CONCURRENCY);
    for task in tasks {
        shares.push(task.await.expect("a task applying callbacks"));
    }
    let spent = threads_cpu_time() - before;
    drop(shares);
    assert_eq!(engine.live_deployments(), 0, "every deployment finished");
    spent
}

/// The CPU time, in seconds, of this process's threads now running, from each one's
/// `/proc/self/task/*/schedstat` (Linux): in nanoseconds, where the process's own total is in
/// ticks of 10 ms, too coarse for a round. Threads that ended are left out; the runtimes' workers
/// live as long as the process here.
fn threads_cpu_time() -> f64 {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task (Linux)");
    let nanos: u64 = tasks
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    nanos as f64 / 1e9
}

/// Opens `count` gates on a fresh engine and times one approving callback to each.
async fn engine_round(count: usize) -> Round {
    let (engine, callbacks) = open_gates(count).await;
    let by = Principal::new("bench");
    let started = Round::start();
    for callback in callbacks {
        engine
            .callback(callback, approving(), &by)
            .await
            .expect("the callback is applied");
    }
    let round = Round::since(started);
    assert_eq!(engine.live_deployments(), 0, "every deployment finished");
    round
}

fn approving() -> CallbackReport {
    CallbackReport::Outcome {
        success: true,
        message: None,
    }
}

/// A fresh engine with `count` deployments of the one-gate plan, each waiting on the callback
/// returned for it.
async fn open_gates(count: usize) -> (Engine, Vec<CallbackId>) {
    let external = RecordingTransport::new();
    let dispatcher = external
        .dispatcher("http://127.0.0.1:9".to_owned())
        .expect("a dispatcher");
    let engine = Engine::builder(dispatcher, SimulatedHost)
        .ids(SequentialIds::default())
        .allow_concurrent_deployments(true)
        .build();
    for _ in 0..count {
        engine
            .start(PLAN, BTreeMap::new())
            .await
            .expect("the deployment starts");
    }
    while external.count() < count || engine.armed_deadlines() < count {
        tokio::task::yield_now().await;
    }
    let callbacks: Vec<CallbackId> = external
        .requests()
        .iter()
        .filter_map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            body["callbackUri"]
                .as_str()?
                .rsplit('/')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(callbacks.len(), count, "every gate called out");
    (engine, callbacks)
}

/// The same transitions on the core alone: the gate's call answered, then timed: the callback,
/// the deploy step's result, every action and event drained.
fn core_round(count: usize) -> Round {
    let plan = Arc::new(Plan::from_yaml(PLAN).expect("the plan is valid"));
    let mut ids = SequentialIds::default();
    let now = Utc::now();
    let mut open: Vec<(Deployment, CallbackId)> = (0..count)
        .map(|i| {
            let d = core_waiting(&plan, i, &mut ids, now);
            let (_, callback) = d.callback_ids().next().expect("one webhook gate");
            (d, callback)
        })
        .collect();
    let started = Round::start();
    for (d, callback) in &mut open {
        d.handle_callback(now, *callback, true, None)
            .expect("the callback is applied");
        while let Some(action) = d.poll_action() {
            if let Action::RunStep(step) = action {
                d.handle_step_result(now, step.op, StepOutcome::Succeeded)
                    .expect("the step result is recorded");
            }
        }
        while d.poll_event().is_some() {}
        assert!(d.is_finished());
    }
    let round = Round::since(started);
    std::hint::black_box(&open);
    round
}
