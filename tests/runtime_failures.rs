//! What the engine does when its store fails under it, or when the caller of an input goes
//! away before the input's write is done.
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use hookgate::auth::Principal;
use hookgate::clock::Clock;
use hookgate::core::{CallbackAck, CallbackId, DeploymentId, DeploymentStatus, Event, EventKind};
use hookgate::runtime::{Engine, EngineEvent, SimulatedHost};
use hookgate::server::{CallbackReport, GateError, GateService};
use hookgate::store::{Store, StoredDeployment};
use hookgate::test_util::{FaultyStore, RecordingTransport, SequentialIds};
use tokio::sync::broadcast::Receiver;

mod faulty_store;
mod finish;
mod two_calls;

use faulty_store::{GATE, Setup, engine, setup};

const PAUSE: &str = r#"
application: pause
targets:
  prod:
    constraints:
      beforeDeployment: [pause: {duration: 1, unit: minutes}]
"#;

impl Setup {
    /// Starts a deployment of [`PAUSE`].
    async fn start_pause(&self) -> DeploymentId {
        self.engine
            .start(PAUSE, BTreeMap::new())
            .await
            .expect("started")
            .id
    }

    /// Starts a deployment of [`PAUSE`] (`enqueueOne`) and queues a second one behind it;
    /// returns both.
    async fn queue_one_behind_another(&self) -> (DeploymentId, DeploymentId) {
        let plan = enqueue_one();
        let first = self
            .engine
            .start(&plan, BTreeMap::new())
            .await
            .expect("the first starts")
            .id;
        let queued = self
            .engine
            .start(&plan, BTreeMap::new())
            .await
            .expect("the second is queued");
        assert_eq!(queued.status, DeploymentStatus::Queued);
        (first, queued.id)
    }

    /// Queues a deployment behind another, sets the store's `fault`, and ends the first: the
    /// queued one's start fails, is owed, and its create is looked for. Returns it.
    async fn hand_off_failing(&self, fault: impl FnOnce(&FaultyStore)) -> DeploymentId {
        let (_, queued) = self.queue_one_behind_another().await;
        fault(&self.store);
        self.clock.advance(TimeDelta::minutes(2));
        self.engine.fire_due().await;
        until(
            || self.engine.armed_deadlines() == 2,
            "the start is owed, and the create looked for",
        )
        .await;
        queued
    }

    /// A deployment queued behind another, stored and running while still queued: its launch's
    /// create, answered with a failure, is stored once the look that follows has found nothing;
    /// the hand-off queues it again and tries again a second later and then two seconds after
    /// that, failing both times, while the second look finds it stored and resumes it.
    async fn found_stored_while_queued(&self) -> DeploymentId {
        let queued = self
            .hand_off_failing(|store| store.store_creates_late(1, 1))
            .await;
        self.store.fail_creates(2);
        for wait in [1, 2] {
            let next = self.clock.now() + TimeDelta::seconds(wait);
            assert_eq!(
                self.engine.next_deadline(),
                Some(next),
                "the look and the start"
            );
            self.clock.set(next);
            self.engine.fire_due().await;
        }
        assert_eq!(self.stored(&queued).await.status, DeploymentStatus::Running);
        assert_eq!(self.engine.live_deployments(), 1, "resumed by the look");
        queued
    }

    /// Cancels `first` with the cancel's write stored but answered with a failure, and the look
    /// at the store failing too.
    async fn cancel_with_its_answer_lost(&self, first: &DeploymentId) {
        self.store.lose_save_answers(1);
        self.store.fail_loads(1);
        assert!(
            self.engine.cancel(first, "operator").await.is_err(),
            "whether the cancel was stored is not known"
        );
        assert_eq!(self.stored(first).await.status, DeploymentStatus::Canceled);
    }

    /// [`GATE`] (or `plan`, a variant of it) started and waiting for its callback; returns the
    /// deployment and its gate's callback id.
    async fn waiting_for_a_callback(&self, plan: &str) -> (DeploymentId, CallbackId) {
        let id = self.engine.start(plan, BTreeMap::new()).await.unwrap().id;
        let uri = String::from_utf8(self.external.requests()[0].body.to_vec()).unwrap();
        (id, uri.rsplit('/').next().unwrap().parse().unwrap())
    }

    /// A progress note for `callback` whose write fails, with nothing stored.
    async fn note_whose_write_fails(&self, callback: CallbackId) {
        self.store.fail_saves(0, 1);
        let note = CallbackReport::Progress {
            message: "half way".into(),
        };
        let answered =
            GateService::callback(&self.engine, callback, note, &Principal::new("ci")).await;
        assert!(answered.is_err(), "{answered:?}");
    }

    /// Fires what is due once a second for `seconds` seconds; `id` has then succeeded and left
    /// memory.
    async fn succeeds_within(&self, id: &DeploymentId, seconds: usize) {
        for _ in 0..seconds {
            self.clock.advance(TimeDelta::seconds(1));
            self.engine.fire_due().await;
        }
        assert_eq!(self.stored(id).await.status, DeploymentStatus::Succeeded);
        assert_eq!(self.engine.live_deployments(), 0);
    }

    /// The deployment as stored, past the store's faults.
    async fn stored(&self, id: &DeploymentId) -> StoredDeployment {
        self.store
            .inner()
            .load(id)
            .await
            .expect("a load")
            .expect("stored")
    }
}

/// [`PAUSE`] with `ifDeploymentInProgress: enqueueOne`.
fn enqueue_one() -> String {
    format!("{PAUSE}deploymentConfig: {{ifDeploymentInProgress: {{strategy: enqueueOne}}}}\n")
}

/// Waits until `done` holds, for work the engine's tasks do; 20 s at most, then fails with
/// `what`.
async fn until(done: impl Fn() -> bool, what: &str) {
    let wait = async {
        while !done() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), wait)
        .await
        .expect(what);
}

/// The wait doubles with each failure in a row (1 s, 2 s, 4 s, then 8 s at most), so an outage
/// is not met with a write a second from every deployment.
#[tokio::test]
async fn a_deadline_whose_write_fails_is_tried_again_a_second_later_then_longer() {
    let s = setup();
    s.engine
        .start(PAUSE, BTreeMap::new())
        .await
        .expect("started");
    s.clock.advance(TimeDelta::minutes(2));
    s.store.fail_saves(0, 100);

    assert_eq!(s.engine.fire_due().await, 1, "the pause's end is due");
    assert_eq!(
        s.engine.fire_due().await,
        0,
        "nothing is due again until a second has passed"
    );
    let armed = s.engine.armed_deadlines();
    s.clock.advance(TimeDelta::seconds(1));
    assert!(s.engine.fire_due().await >= 1, "tried again after a second");
    assert_eq!(
        s.engine.armed_deadlines(),
        armed,
        "each failed try leaves as many deadlines as the one before"
    );
    for wait in [2, 4, 8, 8] {
        s.clock.advance(TimeDelta::seconds(wait - 1));
        assert_eq!(s.engine.fire_due().await, 0, "not before {wait} s");
        s.clock.advance(TimeDelta::seconds(1));
        assert!(s.engine.fire_due().await >= 1, "tried again after {wait} s");
    }

    s.store.fail_saves(0, 0);
    s.clock.advance(TimeDelta::seconds(8));
    s.engine.fire_due().await;
    assert_eq!(s.engine.live_deployments(), 0, "the deployment finished");
}

