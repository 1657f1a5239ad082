//! hookgate end to end in one process: a dev → staging → prod deployment whose gates call an
//! external system over real HTTP, which calls back with a token from hookgate's built-in
//! issuer. State lives in SQLite in a temporary directory.
//!
//! ```text
//! cargo run --example quickstart --features runtime,axum,issuer,reqwest,receiver,sqlite
//! ```
//!
//! Prints a timeline, a summary of every environment and gate, and a Mermaid flowchart of the
//! deployment as it ended.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate::Secret;
use hookgate::auth::{IssuerClient, TokenIssuer};
use hookgate::axum::extract::Path;
use hookgate::axum::http::{HeaderMap, StatusCode};
use hookgate::axum::routing::post;
use hookgate::config::{GateKind, Plan};
use hookgate::core::{DeploymentStatus, EventKind, GateState};
use hookgate::outbound::Dispatcher;
use hookgate::receiver::{Callback, CallbackClient, ClientCredentials, ReceivedRequest};
use hookgate::runtime::{DeploymentView, Engine, EngineEvent, SimulatedHost};
use hookgate::secrets::MemorySecrets;
use hookgate::server::{CallbackHandler, ServerState, router};
use hookgate::store::SqliteStore;
use hookgate::transport::{ReqwestTransport, TransportRegistry};

const DEPLOY_YML: &str = r#"
application: checkout
targets:
  dev:
    account: dev-cluster
    namespace: checkout
    constraints:
      beforeDeployment:
        - runWebhook: {name: change-ticket}
  staging:
    account: prod-cluster
    namespace: checkout-staging
    strategy: canary
    constraints:
      dependsOn: [dev]
      afterDeployment:
        - runWebhook: {name: smoke-tests}
  prod:
    account: prod-cluster
    namespace: checkout
    strategy: canary
    constraints:
      dependsOn: [staging]
      afterDeployment:
        - runWebhook: {name: smoke-tests}
strategies:
  canary:
    canary:
      steps:
        - setWeight: {weight: 25}
        - runWebhook: {name: integration-tests}
        - setWeight: {weight: 100}
webhooks:
  - name: change-ticket
    uriTemplate: "{{secrets.external}}/hooks/change-ticket"
    headers:
      - {key: Authorization, value: "Bearer {{secrets.ticket_token}}"}
      - {key: Content-Type, value: application/json}
    bodyTemplate:
      inline: '{"callbackUri": "{{armory.callbackUri}}/callback", "env": "{{armory.environmentName}}"}'
  - name: integration-tests
    uriTemplate: "{{secrets.external}}/hooks/integration-tests"
    headers: [{key: Content-Type, value: application/json}]
    bodyTemplate:
      inline: '{"event_type": "webhookCallback", "client_payload": {"callbackUri": "{{armory.callbackUri}}/callback"}}'
    retryCount: 3
  - name: smoke-tests
    uriTemplate: "{{secrets.external}}/hooks/smoke-tests?env={{armory.environmentName}}"
    headers: [{key: Content-Type, value: application/json}]
    bodyTemplate:
      inline: '{"callbackUri": "{{armory.callbackUri}}"}'
"#;

