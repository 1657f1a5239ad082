//! Reading rows back. Whatever a row holds, a bad value is [`StoreError::Corrupt`], never a
//! panic: the file may have been edited by hand or written by another release.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::backend;
use crate::core::DeploymentId;
use crate::store::{HistoryEntry, StoreError, StoredDeployment, codec};

pub(super) fn deployment(row: &SqliteRow) -> Result<StoredDeployment, StoreError> {
    let id = match row.try_get("id") {
        Ok(id) => DeploymentId(id),
        Err(e @ sqlx::Error::ColumnDecode { .. }) => {
            return Err(StoreError::Corrupt {
                id: unreadable_id(row),
                what: "id",
                source: Box::new(e),
            });
        }
        Err(e) => return Err(backend(e)),
    };
    let state: String = column(row, &id, "state")?;
    let status: String = column(row, &id, "status")?;
    let created_at: String = column(row, &id, "created_at")?;
    let updated_at: String = column(row, &id, "updated_at")?;
    Ok(StoredDeployment {
        application: column(row, &id, "application")?,
        // NULL where the row's plan is missing (`select_deployments!`), which decoding as
        // text would take for an empty plan.
        plan_source: column::<Option<String>>(row, &id, "plan_source")?.ok_or_else(|| {
            corrupt(
                &id,
                "plan_source",
                "its row in `plans` is missing".to_owned(),
            )
        })?,
        state: Arc::new(codec::decode_state(&id, &state)?),
        status: codec::status(&id, status)?,
        version: codec::version(&id, column(row, &id, "version")?)?,
        created_at: time(&id, "created_at", &created_at)?,
        updated_at: time(&id, "updated_at", &updated_at)?,
        id,
    })
}

/// The entries of one row of `history`: a write's events, numbered from its `first_seq`.
pub(super) fn history_entries(
    id: &DeploymentId,
    row: &SqliteRow,
    into: &mut Vec<HistoryEntry>,
) -> Result<(), StoreError> {
    let first = codec::positive(id, "seq", column(row, id, "first_seq")?)?;
    let count: i64 = column(row, id, "count")?;
    let version = codec::version(id, column(row, id, "version")?)?;
    let events: String = column(row, id, "events")?;
    let events = codec::decode_event_list(id, &events)?;
    if i64::try_from(events.len()).ok() != Some(count) {
        return Err(corrupt(
            id,
            "event",
            format!("a row holds {} events but says {count}", events.len()),
        ));
    }
    for (seq, event) in (first..).zip(events) {
        into.push(HistoryEntry {
            seq,
            version,
            event,
        });
    }
    Ok(())
}

/// The version after `expected`. Only a version tampered up to `i64::MAX` has none.
pub(super) fn next_version(id: &DeploymentId, expected: i64) -> Result<i64, StoreError> {
    expected
        .checked_add(1)
        .ok_or_else(|| cannot_increment(id, expected))
}

/// The error of a stored `version` with no next.
pub(super) fn cannot_increment(id: &DeploymentId, version: i64) -> StoreError {
    corrupt(id, "version", format!("{version} cannot be incremented"))
}

fn column<'r, T>(row: &'r SqliteRow, id: &DeploymentId, name: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name).map_err(|e| StoreError::Corrupt {
        id: id.clone(),
        what: name,
        source: Box::new(e),
    })
}

fn time(id: &DeploymentId, what: &'static str, text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            id: id.clone(),
            what,
            source: Box::new(e),
        })
}

/// An `id` that is not text (a BLOB, or text that is not UTF-8, which only a hand edit
/// writes), named as nearly as it can be: its bytes, with what is not UTF-8 replaced. A listing
/// then sets that row aside like any other it cannot read, rather than fail as a whole.
fn unreadable_id(row: &SqliteRow) -> DeploymentId {
    let bytes: Option<Vec<u8>> = row.try_get("id").ok().flatten();
    DeploymentId(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned())
}

fn corrupt(id: &DeploymentId, what: &'static str, message: String) -> StoreError {
    StoreError::Corrupt {
        id: id.clone(),
        what,
        source: message.into(),
    }
}
