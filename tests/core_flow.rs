//! Scenario tests of PROTOCOL.md §4's evaluation rules, on simulated time, asserting the
//! transcript of environment statuses.
#![cfg(feature = "test-util")]

mod common;

use chrono::TimeDelta;
use common::*;
use hookgate::core::{
    Action, CallResult, DeploymentState, DeploymentStatus, EnvStatus, EventKind, GateState,
    HostStep, Resolution, StartOptions, StepOutcome,
};

/// Inputs given to the harness's deployment directly are taken in by the harness's next
/// method that answers actions, or by `sync` for `pending` and `events`.
#[test]
fn the_harness_takes_in_what_inputs_given_to_its_deployment_directly_produced() {
    // A ticket called and passed through the deployment itself: its deploy step is asked for.
    let passed_directly = || {
        let mut h = start(
            "application: a\ntargets: {dev: {constraints: {beforeDeployment: [runWebhook: {name: ticket}]}}}\nwebhooks: [{name: ticket, uriTemplate: 'https://t.example'}]",
        );
        let call = h.take_calls().remove(0);
        let now = h.now();
        h.deployment
            .handle_call_result(
                now,
                call.gate,
                call.attempt,
                CallResult::Sent { status: 202 },
            )
            .unwrap();
        let (_, callback) = h.deployment.callback_ids().next().unwrap();
        h.deployment
            .handle_callback(now, callback, true, None)
            .unwrap();
        h
    };
    let mut h = passed_directly();
    assert!(h.pending().is_empty(), "not taken in yet");
    h.sync();
    assert!(
        matches!(h.pending(), [Action::RunStep(_)]),
        "{:?}",
        h.pending()
    );
    assert!(
        h.events()
            .iter()
            .any(|e| matches!(e.kind, EventKind::GatePassed { .. }))
    );
    assert_eq!(h.answer_steps(|_| StepOutcome::Succeeded).len(), 1);
    assert_eq!(h.deployment.status(), DeploymentStatus::Succeeded);

    // Without `sync`, the next answer takes them in itself.
    let mut h = passed_directly();
    assert_eq!(h.answer_steps(|_| StepOutcome::Succeeded).len(), 1);
    assert_eq!(h.deployment.status(), DeploymentStatus::Succeeded);

    // A decision takes in the approval's request first, and then takes it out.
    let mut h = start(
        "application: a\ntargets:\n  dev: {}\n  prod: {constraints: {dependsOn: [dev], beforeDeployment: [pause: {untilApproved: true}]}}",
    );
    let deploy = first_step(&h);
    let now = h.now();
    h.deployment
        .handle_step_result(now, deploy.op, StepOutcome::Succeeded)
        .unwrap();
    let approval = gate(&h, "targets.prod.constraints.beforeDeployment[0]");
    h.decide(
        approval,
        hookgate::core::Decision::approve("alice", Vec::<String>::new()),
    )
    .unwrap();
    assert!(
        !h.pending()
            .iter()
            .any(|a| matches!(a, Action::RequestApproval(_))),
        "{:?}",
        h.pending()
    );
}

