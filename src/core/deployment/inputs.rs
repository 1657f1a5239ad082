//! The inputs of a deployment, applied to its state once the deployment holds that state
//! alone: [`Deployment`](super::Deployment) copies a state it shares (with a copy kept to
//! roll back to, or a store's row) once per input, before the first change, rather than at
//! every change.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::{EnvId, GateId, GateKind, Plan, RollBackMode};
use crate::core::backoff;
use crate::core::error::CoreError;
use crate::core::event::EventKind;
use crate::core::ids::{CallbackId, OpId};
use crate::core::input::{CallResult, CallbackAck, Decision, StepOutcome};
use crate::core::machine::{Work, later, work};
use crate::core::state::{DeploymentState, Due, EnvState, GateState, Pos};
use crate::core::status::{DeploymentStatus, EnvStatus, Resolution};

/// A deployment's plan and its state, held alone, for the length of one input.
pub(super) struct Inputs<'a> {
    pub(super) plan: &'a Plan,
    pub(super) s: &'a mut DeploymentState,
}

impl Inputs<'_> {
    /// Starts a queued deployment (the end of [`Deployment::start`] too).
    ///
    /// [`Deployment::start`]: super::Deployment::start
    pub(super) fn begin(&mut self, now: DateTime<Utc>) {
        let s = &mut *self.s;
        s.status = DeploymentStatus::Running;
        s.started_at = now;
        s.emit(now, EventKind::DeploymentStarted);
        for i in 0..s.envs.len() {
            s.emit(
                now,
                EventKind::EnvironmentStatus {
                    env: EnvId(i as u16),
                    status: EnvStatus::Pending,
                },
            );
        }
        s.start_ready(self.plan, now);
        s.check_finished(now);
    }

    pub(super) fn handle_timeout(&mut self, now: DateTime<Utc>) {
        self.fire_passed(now, FireAt::Input, |_| true);
    }

    /// Fires, earliest first, every deadline passed by `now` that fails something (a callback
    /// timeout, an approval's expiry, an analysis's, a host step's or a rollback's timeout),
    /// before an input is applied: the input then meets the deployment as those deadlines left
    /// it, even when the host's timer has not fired yet (it runs late, or another replica holds
    /// it). A callback for one gate of a list meets the list failed by a sibling's timeout, as it
    /// would had the timer been on time. A due retry or the end of a pause is left to the timer:
    /// the input may make it needless, and it fails nothing.
    pub(super) fn expire_all(&mut self, now: DateTime<Utc>) {
        self.fire_passed(now, FireAt::Input, closes_on_deadline);
    }

    /// Fires, earliest first, every deadline passed by `now` of an environment, or of a gate in a
    /// state `fires` accepts, each as if at the time `at` says. A deadline whose firing changes
    /// nothing would be due again at once; it is passed over from then on, so that this ends
    /// whatever the state (restore refuses the states known to have one).
    ///
    /// The deadlines passed are kept in a heap, earliest first, and those a firing sets are
    /// added as the gates and environments it touched are looked at (a pause's only: see
    /// [`Inputs::chains`]): the heap holds every
    /// deadline due, and entries a firing made stale are passed over as they come out, so the
    /// order is the same as looking for the earliest over every gate after every firing, which
    /// took quadratic time for thousands of zero-length pauses.
    pub(super) fn fire_passed(
        &mut self,
        now: DateTime<Utc>,
        at: FireAt,
        fires: impl Fn(GateState) -> bool,
    ) {
        // Most inputs find nothing due: a plain look over the states first, as building the
        // heap cost about as much as the input's own work on a one-gate deployment.
        let gates_due = self
            .s
            .gates
            .iter()
            .any(|&g| gate_due_at(g, now, &fires).is_some());
        if !gates_due && !self.s.envs.iter().any(|&e| env_due_at(e, now).is_some()) {
            return;
        }
        let gates = (0..self.s.gates.len()).map(|i| Due::Gate(GateId(i as u32)));
        let envs = (0..self.s.envs.len()).map(|i| Due::Env(EnvId(i as u16)));
        let mut heap: BinaryHeap<_> = gates
            .chain(envs)
            .filter_map(|due| self.due_at(due, now, &fires).map(|at| Reverse((at, due))))
            .collect();
        let mut passed_over = BTreeSet::new();
        let mut touched = Vec::new();
        self.s.touched.record();
        while let Some(Reverse((deadline, due))) = heap.pop() {
            if self.due_at(due, now, &fires) != Some(deadline) || passed_over.contains(&due) {
                continue;
            }
            let when = at.when(deadline, now);
            let fired = match due {
                Due::Gate(g) => self.fire_gate(when, g),
                Due::Env(env) => self.fire_env(when, env),
            };
            if !fired {
                passed_over.insert(due);
            }
            self.s.touched.swap(&mut touched);
            for &due in &touched {
                if !self.chains(due) {
                    continue;
                }
                if let Some(at) = self.due_at(due, now, &fires) {
                    heap.push(Reverse((at, due)));
                }
            }
        }
        self.s.touched.stop();
    }

    /// Whether a deadline a firing in [`Inputs::fire_passed`] has just set for `due` fires in
    /// the same round. Only a pause's does: a pause ending starts the next at its own time, as a
    /// timer on time would have. Any other deadline set there times work out (a host step, a
    /// call, an approval request) that the firing only asked for, which no one has performed
    /// yet: firing it would fail a step the host was never given, or expire an approval no one
    /// was asked for. It is armed for later instead.
    fn chains(&self, due: Due) -> bool {
        matches!(due, Due::Gate(g) if matches!(self.s.gate(g), GateState::Pausing { .. }))
    }

    pub(super) fn handle_call_result(
        &mut self,
        now: DateTime<Utc>,
        gate: GateId,
        attempt: u32,
        result: CallResult,
    ) -> Result<(), CoreError> {
        self.s.check_gate(gate)?;
        self.expire_all(now);
        if self.s.gate(gate) != (GateState::Calling { attempt }) {
            return Err(CoreError::Stale);
        }
        let plan = self.plan;
        let GateKind::Webhook { webhook, .. } = plan.gate(gate).kind() else {
            return Err(CoreError::Stale);
        };
        let webhook = plan.webhook(*webhook);
        match result {
            CallResult::Sent { status } => {
                self.s.emit(
                    now,
                    EventKind::WebhookSent {
                        gate,
                        attempt,
                        status,
                    },
                );
                if webhook.disable_callback {
                    self.s.resolve(
                        plan,
                        now,
                        gate,
                        true,
                        Resolution::CallSucceeded,
                        String::new,
                    );
                } else {
                    let timeout = webhook
                        .callback_timeout
                        .unwrap_or(self.s.settings.callback_timeout);
                    let deadline = later(now, timeout);
                    self.s
                        .set_gate(gate, GateState::AwaitingCallback { deadline });
                }
            }
            CallResult::Failed(failure) => {
                let retry = failure.retryable_for(webhook) && attempt <= webhook.retry_count;
                let retry_at = retry.then(|| {
                    let random = self.s.random();
                    let delay = backoff::delay(
                        self.s.settings.backoff_base,
                        self.s.settings.backoff_cap,
                        attempt,
                        failure.retry_after,
                        random,
                    );
                    later(now, delay)
                });
                self.s.emit(
                    now,
                    EventKind::WebhookFailed {
                        gate,
                        attempt,
                        status: failure.status,
                        reason: failure.reason.clone(),
                        retry_at,
                    },
                );
                match retry_at {
                    Some(at) => {
                        self.s.set_gate(
                            gate,
                            GateState::RetryWaiting {
                                attempt: attempt + 1,
                                at,
                            },
                        );
                    }
                    None => {
                        let message = || match attempt {
                            1 => format!(
                                "the call to webhook \"{}\" failed: {}",
                                webhook.name, failure.reason
                            ),
                            n => format!(
                                "the call to webhook \"{}\" failed after {n} attempts; last: {}",
                                webhook.name, failure.reason
                            ),
                        };
                        self.s
                            .resolve(plan, now, gate, false, Resolution::CallFailed, message);
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn handle_callback(
        &mut self,
        now: DateTime<Utc>,
        callback: CallbackId,
        success: bool,
        message: Option<String>,
    ) -> Result<CallbackAck, CoreError> {
        let (gate, state) = self.reported_gate(now, callback)?;
        match state {
            state if awaits_report(state) => {
                let failure = (!success).then(|| {
                    let name = self.webhook_name(gate);
                    match &message {
                        Some(m) => format!("webhook \"{name}\" reported failure: {m}"),
                        None => format!("webhook \"{name}\" reported failure"),
                    }
                });
                self.s.emit(
                    now,
                    EventKind::CallbackReceived {
                        gate,
                        success,
                        message,
                    },
                );
                let plan = self.plan;
                self.s
                    .resolve(plan, now, gate, success, Resolution::Callback, || {
                        failure.unwrap_or_default()
                    });
                Ok(CallbackAck::Applied)
            }
            GateState::Passed(Resolution::Callback) if success => Ok(CallbackAck::Duplicate),
            GateState::Failed(Resolution::Callback) if !success => Ok(CallbackAck::Duplicate),
            state => Err(report_refused(state)),
        }
    }

    pub(super) fn handle_progress(
        &mut self,
        now: DateTime<Utc>,
        callback: CallbackId,
        message: String,
    ) -> Result<(), CoreError> {
        let (gate, state) = self.reported_gate(now, callback)?;
        match state {
            state if awaits_report(state) => {
                let limit = self.s.settings.max_progress_notes;
                let recorded = self.s.notes.get(&gate).copied().unwrap_or(0);
                if recorded >= limit {
                    return Err(CoreError::TooManyProgressNotes { limit });
                }
                self.s.notes.insert(gate, recorded + 1);
                self.s.emit(now, EventKind::Progress { gate, message });
                Ok(())
            }
            state => Err(report_refused(state)),
        }
    }

    pub(super) fn handle_approval(
        &mut self,
        now: DateTime<Utc>,
        gate: GateId,
        decision: Decision,
    ) -> Result<(), CoreError> {
        self.s.check_gate(gate)?;
        if let GateKind::Approval { roles, .. } = self.plan.gate(gate).kind()
            && !decision.meets(roles)
        {
            return Err(CoreError::MissingRole {
                required: roles.clone(),
            });
        }
        self.expire_all(now);
        let plan = self.plan;
        match self.s.gate(gate) {
            GateState::AwaitingApproval { .. } | GateState::AwaitingDecision => {}
            state => return decided_already(state, gate, decision.approve),
        }
        let Decision {
            approve,
            by,
            comment,
            ..
        } = decision;
        let message = || match &comment {
            Some(c) => format!("rejected by {by}: {c}"),
            None => format!("rejected by {by}"),
        };
        let how = if approve {
            Resolution::Approved
        } else {
            Resolution::Rejected
        };
        let failure = message();
        self.s.emit(
            now,
            EventKind::ApprovalDecided {
                gate,
                approved: approve,
                by: by.clone(),
                comment: comment.clone(),
            },
        );
        self.s.resolve(plan, now, gate, approve, how, || failure);
        Ok(())
    }

    pub(super) fn handle_step_result(
        &mut self,
        now: DateTime<Utc>,
        op: OpId,
        outcome: StepOutcome,
    ) -> Result<(), CoreError> {
        self.expire_all(now);
        let plan = self.plan;
        let (ok, reason) = match &outcome {
            StepOutcome::Failed { reason } => (false, Some(reason.clone())),
            _ => (true, None),
        };
        if let Some((i, state)) = self.s.envs.iter().enumerate().find(|(_, e)| match e {
            EnvState::Running { op: Some(o), .. } | EnvState::RollingBack { op: o, .. } => *o == op,
            _ => false,
        }) {
            let env = EnvId(i as u16);
            let state = *state;
            self.s.emit(
                now,
                EventKind::StepFinished {
                    op,
                    env,
                    ok,
                    message: reason,
                },
            );
            match state {
                EnvState::RollingBack { .. } => {
                    let status = if ok {
                        EnvStatus::RolledBack
                    } else {
                        EnvStatus::Failed
                    };
                    self.s.finish_env(plan, now, env, status);
                }
                EnvState::Running { pos, .. } if ok => {
                    match outcome {
                        StepOutcome::Exposed(urls) => Arc::make_mut(&mut self.s.previews)
                            .entry(env)
                            .or_default()
                            .extend(urls),
                        StepOutcome::Deployed { replica_set_name } if pos == Pos::Deploy => {
                            Arc::make_mut(self.s.replica_sets.get_or_insert_default())
                                .insert(env, replica_set_name);
                        }
                        _ => {}
                    }
                    self.s.advance(plan, now, env, pos);
                }
                EnvState::Running { pos, .. } => self.s.fail_env(plan, now, env, pos),
                _ => {}
            }
            return Ok(());
        }
        let gate = self
            .s
            .gates
            .iter()
            .position(|g| matches!(g, GateState::Analysing { op: o, .. } if *o == op))
            .map(|i| GateId(i as u32))
            .ok_or(CoreError::Stale)?;
        let plan = self.plan;
        let env = plan.gate(gate).env();
        let GateKind::Analysis(spec) = plan.gate(gate).kind() else {
            return Err(CoreError::Stale);
        };
        self.s.emit(
            now,
            EventKind::StepFinished {
                op,
                env,
                ok,
                message: reason.clone(),
            },
        );
        match (ok, spec.roll_back_mode) {
            (true, _) => self.s.resolve(
                plan,
                now,
                gate,
                true,
                Resolution::AnalysisPassed,
                String::new,
            ),
            (false, RollBackMode::Manual) => self.s.await_decision(plan, gate),
            (false, RollBackMode::Automatic) => {
                let message = || format!("analysis failed: {}", reason.unwrap_or_default());
                self.s
                    .resolve(plan, now, gate, false, Resolution::AnalysisFailed, message);
            }
        }
        Ok(())
    }

    pub(super) fn handle_cancel(
        &mut self,
        now: DateTime<Utc>,
        by: impl Into<String>,
    ) -> Result<(), CoreError> {
        if !self.s.status.is_terminal() {
            // Each deadline fired at its own time, as a timer on time would have: a pause's end
            // fired at `now` would start the next pause late, and the deployment a timer on time
            // had finished would look running.
            let mut ended = self.s.clone();
            let mut on_copy = Inputs {
                plan: self.plan,
                s: &mut ended,
            };
            on_copy.fire_passed(now, FireAt::Deadline, ends_on_cancel);
            if ended.status.is_terminal() {
                *self.s = ended;
            }
        }
        self.expire_all(now);
        if self.s.status.is_terminal() {
            return Err(CoreError::Finished);
        }
        let plan = self.plan;
        self.s.canceled = true;
        self.s
            .emit(now, EventKind::CancelRequested { by: by.into() });
        if self.s.status == DeploymentStatus::Queued {
            // Nothing of it began, so nothing is undone, and its environments, never pending,
            // report no status.
            for env in &mut self.s.envs {
                *env = EnvState::Done(EnvStatus::Canceled);
            }
            self.s.status = DeploymentStatus::Canceled;
            self.s.emit(
                now,
                EventKind::DeploymentFinished {
                    status: DeploymentStatus::Canceled,
                },
            );
            return Ok(());
        }
        for i in 0..self.s.envs.len() {
            let env = EnvId(i as u16);
            match self.s.envs[i] {
                EnvState::Waiting => {
                    self.s
                        .set_env(now, env, EnvState::Done(EnvStatus::Canceled));
                    self.s.close_gates(plan, now, env, Resolution::Canceled);
                }
                EnvState::Running { pos, .. } => {
                    self.s.close_gates(plan, now, env, Resolution::Canceled);
                    if pos.rolls_back() {
                        self.s.roll_back(plan, now, env);
                    } else {
                        self.s
                            .set_env(now, env, EnvState::Done(EnvStatus::Canceled));
                    }
                }
                EnvState::RollingBack { .. } | EnvState::Done(_) => {}
            }
        }
        self.s.check_finished(now);
        Ok(())
    }

    /// The gate `callback` names and its state, once the deadlines passed by `now` that fail
    /// something have fired; [`CoreError::CallbackDisabled`] for one awaiting its webhook's
    /// answer when that webhook takes no callbacks.
    fn reported_gate(
        &mut self,
        now: DateTime<Utc>,
        callback: CallbackId,
    ) -> Result<(GateId, GateState), CoreError> {
        let gate = self
            .s
            .gate_for_callback(callback)
            .ok_or(CoreError::UnknownCallback)?;
        self.expire_all(now);
        let state = self.s.gate(gate);
        if awaits_report(state) && self.plan.callback_disabled(gate) {
            return Err(CoreError::CallbackDisabled);
        }
        Ok((gate, state))
    }

    fn webhook_name(&self, gate: GateId) -> &str {
        match self.plan.gate(gate).kind() {
            GateKind::Webhook { webhook, .. } => &self.plan.webhook(*webhook).name,
            _ => "",
        }
    }

    /// The deadline of `due`, if it has one passed by `now` (for a gate, in a state `fires`
    /// accepts).
    fn due_at(
        &self,
        due: Due,
        now: DateTime<Utc>,
        fires: impl Fn(GateState) -> bool,
    ) -> Option<DateTime<Utc>> {
        match due {
            Due::Gate(g) => gate_due_at(self.s.gate(g), now, fires),
            Due::Env(env) => env_due_at(self.s.envs[usize::from(env.0)], now),
        }
    }

    /// Fires the deadline of a gate. Returns whether it did anything.
    pub(super) fn fire_gate(&mut self, now: DateTime<Utc>, gate: GateId) -> bool {
        let plan = self.plan;
        match self.s.gate(gate) {
            GateState::RetryWaiting { attempt, .. } => {
                self.s.set_gate(gate, GateState::Calling { attempt });
                let action = self.s.webhook_call(plan, gate, attempt);
                self.s.actions.push_back(action);
                self.s
                    .emit(now, EventKind::WebhookAttempt { gate, attempt });
            }
            GateState::AwaitingCallback { .. } => {
                let name = self.webhook_name(gate).to_owned();
                self.s
                    .resolve(plan, now, gate, false, Resolution::CallbackTimeout, || {
                        format!("no callback from webhook \"{name}\" before the callback timeout")
                    });
            }
            GateState::Pausing { .. } => {
                self.s
                    .resolve(plan, now, gate, true, Resolution::PauseElapsed, String::new);
            }
            GateState::AwaitingApproval { .. } => {
                self.s
                    .resolve(plan, now, gate, false, Resolution::ApprovalExpired, || {
                        "nobody approved before the approval expired".to_owned()
                    });
            }
            GateState::Analysing { op, .. } => {
                const TOO_LONG: &str = "the analysis took longer than deploymentConfig.timeout";
                let manual = matches!(
                    plan.gate(gate).kind(),
                    GateKind::Analysis(spec) if spec.roll_back_mode == RollBackMode::Manual
                );
                if manual {
                    // §4: in manual mode an analysis that fails waits for a person, and one
                    // that never answers has failed as surely as one that says so. Its late
                    // result finds the gate no longer analysing and changes nothing.
                    self.s.emit(
                        now,
                        EventKind::StepFinished {
                            op,
                            env: plan.gate(gate).env(),
                            ok: false,
                            message: Some(TOO_LONG.to_owned()),
                        },
                    );
                    self.s.await_decision(plan, gate);
                } else {
                    self.s
                        .resolve(plan, now, gate, false, Resolution::StepTimeout, || {
                            TOO_LONG.to_owned()
                        });
                }
            }
            _ => return false,
        }
        true
    }

    /// Fails the host step or rollback of `env` that took longer than
    /// `deploymentConfig.timeout`. Returns whether it did anything.
    pub(super) fn fire_env(&mut self, now: DateTime<Utc>, env: EnvId) -> bool {
        let plan = self.plan;
        let state = self.s.envs[usize::from(env.0)];
        let (op, step) = match state {
            EnvState::Running {
                pos, op: Some(op), ..
            } => match work(plan, env, pos) {
                Work::Step(step) => (op, step.name()),
                Work::Gates(_) => (op, "gates"),
            },
            EnvState::RollingBack {
                op,
                deadline: Some(_),
            } => (op, "rollback"),
            _ => return false,
        };
        self.s.emit(
            now,
            EventKind::StepFinished {
                op,
                env,
                ok: false,
                message: Some(format!("{step} took longer than deploymentConfig.timeout")),
            },
        );
        match state {
            EnvState::Running { pos, .. } => self.s.fail_env(plan, now, env, pos),
            // As a failed rollback: the environment ends failed (the host must look at it).
            _ => self.s.finish_env(plan, now, env, EnvStatus::Failed),
        }
        true
    }
}

/// The time a deadline found passed is fired at.
#[derive(Clone, Copy)]
pub(super) enum FireAt {
    /// The input's that finds it passed: what follows from it (the next pause, a rollback's
    /// timeout) runs from the time the deployment learnt of it.
    Input,
    /// The deadline's own: the deployment as a timer on time would have left it, for a cancel
    /// that stands only if the deployment had already finished.
    Deadline,
}

impl FireAt {
    fn when(self, deadline: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Input => now,
            Self::Deadline => deadline,
        }
    }
}

/// The deadline of a gate in `state`, if it has one passed by `now` and `fires` accepts the
/// state.
fn gate_due_at(
    state: GateState,
    now: DateTime<Utc>,
    fires: impl Fn(GateState) -> bool,
) -> Option<DateTime<Utc>> {
    Some(state)
        .filter(|&state| fires(state))
        .and_then(GateState::deadline)
        .filter(|at| *at <= now)
}

/// The deadline of an environment in `state`, if it has one passed by `now`.
fn env_due_at(state: EnvState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    state.deadline().filter(|at| *at <= now)
}

/// Whether a gate's deadline in `state` fails or closes it (a callback timeout, an approval's
/// expiry, an analysis's timeout) rather than move it on (a retry going out, a pause ending).
pub(super) fn closes_on_deadline(state: GateState) -> bool {
    !matches!(
        state,
        GateState::RetryWaiting { .. } | GateState::Pausing { .. }
    )
}

/// Whether a gate's deadline in `state` is one a cancel fires, on a copy kept only if that
/// finishes the deployment: every one but a due retry's, whose call the cancel would undo.
pub(super) fn ends_on_cancel(state: GateState) -> bool {
    !matches!(state, GateState::RetryWaiting { .. })
}

/// Whether a webhook gate in `state` still waits for its webhook's answer (a callback or a
/// progress note), its call sent, under way or to be retried.
fn awaits_report(state: GateState) -> bool {
    matches!(
        state,
        GateState::Calling { .. }
            | GateState::RetryWaiting { .. }
            | GateState::AwaitingCallback { .. }
    )
}

/// What a decision gets from a gate no longer waiting for one, which it leaves as it is. The
/// decision that resolved the gate, sent again (a retry whose answer was lost), is taken as
/// done; the opposite one is refused, and so is any decision once the gate closed another way,
/// as for callbacks (PROTOCOL.md §5).
fn decided_already(state: GateState, gate: GateId, approve: bool) -> Result<(), CoreError> {
    match state {
        GateState::Passed(Resolution::Approved) if approve => Ok(()),
        GateState::Failed(Resolution::Rejected) if !approve => Ok(()),
        GateState::Passed(Resolution::Approved) => {
            Err(CoreError::AlreadyDecided { approved: true })
        }
        GateState::Failed(Resolution::Rejected) => {
            Err(CoreError::AlreadyDecided { approved: false })
        }
        GateState::Passed(how) | GateState::Failed(how) | GateState::Closed(how) => {
            Err(CoreError::GateClosed { how })
        }
        _ => Err(CoreError::NotAwaitingDecision(gate)),
    }
}

/// Why a callback or progress note reaching a gate in `state`, which awaits no report, is
/// refused. A callback already decided the gate: a conflict, whose `first` is that decision,
/// as §5 keeps 410 for gates closed without one.
fn report_refused(state: GateState) -> CoreError {
    match state {
        GateState::Passed(Resolution::Callback) => CoreError::Conflict { first: true },
        GateState::Failed(Resolution::Callback) => CoreError::Conflict { first: false },
        GateState::Passed(how) | GateState::Failed(how) | GateState::Closed(how) => {
            CoreError::GateClosed { how }
        }
        _ => CoreError::GateNotOpen,
    }
}
