//! `ifDeploymentInProgress: enqueueOne`: the deployment waiting for the running one of its
//! application, started once that one has finished.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use super::chores::Work;
use super::engine::{Engine, Queued, lock};
use super::error::RuntimeError;
use crate::store::StoreError;

impl Engine {
    /// Starts the deployment queued for `application` once none of it runs. While the store
    /// fails, it is kept queued and tried again by the engine's clock until shutdown
    /// ([`Work::HandOff`]): nothing else would start it.
    pub(crate) async fn hand_off(&self, application: String) {
        self.attempt(Work::HandOff { application }).await;
    }

    /// Starts each deployment queued here whose application no longer runs, and returns how
    /// many it started. A replica calls it on each round of upkeep: the deployment it waits for
    /// may run on another replica, and finish there without this one hearing of it. While a
    /// start is under way it leaves the queue to the next round, rather than hold up the
    /// scheduler loop behind it.
    pub(crate) async fn start_queued(&self) -> usize {
        let applications: Vec<String> = lock(&self.inner.queued).keys().cloned().collect();
        let mut started = 0;
        for application in applications {
            // Carried to its end if the caller stops waiting (an upkeep round under a
            // timeout): the deployment leaves the queue before it is launched.
            let Ok(in_flight) = self.in_flight() else {
                break;
            };
            let engine = self.clone();
            let app = application.clone();
            let hand_off = async move { engine.try_hand_off(&app, Wait::No).await };
            match self.detached(in_flight, hand_off).await {
                Ok(handed_off) => started += usize::from(handed_off == HandOff::Launched),
                Err(e) => {
                    tracing::warn!(%application, error = %e, "could not start the queued deployment; trying again next round");
                }
            }
        }
        started
    }

    /// Resumes a queued deployment that an earlier hand-off stored although its answer was
    /// lost: starting it again cannot succeed, and nothing else drives it before a restart.
    /// A store failure queues it again, to be tried again.
    async fn resume_stored(
        &self,
        application: &str,
        next: Queued,
    ) -> Result<HandOff, RuntimeError> {
        tracing::warn!(deployment = %next.id, "the queued deployment is stored already; resuming it");
        match self.entry(&next.id, true).await {
            Ok(_) => Ok(HandOff::Launched),
            Err(e) => self.failed(application, next, e, "could not be resumed"),
        }
    }

    /// One attempt of [`Engine::hand_off`]; `Err` only for a failure worth trying again, with
    /// the deployment queued again.
    pub(crate) async fn try_hand_off(
        &self,
        application: &str,
        wait: Wait,
    ) -> Result<HandOff, RuntimeError> {
        // Under the start lock, like `start`'s check, so a deployment queued meanwhile is not
        // missed and two never launch together.
        let _serial = match wait {
            Wait::ForStarts => self.inner.start_lock.lock().await,
            Wait::No => match self.inner.start_lock.try_lock() {
                Ok(serial) => serial,
                Err(_) => return Ok(HandOff::StartUnderWay),
            },
        };
        if self.inner.shutdown.is_cancelled() {
            return Ok(HandOff::NotLaunched);
        }
        let Some(next) = lock(&self.inner.queued).remove(application) else {
            return Ok(HandOff::NotLaunched);
        };
        // No look for a running deployment first: the create is exclusive (a queue exists only
        // where deployments of an application do not run side by side), and the store answers
        // it in the same step as the write.
        // A panic (a `Store` implementation's bug) is taken for a failed create that may have
        // been stored: unwound, it would lose the queued deployment, and end the scheduler's
        // round and every one after it.
        let launched = AssertUnwindSafe(self.launch(&next))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Backend {
                    source: format!("starting deployment {} panicked", next.id).into(),
                }
                .into())
            });
        match launched {
            // Another one runs (started elsewhere): this one waits for it to finish.
            Err(RuntimeError::Store(StoreError::ApplicationBusy { .. })) => {
                self.requeue(application, next);
                Ok(HandOff::NotLaunched)
            }
            // Stored by an earlier attempt whose answer was lost: it is not waiting for itself.
            Err(RuntimeError::Store(StoreError::AlreadyExists { .. })) => {
                self.resume_stored(application, next).await
            }
            Err(e) => self.failed(application, next, e, "cannot start"),
            Ok(()) => Ok(HandOff::Launched),
        }
    }

    /// After `next` failed to start or resume with `e`: a store failure queues it again, to be
    /// tried again (`Err`); any other failure is logged as what `it` says, and drops it.
    fn failed(
        &self,
        application: &str,
        next: Queued,
        e: RuntimeError,
        it: &str,
    ) -> Result<HandOff, RuntimeError> {
        if matches!(e, RuntimeError::Store(_)) {
            self.requeue(
                application,
                Queued {
                    maybe_stored: true,
                    ..next
                },
            );
            return Err(e);
        }
        tracing::error!(deployment = %next.id, error = %e, "the queued deployment {it}");
        Ok(HandOff::NotLaunched)
    }

    /// Puts `next` back in the queue of `application`. (The start lock, held meanwhile, kept
    /// any newer deployment from taking its place.)
    fn requeue(&self, application: &str, next: Queued) {
        lock(&self.inner.queued)
            .entry(application.to_owned())
            .or_insert(next);
    }
}

/// How an attempt at a hand-off went, short of a failure to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandOff {
    /// The queued deployment was launched, or resumed where an earlier attempt stored it.
    Launched,
    /// Nothing was queued, another deployment of the application runs, or the queued one
    /// cannot start at all.
    NotLaunched,
    /// A start held the start lock, and the attempt did not wait for it ([`Wait::No`]).
    StartUnderWay,
}

/// Whether a hand-off waits for starts under way to finish.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    ForStarts,
    No,
}
