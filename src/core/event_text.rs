//! Events written for people, with the names of their environments and gates.

use std::fmt::{self, Display, Formatter};

use super::event::EventKind;
use crate::config::{EnvId, GateId, GateKind, Plan};

impl EventKind {
    /// This event written for people, naming its environment and gate from `plan` (the plan
    /// of the deployment it came from): `prod webhook ticket: callback, failure: "tests
    /// failed"`, `prod: deploying`. Text that came from outside (a callback's message, an
    /// approver's comment) is quoted with its control characters escaped, so that it cannot
    /// forge a line of a log. An id that `plan` does not have (an event paired with another
    /// deployment's plan) is written as its number; one in range names what that plan has
    /// there, which nothing can tell apart.
    ///
    /// ```
    /// use hookgate::config::{EnvId, Plan};
    /// use hookgate::core::{EnvStatus, EventKind};
    ///
    /// let plan = Plan::from_yaml("application: shop\ntargets: {prod: {}}").unwrap();
    /// let event = EventKind::EnvironmentStatus { env: EnvId(0), status: EnvStatus::Deploying };
    /// assert_eq!(event.describe(&plan).to_string(), "prod: deploying");
    /// ```
    pub fn describe<'a>(&'a self, plan: &'a Plan) -> impl Display + 'a {
        Described { kind: self, plan }
    }
}

struct Described<'a> {
    kind: &'a EventKind,
    plan: &'a Plan,
}

impl Display for Described<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let env = |env| EnvName(self.plan, env);
        let gate = |gate| GateName(self.plan, gate);
        match self.kind {
            EventKind::DeploymentStarted => f.write_str("deployment started"),
            EventKind::EnvironmentStatus { env: e, status } => {
                write!(f, "{}: {}", env(*e), Words(status.as_str()))
            }
            EventKind::GateOpened { gate: g } => write!(f, "{}: open", gate(*g)),
            EventKind::WebhookAttempt { gate: g, attempt } => {
                write!(f, "{}: calling, attempt {attempt}", gate(*g))
            }
            EventKind::WebhookSent {
                gate: g,
                attempt,
                status,
            } => write!(f, "{}: call answered {status}, attempt {attempt}", gate(*g)),
            EventKind::WebhookFailed {
                gate: g,
                attempt,
                reason,
                retry_at,
                ..
            } => {
                write!(
                    f,
                    "{}: call failed, attempt {attempt}: {reason:?}",
                    gate(*g)
                )?;
                match retry_at {
                    Some(at) => write!(f, "; next attempt at {}", at.to_rfc3339()),
                    None => Ok(()),
                }
            }
            EventKind::CallbackReceived {
                gate: g,
                success,
                message,
            } => {
                let said = if *success { "success" } else { "failure" };
                write!(f, "{}: callback, {said}", gate(*g))?;
                with_text(f, message.as_deref())
            }
            EventKind::Progress { gate: g, message } => {
                write!(f, "{}: progress", gate(*g))?;
                with_text(f, Some(message))
            }
            EventKind::ApprovalDecided {
                gate: g,
                approved,
                by,
                comment,
            } => {
                let decided = if *approved { "approved" } else { "rejected" };
                write!(f, "{}: {decided} by {by:?}", gate(*g))?;
                with_text(f, comment.as_deref())
            }
            EventKind::GatePassed { gate: g, how } => write!(f, "{}: passed, {how}", gate(*g)),
            EventKind::GateFailed {
                gate: g,
                how,
                message,
            } => {
                write!(f, "{}: failed, {how}", gate(*g))?;
                with_text(f, Some(message))
            }
            // Each closing resolution says "closed because ...".
            EventKind::GateClosed { gate: g, how } => write!(f, "{}: {how}", gate(*g)),
            EventKind::StepFinished {
                op,
                env: e,
                ok,
                message,
            } => {
                let ended = if *ok { "succeeded" } else { "failed" };
                write!(f, "{}: host step {op} {ended}", env(*e))?;
                with_text(f, message.as_deref())
            }
            EventKind::RollbackStarted { env: e } => write!(f, "{}: rolling back", env(*e)),
            EventKind::CancelRequested { by } => {
                write!(f, "deployment cancel asked by {by:?}")
            }
            EventKind::DeploymentFinished { status } => {
                write!(f, "deployment {}", Words(status.as_str()))
            }
        }
    }
}

/// `: "text"` after an event's words, when there is text. Text from outside is written with
/// `{:?}` wherever it goes: quoted, its control and invisible characters escaped.
fn with_text(f: &mut Formatter<'_>, text: Option<&str>) -> fmt::Result {
    match text {
        Some(text) => write!(f, ": {text:?}"),
        None => Ok(()),
    }
}

/// A status's name written as words: `rolled back`, not `rolled_back`.
struct Words(&'static str);

impl Display for Words {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, word) in self.0.split('_').enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(word)?;
        }
        Ok(())
    }
}

/// An environment's name, or `environment <n>` for one the plan does not have.
struct EnvName<'a>(&'a Plan, EnvId);

impl Display for EnvName<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0.environments().get(usize::from(self.1.0)) {
            Some(env) => f.write_str(env.name()),
            None => write!(f, "environment {}", self.1.0),
        }
    }
}

/// A gate as its environment's name and what it waits on (`prod webhook ticket`, `prod
/// approval`), or `gate <n>` for one the plan does not have.
struct GateName<'a>(&'a Plan, GateId);

impl Display for GateName<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let gates = self.0.gates();
        let Some(gate) = usize::try_from(self.1.0).ok().and_then(|i| gates.get(i)) else {
            return write!(f, "gate {}", self.1.0);
        };
        write!(f, "{} ", EnvName(self.0, gate.env()))?;
        match gate.kind() {
            GateKind::Webhook { webhook, .. } => {
                match self.0.webhooks().get(usize::from(webhook.0)) {
                    Some(webhook) => write!(f, "webhook {}", webhook.name),
                    None => f.write_str("webhook"),
                }
            }
            GateKind::Pause(_) => f.write_str("pause"),
            GateKind::Approval { .. } => f.write_str("approval"),
            GateKind::Analysis(_) => f.write_str("analysis"),
        }
    }
}
