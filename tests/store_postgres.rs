//! The PostgreSQL store against a real server: the conformance suite and the replica checks,
//! migrations (idempotent, concurrent, upgrading, too new, failing), connection errors that
//! never show the password, notices confined to their schema, and a server restart.
//!
//! The server is the one at `HOOKGATE_TEST_POSTGRES_URL`; `source .ci/postgres.sh` starts a
//! throw-away one and sets it. Without it every test is skipped with a note on stderr, except
//! under `CI=true`, where a skip is a failure. Each test works in a schema of its own, so the
//! tests run in parallel and leave nothing behind when they pass.
//!
//! The restart is simulated in two ways, the real server being shared and not the tests' to
//! restart: a TCP proxy between the store and the server drops every connection and refuses
//! new ones while "down" (what clients see while a server restarts), and
//! `pg_terminate_backend` ends the store's server processes (what a server shutdown does to
//! them).
#![cfg(all(feature = "postgres", feature = "test-util"))]

mod log_capture;
mod store_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{SubsecRound, TimeDelta, Utc};
use hookgate::core::{Deployment, DeploymentId, IdSource};
use hookgate::ids::RandomIds;
use hookgate::store::{
    ChangeWatcher, DynStore, Lease, NewDeployment, PostgresOptions, PostgresStore, Store,
    StoreError, conformance,
};
use hookgate::test_util::ManualClock;
use log_capture::Captured;
use sqlx::PgPool;
use store_support::{PLAN, progress, start_random};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const MIGRATION_1: &str = include_str!("../src/store/postgres/migrations/0001_initial.sql");
const MIGRATION_2: &str = include_str!("../src/store/postgres/migrations/0002_leases.sql");

/// The server's URL, or `None` (after saying why on stderr) when there is none to test on.
fn server_url() -> Option<String> {
    match std::env::var("HOOKGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "HOOKGATE_TEST_POSTGRES_URL is not set and CI=true: the PostgreSQL tests must run \
             in CI; .ci/run sources .ci/postgres.sh to start a server"
        ),
        _ => {
            // Once, and past the test harness's capture of `eprintln!`, which shows a passing
            // test's output to no one: the tests pass without testing anything.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    b"skipping the PostgreSQL store tests: HOOKGATE_TEST_POSTGRES_URL is not set. \
                      Run `source .ci/postgres.sh` to start a throw-away server and set it, or \
                      set it to a database where this user may create schemas.\n",
                );
            });
            None
        }
    }
}

/// A schema of the test's own on the test server.
struct TestDb {
    url: String,
    schema: String,
}

impl TestDb {
    fn new(test: &str) -> Option<Self> {
        let url = server_url()?;
        let tag = RandomIds.callback_id().to_string();
        Some(Self {
            url,
            schema: format!("hookgate_test_{test}_{}", &tag[..12]),
        })
    }

    /// The server's URL with this test's `application_name`, which finds its connections in
    /// `pg_stat_activity`.
    fn url(&self) -> String {
        let mut url = url::Url::parse(&self.url).expect("HOOKGATE_TEST_POSTGRES_URL is a URL");
        url.query_pairs_mut()
            .append_pair("application_name", &self.schema);
        url.to_string()
    }

    fn options(&self) -> PostgresOptions {
        PostgresOptions::default()
            .with_schema(&self.schema)
            .with_max_connections(8)
    }

    async fn connect(&self) -> PostgresStore {
        PostgresStore::connect_with(&self.url(), self.options())
            .await
            .expect("connect")
    }

    /// A pool of its own for looking at and tampering with the tables, outside the store.
    async fn raw(&self) -> PgPool {
        PgPool::connect(&self.url).await.expect("connect directly")
    }

    fn table(&self, name: &str) -> String {
        format!("\"{}\".{name}", self.schema)
    }

    async fn drop_schema(self) {
        let pool = self.raw().await;
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ))
        .execute(&pool)
        .await
        .expect("drop the test schema");
        pool.close().await;
    }
}

/// What a watcher heard: each deployment and version, in order.
type Heard = Arc<Mutex<Vec<(DeploymentId, u64)>>>;

/// A watcher that records what it hears.
fn recorder() -> (ChangeWatcher, Heard) {
    let heard: Heard = Arc::default();
    let watcher: ChangeWatcher = {
        let heard = Arc::clone(&heard);
        Arc::new(move |id: &DeploymentId, version| {
            heard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((id.clone(), version));
        })
    };
    (watcher, heard)
}

fn has_heard(heard: &Mutex<Vec<(DeploymentId, u64)>>, id: &DeploymentId, version: u64) -> bool {
    heard
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|(i, v)| i == id && *v == version)
}

/// Waits up to ten seconds for `done`.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within ten seconds: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_passes_the_conformance_suite_and_the_replica_checks() {
    let Some(db) = TestDb::new("conformance") else {
        return;
    };
    let store = db.connect().await;
    let shared: Arc<DynStore> = Arc::new(store.clone());
    conformance::run_all(&shared).await;
    conformance::concurrent_saves(&shared, |task| {
        Box::pin(async { tokio::spawn(task).await.expect("the save task panicked") })
    })
    .await;
    conformance::run_replica_checks(&shared).await;

    // Two replicas, each with a pool and a listener of its own, on one schema.
    let other: Arc<DynStore> = Arc::new(db.connect().await);
    conformance::concurrent_saves(&other, |task| {
        Box::pin(async { tokio::spawn(task).await.expect("the save task panicked") })
    })
    .await;
    let (watcher, heard) = recorder();
    other.watch(watcher).await.expect("watch");
    let (d, events) = start_random("written-by-the-first-replica");
    let lease = Lease::new("first", Utc::now(), Duration::from_secs(30));
    store
        .create(NewDeployment::new(&d, PLAN).leased(lease), &events)
        .await
        .expect("create");
    let taken = other
        .claim(
            d.id(),
            &Lease::new("second", Utc::now(), Duration::from_secs(30)),
        )
        .await
        .expect("claim");
    assert!(
        !taken,
        "the first replica's live lease is kept from the second"
    );
    eventually(
        "the second replica hears the first one's create",
        async || has_heard(&heard, d.id(), 1),
    )
    .await;
    store.close().await;
    drop(other);
    db.drop_schema().await;
}

