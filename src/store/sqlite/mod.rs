//! The SQLite store (feature `sqlite`). Durability is documented on the [`store`](super)
//! module.

mod queries;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;
use crate::clock::{Clock, SystemClock};

/// Which failure an acknowledged save survives; see the [`store`](super) module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=NORMAL`: survives the process being killed, not a power loss.
    #[default]
    ProcessCrash,
    /// `synchronous=FULL`: survives a power loss too, at one `fsync` per save.
    PowerLoss,
}

/// How [`SqliteStore::open_with`] opens a file.
#[derive(Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Which failure an acknowledged save survives. Default: [`Durability::ProcessCrash`].
    pub durability: Durability,
    /// How long a write waits for another connection's write lock before failing with
    /// [`StoreError::Backend`]. Default: 5 seconds.
    pub busy_timeout: Duration,
    /// The most connections the pool opens. SQLite runs one write at a time whatever this is;
    /// more connections let reads go on beside it. Default: 8.
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
    /// Sets the durability.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the busy timeout.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets the pool size.
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// A [`Store`](super::Store) in one SQLite file.
pub struct SqliteStore {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` with the default options, and
    /// applies any schema migration it lacks.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (creating it if missing) the database at `path`, and applies any schema migration
    /// it lacks. Opening a file another store has open is fine.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let synchronous = match options.durability {
            Durability::ProcessCrash => SqliteSynchronous::Normal,
            Durability::PowerLoss => SqliteSynchronous::Full,
        };
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .connect_with(connect)
            .await
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                source: Box::new(e),
            })?;
        schema::migrate(&pool, options.clock.now()).await?;
        Ok(Self {
            pool,
            clock: options.clock,
        })
    }

    /// Closes every connection, waiting for queries under way. Saves already acknowledged are
    /// durable without it; closing checkpoints the write-ahead log into the main file.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend {
        source: Box::new(e),
    }
}

/// Timestamps are RFC 3339 UTC with microseconds: fixed width, so text order is time order.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}
