//! Durable deployment state: one [`Store`] trait, a [`MemoryStore`] that is always built and a
//! [`SqliteStore`] (feature `sqlite`), all held to one conformance suite
//! (`hookgate::store::conformance`, feature `test-util`).
//!
//! # What is stored
//!
//! Per deployment: the deployment file's text (the runtime validates it again on load), the
//! core's [`DeploymentState`], the host's [`DeploymentStatus`], a version, the index from each
//! callback id to its deployment, and the history of [`Event`]s. The durable stores write the
//! state and the events as JSON; [`MemoryStore`] keeps them as values. No secret is
//! ever stored: the state keeps request templates and context, never a rendered request, and
//! tokens and signing keys never reach the core.
//!
//! # Optimistic concurrency
//!
//! [`Store::create`] stores version 1. Each [`Store::save`] names the version it read and
//! stores the next one, with its events, in one atomic write; if someone saved in between it
//! changes nothing and returns [`StoreError::Conflict`], and the caller loads again and
//! re-applies its input:
//!
//! ```
//! use std::sync::Arc;
//! use chrono::Utc;
//! use hookgate::config::Plan;
//! use hookgate::core::{Deployment, DeploymentId, StartOptions};
//! use hookgate::ids::RandomIds;
//! use hookgate::store::{MemoryStore, NewDeployment, Store, StoreError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let source = "application: shop\ntargets: {prod: {}}\n";
//! let plan = Arc::new(Plan::from_yaml(source)?);
//! let mut deployment = Deployment::start(
//!     plan, DeploymentId::from("d1"), StartOptions::default(), &mut RandomIds, Utc::now(),
//! );
//! let events: Vec<_> = std::iter::from_fn(|| deployment.poll_event()).collect();
//! let store = MemoryStore::new();
//! let v1 = store.create(NewDeployment::new(&deployment, source), &events).await?;
//!
//! let id = deployment.id().clone();
//! let v2 = store.save(&id, v1, deployment.state(), deployment.status(), &[]).await?;
//! // A second writer still holding version 1 is refused, and the first write stands.
//! let stale = store.save(&id, v1, deployment.state(), deployment.status(), &[]).await;
//! assert!(matches!(stale, Err(StoreError::Conflict { expected: 1, actual: 2, .. })));
//! assert_eq!(store.load(&id).await?.unwrap().version, v2);
//! # Ok(()) }
//! ```
//!
//! # SQLite durability
//!
//! [`SqliteStore`] runs in WAL mode with a busy timeout and foreign keys on, and applies its
//! embedded schema migrations when it opens a file. Its [`Durability`] decides when a save
//! returns:
//!
//! - [`Durability::ProcessCrash`] (the default, `synchronous=NORMAL`): a save that returned
//!   `Ok` has been committed to the write-ahead log in the operating system's cache, so it
//!   survives the process being killed (`kill -9`, a panic, the OOM killer). It does **not**
//!   survive a power loss or an operating-system crash: the last saves before one may be lost,
//!   though the database stays consistent (older, never corrupt).
//! - [`Durability::PowerLoss`] (`synchronous=FULL`): the write-ahead log is synced to disk at
//!   every commit, so a save that returned `Ok` also survives a power loss or an
//!   operating-system crash, on storage that honours `fsync`. Concurrent saves are
//!   committed together (group commit), so one `fsync` covers a whole batch.
//!
//! # PostgreSQL
//!
//! `PostgresStore` (feature `postgres`) keeps the same data (deployments, the callback index,
//! the event history) in tables of its own PostgreSQL schema, laid out apart from SQLite's
//! (one row per event, the deployment file in its deployment's row), for several replicas
//! sharing one database: it implements leases and change notices
//! (`LISTEN`/`NOTIFY`), applies its migrations under an advisory lock when it connects, and
//! acknowledges a write after its `COMMIT`. Lease times come from each replica's clock, so
//! those clocks must agree to well within the lease time.
//!
// What the docs above link to that feature `sqlite` builds: where it is off, the pages docs.rs
// builds with every feature.
#![cfg_attr(
    feature = "sqlite",
    doc = "[`SqliteStore`]: SqliteStore\n[`Durability`]: Durability\n\
           [`Durability::ProcessCrash`]: Durability::ProcessCrash\n\
           [`Durability::PowerLoss`]: Durability::PowerLoss"
)]
#![cfg_attr(
    not(feature = "sqlite"),
    doc = "[`SqliteStore`]: https://docs.rs/hookgate/latest/hookgate/store/struct.SqliteStore.html\n\
           [`Durability`]: https://docs.rs/hookgate/latest/hookgate/store/enum.Durability.html\n\
           [`Durability::ProcessCrash`]: https://docs.rs/hookgate/latest/hookgate/store/enum.Durability.html#variant.ProcessCrash\n\
           [`Durability::PowerLoss`]: https://docs.rs/hookgate/latest/hookgate/store/enum.Durability.html#variant.PowerLoss"
)]

