//! A deployment queued behind another one of its application (`enqueueOne`): nothing of it
//! begins until `handle_begin`, which starts it as `Deployment::start` would have at that
//! moment, and a cancel finishes it without anything to undo.
#![cfg(feature = "test-util")]

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use hookgate::config::{EnvId, GateId, Plan};
use hookgate::core::{
    Action, CallResult, CoreError, Decision, Deployment, DeploymentStatus, EnvStatus, Event,
    EventKind, OpId, StartOptions, StepOutcome,
};
use hookgate::test_util::SequentialIds;

mod common;

/// Two targets, one after the other: a webhook gate, then a manual approval.
const FILE: &str = r#"
application: shop
targets:
  dev:
    constraints:
      beforeDeployment: [runWebhook: {name: ticket}]
  prod:
    constraints:
      dependsOn: [dev]
      beforeDeployment: [pause: {untilApproved: true}]
webhooks:
  - name: ticket
    uriTemplate: https://tickets.example/run
    callbackTimeout: {duration: 10, unit: minutes}
"#;

fn plan() -> Arc<Plan> {
    Arc::new(Plan::from_yaml(FILE).unwrap())
}

fn options() -> StartOptions {
    StartOptions::default()
        .with_context("ticket", "T-1")
        .with_tenant("team-a")
        .with_seed(7)
}

fn queued(at: DateTime<Utc>) -> Deployment {
    Deployment::queue(
        plan(),
        "d-1".into(),
        options(),
        &mut SequentialIds::default(),
        at,
    )
}

fn drain(d: &mut Deployment) -> (Vec<Action>, Vec<Event>) {
    let actions = std::iter::from_fn(|| d.poll_action()).collect();
    let events = std::iter::from_fn(|| d.poll_event()).collect();
    (actions, events)
}

#[test]
fn a_queued_deployment_asks_for_nothing_until_it_begins() {
    let t0 = common::t0();
    let mut d = queued(t0);
    assert_eq!(d.status(), DeploymentStatus::Queued);
    assert!(!d.is_finished());
    assert_eq!(d.started_at(), t0);
    assert_eq!(d.tenant(), Some("team-a"));
    assert_eq!(d.env_status(EnvId(0)), EnvStatus::Pending);
    assert_eq!(d.poll_timeout(), None);
    assert_eq!(drain(&mut d), (vec![], vec![]));
    assert_eq!(
        d.callback_ids().count(),
        1,
        "its callback id is given out already"
    );

    // A day later, nothing has fired.
    let later = t0 + TimeDelta::days(1);
    d.handle_timeout(later);
    assert_eq!(drain(&mut d), (vec![], vec![]));
    assert_eq!(d.status(), DeploymentStatus::Queued);
}

/// `queue` then `handle_begin` is `start` at the moment it begins: the same state, actions and
/// events, with the callback ids given out when it was queued.
#[test]
fn beginning_is_starting_at_that_moment() {
    let t0 = common::t0();
    let t1 = t0 + TimeDelta::hours(3);
    let mut begun = queued(t0);
    begun.handle_begin(t1).unwrap();
    let mut started = Deployment::start(
        plan(),
        "d-1".into(),
        options(),
        &mut SequentialIds::default(),
        t1,
    );
    assert_eq!(begun.status(), DeploymentStatus::Running);
    assert_eq!(begun.started_at(), t1);
    assert_eq!(
        serde_json::to_string(&begun).unwrap(),
        serde_json::to_string(&started).unwrap()
    );
    let (actions, events) = drain(&mut begun);
    assert_eq!((actions.clone(), events.clone()), drain(&mut started));
    assert!(matches!(actions.as_slice(), [Action::CallWebhook(_)]));
    assert_eq!(events[0].kind, EventKind::DeploymentStarted);
    assert!(events.iter().all(|e| e.at == t1));
    // The callback timeout counts from the beginning, not from the queueing.
    let Action::CallWebhook(call) = &actions[0] else {
        unreachable!()
    };
    begun
        .handle_call_result(
            t1,
            call.gate,
            call.attempt,
            CallResult::Sent { status: 202 },
        )
        .unwrap();
    assert_eq!(begun.poll_timeout(), Some(t1 + TimeDelta::minutes(10)));
}

#[test]
fn only_a_queued_deployment_begins() {
    let t0 = common::t0();
    let mut d = queued(t0);
    d.handle_begin(t0).unwrap();
    drain(&mut d);
    assert_eq!(d.handle_begin(t0), Err(CoreError::NotQueued));
    assert_eq!(
        drain(&mut d),
        (vec![], vec![]),
        "a second begin asks for nothing"
    );

    let mut canceled = queued(t0);
    canceled.handle_cancel(t0, "ops").unwrap();
    assert_eq!(canceled.handle_begin(t0), Err(CoreError::Finished));
}

