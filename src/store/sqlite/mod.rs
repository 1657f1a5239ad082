//! The SQLite store (feature `sqlite`). Durability is documented on the [`store`](super)
//! module; how writes are grouped into commits, on [`SqliteStore`].
//!
//! # Group commit
//!
//! Reads (`load`, `find_by_callback`, `list_unfinished`, `running_for_application`,
//! `history`) run on the connection pool, beside any write. Writes (`create`, `save`) all go
//! to one writer task, which owns its own connection: it takes every write queued at that
//! moment (at most [`writer::MAX_BATCH`]), runs them in queue order in one
//! `BEGIN IMMEDIATE` transaction, and answers each caller only after that transaction's
//! `COMMIT` returned. SQLite runs one write transaction at a time anyway, so instead of each
//! save waiting for the lock, committing and (with `synchronous=FULL`) syncing on its own, a
//! burst of concurrent saves shares one lock, one commit and one `fsync`.
//!
//! Each write keeps its own result. A `save` is checked by its guarded statements: when the
//! stored version is not the one it expects, it writes nothing, is answered `Conflict` (or
//! `NotFound`) and the batch goes on. A `create` runs inside a `SAVEPOINT`, rolled back on its
//! own when its id exists or a callback id is taken. Writes of one batch run in the order they
//! were queued, so two saves of one version in one batch behave as they would one after the
//! other: the first wins, the second conflicts; a save to version 3 queued after one to
//! version 2 is written too. If the database fails during one of the statements the saves
//! share (disk full, I/O error), the transaction is rolled back and the batch runs again one
//! write at a time. If it fails during one write then, the transaction is rolled back, that
//! write gets the error, and the others run again in a new transaction. If `BEGIN` or `COMMIT`
//! fails on its own, every write of the batch gets the error and none of them was written; in
//! a batch sent as one command (below) they are statements it shares, so it runs again one
//! write at a time.
//!
//! # Durability
//!
//! Unchanged by grouping: a write is acknowledged only after the `COMMIT` that made it durable
//! returned, under the same `synchronous` setting as before (see [`Durability`]). With
//! [`Durability::PowerLoss`] the commit's `fsync` covers the whole batch. Checkpoints, which
//! copy the write-ahead log into the database file, run beside the writer rather than inside
//! its `COMMIT` (the writer's connection has `wal_autocheckpoint=0`); in WAL mode a commit is
//! durable once its frames are in the log, so this changes no acknowledgement, and the log
//! stays bounded because the writer checkpoints itself when it grows too long. A write whose caller
//! stops waiting (its future dropped) after it was queued may still be committed, just as a
//! write dropped while its `COMMIT` ran could be.
//!
//! # Round trips
//!
//! sqlx runs each connection's SQLite calls on a worker thread of its own, so every command
//! sent to it costs a cross-thread hop whatever its work; the writer therefore spends a
//! constant number of commands on a batch's saves, not a few per save. sqlx runs a command of
//! several statements in one hop and stops at the first that fails. The saves queued between
//! two creates are cut into layers, each holding at most one save per deployment (a
//! deployment's second save of the batch goes to the second layer, and so on). A layer is one
//! command of four statements, each guarded by the same test on the rows as they stood before
//! it (the stored version is the expected one), so all four agree on which saves apply: a
//! `SELECT` naming the saves refused with their stored versions; an `INSERT` of the events of
//! the others, one row per save holding its events as a JSON array, numbered after its
//! deployment's last event (a column of its row); a `WITH s(...) AS (VALUES ...) UPDATE
//! deployments ... FROM s` of those that keep their deployment's status, which leaves the
//! status columns (and so their indexes) alone; and the same for the rest, setting the status
//! too. Rows are bound as plain parameters, in commands of 1, 4, 16, 64 or 256 rows (the last
//! one padded with rows that match nothing), so SQLite parses no JSON to write them. A batch
//! that is one such command (up to 256 saves of different deployments, no create) runs with
//! its `BEGIN IMMEDIATE` and `COMMIT` in the same command: one hop for the whole batch. A
//! `create` is still a few statements of its own, and run one at a time after a failure, a
//! save is a layer of one. The writer's connection lives as long as the store, so sqlx
//! prepares each of these few statement texts once and reuses it from its statement cache.

mod queries;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use crate::clock::{Clock, SystemClock};

/// The running deployments of an application (`?` then `running`), oldest first: what a
/// start asks for.
const RUNNING_OF_APPLICATION: &str =
    "SELECT id FROM deployments WHERE application = ? AND status = ? ORDER BY created_at, id";

/// What an exclusive create looks for in its own transaction (the new id, the application,
/// `running`, the new id again): its own id if it is stored already, as a create repeated
/// after its answer was lost finds, or else the oldest running deployment of its application.
const STORED_OR_RUNNING: &str = "SELECT id FROM deployments
     WHERE id = ? OR (application = ? AND status = ?)
     ORDER BY id = ? DESC, created_at, id LIMIT 1";

