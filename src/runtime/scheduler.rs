//! One table of deadlines for every deployment, so that waiting deployments cost an entry each,
//! not a task or a timer each.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::timetable::{Place, Timetable};
use crate::core::DeploymentId;

#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    /// The ids are the deployments' own, shared: moving a deadline then allocates and frees no
    /// text.
    table: Mutex<Timetable<Arc<DeploymentId>>>,
    /// Wakes the scheduler loop when an earlier deadline appears.
    pub(crate) changed: Notify,
}

/// Where a deployment's deadline is in the table. Its deployment's entry keeps it (see
/// [`Deadlines::set`]), so that moving a deadline, which every input does, needs no look-up
/// by id. A place is never used twice, so one taken out of the table when it came due is only
/// stale, never another deployment's.
pub(crate) type Slot = Option<Place>;

impl Deadlines {
    /// Records the next deadline of a deployment (`None`: it has none), in place of the one at
    /// `slot`, which it updates.
    pub(crate) fn set(&self, id: &Arc<DeploymentId>, slot: &mut Slot, at: Option<DateTime<Utc>>) {
        let Some(at) = at else {
            return self.clear(slot);
        };
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = slot.take() {
            if key.0 == at && t.contains(&key) {
                *slot = Some(key);
                return;
            }
            t.remove(&key);
        }
        let (key, earliest) = t.insert(at, Arc::clone(id));
        *slot = Some(key);
        drop(t);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Adds a deadline that no entry keeps: it fires once, and firing a deployment with
    /// nothing due changes nothing.
    pub(crate) fn add(&self, id: &Arc<DeploymentId>, at: DateTime<Utc>) {
        self.set(id, &mut None, Some(at));
    }

    /// Removes the deadline at `slot`, if it is still in the table. An empty slot spares the
    /// table's lock, which all inputs share: most inputs of a deployment without deadlines
    /// come here.
    pub(crate) fn clear(&self, slot: &mut Slot) {
        if let Some(key) = slot.take() {
            let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
            t.remove(&key);
        }
    }

    /// The earliest deadline, if any.
    pub(crate) fn next(&self) -> Option<DateTime<Utc>> {
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        t.first_time()
    }

    /// Removes every deployment whose deadline is at or before `now` and returns them, earliest
    /// first. Those the round has not handed out, or handed out but not yet seen
    /// [`fired`](DueRound::fired), when it is dropped are put back, due at `now`: a caller that
    /// stops part way (a scheduler dropped mid-round) leaves them for the next round rather than
    /// for their deployments' next input, which for a callback's timeout may never come.
    pub(crate) fn take_due(&self, now: DateTime<Utc>) -> DueRound<'_> {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let due: Vec<_> = std::iter::from_fn(|| t.pop_due(now)).collect();
        DueRound {
            deadlines: self,
            due: due.into_iter(),
            at: now,
            current: None,
        }
    }

    /// How many deadlines are pending.
    pub(crate) fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// [`Deadlines::len`], or `None` while the table is locked.
    pub(crate) fn try_len(&self) -> Option<usize> {
        self.table.try_lock().ok().map(|table| table.len())
    }
}

/// The deadlines taken out of the table by one round ([`Deadlines::take_due`]).
pub(crate) struct DueRound<'a> {
    deadlines: &'a Deadlines,
    due: std::vec::IntoIter<Arc<DeploymentId>>,
    at: DateTime<Utc>,
    /// The one handed out last, until it is [`fired`](Self::fired).
    current: Option<Arc<DeploymentId>>,
}

impl DueRound<'_> {
    /// The next deployment to fire.
    pub(crate) fn next(&mut self) -> Option<Arc<DeploymentId>> {
        let id = self.due.next()?;
        self.current = Some(Arc::clone(&id));
        Some(id)
    }

    /// The one handed out last and not yet [`fired`](Self::fired), which is then no longer
    /// put back: for a caller whose firing of it panicked, to deal with it.
    pub(crate) fn take_current(&mut self) -> Option<Arc<DeploymentId>> {
        self.current.take()
    }

    /// The one handed out last was fired (or firing it failed, and was dealt with): it is no
    /// longer put back. One put back after all, because the round was dropped while its input
    /// was being stored, fires once more and finds nothing due.
    pub(crate) fn fired(&mut self) {
        self.current = None;
    }
}

