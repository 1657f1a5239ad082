//! The [`Store`] implementation: every statement, each naming the store's schema.
//!
//! `create` and `save` are transactions of a few statements; every other operation is one
//! statement, so it is atomic on its own.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgConnection;

use super::rows::{self, DEPLOYMENT_COLUMNS};
use super::{PostgresStore, backend};
use crate::core::{CallbackId, DeploymentId, DeploymentState, DeploymentStatus, Event};
use crate::store::{
    ChangeWatcher, HistoryEntry, Lease, NewDeployment, Store, StoreError, StoredDeployment,
    Unfinished, codec,
};

/// A notice's payload is limited to 8000 bytes; a longer one would fail the write it belongs
/// to, so it is left out (notices are hints that may be lost).
const MAX_NOTICE: i32 = 8000;

/// Every statement, with the schema written in once when the store is built. sqlx prepares
/// each one per connection and keeps it in its statement cache.
pub(super) struct Statements {
    lock_application: String,
    /// What the key of an application's lock is made from, with the application's name
    /// after it: the schema's name is in it, so stores in other schemas are not held up.
    application_lock_prefix: String,
    insert_deployment: String,
    insert_callbacks: String,
    append: String,
    save: String,
    version_of: String,
    load: String,
    find_by_callback: String,
    list_unfinished: String,
    running: String,
    stored_or_running: String,
    history: String,
    claim: String,
    renew: String,
    claim_orphans: String,
    release: String,
    register_replica: String,
    registered_replica: String,
    lock_registered_replica: String,
}