/// On a clock at the last time chrono represents, where the core puts deadlines too far away
/// to represent, a failed write is tried again at once rather than a second later, which does
/// not exist.
#[tokio::test]
async fn a_failed_write_at_the_end_of_time_is_tried_again_without_a_panic() {
    let s = setup();
    let id = s.start_pause().await;
    s.clock.set(DateTime::<Utc>::MAX_UTC);
    s.store.fail_saves(0, 1);
    assert_eq!(s.engine.fire_due().await, 1, "the pause's end is due");
    assert_eq!(s.engine.armed_deadlines(), 1, "and tried again");
    s.succeeds_within(&id, 3).await;
}

/// The same for a deployment whose resumption failed, which is not in memory.
#[tokio::test]
async fn a_failed_resumption_at_the_end_of_time_is_tried_again_without_a_panic() {
    let s = setup();
    let id = s.start_pause().await;
    s.engine.shutdown().await;
    s.clock.set(DateTime::<Utc>::MAX_UTC);
    let restarted = engine(&s.store, &s.clock, &RecordingTransport::new());
    // Its first write, of the pause that ended while it was down, fails.
    s.store.fail_saves(0, 1);
    restarted.recover().await.expect("recovery goes on");
    assert_eq!(restarted.live_deployments(), 0);
    assert_eq!(
        restarted.armed_deadlines(),
        1,
        "the resumption is tried again"
    );
    for _ in 0..3 {
        restarted.fire_due().await;
    }
    assert_eq!(s.stored(&id).await.status, DeploymentStatus::Succeeded);
}

const CALL_AND_PAUSE: &str = r#"
application: resume
targets:
  prod:
    constraints:
      beforeDeployment:
        - runWebhook: {name: gate}
        - pause: {duration: 1, unit: minutes}
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
"#;

/// A deployment whose resumption at recovery failed is resumed when it is next needed: the call
/// that was in flight when the engine stopped is sent again. While its write keeps failing, it
/// is tried again at waits that double, up to 8 s.
#[tokio::test]
async fn a_deployment_whose_resumption_failed_is_resumed_when_next_needed() {
    let s = setup();
    let first = RecordingTransport::new();
    let stopped = engine(&s.store, &s.clock, &first);
    // The call's answer is never stored: the engine stops with the call in flight.
    s.store.fail_saves(0, 1);
    stopped
        .start(CALL_AND_PAUSE, BTreeMap::new())
        .await
        .expect("started");
    assert_eq!(first.count(), 1);
    stopped.shutdown().await;
    drop(stopped);

    s.clock.advance(TimeDelta::minutes(2));
    let second = RecordingTransport::new();
    let restarted = engine(&s.store, &s.clock, &second);
    // Its first write, of the pause that ended while it was down, fails.
    s.store.fail_saves(0, 1);
    restarted
        .recover()
        .await
        .expect("recovery goes on past one deployment");
    assert_eq!(second.count(), 0, "nothing was sent while its write failed");
    assert_eq!(restarted.live_deployments(), 0);

    // Tried again a second later, then twice as long after each further failure in a row.
    s.store.fail_saves(0, 3);
    for wait in [1, 2, 4, 8] {
        s.clock.advance(TimeDelta::seconds(wait - 1));
        assert_eq!(restarted.fire_due().await, 0, "not tried before {wait} s");
        assert_eq!(second.count(), 0);
        s.clock.advance(TimeDelta::seconds(1));
        assert_eq!(restarted.fire_due().await, 1, "tried again {wait} s later");
        assert_eq!(
            restarted.armed_deadlines(),
            1,
            "each try leaves one deadline"
        );
    }
    assert_eq!(
        second.count(),
        1,
        "the call in flight was sent again once the deployment was resumed"
    );
}

