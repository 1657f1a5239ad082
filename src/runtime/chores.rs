//! Work the engine owes that no deployment in memory carries: starting the deployment queued
//! behind one that finished, and canceling one replaced in the queue where it may be stored.
//! Nothing else would do either, so a failure is tried again; by the engine's clock, as a
//! deployment's failed write is, so that the scheduler's rounds, or a test's calls of
//! [`Engine::fire_due`] on a manual clock, drive these retries too.

use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;

use super::engine::{Engine, Withdrawn, retry_wait};
use super::error::RuntimeError;
use super::queue::{HandOff, Wait};
use super::timetable::Timetable;
use crate::core::{DeploymentId, later};

/// Work owed, and how many times in a row it failed.
#[derive(Debug)]
pub(crate) struct Chore {
    pub(crate) work: Work,
    failures: u8,
}

/// What a [`Chore`] does.
#[derive(Debug)]
pub(crate) enum Work {
    /// Start the deployment queued for `application`, if one still is.
    HandOff { application: String },
    /// Cancel `id`, taken out of the queue, where it is stored all the same.
    Cancel {
        id: DeploymentId,
        by: String,
        withdrawn: Withdrawn,
    },
}

/// The chores waiting for their time, by the engine's clock.
#[derive(Debug, Default)]
pub(crate) struct Chores {
    table: Mutex<Timetable<Chore>>,
}

impl Chores {
    /// Adds `chore`, due `at`; whether it is now the earliest. An application has one
    /// hand-off waiting at most, since either starts whatever is queued then: the one due
    /// sooner is kept, with its count of failures.
    fn add(&self, chore: Chore, at: DateTime<Utc>) -> bool {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Work::HandOff { application } = &chore.work {
            let waiting = t.find(
                |other| matches!(&other.work, Work::HandOff { application: a } if a == application),
            );
            if let Some(place) = waiting {
                if place.0 <= at {
                    return false;
                }
                t.remove(&place);
            }
        }
        t.insert(at, chore).1
    }

    /// The earliest chore's time, if any.
    pub(crate) fn next(&self) -> Option<DateTime<Utc>> {
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        t.first_time()
    }

    /// Takes out the earliest chore due at or before `now`.
    fn take_due(&self, now: DateTime<Utc>) -> Option<Chore> {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        t.pop_due(now)
    }

    /// How many chores wait.
    pub(crate) fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Engine {
    /// Does `work` now; if it fails, the engine owes it, and tries it again by its clock a
    /// second from now.
    pub(crate) async fn attempt(&self, work: Work) {
        self.do_chore(Chore { work, failures: 0 }, Wait::ForStarts)
            .await;
    }

    /// Arms `chore` again after one more failure: a second later, twice as long after each
    /// further failure in a row, up to eight seconds, as a deployment's failed writes.
    fn try_again(&self, mut chore: Chore) {
        chore.failures = chore.failures.saturating_add(1);
        let at = later(self.inner.clock.now(), retry_wait(chore.failures));
        self.arm(chore, at);
    }

    /// Adds `chore`, due `at`, waking the scheduler if it is now the earliest.
    fn arm(&self, chore: Chore, at: DateTime<Utc>) {
        if self.inner.chores.add(chore, at) {
            self.inner.deadlines.changed.notify_one();
        }
    }

    /// Does every chore due by the engine's clock, until `budget` of real time has passed
    /// (measured from `started`); returns how many it did. Each is carried to its end if the
    /// caller stops waiting: taken out of the table, it would otherwise be lost.
    pub(crate) async fn do_due_chores(
        &self,
        started: std::time::Instant,
        budget: Option<std::time::Duration>,
    ) -> usize {
        let mut done = 0;
        while budget.is_none_or(|budget| started.elapsed() <= budget) {
            let Ok(in_flight) = self.in_flight() else {
                break;
            };
            let Some(chore) = self.inner.chores.take_due(self.inner.clock.now()) else {
                break;
            };
            let engine = self.clone();
            let chore = async move {
                // Unwound, a panic (a bug) would end the scheduler's round and every one after
                // it; it ends this chore, as it ended the task that did it before.
                let attempt = AssertUnwindSafe(engine.do_chore(chore, Wait::No));
                if attempt.catch_unwind().await.is_err() {
                    tracing::error!("work the engine owed panicked; it is dropped");
                }
            };
            self.detached(in_flight, chore).await;
            done += 1;
        }
        done
    }

    /// One attempt at `chore`; a failure arms it again. A hand-off that finds a start under
    /// way waits for it, or if `wait` says not to, waits for it in a task (see
    /// [`Engine::hand_off_in_turn`]).
    async fn do_chore(&self, chore: Chore, wait: Wait) {
        let done = match &chore.work {
            Work::HandOff { application } => match self.try_hand_off(application, wait).await {
                Ok(HandOff::StartUnderWay) => return self.hand_off_in_turn(chore),
                handed_off => handed_off.map(drop),
            },
            Work::Cancel { id, by, withdrawn } => self.cancel_withdrawn(id, by, withdrawn).await,
        };
        match done {
            Ok(()) | Err(RuntimeError::ShuttingDown) => {}
            Err(e) => {
                tracing::warn!(error = %e, chore = ?chore.work, "could not do owed work; trying again later by the engine's clock");
                self.try_again(chore);
            }
        }
    }

    /// Waits for the start lock in a task, in turn with the starts, and then hands off. The
    /// scheduler's round does not wait there: a start may wait on a slow store, and the round's
    /// lease upkeep would wait with it. Nor does it only try the lock again later: a steady run
    /// of starts could then put the queued deployment off for good.
    fn hand_off_in_turn(&self, chore: Chore) {
        let engine = self.clone();
        self.inner
            .tasks
            .spawn(async move { engine.do_chore(chore, Wait::ForStarts).await });
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap()
    }

    fn hand_off(application: &str) -> Chore {
        Chore {
            work: Work::HandOff {
                application: application.to_owned(),
            },
            failures: 1,
        }
    }

    #[test]
    fn an_application_has_one_hand_off_waiting_the_one_due_sooner() {
        let c = Chores::default();
        c.add(hand_off("a"), t(10));
        assert!(!c.add(hand_off("a"), t(20)), "a later one is not added");
        assert_eq!((c.len(), c.next()), (1, Some(t(10))));
        assert!(c.add(hand_off("a"), t(5)), "a sooner one takes its place");
        assert_eq!((c.len(), c.next()), (1, Some(t(5))));
        c.add(hand_off("b"), t(1));
        assert_eq!(c.len(), 2, "another application's is its own");
    }
}
