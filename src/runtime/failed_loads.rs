//! Deployments not in memory whose deadline could not be fired (their load, resumption or
//! write failed), with how many times in a row: each is tried again by the engine's clock,
//! twice as long after each further failure, so an outage is not met with a load a second
//! from every such deployment. A deployment in memory counts its own failures
//! ([`Live::failed_writes`](super::engine::Live::failed_writes)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::engine::lock;
use crate::core::DeploymentId;
use crate::ids::IdHasher;

#[derive(Debug, Default)]
pub(crate) struct FailedLoads {
    /// Only those whose last try failed: each has a retry armed, or is being fired, and the
    /// firing either counts it again or forgets it.
    failures: Mutex<HashMap<Arc<DeploymentId>, Failures, IdHasher>>,
    /// How many there are, read without the lock by every deadline fired, which almost always
    /// finds none.
    counted: AtomicUsize,
}

#[derive(Debug, Default)]
struct Failures {
    in_a_row: u8,
    /// Whether a retry is armed and has not fired yet.
    armed: bool,
}

impl FailedLoads {
    /// Counts one more failure in a row of `id` and returns how many there have been, for a
    /// retry to be armed; `None` if one is armed already. One failure can reach more than one
    /// caller (a write that panicked while a deadline fired is the write's and the firing's),
    /// and each arming its own retry would double them at every round.
    pub(crate) fn retry(&self, id: &Arc<DeploymentId>) -> Option<u8> {
        let mut failures = lock(&self.failures);
        let failed = failures.entry(Arc::clone(id)).or_default();
        if failed.armed {
            return None;
        }
        failed.armed = true;
        failed.in_a_row = failed.in_a_row.saturating_add(1);
        let in_a_row = failed.in_a_row;
        self.counted.store(failures.len(), Ordering::Release);
        Some(in_a_row)
    }

    /// Notes that a deadline of `id` is being fired: a failure of it may arm a retry again.
    pub(crate) fn firing(&self, id: &DeploymentId) {
        if self.counted.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(failed) = lock(&self.failures).get_mut(id) {
            failed.armed = false;
        }
    }

    /// Forgets the failures of `id`: its deadline fired, or it is in memory.
    pub(crate) fn forget(&self, id: &DeploymentId) {
        if self.counted.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut failures = lock(&self.failures);
        failures.remove(id);
        self.counted.store(failures.len(), Ordering::Release);
    }

    /// How many deployments have failures counted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.failures).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_are_counted_once_per_firing_until_forgotten() {
        let loads = FailedLoads::default();
        let a: Arc<DeploymentId> = Arc::new("a".into());
        assert_eq!(loads.retry(&a), Some(1));
        assert_eq!(loads.retry(&a), None, "armed already: not counted again");
        loads.firing(&a);
        assert_eq!(loads.retry(&a), Some(2));
        loads.forget(&a);
        assert_eq!(loads.len(), 0);
        assert_eq!(loads.retry(&a), Some(1), "counted afresh");
    }
}
