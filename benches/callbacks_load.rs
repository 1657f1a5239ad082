//! Load harness: callbacks per second through hookgate's router into the engine, against
//! baselines served on the same loopback by the same process, in the same run.
//!
//! ```text
//! cargo bench --bench callbacks_load --features runtime,axum,sqlite,test-util -- \
//!     [--requests N] [--concurrency C] [--rounds R] [--only memory,gates,sqlite,sqlite-fsync]
//! ```
//!
//! For each store it opens N gates (N deployments, each waiting on a callback), then sends the N
//! callbacks over HTTP at concurrency C with a static bearer token, and compares with a bare
//! axum handler that reads the same body and answers 200 (memory), or that also writes one row
//! per request to SQLite with the same durability settings as the store (SQLite): `sqlite` with
//! the default `Durability::ProcessCrash` (`synchronous=NORMAL`, no sync per commit), and
//! `sqlite-fsync` with `Durability::PowerLoss` (`synchronous=FULL`, a sync per commit, which
//! group commit shares between the writes of a batch). Runs alternate between hookgate and its
//! baseline; the best round of each is reported.
//!
//! `gates` serves the same router over [`MemoryGates`] instead of the engine: the core alone
//! behind the HTTP layer, with no store, host or runtime, so that the two parts' shares of the
//! `memory` gap can be told apart.

mod load;
mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use bytes::Bytes;
use chrono::Utc;
use hookgate::auth::{Principal, StaticTokens};
use hookgate::clock::SystemClock;
use hookgate::config::Plan;
use hookgate::core::{Deployment, DeploymentId, StartOptions};
use hookgate::server::{CallbackHandler, MemoryGates, ServerState, router};
use hookgate::store::{Durability, MemoryStore, SqliteOptions, SqliteStore};
use hookgate::test_util::SequentialIds;
use load::{TOKEN, best, drive, options, rand_start, report, serve_engine};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use support::ONE_GATE;

/// A bare axum handler reading the same body, optionally writing one row per request.
async fn baseline(pool: Option<sqlx::SqlitePool>, requests: usize) -> Vec<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/callbacks/{id}",
        post(
            move |axum::extract::Path(id): axum::extract::Path<String>, body: Bytes| {
                let pool = pool.clone();
                async move {
                    let parsed: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    if let Some(pool) = pool {
                        sqlx::query("INSERT INTO callbacks (id, body) VALUES (?, ?)")
                            .bind(id)
                            .bind(parsed.to_string())
                            .execute(&pool)
                            .await
                            .unwrap();
                    }
                    "{\"status\":\"applied\"}"
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (0..requests)
        .map(|i| format!("{base}/callbacks/{i:032x}"))
        .collect()
}

async fn sqlite_baseline_pool(dir: &std::path::Path, durability: Durability) -> sqlx::SqlitePool {
    let synchronous = match durability {
        Durability::PowerLoss => SqliteSynchronous::Full,
        _ => SqliteSynchronous::Normal,
    };
    let options = SqliteConnectOptions::new()
        .filename(dir.join("baseline.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS callbacks (id TEXT NOT NULL, body TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

fn main() {
    let o = options();
    load::runtime(&o).block_on(async {
        if o.runs("memory") {
            memory(&o).await;
        }
        if o.runs("gates") {
            gates(&o).await;
        }
        if o.runs("sqlite") {
            sqlite(&o, Durability::ProcessCrash, "sqlite").await;
        }
        if o.runs("sqlite-fsync") {
            sqlite(&o, Durability::PowerLoss, "sqlite-fsync").await;
        }
    });
}

async fn memory(o: &load::Options) {
    against_bare_axum(o, "memory", || async {
        let (_, _, urls) = serve_engine(Arc::new(MemoryStore::new()), o.requests, |b| b).await;
        urls
    })
    .await;
}

/// The router over `MemoryGates` (no engine) against the same baseline as `memory`.
async fn gates(o: &load::Options) {
    against_bare_axum(o, "gates", || serve_gates(o.requests)).await;
}

/// Rounds alternating between what `serve` serves afresh each round (its callback URLs) and
/// the bare axum baseline.
async fn against_bare_axum<F: Future<Output = Vec<String>>>(
    o: &load::Options,
    name: &str,
    serve: impl Fn() -> F,
) {
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        ours.push(drive(serve().await, o.concurrency).await);
        let urls = baseline(None, o.requests).await;
        base.push(drive(urls, o.concurrency).await);
    }
    report(name, best(&ours), best(&base));
}

/// `requests` deployments of the one-gate plan, each waiting on its callback, in `MemoryGates`
/// served on loopback; returns the callback URLs.
async fn serve_gates(requests: usize) -> Vec<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let plan = Arc::new(Plan::from_yaml(ONE_GATE).unwrap());
    let gates = Arc::new(MemoryGates::new(SystemClock));
    // One id source for all: each deployment draws its callback ids from it.
    let mut ids = SequentialIds::starting_at(rand_start());
    let mut urls = Vec::with_capacity(requests);
    for i in 0..requests {
        let id = DeploymentId(format!("gates-{i}"));
        let mut d = Deployment::start(
            Arc::clone(&plan),
            id,
            StartOptions::default(),
            &mut ids,
            Utc::now(),
        );
        // The gate's call and the host's work are not this part's: drained unperformed.
        while d.poll_action().is_some() {}
        while d.poll_event().is_some() {}
        let (_, callback) = d.callback_ids().next().expect("one webhook gate");
        urls.push(format!("{base}/callbacks/{callback}"));
        gates.insert(d);
    }
    let handler = CallbackHandler::new(
        gates,
        Arc::new(StaticTokens::new().with_token(TOKEN, Principal::new("load"))),
    );
    tokio::spawn(async move { axum::serve(listener, router(ServerState::new(handler))).await });
    urls
}

/// The SQLite store against one row per request, both with `durability`.
async fn sqlite(o: &load::Options, durability: Durability, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        let options = SqliteOptions::default().with_durability(durability);
        let store =
            SqliteStore::open_with(dir.path().join(format!("hookgate-{round}.db")), options)
                .await
                .unwrap();
        let (_, _, urls) = serve_engine(Arc::new(store), o.requests, |b| b).await;
        ours.push(drive(urls, o.concurrency).await);
        let pool = sqlite_baseline_pool(dir.path(), durability).await;
        let urls = baseline(Some(pool), o.requests).await;
        base.push(drive(urls, o.concurrency).await);
    }
    report(name, best(&ours), best(&base));
}
