//! A start whose create the store answered with a failure, and which a look did not find
//! stored: the caller is told the id it would run as, and can cancel it by that id.
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::BTreeMap;

use chrono::TimeDelta;
use hookgate::core::{DeploymentId, DeploymentStatus, EventKind};
use hookgate::runtime::RuntimeError;
use hookgate::store::{Store, StoreError};

mod faulty_store;

use faulty_store::{Setup, setup};

const GATE: &str = r#"
application: gate
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: gate}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    bodyTemplate: {inline: '{{armory.callbackUri}}'}
"#;

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
