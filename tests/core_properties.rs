//! Property tests of the core over random valid plans and random orders and timings of inputs.
#![cfg(feature = "test-util")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use hookgate::config::{EnvId, GateId, GateKind, Plan};
use hookgate::core::{
    Action, ApprovalKind, CallFailure, CallResult, Decision, Deployment, DeploymentId,
    DeploymentState, EnvStatus, EventKind, HostStep, StartOptions, StepOutcome,
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
            y += "  - {name: w1, uriTemplate: 'https://b.example', retryCount: 2}\n";
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
            StartOptions::default().with_seed(3),
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

    /// Drains outputs and checks the invariants that can be seen in them.
    fn drain(&mut self) {
        let plan = Arc::clone(self.d.plan());
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
                    let _ = self.d.handle_callback(now, id, m.flag, Some("msg".into()));
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
    Deployment::restore(Arc::clone(d.plan()), state).unwrap()
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
    assert!(Deployment::restore(b, d.state().clone()).is_err());
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
    let mut before = Vec::new();
    while let Some(a) = d.poll_action() {
        before.push(a);
    }
    let mut restored = round_trip(&d);
    restored.reissue_in_flight();
    let mut after = Vec::new();
    while let Some(a) = restored.poll_action() {
        after.push(a);
    }
    let key = |v: &Vec<Action>| {
        let mut s: Vec<String> = v.iter().map(|a| format!("{a:?}")).collect();
        s.sort();
        s
    };
    assert_eq!(key(&before), key(&after));
}