mod codec;
#[cfg(feature = "test-util")]
pub mod conformance;
mod error;
mod lease;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod record;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

pub use error::StoreError;

/// The longest deployment id or lease owner (a replica's name, [`Lease::owner`]) every store
/// keeps, in bytes. The stores index both, and PostgreSQL's indexes refuse a longer key as the
/// database failing; every store refuses one with [`StoreError::TooLong`] instead, so that
/// what one store takes, every store takes.
pub const MAX_KEY_BYTES: usize = 1024;
pub use lease::{ChangeWatcher, Lease};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use record::{HistoryEntry, NewDeployment, StoredDeployment, Unfinished};
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SqliteOptions, SqliteStore};

use crate::core::{CallbackId, DeploymentId, DeploymentState, DeploymentStatus, Event};

/// A store as a trait object; the runtime holds an `Arc<DynStore>`.
pub type DynStore = dyn Store;

/// Where deployments, their callback index and their history are kept.
///
/// Every method is one atomic operation: a failed call changes nothing, with one exception a
/// networked database cannot rule out: a write whose answer was lost with its connection
/// ([`StoreError::Backend`]) may have been stored. The engine finds out by loading the row.
/// A `save` that panics is taken for such a failure too: the engine reads the deployment again
/// from its row rather than go on with its own copy.
#[async_trait]
pub trait Store: Debug + Send + Sync {
    /// Stores a new deployment at version 1, indexes its callback ids and appends `events` (the
    /// events drained after [`Deployment::start`](crate::core::Deployment::start)). Returns 1.
    ///
    /// An id already stored is [`StoreError::AlreadyExists`]; a callback id another deployment
    /// owns is [`StoreError::CallbackTaken`]. An [`exclusive`](NewDeployment::exclusive) one is
    /// [`StoreError::ApplicationBusy`] while another deployment of its application is running,
    /// checked atomically with the write: of two exclusive creates of one application racing,
    /// at most one succeeds (the engine relies on it to start an application once across
    /// replicas).
    async fn create(&self, new: NewDeployment, events: &[Event]) -> Result<u64, StoreError>;

    /// Replaces the state and status of deployment `id` and appends `events`, if its stored
    /// version is still `expected_version`. Returns the new version, `expected_version + 1`.
    ///
    /// `state` is the deployment's own ([`Deployment::state`](crate::core::Deployment::state)):
    /// a store that keeps values keeps the `Arc` rather than a copy, and the deployment copies
    /// the state before its next input changes it.
    ///
    /// A stale version is [`StoreError::Conflict`] and an unknown id [`StoreError::NotFound`];
    /// either way nothing is written.
    async fn save(
        &self,
        id: &DeploymentId,
        expected_version: u64,
        state: &Arc<DeploymentState>,
        status: DeploymentStatus,
        events: &[Event],
    ) -> Result<u64, StoreError>;

    /// The deployment with this id, if stored.
    async fn load(&self, id: &DeploymentId) -> Result<Option<StoredDeployment>, StoreError>;

    /// The deployment that owns this callback id, if any.
    async fn find_by_callback(
        &self,
        callback: CallbackId,
    ) -> Result<Option<DeploymentId>, StoreError>;