/// One step's or call's result through the harness takes it out of the pending actions, so
/// that the answering methods do not answer it a second time; a refused one stays pending.
#[test]
fn the_harness_takes_a_step_or_call_it_answered_one_by_one_out_of_pending() {
    let mut h = start(
        "application: a\ntargets:\n  dev: {}\n  prod: {constraints: {dependsOn: [dev], beforeDeployment: [runWebhook: {name: ticket}]}}\nwebhooks: [{name: ticket, uriTemplate: 'https://t.example'}]",
    );
    let deploy = first_step(&h);
    h.step_result(deploy.op, StepOutcome::Succeeded).unwrap();
    assert!(
        h.step_result(deploy.op, StepOutcome::Succeeded).is_err(),
        "a second result for the same step is refused"
    );
    let [Action::CallWebhook(call)] = h.pending() else {
        panic!("only prod's ticket is pending: {:?}", h.pending())
    };
    let call = call.clone();
    assert!(
        h.call_result(
            call.gate,
            call.attempt + 1,
            CallResult::Sent { status: 202 }
        )
        .is_err(),
        "another attempt's result is refused"
    );
    assert_eq!(
        h.pending().len(),
        1,
        "a refused result leaves the call pending"
    );
    h.call_result(call.gate, call.attempt, CallResult::Sent { status: 202 })
        .unwrap();
    assert!(h.pending().is_empty(), "{:?}", h.pending());
    assert!(
        h.answer_calls(|_| CallResult::Sent { status: 202 })
            .is_empty()
    );

    // A call the core no longer waits for (the deployment was canceled) leaves pending too.
    let mut h = start(
        "application: a\ntargets: {dev: {constraints: {beforeDeployment: [runWebhook: {name: ticket}]}}}\nwebhooks: [{name: ticket, uriTemplate: 'https://t.example'}]",
    );
    let [Action::CallWebhook(call)] = h.pending() else {
        panic!("{:?}", h.pending())
    };
    let call = call.clone();
    h.cancel("ops").unwrap();
    assert_eq!(
        h.call_result(call.gate, call.attempt, CallResult::Sent { status: 202 }),
        Err(hookgate::core::CoreError::Stale)
    );
    assert!(
        !h.pending()
            .iter()
            .any(|a| matches!(a, Action::CallWebhook(_))),
        "{:?}",
        h.pending()
    );
}

#[test]
fn environments_wait_for_depends_on_including_after_deployment() {
    let mut h = start(&format!(
        r#"
application: app
targets:
  dev: {{constraints: {{afterDeployment: [runWebhook: {{name: smoke}}]}}}}
  staging: {{constraints: {{dependsOn: [dev]}}}}
{HOOKS}"#
    ));
    steps_ok(&mut h);
    sent(&mut h);
    assert_eq!(
        h.deployment
            .env_status(h.deployment.plan().environment_by_name("staging").unwrap()),
        EnvStatus::Pending,
        "staging waits while dev's afterDeployment is open"
    );
    h.callback(
        gate(&h, "targets.dev.constraints.afterDeployment[0]"),
        true,
        None,
    )
    .unwrap();
    steps_ok(&mut h);
    assert_eq!(
        h.status_transcript(),
        lines(&[
            "dev: pending",
            "staging: pending",
            "dev: deploying",
            "dev: verifying",
            "dev: succeeded",
            "staging: deploying",
            "staging: succeeded",
            "deployment: succeeded",
        ])
    );
}

#[test]
fn independent_environments_start_at_once_in_parallel() {
    let mut h =
        start("application: app\ntargets: {a: {}, b: {}, c: {constraints: {dependsOn: [a, b]}}}");
    let deploys = h
        .pending()
        .iter()
        .filter(|a| matches!(a, Action::RunStep(r) if r.step == HostStep::Deploy))
        .count();
    assert_eq!(deploys, 2, "a and b deploy together; c waits for both");
    steps_ok(&mut h);
    assert_eq!(h.deployment.status(), DeploymentStatus::Succeeded);
}

#[test]
fn constraint_list_starts_every_entry_together() {
    let mut h = start(&format!(
        r#"
application: app
targets:
  prod:
    constraints:
      beforeDeployment:
        - runWebhook: {{name: ticket}}
        - pause: {{untilApproved: true}}
        - pause: {{duration: 5, unit: minutes}}
{HOOKS}"#
    ));
    let calls = h.take_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(approvals(&h).len(), 1);
    assert!(matches!(
        h.deployment
            .gate_state(gate(&h, "targets.prod.constraints.beforeDeployment[2]")),
        GateState::Pausing { .. }
    ));
    assert_eq!(
        h.deployment.poll_timeout(),
        Some(t0() + TimeDelta::minutes(5))
    );
}

