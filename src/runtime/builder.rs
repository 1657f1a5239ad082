use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::engine::{Engine, Inner};
use super::host::Host;
use super::replica::{Replica, ReplicaOptions};
use super::scheduler::Deadlines;
use crate::clock::{Clock, SystemClock};
use crate::core::{IdSource, Settings};
use crate::ids::RandomIds;
use crate::outbound::Dispatcher;
use crate::store::{DynStore, MemoryStore, Store};

/// Builds an [`Engine`]. Defaults: an in-memory store, the system clock, callback and
/// deployment ids from the operating system's randomness, [`Settings::default`], room for 4096
/// unread events per subscriber.
pub struct EngineBuilder {
    dispatcher: Dispatcher,
    host: Arc<dyn Host>,
    store: Arc<DynStore>,
    clock: Arc<dyn Clock>,
    ids: Box<dyn IdSource + Send>,
    settings: Settings,
    event_capacity: usize,
    allow_concurrent: bool,
    replica: Option<ReplicaOptions>,
}

impl Engine {
    /// A builder for an engine that sends webhooks with `dispatcher` and asks `host` for host
    /// steps.
    pub fn builder(dispatcher: Dispatcher, host: impl Host) -> EngineBuilder {
        EngineBuilder {
            dispatcher,
            host: Arc::new(host),
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(SystemClock),
            ids: Box::new(RandomIds),
            settings: Settings::default(),
            event_capacity: 4096,
            allow_concurrent: false,
            replica: None,
        }
    }
}

impl EngineBuilder {
    /// Where deployments are kept.
    pub fn store(mut self, store: impl Store + 'static) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Where deployments are kept, shared with other users of the store.
    pub fn shared_store(mut self, store: Arc<DynStore>) -> Self {
        self.store = store;
        self
    }

    /// Where `now` comes from.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Where callback ids, deployment ids and jitter seeds come from.
    pub fn ids(mut self, ids: impl IdSource + Send + 'static) -> Self {
        self.ids = Box::new(ids);
        self
    }

    /// Deployment-wide settings for new deployments (callback timeout, backoff, progress-note
    /// limit).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// How many unread events a subscriber may fall behind before it misses some.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Lets deployments of the same application run at the same time, ignoring the file's
    /// `ifDeploymentInProgress`: for hosts that serialise deployments themselves, and for load
    /// tests that run one plan many times.
    pub fn allow_concurrent_deployments(mut self, allow: bool) -> Self {
        self.allow_concurrent = allow;
        self
    }

    /// Makes the engine one of several replicas sharing its store (which must implement
    /// leases and change notices: `PostgresStore` across processes, [`MemoryStore`] within
    /// one). Each replica drives the deployments it holds leases on, applies any input it
    /// receives, and takes over the deployments of a replica that stopped; see
    /// [`Engine::maintain_leases`]. Without it the engine assumes it is the store's only user.
    ///
    /// Run [`Engine::run_scheduler`] in a task: besides deadlines it renews the leases and
    /// takes up the store's change notices, which queue in memory until it does.
    ///
    /// Two replicas starting the same application at the same moment start it once: the store
    /// checks for a running deployment of the application as it writes the new one
    /// ([`NewDeployment::exclusive`](crate::store::NewDeployment::exclusive)), and the other
    /// start follows `ifDeploymentInProgress`. An `enqueueOne` deployment waits in the memory of
    /// the replica that was asked to start it, which starts it at its next lease upkeep after
    /// the running one finished, wherever that ran.
    pub fn replica(mut self, options: ReplicaOptions) -> Self {
        self.replica = Some(options);
        self
    }

    /// The engine. Call [`Engine::recover`] before serving, and run [`Engine::run_scheduler`]
    /// in a task.
    pub fn build(self) -> Engine {
        let (events, _) = broadcast::channel(self.event_capacity);
        Engine {
            inner: Arc::new(Inner {
                store: self.store,
                dispatcher: Arc::new(self.dispatcher),
                host: self.host,
                clock: self.clock,
                ids: Mutex::new(self.ids),
                settings: self.settings,
                live: Mutex::default(),
                callbacks: Mutex::default(),
                plans: Mutex::new(HashMap::new()),
                allow_concurrent: self.allow_concurrent,
                queued: Mutex::new(HashMap::new()),
                start_lock: Arc::new(AsyncMutex::new(())),
                deadlines: Deadlines::default(),
                events,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                replica: self.replica.map(Replica::new),
            }),
        }
    }
}
