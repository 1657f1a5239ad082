//! The transitions: how environments move through their positions and how gates resolve.
//! Everything here is driven by the `handle_*` methods of `Deployment`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand_core::Rng;

use super::action::{Action, ApprovalKind, ApprovalRequest, HostStep, StepRequest, WebhookCall};
use super::event::{Event, EventKind};
use super::ids::OpId;
use super::state::{DeploymentState, Due, EnvState, GateState, Pos};
use super::status::{DeploymentStatus, EnvStatus, Resolution};
use crate::config::{CanaryStep, EnvId, GateId, GateKind, Plan, Strategy};

/// What an environment does at a position.
pub(crate) enum Work<'p> {
    /// Wait for these gates, in parallel.
    Gates(&'p [GateId]),
    /// Ask the host for this step.
    Step(HostStep),
}

/// `now + d`, saturating at the largest representable time instead of panicking: a host that
/// passes an absurd `now` must not crash the core.
pub(crate) fn later(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub(crate) fn work(plan: &Plan, env: EnvId, pos: Pos) -> Work<'_> {
    let e = plan.environment(env);
    match (pos, e.strategy()) {
        (Pos::Before, _) => Work::Gates(e.before()),
        (Pos::After, _) => Work::Gates(e.after()),
        (Pos::Deploy, _) => Work::Step(HostStep::Deploy),
        (Pos::Canary(k), Strategy::Canary { steps, .. }) => match steps.get(usize::from(k)) {
            Some(CanaryStep::SetWeight(w)) => Work::Step(HostStep::SetWeight(*w)),
            Some(CanaryStep::ExposeServices { services, ttl }) => {
                Work::Step(HostStep::ExposeServices {
                    services: services.clone(),
                    ttl: *ttl,
                })
            }
            Some(CanaryStep::Gate(g)) => Work::Gates(std::slice::from_ref(g)),
            // Never produced by `next_pos`, and refused on restore; no work rather than a
            // panic, as for the other positions below.
            None => Work::Gates(&[]),
        },
        (Pos::RedirectGates, Strategy::BlueGreen { redirect_after, .. }) => {
            Work::Gates(redirect_after)
        }
        (Pos::ShutdownGates, Strategy::BlueGreen { shutdown_after, .. }) => {
            Work::Gates(shutdown_after)
        }
        (Pos::Redirect, _) => Work::Step(HostStep::RedirectTraffic),
        (Pos::Shutdown, _) => Work::Step(HostStep::ShutDownOldVersion),
        // Positions are only ever produced by `next_pos` for the environment's own strategy.
        (Pos::Canary(_) | Pos::RedirectGates | Pos::ShutdownGates, _) => Work::Gates(&[]),
    }
}

fn next_pos(plan: &Plan, env: EnvId, pos: Pos) -> Option<Pos> {
    let strategy = plan.environment(env).strategy();
    Some(match (pos, strategy) {
        (Pos::Before, _) => Pos::Deploy,
        (Pos::Deploy, Strategy::Canary { steps, .. }) if !steps.is_empty() => Pos::Canary(0),
        (Pos::Deploy, Strategy::BlueGreen { .. }) => Pos::RedirectGates,
        (Pos::Deploy, _) => Pos::After,
        (Pos::Canary(k), Strategy::Canary { steps, .. }) if usize::from(k) + 1 < steps.len() => {
            Pos::Canary(k + 1)
        }
        (Pos::Canary(_), _) => Pos::After,
        (Pos::RedirectGates, _) => Pos::Redirect,
        (Pos::Redirect, _) => Pos::ShutdownGates,
        (Pos::ShutdownGates, _) => Pos::Shutdown,
        (Pos::Shutdown, _) => Pos::After,
        (Pos::After, _) => return None,
    })
}

impl DeploymentState {
    pub(crate) fn emit(&mut self, at: DateTime<Utc>, kind: EventKind) {
        self.events.push_back(Event { at, kind });
    }

    fn new_op(&mut self) -> OpId {
        self.next_op += 1;
        OpId(self.next_op)
    }

    pub(crate) fn env_status(&self, env: EnvId) -> EnvStatus {
        self.envs[usize::from(env.0)].status()
    }

