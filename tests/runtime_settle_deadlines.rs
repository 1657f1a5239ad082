//! Every path that records the results of steps and calls answered at once (inline rounds, a
//! failed, panicking, unanswered or conflicting write, a caller that goes away, a recovery, a
//! lease takeover, a copy's write taken up by the driving replica) leaves the deployment's next
//! deadline in the shared table once nothing holds its lock: the write recording those results
//! arms it, not the write that asked for them, so each path is driven here to the 24 h
//! callback timeout on a manual clock. Without the arming in `after_commit`, twelve of them fail.
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone, Utc};
use hookgate::auth::Principal;
use hookgate::core::{
    CallbackAck, CallbackId, DeploymentId, DeploymentStatus, GateState, HostStep, StepOutcome,
};
use hookgate::runtime::{DeploymentView, Engine, Host, SimulatedHost, StepContext};
use hookgate::server::{CallbackReport, GateError, GateService};
use hookgate::store::{MemoryStore, Store};
use hookgate::test_util::{
    FaultyStore, ManualClock, RecordedRequest, RecordingTransport, SequentialIds,
};

/// A deploy step answered at once (staging), then a gate whose call is answered at once.
const STEP_THEN_GATE: &str = r#"
application: settle
targets:
  staging: {}
  prod:
    constraints:
      dependsOn: [staging]
      beforeDeployment: [runWebhook: {name: gate}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
"#;

/// A gate, then (after its callback) a deploy step and a second gate, all answered at once.
const TWO_GATES: &str = r#"
application: settle
targets:
  staging:
    constraints:
      beforeDeployment: [runWebhook: {name: first}]
  prod:
    constraints:
      dependsOn: [staging]
      beforeDeployment: [runWebhook: {name: second}]
webhooks:
  - name: first
    uriTemplate: https://external.example/first
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
  - name: second
    uriTemplate: https://external.example/second
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
"#;

/// Twelve deploy steps in a chain, each answered at once (more than the 8 inline rounds), then
/// a gate.
fn long_chain() -> String {
    let mut file = String::from("application: settle\ntargets:\n  t0: {}\n");
    for i in 1..12 {
        file.push_str(&format!(
            "  t{i}:\n    constraints:\n      dependsOn: [t{}]\n",
            i - 1
        ));
    }
    file.push_str(
        "  prod:\n    constraints:\n      dependsOn: [t11]\n      beforeDeployment: [runWebhook: {name: gate}]\n",
    );
    file.push_str(
        "webhooks:\n  - name: gate\n    uriTemplate: https://external.example/run\n    bodyTemplate: {inline: '{\"callbackUri\": \"{{armory.callbackUri}}\"}'}\n",
    );
    file
}

struct Setup {
    engine: Engine,
    store: Arc<FaultyStore<MemoryStore>>,
    external: RecordingTransport,
    clock: ManualClock,
}

fn clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap())
}

fn setup_with(store: Arc<FaultyStore<MemoryStore>>, clock: ManualClock, host: impl Host) -> Setup {
    let external = RecordingTransport::new();
    let engine = Engine::builder(
        external.dispatcher("https://hookgate.example").unwrap(),
        host,
    )
    .shared_store(store.clone())
    .clock(clock.clone())
    .ids(SequentialIds::starting_at(1))
    .build();
    Setup {
        engine,
        store,
        external,
        clock,
    }
}

fn setup() -> Setup {
    setup_with(
        Arc::new(FaultyStore::new(MemoryStore::new())),
        clock(),
        SimulatedHost,
    )
}

/// Starts a deployment of `file`; its id.
async fn start(s: &Setup, file: &str) -> DeploymentId {
    s.engine
        .start(file, BTreeMap::new())
        .await
        .expect("started")
        .id
}

fn awaiting(v: &DeploymentView) -> bool {
    v.gates
        .iter()
        .any(|g| matches!(g.state, GateState::AwaitingCallback { .. }))
}

/// Waits (paused or real tokio time, woken by the engine's events) until `pred` holds.
async fn until(s: &Setup, id: &DeploymentId, what: &str, pred: impl Fn(&DeploymentView) -> bool) {
    let mut events = s.engine.subscribe();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let v = s.engine.view(id).await.expect("a view");
            if pred(&v) {
                return;
            }
            let _ = events.recv().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never happened: {what}"));
}