/// A host that already has a pool hands it over; the store migrates through it and takes no
/// connection options of its own but the listener's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_the_hosts_own_pool_passes_the_conformance_suite() {
    let Some(db) = TestDb::new("from_pool") else {
        return;
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url())
        .await
        .expect("the host's pool");
    let store = PostgresStore::from_pool(pool.clone(), db.options())
        .await
        .expect("a store on the pool");
    let store: Arc<DynStore> = Arc::new(store);
    conformance::run_all(&store).await;
    conformance::run_replica_checks(&store).await;
    drop(store);
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&db.schema)
    .fetch_one(&pool)
    .await
    .expect("the host's pool still works");
    assert_eq!(
        tables, 5,
        "deployments, callbacks, events, replicas, hookgate_migrations"
    );
    pool.close().await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_when_replicas_connect_together_and_again() {
    let Some(db) = TestDb::new("migrate_concurrently") else {
        return;
    };
    let (a, b, c) = tokio::join!(db.connect(), db.connect(), db.connect());
    let raw = db.raw().await;
    let applied_sql = format!(
        "SELECT version, applied_at FROM {} ORDER BY version",
        db.table("hookgate_migrations")
    );
    let applied =
        || sqlx::query_as::<_, (i64, chrono::DateTime<Utc>)>(&applied_sql).fetch_all(&raw);
    let before = applied().await.expect("read the migrations");
    assert_eq!(
        before.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "each migration applied once"
    );

    let (d, events) = start_random("d1");
    a.create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    for store in [&a, &b, &c] {
        store.close().await;
    }
    // A later clock would stamp a migration applied again with another time.
    let later = ManualClock::new(Utc::now() + TimeDelta::days(1));
    let again = PostgresStore::connect_with(&db.url(), db.options().with_clock(later))
        .await
        .expect("connect again");
    assert_eq!(applied().await.expect("read the migrations"), before);
    let stored = again.load(d.id()).await.expect("load").expect("kept");
    assert_eq!(stored.state, *d.state());
    again.close().await;
    raw.close().await;
    db.drop_schema().await;
}

/// A role that may use the tables but create nothing (the runtime role of a database whose
/// schema an administrator migrated) connects and works: `CREATE TABLE IF NOT EXISTS` needs
/// the CREATE privilege on the schema even when the table exists, so it is not run then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_not_create_uses_a_schema_already_migrated() {
    let Some(db) = TestDb::new("no_create") else {
        return;
    };
    db.connect().await.close().await;
    let raw = db.raw().await;
    let role = format!(
        "hookgate_app_{}",
        &RandomIds.callback_id().to_string()[..12]
    );
    let password = RandomIds.callback_id().to_string();
    let created = sqlx::raw_sql(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"
    ))
    .execute(&raw)
    .await;
    if let Err(e) = created {
        let message = format!(
            "skipping the check of a role that may not create: the test's user may not create \
             roles ({e}); .ci/postgres.sh's user may"
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("{message}");
        raw.close().await;
        db.drop_schema().await;
        return;
    }
    let schema = &db.schema;
    sqlx::raw_sql(&format!(
        "GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\";
         GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{role}\";"
    ))
    .execute(&raw)
    .await
    .expect("grant the role the use of the tables");
    let mut url = url::Url::parse(&db.url()).expect("a URL");
    url.set_username(&role).expect("set the user");
    url.set_password(Some(&password)).expect("set the password");

    let connected = PostgresStore::connect_with(url.as_str(), db.options()).await;
    let outcome = match connected {
        Ok(store) => {
            let (mut d, events) = start_random("d1");
            store
                .create(NewDeployment::new(&d, PLAN), &events)
                .await
                .expect("create as the role");
            let events = progress(&mut d, "half way");
            store
                .save(d.id(), 1, d.state(), d.status(), &events)
                .await
                .expect("save as the role");
            let stored = store.load(d.id()).await.expect("load").expect("stored");
            store.close().await;
            Ok(stored.version)
        }
        Err(e) => Err(e),
    };
    sqlx::raw_sql(&format!(
        "DROP SCHEMA \"{schema}\" CASCADE; DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\";"
    ))
    .execute(&raw)
    .await
    .expect("drop the schema and the role");
    raw.close().await;
    assert_eq!(outcome.expect("the role connects"), 2);
}

