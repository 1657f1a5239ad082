//! The memory store's event history: every write's events, of every deployment, in the order
//! written, in segments of a fixed number of events.
//!
//! A write's events are copied into the current segment rather than given an allocation of
//! their own: allocations that are kept for good never come back to the allocator's caches, so
//! each one took its slow path, and that was a large part of a callback's cost here. A full
//! segment is never copied to grow; a new one is started instead.

use std::ops::Range;

use crate::core::Event;

/// How many events a segment holds (more for a write that carries more on its own). A segment
/// of 1024 events (72 KiB) is under glibc's threshold for mapping an allocation afresh, so it
/// is carved from memory the process has used before; segments of 4096 events (288 KiB) were
/// mapped anew each time, and the page faults of filling them cost about 5% of a callback
/// (`engine_callbacks`, alternating builds).
const SEGMENT: usize = 1024;

#[derive(Default)]
pub(super) struct Log {
    segments: Vec<Vec<Event>>,
}

/// Where one write's events are in the [`Log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Place {
    segment: usize,
    events: Range<usize>,
}

impl Log {
    /// Appends `events`, all in one segment; returns where they are.
    pub(super) fn append(&mut self, events: &[Event]) -> Place {
        let room = |segment: &Vec<Event>| segment.capacity() - segment.len() >= events.len();
        if !self.segments.last().is_some_and(room) {
            self.segments
                .push(Vec::with_capacity(SEGMENT.max(events.len())));
        }
        let segment = self.segments.len() - 1;
        let start = self.segments.last().map_or(0, Vec::len);
        if let Some(last) = self.segments.last_mut() {
            last.extend_from_slice(events);
        }
        Place {
            segment,
            events: start..start + events.len(),
        }
    }

    /// The events written at `place`.
    pub(super) fn get(&self, place: &Place) -> &[Event] {
        self.segments
            .get(place.segment)
            .and_then(|segment| segment.get(place.events.clone()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::core::EventKind;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event {
                at: Utc::now(),
                kind: EventKind::Progress {
                    gate: crate::config::GateId(0),
                    message: format!("{i}"),
                },
            })
            .collect()
    }

    #[test]
    fn writes_come_back_whole_across_segments() {
        let mut log = Log::default();
        let writes: Vec<Vec<Event>> = [3, SEGMENT - 4, 2, 5, SEGMENT + 7, 1]
            .into_iter()
            .map(events)
            .collect();
        let places: Vec<Place> = writes.iter().map(|w| log.append(w)).collect();
        for (write, place) in writes.iter().zip(&places) {
            assert_eq!(log.get(place), &write[..]);
        }
        assert_eq!(
            places[1].segment, 0,
            "the second write fits beside the first"
        );
        assert_eq!(
            places[2].segment, 1,
            "the third does not, and starts a segment"
        );
        assert_eq!(
            places[4].segment, 2,
            "a write larger than a segment gets its own"
        );
        assert_eq!(log.segments.len(), 4);
    }
}
