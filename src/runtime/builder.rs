use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::chores::Chores;
use super::engine::{Engine, Inner};
use super::failed_loads::FailedLoads;
use super::host::Host;
use super::launches::Launches;
use super::recoveries::Recoveries;
use super::replica::{Replica, ReplicaOptions};
use super::scheduler::Deadlines;
use super::unsure_creates::UnsureCreates;
use crate::clock::{Clock, SystemClock};
use crate::core::{IdSource, Settings};
use crate::ids::RandomIds;
use crate::outbound::Dispatcher;
use crate::store::{DynStore, MemoryStore, Store};

/// Builds an [`Engine`]. Defaults: an in-memory store, the system clock, callback and
/// deployment ids from the operating system's randomness, [`Settings::default`], room for 4096
/// unread events per subscriber.
#[must_use = "a builder does nothing until `build` is called"]
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

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("dispatcher", &self.dispatcher)
            .field("settings", &self.settings)
            .field("event_capacity", &self.event_capacity)
            .field("allow_concurrent", &self.allow_concurrent)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// The largest [`EngineBuilder::event_capacity`]: the channel sets aside every slot as it is
/// made (and panics beyond `usize::MAX / 2`), and sixteen times the default is room enough for
/// a subscriber that is only slow.
const MAX_EVENT_CAPACITY: usize = 1 << 16;

impl Engine {
    /// A builder for an engine that sends webhooks with `dispatcher` and asks `host` for host
    /// steps. Its store is a [`MemoryStore`] unless [`store`](EngineBuilder::store) or
    /// [`shared_store`](EngineBuilder::shared_store) gives another: deployments kept in memory
    /// only are lost on a restart.
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
    /// Where deployments are kept (by default a [`MemoryStore`], which a restart empties).
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

    /// How many unread events a subscriber may fall behind before it misses some (default
    /// 4096): at least 1 and at most 65 536 (2¹⁶), a larger value being taken as that, and
    /// rounded up to a power of two.
    ///
    /// Room for every one of them is set aside when the engine is built, whether or not anyone
    /// subscribes: about 120 bytes each, so 8 MiB at the most. A subscriber further behind
    /// than that had better read the deployments' history from the store, which keeps every
    /// event.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.clamp(1, MAX_EVENT_CAPACITY);
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
    /// the running one finished, wherever that ran. Each replica keeps its own queue: a
    /// deployment queued on one is not replaced by a newer one queued on another, and the two
    /// start one after the other, in either order. Send the starts of an application that
    /// uses `enqueueOne` to one replica to keep a newer deployment replacing the one waiting.
    ///
    /// A lease shorter than [`ReplicaOptions::MIN_LEASE`] is taken as that long.
    pub fn replica(mut self, mut options: ReplicaOptions) -> Self {
        options.lease = options.lease.max(ReplicaOptions::MIN_LEASE);
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
                chores: Chores::default(),
                failed_loads: FailedLoads::default(),
                unsure_creates: UnsureCreates::default(),
                launches: Launches::default(),
                recoveries: Recoveries::default(),
                events,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                replica: self.replica.map(Replica::new),
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use tokio::sync::broadcast::error::TryRecvError;

    use super::*;
    use crate::core::{DeploymentId, Event, EventKind};
    use crate::runtime::{EngineEvent, SimulatedHost};
    use crate::secrets::MemorySecrets;
    use crate::transport::{TransportError, TransportRegistry};

    /// A dispatcher whose transport answers every call `200` at once.
    pub(crate) fn dispatcher() -> Dispatcher {
        let answer = |_request: http::Request<bytes::Bytes>| async {
            Ok::<_, TransportError>(http::Response::new(bytes::Bytes::new()))
        };
        Dispatcher::builder(
            TransportRegistry::new(Arc::new(answer)),
            Arc::new(MemorySecrets::new()),
            "https://hookgate.example",
        )
        .build()
        .unwrap()
    }

    #[test]
    fn a_huge_event_capacity_is_capped() {
        let engine = Engine::builder(dispatcher(), SimulatedHost)
            .event_capacity(usize::MAX)
            .build();

        let mut events = engine.subscribe();
        let event = EngineEvent::Deployment {
            id: DeploymentId::from("d1"),
            event: Event {
                at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
                kind: EventKind::DeploymentFinished {
                    status: crate::core::DeploymentStatus::Succeeded,
                },
            },
        };
        for _ in 0..=MAX_EVENT_CAPACITY {
            engine.inner.events.send(event.clone()).unwrap();
        }
        assert_eq!(events.try_recv(), Err(TryRecvError::Lagged(1)));
    }
}
