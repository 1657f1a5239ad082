//! Shared setup of the server tests: deployments with open gates in a `MemoryGates`, and a
//! router driven with `tower::ServiceExt::oneshot`.
#![allow(dead_code)] // each test binary uses a different part

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use hookgate::config::{GateId, Plan};
use hookgate::core::{CallResult, CallbackId, Deployment, DeploymentId, GateState, StartOptions};
use hookgate::server::MemoryGates;
use hookgate::test_util::{Harness, ManualClock, SequentialIds};
use http::{HeaderMap, Request, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const PLAN: &str = r#"
application: checkout
targets:
  dev:
    constraints:
      beforeDeployment:
        - runWebhook: {name: ticket}
        - runWebhook: {name: tests}
        - pause: {untilApproved: true, requiresRoles: [release-manager]}
webhooks:
  - {name: ticket, uriTemplate: "https://tickets.example/x"}
  - {name: tests, uriTemplate: "https://ci.example/run"}
"#;

/// The two webhook gates and the approval gate of [`PLAN`].
pub const TICKET: GateId = GateId(0);
pub const TESTS: GateId = GateId(1);
pub const APPROVAL: GateId = GateId(2);

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

/// A deployment of [`PLAN`] whose webhooks were sent and wait for their callbacks, with
/// callback ids from `first_callback` on. `before_insert` may move its simulated time on.
pub fn deployment(
    id: &str,
    first_callback: u128,
    before_insert: impl FnOnce(&mut Harness),
) -> Deployment {
    deployment_with(id, first_callback, StartOptions::default(), before_insert)
}

/// [`deployment`], started with `options`.
pub fn deployment_with(
    id: &str,
    first_callback: u128,
    options: StartOptions,
    before_insert: impl FnOnce(&mut Harness),
) -> Deployment {
    let plan = Arc::new(Plan::from_yaml(PLAN).unwrap());
    let deployment = Deployment::start(
        plan,
        DeploymentId::from(id),
        options,
        &mut SequentialIds::starting_at(first_callback),
        t0(),
    );
    let mut h = Harness::resume(deployment, t0());
    h.answer_calls(|_| CallResult::Sent { status: 202 });
    before_insert(&mut h);
    h.deployment
}

pub fn callback_id(gates: &MemoryGates, deployment: &str, gate: GateId) -> CallbackId {
    gates
        .with_deployment(&DeploymentId::from(deployment), |d| d.callback_id(gate))
        .flatten()
        .expect("a webhook gate")
}

pub fn gate_state(gates: &MemoryGates, deployment: &str, gate: GateId) -> GateState {
    gates
        .with_deployment(&DeploymentId::from(deployment), |d| d.gate_state(gate))
        .expect("a deployment")
}

pub fn clock() -> ManualClock {
    ManualClock::new(t0())
}

/// A POST with an optional bearer token and a JSON content type.
pub fn post(uri: &str, token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post(uri).header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(body.into()).unwrap()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Answer {
    /// The `error` code of an error body.
    pub fn code(&self) -> &str {
        self.json["error"].as_str().unwrap_or_default()
    }

    pub fn message(&self) -> &str {
        self.json["message"].as_str().unwrap_or_default()
    }
}

pub async fn send(router: &axum::Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        json,
    }
}

/// A body of `len` bytes, handed out in 8 KiB chunks, that counts the bytes polled from it.
/// With `declared`, its size hint gives the length (as a `Content-Length` would).
pub struct CountingBody {
    remaining: usize,
    declared: bool,
    polled: Arc<AtomicUsize>,
}

pub const CHUNK: usize = 8 * 1024;

impl CountingBody {
    pub fn new(len: usize, declared: bool) -> (Self, Arc<AtomicUsize>) {
        let polled = Arc::new(AtomicUsize::new(0));
        let body = Self {
            remaining: len,
            declared,
            polled: Arc::clone(&polled),
        };
        (body, polled)
    }
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK);
        self.remaining -= n;
        self.polled.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; n])))))
    }

    fn size_hint(&self) -> SizeHint {
        if self.declared {
            SizeHint::with_exact(self.remaining as u64)
        } else {
            SizeHint::default()
        }
    }
}
