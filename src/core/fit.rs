//! Whether a stored state fits the plan it is restored with.
//!
//! The transitions index the plan by what the state says (a canary position is an index into
//! the strategy's steps, a gate's state says which kind of gate it is, callback ids are found by
//! binary search) and do not check again; a state that came from elsewhere (a hand-edited row,
//! another layout of the plan) is checked here once, so that it is refused rather than making
//! the core panic or spin.

use std::collections::BTreeSet;

use super::action::{Action, HostStep};
use super::event::EventKind;
use super::machine::{Work, work};
use super::state::{DeploymentState, EnvState, GateState, Pos};
use super::status::{DeploymentStatus, EnvStatus};
use crate::config::{EnvId, GateId, GateKind, Plan, Strategy};

/// The largest operation counter a restored state may hold: far beyond any deployment's
/// operations, and far enough below `u64::MAX` that no run of inputs makes it overflow.
const MAX_NEXT_OP: u64 = u64::MAX / 2;

/// `Err` says what does not fit, for [`CoreError::PlanMismatch`](super::CoreError).
pub(crate) fn check(plan: &Plan, s: &DeploymentState) -> Result<(), &'static str> {
    if s.envs.len() != plan.environments().len() {
        return Err("number of environments");
    }
    if s.gates.len() != plan.gates().len() {
        return Err("number of gates");
    }
    callbacks(plan, s)?;
    if s.status == DeploymentStatus::Queued {
        return queued(s);
    }
    status(s)?;
    dependencies(plan, s)?;
    // Positions first: the open gates are looked for at them.
    for (i, &state) in s.envs.iter().enumerate() {
        env(plan, s, EnvId(i as u16), state)?;
    }
    open_gates(plan, s)?;
    let mut ops = Vec::new();
    for &state in &s.envs {
        match state {
            EnvState::Running { op: Some(op), .. } | EnvState::RollingBack { op, .. } => {
                ops.push(op)
            }
            _ => {}
        }
    }
    for (i, &state) in s.gates.iter().enumerate() {
        gate(plan, GateId(i as u32), state)?;
        if let GateState::Analysing { op, .. } = state {
            ops.push(op);
        }
    }
    // Operations are found by id: each must be one the counter issued, and only once.
    if ops.iter().any(|op| op.0 > s.next_op) {
        return Err("an operation id the operation counter has not issued");
    }
    // The counter goes up by one per operation and is never checked again: a stored value
    // near its end would overflow a few transitions later.
    if s.next_op > MAX_NEXT_OP {
        return Err("an operation counter beyond what a deployment can have issued");
    }
    ops.sort_unstable();
    if ops.windows(2).any(|w| w[0] == w[1]) {
        return Err("an operation id in use twice");
    }
    outputs(s)
}

fn callbacks(plan: &Plan, s: &DeploymentState) -> Result<(), &'static str> {
    let webhook_gates = plan.webhook_gates();
    if s.callbacks.len() != webhook_gates.clone().count() {
        return Err("webhook gates");
    }
    // Looked up by binary search on the gate, and every webhook gate needs one.
    if !s.callbacks.iter().map(|(g, _)| *g).eq(webhook_gates) {
        return Err("callback ids not listed once per webhook gate, in gate order");
    }
    let distinct: BTreeSet<_> = s.callbacks.iter().map(|(_, id)| *id).collect();
    if distinct.len() != s.callbacks.len() {
        return Err("a callback id shared by two gates");
    }
    // The webhook gates are the ones with callback ids, checked above against the plan.
    let takes_notes = |gate: &GateId| {
        s.callbacks.binary_search_by_key(gate, |(g, _)| *g).is_ok()
            && !plan.callback_disabled(*gate)
    };
    if !s.notes.keys().all(takes_notes) {
        return Err("progress notes counted for a gate that takes no callback");
    }
    Ok(())
}

/// A queued deployment has begun nothing: [`Deployment::handle_begin`] starts it as
/// [`Deployment::start`] would, which assumes every environment waiting, every gate idle and
/// nothing asked for or emitted. (A cancel finishes it, so a queued one is never canceled.)
///
/// [`Deployment::handle_begin`]: super::Deployment::handle_begin
/// [`Deployment::start`]: super::Deployment::start
fn queued(s: &DeploymentState) -> Result<(), &'static str> {
    let pristine = !s.canceled
        && s.next_op == 0
        && s.envs.iter().all(|e| *e == EnvState::Waiting)
        && s.gates.iter().all(|g| *g == GateState::Idle)
        && s.notes.is_empty()
        && s.previews.is_empty()
        && s.replica_sets.is_none()
        && s.actions.is_empty()
        && s.events.is_empty();
    if pristine {
        Ok(())
    } else {
        Err("a queued deployment with something begun")
    }
}

