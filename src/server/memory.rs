use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{CallbackReport, GateError, GateService};
use crate::auth::Principal;
use crate::clock::Clock;
use crate::config::GateId;
use crate::core::{CallbackAck, CallbackId, CoreError, Decision, Deployment, DeploymentId};

/// An in-memory [`GateService`] over [`Deployment`]s, for tests, benchmarks and simple hosts.
///
/// Callbacks go to [`Deployment::handle_callback`] / [`Deployment::handle_progress`], decisions
/// to [`Deployment::handle_approval`], each with `now` from the injected clock. Nothing is
/// durable and nothing drains the deployments' actions: a host that uses this drives them
/// through [`with_deployment`](Self::with_deployment).
///
/// A deployment started for a tenant ([`StartOptions::with_tenant`]), or inserted for one
/// ([`insert_for_tenant`](Self::insert_for_tenant)), only takes requests from principals of
/// that tenant, as the engine's do; one with neither takes them from anyone.
///
/// [`StartOptions::with_tenant`]: crate::core::StartOptions::with_tenant
pub struct MemoryGates {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    deployments: BTreeMap<DeploymentId, Entry>,
    callbacks: HashMap<CallbackId, DeploymentId>,
}

struct Entry {
    deployment: Deployment,
    /// The tenant it was inserted for, when the deployment itself names none.
    tenant: Option<String>,
}

impl fmt::Debug for MemoryGates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryGates")
            .field("deployments", &self.lock().deployments.len())
            .finish_non_exhaustive()
    }
}

impl MemoryGates {
    /// Empty, taking `now` from `clock`.
    pub fn new(clock: impl Clock) -> Self {
        Self {
            clock: Arc::new(clock),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock does not make the deployments unusable:
        // every core input either applies fully or changes nothing.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds (or replaces) a deployment, open to every principal unless it was started for a
    /// tenant.
    ///
    /// # Panics
    ///
    /// If another deployment here has one of its callback ids: the two were started with id
    /// sources that repeat ids (two `test_util::SequentialIds` from the same start, say), and a
    /// callback would otherwise reach whichever came last.
    pub fn insert(&self, deployment: Deployment) {
        self.insert_entry(deployment, None);
    }

    /// Adds (or replaces) a deployment that only principals of `tenant` may act on.
    ///
    /// # Panics
    ///
    /// As [`insert`](Self::insert), if another deployment here has one of its callback ids;
    /// and if the deployment was started for another tenant, which would leave it two owners.
    pub fn insert_for_tenant(&self, deployment: Deployment, tenant: impl Into<String>) {
        let tenant = tenant.into();
        if let Some(own) = deployment.tenant()
            && own != tenant
        {
            panic!(
                "deployment {} was started for tenant {own:?}, not {tenant:?}",
                deployment.id()
            );
        }
        self.insert_entry(deployment, Some(tenant));
    }

    fn insert_entry(&self, deployment: Deployment, tenant: Option<String>) {
        let mut inner = self.lock();
        let id = deployment.id().clone();
        for (_, callback) in deployment.callback_ids() {
            if let Some(other) = inner.callbacks.get(&callback)
                && *other != id
            {
                panic!(
                    "callback id {callback:?} of deployment {id} is deployment {other}'s already: give each deployment ids from one source"
                );
            }
        }
        for (_, callback) in deployment.callback_ids() {
            inner.callbacks.insert(callback, id.clone());
        }
        inner.deployments.insert(id, Entry { deployment, tenant });
    }

    /// Runs `f` on a deployment; `None` if there is none with that id.
    pub fn with_deployment<R>(
        &self,
        id: &DeploymentId,
        f: impl FnOnce(&mut Deployment) -> R,
    ) -> Option<R> {
        self.lock()
            .deployments
            .get_mut(id)
            .map(|entry| f(&mut entry.deployment))
    }
}

impl Entry {
    /// As the engine checks it: against the tenant the deployment was started for, or failing
    /// that the one it was inserted for.
    fn check_tenant(&self, by: &Principal) -> Result<(), GateError> {
        match self.deployment.tenant().or(self.tenant.as_deref()) {
            Some(tenant) if by.tenant.as_deref() != Some(tenant) => Err(GateError::Forbidden(
                "the token's tenant does not own this deployment".to_owned(),
            )),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl GateService for MemoryGates {
    async fn callback(
        &self,
        id: CallbackId,
        report: CallbackReport,
        by: &Principal,
    ) -> Result<CallbackAck, GateError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let Inner {
            deployments,
            callbacks,
        } = &mut *inner;
        let entry = callbacks
            .get(&id)
            .and_then(|d| deployments.get_mut(d))
            .ok_or(CoreError::UnknownCallback)?;
        entry.check_tenant(by)?;
        let deployment = &mut entry.deployment;
        Ok(match report {
            CallbackReport::Outcome { success, message } => {
                deployment.handle_callback(now, id, success, message)?
            }
            CallbackReport::Progress { message } => {
                deployment.handle_progress(now, id, message)?;
                CallbackAck::Applied
            }
        })
    }

    async fn decide(
        &self,
        deployment: &DeploymentId,
        gate: GateId,
        decision: Decision,
        by: &Principal,
    ) -> Result<(), GateError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let entry = inner
            .deployments
            .get_mut(deployment)
            .ok_or(GateError::UnknownDeployment)?;
        entry.check_tenant(by)?;
        Ok(entry.deployment.handle_approval(now, gate, decision)?)
    }
}
