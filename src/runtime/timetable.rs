//! Things due at a time, earliest first: the shape both the deployments' deadlines
//! ([`Deadlines`](super::scheduler::Deadlines)) and the engine's owed work
//! ([`Chores`](super::chores::Chores)) are kept in. Neither locks here; each holds its
//! timetable under a lock of its own.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// Where an entry is in a [`Timetable`]: its time, then the order in which it was added, so
/// that entries due at the same time come out in that order, and a place is never used twice.
pub(crate) type Place = (DateTime<Utc>, u64);

/// Entries of type `V`, each due at a time.
#[derive(Debug)]
pub(crate) struct Timetable<V> {
    /// Integer keys, so that moving an entry compares and copies no value.
    by_time: BTreeMap<Place, V>,
    next_seq: u64,
}

impl<V> Default for Timetable<V> {
    fn default() -> Self {
        Self {
            by_time: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<V> Timetable<V> {
    /// Adds `value`, due `at`; returns its place, and whether it is now the earliest (a
    /// sleeper waiting for the earliest should then be woken).
    #[inline]
    pub(crate) fn insert(&mut self, at: DateTime<Utc>, value: V) -> (Place, bool) {
        let earliest = self.first_time().is_none_or(|first| at < first);
        let place = (at, self.next_seq);
        self.next_seq += 1;
        self.by_time.insert(place, value);
        (place, earliest)
    }

    /// Takes out the entry at `place`, if it is still there.
    #[inline]
    pub(crate) fn remove(&mut self, place: &Place) -> Option<V> {
        self.by_time.remove(place)
    }

    /// Whether an entry is at `place`.
    #[inline]
    pub(crate) fn contains(&self, place: &Place) -> bool {
        self.by_time.contains_key(place)
    }

    /// The earliest entry's time, if any.
    #[inline]
    pub(crate) fn first_time(&self) -> Option<DateTime<Utc>> {
        self.by_time.first_key_value().map(|((at, _), _)| *at)
    }

    /// Takes out the earliest entry, if it is due at or before `now`.
    #[inline]
    pub(crate) fn pop_due(&mut self, now: DateTime<Utc>) -> Option<V> {
        if self.first_time()? > now {
            return None;
        }
        self.by_time.pop_first().map(|(_, value)| value)
    }

    /// The place of the first entry, in time order, for which `pick` is true.
    pub(crate) fn find(&self, mut pick: impl FnMut(&V) -> bool) -> Option<Place> {
        self.by_time
            .iter()
            .find_map(|(place, value)| pick(value).then_some(*place))
    }

    /// How many entries there are.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.by_time.len()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap()
    }

    #[test]
    fn entries_come_out_by_time_then_by_when_they_were_added_and_only_when_due() {
        let mut table = Timetable::default();
        assert!(table.insert(t(20), "b").1, "the first is the earliest");
        assert!(table.insert(t(10), "a").1, "earlier than b");
        assert!(!table.insert(t(10), "a2").1, "not earlier than a");
        assert!(!table.insert(t(30), "c").1);
        assert_eq!(table.first_time(), Some(t(10)));
        assert_eq!(table.pop_due(t(9)), None, "none due yet");
        let due: Vec<_> = std::iter::from_fn(|| table.pop_due(t(25))).collect();
        assert_eq!(due, ["a", "a2", "b"]);
        assert_eq!(table.len(), 1, "c is still to come");
    }

    #[test]
    fn a_place_is_never_used_twice() {
        let mut table = Timetable::default();
        let (first, _) = table.insert(t(10), 1);
        assert_eq!(table.remove(&first), Some(1));
        let (second, _) = table.insert(t(10), 2);
        assert_ne!(first, second);
        assert!(!table.contains(&first), "the old place stays empty");
        assert_eq!(table.remove(&first), None);
        assert!(table.contains(&second));
    }

    #[test]
    fn find_gives_the_earliest_match_and_its_place() {
        let mut table = Timetable::default();
        table.insert(t(30), "x");
        let (place, _) = table.insert(t(20), "x");
        table.insert(t(10), "y");
        assert_eq!(table.find(|v| *v == "x"), Some(place));
        assert_eq!(table.find(|v| *v == "z"), None);
    }
}
