//! The engine as the HTTP layer's [`GateService`].

use async_trait::async_trait;

use super::engine::{Engine, lock};
use super::error::RuntimeError;
use crate::auth::Principal;
use crate::config::GateId;
use crate::core::{CallbackAck, CallbackId, CoreError, Decision, DeploymentId};
use crate::server::{CallbackReport, GateError, GateService};

impl From<RuntimeError> for GateError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Core(e) => GateError::Core(e),
            RuntimeError::UnknownDeployment(_) => GateError::UnknownDeployment,
            // The detail (SQL errors, file paths) is for the operator's log, not the sender.
            other => {
                tracing::warn!(error = %other, "a callback or decision could not be applied");
                GateError::Unavailable("the gates' storage is unavailable".into())
            }
        }
    }
}

impl Engine {
    async fn deployment_for(&self, callback: CallbackId) -> Result<DeploymentId, GateError> {
        if let Some(id) = lock(&self.inner.callbacks).get(&callback) {
            return Ok(id.clone());
        }
        self.inner
            .store
            .find_by_callback(callback)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "could not look a callback id up");
                GateError::Unavailable("the gates' storage is unavailable".into())
            })?
            .ok_or(GateError::Core(CoreError::UnknownCallback))
    }
}

#[async_trait]
impl GateService for Engine {
    async fn callback(
        &self,
        id: CallbackId,
        report: CallbackReport,
        _by: &Principal,
    ) -> Result<CallbackAck, GateError> {
        let deployment = self.deployment_for(id).await?;
        let applied = self
            .apply(&deployment, |d, now| match report.clone() {
                CallbackReport::Outcome { success, message } => {
                    d.handle_callback(now, id, success, message)
                }
                CallbackReport::Progress { message } => d
                    .handle_progress(now, id, message)
                    .map(|()| CallbackAck::Applied),
            })
            .await?;
        Ok(applied?)
    }

    async fn decide(
        &self,
        deployment: &DeploymentId,
        gate: GateId,
        decision: Decision,
        _by: &Principal,
    ) -> Result<(), GateError> {
        self.apply(deployment, |d, now| {
            d.handle_approval(now, gate, decision.clone())
        })
        .await??;
        Ok(())
    }
}