const CLIENT_ID: &str = "quickstart-ci";
const CLIENT_SECRET: &str = "quickstart-client-secret-2f9c1e";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("hookgate.db")).await?;

    // hookgate's side: the router with the callback endpoint and the token issuer.
    let gates_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", gates_listener.local_addr()?);
    let external_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let external = format!("http://{}", external_listener.local_addr()?);
    let secrets = MemorySecrets::new()
        .with("ticket_token", "tickets-api-token")
        .with("external", external.clone());
    let dispatcher = Dispatcher::builder(
        TransportRegistry::new(Arc::new(ReqwestTransport::builder().build()?)),
        Arc::new(secrets),
        base.clone(),
    )
    .build()?;
    let engine = Engine::builder(dispatcher, SimulatedHost)
        .store(store)
        .build();
    // Nothing to resume in a fresh database; a durable one would hold the deployments of the
    // last run, which go on from where they were only once recovered.
    engine.recover().await?;
    let issuer = Arc::new(
        TokenIssuer::builder(
            base.clone(),
            "https://api.cloud.armory.io",
            Secret::new(random_key()),
        )
        .client(IssuerClient::from_secret(
            CLIENT_ID,
            &Secret::new(CLIENT_SECRET),
        ))
        .build()?,
    );
    let handler = CallbackHandler::new(Arc::new(engine.clone()), issuer.clone());
    let app = router(ServerState::new(handler).with_issuer(issuer));
    tokio::spawn(async move { hookgate::axum::serve(gates_listener, app).await });

    // The external system: answers each webhook at once, works, then calls back.
    let token_url = format!("{base}/oauth/token").parse()?;
    let tokens = ClientCredentials::builder(CLIENT_ID, CLIENT_SECRET)
        .token_url(token_url)
        .build(ReqwestTransport::builder().build()?)?;
    // The token goes only to the gate server: a forged webhook could name any callback URI.
    let callbacks = Arc::new(
        CallbackClient::new(ReqwestTransport::builder().build()?, tokens)
            .with_allowed_origins([base.parse()?]),
    );
    let external_app = hookgate::axum::Router::new().route(
        "/hooks/{name}",
        post(
            move |Path(name): Path<String>,
                  headers: HeaderMap,
                  body: hookgate::axum::body::Bytes| {
                let callbacks = Arc::clone(&callbacks);
                async move {
                    let Ok(url) = ReceivedRequest::new()
                        .with_headers(&headers)
                        .with_body(&body)
                        .callback_uri()
                    else {
                        return StatusCode::BAD_REQUEST;
                    };
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        let message = format!("**{name}**: all checks passed");
                        if let Err(e) = callbacks
                            .send(&url, &Callback::success().with_message(message))
                            .await
                        {
                            eprintln!("external system: the callback failed: {e}");
                        }
                    });
                    StatusCode::ACCEPTED
                }
            },
        ),
    );
    tokio::spawn(async move { hookgate::axum::serve(external_listener, external_app).await });

    // Run it.
    let mut events = engine.subscribe();
    tokio::spawn({
        let engine = engine.clone();
        async move { engine.run_scheduler().await }
    });
    let context = BTreeMap::from([("team".to_owned(), "payments".to_owned())]);
    let started = engine.start(DEPLOY_YML, context).await?;
    let plan = Plan::from_yaml(DEPLOY_YML)?;
    let t0 = Instant::now();
    println!("deployment {} of {}\n", started.id, plan.application());
    let outcome = loop {
        let EngineEvent::Deployment { event, .. } = events.recv().await? else {
            continue;
        };
        // The story of the run; the rest (gates opening, attempts asked for) is detail.
        let shown = matches!(
            event.kind,
            EventKind::EnvironmentStatus { .. }
                | EventKind::WebhookSent { .. }
                | EventKind::WebhookFailed { .. }
                | EventKind::CallbackReceived { .. }
                | EventKind::DeploymentFinished { .. }
        );
        if shown {
            let line = event.kind.describe(&plan);
            println!("{:>6} ms  {line}", t0.elapsed().as_millis());
        }
        if let EventKind::DeploymentFinished { status } = event.kind {
            break status;
        }
    };
    let view = engine.view(&started.id).await?;
    println!("\n{}", summary(&plan, &view));
    println!("{}", mermaid(&plan, &view));
    engine.shutdown().await;
    if outcome != DeploymentStatus::Succeeded {
        return Err(format!("the deployment ended {outcome}").into());
    }
    Ok(())
}

fn random_key() -> String {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system's random source");
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn gate_label(plan: &Plan, gate: hookgate::config::GateId) -> String {
    match plan.gate(gate).kind() {
        GateKind::Webhook { webhook, .. } => plan.webhook(*webhook).name.clone(),
        GateKind::Pause(_) => "pause".into(),
        GateKind::Approval { .. } => "approval".into(),
        GateKind::Analysis(_) => "analysis".into(),
        _ => "gate".into(),
    }
}

fn state_word(state: GateState) -> String {
    match state {
        GateState::Passed(how) => format!("passed ({how})"),
        GateState::Failed(how) => format!("FAILED ({how})"),
        GateState::Closed(how) => format!("closed ({how})"),
        GateState::Idle => "not reached".into(),
        other => format!("open: {other:?}"),
    }
}

fn summary(plan: &Plan, view: &DeploymentView) -> String {
    let mut out = format!("outcome: {}\n", view.status);
    for (name, status) in &view.environments {
        out += &format!("  {name:<10} {status}\n");
        for g in view.gates.iter().filter(|g| &g.environment == name) {
            out += &format!(
                "    {:<18} {:<55} {}\n",
                gate_label(plan, g.gate),
                g.path,
                state_word(g.state)
            );
        }
    }
    out
}

fn mermaid(plan: &Plan, view: &DeploymentView) -> String {
    let mut out = String::from("```mermaid\nflowchart LR\n");
    for (i, (name, status)) in view.environments.iter().enumerate() {
        out += &format!("  env{i}[\"{name}: {status}\"]:::{}\n", status.as_str());
        for dep in plan.environments()[i].depends_on() {
            out += &format!("  env{} --> env{i}\n", dep.0);
        }
    }
    for g in &view.gates {
        let env = plan.gate(g.gate).env().0;
        let class = match g.state {
            GateState::Passed(_) => "succeeded",
            GateState::Failed(_) => "failed",
            _ => "pending",
        };
        out += &format!(
            "  gate{}{{{{\"{}\"}}}}:::{class} -.- env{env}\n",
            g.gate.0,
            gate_label(plan, g.gate)
        );
    }
    out += "  classDef succeeded fill:#d4f7d4,stroke:#2a7a2a\n";
    out += "  classDef failed fill:#f7d4d4,stroke:#a02a2a\n";
    out += "  classDef rolled_back fill:#f7ecd4,stroke:#a07a2a\n";
    out += "  classDef canceled fill:#e4e4e4,stroke:#777\n";
    out += "  classDef pending fill:#fff,stroke:#777\n";
    out += "```";
    out
}
