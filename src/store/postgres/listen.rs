//! Change notices: one `LISTEN` connection per store, shared by all its watchers.
//!
//! The connection comes from a pool of its own (at most one connection, same connect
//! options), so it never takes a slot of the store's pool. The task ends when
//! [`Notices::stop`] is called or the store's last clone is dropped, which drops the sending
//! half of the stop signal.
//!
//! The connection only reads, so a network device that drops it without a reset (a NAT after
//! some quiet minutes) would leave it waiting for good. After a heartbeat's time without a
//! notice the task asks the server something; the traffic keeps such devices from dropping the
//! connection. A connection that drops, fails, or does not answer within another heartbeat is
//! replaced by a new one on a pool of its own, which repeats the `LISTEN`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Executor, PgPool};
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;

use super::backend;
use crate::core::DeploymentId;
use crate::store::{ChangeWatcher, StoreError};

/// The first wait before a new connection replaces one that failed; it doubles up to
/// [`MAX_RETRY`] while they keep failing.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// How long closing waits for the connection to be given back: one that stopped answering is
/// given back only once the network gives up on it.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The shortest heartbeat [`Notices`] keeps to: a shorter one would have it ask the server
/// something all the time.
pub(super) const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

type Watchers = Arc<Mutex<Vec<ChangeWatcher>>>;

pub(super) struct Notices {
    channel: String,
    connect_timeout: Duration,
    heartbeat: Duration,
    watchers: Watchers,
    /// The listener task, started by the first `watch`.
    task: OnceCell<Mutex<Option<JoinHandle<()>>>>,
    stop: watch::Sender<bool>,
}

