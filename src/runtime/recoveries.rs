//! Deployments that finished (and were retired) here while a recovery was under way. Its rows
//! were read before: one of them resumed afterwards would be an out-of-date copy, kept in
//! memory and shown as running until its next deadline's write failed on the version.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::engine::lock;
use crate::core::DeploymentId;

#[derive(Debug, Default)]
pub(crate) struct Recoveries {
    /// How many are under way: read without the lock by every deployment that finishes,
    /// which almost always finds none.
    running: AtomicUsize,
    /// The deployments that finished since the first of them began; kept only while one runs.
    finished: Mutex<HashSet<Arc<DeploymentId>>>,
}

impl Recoveries {
    /// Counts a recovery as under way until the guard drops. Taken before its rows are read.
    pub(crate) fn begin(&self) -> Recovering<'_> {
        // Under the lock `finished` inserts under after checking again, and the last guard
        // clears under: a finish is then never inserted into a set being cleared, nor missed
        // by a recovery counted after the check.
        let _finished = lock(&self.finished);
        self.running.fetch_add(1, Ordering::SeqCst);
        Recovering(self)
    }

    /// Notes that `id` finished, before it leaves memory: a resumption that registers it after
    /// it left then finds it here. One that finished before a recovery began is finished in
    /// the rows that recovery reads, since its last write came before this.
    pub(crate) fn finished(&self, id: &Arc<DeploymentId>) {
        if self.running.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut finished = lock(&self.finished);
        if self.running.load(Ordering::SeqCst) > 0 {
            finished.insert(Arc::clone(id));
        }
    }

    /// Whether `id` finished while a recovery was under way.
    pub(crate) fn saw_finish(&self, id: &DeploymentId) -> bool {
        self.running.load(Ordering::SeqCst) > 0 && lock(&self.finished).contains(id)
    }
}

/// Keeps a recovery counted as under way while it lives.
pub(crate) struct Recovering<'a>(&'a Recoveries);

impl Drop for Recovering<'_> {
    fn drop(&mut self) {
        let mut finished = lock(&self.0.finished);
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            *finished = HashSet::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishes_are_kept_while_a_recovery_runs_only() {
        let recoveries = Recoveries::default();
        let (a, b) = (
            Arc::new(DeploymentId::from("a")),
            Arc::new(DeploymentId::from("b")),
        );
        recoveries.finished(&a);
        assert!(!recoveries.saw_finish(&a), "no recovery under way");
        let first = recoveries.begin();
        recoveries.finished(&a);
        let second = recoveries.begin();
        drop(first);
        recoveries.finished(&b);
        assert!(recoveries.saw_finish(&a) && recoveries.saw_finish(&b));
        drop(second);
        assert!(!recoveries.saw_finish(&a), "forgotten once none runs");
    }
}
