//! Every public `async fn` gives a future a task can be spawned around: `Send` for any
//! lifetime of what it borrows, which a generic executor call inside can quietly break (sqlx's
//! `Executor` impls once made `SqliteStore::open` unspawnable).
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::BTreeMap;
use std::future::Future;

use hookgate::core::{Decision, DeploymentId};
use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::test_util::RecordingTransport;

/// Asks of `future` what `tokio::spawn` asks of the task around it.
fn spawnable<F: Future + Send>(future: F) -> F {
    future
}

fn engine() -> Engine {
    let dispatcher = RecordingTransport::new()
        .dispatcher("https://hookgate.example")
        .expect("a dispatcher");
    Engine::builder(dispatcher, SimulatedHost).build()
}

#[test]
fn the_engines_futures_are_send() {
    let engine = engine();
    let id = DeploymentId::from("d");
    let context = BTreeMap::new();
    drop(spawnable(engine.start("application: a", context.clone())));
    drop(spawnable(engine.start_for_tenant(
        "application: a",
        context,
        "t",
    )));
    drop(spawnable(engine.recover()));
    drop(spawnable(engine.cancel(&id, "me")));
    drop(spawnable(engine.decide(
        &id,
        hookgate::config::GateId(0),
        Decision::approve("me", Vec::<String>::new()),
    )));
    drop(spawnable(engine.view(&id)));
    drop(spawnable(engine.history(&id)));
    drop(spawnable(engine.fire_due()));
    drop(spawnable(engine.run_scheduler()));
    drop(spawnable(engine.maintain_leases()));
    drop(spawnable(engine.shutdown()));
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_sqlite_store_opens_and_closes_in_a_spawned_task() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("spawned.db");
    tokio::spawn(async move {
        let store = hookgate::store::SqliteStore::open(path)
            .await
            .expect("opens");
        store.close().await;
    })
    .await
    .expect("the task ends");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_postgres_stores_futures_are_send() {
    use hookgate::store::{PostgresOptions, PostgresStore};
    drop(spawnable(PostgresStore::connect(
        "postgres://nowhere.invalid/db",
    )));
    drop(spawnable(PostgresStore::connect_with(
        "postgres://nowhere.invalid/db",
        PostgresOptions::default(),
    )));
    let pool = hookgate::sqlx::PgPool::connect_lazy("postgres://nowhere.invalid/db")
        .expect("a pool that connects when first used");
    drop(spawnable(PostgresStore::from_pool(
        pool,
        PostgresOptions::default(),
    )));
}

#[cfg(feature = "receiver")]
#[test]
fn the_callback_clients_future_is_send() {
    use hookgate::receiver::{Callback, CallbackClient, TokenError, TokenSource};

    struct NoTokens;

    #[async_trait::async_trait]
    impl TokenSource for NoTokens {
        async fn token(&self) -> Result<hookgate::Secret, TokenError> {
            unreachable!("nothing is sent")
        }

        fn invalidate(&self, _rejected: &hookgate::Secret) {}
    }

    let client = CallbackClient::new(RecordingTransport::new(), NoTokens);
    let url = "https://gates.example/callbacks/x".parse().expect("a URL");
    let callback = Callback::success();
    drop(spawnable(client.send(&url, &callback)));
}
