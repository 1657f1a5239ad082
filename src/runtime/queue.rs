//! `ifDeploymentInProgress: enqueueOne`: the deployment waiting for the running one of its
//! application, started once that one has finished.

use super::engine::{Engine, Queued, lock};
use super::error::RuntimeError;

impl Engine {
    /// Starts the deployment queued for `application` once none of it runs. While the store
    /// fails, it is kept queued and tried again until shutdown: nothing else would start it.
    pub(crate) async fn hand_off(&self, application: String) {
        self.until_done("start the queued deployment", || {
            self.try_hand_off(&application)
        })
        .await;
    }

    /// One attempt of [`Engine::hand_off`]: `Err` only for a failure worth trying again, with
    /// the deployment queued again unless a newer one took its place meanwhile.
    async fn try_hand_off(&self, application: &str) -> Result<(), RuntimeError> {
        // Under the start lock, like `start`'s check, so a deployment queued meanwhile is not
        // missed and two never launch together.
        let _serial = self.inner.start_lock.lock().await;
        if self.inner.shutdown.is_cancelled() {
            return Ok(());
        }
        let Some(next) = lock(&self.inner.queued).remove(application) else {
            return Ok(());
        };
        match self.inner.store.running_for_application(application).await {
            Ok(running) if running.is_empty() => {}
            // Another one runs (started elsewhere): this one waits for it to finish.
            Ok(_) => {
                self.requeue(application, next);
                return Ok(());
            }
            Err(e) => {
                self.requeue(application, next);
                return Err(e.into());
            }
        }
        let plan = match self.plan_for(&next.source) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(deployment = %next.id, error = %e, "the queued deployment cannot start");
                return Ok(());
            }
        };
        let launched = self
            .launch(
                next.id.clone(),
                plan,
                next.source.clone(),
                next.context.clone(),
                next.tenant.clone(),
            )
            .await;
        match launched {
            Err(RuntimeError::Store(e)) => {
                self.requeue(application, next);
                Err(e.into())
            }
            Err(e) => {
                tracing::error!(deployment = %next.id, error = %e, "the queued deployment cannot start");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Puts `next` back in the queue of `application`. (The start lock, held meanwhile, kept
    /// any newer deployment from taking its place.)
    fn requeue(&self, application: &str, next: Queued) {
        lock(&self.inner.queued)
            .entry(application.to_owned())
            .or_insert(next);
    }
}
