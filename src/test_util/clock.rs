use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::Clock;

/// A clock that moves only when told to. Clones share the same time.
///
/// Moving it wakes nothing: a task sleeping until a time this clock reads (the engine's
/// [`run_scheduler`] sleeps on Tokio's timer) does not notice. With an engine, call
/// [`Engine::fire_due`] (and a replica's lease upkeep) after moving it, rather than running the
/// scheduler.
///
/// ```
/// use chrono::{TimeDelta, TimeZone, Utc};
/// use hookgate::{clock::Clock, test_util::ManualClock};
/// let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
/// clock.advance(TimeDelta::hours(24));
/// assert_eq!(clock.now(), Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap());
/// ```
// The engine is built with feature `runtime`: without it, the links go to docs.rs, which
// builds every feature.
#[cfg_attr(
    feature = "runtime",
    doc = "[`run_scheduler`]: crate::runtime::Engine::run_scheduler\n\
           [`Engine::fire_due`]: crate::runtime::Engine::fire_due"
)]
#[cfg_attr(
    not(feature = "runtime"),
    doc = "[`run_scheduler`]: https://docs.rs/hookgate/latest/hookgate/runtime/struct.Engine.html#method.run_scheduler\n\
           [`Engine::fire_due`]: https://docs.rs/hookgate/latest/hookgate/runtime/struct.Engine.html#method.fire_due"
)]
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward (or backward, for a negative delta), stopping at the latest
    /// time chrono represents, [`DateTime::<Utc>::MAX_UTC`] (or the earliest, `MIN_UTC`),
    /// instead of panicking: the core puts a deadline too far away to represent at `MAX_UTC`,
    /// and a test jumping to it must still be able to move on.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now = shifted(*now, by);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `at + by`, saturating at [`DateTime::<Utc>::MAX_UTC`] and `MIN_UTC`.
pub(super) fn shifted(at: DateTime<Utc>, by: TimeDelta) -> DateTime<Utc> {
    at.checked_add_signed(by)
        .unwrap_or(if by < TimeDelta::zero() {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_past_the_representable_range_stops_at_its_ends() {
        let start = DateTime::from_timestamp(0, 0).unwrap();
        let clock = ManualClock::new(start);
        clock.advance(TimeDelta::MAX);
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
        clock.advance(TimeDelta::seconds(1));
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
        clock.advance(TimeDelta::seconds(-1));
        assert_eq!(
            clock.now(),
            DateTime::<Utc>::MAX_UTC - TimeDelta::seconds(1)
        );

        clock.set(start);
        clock.advance(TimeDelta::MIN);
        assert_eq!(clock.now(), DateTime::<Utc>::MIN_UTC);
        clock.advance(-TimeDelta::seconds(1));
        assert_eq!(clock.now(), DateTime::<Utc>::MIN_UTC);
    }
}
