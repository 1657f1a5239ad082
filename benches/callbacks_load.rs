//! Load harness: callbacks per second through hookgate's router into the engine, against
//! baselines served on the same loopback by the same process, in the same run.
//!
//! ```text
//! cargo bench --bench callbacks_load --features runtime,axum,sqlite,test-util -- \
//!     [--requests N] [--concurrency C] [--rounds R]
//!     [--only memory,memory-after,gates,sqlite,sqlite-fsync]
//!     [--side hookgate|baseline]
//! ```
//!
//! For each store it opens N gates (N deployments, each waiting on a callback), then sends the N
//! callbacks over HTTP at concurrency C with a static bearer token, and compares with a bare
//! axum handler that reads the same body and answers 200 (memory), or that also writes one row
//! per request to SQLite with the same durability settings as the store (SQLite): `sqlite` with
//! the default `Durability::ProcessCrash` (`synchronous=NORMAL`, no sync per commit), and
//! `sqlite-fsync` with `Durability::PowerLoss` (`synchronous=FULL`, a sync per commit, which
//! group commit shares between the writes of a batch). Runs alternate between hookgate and its
//! baseline, each going first in every other round, after a warm-up round of both that is not
//! measured, an engine is shut down (its store closed) before the baseline's run, and every
//! drive is followed by a pause of 100 ms for what it leaves to end before the next; the best
//! round of each side is reported, then each round's own ratio and their median. Every answer
//! must be `200 {"status": "applied"}`, or the harness fails.
//!
//! Each gate is before deploying ([`ONE_GATE`]): its callback also opens the way to a deploy
//! step, which the simulated host runs at once and whose result the engine records, finishing
//! the deployment, while the drive goes on. `memory-after` is `memory` with the gate after
//! deploying instead ([`one_gate_after_deploy`]): the callback's own work alone, which
//! finishes the deployment and asks for nothing more.
//!
//! `gates` serves the same router over [`MemoryGates`] instead of the engine: the core alone
//! behind the HTTP layer, with no store, host or runtime, so that the two parts' shares of the
//! `memory` gap can be told apart.
//!
//! `--side` makes every drive one side's, for a profiler to see that side's requests alone
//! (see [`load::Options::side`]); the rounds' rates are printed without a ratio.

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
use hookgate::store::{Durability, DynStore, MemoryStore, SqliteOptions, SqliteStore};
use hookgate::test_util::SequentialIds;
use load::{
    Round, Serving, Side, TOKEN, drive, options, rand_start, report, report_side, serve,
    serve_engine,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use support::{ONE_GATE, one_gate_after_deploy};

/// A bare axum handler reading the same body, optionally writing one row per request.
async fn baseline(pool: Option<sqlx::SqlitePool>, requests: usize) -> (Vec<String>, Serving) {
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
    let server = serve(listener, app);
    let urls = (0..requests)
        .map(|i| format!("{base}/callbacks/{i:032x}"))
        .collect();
    (urls, server)
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
        // Four connections rather than one: about as fast without a sync per commit, faster
        // with one (two runs each way, alternating, 20,000 requests: 12,730 and 12,295 req/s
        // against 10,162 and 14,263 with `synchronous=NORMAL`; 3,992 and 4,038 against 3,505
        // and 3,406 with `FULL`), so the stronger baseline.
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
    let runtime = load::runtime(&o);
    println!("each part after a warm-up round of each side it drives, not measured");
    runtime.block_on(async {
        if o.runs("memory") {
            memory(&o).await;
        }
        if o.runs("memory-after") {
            memory_after(&o).await;
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
    alternate(
        o,
        "memory",
        async |_| engine_round(o, Arc::new(MemoryStore::new()), ONE_GATE).await,
        async |_| bare(o).await,
    )
    .await;
}

/// `memory` with each gate after deploying: the callbacks' own work, no deploy step behind it.
async fn memory_after(o: &load::Options) {
    alternate(
        o,
        "memory-after",
        async |_| engine_round(o, Arc::new(MemoryStore::new()), &one_gate_after_deploy()).await,
        async |_| bare(o).await,
    )
    .await;
}

/// The router over `MemoryGates` (no engine) against the same baseline as `memory`.
async fn gates(o: &load::Options) {
    alternate(
        o,
        "gates",
        async |_| {
            let (urls, _server) = serve_gates(o.requests).await;
            drive(urls, o.concurrency).await
        },
        async |_| bare(o).await,
    )
    .await;
}

/// A drive of the engine over `store` with gates of `plan`, served afresh, shut down before
/// the other side runs: none of its work (writes after the answers) spills into that side's
/// drive.
async fn engine_round(o: &load::Options, store: Arc<DynStore>, plan: &str) -> Round {
    let served = serve_engine(store, plan, o.requests, |b| b).await;
    let drove = drive(served.urls, o.concurrency).await;
    served.engine.shutdown().await;
    drove
}

/// A drive of the bare axum baseline, served afresh.
async fn bare(o: &load::Options) -> Round {
    let (urls, _server) = baseline(None, o.requests).await;
    drive(urls, o.concurrency).await
}

/// Rounds of hookgate's side (`ours`) and its baseline (`base`), each given the round and
/// serving afresh, each going first in every other round, then their report. Round 0 is a
/// warm-up of both sides and is not measured: the process's first drives pay for what later
/// ones find ready (connections, the allocator's arenas, the page cache), and whichever side
/// went first would pay for both.
async fn alternate(
    o: &load::Options,
    name: &str,
    ours: impl AsyncFn(usize) -> Round,
    base: impl AsyncFn(usize) -> Round,
) {
    if let Some(side) = o.side {
        let mut rounds = Vec::new();
        for round in 0..=o.rounds {
            rounds.push(match side {
                Side::Hookgate => ours(round).await,
                Side::Baseline => base(round).await,
            });
            between_sides().await;
        }
        return report_side(name, side, &rounds[1..]);
    }
    let (mut our_rounds, mut base_rounds) = (Vec::new(), Vec::new());
    for round in 0..=o.rounds {
        // Alternately, so that neither side always follows the other.
        let (drove, base_drove) = if round.is_multiple_of(2) {
            let drove = ours(round).await;
            between_sides().await;
            (drove, base(round).await)
        } else {
            let base_drove = base(round).await;
            between_sides().await;
            (ours(round).await, base_drove)
        };
        between_sides().await;
        if round > 0 {
            our_rounds.push(drove);
            base_rounds.push(base_drove);
        }
    }
    report(name, &our_rounds, &base_rounds);
}

/// A pause after each side's drive, so that what the drive leaves to end (its server's
/// connection tasks, whose last one drops the engine and its store, or the gates; the client's
/// connections) ends before the next drive rather than during it. Without it, the baseline read
/// 62,800–64,000 req/s in the rounds where it followed hookgate against 68,000–69,400 in those
/// where it followed itself (one run, six rounds), which lifted the ratio of every round in
/// which hookgate went first; with a pause of 50 ms, 64,800–68,300 either way.
async fn between_sides() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// `requests` deployments of the one-gate plan, each waiting on its callback, in `MemoryGates`
/// served on loopback; returns the callback URLs.
async fn serve_gates(requests: usize) -> (Vec<String>, Serving) {
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
    (urls, serve(listener, router(ServerState::new(handler))))
}

/// The SQLite store against one row per request, both with `durability`.
async fn sqlite(o: &load::Options, durability: Durability, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    alternate(
        o,
        name,
        async |round| {
            let options = SqliteOptions::default().with_durability(durability);
            let path = dir.path().join(format!("hookgate-{round}.db"));
            let store = Arc::new(SqliteStore::open_with(path, options).await.unwrap());
            let drove = engine_round(o, store.clone(), ONE_GATE).await;
            // Its checkpoint ends before the baseline runs.
            store.close().await;
            drove
        },
        async |_| {
            let pool = sqlite_baseline_pool(dir.path(), durability).await;
            let (urls, _server) = baseline(Some(pool.clone()), o.requests).await;
            let drove = drive(urls, o.concurrency).await;
            pool.close().await;
            drove
        },
    )
    .await;
}