/// The invariant: the deployment is running, waiting on a callback, has a deadline in the table
/// (checked once every task that may hold its lock has let it go: `view` takes the lock), and
/// the callback's timeout fails it once 24 h have passed.
async fn the_callback_timeout_fires(s: &Setup, id: &DeploymentId) {
    let view = s.engine.view(id).await.expect("a view");
    assert_eq!(view.status, DeploymentStatus::Running, "{view:?}");
    assert!(awaiting(&view), "waiting on a callback: {view:?}");
    assert!(
        s.engine.armed_deadlines() >= 1,
        "the callback's timeout is armed once the lock is let go: {view:?}"
    );
    s.clock
        .advance(TimeDelta::hours(24) + TimeDelta::minutes(1));
    for _ in 0..4 {
        s.engine.fire_due().await;
    }
    let view = s.engine.view(id).await.expect("a view");
    assert_eq!(
        view.status,
        DeploymentStatus::Failed,
        "the callback timeout fired after 24 h: {view:?}"
    );
}

fn callback_of(recorded: &RecordedRequest) -> CallbackId {
    recorded
        .call
        .as_ref()
        .expect("the dispatcher's request carries its call")
        .callback_id
}

/// Polls `call` until it is answered: a slow save is pending on its first poll only, so the
/// callback's own write needs no other task, and a bounded number of polls is enough.
async fn answered<F: Future + Unpin>(call: &mut F) -> F::Output {
    for _ in 0..100 {
        if let std::task::Poll::Ready(answer) = futures_util::poll!(&mut *call) {
            return answer;
        }
    }
    panic!("the callback was not answered after 100 polls");
}

/// The first call's callback, reporting success, as the external system sends it.
fn pass_first_call(s: &Setup) -> impl Future<Output = Result<CallbackAck, GateError>> + '_ {
    let callback = callback_of(&s.external.requests()[0]);
    async move {
        let by = Principal::new("ci");
        GateService::callback(&s.engine, callback, pass_report(), &by).await
    }
}

fn pass_report() -> CallbackReport {
    CallbackReport::Outcome {
        success: true,
        message: None,
    }
}

// ---- the plain path ---------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn two_inline_rounds_arm_the_callback_timeout() {
    let s = setup();
    let id = start(&s, STEP_THEN_GATE).await;
    assert_eq!(s.engine.armed_deadlines(), 1);
    the_callback_timeout_fires(&s, &id).await;
}

/// More rounds than `MAX_INLINE_ROUNDS`: the rest goes to `record_later` tasks.
#[tokio::test(flavor = "current_thread")]
async fn inline_rounds_run_out_and_tasks_record_the_rest() {
    let s = setup();
    let id = start(&s, &long_chain()).await;
    assert!(
        s.engine.armed_deadlines() >= 1 || s.engine.live_deployments() == 1,
        "something is armed or a task records the rest"
    );
    until(&s, &id, "the gate is reached", awaiting).await;
    the_callback_timeout_fires(&s, &id).await;
}

// ---- a caller that goes away ------------------------------------------------------------------

/// The callback's caller goes away while its write waits: the detached write, the step answered
/// at once and the second gate's call answered at once are recorded by a task.
#[tokio::test(flavor = "current_thread")]
async fn callback_dropped_mid_write_still_arms() {
    let s = setup();
    let id = start(&s, TWO_GATES).await;
    s.store.slow_saves(true);
    let mut call = Box::pin(pass_first_call(&s));
    assert!(
        futures_util::poll!(call.as_mut()).is_pending(),
        "the write waits"
    );
    drop(call);
    until(&s, &id, "the second gate is reached", |v| {
        matches!(v.gates[1].state, GateState::AwaitingCallback { .. })
    })
    .await;
    s.store.slow_saves(false);
    the_callback_timeout_fires(&s, &id).await;
}

