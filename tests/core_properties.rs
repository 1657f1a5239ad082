//! Property tests of the core over random valid plans and random orders and timings of inputs.
#![cfg(feature = "test-util")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use hookgate::config::{EnvId, GateId, GateKind, Plan};
use hookgate::core::{
    Action, ApprovalKind, CallFailure, CallResult, CoreError, Decision, Deployment, DeploymentId,
    DeploymentState, EnvStatus, EventKind, HostStep, Settings, StartOptions, StepOutcome,
};
use hookgate::test_util::SequentialIds;
use proptest::prelude::*;

/// A random valid deployment file: environments depend only on earlier ones, so the graph is
/// acyclic; analysis never appears before deployment.
fn plan_yaml() -> impl Strategy<Value = String> {
    let gate = |allow_analysis: bool| -> BoxedStrategy<String> {
        let common = prop_oneof![
            (0..4usize).prop_map(|w| format!("runWebhook: {{name: w{w}}}")),
            (0..3u32).prop_map(|m| format!("pause: {{duration: {m}, unit: minutes}}")),
            (any::<bool>(), any::<bool>()).prop_map(|(roles, expires)| {
                let mut s = "pause: {untilApproved: true".to_owned();
                if roles {
                    s += ", requiresRoles: [ops]";
                }
                if expires {
                    s += ", approvalExpiration: {duration: 1, unit: hours}";
                }
                s + "}"
            }),
        ];
        if !allow_analysis {
            return common.boxed();
        }
        prop_oneof![
            3 => common,
            1 => any::<bool>().prop_map(|manual| format!(
                "analysis: {{queries: [q], rollBackMode: {}}}",
                if manual { "manual" } else { "automatic" }
            )),
        ]
        .boxed()
    };
    let env = (
        prop::collection::vec(gate(false), 0..3),
        prop::collection::vec(gate(true), 0..3),
        0..3usize,
        any::<u8>(),
    );
    (
        prop::collection::vec(env, 1..5),
        prop::collection::vec(gate(true), 0..4),
        prop::collection::vec(gate(true), 0..2),
        any::<bool>(),
    )
        .prop_map(|(envs, canary_gates, bg_gates, step_timeout)| {
            let mut y = String::from("application: prop\n");
            if step_timeout {
                y += "deploymentConfig: {timeout: {duration: 30, unit: minutes}}\n";
            }
            y += "targets:\n";
            for (i, (before, after, strategy, deps)) in envs.iter().enumerate() {
                let deps: Vec<String> = (0..i)
                    .filter(|d| deps & (1 << d) != 0)
                    .map(|d| format!("e{d}"))
                    .collect();
                y += &format!(
                    "  e{i}:\n    strategy: {}\n    constraints:\n      dependsOn: [{}]\n      beforeDeployment: [{}]\n      afterDeployment: [{}]\n",
                    ["none", "can", "bg"][*strategy],
                    deps.join(", "),
                    before.join(", "),
                    after.join(", ")
                );
                if *strategy == 0 {
                    y = y.replace("    strategy: none\n", "");
                }
            }
            y += &format!(
                "strategies:\n  can: {{canary: {{steps: [setWeight: {{weight: 20}}, {}, exposeServices: {{services: [web]}}]}}}}\n  bg: {{blueGreen: {{activeService: web, redirectTrafficAfter: [{}], shutDownOldVersionAfter: [pause: {{duration: 1, unit: minutes}}]}}}}\n",
                if canary_gates.is_empty() { "setWeight: {weight: 50}".to_owned() } else { canary_gates.join(", ") },
                bg_gates.join(", ")
            );
            y += "webhooks:\n";
            y += "  - {name: w0, uriTemplate: 'https://a.example/{{armory.deploymentId}}'}\n";
            y += "  - {name: w1, uriTemplate: 'https://b.example', retryCount: 2, retryableStatusCodes: [404, 429]}\n";
            y += "  - {name: w2, uriTemplate: 'https://c.example', disableCallback: true}\n";
            y += "  - {name: w3, uriTemplate: 'https://d.example', retryCount: 1, callbackTimeout: {duration: 10, unit: minutes}}\n";
            y
        })
}

/// One step of a random run: `kind` picks the input, `pick` which pending item it concerns.
#[derive(Debug, Clone, Copy)]
struct Move {
    kind: u8,
    pick: u16,
    flag: bool,
}

fn moves() -> impl Strategy<Value = Vec<Move>> {
    prop::collection::vec(
        (0..9u8, any::<u16>(), any::<bool>()).prop_map(|(kind, pick, flag)| Move {
            kind,
            pick,
            flag,
        }),
        0..80,
    )
}

