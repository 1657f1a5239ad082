//! Fuzzes the server's callback and approval endpoints (`CallbackHandler`) over `MemoryGates`
//! with a static token: a hostile body, and a hostile path, method, `Authorization` and
//! `Content-Type` where the fuzzer chooses so. Every request must get one of the statuses of
//! PROTOCOL.md §5 with a JSON body, and never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hookgate::auth::{Principal, StaticTokens};
use hookgate::config::Plan;
use hookgate::core::{CallResult, Deployment, DeploymentId, StartOptions};
use hookgate::server::{CallbackHandler, MemoryGates};
use hookgate::test_util::{Harness, ManualClock, SequentialIds};
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use shared::runtime;

mod shared;

const TOKEN: &str = "5b0a8c3e9d2f4a7b8c1d0e6f3a2b9c8d";

/// Two webhook gates waiting for callbacks and a manual approval, as in the server tests.
const PLAN: &str = r#"
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

/// The statuses PROTOCOL.md §5 answers with; anything else (a 500 above all) is a finding.
const DOCUMENTED: [u16; 10] = [200, 400, 401, 403, 404, 405, 409, 410, 413, 415];

#[derive(Debug, Arbitrary)]
enum Target<'a> {
    /// The callback URI of one of the deployment's gates, bare or with `/callback`.
    Gate { index: u8, suffix: bool },
    /// An approval decision; `None` is the deployment that exists.
    Decide {
        deployment: Option<&'a str>,
        gate: u32,
        approve: bool,
    },
    /// Any path (and query).
    Raw(&'a str),
}

#[derive(Debug, Arbitrary)]
enum Auth<'a> {
    Valid,
    Missing,
    Header(&'a [u8]),
}

#[derive(Debug, Arbitrary)]
enum ContentType<'a> {
    Absent,
    Json,
    Header(&'a [u8]),
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    target: Target<'a>,
    /// `None` is POST, the only method served.
    method: Option<&'a str>,
    auth: Auth<'a>,
    content_type: ContentType<'a>,
    /// Hours that pass between the webhook calls and this request (timeouts are 24 h).
    hours_later: u8,
    body: &'a [u8],
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

/// Parsed once: the plan is the same for every run.
fn plan() -> Arc<Plan> {
    static PLAN_ONCE: OnceLock<Arc<Plan>> = OnceLock::new();
    Arc::clone(PLAN_ONCE.get_or_init(|| Arc::new(Plan::from_yaml(PLAN).expect("a valid plan"))))
}

/// Deployment `d1` with its webhooks sent, in fresh gates, so runs do not affect each other.
fn gates(clock: &ManualClock) -> Arc<MemoryGates> {
    let deployment = Deployment::start(
        plan(),
        DeploymentId::from("d1"),
        StartOptions::default(),
        &mut SequentialIds::starting_at(1),
        start(),
    );
    let mut harness = Harness::resume(deployment, start());
    harness.answer_calls(|_| CallResult::Sent { status: 202 });
    let gates = Arc::new(MemoryGates::new(clock.clone()));
    gates.insert(harness.deployment);
    gates
}

fn path(target: &Target<'_>, gates: &MemoryGates) -> String {
    match target {
        Target::Gate { index, suffix } => {
            let ids: Vec<_> = gates
                .with_deployment(&DeploymentId::from("d1"), |d| {
                    d.callback_ids().map(|(_, id)| id).collect()
                })
                .unwrap_or_default();
            let Some(id) = ids.get(usize::from(*index) % ids.len().max(1)) else {
                return "/callbacks/0".to_owned();
            };
            let suffix = if *suffix { "/callback" } else { "" };
            format!("/callbacks/{id}{suffix}")
        }
        Target::Decide {
            deployment,
            gate,
            approve,
        } => {
            let action = if *approve { "approve" } else { "reject" };
            format!(
                "/deployments/{}/gates/{gate}/{action}",
                deployment.unwrap_or("d1")
            )
        }
        Target::Raw(path) => (*path).to_owned(),
    }
}

fuzz_target!(|input: Input<'_>| {
    let clock = ManualClock::new(start());
    let gates = gates(&clock);
    clock.advance(TimeDelta::hours(i64::from(input.hours_later)));
    let principal = Principal::new("ci").with_roles(["release-manager"]);
    let tokens = StaticTokens::new().with_token(TOKEN, principal);
    let handler = CallbackHandler::new(gates.clone(), Arc::new(tokens)).allow_any_token_to_decide();

    let method = match input.method {
        Some(method) => match Method::from_bytes(method.as_bytes()) {
            Ok(method) => method,
            Err(_) => return,
        },
        None => Method::POST,
    };
    let mut request = Request::builder()
        .method(method)
        .uri(path(&input.target, &gates));
    match input.auth {
        Auth::Valid => request = request.header(AUTHORIZATION, format!("Bearer {TOKEN}")),
        Auth::Missing => {}
        Auth::Header(value) => {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                request = request.header(AUTHORIZATION, value);
            }
        }
    }
    match input.content_type {
        ContentType::Absent => {}
        ContentType::Json => request = request.header(CONTENT_TYPE, "application/json"),
        ContentType::Header(value) => {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                request = request.header(CONTENT_TYPE, value);
            }
        }
    }
    // A path `http` refuses never reaches a server.
    let Ok(request) = request.body(Full::new(Bytes::copy_from_slice(input.body))) else {
        return;
    };

    let response = runtime().block_on(handler.handle(request));
    let status = response.status();
    assert!(
        DOCUMENTED.contains(&status.as_u16()),
        "undocumented status {status}: {:?}",
        response.body()
    );
    if matches!(input.auth, Auth::Missing) {
        assert_ne!(status, StatusCode::OK, "served without a token");
    }
    if status == StatusCode::UNAUTHORIZED {
        assert!(response.headers().contains_key(WWW_AUTHENTICATE));
    }
    let json: serde_json::Value =
        serde_json::from_slice(response.body()).expect("every answer is JSON");
    let field = |name: &str| json[name].as_str().is_some_and(|text| !text.is_empty());
    if status == StatusCode::OK {
        assert!(field("status"), "{json}");
    } else {
        assert!(field("error") && field("message"), "{json}");
    }
});
