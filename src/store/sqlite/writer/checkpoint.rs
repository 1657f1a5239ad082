//! Write-ahead-log checkpoints, kept off the writer's `COMMIT`.
//!
//! By default SQLite checkpoints inside the `COMMIT` that takes the log past 1000 pages:
//! copying those pages into the database file (and, with any `synchronous` but `OFF`, syncing
//! it) then delays every write of that batch and of the batches queued behind it. The writer's
//! connection therefore runs with `wal_autocheckpoint=0`, and every [`EVERY`] writes it wakes a
//! task that runs `PRAGMA wal_checkpoint(PASSIVE)` on a pool connection, beside the writer:
//! a passive checkpoint takes no lock a writer waits for.
//!
//! A checkpoint can only let SQLite start the log again from its beginning once it has copied
//! all of it, which one running beside a busy writer may never do. So when a checkpoint finds
//! the log longer than [`LIMIT`] pages, it asks the writer to checkpoint itself after its next
//! `COMMIT`, between two batches, as SQLite would have, and again after each commit until one
//! copies the whole log: the log then starts over, and stays bounded. Checkpoints do not make commits durable: in WAL mode a commit is durable once its
//! frames are in the log (synced by the `COMMIT` itself under `synchronous=FULL`), so moving
//! them changes no acknowledgement. [`SqliteStore::close`](crate::store::SqliteStore::close)
//! checkpoints and empties the log itself (`wal_checkpoint(TRUNCATE)`), since SQLite's own
//! checkpoint when the last connection closes can be skipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::SqlitePool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How many writes the writer commits between two requests for a checkpoint; a few pages
/// each, so a few hundred writes are about the 1000 pages SQLite would wait for.
pub(super) const EVERY: usize = 256;

/// The log length, in pages, past which the writer checkpoints itself.
pub(super) const LIMIT: i64 = 4000;

/// The writer's end: asks for checkpoints and learns when it must run one itself.
pub(super) struct Checkpoints {
    /// `None` once stopped.
    wake: Option<mpsc::Sender<()>>,
    task: Option<JoinHandle<()>>,
    overdue: Arc<AtomicBool>,
    since: usize,
}

impl Checkpoints {
    /// Spawns the checkpoint task on `pool`; it stops once this is dropped or stopped.
    pub(super) fn spawn(pool: SqlitePool) -> Self {
        let (wake, mut woken) = mpsc::channel(1);
        let overdue = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&overdue);
        let task = tokio::spawn(async move {
            while woken.recv().await.is_some() {
                let log: Result<(i64, i64, i64), _> =
                    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                        .fetch_one(&pool)
                        .await;
                match log {
                    Ok((_, pages, _)) if pages > LIMIT => flag.store(true, Ordering::Relaxed),
                    Ok(_) => {}
                    // Failing to checkpoint loses nothing; the writer's own checkpoint, or the
                    // next one here, copies the log later.
                    Err(e) => tracing::debug!(error = %e, "SQLite checkpoint failed"),
                }
            }
        });
        Self {
            wake: Some(wake),
            task: Some(task),
            overdue,
            since: 0,
        }
    }

    /// Ends the checkpoint task, waiting for a checkpoint under way, so that closing the pool
    /// afterwards finds none of its connections in use: the last one to close then
    /// checkpoints the whole log and removes it.
    pub(super) async fn stop(&mut self) {
        self.wake = None;
        if let Some(task) = self.task.take() {
            // A task that panicked has nothing left to wait for.
            let _ = task.await;
        }
    }

    /// Has the writer checkpoint again after its next commit: its last one could not copy the
    /// whole log.
    pub(super) fn still_overdue(&self) {
        self.overdue.store(true, Ordering::Relaxed);
    }

    /// Counts `writes` just committed; says whether the writer must checkpoint now.
    pub(super) fn committed(&mut self, writes: usize) -> bool {
        self.since += writes;
        if self.since >= EVERY {
            self.since = 0;
            // A checkpoint already asked for and not yet run covers these writes too.
            if let Some(wake) = &self.wake {
                let _ = wake.try_send(());
            }
        }
        self.overdue.swap(false, Ordering::Relaxed)
    }
}
