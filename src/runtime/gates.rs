//! The engine as the HTTP layer's [`GateService`].

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;

use super::apply::{Target, restore};
use super::engine::{Engine, lock};
use super::error::RuntimeError;
use crate::auth::Principal;
use crate::config::{GateId, GateKind, Plan};
use crate::core::{CallbackAck, CallbackId, CoreError, Decision, Deployment, DeploymentId};
use crate::server::{CallbackReport, GateError, GateService};
use crate::store::StoredDeployment;

impl From<RuntimeError> for GateError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Core(e) => GateError::Core(e),
            RuntimeError::UnknownDeployment(_) => GateError::UnknownDeployment,
            // The detail (SQL errors, file paths) is for the operator's log, not the sender.
            other => {
                tracing::warn!(error = %other, "a callback or decision could not be applied");
                storage_unavailable()
            }
        }
    }
}

impl Engine {
    /// Where a callback goes: the entry of its deployment in memory, or its deployment to
    /// load.
    async fn owner_of(&self, callback: CallbackId) -> Result<Target<'static>, GateError> {
        if let Some(entry) = lock(&self.inner.callbacks).get(&callback) {
            return Ok(Target::Entry(Arc::clone(entry)));
        }
        self.inner
            .store
            .find_by_callback(callback)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "could not look a callback id up");
                storage_unavailable()
            })?
            .map(|id| Target::Id(Cow::Owned(id)))
            .ok_or(GateError::Core(CoreError::UnknownCallback))
    }
}

#[async_trait]
impl GateService for Engine {
    async fn callback(
        &self,
        id: CallbackId,
        report: CallbackReport,
        by: &Principal,
    ) -> Result<CallbackAck, GateError> {
        let target = self.owner_of(id).await?;
        let target = self.admitted(target, by).await?;
        // Held through the take-up, as a decision's is (see `decide`).
        let _plan = match &target {
            Target::Stored(stored) => Some(self.never_reported(stored, id, &report)?),
            _ => None,
        };
        self.apply_at(target, refused(by), |d, now| {
            check_tenant(d, by)?;
            Ok(match report.clone() {
                CallbackReport::Outcome { success, message } => {
                    d.handle_callback(now, id, success, message)?
                }
                CallbackReport::Progress { message } => {
                    d.handle_progress(now, id, message)?;
                    CallbackAck::Applied
                }
            })
        })
        .await?
    }

    async fn decide(
        &self,
        deployment: &DeploymentId,
        gate: GateId,
        decision: Decision,
        by: &Principal,
    ) -> Result<(), GateError> {
        let target = self
            .admitted(Target::Id(Cow::Borrowed(deployment)), by)
            .await?;
        // Held through the take-up, which then finds the plan in the engine's cache (it keeps
        // plans only while something uses them) rather than reading the file again.
        let _plan = match &target {
            Target::Stored(stored) => Some(self.never_decided(stored, gate, &decision)?),
            _ => None,
        };
        self.apply_at(target, refused(by), |d, now| {
            check_tenant(d, by)?;
            Ok(d.handle_approval(now, gate, decision.clone())?)
        })
        .await?
    }
}

impl Engine {
    /// Refuses, as the core would, a decision for a gate of `stored` that can never take it
    /// whatever its state (one the plan lacks, a webhook, a timed pause, an approval whose
    /// `requiresRoles` the decider holds none of), before the deployment is taken up: taking
    /// it up acts on it (claims its lease, fires its deadlines, asks again for its work), which
    /// a refused request must not make happen. Whether a gate that can take it does depends on
    /// its state after the take-up, which may fire its deadlines. Returns the deployment's
    /// plan.
    fn never_decided(
        &self,
        stored: &StoredDeployment,
        gate: GateId,
        decision: &Decision,
    ) -> Result<Arc<Plan>, GateError> {
        let index = usize::try_from(gate.0).ok();
        if index.is_none_or(|g| g >= stored.state.gates.len()) {
            return Err(GateError::Core(CoreError::UnknownGate(gate)));
        }
        let plan = self.stored_plan_for(&stored.id, &stored.plan_source)?;
        match index.and_then(|g| plan.gates().get(g)).map(|g| g.kind()) {
            Some(GateKind::Webhook { .. } | GateKind::Pause(_)) => {
                Err(GateError::Core(CoreError::NotAwaitingDecision(gate)))
            }
            // The core refuses it so whatever the gate's state.
            Some(GateKind::Approval { roles, .. }) if !decision.meets(roles) => {
                Err(GateError::Core(CoreError::MissingRole {
                    required: roles.clone(),
                }))
            }
            _ => Ok(plan),
        }
    }

