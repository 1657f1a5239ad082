//! Recovery from SQLite past a row that cannot be read or does not fit its deployment file: the
//! other deployments resume, and those are reported and left as they are.
#![cfg(all(feature = "runtime", feature = "sqlite", feature = "test-util"))]

mod store_support;

use std::sync::Arc;

use hookgate::config::Plan;
use hookgate::core::{Deployment, StartOptions};
use hookgate::ids::RandomIds;
use hookgate::runtime::{Engine, RuntimeError, SimulatedHost};
use hookgate::store::{MemoryStore, NewDeployment, SqliteStore, Store, StoreError};
use hookgate::test_util::RecordingTransport;
use sqlx::sqlite::SqliteConnectOptions;
use store_support::{PLAN, start_random};

#[tokio::test]
async fn rows_that_cannot_be_resumed_do_not_keep_the_others_from_recovering() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("hookgate.db");
    let store = Arc::new(SqliteStore::open(&path).await.expect("the store opens"));
    let (before, broken, unfit, after) = (
        start_random("a-before"),
        start_random("b-broken"),
        start_random("c-unfit"),
        start_random("d-after"),
    );
    for (d, events) in [&before, &broken, &unfit, &after] {
        store
            .create(NewDeployment::new(d, PLAN), events)
            .await
            .expect("create");
    }
    // A host's own queued deployment: the engine keeps its queue in memory, and would hold a
    // stored one without ever beginning it.
    let queued = Deployment::queue(
        Arc::new(Plan::from_yaml(PLAN).expect("valid plan")),
        "e-queued".into(),
        StartOptions::default(),
        &mut RandomIds,
        chrono::Utc::now(),
    );
    store
        .create(NewDeployment::new(&queued, PLAN), &[])
        .await
        .expect("create");
    let raw = sqlx::SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .expect("a second connection");
    sqlx::query("UPDATE deployments SET state = '{}' WHERE id = ?")
        .bind(&broken.0.id().0)
        .execute(&raw)
        .await
        .expect("tamper");
    // A file of another layout than the state was started with.
    sqlx::query("UPDATE plans SET plan_source = ? WHERE deployment_id = ?")
        .bind("application: shop\ntargets: {one: {}, two: {}, three: {}}\n")
        .bind(&unfit.0.id().0)
        .execute(&raw)
        .await
        .expect("tamper");
    raw.close().await;

    let external = RecordingTransport::new();
    let engine = Engine::builder(
        external
            .dispatcher("https://gates.example")
            .expect("a dispatcher"),
        SimulatedHost,
    )
    .shared_store(store.clone())
    .build();
    let recovered = engine.recover().await.expect("recovery goes on");

    assert_eq!(recovered.resumed, 2, "the rows before and after it resume");
    assert_eq!(
        recovered.not_resumed,
        [
            broken.0.id().clone(),
            unfit.0.id().clone(),
            queued.id().clone()
        ]
    );
    assert_eq!(engine.live_deployments(), 2);
    let mut live = engine.live_deployment_ids();
    live.sort();
    assert_eq!(
        live,
        [before.0.id().clone(), after.0.id().clone()],
        "what an application lists after the restart"
    );
    for (d, _) in [&before, &after] {
        let view = engine.view(d.id()).await.expect("a resumed deployment");
        assert_eq!(view.status, d.status());
    }
    assert!(
        matches!(
            store.load(broken.0.id()).await,
            Err(StoreError::Corrupt { what: "state", .. })
        ),
        "the unreadable row is left as it is"
    );
    let left = store
        .load(unfit.0.id())
        .await
        .expect("a load")
        .expect("stored");
    assert_eq!(left.version, 1, "the unfit row is left as it is");
    engine.shutdown().await;
}

/// Once shutdown has begun, recovery resumes nothing and says so, rather than report every
/// deployment as one that cannot be resumed.
#[tokio::test]
async fn a_recovery_after_shutdown_has_begun_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let (d, events) = start_random("a");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    let engine = Engine::builder(
        RecordingTransport::new()
            .dispatcher("https://gates.example")
            .expect("a dispatcher"),
        SimulatedHost,
    )
    .shared_store(store)
    .build();
    engine.shutdown().await;
    assert!(
        matches!(engine.recover().await, Err(RuntimeError::ShuttingDown)),
        "refused"
    );
    assert_eq!(engine.live_deployments(), 0);
}
