//! Throughput of `Dispatcher::send` against a plain `reqwest::Client` loop, both posting the
//! same request to a local HTTP sink that answers 202.
//!
//! `cargo bench --bench dispatch --features reqwest,axum -- [calls]` (default 10000 calls per
//! round). Each round sends the calls with 64 in flight; rounds alternate between (a) the
//! dispatcher and (b) the plain client, and the medians are compared.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use hookgate::core::CallResult;
use hookgate::outbound::{Dispatcher, PreparedCall};
use hookgate::secrets::MemorySecrets;
use hookgate::transport::{HttpTransport, ReqwestTransport, TransportRegistry};

mod support;

use support::{GITHUB_DISPATCH, cpu_time, first_call};

const CONCURRENCY: usize = 64;
const ROUNDS: usize = 5;
const TOKEN: &str = "ghp_0123456789abcdef0123456789abcdef0123";

fn main() {
    let calls = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or(10_000, |a| {
            a.parse().expect("the argument is a number of calls")
        });
    let sink = start_sink();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(compare(&sink, calls));
}

/// Starts the sink on its own runtime thread and returns its base URL.
fn start_sink() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            let app = Router::new().fallback(post(|| async { StatusCode::ACCEPTED }));
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

async fn compare(sink: &str, calls: usize) {
    let (dispatcher, prepared) = dispatcher(sink);
    let plain = Plain::new(sink, &prepared).await;
    // Warm-up: connections opened, code paths paged in.
    via_dispatcher(&dispatcher, &prepared, calls.min(1000)).await;
    via_plain(&plain, calls.min(1000)).await;
    via_transport(&plain, calls.min(1000)).await;

    let mut rounds: [Vec<Measured>; 3] = Default::default();
    for round in 1..=ROUNDS {
        rounds[0].push(via_dispatcher(&dispatcher, &prepared, calls).await);
        rounds[1].push(via_plain(&plain, calls).await);
        rounds[2].push(via_transport(&plain, calls).await);
        let shown: Vec<String> = rounds.iter().map(|r| r[round - 1].to_string()).collect();
        println!(
            "round {round}: (a) {}  (b) {}  (c) {}",
            shown[0], shown[1], shown[2]
        );
    }
    let [a, b, c] = rounds.map(Measured::median);
    println!("median of {ROUNDS} rounds of {calls} calls, {CONCURRENCY} in flight:");
    println!("  (a) Dispatcher::send          {a}");
    println!("  (b) reqwest::Client           {b}");
    println!("  (c) ReqwestTransport alone    {c}");
    println!(
        "  throughput (a)/(b) = {:.3}   (c)/(b) = {:.3}",
        a.rate / b.rate,
        c.rate / b.rate
    );
    if let (Some(a_cpu), Some(b_cpu)) = (a.cpu_per_call, b.cpu_per_call) {
        println!("  CPU per call (a)/(b) = {:.3}", a_cpu / b_cpu);
    }
}

/// One round: calls per second of wall time, and the process's CPU time (sink included) per
/// call, which the machine's other load disturbs less.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    rate: f64,
    cpu_per_call: Option<f64>,
}

impl Measured {
    fn median(mut rounds: Vec<Self>) -> Self {
        let middle = rounds.len() / 2;
        rounds.sort_by(|x, y| x.rate.total_cmp(&y.rate));
        let rate = rounds[middle].rate;
        let mut cpu: Vec<f64> = rounds.iter().filter_map(|r| r.cpu_per_call).collect();
        cpu.sort_by(f64::total_cmp);
        Self {
            rate,
            cpu_per_call: cpu.get(middle).copied(),
        }
    }
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>7.0} calls/s", self.rate)?;
        match self.cpu_per_call {
            Some(cpu) => write!(f, " {:>5.1} µs CPU/call", cpu * 1e6),
            None => Ok(()),
        }
    }
}