#[test]
fn constraint_list_passes_when_every_entry_passes() {
    let mut h = start(&format!(
        r#"
application: app
targets:
  prod:
    constraints:
      beforeDeployment:
        - runWebhook: {{name: ticket}}
        - pause: {{duration: 5, unit: minutes}}
{HOOKS}"#
    ));
    let ticket = sent(&mut h)[0];
    h.callback(ticket, true, None).unwrap();
    assert_eq!(
        h.deployment.env_status(hookgate::config::EnvId(0)),
        EnvStatus::Checking,
        "the pause is still running"
    );
    assert!(h.advance_to_next_deadline());
    assert_eq!(h.now(), t0() + TimeDelta::minutes(5));
    steps_ok(&mut h);
    assert_eq!(h.deployment.status(), DeploymentStatus::Succeeded);
}

#[test]
fn failing_webhook_fails_fast_without_waiting_for_pending_manual_approval() {
    let mut h = start(&format!(
        r#"
application: app
targets:
  prod:
    constraints:
      beforeDeployment:
        - pause: {{untilApproved: true}}
        - runWebhook: {{name: ticket}}
{HOOKS}"#
    ));
    let approval = approvals(&h)[0];
    let ticket = sent(&mut h)[0];
    h.callback(ticket, false, Some("ticket rejected")).unwrap();
    assert_eq!(
        h.deployment.gate_state(approval),
        GateState::Closed(Resolution::Superseded)
    );
    assert_eq!(
        h.status_transcript(),
        lines(&[
            "prod: pending",
            "prod: checking",
            "prod: failed",
            "deployment: failed"
        ])
    );
    assert_eq!(
        h.decide(approval, hookgate::core::Decision::approve("alice", ["x"])),
        Err(hookgate::core::CoreError::GateClosed {
            how: hookgate::core::Resolution::Superseded
        }),
        "a closed approval cannot be decided"
    );
    assert!(
        h.pending().iter().all(|a| !matches!(a, Action::RunStep(_))),
        "never deployed"
    );
}

#[test]
fn failing_webhook_in_strategy_rolls_back_without_waiting_for_pending_approval() {
    let mut h = start(&format!(
        r#"
application: app
targets: {{prod: {{strategy: bg}}}}
strategies:
  bg:
    blueGreen:
      activeService: web
      redirectTrafficAfter:
        - pause: {{untilApproved: true}}
        - runWebhook: {{name: tests}}
{HOOKS}"#
    ));
    steps_ok(&mut h);
    let tests = sent(&mut h)[0];
    h.callback(tests, false, Some("integration tests failed"))
        .unwrap();
    assert!(matches!(h.pending().last(), Some(Action::RollBack { .. })));
    steps_ok(&mut h);
    assert_eq!(
        h.status_transcript(),
        lines(&[
            "prod: pending",
            "prod: deploying",
            "prod: rolling_back",
            "prod: rolled_back",
            "deployment: rolled_back",
        ])
    );
}

#[test]
fn canary_steps_run_one_after_another() {
    let mut h = start(&format!(
        r#"
application: app
targets: {{prod: {{strategy: canary}}}}
strategies:
  canary:
    canary:
      steps:
        - setWeight: {{weight: 25}}
        - exposeServices: {{services: [web]}}
        - runWebhook: {{name: tests}}
        - pause: {{duration: 10, unit: minutes}}
        - analysis: {{queries: [errors]}}
        - setWeight: {{weight: 100}}
{HOOKS}"#
    ));
    let mut order = Vec::new();
    loop {
        let answered = h.answer_steps(|step| match step {
            HostStep::ExposeServices { .. } => StepOutcome::Exposed(
                [("web".to_owned(), "https://preview.example/web".to_owned())].into(),
            ),
            _ => StepOutcome::Succeeded,
        });
        order.extend(answered.into_iter().flatten().map(|s| s.name().to_owned()));
        let calls = sent(&mut h);
        for g in &calls {
            order.push("runWebhook".into());
            assert_eq!(
                h.pending().len(),
                0,
                "nothing else runs while the webhook is open"
            );
            h.callback(*g, true, None).unwrap();
        }
        if calls.is_empty() && !h.advance_to_next_deadline() && h.pending().is_empty() {
            break;
        }
    }
    assert_eq!(
        order,
        [
            "deploy",
            "setWeight",
            "exposeServices",
            "runWebhook",
            "analysis",
            "setWeight"
        ]
    );
    assert_eq!(
        h.now(),
        t0() + TimeDelta::minutes(10),
        "the pause took its time"
    );
    assert_eq!(
        h.deployment
            .preview_urls(hookgate::config::EnvId(0))
            .unwrap()["web"],
        "https://preview.example/web"
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Succeeded);
}