impl Statements {
    /// The statements for the schema `s`, a quoted identifier.
    pub(super) fn new(s: &str) -> Self {
        let cols = DEPLOYMENT_COLUMNS;
        Self {
            // Held to the end of the transaction: an exclusive create of the same application
            // waits here, then finds this one's row when it looks for a running deployment,
            // since at read committed each statement sees what committed before it began.
            lock_application: "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))".to_owned(),
            application_lock_prefix: format!("hookgate {s} application "),
            insert_deployment: format!(
                "INSERT INTO {s}.deployments (id, application, plan_source, state, status,
                     finished, version, created_at, updated_at, lease_owner, lease_until)
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7, $8, $9)
                 ON CONFLICT (id) DO NOTHING"
            ),
            // A callback id already indexed (or listed twice) is skipped, and missing from
            // what is returned.
            insert_callbacks: format!(
                "INSERT INTO {s}.callbacks (callback_id, deployment_id)
                 SELECT c, $2 FROM unnest($1::text[]) AS c
                 ON CONFLICT (callback_id) DO NOTHING
                 RETURNING callback_id"
            ),
            // Numbers the events after the deployment's last one, which is safe because the
            // caller holds the deployment's row lock; then queues the change notice, which
            // PostgreSQL delivers at commit.
            append: format!(
                "WITH appended AS (
                     INSERT INTO {s}.events (deployment_id, seq, version, event)
                     SELECT $1, last.seq + e.ord, $2, e.event
                     FROM (SELECT COALESCE(MAX(seq), 0) AS seq
                           FROM {s}.events WHERE deployment_id = $1) AS last,
                          unnest($3::text[]) WITH ORDINALITY AS e (event, ord)
                 )
                 SELECT pg_notify($4, $5) WHERE octet_length($5) < {MAX_NOTICE}"
            ),
            // One statement, so one round trip and its own transaction: the guarded update, the
            // events numbered after the deployment's last one, and the change notice. A
            // concurrent save of the same deployment waits on the row lock and then finds the
            // version changed, so it updates, appends and notifies nothing; the winner's
            // `MAX(seq)` therefore never misses events.
            save: format!(
                "WITH updated AS (
                     UPDATE {s}.deployments
                     SET state = $3, status = $4, finished = $5, version = version + 1,
                         updated_at = $6,
                         lease_owner = CASE WHEN $5 THEN NULL ELSE lease_owner END,
                         lease_until = CASE WHEN $5 THEN NULL ELSE lease_until END
                     WHERE id = $1 AND version = $2
                     RETURNING version
                 ),
                 appended AS (
                     INSERT INTO {s}.events (deployment_id, seq, version, event)
                     SELECT $1, last.seq + e.ord, u.version, e.event
                     FROM updated AS u,
                          (SELECT COALESCE(MAX(seq), 0) AS seq
                           FROM {s}.events WHERE deployment_id = $1) AS last,
                          unnest($7::text[]) WITH ORDINALITY AS e (event, ord)
                 ),
                 -- A plain SELECT in a WITH runs only when read, hence the count below.
                 notified AS (
                     SELECT pg_notify($8, u.version || ' ' || $1)
                     FROM updated AS u
                     WHERE octet_length($1) < {MAX_NOTICE} - 24
                 )
                 SELECT u.version, (SELECT count(*) FROM notified) AS notices
                 FROM updated AS u"
            ),
            version_of: format!("SELECT version FROM {s}.deployments WHERE id = $1"),
            load: format!("SELECT {cols} FROM {s}.deployments WHERE id = $1"),
            find_by_callback: format!(
                "SELECT deployment_id FROM {s}.callbacks WHERE callback_id = $1"
            ),
            list_unfinished: format!(
                "SELECT {cols} FROM {s}.deployments WHERE NOT finished ORDER BY created_at, id"
            ),
            running: format!(
                "SELECT id FROM {s}.deployments WHERE application = $1 AND status = $2
                 ORDER BY created_at, id"
            ),
            // For an exclusive create: its own id if it is stored already (a create repeated
            // after its answer was lost), or else the oldest running one of its application.
            stored_or_running: format!(
                "SELECT id FROM {s}.deployments
                 WHERE id = $3 OR (application = $1 AND status = $2)
                 ORDER BY id = $3 DESC, created_at, id LIMIT 1"
            ),
            history: format!(
                "SELECT seq, version, event FROM {s}.events WHERE deployment_id = $1 ORDER BY seq"
            ),
            // The second EXISTS reads the snapshot from before the update, where the row is
            // either way, so it tells "not claimable" from "unknown" in the same round trip.
            claim: format!(
                "WITH taken AS (
                     UPDATE {s}.deployments SET lease_owner = $2, lease_until = $3
                     WHERE id = $1 AND NOT finished
                       AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $4)
                     RETURNING 1
                 )
                 SELECT EXISTS (SELECT 1 FROM taken),
                        EXISTS (SELECT 1 FROM {s}.deployments WHERE id = $1)"
            ),
            renew: format!(
                "WITH renewed AS (
                     UPDATE {s}.deployments SET lease_until = $2
                     WHERE lease_owner = $1 AND NOT finished
                     RETURNING id, version
                 )
                 SELECT id, version FROM renewed ORDER BY id"
            ),
            // SKIP LOCKED: a deployment another caller is taking at this moment is left to
            // it, so concurrent callers never take the same one and never wait on each other.
            claim_orphans: format!(
                "WITH taken AS (
                     UPDATE {s}.deployments SET lease_owner = $1, lease_until = $2
                     WHERE id IN (
                         SELECT id FROM {s}.deployments
                         WHERE NOT finished
                           AND (lease_owner IS NULL
                                OR (lease_owner <> $1 AND lease_until < $3))
                         ORDER BY created_at, id
                         LIMIT $4
                         FOR UPDATE SKIP LOCKED
                     )
                     RETURNING {cols}
                 )
                 SELECT {cols} FROM taken ORDER BY created_at, id"
            ),
            release: format!(
                "UPDATE {s}.deployments SET lease_owner = NULL, lease_until = NULL
                 WHERE lease_owner = $1"
            ),
            register_replica: format!(
                "INSERT INTO {s}.replicas (owner, run, registered_at) VALUES ($1, $2, $3)
                 ON CONFLICT (owner) DO UPDATE SET run = $2, registered_at = $3"
            ),
            registered_replica: format!("SELECT run FROM {s}.replicas WHERE owner = $1"),
            lock_registered_replica: format!(
                "SELECT run FROM {s}.replicas WHERE owner = $1 FOR UPDATE"
            ),
        }
    }
}

impl PostgresStore {
    /// A transaction at the isolation level the guarantees rest on, whatever the session's
    /// default.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.inner
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(backend)
    }

    /// Appends `events` to deployment `id` as written with `version`, and queues the notice
    /// of that version.
    async fn append(
        &self,
        conn: &mut PgConnection,
        id: &DeploymentId,
        version: i64,
        events: Vec<String>,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.inner.sql.append)
            .bind(&id.0)
            .bind(version)
            .bind(events)
            .bind(self.inner.notices.channel())
            .bind(format!("{version} {id}"))
            .execute(conn)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// The first callback id of `wanted` that was not indexed for the new deployment: taken by
/// another one, or listed twice.
fn first_taken(wanted: &[CallbackId], indexed: &HashSet<String>) -> Option<CallbackId> {
    let mut seen = HashSet::new();
    wanted
        .iter()
        .find(|c| !seen.insert(**c) || !indexed.contains(&c.to_string()))
        .copied()
}