/// A deployment runs from its start until its last environment is done, when it takes its
/// terminal status: a terminal status beside an environment still under way would leave
/// inputs moving that environment on while the deployment refuses a cancel as finished.
fn status(s: &DeploymentState) -> Result<(), &'static str> {
    if s.status.is_terminal() && !s.all_envs_done() {
        return Err("a finished deployment with an environment under way");
    }
    // The transition that finishes its last environment finishes the deployment: nothing
    // would later.
    if s.status == DeploymentStatus::Running && s.all_envs_done() {
        return Err("a running deployment with every environment done");
    }
    Ok(())
}

/// An environment starts in the transition in which its last dependency succeeds, and is
/// canceled in the one in which a dependency ends otherwise: one waiting on nothing, or on a
/// dependency that can no longer succeed, would wait for ever, and one under way or ended
/// (but canceled) ran before its dependencies succeeded.
fn dependencies(plan: &Plan, s: &DeploymentState) -> Result<(), &'static str> {
    let status = |e: &EnvId| s.envs[usize::from(e.0)].status();
    for (i, &state) in s.envs.iter().enumerate() {
        let deps = plan.environment(EnvId(i as u16)).depends_on();
        let all_succeeded = deps.iter().all(|d| status(d) == EnvStatus::Succeeded);
        let one_cannot_succeed = || {
            deps.iter().any(|d| {
                let st = status(d);
                st.is_terminal() && st != EnvStatus::Succeeded
            })
        };
        match state {
            EnvState::Waiting if all_succeeded => {
                return Err("an environment waiting though its dependencies succeeded");
            }
            EnvState::Waiting if one_cannot_succeed() => {
                return Err("an environment waiting on a dependency that did not succeed");
            }
            EnvState::Waiting | EnvState::Done(EnvStatus::Canceled) => {}
            _ if !all_succeeded => {
                return Err("an environment started before its dependencies succeeded");
            }
            _ => {}
        }
    }
    Ok(())
}

/// A gate is open only while its environment waits on the gate list it is in: every way out
/// of a list closes what is still open in it. An open gate elsewhere would be acted on (its
/// call sent again on recovery, a callback accepted) for an environment that has moved on.
fn open_gates(plan: &Plan, s: &DeploymentState) -> Result<(), &'static str> {
    for (i, state) in s.gates.iter().enumerate() {
        if !state.is_open() {
            continue;
        }
        let g = GateId(i as u32);
        let env = plan.gate(g).env();
        let in_list = match s.envs[usize::from(env.0)] {
            EnvState::Running { pos, .. } => {
                matches!(work(plan, env, pos), Work::Gates(list) if list.contains(&g))
            }
            _ => false,
        };
        if !in_list {
            return Err("an open gate outside the gate list its environment waits on");
        }
    }
    Ok(())
}

fn env(plan: &Plan, s: &DeploymentState, env: EnvId, state: EnvState) -> Result<(), &'static str> {
    match state {
        EnvState::Waiting | EnvState::RollingBack { .. } => Ok(()),
        EnvState::Done(status) if status.is_terminal() => Ok(()),
        EnvState::Done(_) => Err("an environment done with a status that is not terminal"),
        EnvState::Running { pos, op, deadline } => {
            let in_strategy = match (pos, plan.environment(env).strategy()) {
                (Pos::Before | Pos::Deploy | Pos::After, _) => true,
                (Pos::Canary(k), Strategy::Canary { steps, .. }) => usize::from(k) < steps.len(),
                (
                    Pos::RedirectGates | Pos::Redirect | Pos::ShutdownGates | Pos::Shutdown,
                    Strategy::BlueGreen { .. },
                ) => true,
                _ => false,
            };
            if !in_strategy {
                return Err("an environment at a position its strategy does not have");
            }
            match work(plan, env, pos) {
                Work::Step(_) if op.is_none() => {
                    Err("an environment at a host step with no operation")
                }
                Work::Step(_) => Ok(()),
                // Entering a position skips empty gate lists, so nothing would move it on.
                Work::Gates([]) => Err("an environment waiting on an empty gate list"),
                Work::Gates(_) if op.is_some() || deadline.is_some() => {
                    Err("an environment waiting on gates with a host step's operation or deadline")
                }
                Work::Gates(list) => waiting_on(s, list),
            }
        }
    }
}