/// A version 2 database, whose finished deployments kept their leases, has them given up by
/// the upgrade; an unfinished deployment keeps its own.
#[tokio::test]
async fn upgrading_from_version_2_gives_up_the_leases_of_finished_deployments() {
    let Some(db) = TestDb::new("upgrade_leases") else {
        return;
    };
    let raw = db.raw().await;
    let mut tx = raw.begin().await.expect("begin");
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA \"{0}\"; SET LOCAL search_path TO \"{0}\"; {MIGRATION_1} {MIGRATION_2}
         CREATE TABLE hookgate_migrations (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL);
         INSERT INTO hookgate_migrations VALUES (1, now()), (2, now());",
        db.schema
    ))
    .execute(&mut *tx)
    .await
    .expect("create a version 2 schema");
    let (running, _) = start_random("running");
    let (done, _) = start_random("done");
    for (d, status, finished) in [(&running, "running", false), (&done, "succeeded", true)] {
        sqlx::query(
            "INSERT INTO deployments (id, application, plan_source, state, status, finished,
                 version, created_at, updated_at, lease_owner, lease_until)
             VALUES ($1, 'shop', $2, $3, $4, $5, 1, now(), now(), 'replica', now())",
        )
        .bind(&d.id().0)
        .bind(PLAN)
        .bind(serde_json::to_string(d.state()).expect("state as JSON"))
        .bind(status)
        .bind(finished)
        .execute(&mut *tx)
        .await
        .expect("insert a deployment");
    }
    tx.commit().await.expect("commit version 2");

    let store = db.connect().await;
    let owners: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT id, lease_owner FROM {} ORDER BY id",
        db.table("deployments")
    ))
    .fetch_all(&raw)
    .await
    .expect("read the leases");
    assert_eq!(
        owners,
        [
            (done.id().0.clone(), None),
            (running.id().0.clone(), Some("replica".to_owned()))
        ]
    );
    store.close().await;
    raw.close().await;
    db.drop_schema().await;
}

#[tokio::test]
async fn a_version_1_database_is_upgraded_and_keeps_its_rows() {
    let Some(db) = TestDb::new("upgrade") else {
        return;
    };
    let raw = db.raw().await;
    // Version 1 as the first release left it: the first migration and its record.
    let mut tx = raw.begin().await.expect("begin");
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA \"{0}\"; SET LOCAL search_path TO \"{0}\"; {MIGRATION_1}
         CREATE TABLE hookgate_migrations (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL);
         INSERT INTO hookgate_migrations VALUES (1, now());",
        db.schema
    ))
    .execute(&mut *tx)
    .await
    .expect("create a version 1 schema");
    let (mut d, events) = start_random("from-v1");
    let created = Utc::now();
    sqlx::query(
        "INSERT INTO deployments (id, application, plan_source, state, status, finished,
             version, created_at, updated_at)
         VALUES ($1, 'shop', $2, $3, 'running', false, 1, $4, $4)",
    )
    .bind(&d.id().0)
    .bind(PLAN)
    .bind(serde_json::to_string(d.state()).expect("state as JSON"))
    .bind(created)
    .execute(&mut *tx)
    .await
    .expect("insert a deployment");
    let (_, callback) = d.callback_ids().next().expect("one webhook gate");
    sqlx::query("INSERT INTO callbacks VALUES ($1, $2)")
        .bind(callback.to_string())
        .bind(&d.id().0)
        .execute(&mut *tx)
        .await
        .expect("index its callback");
    for (seq, event) in (1i64..).zip(&events) {
        sqlx::query("INSERT INTO events VALUES ($1, $2, 1, $3)")
            .bind(&d.id().0)
            .bind(seq)
            .bind(serde_json::to_string(event).expect("event as JSON"))
            .execute(&mut *tx)
            .await
            .expect("append an event");
    }
    tx.commit().await.expect("commit version 1");

    let store = db.connect().await;
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM {} ORDER BY version",
        db.table("hookgate_migrations")
    ))
    .fetch_all(&raw)
    .await
    .expect("read the migrations");
    assert_eq!(
        versions,
        [1, 2, 3, 4],
        "migrations 2 to 4 applied on top of 1"
    );
    let stored = store.load(d.id()).await.expect("load").expect("kept");
    assert_eq!(stored.state, *d.state());
    assert_eq!(stored.version, 1);
    assert_eq!(
        stored.created_at,
        created.trunc_subsecs(6),
        "stored to the microsecond"
    );
    let history = store.history(d.id()).await.expect("history");
    assert_eq!(
        history.iter().map(|e| &e.event).collect::<Vec<_>>(),
        events.iter().collect::<Vec<_>>()
    );
    assert_eq!(
        store.find_by_callback(callback).await.expect("find"),
        Some(d.id().clone())
    );
    // The new columns work on the old row.
    let lease = Lease::new("replica", Utc::now(), Duration::from_secs(30));
    assert!(store.claim(d.id(), &lease).await.expect("claim"));
    assert_eq!(
        store.renew(&lease).await.expect("renew"),
        [(d.id().clone(), 1)]
    );
    let events = progress(&mut d, "after the upgrade");
    assert_eq!(
        store
            .save(d.id(), 1, d.state(), d.status(), &events)
            .await
            .expect("save"),
        2
    );
    assert_eq!(
        store.history(d.id()).await.expect("history").len(),
        history.len() + events.len()
    );
    store.close().await;
    raw.close().await;
    db.drop_schema().await;
}

#[tokio::test]
async fn a_schema_newer_than_this_release_is_refused() {
    let Some(db) = TestDb::new("too_new") else {
        return;
    };
    db.connect().await.close().await;
    let raw = db.raw().await;
    sqlx::query(&format!(
        "INSERT INTO {} (version, applied_at) VALUES (99, now())",
        db.table("hookgate_migrations")
    ))
    .execute(&raw)
    .await
    .expect("pretend a newer release migrated");
    let refused = PostgresStore::connect_with(&db.url(), db.options()).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::SchemaTooNew {
                found: 99,
                supported: 4
            })
        ),
        "{refused:?}"
    );
    raw.close().await;
    db.drop_schema().await;
}

