use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{CallbackId, OpId};
use crate::config::{AnalysisSpec, EnvId, GateId, WebhookId};

/// Something the host must do, drained with [`Deployment::poll_action`].
///
/// [`Deployment::poll_action`]: super::Deployment::poll_action
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Action {
    /// Render and send a webhook's request; report with `handle_call_result`.
    CallWebhook(WebhookCall),
    /// Perform a host step; report with `handle_step_result`.
    RunStep(StepRequest),
    /// Roll an environment back to its previous version; report with `handle_step_result`.
    RollBack {
        /// Matches the result to this request.
        op: OpId,
        /// The environment.
        env: EnvId,
    },
    /// Tell people that a decision is needed; answer with `handle_approval`.
    RequestApproval(ApprovalRequest),
}

/// One attempt of an outbound webhook call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebhookCall {
    /// The gate.
    pub gate: GateId,
    /// Its environment.
    pub env: EnvId,
    /// The webhook to render.
    pub webhook: WebhookId,
    /// The id in the gate's callback URI.
    pub callback_id: CallbackId,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The same for every attempt of this gate: send it as `Idempotency-Key` with `%`, spaces,
    /// control characters and what is not ASCII percent-encoded (a host's deployment id may
    /// hold any of them), and as `webhook-id` when signing, with `.` percent-encoded too; the
    /// [`Dispatcher`](crate::outbound::Dispatcher) does both.
    pub idempotency_key: String,
}

/// A host step the core asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepRequest {
    /// Matches the result to this request.
    pub op: OpId,
    /// The environment.
    pub env: EnvId,
    /// What to do.
    pub step: HostStep,
}

/// The host steps of PROTOCOL.md §4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostStep {
    /// Deploy the new version (for canary: beside the old one with no traffic; for blue/green:
    /// behind the preview service).
    Deploy,
    /// Send this percentage of traffic to the new version.
    SetWeight(u8),
    /// Expose services and report their URLs (`StepOutcome::Exposed`).
    ExposeServices {
        /// The services.
        services: Vec<String>,
        /// How long they stay exposed.
        ttl: Option<Duration>,
    },
    /// Run an analysis for a gate; report pass or fail.
    Analysis {
        /// The gate waiting on it.
        gate: GateId,
        /// What to analyse.
        spec: AnalysisSpec,
    },
    /// Blue/green: move traffic to the new version.
    RedirectTraffic,
    /// Blue/green: shut the old version down.
    ShutDownOldVersion,
}

impl HostStep {
    /// A short name for logs and events.
    pub fn name(&self) -> &'static str {
        match self {
            HostStep::Deploy => "deploy",
            HostStep::SetWeight(_) => "setWeight",
            HostStep::ExposeServices { .. } => "exposeServices",
            HostStep::Analysis { .. } => "analysis",
            HostStep::RedirectTraffic => "redirectTraffic",
            HostStep::ShutDownOldVersion => "shutDownOldVersion",
        }
    }
}

/// A decision people must make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApprovalRequest {
    /// The gate to decide with `handle_approval`.
    pub gate: GateId,
    /// Its environment.
    pub env: EnvId,
    /// What is asked.
    pub kind: ApprovalKind,
    /// When the request expires on its own (a rejection), if ever.
    #[serde(serialize_with = "super::timestamp::serialize_option")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// What an approval request asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApprovalKind {
    /// `pause: {untilApproved: true}`: approve to continue, reject to fail the gate.
    Manual {
        /// Any one of these roles may decide; empty means anyone.
        roles: Vec<String>,
    },
    /// An analysis failed with `rollBackMode: manual`: approve to continue anyway, reject to
    /// fail the gate (and roll back where the gate's stage rolls back).
    AnalysisFailed,
}
