//! Deadlines fired late (a timer held up, a replica taking a deployment over, a restart after
//! downtime): a pause that ended long ago moves the deployment on as a timer on time would
//! have, but the work its end asks for is not timed out before anyone has performed it.
#![cfg(feature = "test-util")]

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use hookgate::core::{Action, DeploymentStatus, HostStep};
use hookgate::test_util::Harness;

fn minutes(n: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(n)
}

/// A one-minute pause before a deploy step that times out after a minute.
const PAUSE_THEN_DEPLOY: &str = "application: a\ndeploymentConfig: {timeout: {duration: 1, unit: minutes}}\ntargets: {x: {constraints: {beforeDeployment: [pause: {duration: 1, unit: minutes}]}}}";

/// `x`'s five-minute pause after deploying, then `y`'s webhook and an approval expiring after
/// a minute.
const PAUSE_THEN_CALL_AND_APPROVAL: &str = "application: a\ntargets:\n  x: {constraints: {afterDeployment: [pause: {duration: 5, unit: minutes}]}}\n  y: {constraints: {dependsOn: [x], beforeDeployment: [runWebhook: {name: w}, pause: {untilApproved: true, approvalExpiration: {duration: 1, unit: minutes}}]}}\nwebhooks: [{name: w, uriTemplate: 'https://w.example/x'}]";

/// `x` deployed, its after-deployment pause running.
fn verifying() -> Harness {
    let mut h = start(PAUSE_THEN_CALL_AND_APPROVAL);
    steps_ok(&mut h);
    assert!(h.pending().is_empty(), "{:?}", h.pending());
    h
}

#[test]
fn a_late_timer_asks_for_the_deploy_step_without_timing_it_out() {
    let mut h = start(PAUSE_THEN_DEPLOY);
    assert!(h.pending().is_empty());
    h.deployment.handle_timeout(minutes(10));
    h.sync();
    assert!(
        matches!(h.pending(), [Action::RunStep(s)] if s.step == HostStep::Deploy),
        "{:?}",
        h.pending()
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Running);
    // Timed from when it is asked for.
    assert_eq!(h.deployment.poll_timeout(), Some(minutes(11)));
}

#[test]
fn a_late_cancel_cancels_rather_than_fail_on_work_never_asked_for() {
    let mut h = start(PAUSE_THEN_DEPLOY);
    h.deployment.handle_cancel(minutes(10), "ops").unwrap();
    assert_eq!(h.deployment.status(), DeploymentStatus::Canceled);
    h.sync();
    assert!(
        !h.pending()
            .iter()
            .any(|a| matches!(a, Action::RunStep(s) if s.step == HostStep::Deploy)),
        "a canceled deployment asks the host to deploy"
    );

    let mut h = verifying();
    h.deployment.handle_cancel(minutes(10), "ops").unwrap();
    assert_eq!(h.deployment.status(), DeploymentStatus::Canceled);
    h.sync();
    assert!(
        !h.pending()
            .iter()
            .any(|a| matches!(a, Action::CallWebhook(_) | Action::RequestApproval(_))),
        "{:?}",
        h.pending()
    );
}

#[test]
fn a_late_timer_sends_the_call_and_asks_for_the_approval_without_expiring_it() {
    let mut h = verifying();
    h.deployment.handle_timeout(minutes(10));
    h.sync();
    let actions = h.pending();
    assert!(
        actions.iter().any(|a| matches!(a, Action::CallWebhook(_)))
            && actions
                .iter()
                .any(|a| matches!(a, Action::RequestApproval(_))),
        "{actions:?}"
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Running);
}
