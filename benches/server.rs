//! Callback handling through the axum router with `oneshot`, over `MemoryGates`.
//!
//! Two paths, each with a static token and with an HS256 JWT:
//! - `duplicate`: every iteration repeats the callback of one gate that is already resolved,
//!   so each request is the idempotent-duplicate path (authorize, parse, look up, compare);
//! - `first_apply`: every iteration resolves a gate that is still open. `iter_custom` prepares
//!   as many open gates as criterion asks for iterations (untimed), then times only the
//!   requests, one per gate.
//!
//! Each timed request includes building the `http::Request`, routing, authorization, reading
//! and parsing the body, applying it, and serializing the answer.
//!
//! The baseline, `bare_axum`, sends the same requests through a router with one bare handler
//! that reads the body into a `serde_json::Value` and answers a fixed JSON body, as the load
//! harness's baseline does: what the HTTP stack costs before hookgate's layer does anything.
//!
//! Run: `cargo bench --bench server --all-features -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Path;
use axum::routing::post;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use hookgate::auth::{CallbackAuthorizer, JwtAuthorizer, Principal, StaticTokens};
use hookgate::clock::Clock;
use hookgate::config::{GateId, Plan};
use hookgate::core::{CallbackId, Deployment, DeploymentId, StartOptions};
use hookgate::server::{CallbackHandler, CallbackReport, MemoryGates, ServerState, router};
use hookgate::test_util::{ManualClock, SequentialIds};
use http::{Request, StatusCode};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use tokio::runtime::Runtime;
use tower::ServiceExt;

const PLAN: &str = r#"
application: checkout
targets:
  dev:
    constraints:
      beforeDeployment: [runWebhook: {name: ticket}, runWebhook: {name: tests}]
webhooks:
  - {name: ticket, uriTemplate: "https://tickets.example/x"}
  - {name: tests, uriTemplate: "https://ci.example/run"}
"#;
const STATIC_TOKEN: &str = "5b0a8c3e9d2f4a7b8c1d0e6f3a2b9c8d";
const JWT_SECRET: &str = "a shared HS256 secret that is long enough";
const BODY: &str = r#"{"success": true, "mdMessage": "all 412 tests passed"}"#;

/// A static-token or JWT (HS256) authorizer and a token it accepts.
fn authorizer(jwt: bool, clock: &ManualClock) -> (Arc<dyn CallbackAuthorizer>, String) {
    if !jwt {
        let tokens = StaticTokens::new().with_token(STATIC_TOKEN, Principal::new("ci"));
        return (Arc::new(tokens), STATIC_TOKEN.to_owned());
    }
    let claims = json!({"iss": "https://idp.example", "aud": "hookgate", "sub": "ci",
                        "exp": clock.now().timestamp() + 86_400, "scope": "callbacks"});
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap();
    let authorizer = JwtAuthorizer::builder("https://idp.example", "hookgate")
        .hs256(JWT_SECRET)
        .required_scope("callbacks")
        .clock(clock.clone())
        .build()
        .unwrap();
    (
        Arc::new(authorizer),
        jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap(),
    )
}

struct Setup {
    clock: ManualClock,
    router: axum::Router,
    gates: Arc<MemoryGates>,
    token: String,
    plan: Arc<Plan>,
    next_callback: u128,
    next_deployment: u64,
}

