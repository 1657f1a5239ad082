use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec;
use super::{
    ChangeWatcher, HistoryEntry, Lease, NewDeployment, Store, StoreError, StoredDeployment,
};
use crate::clock::{Clock, SystemClock};
use crate::core::{CallbackId, DeploymentId, DeploymentState, DeploymentStatus, Event};

mod log;

use log::{Log, Place};

/// A store in the process's memory, for tests and for hosts that need no durability.
///
/// It keeps states and events as values. In debug builds (tests) it also puts every state and
/// event it is given through the JSON the durable stores write and checks that it comes back
/// equal, so a state that does not survive serialization fails here first rather than in
/// production; release builds skip that, since encoding was most of a callback's cost here. It
/// implements leases and change notices, so several engines in one process can share it as
/// replicas share a database.
pub struct MemoryStore {
    tables: Mutex<Tables>,
    watchers: Mutex<Vec<ChangeWatcher>>,
    /// Whether `watchers` has any, read by every write without taking the lock all writes
    /// would share.
    watched: AtomicBool,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Tables {
    deployments: HashMap<DeploymentId, Row>,
    callbacks: HashMap<CallbackId, DeploymentId>,
    log: Log,
}

struct Row {
    current: Current,
    /// Who holds the lease, and until when.
    lease: Option<(String, DateTime<Utc>)>,
    /// Where the events of each write are in the log, with the version it wrote.
    history: Vec<(u64, Place)>,
}

/// What `load` returns.
#[derive(Clone)]
struct Current {
    application: String,
    plan_source: String,
    state: DeploymentState,
    status: DeploymentStatus,
    version: u64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl MemoryStore {
    /// An empty store stamping rows with the system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock)
    }

    /// An empty store stamping `created_at` and `updated_at` with `clock`.
    pub fn with_clock(clock: impl Clock) -> Self {
        Self {
            tables: Mutex::default(),
            watchers: Mutex::default(),
            watched: AtomicBool::new(false),
            clock: Arc::new(clock),
        }
    }

