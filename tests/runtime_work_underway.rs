//! Work under way in this process when the store turns out to hold a write whose answer was
//! lost: the work that write asked for is asked for again, and the work already running here
//! is not started a second time.
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone, Utc};
use hookgate::core::{DeploymentId, DeploymentStatus, HostStep, StepOutcome};
use hookgate::runtime::{Engine, Host, SimulatedHost, StepContext};
use hookgate::store::{MemoryStore, Store};
use hookgate::test_util::{FaultyStore, ManualClock, RecordingTransport, SequentialIds};
use tokio::sync::Notify;

/// Counts the steps asked for, by environment; holds `a`'s until released, as a slow deploy.
#[derive(Clone, Default)]
struct SlowA {
    asked: Arc<Mutex<Vec<String>>>,
    release: Arc<Notify>,
}

impl SlowA {
    fn asked_for(&self, env: &str) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == env)
            .count()
    }
}

#[async_trait]
impl Host for SlowA {
    async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
        self.asked
            .lock()
            .unwrap()
            .push(context.environment().to_owned());
        if context.environment() == "a" {
            self.release.notified().await;
        }
        SimulatedHost.run_step(context, step).await
    }

    async fn roll_back(&self, context: &StepContext) -> StepOutcome {
        SimulatedHost.roll_back(context).await
    }
}

const FILE: &str = r#"
application: underway
targets:
  a: {}
  b:
    constraints:
      beforeDeployment: [pause: {duration: 1, unit: minutes}]
"#;

struct Setup {
    store: Arc<FaultyStore<MemoryStore>>,
    clock: ManualClock,
    host: SlowA,
    engine: Engine,
    id: DeploymentId,
}

/// `FILE` started, a's deploy under way, and the end of b's pause written, answered with a
/// failure and stored a moment later: the deployment is put back as it was, unsure, with b's
/// deploy asked for by a write the engine does not know was stored.
async fn a_lost_write_while_a_deploys() -> Setup {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap());
    let host = SlowA::default();
    let dispatcher = RecordingTransport::new()
        .dispatcher("https://h.example")
        .unwrap();
    let engine = Engine::builder(dispatcher, host.clone())
        .shared_store(store.clone())
        .clock(clock.clone())
        .ids(SequentialIds::starting_at(1))
        .build();
    let id = engine.start(FILE, BTreeMap::new()).await.unwrap().id;
    tokio::task::yield_now().await;
    assert_eq!(host.asked_for("a"), 1, "a deploys at once");

    clock.advance(TimeDelta::minutes(2));
    store.store_saves_late(1);
    engine.fire_due().await;
    assert_eq!(host.asked_for("b"), 0, "b's deploy waits for its write");
    let stored = store.inner().load(&id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2, "the pause's end was stored after all");
    Setup {
        store,
        clock,
        host,
        engine,
        id,
    }
}

#[tokio::test]
async fn a_step_running_here_is_not_asked_for_again_when_a_lost_write_turns_up() {
    let Setup {
        store,
        clock,
        host,
        engine,
        id,
    } = a_lost_write_while_a_deploys().await;

    // A second on, the look finds it: b's deploy, which that write asked for, is asked for;
    // a's, under way since the start, is not asked for a second time.
    clock.advance(TimeDelta::seconds(1));
    engine.fire_due().await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(host.asked_for("b"), 1, "the lost write's work is asked for");
    assert_eq!(host.asked_for("a"), 1, "a's deploy ran twice at once");

    host.release.notify_one();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let done = store.inner().load(&id).await.unwrap().unwrap();
    assert_eq!(done.status, DeploymentStatus::Succeeded);
    engine.shutdown().await;
}

/// The work a lost write asked for, taken up from the store but not yet performed when a second
/// write is lost, is still asked for once that one turns up: it is not under way.
#[tokio::test]
async fn work_taken_up_but_not_performed_is_asked_for_after_a_second_lost_write() {
    let Setup {
        store,
        clock,
        host,
        engine,
        id,
    } = a_lost_write_while_a_deploys().await;

    // a's deploy ends. Its result's write conflicts with the lost one, so the stored state is
    // taken up, b's deploy asked for again; before that is performed, the result's next write
    // is lost too, and stored a moment later. The deadline's look a second on conflicts and
    // takes that one up.
    store.store_saves_late(2);
    host.release.notify_one();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    for _ in 0..10 {
        clock.advance(TimeDelta::seconds(1));
        engine.fire_due().await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    assert_eq!(host.asked_for("b"), 1, "b's deploy was never asked for");
    let done = store.inner().load(&id).await.unwrap().unwrap();
    assert_eq!(done.status, DeploymentStatus::Succeeded);
    engine.shutdown().await;
}
