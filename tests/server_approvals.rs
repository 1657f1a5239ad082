//! Approvals through the router: roles, comments, scopes, tenants.
#![cfg(all(feature = "axum", feature = "test-util"))]

mod server_support;

use std::sync::Arc;

use axum::body::Body;
use hookgate::auth::{Principal, StaticTokens};
use hookgate::core::{DeploymentId, EventKind, GateState, Resolution};
use hookgate::server::{CallbackHandler, MemoryGates, ServerState, router};
use http::{Request, StatusCode};
use server_support::*;

const MANAGER: &str = "manager-token-8d1e2f3a4b5c6d7e8f90";
const DEVELOPER: &str = "developer-token-0a9b8c7d6e5f4a3b2c1d";
const OUTSIDER: &str = "outsider-token-1a2b3c4d5e6f7a8b9c0d";
/// A callback token of a principal that holds the role an approval requires, but not the
/// approval scope.
const CALLBACK_BOT: &str = "callback-bot-token-5e6f7a8b9c0d1e2f3a4b";

fn setup(approval_scope: Option<&str>) -> (axum::Router, Arc<MemoryGates>) {
    let gates = Arc::new(MemoryGates::new(clock()));
    gates.insert_for_tenant(deployment("d1", 1, |_| {}), "payments");
    let tokens = StaticTokens::new()
        .with_token(
            MANAGER,
            Principal::new("alice")
                .with_roles(["release-manager"])
                .with_scopes(["approvals"])
                .with_tenant("payments"),
        )
        .with_token(
            DEVELOPER,
            Principal::new("bob")
                .with_roles(["developer"])
                .with_tenant("payments"),
        )
        .with_token(
            CALLBACK_BOT,
            Principal::new("ci-bot")
                .with_roles(["release-manager"])
                .with_scopes(["callbacks"])
                .with_tenant("payments"),
        )
        .with_token(
            OUTSIDER,
            Principal::new("eve")
                .with_roles(["release-manager"])
                .with_tenant("other"),
        );
    let handler = CallbackHandler::new(gates.clone(), Arc::new(tokens));
    let handler = match approval_scope {
        Some(scope) => handler.with_approval_scope(scope),
        None => handler.allow_any_token_to_decide(),
    };
    (router(ServerState::new(handler)), gates)
}

fn decide(action: &str, gate: u32) -> String {
    format!("/deployments/d1/gates/{gate}/{action}")
}

/// `action` (`approve` or `reject`) on the approval of `d1`, with an empty body, by `token`.
async fn decision(router: &axum::Router, action: &str, token: &str) -> Answer {
    send(router, post(&decide(action, APPROVAL.0), Some(token), "")).await
}