/// Which failure an acknowledged save survives; see the [`store`](super) module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=NORMAL`: survives the process being killed, not a power loss.
    #[default]
    ProcessCrash,
    /// `synchronous=FULL`: survives a power loss too, at one `fsync` per commit, which the
    /// saves batched into it share.
    PowerLoss,
}

/// How [`SqliteStore::open_with`] opens a file.
#[derive(Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Which failure an acknowledged save survives. Default: [`Durability::ProcessCrash`].
    pub durability: Durability,
    /// How long a write waits for another connection's write lock before failing with
    /// [`StoreError::Backend`]. Default: 5 seconds. At most
    /// [`SqliteOptions::MAX_BUSY_TIMEOUT`], SQLite's limit: a longer one (`Duration::MAX` for
    /// "wait for ever") waits that long.
    pub busy_timeout: Duration,
    /// The most connections the read pool opens; the writer task has one more of its own.
    /// SQLite runs one write at a time whatever this is; more connections let reads go on
    /// beside it. Default: 8. At least 1: 0 opens one.
    pub max_connections: u32,
    /// Stamps `created_at` and `updated_at`. Default: the system clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            busy_timeout: Duration::from_secs(5),
            max_connections: 8,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for SqliteOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteOptions")
            .field("durability", &self.durability)
            .field("busy_timeout", &self.busy_timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl SqliteOptions {
    /// The longest busy timeout SQLite takes: `i32::MAX` milliseconds, about 24.8 days.
    pub const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

    /// Sets the durability.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the busy timeout.
    #[must_use]
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets the pool size.
    #[must_use]
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// A [`Store`](super::Store) in one SQLite file.
///
/// Reads run on a connection pool. Concurrent `create` and `save` calls are grouped by one
/// writer task into a single transaction of up to 256 writes (group commit), each write still
/// checked on its own: a stale version is a [`StoreError::Conflict`] for that call only, and
/// the others of the batch are written. Every call is answered only after its batch's `COMMIT`
/// returned, so an acknowledged write is as durable as the [`Durability`] promises.
///
/// The writer task is spawned on the Tokio runtime that opens the store, and runs until the
/// store is closed or dropped; use the store on that runtime.
pub struct SqliteStore {
    pool: SqlitePool,
    writes: mpsc::Sender<writer::Write>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// What every connection to the database at `path` is opened with: the writer's adds its own
/// ([`writer::Writer::options`]).
fn connect_options(path: &Path, options: &SqliteOptions) -> SqliteConnectOptions {
    let synchronous = match options.durability {
        Durability::ProcessCrash => SqliteSynchronous::Normal,
        Durability::PowerLoss => SqliteSynchronous::Full,
    };
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(options.busy_timeout)
        .foreign_keys(true)
}

/// What SQLite opens for `path` when it names no file, each connection its own database (the
/// store's connections open file names as URIs too).
fn not_a_file(path: &Path) -> Option<&'static str> {
    let text = path.to_str()?;
    if text.is_empty() {
        return Some("an empty path is a temporary database");
    }
    if text == ":memory:" {
        return Some("an in-memory database");
    }
    let uri = text.strip_prefix("file:")?;
    let uri = uri.split_once('#').map_or(uri, |(uri, _)| uri);
    let (name, query) = uri.split_once('?').unwrap_or((uri, ""));
    // `file://host/path`: the authority is not part of the path.
    let name = match name.strip_prefix("//") {
        Some(rest) => rest.find('/').map_or("", |at| &rest[at..]),
        None => name,
    };
    // SQLite decodes escapes in both parts before reading them.
    let name = percent_encoding::percent_decode_str(name);
    if name.clone().next().is_none() {
        return Some("a URI with an empty path is a temporary database");
    }
    // The `memdb` VFS keeps the database in memory too: each connection's own under a name
    // not starting with `/`, or one shared in the process, and gone with it, under one that
    // does.
    let in_memory = name.eq(*b":memory:")
        || url::form_urlencoded::parse(query.as_bytes()).any(|(key, value)| {
            (key == "mode" && value == "memory") || (key == "vfs" && value == "memdb")
        });
    in_memory.then_some("an in-memory database")
}

/// The pool, once its first connection is open. That connection switches a new file to WAL,
/// which takes a lock SQLite does not wait for under the busy timeout: another store opening
/// the same new file at once holds it, and the switch fails at once as busy. It is tried again
/// until the busy timeout has passed, as every other lock is waited for.
async fn first_connection(
    path: &Path,
    connect: &SqliteConnectOptions,
    options: &SqliteOptions,
) -> Result<SqlitePool, StoreError> {
    const MAX_WAIT: Duration = Duration::from_millis(100);
    let deadline = tokio::time::Instant::now() + options.busy_timeout;
    let mut wait = Duration::from_millis(5);
    loop {
        let opened = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .connect_with(connect.clone())
            .await;
        match opened {
            Ok(pool) => return Ok(pool),
            Err(e) if writer::is_busy(&e) => {
                if tokio::time::Instant::now() >= deadline {
                    // Locked for the whole busy timeout: the database's state, not the path's.
                    return Err(StoreError::Backend {
                        source: Box::new(e),
                    });
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_WAIT);
            }
            Err(e) => {
                return Err(StoreError::Open {
                    path: path.to_owned(),
                    source: Box::new(e),
                });
            }
        }
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` with the default options, and
    /// applies any schema migration it lacks.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating it if missing) the database at `path`, and applies any schema migration
    /// it lacks. Opening a file another store has open, or is opening, is fine: a lock another
    /// connection holds is waited for up to [`SqliteOptions::busy_timeout`], and still held then
    /// is [`StoreError::Backend`].
    ///
    /// `path` may be a `file:` URI. One naming no file (`:memory:`, an in-memory URI, an empty
    /// path) is [`StoreError::NotAFile`]: SQLite would give each of the store's connections a
    /// database of its own.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let options = SqliteOptions {
            busy_timeout: options.busy_timeout.min(SqliteOptions::MAX_BUSY_TIMEOUT),
            max_connections: options.max_connections.max(1),
            ..options
        };
        if let Some(why) = not_a_file(path) {
            return Err(StoreError::NotAFile {
                path: path.to_owned(),
                why,
            });
        }
        let connect = connect_options(path, &options);
        let pool = first_connection(path, &connect, &options).await?;
        schema::migrate(&pool, path, options.clock.now()).await?;
        let connect = writer::Writer::options(connect);
        let conn = connect.connect().await.map_err(|e| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        let (writes, queue) = mpsc::channel(writer::QUEUE);
        tokio::spawn(writer::Writer::new(connect, conn, pool.clone()).run(queue));
        Ok(Self {
            pool,
            writes,
            clock: options.clock,
        })
    }

    /// Closes every connection, waiting for queries under way and for the writes already
    /// queued, which are committed and answered first; operations after it fail with
    /// [`StoreError::Closed`]. Saves already acknowledged are durable without it; closing
    /// checkpoints the write-ahead log into the main file, as far as it can without waiting
    /// for readers elsewhere (another process, a backup tool) to let go of older snapshots,
    /// which would hold it for up to the busy timeout. A caller that stops waiting (a
    /// timeout around shutdown) does not stop it half-way: it goes on in a task.
    pub async fn close(&self) {
        let (writes, pool) = (self.writes.clone(), self.pool.clone());
        let closing = tokio::spawn(async move {
            let (ack, closed) = oneshot::channel();
            if writes.send(writer::Write::Close(ack)).await.is_ok() {
                // An error means the writer already stopped, which is what is waited for.
                let _ = closed.await;
            }
            // SQLite checkpoints by itself only in the connection that closes last, and skips
            // it when another one is closing at the same moment, as the pool's may: so the log
            // is copied and emptied here, while one connection is sure to be open.
            if let Err(e) = checkpoint_without_waiting(&pool).await {
                tracing::debug!(error = %e, "SQLite checkpoint on close failed");
            }
            pool.close().await;
        });
        // An error only if the task panicked or the runtime is shutting down: either way there
        // is nothing more to wait for.
        let _ = closing.await;
    }

    /// Hands a write to the writer task and waits for its answer, given after its batch's
    /// `COMMIT` returned.
    async fn write(
        &self,
        write: impl FnOnce(writer::Reply) -> writer::Write,
    ) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(write(reply))
            .await
            .map_err(|_| writer::closed())?;
        answer.await.map_err(|_| writer::stopped())?
    }
}

/// What a failed statement of opening a file means: one SQLite refused as the file is
/// read-only (its permissions, a `mode=ro` URI) is [`StoreError::Open`], which says to make it
/// writable, rather than a `Backend` failure to retry: SQLite opens a file it may not write
/// read-only without a word, and the first write is the migration's.
fn opening(path: &Path) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    const SQLITE_READONLY: i64 = 8;
    move |e| {
        let read_only = e
            .as_database_error()
            .and_then(|db| db.code())
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_READONLY);
        if read_only {
            StoreError::Open {
                path: path.to_owned(),
                source: Box::new(e),
            }
        } else {
            backend(e)
        }
    }
}

fn backend(e: sqlx::Error) -> StoreError {
    if matches!(e, sqlx::Error::PoolClosed) {
        return StoreError::Closed { store: "SQLite" };
    }
    StoreError::Backend {
        source: Box::new(e),
    }
}

/// Timestamps are RFC 3339 UTC with microseconds: fixed width, so text order is time order.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Copies the write-ahead log into the main file and empties it, as far as that can be done
/// at once. A reader elsewhere (another process, a backup) holding an older snapshot keeps
/// part of the log in use: under the store's busy timeout, which may be days, closing would
/// wait for it to finish. With none, SQLite copies what it can and leaves the rest, as its own
/// checkpoints beside the writer do, and the next opening takes the log up.
async fn checkpoint_without_waiting(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut connection = pool.acquire().await?;
    sqlx::query("PRAGMA busy_timeout = 0")
        .execute(&mut *connection)
        .await?;
    let checkpointed = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut *connection)
        .await;
    // Closed rather than given back: the pool's next user would inherit the zero timeout.
    connection.close().await?;
    checkpointed.map(drop)
}
