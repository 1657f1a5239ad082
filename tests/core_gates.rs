//! Scenario tests of each gate kind's rules (PROTOCOL.md §4, §5), on simulated time.
#![cfg(feature = "test-util")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use hookgate::core::{
    Action, ApprovalKind, CallFailure, CallResult, CallbackAck, CoreError, Decision, Deployment,
    DeploymentState, DeploymentStatus, EnvStatus, EventKind, GateState, Resolution, Settings,
    StartOptions, StepOutcome,
};
use hookgate::test_util::Harness;

fn before(entry: &str) -> Harness {
    start(&format!(
        "application: app\ntargets: {{prod: {{constraints: {{beforeDeployment: [{entry}]}}}}}}\n{HOOKS}"
    ))
}

const FIRST: &str = "targets.prod.constraints.beforeDeployment[0]";

#[test]
fn retries_up_to_retry_count_with_full_jitter_backoff_then_fail_naming_the_last_status() {
    let mut h = before("runWebhook: {name: tests}");
    let mut attempts = Vec::new();
    let mut waits = Vec::new();
    loop {
        let calls = h.answer_calls(|c| {
            CallResult::from_status(if c.attempt == 3 { 502 } else { 503 }, None)
        });
        if calls.is_empty() {
            break;
        }
        attempts.extend(calls.iter().map(|c| (c.attempt, c.idempotency_key.clone())));
        let before = h.now();
        if h.advance_to_next_deadline() {
            waits.push(h.now() - before);
        }
    }
    assert_eq!(
        attempts,
        [(1, "d1:0".into()), (2, "d1:0".into()), (3, "d1:0".into())],
        "retryCount 2 means three attempts, all with one idempotency key"
    );
    assert!(waits[0] <= TimeDelta::seconds(1), "first retry within base");
    assert!(waits[1] <= TimeDelta::seconds(2), "second within 2 x base");
    let failed = h.events().iter().find_map(|e| match &e.kind {
        EventKind::GateFailed { how, message, .. } => Some((*how, message.clone())),
        _ => None,
    });
    assert_eq!(
        failed,
        Some((
            Resolution::CallFailed,
            "the call to webhook \"tests\" failed after 3 attempts; last: HTTP 502".into()
        ))
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
}

#[test]
fn non_retryable_answers_fail_at_once() {
    for status in [400, 401, 403, 404, 409, 422] {
        let mut h = before("runWebhook: {name: tests}");
        let calls = h.answer_calls(|_| CallResult::from_status(status, None));
        assert_eq!(calls.len(), 1);
        assert!(h.take_calls().is_empty());
        assert_eq!(
            h.deployment.gate_state(gate(&h, FIRST)),
            GateState::Failed(Resolution::CallFailed),
            "HTTP {status}"
        );
    }
}

/// PROTOCOL.md §2: `retryCount` defaults to 0. A webhook without it gets one attempt: a
/// retryable answer (503) fails its gate at once, with no second attempt armed.
#[test]
fn without_retry_count_a_retryable_answer_fails_the_gate_at_once() {
    let mut h = before("runWebhook: {name: smoke}");
    let webhook = &h.deployment.plan().webhooks()[2];
    assert_eq!(webhook.name, "smoke", "HOOKS' `smoke` has no retryCount");
    assert_eq!(webhook.retry_count, 0);

    let calls = h.answer_calls(|_| CallResult::from_status(503, None));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].attempt, 1);
    assert_eq!(
        h.deployment.gate_state(gate(&h, FIRST)),
        FAILED_AT_ONCE,
        "no RetryWaiting: the 503 was the only attempt"
    );
    assert!(
        !h.advance_to_next_deadline(),
        "no retry is left armed: {:?}",
        h.deployment.poll_timeout()
    );
    assert!(h.take_calls().is_empty(), "no second attempt");
    let message = h.events().iter().find_map(|e| match &e.kind {
        EventKind::GateFailed { message, .. } => Some(message.clone()),
        _ => None,
    });
    assert_eq!(
        message.as_deref(),
        Some("the call to webhook \"smoke\" failed: HTTP 503")
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
}

#[test]
fn connection_errors_timeouts_408_and_429_are_retried() {
    let failures = [
        CallResult::Failed(CallFailure::transient("connection refused")),
        CallResult::Failed(CallFailure::transient("timed out after 30s")),
        CallResult::from_status(408, None),
        CallResult::from_status(429, None),
    ];
    for failure in failures {
        let mut h = before("runWebhook: {name: tests}");
        h.answer_calls(|_| failure.clone());
        assert!(
            matches!(
                h.deployment.gate_state(gate(&h, FIRST)),
                GateState::RetryWaiting { attempt: 2, .. }
            ),
            "{failure:?}"
        );
    }
}

/// A webhook gate whose webhook has `retryCount: 2` and the given extra fields.
fn retrying(fields: &str) -> Harness {
    start(&format!(
        "application: app\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: w}}]}}}}}}\nwebhooks: [{{name: w, uriTemplate: 'https://w.example', retryCount: 2{fields}}}]"
    ))
}

/// The gate's state after its first attempt ends in `result`.
fn after_first_attempt(fields: &str, result: CallResult) -> GateState {
    let mut h = retrying(fields);
    assert_eq!(h.answer_calls(|_| result.clone()).len(), 1);
    h.deployment.gate_state(gate(&h, FIRST))
}

fn retried(state: GateState) -> bool {
    matches!(state, GateState::RetryWaiting { attempt: 2, .. })
}

const FAILED_AT_ONCE: GateState = GateState::Failed(Resolution::CallFailed);

#[test]
fn retryable_status_codes_replace_which_answers_are_retried() {
    let listed = ", retryableStatusCodes: [409]";
    assert!(retried(after_first_attempt(
        listed,
        CallResult::from_status(409, None)
    )));
    assert_eq!(
        after_first_attempt(listed, CallResult::from_status(503, None)),
        FAILED_AT_ONCE
    );
    assert!(
        retried(after_first_attempt("", CallResult::from_status(503, None))),
        "without the field 503 is retried as before"
    );
    assert_eq!(
        after_first_attempt("", CallResult::from_status(409, None)),
        FAILED_AT_ONCE
    );

    let mut h = retrying(listed);
    h.answer_calls(|_| CallResult::from_status(409, None));
    h.advance_to_next_deadline();
    sent(&mut h);
    assert!(matches!(
        h.deployment.gate_state(gate(&h, FIRST)),
        GateState::AwaitingCallback { .. }
    ));
}

