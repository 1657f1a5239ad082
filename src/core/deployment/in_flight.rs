//! The work a deployment has under way, as its state records it: asked for again after a
//! restart, when whatever the process was doing was lost with it, or after a write whose
//! answer was lost, when only some of it was.

#[cfg(feature = "runtime")]
use std::collections::BTreeSet;

use super::Deployment;
use crate::config::{EnvId, GateId, GateKind};
use crate::core::action::{Action, HostStep, StepRequest};
use crate::core::ids::OpId;
use crate::core::machine::{Work, work};
use crate::core::state::{EnvState, GateState};

/// One piece of work under way, named so that two copies of a state name the same work alike.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Underway {
    /// A host step, an analysis or a rollback.
    Op(OpId),
    /// An attempt of a webhook call.
    Call(GateId, u32),
    /// An approval request.
    Approval(GateId),
}

impl Deployment {
    /// Asks again for everything in flight: webhook attempts under way (same attempt, same
    /// idempotency key), host steps and rollbacks (same operation), open approval requests.
    /// A host calls this once after restoring a deployment, since whatever it was doing when
    /// it stopped was lost with the process. It takes the place of the actions the state still
    /// held undrained, which are among what it asks for: kept, they would be asked for twice.
    pub fn reissue_in_flight(&mut self) {
        let actions = self
            .in_flight()
            .map(|(_, action)| action)
            .collect::<Vec<_>>();
        let s = self.state_mut();
        s.actions.clear();
        s.actions.extend(actions);
    }

    /// [`reissue_in_flight`](Self::reissue_in_flight) for a stored state taken up in place of
    /// `running`, this deployment as driven here, whose work in flight was asked for when it
    /// was stored and is under way, but for the actions it still holds, not yet performed: only
    /// the rest is asked for, that of other writes (ours whose answers were lost, a copy's that
    /// left it pending, a lapsed replica's). Asked for again, the work under way would run
    /// twice at once.
    #[cfg(feature = "runtime")]
    pub(crate) fn reissue_afresh_beside(&mut self, running: &Deployment) {
        let underway: BTreeSet<Underway> = running
            .in_flight()
            .filter(|(_, action)| !running.s.actions.contains(action))
            .map(|(work, _)| work)
            .collect();
        let actions = self
            .in_flight()
            .filter(|(work, _)| !underway.contains(work))
            .map(|(_, action)| action)
            .collect::<Vec<_>>();
        let s = self.state_mut();
        s.actions.clear();
        s.actions.extend(actions);
    }

    /// The work in flight, and the action asking for each.
    fn in_flight(&self) -> impl Iterator<Item = (Underway, Action)> + '_ {
        let plan = &*self.plan;
        let steps = self
            .s
            .envs
            .iter()
            .enumerate()
            .filter_map(move |(i, state)| {
                let env = EnvId(i as u16);
                match *state {
                    EnvState::Running {
                        pos, op: Some(op), ..
                    } => match work(plan, env, pos) {
                        Work::Step(step) => Some((
                            Underway::Op(op),
                            Action::RunStep(StepRequest { op, env, step }),
                        )),
                        _ => None,
                    },
                    EnvState::RollingBack { op, .. } => {
                        Some((Underway::Op(op), Action::RollBack { op, env }))
                    }
                    _ => None,
                }
            });
        let gates = self
            .s
            .gates
            .iter()
            .enumerate()
            .filter_map(move |(i, state)| {
                let gate = GateId(i as u32);
                Some(match (*state, plan.gate(gate).kind()) {
                    (GateState::Calling { attempt }, _) => (
                        Underway::Call(gate, attempt),
                        self.s.webhook_call(plan, gate, attempt),
                    ),
                    (GateState::AwaitingApproval { expires }, _) => (
                        Underway::Approval(gate),
                        self.s.approval_request(plan, gate, expires),
                    ),
                    (GateState::AwaitingDecision, _) => (
                        Underway::Approval(gate),
                        self.s.approval_request(plan, gate, None),
                    ),
                    (GateState::Analysing { op, .. }, GateKind::Analysis(spec)) => (
                        Underway::Op(op),
                        Action::RunStep(StepRequest {
                            op,
                            env: plan.gate(gate).env(),
                            step: HostStep::Analysis {
                                gate,
                                spec: spec.clone(),
                            },
                        }),
                    ),
                    _ => return None,
                })
            });
        steps.chain(gates)
    }
}
