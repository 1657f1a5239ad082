//! The JSON form of states and events, shared by every backend so that they store the same text.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use crate::core::{DeploymentId, DeploymentState, Event};

pub(crate) fn encode_state(
    id: &DeploymentId,
    state: &DeploymentState,
) -> Result<String, StoreError> {
    encode(id, "state", state)
}

pub(crate) fn decode_state(id: &DeploymentId, text: &str) -> Result<DeploymentState, StoreError> {
    decode(id, "state", text)
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