/// The callback's caller goes away after its own write, while the write recording the step
/// answered at once waits (`settle_soon`'s task).
#[tokio::test(flavor = "current_thread")]
async fn callback_answered_then_settle_write_waits() {
    let s = setup();
    let id = start(&s, TWO_GATES).await;
    s.store.slow_saves(true);
    let mut call = Box::pin(pass_first_call(&s));
    // Poll until the callback's own write is done and it is answered.
    let ack = answered(&mut call).await;
    assert_eq!(ack, Ok(CallbackAck::Applied));
    until(&s, &id, "the second gate is reached", |v| {
        matches!(v.gates[1].state, GateState::AwaitingCallback { .. })
    })
    .await;
    s.store.slow_saves(false);
    the_callback_timeout_fires(&s, &id).await;
}

/// A `tokio::time::timeout` around the callback that gives up at once.
#[tokio::test(flavor = "current_thread")]
async fn callback_under_a_timeout_that_expires() {
    let s = setup();
    let id = start(&s, TWO_GATES).await;
    s.store.slow_saves(true);
    let _ = tokio::time::timeout(Duration::ZERO, pass_first_call(&s)).await;
    until(&s, &id, "the second gate is reached", |v| {
        matches!(v.gates[1].state, GateState::AwaitingCallback { .. })
    })
    .await;
    s.store.slow_saves(false);
    the_callback_timeout_fires(&s, &id).await;
}

// ---- the write recording results ready at once fails ----------------------------------------

/// Starts [`STEP_THEN_GATE`] on a store given `fault`: the write recording the step's result,
/// ready at once, or the gate call's fails, loses its answer or is stored late. The deadline
/// to try again or to look is armed; the looks are fired (about five minutes of them), and the
/// deployment reaches its gate, whose timeout then fires.
async fn armed_through_a_faulty_settle_write(fault: impl FnOnce(&FaultyStore<MemoryStore>)) {
    let s = setup();
    fault(&s.store);
    let id = start(&s, STEP_THEN_GATE).await;
    assert_eq!(
        s.engine.armed_deadlines(),
        1,
        "the failed write armed the deadline to try again or to look"
    );
    for _ in 0..10 {
        s.clock.advance(TimeDelta::seconds(30));
        s.engine.fire_due().await;
    }
    until(&s, &id, "the gate is reached", awaiting).await;
    the_callback_timeout_fires(&s, &id).await;
}

/// `start`'s first inline round (the step's result) fails to save: `arm_after_failure`, and the
/// deadline a second later records the result the deployment kept.
#[tokio::test(flavor = "current_thread")]
async fn settle_write_fails() {
    armed_through_a_faulty_settle_write(|store| store.fail_saves(0, 1)).await;
}

/// The second inline round (the gate call's result) fails.
#[tokio::test(flavor = "current_thread")]
async fn second_settle_write_fails() {
    armed_through_a_faulty_settle_write(|store| store.fail_saves(1, 1)).await;
}

/// The settle write keeps failing: each retry of the deadline fails too and arms the next, and
/// none loses the deployment or its result. The store recovers at the third.
#[tokio::test(flavor = "current_thread")]
async fn settle_write_fails_and_the_retry_deadline_fires() {
    let s = setup();
    s.store.fail_saves(0, 3);
    let id = start(&s, STEP_THEN_GATE).await;
    for _ in 0..2 {
        assert_eq!(s.engine.armed_deadlines(), 1, "the retry is armed");
        s.clock.set(s.engine.next_deadline().expect("the retry"));
        assert_eq!(s.engine.fire_due().await, 1);
    }
    let view = s.engine.view(&id).await.expect("a view");
    assert!(!awaiting(&view), "not recorded yet: {view:?}");
    s.clock.set(s.engine.next_deadline().expect("the retry"));
    s.engine.fire_due().await;
    until(&s, &id, "the gate is reached", awaiting).await;
    the_callback_timeout_fires(&s, &id).await;
}

/// The settle write panics (a store's bug): the deployment leaves memory and is looked at a
/// second later.
#[tokio::test(flavor = "current_thread")]
async fn settle_write_panics() {
    let s = setup();
    s.store.panic_saves(1);
    let id = start(&s, STEP_THEN_GATE).await;
    s.clock.advance(TimeDelta::seconds(2));
    s.engine.fire_due().await;
    until(&s, &id, "the gate is reached", awaiting).await;
    the_callback_timeout_fires(&s, &id).await;
}

