//! One table of deadlines for every deployment, so that waiting deployments cost an entry each,
//! not a task or a timer each.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::core::DeploymentId;

#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    table: Mutex<Table>,
    /// Wakes the scheduler loop when an earlier deadline appears.
    pub(crate) changed: Notify,
}

#[derive(Debug, Default)]
struct Table {
    /// Ordered by time, then by when the deadline was set: integer keys, so that moving a
    /// deadline (every input does) compares and copies no ids.
    by_time: BTreeMap<(DateTime<Utc>, u64), DeploymentId>,
    by_id: HashMap<DeploymentId, (DateTime<Utc>, u64)>,
    next_seq: u64,
}

impl Deadlines {
    /// Records the next deadline of a deployment (`None`: it has none).
    pub(crate) fn set(&self, id: &DeploymentId, at: Option<DateTime<Utc>>) {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let old = t.by_id.get(id).map(|&(old, _)| old);
        if old == at {
            return;
        }
        if let Some(key) = t.by_id.remove(id) {
            t.by_time.remove(&key);
        }
        let Some(at) = at else { return };
        let earliest = t
            .by_time
            .first_key_value()
            .is_none_or(|(first, _)| at < first.0);
        let key = (at, t.next_seq);
        t.next_seq += 1;
        t.by_time.insert(key, id.clone());
        t.by_id.insert(id.clone(), key);
        drop(t);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// The earliest deadline, if any.
    pub(crate) fn next(&self) -> Option<DateTime<Utc>> {
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        t.by_time.first_key_value().map(|((at, _), _)| *at)
    }

    /// Removes and returns every deployment whose deadline is at or before `now`, earliest
    /// first.
    pub(crate) fn take_due(&self, now: DateTime<Utc>) -> Vec<DeploymentId> {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut due = Vec::new();
        while t
            .by_time
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= now)
        {
            let Some((_, id)) = t.by_time.pop_first() else {
                break;
            };
            t.by_id.remove(&id);
            due.push(id);
        }
        due
    }

    /// How many deployments have a deadline.
    pub(crate) fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .len()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn due_deadlines_come_out_in_order_and_replacements_move_them() {
        let d = Deadlines::default();
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        d.set(&"a".into(), Some(t(30)));
        d.set(&"b".into(), Some(t(10)));
        d.set(&"c".into(), Some(t(20)));
        d.set(&"a".into(), Some(t(5)));
        d.set(&"c".into(), None);
        assert_eq!(d.next(), Some(t(5)));
        assert_eq!(
            d.take_due(t(10)),
            vec!["a".into(), "b".into()] as Vec<DeploymentId>
        );
        assert_eq!(d.len(), 0);
        assert!(d.take_due(t(100)).is_empty());
    }
}