#[test]
fn an_empty_retryable_status_list_retries_no_answer_but_still_retries_transport_failures() {
    let none = ", retryableStatusCodes: []";
    for status in [408, 429, 500, 503] {
        assert_eq!(
            after_first_attempt(none, CallResult::from_status(status, None)),
            FAILED_AT_ONCE,
            "HTTP {status}"
        );
    }
    assert!(retried(after_first_attempt(
        none,
        CallResult::Failed(CallFailure::transient("connection refused"))
    )));
    assert_eq!(
        after_first_attempt(
            none,
            CallResult::Failed(CallFailure::permanent("unknown secret \"token\""))
        ),
        FAILED_AT_ONCE
    );
}

#[test]
fn a_template_that_cannot_render_fails_the_gate_without_retrying() {
    let mut h = before("runWebhook: {name: tests}");
    h.answer_calls(|_| CallResult::Failed(CallFailure::permanent("unknown secret \"token\"")));
    assert_eq!(
        h.deployment.gate_state(gate(&h, FIRST)),
        GateState::Failed(Resolution::CallFailed)
    );
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let mut h = before("runWebhook: {name: tests}");
    h.answer_calls(|_| CallResult::from_status(429, Some(Duration::from_secs(17))));
    assert_eq!(
        h.deployment.poll_timeout(),
        Some(t0() + TimeDelta::seconds(17))
    );
    h.advance_to_next_deadline();
    h.answer_calls(|_| CallResult::from_status(503, Some(Duration::from_secs(3600))));
    assert_eq!(
        h.deployment.poll_timeout(),
        Some(t0() + TimeDelta::seconds(17 + 60)),
        "capped at the 60 s backoff cap"
    );
}

/// PROTOCOL.md §4: full jitter over a base of 1 s by default, doubling per attempt. Over many
/// seeds the waits fill their ranges, so a base other than 1 s shows.
#[test]
fn the_default_backoff_base_is_one_second_and_doubles() {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for seed in 0..64 {
        let mut h = Harness::start(
            plan(&format!(
                "application: app\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: tests}}]}}}}}}\n{HOOKS}"
            )),
            StartOptions::default().with_seed(seed),
            t0(),
        );
        for waits in [&mut first, &mut second] {
            h.answer_calls(|_| CallResult::from_status(503, None));
            let before = h.now();
            assert!(h.advance_to_next_deadline(), "seed {seed}: a retry is due");
            waits.push(h.now() - before);
        }
    }
    let longest = |waits: &[TimeDelta]| *waits.iter().max().unwrap();
    assert!(
        longest(&first) <= TimeDelta::seconds(1) && longest(&first) > TimeDelta::milliseconds(900),
        "first waits up to {:?}",
        longest(&first)
    );
    assert!(
        longest(&second) <= TimeDelta::seconds(2)
            && longest(&second) > TimeDelta::milliseconds(1800),
        "second waits up to {:?}",
        longest(&second)
    );
}

#[test]
fn backoff_is_deterministic_for_a_seed() {
    let run = |seed| {
        let mut h = Harness::start(
            plan(&format!(
                "application: app\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: tests}}]}}}}}}\n{HOOKS}"
            )),
            StartOptions::default().with_seed(seed),
            t0(),
        );
        h.answer_calls(|_| CallResult::from_status(503, None));
        h.deployment.poll_timeout()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2), "different seeds jitter differently");
}

#[test]
fn callback_timeout_is_24_hours_from_the_first_successful_send() {
    let mut h = before("runWebhook: {name: tests}");
    h.answer_calls(|_| CallResult::from_status(503, None));
    h.advance_to_next_deadline();
    let sent_at = h.now();
    sent(&mut h);
    assert_eq!(
        h.deployment.poll_timeout(),
        Some(sent_at + TimeDelta::hours(24))
    );
    h.advance(TimeDelta::hours(24) - TimeDelta::seconds(1));
    assert!(h.deployment.gate_state(gate(&h, FIRST)).is_open());
    h.advance(TimeDelta::seconds(1));
    assert_eq!(
        h.deployment.gate_state(gate(&h, FIRST)),
        GateState::Failed(Resolution::CallbackTimeout)
    );
    assert_eq!(
        h.callback(gate(&h, FIRST), true, None),
        Err(CoreError::GateClosed {
            how: Resolution::CallbackTimeout
        }),
        "a late callback is refused (410)"
    );
}

#[test]
fn callback_timeout_is_configurable_globally_and_per_webhook() {
    let yaml = "application: app\ntargets: {prod: {constraints: {beforeDeployment: [runWebhook: {name: a}, runWebhook: {name: b}]}}}\nwebhooks:\n  - {name: a, uriTemplate: 'https://a.example'}\n  - {name: b, uriTemplate: 'https://b.example', callbackTimeout: {duration: 5, unit: minutes}}";
    let mut h = Harness::start(
        plan(yaml),
        StartOptions::default()
            .with_settings(Settings::default().with_callback_timeout(Duration::from_secs(3600))),
        t0(),
    );
    sent(&mut h);
    let deadline = |h: &Harness, i: usize| {
        h.deployment
            .gate_state(gate(
                h,
                &format!("targets.prod.constraints.beforeDeployment[{i}]"),
            ))
            .deadline()
    };
    assert_eq!(deadline(&h, 0), Some(t0() + TimeDelta::hours(1)));
    assert_eq!(deadline(&h, 1), Some(t0() + TimeDelta::minutes(5)));
}

#[test]
fn a_callback_before_the_send_result_is_accepted() {
    let mut h = before("runWebhook: {name: ticket}");
    let call = h.take_calls().remove(0);
    assert_eq!(h.callback(call.gate, true, None), Ok(CallbackAck::Applied));
    assert_eq!(
        h.deployment
            .handle_call_result(h.now(), call.gate, 1, CallResult::Sent { status: 200 }),
        Err(CoreError::Stale),
        "the late send result changes nothing"
    );
    assert_eq!(
        h.deployment.gate_state(call.gate),
        GateState::Passed(Resolution::Callback)
    );
}

