//! Runs a deployment file through hookgate's core on simulated time and prints its timeline.
//!
//! ```text
//! cargo run --example simulate -- [FILE] [--fail WEBHOOK]...
//! ```
//!
//! Without FILE it uses a built-in dev → staging → prod file. Host steps succeed, external
//! systems call back 3 minutes after each webhook call (with `success: false` for the webhooks
//! named by `--fail`), and manual approvals are granted after 10 minutes. No network, no clock:
//! this is the core's run loop, with the host's answers scheduled on a simulated timeline.
//! Keys of the file that hookgate does not read are noted on stderr (`note: … is not read by
//! hookgate`), and those likely meant to be one it reads, misspelt or misplaced, are warned of
//! with that key (`warning: …; did you mean `beforeDeployment`?`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hookgate::config::Plan;
use hookgate::core::{
    Action, ApprovalKind, CallResult, CoreError, Decision, Deployment, DeploymentId, EventKind,
    OpId, StartOptions, StepOutcome,
};
use hookgate::ids::RandomIds;

const DEFAULT_FILE: &str = r#"
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
      beforeDeployment:
        - pause: {untilApproved: true, requiresRoles: [release-manager]}
strategies:
  canary:
    canary:
      steps:
        - setWeight: {weight: 25}
        - runWebhook: {name: integration-tests}
        - pause: {duration: 5, unit: minutes}
        - setWeight: {weight: 100}
webhooks:
  - name: change-ticket
    uriTemplate: https://tickets.example.com/hooks?deployment={{armory.deploymentId}}
    headers: [{key: Content-Type, value: application/json}]
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}/callback"}'}
  - name: integration-tests
    uriTemplate: https://ci.example.com/run/{{armory.environmentName}}
    retryCount: 3
  - name: smoke-tests
    uriTemplate: https://ci.example.com/smoke/{{armory.environmentName}}
"#;

/// What the simulated world will do, and when.
enum Scheduled {
    Callback { action: Action, success: bool },
    Approval { action: Action },
}