    /// Every deployment whose status is not terminal (`queued` or `running`), oldest first: what
    /// the runtime resumes when it starts. A row that cannot be read is left out of
    /// [`Unfinished::deployments`] and reported in [`Unfinished::unreadable`] as
    /// [`StoreError::Corrupt`] naming its deployment; an error is returned only when the
    /// listing itself fails.
    async fn list_unfinished(&self) -> Result<Unfinished, StoreError>;

    /// The deployments of `application` whose status is `running`, oldest first, for
    /// `ifDeploymentInProgress`.
    async fn running_for_application(
        &self,
        application: &str,
    ) -> Result<Vec<DeploymentId>, StoreError>;

    /// The events of deployment `id` in the order appended; empty for an unknown id.
    async fn history(&self, id: &DeploymentId) -> Result<Vec<HistoryEntry>, StoreError>;

    /// Takes the lease on unfinished deployment `id` for `lease.owner`, or extends it, if no
    /// one holds it, its holder's lease ended before `lease.now`, or `lease.owner` holds it
    /// already. Returns whether `lease.owner` holds it now; `false` also for a finished
    /// deployment, and [`StoreError::NotFound`] for an unknown one.
    ///
    /// Stores built for one process only do not implement leases and return
    /// [`StoreError::Unsupported`], as every lease method does by default.
    async fn claim(&self, id: &DeploymentId, lease: &Lease) -> Result<bool, StoreError> {
        let _ = (id, lease);
        Err(StoreError::Unsupported { what: "leases" })
    }

    /// Extends to `lease.until` every lease `lease.owner` still holds on an unfinished
    /// deployment, and returns those deployments with their stored versions. A deployment
    /// missing from the answer is no longer the owner's to drive.
    async fn renew(&self, lease: &Lease) -> Result<Vec<(DeploymentId, u64)>, StoreError> {
        let _ = lease;
        Err(StoreError::Unsupported { what: "leases" })
    }

    /// Takes, for `lease.owner`, up to `limit` unfinished deployments that no one holds or
    /// whose lease, held by another owner, ended before `lease.now`, oldest first, and returns
    /// them. The owner's own leases, ended or not, are left out: [`renew`](Self::renew) lists
    /// (and extends) those.
    /// Concurrent callers never take the same deployment: each is handed to exactly one of
    /// them.
    ///
    /// A row taken that cannot be read is answered in [`Unfinished::unreadable`], as a
    /// [`StoreError::Corrupt`] naming it, not made the whole answer: the others taken with it
    /// are returned, and it stays with the owner, who reports it and leaves it as it is,
    /// rather than have it come first in every later claim of every replica. An answer with
    /// neither deployments nor unreadable rows means none was left to take.
    async fn claim_orphans(&self, lease: &Lease, limit: usize) -> Result<Unfinished, StoreError> {
        let _ = (lease, limit);
        Err(StoreError::Unsupported { what: "leases" })
    }

    /// Gives up every lease `owner` holds, so other replicas may take its deployments at
    /// once; returns how many. A replica calls it when it shuts down. A finished deployment
    /// holds none: the save that finishes it gives its lease up, so that leases, and what
    /// `renew` and `release` go over, do not grow with every deployment ever finished.
    async fn release(&self, owner: &str) -> Result<usize, StoreError> {
        let _ = owner;
        Err(StoreError::Unsupported { what: "leases" })
    }

    /// Calls `watcher` after every later `create` and `save`, including those of other
    /// processes sharing the store (see [`ChangeWatcher`] for what it may rely on).
    async fn watch(&self, watcher: ChangeWatcher) -> Result<(), StoreError> {
        let _ = watcher;
        Err(StoreError::Unsupported {
            what: "change notices",
        })
    }

    /// Records `run`, a value no other run of an engine takes, as the run of replica `owner`
    /// now under way, in place of any recorded before. A replica records itself once it
    /// has recovered, and looks at each round of lease upkeep whether it is still the one
    /// recorded ([`registered_replica`](Self::registered_replica)): two engines given the
    /// same replica name would otherwise both hold every lease of that name and drive the
    /// same deployments, and nothing else tells them apart.
    ///
    /// Stores without leases answer [`StoreError::Unsupported`], as they do by default; an
    /// engine then goes on without the check.
    async fn register_replica(&self, owner: &str, run: &str) -> Result<(), StoreError> {
        let _ = (owner, run);
        Err(StoreError::Unsupported {
            what: "replica registration",
        })
    }