#[test]
fn a_callback_during_retry_backoff_is_accepted() {
    let mut h = before("runWebhook: {name: tests}");
    let g = h.answer_calls(|_| CallResult::from_status(503, None))[0].gate;
    assert_eq!(h.callback(g, true, None), Ok(CallbackAck::Applied));
    assert_eq!(h.deployment.poll_timeout(), None, "no retry is left armed");
}

#[test]
fn repeated_callbacks_are_idempotent_and_the_opposite_outcome_conflicts() {
    let mut h = before("runWebhook: {name: ticket}");
    let g = sent(&mut h)[0];
    assert_eq!(h.callback(g, true, Some("ok")), Ok(CallbackAck::Applied));
    let events = h.events().len();
    assert_eq!(
        h.callback(g, true, Some("ok again")),
        Ok(CallbackAck::Duplicate)
    );
    assert_eq!(h.events().len(), events, "a duplicate records nothing");
    assert_eq!(
        h.callback(g, false, None),
        Err(CoreError::Conflict { first: true })
    );
    assert_eq!(
        h.deployment.gate_state(g),
        GateState::Passed(Resolution::Callback)
    );
    steps_ok(&mut h);
    assert!(h.deployment.is_finished());
    assert_eq!(
        h.callback(g, true, None),
        Ok(CallbackAck::Duplicate),
        "still idempotent after the deployment finished"
    );
}

#[test]
fn a_failed_callback_repeats_as_duplicate_too() {
    let mut h = before("runWebhook: {name: ticket}");
    let g = sent(&mut h)[0];
    h.callback(g, false, Some("no")).unwrap();
    assert_eq!(h.callback(g, false, None), Ok(CallbackAck::Duplicate));
    assert_eq!(
        h.callback(g, true, None),
        Err(CoreError::Conflict { first: false })
    );
}

#[test]
fn callbacks_for_unknown_unopened_or_closed_gates_are_refused() {
    let mut h = start(&format!(
        r#"
application: app
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {{name: ticket}}, runWebhook: {{name: tests}}]
      afterDeployment: [runWebhook: {{name: smoke}}]
{HOOKS}"#
    ));
    let unknown = "ffffffffffffffffffffffffffffffff".parse().unwrap();
    assert_eq!(
        h.deployment.handle_callback(h.now(), unknown, true, None),
        Err(CoreError::UnknownCallback)
    );
    let smoke = gate(&h, "targets.prod.constraints.afterDeployment[0]");
    assert_eq!(h.callback(smoke, true, None), Err(CoreError::GateNotOpen));
    let calls = sent(&mut h);
    h.callback(calls[0], false, None).unwrap();
    assert_eq!(
        h.callback(calls[1], true, None),
        Err(CoreError::GateClosed {
            how: Resolution::Superseded
        }),
        "the sibling closed when the list failed"
    );
    assert_eq!(
        h.callback(smoke, true, None),
        Err(CoreError::GateClosed {
            how: Resolution::Superseded
        }),
        "never reached, and now never will be"
    );
}

#[test]
fn progress_notes_keep_the_gate_open() {
    let mut h = before("runWebhook: {name: ticket}");
    let g = sent(&mut h)[0];
    let id = h.deployment.callback_id(g).unwrap();
    h.deployment
        .handle_progress(h.now(), id, "50% done".into())
        .unwrap();
    assert!(h.deployment.gate_state(g).is_open());
    assert!(h.deployment.poll_event().is_some_and(|e| e.kind
        == EventKind::Progress {
            gate: g,
            message: "50% done".into()
        }));
}

/// A gate records `max_progress_notes` notes; later ones are refused without changing
/// anything, the count survives a restore, and the gate still takes its callback.
#[test]
fn progress_notes_stop_at_the_limit_and_the_gate_still_takes_its_callback() {
    let yaml = format!(
        "application: app\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: ticket}}]}}}}}}\n{HOOKS}"
    );
    let settings = Settings::default().with_max_progress_notes(2);
    let mut h = Harness::start(
        plan(&yaml),
        StartOptions::default().with_settings(settings),
        t0(),
    );
    let g = sent(&mut h)[0];
    let id = h.deployment.callback_id(g).unwrap();
    for note in ["10%", "20%"] {
        h.deployment
            .handle_progress(h.now(), id, note.into())
            .unwrap();
    }
    let restored = Deployment::restore(
        Arc::clone(h.deployment.plan()),
        serde_json::from_str(&serde_json::to_string(h.deployment.state()).unwrap()).unwrap(),
    )
    .unwrap();
    let mut h = Harness::resume(restored, h.now());
    let before = h.deployment.state().clone();
    assert_eq!(
        h.deployment.handle_progress(h.now(), id, "30%".into()),
        Err(CoreError::TooManyProgressNotes { limit: 2 })
    );
    assert!(
        h.deployment.state() == &before,
        "a refused note changes nothing"
    );
    assert_eq!(h.callback(g, true, None), Ok(CallbackAck::Applied));
    assert_eq!(
        h.deployment.gate_state(g),
        GateState::Passed(Resolution::Callback)
    );
}

/// The count is per gate and covers the whole gate: notes sent before the call's result count,
/// and a retried call does not start the count again. A limit of 0 refuses every note.
#[test]
fn progress_notes_are_counted_per_gate_across_retries() {
    let yaml = format!(
        "application: app\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: tests}}, runWebhook: {{name: smoke}}]}}}}}}\n{HOOKS}"
    );
    let with_limit = |limit| {
        let settings = Settings::default().with_max_progress_notes(limit);
        Harness::start(
            plan(&yaml),
            StartOptions::default().with_settings(settings),
            t0(),
        )
    };
    let mut h = with_limit(1);
    let (tests, smoke) = (
        gate(&h, FIRST),
        gate(&h, "targets.prod.constraints.beforeDeployment[1]"),
    );
    let id = |h: &Harness, g| h.deployment.callback_id(g).unwrap();
    let (tests_id, smoke_id) = (id(&h, tests), id(&h, smoke));
    assert!(matches!(
        h.deployment.gate_state(tests),
        GateState::Calling { attempt: 1 }
    ));
    h.deployment
        .handle_progress(h.now(), tests_id, "starting".into())
        .unwrap();
    h.answer_calls(|c| CallResult::from_status(if c.gate == tests { 503 } else { 202 }, None));
    h.advance_to_next_deadline();
    assert!(
        matches!(
            h.deployment.gate_state(tests),
            GateState::Calling { attempt: 2 }
        ),
        "{:?}",
        h.deployment.gate_state(tests)
    );
    assert_eq!(
        h.deployment
            .handle_progress(h.now(), tests_id, "again".into()),
        Err(CoreError::TooManyProgressNotes { limit: 1 }),
        "the retry did not start the count again"
    );
    h.deployment
        .handle_progress(h.now(), smoke_id, "smoke's own".into())
        .unwrap();

    let mut h = with_limit(0);
    let tests_id = id(&h, tests);
    assert_eq!(
        h.deployment
            .handle_progress(h.now(), tests_id, "first".into()),
        Err(CoreError::TooManyProgressNotes { limit: 0 })
    );
}