#[test]
fn blue_green_moves_traffic_then_shuts_the_old_version_down() {
    let mut h = start(&format!(
        r#"
application: app
targets: {{prod: {{strategy: bg}}}}
strategies:
  bg:
    blueGreen:
      activeService: web
      previewService: web-preview
      redirectTrafficAfter: [runWebhook: {{name: tests}}]
      shutDownOldVersionAfter: [pause: {{duration: 30, unit: minutes}}]
{HOOKS}"#
    ));
    let mut order = Vec::new();
    order.extend(
        h.answer_steps(|_| StepOutcome::Succeeded)
            .into_iter()
            .flatten(),
    );
    let tests = sent(&mut h)[0];
    h.callback(tests, true, None).unwrap();
    order.extend(
        h.answer_steps(|_| StepOutcome::Succeeded)
            .into_iter()
            .flatten(),
    );
    assert!(h.advance_to_next_deadline());
    order.extend(
        h.answer_steps(|_| StepOutcome::Succeeded)
            .into_iter()
            .flatten(),
    );
    assert_eq!(
        order,
        [
            HostStep::Deploy,
            HostStep::RedirectTraffic,
            HostStep::ShutDownOldVersion
        ]
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Succeeded);
}

#[test]
fn shutdown_gate_failure_rolls_back() {
    let mut h = start(&format!(
        r#"
application: app
targets: {{prod: {{strategy: bg}}}}
strategies:
  bg:
    blueGreen:
      activeService: web
      shutDownOldVersionAfter: [runWebhook: {{name: smoke}}]
{HOOKS}"#
    ));
    steps_ok(&mut h);
    let smoke = sent(&mut h)[0];
    h.callback(smoke, false, None).unwrap();
    steps_ok(&mut h);
    assert_eq!(h.deployment.status(), DeploymentStatus::RolledBack);
}

#[test]
fn outcome_before_failure_is_failed_never_deployed_and_dependents_canceled_transitively() {
    let mut h = start(&format!(
        r#"
application: app
targets:
  dev: {{constraints: {{beforeDeployment: [runWebhook: {{name: ticket}}]}}}}
  staging: {{constraints: {{dependsOn: [dev]}}}}
  prod: {{constraints: {{dependsOn: [staging]}}}}
  other: {{}}
{HOOKS}"#
    ));
    let ticket = sent(&mut h)[0];
    h.callback(ticket, false, None).unwrap();
    steps_ok(&mut h);
    let status = |name: &str| {
        let plan = h.deployment.plan();
        h.deployment
            .env_status(plan.environment_by_name(name).unwrap())
    };
    assert_eq!(status("dev"), EnvStatus::Failed);
    assert_eq!(status("staging"), EnvStatus::Canceled);
    assert_eq!(status("prod"), EnvStatus::Canceled);
    assert_eq!(status("other"), EnvStatus::Succeeded);
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
    let rollbacks = h
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RollbackStarted { .. }))
        .count();
    assert_eq!(rollbacks, 0, "nothing was deployed, nothing to roll back");
}

#[test]
fn outcome_strategy_failure_rolls_back_and_cancels_dependents() {
    let mut h = start(&format!(
        r#"
application: app
targets:
  staging: {{strategy: canary}}
  prod: {{constraints: {{dependsOn: [staging]}}}}
strategies:
  canary: {{canary: {{steps: [setWeight: {{weight: 50}}, runWebhook: {{name: tests}}]}}}}
{HOOKS}"#
    ));
    steps_ok(&mut h);
    let tests = sent(&mut h)[0];
    h.callback(tests, false, Some("3 tests failed")).unwrap();
    steps_ok(&mut h);
    assert_eq!(
        h.status_transcript(),
        lines(&[
            "staging: pending",
            "prod: pending",
            "staging: deploying",
            "staging: rolling_back",
            "staging: rolled_back",
            "prod: canceled",
            "deployment: rolled_back",
        ])
    );
}