/// Answers a host step or rollback as succeeded at once. With a zero
/// `deploymentConfig.timeout` its deadline is `now` itself, so the timeout fires first and the
/// answer is stale: the step has failed, as a host answering that late would see.
fn answer_step(deployment: &mut Deployment, now: DateTime<Utc>, op: OpId) {
    match deployment.handle_step_result(now, op, StepOutcome::Succeeded) {
        Ok(()) | Err(CoreError::Stale) => {}
        Err(e) => panic!("a step just asked for refused its result: {e}"),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut failing = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--fail" => match args.next() {
                Some(name) => failing.push(name),
                None => return usage("--fail needs a webhook name"),
            },
            path if file.is_none() => file = Some(path.to_owned()),
            other => return usage(&format!("unexpected argument {other:?}")),
        }
    }
    let text = match &file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return usage(&format!("cannot read {path}: {e}")),
        },
        None => DEFAULT_FILE.to_owned(),
    };
    let plan = match Plan::from_yaml(&text) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // No error (Armory files carry fields hookgate has no use for), but a misspelt key is one
    // of them, and what it meant is missing from the timeline below.
    for field in plan.ignored_fields() {
        if !plan.near_misses().iter().any(|miss| &miss.path == field) {
            eprintln!("note: {} is not read by hookgate", field.escape_debug());
        }
    }
    for miss in plan.near_misses() {
        eprintln!("warning: {miss}");
    }
    for webhook in plan.webhooks_with_unescaped_json() {
        eprintln!(
            "warning: webhook {:?} sends a JSON-looking body without a JSON Content-Type, so its values go in unescaped",
            webhook.name
        );
    }
    // A misspelt name would otherwise run the happy path it was meant to break.
    if let Some(unknown) = failing
        .iter()
        .find(|name| !plan.webhooks().iter().any(|w| &w.name == *name))
    {
        return usage(&format!("--fail {unknown:?} names no webhook of the file"));
    }
    let start = Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap();
    let mut deployment = Deployment::start(
        Arc::clone(&plan),
        DeploymentId::from("sim-1"),
        StartOptions::default().with_seed(1),
        &mut RandomIds,
        start,
    );
    let mut now = start;
    let mut world: BTreeMap<(DateTime<Utc>, u64), Scheduled> = BTreeMap::new();
    let mut seq = 0;
    loop {
        while let Some(action) = deployment.poll_action() {
            seq += 1;
            match &action {
                Action::RunStep(step) => answer_step(&mut deployment, now, step.op),
                Action::RollBack { op, .. } => answer_step(&mut deployment, now, *op),
                Action::CallWebhook(call) => {
                    let name = &plan.webhook(call.webhook).name;
                    let success = !failing.contains(name);
                    deployment
                        .handle_call_result(
                            now,
                            call.gate,
                            call.attempt,
                            CallResult::Sent { status: 202 },
                        )
                        .expect("the call was just asked for");
                    world.insert(
                        (now + TimeDelta::minutes(3), seq),
                        Scheduled::Callback { action, success },
                    );
                }
                Action::RequestApproval(_) => {
                    world.insert(
                        (now + TimeDelta::minutes(10), seq),
                        Scheduled::Approval { action },
                    );
                }
                _ => {}
            }
        }
        while let Some(event) = deployment.poll_event() {
            print_event(&plan, start, event.at, &event.kind);
        }
        if deployment.is_finished() {
            break;
        }
        let next_world = world.keys().next().map(|(at, _)| *at);
        let next_core = deployment.poll_timeout();
        let Some(at) = [next_world, next_core].into_iter().flatten().min() else {
            eprintln!("the deployment is stuck: nothing left to wait for");
            return ExitCode::FAILURE;
        };
        now = now.max(at);
        if next_core.is_some_and(|t| t <= now) {
            deployment.handle_timeout(now);
        }
        while let Some(entry) = world.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Scheduled::Callback {
                    action: Action::CallWebhook(call),
                    success,
                } => {
                    let message = if success {
                        "all checks passed"
                    } else {
                        "checks failed"
                    };
                    let _ = deployment.handle_callback(
                        now,
                        call.callback_id,
                        success,
                        Some(message.into()),
                    );
                }
                Scheduled::Approval {
                    action: Action::RequestApproval(req),
                } => {
                    let roles = match req.kind {
                        ApprovalKind::Manual { roles } => roles,
                        _ => Vec::new(),
                    };
                    let _ = deployment.handle_approval(
                        now,
                        req.gate,
                        Decision::approve("simulated-approver", roles),
                    );
                }
                _ => {}
            }
        }
    }
    println!("\noutcome: {}", deployment.status());
    for (i, env) in plan.environments().iter().enumerate() {
        let id = hookgate::config::EnvId(i as u16);
        println!("  {:<12} {}", env.name(), deployment.env_status(id));
    }
    if deployment.status().as_str() == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_event(plan: &Plan, start: DateTime<Utc>, at: DateTime<Utc>, kind: &EventKind) {
    // The timeline's story; the rest (gates opening, attempts answered) is detail.
    let shown = matches!(
        kind,
        EventKind::EnvironmentStatus { .. }
            | EventKind::WebhookAttempt { .. }
            | EventKind::CallbackReceived { .. }
            | EventKind::ApprovalDecided { .. }
            | EventKind::GatePassed { .. }
            | EventKind::GateFailed { .. }
            | EventKind::DeploymentFinished { .. }
    );
    if shown {
        let t = at - start;
        let stamp = format!("+{:02}:{:02}", t.num_hours(), t.num_minutes() % 60);
        println!("{stamp}  {}", kind.describe(plan));
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("{problem}\nusage: simulate [FILE] [--fail WEBHOOK]...");
    ExitCode::from(2)
}
