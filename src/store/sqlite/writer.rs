//! The group-commit writer: one task, one connection, one transaction per batch.
//!
//! [`SqliteStore::create`](super::SqliteStore) and `save` encode their input, send it here as
//! a [`Write`] and wait for the answer. The task takes every write queued at that moment (up to
//! [`MAX_BATCH`]) and runs them in one `BEGIN IMMEDIATE` ... `COMMIT`, in the order they were
//! queued, each with its own checks: a stale version or a taken id fails that write alone and
//! writes nothing of it, while the others of the batch go on. Consecutive saves share their
//! statements ([`layers`]); a create runs on its own, between the saves queued before and after
//! it. Only once `COMMIT` has returned does it answer the batch, so an acknowledged write is
//! exactly as durable as one committed on its own; a batch that fails to commit answers every
//! write of it with the error, and none of them was written. A batch of saves that fits one
//! [`layers::Whole`] command carries its `BEGIN IMMEDIATE` and `COMMIT` in that command, so
//! its failure to commit is a shared statement's, below. While one batch commits, the next one
//! queues up.
//!
//! When a shared statement fails (disk full, I/O error), it cannot say which save it failed
//! for, so the transaction is rolled back and the batch runs again one write at a time, where a
//! failure is that write's alone.
//!
//! The writer's `COMMIT` does not checkpoint the write-ahead log; [`checkpoint`] does, beside it.

mod checkpoint;
mod chunks;
mod layers;

pub(super) use chunks::EventList;

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::core::{CallbackId, DeploymentId, DeploymentStatus};
use crate::store::{StoreError, codec};

/// The most writes one transaction carries.
pub(super) const MAX_BATCH: usize = 256;
/// How many writes may wait for the writer before senders wait too.
pub(super) const QUEUE: usize = 4 * MAX_BATCH;

/// A `create`, already encoded.
pub(super) struct Create {
    pub id: DeploymentId,
    pub application: String,
    pub plan_source: String,
    pub state: String,
    pub status: &'static str,
    pub finished: bool,
    pub callback_ids: Vec<CallbackId>,
    /// The events, if any.
    pub events: Option<EventList>,
    pub now: String,
    /// Refused if another deployment of the application is running.
    pub exclusive: bool,
}

/// A `save`, already encoded.
pub(super) struct Save {
    pub id: DeploymentId,
    pub expected_version: u64,
    /// `expected_version` as stored, or -1 (which matches no row) when it exceeds `i64::MAX`.
    pub expected: i64,
    pub next: i64,
    pub state: String,
    pub status: &'static str,
    pub finished: bool,
    /// As for [`Create::events`].
    pub events: Option<EventList>,
    pub now: String,
}

pub(super) type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// What the writer task is asked to do.
pub(super) enum Write {
    Create(Box<Create>, Reply),
    Save(Box<Save>, Reply),
    /// Finish the writes queued before, close the connection, stop, then answer.
    Close(oneshot::Sender<()>),
}