/// PROTOCOL.md §4: a deployment that did not succeed and was not cancelled ends `rolled_back`
/// when any environment was rolled back, else `failed`, whichever environment ended first:
/// here one independent environment fails its beforeDeployment (failed, never deployed) and
/// the other a canary step (rolled back).
#[test]
fn outcome_is_rolled_back_when_any_environment_rolled_back_even_beside_a_failed_one() {
    let file = format!(
        r#"
application: app
targets:
  checks: {{constraints: {{beforeDeployment: [runWebhook: {{name: ticket}}]}}}}
  web: {{strategy: canary}}
strategies:
  canary: {{canary: {{steps: [setWeight: {{weight: 50}}, runWebhook: {{name: tests}}]}}}}
{HOOKS}"#
    );
    for canary_fails_first in [false, true] {
        let mut h = start(&file);
        let plan = std::sync::Arc::clone(h.deployment.plan());
        let env = |name: &str| plan.environment_by_name(name).unwrap();
        let checks = gate(&h, "targets.checks.constraints.beforeDeployment[0]");
        let web = gate(&h, "strategies.canary.canary.steps[1]");
        // Both gates are reached and sent before either fails.
        steps_ok(&mut h);
        let mut called = sent(&mut h);
        called.sort();
        let mut expected = vec![checks, web];
        expected.sort();
        assert_eq!(called, expected);

        let fail_checks = |h: &mut hookgate::test_util::Harness| {
            h.callback(checks, false, Some("no change ticket")).unwrap();
        };
        let fail_web = |h: &mut hookgate::test_util::Harness| {
            h.callback(web, false, Some("3 tests failed")).unwrap();
            steps_ok(h);
        };
        if canary_fails_first {
            fail_web(&mut h);
            assert_eq!(h.deployment.status(), DeploymentStatus::Running);
            fail_checks(&mut h);
        } else {
            fail_checks(&mut h);
            assert_eq!(h.deployment.status(), DeploymentStatus::Running);
            fail_web(&mut h);
        }

        assert_eq!(
            h.deployment.env_status(env("checks")),
            EnvStatus::Failed,
            "canary fails first: {canary_fails_first}"
        );
        assert_eq!(
            h.deployment.env_status(env("web")),
            EnvStatus::RolledBack,
            "canary fails first: {canary_fails_first}"
        );
        let rollbacks = h
            .events()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::RollbackStarted { .. }))
            .count();
        assert_eq!(rollbacks, 1, "only the canary environment is rolled back");
        assert_eq!(
            h.deployment.status(),
            DeploymentStatus::RolledBack,
            "canary fails first: {canary_fails_first}"
        );
        assert_eq!(
            h.status_transcript().last().map(String::as_str),
            Some("deployment: rolled_back")
        );
    }
}

#[test]
fn outcome_after_failure_is_failed_and_not_rolled_back() {
    let mut h = start(&format!(
        r#"
application: app
targets:
  prod: {{constraints: {{afterDeployment: [runWebhook: {{name: smoke}}]}}}}
  dr: {{constraints: {{dependsOn: [prod]}}}}
{HOOKS}"#
    ));
    steps_ok(&mut h);
    let smoke = sent(&mut h)[0];
    h.callback(smoke, false, None).unwrap();
    assert!(h.pending().is_empty(), "no rollback is asked for");
    assert_eq!(
        h.status_transcript(),
        lines(&[
            "prod: pending",
            "dr: pending",
            "prod: deploying",
            "prod: verifying",
            "prod: failed",
            "dr: canceled",
            "deployment: failed",
        ])
    );
}

#[test]
fn failed_host_step_rolls_back() {
    let mut h = start("application: app\ntargets: {prod: {}}");
    h.answer_steps(|_| StepOutcome::Failed {
        reason: "image pull failed".into(),
    });
    assert_eq!(h.deployment.status(), DeploymentStatus::RolledBack);
}