/// A host that applies moves to a deployment and records everything it sees.
#[derive(Clone)]
struct Sim {
    d: Deployment,
    now: DateTime<Utc>,
    pending: Vec<Action>,
    transcript: Vec<String>,
    statuses: BTreeMap<EnvId, EnvStatus>,
    ended: BTreeSet<EnvId>,
    resolved: BTreeMap<GateId, usize>,
}

impl Sim {
    fn new(plan: Arc<Plan>, now: DateTime<Utc>) -> Self {
        let d = Deployment::start(
            plan,
            DeploymentId::from("p"),
            // A limit random runs reach, so that note counts are copied, stored and checked.
            StartOptions::default()
                .with_seed(3)
                .with_settings(Settings::default().with_max_progress_notes(2)),
            &mut SequentialIds::default(),
            now,
        );
        let mut sim = Sim {
            d,
            now,
            pending: Vec::new(),
            transcript: Vec::new(),
            statuses: BTreeMap::new(),
            ended: BTreeSet::new(),
            resolved: BTreeMap::new(),
        };
        sim.drain();
        sim
    }

    /// Drains outputs and checks the invariants that can be seen in them, and that the state,
    /// whatever point of the run it is at, fits its plan: what `restore` refuses, no run
    /// reaches.
    fn drain(&mut self) {
        let plan = Arc::clone(self.d.plan());
        if let Err(e) = Deployment::restore(Arc::clone(&plan), self.d.state().clone()) {
            panic!("a state the run reached does not fit its plan: {e}");
        }
        let ended_before = self.ended.clone();
        while let Some(a) = self.d.poll_action() {
            if let Action::RunStep(r) = &a {
                assert!(
                    !ended_before.contains(&r.env),
                    "host step {:?} for {:?} after its rollback or cancel",
                    r.step,
                    r.env
                );
            }
            self.transcript.push(format!("{a:?}"));
            self.pending.push(a);
        }
        while let Some(e) = self.d.poll_event() {
            self.transcript.push(format!("{e:?}"));
            match e.kind {
                EventKind::EnvironmentStatus { env, status } => {
                    if matches!(status, EnvStatus::Checking | EnvStatus::Deploying)
                        && self.statuses.get(&env) == Some(&EnvStatus::Pending)
                    {
                        for dep in plan.environment(env).depends_on() {
                            assert_eq!(
                                self.statuses.get(dep),
                                Some(&EnvStatus::Succeeded),
                                "{env:?} started before its dependency {dep:?} succeeded"
                            );
                        }
                    }
                    if matches!(status, EnvStatus::RollingBack | EnvStatus::Canceled)
                        || status.is_terminal()
                    {
                        self.ended.insert(env);
                    }
                    self.statuses.insert(env, status);
                }
                EventKind::GatePassed { gate, .. }
                | EventKind::GateFailed { gate, .. }
                | EventKind::GateClosed { gate, .. } => {
                    let n = self.resolved.entry(gate).or_default();
                    *n += 1;
                    assert_eq!(*n, 1, "{gate:?} resolved twice");
                }
                _ => {}
            }
        }
    }

    fn take(&mut self, pick: u16, f: impl Fn(&Action) -> bool) -> Option<Action> {
        let idx: Vec<usize> = (0..self.pending.len())
            .filter(|&i| f(&self.pending[i]))
            .collect();
        if idx.is_empty() {
            return None;
        }
        Some(self.pending.remove(idx[usize::from(pick) % idx.len()]))
    }

