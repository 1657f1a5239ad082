use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::clock::shifted;
use super::{ManualClock, SequentialIds};
use crate::clock::Clock;
use crate::config::{GateId, Plan};
use crate::core::{
    Action, CallResult, CallbackAck, CoreError, Decision, Deployment, DeploymentId,
    DeploymentState, Event, EventKind, HostStep, OpId, StartOptions, StepOutcome, WebhookCall,
};

/// Drives one [`Deployment`] on simulated time, keeping every action and event it produced.
///
/// The harness plays the host: it drains outputs after every input, holds the actions not yet
/// answered, and jumps its [`ManualClock`] straight to the next deadline, so a 24-hour callback
/// timeout takes no real time. An input given to [`deployment`](Self::deployment) directly (a
/// progress note) is drained by the next method that answers or takes actions, or by
/// [`sync`](Self::sync), which [`pending`](Self::pending) and [`events`](Self::events) need
/// first. One step's or call's result goes through [`step_result`](Self::step_result) or
/// [`call_result`](Self::call_result), which also take it out of the pending actions.
///
/// ```
/// use std::sync::Arc;
/// use chrono::{TimeZone, Utc};
/// use hookgate::{config::Plan, core::{CallResult, DeploymentStatus, StartOptions}, test_util::Harness};
///
/// let plan = Plan::from_yaml(r#"
/// application: demo
/// targets: {dev: {constraints: {afterDeployment: [{runWebhook: {name: smoke}}]}}}
/// webhooks: [{name: smoke, uriTemplate: "https://ci.example/{{armory.deploymentId}}"}]
/// "#).unwrap();
/// let mut h = Harness::start(Arc::new(plan), StartOptions::default(), Utc.timestamp_opt(0, 0).unwrap());
/// h.answer_steps(|_| hookgate::core::StepOutcome::Succeeded);
/// let call = h.answer_calls(|_| CallResult::Sent { status: 202 }).remove(0);
/// h.callback(call.gate, true, Some("all green")).unwrap();
/// assert_eq!(h.deployment.status(), DeploymentStatus::Succeeded);
/// ```
#[derive(Debug)]
pub struct Harness {
    /// The deployment under test.
    pub deployment: Deployment,
    /// The simulated clock.
    pub clock: ManualClock,
    pending: Vec<Action>,
    events: Vec<Event>,
}

impl Harness {
    /// Starts a deployment with id `d1` and callback ids 1, 2, 3, ... at `now`.
    pub fn start(plan: Arc<Plan>, options: StartOptions, now: DateTime<Utc>) -> Self {
        let deployment = Deployment::start(
            plan,
            DeploymentId::from("d1"),
            options,
            &mut SequentialIds::default(),
            now,
        );
        Self::resume(deployment, now)
    }

    /// Drives a deployment restored from a stored `state`, as a host does after a restart: what
    /// was in flight when the state was stored (calls, host steps, rollbacks, approval requests)
    /// is asked for again ([`Deployment::reissue_in_flight`]) and is [`pending`](Self::pending)
    /// here. A state that does not fit `plan` is refused, as [`Deployment::restore`] refuses it.
    pub fn restore(
        plan: Arc<Plan>,
        state: Arc<DeploymentState>,
        now: DateTime<Utc>,
    ) -> Result<Self, CoreError> {
        let mut deployment = Deployment::restore(plan, state)?;
        deployment.reissue_in_flight();
        Ok(Self::resume(deployment, now))
    }

    /// Drives an existing deployment as it is: only the actions and events it has not handed
    /// out yet become pending. Nothing in flight is asked for again; for a deployment restored
    /// from a stored state, [`restore`](Self::restore) does that.
    pub fn resume(deployment: Deployment, now: DateTime<Utc>) -> Self {
        let mut h = Self {
            deployment,
            clock: ManualClock::new(now),
            pending: Vec::new(),
            events: Vec::new(),
        };
        h.sync();
        h
    }

    /// The simulated time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Takes in the actions and events the deployment produced since the harness last looked:
    /// those of inputs given to [`deployment`](Self::deployment) directly.
    pub fn sync(&mut self) {
        while let Some(a) = self.deployment.poll_action() {
            self.pending.push(a);
        }
        while let Some(e) = self.deployment.poll_event() {
            self.events.push(e);
        }
    }

    /// Actions produced and not yet answered (as of the last input through the harness, or
    /// [`sync`](Self::sync)).
    pub fn pending(&self) -> &[Action] {
        &self.pending
    }

