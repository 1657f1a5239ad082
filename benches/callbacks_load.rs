//! Load harness: callbacks per second through hookgate's router into the engine, against
//! baselines served on the same loopback by the same process, in the same run.
//!
//! ```text
//! cargo bench --bench callbacks_load --features runtime,axum,sqlite,test-util -- \
//!     [--requests N] [--concurrency C] [--rounds R]
//! ```
//!
//! For each store it opens N gates (N deployments, each waiting on a callback), then sends the N
//! callbacks over HTTP at concurrency C with a static bearer token, and compares with a bare
//! axum handler that reads the same body and answers 200 (memory), or that also writes one row
//! per request to SQLite with the same durability settings as the store (SQLite). Runs
//! alternate between hookgate and its baseline; the best round of each is reported.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use bytes::Bytes;
use hookgate::auth::{Principal, StaticTokens};
use hookgate::outbound::Dispatcher;
use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::secrets::MemorySecrets;
use hookgate::server::{CallbackHandler, ServerState, router};
use hookgate::store::{DynStore, MemoryStore, SqliteStore};
use hookgate::test_util::SequentialIds;
use hookgate::transport::{TransportError, TransportRegistry};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const TOKEN: &str = "load-test-token";
const PLAN: &str = r#"
application: load
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: gate}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    headers: [{key: Content-Type, value: application/json}]
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
"#;

struct Options {
    requests: usize,
    concurrency: usize,
    rounds: usize,
}

fn options() -> Options {
    let mut o = Options {
        requests: 5000,
        concurrency: 64,
        rounds: 3,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        let value = pair[1].parse().ok();
        match (pair[0].as_str(), value) {
            ("--requests", Some(v)) => o.requests = v,
            ("--concurrency", Some(v)) => o.concurrency = v,
            ("--rounds", Some(v)) => o.rounds = v,
            _ => {}
        }
    }
    o
}

#[derive(Clone, Copy)]
struct Round {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// Sends one POST per URL at `concurrency`, each with the callback body and token.
async fn drive(urls: Vec<String>, concurrency: usize) -> Round {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("a client");
    let urls = Arc::new(urls);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(urls.len())));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, urls, next, latencies) = (
            client.clone(),
            Arc::clone(&urls),
            Arc::clone(&next),
            Arc::clone(&latencies),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(url) = urls.get(i) else { return };
                let sent = Instant::now();
                let response = client
                    .post(url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(r#"{"success": true, "mdMessage": "load test"}"#)
                    .send()
                    .await
                    .expect("the server answers");
                assert_eq!(response.status(), 200, "{url}");
                latencies.lock().unwrap().push(sent.elapsed());
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    Round {
        per_second: urls.len() as f64 / elapsed.as_secs_f64(),
        p50: l[l.len() / 2],
        p99: l[l.len() * 99 / 100],
    }
}

/// An engine with `requests` open gates served on loopback; returns the callback URLs.
async fn hookgate(store: Arc<DynStore>, requests: usize) -> Vec<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let urls = Arc::new(Mutex::new(Vec::new()));
    let capture = Arc::clone(&urls);
    let external = move |request: http::Request<Bytes>| {
        let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap_or_default();
        if let Some(url) = body["callbackUri"].as_str() {
            capture.lock().unwrap().push(url.to_owned());
        }
        async {
            Ok::<_, TransportError>(
                http::Response::builder()
                    .status(202)
                    .body(Bytes::new())
                    .unwrap(),
            )
        }
    };
    let dispatcher = Dispatcher::builder(
        TransportRegistry::new(Arc::new(external)),
        Arc::new(MemorySecrets::new()),
        base,
    )
    .build()
    .unwrap();
    let engine = Engine::builder(dispatcher, SimulatedHost)
        .shared_store(store)
        .ids(SequentialIds::starting_at(rand_start()))
        .allow_concurrent_deployments(true)
        .build();
    for _ in 0..requests {
        engine.start(PLAN, BTreeMap::new()).await.unwrap();
    }
    while engine.armed_deadlines() < requests {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let handler = CallbackHandler::new(
        Arc::new(engine),
        Arc::new(StaticTokens::new().with_token(TOKEN, Principal::new("load"))),
    );
    tokio::spawn(async move { axum::serve(listener, router(ServerState::new(handler))).await });
    urls.lock().unwrap().clone()
}

fn rand_start() -> u128 {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    u128::from_be_bytes(b) >> 1
}

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

async fn sqlite_baseline_pool(dir: &std::path::Path) -> sqlx::SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("baseline.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
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

fn report(name: &str, ours: Round, base: Round) {
    println!(
        "{name:<8} hookgate {:>8.0} req/s (p50 {:>7.2?}, p99 {:>7.2?}) | baseline {:>8.0} req/s (p50 {:>7.2?}, p99 {:>7.2?}) | ratio {:.2}",
        ours.per_second,
        ours.p50,
        ours.p99,
        base.per_second,
        base.p50,
        base.p99,
        ours.per_second / base.per_second
    );
}

fn best(rounds: &[Round]) -> Round {
    *rounds
        .iter()
        .max_by(|a, b| a.per_second.total_cmp(&b.per_second))
        .expect("at least one round")
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "{} callbacks per round, concurrency {}, {} rounds, best round shown",
            o.requests, o.concurrency, o.rounds
        );
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for _ in 0..o.rounds {
            let urls = hookgate(Arc::new(MemoryStore::new()), o.requests).await;
            ours.push(drive(urls, o.concurrency).await);
            let urls = baseline(None, o.requests).await;
            base.push(drive(urls, o.concurrency).await);
        }
        report("memory", best(&ours), best(&base));

        let dir = tempfile::tempdir().unwrap();
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for round in 0..o.rounds {
            let store = SqliteStore::open(dir.path().join(format!("hookgate-{round}.db")))
                .await
                .unwrap();
            let urls = hookgate(Arc::new(store), o.requests).await;
            ours.push(drive(urls, o.concurrency).await);
            let pool = sqlite_baseline_pool(dir.path()).await;
            let urls = baseline(Some(pool), o.requests).await;
            base.push(drive(urls, o.concurrency).await);
        }
        report("sqlite", best(&ours), best(&base));
    });
}
