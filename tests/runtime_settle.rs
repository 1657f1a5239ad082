//! Results that are ready as soon as they are asked for (a host or transport that answers at
//! once) are recorded under the lock the input already holds; when the store makes that write
//! wait, the input is answered first and a task records them; when that write fails, the
//! deployment keeps them, and its deadline, a second later by the engine's clock, records them.
#![cfg(all(feature = "runtime", feature = "test-util", feature = "receiver"))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use hookgate::auth::Principal;
use hookgate::clock::Clock;
use hookgate::core::{
    CallbackAck, CallbackId, DeploymentId, DeploymentStatus, EventKind, GateState,
};
use hookgate::receiver::ReceivedRequest;
use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::server::{CallbackReport, GateService};
use hookgate::store::Store;
use hookgate::test_util::{FaultyStore, ManualClock, RecordingTransport, SequentialIds};

const PLAN: &str = r#"
application: settle
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: gate}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
"#;

struct Setup {
    engine: Engine,
    store: Arc<FaultyStore>,
    external: RecordingTransport,
    clock: ManualClock,
}

fn setup() -> Setup {
    let external = RecordingTransport::new();
    let dispatcher = external
        .dispatcher("https://hookgate.example")
        .expect("a dispatcher");
    let store = Arc::new(FaultyStore::default());
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap());
    let engine = Engine::builder(dispatcher, SimulatedHost)
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

/// Starts a deployment, and returns it with the callback id its webhook was sent.
async fn started(s: &Setup) -> (DeploymentId, CallbackId) {
    let id = s
        .engine
        .start(PLAN, BTreeMap::new())
        .await
        .expect("started")
        .id;
    let requests = s.external.requests();
    let sent = requests.last().expect("the webhook was called at once");
    let uri = ReceivedRequest::new()
        .with_body(&sent.body)
        .callback_uri()
        .expect("the body carries the callback URI");
    let callback = uri
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .and_then(|last| last.parse().ok())
        .expect("the URI ends with the callback id");
    (id, callback)
}

async fn pass(s: &Setup, callback: CallbackId) -> CallbackAck {
    let report = CallbackReport::Outcome {
        success: true,
        message: None,
    };
    GateService::callback(&s.engine, callback, report, &Principal::new("ci"))
        .await
        .expect("the callback is applied")
}

async fn stored_status(s: &Setup, id: &DeploymentId) -> DeploymentStatus {
    s.store
        .inner()
        .load(id)
        .await
        .expect("the memory store reads")
        .expect("the deployment is stored")
        .status
}