    /// Refuses, as the core would, a callback or progress note that `stored` refuses, before
    /// the deployment is taken up, as [`Engine::never_decided`] does for decisions: a report
    /// to a gate whose webhook takes none, or to a gate already decided, is refused whatever
    /// taking the deployment up would do. The core's answer is taken from a copy of the row, on
    /// which the report meets the deadlines passed by now as it would in memory; a report the
    /// copy accepts is left to the take-up. Returns the deployment's plan.
    fn never_reported(
        &self,
        stored: &StoredDeployment,
        callback: CallbackId,
        report: &CallbackReport,
    ) -> Result<Arc<Plan>, GateError> {
        let plan = self.stored_plan_for(&stored.id, &stored.plan_source)?;
        // A row that no longer fits its plan is the take-up's to report.
        let Ok(mut copy) = restore(Arc::clone(&plan), Arc::clone(&stored.state)) else {
            return Ok(plan);
        };
        let now = self.inner.clock.now();
        let refused = match report.clone() {
            CallbackReport::Outcome { success, message } => {
                copy.handle_callback(now, callback, success, message).err()
            }
            CallbackReport::Progress { message } => {
                copy.handle_progress(now, callback, message).err()
            }
        };
        match refused {
            Some(e) => Err(GateError::Core(e)),
            None => Ok(plan),
        }
    }

    /// `target`, with [`check_tenant`] done on the row of a deployment not in memory, which
    /// the input then goes on with rather than reading it again: loading it for an input
    /// resumes it, or takes it over from a replica that stopped, which acts on it (fires its
    /// deadlines, asks again for its calls) before the input's own check could refuse it.
    async fn admitted<'a>(
        &self,
        target: Target<'a>,
        by: &Principal,
    ) -> Result<Target<'a>, GateError> {
        let Target::Id(id) = target else {
            return Ok(target);
        };
        if let Some(entry) = lock(&self.inner.live).get(&*id) {
            return Ok(Target::Entry(Arc::clone(entry)));
        }
        match self.inner.store.load(&id).await {
            Ok(Some(stored)) => {
                tenant_allows(stored.state.tenant.as_deref(), by)?;
                Ok(Target::Stored(Box::new(stored)))
            }
            // Unknown: the input's own look answers it.
            Ok(None) => Ok(Target::Id(id)),
            Err(e) => {
                tracing::warn!(deployment = %id, error = %e, "could not load a deployment to check its tenant");
                Err(storage_unavailable())
            }
        }
    }
}

/// The answer to a caller the deployment refuses, for [`Engine::apply_at`].
fn refused<T>(by: &Principal) -> impl Fn(&Deployment) -> Option<Result<T, GateError>> {
    move |d| check_tenant(d, by).err().map(Err)
}

/// A deployment started for a tenant takes callbacks and decisions only from that tenant's
/// principals. Checked inside the deployment's cycle, before the input, so a refused caller
/// changes nothing.
fn check_tenant(d: &Deployment, by: &Principal) -> Result<(), GateError> {
    tenant_allows(d.tenant(), by)
}

/// What a sender is told when the store fails: the detail (SQL errors, file paths) is for the
/// operator's log.
fn storage_unavailable() -> GateError {
    GateError::Unavailable("the gates' storage is unavailable".into())
}

fn tenant_allows(tenant: Option<&str>, by: &Principal) -> Result<(), GateError> {
    match tenant {
        Some(tenant) if by.tenant.as_deref() != Some(tenant) => Err(GateError::Forbidden(
            "the token's tenant does not own this deployment".to_owned(),
        )),
        _ => Ok(()),
    }
}