/// The settle write is stored but answered with a failure (found stored by the look).
#[tokio::test(flavor = "current_thread")]
async fn settle_write_answer_lost() {
    armed_through_a_faulty_settle_write(|store| store.lose_save_answers(1)).await;
}

/// The settle write is stored, written over and answered with a failure: unsure, looked for.
#[tokio::test(flavor = "current_thread")]
async fn settle_write_answer_buried() {
    armed_through_a_faulty_settle_write(|store| store.bury_save_answers(1)).await;
}

/// The settle write is answered with a failure and stored after the next look.
#[tokio::test(flavor = "current_thread")]
async fn settle_write_stored_late() {
    armed_through_a_faulty_settle_write(|store| store.store_saves_late(1)).await;
}

/// The write recording results conflicts with another writer: reloaded, and armed after the
/// failure. The other writer here is a second engine (its own memory) sharing the store, which
/// cancels nothing but stores a later version under the first engine's feet.
#[tokio::test(flavor = "current_thread")]
async fn settle_write_conflicts() {
    let s = setup();
    let id = start(&s, TWO_GATES).await;
    // Let the callback's own write through, make the step result's write wait, and meanwhile
    // store a later version of the same state behind the engine's back.
    s.store.slow_saves(true);
    let mut call = Box::pin(pass_first_call(&s));
    let ack = answered(&mut call).await;
    assert_eq!(ack, Ok(CallbackAck::Applied));
    let stored = s.store.inner().load(&id).await.unwrap().unwrap();
    s.store
        .inner()
        .save(&id, stored.version, &stored.state, stored.status, &[])
        .await
        .unwrap();
    s.store.slow_saves(false);
    until(&s, &id, "the second gate is reached", |v| {
        matches!(v.gates[1].state, GateState::AwaitingCallback { .. })
    })
    .await;
    the_callback_timeout_fires(&s, &id).await;
}

// ---- recovery ---------------------------------------------------------------------------------

/// A host whose steps never answer.
#[derive(Clone)]
struct Stuck;

#[async_trait]
impl Host for Stuck {
    async fn run_step(&self, _: &StepContext, _: &HostStep) -> StepOutcome {
        std::future::pending().await
    }
    async fn roll_back(&self, _: &StepContext) -> StepOutcome {
        std::future::pending().await
    }
}

/// A deployment whose step was under way when its engine stopped; the next engine's `recover`
/// asks for the step again, answered at once, and then the gate call, answered at once.
#[tokio::test(flavor = "current_thread")]
async fn recovery_with_results_ready_at_once() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let clock = clock();
    let first = setup_with(store.clone(), clock.clone(), Stuck);
    let id = start(&first, STEP_THEN_GATE).await;
    first.engine.shutdown().await;
    let s = setup_with(store, clock, SimulatedHost);
    let recovered = s.engine.recover().await.unwrap();
    assert_eq!(recovered.resumed, 1);
    assert_eq!(s.engine.armed_deadlines(), 1);
    the_callback_timeout_fires(&s, &id).await;
}

/// As above, with the recording write failing.
#[tokio::test(flavor = "current_thread")]
async fn recovery_whose_settle_write_fails() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let clock = clock();
    let first = setup_with(store.clone(), clock.clone(), Stuck);
    let id = start(&first, STEP_THEN_GATE).await;
    first.engine.shutdown().await;
    let s = setup_with(store.clone(), clock, SimulatedHost);
    // The resumption's own write goes through; the step result's fails.
    store.fail_saves(1, 1);
    s.engine.recover().await.unwrap();
    assert_eq!(s.engine.armed_deadlines(), 1);
    s.clock.advance(TimeDelta::seconds(1));
    s.engine.fire_due().await;
    until(&s, &id, "the gate is reached", awaiting).await;
    the_callback_timeout_fires(&s, &id).await;
}

/// A single engine resumes, on an input, a deployment whose resumption at recovery failed.
#[tokio::test(flavor = "current_thread")]
async fn resumed_on_lookup_after_failed_recovery() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let clock = clock();
    let first = setup_with(store.clone(), clock.clone(), Stuck);
    let id = start(&first, STEP_THEN_GATE).await;
    first.engine.shutdown().await;
    let s = setup_with(store.clone(), clock, SimulatedHost);
    store.fail_saves(0, 1);
    let _ = s.engine.recover().await;
    s.clock.advance(TimeDelta::seconds(2));
    s.engine.fire_due().await;
    until(&s, &id, "the gate is reached", awaiting).await;
    the_callback_timeout_fires(&s, &id).await;
}