/// A database in another encoding than UTF-8 would refuse a save only once a progress note or
/// a context held a character it lacks, as a failure the runtime retries; one in SQL_ASCII
/// checks nothing, and a row another tool wrote with bytes that are not UTF-8 would fail every
/// listing that reads it (recovery, lease upkeep). Both are refused when the store starts,
/// naming the encoding.
#[tokio::test]
async fn a_database_that_is_not_utf8_is_refused_at_connect() {
    let Some(db) = TestDb::new("not_utf8") else {
        return;
    };
    let raw = db.raw().await;
    for encoding in ["LATIN1", "SQL_ASCII"] {
        let database = format!("{}_{}", db.schema, encoding.to_lowercase());
        sqlx::raw_sql(&format!(
            "CREATE DATABASE \"{database}\" ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ))
        .execute(&raw)
        .await
        .expect("create the database");
        let mut url = url::Url::parse(&db.url()).unwrap();
        url.set_path(&database);
        let refused = PostgresStore::connect_with(url.as_str(), db.options()).await;
        assert!(
            matches!(&refused, Err(StoreError::Encoding { found }) if found == encoding),
            "{refused:?}"
        );
        let message = refused.unwrap_err().to_string();
        assert!(message.contains("ENCODING 'UTF8'"), "{message}");
        sqlx::raw_sql(&format!("DROP DATABASE \"{database}\" WITH (FORCE)"))
            .execute(&raw)
            .await
            .expect("drop the database");
    }
    raw.close().await;
}

#[tokio::test]
async fn a_failed_migration_is_reported_and_changes_nothing() {
    let Some(db) = TestDb::new("failed_migration") else {
        return;
    };
    let raw = db.raw().await;
    // A table in the way of the first migration.
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".deployments (id integer)",
        db.schema
    ))
    .execute(&raw)
    .await
    .expect("create the obstacle");
    let refused = PostgresStore::connect_with(&db.url(), db.options()).await;
    assert!(
        matches!(&refused, Err(StoreError::Migration { version: 1, .. })),
        "{refused:?}"
    );
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&db.schema)
    .fetch_all(&raw)
    .await
    .expect("list the tables");
    assert_eq!(
        tables,
        ["deployments"],
        "the migration was rolled back whole"
    );
    raw.close().await;
    db.drop_schema().await;
}

#[tokio::test]
async fn connection_failures_are_connect_errors_without_the_password() {
    let Some(db) = TestDb::new("open_errors") else {
        return;
    };
    // The test's runtime runs on this thread only, so this sees every event of the store.
    let (logs, _logging) = Captured::on_this_thread();

    let secret = format!("not-the-password-{}", RandomIds.callback_id());
    let mut url = url::Url::parse(&db.url()).expect("a URL");
    let real_password = url.password().map(str::to_owned);
    url.set_password(Some(&secret)).expect("set the password");
    // Long enough for a loaded machine to hear the refusal, which comes at once.
    let options = db.options().with_connect_timeout(Duration::from_secs(10));
    match PostgresStore::connect_with(url.as_str(), options.clone()).await {
        Err(error) => {
            assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
            let text = format!("{error} {error:?}");
            assert!(!text.contains(&secret), "the password shows: {text}");
            assert!(text.contains("password authentication failed"), "{text}");
            let shown = format!("{}@{}", url.username(), url.host_str().unwrap_or_default());
            assert!(text.contains(&shown), "the error names the server: {text}");
        }
        Ok(store) => {
            store.close().await;
            let message = "the server accepted a wrong password (trust authentication), so \
                           the wrong-password check cannot run; .ci/postgres.sh starts one \
                           with password authentication";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("{message}");
        }
    }

    // Nothing listens on a port just freed: the connection is refused until the timeout.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("address").port();
    drop(free);
    url.set_port(Some(port)).expect("set the port");
    url.set_host(Some("127.0.0.1")).expect("set the host");
    let refused = PostgresStore::connect_with(
        url.as_str(),
        options.with_connect_timeout(Duration::from_secs(1)),
    )
    .await;
    let error = refused.expect_err("nothing listens there");
    assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains(&secret), "the password shows: {text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");

    let malformed = PostgresStore::connect(&format!("postgres://user:{secret}@host:notaport/db"))
        .await
        .expect_err("a malformed URL");
    let text = format!("{malformed} {malformed:?}");
    assert!(matches!(malformed, StoreError::Connect { .. }), "{text}");
    assert!(!text.contains(&secret), "the password shows: {text}");

    let logged = logs.text();
    assert!(
        !logged.contains(&secret),
        "the password was logged: {logged}"
    );
    if let Some(real) = real_password.filter(|p| !p.is_empty()) {
        assert!(!logged.contains(&real), "the real password was logged");
    }
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_stay_within_their_schema_and_end_with_the_store() {
    let Some(db) = TestDb::new("notices") else {
        return;
    };
    let Some(elsewhere) = TestDb::new("notices_elsewhere") else {
        return;
    };
    let store = db.connect().await;
    let other = elsewhere.connect().await;
    let (watcher, heard) = recorder();
    store.watch(watcher).await.expect("watch");
    let (on_other, events) = start_random("on-the-other-schema");
    other
        .create(NewDeployment::new(&on_other, PLAN), &events)
        .await
        .expect("create");
    let (mine, events) = start_random("on-this-schema");
    store
        .create(NewDeployment::new(&mine, PLAN), &events)
        .await
        .expect("create");
    eventually("the store hears its own schema's write", async || {
        has_heard(&heard, mine.id(), 1)
    })
    .await;
    // Notices of one connection arrive in commit order, so the other schema's is not late.
    assert!(
        !has_heard(&heard, on_other.id(), 1),
        "a store hears nothing of another schema"
    );

    let raw = db.raw().await;
    let listening = |schema: String| {
        let raw = raw.clone();
        async move {
            // `PgListener` repeats the LISTEN after reconnecting, then with a semicolon.
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE left(query, length($1)) = $1",
            )
            .bind(format!("LISTEN \"hookgate.{schema}\""))
            .fetch_one(&raw)
            .await
            .expect("read pg_stat_activity")
        }
    };
    assert_eq!(
        listening(db.schema.clone()).await,
        1,
        "one listener, however many watchers"
    );
    let (again, _) = recorder();
    store.watch(again).await.expect("watch again");
    assert_eq!(listening(db.schema.clone()).await, 1);

    // Dropping the last clone ends the listener, as closing does.
    let (watcher, _) = recorder();
    other.watch(watcher).await.expect("watch");
    assert_eq!(listening(elsewhere.schema.clone()).await, 1);
    let clone = other.clone();
    drop(other);
    assert_eq!(
        listening(elsewhere.schema.clone()).await,
        1,
        "a clone keeps it"
    );
    drop(clone);
    eventually("dropping the store ends its listener", async || {
        listening(elsewhere.schema.clone()).await == 0
    })
    .await;
    store.close().await;
    eventually("closing ends the listener", async || {
        listening(db.schema.clone()).await == 0
    })
    .await;
    let closed = store.load(mine.id()).await;
    assert!(
        matches!(
            closed,
            Err(StoreError::Closed {
                store: "PostgreSQL"
            })
        ),
        "{closed:?}"
    );
    // A watcher added after closing would never be called: refused, not taken.
    let (late, _) = recorder();
    let refused = store.watch(late).await;
    assert!(
        matches!(&refused, Err(StoreError::Closed { .. })),
        "{refused:?}"
    );
    raw.close().await;
    db.drop_schema().await;
    elsewhere.drop_schema().await;
}

