//! Where the runtime gets `now` from.
//!
//! The core never reads a clock: every input carries `now`. The layers around it (runtime, token
//! caches, signature verification) ask a [`Clock`], so tests can substitute a manual one
//! (`hookgate::test_util::ManualClock`, feature `test-util`).

use chrono::{DateTime, Utc};

/// A source of the current wall-clock time.
///
/// Wall-clock (not monotonic) time is used throughout because deadlines such as the 24-hour
/// callback timeout are stored and must mean the same after a restart.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}
