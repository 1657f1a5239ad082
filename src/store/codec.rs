//! What every backend stores the same way: the JSON form of states and events, and the checks
//! on the values read back (versions, statuses, the schema version) that turn a row edited by
//! hand or written by another release into [`StoreError`], never a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{MAX_KEY_BYTES, NewDeployment, StoreError};
use crate::core::{DeploymentId, DeploymentState, Event};

/// Whether `text` holds a NUL character, which PostgreSQL's text cannot: no store keeps such a
/// text ([`storable`]), so none has a row under one, and PostgreSQL, which refuses one as a
/// parameter with a database error (as if it were failing), is not asked.
pub(crate) fn unstorable(text: &str) -> bool {
    text.contains('\0')
}

/// Refuses `text`, the store's `what`, if it is [`unstorable`]: refused by every store, so that
/// the stores take the same writes (and PostgreSQL never answers one as the database failing,
/// which a caller would retry).
pub(crate) fn storable(what: &'static str, text: &str) -> Result<(), StoreError> {
    if unstorable(text) {
        return Err(StoreError::Unstorable { what });
    }
    Ok(())
}

/// Whether `text`, a deployment id or a lease owner, is one no store keeps: [`unstorable`], or
/// longer than [`MAX_KEY_BYTES`].
#[cfg(feature = "postgres")]
pub(crate) fn unstorable_key(text: &str) -> bool {
    unstorable(text) || text.len() > MAX_KEY_BYTES
}

/// [`storable`] for a deployment id or a lease owner, which the stores index, and which is
/// refused too when longer than [`MAX_KEY_BYTES`]: PostgreSQL's indexes take keys of at most
/// about 2.7 kB, and refuse a longer one as the database failing.
pub(crate) fn storable_key(what: &'static str, text: &str) -> Result<(), StoreError> {
    storable(what, text)?;
    if text.len() > MAX_KEY_BYTES {
        return Err(StoreError::TooLong {
            what,
            len: text.len(),
            max: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// [`storable`] for each text of a create.
pub(crate) fn storable_new(new: &NewDeployment) -> Result<(), StoreError> {
    storable_key("deployment id", &new.id.0)?;
    storable("application", &new.application)?;
    storable("deployment file", &new.plan_source)?;
    match &new.lease {
        Some(lease) => storable_key("lease owner", &lease.owner),
        None => Ok(()),
    }
}

pub(crate) fn encode_state(
    id: &DeploymentId,
    state: &DeploymentState,
) -> Result<String, StoreError> {
    own_state(id, state)?;
    encode(id, "state", state)
}

/// Refuses to write `state` under another deployment's id: [`decode_state`] would refuse the
/// row.
pub(crate) fn own_state(id: &DeploymentId, state: &DeploymentState) -> Result<(), StoreError> {
    if *state.id != *id {
        return Err(StoreError::WrongState {
            id: id.clone(),
            state_of: (*state.id).clone(),
        });
    }
    Ok(())
}

/// The state stored for deployment `id`; one that names another deployment (a row edited or
/// copied by hand) is [`StoreError::Corrupt`]: resumed, it would be driven, and saved, as that
/// other deployment.
pub(crate) fn decode_state(id: &DeploymentId, text: &str) -> Result<DeploymentState, StoreError> {
    let state: DeploymentState = decode(id, "state", text)?;
    if *state.id != *id {
        return Err(StoreError::Corrupt {
            id: id.clone(),
            what: "state",
            source: format!("it is the state of deployment {}", state.id).into(),
        });
    }
    Ok(state)
}

pub(crate) fn encode_events(
    id: &DeploymentId,
    events: &[Event],
) -> Result<Vec<String>, StoreError> {
    events.iter().map(|e| encode(id, "event", e)).collect()
}

pub(crate) fn decode_event(id: &DeploymentId, text: &str) -> Result<Event, StoreError> {
    decode(id, "event", text)
}

/// A write's events as one JSON array, for a store that keeps them in one row.
#[cfg(feature = "sqlite")]
pub(crate) fn encode_event_list(id: &DeploymentId, events: &[Event]) -> Result<String, StoreError> {
    encode(id, "event", &events)
}

/// The events of [`encode_event_list`].
#[cfg(feature = "sqlite")]
pub(crate) fn decode_event_list(id: &DeploymentId, text: &str) -> Result<Vec<Event>, StoreError> {
    decode(id, "event", text)
}

fn encode<T: Serialize>(
    id: &DeploymentId,
    what: &'static str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode {
        id: id.clone(),
        what,
        source,
    })
}

fn decode<T: DeserializeOwned>(
    id: &DeploymentId,
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        id: id.clone(),
        what,
        source: Box::new(e),
    })
}

/// Why an exclusive create of `id` for `application` is refused, given what its look found:
/// its own id (a create repeated after its answer was lost), or another deployment of the
/// application running.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn exclusive_refusal(
    id: &DeploymentId,
    application: &str,
    found: Option<String>,
) -> Option<StoreError> {
    let found = found?;
    Some(if found == id.0 {
        StoreError::AlreadyExists { id: id.clone() }
    } else {
        StoreError::ApplicationBusy {
            application: application.to_owned(),
            running: DeploymentId(found),
        }
    })
}

/// A stored version; a value that is not positive means the row was tampered with.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn version(id: &DeploymentId, value: i64) -> Result<u64, StoreError> {
    positive(id, "version", value)
}

/// A stored count that starts at 1 (versions, history positions).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn positive(
    id: &DeploymentId,
    what: &'static str,
    value: i64,
) -> Result<u64, StoreError> {
    u64::try_from(value)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| StoreError::Corrupt {
            id: id.clone(),
            what,
            source: format!("{value} is not a positive number").into(),
        })
}

/// A stored status: the column holds `DeploymentStatus::as_str`, which is also its serde name.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn status(
    id: &DeploymentId,
    text: String,
) -> Result<crate::core::DeploymentStatus, StoreError> {
    text.parse().map_err(|e| StoreError::Corrupt {
        id: id.clone(),
        what: "status",
        source: Box::new(e),
    })
}

/// How many of the `known` migrations a database whose newest applied one is `found` already
/// has; a database newer than this release is [`StoreError::SchemaTooNew`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn migrations_applied(found: i64, known: usize) -> Result<usize, StoreError> {
    usize::try_from(found)
        .ok()
        .filter(|&n| n <= known)
        .ok_or(StoreError::SchemaTooNew {
            found,
            supported: known,
        })
}