impl Notices {
    /// Notices on `channel`, whose connection is asked something after `heartbeat` without a
    /// notice (at least [`MIN_HEARTBEAT`]).
    pub(super) fn new(channel: String, connect_timeout: Duration, heartbeat: Duration) -> Self {
        Self {
            channel,
            connect_timeout,
            heartbeat: heartbeat.max(MIN_HEARTBEAT),
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
            return Err(StoreError::Closed {
                store: "PostgreSQL",
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
        let connection = Connection {
            options: pool.connect_options().as_ref().clone(),
            connect_timeout: self.connect_timeout,
            channel: self.channel.clone(),
        };
        let (listener, own) = connection.open().await.map_err(backend)?;
        let task = tokio::spawn(listen(
            Listening {
                listener,
                pool: own,
                connection,
                heartbeat: self.heartbeat,
            },
            Arc::clone(&self.watchers),
            self.stop.subscribe(),
        ));
        Ok(Mutex::new(Some(task)))
    }

    /// Ends the listener task, if one runs, and waits for it to close its connection, or
    /// [`CLOSE_WAIT`] for one that stopped answering.
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

/// What opens the `LISTEN` connection, and a new one when it drops, fails or stops answering.
struct Connection {
    options: PgConnectOptions,
    connect_timeout: Duration,
    channel: String,
}

impl Connection {
    /// A listener on a pool of its own, `LISTEN`ing; within the connect timeout, as the
    /// connection may be opened through the same network that lost the last one.
    async fn open(&self) -> Result<(PgListener, PgPool), sqlx::Error> {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.connect_timeout)
            // The connection is held for good; these would only close it for nothing.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(self.options.clone());
        let listening = async {
            let mut listener = PgListener::connect_with(&own).await?;
            // Its own reconnecting would happen inside `try_recv`, where the heartbeat's timeout
            // could cut it short and leave the listener without its buffer of notices: a lost
            // connection is replaced here instead.
            listener.eager_reconnect(false);
            listener.listen(&self.channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match tokio::time::timeout(self.connect_timeout, listening).await {
            Ok(listener) => Ok((listener?, own)),
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }
}

/// The listener task's connection, and how to replace it.
struct Listening {
    listener: PgListener,
    pool: PgPool,
    connection: Connection,
    heartbeat: Duration,
}

async fn listen(mut l: Listening, watchers: Watchers, mut stop: watch::Receiver<bool>) {
    let mut retry = FIRST_RETRY;
    loop {
        // `wait_for` also returns when the sender is dropped with the store.
        let received = tokio::select! {
            _ = stop.wait_for(|&stopped| stopped) => break,
            received = tokio::time::timeout(l.heartbeat, l.listener.try_recv()) => received,
        };
        match received {
            Ok(Ok(Some(notice))) => {
                retry = FIRST_RETRY;
                deliver(&watchers, notice.payload());
                continue;
            }
            Ok(Ok(None)) => tracing::warn!(
                "the PostgreSQL change-notice connection dropped; opening another, and notices \
                 sent in between are lost"
            ),
            Ok(Err(error)) => tracing::warn!(
                %error,
                "cannot listen for PostgreSQL change notices; opening another connection"
            ),
            // Quiet for a heartbeat. Giving up on `try_recv` is safe here: with no reconnecting
            // of its own (see `Connection::open`) it only waits to read, which keeps a message
            // read in part for the next call.
            Err(_) => {
                let answered = tokio::select! {
                    _ = stop.wait_for(|&stopped| stopped) => break,
                    answered = tokio::time::timeout(l.heartbeat, l.listener.execute("SELECT 1")) => answered,
                };
                match answered {
                    Ok(Ok(_)) => {
                        retry = FIRST_RETRY;
                        continue;
                    }
                    Ok(Err(error)) => tracing::warn!(
                        %error,
                        "the PostgreSQL change-notice connection failed a heartbeat; opening \
                         another, and notices sent in between are lost"
                    ),
                    Err(_) => tracing::warn!(
                        heartbeat = ?l.heartbeat,
                        "the PostgreSQL change-notice connection did not answer a heartbeat; \
                         opening another, and notices sent in between are lost"
                    ),
                }
            }
        }
        // A connection that keeps failing at once is opened again less and less often.
        tokio::select! {
            _ = stop.wait_for(|&stopped| stopped) => break,
            () = reopen(&mut l, &mut retry) => {}
        }
    }
    let Listening { listener, pool, .. } = l;
    drop(listener);
    // A connection that stopped answering is returned to its pool only once the network gives
    // up on it: the store's `close` does not wait that long.
    let _ = tokio::time::timeout(CLOSE_WAIT, pool.close()).await;
}

/// Replaces the listener and its connection with new ones, after waiting `retry`, which then
/// doubles (up to [`MAX_RETRY`]) with every failed attempt and every call. The new connection
/// is on a pool of its own: the old one may hold its pool's only slot until the network gives
/// up on it, many minutes later.
async fn reopen(l: &mut Listening, retry: &mut Duration) {
    loop {
        tokio::time::sleep(*retry).await;
        *retry = (*retry * 2).min(MAX_RETRY);
        match l.connection.open().await {
            Ok((listener, pool)) => {
                // Dropped, the old listener sends `UNLISTEN` on its connection, if it still has
                // one, in a task of sqlx's, which then returns the connection to the old pool,
                // ending both: at once on a connection that answers, once the network gives up
                // on one that does not.
                l.listener = listener;
                l.pool = pool;
                return;
            }
            Err(error) => tracing::warn!(
                %error,
                retry = ?*retry,
                "cannot open a PostgreSQL change-notice connection; retrying"
            ),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat of nothing would have the task ask the server something all the time.
    #[test]
    fn a_heartbeat_is_never_shorter_than_the_least() {
        let notices = |heartbeat| Notices::new("c".into(), Duration::from_secs(1), heartbeat);
        assert_eq!(notices(Duration::ZERO).heartbeat, MIN_HEARTBEAT);
        assert_eq!(
            notices(Duration::from_secs(30)).heartbeat,
            Duration::from_secs(30)
        );
    }
}
