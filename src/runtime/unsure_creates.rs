//! Starts whose create the store answered with a failure and did not show stored when looked
//! at: a database may commit a statement a while after its client gave up on it, and such a
//! deployment, stored and running, is driven by no one until it is found.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::engine::MAX_LOOKS;
use crate::core::DeploymentId;
use crate::ids::IdHasher;

#[derive(Debug, Default)]
pub(crate) struct UnsureCreates {
    /// How many times each was looked for since its create failed.
    looks: Mutex<HashMap<Arc<DeploymentId>, u8, IdHasher>>,
    /// Whether `looks` has any entry: every deadline fired asks, and this spares them the lock
    /// when, as nearly always, none has.
    any: AtomicBool,
    /// Who canceled each, withdrawing it from the queue while it was looked for: kept until the
    /// cancel is stored, past the looks, so that a resumption whose write failed applies it
    /// again.
    canceled: Mutex<HashMap<Arc<DeploymentId>, String, IdHasher>>,
    /// Whether `canceled` has any entry, as `any` is for `looks`: every deadline fired asks.
    any_canceled: AtomicBool,
}

impl UnsureCreates {
    /// Starts looking for `id`; false if it is looked for already, as when a hand-off launches
    /// the same queued deployment again: it keeps one chain of looks, and its count.
    pub(crate) fn insert(&self, id: &Arc<DeploymentId>) -> bool {
        let mut looks = self.lock();
        let new = !looks.contains_key(&**id);
        if new {
            looks.insert(Arc::clone(id), 0);
            self.any.store(true, Ordering::Release);
        }
        new
    }

    /// Stops looking for `id`, found; whether it was looked for.
    pub(crate) fn remove(&self, id: &DeploymentId) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut looks = self.lock();
        let found = looks.remove(id).is_some();
        self.note_removal(&looks);
        found
    }

    /// Counts a look for `id` that did not find it (or failed); the looks so far if it is looked
    /// for, and no longer looked for after the [`MAX_LOOKS`]th.
    pub(crate) fn missed(&self, id: &DeploymentId) -> Option<u8> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut looks = self.lock();
        let count = looks.get_mut(id)?;
        *count += 1;
        let count = *count;
        if count >= MAX_LOOKS {
            looks.remove(id);
            self.note_removal(&looks);
            // Never found: nothing is left to cancel.
            self.cancel_stored(id);
        }
        Some(count)
    }

    /// Records that `by` canceled `id` while it was queued and looked for: found, it is canceled
    /// before anything of it is asked for. Whether it was looked for.
    pub(crate) fn record_cancel(&self, id: &DeploymentId, by: &str) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let looks = self.lock();
        let Some((id, _)) = looks.get_key_value(id) else {
            return false;
        };
        // The first cancel is the one its caller was told of first; a second changes nothing.
        let mut canceled = self.canceled();
        canceled
            .entry(Arc::clone(id))
            .or_insert_with(|| by.to_owned());
        // Under the lock, as `cancel_stored` clears it: the two never cross.
        self.any_canceled.store(true, Ordering::Release);
        true
    }

    /// Who canceled `id` while it was looked for, if anyone did and the cancel is not stored.
    pub(crate) fn canceled_by(&self, id: &DeploymentId) -> Option<String> {
        if !self.any_canceled.load(Ordering::Acquire) {
            return None;
        }
        self.canceled().get(id).cloned()
    }

    /// Forgets the cancel of `id`, stored now.
    pub(crate) fn cancel_stored(&self, id: &DeploymentId) {
        if !self.any_canceled.load(Ordering::Acquire) {
            return;
        }
        let mut canceled = self.canceled();
        canceled.remove(id);
        self.any_canceled
            .store(!canceled.is_empty(), Ordering::Release);
    }

    /// Keeps `any` true to what is left in `looks`, under its lock.
    fn note_removal(&self, looks: &HashMap<Arc<DeploymentId>, u8, IdHasher>) {
        self.any.store(!looks.is_empty(), Ordering::Release);
    }

    fn canceled(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<DeploymentId>, String, IdHasher>> {
        self.canceled.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<DeploymentId>, u8, IdHasher>> {
        self.looks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_is_looked_for_max_looks_times_then_no_more() {
        let unsure = UnsureCreates::default();
        let id = Arc::new(DeploymentId::from("d-1"));
        assert_eq!(unsure.missed(&id), None, "not looked for");
        assert!(unsure.insert(&id));
        assert!(!unsure.insert(&id), "one chain of looks");
        for look in 1..MAX_LOOKS {
            assert_eq!(unsure.missed(&id), Some(look));
        }
        assert_eq!(unsure.missed(&id), Some(MAX_LOOKS), "the last");
        assert_eq!(unsure.missed(&id), None, "no longer looked for");
        assert!(!unsure.remove(&id));
    }

    #[test]
    fn a_create_found_is_no_longer_looked_for() {
        let unsure = UnsureCreates::default();
        let (a, b) = (
            Arc::new(DeploymentId::from("a")),
            Arc::new(DeploymentId::from("b")),
        );
        unsure.insert(&a);
        unsure.insert(&b);
        assert!(unsure.remove(&a));
        assert!(!unsure.remove(&a));
        assert_eq!(unsure.missed(&a), None);
        assert_eq!(unsure.missed(&b), Some(1), "the other still is");
        assert!(unsure.remove(&b));
        assert!(!unsure.any.load(Ordering::Acquire));
    }

    #[test]
    fn a_cancel_is_kept_for_a_create_looked_for_only() {
        let unsure = UnsureCreates::default();
        let id = Arc::new(DeploymentId::from("d-1"));
        assert!(!unsure.record_cancel(&id, "op"), "not looked for");
        unsure.insert(&id);
        assert_eq!(unsure.canceled_by(&id), None);
        assert!(unsure.record_cancel(&id, "op"));
        assert!(unsure.record_cancel(&id, "second"));
        assert_eq!(
            unsure.canceled_by(&id).as_deref(),
            Some("op"),
            "the first stands"
        );
        assert_eq!(unsure.missed(&id), Some(1), "still looked for");
        assert_eq!(unsure.canceled_by(&id).as_deref(), Some("op"));
        assert!(unsure.remove(&id));
        assert_eq!(
            unsure.canceled_by(&id).as_deref(),
            Some("op"),
            "kept past the looks until stored"
        );
        unsure.cancel_stored(&id);
        assert_eq!(unsure.canceled_by(&id), None);
    }

    #[test]
    fn a_cancel_of_a_create_never_found_is_forgotten_with_the_looks() {
        let unsure = UnsureCreates::default();
        let id = Arc::new(DeploymentId::from("d-1"));
        unsure.insert(&id);
        unsure.record_cancel(&id, "op");
        for _ in 0..MAX_LOOKS {
            unsure.missed(&id);
        }
        assert_eq!(unsure.canceled_by(&id), None);
    }
}
