//! PROTOCOL.md §5's table, row by row, through the axum router with `oneshot`.
#![cfg(all(feature = "axum", feature = "test-util"))]

mod server_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use axum::body::Body;
use chrono::TimeDelta;
use hookgate::auth::{AuthError, CallbackAuthorizer, Principal, StaticTokens};
use hookgate::config::GateId;
use hookgate::core::{
    CallbackAck, CallbackId, CoreError, Decision, DeploymentId, EventKind, GateState, Resolution,
    Settings, StartOptions,
};
use hookgate::server::{
    CallbackHandler, CallbackReport, GateError, GateService, MemoryGates, ServerState, router,
};
use http::{Request, StatusCode};
use server_support::*;

const TOKEN: &str = "5b0a8c3e9d2f4a7b8c1d0e6f3a2b9c8d";
const OTHER_TENANT: &str = "1f2e3d4c5b6a79881f2e3d4c5b6a7988";

struct App {
    router: axum::Router,
    gates: Arc<MemoryGates>,
}

/// Deployment `d1` (open gates, callback ids 1 and 2), `late` (timed out, ids 11 and 12) and
/// `owned` (tenant `payments`, ids 21 and 22).
fn app() -> App {
    let gates = Arc::new(MemoryGates::new(clock()));
    gates.insert(deployment("d1", 1, |_| {}));
    gates.insert(deployment("late", 11, |h| h.advance(TimeDelta::hours(25))));
    gates.insert_for_tenant(deployment("owned", 21, |_| {}), "payments");
    let tokens = StaticTokens::new()
        .with_token(TOKEN, Principal::new("ci").with_tenant("payments"))
        .with_token(
            OTHER_TENANT,
            Principal::new("intruder").with_tenant("other"),
        );
    let handler = CallbackHandler::new(gates.clone(), Arc::new(tokens)).allow_any_token_to_decide();
    App {
        router: router(ServerState::new(handler)),
        gates,
    }
}

