//! The [`Store`] implementation. Every write runs in a `BEGIN IMMEDIATE` transaction: it takes
//! SQLite's write lock up front (waiting for it under the busy timeout) instead of upgrading a
//! read snapshot, which in WAL mode fails without waiting when another write got in first.

use async_trait::async_trait;
use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::rows;
use super::{SqliteStore, backend, timestamp};
use crate::core::{CallbackId, DeploymentId, DeploymentState, DeploymentStatus, Event};
use crate::store::{HistoryEntry, NewDeployment, Store, StoreError, StoredDeployment, codec};

/// A query of whole deployments: the columns [`rows::deployment`] reads, then `$rest`.
macro_rules! select_deployments {
    ($rest:literal) => {
        concat!(
            "SELECT id, application, plan_source, state, status, version, created_at, updated_at
             FROM deployments ",
            $rest
        )
    };
}

impl SqliteStore {
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }
}

/// Appends events after the deployment's last one. Callers hold the write lock, so no other
/// writer can take the same sequence numbers.
async fn append(
    conn: &mut SqliteConnection,
    id: &DeploymentId,
    version: i64,
    events: Vec<String>,
) -> Result<(), StoreError> {
    let last: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events WHERE deployment_id = ?")
            .bind(&id.0)
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?;
    for (seq, event) in (last + 1..).zip(events) {
        sqlx::query("INSERT INTO events (deployment_id, seq, version, event) VALUES (?, ?, ?, ?)")
            .bind(&id.0)
            .bind(seq)
            .bind(version)
            .bind(event)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, new: NewDeployment, events: &[Event]) -> Result<u64, StoreError> {
        let state = codec::encode_state(&new.id, &new.state)?;
        let events = codec::encode_events(&new.id, events)?;
        let now = timestamp(self.clock.now());
        // An early return drops `tx`, which rolls everything back.
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO deployments
                (id, application, plan_source, state, status, finished, version, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&new.id.0)
        .bind(&new.application)
        .bind(&new.plan_source)
        .bind(state)
        .bind(new.status.as_str())
        .bind(new.status.is_terminal())
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists { id: new.id });
        }
        for callback in new.callback_ids {
            let indexed = sqlx::query(
                "INSERT INTO callbacks (callback_id, deployment_id) VALUES (?, ?)
                 ON CONFLICT (callback_id) DO NOTHING",
            )
            .bind(callback.to_string())
            .bind(&new.id.0)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if indexed.rows_affected() == 0 {
                return Err(StoreError::CallbackTaken { callback });
            }
        }
        append(&mut tx, &new.id, 1, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(1)
    }

    async fn save(
        &self,
        id: &DeploymentId,
        expected_version: u64,
        state: &DeploymentState,
        status: DeploymentStatus,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        let state = codec::encode_state(id, state)?;
        let events = codec::encode_events(id, events)?;
        let now = timestamp(self.clock.now());
        // No stored version exceeds i64::MAX, so a larger expected version is stale: -1 matches
        // no row, and the conflict is reported below with the stored version.
        let expected = i64::try_from(expected_version).unwrap_or(-1);
        let next = rows::next_version(id, expected)?;
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE deployments
             SET state = ?, status = ?, finished = ?, version = ?, updated_at = ?
             WHERE id = ? AND version = ?",
        )
        .bind(state)
        .bind(status.as_str())
        .bind(status.is_terminal())
        .bind(next)
        .bind(now)
        .bind(&id.0)
        .bind(expected)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if updated.rows_affected() == 0 {
            let actual: Option<i64> =
                sqlx::query_scalar("SELECT version FROM deployments WHERE id = ?")
                    .bind(&id.0)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
            return Err(match actual {
                None => StoreError::NotFound { id: id.clone() },
                Some(actual) => StoreError::Conflict {
                    id: id.clone(),
                    expected: expected_version,
                    actual: rows::version(id, actual)?,
                },
            });
        }
        append(&mut tx, id, next, events).await?;
        tx.commit().await.map_err(backend)?;
        rows::version(id, next)
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

    async fn list_unfinished(&self) -> Result<Vec<StoredDeployment>, StoreError> {
        sqlx::query(select_deployments!(
            "WHERE finished = 0 ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(rows::deployment)
        .collect()
    }

    async fn running_for_application(
        &self,
        application: &str,
    ) -> Result<Vec<DeploymentId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM deployments WHERE application = ? AND status = ?
             ORDER BY created_at, id",
        )
        .bind(application)
        .bind(DeploymentStatus::Running.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(ids.into_iter().map(DeploymentId).collect())
    }

    async fn history(&self, id: &DeploymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        sqlx::query("SELECT seq, version, event FROM events WHERE deployment_id = ? ORDER BY seq")
            .bind(&id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|row| rows::history_entry(id, row))
            .collect()
    }
}
