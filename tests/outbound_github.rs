//! The request a `Dispatcher` sends arrives as the templates say: Armory's GitHub
//! `repository_dispatch` example byte for byte, awkward context values as valid JSON, the
//! context's layers in their order, and `armory.accountName` for a target without an account.
#![cfg(feature = "reqwest")]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use hookgate::config::Plan;
use hookgate::core::{
    Action, CallResult, CallbackId, Deployment, DeploymentId, IdSource, StartOptions, StepOutcome,
    WebhookCall,
};
use hookgate::outbound::Dispatcher;
use hookgate::secrets::MemorySecrets;
use hookgate::transport::{ReqwestTransport, TransportRegistry};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Callback ids 1, 2, ... so the expected callback URI is known.
struct Ids(u128);

impl IdSource for Ids {
    fn callback_id(&mut self) -> CallbackId {
        self.0 += 1;
        CallbackId(self.0.to_be_bytes())
    }
}

/// Armory's documented GitHub webhook, with the API base taken from a secret so the test can
/// point it at a local server, and the repository from the context.
const GITHUB: &str = r#"
application: potato-facts
context: {owner: armory, repo: docs-cdaas-sample}
targets:
  staging:
    account: demo-staging-cluster
    constraints: {afterDeployment: [runWebhook: {name: Check-Logs}]}
webhooks:
  - name: Check-Logs
    method: POST
    uriTemplate: "{{secrets.github_base}}/repos/{{context.owner}}/{{context.repo}}/dispatches"
    networkMode: direct
    headers:
      - {key: Authorization, value: "token {{secrets.github_token}}"}
      - {key: Content-Type, value: application/json}
    bodyTemplate:
      inline: '{"event_type": "webhookCallback", "client_payload": {"callbackUri": "{{armory.callbackUri}}/callback"}}'
    retryCount: 3
"#;

const JSON_CONTEXT: &str = r#"
application: checkout
targets: {prod: {constraints: {beforeDeployment: [runWebhook: {name: ticket}]}}}
webhooks:
  - name: ticket
    uriTemplate: "{{secrets.base}}/tickets"
    headers: [{key: Content-Type, value: application/json; charset=utf-8}]
    bodyTemplate: {inline: '{"note": "{{context.note}}", "env": "{{armory.environmentName}}"}'}
"#;

fn dispatcher(secrets: MemorySecrets) -> Dispatcher {
    let transports = TransportRegistry::new(ReqwestTransport::new().unwrap());
    Dispatcher::builder(
        transports,
        Arc::new(secrets),
        "https://hookgate.example.com/ci/",
    )
    .build()
    .unwrap()
}

/// Starts the plan and returns the deployment with its one webhook call.
fn start(yaml: &str, options: StartOptions) -> (Deployment, WebhookCall) {
    start_answering(yaml, options, StepOutcome::Succeeded)
}