    fn apply(&mut self, m: Move) {
        let now = self.now;
        match m.kind {
            0 | 1 => {
                if let Some(Action::RunStep(r)) =
                    self.take(m.pick, |a| matches!(a, Action::RunStep(_)))
                {
                    let outcome = match (&r.step, m.flag || m.kind == 0) {
                        (_, false) => StepOutcome::Failed {
                            reason: "no".into(),
                        },
                        (HostStep::ExposeServices { .. }, true) => StepOutcome::Exposed(
                            [("web".into(), "https://p.example".into())].into(),
                        ),
                        // Both what a deploy step reports and, from any other step, a success.
                        (_, true) if m.pick.is_multiple_of(2) => StepOutcome::Deployed {
                            replica_set_name: format!("rs-{}", r.op.0),
                        },
                        _ => StepOutcome::Succeeded,
                    };
                    let _ = self.d.handle_step_result(now, r.op, outcome);
                } else if let Some(Action::RollBack { op, .. }) =
                    self.take(m.pick, |a| matches!(a, Action::RollBack { .. }))
                {
                    let _ = self.d.handle_step_result(now, op, StepOutcome::Succeeded);
                }
            }
            2 | 3 => {
                if let Some(Action::CallWebhook(c)) =
                    self.take(m.pick, |a| matches!(a, Action::CallWebhook(_)))
                {
                    let result = match (m.kind, m.flag) {
                        (2, _) => CallResult::Sent { status: 202 },
                        (_, true) => CallResult::from_status(503, None),
                        (_, false) => match m.pick % 3 {
                            0 => CallResult::from_status(404, None),
                            1 => CallResult::Failed(CallFailure::transient("reset")),
                            _ => CallResult::from_status(429, Some(Duration::from_secs(5))),
                        },
                    };
                    let _ = self.d.handle_call_result(now, c.gate, c.attempt, result);
                }
            }
            4 => {
                let ids: Vec<_> = self.d.callback_ids().collect();
                if !ids.is_empty() {
                    let (_, id) = ids[usize::from(m.pick) % ids.len()];
                    if m.pick % 4 == 1 {
                        let before = self.d.state().clone();
                        if self.d.handle_progress(now, id, "note".into()).is_err() {
                            assert!(
                                self.d.state() == &before,
                                "a refused note changed the state"
                            );
                        }
                    } else {
                        let _ = self.d.handle_callback(now, id, m.flag, Some("msg".into()));
                    }
                }
            }
            5 => {
                if let Some(Action::RequestApproval(r)) =
                    self.take(m.pick, |a| matches!(a, Action::RequestApproval(_)))
                {
                    let roles = if m.pick.is_multiple_of(4) {
                        vec![]
                    } else {
                        vec!["ops".to_owned()]
                    };
                    let decision = if m.flag {
                        Decision::approve("p", roles)
                    } else {
                        Decision::reject("p", roles)
                    };
                    if self.d.handle_approval(now, r.gate, decision).is_err() {
                        self.pending.push(Action::RequestApproval(r));
                    }
                }
            }
            6 => {
                if let Some(at) = self.d.poll_timeout() {
                    self.now = self.now.max(at);
                }
                self.d.handle_timeout(self.now);
            }
            7 => {
                self.now += TimeDelta::seconds(i64::from(m.pick) * 7);
                self.d.handle_timeout(self.now);
            }
            _ => {
                if m.flag && m.pick.is_multiple_of(16) {
                    let _ = self.d.handle_cancel(now, "p");
                }
            }
        }
        self.drain();
    }

    /// Answers everything favourably and lets time pass until nothing is left to do.
    fn finish(&mut self) {
        for _ in 0..10_000 {
            if self.d.is_finished() {
                return;
            }
            let now = self.now;
            if let Some(a) = self.pending.pop() {
                match a {
                    Action::RunStep(r) => {
                        let _ = self.d.handle_step_result(now, r.op, StepOutcome::Succeeded);
                    }
                    Action::RollBack { op, .. } => {
                        let _ = self.d.handle_step_result(now, op, StepOutcome::Succeeded);
                    }
                    Action::CallWebhook(c) => {
                        let _ = self.d.handle_call_result(
                            now,
                            c.gate,
                            c.attempt,
                            CallResult::Sent { status: 200 },
                        );
                        if let Some(id) = self.d.callback_id(c.gate) {
                            let _ = self.d.handle_callback(now, id, true, None);
                        }
                    }
                    Action::RequestApproval(r) => {
                        let roles = match r.kind {
                            ApprovalKind::Manual { roles } => roles,
                            _ => vec![],
                        };
                        let _ = self
                            .d
                            .handle_approval(now, r.gate, Decision::approve("p", roles));
                    }
                    _ => {}
                }
            } else if let Some(at) = self.d.poll_timeout() {
                self.now = self.now.max(at);
                self.d.handle_timeout(self.now);
            } else {
                break;
            }
            self.drain();
        }
        panic!(
            "the deployment did not finish: pending {:?}, state {:?}",
            self.pending,
            self.d.state()
        );
    }
}