impl Drop for DueRound<'_> {
    fn drop(&mut self) {
        for id in self.current.take().into_iter().chain(self.due.by_ref()) {
            self.deadlines.add(&id, self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn id(text: &str) -> Arc<DeploymentId> {
        Arc::new(text.into())
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap()
    }

    /// Every deployment due by `now`, each fired.
    fn take_due(d: &Deadlines, now: DateTime<Utc>) -> Vec<Arc<DeploymentId>> {
        let mut round = d.take_due(now);
        std::iter::from_fn(|| {
            let id = round.next();
            round.fired();
            id
        })
        .collect()
    }

    #[test]
    fn due_deadlines_come_out_in_order_and_replacements_move_them() {
        let d = Deadlines::default();
        let (mut a, mut b, mut c) = (None, None, None);
        d.set(&id("a"), &mut a, Some(t(30)));
        d.set(&id("b"), &mut b, Some(t(10)));
        d.set(&id("c"), &mut c, Some(t(20)));
        d.set(&id("a"), &mut a, Some(t(5)));
        d.set(&id("c"), &mut c, None);
        assert_eq!(c, None);
        assert_eq!(d.next(), Some(t(5)));
        assert_eq!(take_due(&d, t(10)), vec![id("a"), id("b")]);
        assert_eq!(d.len(), 0);
        assert!(take_due(&d, t(100)).is_empty());
    }

    /// A slot whose deadline was taken when due is stale: setting the same time again arms it
    /// again, and clearing it removes nothing else.
    #[test]
    fn a_slot_taken_when_due_is_armed_again() {
        let d = Deadlines::default();
        let (mut a, mut b) = (None, None);
        d.set(&id("a"), &mut a, Some(t(10)));
        d.set(&id("b"), &mut b, Some(t(10)));
        d.set(&id("a"), &mut a, Some(t(10)));
        assert_eq!(d.len(), 2, "an unchanged deadline is not added twice");
        assert_eq!(take_due(&d, t(10)).len(), 2);
        d.set(&id("a"), &mut a, Some(t(10)));
        assert_eq!(take_due(&d, t(10)), vec![id("a")]);
        d.set(&id("b"), &mut b, Some(t(30)));
        d.set(&id("a"), &mut a, None);
        assert_eq!(d.next(), Some(t(30)), "b's deadline is kept");
        d.add(&id("b"), t(20));
        assert_eq!(take_due(&d, t(30)).len(), 2);
    }

    #[test]
    fn a_round_dropped_part_way_puts_back_what_it_did_not_fire() {
        let d = Deadlines::default();
        d.add(&id("a"), t(10));
        d.add(&id("b"), t(20));
        d.add(&id("c"), t(40));
        let mut round = d.take_due(t(30));
        assert_eq!(round.next(), Some(id("a")));
        round.fired();
        assert_eq!(round.next(), Some(id("b")));
        drop(round);
        assert_eq!(d.len(), 2, "b, handed out but not fired, is back beside c");
        assert_eq!(take_due(&d, t(30)), vec![id("b")]);
    }

    #[test]
    fn clearing_a_slot_removes_only_its_deadline() {
        let d = Deadlines::default();
        let (mut a, mut b) = (None, None);
        d.set(&id("a"), &mut a, Some(t(10)));
        d.set(&id("b"), &mut b, Some(t(20)));
        d.clear(&mut a);
        assert_eq!(a, None);
        assert_eq!(d.len(), 1);
        assert_eq!(d.next(), Some(t(20)));
        d.clear(&mut a);
        assert_eq!(d.len(), 1, "clearing an empty slot changes nothing");
        assert_eq!(take_due(&d, t(30)), vec![id("b")]);
    }
}