#[test]
fn host_step_longer_than_deployment_timeout_fails_and_rolls_back() {
    let mut h = start(
        "application: app\ndeploymentConfig: {timeout: {duration: 30, unit: minutes}}\ntargets: {prod: {}}",
    );
    let deploy = h.pending().to_vec();
    assert!(h.advance_to_next_deadline());
    assert_eq!(h.now(), t0() + TimeDelta::minutes(30));
    let Action::RunStep(late) = &deploy[0] else {
        panic!()
    };
    assert_eq!(
        h.deployment
            .handle_step_result(h.now(), late.op, StepOutcome::Succeeded),
        Err(hookgate::core::CoreError::Stale),
        "the late result is stale"
    );
    steps_ok(&mut h);
    assert_eq!(h.deployment.status(), DeploymentStatus::RolledBack);
}

#[test]
fn failed_rollback_leaves_the_environment_failed() {
    let mut h = start("application: app\ntargets: {prod: {}}");
    let deploy = first_step(&h);
    h.deployment
        .handle_step_result(
            h.now(),
            deploy.op,
            StepOutcome::Failed {
                reason: "boom".into(),
            },
        )
        .unwrap();
    let Some(Action::RollBack { op, .. }) = h.deployment.poll_action() else {
        panic!("a failed deploy is rolled back")
    };
    h.deployment
        .handle_step_result(
            h.now(),
            op,
            StepOutcome::Failed {
                reason: "stuck".into(),
            },
        )
        .unwrap();
    assert_eq!(
        h.deployment.env_status(hookgate::config::EnvId(0)),
        EnvStatus::Failed
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
}

#[test]
fn callback_results_drive_the_gate() {
    let mut h = start(&format!(
        "application: app\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: ticket}}]}}}}}}\n{HOOKS}"
    ));
    let ticket = sent(&mut h)[0];
    assert!(matches!(
        h.deployment.gate_state(ticket),
        GateState::AwaitingCallback { .. }
    ));
    h.callback(ticket, true, Some("CHG-1 approved")).unwrap();
    assert!(h.events().iter().any(|e| e.kind
        == EventKind::CallbackReceived {
            gate: ticket,
            success: true,
            message: Some("CHG-1 approved".into())
        }));
    assert_eq!(
        h.deployment.gate_state(ticket),
        GateState::Passed(Resolution::Callback)
    );
}

#[test]
fn disable_callback_passes_as_soon_as_the_call_succeeds() {
    let mut h = start(&format!(
        "application: app\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: fire-and-forget}}]}}}}}}\n{HOOKS}"
    ));
    let g = sent(&mut h)[0];
    assert_eq!(
        h.deployment.gate_state(g),
        GateState::Passed(Resolution::CallSucceeded)
    );
    assert!(matches!(
        h.callback(g, true, None),
        Err(hookgate::core::CoreError::GateClosed { .. })
    ));
    assert_eq!(
        h.deployment.poll_timeout(),
        None,
        "no callback timeout is armed"
    );
}

/// The call alone decides a `disableCallback` gate: a callback (or a progress note) that
/// reaches it before the call's result is refused as one after it is, and changes nothing.
#[test]
fn disable_callback_ignores_a_callback_that_arrives_before_the_call_result() {
    let mut h = start(&format!(
        "application: app\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: fire-and-forget}}]}}}}}}\n{HOOKS}"
    ));
    let call = h.take_calls().remove(0);
    let callback = h.deployment.callback_id(call.gate).unwrap();
    let before = h.deployment.state().clone();
    let now = h.now();
    assert_eq!(
        h.deployment.handle_callback(now, callback, false, None),
        Err(hookgate::core::CoreError::CallbackDisabled)
    );
    assert_eq!(
        h.deployment
            .handle_progress(now, callback, "half way".to_owned()),
        Err(hookgate::core::CoreError::CallbackDisabled)
    );
    assert_eq!(
        h.deployment.state(),
        &before,
        "a refused callback changes nothing"
    );

    h.deployment
        .handle_call_result(
            now,
            call.gate,
            call.attempt,
            CallResult::Sent { status: 202 },
        )
        .unwrap();
    assert_eq!(
        h.deployment.gate_state(call.gate),
        GateState::Passed(Resolution::CallSucceeded)
    );
}

#[test]
fn call_results_for_an_old_attempt_are_stale() {
    let mut h = start(&format!(
        "application: app\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: tests}}]}}}}}}\n{HOOKS}"
    ));
    let first = h.take_calls().remove(0);
    h.deployment
        .handle_call_result(
            h.now(),
            first.gate,
            first.attempt,
            CallResult::from_status(503, None),
        )
        .unwrap();
    assert!(h.advance_to_next_deadline(), "the retry is scheduled");
    let second = h.take_calls().remove(0);
    assert_eq!(second.gate, first.gate);
    assert_ne!(second.attempt, first.attempt);
    assert_eq!(
        h.deployment.gate_state(first.gate),
        GateState::Calling {
            attempt: second.attempt
        },
        "the retry is in flight"
    );
    // A late success for the first attempt must not be mistaken for the retry's answer.
    let before = h.deployment.state().clone();
    let now = h.now();
    assert_eq!(
        h.deployment.handle_call_result(
            now,
            first.gate,
            first.attempt,
            CallResult::Sent { status: 200 }
        ),
        Err(hookgate::core::CoreError::Stale)
    );
    assert_eq!(
        h.deployment.gate_state(first.gate),
        GateState::Calling {
            attempt: second.attempt
        }
    );
    assert_eq!(
        h.deployment.state(),
        &before,
        "a stale result changes nothing"
    );
}

/// What copies see of each other's preview URLs. That they share one map until it changes
/// is not visible from here; the unit test of the same name in `src/core/deployment.rs` checks it.
#[test]
fn copies_share_preview_urls_only_until_they_change() {
    let mut h = hookgate::test_util::Harness::start(
        plan(
            "application: app\ntargets: {prod: {strategy: canary}}\nstrategies: {canary: {canary: {steps: [exposeServices: {services: [web]}]}}}",
        ),
        StartOptions::default()
            .with_context("ticket", "T-1")
            .with_tenant("acme"),
        t0(),
    );
    let mut written = h.deployment.clone();
    let deploy = first_step(&h);
    let now = h.now();
    h.deployment
        .handle_step_result(now, deploy.op, StepOutcome::Succeeded)
        .unwrap();
    let expose = std::iter::from_fn(|| h.deployment.poll_action())
        .find_map(|a| match a {
            Action::RunStep(r) if matches!(r.step, HostStep::ExposeServices { .. }) => Some(r),
            _ => None,
        })
        .expect("exposeServices is asked for next");
    let kept = h.deployment.clone();
    written.clone_from(&h.deployment);
    h.deployment
        .handle_step_result(
            now,
            expose.op,
            StepOutcome::Exposed(
                [("web".to_owned(), "https://preview.example/web".to_owned())].into(),
            ),
        )
        .unwrap();
    let env = hookgate::config::EnvId(0);
    assert_eq!(
        h.deployment.preview_urls(env).unwrap()["web"],
        "https://preview.example/web"
    );
    assert_eq!(
        kept.preview_urls(env),
        None,
        "a copy taken before keeps none"
    );
    assert_eq!(
        written.preview_urls(env),
        None,
        "nor does one written over before"
    );
    assert_eq!(kept.state(), written.state());

    // Shared or not, these fields are stored as plain JSON values, as before.
    let json = serde_json::to_string(h.deployment.state()).unwrap();
    for field in [
        r#""context":{"ticket":"T-1"}"#,
        r#""tenant":"acme""#,
        r#""previews":{"0":{"web":"https://preview.example/web"}}"#,
    ] {
        assert!(json.contains(field), "{field} in {json}");
    }
    let back: DeploymentState = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, &**h.deployment.state());
}

