//! What the host is told for each step: the target's fields and its strategy, so that it can
//! deploy beside the old version for a canary and switch the right services for blue/green.
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hookgate::core::{DeploymentStatus, EventKind, HostStep, StepOutcome};
use hookgate::runtime::Engine;
use hookgate::runtime::{EngineEvent, Host, SimulatedHost, StepContext, StepStrategy};
use hookgate::test_util::{RecordingTransport, SequentialIds};

mod finish;

const FILE: &str = r#"
application: shop
targets:
  dev: {account: dev-cluster, namespace: shop-dev}
  staging: {strategy: slow, constraints: {dependsOn: [dev]}}
  prod: {strategy: switch, constraints: {dependsOn: [staging]}}
strategies:
  slow: {canary: {steps: [setWeight: {weight: 50}, setWeight: {weight: 100}]}}
  switch: {blueGreen: {activeService: checkout, previewService: checkout-preview}}
"#;

/// A dispatcher whose calls an in-process transport answers.
fn dispatcher() -> hookgate::outbound::Dispatcher {
    RecordingTransport::new()
        .dispatcher("https://hookgate.example")
        .expect("a dispatcher")
}

/// Every step asked for, with the context it came with.
#[derive(Clone, Default)]
struct RecordingHost(Arc<Mutex<Vec<(StepContext, &'static str)>>>);

#[async_trait]
impl Host for RecordingHost {
    async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
        self.0.lock().unwrap().push((context.clone(), step.name()));
        SimulatedHost.run_step(context, step).await
    }

    async fn roll_back(&self, context: &StepContext) -> StepOutcome {
        self.0.lock().unwrap().push((context.clone(), "rollBack"));
        StepOutcome::Succeeded
    }
}

#[tokio::test]
async fn each_step_names_its_targets_strategy_and_services() {
    let host = RecordingHost::default();
    let engine = Engine::builder(dispatcher(), host.clone())
        .ids(SequentialIds::starting_at(1))
        .build();
    let mut events = engine.subscribe();
    let started = engine.start(FILE, BTreeMap::new()).await.unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(EngineEvent::Deployment { event, .. }) = events.recv().await
                && let EventKind::DeploymentFinished { status } = event.kind
            {
                return status;
            }
        }
    })
    .await
    .expect("the deployment finishes");
    assert_eq!(finished, DeploymentStatus::Succeeded);

    let steps = host.0.lock().unwrap().clone();
    assert!(
        steps
            .iter()
            .all(|(c, _)| c.deployment() == &started.id && c.application() == "shop")
    );
    let ops: std::collections::BTreeSet<_> = steps.iter().map(|(c, _)| c.op()).collect();
    assert_eq!(ops.len(), steps.len(), "each step its own op: {steps:?}");
    let of = |environment: &str| -> Vec<(StepContext, &'static str)> {
        steps
            .iter()
            .filter(|(c, _)| c.environment() == environment)
            .cloned()
            .collect()
    };
    let dev = of("dev");
    assert_eq!(dev.len(), 1, "{dev:?}");
    assert_eq!(dev[0].1, "deploy");
    assert_eq!(dev[0].0.strategy(), StepStrategy::Direct);
    assert_eq!(dev[0].0.account(), Some("dev-cluster"));
    assert_eq!(dev[0].0.namespace(), Some("shop-dev"));

    let staging = of("staging");
    assert_eq!(
        staging.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        ["deploy", "setWeight", "setWeight"]
    );
    assert!(
        staging
            .iter()
            .all(|(c, _)| c.strategy() == StepStrategy::Canary { name: "slow" })
    );

    let prod = of("prod");
    assert_eq!(
        prod.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        ["deploy", "redirectTraffic", "shutDownOldVersion"]
    );
    let blue_green = StepStrategy::BlueGreen {
        name: "switch",
        active_service: "checkout",
        preview_service: Some("checkout-preview"),
    };
    assert!(
        prod.iter().all(|(c, _)| c.strategy() == blue_green),
        "{prod:?}"
    );
}