#[async_trait]
impl Store for PostgresStore {
    async fn create(&self, new: NewDeployment, events: &[Event]) -> Result<u64, StoreError> {
        codec::storable_new(&new)?;
        let state = codec::encode_state(&new.id, &new.state)?;
        let events = codec::encode_events(&new.id, events)?;
        let now = self.inner.clock.now();
        let (lease_owner, lease_until) = match new.lease {
            Some(lease) => (Some(lease.owner), Some(lease.until)),
            None => (None, None),
        };
        let sql = &self.inner.sql;
        let mut tx = self.begin().await?;
        if new.exclusive {
            sqlx::query(&sql.lock_application)
                .bind(format!(
                    "{}{}",
                    sql.application_lock_prefix, new.application
                ))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            let found: Option<String> = sqlx::query_scalar(&sql.stored_or_running)
                .bind(&new.application)
                .bind(DeploymentStatus::Running.as_str())
                .bind(&new.id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
            if let Some(refusal) = codec::exclusive_refusal(&new.id, &new.application, found) {
                return Err(refusal);
            }
        }
        let inserted = sqlx::query(&sql.insert_deployment)
            .bind(&new.id.0)
            .bind(&new.application)
            .bind(&new.plan_source)
            .bind(state)
            .bind(new.status.as_str())
            .bind(new.status.is_terminal())
            .bind(now)
            .bind(lease_owner)
            .bind(lease_until)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // Dropping `tx` on the way out rolls back whatever this create wrote.
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists { id: new.id });
        }
        if !new.callback_ids.is_empty() {
            let callbacks: Vec<String> = new.callback_ids.iter().map(ToString::to_string).collect();
            let indexed: Vec<String> = sqlx::query_scalar(&sql.insert_callbacks)
                .bind(callbacks)
                .bind(&new.id.0)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
            if let Some(callback) = first_taken(&new.callback_ids, &indexed.into_iter().collect()) {
                return Err(StoreError::CallbackTaken { callback });
            }
        }
        self.append(&mut tx, &new.id, 1, events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(1)
    }