    /// The run of replica `owner` recorded last by
    /// [`register_replica`](Self::register_replica), if any.
    async fn registered_replica(&self, owner: &str) -> Result<Option<String>, StoreError> {
        let _ = owner;
        Err(StoreError::Unsupported {
            what: "replica registration",
        })
    }

    /// Gives up every lease `owner` holds, as [`release`](Self::release) does, provided
    /// `run` is still the run recorded under `owner`
    /// ([`register_replica`](Self::register_replica)), or none is; returns how many, or
    /// `None` when another run is recorded there, which then keeps them all. A replica that
    /// recorded its run calls it when it shuts down: a later engine under the same name
    /// (a rolling restart) holds the name's leases from the moment it records itself, and a
    /// plain `release` just after that moment would give them up under it.
    ///
    /// The look and the release are one atomic step in the stores hookgate ships: a
    /// `register_replica` of `owner` comes wholly before or wholly after it. The default looks
    /// with [`registered_replica`](Self::registered_replica), then calls `release`: a later
    /// run that records itself between the two finds the name's deployments released, for
    /// whichever replica claims them first, itself included. A store with leases should
    /// override it.
    async fn release_run(&self, owner: &str, run: &str) -> Result<Option<usize>, StoreError> {
        match self.registered_replica(owner).await? {
            Some(recorded) if recorded != run => Ok(None),
            _ => self.release(owner).await.map(Some),
        }
    }
}

macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait]
        impl<T: Store + ?Sized> Store for $ty {
            async fn create(
                &self,
                new: NewDeployment,
                events: &[Event],
            ) -> Result<u64, StoreError> {
                (**self).create(new, events).await
            }

            async fn save(
                &self,
                id: &DeploymentId,
                expected_version: u64,
                state: &Arc<DeploymentState>,
                status: DeploymentStatus,
                events: &[Event],
            ) -> Result<u64, StoreError> {
                (**self)
                    .save(id, expected_version, state, status, events)
                    .await
            }

            async fn load(
                &self,
                id: &DeploymentId,
            ) -> Result<Option<StoredDeployment>, StoreError> {
                (**self).load(id).await
            }

            async fn find_by_callback(
                &self,
                callback: CallbackId,
            ) -> Result<Option<DeploymentId>, StoreError> {
                (**self).find_by_callback(callback).await
            }

            async fn list_unfinished(&self) -> Result<Unfinished, StoreError> {
                (**self).list_unfinished().await
            }

            async fn running_for_application(
                &self,
                application: &str,
            ) -> Result<Vec<DeploymentId>, StoreError> {
                (**self).running_for_application(application).await
            }

            async fn history(&self, id: &DeploymentId) -> Result<Vec<HistoryEntry>, StoreError> {
                (**self).history(id).await
            }

            async fn claim(&self, id: &DeploymentId, lease: &Lease) -> Result<bool, StoreError> {
                (**self).claim(id, lease).await
            }

            async fn renew(&self, lease: &Lease) -> Result<Vec<(DeploymentId, u64)>, StoreError> {
                (**self).renew(lease).await
            }

            async fn claim_orphans(
                &self,
                lease: &Lease,
                limit: usize,
            ) -> Result<Unfinished, StoreError> {
                (**self).claim_orphans(lease, limit).await
            }

            async fn release(&self, owner: &str) -> Result<usize, StoreError> {
                (**self).release(owner).await
            }

            async fn watch(&self, watcher: ChangeWatcher) -> Result<(), StoreError> {
                (**self).watch(watcher).await
            }

            async fn register_replica(&self, owner: &str, run: &str) -> Result<(), StoreError> {
                (**self).register_replica(owner, run).await
            }

            async fn registered_replica(&self, owner: &str) -> Result<Option<String>, StoreError> {
                (**self).registered_replica(owner).await
            }

            async fn release_run(
                &self,
                owner: &str,
                run: &str,
            ) -> Result<Option<usize>, StoreError> {
                (**self).release_run(owner, run).await
            }
        }
    };
}

forward_store!(Arc<T>);
forward_store!(Box<T>);
