//! Embedded schema migrations, applied when a store connects.
//!
//! Everything happens in one transaction that first takes a transaction-level advisory lock:
//! a replica connecting while another migrates waits for it, then finds the versions it
//! applied and has nothing left to do. A migration that fails rolls the whole transaction
//! back, the schema's creation included.

use chrono::{DateTime, Utc};
use sqlx::{Executor, PgPool};

use super::backend;
use crate::store::{StoreError, codec};

/// Migration `i` brings the schema to version `i + 1`. Append only: a released migration is
/// never edited, since databases that applied it would not apply it again.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_leases.sql"),
    include_str!("migrations/0003_finished_release_leases.sql"),
    include_str!("migrations/0004_replicas.sql"),
];

/// The advisory lock every hookgate migration takes: "hookgate" in ASCII. One key for all
/// schemas, so that two replicas creating the same schema never race either.
const LOCK: i64 = 0x686f_6f6b_6761_7465;

/// Creates `schema` if missing and applies the migrations it lacks. `quoted` is `schema` as a
/// quoted identifier.
pub(super) async fn migrate(
    pool: &PgPool,
    schema: &str,
    quoted: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(backend)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    // Checked first because `CREATE SCHEMA IF NOT EXISTS` needs the CREATE privilege on the
    // database even when the schema exists, which a role using `public` may lack.
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
    if !exists {
        tx.execute(sqlx::raw_sql(&format!("CREATE SCHEMA {quoted}")))
            .await
            .map_err(|e| StoreError::Migration {
                version: 1,
                source: Box::new(e),
            })?;
    }
    // Until the commit only: the migrations' SQL names no schema.
    tx.execute(sqlx::raw_sql(&format!("SET LOCAL search_path TO {quoted}")))
        .await
        .map_err(backend)?;
    // Looked for rather than `CREATE TABLE IF NOT EXISTS`, which needs the CREATE privilege on
    // the schema even when the table exists: a role that only uses the tables of a schema an
    // administrator migrated may lack it.
    let recorded: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_tables \
         WHERE schemaname = $1 AND tablename = 'hookgate_migrations')",
    )
    .bind(schema)
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    if !recorded {
        tx.execute(sqlx::raw_sql(
            "CREATE TABLE hookgate_migrations (
                version    bigint      PRIMARY KEY,
                applied_at timestamptz NOT NULL
            )",
        ))
        .await
        .map_err(|e| StoreError::Migration {
            version: 1,
            source: Box::new(e),
        })?;
    }
    let found: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM hookgate_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
    let applied = codec::migrations_applied(found, MIGRATIONS.len())?;
    for (version, sql) in (1i64..).zip(MIGRATIONS).skip(applied) {
        let failed = |e: sqlx::Error| StoreError::Migration {
            version,
            source: Box::new(e),
        };
        tx.execute(sqlx::raw_sql(sql)).await.map_err(failed)?;
        sqlx::query("INSERT INTO hookgate_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tracing::info!(version, schema, "applied PostgreSQL schema migration");
    }
    tx.commit().await.map_err(backend)
}
