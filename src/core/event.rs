use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::OpId;
use super::status::{DeploymentStatus, EnvStatus, Resolution};
use crate::config::{EnvId, GateId};

/// Something that happened, drained with [`Deployment::poll_event`]. Every status change
/// produces one, so the event stream is the deployment's history.
///
/// [`Deployment::poll_event`]: super::Deployment::poll_event
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// When it happened (the `now` of the input that caused it).
    #[serde(serialize_with = "super::timestamp::serialize")]
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum EventKind {
    /// The deployment started.
    DeploymentStarted,
    /// An environment's status changed.
    EnvironmentStatus {
        /// The environment.
        env: EnvId,
        /// Its new status.
        status: EnvStatus,
    },
    /// A gate started waiting.
    GateOpened {
        /// The gate.
        gate: GateId,
    },
    /// An outbound call attempt was asked for.
    WebhookAttempt {
        /// The gate.
        gate: GateId,
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// An attempt reached the external system and got a 2xx answer.
    WebhookSent {
        /// The gate.
        gate: GateId,
        /// The attempt.
        attempt: u32,
        /// The HTTP status.
        status: u16,
    },
    /// An attempt failed.
    WebhookFailed {
        /// The gate.
        gate: GateId,
        /// The attempt.
        attempt: u32,
        /// The HTTP status, if an answer came.
        status: Option<u16>,
        /// What went wrong.
        reason: String,
        /// When the next attempt goes, if one will.
        #[serde(serialize_with = "super::timestamp::serialize_option")]
        retry_at: Option<DateTime<Utc>>,
    },
    /// A callback was applied.
    CallbackReceived {
        /// The gate.
        gate: GateId,
        /// What it said.
        success: bool,
        /// Its `mdMessage`.
        message: Option<String>,
    },
    /// A progress note arrived for an open gate.
    Progress {
        /// The gate.
        gate: GateId,
        /// Its `mdMessage`.
        message: String,
    },
    /// A person decided an approval.
    ApprovalDecided {
        /// The gate.
        gate: GateId,
        /// Approved or rejected.
        approved: bool,
        /// Who.
        by: String,
        /// Their comment.
        comment: Option<String>,
    },
    /// A gate passed.
    GatePassed {
        /// The gate.
        gate: GateId,
        /// How.
        how: Resolution,
    },
    /// A gate failed.
    GateFailed {
        /// The gate.
        gate: GateId,
        /// How.
        how: Resolution,
        /// For people: what went wrong.
        message: String,
    },
    /// A gate was closed without a decision.
    GateClosed {
        /// The gate.
        gate: GateId,
        /// Why.
        how: Resolution,
    },
    /// A host step finished; or an analysis with `rollBackMode: manual` ran past
    /// `deploymentConfig.timeout` (`ok: false`, the message saying so), which then waits for
    /// a person's decision as a failed one does.
    StepFinished {
        /// The operation.
        op: OpId,
        /// The environment.
        env: EnvId,
        /// Whether it succeeded.
        ok: bool,
        /// What the host said, on failure.
        message: Option<String>,
    },
    /// A rollback was asked for.
    RollbackStarted {
        /// The environment.
        env: EnvId,
    },
    /// A person cancelled the deployment.
    CancelRequested {
        /// Who.
        by: String,
    },
    /// Every environment is finished.
    DeploymentFinished {
        /// The outcome.
        status: DeploymentStatus,
    },
}
