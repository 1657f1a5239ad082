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
    /// Only those whose last try failed: each has a deadline armed, whose firing either
    /// counts it again or forgets it.
    failures: Mutex<HashMap<Arc<DeploymentId>, u8, IdHasher>>,
    /// How many there are, read without the lock by every deadline fired, which almost always
    /// finds none.
    counted: AtomicUsize,
}

impl FailedLoads {
    /// Counts one more failure in a row of `id`, and returns how many there have been.
    pub(crate) fn failed(&self, id: &Arc<DeploymentId>) -> u8 {
        let mut failures = lock(&self.failures);
        let count = failures.entry(Arc::clone(id)).or_default();
        *count = count.saturating_add(1);
        let count = *count;
        self.counted.store(failures.len(), Ordering::Release);
        count
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
    fn failures_in_a_row_are_counted_until_forgotten() {
        let loads = FailedLoads::default();
        let a: Arc<DeploymentId> = Arc::new("a".into());
        assert_eq!(loads.failed(&a), 1);
        assert_eq!(loads.failed(&a), 2);
        loads.forget(&a);
        assert_eq!(loads.len(), 0);
        assert_eq!(loads.failed(&a), 1, "counted afresh");
    }
}