/// An analysis step reaches the host with Armory's fields for it, and the queries it names are
/// the host's to look up in the plan.
#[tokio::test]
async fn an_analysis_step_brings_its_judgment_fields_and_its_queries() {
    const ANALYSED: &str = r#"
application: shop
targets:
  prod:
    constraints:
      afterDeployment:
        - analysis: {queries: [errors], interval: 30, units: seconds, numberOfJudgmentRuns: 4}
analysis:
  defaultMetricProviderName: prom
  queries: [{name: errors, upperLimit: 5, queryTemplate: 'sum(rate(errors[1m]))'}]
"#;
    #[derive(Clone, Default)]
    struct Analyst(Arc<Mutex<Vec<String>>>);

    #[async_trait]
    impl Host for Analyst {
        async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
            if let HostStep::Analysis { spec, .. } = step {
                for name in &spec.queries {
                    let query = context.plan().analysis_query(name).expect("defined");
                    self.0.lock().unwrap().push(format!(
                        "{} at {:?} x{:?} from {:?} above {:?}",
                        query.query_template,
                        spec.interval,
                        spec.judgment_runs,
                        spec.metric_provider_name,
                        query.upper_limit
                    ));
                }
            }
            SimulatedHost.run_step(context, step).await
        }

        async fn roll_back(&self, _: &StepContext) -> StepOutcome {
            StepOutcome::Succeeded
        }
    }

    let host = Analyst::default();
    let engine = Engine::builder(dispatcher(), host.clone()).build();
    let mut events = engine.subscribe();
    engine.start(ANALYSED, BTreeMap::new()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(EngineEvent::Deployment { event, .. }) = events.recv().await
                && let EventKind::DeploymentFinished { .. } = event.kind
            {
                return;
            }
        }
    })
    .await
    .expect("the deployment finishes");
    assert_eq!(
        *host.0.lock().unwrap(),
        [
            r#"sum(rate(errors[1m])) at Some(30s) x Some(4) from Some("prom") above Some(5.0)"#
                .replace("x Some", "xSome")
        ]
    );
}

/// Reports a ReplicaSet named after the environment for each deploy step.
struct ReplicaSetHost;

#[async_trait]
impl Host for ReplicaSetHost {
    async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
        match step {
            HostStep::Deploy => StepOutcome::Deployed {
                replica_set_name: format!("shop-{}-5f7b", context.environment()),
            },
            _ => StepOutcome::Succeeded,
        }
    }

    async fn roll_back(&self, _context: &StepContext) -> StepOutcome {
        StepOutcome::Succeeded
    }
}

/// The ReplicaSet a host reports with its deploy step is what the environment's later webhook
/// calls render as `{{armory.replicaSetName}}`; a call before the deploy has none to render.
#[tokio::test]
async fn the_replica_set_the_host_reports_reaches_the_webhooks_after_the_deploy() {
    const CHECKED: &str = r#"
application: shop
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: check}]
      afterDeployment: [runWebhook: {name: check}]
webhooks:
  - name: check
    uriTemplate: https://checks.example/run
    headers: [{key: Content-Type, value: application/json}]
    bodyTemplate: {inline: '{"rs": "{{armory.replicaSetName}}", "callbackUri": "{{armory.callbackUri}}"}'}