/// A release by a replica's run and a later run of the same name recording itself come one
/// after the other: a release that meets the later run's write under way waits for it, then
/// releases nothing, the leases being the later run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_by_run_waits_for_a_later_run_being_recorded() {
    let Some(db) = TestDb::new("release_run") else {
        return;
    };
    let store = Arc::new(db.connect().await);
    let (d, events) = start_random("d1");
    let lease = Lease::new("same", Utc::now(), Duration::from_secs(3600));
    store
        .create(NewDeployment::new(&d, PLAN).leased(lease), &events)
        .await
        .expect("create");
    store
        .register_replica("same", "run-1")
        .await
        .expect("register");
    let raw = db.raw().await;
    let mut later = raw.begin().await.expect("begin");
    sqlx::query(&format!(
        "UPDATE {} SET run = 'run-2' WHERE owner = 'same'",
        db.table("replicas")
    ))
    .execute(&mut *later)
    .await
    .expect("record the later run");
    let release = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.release_run("same", "run-1").await }
    });
    let schema = db.schema.clone();
    eventually("the release waits on the replica's row", async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = $1 AND wait_event_type = 'Lock'",
        )
        .bind(&schema)
        .fetch_one(&raw)
        .await
        .expect("read pg_stat_activity")
            == 1
    })
    .await;
    later.commit().await.expect("commit the later run");
    assert_eq!(release.await.expect("join").expect("release"), None);
    assert!(
        !store
            .claim(
                d.id(),
                &Lease::new("other", Utc::now(), Duration::from_secs(30))
            )
            .await
            .expect("claim"),
        "still leased under the name"
    );
    raw.close().await;
    db.drop_schema().await;
}

#[tokio::test]
async fn corrupt_rows_are_typed_errors() {
    let Some(db) = TestDb::new("corrupt") else {
        return;
    };
    let store = db.connect().await;
    let (d, events) = start_random("d1");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    let raw = db.raw().await;
    let deployments = db.table("deployments");
    // The last three are times PostgreSQL stores but chrono cannot hold: sqlx's own decoder
    // would panic on them.
    for (column, value) in [
        ("state", "'{\"truncated\": '"),
        ("state", "'{}'"),
        ("status", "'paused'"),
        ("created_at", "'infinity'"),
        ("updated_at", "'-infinity'"),
        ("updated_at", "'290000-01-01Z'"),
    ] {
        sqlx::query(&format!("UPDATE {deployments} SET {column} = {value}"))
            .execute(&raw)
            .await
            .expect("tamper");
        let loaded = store.load(d.id()).await;
        assert!(
            matches!(&loaded, Err(StoreError::Corrupt { id, what, .. }) if id == d.id() && *what == column),
            "{column} = {value}: {loaded:?}"
        );
        let listed = store.list_unfinished().await.expect("the listing itself");
        assert!(listed.deployments.is_empty(), "{listed:?}");
        assert!(
            matches!(&listed.unreadable[..], [StoreError::Corrupt { id, what, .. }] if id == d.id() && *what == column),
            "{column} = {value}: {listed:?}"
        );
        sqlx::query(&format!(
            "UPDATE {deployments}
             SET state = $1, status = 'running', created_at = now(), updated_at = now()"
        ))
        .bind(serde_json::to_string(d.state()).expect("state as JSON"))
        .execute(&raw)
        .await
        .expect("repair");
        assert!(store.load(d.id()).await.expect("repaired").is_some());
    }

    sqlx::query(&format!(
        "UPDATE {deployments} SET version = 9223372036854775807"
    ))
    .execute(&raw)
    .await
    .expect("tamper");
    let stored = store.load(d.id()).await.expect("load").expect("found");
    let saved = store
        .save(d.id(), stored.version, d.state(), d.status(), &[])
        .await;
    assert!(
        matches!(
            &saved,
            Err(StoreError::Corrupt {
                what: "version",
                ..
            })
        ),
        "the largest version cannot advance: {saved:?}"
    );

    sqlx::query(&format!(
        "UPDATE {} SET event = '[1, 2]' WHERE seq = 1",
        db.table("events")
    ))
    .execute(&raw)
    .await
    .expect("tamper");
    let history = store.history(d.id()).await;
    assert!(
        matches!(&history, Err(StoreError::Corrupt { what: "event", .. })),
        "{history:?}"
    );
    store.close().await;
    raw.close().await;
    db.drop_schema().await;
}