// A current-thread runtime runs no other task until the test awaits something that waits, so
// what is stored right after a call returns is what that call did itself.
#[tokio::test(flavor = "current_thread")]
async fn results_ready_at_once_are_recorded_before_the_input_is_answered() {
    let s = setup();
    let (id, callback) = started(&s).await;
    let view = s.engine.view(&id).await.expect("a view");
    assert!(
        matches!(view.gates[0].state, GateState::AwaitingCallback { .. }),
        "the call's answer was recorded by `start` itself: {:?}",
        view.gates[0].state
    );

    assert_eq!(pass(&s, callback).await, CallbackAck::Applied);
    assert_eq!(
        stored_status(&s, &id).await,
        DeploymentStatus::Succeeded,
        "the host step the callback started answered at once and was recorded by the callback's own call"
    );
    assert_eq!(s.engine.live_deployments(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_store_that_waits_gets_the_input_answered_first_and_the_deployment_stays_locked() {
    let s = setup();
    let (id, callback) = started(&s).await;
    s.store.slow_saves(true);

    assert_eq!(pass(&s, callback).await, CallbackAck::Applied);
    assert_eq!(
        stored_status(&s, &id).await,
        DeploymentStatus::Running,
        "answered after its own write, before the step's result was written"
    );
    let view = s.engine.view(&id).await.expect("a view");
    assert_eq!(
        view.status,
        DeploymentStatus::Succeeded,
        "the next look at the deployment waited for the step's result to be recorded"
    );
    assert_eq!(stored_status(&s, &id).await, DeploymentStatus::Succeeded);
}

/// The write recording the deploy step's result fails twice. The deployment keeps the result,
/// and its deadline, a second later by the engine's clock and then two, records it: no timer
/// of Tokio's, so a test on a manual clock drives it with `fire_due`, and nothing records it
/// before then.
#[tokio::test(flavor = "current_thread")]
async fn a_result_whose_write_fails_is_recorded_by_its_deadline_once_the_store_works_again() {
    let s = setup();
    let (id, callback) = started(&s).await;
    // The callback's own save goes through; the step result's fails, and so does its retry.
    s.store.fail_saves(1, 2);

    assert_eq!(pass(&s, callback).await, CallbackAck::Applied);
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(stored_status(&s, &id).await, DeploymentStatus::Running);
    let seconds_on = |n| Some(s.clock.now() + TimeDelta::seconds(n));
    assert_eq!(s.engine.next_deadline(), seconds_on(1), "the retry");

    s.clock.advance(TimeDelta::seconds(1));
    assert_eq!(s.engine.fire_due().await, 1);
    assert_eq!(stored_status(&s, &id).await, DeploymentStatus::Running);
    assert_eq!(
        s.engine.next_deadline(),
        seconds_on(2),
        "the next retry, after a wait twice as long"
    );

    s.clock.advance(TimeDelta::seconds(2));
    assert_eq!(s.engine.fire_due().await, 1);
    assert_eq!(stored_status(&s, &id).await, DeploymentStatus::Succeeded);
    assert_eq!(s.engine.next_deadline(), None);
    let history = s.store.inner().history(&id).await.expect("a history");
    let finished = history
        .iter()
        .filter(|h| matches!(h.event.kind, EventKind::DeploymentFinished { .. }))
        .count();
    assert_eq!(finished, 1, "the result was recorded once: {history:#?}");
}

/// A result kept after its write failed is recorded by the deployment's next input, before the
/// input's own change, without waiting for its deadline.
#[tokio::test(flavor = "current_thread")]
async fn a_result_kept_after_a_failed_write_is_recorded_by_the_next_input() {
    let s = setup();
    let (id, callback) = started(&s).await;
    s.store.fail_saves(1, 1);
    assert_eq!(pass(&s, callback).await, CallbackAck::Applied);
    assert_eq!(stored_status(&s, &id).await, DeploymentStatus::Running);

    // A repeat of the callback changes nothing of its own; the write it makes is the result's.
    assert_eq!(pass(&s, callback).await, CallbackAck::Duplicate);
    assert_eq!(stored_status(&s, &id).await, DeploymentStatus::Succeeded);
    assert_eq!(s.engine.next_deadline(), None, "nothing left to retry");
}

/// A caller that stops waiting (a client that hangs up, a timeout around the handler) once the
/// callback is applied in memory leaves the write to go on: the callback is stored and acted on,
/// and the sender's retry is then a duplicate of what is stored.
#[tokio::test(flavor = "current_thread")]
async fn a_callback_whose_caller_goes_away_during_its_write_is_still_stored_and_acted_on() {
    let s = setup();
    let (id, callback) = started(&s).await;
    s.store.slow_saves(true);

    let mut call = Box::pin(pass(&s, callback));
    let first = futures_util::poll!(call.as_mut());
    assert!(first.is_pending(), "the write waits");
    drop(call);
    let view = s.engine.view(&id).await.expect("a view");
    assert_eq!(
        view.status,
        DeploymentStatus::Succeeded,
        "the write and the deploy step it started went on without the caller"
    );
    assert_eq!(stored_status(&s, &id).await, DeploymentStatus::Succeeded);
    assert_eq!(pass(&s, callback).await, CallbackAck::Duplicate);
}

/// A caller that stops waiting while its deployment is being created (a client that hangs up)
/// leaves the launch to go on: the deployment is stored and driven (its webhook is called), not
/// left stored with nobody driving it and its application locked against new deployments.
#[tokio::test(flavor = "current_thread")]
async fn a_start_whose_caller_goes_away_during_the_create_is_still_launched() {
    let s = setup();
    s.store.slow_creates(true);

    let mut start = Box::pin(s.engine.start(PLAN, BTreeMap::new()));
    let first = futures_util::poll!(start.as_mut());
    assert!(first.is_pending(), "the create waits");
    drop(start);
    tokio::time::timeout(Duration::from_secs(10), async {
        while s.external.requests().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the launch went on without the caller and called the webhook");

    let running = s
        .store
        .inner()
        .running_for_application("settle")
        .await
        .expect("a listing");
    assert_eq!(running.len(), 1, "{running:?}");
    let view = s.engine.view(&running[0]).await.expect("a view");
    assert!(
        view.gates.iter().any(|g| matches!(
            g.state,
            GateState::AwaitingCallback { .. } | GateState::Calling { .. }
        )),
        "{view:?}"
    );
}

/// `shutdown` waits for a write whose caller still waits on it, and an input that was waiting
/// for the deployment's lock when shutdown began is refused rather than applied: a replica
/// gives its leases up only once nothing more will be written under them.
#[tokio::test(flavor = "current_thread")]
async fn shutdown_waits_for_writes_in_flight_and_refuses_inputs_queued_behind_them() {
    let s = setup();
    let (id, callback) = started(&s).await;
    s.store.slow_saves(true);
    let by = Principal::new("ci");
    let note = CallbackReport::Progress {
        message: "half way".into(),
    };
    let outcome = CallbackReport::Outcome {
        success: true,
        message: None,
    };
    let mut writing = Box::pin(GateService::callback(&s.engine, callback, note, &by));
    assert!(
        futures_util::poll!(writing.as_mut()).is_pending(),
        "its write waits"
    );
    let mut queued = Box::pin(GateService::callback(&s.engine, callback, outcome, &by));
    assert!(
        futures_util::poll!(queued.as_mut()).is_pending(),
        "it waits for the lock"
    );
    let mut shutdown = Box::pin(s.engine.shutdown());
    assert!(
        futures_util::poll!(shutdown.as_mut()).is_pending(),
        "shutdown waits for the write in flight"
    );

    assert_eq!(writing.await, Ok(CallbackAck::Applied));
    assert!(
        matches!(
            queued.await,
            Err(hookgate::server::GateError::Unavailable(_))
        ),
        "the input behind it is refused (503), so its sender retries elsewhere"
    );
    shutdown.await;
    let stored = s.store.inner().load(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.status,
        DeploymentStatus::Running,
        "the gate is still open"
    );
}

/// PROTOCOL.md §5: a callback is answered `200` only once its outcome is durably stored. When
/// the callback's own write fails, the engine answers `Unavailable` (which the HTTP layer maps
/// to `503`, so the sender retries), the gate stays open and nothing of the callback is
/// stored; the sender's retry is then applied as the first delivery, and the gate passes.
#[tokio::test(flavor = "current_thread")]
async fn a_callback_whose_own_write_fails_is_refused_with_unavailable_and_applied_on_retry() {
    use hookgate::core::Resolution;
    use hookgate::server::GateError;

    let s = setup();
    let (id, callback) = started(&s).await;
    let before = s.store.inner().load(&id).await.unwrap().unwrap();
    // The callback's own save fails (writing nothing); every save after it goes through.
    s.store.fail_saves(0, 1);

    let report = CallbackReport::Outcome {
        success: true,
        message: Some("tests passed".into()),
    };
    let refused =
        GateService::callback(&s.engine, callback, report.clone(), &Principal::new("ci")).await;
    assert!(
        matches!(refused, Err(GateError::Unavailable(_))),
        "a callback that could not be stored is refused with a retryable 503: {refused:?}"
    );

    let view = s.engine.view(&id).await.expect("a view");
    assert_eq!(view.status, DeploymentStatus::Running);
    assert!(
        matches!(view.gates[0].state, GateState::AwaitingCallback { .. }),
        "the gate stays open: {:?}",
        view.gates[0].state
    );
    let after = s.store.inner().load(&id).await.unwrap().unwrap();
    assert_eq!(after.version, before.version, "nothing was stored");
    assert_eq!(after.state, before.state, "nothing was stored");
    let history = s.store.inner().history(&id).await.expect("a history");
    assert!(
        !history.iter().any(|h| matches!(
            h.event.kind,
            EventKind::CallbackReceived { .. } | EventKind::GatePassed { .. }
        )),
        "no callback is recorded as applied: {history:#?}"
    );

    let retried = GateService::callback(&s.engine, callback, report, &Principal::new("ci")).await;
    assert_eq!(
        retried,
        Ok(CallbackAck::Applied),
        "the retry is the first delivery that was stored, not a duplicate"
    );
    let view = s.engine.view(&id).await.expect("a view");
    assert_eq!(
        view.gates[0].state,
        GateState::Passed(Resolution::Callback),
        "{view:?}"
    );
    assert_eq!(view.status, DeploymentStatus::Succeeded);
    let history = s.store.inner().history(&id).await.expect("a history");
    let received = history
        .iter()
        .filter(|h| {
            matches!(
                h.event.kind,
                EventKind::CallbackReceived { success: true, .. }
            )
        })
        .count();
    assert_eq!(received, 1, "the callback is stored once: {history:#?}");
}

/// A deploy step answered at once, then a gate whose call is answered at once: both recorded
/// by `start` itself, the deployment waits on the callback with its timeout armed, which fails
/// the gate once it has passed. (The writes recording results ready at once arm the deadline;
/// the write before them leaves it to them.)
#[tokio::test(flavor = "current_thread")]
async fn the_deadline_is_armed_once_results_ready_at_once_are_recorded() {
    const STEP_THEN_GATE: &str = r#"
application: settle-deadline
targets:
  staging: {}
  prod:
    constraints:
      dependsOn: [staging]
      beforeDeployment: [runWebhook: {name: gate}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    bodyTemplate: {inline: '{{armory.callbackUri}}'}
"#;
    let external = RecordingTransport::new();
    let clock = hookgate::test_util::ManualClock::new(chrono::Utc::now());
    let engine = Engine::builder(
        external.dispatcher("https://hookgate.example").unwrap(),
        SimulatedHost,
    )
    .clock(clock.clone())
    .build();
    let id = engine
        .start(STEP_THEN_GATE, BTreeMap::new())
        .await
        .unwrap()
        .id;
    let view = engine.view(&id).await.unwrap();
    assert!(
        matches!(view.gates[0].state, GateState::AwaitingCallback { .. }),
        "{:?}",
        view.gates[0].state
    );
    assert_eq!(engine.armed_deadlines(), 1, "the callback's timeout");

    clock.advance(chrono::TimeDelta::hours(23));
    assert_eq!(engine.fire_due().await, 0, "not due yet");
    clock.advance(chrono::TimeDelta::hours(1));
    assert_eq!(engine.fire_due().await, 1);
    assert_eq!(
        engine.view(&id).await.unwrap().status,
        DeploymentStatus::Failed,
        "the gate timed out"
    );
    assert_eq!(engine.armed_deadlines(), 0);
}

/// `wait_finished` returns once the deployment has finished, however it ends, and refuses an
/// id no deployment has.
#[tokio::test(flavor = "current_thread")]
async fn waiting_for_a_deployment_returns_how_it_finished() {
    let s = setup();
    let (id, callback) = started(&s).await;
    let waiting = tokio::spawn({
        let (engine, id) = (s.engine.clone(), id.clone());
        async move { engine.wait_finished(&id).await }
    });
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "the deployment waits on its callback"
    );
    assert_eq!(pass(&s, callback).await, CallbackAck::Applied);
    assert_eq!(
        waiting
            .await
            .expect("the wait ends")
            .expect("the deployment is found"),
        DeploymentStatus::Succeeded
    );

    let (canceled, _) = started(&s).await;
    let waiting = tokio::spawn({
        let (engine, id) = (s.engine.clone(), canceled.clone());
        async move { engine.wait_finished(&id).await }
    });
    tokio::task::yield_now().await;
    s.engine
        .cancel(&canceled, "operator")
        .await
        .expect("canceled");
    assert_eq!(
        waiting
            .await
            .expect("the wait ends")
            .expect("the deployment is found"),
        DeploymentStatus::Canceled
    );
    assert_eq!(
        s.engine
            .wait_finished(&id)
            .await
            .expect("found in the store"),
        DeploymentStatus::Succeeded,
        "a deployment finished before is answered at once"
    );
    assert!(matches!(
        s.engine.wait_finished(&"no-such".into()).await,
        Err(hookgate::runtime::RuntimeError::UnknownDeployment(_))
    ));
}
