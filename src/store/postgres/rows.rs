//! Reading rows back. Whatever a row holds, a bad value is [`StoreError::Corrupt`], never a
//! panic: the database may have been edited by hand or written by another release.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::backend;
use crate::core::{DeploymentId, DeploymentStatus};
use crate::store::{HistoryEntry, StoreError, StoredDeployment, codec};

/// The columns [`deployment`] reads, for `SELECT` and `RETURNING` lists.
pub(super) const DEPLOYMENT_COLUMNS: &str =
    "id, application, plan_source, state, status, version, created_at, updated_at";

pub(super) fn deployment(row: &PgRow) -> Result<StoredDeployment, StoreError> {
    let id = DeploymentId(row.try_get("id").map_err(backend)?);
    let state: String = column(row, &id, "state")?;
    let status: String = column(row, &id, "status")?;
    Ok(StoredDeployment {
        application: column(row, &id, "application")?,
        plan_source: column(row, &id, "plan_source")?,
        state: codec::decode_state(&id, &state)?,
        status: decode_status(&id, status)?,
        version: version(&id, column(row, &id, "version")?)?,
        created_at: column(row, &id, "created_at")?,
        updated_at: column(row, &id, "updated_at")?,
        id,
    })
}

pub(super) fn history_entry(id: &DeploymentId, row: &PgRow) -> Result<HistoryEntry, StoreError> {
    let event: String = column(row, id, "event")?;
    Ok(HistoryEntry {
        seq: positive(id, "seq", column(row, id, "seq")?)?,
        version: version(id, column(row, id, "version")?)?,
        event: codec::decode_event(id, &event)?,
    })
}

/// A stored version; a value that is not positive means the row was tampered with.
pub(super) fn version(id: &DeploymentId, value: i64) -> Result<u64, StoreError> {
    positive(id, "version", value)
}

fn positive(id: &DeploymentId, what: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| StoreError::Corrupt {
            id: id.clone(),
            what,
            source: format!("{value} is not a positive number").into(),
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

fn decode_status(id: &DeploymentId, text: String) -> Result<DeploymentStatus, StoreError> {
    // The column holds `DeploymentStatus::as_str`, which is also its serde name.
    serde_json::from_value(serde_json::Value::String(text)).map_err(|e| StoreError::Corrupt {
        id: id.clone(),
        what: "status",
        source: Box::new(e),
    })
}