/// An environment waiting on a gate list is moved on by its gates: opened together when it got
/// there, it fails as soon as one fails and goes on once all have passed, in the same
/// transition. So each gate of the list is open or passed, and one at least is still open; any
/// other state would wait for ever.
fn waiting_on(s: &DeploymentState, list: &[GateId]) -> Result<(), &'static str> {
    // The list's gates are the plan's, and the state has one for each (checked first).
    let gates = || list.iter().map(|g| s.gates[g.0 as usize]);
    if gates().any(|g| !g.is_open() && !matches!(g, GateState::Passed(_))) {
        return Err("an environment waiting on a gate that is neither open nor passed");
    }
    if !gates().any(GateState::is_open) {
        return Err("an environment waiting on gates none of which is open");
    }
    Ok(())
}

fn gate(plan: &Plan, g: GateId, state: GateState) -> Result<(), &'static str> {
    let kind = plan.gate(g).kind();
    // The last attempt a webhook gate makes: the first plus `retryCount` retries.
    let last_attempt = match kind {
        GateKind::Webhook { webhook, .. } => plan.webhook(*webhook).retry_count.saturating_add(1),
        _ => 0,
    };
    let fits = match (state, kind) {
        (
            GateState::Idle | GateState::Passed(_) | GateState::Failed(_) | GateState::Closed(_),
            _,
        ) => true,
        (GateState::Calling { attempt }, GateKind::Webhook { .. }) => {
            (1..=last_attempt).contains(&attempt)
        }
        (GateState::RetryWaiting { attempt, .. }, GateKind::Webhook { .. }) => {
            (2..=last_attempt).contains(&attempt)
        }
        // A webhook with `disableCallback` passes once its call is sent.
        (GateState::AwaitingCallback { .. }, GateKind::Webhook { .. }) => {
            !plan.callback_disabled(g)
        }
        (GateState::Pausing { .. }, GateKind::Pause(_))
        | (GateState::AwaitingApproval { .. }, GateKind::Approval { .. })
        | (GateState::Analysing { .. } | GateState::AwaitingDecision, GateKind::Analysis(_)) => {
            true
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err("a gate in a state its kind of gate never takes")
    }
}

/// Actions and events not yet drained name environments and gates the host looks up in the
/// plan.
fn outputs(s: &DeploymentState) -> Result<(), &'static str> {
    let env_ok = |e: EnvId| usize::from(e.0) < s.envs.len();
    let gate_ok = |g: GateId| (g.0 as usize) < s.gates.len();
    let actions_fit = s.actions.iter().all(|a| match a {
        Action::RunStep(r) => {
            env_ok(r.env)
                && match &r.step {
                    HostStep::Analysis { gate, .. } => gate_ok(*gate),
                    _ => true,
                }
        }
        Action::RollBack { env, .. } => env_ok(*env),
        Action::CallWebhook(c) => env_ok(c.env) && gate_ok(c.gate),
        Action::RequestApproval(r) => env_ok(r.env) && gate_ok(r.gate),
    });
    if !actions_fit {
        return Err("a pending action for an environment or gate the plan does not have");
    }
    let events_fit = s.events.iter().all(|e| match &e.kind {
        EventKind::EnvironmentStatus { env, .. }
        | EventKind::StepFinished { env, .. }
        | EventKind::RollbackStarted { env } => env_ok(*env),
        EventKind::GateOpened { gate }
        | EventKind::WebhookAttempt { gate, .. }
        | EventKind::WebhookSent { gate, .. }
        | EventKind::WebhookFailed { gate, .. }
        | EventKind::CallbackReceived { gate, .. }
        | EventKind::Progress { gate, .. }
        | EventKind::ApprovalDecided { gate, .. }
        | EventKind::GatePassed { gate, .. }
        | EventKind::GateFailed { gate, .. }
        | EventKind::GateClosed { gate, .. } => gate_ok(*gate),
        EventKind::DeploymentStarted
        | EventKind::CancelRequested { .. }
        | EventKind::DeploymentFinished { .. } => true,
    });
    if !events_fit {
        return Err("a pending event for an environment or gate the plan does not have");
    }
    if s.previews.keys().any(|e| !env_ok(*e)) {
        return Err("preview URLs for an environment the plan does not have");
    }
    if s.replica_sets
        .iter()
        .flat_map(|sets| sets.keys())
        .any(|e| !env_ok(*e))
    {
        return Err("a ReplicaSet for an environment the plan does not have");
    }
    Ok(())
}