    pub(crate) fn set_env(&mut self, now: DateTime<Utc>, env: EnvId, state: EnvState) {
        let before = self.env_status(env);
        self.envs[usize::from(env.0)] = state;
        self.touched.note(Due::Env(env));
        let status = state.status();
        if status != before {
            self.emit(now, EventKind::EnvironmentStatus { env, status });
        }
    }

    pub(crate) fn gate(&self, g: GateId) -> GateState {
        self.gates[g.0 as usize]
    }

    pub(crate) fn set_gate(&mut self, g: GateId, state: GateState) {
        self.gates[g.0 as usize] = state;
        self.touched.note(Due::Gate(g));
    }

    /// Starts every waiting environment whose dependencies have all succeeded.
    pub(crate) fn start_ready(&mut self, plan: &Plan, now: DateTime<Utc>) {
        for i in 0..self.envs.len() {
            let env = EnvId(i as u16);
            let ready = self.envs[i] == EnvState::Waiting
                && plan
                    .environment(env)
                    .depends_on()
                    .iter()
                    .all(|d| self.env_status(*d) == EnvStatus::Succeeded);
            if ready {
                self.enter(plan, now, env, Some(Pos::Before));
            }
        }
    }

    /// Moves an environment to `pos`, skipping empty gate lists; past the last position the
    /// environment has succeeded. Never resolves anything synchronously: every position either
    /// opens gates or asks for a host step, so this does not re-enter itself.
    pub(crate) fn enter(
        &mut self,
        plan: &Plan,
        now: DateTime<Utc>,
        env: EnvId,
        mut pos: Option<Pos>,
    ) {
        loop {
            let Some(p) = pos else {
                self.finish_env(plan, now, env, EnvStatus::Succeeded);
                return;
            };
            match work(plan, env, p) {
                Work::Gates([]) => pos = next_pos(plan, env, p),
                Work::Gates(gates) => {
                    self.set_env(
                        now,
                        env,
                        EnvState::Running {
                            pos: p,
                            op: None,
                            deadline: None,
                        },
                    );
                    for &g in gates {
                        self.open_gate(plan, now, g);
                    }
                    return;
                }
                Work::Step(step) => {
                    let op = self.new_op();
                    let deadline = plan.step_timeout().map(|d| later(now, d));
                    self.set_env(
                        now,
                        env,
                        EnvState::Running {
                            pos: p,
                            op: Some(op),
                            deadline,
                        },
                    );
                    self.actions
                        .push_back(Action::RunStep(StepRequest { op, env, step }));
                    return;
                }
            }
        }
    }

    /// Moves past the current position of `env` (its host step or gate list is done).
    pub(crate) fn advance(&mut self, plan: &Plan, now: DateTime<Utc>, env: EnvId, pos: Pos) {
        let next = next_pos(plan, env, pos);
        self.enter(plan, now, env, next);
    }

    pub(crate) fn webhook_call(&self, plan: &Plan, g: GateId, attempt: u32) -> Action {
        let gate = plan.gate(g);
        let GateKind::Webhook { webhook, .. } = gate.kind() else {
            unreachable!("only webhook gates are called")
        };
        Action::CallWebhook(WebhookCall {
            gate: g,
            env: gate.env(),
            webhook: *webhook,
            callback_id: self
                .callback_id(g)
                .unwrap_or_else(|| unreachable!("every webhook gate gets a callback id at start")),
            attempt,
            idempotency_key: format!("{}:{}", self.id, g.0),
        })
    }

    pub(crate) fn callback_id(&self, g: GateId) -> Option<super::ids::CallbackId> {
        self.callbacks
            .binary_search_by_key(&g, |(gate, _)| *gate)
            .ok()
            .map(|i| self.callbacks[i].1)
    }

    /// The gate a callback id belongs to.
    pub(crate) fn gate_for_callback(&self, callback: super::ids::CallbackId) -> Option<GateId> {
        self.callbacks
            .iter()
            .find(|(_, id)| *id == callback)
            .map(|(g, _)| *g)
    }