/// A webhook gate in one environment beside a pause in another.
const CALL_BESIDE_PAUSE: &str = r#"
application: beside
targets:
  dev:
    constraints:
      beforeDeployment: [runWebhook: {name: gate}]
  prod:
    constraints:
      beforeDeployment: [pause: {duration: 1, unit: minutes}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    bodyTemplate: {inline: '{{armory.callbackUri}}'}
"#;

/// An input that waited on a deployment's lock while its resumption's write failed looks the
/// deployment up again, which resumes it anew: the call that was in flight when the engine
/// stopped is sent again at once, rather than the input being applied to a copy no longer in
/// memory and the call left until a deadline next resumes the deployment.
#[tokio::test]
async fn an_input_waiting_on_a_failed_resumption_resumes_the_deployment_anew() {
    let s = setup();
    let (restarted, second, note) =
        note_waiting_on_a_failed_resumption(&s, None, Principal::new("ci")).await;
    note.expect("the note is recorded");
    assert_eq!(
        second.count(),
        1,
        "the call in flight was sent again by the deployment resumed anew"
    );
    assert_eq!(restarted.live_deployments(), 1);
}

/// The same input from another tenant is refused without the look-up, which would resume the
/// deployment: a refused caller changes nothing.
#[tokio::test]
async fn another_tenants_input_waiting_on_a_failed_resumption_resumes_nothing() {
    let s = setup();
    let (restarted, second, note) =
        note_waiting_on_a_failed_resumption(&s, Some("a"), Principal::new("ci-b").with_tenant("b"))
            .await;
    assert!(matches!(note, Err(GateError::Forbidden(_))), "{note:?}");
    assert_eq!(second.count(), 0, "nothing was sent");
    assert_eq!(restarted.live_deployments(), 0);
}

/// Starts [`CALL_BESIDE_PAUSE`] (for `tenant`) on an engine that stops with the call in flight,
/// then recovers it on a second engine whose resumption's write waits and fails, while a
/// progress note from `by` waits on the deployment's lock. Returns the second engine, its
/// transport and the note's answer.
async fn note_waiting_on_a_failed_resumption(
    s: &Setup,
    tenant: Option<&str>,
    by: Principal,
) -> (Engine, RecordingTransport, Result<CallbackAck, GateError>) {
    use std::pin::pin;

    let first = RecordingTransport::new();
    let stopped = engine(&s.store, &s.clock, &first);
    // The call's answer is never stored: the engine stops with the call in flight.
    s.store.fail_saves(0, 1);
    let started = match tenant {
        Some(tenant) => {
            stopped
                .start_for_tenant(CALL_BESIDE_PAUSE, BTreeMap::new(), tenant)
                .await
        }
        None => stopped.start(CALL_BESIDE_PAUSE, BTreeMap::new()).await,
    };
    started.expect("started");
    let uri = String::from_utf8(first.requests()[0].body.to_vec()).unwrap();
    let callback: CallbackId = uri.rsplit('/').next().unwrap().parse().unwrap();
    stopped.shutdown().await;
    drop(stopped);

    // The pause ended while no engine ran: resuming records that, in a write.
    s.clock.advance(TimeDelta::minutes(2));
    let second = RecordingTransport::new();
    let restarted = engine(&s.store, &s.clock, &second);
    s.store.slow_saves(true);
    s.store.fail_saves(0, 1);
    let note = {
        let mut recovering = pin!(restarted.recover());
        assert!(
            futures_util::poll!(recovering.as_mut()).is_pending(),
            "the resumption's write waits, the deployment in memory and locked"
        );
        let note = tokio::spawn({
            let restarted = restarted.clone();
            async move {
                let note = CallbackReport::Progress {
                    message: "half way".into(),
                };
                GateService::callback(&restarted, callback, note, &by).await
            }
        });
        // The note finds the deployment in memory and waits on its lock.
        tokio::task::yield_now().await;
        assert!(!note.is_finished(), "the note waits");
        recovering
            .await
            .expect("recovery goes on past one deployment");
        note.await.unwrap()
    };
    (restarted, second, note)
}

/// A deployment being started (stored, its create not yet answered) that an input looks up by
/// id meanwhile, as one can for a queued deployment its hand-off starts, is left to its start:
/// the look-up waits for it rather than resume it, which would perform its first call, and
/// publish what follows, before the start's own events.
#[tokio::test]
async fn a_deployment_looked_up_while_its_start_is_under_way_is_left_to_the_start() {
    use std::pin::pin;

    let s = setup();
    let mut events = s.engine.subscribe();
    s.store.late_create_answers(true);
    let mut start = pin!(s.engine.start(GATE, BTreeMap::new()));
    assert!(
        futures_util::poll!(start.as_mut()).is_pending(),
        "stored, its create not yet answered"
    );
    let listed = s.store.inner().list_unfinished().await.unwrap().deployments;
    let [stored] = &listed[..] else {
        panic!("one deployment stored: {listed:?}")
    };
    let id = stored.id.clone();

    // The look-up first, while the start waits for its create's answer.
    let (view, started) = tokio::join!(s.engine.view(&id), start);
    assert_eq!(started.expect("started").id, id);
    assert_eq!(view.expect("a view").status, DeploymentStatus::Running);
    assert_eq!(s.external.count(), 1, "one call");
    let mut kinds = Vec::new();
    while let Ok(EngineEvent::Deployment { event, .. }) = events.try_recv() {
        kinds.push(event.kind);
    }
    assert!(
        matches!(kinds.first(), Some(EventKind::DeploymentStarted)),
        "the start's events come first: {kinds:?}"
    );
}

/// A deployment queued behind a running one (`enqueueOne`) is started when that one finishes,
/// even if the store fails at that moment: it stays queued and is tried again, since nothing
/// else would start it.
#[tokio::test]
async fn a_queued_deployment_whose_start_fails_is_started_once_the_store_works() {
    let s = setup();
    let queued = s.hand_off_failing(|store| store.fail_creates(2)).await;
    // By the engine's clock: a second after the first failure, two after the second.
    for wait in [1, 2] {
        let next = s.clock.now() + TimeDelta::seconds(wait);
        assert_eq!(s.engine.next_deadline(), Some(next));
        assert!(
            s.store.inner().load(&queued).await.unwrap().is_none(),
            "not started before then"
        );
        s.clock.set(next);
        s.engine.fire_due().await;
    }
    assert_eq!(s.stored(&queued).await.status, DeploymentStatus::Running);
    assert_eq!(s.engine.live_deployments(), 1, "started here");
}

/// A retry of a queued deployment's start that meets another start under way does not hold up
/// the scheduler's round (a start may wait on a slow store, and the round's lease upkeep would
/// wait too), nor put the queued deployment off until a round finds no start under way: it
/// waits for that start in a task, in turn, and then starts the queued deployment.
#[tokio::test]
async fn a_queued_start_retried_while_another_start_is_under_way_waits_for_it_in_a_task() {
    use std::pin::pin;

    let s = setup();
    let queued = s.hand_off_failing(|store| store.fail_creates(1)).await;
    s.store.slow_creates(true);
    let other = PAUSE.replace("application: pause", "application: other");
    let mut start = pin!(s.engine.start(&other, BTreeMap::new()));
    assert!(
        futures_util::poll!(start.as_mut()).is_pending(),
        "another start holds the start lock, waiting for its create"
    );
    s.clock.advance(TimeDelta::seconds(1));
    tokio::time::timeout(std::time::Duration::from_secs(10), s.engine.fire_due())
        .await
        .expect("the round does not wait for the start");
    assert!(s.store.inner().load(&queued).await.unwrap().is_none());

    start.await.expect("the other one starts");
    until(
        || s.engine.live_deployments() == 2,
        "the queued one starts once the other start is done, with no clock moved",
    )
    .await;
    assert_eq!(s.stored(&queued).await.status, DeploymentStatus::Running);
}

/// A deployment whose writes keep panicking (a `Store` implementation's bug) is read again
/// and tried at waits that double up to 8 s, one retry at a time: the panic reaches both the
/// write and the deadline's firing, and each arming a retry doubled them at every round.
#[tokio::test]
async fn a_deployment_whose_writes_keep_panicking_is_tried_again_one_retry_at_a_time() {
    let s = setup();
    s.start_pause().await;
    s.store.panic_saves(usize::MAX);
    s.clock.advance(TimeDelta::minutes(2));
    assert_eq!(
        s.engine.fire_due().await,
        1,
        "the pause's end, whose write panics"
    );
    let mut waits = Vec::new();
    for _ in 0..6 {
        assert_eq!(s.engine.armed_deadlines(), 1, "one retry: {waits:?}");
        let next = s.engine.next_deadline().expect("a retry");
        waits.push((next - s.clock.now()).num_seconds());
        s.clock.set(next);
        assert_eq!(s.engine.fire_due().await, 1);
    }
    assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
}

/// A queued deployment whose start panics in the store (a `Store` implementation's bug) is
/// kept queued and tried again, as after a failed create that may have been stored.
#[tokio::test]
async fn a_queued_start_that_panics_in_the_store_is_tried_again() {
    let s = setup();
    let queued = s.hand_off_failing(|store| store.fail_creates(1)).await;
    s.store.panic_creates(1);
    let next = s.clock.now() + TimeDelta::seconds(1);
    s.clock.set(next);
    s.engine.fire_due().await;
    assert!(s.store.inner().load(&queued).await.unwrap().is_none());

    let next = s.clock.now() + TimeDelta::seconds(2);
    assert_eq!(
        s.engine.next_deadline(),
        Some(next),
        "the second failure's wait"
    );
    s.clock.set(next);
    s.engine.fire_due().await;
    assert_eq!(s.stored(&queued).await.status, DeploymentStatus::Running);
}

/// A deadline whose firing panics (here the store's load, a `Store` implementation's bug) is
/// fired again a second later rather than end the scheduler's round and every one after it:
/// the deadlines after it in the round are fired too.
#[tokio::test]
async fn a_deadline_whose_firing_panics_is_fired_again_a_second_later() {
    let s = setup();
    s.store.lose_create_answers(1);
    s.store.fail_loads(1);
    assert!(s.engine.start(PAUSE, BTreeMap::new()).await.is_err());
    let other = PAUSE.replace("application: pause", "application: other");
    let other = s.engine.start(&other, BTreeMap::new()).await.unwrap().id;
    s.store.panic_loads(1);

    // The look for the first (due in a second) panics; the other's pause ends after it.
    s.clock.advance(TimeDelta::minutes(1));
    assert_eq!(
        s.engine.fire_due().await,
        2,
        "the look, and the other's pause"
    );
    assert_eq!(s.stored(&other).await.status, DeploymentStatus::Succeeded);
    let first = s.store.inner().list_unfinished().await.unwrap().deployments;
    let [first] = &first[..] else {
        panic!("the first is stored, unfinished: {first:?}")
    };
    s.clock.advance(TimeDelta::seconds(1));
    assert_eq!(
        s.engine.fire_due().await,
        1,
        "looked at again a second later"
    );
    assert_eq!(
        s.stored(&first.id).await.status,
        DeploymentStatus::Succeeded,
        "found, resumed, and its pause, over by then, ended"
    );
}

/// A round of deadlines stopped part way (the scheduler's future dropped while a write waits)
/// leaves the deadlines it had not fired yet in the table, the one it was firing included: the
/// next round fires them.
#[tokio::test]
async fn a_round_of_deadlines_stopped_part_way_leaves_the_rest_for_the_next() {
    use std::pin::pin;

    let s = setup();
    let other = PAUSE.replace("application: pause", "application: other");
    for file in [PAUSE, other.as_str()] {
        s.engine
            .start(file, BTreeMap::new())
            .await
            .expect("started");
    }
    s.clock.advance(TimeDelta::minutes(2));
    s.store.slow_saves(true);
    {
        let mut round = pin!(s.engine.fire_due());
        assert!(
            futures_util::poll!(round.as_mut()).is_pending(),
            "the first pause's end waits for its write"
        );
    }
    assert_eq!(
        s.engine.fire_due().await,
        2,
        "the other pause's end is still due, and the first one's, stopped while being stored, \
         is fired once more (finding nothing due)"
    );
    for _ in 0..100 {
        if s.engine.live_deployments() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(s.engine.live_deployments(), 0, "both deployments finished");
}

/// A secret source that never answers fails the call's attempt after twice its request
/// timeout, as a retryable failure, instead of holding the gate in its call for good.
#[tokio::test(start_paused = true)]
async fn a_secret_source_that_never_answers_fails_the_attempt_after_twice_its_timeout() {
    use std::time::Duration;

    use async_trait::async_trait;
    use hookgate::Secret;
    use hookgate::core::{DeploymentStatus, EventKind};
    use hookgate::outbound::Dispatcher;
    use hookgate::secrets::{SecretError, SecretSource};
    use hookgate::transport::TransportRegistry;

    struct Silent;

    #[async_trait]
    impl SecretSource for Silent {
        async fn get(&self, _name: &str) -> Result<Secret, SecretError> {
            std::future::pending().await
        }
    }

    let external = RecordingTransport::new();
    let dispatcher = Dispatcher::builder(
        TransportRegistry::new(Arc::new(external.clone())),
        Arc::new(Silent),
        "https://hookgate.example",
    )
    .request_timeout(Duration::from_secs(5))
    .build()
    .expect("a dispatcher");
    let engine = Engine::builder(dispatcher, SimulatedHost).build();
    let file = r#"
application: silent
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: gate}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    headers: [{key: X-Api-Key, value: "{{secrets.token}}"}]
    retryCount: 0
"#;
    let id = engine
        .start(file, BTreeMap::new())
        .await
        .expect("started")
        .id;
    let mut waited = Duration::ZERO;
    while engine.view(&id).await.expect("a view").status == DeploymentStatus::Running {
        assert!(waited < Duration::from_secs(60), "the call still waits");
        tokio::time::sleep(Duration::from_secs(1)).await;
        waited += Duration::from_secs(1);
    }
    assert!(
        waited >= Duration::from_secs(10),
        "not before twice the request timeout: {waited:?}"
    );
    assert_eq!(external.count(), 0, "nothing was sent");
    let history = engine.history(&id).await.expect("a history");
    let failed = history.iter().find_map(|entry| match &entry.event.kind {
        EventKind::WebhookFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    let reason = failed.expect("the attempt failed");
    assert!(reason.contains("did not finish within 10s"), "{reason}");
}

/// A save the store kept but answered with a failure (a database's connection that dropped
/// after it committed) is taken for what it was once the engine has looked: the actions it led
/// to are performed, since nothing would ask for them again.
#[tokio::test]
async fn a_save_stored_but_answered_with_a_failure_goes_on_with_its_actions() {
    let s = setup();
    let started = s.start_pause().await;
    s.clock.advance(TimeDelta::minutes(2));
    s.store.lose_save_answers(1);

    s.engine.fire_due().await;
    s.clock.advance(TimeDelta::seconds(1));
    s.engine.fire_due().await;

    assert_eq!(s.engine.live_deployments(), 0, "the deployment finished");
    assert_eq!(s.stored(&started).await.status, DeploymentStatus::Succeeded);
}

/// The same for a create: the start succeeds, the deployment runs, and its application is not
/// left blocked by a running deployment no engine drives.
#[tokio::test]
async fn a_create_stored_but_answered_with_a_failure_starts_the_deployment() {
    let s = setup();
    s.store.lose_create_answers(1);
    let started = s.start_pause().await;
    assert_eq!(s.engine.live_deployments(), 1, "its create was stored");

    s.clock.advance(TimeDelta::minutes(2));
    s.engine.fire_due().await;
    assert_eq!(s.stored(&started).await.status, DeploymentStatus::Succeeded);
    s.start_pause().await;
}

/// A save that failed and was not stored stays a failure after the look: the deployment is
/// put back as it was.
#[tokio::test]
async fn a_save_that_failed_unstored_is_still_a_failure_after_the_look() {
    let s = setup();
    let started = s.start_pause().await;
    let before = s.stored(&started).await;
    s.clock.advance(TimeDelta::minutes(2));
    s.store.fail_saves(0, 1);

    s.engine.fire_due().await;

    let after = s.stored(&started).await;
    assert_eq!(after.version, before.version, "nothing was stored");
    assert_eq!(
        s.engine.live_deployments(),
        1,
        "the deployment waits to be tried again"
    );
    s.clock.advance(TimeDelta::seconds(1));
    s.engine.fire_due().await;
    assert_eq!(
        s.engine.live_deployments(),
        0,
        "and finishes once the store works"
    );
}

/// A queued deployment whose create was stored while its answer, and the look at its row, were
/// lost is resumed by the next hand-off rather than queued behind itself for good.
#[tokio::test]
async fn a_queued_deployment_stored_by_a_lost_create_is_resumed_not_queued_behind_itself() {
    let s = setup();
    let queued = s
        .hand_off_failing(|store| {
            store.lose_create_answers(1);
            store.fail_loads(1);
        })
        .await;

    s.clock.advance(TimeDelta::seconds(1));
    s.engine.fire_due().await;
    assert_eq!(
        s.engine.live_deployments(),
        1,
        "the queued deployment is driven"
    );
    s.clock.advance(TimeDelta::minutes(2));
    s.engine.fire_due().await;
    assert_eq!(s.stored(&queued).await.status, DeploymentStatus::Succeeded);
}

/// A queued deployment withdrawn while the create of its launch, answered with a failure, is
/// looked for ends canceled, nothing of it asked for, as the cancel's caller was told it would
/// never start: canceled at once if the create is stored by then, else when it is found
/// stored, also when the write of that cancel fails the first time.
#[tokio::test]
async fn a_queued_deployment_canceled_while_its_lost_create_is_looked_for_ends_canceled() {
    for (stored_before_cancel, cancel_write_fails) in [(false, false), (false, true), (true, false)]
    {
        let case = format!(
            "stored before the cancel {stored_before_cancel}, its write failing {cancel_write_fails}"
        );
        let s = setup();
        let (_, queued) = s.queue_one_behind_another().await;
        // The launch's create is answered with a failure and stored once the look that
        // follows (and the cancel's own look, unless stored before it) has found nothing.
        s.store
            .store_creates_late(1, if stored_before_cancel { 1 } else { 2 });
        s.clock.advance(TimeDelta::minutes(2));
        s.engine.fire_due().await;
        until(
            || s.engine.armed_deadlines() > 0,
            "the create is looked for",
        )
        .await;
        s.engine
            .cancel(&queued, "operator")
            .await
            .expect("withdrawn from the queue");
        if stored_before_cancel {
            assert_eq!(
                s.stored(&queued).await.status,
                DeploymentStatus::Canceled,
                "{case}"
            );
        }

        if cancel_write_fails {
            s.store.fail_saves(0, 1);
            s.clock.advance(TimeDelta::seconds(1));
            s.engine.fire_due().await;
            assert_eq!(
                s.stored(&queued).await.status,
                DeploymentStatus::Running,
                "{case}"
            );
            assert_eq!(s.engine.live_deployments(), 0, "{case}");
        }
        s.clock.advance(TimeDelta::seconds(1));
        s.engine.fire_due().await;
        let stored = s.stored(&queued).await;
        assert_eq!(stored.status, DeploymentStatus::Canceled, "{case}");
        assert_eq!(s.engine.live_deployments(), 0, "{case}");
        let history = s.store.inner().history(&queued).await.unwrap();
        let cancels = history
            .iter()
            .filter(|entry| {
                matches!(
                    &entry.event.kind,
                    EventKind::CancelRequested { by } if by == "operator"
                )
            })
            .count();
        assert_eq!(cancels, 1, "{case}: {history:?}");
    }
}

/// A queued deployment whose lost create was found stored, and which runs while the hand-off's
/// next attempt waits with it back in the queue, is canceled by a cancel that withdraws it from
/// the queue: its caller is told it will never start.
#[tokio::test]
async fn a_queued_deployment_found_stored_while_still_queued_is_canceled_by_a_cancel() {
    let s = setup();
    let queued = s.found_stored_while_queued().await;
    s.engine
        .cancel(&queued, "operator")
        .await
        .expect("the cancel is applied");
    assert_eq!(s.stored(&queued).await.status, DeploymentStatus::Canceled);
}

/// A queued deployment never launched is canceled by leaving the queue, with no look at the
/// store, which may be failing meanwhile.
#[tokio::test]
async fn a_queued_deployment_never_launched_is_canceled_without_the_store() {
    let s = setup();
    let (_, queued) = s.queue_one_behind_another().await;
    s.store.fail_loads(1);
    s.engine
        .cancel(&queued, "operator")
        .await
        .expect("withdrawn from the queue");
    s.store.fail_loads(0);
    assert!(matches!(
        s.engine.view(&queued).await,
        Err(hookgate::runtime::RuntimeError::UnknownDeployment(_))
    ));
}

/// The same deployment replaced in the queue by a newer start (`enqueueOne`) is canceled, as a
/// replaced one is forgotten, and the newer one starts once it has ended. A cancel whose write
/// fails is tried again by the engine's clock a second later: nothing else would cancel it.
#[tokio::test]
async fn a_queued_deployment_found_stored_while_still_queued_is_canceled_when_replaced() {
    for cancel_write_fails in [false, true] {
        let s = setup();
        let queued = s.found_stored_while_queued().await;
        let armed = s.engine.armed_deadlines();
        if cancel_write_fails {
            s.store.fail_saves(0, 1);
        }
        let newer = s
            .engine
            .start(&enqueue_one(), BTreeMap::new())
            .await
            .expect("the newer one is queued");
        assert_eq!(newer.status, DeploymentStatus::Queued);
        if cancel_write_fails {
            until(
                || s.engine.armed_deadlines() == armed + 1,
                "the cancel is owed",
            )
            .await;
            assert_eq!(s.stored(&queued).await.status, DeploymentStatus::Running);
            s.clock.advance(TimeDelta::seconds(1));
            s.engine.fire_due().await;
        }
        let mut status = s.stored(&queued).await.status;
        for _ in 0..2000 {
            if status != DeploymentStatus::Running {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            status = s.stored(&queued).await.status;
        }
        assert_eq!(status, DeploymentStatus::Canceled, "{cancel_write_fails}");
        until(|| s.engine.live_deployments() == 1, "the newer one starts").await;
    }
}

/// A single engine whose resumption of a deployment read a row another write had overtaken
/// applies the input to a copy of the current row. An input that finishes the deployment
/// there (a cancel) hands off to the deployment queued behind it, as one finishing it in
/// memory does: nothing else would start that one.
#[tokio::test]
async fn a_deployment_finished_through_a_copy_hands_off_to_the_queued_one() {
    const TWO_PAUSES: &str = r#"
application: pauses
deploymentConfig: {ifDeploymentInProgress: {strategy: enqueueOne}}
targets:
  prod:
    constraints:
      beforeDeployment: [pause: {duration: 1, unit: minutes}, pause: {duration: 60, unit: minutes}]
"#;
    let s = setup();
    let running = s
        .engine
        .start(TWO_PAUSES, BTreeMap::new())
        .await
        .expect("started")
        .id;
    s.engine.shutdown().await;
    // The first pause ends while no engine runs: the next one's recovery writes that.
    s.clock.advance(TimeDelta::minutes(2));
    let engine = Engine::builder(
        s.external.dispatcher("https://hookgate.example").unwrap(),
        SimulatedHost,
    )
    .shared_store(s.store.clone())
    .clock(s.clock.clone())
    .ids(SequentialIds::starting_at(1_000))
    .build();
    // That write is answered with a failure and its look fails too; it is stored right after
    // the next load reads the row, which is the cancel's, whose resumption then conflicts.
    s.store.store_saves_late(1);
    s.store.fail_loads(1);
    engine.recover().await.expect("recovered");
    let queued = engine
        .start(TWO_PAUSES, BTreeMap::new())
        .await
        .expect("queued");
    assert_eq!(queued.status, DeploymentStatus::Queued);

    engine.cancel(&running, "operator").await.expect("canceled");
    assert_eq!(s.stored(&running).await.status, DeploymentStatus::Canceled);
    until(
        || engine.live_deployments() == 1,
        "the queued deployment starts",
    )
    .await;
    assert_eq!(s.stored(&queued.id).await.status, DeploymentStatus::Running);
}

/// A create stored but answered with a failure, whose look at the row failed too, fails the
/// start; a deadline a moment later looks again and resumes the deployment, which nothing else
/// would drive before a restart.
#[tokio::test]
async fn a_start_whose_create_and_look_both_failed_is_resumed_a_second_later() {
    let s = setup();
    s.store.lose_create_answers(1);
    s.store.fail_loads(1);
    let failed = s.engine.start(PAUSE, BTreeMap::new()).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(s.engine.live_deployments(), 0);
    assert_eq!(s.engine.armed_deadlines(), 1, "a look is armed");

    s.clock.advance(TimeDelta::seconds(1));
    s.engine.fire_due().await;
    assert_eq!(s.engine.live_deployments(), 1, "resumed from the store");
    s.clock.advance(TimeDelta::minutes(2));
    s.engine.fire_due().await;
    assert_eq!(s.engine.live_deployments(), 0, "and driven to its end");
}

/// A create that failed and whose look failed too, not stored, is looked for at doubling
/// waits, seven times in all, and then no more. Looks that fail count among them: a store that
/// keeps failing is not asked every second for good.
#[tokio::test]
async fn a_create_not_stored_is_looked_for_seven_times_then_no_more() {
    // The look at once failing, then the next three too.
    for failing_looks in [1, 4] {
        let s = setup();
        s.store.fail_creates(1);
        s.store.fail_loads(failing_looks);
        assert!(s.engine.start(PAUSE, BTreeMap::new()).await.is_err());
        for wait in [1, 2, 4, 8, 16, 32, 64] {
            s.clock.advance(TimeDelta::seconds(wait - 1));
            assert_eq!(s.engine.fire_due().await, 0, "no look before {wait} s");
            s.clock.advance(TimeDelta::seconds(1));
            assert_eq!(s.engine.fire_due().await, 1, "a look {wait} s after");
        }
        s.clock.advance(TimeDelta::hours(1));
        assert_eq!(s.engine.fire_due().await, 0, "and no more");
        assert_eq!(s.engine.armed_deadlines(), 0);
    }
}

/// A create answered with a failure and stored only after the look at once and the next two
/// had found nothing, as a database may commit a statement a while after its connection
/// dropped, is found by a later look and resumed, rather than left for a restart.
/// Its events, dropped with the create's answer, reach subscribers then.
#[tokio::test]
async fn a_create_stored_after_a_few_looks_is_found_by_a_later_one() {
    let s = setup();
    let mut events = s.engine.subscribe();
    s.store.store_creates_late(1, 3);
    let failed = s.engine.start(PAUSE, BTreeMap::new()).await;
    assert!(failed.is_err(), "{failed:?}");
    for wait in [1, 2] {
        s.clock.advance(TimeDelta::seconds(wait));
        assert_eq!(s.engine.fire_due().await, 1, "looked for {wait} s later");
        assert_eq!(s.engine.live_deployments(), 0, "not stored when looked for");
    }
    s.clock.advance(TimeDelta::seconds(3));
    assert_eq!(
        s.engine.fire_due().await,
        0,
        "the next look comes 4 s later"
    );
    assert!(received(&mut events).is_empty(), "nothing heard of yet");

    s.clock.advance(TimeDelta::seconds(1));
    assert_eq!(s.engine.fire_due().await, 1);
    assert_eq!(s.engine.live_deployments(), 1, "found and resumed");
    let [found] = &s.store.inner().list_unfinished().await.unwrap().deployments[..] else {
        panic!("one deployment stored");
    };
    let heard: Vec<Event> = received(&mut events)
        .into_iter()
        .map(|(id, event)| {
            assert_eq!(id, found.id);
            event
        })
        .collect();
    let stored: Vec<Event> = s
        .store
        .inner()
        .history(&found.id)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.event)
        .collect();
    assert_eq!(
        heard, stored,
        "its start, and what resuming it stored, each heard of once"
    );
    assert!(
        matches!(heard[0].kind, EventKind::DeploymentStarted),
        "{heard:?}"
    );
    s.clock.advance(TimeDelta::minutes(2));
    s.engine.fire_due().await;
    assert_eq!(s.engine.live_deployments(), 0, "and driven to its end");
    let stored = s
        .store
        .inner()
        .list_unfinished()
        .await
        .expect("a list")
        .deployments;
    assert!(stored.is_empty(), "{stored:?}");
}

/// A save stored but answered with a failure, whose look at the row failed too: the deployment
/// is put back, and when a later write finds the stored one ahead and reloads it, the work in
/// flight there (the deploy step the lost write asked for) is asked for again, rather than left
/// for no one to perform.
#[tokio::test]
async fn a_lost_save_whose_look_failed_too_has_its_work_asked_for_again() {
    lost_pause_write(
        |store| {
            store.lose_save_answers(1);
            store.fail_loads(1);
        },
        1,
        "the pause's write is stored",
    )
    .await;
}

/// A save stored but answered with a failure, with another write stored over it before the
/// look: whether the lost write is under the later one cannot be told, so the deployment is
/// treated as after a failed look, and its work in flight is asked for again on the reload.
#[tokio::test]
async fn a_lost_save_found_under_a_later_write_has_its_work_asked_for_again() {
    lost_pause_write(
        |store| store.bury_save_answers(1),
        2,
        "the pause's write is stored, and another over it",
    )
    .await;
}

/// Fires the pause's end with `fault` set on the store, whose write is then stored `written`
/// versions ahead though answered with a failure; the deployment still runs to its end.
async fn lost_pause_write(fault: impl FnOnce(&FaultyStore), written: u64, why: &str) {
    let s = setup();
    let started = s.start_pause().await;
    s.clock.advance(TimeDelta::minutes(2));
    fault(&s.store);
    let version = s.stored(&started).await.version;

    s.engine.fire_due().await;
    assert_eq!(s.stored(&started).await.version, version + written, "{why}");
    s.succeeds_within(&started, 3).await;
}

/// A save answered with a failure, which a look finds not stored, but which the database
/// stores a moment later: the deployment is put back, and when a later write finds the stored
/// one ahead and reloads it, the work in flight there is asked for again.
#[tokio::test]
async fn a_save_stored_after_the_look_that_found_it_missing_has_its_work_asked_for_again() {
    lost_pause_write(
        |store| store.store_saves_late(1),
        1,
        "the pause's write is stored after the look",
    )
    .await;
}

/// A replica's `recover` tried again (after a failure, or twice) registers its change watcher
/// once: stores keep every watcher, and each would start its own reload of every write.
#[tokio::test]
async fn a_replica_watches_its_store_once_however_often_it_recovers() {
    use hookgate::runtime::ReplicaOptions;

    let store: Arc<FaultyStore> = Arc::new(FaultyStore::default());
    let engine = Engine::builder(
        RecordingTransport::new()
            .dispatcher("https://hookgate.example")
            .expect("a dispatcher"),
        SimulatedHost,
    )
    .shared_store(store.clone())
    .replica(ReplicaOptions::new("a"))
    .build();
    for _ in 0..3 {
        engine.recover().await.expect("recovered");
    }
    assert_eq!(store.watches(), 1);
    engine.shutdown().await;
}

/// A `recover` whose caller stops waiting (a timeout around it) while a resumed deployment's
/// write waits still carries that resumption to its end: the work it asked for again is done,
/// rather than lost with a deployment already in memory that a second `recover` would skip.
#[tokio::test]
async fn a_recover_whose_caller_goes_away_finishes_the_resumption_under_way() {
    use std::pin::pin;

    let s = setup();
    let started = s.start_pause().await;
    s.engine.shutdown().await;

    // The pause ended while no engine ran: resuming fires it, and its write waits once.
    s.clock.advance(TimeDelta::minutes(2));
    let restarted = engine(&s.store, &s.clock, &RecordingTransport::new());
    s.store.slow_saves(true);
    {
        let mut recovering = pin!(restarted.recover());
        assert!(
            futures_util::poll!(recovering.as_mut()).is_pending(),
            "the resumption's write waits"
        );
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while s.stored(&started).await.status != DeploymentStatus::Succeeded {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the deployment was driven to its end");
}

/// A deployment's last write stored but answered with a failure, and the look failing too: the
/// deployment is put back unfinished, and looked at again a second later, with no input to
/// make it so. Found finished, it leaves memory, and the one queued behind it starts.
#[tokio::test]
async fn a_deployment_whose_finishing_write_was_lost_is_looked_at_again_a_second_later() {
    let s = setup();
    let (first, queued) = s.queue_one_behind_another().await;
    s.cancel_with_its_answer_lost(&first).await;

    s.clock.advance(TimeDelta::seconds(1));
    s.engine.fire_due().await;
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while s
            .store
            .inner()
            .load(&queued)
            .await
            .unwrap()
            .map(|d| d.status)
            != Some(DeploymentStatus::Running)
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the queued deployment started");
    assert_eq!(
        s.engine.live_deployments(),
        1,
        "only the queued one is in memory"
    );
}

/// Subscribers hear of the events a write whose answer was lost stored, once a look finds it
/// stored: here the cancel's `DeploymentFinished`, which no later write of the deployment would
/// carry.
#[tokio::test]
async fn the_events_of_a_write_found_stored_after_its_answer_was_lost_reach_subscribers() {
    let s = setup();
    let (first, _) = s.queue_one_behind_another().await;
    let before = s.stored(&first).await.version;
    let mut events = s.engine.subscribe();
    s.cancel_with_its_answer_lost(&first).await;
    assert!(received(&mut events).is_empty(), "nothing heard of yet");

    s.clock.advance(TimeDelta::seconds(1));
    s.engine.fire_due().await;
    let heard: Vec<Event> = received(&mut events)
        .into_iter()
        .filter(|(id, _)| *id == first)
        .map(|(_, event)| event)
        .collect();
    let stored: Vec<Event> = s
        .store
        .inner()
        .history(&first)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.version > before)
        .map(|entry| entry.event)
        .collect();
    assert_eq!(heard, stored, "each event the cancel stored, once");
    assert!(
        heard.iter().any(|e| matches!(
            e.kind,
            EventKind::DeploymentFinished {
                status: DeploymentStatus::Canceled
            }
        )),
        "{heard:?}"
    );
}

/// The deployment events received so far.
fn received(events: &mut Receiver<EngineEvent>) -> Vec<(DeploymentId, Event)> {
    let mut heard = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let EngineEvent::Deployment { id, event } = event {
            heard.push((id, event));
        }
    }
    heard
}

/// A callback's write stored but answered with a failure, and the look failing too: the
/// deployment is put back waiting for the callback, which its sender does not send again.
/// Looked for a second later, it is found ahead, and the deploy step that write asked for is
/// asked for again rather than left until the callback's timeout a day later.
#[tokio::test]
async fn work_asked_for_by_a_write_stored_unanswered_is_asked_for_again_a_second_later() {
    let s = setup();
    let (id, callback) = s.waiting_for_a_callback(GATE).await;
    s.store.lose_save_answers(1);
    s.store.fail_loads(1);
    let report = CallbackReport::Outcome {
        success: true,
        message: None,
    };
    let answered = GateService::callback(&s.engine, callback, report, &Principal::new("ci")).await;
    assert!(answered.is_err(), "{answered:?}");
    assert_eq!(s.engine.live_deployments(), 1);

    s.clock.advance(TimeDelta::seconds(1));
    s.engine.fire_due().await;
    assert_eq!(s.stored(&id).await.status, DeploymentStatus::Succeeded);
    assert_eq!(s.engine.live_deployments(), 0);
}

/// A write that may have been stored unanswered, and was not, is looked for in the store at
/// doubling waits a few times, then left to the deployment's next write: no look for good.
#[tokio::test]
async fn a_write_that_was_not_stored_is_looked_for_a_few_times_then_no_more() {
    let s = setup();
    let (id, callback) = s.waiting_for_a_callback(GATE).await;
    s.note_whose_write_fails(callback).await;
    let version = s.stored(&id).await.version;

    let mut looks = Vec::new();
    for second in 1..=600 {
        s.clock.advance(TimeDelta::seconds(1));
        if s.engine.fire_due().await > 0 {
            looks.push(second);
        }
    }
    assert_eq!(
        looks,
        [1, 3, 7, 15, 31, 63, 127],
        "doubling waits, then none"
    );
    assert_eq!(s.stored(&id).await.version, version, "nothing was written");
    assert_eq!(
        s.engine.live_deployments(),
        1,
        "still waiting for its callback"
    );
    assert_eq!(s.engine.armed_deadlines(), 1, "its callback timeout");
    s.clock.advance(TimeDelta::days(1));
    s.engine.fire_due().await;
    assert_eq!(s.stored(&id).await.status, DeploymentStatus::Failed);
}

/// The looks for a write that may have been stored, and the longer waits after failures in a
/// row, do not hold up a deadline due before them: a callback timeout ten seconds on fires at
/// ten seconds, after one failed write (between the looks at seven and fifteen), four in a row
/// (whose next look waits eight seconds), or four just before it.
#[tokio::test]
async fn looks_for_a_write_hold_up_no_deadline() {
    let plan = GATE.replace(
        "    uriTemplate:",
        "    callbackTimeout: {duration: 10, unit: seconds}\n    uriTemplate:",
    );
    for (failing_at, case) in [
        (vec![0], "one failure"),
        (vec![0, 0, 0, 0], "four in a row"),
        (vec![6, 7, 8, 9], "four just before the timeout"),
    ] {
        let s = setup();
        let (id, callback) = s.waiting_for_a_callback(&plan).await;
        let mut failed_at = None;
        for second in 0..=20 {
            for _ in failing_at.iter().filter(|&&at| at == second) {
                s.note_whose_write_fails(callback).await;
            }
            s.engine.fire_due().await;
            if failed_at.is_none() && s.stored(&id).await.status == DeploymentStatus::Failed {
                failed_at = Some(second);
            }
            s.clock.advance(TimeDelta::seconds(1));
        }
        assert_eq!(failed_at, Some(10), "{case}");
    }
}

/// A deployment's last write stored but answered with a failure, and the look failing too: the
/// deployment is put back unfinished. The retry meets the finished state in the store, and the
/// deployment leaves memory then, letting the one queued behind it start: no later input would
/// change it, so nothing else would retire it.
#[tokio::test]
async fn a_deployment_whose_finishing_write_was_lost_leaves_memory_once_it_is_seen_finished() {
    let s = setup();
    let (first, queued) = s.queue_one_behind_another().await;
    s.cancel_with_its_answer_lost(&first).await;

    let again = s.engine.cancel(&first, "operator").await;
    assert!(
        matches!(
            again,
            Err(hookgate::runtime::RuntimeError::Core(
                hookgate::core::CoreError::Finished
            ))
        ),
        "{again:?}"
    );
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        s.stored(&queued).await.status,
        DeploymentStatus::Running,
        "the queued deployment started"
    );
    assert_eq!(
        s.engine.live_deployments(),
        1,
        "only the queued one is in memory"
    );
}

/// A recovery resumes from rows it listed before an input finished one of them: resuming that
/// row asks for nothing again (the call in flight there, for a deployment already failed), and
/// leaves nothing in memory. The recovery skips it as finished here meanwhile; a row written
/// again by another replica is the write-first path's, in `runtime_replicas`.
#[tokio::test]
async fn a_recovery_resuming_a_row_an_input_finished_since_asks_for_nothing_again() {
    use std::pin::pin;

    let s = setup();
    let (d, a, b) =
        two_calls::stored(&*s.store, hookgate::clock::Clock::now(&s.clock), false).await;

    s.store.late_list_answers(true);
    let mut recovering = pin!(s.engine.recover());
    assert!(
        futures_util::poll!(recovering.as_mut()).is_pending(),
        "the listing has read the row and not answered yet"
    );
    // Meanwhile `a`'s callback fails the deployment, resuming it first: `b`'s call, in flight
    // at the store, is asked for again once.
    let failure = CallbackReport::Outcome {
        success: false,
        message: None,
    };
    GateService::callback(&s.engine, a.callback_id, failure, &Principal::new("ci"))
        .await
        .expect("applied");
    let sent_for_b = || two_calls::sent_for(&s.external, &b);
    assert_eq!(sent_for_b(), 1);
    assert_eq!(
        s.stored(d.id()).await.status,
        DeploymentStatus::Failed,
        "finished"
    );

    let recovered = recovering.await.expect("recovered");
    assert_eq!(
        sent_for_b(),
        1,
        "nothing asked for again for a failed deployment"
    );
    assert_eq!(recovered.resumed, 0, "{recovered:?}");
    assert_eq!(s.engine.live_deployments(), 0);
}

/// `Recovered` counts the deployments a recovery resumed, and of those the ones whose state
/// changed: asking again for a call in flight changes nothing, and a deployment in memory
/// already is not resumed again.
#[tokio::test]
async fn a_recovery_counts_what_it_resumed_and_what_changed() {
    let s = setup();
    let (_, a, b) =
        two_calls::stored(&*s.store, hookgate::clock::Clock::now(&s.clock), false).await;
    let recovered = s.engine.recover().await.expect("recovered");
    assert_eq!(
        (recovered.resumed, recovered.changed),
        (1, 0),
        "{recovered:?}"
    );
    assert_eq!(
        (
            two_calls::sent_for(&s.external, &a),
            two_calls::sent_for(&s.external, &b)
        ),
        (0, 1)
    );
    let again = s.engine.recover().await.expect("recovered");
    assert_eq!((again.resumed, again.changed), (0, 0), "{again:?}");
    assert_eq!(two_calls::sent_for(&s.external, &b), 1);
    s.engine.shutdown().await;

    // Both callbacks' timeouts pass while no engine runs: resuming fails the deployment.
    s.clock.advance(TimeDelta::hours(25));
    let restarted = engine(&s.store, &s.clock, &s.external);
    let recovered = restarted.recover().await.expect("recovered");
    assert_eq!(
        (recovered.resumed, recovered.changed),
        (1, 1),
        "{recovered:?}"
    );
}

/// The same with nothing in flight at the row: its resumption would ask for nothing, and
/// write nothing, but it would keep an out-of-date copy in memory, shown as running, until its
/// callback timeout.
#[tokio::test]
async fn a_recovery_leaves_a_row_an_input_finished_since_out_of_memory() {
    use std::pin::pin;

    let s = setup();
    let (d, a, _) = two_calls::stored(&*s.store, hookgate::clock::Clock::now(&s.clock), true).await;
    s.store.late_list_answers(true);
    let mut recovering = pin!(s.engine.recover());
    assert!(futures_util::poll!(recovering.as_mut()).is_pending());
    let failure = CallbackReport::Outcome {
        success: false,
        message: None,
    };
    GateService::callback(&s.engine, a.callback_id, failure, &Principal::new("ci"))
        .await
        .expect("applied");

    let recovered = recovering.await.expect("recovered");
    assert_eq!(recovered.resumed, 0, "{recovered:?}");
    assert_eq!(s.engine.live_deployments(), 0);
    let view = s.engine.view(d.id()).await.expect("a view");
    assert_eq!(view.status, DeploymentStatus::Failed);
}

/// A transport whose code panics, at once or after it has waited.
struct PanickingTransport {
    at_once: bool,
}

#[async_trait::async_trait]
impl hookgate::transport::HttpTransport for PanickingTransport {
    async fn send(
        &self,
        _: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, hookgate::transport::TransportError> {
        if !self.at_once {
            tokio::task::yield_now().await;
        }
        panic!("a bug in the transport");
    }
}

/// A webhook call whose transport panics fails its gate at once, as a call refused for good
/// would (a panic is a bug, which another attempt would meet again): the deployment goes on
/// to its end rather than wait for good on a call nobody finishes.
#[tokio::test]
async fn a_webhook_call_whose_transport_panics_fails_its_gate() {
    use hookgate::outbound::Dispatcher;
    use hookgate::secrets::MemorySecrets;
    use hookgate::transport::TransportRegistry;

    // Retries allowed, to show that none is made.
    let file = format!("{GATE}    retryCount: 3\n");
    for at_once in [true, false] {
        let transport = Arc::new(PanickingTransport { at_once });
        let dispatcher = Dispatcher::builder(
            TransportRegistry::new(transport),
            Arc::new(MemorySecrets::new()),
            "https://hookgate.example",
        )
        .build()
        .unwrap();
        let engine = Engine::builder(dispatcher, SimulatedHost).build();
        let id = engine.start(&file, BTreeMap::new()).await.unwrap().id;
        let status = finish::finished(&engine, &id, &format!("at once {at_once}")).await;
        assert_eq!(status, DeploymentStatus::Failed, "at once {at_once}");
        let attempts: Vec<_> = engine
            .history(&id)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|entry| match entry.event.kind {
                EventKind::WebhookFailed {
                    reason, retry_at, ..
                } => Some((reason, retry_at)),
                _ => None,
            })
            .collect();
        assert_eq!(
            attempts,
            [(
                "preparing or sending the call panicked (the message went to the process's \
                 panic hook)"
                    .to_owned(),
                None
            )],
            "at once {at_once}: one attempt, not retried"
        );
        engine.shutdown().await;
    }
}

/// A callback whose write panics (a `Store` implementation's bug) is answered as a store
/// failure rather than with the panic. The deployment leaves memory, since it may be ahead of
/// its row with work asked for and never performed; the sender's retry reads it again from the
/// store and is applied.
#[tokio::test]
async fn a_callback_whose_write_panics_is_answered_as_a_store_failure_and_read_again() {
    let s = setup();
    let (id, callback) = s.waiting_for_a_callback(GATE).await;
    let version = s.stored(&id).await.version;
    let report = || CallbackReport::Outcome {
        success: true,
        message: None,
    };

    s.store.panic_saves(1);
    let answered =
        GateService::callback(&s.engine, callback, report(), &Principal::new("ci")).await;
    assert!(
        matches!(answered, Err(GateError::Unavailable(_))),
        "{answered:?}"
    );
    assert_eq!(s.engine.live_deployments(), 0, "taken out of memory");
    assert_eq!(s.stored(&id).await.version, version, "nothing stored");

    let again = GateService::callback(&s.engine, callback, report(), &Principal::new("ci")).await;
    assert_eq!(again.unwrap(), CallbackAck::Applied);
    assert_eq!(s.stored(&id).await.status, DeploymentStatus::Succeeded);
}

/// A write that panics while recording a result that was ready at once (here the deploy step
/// the start asked for) leaves no deployment in memory ahead of its row. The result goes with
/// the entry taken out of memory; the deployment is read again a second later by the engine's
/// clock, and the step, in flight in its row, asked for again and recorded.
#[tokio::test]
async fn a_result_whose_write_panics_is_recorded_after_the_deployment_is_read_again() {
    let s = setup();
    s.store.panic_saves(1);
    let id = s
        .engine
        .start("application: shop\ntargets: {dev: {}}", BTreeMap::new())
        .await
        .expect("started: the step's result is what failed to be stored")
        .id;
    assert_eq!(s.engine.live_deployments(), 0, "taken out of memory");
    assert_eq!(s.stored(&id).await.status, DeploymentStatus::Running);
    assert_eq!(s.engine.armed_deadlines(), 1, "read again a second later");

    s.clock.advance(TimeDelta::seconds(1));
    s.engine.fire_due().await;
    assert_eq!(s.stored(&id).await.status, DeploymentStatus::Succeeded);
    assert_eq!(s.engine.armed_deadlines(), 0);
    assert_eq!(s.engine.live_deployments(), 0);
}