// ---- replicas ---------------------------------------------------------------------------------

fn replica(
    store: &Arc<FaultyStore<MemoryStore>>,
    clock: &ManualClock,
    name: &str,
    host: impl Host,
) -> Setup {
    let external = RecordingTransport::new();
    let engine = Engine::builder(
        external.dispatcher("https://hookgate.example").unwrap(),
        host,
    )
    .shared_store(store.clone())
    .clock(clock.clone())
    .ids(SequentialIds::starting_at(if name == "a" {
        1
    } else {
        1000
    }))
    .replica(hookgate::runtime::ReplicaOptions::new(name).lease(Duration::from_secs(48 * 3600)))
    .build();
    Setup {
        engine,
        store: store.clone(),
        external,
        clock: clock.clone(),
    }
}

/// Lease takeover: replica a stops with a step under way; b's upkeep claims the deployment,
/// resumes it, the step asked for again answers at once, and so does the gate's call.
#[tokio::test(flavor = "current_thread")]
async fn replica_takeover_with_results_ready_at_once() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let clock = clock();
    let a = replica(&store, &clock, "a", Stuck);
    let b = replica(&store, &clock, "b", SimulatedHost);
    a.engine.recover().await.unwrap();
    b.engine.recover().await.unwrap();
    let id = start(&a, STEP_THEN_GATE).await;
    a.engine.shutdown().await;
    let upkeep = b.engine.maintain_leases().await.unwrap();
    assert_eq!(upkeep.taken_over, 1, "{upkeep:?}");
    assert_eq!(b.engine.live_deployments(), 1);
    assert_eq!(b.engine.armed_deadlines(), 1);
    the_callback_timeout_fires(&b, &id).await;
}

/// A callback reaching the replica that does not drive its deployment: stored from a copy
/// (`owned == false`), and taken up by the driver's `sync_now` (its scheduler hears the
/// notice), which performs the step (answered at once) and the second gate's call (answered at
/// once).
#[tokio::test(flavor = "current_thread")]
async fn replica_sync_with_results_ready_at_once() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let clock = clock();
    let a = replica(&store, &clock, "a", SimulatedHost);
    let b = replica(&store, &clock, "b", SimulatedHost);
    a.engine.recover().await.unwrap();
    b.engine.recover().await.unwrap();
    let id = start(&a, TWO_GATES).await;
    let callback = callback_of(&a.external.requests()[0]);
    let scheduler = tokio::spawn({
        let engine = a.engine.clone();
        async move { engine.run_scheduler().await }
    });
    let ack = GateService::callback(&b.engine, callback, pass_report(), &Principal::new("ci"))
        .await
        .unwrap();
    assert_eq!(ack, CallbackAck::Applied);
    assert_eq!(b.engine.live_deployments(), 0, "b applied it to a copy");
    until(
        &a,
        &id,
        "a took the callback up and reached the second gate",
        |v| matches!(v.gates[1].state, GateState::AwaitingCallback { .. }),
    )
    .await;
    scheduler.abort();
    let _ = scheduler.await;
    the_callback_timeout_fires(&a, &id).await;
}

/// The engine tells when its next deadline is, so that a test on a manual clock goes straight
/// to it: here the gate's 24 h callback timeout, and none once it has failed the deployment.
#[tokio::test]
async fn the_next_deadline_is_where_a_manual_clock_goes() {
    let s = setup();
    let id = start(&s, STEP_THEN_GATE).await;
    until(&s, &id, "waiting on the callback", awaiting).await;
    let next = s.engine.next_deadline().expect("the callback's timeout");
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    assert_eq!(next, t0 + TimeDelta::hours(24));
    s.clock.set(next);
    assert_eq!(s.engine.fire_due().await, 1);
    let view = s.engine.view(&id).await.expect("a view");
    assert_eq!(view.status, DeploymentStatus::Failed, "{view:?}");
    assert_eq!(s.engine.next_deadline(), None);
}