    /// [`CoreError::UnknownGate`](super::error::CoreError::UnknownGate) for a gate the plan
    /// does not have.
    pub(crate) fn check_gate(&self, gate: GateId) -> Result<(), super::error::CoreError> {
        if (gate.0 as usize) < self.gates.len() {
            Ok(())
        } else {
            Err(super::error::CoreError::UnknownGate(gate))
        }
    }

    pub(crate) fn approval_request(
        &self,
        plan: &Plan,
        g: GateId,
        expires_at: Option<DateTime<Utc>>,
    ) -> Action {
        let gate = plan.gate(g);
        let kind = match gate.kind() {
            GateKind::Approval { roles, .. } => ApprovalKind::Manual {
                roles: roles.clone(),
            },
            _ => ApprovalKind::AnalysisFailed,
        };
        Action::RequestApproval(ApprovalRequest {
            gate: g,
            env: gate.env(),
            kind,
            expires_at,
        })
    }

    /// Leaves analysis gate `g`, failed in `rollBackMode: manual`, to a person (§4).
    pub(crate) fn await_decision(&mut self, plan: &Plan, g: GateId) {
        self.set_gate(g, GateState::AwaitingDecision);
        self.actions.push_back(self.approval_request(plan, g, None));
    }

    fn open_gate(&mut self, plan: &Plan, now: DateTime<Utc>, g: GateId) {
        self.emit(now, EventKind::GateOpened { gate: g });
        match plan.gate(g).kind() {
            GateKind::Webhook { .. } => {
                self.set_gate(g, GateState::Calling { attempt: 1 });
                self.actions.push_back(self.webhook_call(plan, g, 1));
                self.emit(
                    now,
                    EventKind::WebhookAttempt {
                        gate: g,
                        attempt: 1,
                    },
                );
            }
            // A zero pause still goes through `handle_timeout`, so that opening a gate never
            // resolves it in the middle of opening its siblings.
            GateKind::Pause(d) => self.set_gate(
                g,
                GateState::Pausing {
                    until: later(now, *d),
                },
            ),
            GateKind::Approval { expiration, .. } => {
                let expires = expiration.map(|d| later(now, d));
                self.set_gate(g, GateState::AwaitingApproval { expires });
                self.actions
                    .push_back(self.approval_request(plan, g, expires));
            }
            GateKind::Analysis(spec) => {
                let op = self.new_op();
                let deadline = plan.step_timeout().map(|d| later(now, d));
                self.set_gate(g, GateState::Analysing { op, deadline });
                self.actions.push_back(Action::RunStep(StepRequest {
                    op,
                    env: plan.gate(g).env(),
                    step: HostStep::Analysis {
                        gate: g,
                        spec: spec.clone(),
                    },
                }));
            }
        }
    }

    /// Records a gate's result and lets its environment react: a failure fails the list at
    /// once; the last pass of a list moves the environment on.
    pub(crate) fn resolve(
        &mut self,
        plan: &Plan,
        now: DateTime<Utc>,
        g: GateId,
        passed: bool,
        how: Resolution,
        message: impl FnOnce() -> String,
    ) {
        let env = plan.gate(g).env();
        if passed {
            self.set_gate(g, GateState::Passed(how));
            self.emit(now, EventKind::GatePassed { gate: g, how });
        } else {
            self.set_gate(g, GateState::Failed(how));
            let message = message();
            self.emit(
                now,
                EventKind::GateFailed {
                    gate: g,
                    how,
                    message,
                },
            );
        }
        let EnvState::Running { pos, op: None, .. } = self.envs[usize::from(env.0)] else {
            return;
        };
        let Work::Gates(list) = work(plan, env, pos) else {
            return;
        };
        // A list's gates were numbered as it was read, so in increasing order: a binary search,
        // and a look from the end, keep a list of thousands of gates passing one by one (in
        // order, as their deadlines fire) from looking over it for each.
        if list.binary_search(&g).is_err() {
            return;
        }
        if !passed {
            self.fail_env(plan, now, env, pos);
        } else if list
            .iter()
            .rev()
            .all(|&other| matches!(self.gate(other), GateState::Passed(_)))
        {
            self.advance(plan, now, env, pos);
        }
    }