fn dispatcher(sink: &str) -> (Arc<Dispatcher>, Arc<PreparedCall>) {
    let secrets = MemorySecrets::new()
        .with("github_base", sink)
        .with("github_token", TOKEN);
    let transports = TransportRegistry::new(ReqwestTransport::new().unwrap());
    let dispatcher = Dispatcher::builder(transports, Arc::new(secrets), "https://hg.example")
        .build()
        .unwrap();
    let (deployment, call) = first_call(GITHUB_DISPATCH);
    let prepared = dispatcher.prepare(&deployment, &call, None);
    (Arc::new(dispatcher), Arc::new(prepared))
}

/// The baseline: the request the dispatcher sends, built once, posted with a bare client.
struct Plain {
    client: reqwest::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
    /// The same request as an `http::Request`, for the transport alone.
    request: http::Request<bytes::Bytes>,
    transport: ReqwestTransport,
}

impl Plain {
    /// Captures one request the dispatcher renders, so both paths send the same bytes.
    async fn new(sink: &str, prepared: &PreparedCall) -> Arc<Self> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let capture = move |request: http::Request<bytes::Bytes>| {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(request);
            }
            async { Ok(http::Response::new(bytes::Bytes::new())) }
        };
        let secrets = MemorySecrets::new()
            .with("github_base", sink)
            .with("github_token", TOKEN);
        let capturing = Dispatcher::builder(
            TransportRegistry::new(capture),
            Arc::new(secrets),
            "https://hg.example",
        )
        .build()
        .unwrap();
        assert!(matches!(
            capturing.send(prepared).await,
            CallResult::Sent { .. }
        ));
        let request = rx.await.unwrap();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Arc::new(Self {
            client,
            url: request.uri().to_string(),
            headers: request.headers().clone(),
            body: request.body().clone(),
            transport: ReqwestTransport::new().unwrap(),
            request,
        })
    }
}

async fn via_dispatcher(
    dispatcher: &Arc<Dispatcher>,
    prepared: &Arc<PreparedCall>,
    calls: usize,
) -> Measured {
    let (dispatcher, prepared) = (Arc::clone(dispatcher), Arc::clone(prepared));
    run(calls, move || {
        let (dispatcher, prepared) = (Arc::clone(&dispatcher), Arc::clone(&prepared));
        async move {
            let result = dispatcher.send(&prepared).await;
            assert_eq!(result, CallResult::Sent { status: 202 });
        }
    })
    .await
}

/// Where the difference between (a) and (b) comes from: the transport without the dispatcher.
async fn via_transport(plain: &Arc<Plain>, calls: usize) -> Measured {
    let plain = Arc::clone(plain);
    run(calls, move || {
        let plain = Arc::clone(&plain);
        async move {
            let mut request = http::Request::new(plain.request.body().clone());
            *request.method_mut() = plain.request.method().clone();
            *request.uri_mut() = plain.request.uri().clone();
            *request.headers_mut() = plain.request.headers().clone();
            let response = plain.transport.send(request).await.unwrap();
            assert_eq!(response.status(), 202);
        }
    })
    .await
}

async fn via_plain(plain: &Arc<Plain>, calls: usize) -> Measured {
    let plain = Arc::clone(plain);
    run(calls, move || {
        let plain = Arc::clone(&plain);
        async move {
            let response = plain
                .client
                .post(&plain.url)
                .headers(plain.headers.clone())
                .body(plain.body.clone())
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
            response.bytes().await.unwrap();
        }
    })
    .await
}

/// Runs `calls` calls of `one` with [`CONCURRENCY`] workers.
async fn run<F, Fut>(calls: usize, one: F) -> Measured
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_time();
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, one) = (Arc::clone(&next), one.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < calls {
                    one().await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let took = started.elapsed();
    Measured {
        rate: calls as f64 / took.as_secs_f64(),
        cpu_per_call: cpu_time()
            .zip(cpu_before)
            .map(|(after, before)| (after - before) / calls as f64),
    }
}
