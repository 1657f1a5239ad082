//! Change notices: one `LISTEN` connection per store, shared by all its watchers.
//!
//! The connection comes from a pool of its own (at most one connection, same connect
//! options), so it never takes a slot of the store's pool, and `PgListener` opens it again and
//! repeats the `LISTEN` after it drops. The task ends when [`Notices::stop`] is called or the
//! store's last clone is dropped, which drops the sending half of the stop signal.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;

use super::backend;
use crate::core::DeploymentId;
use crate::store::{ChangeWatcher, StoreError};

/// The first wait after the listener failed to reconnect; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

type Watchers = Arc<Mutex<Vec<ChangeWatcher>>>;

pub(super) struct Notices {
    channel: String,
    connect_timeout: Duration,
    watchers: Watchers,
    /// The listener task, started by the first `watch`.
    task: OnceCell<Mutex<Option<JoinHandle<()>>>>,
    stop: watch::Sender<bool>,
}

impl Notices {
    pub(super) fn new(channel: String, connect_timeout: Duration) -> Self {
        Self {
            channel,
            connect_timeout,
            watchers: Arc::default(),
            task: OnceCell::new(),
            stop: watch::Sender::new(false),
        }
    }

    /// The channel every `create` and `save` of this schema notifies.
    pub(super) fn channel(&self) -> &str {
        &self.channel
    }

    /// Adds `watcher`, first starting the listener if this is the first one. Returns once the
    /// `LISTEN` is in place, so the watcher hears every write committed after that.
    pub(super) async fn watch(
        &self,
        pool: &PgPool,
        watcher: ChangeWatcher,
    ) -> Result<(), StoreError> {
        // After `close` no listener runs, or would be kept: the watcher would never be called.
        if *self.stop.borrow() {
            return Err(StoreError::Backend {
                source: "the PostgreSQL store is closed: no change notices can be heard".into(),
            });
        }
        self.task.get_or_try_init(|| self.start(pool)).await?;
        self.watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(watcher);
        Ok(())
    }

    async fn start(&self, pool: &PgPool) -> Result<Mutex<Option<JoinHandle<()>>>, StoreError> {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.connect_timeout)
            // The connection is held for good; these would only close it for nothing.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(pool.connect_options().as_ref().clone());
        let mut listener = PgListener::connect_with(&own).await.map_err(backend)?;
        listener.listen(&self.channel).await.map_err(backend)?;
        let task = tokio::spawn(listen(
            listener,
            own,
            Arc::clone(&self.watchers),
            self.stop.subscribe(),
        ));
        Ok(Mutex::new(Some(task)))
    }

    /// Ends the listener task, if one runs, and waits for it to close its connection.
    pub(super) async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self
            .task
            .get()
            .and_then(|t| t.lock().unwrap_or_else(PoisonError::into_inner).take());
        if let Some(task) = task {
            // A task that panicked has stopped too, which is all that is waited for.
            let _ = task.await;
        }
    }
}

async fn listen(
    mut listener: PgListener,
    pool: PgPool,
    watchers: Watchers,
    mut stop: watch::Receiver<bool>,
) {
    let mut retry = FIRST_RETRY;
    loop {
        // `wait_for` also returns when the sender is dropped with the store.
        let received = tokio::select! {
            _ = stop.wait_for(|&stopped| stopped) => break,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notice)) => {
                retry = FIRST_RETRY;
                deliver(&watchers, notice.payload());
            }
            // The connection dropped and `PgListener` has opened it again.
            Ok(None) => tracing::warn!(
                "the PostgreSQL change-notice connection dropped and was reopened; notices \
                 sent in between are lost"
            ),
            Err(error) => {
                tracing::warn!(%error, ?retry, "cannot listen for PostgreSQL change notices; retrying");
                tokio::select! {
                    _ = stop.wait_for(|&stopped| stopped) => break,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
    drop(listener);
    pool.close().await;
}

/// Calls every watcher with the notice's deployment and version; a payload not written by
/// this release (`<version> <id>`) is ignored.
fn deliver(watchers: &Watchers, payload: &str) {
    let Some((version, id)) = payload
        .split_once(' ')
        .and_then(|(v, id)| Some((v.parse::<u64>().ok()?, DeploymentId(id.to_owned()))))
    else {
        tracing::debug!(payload, "ignored a change notice of an unknown form");
        return;
    };
    // Called after the lock is released, so that a watcher may add another.
    let watchers = watchers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for watcher in watchers {
        watcher(&id, version);
    }
}
