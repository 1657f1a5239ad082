//! Many deployments driven through a store whose saves fail now and then, on a manual clock and
//! with no sleep: every deployment finishes, and each deploy step is asked for once, whether
//! its result was ready at once or came later, and whether the write recording it failed or
//! not. The engine keeps what it could not write and writes it again by its own clock.
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeDelta, TimeZone, Utc};
use hookgate::auth::Principal;
use hookgate::core::{CallbackAck, CallbackId, DeploymentId, DeploymentStatus};
use hookgate::core::{HostStep, StepOutcome};
use hookgate::runtime::{Engine, Host, SimulatedHost, StepContext};
use hookgate::server::{CallbackReport, GateService};
use hookgate::store::MemoryStore;
use hookgate::test_util::{FaultyStore, ManualClock, RecordingTransport, SequentialIds};

/// Counts the deploy steps asked for, by deployment and environment. Staging's answers once it
/// has returned to the runtime (its result recorded by a task); the others' answer at once
/// (recorded under the lock of the input that asked for them).
#[derive(Clone, Default)]
struct Counting {
    asked: Arc<Mutex<HashMap<(DeploymentId, String), usize>>>,
}

#[async_trait]
impl Host for Counting {
    async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
        let key = (
            context.deployment().clone(),
            context.environment().to_owned(),
        );
        *self.asked.lock().unwrap().entry(key).or_default() += 1;
        if context.environment() == "staging" {
            tokio::task::yield_now().await;
        }
        SimulatedHost.run_step(context, step).await
    }

    async fn roll_back(&self, context: &StepContext) -> StepOutcome {
        SimulatedHost.roll_back(context).await
    }
}

/// Three environments deployed one after the other, the last behind a webhook gate.
fn file(application: usize) -> String {
    format!(
        r#"
application: app-{application}
targets:
  dev: {{}}
  staging:
    constraints:
      dependsOn: [dev]
  prod:
    constraints:
      dependsOn: [staging]
      beforeDeployment: [runWebhook: {{name: gate}}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
"#
    )
}

/// A small generator of the fault pattern, the same for the same seed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

struct Run {
    engine: Engine,
    store: Arc<FaultyStore<MemoryStore>>,
    clock: ManualClock,
    external: RecordingTransport,
    host: Counting,
    answered: HashSet<CallbackId>,
}

impl Run {
    fn new() -> Self {
        let store = Arc::new(FaultyStore::new(MemoryStore::new()));
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap());
        let external = RecordingTransport::new();
        let host = Counting::default();
        let engine = Engine::builder(
            external.dispatcher("https://gates.example").unwrap(),
            host.clone(),
        )
        .shared_store(store.clone())
        .clock(clock.clone())
        .ids(SequentialIds::starting_at(1))
        .build();
        Self {
            engine,
            store,
            clock,
            external,
            host,
            answered: HashSet::new(),
        }
    }

    /// Sends a passing callback for every gate called and not yet answered, as the external
    /// system would, again later for one refused while the store fails.
    async fn answer_gates(&mut self) {
        let calls: Vec<CallbackId> = self
            .external
            .requests()
            .iter()
            .filter_map(|r| r.call.as_ref().map(|call| call.callback_id))
            .collect();
        for callback in calls {
            if self.answered.contains(&callback) {
                continue;
            }
            let yes = CallbackReport::Outcome {
                success: true,
                message: None,
            };
            let ci = Principal::new("ci");
            let ack = GateService::callback(&self.engine, callback, yes, &ci).await;
            if let Ok(CallbackAck::Applied | CallbackAck::Duplicate) = ack {
                self.answered.insert(callback);
            }
        }
    }

    async fn let_tasks_run(&self) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    async fn pass(&mut self, seconds: i64) {
        self.answer_gates().await;
        self.let_tasks_run().await;
        self.clock.advance(TimeDelta::seconds(seconds));
        self.engine.fire_due().await;
        self.let_tasks_run().await;
    }
}

async fn twelve_deployments_through_an_unreliable_store(seed: u64) {
    let mut run = Run::new();
    let mut faults = Lcg(seed);
    let mut ids = Vec::new();
    for round in 0..60 {
        if round % 4 == 0 && ids.len() < 12 {
            let started = run.engine.start(&file(ids.len()), BTreeMap::new()).await;
            ids.push(started.expect("started: its create does not fail").id);
        }
        let (pass, fail) = (faults.below(3), faults.below(4));
        run.store
            .fail_saves(pass.try_into().unwrap(), fail.try_into().unwrap());
        let wait = faults.below(8) + 1;
        run.pass(wait.try_into().unwrap()).await;
    }
    run.store.fail_saves(0, 0);
    for _ in 0..10 {
        run.pass(8).await;
    }

    for (n, id) in ids.iter().enumerate() {
        let view = run.engine.view(id).await.expect("a view");
        assert_eq!(
            view.status,
            DeploymentStatus::Succeeded,
            "seed {seed}, deployment {n}: {view:?}"
        );
    }
    let asked = run.host.asked.lock().unwrap();
    assert_eq!(asked.len(), 3 * ids.len(), "seed {seed}: {asked:?}");
    assert!(
        asked.values().all(|&times| times == 1),
        "seed {seed}: a step asked for more than once: {asked:?}"
    );
    assert_eq!(run.engine.next_deadline(), None, "seed {seed}");
}

#[tokio::test(flavor = "current_thread")]
async fn every_deployment_finishes_and_each_step_is_asked_for_once() {
    for seed in 0..8 {
        twelve_deployments_through_an_unreliable_store(seed).await;
    }
}
