//! The pieces the load harnesses share: command-line options, a client driving callbacks at
//! a fixed concurrency, engines serving open gates on loopback, and the report line.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookgate::auth::{Principal, StaticTokens};
use hookgate::runtime::{Engine, EngineBuilder, SimulatedHost};
use hookgate::server::{CallbackHandler, ServerState, router};
use hookgate::store::DynStore;
use hookgate::test_util::{RecordingTransport, SequentialIds};

use super::support::cpu_times;

pub const TOKEN: &str = "load-test-token";
pub struct Options {
    pub requests: usize,
    pub concurrency: usize,
    pub rounds: usize,
    /// Which parts to run, comma-separated (for example `memory` alone, to profile it).
    pub only: Option<String>,
    /// `--side hookgate` or `--side baseline` (`callbacks_load`): every drive is of that side
    /// alone, and no ratio is printed. For a profiler, which then sees one side's requests
    /// only: `valgrind --tool=callgrind --toggle-collect='*handle_connection*'` counts the
    /// server's instructions per request, `--toggle-collect='*load::drive*'` the client's.
    pub side: Option<Side>,
}

/// One side of a comparison (`--side`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// hookgate's router and engine (or gates).
    Hookgate,
    /// The bare handler it is compared with.
    Baseline,
}

impl Options {
    /// Whether `--only` selects the part `name` (every part when it is absent).
    pub fn runs(&self, name: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|only| only.split(',').any(|part| part == name))
    }
}

/// `--requests N` (default 5000), `--concurrency C` (64), `--rounds R` (3), `--only PARTS`,
/// `--side hookgate|baseline`.
pub fn options() -> Options {
    let mut o = Options {
        requests: 5000,
        concurrency: 64,
        rounds: 3,
        only: None,
        side: None,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        if pair[0] == "--only" {
            o.only = Some(pair[1].clone());
            continue;
        }
        if pair[0] == "--side" {
            o.side = Some(match pair[1].as_str() {
                "hookgate" => Side::Hookgate,
                "baseline" => Side::Baseline,
                other => panic!("--side takes hookgate or baseline, not {other:?}"),
            });
            continue;
        }
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

/// The multi-threaded runtime a harness runs on, after printing what its rounds are.
pub fn runtime(o: &Options) -> tokio::runtime::Runtime {
    println!(
        "{} callbacks per round, concurrency {}, {} rounds, best rounds and each round's ratio shown",
        o.requests, o.concurrency, o.rounds
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[derive(Clone, Copy)]
pub struct Round {
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// The whole process's CPU time (client included) per request, in seconds, user and
    /// system.
    pub cpu_per_request: Option<(f64, f64)>,
}

/// Sends one POST per URL at `concurrency`, each with the callback body and token, and reads
/// each answer whole. Panics unless every answer is `200 {"status": "applied"}`: a failed
/// request, or one answered by a cheaper path (a duplicate), would otherwise count as served.
pub async fn drive(urls: Vec<String>, concurrency: usize) -> Round {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("a client");
    let urls = Arc::new(urls);
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(urls.len())));
    let cpu_before = cpu_times();
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
                let Some(url) = urls.get(i) else {
                    return;
                };
                let sent = Instant::now();
                let response = client
                    .post(url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(r#"{"success": true, "mdMessage": "load test"}"#)
                    .send()
                    .await
                    .expect("the server answers");
                let status = response.status();
                let body = response.bytes().await.expect("the whole answer");
                // The latency ends with the answer read, before the client's own check of it.
                let latency = sent.elapsed();
                let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                assert!(
                    status == 200 && answer["status"] == "applied",
                    "{url}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
                latencies.lock().unwrap().push(latency);
            }
        });
    }
    // A worker that panicked (a refused request) fails the drive (`join_all` resumes its
    // panic) rather than leaving its share of the URLs unsent.
    workers.join_all().await;
    let elapsed = start.elapsed();
    let n = urls.len() as f64;
    let cpu_per_request = cpu_times()
        .zip(cpu_before)
        .map(|(after, before)| ((after.0 - before.0) / n, (after.1 - before.1) / n));
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    Round {
        per_second: urls.len() as f64 / elapsed.as_secs_f64(),
        // Nearest rank: the smallest latency at least this share of requests did not exceed.
        p50: l[(l.len() * 50).div_ceil(100) - 1],
        p99: l[(l.len() * 99).div_ceil(100) - 1],
        cpu_per_request,
    }
}

/// A server task on loopback, stopped when this is dropped: a round's server, and the engine or
/// gates it holds with all their deployments, then leave memory rather than stay for the later
/// rounds of both sides.
pub struct Serving(tokio::task::AbortHandle);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `app` on `listener` until the returned guard is dropped.
pub fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> Serving {
    Serving(tokio::spawn(async move { axum::serve(listener, app).await }).abort_handle())
}

/// An engine with open gates, served on loopback (see [`serve_engine`]).
pub struct Served {
    /// The engine, its scheduler running.
    pub engine: Engine,
    /// Its base URL.
    pub base: String,
    /// The callback URL of each open gate.
    pub urls: Vec<String>,
    /// The server in front of it, stopped when dropped.
    pub server: Serving,
}

/// An engine with `requests` deployments of `plan` (one webhook gate) waiting on their
/// callbacks, served on loopback, configured by `configure`, its scheduler running.
pub async fn serve_engine(
    store: Arc<DynStore>,
    plan: &str,
    requests: usize,
    configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let external = RecordingTransport::new();
    let dispatcher = external.dispatcher(base.clone()).unwrap();
    let builder = Engine::builder(dispatcher, SimulatedHost)
        .shared_store(store)
        .ids(SequentialIds::starting_at(rand_start()))
        .allow_concurrent_deployments(true);
    let engine = configure(builder).build();
    engine.recover().await.unwrap();
    // As a host runs it: besides deadlines, a replica's lease upkeep and change notices.
    let scheduler = engine.clone();
    tokio::spawn(async move { scheduler.run_scheduler().await });
    for _ in 0..requests {
        engine.start(plan, BTreeMap::new()).await.unwrap();
    }
    while external.count() < requests || engine.armed_deadlines() < requests {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let handler = CallbackHandler::new(
        Arc::new(engine.clone()),
        Arc::new(StaticTokens::new().with_token(TOKEN, Principal::new("load"))),
    );
    let server = serve(listener, router(ServerState::new(handler)));
    let urls = external
        .requests()
        .iter()
        .filter_map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            body["callbackUri"].as_str().map(str::to_owned)
        })
        .collect::<Vec<String>>();
    assert_eq!(urls.len(), requests, "one callback URL per gate");
    Served {
        engine,
        base,
        urls,
        server,
    }
}

