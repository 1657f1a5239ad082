//! Deployments being started: stored by their create, not yet in memory. Every start runs
//! under the engine's start lock, so at most one is here at a time, and a caller holding that
//! lock finds none.

use std::collections::HashSet;
use std::sync::Mutex;

use super::engine::lock;
use crate::core::DeploymentId;

#[derive(Debug, Default)]
pub(crate) struct Launches(Mutex<HashSet<DeploymentId>>);

impl Launches {
    /// Counts `id` as being started until the guard drops.
    pub(crate) fn begin(&self, id: &DeploymentId) -> Launching<'_> {
        lock(&self.0).insert(id.clone());
        Launching {
            launches: self,
            id: id.clone(),
        }
    }

    pub(crate) fn contains(&self, id: &DeploymentId) -> bool {
        lock(&self.0).contains(id)
    }
}

/// Keeps a deployment among those being started while it lives.
pub(crate) struct Launching<'a> {
    launches: &'a Launches,
    id: DeploymentId,
}

impl Drop for Launching<'_> {
    fn drop(&mut self) {
        lock(&self.launches.0).remove(&self.id);
    }
}
