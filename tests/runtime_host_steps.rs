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
    let dispatcher = RecordingTransport::new()
        .dispatcher("https://hookgate.example")
        .expect("a dispatcher");
    let engine = Engine::builder(dispatcher, host.clone())
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
            .all(|(c, _)| c.deployment == started.id && c.application == "shop")
    );
    let of = |environment: &str| -> Vec<(StepContext, &'static str)> {
        steps
            .iter()
            .filter(|(c, _)| c.environment == environment)
            .cloned()
            .collect()
    };
    let dev = of("dev");
    assert_eq!(dev.len(), 1, "{dev:?}");
    assert_eq!(dev[0].1, "deploy");
    assert_eq!(dev[0].0.strategy, StepStrategy::Direct);
    assert_eq!(dev[0].0.account.as_deref(), Some("dev-cluster"));
    assert_eq!(dev[0].0.namespace.as_deref(), Some("shop-dev"));

    let staging = of("staging");
    assert_eq!(
        staging.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        ["deploy", "setWeight", "setWeight"]
    );
    assert!(staging.iter().all(|(c, _)| c.strategy
        == StepStrategy::Canary {
            name: "slow".into()
        }));

    let prod = of("prod");
    assert_eq!(
        prod.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        ["deploy", "redirectTraffic", "shutDownOldVersion"]
    );
    let blue_green = StepStrategy::BlueGreen {
        name: "switch".into(),
        active_service: "checkout".into(),
        preview_service: Some("checkout-preview".into()),
    };
    assert!(
        prod.iter().all(|(c, _)| c.strategy == blue_green),
        "{prod:?}"
    );
}