pub fn rand_start() -> u128 {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    u128::from_be_bytes(b) >> 1
}

/// Prints the best rounds and their ratio, then each round's own ratio (hookgate's round over
/// the baseline's round run next to it) and their median, which drift on a shared machine
/// distorts less than a ratio of best rounds taken at different times. The CPU figures are
/// the best rounds' CPU time per request (client included on both sides).
pub fn report(name: &str, ours: &[Round], base: &[Round]) {
    let mut paired: Vec<f64> = ours
        .iter()
        .zip(base)
        .map(|(o, b)| o.per_second / b.per_second)
        .collect();
    let per_round = paired
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(" ");
    paired.sort_by(f64::total_cmp);
    let middle = paired.len() / 2;
    let median = if paired.len().is_multiple_of(2) {
        (paired[middle - 1] + paired[middle]) / 2.0
    } else {
        paired[middle]
    };
    let (ours, base) = (best(ours), best(base));
    let cpu = match (ours.cpu_per_request, base.cpu_per_request) {
        (Some(a), Some(b)) => format!(" | CPU/request {} vs {}", cpu_text(a), cpu_text(b)),
        _ => String::new(),
    };
    println!(
        "{name:<12} hookgate {:>8.0} req/s (p50 {:>7.2?}, p99 {:>7.2?}) | baseline {:>8.0} req/s (p50 {:>7.2?}, p99 {:>7.2?}) | ratio {:.2}{cpu}",
        ours.per_second,
        ours.p50,
        ours.p99,
        base.per_second,
        base.p50,
        base.p99,
        ours.per_second / base.per_second
    );
    println!("{:<12} per round {per_round} | median {median:.2}", "");
}

/// Prints the best of one side's rounds (`--side`), with no baseline to compare with.
pub fn report_side(name: &str, side: Side, rounds: &[Round]) {
    let r = best(rounds);
    let which = match side {
        Side::Hookgate => "hookgate",
        Side::Baseline => "baseline",
    };
    let cpu = r
        .cpu_per_request
        .map(|c| format!(" | CPU/request {}", cpu_text(c)))
        .unwrap_or_default();
    println!(
        "{name:<12} {which} alone {:>8.0} req/s (p50 {:>7.2?}, p99 {:>7.2?}){cpu}",
        r.per_second, r.p50, r.p99
    );
}

/// CPU time per request, user and system in seconds, as `63.0 µs (user 41.5)`.
fn cpu_text((user, system): (f64, f64)) -> String {
    format!("{:.1} µs (user {:.1})", (user + system) * 1e6, user * 1e6)
}

pub fn best(rounds: &[Round]) -> Round {
    *rounds
        .iter()
        .max_by(|a, b| a.per_second.total_cmp(&b.per_second))
        .expect("at least one round")
}
