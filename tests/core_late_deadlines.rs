//! Deadlines fired late (a timer held up, a replica taking a deployment over, a restart after
//! downtime): a pause that ended long ago moves the deployment on as a timer on time would
//! have, but the work its end asks for is not timed out before anyone has performed it.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hookgate::config::Plan;
use hookgate::core::{
    Action, CallbackId, Deployment, DeploymentId, DeploymentStatus, HostStep, IdSource,
    StartOptions,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn minutes(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(n)
}

struct Ids(u128);

impl IdSource for Ids {
    fn callback_id(&mut self) -> CallbackId {
        self.0 += 1;
        CallbackId(self.0.to_be_bytes())
    }
}

fn start(yaml: &str) -> Deployment {
    let plan = Arc::new(Plan::from_yaml(yaml).unwrap());
    Deployment::start(
        plan,
        DeploymentId::from("d"),
        StartOptions::default(),
        &mut Ids(0),
        t0(),
    )
}

fn drain(d: &mut Deployment) -> Vec<Action> {
    while d.poll_event().is_some() {}
    std::iter::from_fn(|| d.poll_action()).collect()
}

/// A one-minute pause before a deploy step that times out after a minute.
const PAUSE_THEN_DEPLOY: &str = "application: a\ndeploymentConfig: {timeout: {duration: 1, unit: minutes}}\ntargets: {x: {constraints: {beforeDeployment: [pause: {duration: 1, unit: minutes}]}}}";

/// `x`'s five-minute pause after deploying, then `y`'s webhook and an approval expiring after
/// a minute.
const PAUSE_THEN_CALL_AND_APPROVAL: &str = "application: a\ntargets:\n  x: {constraints: {afterDeployment: [pause: {duration: 5, unit: minutes}]}}\n  y: {constraints: {dependsOn: [x], beforeDeployment: [runWebhook: {name: w}, pause: {untilApproved: true, approvalExpiration: {duration: 1, unit: minutes}}]}}\nwebhooks: [{name: w, uriTemplate: 'https://w.example/x'}]";

/// `x` deployed, its after-deployment pause running.
fn verifying() -> Deployment {
    let mut d = start(PAUSE_THEN_CALL_AND_APPROVAL);
    for action in drain(&mut d) {
        if let Action::RunStep(step) = action {
            d.handle_step_result(t0(), step.op, hookgate::core::StepOutcome::Succeeded)
                .unwrap();
        }
    }
    assert!(drain(&mut d).is_empty());
    d
}

#[test]
fn a_late_timer_asks_for_the_deploy_step_without_timing_it_out() {
    let mut d = start(PAUSE_THEN_DEPLOY);
    assert!(drain(&mut d).is_empty());
    d.handle_timeout(minutes(10));
    let actions = drain(&mut d);
    assert!(
        matches!(&actions[..], [Action::RunStep(s)] if s.step == HostStep::Deploy),
        "{actions:?}"
    );
    assert_eq!(d.status(), DeploymentStatus::Running);
    // Timed from when it is asked for.
    assert_eq!(d.poll_timeout(), Some(minutes(11)));
}

#[test]
fn a_late_cancel_cancels_rather_than_fail_on_work_never_asked_for() {
    let mut d = start(PAUSE_THEN_DEPLOY);
    drain(&mut d);
    d.handle_cancel(minutes(10), "ops").unwrap();
    assert_eq!(d.status(), DeploymentStatus::Canceled);
    assert!(
        !drain(&mut d)
            .iter()
            .any(|a| matches!(a, Action::RunStep(s) if s.step == HostStep::Deploy)),
        "a canceled deployment asks the host to deploy"
    );

    let mut d = verifying();
    d.handle_cancel(minutes(10), "ops").unwrap();
    assert_eq!(d.status(), DeploymentStatus::Canceled);
    let actions = drain(&mut d);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::CallWebhook(_) | Action::RequestApproval(_))),
        "{actions:?}"
    );
}

#[test]
fn a_late_timer_sends_the_call_and_asks_for_the_approval_without_expiring_it() {
    let mut d = verifying();
    d.handle_timeout(minutes(10));
    let actions = drain(&mut d);
    assert!(
        actions.iter().any(|a| matches!(a, Action::CallWebhook(_)))
            && actions
                .iter()
                .any(|a| matches!(a, Action::RequestApproval(_))),
        "{actions:?}"
    );
    assert_eq!(d.status(), DeploymentStatus::Running);
}