/// With a callback scope and an approval scope, each kind of token does one thing: an
/// approver's token cannot resolve a webhook gate, and a callback token still can.
#[tokio::test]
async fn the_callback_scope_keeps_approver_tokens_from_resolving_webhook_gates() {
    const APPROVER: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let gates = Arc::new(MemoryGates::new(clock()));
    gates.insert(deployment("d1", 1, |_| {}));
    let tokens = StaticTokens::new()
        .with_token(TOKEN, Principal::new("ci").with_scopes(["callbacks"]))
        .with_token(APPROVER, Principal::new("alice").with_scopes(["approvals"]));
    let handler = CallbackHandler::new(gates.clone(), Arc::new(tokens))
        .with_callback_scope("callbacks")
        .with_approval_scope("approvals");
    let router = router(ServerState::new(handler));
    let id = callback_id(&gates, "d1", TICKET);
    let body = r#"{"success": false, "mdMessage": "no"}"#;

    let refused = send(&router, post(&uri(id), Some(APPROVER), body)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert!(
        refused.message().contains("scope `callbacks`"),
        "{}",
        refused.message()
    );
    let note = r#"{"inProgress": true, "mdMessage": "still running"}"#;
    let refused = send(&router, post(&uri(id), Some(APPROVER), note)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(gate_state(&gates, "d1", TICKET).is_open());

    let applied = send(&router, post(&uri(id), Some(TOKEN), body)).await;
    assert_eq!(applied.status, StatusCode::OK);
    assert_eq!(
        gate_state(&gates, "d1", TICKET),
        GateState::Failed(Resolution::Callback)
    );
}

fn uri(id: CallbackId) -> String {
    format!("/callbacks/{id}/callback")
}

/// An `inProgress` beside `success` is ignored (the body is an outcome), whatever JSON it
/// holds: a number past `f64` there is valid JSON and does not get the callback refused.
#[tokio::test]
async fn an_in_progress_beside_success_is_ignored_whatever_it_holds() {
    let app = app();
    let id = callback_id(&app.gates, "d1", TICKET);
    let body = r#"{"success": true, "inProgress": 1e400, "mdMessage": "done"}"#;

    let applied = send(&app.router, post(&uri(id), Some(TOKEN), body)).await;

    assert_eq!(
        (applied.status, applied.json),
        (StatusCode::OK, serde_json::json!({"status": "applied"}))
    );
    assert_eq!(
        gate_state(&app.gates, "d1", TICKET),
        GateState::Passed(Resolution::Callback)
    );
}

#[tokio::test]
async fn a_valid_callback_applies_a_repeat_is_a_duplicate_and_the_opposite_conflicts() {
    let app = app();
    let id = callback_id(&app.gates, "d1", TICKET);

    let first = send(
        &app.router,
        post(
            &uri(id),
            Some(TOKEN),
            r#"{"success": true, "mdMessage": "ok"}"#,
        ),
    )
    .await;
    assert_eq!(
        (first.status, first.json["status"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
    assert_eq!(
        gate_state(&app.gates, "d1", TICKET),
        GateState::Passed(Resolution::Callback)
    );

    // Armory's documented form and the bare callback URI are the same gate.
    let again = send(
        &app.router,
        post(
            &format!("/callbacks/{id}"),
            Some(TOKEN),
            r#"{"success": true}"#,
        ),
    )
    .await;
    assert_eq!(
        (again.status, again.json["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );

    let opposite = send(
        &app.router,
        post(&uri(id), Some(TOKEN), r#"{"success": false}"#),
    )
    .await;
    assert_eq!(
        (opposite.status, opposite.code()),
        (StatusCode::CONFLICT, "conflict")
    );
    assert_eq!(
        gate_state(&app.gates, "d1", TICKET),
        GateState::Passed(Resolution::Callback)
    );
}

#[tokio::test]
async fn a_failure_report_fails_the_gate_with_its_message() {
    let app = app();
    let id = callback_id(&app.gates, "d1", TESTS);
    let answer = send(
        &app.router,
        post(
            &uri(id),
            Some(TOKEN),
            r#"{"success": false, "mdMessage": "3 tests failed"}"#,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        gate_state(&app.gates, "d1", TESTS),
        GateState::Failed(Resolution::Callback)
    );
    let message = app.gates.with_deployment(&DeploymentId::from("d1"), |d| {
        std::iter::from_fn(|| d.poll_event()).find_map(|e| match e.kind {
            EventKind::CallbackReceived { message, .. } => message,
            _ => None,
        })
    });
    assert_eq!(message.flatten().as_deref(), Some("3 tests failed"));
}

/// The id of a gate whose webhook was not called yet is answered exactly as an unknown id: a
/// sender cannot tell a valid id of a later gate from a made-up one.
#[tokio::test]
async fn a_gate_not_called_yet_is_answered_as_an_unknown_id() {
    use hookgate::config::Plan;
    use hookgate::core::{CallResult, Deployment, StartOptions};
    use hookgate::test_util::{Harness, SequentialIds};

    let app = app();
    let plan = Plan::from_yaml(
        r#"
application: later
targets:
  dev: {constraints: {beforeDeployment: [runWebhook: {name: first}]}}
  prod: {constraints: {dependsOn: [dev], beforeDeployment: [runWebhook: {name: second}]}}
webhooks:
  - {name: first, uriTemplate: "https://a.example/x"}
  - {name: second, uriTemplate: "https://b.example/x"}
"#,
    )
    .unwrap();
    let started = Deployment::start(
        Arc::new(plan),
        DeploymentId::from("later"),
        StartOptions::default(),
        &mut SequentialIds::starting_at(31),
        t0(),
    );
    let mut h = Harness::resume(started, t0());
    h.answer_calls(|_| CallResult::Sent { status: 202 });
    app.gates.insert(h.deployment);
    let not_called = callback_id(&app.gates, "later", GateId(1));
    assert_eq!(gate_state(&app.gates, "later", GateId(1)), GateState::Idle);

    let unknown = send(
        &app.router,
        post(
            &uri(CallbackId([0xee; 16])),
            Some(TOKEN),
            r#"{"success": true}"#,
        ),
    )
    .await;
    let answer = send(
        &app.router,
        post(&uri(not_called), Some(TOKEN), r#"{"success": true}"#),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "unknown_callback")
    );
    assert_eq!(
        answer.json, unknown.json,
        "answered exactly as an unknown id"
    );
    assert_eq!(gate_state(&app.gates, "later", GateId(1)), GateState::Idle);
}

/// A request without a valid token is refused before any of its body is read.
#[tokio::test]
async fn a_request_without_a_valid_token_is_refused_before_its_body_is_read() {
    let app = app();
    let id = callback_id(&app.gates, "d1", TICKET);
    for token in [None, Some("not-the-token")] {
        let (body, polled) = CountingBody::new(1024, false);
        let mut request = Request::post(uri(id)).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let answer = send(&app.router, request.body(Body::new(body)).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(
            polled.load(Ordering::SeqCst),
            0,
            "{token:?}: nothing was read"
        );
    }
}

#[tokio::test]
async fn closed_and_unknown_gates() {
    let app = app();
    let late = callback_id(&app.gates, "late", TICKET);
    let answer = send(
        &app.router,
        post(&uri(late), Some(TOKEN), r#"{"success": true}"#),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::GONE, "gate_closed")
    );

    let unknown = CallbackId([0xee; 16]);
    let answer = send(
        &app.router,
        post(&uri(unknown), Some(TOKEN), r#"{"success": true}"#),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "unknown_callback")
    );
    let unknown_body = answer.json.clone();

    for malformed in [
        "/callbacks/not-an-id",
        "/callbacks/123/callback",
        "/callbacks/%00%00",
    ] {
        let answer = send(
            &app.router,
            post(malformed, Some(TOKEN), r#"{"success": true}"#),
        )
        .await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::NOT_FOUND, "unknown_callback"),
            "{malformed}"
        );
        assert_eq!(
            answer.json, unknown_body,
            "{malformed}: answered exactly as an unknown id"
        );
    }
}

#[tokio::test]
async fn a_progress_note_is_recorded_and_keeps_the_gate_open() {
    let app = app();
    let id = callback_id(&app.gates, "d1", TICKET);
    let before = gate_state(&app.gates, "d1", TICKET);
    let answer = send(
        &app.router,
        post(
            &uri(id),
            Some(TOKEN),
            r#"{"inProgress": true, "mdMessage": "halfway"}"#,
        ),
    )
    .await;
    assert_eq!(
        (answer.status, answer.json["status"].as_str()),
        (StatusCode::OK, Some("recorded"))
    );
    assert_eq!(gate_state(&app.gates, "d1", TICKET), before);
    let noted = app.gates.with_deployment(&DeploymentId::from("d1"), |d| {
        std::iter::from_fn(|| d.poll_event()).any(
            |e| matches!(e.kind, EventKind::Progress { ref message, .. } if message == "halfway"),
        )
    });
    assert_eq!(noted, Some(true));
    let done = send(
        &app.router,
        post(&uri(id), Some(TOKEN), r#"{"success": true}"#),
    )
    .await;
    assert_eq!(done.json["status"], "applied");
}

/// Past its gate's `max_progress_notes`, a note is refused `422` `too_many_notes`, final
/// rather than `429` (which senders retry); the gate stays open and its callback applies.
#[tokio::test]
async fn a_progress_note_past_the_gate_s_limit_is_refused_and_the_callback_still_applies() {
    let gates = Arc::new(MemoryGates::new(clock()));
    let one_note = Settings::default().with_max_progress_notes(1);
    gates.insert(deployment_with(
        "d1",
        1,
        StartOptions::default().with_settings(one_note),
        |_| {},
    ));
    let tokens = StaticTokens::new().with_token(TOKEN, Principal::new("ci"));
    let router = router(ServerState::new(CallbackHandler::new(
        gates.clone(),
        Arc::new(tokens),
    )));
    let id = callback_id(&gates, "d1", TICKET);
    let note = |text: &str| {
        post(
            &uri(id),
            Some(TOKEN),
            format!(r#"{{"inProgress": true, "mdMessage": "{text}"}}"#),
        )
    };
    assert_eq!(send(&router, note("10%")).await.json["status"], "recorded");
    let before = gate_state(&gates, "d1", TICKET);

    let refused = send(&router, note("20%")).await;
    assert_eq!(
        (refused.status, refused.json["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("too_many_notes"))
    );
    let message = refused.json["message"].as_str().unwrap();
    assert!(message.contains("limit of 1 progress notes"), "{message}");
    assert_eq!(gate_state(&gates, "d1", TICKET), before);
    let notes = gates.with_deployment(&DeploymentId::from("d1"), |d| {
        std::iter::from_fn(|| d.poll_event())
            .filter(|e| matches!(e.kind, EventKind::Progress { .. }))
            .count()
    });
    assert_eq!(notes, Some(1), "the refused note is not recorded");
    let other_gate = post(
        &uri(callback_id(&gates, "d1", TESTS)),
        Some(TOKEN),
        r#"{"inProgress": true, "mdMessage": "the other gate counts its own"}"#,
    );
    assert_eq!(send(&router, other_gate).await.json["status"], "recorded");

    let done = send(&router, post(&uri(id), Some(TOKEN), r#"{"success": true}"#)).await;
    assert_eq!(done.json["status"], "applied");
}

/// Builds a request for a callback path.
type BuildRequest = Box<dyn Fn(&str) -> Request<Body>>;

/// One refused request: how it is built, and the status and code it must get.
struct Refused {
    what: &'static str,
    request: BuildRequest,
    status: StatusCode,
    code: &'static str,
    /// A word the message must contain (the field at fault, the scheme to use).
    mentions: &'static str,
}

fn refused(
    what: &'static str,
    status: StatusCode,
    code: &'static str,
    mentions: &'static str,
    request: impl Fn(&str) -> Request<Body> + 'static,
) -> Refused {
    Refused {
        what,
        request: Box::new(request),
        status,
        code,
        mentions,
    }
}

fn with_header(uri: &str, name: &str, value: &str, body: &'static [u8]) -> Request<Body> {
    Request::post(uri)
        .header(name, value)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn refused_requests_leave_the_gate_open_and_a_valid_callback_still_applies() {
    let app = app();
    let id = callback_id(&app.gates, "owned", TICKET);
    let path = uri(id);
    let before = gate_state(&app.gates, "owned", TICKET);
    assert!(
        matches!(before, GateState::AwaitingCallback { .. }),
        "{before:?}"
    );
    let bearer = format!("Bearer {TOKEN}");
    let cases = [
        refused(
            "no Authorization",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Bearer",
            |p| {
                Request::post(p)
                    .body(Body::from(r#"{"success": true}"#))
                    .unwrap()
            },
        ),
        refused(
            "Basic scheme",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Bearer",
            |p| {
                with_header(
                    p,
                    "authorization",
                    "Basic Y2k6c2VjcmV0",
                    br#"{"success": true}"#,
                )
            },
        ),
        refused(
            "two Authorization headers, both valid",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "more than once",
            |p| {
                Request::post(p)
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("content-type", "application/json")
                    .body(Body::from(r#"{"success": true}"#))
                    .unwrap()
            },
        ),
        refused(
            "empty bearer",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Bearer",
            |p| with_header(p, "authorization", "Bearer ", br#"{"success": true}"#),
        ),
        refused(
            "unknown token",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "refused",
            |p| post(p, Some("not-a-configured-token"), r#"{"success": true}"#),
        ),
        refused(
            "other tenant",
            StatusCode::FORBIDDEN,
            "forbidden",
            "tenant",
            |p| post(p, Some(OTHER_TENANT), r#"{"success": true}"#),
        ),
        refused(
            "GET",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "POST",
            |p| Request::get(p).body(Body::empty()).unwrap(),
        ),
    ];
    let authorized = [
        (
            "success as a string",
            r#"{"success": "true"}"#.as_bytes(),
            "`success`",
        ),
        ("success null", br#"{"success": null}"#, "`success`"),
        ("success missing", br#"{"mdMessage": "hi"}"#, "`success`"),
        ("an array", b"[]", "object"),
        ("not JSON", b"success=true", "JSON"),
        (
            "invalid UTF-8",
            b"{\"success\": true, \"mdMessage\": \"\xff\xfe\"}",
            "UTF-8",
        ),
        (
            "invalid UTF-8 in a field hookgate does not read",
            b"{\"success\": true, \"note\": \"\xff\"}",
            "UTF-8",
        ),
        (
            "mdMessage a number",
            br#"{"success": true, "mdMessage": 7}"#,
            "`mdMessage`",
        ),
        // Valid JSON (RFC 8259 §6) that no `f64` holds: the field is named, not the body.
        (
            "success a number past f64",
            br#"{"success": 1e400}"#,
            "`success` must be the JSON boolean",
        ),
        (
            "mdMessage a number past f64",
            br#"{"success": true, "mdMessage": 1e400}"#,
            "`mdMessage` must be a string",
        ),
        // Valid JSON (RFC 8259 §8.2) that no Rust string holds: the field is named.
        (
            "mdMessage a lone surrogate",
            br#"{"success": true, "mdMessage": "\ud800"}"#,
            "`mdMessage` must be text",
        ),
        (
            "success a lone surrogate",
            br#"{"success": "\udc00"}"#,
            "`success` must be the JSON boolean",
        ),
        (
            "inProgress without mdMessage",
            br#"{"inProgress": true}"#,
            "`mdMessage`",
        ),
        // PROTOCOL.md §5: "`mdMessage` not a string" is refused; `null` is not one.
        (
            "mdMessage null",
            br#"{"success": true, "mdMessage": null}"#,
            "`mdMessage`",
        ),
        // A proxy or log in front that keeps the first value would read another outcome.
        (
            "success given twice",
            br#"{"success": false, "success": true}"#,
            "`success` is given more than once",
        ),
        (
            "mdMessage given twice, the same",
            br#"{"success": true, "mdMessage": "a", "mdMessage": "a"}"#,
            "`mdMessage` is given more than once",
        ),
    ]
    .map(|(what, body, field)| {
        let bearer = bearer.clone();
        refused(
            what,
            StatusCode::BAD_REQUEST,
            "invalid_body",
            field,
            move |p| with_header(p, "authorization", &bearer, body),
        )
    });
    // Two headers: which one decides would depend on their order (or on the hop reading them).
    let content_types = [
        ("text/plain", &["text/plain"][..], "application/json"),
        (
            "two Content-Types, JSON first",
            &["application/json", "text/plain"],
            "more than once",
        ),
        (
            "two Content-Types, JSON second",
            &["text/plain", "application/json"],
            "more than once",
        ),
        (
            "two Content-Types, both JSON",
            &["application/json", "application/json"],
            "more than once",
        ),
    ]
    .map(|(what, types, mentions): (_, &'static [&'static str], _)| {
        let bearer = bearer.clone();
        refused(
            what,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            mentions,
            move |p| {
                let request = Request::post(p).header("authorization", &bearer);
                types
                    .iter()
                    .fold(request, |request, t| request.header("content-type", *t))
                    .body(Body::from(r#"{"success": true}"#))
                    .unwrap()
            },
        )
    });
    // RFC 9110 §15.5.16: a coded body is not read as JSON, as a hop decoding it would not.
    let content_codings = ["gzip", "identity, gzip", "br"].map(|coding| {
        let bearer = bearer.clone();
        refused(
            coding,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Encoding",
            move |p| {
                Request::post(p)
                    .header("authorization", &bearer)
                    .header("content-type", "application/json")
                    .header("content-encoding", coding)
                    .body(Body::from(r#"{"success": true}"#))
                    .unwrap()
            },
        )
    });
    let cases = cases
        .iter()
        .chain(&authorized)
        .chain(&content_types)
        .chain(&content_codings);
    for case in cases {
        let answer = send(&app.router, (case.request)(&path)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (case.status, case.code),
            "{}",
            case.what
        );
        assert!(
            answer.message().contains(case.mentions),
            "{}: {}",
            case.what,
            answer.message()
        );
        assert!(!answer.message().contains(TOKEN), "{}", case.what);
        if case.mentions == "Content-Encoding" {
            assert_eq!(
                answer.headers["accept-encoding"], "identity",
                "{}",
                case.what
            );
        }
        if case.status == StatusCode::UNAUTHORIZED {
            let challenge = answer.headers["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.starts_with("Bearer"),
                "{}: {challenge}",
                case.what
            );
        }
        assert_eq!(
            gate_state(&app.gates, "owned", TICKET),
            before,
            "{}",
            case.what
        );
    }
    let answer = send(
        &app.router,
        post(&path, Some(TOKEN), r#"{"success": true}"#),
    )
    .await;
    assert_eq!(
        (answer.status, answer.json["status"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
}

#[tokio::test]
async fn json_content_types_with_parameters_or_none_are_accepted_and_unknown_fields_ignored() {
    let app = app();
    let ids = [TICKET, TESTS].map(|g| callback_id(&app.gates, "d1", g));
    for (id, content_type) in ids.iter().zip([
        "application/json; charset=utf-8",
        "application/vnd.hook+json",
    ]) {
        let request = Request::post(uri(*id))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", content_type)
            .body(Body::from(
                r#"{"success": true, "extra": {"nested": [1, 2]}}"#,
            ))
            .unwrap();
        assert_eq!(
            send(&app.router, request).await.status,
            StatusCode::OK,
            "{content_type}"
        );
    }
    let request = Request::post(uri(ids[0]))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(r#"{"success": true}"#))
        .unwrap();
    assert_eq!(send(&app.router, request).await.json["status"], "duplicate");
}

#[tokio::test]
async fn an_oversized_body_is_refused_without_being_read() {
    let app = app();
    let id = callback_id(&app.gates, "d1", TICKET);
    let before = gate_state(&app.gates, "d1", TICKET);
    for declared in [false, true] {
        let (body, polled) = CountingBody::new(10 * 1024 * 1024, declared);
        let request = Request::post(uri(id))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::new(body))
            .unwrap();
        let answer = send(&app.router, request).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
        );
        let read = polled.load(Ordering::SeqCst);
        let limit = CallbackHandler::DEFAULT_BODY_LIMIT;
        if declared {
            assert_eq!(
                read, 0,
                "a declared oversized length is refused before reading"
            );
        } else {
            assert!(read <= limit + CHUNK, "read {read} bytes of 10 MiB");
        }
    }
    assert_eq!(gate_state(&app.gates, "d1", TICKET), before);
    let answer = send(
        &app.router,
        post(&uri(id), Some(TOKEN), r#"{"success": true}"#),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

/// A limit the host puts in front of the router (as tower-http's `RequestBodyLimitLayer` does,
/// wrapping the body in `Limited`) is answered as hookgate's own, for a body of no declared
/// length too: axum wraps the body again, and the limit's error with it.
#[tokio::test]
async fn a_hosts_body_limit_in_front_of_the_router_is_a_body_too_large() {
    let app = app();
    let id = callback_id(&app.gates, "d1", TICKET);
    let before = gate_state(&app.gates, "d1", TICKET);
    let limited = tower::ServiceBuilder::new()
        .map_request(|request: Request<Body>| {
            request.map(|body| Body::new(http_body_util::Limited::new(body, 1024)))
        })
        .service(app.router);
    let (body, _) = CountingBody::new(4 * 1024, false);
    let request = Request::post(uri(id))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::new(body))
        .unwrap();
    let answer = tower::ServiceExt::oneshot(limited, request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(gate_state(&app.gates, "d1", TICKET), before);
}

/// PROTOCOL.md §5: 64 KiB by default. A body of exactly that size is read; one byte more is
/// refused and changes nothing.
#[tokio::test]
async fn the_default_body_limit_is_64_kib() {
    let app = app();
    let id = callback_id(&app.gates, "d1", TICKET);
    let before = gate_state(&app.gates, "d1", TICKET);
    let padded = |size: usize| {
        let body = r#"{"success": true}"#;
        format!("{body}{}", " ".repeat(size - body.len()))
    };
    let answer = send(&app.router, post(&uri(id), Some(TOKEN), padded(65_537))).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    assert_eq!(gate_state(&app.gates, "d1", TICKET), before);
    let answer = send(&app.router, post(&uri(id), Some(TOKEN), padded(65_536))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_ne!(gate_state(&app.gates, "d1", TICKET), before);
}

#[tokio::test]
async fn the_body_limit_and_the_message_limit_are_configurable() {
    let gates = Arc::new(MemoryGates::new(clock()));
    gates.insert(deployment("d1", 1, |_| {}));
    let tokens = StaticTokens::new().with_token(TOKEN, Principal::new("ci"));
    let handler = CallbackHandler::new(gates.clone(), Arc::new(tokens))
        .with_body_limit(64)
        .with_message_limit(8);
    let router = router(ServerState::new(handler));
    let id = callback_id(&gates, "d1", TICKET);
    let long = format!(r#"{{"success": true, "mdMessage": "{}"}}"#, "x".repeat(64));
    assert_eq!(
        send(&router, post(&uri(id), Some(TOKEN), long))
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let answer = send(
        &router,
        post(
            &uri(id),
            Some(TOKEN),
            r#"{"success": true, "mdMessage": "nine byte"}"#,
        ),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );
    assert!(
        answer.message().contains("`mdMessage`"),
        "{}",
        answer.message()
    );
}

/// Gates that refuse every request with the same error.
struct Refusing(GateError);

#[async_trait]
impl GateService for Refusing {
    async fn callback(
        &self,
        _: CallbackId,
        _: CallbackReport,
        _: &Principal,
    ) -> Result<CallbackAck, GateError> {
        Err(self.0.clone())
    }
    async fn decide(
        &self,
        _: &DeploymentId,
        _: GateId,
        _: Decision,
        _: &Principal,
    ) -> Result<(), GateError> {
        Err(self.0.clone())
    }
}

/// An authorizer whose identity provider is down.
struct Down;

#[async_trait]
impl CallbackAuthorizer for Down {
    async fn authorize(&self, _: &str) -> Result<Principal, AuthError> {
        Err(AuthError::Unavailable {
            reason: "the JWKS could not be fetched".into(),
        })
    }
}

#[tokio::test]
async fn unavailable_storage_or_identity_provider_is_503() {
    let tokens = StaticTokens::new().with_token(TOKEN, Principal::new("ci"));
    let storage_down = router(ServerState::new(CallbackHandler::new(
        Arc::new(Refusing(GateError::Unavailable(
            "the database is unreachable".into(),
        ))),
        Arc::new(tokens),
    )));
    let idp_down = router(ServerState::new(CallbackHandler::new(
        Arc::new(MemoryGates::new(clock())),
        Arc::new(Down),
    )));
    let path = uri(CallbackId([1; 16]));
    for router in [storage_down, idp_down] {
        let answer = send(&router, post(&path, Some(TOKEN), r#"{"success": true}"#)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert!(answer.message().contains("retry"), "{}", answer.message());
    }
}

#[tokio::test]
async fn an_internal_error_is_500_without_its_detail_in_the_body() {
    // Gates whose stored state no longer fits its plan: nothing the sender can do about it.
    let broken = Refusing(GateError::Core(CoreError::PlanMismatch {
        what: "the number of environments",
    }));
    let tokens = StaticTokens::new().with_token(TOKEN, Principal::new("ci"));
    let router = router(ServerState::new(
        CallbackHandler::new(Arc::new(broken), Arc::new(tokens)).allow_any_token_to_decide(),
    ));
    for (path, body) in [
        (uri(CallbackId([1; 16])), r#"{"success": true}"#),
        ("/deployments/d1/gates/0/approve".to_owned(), "{}"),
    ] {
        let answer = send(&router, post(&path, Some(TOKEN), body)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            "{path}"
        );
        assert!(
            !answer.message().contains("plan") && !answer.message().contains("environments"),
            "{path}: {}",
            answer.message()
        );
    }
}

#[tokio::test]
async fn the_router_mounts_under_a_prefix_and_the_plain_handler_takes_one() {
    let app = app();
    let id = callback_id(&app.gates, "d1", TICKET);
    let nested = axum::Router::new().nest("/hookgate", app.router.clone());
    let answer = send(
        &nested,
        post(
            &format!("/hookgate{}", uri(id)),
            Some(TOKEN),
            r#"{"success": true}"#,
        ),
    )
    .await;
    assert_eq!(answer.json["status"], "applied");
    let health = send(
        &nested,
        Request::get("/hookgate/healthz")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (health.status, health.json["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let posted = send(&nested, post("/hookgate/healthz", None, "")).await;
    assert_eq!(
        (posted.status, posted.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    assert_eq!(
        send(&nested, post(&uri(id), Some(TOKEN), "{}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let tokens = StaticTokens::new().with_token(TOKEN, Principal::new("ci"));
    let handler = CallbackHandler::new(app.gates.clone(), Arc::new(tokens)).with_prefix("/hg/");
    let second = callback_id(&app.gates, "d1", TESTS);
    let request = |path: String| {
        Request::post(path)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"success": true}"#,
            )))
            .unwrap()
    };
    let response = handler
        .handle(request(format!("/hg/callbacks/{second}")))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().as_ref(), br#"{"status":"applied"}"#);
    assert_eq!(
        handler
            .handle(request(format!("/callbacks/{second}")))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // A prefix written without its leading slash is the same prefix.
    let tokens = StaticTokens::new().with_token(TOKEN, Principal::new("ci"));
    let handler = CallbackHandler::new(app.gates.clone(), Arc::new(tokens)).with_prefix("hg");
    let response = handler
        .handle(request(format!("/hg/callbacks/{second}")))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().as_ref(), br#"{"status":"duplicate"}"#);
}

#[tokio::test]
async fn near_miss_paths_get_the_json_not_found_body() {
    let app = app();
    let id = callback_id(&app.gates, "d1", TICKET);
    let nested = axum::Router::new().nest("/hookgate", app.router.clone());
    for (router, path) in [
        (&app.router, format!("/callbacks/{id}/")),
        (&app.router, format!("/callbacks/{id}/other")),
        (&app.router, "/elsewhere".to_owned()),
        (&nested, format!("/hookgate/callbacks/{id}/other")),
    ] {
        let answer = send(router, post(&path, Some(TOKEN), r#"{"success": true}"#)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
        assert!(!answer.message().is_empty(), "{path}");
    }
    assert!(matches!(
        gate_state(&app.gates, "d1", TICKET),
        GateState::AwaitingCallback { .. }
    ));
}

/// Two deployments given the same callback ids (id sources that repeat) cannot both be
/// inserted: a callback would reach whichever came last. Replacing a deployment keeps working.
#[test]
fn memory_gates_refuse_a_callback_id_another_deployment_has() {
    let gates = MemoryGates::new(clock());
    gates.insert(deployment("d1", 1, |_| {}));
    gates.insert(deployment("d1", 1, |_| {}));
    let second = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        gates.insert(deployment("d2", 1, |_| {}));
    }));
    let message = second.expect_err("d2 repeats d1's callback ids");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(
        message.contains("d1") && message.contains("d2"),
        "{message}"
    );
    assert!(
        gates.with_deployment(&"d2".into(), |_| ()).is_none(),
        "d2 was not inserted"
    );
}
