//! The [`Store`] implementation. Writes are encoded here and handed to the writer task
//! (`writer.rs`), which runs each batch in a `BEGIN IMMEDIATE` transaction: it takes SQLite's
//! write lock up front (waiting for it under the busy timeout) instead of upgrading a read
//! snapshot, which in WAL mode fails without waiting when another write got in first. Reads run
//! on the pool.

use std::sync::Arc;

use async_trait::async_trait;

use super::rows;
use super::writer::{Create, EventList, Save, Write};
use super::{SqliteStore, backend, timestamp};
use crate::core::{CallbackId, DeploymentId, DeploymentState, DeploymentStatus, Event};
use crate::store::{
    HistoryEntry, NewDeployment, Store, StoreError, StoredDeployment, Unfinished, codec,
};

/// A query of whole deployments: the columns [`rows::deployment`] reads, then `$rest`. A row
/// whose plan is missing (a hand edit, a partial restore) is read with none, and so reported
/// corrupt, rather than left out: it still counts as running for its application.
macro_rules! select_deployments {
    ($rest:literal) => {
        concat!(
            "SELECT id, application, plan_source, state, status, version, created_at, updated_at
             FROM deployments LEFT JOIN plans ON plans.deployment_id = deployments.id ",
            $rest
        )
    };
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, new: NewDeployment, events: &[Event]) -> Result<u64, StoreError> {
        if new.lease.is_some() {
            return Err(StoreError::Unsupported { what: "leases" });
        }
        codec::storable_new(&new)?;
        let create = Create {
            state: codec::encode_state(&new.id, &new.state)?,
            events: EventList::encode(&new.id, events)?,
            now: timestamp(self.clock.now()),
            status: new.status.as_str(),
            finished: new.status.is_terminal(),
            id: new.id,
            application: new.application,
            plan_source: new.plan_source,
            callback_ids: new.callback_ids,
            exclusive: new.exclusive,
        };
        self.write(|reply| Write::Create(Box::new(create), reply))
            .await
    }

    async fn save(
        &self,
        id: &DeploymentId,
        expected_version: u64,
        state: &Arc<DeploymentState>,
        status: DeploymentStatus,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        // No stored version exceeds i64::MAX, so a larger expected version is stale: -1 matches
        // no row, and the writer reports the conflict with the stored version.
        let expected = i64::try_from(expected_version).unwrap_or(-1);
        let Ok(next) = rows::next_version(id, expected) else {
            return self.unincrementable(id, expected_version).await;
        };
        let save = Save {
            state: codec::encode_state(id, state)?,
            events: EventList::encode(id, events)?,
            now: timestamp(self.clock.now()),
            next,
            id: id.clone(),
            expected_version,
            expected,
            status: status.as_str(),
            finished: status.is_terminal(),
        };
        self.write(|reply| Write::Save(Box::new(save), reply)).await
    }

    async fn load(&self, id: &DeploymentId) -> Result<Option<StoredDeployment>, StoreError> {
        let row = sqlx::query(select_deployments!("WHERE id = ?"))
            .bind(&id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::deployment).transpose()
    }

    async fn find_by_callback(
        &self,
        callback: CallbackId,
    ) -> Result<Option<DeploymentId>, StoreError> {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT deployment_id FROM callbacks WHERE callback_id = ?")
                .bind(callback.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(owner.map(DeploymentId))
    }

    async fn list_unfinished(&self) -> Result<Unfinished, StoreError> {
        sqlx::query(select_deployments!(
            "WHERE finished = 0 ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
        .and_then(|rows| Unfinished::from_rows(rows.iter().map(rows::deployment)))
    }

    async fn running_for_application(
        &self,
        application: &str,
    ) -> Result<Vec<DeploymentId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(super::RUNNING_OF_APPLICATION)
            .bind(application)
            .bind(DeploymentStatus::Running.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(ids.into_iter().map(DeploymentId).collect())
    }

    async fn history(&self, id: &DeploymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT first_seq, count, version, events FROM history
             WHERE deployment_id = ? ORDER BY first_seq",
        )
        .bind(&id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut history = Vec::new();
        for row in &rows {
            rows::history_entries(id, row, &mut history)?;
        }
        Ok(history)
    }
}

impl SqliteStore {
    /// The answer to a save expecting `i64::MAX`, the one version with no next: the stored
    /// version tells a stale expectation (a conflict, as the other stores answer it) from a row
    /// tampered up to it.
    async fn unincrementable(
        &self,
        id: &DeploymentId,
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let Some(stored) = self.load(id).await? else {
            return Err(StoreError::NotFound { id: id.clone() });
        };
        if stored.version != expected_version {
            return Err(StoreError::Conflict {
                id: id.clone(),
                expected: expected_version,
                actual: stored.version,
            });
        }
        Err(rows::cannot_increment(id, i64::MAX))
    }
}