impl Setup {
    fn new(jwt: bool) -> Self {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap());
        let gates = Arc::new(MemoryGates::new(clock.clone()));
        let (authorizer, token) = authorizer(jwt, &clock);
        let handler = CallbackHandler::new(gates.clone(), authorizer);
        Self {
            clock,
            router: router(ServerState::new(handler)),
            gates,
            token,
            plan: Arc::new(Plan::from_yaml(PLAN).unwrap()),
            next_callback: 1,
            next_deployment: 0,
        }
    }

    /// Inserts deployments until `count` more gates are open; returns their callback ids.
    fn open_gates(&mut self, count: u64) -> Vec<CallbackId> {
        let mut ids = Vec::with_capacity(count as usize);
        while (ids.len() as u64) < count {
            self.next_deployment += 1;
            let mut source = SequentialIds::starting_at(self.next_callback);
            self.next_callback += 2;
            let id = DeploymentId(format!("d{}", self.next_deployment));
            let mut d = Deployment::start(
                Arc::clone(&self.plan),
                id,
                StartOptions::default(),
                &mut source,
                self.clock.now(),
            );
            // The host's work, irrelevant here; drained so the queues stay small.
            while d.poll_action().is_some() {}
            while d.poll_event().is_some() {}
            ids.extend(
                [GateId(0), GateId(1)]
                    .iter()
                    .filter_map(|g| d.callback_id(*g)),
            );
            self.gates.insert(d);
        }
        ids.truncate(count as usize);
        ids
    }

    async fn callback(&self, id: CallbackId) -> StatusCode {
        send(&self.router, id, &self.token).await
    }
}

/// One callback request for `id` with `token`, through `router`.
async fn send(router: &axum::Router, id: CallbackId, token: &str) -> StatusCode {
    let request = Request::post(format!("/callbacks/{id}/callback"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(BODY))
        .unwrap();
    router.clone().oneshot(request).await.unwrap().status()
}

/// A router with one bare handler reading the body, as the load harness's baseline.
fn bare_axum() -> axum::Router {
    axum::Router::new().route(
        "/callbacks/{id}/callback",
        post(|Path(_id): Path<String>, body: Bytes| async move {
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            std::hint::black_box(parsed);
            "{\"status\":\"applied\"}"
        }),
    )
}

fn callbacks(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut group = c.benchmark_group("callback");
    let bare = bare_axum();
    let any_id = CallbackId([7; 16]);
    assert_eq!(
        rt.block_on(send(&bare, any_id, STATIC_TOKEN)),
        StatusCode::OK
    );
    group.bench_function("bare_axum", |b| {
        b.iter(|| rt.block_on(send(&bare, any_id, STATIC_TOKEN)))
    });
    for (name, jwt) in [("static", false), ("jwt_hs256", true)] {
        let mut setup = Setup::new(jwt);
        let resolved = setup.open_gates(1)[0];
        assert_eq!(rt.block_on(setup.callback(resolved)), StatusCode::OK);
        group.bench_function(format!("duplicate/{name}"), |b| {
            b.iter(|| rt.block_on(setup.callback(resolved)))
        });
        group.bench_function(format!("first_apply/{name}"), |b| {
            b.iter_custom(|iters| {
                // A fresh store per batch, so deployments do not pile up across batches.
                let mut setup = Setup::new(jwt);
                let ids = setup.open_gates(iters);
                rt.block_on(async {
                    let start = Instant::now();
                    for id in ids {
                        let status = setup.callback(id).await;
                        assert_eq!(status, StatusCode::OK);
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn authorization(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap());
    let mut group = c.benchmark_group("authorize");
    for (name, jwt) in [("static", false), ("jwt_hs256", true)] {
        let (authorizer, token) = authorizer(jwt, &clock);
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(authorizer.authorize(&token)).unwrap())
        });
    }
    group.finish();
}

/// Parsing and checking a callback body, against serde_json reading the same body into a
/// `Value` (what the bare axum baselines do with it), in the same run.
fn callback_body(c: &mut Criterion) {
    let mut group = c.benchmark_group("callback_body");
    let limit = CallbackHandler::DEFAULT_MESSAGE_LIMIT;
    for (name, body) in [
        ("outcome", BODY.as_bytes()),
        (
            "progress",
            &br#"{"inProgress": true, "mdMessage": "halfway: 12 of 24 checks passed", "extra": {"a": [1, 2]}}"#[..],
        ),
    ] {
        assert!(CallbackReport::from_json(body, limit).is_ok(), "{name}");
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| CallbackReport::from_json(std::hint::black_box(body), limit))
        });
        group.bench_function(format!("serde_json_value/{name}"), |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(std::hint::black_box(body)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = callbacks, callback_body, authorization
}
criterion_main!(benches);