"#;
    let external = RecordingTransport::new();
    let engine = Engine::builder(
        external
            .dispatcher("https://hookgate.example")
            .expect("a dispatcher"),
        ReplicaSetHost,
    )
    .build();
    engine.start(CHECKED, BTreeMap::new()).await.unwrap();
    let by = hookgate::auth::Principal::new("checks");
    let mut bodies = Vec::new();
    for sent in 1..=2 {
        tokio::time::timeout(Duration::from_secs(60), async {
            while external.count() < sent {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the check is called");
        let body: serde_json::Value =
            serde_json::from_slice(&external.requests()[sent - 1].body).expect("a JSON body");
        let callback = body["callbackUri"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        let report = hookgate::server::CallbackReport::Outcome {
            success: true,
            message: None,
        };
        hookgate::server::GateService::callback(&engine, callback.parse().unwrap(), report, &by)
            .await
            .expect("the check passes");
        bodies.push(body["rs"].clone());
    }
    assert_eq!(bodies, ["", "shop-prod-5f7b"]);
}

/// A host whose steps never end, recording what it is asked for: an engine stopped with its
/// steps under way.
#[derive(Clone, Default)]
struct Stuck(Arc<Mutex<Vec<StepContext>>>);

#[async_trait]
impl Host for Stuck {
    async fn run_step(&self, context: &StepContext, _step: &HostStep) -> StepOutcome {
        self.0.lock().unwrap().push(context.clone());
        std::future::pending().await
    }

    async fn roll_back(&self, context: &StepContext) -> StepOutcome {
        self.0.lock().unwrap().push(context.clone());
        std::future::pending().await
    }
}

/// A step asked for again by the next engine, after a restart, comes with the op it had: the
/// key a host makes its steps idempotent by.
#[tokio::test]
async fn a_step_asked_for_again_after_a_restart_keeps_its_op() {
    use hookgate::store::{DynStore, MemoryStore};

    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    let stuck = Stuck::default();
    let first = Engine::builder(dispatcher(), stuck.clone())
        .shared_store(Arc::clone(&store))
        .ids(SequentialIds::starting_at(1))
        .build();
    let id = first
        .start("application: shop\ntargets: {dev: {}}", BTreeMap::new())
        .await
        .unwrap()
        .id;
    tokio::task::yield_now().await;
    let asked = stuck.0.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "the deploy is under way: {asked:?}");
    first.shutdown().await;

    let host = RecordingHost::default();
    let second = Engine::builder(dispatcher(), host.clone())
        .shared_store(store)
        .ids(SequentialIds::starting_at(100))
        .build();
    second.recover().await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(step) = host.0.lock().unwrap().first().cloned() {
                return step;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the deploy is asked for again");
    assert_eq!(again.1, "deploy");
    assert_eq!(again.0.deployment(), &id);
    assert_eq!(again.0.op(), asked[0].op(), "the same op as the first time");
}

/// `Debug` of an engine and its builder: what it is doing, in counts.
#[tokio::test]
async fn an_engine_and_its_builder_print_what_they_hold_in_counts() {
    let stuck = Stuck::default();
    let builder = Engine::builder(dispatcher(), stuck.clone());
    let printed = format!("{builder:?}");
    assert!(
        printed.starts_with("EngineBuilder") && printed.contains("event_capacity: 4096"),
        "{printed}"
    );
    let engine = builder.build();
    engine
        .start("application: shop\ntargets: {dev: {}}", BTreeMap::new())
        .await
        .unwrap();
    let printed = format!("{engine:?}");
    assert!(
        printed.contains("live_deployments: Some(1)") && printed.contains("shutting_down: false"),
        "{printed}"
    );
}

/// A host behind an `Arc` drives engines as it is: two engines share one, with no wrapper of
/// the host's own, and it sees both engines' steps.
#[tokio::test]
async fn engines_share_one_host_behind_an_arc() {
    struct Tally(Mutex<Vec<String>>);

    #[async_trait]
    impl Host for Tally {
        async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
            self.0
                .lock()
                .unwrap()
                .push(context.application().to_owned());
            SimulatedHost.run_step(context, step).await
        }

        async fn roll_back(&self, _context: &StepContext) -> StepOutcome {
            StepOutcome::Succeeded
        }
    }

    let host = Arc::new(Tally(Mutex::default()));
    for (application, first) in [("shop", 1), ("till", 1_000)] {
        let engine = Engine::builder(dispatcher(), Arc::clone(&host))
            .ids(SequentialIds::starting_at(first))
            .build();
        let mut events = engine.subscribe();
        engine
            .start(
                &format!("application: {application}\ntargets: {{prod: {{}}}}\n"),
                BTreeMap::new(),
            )
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), async {
            while !matches!(
                events.recv().await,
                Ok(EngineEvent::Deployment { event, .. })
                    if matches!(event.kind, EventKind::DeploymentFinished { .. })
            ) {}
        })
        .await
        .expect("the deployment finishes");
    }
    assert_eq!(*host.0.lock().unwrap(), ["shop", "till"]);
}

/// A host whose code panics: at once (polled where the step is started, under the
/// deployment's lock) or after it has waited (finished by a task).
struct Panicking {
    at_once: bool,
}

#[async_trait]
impl Host for Panicking {
    async fn run_step(&self, _: &StepContext, _: &HostStep) -> StepOutcome {
        if !self.at_once {
            tokio::task::yield_now().await;
        }
        panic!("a bug in the host");
    }

    async fn roll_back(&self, _: &StepContext) -> StepOutcome {
        StepOutcome::Succeeded
    }
}

/// A host whose step panics fails that step, as a host reporting a failure would: the
/// deployment goes on to its end rather than wait for good on a step nobody finishes, and the
/// failure says what happened without the panic's message, which the panic hook has.
#[tokio::test]
async fn a_host_that_panics_fails_its_step() {
    for at_once in [true, false] {
        let engine = Engine::builder(dispatcher(), Panicking { at_once }).build();
        let id = engine
            .start("application: shop\ntargets: {dev: {}}", BTreeMap::new())
            .await
            .unwrap()
            .id;
        let status = finish::finished(&engine, &id, &format!("at once {at_once}")).await;
        assert_ne!(status, DeploymentStatus::Succeeded, "at once {at_once}");
        let failures: Vec<_> = engine
            .history(&id)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|entry| match entry.event.kind {
                EventKind::StepFinished {
                    ok: false, message, ..
                } => message,
                _ => None,
            })
            .collect();
        assert_eq!(
            failures,
            [
                "the host panicked while running the step (the message went to the process's \
              panic hook)"
            ],
            "at once {at_once}"
        );
        engine.shutdown().await;
    }
}