    /// Closes every open gate of `env`, and marks its unreached gates closed so that a leaked
    /// callback id for one of them is answered as closed rather than not yet open.
    pub(crate) fn close_gates(
        &mut self,
        plan: &Plan,
        now: DateTime<Utc>,
        env: EnvId,
        how: Resolution,
    ) {
        for (i, gate) in plan.gates().iter().enumerate() {
            if gate.env() != env {
                continue;
            }
            let g = GateId(i as u32);
            let state = self.gate(g);
            if state.is_open() {
                self.set_gate(g, GateState::Closed(how));
                self.emit(now, EventKind::GateClosed { gate: g, how });
            } else if state == GateState::Idle {
                self.set_gate(g, GateState::Closed(how));
            }
        }
    }

    /// A position of `env` failed: roll back or fail, per PROTOCOL.md §4's table.
    pub(crate) fn fail_env(&mut self, plan: &Plan, now: DateTime<Utc>, env: EnvId, pos: Pos) {
        if pos.rolls_back() {
            // Dependents are cancelled once the rollback ends the environment.
            self.close_gates(plan, now, env, Resolution::Superseded);
            self.roll_back(plan, now, env);
        } else {
            self.finish_env(plan, now, env, EnvStatus::Failed);
        }
    }

    /// Asks for a rollback of `env`, which like every host step may take at most
    /// `deploymentConfig.timeout`.
    pub(crate) fn roll_back(&mut self, plan: &Plan, now: DateTime<Utc>, env: EnvId) {
        let op = self.new_op();
        let deadline = plan.step_timeout().map(|d| later(now, d));
        self.set_env(now, env, EnvState::RollingBack { op, deadline });
        self.emit(now, EventKind::RollbackStarted { env });
        self.actions.push_back(Action::RollBack { op, env });
    }

    /// Ends `env` with a terminal status and lets the rest of the deployment react.
    pub(crate) fn finish_env(
        &mut self,
        plan: &Plan,
        now: DateTime<Utc>,
        env: EnvId,
        status: EnvStatus,
    ) {
        self.set_env(now, env, EnvState::Done(status));
        let how = if self.canceled {
            Resolution::Canceled
        } else {
            Resolution::Superseded
        };
        self.close_gates(plan, now, env, how);
        if status == EnvStatus::Succeeded {
            self.start_ready(plan, now);
        } else {
            self.cancel_dependents(plan, now);
        }
        self.check_finished(now);
    }

    /// Cancels waiting environments that can no longer start. Environments are in dependency
    /// order, so one pass reaches every transitive dependent.
    pub(crate) fn cancel_dependents(&mut self, plan: &Plan, now: DateTime<Utc>) {
        for i in 0..self.envs.len() {
            let env = EnvId(i as u16);
            let doomed = self.envs[i] == EnvState::Waiting
                && plan.environment(env).depends_on().iter().any(|d| {
                    let s = self.env_status(*d);
                    s.is_terminal() && s != EnvStatus::Succeeded
                });
            if doomed {
                self.set_env(now, env, EnvState::Done(EnvStatus::Canceled));
                let how = if self.canceled {
                    Resolution::Canceled
                } else {
                    Resolution::Superseded
                };
                self.close_gates(plan, now, env, how);
            }
        }
    }

    /// Whether every environment is done: what finishes a deployment.
    pub(crate) fn all_envs_done(&self) -> bool {
        self.envs.iter().all(|e| matches!(e, EnvState::Done(_)))
    }

    pub(crate) fn check_finished(&mut self, now: DateTime<Utc>) {
        if self.status != DeploymentStatus::Running || !self.all_envs_done() {
            return;
        }
        let statuses = || self.envs.iter().map(|e| e.status());
        self.status = if self.canceled {
            DeploymentStatus::Canceled
        } else if statuses().all(|s| s == EnvStatus::Succeeded) {
            DeploymentStatus::Succeeded
        } else if statuses().any(|s| s == EnvStatus::RolledBack) {
            DeploymentStatus::RolledBack
        } else {
            DeploymentStatus::Failed
        };
        let status = self.status;
        self.emit(now, EventKind::DeploymentFinished { status });
    }

    pub(crate) fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }
}