/// A canary whose only gate is a webhook that fails at once, so a rollback is asked for at t0.
fn failing_canary(config: &str) -> hookgate::test_util::Harness {
    let mut h = start(&format!(
        r#"
application: app
{config}
targets:
  prod: {{strategy: canary}}
  dr: {{constraints: {{dependsOn: [prod]}}}}
strategies:
  canary: {{canary: {{steps: [runWebhook: {{name: tests}}]}}}}
{HOOKS}"#
    ));
    steps_ok(&mut h);
    let tests = sent(&mut h)[0];
    h.callback(tests, false, Some("red")).unwrap();
    assert_eq!(
        h.deployment.env_status(hookgate::config::EnvId(0)),
        EnvStatus::RollingBack
    );
    h
}

fn rollback_op(h: &hookgate::test_util::Harness) -> hookgate::core::OpId {
    h.pending()
        .iter()
        .find_map(|a| match a {
            Action::RollBack { op, .. } => Some(*op),
            _ => None,
        })
        .expect("a rollback is asked for")
}

#[test]
fn rollback_longer_than_deployment_timeout_fails_the_environment() {
    let mut h = failing_canary("deploymentConfig: {timeout: {duration: 1, unit: minutes}}");
    let op = rollback_op(&h);
    assert_eq!(
        h.deployment.poll_timeout(),
        Some(t0() + TimeDelta::minutes(1)),
        "the rollback has the step deadline"
    );
    let now = t0() + TimeDelta::minutes(2);
    h.clock.set(now);
    h.deployment.handle_timeout(now);
    let prod = hookgate::config::EnvId(0);
    assert_eq!(h.deployment.env_status(prod), EnvStatus::Failed);
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
    assert!(h.deployment.is_finished());
    assert_eq!(h.deployment.poll_timeout(), None);
    let mut finished = false;
    while let Some(e) = h.deployment.poll_event() {
        if let EventKind::StepFinished {
            op: o, ok, message, ..
        } = e.kind
        {
            assert_eq!((o, ok), (op, false));
            assert!(message.unwrap().contains("rollback took longer"));
            finished = true;
        }
    }
    assert!(
        finished,
        "the timed-out rollback is reported like a failed one"
    );
    assert_eq!(
        h.deployment
            .handle_step_result(now, op, StepOutcome::Succeeded),
        Err(hookgate::core::CoreError::Stale),
        "a late rollback result is stale"
    );
    assert_eq!(h.deployment.env_status(prod), EnvStatus::Failed);
}

