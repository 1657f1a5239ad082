use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use async_trait::async_trait;

use crate::core::{CallbackId, DeploymentId, DeploymentState, DeploymentStatus, Event};
use crate::store::{
    ChangeWatcher, HistoryEntry, Lease, MemoryStore, NewDeployment, Store, StoreError,
    StoredDeployment, Unfinished,
};

/// A [`Store`] for tests of what happens when writes are slow or fail: it passes everything to
/// the store it wraps ([`MemoryStore`] unless told otherwise), except that on demand
/// - saves, creates, loads and lease claims fail ([`fail_saves`](Self::fail_saves),
///   [`fail_creates`](Self::fail_creates), [`fail_loads`](Self::fail_loads),
///   [`fail_claims`](Self::fail_claims));
/// - saves and creates are stored but answered with a failure, as when a database's connection
///   drops after it committed ([`lose_save_answers`](Self::lose_save_answers),
///   [`lose_create_answers`](Self::lose_create_answers)), also with a later write stored over
///   the save before the answer ([`bury_save_answers`](Self::bury_save_answers));
/// - saves are answered with a failure and stored only after the caller's next look, as a
///   database commits a statement whose client has given up on it
///   ([`store_saves_late`](Self::store_saves_late)), creates after a given number of looks
///   ([`store_creates_late`](Self::store_creates_late));
/// - saves, creates and lease renewals wait once before going on, as a durable store's do
///   ([`slow_saves`](Self::slow_saves), [`slow_creates`](Self::slow_creates),
///   [`slow_renews`](Self::slow_renews)), lease claims too ([`slow_claims`](Self::slow_claims)),
///   or renewals once after reading the leases, listings and claims of orphans once after
///   reading the rows and creates once after storing, as a database's answer travels back
///   ([`late_renew_answers`](Self::late_renew_answers),
///   [`late_list_answers`](Self::late_list_answers),
///   [`late_create_answers`](Self::late_create_answers));
/// - saves, creates, loads and lease renewals panic, as a `Store` implementation's bug may
///   ([`panic_saves`](Self::panic_saves), [`panic_creates`](Self::panic_creates),
///   [`panic_loads`](Self::panic_loads), [`panic_renews`](Self::panic_renews)).
///
/// It counts the lease renewals asked of it ([`renews`](Self::renews)), as it counts change
/// watchers ([`watches`](Self::watches)).
///
/// ```
/// use hookgate::store::MemoryStore;
/// use hookgate::test_util::FaultyStore;
///
/// let store = FaultyStore::new(MemoryStore::new());
/// store.fail_saves(1, 2); // the next save goes through, the two after it fail
/// store.slow_saves(true);
/// ```
///
/// An engine takes it shared, so that the test keeps a handle to turn faults on and off:
/// `Engine::builder(..).shared_store(Arc::new(FaultyStore::new(..)))` (see the
/// [module](super) for a whole test). How many saves an input makes is the engine's own
/// affair: a callback makes one, and a deploy step it opens, answered at once, a second. A
/// failed write of a deadline's, of a call's or step's result, or of a queued deployment's
/// start or cancel, is tried again by the engine's own clock, a second later and longer after
/// further failures; see the [module](super).
#[derive(Debug, Default)]
pub struct FaultyStore<S = MemoryStore> {
    inner: S,
    /// Saves to let through before failing any.
    pass: AtomicUsize,
    /// Saves to fail once `pass` is used up.
    fail: AtomicUsize,
    slow: AtomicBool,
    slow_create: AtomicBool,
    slow_renew: AtomicBool,
    slow_claim: AtomicBool,
    /// Creates to fail.
    fail_create: AtomicUsize,
    /// Saves to store and then answer with a failure.
    lost_save: AtomicUsize,
    /// Saves to panic in, before writing.
    panic_save: AtomicUsize,
    /// Creates to panic in, before writing.
    panic_create: AtomicUsize,
    /// Loads to panic in.
    panic_load: AtomicUsize,
    /// Lease renewals to panic in.
    panic_renew: AtomicUsize,
    /// Lease renewals asked for, those that panicked among them.
    renews: AtomicUsize,
    /// Saves to store, write over once more and then answer with a failure.
    buried_save: AtomicUsize,
    /// Creates to store and then answer with a failure.
    lost_create: AtomicUsize,
    /// Loads to fail.
    fail_load: AtomicUsize,
    /// Watchers registered through it.
    watches: AtomicUsize,
    /// Lease claims to fail.
    fail_claim: AtomicUsize,
    late_renew: AtomicBool,
    late_list: AtomicBool,
    late_create_answer: AtomicBool,
    /// Saves to answer with a failure and store after the next load of their deployment.
    late_save: AtomicUsize,
    /// Saves answered already, each stored at the next load of its deployment.
    pending_saves: Mutex<Vec<LateSave>>,
    /// Creates to answer with a failure and store after `late_create_loads` loads.
    late_create: AtomicUsize,
    late_create_loads: AtomicUsize,
    /// Creates answered already, each stored once its deployment has been loaded enough.
    pending_creates: Mutex<Vec<LateCreate>>,
    /// A run to record under its owner as the next `release_run` begins.
    run_before_release: Mutex<Option<String>>,
}