/// Stores two running deployments, leased to `owner` if one is named, and makes the first one's
/// state unreadable; returns both.
async fn broken_and_good(
    db: &TestDb,
    store: &PostgresStore,
    owner: Option<&str>,
) -> (Deployment, Deployment) {
    let (broken, broken_events) = start_random("broken");
    let (good, good_events) = start_random("good");
    for (d, events) in [(&broken, &broken_events), (&good, &good_events)] {
        let mut new = NewDeployment::new(d, PLAN);
        if let Some(owner) = owner {
            new = new.leased(Lease::new(owner, Utc::now(), Duration::from_secs(30)));
        }
        store.create(new, events).await.expect("create");
    }
    let raw = db.raw().await;
    sqlx::query(&format!(
        "UPDATE {} SET state = '{{}}' WHERE id = $1",
        db.table("deployments")
    ))
    .bind(&broken.id().0)
    .execute(&raw)
    .await
    .expect("tamper");
    raw.close().await;
    (broken, good)
}

/// A row that cannot be read among those a takeover claims is answered as unreadable, not made
/// the answer: the rest of the batch is returned, and the unreadable one stays with the
/// claimer rather than come first in every later claim.
#[tokio::test]
async fn a_corrupt_orphan_is_answered_apart_from_the_rest_of_a_takeover() {
    let Some(db) = TestDb::new("corrupt_orphan") else {
        return;
    };
    let store = db.connect().await;
    let (broken, good) = broken_and_good(&db, &store, None).await;

    let first = Lease::new("first", Utc::now(), Duration::from_secs(30));
    let taken = store.claim_orphans(&first, 10).await.expect("a claim");
    let ids: Vec<&DeploymentId> = taken.deployments.iter().map(|t| &t.id).collect();
    assert_eq!(ids, [good.id()], "the readable one is returned");
    assert!(
        matches!(&taken.unreadable[..], [StoreError::Corrupt { id, .. }] if id == broken.id()),
        "{:?}",
        taken.unreadable
    );
    let second = Lease::new("second", Utc::now(), Duration::from_secs(30));
    assert!(
        store
            .claim_orphans(&second, 10)
            .await
            .expect("a claim")
            .deployments
            .is_empty(),
        "the unreadable one is not offered to every later claim"
    );
    store.close().await;
    db.drop_schema().await;
}

/// A store connected to the test server through a [`Proxy`] that can play the server down.
async fn through_proxy(db: &TestDb) -> (Proxy, PostgresStore) {
    through_proxy_with(db, db.options()).await
}

/// [`through_proxy`], with `options`.
async fn through_proxy_with(db: &TestDb, options: PostgresOptions) -> (Proxy, PostgresStore) {
    let server = url::Url::parse(&db.url).expect("a URL");
    let host = server.host_str().unwrap_or("localhost");
    let port = server.port().unwrap_or(5432);
    let upstream = tokio::net::lookup_host((host, port))
        .await
        .expect("resolve the server")
        .next()
        .expect("the server has an address");
    let proxy = Proxy::start(upstream).await;
    let mut via_proxy = url::Url::parse(&db.url()).expect("a URL");
    via_proxy.set_host(Some("127.0.0.1")).expect("set the host");
    via_proxy
        .set_port(Some(proxy.addr.port()))
        .expect("set the port");
    let options = options.with_connect_timeout(Duration::from_secs(2));
    let store = PostgresStore::connect_with(via_proxy.as_str(), options)
        .await
        .expect("connect through the proxy");
    (proxy, store)
}

/// A TCP proxy in front of the server that can go down: it then drops every connection and
/// refuses new ones, as a restarting server does, and comes back on the same port. It can also
/// go quiet on the connections it has, as a NAT that dropped them without a reset does.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
    /// How many times it went quiet: a connection forwards until this passes what it was when
    /// the connection came.
    quiet: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut proxy = Self {
            addr: listener.local_addr().expect("address"),
            upstream,
            tasks: Arc::default(),
            accept: None,
            quiet: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let (tasks, upstream) = (Arc::clone(&self.tasks), self.upstream);
        let quiet = Arc::clone(&self.quiet);
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                // Read as the connection comes, so that one accepted before `go_quiet` goes
                // quiet however late its task starts.
                let mut quiet = quiet.subscribe();
                let came_at = *quiet.borrow_and_update();
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let quieted = tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                            quieted = quiet.wait_for(|&now| now > came_at) => quieted.is_ok(),
                        };
                        if quieted {
                            // Both ends stay open, and nothing goes through, until `down`.
                            std::future::pending::<()>().await;
                        }
                    }
                });
                tasks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(forward);
            }
        }));
    }

    /// Forwards nothing more on the connections it has, and keeps them open; new ones forward.
    fn go_quiet(&self) {
        self.quiet.send_modify(|times| *times += 1);
    }

    fn down(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }

    async fn up(&mut self) {
        // The aborted accept task drops its socket when the runtime gets to it.
        for _ in 0..50 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot listen on {} again", self.addr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_survives_a_server_restart_without_being_rebuilt() {
    let Some(db) = TestDb::new("restart") else {
        return;
    };
    let (mut proxy, store) = through_proxy(&db).await;
    let (watcher, heard) = recorder();
    store.watch(watcher).await.expect("watch");
    let (mut d, events) = start_random("d1");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    let mut version = 1;

    proxy.down();
    let loaded = store.load(d.id()).await;
    assert!(
        matches!(loaded, Err(StoreError::Backend { .. })),
        "{loaded:?}"
    );
    let events = progress(&mut d, "while the server is down");
    let saved = store
        .save(d.id(), version, d.state(), d.status(), &events)
        .await;
    assert!(
        matches!(saved, Err(StoreError::Backend { .. })),
        "{saved:?}"
    );
    let lease = Lease::new("replica", Utc::now(), Duration::from_secs(30));
    let claimed = store.claim(d.id(), &lease).await;
    assert!(
        matches!(claimed, Err(StoreError::Backend { .. })),
        "{claimed:?}"
    );
    proxy.up().await;

    // The save that failed wrote nothing; the same save now succeeds on the same store.
    assert_eq!(
        store
            .load(d.id())
            .await
            .expect("load")
            .expect("kept")
            .version,
        1
    );
    version = store
        .save(d.id(), version, d.state(), d.status(), &events)
        .await
        .expect("save after the restart");
    assert!(store.claim(d.id(), &lease).await.expect("claim"));
    heard_after_reconnecting(&store, &mut d, &mut version, &heard).await;

    // The server ends the store's processes, as a shutdown does.
    let raw = db.raw().await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&db.schema)
    .fetch_all(&raw)
    .await
    .expect("terminate the store's connections");
    assert!(
        terminated.len() >= 2,
        "the pool's and the listener's: {terminated:?}"
    );
    heard_after_reconnecting(&store, &mut d, &mut version, &heard).await;
    let history = store.history(d.id()).await.expect("history");
    assert_eq!(
        history.last().map(|e| e.version),
        Some(version),
        "the last save's events are the last of the history"
    );

    store.close().await;
    raw.close().await;
    proxy.down();
    db.drop_schema().await;
}