    async fn save(
        &self,
        id: &DeploymentId,
        expected_version: u64,
        state: &Arc<DeploymentState>,
        status: DeploymentStatus,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        // No row has it, and the server would refuse it as a parameter: a failure the caller
        // would take for one that may have been stored.
        if codec::unstorable_key(&id.0) {
            return Err(StoreError::NotFound { id: id.clone() });
        }
        let state = codec::encode_state(id, state)?;
        let events = codec::encode_events(id, events)?;
        let now = self.inner.clock.now();
        // No stored version exceeds i64::MAX, so a larger expected version is stale: -1
        // matches no row, and the conflict reports the stored version.
        let expected = i64::try_from(expected_version).unwrap_or(-1);
        let sql = &self.inner.sql;
        let updated: Option<i64> = sqlx::query_scalar(&sql.save)
            .bind(&id.0)
            .bind(expected)
            .bind(state)
            .bind(status.as_str())
            .bind(status.is_terminal())
            .bind(now)
            .bind(events)
            .bind(self.inner.notices.channel())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| save_error(id, e))?;
        if let Some(version) = updated {
            return codec::version(id, version);
        }
        let actual: Option<i64> = sqlx::query_scalar(&sql.version_of)
            .bind(&id.0)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(backend)?;
        Err(match actual {
            None => StoreError::NotFound { id: id.clone() },
            Some(actual) => StoreError::Conflict {
                id: id.clone(),
                expected: expected_version,
                actual: codec::version(id, actual)?,
            },
        })
    }

    async fn load(&self, id: &DeploymentId) -> Result<Option<StoredDeployment>, StoreError> {
        if codec::unstorable_key(&id.0) {
            return Ok(None);
        }
        let row = sqlx::query(&self.inner.sql.load)
            .bind(&id.0)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(rows::deployment).transpose()
    }

    async fn find_by_callback(
        &self,
        callback: CallbackId,
    ) -> Result<Option<DeploymentId>, StoreError> {
        let owner: Option<String> = sqlx::query_scalar(&self.inner.sql.find_by_callback)
            .bind(callback.to_string())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(backend)?;
        Ok(owner.map(DeploymentId))
    }

    async fn list_unfinished(&self) -> Result<Unfinished, StoreError> {
        sqlx::query(&self.inner.sql.list_unfinished)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(backend)
            .and_then(|rows| Unfinished::from_rows(rows.iter().map(rows::deployment)))
    }

    async fn running_for_application(
        &self,
        application: &str,
    ) -> Result<Vec<DeploymentId>, StoreError> {
        // No stored application has one, and the server would refuse it as a parameter, as if
        // the database were failing.
        if codec::unstorable(application) {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = sqlx::query_scalar(&self.inner.sql.running)
            .bind(application)
            .bind(DeploymentStatus::Running.as_str())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(backend)?;
        Ok(ids.into_iter().map(DeploymentId).collect())
    }

    async fn history(&self, id: &DeploymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        if codec::unstorable_key(&id.0) {
            return Ok(Vec::new());
        }
        sqlx::query(&self.inner.sql.history)
            .bind(&id.0)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|row| rows::history_entry(id, row))
            .collect()
    }

    async fn claim(&self, id: &DeploymentId, lease: &Lease) -> Result<bool, StoreError> {
        if codec::unstorable_key(&id.0) {
            return Err(StoreError::NotFound { id: id.clone() });
        }
        codec::storable_key("lease owner", &lease.owner)?;
        let (taken, known): (bool, bool) = sqlx::query_as(&self.inner.sql.claim)
            .bind(&id.0)
            .bind(&lease.owner)
            .bind(lease.until)
            .bind(lease.now)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(backend)?;
        if known {
            Ok(taken)
        } else {
            Err(StoreError::NotFound { id: id.clone() })
        }
    }

    async fn renew(&self, lease: &Lease) -> Result<Vec<(DeploymentId, u64)>, StoreError> {
        codec::storable_key("lease owner", &lease.owner)?;
        let held: Vec<(String, i64)> = sqlx::query_as(&self.inner.sql.renew)
            .bind(&lease.owner)
            .bind(lease.until)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(backend)?;
        held.into_iter()
            .map(|(id, version)| {
                let id = DeploymentId(id);
                let version = codec::version(&id, version)?;
                Ok((id, version))
            })
            .collect()
    }

    async fn claim_orphans(&self, lease: &Lease, limit: usize) -> Result<Unfinished, StoreError> {
        codec::storable_key("lease owner", &lease.owner)?;
        let taken = sqlx::query(&self.inner.sql.claim_orphans)
            .bind(&lease.owner)
            .bind(lease.until)
            .bind(lease.now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(backend)?;
        Unfinished::from_rows(taken.iter().map(rows::deployment))
    }

    async fn release(&self, owner: &str) -> Result<usize, StoreError> {
        codec::storable_key("lease owner", owner)?;
        let released = sqlx::query(&self.inner.sql.release)
            .bind(owner)
            .execute(&self.inner.pool)
            .await
            .map_err(backend)?;
        // Never more rows than fit in memory's address space, let alone in a table.
        Ok(usize::try_from(released.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn release_run(&self, owner: &str, run: &str) -> Result<Option<usize>, StoreError> {
        codec::storable_key("lease owner", owner)?;
        codec::storable_key("replica run", run)?;
        let mut tx = self.begin().await?;
        // The row stays locked to the commit: a run recording itself (an upsert of the same
        // row) waits for the release, or, committed first, is what the lock reads.
        let recorded: Option<String> = sqlx::query_scalar(&self.inner.sql.lock_registered_replica)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if recorded.is_some_and(|recorded| recorded != run) {
            return Ok(None);
        }
        let released = sqlx::query(&self.inner.sql.release)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(
            usize::try_from(released.rows_affected()).unwrap_or(usize::MAX),
        ))
    }

    async fn watch(&self, watcher: ChangeWatcher) -> Result<(), StoreError> {
        self.inner.notices.watch(&self.inner.pool, watcher).await
    }

    async fn register_replica(&self, owner: &str, run: &str) -> Result<(), StoreError> {
        codec::storable_key("lease owner", owner)?;
        codec::storable_key("replica run", run)?;
        sqlx::query(&self.inner.sql.register_replica)
            .bind(owner)
            .bind(run)
            .bind(self.inner.clock.now())
            .execute(&self.inner.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn registered_replica(&self, owner: &str) -> Result<Option<String>, StoreError> {
        codec::storable_key("lease owner", owner)?;
        sqlx::query_scalar(&self.inner.sql.registered_replica)
            .bind(owner)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(backend)
    }
}

/// A failed guarded `UPDATE`: the only value it computes is `version + 1`, so an
/// out-of-range number means a version tampered up to `i64::MAX`.
fn save_error(id: &DeploymentId, e: sqlx::Error) -> StoreError {
    let out_of_range = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "22003");
    if out_of_range {
        StoreError::Corrupt {
            id: id.clone(),
            what: "version",
            source: Box::new(e),
        }
    } else {
        backend(e)
    }
}