/// A create [`FaultyStore::store_creates_late`] has answered but not stored yet.
#[derive(Debug)]
struct LateCreate {
    new: NewDeployment,
    events: Vec<Event>,
    /// Loads of its deployment still to come before it is stored.
    loads: usize,
}

/// A save [`FaultyStore::store_saves_late`] has answered but not stored yet.
#[derive(Debug)]
struct LateSave {
    id: DeploymentId,
    expected_version: u64,
    state: Arc<DeploymentState>,
    status: DeploymentStatus,
    events: Vec<Event>,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner`; nothing fails and nothing waits until told to.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pass: AtomicUsize::new(0),
            fail: AtomicUsize::new(0),
            slow: AtomicBool::new(false),
            slow_create: AtomicBool::new(false),
            slow_renew: AtomicBool::new(false),
            slow_claim: AtomicBool::new(false),
            fail_create: AtomicUsize::new(0),
            lost_save: AtomicUsize::new(0),
            panic_save: AtomicUsize::new(0),
            panic_create: AtomicUsize::new(0),
            panic_load: AtomicUsize::new(0),
            panic_renew: AtomicUsize::new(0),
            renews: AtomicUsize::new(0),
            buried_save: AtomicUsize::new(0),
            lost_create: AtomicUsize::new(0),
            fail_load: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
            fail_claim: AtomicUsize::new(0),
            late_renew: AtomicBool::new(false),
            late_list: AtomicBool::new(false),
            late_create_answer: AtomicBool::new(false),
            late_save: AtomicUsize::new(0),
            pending_saves: Mutex::new(Vec::new()),
            late_create: AtomicUsize::new(0),
            late_create_loads: AtomicUsize::new(0),
            pending_creates: Mutex::new(Vec::new()),
            run_before_release: Mutex::new(None),
        }
    }

    /// The wrapped store, to look at what was written without going through the faults.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Lets the next `pass` saves through, then fails the `fail` saves that follow with
    /// [`StoreError::Backend`] (writing nothing), then lets every save through again.
    pub fn fail_saves(&self, pass: usize, fail: usize) {
        self.pass.store(pass, Ordering::SeqCst);
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Whether each save first returns to the runtime once (is pending on its first poll), as
    /// a save that waits for a database does.
    pub fn slow_saves(&self, slow: bool) {
        self.slow.store(slow, Ordering::SeqCst);
    }

    /// Fails the next `fail` creates with [`StoreError::Backend`] (writing nothing).
    pub fn fail_creates(&self, fail: usize) {
        self.fail_create.store(fail, Ordering::SeqCst);
    }

    /// Stores each of the next `n` saves and then answers it with [`StoreError::Backend`], as a
    /// database does whose connection drops after it committed: the caller cannot tell that
    /// from a write that changed nothing.
    pub fn lose_save_answers(&self, n: usize) {
        self.lost_save.store(n, Ordering::SeqCst);
    }

    /// Panics in each of the next `n` saves, before writing anything, as a store with a bug
    /// would.
    pub fn panic_saves(&self, n: usize) {
        self.panic_save.store(n, Ordering::SeqCst);
    }

    /// Panics in each of the next `n` creates, before writing anything, as a store with a bug
    /// would.
    pub fn panic_creates(&self, n: usize) {
        self.panic_create.store(n, Ordering::SeqCst);
    }

    /// Panics in each of the next `n` loads, as a store with a bug would.
    pub fn panic_loads(&self, n: usize) {
        self.panic_load.store(n, Ordering::SeqCst);
    }

    /// Panics in each of the next `n` lease renewals ([`Store::renew`]), before reading the
    /// leases, as a store with a bug would.
    pub fn panic_renews(&self, n: usize) {
        self.panic_renew.store(n, Ordering::SeqCst);
    }

    /// How many lease renewals ([`Store::renew`]) were asked of it, those that panicked among
    /// them.
    pub fn renews(&self) -> usize {
        self.renews.load(Ordering::SeqCst)
    }

    /// Stores each of the next `n` saves, then stores the same state over it once more, as
    /// another writer would, and answers the first with [`StoreError::Backend`] (whatever
    /// became of the second): a look at the deployment finds a later version, under which the
    /// caller cannot tell whether its own write is. Counts only saves that were stored, after
    /// those [`lose_save_answers`](Self::lose_save_answers) takes.
    pub fn bury_save_answers(&self, n: usize) {
        self.buried_save.store(n, Ordering::SeqCst);
    }

    /// Answers each of the next `n` saves with [`StoreError::Backend`] at once and stores it
    /// right after the next load of its deployment has read it (if the version it expects
    /// still holds then): a look at the deployment after the failure finds it unchanged, and the
    /// write is stored all the same a moment later, as a database stores a statement whose
    /// connection dropped while it ran.
    pub fn store_saves_late(&self, n: usize) {
        self.late_save.store(n, Ordering::SeqCst);
    }

    /// Answers each of the next `n` creates with [`StoreError::Backend`] at once and stores it
    /// right after the `loads`-th load of its deployment has read it (found nothing): the
    /// caller's looks until then find nothing, as when a database commits a statement a while
    /// after its connection dropped. A `loads` of 0 counts as 1.
    pub fn store_creates_late(&self, n: usize, loads: usize) {
        self.late_create_loads.store(loads, Ordering::SeqCst);
        self.late_create.store(n, Ordering::SeqCst);
    }

    /// Stores each of the next `n` creates and then answers it with [`StoreError::Backend`],
    /// as [`lose_save_answers`](Self::lose_save_answers) does saves.
    pub fn lose_create_answers(&self, n: usize) {
        self.lost_create.store(n, Ordering::SeqCst);
    }

    /// Fails the next `n` lease claims ([`Store::claim`]) with [`StoreError::Backend`].
    pub fn fail_claims(&self, n: usize) {
        self.fail_claim.store(n, Ordering::SeqCst);
    }

    /// Whether each lease renewal, once it has read the leases, returns to the runtime once
    /// before answering: what happens meanwhile is not in its answer.
    pub fn late_renew_answers(&self, late: bool) {
        self.late_renew.store(late, Ordering::SeqCst);
    }

    /// Whether each listing of the unfinished deployments ([`Store::list_unfinished`]) and
    /// each claim of orphans ([`Store::claim_orphans`]), once it has read the rows, returns to
    /// the runtime once before answering: a write made meanwhile is not in its answer, which
    /// a recovery or an upkeep round then resumes from.
    pub fn late_list_answers(&self, late: bool) {
        self.late_list.store(late, Ordering::SeqCst);
    }

    /// How many change watchers were registered through it ([`Store::watch`]).
    pub fn watches(&self) -> usize {
        self.watches.load(Ordering::SeqCst)
    }

    /// Fails the next `n` loads with [`StoreError::Backend`].
    pub fn fail_loads(&self, n: usize) {
        self.fail_load.store(n, Ordering::SeqCst);
    }

    /// Whether each create first returns to the runtime once, as [`slow_saves`](Self::slow_saves)
    /// makes saves do.
    pub fn slow_creates(&self, slow: bool) {
        self.slow_create.store(slow, Ordering::SeqCst);
    }

    /// Whether each create, once stored, returns to the runtime once before it is answered, as
    /// a database's answer travels back after its commit.
    pub fn late_create_answers(&self, late: bool) {
        self.late_create_answer.store(late, Ordering::SeqCst);
    }

    /// Whether each lease renewal first returns to the runtime once, as
    /// [`slow_saves`](Self::slow_saves) makes saves do.
    pub fn slow_renews(&self, slow: bool) {
        self.slow_renew.store(slow, Ordering::SeqCst);
    }

    /// Whether each lease claim ([`Store::claim`]) first returns to the runtime once, as
    /// [`slow_saves`](Self::slow_saves) makes saves do.
    pub fn slow_claims(&self, slow: bool) {
        self.slow_claim.store(slow, Ordering::SeqCst);
    }

    /// Has the next [`Store::release_run`] first record `run` under its owner, as
    /// [`Store::register_replica`] does: a later engine under the same replica name recording
    /// itself just as the one before gives up its leases at shutdown.
    pub fn record_run_before_release(&self, run: &str) {
        *locked(&self.run_before_release) = Some(run.to_owned());
    }

    /// Whether this save is one to fail, using up the counts.
    fn injected_failure(&self) -> bool {
        !take(&self.pass) && take(&self.fail)
    }
}

/// A failure injected before the store is asked: nothing was written.
fn injected() -> StoreError {
    StoreError::Backend {
        source: "a failure injected by FaultyStore".into(),
    }
}

/// The failure of a write whose answer was lost after it was stored.
fn lost_answer() -> StoreError {
    StoreError::Backend {
        source: "the answer of a stored write, lost by FaultyStore".into(),
    }
}

/// `m`, locked; a test that panicked while holding it leaves nothing half-written here.
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Panics, as a `Store` implementation's bug may, if `n` says to, using one up.
fn panic_if_told(n: &AtomicUsize) {
    if take(n) {
        panic!("a panic injected by FaultyStore");
    }
}

/// Takes one from `n` if it is not zero; whether it did.
fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    async fn create(&self, new: NewDeployment, events: &[Event]) -> Result<u64, StoreError> {
        if self.slow_create.load(Ordering::SeqCst) {
            YieldOnce(false).await;
        }
        if take(&self.fail_create) {
            return Err(injected());
        }
        panic_if_told(&self.panic_create);
        if take(&self.late_create) {
            let loads = self.late_create_loads.load(Ordering::SeqCst);
            locked(&self.pending_creates).push(LateCreate {
                new,
                events: events.to_vec(),
                loads,
            });
            return Err(lost_answer());
        }
        let created = self.inner.create(new, events).await;
        if created.is_ok() && take(&self.lost_create) {
            return Err(lost_answer());
        }
        if self.late_create_answer.load(Ordering::SeqCst) {
            YieldOnce(false).await;
        }
        created
    }

    async fn save(
        &self,
        id: &DeploymentId,
        expected_version: u64,
        state: &Arc<DeploymentState>,
        status: DeploymentStatus,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        if self.slow.load(Ordering::SeqCst) {
            YieldOnce(false).await;
        }
        if self.injected_failure() {
            return Err(injected());
        }
        panic_if_told(&self.panic_save);
        if take(&self.late_save) {
            locked(&self.pending_saves).push(LateSave {
                id: id.clone(),
                expected_version,
                state: state.clone(),
                status,
                events: events.to_vec(),
            });
            return Err(lost_answer());
        }
        let saved = self
            .inner
            .save(id, expected_version, state, status, events)
            .await;
        if saved.is_ok() && take(&self.lost_save) {
            return Err(lost_answer());
        }
        if let Ok(version) = saved
            && take(&self.buried_save)
        {
            // The first write is stored whatever becomes of this one: its answer is lost.
            let _ = self.inner.save(id, version, state, status, &[]).await;
            return Err(lost_answer());
        }
        saved
    }

    async fn load(&self, id: &DeploymentId) -> Result<Option<StoredDeployment>, StoreError> {
        if take(&self.fail_load) {
            return Err(injected());
        }
        panic_if_told(&self.panic_load);
        let loaded = self.inner.load(id).await;
        let late: Vec<LateSave> = locked(&self.pending_saves)
            .extract_if(.., |s| s.id == *id)
            .collect();
        for s in late {
            // Refused as a conflict when another write came first, as the database would.
            let _ = self
                .inner
                .save(&s.id, s.expected_version, &s.state, s.status, &s.events)
                .await;
        }
        let due: Vec<LateCreate> = locked(&self.pending_creates)
            .extract_if(.., |c| {
                if c.new.id != *id {
                    return false;
                }
                c.loads = c.loads.saturating_sub(1);
                c.loads == 0
            })
            .collect();
        for c in due {
            let _ = self.inner.create(c.new, &c.events).await;
        }
        loaded
    }

    async fn find_by_callback(
        &self,
        callback: CallbackId,
    ) -> Result<Option<DeploymentId>, StoreError> {
        self.inner.find_by_callback(callback).await
    }

    async fn list_unfinished(&self) -> Result<Unfinished, StoreError> {
        let listed = self.inner.list_unfinished().await;
        if self.late_list.load(Ordering::SeqCst) {
            YieldOnce(false).await;
        }
        listed
    }

    async fn running_for_application(
        &self,
        application: &str,
    ) -> Result<Vec<DeploymentId>, StoreError> {
        self.inner.running_for_application(application).await
    }

    async fn history(&self, id: &DeploymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        self.inner.history(id).await
    }

    async fn claim(&self, id: &DeploymentId, lease: &Lease) -> Result<bool, StoreError> {
        if take(&self.fail_claim) {
            return Err(injected());
        }
        if self.slow_claim.load(Ordering::SeqCst) {
            YieldOnce(false).await;
        }
        self.inner.claim(id, lease).await
    }

    async fn renew(&self, lease: &Lease) -> Result<Vec<(DeploymentId, u64)>, StoreError> {
        self.renews.fetch_add(1, Ordering::SeqCst);
        panic_if_told(&self.panic_renew);
        if self.slow_renew.load(Ordering::SeqCst) {
            YieldOnce(false).await;
        }
        let held = self.inner.renew(lease).await;
        if self.late_renew.load(Ordering::SeqCst) {
            YieldOnce(false).await;
        }
        held
    }

    async fn claim_orphans(&self, lease: &Lease, limit: usize) -> Result<Unfinished, StoreError> {
        let claimed = self.inner.claim_orphans(lease, limit).await;
        if self.late_list.load(Ordering::SeqCst) {
            YieldOnce(false).await;
        }
        claimed
    }

    async fn release(&self, owner: &str) -> Result<usize, StoreError> {
        self.inner.release(owner).await
    }

    async fn watch(&self, watcher: ChangeWatcher) -> Result<(), StoreError> {
        self.inner.watch(watcher).await?;
        self.watches.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn register_replica(&self, owner: &str, run: &str) -> Result<(), StoreError> {
        self.inner.register_replica(owner, run).await
    }

    async fn registered_replica(&self, owner: &str) -> Result<Option<String>, StoreError> {
        self.inner.registered_replica(owner).await
    }

    async fn release_run(&self, owner: &str, run: &str) -> Result<Option<usize>, StoreError> {
        let later = locked(&self.run_before_release).take();
        if let Some(later) = later {
            self.inner.register_replica(owner, &later).await?;
        }
        self.inner.release_run(owner, run).await
    }
}

/// Pending once (asking to be polled again at once), then ready: a yield to whatever runtime
/// polls it.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