/// [`start`], with every host step before the call answered `outcome`.
fn start_answering(
    yaml: &str,
    options: StartOptions,
    outcome: StepOutcome,
) -> (Deployment, WebhookCall) {
    let plan = Arc::new(Plan::from_yaml(yaml).unwrap());
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    let mut d = Deployment::start(plan, DeploymentId::from("d-42"), options, &mut Ids(0), now);
    loop {
        match d.poll_action().expect("the plan calls a webhook") {
            Action::CallWebhook(call) => return (d, call),
            Action::RunStep(step) => d.handle_step_result(now, step.op, outcome.clone()).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn github_repository_dispatch_arrives_byte_for_byte() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/armory/docs-cdaas-sample/dispatches"))
        .and(header("authorization", "token ghp_example"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&github)
        .await;
    let secrets = MemorySecrets::new()
        .with("github_base", github.uri())
        .with("github_token", "ghp_example");
    let dispatcher = dispatcher(secrets);
    let (deployment, call) = start(GITHUB, StartOptions::default());

    let prepared = dispatcher.prepare(&deployment, &call, None);
    let result = dispatcher.send(&prepared).await;

    assert_eq!(result, CallResult::Sent { status: 204 });
    let received = github.received_requests().await.unwrap();
    let request = &received[0];
    let callback = format!(
        "https://hookgate.example.com/ci/callbacks/{:032x}/callback",
        1
    );
    assert_eq!(
        String::from_utf8(request.body.clone()).unwrap(),
        format!(
            r#"{{"event_type": "webhookCallback", "client_payload": {{"callbackUri": "{callback}"}}}}"#
        )
    );
    assert_eq!(request.headers["idempotency-key"], call.idempotency_key);
    assert_eq!(request.url.query(), None);
}

#[tokio::test]
async fn quotes_backslashes_and_newlines_in_context_stay_inside_their_json_string() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let note = "she said \"ship it\" \\o/\nC:\\temp\\new\r\n\ttab \u{1} and } {{braces}}";
    let options = StartOptions::default().with_context("note", note);
    let (deployment, call) = start(JSON_CONTEXT, options);
    let dispatcher = dispatcher(MemorySecrets::new().with("base", server.uri()));

    let prepared = dispatcher.prepare(&deployment, &call, None);
    assert_eq!(
        dispatcher.send(&prepared).await,
        CallResult::Sent { status: 202 }
    );

    let received = server.received_requests().await.unwrap();
    let body: serde_json::Value = received[0].body_json().expect("a valid JSON document");
    assert_eq!(
        body,
        serde_json::json!({"note": note, "env": "prod"}),
        "the value round-trips"
    );
}

#[tokio::test]
async fn a_path_prefix_of_the_public_base_url_is_kept_in_the_callback_uri() {
    let (deployment, call) = start(GITHUB, StartOptions::default());
    let prepared = dispatcher(MemorySecrets::new()).prepare(&deployment, &call, Some("rs-7"));
    let armory = prepared.armory();
    assert_eq!(
        armory.callback_uri,
        format!("https://hookgate.example.com/ci/callbacks/{:032x}", 1)
    );
    assert_eq!(armory.deployment_id, "d-42");
    assert_eq!(armory.application_name, "potato-facts");
    assert_eq!(armory.environment_name, "staging");
    assert_eq!(armory.account_name, "demo-staging-cluster");
    assert_eq!(armory.replica_set_name.as_deref(), Some("rs-7"));
    assert_eq!(prepared.context()["owner"], "armory");
}

/// The ReplicaSet a deploy step reports is the environment's `armory.replicaSetName` from
/// then on, kept in the state across a restore; one the caller of `prepare` passes wins.
#[test]
fn the_replica_set_a_deploy_step_reports_renders_in_later_calls() {
    let deployed = StepOutcome::Deployed {
        replica_set_name: "potato-facts-7d9c".to_owned(),
    };
    let (deployment, call) = start_answering(GITHUB, StartOptions::default(), deployed);
    let env = call.env;
    assert_eq!(deployment.replica_set_name(env), Some("potato-facts-7d9c"));
    let dispatcher = dispatcher(MemorySecrets::new());
    let prepared = dispatcher.prepare(&deployment, &call, None);
    assert_eq!(
        prepared.armory().replica_set_name.as_deref(),
        Some("potato-facts-7d9c")
    );
    let given = dispatcher.prepare(&deployment, &call, Some("rs-7"));
    assert_eq!(given.armory().replica_set_name.as_deref(), Some("rs-7"));

    let json = serde_json::to_string(deployment.state()).unwrap();
    let restored = Deployment::restore(
        Arc::clone(deployment.plan()),
        serde_json::from_str(&json).unwrap(),
    )
    .unwrap();
    assert_eq!(restored.replica_set_name(env), Some("potato-facts-7d9c"));

    let (plain, call) = start(GITHUB, StartOptions::default());
    assert_eq!(plain.replica_set_name(call.env), None);
    let json = serde_json::to_string(plain.state()).unwrap();
    assert!(
        !json.contains("replica_sets"),
        "left out while empty: {json}"
    );
    assert_eq!(
        dispatcher
            .prepare(&plain, &call, None)
            .armory()
            .replica_set_name,
        None
    );
}

/// Sends `yaml`'s first webhook call through a `Dispatcher` whose direct transport (and remote
/// network agent `agent-7`'s) reach a local server, and returns the body it received.
async fn sent_body(yaml: &str, options: StartOptions) -> String {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let transports = TransportRegistry::new(ReqwestTransport::new().unwrap())
        .with_agent("agent-7", ReqwestTransport::new().unwrap());
    let dispatcher = Dispatcher::builder(
        transports,
        Arc::new(MemorySecrets::new().with("base", server.uri())),
        "https://hookgate.example.com/ci/",
    )
    .build()
    .unwrap();
    let (deployment, call) = start(yaml, options);
    dispatcher.check_agents(deployment.plan()).unwrap();
    let prepared = dispatcher.prepare(&deployment, &call, None);
    assert_eq!(
        dispatcher.send(&prepared).await,
        CallResult::Sent { status: 202 }
    );
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    String::from_utf8(received[0].body.clone()).unwrap()
}

/// `k` is given in the file's `context`, the gate's `runWebhook.context` and (below) at start.
const LAYERED_CONTEXT: &str = r#"
application: checkout
context: {k: from-file}
targets: {prod: {constraints: {beforeDeployment: [runWebhook: {name: hook, context: {k: from-run-webhook}}]}}}
webhooks:
  - name: hook
    uriTemplate: "{{secrets.base}}/hook"
    bodyTemplate: {inline: "k={{context.k}}"}
"#;

/// PROTOCOL.md §3: `context.<key>` is looked up with later layers winning: the file's
/// `context` < `runWebhook.context` < the context given when the deployment starts.
#[tokio::test]
async fn context_layers_win_in_order_file_then_run_webhook_then_start() {
    let at_start = StartOptions::default().with_context("k", "from-start");
    assert_eq!(
        sent_body(LAYERED_CONTEXT, at_start).await,
        "k=from-start",
        "the context given at start wins over both of the file's"
    );
    assert_eq!(
        sent_body(LAYERED_CONTEXT, StartOptions::default()).await,
        "k=from-run-webhook",
        "without it, runWebhook.context wins over the file's context"
    );
    let file_only = LAYERED_CONTEXT.replace(", context: {k: from-run-webhook}", "");
    assert_ne!(file_only, LAYERED_CONTEXT);
    assert_eq!(
        sent_body(&file_only, StartOptions::default()).await,
        "k=from-file",
        "with only the file's context, the file's value"
    );
}

/// A target with no `account` whose webhook goes through a remote network agent.
const AGENT_WITHOUT_ACCOUNT: &str = r#"
application: checkout
targets: {prod: {namespace: checkout-prod, constraints: {beforeDeployment: [runWebhook: {name: hook}]}}}
webhooks:
  - name: hook
    uriTemplate: "{{secrets.base}}/hook"
    networkMode: remoteNetworkAgent
    agentIdentifier: agent-7
    bodyTemplate: {inline: "account={{armory.accountName}}"}
"#;

/// PROTOCOL.md §3: `armory.accountName` is the target's `account`, or, for a target without
/// one, the webhook's remote network agent identifier.
#[tokio::test]
async fn account_name_is_the_agent_identifier_for_a_target_without_an_account() {
    let plan =
        Plan::from_yaml(AGENT_WITHOUT_ACCOUNT).expect("a target without an account is valid");
    assert_eq!(plan.remote_agents().collect::<Vec<_>>(), ["agent-7"]);
    let (deployment, call) = start(AGENT_WITHOUT_ACCOUNT, StartOptions::default());
    let prepared = dispatcher(MemorySecrets::new()).prepare(&deployment, &call, None);
    assert_eq!(prepared.armory().account_name, "agent-7");

    assert_eq!(
        sent_body(AGENT_WITHOUT_ACCOUNT, StartOptions::default()).await,
        "account=agent-7"
    );
    // With an account, the account wins over the agent identifier.
    let with_account = AGENT_WITHOUT_ACCOUNT.replace("{namespace:", "{account: acct-1, namespace:");
    assert_ne!(with_account, AGENT_WITHOUT_ACCOUNT);
    assert_eq!(
        sent_body(&with_account, StartOptions::default()).await,
        "account=acct-1"
    );
}