/// What a started deployment takes is refused while queued, and changes nothing.
#[test]
fn a_queued_deployment_refuses_the_inputs_of_a_started_one() {
    let t0 = common::t0();
    let mut d = queued(t0);
    let before = serde_json::to_string(&d).unwrap();
    let (gate, callback) = d.callback_ids().next().unwrap();
    assert_eq!(
        d.handle_callback(t0, callback, true, None),
        Err(CoreError::GateNotOpen)
    );
    assert_eq!(
        d.handle_call_result(t0, gate, 1, CallResult::Sent { status: 200 }),
        Err(CoreError::Stale)
    );
    assert_eq!(
        d.handle_step_result(t0, OpId(1), StepOutcome::Succeeded),
        Err(CoreError::Stale)
    );
    let approval = GateId(1);
    assert_eq!(
        d.handle_approval(t0, approval, Decision::approve("ops", Vec::<String>::new())),
        Err(CoreError::NotAwaitingDecision(approval))
    );
    assert_eq!(serde_json::to_string(&d).unwrap(), before);
    assert_eq!(drain(&mut d), (vec![], vec![]));
}

#[test]
fn a_canceled_queued_deployment_finishes_with_nothing_to_undo() {
    let t0 = common::t0();
    let mut d = queued(t0);
    d.handle_cancel(t0, "ops").unwrap();
    assert_eq!(d.status(), DeploymentStatus::Canceled);
    assert!(d.is_finished());
    assert_eq!(d.env_status(EnvId(0)), EnvStatus::Canceled);
    assert_eq!(d.env_status(EnvId(1)), EnvStatus::Canceled);
    let (actions, events) = drain(&mut d);
    assert!(actions.is_empty());
    let kinds: Vec<_> = events.into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::CancelRequested { by: "ops".into() },
            EventKind::DeploymentFinished {
                status: DeploymentStatus::Canceled
            },
        ]
    );
    assert_eq!(d.handle_cancel(t0, "ops"), Err(CoreError::Finished));
    // Stored and restored, it stays finished.
    let state = Arc::new(serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap());
    let restored = Deployment::restore(plan(), state).unwrap();
    assert_eq!(restored.status(), DeploymentStatus::Canceled);
}

/// A queued deployment is stored and restored as one, and begins after the restore; a state
/// that says queued but has begun something is refused.
#[test]
fn a_queued_deployment_restores_and_then_begins() {
    let t0 = common::t0();
    let d = queued(t0);
    let json = serde_json::to_string(&d).unwrap();
    let mut restored =
        Deployment::restore(plan(), Arc::new(serde_json::from_str(&json).unwrap())).unwrap();
    assert_eq!(restored.status(), DeploymentStatus::Queued);
    restored.handle_begin(t0).unwrap();
    assert!(matches!(
        drain(&mut restored).0.as_slice(),
        [Action::CallWebhook(_)]
    ));

    let mut started = queued(t0);
    started.handle_begin(t0).unwrap();
    drain(&mut started);
    let begun_but_queued = serde_json::to_string(&started).unwrap().replacen(
        r#""status":"running""#,
        r#""status":"queued""#,
        1,
    );
    assert!(
        begun_but_queued.contains(r#""status":"queued""#),
        "{begun_but_queued}"
    );
    let refused = Deployment::restore(
        plan(),
        Arc::new(serde_json::from_str(&begun_but_queued).unwrap()),
    );
    assert_eq!(
        refused.err(),
        Some(CoreError::PlanMismatch {
            what: "a queued deployment with something begun"
        })
    );

    // Events pending, which a queued deployment never emits: its begin would emit a second
    // start, and they may name what the plan does not have.
    let mut emitted = queued(t0);
    emitted.handle_begin(t0).unwrap();
    let json = serde_json::to_string(&emitted).unwrap();
    let events_at = json.find(r#""events":["#).expect("events pending");
    let pristine = serde_json::to_string(&queued(t0)).unwrap();
    let with_events = format!(
        "{}{}",
        &pristine[..pristine.find(r#""events":"#).expect("an events field")],
        &json[events_at..]
    );
    assert!(
        with_events.contains(r#""status":"queued""#),
        "{with_events}"
    );
    let refused = Deployment::restore(
        plan(),
        Arc::new(serde_json::from_str(&with_events).unwrap()),
    );
    assert_eq!(
        refused.err(),
        Some(CoreError::PlanMismatch {
            what: "a queued deployment with something begun"
        })
    );
}
