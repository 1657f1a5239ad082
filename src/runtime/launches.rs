//! The deployment being started: stored by its create, not yet in memory. Every start runs
//! under the engine's start lock, so there is at most one, and a caller holding that lock finds
//! none.

use std::sync::Mutex;

use super::engine::lock;
use crate::core::DeploymentId;

#[derive(Debug, Default)]
pub(crate) struct Launches(Mutex<Option<DeploymentId>>);

impl Launches {
    /// Counts `id` as being started until the guard drops.
    pub(crate) fn begin(&self, id: &DeploymentId) -> Launching<'_> {
        let earlier = lock(&self.0).replace(id.clone());
        debug_assert!(earlier.is_none(), "starts run one at a time");
        Launching(self)
    }

    pub(crate) fn contains(&self, id: &DeploymentId) -> bool {
        lock(&self.0).as_ref() == Some(id)
    }
}

/// Keeps a deployment counted as being started while it lives.
pub(crate) struct Launching<'a>(&'a Launches);

impl Drop for Launching<'_> {
    fn drop(&mut self) {
        *lock(&self.0.0) = None;
    }
}
