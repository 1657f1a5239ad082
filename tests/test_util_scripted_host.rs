//! `ScriptedHost`: a host whose steps wait for the test to answer them, for deploys that hang
//! or finish later, driven on a manual clock.
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use hookgate::core::{DeploymentId, DeploymentStatus, HostStep, StepOutcome};
use hookgate::runtime::Engine;
use hookgate::test_util::{ManualClock, RecordingTransport, ScriptedHost};

const FILE: &str = "
application: shop
deploymentConfig: {timeout: {duration: 30, unit: minutes}}
targets:
  prod: {}
";

fn engine(host: &ScriptedHost, clock: &ManualClock) -> Engine {
    let external = RecordingTransport::new();
    Engine::builder(
        external.dispatcher("https://gates.example").unwrap(),
        host.clone(),
    )
    .clock(clock.clone())
    .build()
}

async fn finished(engine: &Engine, id: &DeploymentId) -> DeploymentStatus {
    tokio::time::timeout(Duration::from_secs(20), engine.wait_finished(id))
        .await
        .expect("finished in time")
        .expect("a known deployment")
}

fn clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap())
}

#[tokio::test]
async fn a_deploy_answered_later_finishes_the_deployment() {
    let (host, clock) = (ScriptedHost::new(), clock());
    let engine = engine(&host, &clock);
    let started = engine.start(FILE, BTreeMap::new()).await.unwrap();
    let waiting = host.waiting();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(matches!(waiting[0].step, Some(HostStep::Deploy)));
    assert_eq!(waiting[0].context.environment(), "prod");
    assert_eq!(
        engine.view(&started.id).await.unwrap().status,
        DeploymentStatus::Running,
        "the deploy waits"
    );

    let answered = host.answer(|asked| asked.step.is_some(), StepOutcome::Succeeded);
    assert_eq!(answered.unwrap().context.deployment(), &started.id);
    assert_eq!(
        finished(&engine, &started.id).await,
        DeploymentStatus::Succeeded
    );
    assert!(host.waiting().is_empty());
}

/// A deploy never answered meets `deploymentConfig.timeout`; the rollback is asked for, and
/// the test answers it.
#[tokio::test]
async fn a_hung_deploy_times_out_and_its_rollback_is_asked_for() {
    let (host, clock) = (ScriptedHost::new(), clock());
    let engine = engine(&host, &clock);
    let started = engine.start(FILE, BTreeMap::new()).await.unwrap();
    clock.advance(TimeDelta::minutes(30));
    engine.fire_due().await;

    let waiting = host.waiting();
    let rollbacks: Vec<_> = waiting.iter().filter(|a| a.step.is_none()).collect();
    assert_eq!(rollbacks.len(), 1, "{waiting:?}");
    assert!(
        host.answer(|asked| asked.step.is_none(), StepOutcome::Succeeded)
            .is_some()
    );
    assert_eq!(
        finished(&engine, &started.id).await,
        DeploymentStatus::RolledBack
    );
    // The hung deploy still waits; answering it now changes nothing.
    assert!(
        host.answer(|asked| asked.step.is_some(), StepOutcome::Succeeded)
            .is_some()
    );
    assert_eq!(
        engine.view(&started.id).await.unwrap().status,
        DeploymentStatus::RolledBack
    );
}

/// Steps the engine no longer waits for (it shut down) are not listed.
#[tokio::test]
async fn steps_the_engine_stopped_waiting_for_are_not_listed() {
    let (host, clock) = (ScriptedHost::new(), clock());
    let engine = engine(&host, &clock);
    engine.start(FILE, BTreeMap::new()).await.unwrap();
    assert_eq!(host.waiting().len(), 1);
    engine.shutdown().await;
    assert!(host.waiting().is_empty(), "{:?}", host.waiting());
    assert!(host.answer(|_| true, StepOutcome::Succeeded).is_none());
}
