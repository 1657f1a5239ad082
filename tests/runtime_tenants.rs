//! Tenant scoping in the engine: a deployment started for a tenant takes callbacks and
//! decisions only from that tenant's principals, and a refused caller changes nothing.
#![cfg(all(feature = "runtime", feature = "axum", feature = "test-util"))]

mod server_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hookgate::auth::{Principal, StaticTokens};
use hookgate::core::{DeploymentId, EventKind, GateState};
use hookgate::receiver::ReceivedRequest;
use hookgate::runtime::{Engine, EngineEvent, SimulatedHost};
use hookgate::server::{CallbackHandler, ServerState, router};
use hookgate::test_util::RecordingTransport;
use http::StatusCode;
use server_support::{post, send};

const TOKEN_A: &str = "tenant-a-token-5f4e3d2c1b0a99887766";
const TOKEN_B: &str = "tenant-b-token-0a1b2c3d4e5f66778899";
const TOKEN_ANY: &str = "untenanted-token-9f8e7d6c5b4a3f2e1d0c";

const FILE: &str = r#"
application: tenants
targets:
  prod:
    constraints:
      beforeDeployment:
        - runWebhook: {name: ticket}
        - pause: {untilApproved: true}
webhooks:
  - name: ticket
    uriTemplate: "https://tickets.example/open"
    headers: [{key: Content-Type, value: application/json}]
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
"#;

struct Setup {
    engine: Engine,
    router: axum::Router,
    external: RecordingTransport,
}

fn setup() -> Setup {
    let external = RecordingTransport::new();
    let dispatcher = external.dispatcher("https://gates.example").unwrap();
    let engine = Engine::builder(dispatcher, SimulatedHost)
        .allow_concurrent_deployments(true)
        .build();
    let tokens = StaticTokens::new()
        .with_token(TOKEN_A, Principal::new("ci-a").with_tenant("a"))
        .with_token(TOKEN_B, Principal::new("ci-b").with_tenant("b"))
        .with_token(TOKEN_ANY, Principal::new("ci-any"));
    let handler = CallbackHandler::new(Arc::new(engine.clone()), Arc::new(tokens))
        .allow_any_token_to_decide();
    Setup {
        router: router(ServerState::new(handler)),
        engine,
        external,
    }
}

/// The callback path of the deployment's webhook, once its call went out.
async fn callback_path(s: &Setup, nth: usize) -> String {
    let wait = async {
        loop {
            if let Some(request) = s.external.requests().get(nth) {
                let uri = ReceivedRequest::new()
                    .with_body(&request.body)
                    .callback_uri()
                    .unwrap();
                return uri.path().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap()
}

async fn gate_states(engine: &Engine, id: &DeploymentId) -> Vec<GateState> {
    engine
        .view(id)
        .await
        .unwrap()
        .gates
        .iter()
        .map(|g| g.state)
        .collect()
}

#[tokio::test]
async fn another_tenants_token_cannot_resolve_or_decide_a_gate() {
    let s = setup();
    let mut events = s.engine.subscribe();
    let id = s
        .engine
        .start_for_tenant(FILE, BTreeMap::new(), "a")
        .await
        .unwrap()
        .id;
    assert_eq!(
        s.engine.view(&id).await.unwrap().tenant.as_deref(),
        Some("a"),
        "a host can check a caller against the deployment's tenant"
    );
    let path = callback_path(&s, 0).await;
    let before = gate_states(&s.engine, &id).await;
    assert!(
        matches!(before[0], GateState::AwaitingCallback { .. }),
        "{before:?}"
    );

    for token in [TOKEN_B, TOKEN_ANY] {
        let answer = send(&s.router, post(&path, Some(token), r#"{"success": true}"#)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.json);
        let progress = r#"{"success": true, "inProgress": true, "mdMessage": "half way"}"#;
        let answer = send(&s.router, post(&path, Some(token), progress)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.json);
    }
    assert_eq!(
        gate_states(&s.engine, &id).await,
        before,
        "a refused caller changes nothing"
    );
    let history = s.engine.history(&id).await.unwrap();
    assert!(
        !history.iter().any(|h| matches!(
            h.event.kind,
            EventKind::CallbackReceived { .. } | EventKind::Progress { .. }
        )),
        "nothing of the refused callbacks was recorded"
    );

    let answer = send(
        &s.router,
        post(&path, Some(TOKEN_A), r#"{"success": true}"#),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let after = gate_states(&s.engine, &id).await;
    assert!(
        matches!(
            after[1],
            GateState::AwaitingApproval { .. } | GateState::AwaitingDecision
        ),
        "{after:?}"
    );

    let requested = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let EngineEvent::ApprovalRequested { tenant, .. } = events.recv().await.unwrap() {
                return tenant;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        requested.as_deref(),
        Some("a"),
        "the approval names its tenant"
    );

    let approve = format!("/deployments/{id}/gates/1/approve");
    for token in [TOKEN_B, TOKEN_ANY] {
        let answer = send(&s.router, post(&approve, Some(token), "")).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.json);
    }
    assert_eq!(gate_states(&s.engine, &id).await, after);
    let answer = send(&s.router, post(&approve, Some(TOKEN_A), "")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
}

#[tokio::test]
async fn a_deployment_without_a_tenant_takes_any_valid_token() {
    let s = setup();
    let id = s.engine.start(FILE, BTreeMap::new()).await.unwrap().id;
    let path = callback_path(&s, 0).await;
    let answer = send(
        &s.router,
        post(&path, Some(TOKEN_B), r#"{"success": true}"#),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let approve = format!("/deployments/{id}/gates/1/approve");
    let answer = send(&s.router, post(&approve, Some(TOKEN_ANY), "")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
}