#[tokio::test]
async fn a_principal_with_the_role_approves_and_the_decision_records_who_and_why() {
    let (router, gates) = setup(None);
    let answer = send(
        &router,
        post(
            &decide("approve", APPROVAL.0),
            Some(MANAGER),
            r#"{"comment": "ship it"}"#,
        ),
    )
    .await;
    assert_eq!(
        (answer.status, answer.json["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );
    assert_eq!(
        gate_state(&gates, "d1", APPROVAL),
        GateState::Passed(Resolution::Approved)
    );
    let decided = gates.with_deployment(&DeploymentId::from("d1"), |d| {
        std::iter::from_fn(|| d.poll_event()).find_map(|e| match e.kind {
            EventKind::ApprovalDecided {
                by,
                comment,
                approved,
                ..
            } => Some((by, comment, approved)),
            _ => None,
        })
    });
    assert_eq!(
        decided.flatten(),
        Some(("alice".to_owned(), Some("ship it".to_owned()), true))
    );

    // The same decision again (a retry whose answer was lost) is answered as done; the
    // opposite one is refused, as for callbacks.
    let retried = decision(&router, "approve", MANAGER).await;
    assert_eq!(
        (retried.status, retried.json["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );
    let again = decision(&router, "reject", MANAGER).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "conflict")
    );
    assert_eq!(
        gate_state(&gates, "d1", APPROVAL),
        GateState::Passed(Resolution::Approved)
    );
}

/// An empty decision is taken whatever its `Content-Type` says (`curl -d ''` labels it a
/// form); a body that is not JSON is still refused.
#[tokio::test]
async fn an_empty_decision_is_taken_whatever_its_content_type() {
    let (router, gates) = setup(None);
    let form = |body: &'static str| {
        Request::post(decide("approve", APPROVAL.0))
            .header("authorization", format!("Bearer {MANAGER}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    let refused = send(&router, form("comment=ship+it")).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let answer = send(&router, form("")).await;
    assert_eq!(
        (answer.status, answer.json["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );
    assert_eq!(
        gate_state(&gates, "d1", APPROVAL),
        GateState::Passed(Resolution::Approved)
    );
}

/// A decision for an approval that closed without one (it expired, or its environment ended
/// first) is `410 gate_closed`, as a callback for a closed gate is.
#[tokio::test]
async fn a_decision_for_an_approval_closed_another_way_is_gone() {
    let (router, gates) = setup(None);
    gates.with_deployment(&DeploymentId::from("d1"), |d| {
        d.handle_cancel(t0(), "someone").unwrap();
    });
    let answer = decision(&router, "approve", MANAGER).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::GONE, "gate_closed")
    );
}

#[tokio::test]
async fn a_principal_without_the_role_or_of_another_tenant_is_forbidden() {
    let (router, gates) = setup(None);
    for token in [DEVELOPER, OUTSIDER] {
        let answer = decision(&router, "approve", token).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{token}"
        );
    }
    assert!(matches!(
        gate_state(&gates, "d1", APPROVAL),
        GateState::AwaitingApproval { .. }
    ));
    let answer = decision(&router, "reject", MANAGER).await;
    assert_eq!(answer.json["status"], "rejected");
    assert_eq!(
        gate_state(&gates, "d1", APPROVAL),
        GateState::Failed(Resolution::Rejected)
    );
}

/// A manual approval is a person's say: a server not told whose tokens may decide takes no
/// decisions, rather than take them from the tokens external systems call back with.
#[tokio::test]
async fn a_server_not_told_who_decides_refuses_every_decision() {
    let gates = Arc::new(MemoryGates::new(clock()));
    gates.insert_for_tenant(deployment("d1", 1, |_| {}), "payments");
    let tokens = StaticTokens::new().with_token(
        MANAGER,
        Principal::new("alice")
            .with_roles(["release-manager"])
            .with_scopes(["approvals"])
            .with_tenant("payments"),
    );
    let router = router(ServerState::new(CallbackHandler::new(
        gates.clone(),
        Arc::new(tokens),
    )));
    let answer = decision(&router, "approve", MANAGER).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let message = answer.json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("with_approval_scope") && message.contains("allow_any_token_to_decide"),
        "{message}"
    );
    assert!(matches!(
        gate_state(&gates, "d1", APPROVAL),
        GateState::AwaitingApproval { .. }
    ));
}

#[tokio::test]
async fn the_approval_scope_keeps_callback_tokens_from_deciding() {
    let (router, gates) = setup(Some("approvals"));
    // The bot holds the role the approval requires: only the scope refuses it.
    for token in [CALLBACK_BOT, DEVELOPER] {
        let answer = decision(&router, "approve", token).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{token}"
        );
        assert!(
            answer.message().contains("scope `approvals`"),
            "{token}: {}",
            answer.message()
        );
    }
    assert!(
        matches!(
            gate_state(&gates, "d1", APPROVAL),
            GateState::AwaitingApproval { .. }
        ),
        "refused decisions change nothing"
    );
    let (unscoped, _) = setup(None);
    let answer = decision(&unscoped, "approve", CALLBACK_BOT).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "without an approval scope configured, the role is enough"
    );
    let answer = decision(&router, "approve", MANAGER).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_targets_and_bodies() {
    let (router, _) = setup(None);
    let cases = [
        (
            "/deployments/nope/gates/2/approve",
            r#"{}"#,
            StatusCode::NOT_FOUND,
            "unknown_deployment",
        ),
        (
            "/deployments/d%001/gates/2/approve",
            r#"{}"#,
            StatusCode::NOT_FOUND,
            "unknown_deployment",
        ),
        (
            "/deployments/d1/gates/99/approve",
            r#"{}"#,
            StatusCode::NOT_FOUND,
            "unknown_gate",
        ),
        (
            "/deployments/d1/gates/x/approve",
            r#"{}"#,
            StatusCode::NOT_FOUND,
            "unknown_gate",
        ),
        (
            "/deployments/d1/gates/0/approve",
            r#"{}"#,
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            "/deployments/d1/gates/2/approve",
            r#"{"comment": 5}"#,
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/deployments/d1/gates/2/approve",
            r#"[1]"#,
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/deployments/d1/gates/2/postpone",
            r#"{}"#,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (path, body, status, code) in cases {
        let answer = send(&router, post(path, Some(MANAGER), body)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (status, code),
            "{path} {body}"
        );
    }
    let unauthenticated = Request::post(decide("approve", 2))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&router, unauthenticated).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_empty_deployment_id_is_named_as_such() {
    let (router, _) = setup(None);
    let answer = send(
        &router,
        post("/deployments//gates/2/approve", Some(MANAGER), "{}"),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "unknown_deployment")
    );
    assert!(answer.message().contains("empty"), "{}", answer.message());
    assert!(
        !answer.message().contains("percent-encoded"),
        "{}",
        answer.message()
    );
}

/// A deployment started for a tenant keeps to it in `MemoryGates` as in the engine, whether it
/// is inserted with `insert` or for the same tenant: another tenant's callback and decision
/// are 403 and change nothing, its own tenant's apply.
#[tokio::test]
async fn a_deployment_started_for_a_tenant_takes_only_that_tenant_s_requests() {
    for for_tenant in [false, true] {
        let gates = Arc::new(MemoryGates::new(clock()));
        let d = deployment_with(
            "d1",
            1,
            hookgate::core::StartOptions::default().with_tenant("payments"),
            |_| {},
        );
        if for_tenant {
            gates.insert_for_tenant(d, "payments");
        } else {
            gates.insert(d);
        }
        let tokens = StaticTokens::new()
            .with_token(
                OUTSIDER,
                Principal::new("eve")
                    .with_roles(["release-manager"])
                    .with_tenant("other"),
            )
            .with_token(
                MANAGER,
                Principal::new("alice")
                    .with_roles(["release-manager"])
                    .with_tenant("payments"),
            );
        let router = router(ServerState::new(
            CallbackHandler::new(gates.clone(), Arc::new(tokens)).allow_any_token_to_decide(),
        ));
        let callback = format!("/callbacks/{}", callback_id(&gates, "d1", TICKET));
        let before = gate_state(&gates, "d1", TICKET);
        let answer = send(
            &router,
            post(&callback, Some(OUTSIDER), r#"{"success": true}"#),
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{for_tenant}");
        assert_eq!(gate_state(&gates, "d1", TICKET), before, "{for_tenant}");
        let awaiting = gate_state(&gates, "d1", APPROVAL);
        assert!(
            matches!(awaiting, GateState::AwaitingApproval { .. }),
            "{for_tenant}: {awaiting:?}"
        );
        let answer = decision(&router, "approve", OUTSIDER).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{for_tenant}");
        assert_eq!(gate_state(&gates, "d1", APPROVAL), awaiting, "{for_tenant}");

        let answer = send(
            &router,
            post(&callback, Some(MANAGER), r#"{"success": true}"#),
        )
        .await;
        assert_eq!(answer.json["status"], "applied", "{for_tenant}");
        let answer = decision(&router, "approve", MANAGER).await;
        assert_eq!(
            (answer.status, answer.json["status"].as_str()),
            (StatusCode::OK, Some("approved")),
            "{for_tenant}"
        );
        assert_eq!(
            gate_state(&gates, "d1", APPROVAL),
            GateState::Passed(Resolution::Approved),
            "{for_tenant}"
        );
    }
}

/// A deployment started for one tenant cannot be inserted for another.
#[test]
#[should_panic(expected = "was started for tenant \"payments\", not \"other\"")]
fn a_deployment_started_for_a_tenant_is_not_inserted_for_another() {
    let d = deployment_with(
        "d1",
        1,
        hookgate::core::StartOptions::default().with_tenant("payments"),
        |_| {},
    );
    MemoryGates::new(clock()).insert_for_tenant(d, "other");
}

/// Two deployments with a callback id in common are refused, the id named as its `Debug` shows
/// it (its last digits): the whole id is a credential for its gate, and a panic message may
/// end up in a log.
#[test]
fn a_repeated_callback_id_is_refused_without_showing_it_whole() {
    let gates = MemoryGates::new(clock());
    gates.insert(deployment("d1", 1, |_| {}));
    let again = deployment("d2", 1, |_| {});
    let (_, repeated) = again.callback_ids().next().expect("a webhook gate");
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gates.insert(again)))
        .expect_err("a repeated callback id is refused");
    let message = refused
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(message.contains("is deployment d1's already"), "{message}");
    assert!(message.contains(&format!("{repeated:?}")), "{message}");
    assert!(!message.contains(&repeated.to_string()), "{message}");
}