/// States stored before the limit existed have neither the count nor the setting: they read
/// as no notes yet, and the default limit.
#[test]
fn states_without_note_counts_read_as_none_and_the_default_limit() {
    let mut h = before("runWebhook: {name: ticket}");
    let g = sent(&mut h)[0];
    let id = h.deployment.callback_id(g).unwrap();
    h.deployment
        .handle_progress(h.now(), id, "half way".into())
        .unwrap();
    let json = serde_json::to_string(h.deployment.state()).unwrap();
    let (count, limit) = (r#","notes":{"0":1}"#, r#","max_progress_notes":2000"#);
    assert!(json.contains(count) && json.contains(limit), "{json}");
    let old = Deployment::restore(
        Arc::clone(h.deployment.plan()),
        serde_json::from_str(&json.replace(count, "").replace(limit, "")).unwrap(),
    )
    .unwrap();
    assert_eq!(old.settings(), &Settings::default());
    let fresh = serde_json::to_string(old.state()).unwrap();
    assert!(
        !fresh.contains(r#""notes":"#),
        "an empty count is left out: {fresh}"
    );
}

#[test]
fn manual_approval_needs_one_of_the_required_roles() {
    let mut h = before("pause: {untilApproved: true, requiresRoles: [release-manager, sre]}");
    let g = approvals(&h)[0];
    assert_eq!(
        h.decide(g, Decision::approve("mallory", ["developer"])),
        Err(CoreError::MissingRole {
            required: vec!["release-manager".into(), "sre".into()]
        })
    );
    assert!(h.deployment.gate_state(g).is_open());
    h.decide(g, Decision::approve("alice", ["sre"]).with_comment("go"))
        .unwrap();
    assert!(h.events().iter().any(|e| e.kind
        == EventKind::ApprovalDecided {
            gate: g,
            approved: true,
            by: "alice".into(),
            comment: Some("go".into())
        }));
    assert_eq!(
        h.deployment.gate_state(g),
        GateState::Passed(Resolution::Approved)
    );
    // Whatever the approval's state: someone holding none of the roles learns nothing of it.
    assert_eq!(
        h.decide(g, Decision::reject("mallory", ["developer"])),
        Err(CoreError::MissingRole {
            required: vec!["release-manager".into(), "sre".into()]
        })
    );
    // The opposite decision is refused; the same one again, a retry, is taken as done.
    let decided = h.deployment.clone();
    assert_eq!(
        h.decide(g, Decision::reject("bob", ["sre"])),
        Err(CoreError::AlreadyDecided { approved: true })
    );
    assert_eq!(h.decide(g, Decision::approve("alice", ["sre"])), Ok(()));
    assert_eq!(h.deployment.state(), decided.state(), "nothing changed");
}

#[test]
fn manual_rejection_fails_the_gate_with_who_and_why() {
    let mut h = before("pause: {untilApproved: true}");
    let g = approvals(&h)[0];
    h.decide(
        g,
        Decision::reject("bob", Vec::<String>::new()).with_comment("freeze"),
    )
    .unwrap();
    assert!(h.events().iter().any(|e| matches!(&e.kind,
        EventKind::GateFailed { how: Resolution::Rejected, message, .. } if message == "rejected by bob: freeze")));
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
    let decided = h.deployment.clone();
    assert_eq!(
        h.decide(g, Decision::approve("bob", Vec::<String>::new())),
        Err(CoreError::AlreadyDecided { approved: false })
    );
    assert_eq!(
        h.decide(g, Decision::reject("bob", Vec::<String>::new())),
        Ok(())
    );
    assert_eq!(h.deployment.state(), decided.state(), "nothing changed");
}

#[test]
fn approval_expires_after_approval_expiration() {
    let mut h =
        before("pause: {untilApproved: true, approvalExpiration: {duration: 2, unit: hours}}");
    let Some(Action::RequestApproval(req)) = h.pending().first().cloned() else {
        panic!()
    };
    assert_eq!(req.expires_at, Some(t0() + TimeDelta::hours(2)));
    h.advance(TimeDelta::hours(2));
    assert_eq!(
        h.deployment.gate_state(req.gate),
        GateState::Failed(Resolution::ApprovalExpired)
    );
}

#[test]
fn fixed_pause_passes_when_it_elapses() {
    let mut h = before("pause: {duration: 0, unit: seconds}");
    assert_eq!(
        h.deployment.poll_timeout(),
        Some(t0()),
        "a zero pause is due at once"
    );
    h.advance_to_next_deadline();
    assert_eq!(
        h.deployment.gate_state(gate(&h, FIRST)),
        GateState::Passed(Resolution::PauseElapsed)
    );
}

fn analysis(mode: &str) -> Harness {
    start(&format!(
        "application: app\ntargets: {{prod: {{constraints: {{afterDeployment: [analysis: {{queries: [errors], rollBackMode: {mode}}}]}}}}}}"
    ))
}

#[test]
fn automatic_analysis_failure_fails_the_gate() {
    let mut h = analysis("automatic");
    h.answer_steps(|s| match s {
        hookgate::core::HostStep::Analysis { .. } => StepOutcome::Failed {
            reason: "error rate 7%".into(),
        },
        _ => StepOutcome::Succeeded,
    });
    assert!(h.events().iter().any(|e| matches!(&e.kind,
        EventKind::GateFailed { how: Resolution::AnalysisFailed, message, .. } if message == "analysis failed: error rate 7%")));
    assert_eq!(
        h.deployment.status(),
        DeploymentStatus::Failed,
        "afterDeployment: no rollback"
    );
}

/// Carol's decision, with no roles: an analysis's decision needs none.
fn carol(approve: bool) -> Decision {
    if approve {
        Decision::approve("carol", Vec::<String>::new())
    } else {
        Decision::reject("carol", Vec::<String>::new())
    }
}

/// A failed manual analysis waits for a person. Approving continues; rejecting rolls back in a
/// canary step, but in `afterDeployment` fails the environment and leaves the new version, as
/// an automatic analysis failure there does: PROTOCOL.md §4's outcome table wins over its "roll
/// back or continue" there.
#[test]
fn manual_analysis_failure_waits_for_a_person_to_continue_or_reject() {
    let canary = "application: app\ntargets: {prod: {strategy: c}}\nstrategies: {c: {canary: {steps: [analysis: {queries: [q], rollBackMode: manual}]}}}";
    let after = "application: app\ntargets: {prod: {constraints: {afterDeployment: [analysis: {queries: [q], rollBackMode: manual}]}}}";
    for (file, approve, expected) in [
        (canary, true, DeploymentStatus::Succeeded),
        (canary, false, DeploymentStatus::RolledBack),
        (after, true, DeploymentStatus::Succeeded),
        (after, false, DeploymentStatus::Failed),
    ] {
        let mut h = start(file);
        h.answer_steps(|s| match s {
            hookgate::core::HostStep::Analysis { .. } => StepOutcome::Failed {
                reason: "p99 up".into(),
            },
            _ => StepOutcome::Succeeded,
        });
        let g = approvals(&h)[0];
        assert_eq!(h.deployment.gate_state(g), GateState::AwaitingDecision);
        h.decide(g, carol(approve)).unwrap();
        let rolls_back = h
            .pending()
            .iter()
            .any(|a| matches!(a, Action::RollBack { .. }));
        assert_eq!(
            rolls_back,
            expected == DeploymentStatus::RolledBack,
            "{file}: {:?}",
            h.pending()
        );
        steps_ok(&mut h);
        assert_eq!(h.deployment.status(), expected, "{file}");
    }
}

#[test]
fn cancel_rolls_back_mid_strategy_and_cancels_the_rest() {
    let mut h = start(&format!(
        r#"
application: app
targets:
  staging: {{strategy: c}}
  checks: {{constraints: {{beforeDeployment: [pause: {{untilApproved: true}}]}}}}
  prod: {{constraints: {{dependsOn: [staging]}}}}
strategies: {{c: {{canary: {{steps: [setWeight: {{weight: 10}}, runWebhook: {{name: tests}}]}}}}}}
{HOOKS}"#
    ));
    steps_ok(&mut h);
    let tests = sent(&mut h)[0];
    h.cancel("dave").unwrap();
    assert_eq!(
        h.callback(tests, true, None),
        Err(CoreError::GateClosed {
            how: Resolution::Canceled
        })
    );
    steps_ok(&mut h);
    let status = |name: &str| {
        let plan = h.deployment.plan();
        h.deployment
            .env_status(plan.environment_by_name(name).unwrap())
    };
    assert_eq!(status("staging").as_str(), "rolled_back");
    assert_eq!(status("checks").as_str(), "canceled");
    assert_eq!(status("prod").as_str(), "canceled");
    assert_eq!(h.deployment.status(), DeploymentStatus::Canceled);
    assert_eq!(h.cancel("dave"), Err(CoreError::Finished));
}

/// A timer that fires early (or twice) fires nothing: the gate's 24 h callback deadline is
/// armed, and only `now` past it closes the gate.
#[test]
fn extra_timeouts_are_harmless() {
    let mut h = before("runWebhook: {name: ticket}");
    let gate = sent(&mut h)[0];
    let deadline = h
        .deployment
        .poll_timeout()
        .expect("the callback timeout is armed");
    let before = h.deployment.state().clone();
    for early in [
        t0() - TimeDelta::days(1),
        t0(),
        deadline - TimeDelta::seconds(1),
        deadline - TimeDelta::seconds(1),
    ] {
        h.deployment.handle_timeout(early);
    }
    assert_eq!(h.deployment.state(), &before);
    assert_eq!(h.deployment.poll_timeout(), Some(deadline));

    h.deployment.handle_timeout(deadline);
    assert!(matches!(
        h.deployment.gate_state(gate),
        GateState::Failed(Resolution::CallbackTimeout)
    ));
}

/// The host's timer can run late, or belong to another replica: an input that arrives after a
/// deadline meets the deployment as that deadline left it, not as the timer's lateness did.
#[test]
fn a_callback_after_the_callback_timeout_is_refused_before_the_timer_fires() {
    let mut h = before("runWebhook: {name: tests}");
    let g = sent(&mut h)[0];
    let id = h.deployment.callback_id(g).unwrap();
    let deadline = h.now() + TimeDelta::hours(24);

    let mut on_time = h.deployment.clone();
    let just_before = deadline - TimeDelta::seconds(1);
    assert_eq!(
        on_time.handle_callback(just_before, id, true, None),
        Ok(CallbackAck::Applied)
    );
    assert_eq!(
        h.deployment
            .handle_progress(deadline, id, "still running".into()),
        Err(CoreError::GateClosed {
            how: Resolution::CallbackTimeout
        }),
        "a progress note at the deadline"
    );
    assert_eq!(
        h.deployment.handle_callback(deadline, id, true, None),
        Err(CoreError::GateClosed {
            how: Resolution::CallbackTimeout
        })
    );
    assert_eq!(
        h.deployment.gate_state(g),
        GateState::Failed(Resolution::CallbackTimeout)
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
}

/// A sibling's timeout, too: a callback for one gate of a list, after another gate of the list
/// timed out, meets the list failed and its own gate closed, as it would had the timer fired on
/// time, rather than resolving its gate and the list failing later with the wrong cause.
#[test]
fn a_callback_after_a_siblings_timeout_meets_the_list_failed_before_the_timer_fires() {
    let mut h = start(SIBLINGS);
    let gates = sent(&mut h);
    let (a, b) = (gates[0], gates[1]);
    let id = h.deployment.callback_id(a).unwrap();
    let late = h.now() + TimeDelta::minutes(10);

    let mut on_time = h.deployment.clone();
    on_time.handle_timeout(h.now() + TimeDelta::minutes(5));
    let expected = on_time.handle_callback(late, id, true, None);
    assert!(
        matches!(expected, Err(CoreError::GateClosed { .. })),
        "{expected:?}"
    );

    assert_eq!(h.deployment.handle_callback(late, id, true, None), expected);
    assert_eq!(
        h.deployment.gate_state(b),
        GateState::Failed(Resolution::CallbackTimeout)
    );
    assert_eq!(h.deployment.gate_state(a), on_time.gate_state(a));
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
}

/// Two webhooks in one list, `b` timing out after 5 minutes.
const SIBLINGS: &str = "application: app\ntargets: {prod: {constraints: {beforeDeployment: [runWebhook: {name: a}, runWebhook: {name: b}]}}}\nwebhooks:\n  - {name: a, uriTemplate: 'https://a.example'}\n  - {name: b, uriTemplate: 'https://b.example', callbackTimeout: {duration: 5, unit: minutes}}";

/// Every input, not a callback alone, meets the list failed by a sibling's timeout that the
/// host's timer has not fired yet: a progress note, and the result of a call still under way.
#[test]
fn other_inputs_after_a_siblings_timeout_meet_the_list_failed_too() {
    let mut h = start(SIBLINGS);
    let gates = sent(&mut h);
    let (a, b) = (gates[0], gates[1]);
    let late = h.now() + TimeDelta::minutes(10);
    let id = h.deployment.callback_id(a).unwrap();
    let mut noted = h.deployment.clone();
    assert!(
        matches!(
            noted.handle_progress(late, id, "still running".into()),
            Err(CoreError::GateClosed { .. })
        ),
        "a progress note"
    );
    assert_eq!(
        noted.gate_state(b),
        GateState::Failed(Resolution::CallbackTimeout)
    );

    let mut h = start(SIBLINGS);
    let calls: Vec<_> = h
        .pending()
        .iter()
        .filter_map(|a| match a {
            Action::CallWebhook(c) => Some((c.gate, c.attempt)),
            _ => None,
        })
        .collect();
    let ((a, a_attempt), (b, b_attempt)) = (calls[0], calls[1]);
    h.call_result(b, b_attempt, CallResult::Sent { status: 202 })
        .unwrap();
    let late = h.now() + TimeDelta::minutes(10);
    assert_eq!(
        h.deployment
            .handle_call_result(late, a, a_attempt, CallResult::Sent { status: 202 }),
        Err(CoreError::Stale),
        "the result of a's call, still under way when b timed out"
    );
    assert_eq!(
        h.deployment.gate_state(b),
        GateState::Failed(Resolution::CallbackTimeout)
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
}

/// A decision on an approval whose sibling's timeout has passed meets the approval closed; one
/// by someone without the approval's roles is refused first and changes nothing, the passed
/// deadline included.
#[test]
fn a_decision_after_a_siblings_timeout_meets_the_list_failed_unless_refused_first() {
    let yaml = "application: app\ntargets: {prod: {constraints: {beforeDeployment: [pause: {untilApproved: true, requiresRoles: [ops]}, runWebhook: {name: b}]}}}\nwebhooks:\n  - {name: b, uriTemplate: 'https://b.example', callbackTimeout: {duration: 5, unit: minutes}}";
    let mut h = start(yaml);
    sent(&mut h);
    let approval = approvals(&h)[0];
    let late = h.now() + TimeDelta::minutes(10);

    let before = h.deployment.clone();
    assert!(matches!(
        h.deployment
            .handle_approval(late, approval, Decision::approve("eve", ["dev"])),
        Err(CoreError::MissingRole { .. })
    ));
    assert_eq!(h.deployment.state(), before.state(), "nothing fired");

    assert_eq!(
        h.deployment
            .handle_approval(late, approval, Decision::approve("carol", ["ops"])),
        Err(CoreError::GateClosed {
            how: Resolution::Superseded
        })
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
}

#[test]
fn a_decision_after_the_approval_expired_is_refused_before_the_timer_fires() {
    let mut h =
        before("pause: {untilApproved: true, approvalExpiration: {duration: 2, unit: hours}}");
    let g = approvals(&h)[0];
    let late = h.now() + TimeDelta::hours(2);

    let approved =
        h.deployment
            .handle_approval(late, g, Decision::approve("carol", Vec::<String>::new()));

    assert_eq!(
        approved,
        Err(CoreError::GateClosed {
            how: Resolution::ApprovalExpired
        })
    );
    assert_eq!(
        h.deployment.gate_state(g),
        GateState::Failed(Resolution::ApprovalExpired)
    );
}

/// A cancel after an approval expired meets the deployment as the expiry left it: failed,
/// and so finished, rather than cancelled as the timer's lateness would have had it.
#[test]
fn a_cancel_after_an_expiry_meets_the_deployment_as_the_expiry_left_it() {
    let mut h =
        before("pause: {untilApproved: true, approvalExpiration: {duration: 1, unit: hours}}");
    let g = approvals(&h)[0];
    let late = h.now() + TimeDelta::hours(2);

    let mut on_time = h.deployment.clone();
    assert_eq!(
        on_time.handle_cancel(
            late - TimeDelta::hours(1) - TimeDelta::seconds(1),
            "operator"
        ),
        Ok(())
    );
    assert_eq!(on_time.status(), DeploymentStatus::Canceled);

    assert_eq!(
        h.deployment.handle_cancel(late, "operator"),
        Err(CoreError::Finished)
    );
    assert_eq!(
        h.deployment.gate_state(g),
        GateState::Failed(Resolution::ApprovalExpired)
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Failed);
}

/// The end of a pause, too: a cancel after the pause that was the deployment's last wait ended
/// meets it succeeded, as it would had the timer been on time, rather than cancelled.
#[test]
fn a_cancel_after_the_last_pause_ended_meets_the_deployment_succeeded() {
    let mut h = start(
        "application: app\ntargets: {prod: {constraints: {afterDeployment: [pause: {duration: 5, unit: minutes}]}}}",
    );
    let deploy = first_step(&h);
    h.deployment
        .handle_step_result(h.now(), deploy.op, StepOutcome::Succeeded)
        .unwrap();
    let late = h.now() + TimeDelta::minutes(6);

    let mut on_time = h.deployment.clone();
    on_time.handle_timeout(h.now() + TimeDelta::minutes(5));
    assert_eq!(on_time.status(), DeploymentStatus::Succeeded);

    assert_eq!(
        h.deployment.handle_cancel(late, "operator"),
        Err(CoreError::Finished)
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Succeeded);
}

/// A deployment of `yaml` with its deploy step answered, and when that was, after checking that
/// a timer on time, firing 5 and 10 minutes on, leaves it `finished`.
fn deployed_and_finished_on_time_at_10_minutes(
    yaml: &str,
    finished: DeploymentStatus,
) -> (Harness, chrono::DateTime<chrono::Utc>) {
    let mut h = start(yaml);
    let deploy = first_step(&h);
    h.step_result(deploy.op, StepOutcome::Succeeded).unwrap();
    let started = h.now();
    let mut on_time = h.deployment.clone();
    on_time.handle_timeout(started + TimeDelta::minutes(5));
    on_time.handle_timeout(started + TimeDelta::minutes(10));
    assert_eq!(on_time.status(), finished);
    (h, started)
}

/// Deadlines that follow one another are each fired at their own time by a cancel: two
/// 5-minute pauses after a deploy have both ended 10 minutes on, and a cancel a minute later
/// meets the deployment succeeded. Fired at the cancel's time, the first pause's end would have
/// started the second late, and the deployment would have looked running and been rolled back.
#[test]
fn a_cancel_after_two_chained_pauses_ended_meets_the_deployment_succeeded() {
    let (mut h, started) = deployed_and_finished_on_time_at_10_minutes(
        "application: app\ntargets: {prod: {strategy: c}}\nstrategies: {c: {canary: {steps: [pause: {duration: 5, unit: minutes}, pause: {duration: 5, unit: minutes}]}}}",
        DeploymentStatus::Succeeded,
    );

    let late = started + TimeDelta::minutes(11);
    let answer = h.deployment.handle_cancel(late, "operator");
    let asked: Vec<Action> = std::iter::from_fn(|| h.deployment.poll_action()).collect();
    assert_eq!(
        (answer, h.deployment.status()),
        (Err(CoreError::Finished), DeploymentStatus::Succeeded),
        "both pauses had ended by {late}; the core asked instead for {asked:?}"
    );
    let events: Vec<_> = std::iter::from_fn(|| h.deployment.poll_event()).collect();
    let last = events.last().expect("the pauses' ends");
    assert_eq!(last.at, started + TimeDelta::minutes(10), "{events:?}");
}

/// The same with an approval at the end of the chain, which a timer on time would have asked
/// for 5 minutes on and seen expire 5 minutes later, failing the environment. Late, no one was
/// asked for it: its expiry does not count, so the strategy's pause is left to the timer, as
/// any that does not finish the deployment, and a cancel 11 minutes on rolls the strategy back
/// (before 2026-12-04 it met the deployment failed, still asking for the approval).
#[test]
fn a_cancel_after_a_pause_does_not_expire_the_approval_its_end_asks_for() {
    let (mut h, started) = deployed_and_finished_on_time_at_10_minutes(
        "application: app\ntargets: {prod: {strategy: c, constraints: {afterDeployment: [pause: {untilApproved: true, approvalExpiration: {duration: 5, unit: minutes}}]}}}\nstrategies: {c: {canary: {steps: [pause: {duration: 5, unit: minutes}]}}}",
        DeploymentStatus::Failed,
    );

    let late = started + TimeDelta::minutes(11);
    let env = h.deployment.plan().environment_by_name("prod").unwrap();
    assert_eq!(h.deployment.handle_cancel(late, "operator"), Ok(()));
    assert_eq!(h.deployment.env_status(env), EnvStatus::RollingBack);
    h.sync();
    assert!(
        matches!(h.pending(), [Action::RollBack { .. }]),
        "{:?}",
        h.pending()
    );
}

/// A pause that ended in the middle of a strategy is left to the timer by a cancel: firing it
/// would ask for the strategy's next step, which the rollback then undoes.
#[test]
fn a_cancel_after_a_pause_mid_strategy_ended_asks_for_the_rollback_alone() {
    let mut h = start(
        "application: app\ntargets: {prod: {strategy: c}}\nstrategies: {c: {canary: {steps: [pause: {duration: 5, unit: minutes}, setWeight: {weight: 50}]}}}",
    );
    let deploy = first_step(&h);
    h.step_result(deploy.op, StepOutcome::Succeeded).unwrap();
    let late = h.now() + TimeDelta::minutes(6);

    assert_eq!(h.deployment.handle_cancel(late, "operator"), Ok(()));
    let asked: Vec<Action> = std::iter::from_fn(|| h.deployment.poll_action()).collect();
    assert!(
        matches!(asked.as_slice(), [Action::RollBack { .. }]),
        "{asked:?}"
    );
}

/// A retry that fell due is the timer's to fire: a cancel after it closes the gate without the
/// call being sent once more.
#[test]
fn a_cancel_after_a_due_retry_sends_no_call() {
    let mut h = before("runWebhook: {name: tests}");
    let g = h.answer_calls(|_| CallResult::from_status(503, None))[0].gate;
    let GateState::RetryWaiting { at, .. } = h.deployment.gate_state(g) else {
        panic!("{:?}", h.deployment.gate_state(g))
    };

    assert_eq!(
        h.deployment
            .handle_cancel(at + TimeDelta::minutes(1), "operator"),
        Ok(())
    );
    assert_eq!(
        h.deployment.gate_state(g),
        GateState::Closed(Resolution::Canceled)
    );
    assert_eq!(h.deployment.status(), DeploymentStatus::Canceled);
    assert!(
        h.pending()
            .iter()
            .all(|a| !matches!(a, Action::CallWebhook(_))),
        "{:?}",
        h.pending()
    );
}

#[test]
fn a_step_result_after_the_step_timeout_is_stale_before_the_timer_fires() {
    let mut h = start(
        "application: app\ndeploymentConfig: {timeout: {duration: 30, unit: minutes}}\ntargets: {prod: {}}",
    );
    let step = first_step(&h);
    let late = h.now() + TimeDelta::minutes(30);

    let result = h
        .deployment
        .handle_step_result(late, step.op, StepOutcome::Succeeded);

    assert_eq!(result, Err(CoreError::Stale));
    assert!(
        matches!(h.deployment.poll_action(), Some(Action::RollBack { .. })),
        "the timed-out deploy is rolled back"
    );
}

#[test]
fn an_analysis_result_after_the_step_timeout_is_stale_before_the_timer_fires() {
    let mut h = start(
        "application: app\ndeploymentConfig: {timeout: {duration: 10, unit: minutes}}\ntargets: {prod: {strategy: c}}\nstrategies: {c: {canary: {steps: [analysis: {queries: [q]}]}}}",
    );
    let deploy = first_step(&h);
    h.deployment
        .handle_step_result(h.now(), deploy.op, StepOutcome::Succeeded)
        .unwrap();
    let analysis = std::iter::from_fn(|| h.deployment.poll_action())
        .find_map(|a| match a {
            Action::RunStep(r) if matches!(r.step, hookgate::core::HostStep::Analysis { .. }) => {
                Some(r)
            }
            _ => None,
        })
        .expect("the analysis step follows the deploy");
    let late = h.now() + TimeDelta::minutes(10);

    let result = h
        .deployment
        .handle_step_result(late, analysis.op, StepOutcome::Succeeded);

    assert_eq!(result, Err(CoreError::Stale));
    let timed_out = std::iter::from_fn(|| h.deployment.poll_event()).any(|e| {
        matches!(
            e.kind,
            EventKind::GateFailed {
                how: Resolution::StepTimeout,
                ..
            }
        )
    });
    assert!(timed_out, "the analysis gate failed on its step timeout");
}

/// A canary whose only step is an analysis in `mode`, with a 10-minute host step timeout, its
/// deploy answered: the analysis is the one step pending.
fn analysing(mode: &str) -> Harness {
    let mut h = start(&format!(
        "application: app\ndeploymentConfig: {{timeout: {{duration: 10, unit: minutes}}}}\ntargets: {{prod: {{strategy: c}}}}\nstrategies: {{c: {{canary: {{steps: [analysis: {{queries: [q], rollBackMode: {mode}}}]}}}}}}"
    ));
    let deploy = first_step(&h);
    h.step_result(deploy.op, StepOutcome::Succeeded).unwrap();
    h
}

/// PROTOCOL.md §4: an analysis with `rollBackMode: manual` that fails waits for a person; one
/// that runs past `deploymentConfig.timeout` has failed as surely, and waits the same way
/// rather than rolling back on its own. Its late result changes nothing; the person decides.
#[test]
fn a_manual_analysis_that_times_out_waits_for_a_person() {
    for (approve, expected) in [
        (true, DeploymentStatus::Succeeded),
        (false, DeploymentStatus::RolledBack),
    ] {
        let mut h = analysing("manual");
        let analysis = match h.pending() {
            [Action::RunStep(run)] => run.clone(),
            other => panic!("the analysis step follows the deploy: {other:?}"),
        };
        let hookgate::core::HostStep::Analysis { gate: g, .. } = analysis.step else {
            panic!("not an analysis: {:?}", analysis.step)
        };

        h.advance(TimeDelta::minutes(10));

        assert_eq!(h.deployment.gate_state(g), GateState::AwaitingDecision);
        assert!(
            h.pending().iter().any(|a| matches!(a,
                Action::RequestApproval(r) if r.gate == g && r.kind == ApprovalKind::AnalysisFailed)),
            "{:?}",
            h.pending()
        );
        assert!(
            !h.pending()
                .iter()
                .any(|a| matches!(a, Action::RollBack { .. })),
            "no rollback before a person decides: {:?}",
            h.pending()
        );
        assert!(h.events().iter().any(|e| matches!(&e.kind,
            EventKind::StepFinished { op, ok: false, message: Some(m), .. }
                if *op == analysis.op && m.contains("deploymentConfig.timeout"))));
        assert_eq!(
            h.step_result(analysis.op, StepOutcome::Succeeded),
            Err(CoreError::Stale),
            "the late result"
        );
        assert_eq!(h.deployment.gate_state(g), GateState::AwaitingDecision);

        h.decide(g, carol(approve)).unwrap();
        steps_ok(&mut h);
        assert_eq!(h.deployment.status(), expected);
    }
}

/// An automatic analysis that runs past `deploymentConfig.timeout` fails its gate at once, and
/// its canary rolls back.
#[test]
fn an_automatic_analysis_that_times_out_rolls_back() {
    let mut h = analysing("automatic");
    h.advance(TimeDelta::minutes(10));
    assert!(
        h.pending()
            .iter()
            .any(|a| matches!(a, Action::RollBack { .. })),
        "{:?}",
        h.pending()
    );
    assert!(approvals(&h).is_empty());
}

/// `Harness::restore` plays the host after a restart: a call in flight when the state was
/// stored is asked for again (same attempt), where `Harness::resume` leaves the deployment as
/// it is and has nothing pending.
#[test]
fn a_restored_harness_asks_again_for_the_call_in_flight() {
    let h = Harness::start(
        plan(&format!(
            "application: a\ntargets: {{x: {{constraints: {{beforeDeployment: [runWebhook: {{name: ticket}}]}}}}}}\n{}",
            common::HOOKS
        )),
        StartOptions::default(),
        t0(),
    );
    let [Action::CallWebhook(call)] = h.pending() else {
        panic!("one call pending: {:?}", h.pending())
    };
    let stored: Arc<DeploymentState> =
        serde_json::from_str(&serde_json::to_string(h.deployment.state()).unwrap()).unwrap();
    let plan = Arc::clone(h.deployment.plan());

    let restored = Harness::restore(Arc::clone(&plan), stored.clone(), h.now()).unwrap();
    let [Action::CallWebhook(again)] = restored.pending() else {
        panic!("the call asked for again: {:?}", restored.pending())
    };
    assert_eq!((again.gate, again.attempt), (call.gate, call.attempt));
    assert_eq!(again.idempotency_key, call.idempotency_key);

    let resumed = Harness::resume(Deployment::restore(plan, stored).unwrap(), h.now());
    assert!(resumed.pending().is_empty(), "{:?}", resumed.pending());
}