/// A change-notice connection that goes quiet without a reset, as behind a NAT that dropped it,
/// fails its heartbeat and is replaced, and later writes are heard again. Without the
/// heartbeat the store would wait on it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_connection_gone_quiet_is_replaced() {
    let Some(db) = TestDb::new("quiet") else {
        return;
    };
    let writer = db.connect().await;
    // Long enough that a loaded machine answers every heartbeat of a connection that works.
    let heartbeat = db.options().with_notice_heartbeat(Duration::from_secs(1));
    let (mut proxy, store) = through_proxy_with(&db, heartbeat).await;
    let (watcher, heard) = recorder();
    store.watch(watcher).await.expect("watch");
    let (mut d, events) = start_random("d1");
    writer
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    let mut version = 1;
    heard_after_reconnecting(&writer, &mut d, &mut version, &heard).await;
    // Quiet for a few heartbeats: the listener's connection asks the server something, and
    // goes on hearing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let raw = db.raw().await;
    let asked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query = 'SELECT 1'",
    )
    .bind(&db.schema)
    .fetch_one(&raw)
    .await
    .expect("look at the store's connections");
    assert!(
        asked >= 1,
        "the listener's connection asked the server something"
    );
    raw.close().await;
    heard_after_reconnecting(&writer, &mut d, &mut version, &heard).await;

    proxy.go_quiet();
    heard_after_reconnecting(&writer, &mut d, &mut version, &heard).await;

    store.close().await;
    writer.close().await;
    proxy.down();
    db.drop_schema().await;
}

/// Closing a store whose change-notice connection went quiet before a heartbeat found it out
/// does not wait for the network to give up on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_does_not_wait_on_a_quiet_notice_connection() {
    let Some(db) = TestDb::new("quiet_close") else {
        return;
    };
    // None before the close: the connection is still the quiet one.
    let no_heartbeat = db
        .options()
        .with_notice_heartbeat(Duration::from_secs(3600));
    let (mut proxy, store) = through_proxy_with(&db, no_heartbeat).await;
    let (watcher, _) = recorder();
    store.watch(watcher).await.expect("watch");
    proxy.go_quiet();
    tokio::time::timeout(Duration::from_secs(30), store.close())
        .await
        .expect("the store closes without an answer from the quiet connection");
    proxy.down();
    db.drop_schema().await;
}

/// Saves until the watcher hears one of the saves: the listener reconnects on its own, and
/// notices sent before it did are lost.
async fn heard_after_reconnecting(
    store: &PostgresStore,
    d: &mut Deployment,
    version: &mut u64,
    heard: &Mutex<Vec<(DeploymentId, u64)>>,
) {
    let first = *version + 1;
    for _ in 0..100 {
        let events = progress(d, "after the restart");
        // The first save after connections dropped may find its pooled connection dead.
        match store
            .save(d.id(), *version, d.state(), d.status(), &events)
            .await
        {
            Ok(saved) => *version = saved,
            Err(StoreError::Backend { .. }) => continue,
            // A save whose answer was lost with its connection may have been committed.
            Err(StoreError::Conflict { actual, .. }) => *version = actual,
            Err(other) => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if (first..=*version).any(|v| has_heard(heard, d.id(), v)) {
            return;
        }
    }
    panic!("the watcher heard none of the saves after the connections dropped");
}

#[cfg(all(
    feature = "runtime",
    feature = "axum",
    feature = "reqwest",
    feature = "receiver"
))]
mod replicas;
#[cfg(all(
    feature = "runtime",
    feature = "axum",
    feature = "reqwest",
    feature = "receiver"
))]
mod support;

/// The replica scenarios of `tests/runtime_replicas.rs`, on PostgreSQL: two engines as
/// replicas sharing one schema, their callbacks sent to either at random; and fail-over.
#[cfg(all(
    feature = "runtime",
    feature = "axum",
    feature = "reqwest",
    feature = "receiver"
))]
mod replica_scenarios {
    use super::*;
    use crate::replicas;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_apply_each_callback_once_and_run_each_step_once() {
        let Some(db) = TestDb::new("replica_storm") else {
            return;
        };
        let store: Arc<DynStore> = Arc::new(
            PostgresStore::connect_with(&db.url(), db.options().with_max_connections(20))
                .await
                .expect("connect"),
        );
        replicas::two_replica_storm(Arc::clone(&store), 500).await;
        db.drop_schema().await;
    }

