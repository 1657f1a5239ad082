//! Pieces the benchmarks and load harnesses share.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use hookgate::core::{CallbackId, IdSource};
use hookgate::outbound::Dispatcher;
use hookgate::secrets::MemorySecrets;
use hookgate::transport::{TransportError, TransportRegistry};

/// One target with one webhook gate before deploying: each callback opens the way to one
/// deploy step, which finishes the deployment.
pub const ONE_GATE: &str = r#"
application: load
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: gate}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    headers: [{key: Content-Type, value: application/json}]
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
"#;

/// [`ONE_GATE`] with its gate after deploying: the deploy step has run by the time the gate
/// waits, and each callback finishes its deployment, asking for nothing more.
pub fn one_gate_after_deploy() -> String {
    ONE_GATE.replace("beforeDeployment", "afterDeployment")
}

/// A three-environment plan: dev (a webhook before deploying) → staging (canary with a webhook
/// step, a webhook after deploying) → prod (a webhook and an approval before deploying).
pub const THREE_ENVIRONMENTS: &str = r#"
application: checkout
targets:
  dev:
    constraints:
      beforeDeployment: [runWebhook: {name: ticket}]
  staging:
    strategy: canary
    constraints: {dependsOn: [dev], afterDeployment: [runWebhook: {name: smoke}]}
  prod:
    strategy: canary
    constraints:
      dependsOn: [staging]
      beforeDeployment: [runWebhook: {name: ticket}, pause: {untilApproved: true}]
strategies:
  canary: {canary: {steps: [setWeight: {weight: 25}, runWebhook: {name: smoke}, setWeight: {weight: 100}]}}
webhooks:
  - {name: ticket, uriTemplate: 'https://t.example/{{armory.deploymentId}}'}
  - {name: smoke, uriTemplate: 'https://s.example', retryCount: 3}
"#;

/// Callback ids 1, 2, 3, ... without the `test-util` feature.
pub struct Counter(pub u128);

impl IdSource for Counter {
    fn callback_id(&mut self) -> CallbackId {
        self.0 += 1;
        CallbackId(self.0.to_be_bytes())
    }
}

/// This process's resident memory, from /proc/self/statm.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// A dispatcher whose every webhook call is answered 202 in-process, with no network.
pub fn accepting_dispatcher() -> Dispatcher {
    let accept = |_request: http::Request<Bytes>| async {
        Ok::<_, TransportError>(
            http::Response::builder()
                .status(202)
                .body(Bytes::new())
                .expect("a static response"),
        )
    };
    Dispatcher::builder(
        TransportRegistry::new(Arc::new(accept)),
        Arc::new(MemorySecrets::new()),
        "https://gates.example",
    )
    .build()
    .expect("a dispatcher")
}

/// Armory's GitHub `repository_dispatch` webhook, with the API base URL and token as secrets
/// `github_base` and `github_token`.
pub const GITHUB_DISPATCH: &str = r#"
application: potato-facts
context: {owner: armory, repo: docs-cdaas-sample}
targets: {staging: {account: demo-staging-cluster, constraints: {beforeDeployment: [runWebhook: {name: Check-Logs}]}}}
webhooks:
  - name: Check-Logs
    uriTemplate: "{{secrets.github_base}}/repos/{{context.owner}}/{{context.repo}}/dispatches"
    headers:
      - {key: Authorization, value: "token {{secrets.github_token}}"}
      - {key: Content-Type, value: application/json}
    bodyTemplate:
      inline: '{"event_type": "webhookCallback", "client_payload": {"callbackUri": "{{armory.callbackUri}}/callback"}}'
"#;

/// A bare core deployment `core-{i}` of `plan` started at `now`, driven as an engine with
/// `SimulatedHost` and a transport answering 202 drives it, until it waits on callbacks or an
/// approval; its events drained.
pub fn core_waiting(
    plan: &Arc<hookgate::config::Plan>,
    i: usize,
    ids: &mut impl IdSource,
    now: chrono::DateTime<chrono::Utc>,
) -> hookgate::core::Deployment {
    use hookgate::core::{Action, CallResult, Deployment, StartOptions, StepOutcome};
    let mut d = Deployment::start(
        Arc::clone(plan),
        format!("core-{i}").as_str().into(),
        StartOptions::default(),
        ids,
        now,
    );
    while let Some(action) = d.poll_action() {
        match action {
            Action::CallWebhook(call) => d
                .handle_call_result(
                    now,
                    call.gate,
                    call.attempt,
                    CallResult::Sent { status: 202 },
                )
                .expect("the call is answered"),
            Action::RunStep(step) => d
                .handle_step_result(now, step.op, StepOutcome::Succeeded)
                .expect("the step is answered"),
            Action::RequestApproval(_) => {}
            other => unreachable!("nothing fails or rolls back: {other:?}"),
        }
    }
    while d.poll_event().is_some() {}
    d
}

/// A deployment of `plan` started now, and the webhook call it asks for first.
pub fn first_call(plan: &str) -> (hookgate::core::Deployment, hookgate::core::WebhookCall) {
    use hookgate::core::{Action, Deployment, StartOptions};
    let plan = Arc::new(hookgate::config::Plan::from_yaml(plan).expect("the plan is valid"));
    let mut deployment = Deployment::start(
        plan,
        "d-42".into(),
        StartOptions::default(),
        &mut hookgate::ids::RandomIds,
        chrono::Utc::now(),
    );
    let Some(Action::CallWebhook(call)) = deployment.poll_action() else {
        panic!("the plan calls a webhook first")
    };
    (deployment, call)
}

/// The first numeric command-line argument, or `default`.
pub fn count_arg(default: usize) -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A tokio runtime with two workers, the size of the machines these harnesses run on.
pub fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// User + system CPU time of this process, in seconds, from `/proc` (Linux only).
pub fn cpu_time() -> Option<f64> {
    cpu_times().map(|(user, system)| user + system)
}

/// User and system CPU time of this process, in seconds, from `/proc` (Linux only): apart, they
/// tell the work of the process's own code from the kernel's work for it (loopback TCP).
pub fn cpu_times() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name start at field 3; utime and stime are 14, 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // The kernel reports in USER_HZ, which is 100 on every Linux ABI in use.
    Some((ticks(11)? / 100.0, ticks(12)? / 100.0))
}