/// A batch's failure, shared by every write of it.
#[derive(Debug, Clone)]
struct Shared(Arc<sqlx::Error>);

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Shared {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

fn shared_backend(e: &Shared) -> StoreError {
    StoreError::Backend {
        source: Box::new(e.clone()),
    }
}

/// What one write came to inside the batch's transaction.
enum Outcome {
    /// Written (or refused without writing anything): answer this once the batch commits.
    Done(Result<u64, StoreError>),
    /// The database failed part-way through; the transaction must be rolled back.
    Failed(sqlx::Error),
}

/// The writer task's state: its connection, opened again after a failure that may have left
/// it unusable.
pub(super) struct Writer {
    connect: SqliteConnectOptions,
    conn: Option<SqliteConnection>,
    checkpoints: checkpoint::Checkpoints,
}

impl Writer {
    /// The options the writer's connection is opened with: `connect`'s, without automatic
    /// checkpoints, which [`checkpoint`] runs instead.
    pub(super) fn options(connect: SqliteConnectOptions) -> SqliteConnectOptions {
        connect.pragma("wal_autocheckpoint", "0")
    }

    /// A writer on `conn`, opened with [`Writer::options`] (as are those it opens again);
    /// `pool` runs its checkpoints.
    pub(super) fn new(
        connect: SqliteConnectOptions,
        conn: SqliteConnection,
        pool: SqlitePool,
    ) -> Self {
        Self {
            connect,
            conn: Some(conn),
            checkpoints: checkpoint::Checkpoints::spawn(pool),
        }
    }

    /// Runs until every sender is dropped or [`Write::Close`] arrives.
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<Write>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
                break;
            }
            let close = batch.iter().position(|w| matches!(w, Write::Close(_)));
            let rest = close.map(|at| batch.split_off(at));
            let mut items: Vec<(Write, Option<Result<u64, StoreError>>)> =
                batch.drain(..).map(|w| (w, None)).collect();
            if !items.is_empty() {
                tracing::debug!(writes = items.len(), "SQLite writer batch");
                self.batch(&mut items).await;
            }
            for (write, result) in items {
                let result = result.unwrap_or_else(|| Err(closed()));
                match write {
                    Write::Create(_, reply) | Write::Save(_, reply) => {
                        // A caller that stopped waiting no longer wants the answer.
                        let _ = reply.send(result);
                    }
                    Write::Close(_) => {}
                }
            }
            if let Some(rest) = rest {
                queue.close();
                if let Some(conn) = self.conn.take() {
                    let _ = conn.close().await;
                }
                self.checkpoints.stop().await;
                let mut acks = Vec::new();
                let later = rest
                    .into_iter()
                    .chain(std::iter::from_fn(|| queue.try_recv().ok()));
                for write in later {
                    match write {
                        Write::Create(_, reply) | Write::Save(_, reply) => {
                            let _ = reply.send(Err(closed()));
                        }
                        Write::Close(ack) => acks.push(ack),
                    }
                }
                for ack in acks {
                    let _ = ack.send(());
                }
                return;
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// Runs `items` in one transaction and fills in each result. The first attempt shares
    /// statements between saves; if one of those fails, the transaction is rolled back and the
    /// batch runs again one write at a time. A write during which the database failed gets that
    /// error; the transaction is then rolled back and the others run again in a new one, so one
    /// write's failure is never another's.
    async fn batch(&mut self, items: &mut [(Write, Option<Result<u64, StoreError>>)]) {
        let mut grouped = true;
        loop {
            let conn = match self.connection().await {
                Ok(conn) => conn,
                Err(e) => return fail_pending(items, &Shared(Arc::new(e))),
            };
            if grouped && let Some(whole) = layers::Whole::of(items) {
                match whole.run(conn).await {
                    Ok(done) => return self.committed(items, done).await,
                    // The write lock stayed taken for the whole busy timeout: another try at once
                    // would wait as long again before failing the same way.
                    Err(e) if is_busy(&e) => {
                        self.rollback().await;
                        return fail_pending(items, &Shared(Arc::new(e)));
                    }
                    Err(e) => {
                        self.rollback().await;
                        tracing::debug!(error = %e, "a batch in one command failed; running it one write at a time");
                        grouped = false;
                        continue;
                    }
                }
            }
            if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
                self.rollback().await;
                return fail_pending(items, &Shared(Arc::new(e)));
            }
            let run = if grouped {
                layers::run(conn, items).await.map_err(|e| (None, e))
            } else {
                one_by_one(conn, items)
                    .await
                    .map_err(|(at, e)| (Some(at), e))
            };
            let done = match run {
                Ok(done) => done,
                Err((Some(at), e)) => {
                    self.rollback().await;
                    items[at].1 = Some(Err(super::backend(e)));
                    continue;
                }
                Err((None, e)) => {
                    self.rollback().await;
                    tracing::debug!(error = %e, "grouped writes failed; running them one by one");
                    grouped = false;
                    continue;
                }
            };
            if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
                self.rollback().await;
                return fail_pending(items, &Shared(Arc::new(e)));
            }
            return self.committed(items, done).await;
        }
    }

    /// Records the answers of a batch just committed, after a checkpoint if one is due.
    async fn committed(
        &mut self,
        items: &mut [(Write, Option<Result<u64, StoreError>>)],
        done: Answers,
    ) {
        if self.checkpoints.committed(done.len())
            && let Some(conn) = self.conn.as_mut()
        {
            let log: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut *conn)
                .await;
            match log {
                // All of the log copied: the next write starts it over.
                Ok((0, pages, copied)) if copied >= pages => {}
                // Blocked by the checkpoint task's own, or by readers still using part of the
                // log: tried again after the next commit, or the log would grow until the task
                // next finds it too long. The batch is committed whatever this says.
                Ok(_) => self.checkpoints.still_overdue(),
                Err(e) => {
                    tracing::debug!(error = %e, "SQLite checkpoint failed");
                    self.checkpoints.still_overdue();
                }
            }
        }
        for (at, result) in done {
            items[at].1 = Some(result);
        }
    }

    async fn connection(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        if self.conn.is_none() {
            self.conn = Some(self.connect.connect().await?);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Ends whatever transaction is open. If `ROLLBACK` fails (SQLite has already rolled back
    /// after a failed `OR ROLLBACK` statement, and may have after a disk-full or I/O error),
    /// the connection is dropped, which rolls back anything left, and the next batch opens a
    /// new one.
    async fn rollback(&mut self) {
        if let Some(conn) = self.conn.as_mut()
            && sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err()
        {
            self.conn = None;
        }
    }
}

/// Whether `e` is SQLite's `SQLITE_BUSY` (any of its extended codes): the database stayed
/// locked for the whole busy timeout, or, for a lock SQLite does not wait for (switching a new
/// file to WAL), was locked at all.
pub(super) fn is_busy(e: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    e.as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// The answers of one attempt at a batch, by position, to be given once it commits.
type Answers = Vec<(usize, Result<u64, StoreError>)>;

/// Runs the writes not yet answered one at a time; on a database failure, says which write met
/// it.
async fn one_by_one(
    conn: &mut SqliteConnection,
    items: &[(Write, Option<Result<u64, StoreError>>)],
) -> Result<Answers, (usize, sqlx::Error)> {
    let mut done = Vec::with_capacity(items.len());
    for (at, (write, result)) in items.iter().enumerate() {
        if result.is_some() {
            continue;
        }
        let outcome = match write {
            Write::Create(create, _) => create_one(conn, create).await,
            Write::Save(save, _) => layers::save_one(conn, save).await,
            Write::Close(_) => continue,
        };
        match outcome {
            Outcome::Done(result) => done.push((at, result)),
            Outcome::Failed(e) => return Err((at, e)),
        }
    }
    Ok(done)
}

fn fail_pending(items: &mut [(Write, Option<Result<u64, StoreError>>)], e: &Shared) {
    for (_, result) in items.iter_mut().filter(|(_, r)| r.is_none()) {
        *result = Some(Err(shared_backend(e)));
    }
}

pub(super) fn closed() -> StoreError {
    StoreError::Closed { store: "SQLite" }
}

/// The writer stopped (its runtime shut down, or it panicked) with a write handed to it and
/// unanswered, which it may have committed.
pub(super) fn stopped() -> StoreError {
    StoreError::Backend {
        source: "the SQLite store's writer task stopped before answering; the write may have \
                 been stored"
            .into(),
    }
}

/// The answer to a save whose `UPDATE` went through: its new version.
fn written(save: &Save) -> Result<u64, StoreError> {
    codec::version(&save.id, save.next)
}

/// The answer to a save whose guarded `UPDATE` matched no row, given the version stored under
/// its id (`None`: no such deployment).
fn refused(save: &Save, actual: Option<i64>) -> Result<u64, StoreError> {
    let Some(actual) = actual else {
        return Err(StoreError::NotFound {
            id: save.id.clone(),
        });
    };
    Err(StoreError::Conflict {
        id: save.id.clone(),
        expected: save.expected_version,
        actual: codec::version(&save.id, actual)?,
    })
}

/// One `create`, inside a savepoint: a callback id found taken after the row was inserted
/// undoes this create alone.
async fn create_one(conn: &mut SqliteConnection, create: &Create) -> Outcome {
    if let Err(e) = sqlx::query("SAVEPOINT hookgate_create")
        .execute(&mut *conn)
        .await
    {
        return Outcome::Failed(e);
    }
    let refused = match create_steps(conn, create).await {
        Ok(None) => {
            return match sqlx::query("RELEASE hookgate_create")
                .execute(&mut *conn)
                .await
            {
                Ok(_) => Outcome::Done(Ok(1)),
                Err(e) => Outcome::Failed(e),
            };
        }
        Ok(Some(refused)) => refused,
        Err(e) => return Outcome::Failed(e),
    };
    for undo in ["ROLLBACK TO hookgate_create", "RELEASE hookgate_create"] {
        if let Err(e) = sqlx::query(undo).execute(&mut *conn).await {
            return Outcome::Failed(e);
        }
    }
    Outcome::Done(Err(refused))
}

/// The statements of a create; `Ok(Some(_))` is a refusal, to be undone by the caller.
async fn create_steps(
    conn: &mut SqliteConnection,
    create: &Create,
) -> Result<Option<StoreError>, sqlx::Error> {
    if create.exclusive {
        let found: Option<String> = sqlx::query_scalar(super::STORED_OR_RUNNING)
            .bind(&create.id.0)
            .bind(&create.application)
            .bind(DeploymentStatus::Running.as_str())
            .bind(&create.id.0)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(refusal) = codec::exclusive_refusal(&create.id, &create.application, found) {
            return Ok(Some(refusal));
        }
    }
    let inserted = sqlx::query(
        "INSERT INTO deployments
            (id, application, state, status, finished, version, created_at, updated_at, last_seq)
         VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&create.id.0)
    .bind(&create.application)
    .bind(&create.state)
    .bind(create.status)
    .bind(create.finished)
    .bind(&create.now)
    .bind(&create.now)
    .bind(EventList::count(create.events.as_ref()))
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(Some(StoreError::AlreadyExists {
            id: create.id.clone(),
        }));
    }
    sqlx::query("INSERT INTO plans (deployment_id, plan_source) VALUES (?, ?)")
        .bind(&create.id.0)
        .bind(&create.plan_source)
        .execute(&mut *conn)
        .await?;
    for callback in &create.callback_ids {
        let indexed = sqlx::query(
            "INSERT INTO callbacks (callback_id, deployment_id) VALUES (?, ?)
             ON CONFLICT (callback_id) DO NOTHING",
        )
        .bind(callback.to_string())
        .bind(&create.id.0)
        .execute(&mut *conn)
        .await?;
        if indexed.rows_affected() == 0 {
            return Ok(Some(StoreError::CallbackTaken {
                callback: *callback,
            }));
        }
    }
    append(conn, &create.id, 1, 1, create.events.as_ref()).await?;
    Ok(None)
}

/// Appends one write's events, numbered from `first_seq`.
async fn append(
    conn: &mut SqliteConnection,
    id: &DeploymentId,
    first_seq: i64,
    version: i64,
    events: Option<&EventList>,
) -> Result<(), sqlx::Error> {
    let Some(list) = events else {
        return Ok(());
    };
    chunks::append(
        conn,
        &[chunks::ListRow {
            id: &id.0,
            first_seq,
            version,
            list,
        }],
    )
    .await
}
