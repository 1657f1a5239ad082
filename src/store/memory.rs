use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec;
use super::{
    ChangeWatcher, HistoryEntry, Lease, NewDeployment, Store, StoreError, StoredDeployment,
    Unfinished,
};
use crate::clock::{Clock, SystemClock};
use crate::core::{CallbackId, DeploymentId, DeploymentState, DeploymentStatus, Event};
use crate::ids::IdHasher;

mod log;

use log::{Log, Place};

/// A store in the process's memory, for tests and for hosts that need no durability.
///
/// It keeps states and events as values: a state is the `Arc` it was given, shared with the
/// deployment until the deployment's next input copies it. In debug builds (tests) it also
/// puts every state and event it is given through the JSON the durable stores write and checks
/// that it comes back equal, so a state that does not survive serialization fails here first
/// rather than in production; release builds skip that, since encoding was most of a
/// callback's cost here. It implements leases and change notices, so several engines in one
/// process can share it as replicas share a database.
pub struct MemoryStore {
    /// The deployments, each in the shard its id hashes to.
    shards: Box<[Mutex<Shard>]>,
    /// Which shard an id is in.
    hasher: IdHasher,
    callbacks: Mutex<HashMap<CallbackId, DeploymentId>>,
    /// The running deployments of each application, oldest first: what a start asks for,
    /// without a look at every row. Kept with the rows, under a shard's lock.
    running: Mutex<HashMap<String, Running, IdHasher>>,
    watchers: Mutex<Vec<ChangeWatcher>>,
    /// Whether `watchers` has any, read by every write without taking the lock all writes
    /// would share.
    watched: AtomicBool,
    /// The run each replica recorded last, by replica name.
    replicas: Mutex<HashMap<String, String>>,
    clock: Arc<dyn Clock>,
}

/// The running deployments of one application, by when they were created (and id).
type Running = BTreeSet<(DateTime<Utc>, Arc<DeploymentId>)>;

/// How many shards the deployments are spread over. With one lock for all of them, writes from
/// a few threads at once queued for it, and a thread that waited slept: a write holds it while
/// it looks its row up, which is usually a cache miss.
const SHARDS: usize = 16;

/// Some of the deployments, and the events written to them.
#[derive(Default)]
struct Shard {
    /// Keyed by the id the row's state shares with the engine's copy, which looks rows up with
    /// that same id: the keys are then found equal without reading their text. Rows are boxed
    /// so that the table's slots are 16 bytes rather than a row's 480: a look-up then probes a
    /// table small enough to stay in the caches, where half a save's time went to the first
    /// read of a slot (a profile of `engine_callbacks`), and growing the table moves no rows.
    deployments: HashMap<Arc<DeploymentId>, Box<Row>, IdHasher>,
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
    /// The engine's own, shared until its next input copies it: a save then stores no copy.
    state: Arc<DeploymentState>,
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
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: IdHasher::default(),
            callbacks: Mutex::default(),
            running: Mutex::default(),
            watchers: Mutex::default(),
            watched: AtomicBool::new(false),
            replicas: Mutex::default(),
            clock: Arc::new(clock),
        }
    }

    /// Tells every watcher of a new version, after the shard's lock is released so that a
    /// watcher may read the store.
    fn changed(&self, id: &DeploymentId, version: u64) {
        if !self.watched.load(Ordering::Acquire) {
            return;
        }
        let watchers = locked(&self.watchers).clone();
        for watcher in watchers {
            watcher(id, version);
        }
    }

    /// The shard `id` is in, locked.
    fn shard(&self, id: &DeploymentId) -> MutexGuard<'_, Shard> {
        // The hash only picks a shard, so truncating it to `usize` loses nothing that matters.
        let at = self.hasher.hash_one(id) as usize % SHARDS;
        locked(&self.shards[at])
    }

    /// What `pick` takes from each deployment, over every shard.
    fn pick<T>(&self, mut pick: impl FnMut(&DeploymentId, &Row) -> Option<T>) -> Vec<T> {
        let mut picked = Vec::new();
        self.each_shard(|shard| {
            picked.extend(
                shard
                    .deployments
                    .iter()
                    .filter_map(|(id, row)| pick(id, row)),
            );
        });
        picked
    }

    /// Gives up every lease `owner` holds; how many.
    fn release_leases(&self, owner: &str) -> usize {
        let mut released = 0;
        self.each_shard(|shard| {
            for row in shard.deployments.values_mut() {
                if row.lease.as_ref().is_some_and(|(o, _)| o == owner) {
                    row.lease = None;
                    released += 1;
                }
            }
        });
        released
    }

    /// Every shard, one after the other, each locked while `f` reads or changes it.
    fn each_shard(&self, mut f: impl FnMut(&mut Shard)) {
        for shard in &self.shards {
            f(&mut locked(shard));
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut deployments = 0;
        self.each_shard(|shard| deployments += shard.deployments.len());
        f.debug_struct("MemoryStore")
            .field("deployments", &deployments)
            .finish_non_exhaustive()
    }
}