#[test]
fn rollback_answered_in_time_still_rolls_back() {
    let mut h = failing_canary("deploymentConfig: {timeout: {duration: 1, unit: minutes}}");
    h.advance(TimeDelta::seconds(30));
    steps_ok(&mut h);
    assert_eq!(h.deployment.status(), DeploymentStatus::RolledBack);
    assert_eq!(h.deployment.poll_timeout(), None);
}

#[test]
fn rollback_without_a_configured_timeout_has_no_deadline_and_keeps_its_stored_form() {
    let h = failing_canary("");
    assert_eq!(h.deployment.poll_timeout(), None);
    let op = rollback_op(&h);
    let json = serde_json::to_string(h.deployment.state()).unwrap();
    let stored = format!(r#"{{"rolling_back":{{"op":{}}}}}"#, op.0);
    assert!(json.contains(&stored), "{stored} in {json}");

    // A state stored before rollbacks had deadlines reads back without one.
    let h = failing_canary("deploymentConfig: {timeout: {duration: 1, unit: minutes}}");
    let op = rollback_op(&h);
    let json = serde_json::to_string(h.deployment.state()).unwrap();
    let prefix = format!(r#"{{"rolling_back":{{"op":{},"deadline":""#, op.0);
    let at = json
        .find(&prefix)
        .unwrap_or_else(|| panic!("{prefix} in {json}"));
    let end = at + prefix.len() + json[at + prefix.len()..].find('"').unwrap() + 1;
    let old = format!(
        r#"{}{{"rolling_back":{{"op":{}{}"#,
        &json[..at],
        op.0,
        &json[end..]
    );
    let state: DeploymentState = serde_json::from_str(&old).unwrap();
    let d = hookgate::core::Deployment::restore(h.deployment.plan().clone(), state.into()).unwrap();
    assert_eq!(d.poll_timeout(), None);
}