    /// Tells every watcher of a new version, after the tables' lock is released so that a
    /// watcher may read the store.
    fn changed(&self, id: &DeploymentId, version: u64) {
        if !self.watched.load(Ordering::Acquire) {
            return;
        }
        let watchers = self
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for watcher in watchers {
            watcher(id, version);
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // Nothing panics while the lock is held, and every change is made after all checks, so
        // a poisoned lock still guards consistent tables.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("deployments", &self.tables().deployments.len())
            .finish_non_exhaustive()
    }
}

impl Current {
    fn stored(self, id: DeploymentId) -> StoredDeployment {
        StoredDeployment {
            state: self.state,
            id,
            application: self.application,
            plan_source: self.plan_source,
            status: self.status,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

impl Row {
    /// Whether `lease` may take or extend this row's lease.
    fn claimable_by(&self, lease: &Lease) -> bool {
        !self.current.status.is_terminal()
            && match &self.lease {
                None => true,
                Some((owner, until)) => *owner == lease.owner || *until < lease.now,
            }
    }

    fn append(&mut self, log: &mut Log, version: u64, events: &[Event]) {
        if !events.is_empty() {
            self.history.push((version, log.append(events)));
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, new: NewDeployment, events: &[Event]) -> Result<u64, StoreError> {
        check_round_trip(&new.id, &new.state, events)?;
        let now = self.clock.now();
        let mut tables = self.tables();
        if tables.deployments.contains_key(&new.id) {
            return Err(StoreError::AlreadyExists { id: new.id });
        }
        let mut seen = HashSet::new();
        if let Some(&callback) = new
            .callback_ids
            .iter()
            .find(|c| tables.callbacks.contains_key(c) || !seen.insert(**c))
        {
            return Err(StoreError::CallbackTaken { callback });
        }
        for callback in new.callback_ids {
            tables.callbacks.insert(callback, new.id.clone());
        }
        let mut row = Row {
            current: Current {
                application: new.application,
                plan_source: new.plan_source,
                state: new.state,
                status: new.status,
                version: 1,
                created_at: now,
                updated_at: now,
            },
            lease: new.lease.map(|l| (l.owner, l.until)),
            history: Vec::new(),
        };
        row.append(&mut tables.log, 1, events);
        tables.deployments.insert(new.id.clone(), row);
        drop(tables);
        self.changed(&new.id, 1);
        Ok(1)
    }

    async fn save(
        &self,
        id: &DeploymentId,
        expected_version: u64,
        state: &DeploymentState,
        status: DeploymentStatus,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        check_round_trip(id, state, events)?;
        let now = self.clock.now();
        let mut tables = self.tables();
        let Tables {
            deployments, log, ..
        } = &mut *tables;
        let row = deployments
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound { id: id.clone() })?;
        let current = &mut row.current;
        if current.version != expected_version {
            return Err(StoreError::Conflict {
                id: id.clone(),
                expected: expected_version,
                actual: current.version,
            });
        }
        current.version += 1;
        current.state.clone_from(state);
        current.status = status;
        current.updated_at = now;
        let version = current.version;
        row.append(log, version, events);
        drop(tables);
        self.changed(id, version);
        Ok(version)
    }

    async fn load(&self, id: &DeploymentId) -> Result<Option<StoredDeployment>, StoreError> {
        let current = self.tables().deployments.get(id).map(|r| r.current.clone());
        Ok(current.map(|c| c.stored(id.clone())))
    }

    async fn find_by_callback(
        &self,
        callback: CallbackId,
    ) -> Result<Option<DeploymentId>, StoreError> {
        Ok(self.tables().callbacks.get(&callback).cloned())
    }

    async fn list_unfinished(&self) -> Result<Vec<StoredDeployment>, StoreError> {
        let mut rows: Vec<_> = self
            .tables()
            .deployments
            .iter()
            .filter(|(_, row)| !row.current.status.is_terminal())
            .map(|(id, row)| (row.current.created_at, id.clone(), row.current.clone()))
            .collect();
        rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(rows.into_iter().map(|(_, id, c)| c.stored(id)).collect())
    }

    async fn running_for_application(
        &self,
        application: &str,
    ) -> Result<Vec<DeploymentId>, StoreError> {
        let tables = self.tables();
        let mut rows: Vec<_> = tables
            .deployments
            .iter()
            .map(|(id, row)| (id, &row.current))
            .filter(|(_, c)| c.status == DeploymentStatus::Running && c.application == application)
            .map(|(id, c)| (c.created_at, id))
            .collect();
        rows.sort();
        Ok(rows.into_iter().map(|(_, id)| id.clone()).collect())
    }

    async fn history(&self, id: &DeploymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        let tables = self.tables();
        let Some(row) = tables.deployments.get(id) else {
            return Ok(Vec::new());
        };
        let events = row.history.iter().flat_map(|(version, place)| {
            tables
                .log
                .get(place)
                .iter()
                .map(move |event| (*version, event))
        });
        Ok((1..)
            .zip(events)
            .map(|(seq, (version, event))| HistoryEntry {
                seq,
                version,
                event: event.clone(),
            })
            .collect())
    }

    async fn claim(&self, id: &DeploymentId, lease: &Lease) -> Result<bool, StoreError> {
        let mut tables = self.tables();
        let row = tables
            .deployments
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound { id: id.clone() })?;
        if !row.claimable_by(lease) {
            return Ok(false);
        }
        row.lease = Some((lease.owner.clone(), lease.until));
        Ok(true)
    }

    async fn renew(&self, lease: &Lease) -> Result<Vec<(DeploymentId, u64)>, StoreError> {
        let mut tables = self.tables();
        let mut held = Vec::new();
        for (id, row) in &mut tables.deployments {
            if let Some((owner, until)) = &mut row.lease
                && *owner == lease.owner
                && !row.current.status.is_terminal()
            {
                *until = lease.until;
                held.push((id.clone(), row.current.version));
            }
        }
        held.sort();
        Ok(held)
    }

    async fn claim_orphans(
        &self,
        lease: &Lease,
        limit: usize,
    ) -> Result<Vec<StoredDeployment>, StoreError> {
        let mut tables = self.tables();
        let mut orphans: Vec<_> = tables
            .deployments
            .iter()
            .filter(|(_, row)| {
                row.claimable_by(lease)
                    && row
                        .lease
                        .as_ref()
                        .is_none_or(|(owner, _)| *owner != lease.owner)
            })
            .map(|(id, row)| (row.current.created_at, id.clone()))
            .collect();
        orphans.sort();
        orphans.truncate(limit);
        let mut taken = Vec::with_capacity(orphans.len());
        for (_, id) in orphans {
            if let Some(row) = tables.deployments.get_mut(&id) {
                row.lease = Some((lease.owner.clone(), lease.until));
                taken.push((id, row.current.clone()));
            }
        }
        drop(tables);
        Ok(taken.into_iter().map(|(id, c)| c.stored(id)).collect())
    }

    async fn release(&self, owner: &str) -> Result<usize, StoreError> {
        let mut tables = self.tables();
        let mut released = 0;
        for row in tables.deployments.values_mut() {
            if row.lease.as_ref().is_some_and(|(o, _)| o == owner) {
                row.lease = None;
                released += 1;
            }
        }
        Ok(released)
    }

    async fn watch(&self, watcher: ChangeWatcher) -> Result<(), StoreError> {
        self.watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(watcher);
        self.watched.store(true, Ordering::Release);
        Ok(())
    }
}

/// In debug builds, fails a write whose state or events cannot be written as JSON or read
/// back, and stops on one that reads back different: the durable stores would lose it.
fn check_round_trip(
    id: &DeploymentId,
    state: &DeploymentState,
    events: &[Event],
) -> Result<(), StoreError> {
    if cfg!(debug_assertions) {
        let back = codec::decode_state(id, &codec::encode_state(id, state)?)?;
        debug_assert!(back == *state, "the state of {id} changes through JSON");
        for (event, text) in events.iter().zip(codec::encode_events(id, events)?) {
            let back = codec::decode_event(id, &text)?;
            debug_assert_eq!(back, *event, "an event of {id} changes through JSON");
        }
    }
    Ok(())
}
