//! Reading rows back. Whatever a row holds, a bad value is [`StoreError::Corrupt`], never a
//! panic: the database may have been edited by hand or written by another release.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::backend;
use crate::core::DeploymentId;
use crate::store::{HistoryEntry, StoreError, StoredDeployment, codec};

/// The columns [`deployment`] reads, for `SELECT` and `RETURNING` lists. A time chrono cannot
/// hold (`infinity`, or a year past 262,000, both of which PostgreSQL stores) comes back as
/// `NULL`: sqlx's decoder adds it to an epoch unchecked and would panic on it.
pub(super) const DEPLOYMENT_COLUMNS: &str = "id, application, plan_source, state, status, version, \
     CASE WHEN isfinite(created_at) AND created_at < '262000-01-01Z' THEN created_at END \
     AS created_at, \
     CASE WHEN isfinite(updated_at) AND updated_at < '262000-01-01Z' THEN updated_at END \
     AS updated_at";

pub(super) fn deployment(row: &PgRow) -> Result<StoredDeployment, StoreError> {
    let id = DeploymentId(row.try_get("id").map_err(backend)?);
    let state: String = column(row, &id, "state")?;
    let status: String = column(row, &id, "status")?;
    Ok(StoredDeployment {
        application: column(row, &id, "application")?,
        plan_source: column(row, &id, "plan_source")?,
        state: Arc::new(codec::decode_state(&id, &state)?),
        status: codec::status(&id, status)?,
        version: codec::version(&id, column(row, &id, "version")?)?,
        created_at: time(row, &id, "created_at")?,
        updated_at: time(row, &id, "updated_at")?,
        id,
    })
}

pub(super) fn history_entry(id: &DeploymentId, row: &PgRow) -> Result<HistoryEntry, StoreError> {
    let event: String = column(row, id, "event")?;
    Ok(HistoryEntry {
        seq: codec::positive(id, "seq", column(row, id, "seq")?)?,
        version: codec::version(id, column(row, id, "version")?)?,
        event: codec::decode_event(id, &event)?,
    })
}

/// A time column of [`DEPLOYMENT_COLUMNS`], `NULL` where the stored time is out of range.
fn time(row: &PgRow, id: &DeploymentId, name: &'static str) -> Result<DateTime<Utc>, StoreError> {
    column::<Option<DateTime<Utc>>>(row, id, name)?.ok_or_else(|| StoreError::Corrupt {
        id: id.clone(),
        what: name,
        source: "not a finite time before the year 262000".into(),
    })
}

pub(super) fn column<'r, T>(
    row: &'r PgRow,
    id: &DeploymentId,
    name: &'static str,
) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name).map_err(|e| StoreError::Corrupt {
        id: id.clone(),
        what: name,
        source: Box::new(e),
    })
}