fn round_trip(d: &Deployment) -> Deployment {
    let json = serde_json::to_string(d).unwrap();
    let state: DeploymentState = serde_json::from_str(&json).unwrap();
    Deployment::restore(Arc::clone(d.plan()), Arc::new(state)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_runs_keep_the_invariants_and_always_finish(yaml in plan_yaml(), moves in moves()) {
        let plan = Arc::new(Plan::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")));
        let mut sim = Sim::new(plan, common::t0());
        for m in moves {
            sim.apply(m);
        }
        sim.finish();
        prop_assert!(sim.d.is_finished());
        for (i, g) in sim.d.plan().gates().iter().enumerate() {
            let opened = sim.d.gate_state(GateId(i as u32));
            prop_assert!(!opened.is_open(), "gate {} ({}) still open: {opened:?}", i, g.path());
        }
        let webhook_gates = sim.d.plan().gates().iter().filter(|g| matches!(g.kind(), GateKind::Webhook { .. })).count();
        prop_assert_eq!(sim.d.callback_ids().count(), webhook_gates);
    }

    #[test]
    fn serialize_and_restore_at_any_point_changes_nothing(
        yaml in plan_yaml(),
        moves in moves(),
        cut in any::<prop::sample::Index>(),
    ) {
        let plan = Arc::new(Plan::from_yaml(&yaml).unwrap());
        let mut straight = Sim::new(plan, common::t0());
        let cut = cut.index(moves.len() + 1);
        for m in &moves[..cut] {
            straight.apply(*m);
        }
        let mut restored = straight.clone();
        restored.d = round_trip(&straight.d);
        prop_assert_eq!(restored.d.state(), straight.d.state());
        for m in &moves[cut..] {
            straight.apply(*m);
            restored.apply(*m);
        }
        straight.finish();
        restored.finish();
        prop_assert_eq!(&restored.transcript, &straight.transcript);
        prop_assert_eq!(restored.d.state(), straight.d.state());
    }
}

/// Plan B for a state of plan A: A's file with one change that keeps (or not) the numbers of
/// environments and gates but moves what the state's positions and gate states point at.
fn other_plan(yaml: &str, mutation: usize) -> String {
    const MUTATIONS: &[(&str, &str)] = &[
        ("steps: [setWeight: {weight: 20}, ", "steps: ["),
        (
            "steps: [setWeight: {weight: 20}, ",
            "steps: [setWeight: {weight: 20}, setWeight: {weight: 30}, setWeight: {weight: 40}, ",
        ),
        ("strategy: can\n", "strategy: bg\n"),
        ("strategy: bg\n", "strategy: can\n"),
        (
            "pause: {untilApproved: true}",
            "pause: {duration: 1, unit: minutes}",
        ),
        (
            "pause: {duration: 0, unit: minutes}",
            "pause: {untilApproved: true}",
        ),
        (
            "pause: {duration: 1, unit: minutes}",
            "analysis: {queries: [q]}",
        ),
        ("runWebhook: {name: w1}", "pause: {untilApproved: true}"),
        ("rollBackMode: manual", "rollBackMode: automatic"),
        ("runWebhook: {name: w0}", "runWebhook: {name: w3}"),
    ];
    let (from, to) = MUTATIONS[mutation % MUTATIONS.len()];
    yaml.replacen(from, to, 1 + mutation / MUTATIONS.len())
}

/// Plays a host on a restored deployment: reads everything, answers every action, fires every
/// deadline, for at most 300 steps. Only that nothing panics is asked of it (a state another
/// plan accepted may never finish); `handle_timeout` returning each time shows it does not spin.
fn drive(mut d: Deployment, flag: bool) {
    d.reissue_in_flight();
    let mut now = common::t0();
    let plan = Arc::clone(d.plan());
    for step in 0..300 {
        let _ = (
            d.status(),
            d.is_finished(),
            d.poll_timeout(),
            d.callback_ids().count(),
        );
        for i in 0..plan.environments().len() {
            let env = EnvId(i as u16);
            let _ = (d.env_status(env), d.preview_urls(env));
        }
        for i in 0..plan.gates().len() {
            let gate = GateId(i as u32);
            let _ = (d.gate_state(gate), d.context_for(gate), d.callback_id(gate));
        }
        while d.poll_event().is_some() {}
        if step == 150 && flag {
            let _ = d.handle_cancel(now, "p");
        }
        match d.poll_action() {
            Some(Action::RunStep(r)) => {
                let outcome = if flag {
                    StepOutcome::Succeeded
                } else {
                    StepOutcome::Failed {
                        reason: "no".into(),
                    }
                };
                let _ = d.handle_step_result(now, r.op, outcome);
            }
            Some(Action::RollBack { op, .. }) => {
                let _ = d.handle_step_result(now, op, StepOutcome::Succeeded);
            }
            Some(Action::CallWebhook(c)) => {
                let _ =
                    d.handle_call_result(now, c.gate, c.attempt, CallResult::Sent { status: 200 });
                let _ = d.handle_call_result(
                    now,
                    c.gate,
                    c.attempt,
                    CallResult::from_status(503, None),
                );
                if let Some(id) = d.callback_id(c.gate) {
                    let _ = d.handle_progress(now, id, "m".into());
                    let _ = d.handle_callback(now, id, flag, None);
                }
            }
            Some(Action::RequestApproval(r)) => {
                let decision = if flag {
                    Decision::approve("p", vec!["ops".to_owned()])
                } else {
                    Decision::reject("p", vec!["ops".to_owned()])
                };
                let _ = d.handle_approval(now, r.gate, decision);
            }
            Some(_) => {}
            None => match d.poll_timeout() {
                Some(at) => {
                    now = now.max(at);
                    d.handle_timeout(now);
                }
                None => return,
            },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn restoring_a_state_with_another_plan_never_panics(
        yaml in plan_yaml(),
        other in plan_yaml(),
        independent in any::<bool>(),
        mutation in 0..30usize,
        moves in moves(),
        flag in any::<bool>(),
    ) {
        let a = Arc::new(Plan::from_yaml(&yaml).unwrap());
        let b = if independent { other } else { other_plan(&yaml, mutation) };
        let Ok(b) = Plan::from_yaml(&b) else {
            return Ok(());
        };
        let b = Arc::new(b);
        let mut sim = Sim::new(a, common::t0());
        // Every state the run passes through, restored with plan B.
        for m in moves {
            sim.apply(m);
            match Deployment::restore(Arc::clone(&b), sim.d.state().clone()) {
                Ok(d) => drive(d, flag),
                Err(e) => prop_assert!(matches!(e, CoreError::PlanMismatch { .. }), "{e:?}"),
            }
        }
    }

    /// A queued deployment restored with another plan is refused or, begun there, driven
    /// without a panic; with its own plan it is always taken.
    #[test]
    fn restoring_a_queued_state_with_another_plan_never_panics(
        yaml in plan_yaml(),
        other in plan_yaml(),
        independent in any::<bool>(),
        mutation in 0..30usize,
        flag in any::<bool>(),
    ) {
        let a = Arc::new(Plan::from_yaml(&yaml).unwrap());
        let b = if independent { other } else { other_plan(&yaml, mutation) };
        let Ok(b) = Plan::from_yaml(&b) else {
            return Ok(());
        };
        let queued = Deployment::queue(
            Arc::clone(&a),
            DeploymentId::from("q"),
            StartOptions::default(),
            &mut SequentialIds::default(),
            common::t0(),
        );
        prop_assert!(Deployment::restore(a, queued.state().clone()).is_ok());
        match Deployment::restore(Arc::new(b), queued.state().clone()) {
            Ok(mut d) => {
                d.handle_begin(common::t0()).unwrap();
                drive(d, flag);
            }
            Err(e) => prop_assert!(matches!(e, CoreError::PlanMismatch { .. }), "{e:?}"),
        }
    }
}

/// A state of `d` with its JSON edited: `from` (which must occur) becomes `to`.
fn edited(d: &Deployment, from: &str, to: &str) -> DeploymentState {
    let json = serde_json::to_string(d).unwrap();
    assert!(json.contains(from), "{from} in {json}");
    serde_json::from_str(&json.replacen(from, to, 1)).unwrap()
}

fn start(yaml: &str) -> Deployment {
    Deployment::start(
        Arc::new(Plan::from_yaml(yaml).unwrap()),
        "d".into(),
        StartOptions::default(),
        &mut SequentialIds::default(),
        common::t0(),
    )
}

fn mismatch(d: &Deployment, state: DeploymentState) -> &'static str {
    match Deployment::restore(Arc::clone(d.plan()), Arc::new(state)) {
        Err(CoreError::PlanMismatch { what }) => what,
        other => panic!("expected PlanMismatch, got {other:?}"),
    }
}

/// Answers the first pending action of `d`, a host step, as succeeded.
fn first_step_ok(d: &mut Deployment) {
    let Some(Action::RunStep(r)) = d.poll_action() else {
        panic!("a host step is asked for first")
    };
    d.handle_step_result(common::t0(), r.op, StepOutcome::Succeeded)
        .unwrap();
}

#[test]
fn restore_refuses_a_canary_position_beyond_the_steps() {
    let canary = |steps: &str| {
        format!(
            "application: a\ntargets: {{x: {{strategy: can}}}}\nstrategies: {{can: {{canary: {{steps: [{steps}]}}}}}}"
        )
    };
    let mut d = start(&canary("setWeight: {weight: 20}, setWeight: {weight: 60}"));
    first_step_ok(&mut d); // the deploy; now at the first setWeight
    let state = edited(&d, r#""pos":{"canary":0}"#, r#""pos":{"canary":7}"#);
    assert_eq!(
        mismatch(&d, state),
        "an environment at a position its strategy does not have"
    );

    // The same state restored with a layout of the plan with fewer steps.
    let mut d = start(&canary("setWeight: {weight: 20}, setWeight: {weight: 60}"));
    while let Some(Action::RunStep(r)) = d.poll_action() {
        if matches!(r.step, HostStep::SetWeight(60)) {
            break;
        }
        d.handle_step_result(common::t0(), r.op, StepOutcome::Succeeded)
            .unwrap();
    }
    let fewer = Arc::new(Plan::from_yaml(&canary("setWeight: {weight: 60}")).unwrap());
    assert!(matches!(
        Deployment::restore(fewer, d.state().clone()),
        Err(CoreError::PlanMismatch { .. })
    ));

    // At a gate step, with the gate open: the gate's place is looked up by the position.
    let mut d = start(&canary("pause: {untilApproved: true}"));
    first_step_ok(&mut d); // the deploy; now waiting on the approval
    let state = edited(&d, r#""pos":{"canary":0}"#, r#""pos":{"canary":7}"#);
    assert_eq!(
        mismatch(&d, state),
        "an environment at a position its strategy does not have"
    );
}

/// A stored operation counter near its end would overflow as the deployment goes on (each
/// host step, rollback and analysis takes the next number): refused with a wide margin.
#[test]
fn restore_refuses_an_operation_counter_near_its_end() {
    let d = start("application: a\ntargets: {x: {}, y: {}}");
    for next_op in [u64::MAX, u64::MAX - 1, u64::MAX / 2 + 1] {
        let state = edited(&d, r#""next_op":2"#, &format!(r#""next_op":{next_op}"#));
        assert_eq!(
            mismatch(&d, state),
            "an operation counter beyond what a deployment can have issued"
        );
    }
    let state = edited(
        &d,
        r#""next_op":2"#,
        &format!(r#""next_op":{}"#, u64::MAX / 2),
    );
    assert!(Deployment::restore(Arc::clone(d.plan()), Arc::new(state)).is_ok());
}

/// Note counts are kept only for gates that take callbacks: one for an approval, a webhook
/// with `disableCallback`, or a gate beyond the plan came from elsewhere.
#[test]
fn restore_refuses_note_counts_for_gates_that_take_no_callback() {
    let d = start(
        "application: a\ntargets: {x: {constraints: {beforeDeployment: [pause: {untilApproved: true}, runWebhook: {name: w}]}}}\nwebhooks: [{name: w, uriTemplate: 'https://w.example', disableCallback: true}]",
    );
    for gate in ["0", "1", "5"] {
        let state = edited(
            &d,
            r#""callbacks":"#,
            &format!(r#""notes":{{"{gate}":1}},"callbacks":"#),
        );
        assert_eq!(
            mismatch(&d, state),
            "progress notes counted for a gate that takes no callback"
        );
    }
}

/// A ReplicaSet is kept for an environment of the plan only.
#[test]
fn restore_refuses_a_replica_set_for_an_environment_the_plan_does_not_have() {
    let d = start("application: a\ntargets: {x: {}, y: {}}");
    let with = |env: &str| {
        edited(
            &d,
            r#""callbacks":"#,
            &format!(r#""replica_sets":{{"{env}":"rs-1"}},"callbacks":"#),
        )
    };
    assert_eq!(
        mismatch(&d, with("2")),
        "a ReplicaSet for an environment the plan does not have"
    );
    let kept = Deployment::restore(Arc::clone(d.plan()), Arc::new(with("1"))).unwrap();
    assert_eq!(kept.replica_set_name(EnvId(1)), Some("rs-1"));
}

#[test]
fn restore_refuses_a_gate_state_its_kind_never_takes() {
    let d = start(&format!(
        "application: a\ntargets: {{x: {{constraints: {{beforeDeployment: [pause: {{duration: 1, unit: minutes}}, runWebhook: {{name: ticket}}, pause: {{untilApproved: true}}]}}}}}}\n{}",
        common::HOOKS
    ));
    let pausing = r#"{"pausing":{"until":"2026-11-01T12:01:00Z"}}"#;
    let calling = r#"{"calling":{"attempt":1}}"#;
    let approval = r#"{"awaiting_approval":{"expires":null}}"#;
    let kinds = "a gate in a state its kind of gate never takes";
    // A pause that is being called, and a webhook that pauses.
    let swapped = edited(
        &d,
        &format!("{pausing},{calling}"),
        &format!("{calling},{pausing}"),
    );
    assert_eq!(mismatch(&d, swapped), kinds);
    // An approval waiting for a callback, or for an analysis' decision.
    for other in [
        r#"{"awaiting_callback":{"deadline":"2026-11-02T12:00:00Z"}}"#,
        r#""awaiting_decision""#,
        r#"{"retry_waiting":{"attempt":2,"at":"2026-11-01T12:00:01Z"}}"#,
    ] {
        assert_eq!(mismatch(&d, edited(&d, approval, other)), kinds);
    }
    // A webhook attempt that the webhook's retries never reach (`ticket` has none).
    assert_eq!(
        mismatch(&d, edited(&d, calling, r#"{"calling":{"attempt":2}}"#)),
        kinds
    );
    assert!(Deployment::restore(Arc::clone(d.plan()), d.state().clone()).is_ok());

    // A webhook with `disableCallback` waiting for a callback it never takes.
    let d = start(&format!(
        "application: a\ntargets: {{x: {{constraints: {{beforeDeployment: [runWebhook: {{name: fire-and-forget}}]}}}}}}\n{}",
        common::HOOKS
    ));
    let waiting = edited(
        &d,
        calling,
        r#"{"awaiting_callback":{"deadline":"2026-11-02T12:00:00Z"}}"#,
    );
    assert_eq!(mismatch(&d, waiting), kinds);
}

/// An environment waiting on a gate list is moved on only by its gates: a list with a gate that
/// never opened or already failed, or with none still open, would wait for ever.
#[test]
fn restore_refuses_an_environment_its_gates_can_never_move_on() {
    let d = start(&format!(
        "application: a\ntargets: {{x: {{constraints: {{beforeDeployment: [pause: {{duration: 1, unit: minutes}}, runWebhook: {{name: ticket}}]}}}}}}\n{}",
        common::HOOKS
    ));
    let pausing = r#"{"pausing":{"until":"2026-11-01T12:01:00Z"}}"#;
    let calling = r#"{"calling":{"attempt":1}}"#;
    let both = format!("{pausing},{calling}");
    for (gates, what) in [
        (
            format!(r#""idle",{calling}"#),
            "an environment waiting on a gate that is neither open nor passed",
        ),
        (
            format!(r#"{pausing},{{"failed":"call_failed"}}"#),
            "an environment waiting on a gate that is neither open nor passed",
        ),
        (
            format!(r#"{pausing},{{"closed":"canceled"}}"#),
            "an environment waiting on a gate that is neither open nor passed",
        ),
        (
            r#"{"passed":"pause_elapsed"},{"passed":"callback"}"#.to_owned(),
            "an environment waiting on gates none of which is open",
        ),
    ] {
        assert_eq!(mismatch(&d, edited(&d, &both, &gates)), what, "{gates}");
    }
    // One passed while the other is still open: the open one moves it on.
    let one_passed = edited(
        &d,
        &both,
        &format!(r#"{{"passed":"pause_elapsed"}},{calling}"#),
    );
    assert!(Deployment::restore(Arc::clone(d.plan()), Arc::new(one_passed)).is_ok());
}

/// A deployment's status follows its environments: never `queued` once begun, and terminal
/// only once every environment is done.
#[test]
fn restore_refuses_a_status_its_environments_contradict() {
    let d = start(
        "application: a\ntargets: {x: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}}",
    );
    let running = r#""status":"running""#;
    assert_eq!(
        mismatch(&d, edited(&d, running, r#""status":"queued""#)),
        "a queued deployment with something begun"
    );
    for terminal in ["succeeded", "failed", "canceled", "rolled_back"] {
        let state = edited(&d, running, &format!(r#""status":"{terminal}""#));
        assert_eq!(
            mismatch(&d, state),
            "a finished deployment with an environment under way",
            "{terminal}"
        );
    }
}

#[test]
fn restore_refuses_a_deadline_on_a_gate_list() {
    let d = start(
        "application: a\ntargets: {x: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}}",
    );
    let state = edited(
        &d,
        r#""op":null,"deadline":null"#,
        r#""op":null,"deadline":"2026-11-01T11:00:00Z""#,
    );
    assert_eq!(
        mismatch(&d, state),
        "an environment waiting on gates with a host step's operation or deadline"
    );
}

#[test]
fn restore_refuses_callback_ids_out_of_gate_order() {
    let d = start(&format!(
        "application: a\ntargets: {{x: {{constraints: {{beforeDeployment: [runWebhook: {{name: ticket}}, runWebhook: {{name: smoke}}]}}}}}}\n{}",
        common::HOOKS
    ));
    let state = edited(
        &d,
        r#""callbacks":[[0,"00000000000000000000000000000001"],[1,"00000000000000000000000000000002"]]"#,
        r#""callbacks":[[1,"00000000000000000000000000000002"],[0,"00000000000000000000000000000001"]]"#,
    );
    assert_eq!(
        mismatch(&d, state),
        "callback ids not listed once per webhook gate, in gate order"
    );
}

#[test]
fn restore_refuses_a_state_from_another_plan() {
    let a = Arc::new(Plan::from_yaml("application: a\ntargets: {x: {}, y: {}}").unwrap());
    let b = Arc::new(Plan::from_yaml("application: a\ntargets: {x: {}}").unwrap());
    let d = Deployment::start(
        a,
        "d".into(),
        StartOptions::default(),
        &mut SequentialIds::default(),
        common::t0(),
    );
    match Deployment::restore(b, d.state().clone()) {
        Err(CoreError::PlanMismatch { what }) => assert_eq!(what, "number of environments"),
        other => panic!("expected PlanMismatch, got {other:?}"),
    }
}

#[test]
fn reissue_after_restore_repeats_in_flight_work_with_the_same_keys() {
    let plan = Arc::new(
        Plan::from_yaml(&format!(
            "application: a\ntargets: {{x: {{constraints: {{beforeDeployment: [runWebhook: {{name: ticket}}, pause: {{untilApproved: true}}]}}}}, y: {{}}}}\n{}",
            common::HOOKS
        ))
        .unwrap(),
    );
    let mut d = Deployment::start(
        plan,
        "d".into(),
        StartOptions::default(),
        &mut SequentialIds::default(),
        common::t0(),
    );
    // Saved before its actions were drained, as a host that stores before it acts does: the
    // state holds them, and asking again takes their place rather than adding to them.
    let mut undrained = round_trip(&d);
    let mut before = Vec::new();
    while let Some(a) = d.poll_action() {
        before.push(a);
    }
    let mut restored = round_trip(&d);
    restored.reissue_in_flight();
    undrained.reissue_in_flight();
    let key = |d: &mut Deployment| {
        let mut s = Vec::new();
        while let Some(a) = d.poll_action() {
            s.push(format!("{a:?}"));
        }
        s.sort();
        s
    };
    let mut before: Vec<String> = before.iter().map(|a| format!("{a:?}")).collect();
    before.sort();
    assert_eq!(before, key(&mut restored));
    assert_eq!(before, key(&mut undrained), "each asked for once");
}

/// An environment starts in the transition in which its dependencies have all succeeded, and is
/// canceled in the one in which one ends otherwise: a state with one waiting though nothing
/// holds it back, or on a dependency that can no longer succeed, would stall for good, and one
/// under way before its dependencies succeeded ran out of order.
#[test]
fn restore_refuses_environments_out_of_step_with_their_dependencies() {
    let one = start("application: a\ntargets: {dev: {}}");
    let running = r#"{"running":{"pos":"deploy","op":1,"deadline":null}}"#;
    let state = edited(&one, running, r#""waiting""#);
    assert_eq!(
        mismatch(&one, state),
        "an environment waiting though its dependencies succeeded"
    );

    let two = start("application: a\ntargets: {dev: {}, prod: {constraints: {dependsOn: [dev]}}}");
    let state = edited(&two, r#""waiting""#, running.replace("1", "2").as_str());
    assert_eq!(
        mismatch(&two, state),
        "an environment started before its dependencies succeeded"
    );
    let state = edited(&two, running, r#"{"done":"failed"}"#);
    assert_eq!(
        mismatch(&two, state),
        "an environment waiting on a dependency that did not succeed"
    );
    // A dependant canceled while its dependency runs is what a person's cancel leaves.
    let state = edited(&two, r#""waiting""#, r#"{"done":"canceled"}"#);
    assert!(Deployment::restore(Arc::clone(two.plan()), Arc::new(state)).is_ok());
}

/// The transition that finishes the last environment finishes the deployment, and every way
/// out of a gate list closes what is open in it: a running deployment with nothing left to
/// do, or a finished one with a webhook gate still calling (its call would be sent again on
/// recovery, a callback answered 200 instead of 410), fits no run.
#[test]
fn restore_refuses_a_finished_deployment_still_running_or_with_a_gate_open() {
    let mut d = start(&format!(
        "application: a\ntargets: {{x: {{constraints: {{beforeDeployment: [runWebhook: {{name: ticket}}]}}}}}}\n{}",
        common::HOOKS
    ));
    let Some(Action::CallWebhook(call)) = d.poll_action() else {
        panic!("the gate's call is asked for first")
    };
    let calling = r#"{"calling":{"attempt":1}}"#;
    // Open while its environment waits on its list: it fits.
    assert!(Deployment::restore(Arc::clone(d.plan()), d.state().clone()).is_ok());
    d.handle_call_result(
        common::t0(),
        call.gate,
        call.attempt,
        CallResult::Failed(CallFailure::permanent("refused")),
    )
    .unwrap();
    assert!(d.is_finished());
    let finished = serde_json::to_string(&d).unwrap();
    let status = finished
        .split(r#""status":"#)
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .unwrap()
        .to_owned();
    let state = edited(
        &d,
        &format!(r#""status":{status}"#),
        r#""status":"running""#,
    );
    assert_eq!(
        mismatch(&d, state),
        "a running deployment with every environment done"
    );
    let failed_gate = finished
        .split(r#""gates":["#)
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap()
        .to_owned();
    let state = edited(&d, &failed_gate, calling);
    assert_eq!(
        mismatch(&d, state),
        "an open gate outside the gate list its environment waits on"
    );
}

/// The jitter generator's state is stored in `rand_pcg`'s own serde form: pinned here, so that
/// an upgrade of that crate which changes it fails this test instead of leaving stored states
/// unreadable or their jitter different after a restart.
#[test]
fn the_jitter_generators_stored_form_is_pinned() {
    let d = start("application: a\ntargets: {x: {}}");
    let json = serde_json::to_string(d.state()).unwrap();
    let rng = json
        .split(r#""rng":"#)
        .nth(1)
        .and_then(|rest| rest.split_inclusive('}').next())
        .unwrap();
    assert_eq!(rng, r#"{"state":230520720699419151020933205007694820077}"#);
    let back: DeploymentState = serde_json::from_str(&json).unwrap();
    assert_eq!(
        &back,
        &**d.state(),
        "read back as written, generator included"
    );
}