/// `id`, shared with `state`'s copy of it when they are the same, as they are unless a
/// `NewDeployment` was put together by hand.
fn shared_id(state: &DeploymentState, id: &DeploymentId) -> Arc<DeploymentId> {
    if *state.id == *id {
        Arc::clone(&state.id)
    } else {
        Arc::new(id.clone())
    }
}

/// `mutex`, locked. Nothing panics while a lock is held, and every change is made after all
/// checks, so a poisoned lock still guards consistent tables.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
        codec::storable_new(&new)?;
        codec::own_state(&new.id, &new.state)?;
        check_round_trip(&new.id, &new.state, events)?;
        let now = self.clock.now();
        // Callbacks, then the shard, then the running ones, as everywhere they are held together.
        let mut callbacks = locked(&self.callbacks);
        let mut shard = self.shard(&new.id);
        if shard.deployments.contains_key(&new.id) {
            return Err(StoreError::AlreadyExists { id: new.id });
        }
        // Refused in the order the SQL stores refuse: the id, the application, the callbacks.
        let mut running = locked(&self.running);
        if new.exclusive
            && let Some((_, busy)) = running.get(&new.application).and_then(Running::first)
        {
            return Err(StoreError::ApplicationBusy {
                running: (**busy).clone(),
                application: new.application,
            });
        }
        let mut seen = HashSet::new();
        if let Some(&callback) = new
            .callback_ids
            .iter()
            .find(|c| callbacks.contains_key(c) || !seen.insert(**c))
        {
            return Err(StoreError::CallbackTaken { callback });
        }
        let key = shared_id(&new.state, &new.id);
        if new.status == DeploymentStatus::Running {
            running
                .entry(new.application.clone())
                .or_default()
                .insert((now, Arc::clone(&key)));
        }
        drop(running);
        for callback in new.callback_ids {
            callbacks.insert(callback, new.id.clone());
        }
        drop(callbacks);
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
        row.append(&mut shard.log, 1, events);
        shard.deployments.insert(key, Box::new(row));
        drop(shard);
        self.changed(&new.id, 1);
        Ok(1)
    }

    async fn save(
        &self,
        id: &DeploymentId,
        expected_version: u64,
        state: &Arc<DeploymentState>,
        status: DeploymentStatus,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        codec::own_state(id, state)?;
        check_round_trip(id, state, events)?;
        let now = self.clock.now();
        let mut shard = self.shard(id);
        let Shard { deployments, log } = &mut *shard;
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
        if (current.status == DeploymentStatus::Running) != (status == DeploymentStatus::Running) {
            let mut running = locked(&self.running);
            let key = (current.created_at, shared_id(&current.state, id));
            if status == DeploymentStatus::Running {
                running
                    .entry(current.application.clone())
                    .or_default()
                    .insert(key);
            } else if let Some(of_application) = running.get_mut(&current.application) {
                of_application.remove(&key);
                if of_application.is_empty() {
                    running.remove(&current.application);
                }
            }
        }
        current.version += 1;
        current.state = Arc::clone(state);
        current.status = status;
        if status.is_terminal() {
            row.lease = None;
        }
        current.updated_at = now;
        let version = current.version;
        row.append(log, version, events);
        drop(shard);
        self.changed(id, version);
        Ok(version)
    }

    async fn load(&self, id: &DeploymentId) -> Result<Option<StoredDeployment>, StoreError> {
        let current = self
            .shard(id)
            .deployments
            .get(id)
            .map(|r| r.current.clone());
        Ok(current.map(|c| c.stored(id.clone())))
    }

    async fn find_by_callback(
        &self,
        callback: CallbackId,
    ) -> Result<Option<DeploymentId>, StoreError> {
        Ok(locked(&self.callbacks).get(&callback).cloned())
    }

    async fn list_unfinished(&self) -> Result<Unfinished, StoreError> {
        let mut rows = self.pick(|id, row| {
            let current = &row.current;
            (!current.status.is_terminal())
                .then(|| (current.created_at, id.clone(), current.clone()))
        });
        rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let deployments: Vec<StoredDeployment> =
            rows.into_iter().map(|(_, id, c)| c.stored(id)).collect();
        Ok(deployments.into())
    }

    async fn running_for_application(
        &self,
        application: &str,
    ) -> Result<Vec<DeploymentId>, StoreError> {
        Ok(locked(&self.running)
            .get(application)
            .map(|of| of.iter().map(|(_, id)| (**id).clone()).collect())
            .unwrap_or_default())
    }

    async fn history(&self, id: &DeploymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        let shard = self.shard(id);
        let Some(row) = shard.deployments.get(id) else {
            return Ok(Vec::new());
        };
        let events = row.history.iter().flat_map(|(version, place)| {
            shard
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
        codec::storable_key("lease owner", &lease.owner)?;
        let mut shard = self.shard(id);
        let row = shard
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
        codec::storable_key("lease owner", &lease.owner)?;
        let mut held = Vec::new();
        self.each_shard(|shard| {
            for (id, row) in &mut shard.deployments {
                if let Some((owner, until)) = &mut row.lease
                    && *owner == lease.owner
                    && !row.current.status.is_terminal()
                {
                    *until = lease.until;
                    held.push((DeploymentId::clone(id), row.current.version));
                }
            }
        });
        held.sort();
        Ok(held)
    }

    async fn claim_orphans(&self, lease: &Lease, limit: usize) -> Result<Unfinished, StoreError> {
        codec::storable_key("lease owner", &lease.owner)?;
        let orphan = |row: &Row| {
            row.claimable_by(lease)
                && row
                    .lease
                    .as_ref()
                    .is_none_or(|(owner, _)| *owner != lease.owner)
        };
        let mut orphans =
            self.pick(|id, row| orphan(row).then(|| (row.current.created_at, id.clone())));
        orphans.sort();
        let taken = take_first(orphans.into_iter().map(|(_, id)| id), limit, |id| {
            // Looked at again under its shard's lock: another replica may have taken it since.
            let mut shard = self.shard(&id);
            let row = shard.deployments.get_mut(&id).filter(|row| orphan(row))?;
            row.lease = Some((lease.owner.clone(), lease.until));
            let current = row.current.clone();
            drop(shard);
            Some(current.stored(id))
        });
        Ok(taken.into())
    }

    async fn release(&self, owner: &str) -> Result<usize, StoreError> {
        codec::storable_key("lease owner", owner)?;
        Ok(self.release_leases(owner))
    }

    async fn release_run(&self, owner: &str, run: &str) -> Result<Option<usize>, StoreError> {
        codec::storable_key("lease owner", owner)?;
        codec::storable_key("replica run", run)?;
        // Held through the release, so that a run recording itself waits for it to end.
        let replicas = locked(&self.replicas);
        if replicas.get(owner).is_some_and(|recorded| recorded != run) {
            return Ok(None);
        }
        let released = self.release_leases(owner);
        drop(replicas);
        Ok(Some(released))
    }

    async fn watch(&self, watcher: ChangeWatcher) -> Result<(), StoreError> {
        locked(&self.watchers).push(watcher);
        self.watched.store(true, Ordering::Release);
        Ok(())
    }

    async fn register_replica(&self, owner: &str, run: &str) -> Result<(), StoreError> {
        codec::storable_key("lease owner", owner)?;
        codec::storable_key("replica run", run)?;
        locked(&self.replicas).insert(owner.to_owned(), run.to_owned());
        Ok(())
    }

    async fn registered_replica(&self, owner: &str) -> Result<Option<String>, StoreError> {
        codec::storable_key("lease owner", owner)?;
        Ok(locked(&self.replicas).get(owner).cloned())
    }
}

/// What `take` gives for the first `limit` of `candidates` it gives anything for, in order. A
/// candidate another caller took meanwhile is passed over for the next rather than taking its
/// place in the count: a claim answered short of `limit` then means no more were left.
fn take_first<T>(
    candidates: impl IntoIterator<Item = DeploymentId>,
    limit: usize,
    take: impl FnMut(DeploymentId) -> Option<T>,
) -> Vec<T> {
    candidates
        .into_iter()
        .filter_map(take)
        .take(limit)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::take_first;
    use crate::core::DeploymentId;

    /// Candidates taken by someone else meanwhile do not count: the next ones are taken in
    /// their place, up to the limit, in order, and none past it is looked at.
    #[test]
    fn candidates_gone_meanwhile_are_passed_over_for_the_next() {
        let ids = ["d0", "d1", "d2", "d3", "d4"].map(DeploymentId::from);
        let mut looked_at = Vec::new();
        let taken = take_first(ids, 2, |id| {
            looked_at.push(id.clone());
            (id != DeploymentId::from("d0") && id != DeploymentId::from("d2")).then_some(id)
        });
        assert_eq!(taken, ["d1", "d3"].map(DeploymentId::from));
        assert_eq!(looked_at, ["d0", "d1", "d2", "d3"].map(DeploymentId::from));
    }
}
