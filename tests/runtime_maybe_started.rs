//! A start whose create the store answered with a failure, and which a look did not find
//! stored: the caller is told the id it would run as, and can cancel it by that id.
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use hookgate::core::{DeploymentId, DeploymentStatus, EventKind};
use hookgate::runtime::{Engine, ReplicaOptions, RuntimeError, SimulatedHost};
use hookgate::store::{Store, StoreError};
use hookgate::test_util::{FaultyStore, ManualClock, RecordingTransport, SequentialIds};

mod faulty_store;

use faulty_store::{GATE, Setup, setup};

impl Setup {
    /// Starts [`GATE`], expecting [`RuntimeError::MaybeStarted`]; returns the id it names, and
    /// the error's message.
    async fn maybe_started(&self) -> (DeploymentId, String) {
        match self.engine.start(GATE, BTreeMap::new()).await {
            Err(e @ RuntimeError::MaybeStarted { .. }) => {
                let message = e.to_string();
                let RuntimeError::MaybeStarted { id, source } = e else {
                    unreachable!()
                };
                assert!(matches!(source, StoreError::Backend { .. }), "{source:?}");
                (id, message)
            }
            other => panic!("expected MaybeStarted, got {other:?}"),
        }
    }

    /// Advances the clock by `seconds` and fires what is due.
    async fn look_after(&self, seconds: i64) {
        self.clock.advance(TimeDelta::seconds(seconds));
        self.engine.fire_due().await;
    }

    /// The deployment's status as stored, past the store's faults; `None` if not stored.
    async fn stored_status(&self, id: &DeploymentId) -> Option<DeploymentStatus> {
        let stored = self.store.inner().load(id).await.expect("a load");
        stored.map(|stored| stored.status)
    }

    /// How many cancels by `by` the history of `id` holds.
    async fn cancels_by(&self, id: &DeploymentId, by: &str) -> usize {
        let history = self.store.inner().history(id).await.expect("a history");
        history
            .iter()
            .filter(|entry| matches!(&entry.event.kind, EventKind::CancelRequested { by: who } if who == by))
            .count()
    }
}

/// The error names the deployment, which the engine does not know of until a look finds it
/// stored, and then runs.
#[tokio::test]
async fn a_start_that_may_be_stored_names_the_deployment_it_would_run_as() {
    let s = setup();
    // Stored right after the third load of its row has found nothing: the look at once and
    // the view's two (the second after any start under way).
    s.store.store_creates_late(1, 3);
    let (id, message) = s.maybe_started().await;
    assert!(message.contains(&format!("deployment {id}")), "{message}");
    assert!(message.contains("cancel it by that id"), "{message}");
    assert!(matches!(
        s.engine.view(&id).await,
        Err(RuntimeError::UnknownDeployment(_))
    ));
    assert_eq!(s.stored_status(&id).await, Some(DeploymentStatus::Running));
    assert_eq!(s.engine.live_deployments(), 0, "stored, not yet found");

    s.look_after(1).await;
    let view = s.engine.view(&id).await.expect("found and resumed");
    assert_eq!(view.status, DeploymentStatus::Running);
    assert_eq!(s.engine.live_deployments(), 1);
}

/// Canceled by the id the error named: found stored later, it is canceled before anything of
/// it is asked for; found stored already, it is canceled at once. Either way the cancel is
/// stored once.
#[tokio::test]
async fn a_start_that_may_be_stored_is_canceled_by_the_id_the_error_names() {
    for stored_before_cancel in [false, true] {
        let s = setup();
        s.store
            .store_creates_late(1, if stored_before_cancel { 1 } else { 2 });
        let (id, _) = s.maybe_started().await;
        s.engine
            .cancel(&id, "operator")
            .await
            .expect("the cancel is taken");
        if !stored_before_cancel {
            assert_eq!(s.engine.live_deployments(), 0, "not found yet");
            s.look_after(1).await;
            s.look_after(2).await;
        }

        assert_eq!(
            s.stored_status(&id).await,
            Some(DeploymentStatus::Canceled),
            "stored before the cancel: {stored_before_cancel}"
        );
        assert_eq!(s.cancels_by(&id, "operator").await, 1);
        assert_eq!(s.engine.live_deployments(), 0);
        if !stored_before_cancel {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert!(
                s.external.requests().is_empty(),
                "its webhook was never called"
            );
        }
    }
}

