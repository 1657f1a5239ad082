//! Embedded schema migrations, applied when a store opens a file.
//!
//! They are applied by hand rather than with `sqlx::migrate!` because sqlx's SQLite migrator
//! takes no lock: two processes opening a new file at once could both apply the first
//! migration and one would fail. Here reading the schema version and applying what is missing
//! happen in one `BEGIN IMMEDIATE` transaction, so a second opener waits (busy timeout) and
//! then finds nothing to do.

use std::path::Path;

use chrono::{DateTime, Utc};
use sqlx::{Executor, SqlitePool};

use super::{backend, opening, timestamp};
use crate::store::{StoreError, codec};

/// Migration `i` brings the schema to version `i + 1`. Append only: a released migration is
/// never edited, since databases that applied it would not apply it again.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_history_and_plans.sql"),
];

/// Applies the migrations `path`'s database lacks.
pub(super) async fn migrate(
    pool: &SqlitePool,
    path: &Path,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let opening = opening(path);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(&opening)?;
    tx.execute(sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS hookgate_migrations (
            version    INTEGER PRIMARY KEY NOT NULL,
            applied_at TEXT NOT NULL
        )",
    ))
    .await
    .map_err(&opening)?;
    let found: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM hookgate_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
    // A statement that writes, even nothing, fails on a file this process may only read, which
    // SQLite opens read-only without a word: here rather than at the first save.
    tx.execute(sqlx::raw_sql(
        "UPDATE hookgate_migrations SET version = version WHERE 0",
    ))
    .await
    .map_err(&opening)?;
    let applied = codec::migrations_applied(found, MIGRATIONS.len())?;
    for (version, sql) in (1i64..).zip(MIGRATIONS).skip(applied) {
        let failed = |e: sqlx::Error| StoreError::Migration {
            version,
            source: Box::new(e),
        };
        tx.execute(sqlx::raw_sql(sql)).await.map_err(failed)?;
        sqlx::query("INSERT INTO hookgate_migrations (version, applied_at) VALUES (?, ?)")
            .bind(version)
            .bind(timestamp(now))
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tracing::info!(version, "applied SQLite schema migration");
    }
    tx.commit().await.map_err(backend)
}
