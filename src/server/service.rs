use std::sync::Arc;

use async_trait::async_trait;

use crate::auth::Principal;
use crate::config::GateId;
use crate::core::{CallbackAck, CallbackId, CoreError, Decision, DeploymentId};

/// What a callback reported (PROTOCOL.md §5 and §8). A `GateService` written outside hookgate
/// matches it with a last arm for reports it does not know: a later release may add one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallbackReport {
    /// `{"success": true|false, "mdMessage": "..."}`: the gate passes or fails.
    Outcome {
        /// Whether the external process succeeded.
        success: bool,
        /// Its markdown message, if any.
        message: Option<String>,
    },
    /// `{"inProgress": true, "mdMessage": "..."}`: a progress note; the gate stays open.
    Progress {
        /// The note.
        message: String,
    },
}

/// What the HTTP layer asks of the gates: apply a callback, decide an approval.
///
/// Implemented by the runtime's engine and by [`MemoryGates`](super::MemoryGates). An
/// implementation stores the result (durably, in production; `MemoryGates` keeps it in memory)
/// **before** returning `Ok`, since the HTTP answer
/// tells the sender it need not retry. It checks that `by` may act on the deployment (e.g. its
/// tenant) and answers [`GateError::Forbidden`] otherwise.
#[async_trait]
pub trait GateService: Send + Sync {
    /// Applies a callback to the gate with callback id `id`.
    async fn callback(
        &self,
        id: CallbackId,
        report: CallbackReport,
        by: &Principal,
    ) -> Result<CallbackAck, GateError>;

    /// Applies a person's decision on an approval gate. `decision` was built from `by`
    /// (`decision.by` is its subject, `decision.roles` its roles); `by` is passed too so that
    /// its tenant can be checked.
    async fn decide(
        &self,
        deployment: &DeploymentId,
        gate: GateId,
        decision: Decision,
        by: &Principal,
    ) -> Result<(), GateError>;
}

#[async_trait]
impl<T: GateService + ?Sized> GateService for Arc<T> {
    async fn callback(
        &self,
        id: CallbackId,
        report: CallbackReport,
        by: &Principal,
    ) -> Result<CallbackAck, GateError> {
        (**self).callback(id, report, by).await
    }

    async fn decide(
        &self,
        deployment: &DeploymentId,
        gate: GateId,
        decision: Decision,
        by: &Principal,
    ) -> Result<(), GateError> {
        (**self).decide(deployment, gate, decision, by).await
    }
}

/// Why a [`GateService`] refused or could not apply a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The core refused it (unknown callback, conflict, gate closed, missing role, ...).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// No deployment has that id.
    #[error("no deployment has that id; check the deployment id in the URL")]
    UnknownDeployment,
    /// The principal may not act on this deployment (e.g. another tenant's).
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The gates cannot be reached right now (e.g. storage is down); the sender should retry.
    #[error("the gates are unavailable right now: {0}; retry later")]
    Unavailable(String),
}