/// A cancel of a start never stored is taken while the create is looked for, and forgotten
/// with the looks: afterwards the id is unknown, as it always was to the store.
#[tokio::test]
async fn a_cancel_of_a_start_never_stored_ends_with_the_looks() {
    let s = setup();
    s.store.fail_creates(1);
    let (id, _) = s.maybe_started().await;
    s.engine
        .cancel(&id, "operator")
        .await
        .expect("the cancel is taken while the create is looked for");
    for wait in [1, 2, 4, 8, 16, 32, 64] {
        s.look_after(wait).await;
    }
    assert_eq!(s.engine.armed_deadlines(), 0, "no longer looked for");
    assert_eq!(s.stored_status(&id).await, None);
    assert!(matches!(
        s.engine.cancel(&id, "operator").await,
        Err(RuntimeError::UnknownDeployment(_))
    ));
    assert!(s.external.requests().is_empty());
}

/// A cancel of an id no start ever named is still refused as unknown.
#[tokio::test]
async fn a_cancel_of_an_id_never_started_is_refused() {
    let s = setup();
    s.store.fail_creates(1);
    s.maybe_started().await;
    assert!(matches!(
        s.engine
            .cancel(&DeploymentId::from("nobody"), "operator")
            .await,
        Err(RuntimeError::UnknownDeployment(_))
    ));
}

/// The create lands after the lease it was written with has ended, and another replica takes
/// the deployment up before this one finds it: that replica knows nothing of the cancel, so
/// the cancel reaches it through the store when this replica's look finds the row, and the
/// deployment ends canceled then, not whenever this replica next drives it.
#[tokio::test]
async fn a_cancel_taken_here_reaches_the_replica_that_took_the_deployment_up() {
    let faulty: Arc<FaultyStore> = Arc::new(FaultyStore::default());
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap());
    let external = RecordingTransport::new();
    let replica = |name: &str, first_id: u128| {
        Engine::builder(
            external.dispatcher("https://hookgate.example").unwrap(),
            SimulatedHost,
        )
        .shared_store(faulty.clone())
        .clock(clock.clone())
        .ids(SequentialIds::starting_at(first_id))
        .replica(ReplicaOptions::new(name).lease(Duration::from_secs(1)))
        .build()
    };
    let (a, b) = (replica("a", 1), replica("b", 1_000_000));
    a.recover().await.unwrap();
    b.recover().await.unwrap();
    // Stored after the fourth load of its row: the look at once, the cancel's two, and the
    // first scheduled look.
    faulty.store_creates_late(1, 4);
    let id = match a.start(GATE, BTreeMap::new()).await {
        Err(RuntimeError::MaybeStarted { id, .. }) => id,
        other => panic!("expected MaybeStarted, got {other:?}"),
    };
    a.cancel(&id, "operator")
        .await
        .expect("the cancel is taken");
    clock.advance(TimeDelta::seconds(1));
    a.fire_due().await;
    let stored = |id: DeploymentId| {
        let faulty = faulty.clone();
        async move { faulty.inner().load(&id).await.unwrap().map(|s| s.status) }
    };
    assert_eq!(stored(id.clone()).await, Some(DeploymentStatus::Running));

    clock.advance(TimeDelta::seconds(1));
    assert_eq!(b.maintain_leases().await.unwrap().taken_over, 1);
    // `a`'s next look, two seconds after the last, finds the row `b` drives.
    clock.advance(TimeDelta::seconds(1));
    a.fire_due().await;
    until(|| async { stored(id.clone()).await == Some(DeploymentStatus::Canceled) }).await;
    let history = faulty.inner().history(&id).await.unwrap();
    let cancels = history
        .iter()
        .filter(|e| matches!(&e.event.kind, EventKind::CancelRequested { by } if by == "operator"))
        .count();
    assert_eq!(cancels, 1, "{history:?}");

    // Nothing of it is left to apply later, when `a` takes over from `b`.
    clock.advance(TimeDelta::hours(1));
    b.shutdown().await;
    a.maintain_leases().await.unwrap();
    assert_eq!(stored(id.clone()).await, Some(DeploymentStatus::Canceled));
    let later = faulty.inner().history(&id).await.unwrap();
    assert_eq!(later.len(), history.len(), "nothing more was written");
}

/// Waits (at most 10 s of real time) for `done`, while tasks run.
async fn until<F: Future<Output = bool>>(done: impl Fn() -> F) {
    let wait = async {
        while !done().await {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .expect("in time");
}