    /// A callback that arrives while the database is down is answered `503` and changes
    /// nothing, so its sender retries; the retry after the server is back applies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_callback_during_an_outage_gets_503_and_its_retry_applies() {
        use axum::body::Body;
        use hookgate::auth::{Principal, StaticTokens};
        use hookgate::core::GateState;
        use hookgate::runtime::{Engine, ReplicaOptions, SimulatedHost};
        use hookgate::server::{CallbackHandler, ServerState, router};
        use hookgate::test_util::RecordingTransport;
        use tower::ServiceExt;

        let Some(db) = TestDb::new("outage") else {
            return;
        };
        let (mut proxy, store) = through_proxy(&db).await;
        let external = RecordingTransport::new();
        let dispatcher = external
            .dispatcher("https://gates.example")
            .expect("a dispatcher");
        let engine = Engine::builder(dispatcher, SimulatedHost)
            .store(store)
            .replica(ReplicaOptions::new("replica"))
            .build();
        engine.recover().await.expect("recover");
        let plan = PLAN.replace(
            r#"uriTemplate: "https://tickets.example/{{armory.deploymentId}}""#,
            r#"uriTemplate: "https://tickets.example/open"
    bodyTemplate: {inline: '{{armory.callbackUri}}'}"#,
        );
        let id = engine
            .start(&plan, Default::default())
            .await
            .expect("start")
            .id;
        let waiting = || async {
            matches!(
                engine.view(&id).await.expect("view").gates[0].state,
                GateState::AwaitingCallback { .. }
            )
        };
        eventually("the gate waits for its callback", waiting).await;
        let callback = String::from_utf8(external.requests()[0].body.to_vec())
            .expect("the body is the callback URI");
        let path = url::Url::parse(&callback).expect("a URL").path().to_owned();
        let app = router(ServerState::new(CallbackHandler::new(
            Arc::new(engine.clone()),
            Arc::new(StaticTokens::new().with_token("outage-token", Principal::new("ci"))),
        )));
        let post = || {
            http::Request::post(&path)
                .header("authorization", "Bearer outage-token")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"success": true}"#))
                .expect("a request")
        };

        proxy.down();
        let answer = app.clone().oneshot(post()).await.expect("an answer");
        assert_eq!(answer.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(waiting().await, "the gate still waits");
        proxy.up().await;

        let answer = app.oneshot(post()).await.expect("an answer");
        assert_eq!(answer.status(), http::StatusCode::OK);
        let view = engine.view(&id).await.expect("view");
        assert!(
            matches!(view.gates[0].state, GateState::Passed(_)),
            "{:?}",
            view.gates[0].state
        );
        engine.shutdown().await;
        db.drop_schema().await;
    }

    #[tokio::test]
    async fn a_second_engine_under_a_replicas_name_makes_the_first_shut_down() {
        let Some(db) = TestDb::new("one_name") else {
            return;
        };
        let store: Arc<DynStore> = Arc::new(db.connect().await);
        replicas::a_second_engine_under_one_name(store).await;
        db.drop_schema().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_replicas_deployments_are_taken_over_after_its_leases_end() {
        let Some(db) = TestDb::new("failover") else {
            return;
        };
        let store: Arc<DynStore> = Arc::new(db.connect().await);
        replicas::failover(store).await;
        db.drop_schema().await;
    }
}

/// A single engine, a replica restarting under the name that holds the rows, and a replica
/// taking unleased rows over one at a time recover every readable deployment past one whose row
/// cannot be read, and report that one, which stays as it is. The last took a batch holding
/// only the unreadable row first, and read its empty answer as none left.
#[cfg(feature = "runtime")]
#[tokio::test]
async fn an_unreadable_row_does_not_keep_the_others_from_recovering() {
    use hookgate::runtime::{Engine, ReplicaOptions, SimulatedHost};
    use hookgate::test_util::RecordingTransport;

    let cases = [
        ("list_corrupt", None, None),
        (
            "held_corrupt",
            Some("replica"),
            Some(ReplicaOptions::new("replica")),
        ),
        (
            "orphan_corrupt",
            None,
            Some(ReplicaOptions::new("replica").takeover_batch(1)),
        ),
    ];
    for (schema, owner, replica) in cases {
        let Some(db) = TestDb::new(schema) else {
            return;
        };
        let store = db.connect().await;
        let (broken, good) = broken_and_good(&db, &store, owner).await;

        let external = RecordingTransport::new();
        let mut engine = Engine::builder(
            external
                .dispatcher("https://gates.example")
                .expect("a dispatcher"),
            SimulatedHost,
        )
        .store(store.clone());
        if let Some(replica) = replica {
            engine = engine.replica(replica);
        }
        let engine = engine.build();
        let recovered = engine.recover().await.expect("recovery goes on");
        assert_eq!(recovered.resumed, 1, "{schema}: the readable one resumes");
        assert_eq!(recovered.not_resumed, [broken.id().clone()], "{schema}");
        assert_eq!(engine.live_deployments(), 1, "{schema}");
        assert!(
            engine.view(good.id()).await.is_ok(),
            "{schema}: the readable one is there"
        );
        assert!(
            matches!(
                store.load(broken.id()).await,
                Err(StoreError::Corrupt { .. })
            ),
            "{schema}: left as it is"
        );
        engine.shutdown().await;
        db.drop_schema().await;
    }
}