    /// Every event so far (as of the last input through the harness, or [`sync`](Self::sync)).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Environment status changes as `name: status` lines, in order, and the deployment's end
    /// as a last `deployment: status` line.
    pub fn status_transcript(&self) -> Vec<String> {
        let plan = Arc::clone(self.deployment.plan());
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::EnvironmentStatus { env, status } => {
                    Some(format!("{}: {status}", plan.environment(*env).name()))
                }
                EventKind::DeploymentFinished { status } => Some(format!("deployment: {status}")),
                _ => None,
            })
            .collect()
    }

    /// Answers every pending host step with `outcome` and every pending rollback as succeeded,
    /// repeatedly, until none is pending; returns the steps answered, rollbacks as `None`.
    pub fn answer_steps(
        &mut self,
        mut outcome: impl FnMut(&HostStep) -> StepOutcome,
    ) -> Vec<Option<HostStep>> {
        self.sync();
        let mut answered = Vec::new();
        loop {
            let now = self.now();
            let Some(i) = self
                .pending
                .iter()
                .position(|a| matches!(a, Action::RunStep(_) | Action::RollBack { .. }))
            else {
                return answered;
            };
            let (op, step) = match self.pending.remove(i) {
                Action::RunStep(r) => (r.op, Some(r.step)),
                Action::RollBack { op, .. } => (op, None),
                _ => unreachable!("filtered above"),
            };
            let result = step.as_ref().map_or(StepOutcome::Succeeded, &mut outcome);
            let _ = self.deployment.handle_step_result(now, op, result);
            answered.push(step);
            self.sync();
        }
    }

    /// Answers every pending webhook call with `result`; returns the calls answered.
    pub fn answer_calls(
        &mut self,
        mut result: impl FnMut(&WebhookCall) -> CallResult,
    ) -> Vec<WebhookCall> {
        let calls: Vec<WebhookCall> = self.take_calls();
        for call in &calls {
            let now = self.now();
            let _ = self
                .deployment
                .handle_call_result(now, call.gate, call.attempt, result(call));
            self.sync();
        }
        calls
    }

    /// Answers one host step or rollback now, as a host answering out of order does. Once the
    /// core took it, or answered that it no longer waits for it ([`CoreError::Stale`]: its
    /// deadline passed, the deployment was canceled), it is no longer
    /// [`pending`](Self::pending). A result given to [`deployment`](Self::deployment) directly
    /// instead leaves the step pending, for [`answer_steps`](Self::answer_steps) to answer
    /// again and the core to refuse.
    pub fn step_result(&mut self, op: OpId, outcome: StepOutcome) -> Result<(), CoreError> {
        self.answer_one(
            |d, now| d.handle_step_result(now, op, outcome),
            |a| match a {
                Action::RunStep(run) => run.op == op,
                Action::RollBack { op: o, .. } => *o == op,
                _ => false,
            },
        )
    }

    /// Answers one webhook call attempt now, as [`step_result`](Self::step_result) answers a
    /// step: once the core took it or no longer waits for it, it is no longer
    /// [`pending`](Self::pending).
    pub fn call_result(
        &mut self,
        gate: GateId,
        attempt: u32,
        result: CallResult,
    ) -> Result<(), CoreError> {
        self.answer_one(
            |d, now| d.handle_call_result(now, gate, attempt, result),
            |a| matches!(a, Action::CallWebhook(c) if c.gate == gate && c.attempt == attempt),
        )
    }

    /// Gives `input` now, what inputs given directly produced taken in first, and takes the
    /// pending action it `answers` out once the core took it or no longer waits for it.
    fn answer_one(
        &mut self,
        input: impl FnOnce(&mut Deployment, DateTime<Utc>) -> Result<(), CoreError>,
        answers: impl Fn(&Action) -> bool,
    ) -> Result<(), CoreError> {
        self.sync();
        let now = self.now();
        let r = input(&mut self.deployment, now);
        if matches!(r, Ok(()) | Err(CoreError::Stale)) {
            self.pending.retain(|a| !answers(a));
        }
        self.sync();
        r
    }

    /// Removes and returns the pending webhook calls without answering them.
    pub fn take_calls(&mut self) -> Vec<WebhookCall> {
        self.sync();
        let (calls, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|a| matches!(a, Action::CallWebhook(_)));
        self.pending = rest;
        calls
            .into_iter()
            .filter_map(|a| match a {
                Action::CallWebhook(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// Delivers a callback for `gate` now: [`CoreError::UnknownGate`] for a gate not in the
    /// plan, [`CoreError::UnknownCallback`] for one that takes no callback (a pause, an
    /// approval, an analysis).
    pub fn callback(
        &mut self,
        gate: GateId,
        success: bool,
        message: Option<&str>,
    ) -> Result<CallbackAck, CoreError> {
        self.deployment.state().check_gate(gate)?;
        let id = self
            .deployment
            .callback_id(gate)
            .ok_or(CoreError::UnknownCallback)?;
        let now = self.now();
        let r = self
            .deployment
            .handle_callback(now, id, success, message.map(str::to_owned));
        self.sync();
        r
    }

    /// Decides an approval now.
    pub fn decide(&mut self, gate: GateId, decision: Decision) -> Result<(), CoreError> {
        // The approval's request, if an input given to the deployment directly opened it, is
        // taken in first, for the decision to take it out.
        self.answer_one(
            |d, now| d.handle_approval(now, gate, decision),
            |a| matches!(a, Action::RequestApproval(req) if req.gate == gate),
        )
    }

    /// Cancels the deployment now.
    pub fn cancel(&mut self, by: &str) -> Result<(), CoreError> {
        let now = self.now();
        let r = self.deployment.handle_cancel(now, by);
        self.sync();
        r
    }

    /// Jumps the clock to the next deadline and fires it; `false` when there is none.
    pub fn advance_to_next_deadline(&mut self) -> bool {
        let Some(at) = self.deployment.poll_timeout() else {
            return false;
        };
        if at > self.now() {
            self.clock.set(at);
        }
        let now = self.now();
        self.deployment.handle_timeout(now);
        self.sync();
        true
    }

    /// Moves the clock forward by `by`, firing every deadline on the way at its own time. It
    /// stops at [`DateTime::<Utc>::MAX_UTC`] (where the core puts deadlines too far away to
    /// represent, and so where [`advance_to_next_deadline`](Self::advance_to_next_deadline)
    /// may have moved the clock) rather than panicking. A negative `by` leaves the clock where
    /// it is: unlike a [`ManualClock`]'s, a deployment's time never runs backwards, and its
    /// events and deadlines would be out of order.
    pub fn advance(&mut self, by: chrono::TimeDelta) {
        let target = shifted(self.now(), by).max(self.now());
        while let Some(at) = self.deployment.poll_timeout() {
            if at > target {
                break;
            }
            self.advance_to_next_deadline();
        }
        self.clock.set(target);
        self.deployment.handle_timeout(target);
        self.sync();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeDelta;

    use super::*;
    use crate::core::Settings;

    #[test]
    fn advancing_beyond_a_deadline_at_the_end_of_time_stays_there() {
        let plan = Plan::from_yaml(
            r#"
application: demo
targets: {dev: {constraints: {afterDeployment: [{runWebhook: {name: smoke}}]}}}
webhooks: [{name: smoke, uriTemplate: "https://ci.example/hook"}]
"#,
        )
        .unwrap();
        // A callback timeout too long to represent: the core puts its deadline at `MAX_UTC`.
        let options = StartOptions::default()
            .with_settings(Settings::default().with_callback_timeout(Duration::MAX));
        let mut h = Harness::start(
            Arc::new(plan),
            options,
            DateTime::from_timestamp(0, 0).unwrap(),
        );
        h.answer_steps(|_| StepOutcome::Succeeded);
        h.answer_calls(|_| CallResult::Sent { status: 202 });
        assert_eq!(h.deployment.poll_timeout(), Some(DateTime::<Utc>::MAX_UTC));
        assert!(h.advance_to_next_deadline());
        assert_eq!(h.now(), DateTime::<Utc>::MAX_UTC);

        h.advance(TimeDelta::seconds(1));
        assert_eq!(h.now(), DateTime::<Utc>::MAX_UTC);
        h.advance(TimeDelta::MAX);
        assert_eq!(h.now(), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn time_never_runs_backwards_and_only_webhook_gates_take_callbacks() {
        let plan = Plan::from_yaml(
            r#"
application: demo
targets: {dev: {constraints: {beforeDeployment: [{runWebhook: {name: t}}, {pause: {untilApproved: true}}]}}}
webhooks: [{name: t, uriTemplate: "https://ci.example/hook"}]
"#,
        )
        .unwrap();
        let start = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let mut h = Harness::start(Arc::new(plan), StartOptions::default(), start);
        h.advance(TimeDelta::hours(-2));
        assert_eq!(h.now(), start);
        assert_eq!(
            h.callback(GateId(1), true, None),
            Err(CoreError::UnknownCallback),
            "the approval takes no callback"
        );
        assert_eq!(
            h.callback(GateId(2), true, None),
            Err(CoreError::UnknownGate(GateId(2)))
        );
    }
}
