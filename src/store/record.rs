use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Lease, StoreError};
use crate::core::{CallbackId, Deployment, DeploymentId, DeploymentState, DeploymentStatus, Event};

/// A deployment to store for the first time; build it with [`NewDeployment::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewDeployment {
    /// Its id.
    pub id: DeploymentId,
    /// The application its plan deploys.
    pub application: String,
    /// The deployment file's text, validated again by the runtime when it loads the deployment.
    pub plan_source: String,
    /// The core's state, shared with the deployment it was taken from (see
    /// [`Deployment::state`]).
    pub state: Arc<DeploymentState>,
    /// Its status as the host sees it.
    pub status: DeploymentStatus,
    /// Every callback id of its webhook gates. The core assigns them all at start and never
    /// changes them, so the store indexes them once, here.
    pub callback_ids: Vec<CallbackId>,
    /// The lease to store it under, for a replica that creates a deployment and drives it;
    /// stores without leases refuse a deployment that has one.
    pub lease: Option<Lease>,
    /// Whether to store it only if no other deployment of its application is running
    /// ([`StoreError::ApplicationBusy`](super::StoreError::ApplicationBusy) otherwise), checked
    /// in the same step as the write, so that two replicas starting the application at once
    /// cannot both succeed.
    pub exclusive: bool,
}

impl NewDeployment {
    /// Everything about `deployment` a store keeps, with the text its plan was read from.
    ///
    /// Taking it all from the deployment means the id, application and callback ids cannot
    /// disagree with the state. Changed afterwards, they can: a store refuses a state whose id
    /// is not `id` ([`StoreError::WrongState`](super::StoreError::WrongState)), but takes the
    /// other fields as given.
    pub fn new(deployment: &Deployment, plan_source: impl Into<String>) -> Self {
        Self {
            id: deployment.id().clone(),
            application: deployment.plan().application().to_owned(),
            plan_source: plan_source.into(),
            state: Arc::clone(deployment.state()),
            status: deployment.status(),
            callback_ids: deployment.callback_ids().map(|(_, id)| id).collect(),
            lease: None,
            exclusive: false,
        }
    }

    /// Stores it leased to the replica creating it, so no other replica takes it as an orphan
    /// between its creation and its first lease.
    #[must_use]
    pub fn leased(mut self, lease: Lease) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Stores it only if no other deployment of its application is running: the store checks
    /// and writes in one step, and refuses with
    /// [`StoreError::ApplicationBusy`](super::StoreError::ApplicationBusy) otherwise.
    #[must_use]
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// Stores it with another status, such as `queued` for a deployment that waits for
    /// another one of its application (`ifDeploymentInProgress: enqueueOne`).
    #[must_use]
    pub fn with_status(mut self, status: DeploymentStatus) -> Self {
        self.status = status;
        self
    }
}

/// A stored deployment, as [`Store::load`](super::Store::load) returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeployment {
    /// Its id.
    pub id: DeploymentId,
    /// The application its plan deploys.
    pub application: String,
    /// The deployment file's text.
    pub plan_source: String,
    /// The core's state; continue with [`Deployment::restore`], which takes the `Arc` as it
    /// is (a store that keeps values shares it with its row).
    pub state: Arc<DeploymentState>,
    /// Its status as the host sees it.
    pub status: DeploymentStatus,
    /// 1 after `create`, one more after each `save`; pass it to the next `save`.
    pub version: u64,
    /// When it was created, by the store's clock.
    pub created_at: DateTime<Utc>,
    /// When it was last saved, by the store's clock.
    pub updated_at: DateTime<Utc>,
}

/// What [`Store::list_unfinished`](super::Store::list_unfinished) read, or
/// [`Store::claim_orphans`](super::Store::claim_orphans) took: every unfinished deployment
/// whose row it could read, and an error for each one it could not, so that one unreadable
/// row does not keep the others from resuming.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Unfinished {
    /// The deployments read, oldest first.
    pub deployments: Vec<StoredDeployment>,
    /// A [`StoreError::Corrupt`] naming the deployment of each row that could not be read.
    pub unreadable: Vec<StoreError>,
}

impl Unfinished {
    /// Splits the results of reading each unfinished row, in order, into the deployments read
    /// and the rows set aside as [`StoreError::Corrupt`]; any other error (the database
    /// failed) is returned, since the rows after it were not read.
    pub fn from_rows(
        rows: impl IntoIterator<Item = Result<StoredDeployment, StoreError>>,
    ) -> Result<Self, StoreError> {
        let mut listed = Self::default();
        for row in rows {
            match row {
                Ok(deployment) => listed.deployments.push(deployment),
                Err(e @ StoreError::Corrupt { .. }) => listed.unreadable.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok(listed)
    }
}

impl From<Vec<StoredDeployment>> for Unfinished {
    /// Deployments all read, for a store whose rows are always readable.
    fn from(deployments: Vec<StoredDeployment>) -> Self {
        Self {
            deployments,
            unreadable: Vec::new(),
        }
    }
}

/// One event of a deployment's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// Its position in the deployment's history: 1, 2, 3, ... in the order appended.
    pub seq: u64,
    /// The version written together with it: 1 for `create`'s events, and so on.
    pub version: u64,
    /// The event.
    pub event: Event,
}
