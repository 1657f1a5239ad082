//! Shared helpers for the core's scenario tests.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use hookgate::config::{GateId, Plan};
use hookgate::core::{Action, CallResult, StartOptions, StepOutcome, StepRequest};
use hookgate::test_util::Harness;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

pub fn plan(yaml: &str) -> Arc<Plan> {
    Arc::new(Plan::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}")))
}

pub fn start(yaml: &str) -> Harness {
    Harness::start(plan(yaml), StartOptions::default().with_seed(7), t0())
}

/// The gate at a file path such as `targets.prod.constraints.beforeDeployment[0]`.
pub fn gate(h: &Harness, path: &str) -> GateId {
    let plan = h.deployment.plan();
    let i = plan
        .gates()
        .iter()
        .position(|g| g.path() == path)
        .unwrap_or_else(|| panic!("no gate at {path}"));
    GateId(i as u32)
}

pub fn steps_ok(h: &mut Harness) {
    h.answer_steps(|_| StepOutcome::Succeeded);
}

pub fn sent(h: &mut Harness) -> Vec<GateId> {
    h.answer_calls(|_| CallResult::Sent { status: 202 })
        .into_iter()
        .map(|c| c.gate)
        .collect()
}

pub fn approvals(h: &Harness) -> Vec<GateId> {
    h.pending()
        .iter()
        .filter_map(|a| match a {
            Action::RequestApproval(r) => Some(r.gate),
            _ => None,
        })
        .collect()
}

pub fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A webhooks section with the named callback webhooks.
pub const HOOKS: &str = r#"
webhooks:
  - {name: ticket, uriTemplate: "https://tickets.example/{{armory.deploymentId}}"}
  - {name: tests, uriTemplate: "https://ci.example/run", retryCount: 2}
  - {name: smoke, uriTemplate: "https://ci.example/smoke"}
  - {name: fire-and-forget, uriTemplate: "https://hooks.example/x", disableCallback: true}
"#;

/// The host step asked for first (the first environment's deploy step, when nothing comes
/// before it).
pub fn first_step(h: &Harness) -> StepRequest {
    match h.pending().first() {
        Some(Action::RunStep(step)) => step.clone(),
        other => panic!(
            "expected a host step first, not {other:?}: {:?}",
            h.pending()
        ),
    }
}
