//! Several engines sharing one store (replicas): who drives which deployment, and how a change
//! made by one replica reaches the one driving it.
//!
//! Each unfinished deployment is driven by one replica at a time, the holder of its lease in
//! the store: only the holder performs its outbound calls and host steps and fires its
//! deadlines. Any replica may apply an input (a callback reaching it through the load
//! balancer, a decision): it loads the deployment, applies the input and saves it with the
//! version it read, leaving the actions the input produced in the stored state for the holder;
//! the store's change notice wakes the holder, which reloads the deployment, stores it without
//! those actions and performs them. Every action therefore comes out of exactly one successful
//! versioned save, which is what makes it happen once however replicas race.
//!
//! Leases are renewed every third of their time. A replica that stops renewing (it died, or
//! lost the database) loses its deployments when its leases end: another replica takes them
//! over as a restarted engine would, firing the deadlines that passed and asking again for the
//! calls and steps that were under way (with the same idempotency keys and operation ids).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::apply::{Source, restore};
use super::engine::{Engine, Live, lock};
use super::error::RuntimeError;
use crate::core::{DeploymentId, IdSource};
use crate::ids::RandomIds;
use crate::store::{ChangeWatcher, Lease, StoreError, StoredDeployment};

/// How many times a catch-up with the store is tried at once before it is left to the next
/// notice or upkeep round.
const MAX_SYNC_ATTEMPTS: u32 = 5;

/// How an engine takes part as one of several replicas sharing a store; see
/// [`EngineBuilder::replica`](super::EngineBuilder::replica).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaOptions {
    /// This replica's name, unique among the replicas sharing the store. A replica restarted
    /// under the same name takes its own deployments back at once instead of waiting for its
    /// leases to end. Of two engines running under one name, the one that recovered first
    /// shuts down at its next round of lease upkeep
    /// ([`RuntimeError::ReplicaNameTaken`](super::RuntimeError::ReplicaNameTaken)), on a store
    /// that records replicas' runs ([`Store::register_replica`](crate::store::Store::register_replica)). At most [`MAX_KEY_BYTES`](crate::store::MAX_KEY_BYTES) bytes, without a
    /// NUL character: the stores refuse every lease of another name
    /// ([`StoreError::TooLong`](crate::store::StoreError::TooLong),
    /// [`StoreError::Unstorable`](crate::store::StoreError::Unstorable)).
    pub id: String,
    /// How long a lease lasts without renewal: how long a dead replica's deployments wait
    /// before another replica takes them over. Renewed every third of it. An engine takes at
    /// least [`ReplicaOptions::MIN_LEASE`].
    pub lease: Duration,
    /// How many orphaned deployments one round of lease upkeep takes over at most, so a
    /// replica that finds many does not take them all before the others look. Also the size of
    /// the batches [`Engine::recover`](super::Engine::recover) resumes, its own deployments and
    /// orphans alike, renewing its leases between them. Either renews them within a batch too,
    /// whenever a third of the lease has passed, so that a batch whose resumptions take longer
    /// than a lease (a slow store, a host slow to take steps on) keeps what it took over.
    pub takeover_batch: usize,
}

impl ReplicaOptions {
    /// The shortest lease an engine takes: a lease ends before its renewal (every third of it,
    /// at most every 10 ms) reaches the store when it is much shorter, and another replica then
    /// takes the deployment over while this one still drives it.
    pub const MIN_LEASE: Duration = Duration::from_secs(1);

    /// Replica `id` with 30-second leases, taking over at most 100 deployments per round.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            lease: Duration::from_secs(30),
            takeover_batch: 100,
        }
    }

    /// Leases of `lease` instead of 30 seconds; at least [`ReplicaOptions::MIN_LEASE`].
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// At most `batch` orphaned deployments taken over per round of upkeep, and resumed per
    /// batch of a recovery.
    #[must_use]
    pub fn takeover_batch(mut self, batch: usize) -> Self {
        self.takeover_batch = batch.max(1);
        self
    }
}

/// What one round of lease upkeep ([`Engine::maintain_leases`]) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Upkeep {
    /// Leases renewed.
    pub renewed: usize,
    /// Deployments changed by another replica and reloaded.
    pub reloaded: usize,
    /// Deployments whose lease another replica took: no longer driven here.
    pub lost: usize,
    /// Orphaned deployments taken over from a replica whose lease ended, and deployments taken
    /// back after this replica's own lease lapsed and passed through another. A claimed orphan
    /// whose row turned out out of date is held but not counted: the next round resumes it.
    pub taken_over: usize,
    /// Deployments queued here (`enqueueOne`) started because their application no longer
    /// runs: the deployment they waited for may have finished on another replica.
    pub queued_started: usize,
}

/// The replica part of an engine's shared state.
pub(crate) struct Replica {
    pub(crate) options: ReplicaOptions,
    /// This run of the engine, recorded in the store under the replica's name
    /// ([`Store::register_replica`](crate::store::Store::register_replica)).
    run: String,
    /// Whether the store recorded `run`: once it has, each round of upkeep looks whether it
    /// still holds it.
    registered: AtomicBool,
    /// Whether this engine stopped on finding another run recorded under its name.
    stood_down: AtomicBool,
    /// Change notices from the store, for the scheduler loop, which holds them while it runs
    /// ([`Notices`]).
    notices: std::sync::Mutex<Option<mpsc::UnboundedReceiver<(DeploymentId, u64)>>>,
    notify: mpsc::UnboundedSender<(DeploymentId, u64)>,
    /// Whether the store has this replica's watcher: stores keep every watcher they are given,
    /// and a `recover` tried again after a failure must not add a second. Held while the
    /// watcher is added, so that two `recover`s at once add one between them.
    watching: tokio::sync::Mutex<bool>,
}

impl Replica {
    pub(crate) fn new(options: ReplicaOptions) -> Self {
        let (notify, notices) = mpsc::unbounded_channel();
        Self {
            options,
            // Drawn from the system's randomness rather than the engine's id source, which a
            // test may have give every engine the same ids.
            run: RandomIds.callback_id().to_string(),
            registered: AtomicBool::new(false),
            stood_down: AtomicBool::new(false),
            notices: std::sync::Mutex::new(Some(notices)),
            notify,
            watching: tokio::sync::Mutex::new(false),
        }
    }

    /// Whether the engine stopped on finding another engine under this replica's name: the
    /// leases of that name are that engine's to keep, not this one's to give up.
    pub(crate) fn stood_down(&self) -> bool {
        self.stood_down.load(Ordering::Acquire)
    }

    /// Drops the notices heard and not yet taken, once the engine has shut down: the store
    /// keeps the watcher, which hears no more from then on, and an engine kept after its
    /// shutdown has no scheduler left to take them.
    pub(crate) fn drop_notices(&self) {
        if let Some(receiver) = lock(&self.notices).as_mut() {
            drain(receiver);
        }
    }
}

fn drain(receiver: &mut mpsc::UnboundedReceiver<(DeploymentId, u64)>) {
    while receiver.try_recv().is_ok() {}
}

/// When a long run of resumptions renews its replica's leases. Each resumption is a write, and
/// may wait on the host or a call; a hundred of them against a slow store can outlast the
/// leases claimed or renewed at the run's start, and another replica would take those
/// deployments over while they are driven here.
pub(crate) struct Renewals<'a> {
    replica: &'a Replica,
    /// When the leases were last renewed (or claimed).
    last: DateTime<Utc>,
}

impl<'a> Renewals<'a> {
    /// Renewals of `replica`'s leases, last renewed at `last`.
    pub(crate) fn since(replica: &'a Replica, last: DateTime<Utc>) -> Self {
        Self { replica, last }
    }
}

impl Engine {
    /// Renews the leases of `renewals`' replica.
    pub(crate) async fn renew_leases(&self, renewals: &mut Renewals<'_>) -> Result<(), StoreError> {
        let lease = self.lease_of(renewals.replica);
        self.inner.store.renew(&lease).await?;
        renewals.last = lease.now;
        Ok(())
    }

    /// Renews the leases of `renewals`' replica if a third of the lease has passed since they
    /// last were, as the upkeep rounds do: called before each resumption of a long run. A
    /// failure is logged; the next resumption tries again.
    pub(crate) async fn renew_leases_when_due(&self, renewals: &mut Renewals<'_>) {
        let passed = (self.inner.clock.now() - renewals.last).to_std();
        if passed.is_ok_and(|passed| passed >= renewals.replica.options.lease / 3)
            && let Err(e) = self.renew_leases(renewals).await
        {
            tracing::warn!(error = %e, "could not renew this replica's leases while resuming deployments; trying again before the next");
        }
    }

    pub(crate) fn replica(&self) -> Option<&Replica> {
        self.inner.replica.as_ref()
    }

    /// A lease from now for this replica, if it is one.
    pub(crate) fn lease(&self) -> Option<Lease> {
        self.replica().map(|r| self.lease_of(r))
    }

    /// A lease from now for `replica`, this engine's: for callers that hold it already, and
    /// take fresh leases as a long round goes on.
    pub(crate) fn lease_of(&self, replica: &Replica) -> Lease {
        Lease::new(
            replica.options.id.clone(),
            self.inner.clock.now(),
            replica.options.lease,
        )
    }

    /// Records this run of the engine as replica `replica`'s in the store, once; a store
    /// without leases is left unchecked.
    pub(crate) async fn register_run(&self, replica: &Replica) -> Result<(), RuntimeError> {
        if replica.registered.load(Ordering::Acquire) {
            return Ok(());
        }
        match self
            .inner
            .store
            .register_replica(&replica.options.id, &replica.run)
            .await
        {
            Ok(()) => replica.registered.store(true, Ordering::Release),
            Err(StoreError::Unsupported { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Whether another engine has recorded itself under this replica's name since this one
    /// did. A store that cannot answer is taken to mean no: the next round looks again.
    pub(crate) async fn name_taken(&self, replica: &Replica) -> bool {
        if !replica.registered.load(Ordering::Acquire) {
            return false;
        }
        match self
            .inner
            .store
            .registered_replica(&replica.options.id)
            .await
        {
            Ok(run) => run.is_some_and(|run| run != replica.run),
            Err(e) => {
                tracing::warn!(error = %e, "could not look whether another engine took this replica's name; looking again next round");
                false
            }
        }
    }

    /// Gives up `replica`'s leases as the engine shuts down, unless another engine has
    /// recorded itself under the replica's name: they are that engine's from then on, whether
    /// or not this one found out at an upkeep round. The store looks and releases in one step
    /// ([`Store::release_run`](crate::store::Store::release_run)), so a later engine that
    /// records itself meanwhile (a rolling restart) keeps them.
    pub(crate) async fn release_leases(&self, replica: &Replica) {
        if replica.stood_down() {
            return;
        }
        let owner = &replica.options.id;
        let released = if replica.registered.load(Ordering::Acquire) {
            self.inner.store.release_run(owner, &replica.run).await
        } else {
            self.inner.store.release(owner).await.map(Some)
        };
        match released {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::info!(replica = %owner, "a later engine runs under this replica's name; the leases are left to it");
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not give up the leases; other replicas take over when they end");
            }
        }
    }

    /// Shuts this engine down, as [`Engine::shutdown`] does but keeping the leases: the
    /// engine that took the replica's name holds them under that same name, and drives their
    /// deployments from now on. Two engines driving them would each perform their work.
    async fn stand_down(&self, replica: &Replica) {
        if !replica.stood_down.swap(true, Ordering::AcqRel) {
            tracing::error!(replica = %replica.options.id, "another engine recorded itself under this replica's name; this one shuts down and leaves the deployments to it: give every replica a name of its own");
        }
        self.shutdown().await;
    }

    /// Starts hearing of other replicas' writes.
    pub(crate) async fn watch_store(&self) -> Result<(), RuntimeError> {
        let Some(replica) = self.replica() else {
            return Ok(());
        };
        let mut watching = replica.watching.lock().await;
        if *watching {
            return Ok(());
        }
        let (notify, shutdown) = (replica.notify.clone(), self.inner.shutdown.clone());
        let watcher: ChangeWatcher = Arc::new(move |id: &DeploymentId, version| {
            if !shutdown.is_cancelled() {
                let _ = notify.send((id.clone(), version));
            }
        });
        self.inner.store.watch(watcher).await?;
        *watching = true;
        Ok(())
    }

    /// One round of lease upkeep: renews this replica's leases, reloads what other replicas
    /// changed, lets go of what another replica took, takes over deployments whose replica
    /// stopped renewing, and starts deployments queued here whose application no longer runs.
    /// [`Engine::run_scheduler`] runs it every third of the lease time; tests on a manual clock
    /// call it directly. Does nothing on an engine that is not a replica.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::ReplicaNameTaken`]: another engine recorded itself under this
    ///   replica's name after this one; this engine has shut down.
    /// - [`RuntimeError::Store`]: the store failed renewing the leases; the next round tries
    ///   again.
    pub async fn maintain_leases(&self) -> Result<Upkeep, RuntimeError> {
        let mut upkeep = Upkeep::default();
        let Some(replica) = self.replica() else {
            return Ok(upkeep);
        };
        if self.name_taken(replica).await {
            self.stand_down(replica).await;
            return Err(RuntimeError::ReplicaNameTaken {
                name: replica.options.id.clone(),
            });
        }
        let lease = self.lease_of(replica);
        // Held for the whole round, so that shutdown gives the leases up only after it: a round
        // still under way would otherwise claim them again once released, and other replicas
        // would wait a whole lease time to take over.
        let Ok(_in_flight) = self.in_flight() else {
            return Ok(upkeep);
        };
        let before: HashSet<Arc<DeploymentId>> = lock(&self.inner.live).keys().cloned().collect();
        let held: HashMap<DeploymentId, u64> =
            self.inner.store.renew(&lease).await?.into_iter().collect();
        let mut renewals = Renewals::since(replica, lease.now);
        upkeep.renewed = held.len();
        let live: Vec<Arc<DeploymentId>> = lock(&self.inner.live).keys().cloned().collect();
        let mut retaken = Vec::new();
        for id in live {
            match held.get(&*id) {
                Some(&version) => upkeep.reloaded += usize::from(self.sync(&id, version).await),
                None => {
                    // Registered after `renew` read the leases (a launch, a takeover by an
                    // input) is still this replica's: only a refused claim means it is lost.
                    // A claim that failed tells nothing, and letting go of a deployment whose
                    // lease is still ours would have the next round resume it, asking again
                    // for work still under way: the next round looks again.
                    let lease = self.lease_of(replica);
                    match self.inner.store.claim(&id, &lease).await {
                        // Held here before `renew` read the leases, yet not among them: the
                        // lease lapsed and passed through another replica, whose work in
                        // flight this copy knows nothing of. Resumed afresh from the store
                        // below, which asks for that work again.
                        Ok(true) if before.contains(&id) => {
                            if self.forget(&id).await {
                                tracing::warn!(deployment = %id, "taken back after its lease lapsed: resumed from the store");
                            }
                            upkeep.taken_over += 1;
                            retaken.push(DeploymentId::clone(&id));
                        }
                        Ok(true) => {}
                        Ok(false) => {
                            self.lose(&id).await;
                            upkeep.lost += 1;
                        }
                        Err(e) => {
                            tracing::warn!(deployment = %id, error = %e, "could not renew the lease of a deployment; trying again next round");
                        }
                    }
                }
            }
        }
        // Held here but not in memory: a resume that failed earlier (say, on a store error)
        // is tried again, since no other replica will take a deployment whose lease is kept.
        let missing: Vec<DeploymentId> = {
            let live = lock(&self.inner.live);
            held.keys()
                .filter(|id| !live.contains_key(*id))
                .cloned()
                .chain(retaken)
                .collect()
        };
        for id in missing {
            self.renew_leases_when_due(&mut renewals).await;
            match self.inner.store.load(&id).await {
                Ok(Some(stored)) => {
                    if let Err(e) = self.resume(stored).await {
                        tracing::error!(deployment = %id, error = %e, "could not resume a deployment this replica holds");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(deployment = %id, error = %e, "could not load a deployment this replica holds")
                }
            }
        }
        if self.inner.shutdown.is_cancelled() {
            return Ok(upkeep);
        }
        // A fresh lease: the round so far may have taken a while.
        let lease = self.lease_of(replica);
        let orphans = self
            .inner
            .store
            // The field is public: a zero set there would take nothing over, ever.
            .claim_orphans(&lease, replica.options.takeover_batch.max(1))
            .await?;
        for e in orphans.unreadable {
            tracing::error!(error = %e, "a deployment taken over cannot be read; it is left as it is, held by this replica");
        }
        for stored in orphans.deployments {
            self.renew_leases_when_due(&mut renewals).await;
            let id = stored.id.clone();
            match self.resume(stored).await {
                Ok(Some(_)) => upkeep.taken_over += 1,
                // Driven here already, or its claimed row was out of date: held, and not in
                // memory, it is resumed from its current row by the next round.
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(deployment = %id, error = %e, "could not take over a deployment")
                }
            }
        }
        upkeep.queued_started = self.start_queued().await;
        Ok(upkeep)
    }

    /// Takes up what a write by another replica (or a save that lost a race here) left for the
    /// driver of a deployment driven here: reloads it if the store is ahead, stores it without
    /// the pending actions and performs them. A deployment that is finished leaves memory.
    /// Returns whether it did anything; nothing once shutdown has begun.
    ///
    /// Carried to its end if the caller stops waiting, as [`Engine::resume`] is: stopped while
    /// its write waits, the pending actions it took out of the deployment would be in no one's
    /// hands, and the next sync would find nothing left to do.
    pub(crate) async fn sync(&self, id: &DeploymentId, version: u64) -> bool {
        let Ok(in_flight) = self.in_flight() else {
            return false;
        };
        let (engine, id) = (self.clone(), id.clone());
        self.detached(
            in_flight,
            async move { engine.sync_now(&id, version).await },
        )
        .await
    }

    pub(crate) async fn sync_now(&self, id: &DeploymentId, version: u64) -> bool {
        let Some(entry) = lock(&self.inner.live).get(id).cloned() else {
            return false;
        };
        let mut live = entry.lock().await;
        // Out of memory since it was looked up (finished, or no longer driven here): whoever
        // drives it now takes the change up.
        if live.gone {
            return false;
        }
        let mut acted = false;
        for _ in 0..MAX_SYNC_ATTEMPTS {
            let behind = live.version < version;
            if !behind && live.d.state().actions.is_empty() {
                break;
            }
            if behind && !self.reload(&mut live).await {
                break;
            }
            acted = true;
            let before = live.begin_change(self.inner.clock.now(), false);
            match self.commit(&mut live, before, Source::Memory).await {
                Ok(_) => break,
                // `commit` reloaded what was stored: take that up in the next attempt.
                Err(RuntimeError::Store(StoreError::Conflict { .. })) => {}
                Err(e) => {
                    // The actions stay pending here and in the store; the next upkeep round
                    // takes them up.
                    tracing::warn!(deployment = %id, error = %e, "could not take up another replica's change");
                    break;
                }
            }
        }
        if live.d.is_finished() {
            self.retire(&mut live);
        }
        acted
    }

    /// Another replica took the deployment's lease: it is no longer driven here. A deployment
    /// that finished meanwhile has its last actions taken up first.
    async fn lose(&self, id: &DeploymentId) {
        if let Ok(Some(stored)) = self.inner.store.load(id).await
            && stored.status.is_terminal()
        {
            self.sync(id, stored.version).await;
        }
        if self.forget(id).await {
            tracing::info!(deployment = %id, "another replica drives this deployment now");
        }
    }

    /// Takes the deployment out of memory, with its deadline and callback ids; whether it was
    /// there.
    async fn forget(&self, id: &DeploymentId) -> bool {
        let Some(entry) = lock(&self.inner.live).get(id).cloned() else {
            return false;
        };
        // Under the entry's lock, so that an input waiting on it looks the deployment up again.
        // Taken out already while this waited, it is left as it is: one registered since (taken
        // back by an input) keeps its deadline and callback index.
        self.unregister(&mut *entry.lock().await)
    }

    /// Makes a stored deployment this engine's to drive, as after a restart: deadlines that
    /// passed fire, and calls and steps that were under way are asked for again. Returns
    /// whether its state changed, or `None` when it was not resumed here: finished, driven
    /// here already, being started, finished here during a recovery that read `stored`, or
    /// `stored` out of date with work to ask for again (its write fails on the version; a
    /// single engine then looks at it again a second later). A row out of date with nothing
    /// to ask for again is resumed as it is, until its next write fails on the version.
    ///
    /// Carried to its end if the caller stops waiting (a `recover` or an upkeep round under a
    /// timeout): stopped after the deployment is in memory, the work it asked for again would
    /// be lost, and a second `recover` would skip it as resumed.
    pub(crate) async fn resume(
        &self,
        stored: StoredDeployment,
    ) -> Result<Option<bool>, RuntimeError> {
        let in_flight = self.in_flight()?;
        let engine = self.clone();
        self.detached(in_flight, async move { engine.resume_now(stored).await })
            .await
    }

    async fn resume_now(&self, stored: StoredDeployment) -> Result<Option<bool>, RuntimeError> {
        // One being started is stored before it is in memory, where its start puts it: resumed
        // meanwhile (by lease upkeep, `recover`, or an input by id), its first work would be
        // performed, and what follows published, before the start's own events.
        if stored.status.is_terminal() {
            // A cancel recorded for it is moot: it finished.
            self.inner.unsure_creates.cancel_stored(&stored.id);
            return Ok(None);
        }
        if lock(&self.inner.live).contains_key(&stored.id)
            || self.inner.launches.contains(&stored.id)
        {
            return Ok(None);
        }
        let plan = self.stored_plan_for(&stored.id, &stored.plan_source)?;
        let mut d = restore(plan, stored.state)?;
        let before = d.clone();
        let now = self.inner.clock.now();
        // Withdrawn from the queue while its create, answered with a failure, was looked for:
        // the cancel its caller was told succeeded is applied first, before any deadline can
        // end it otherwise or anything is asked for. It is unfinished (checked above), so the
        // cancel applies.
        let canceled = self.inner.unsure_creates.canceled_by(&stored.id);
        if let Some(by) = &canceled {
            let _ = d.handle_cancel(now, by);
        }
        // Deadlines next: whatever they start or end is then in the state, and the reissue
        // below asks for exactly what is still in flight — never a step and its rollback. The
        // pending actions a write left for the previous driver are among what is reissued.
        d.handle_timeout(now);
        d.reissue_in_flight();
        let (_, Some(mut live)) = self.register(Live::new(d, stored.version, true)) else {
            // Registered meanwhile by someone who drives it already.
            return Ok(None);
        };
        // Finished since a recovery read `stored`: out of date. Seen only after registering,
        // since it is noted before it leaves memory.
        if self.inner.recoveries.saw_finish(&stored.id) {
            self.unregister(&mut live);
            return Ok(None);
        }
        if self.inner.unsure_creates.remove(&stored.id) {
            // Its create was answered with a failure, and its events dropped with the answer.
            self.publish_stored(&stored.id, 0, stored.version).await;
        }
        let committed = self.commit(&mut live, before, Source::Row).await;
        if committed.is_err() {
            // Out of memory again, deadline and all, so the next input, upkeep round or retry
            // resumes it afresh.
            self.unregister(&mut live);
        }
        match committed {
            Ok(changed) => {
                if canceled.is_some() {
                    self.inner.unsure_creates.cancel_stored(&stored.id);
                }
                Ok(Some(changed))
            }
            // Read before another write: nothing was asked for again. A replica's next upkeep
            // round resumes a deployment it holds that is not in memory; a single engine looks
            // at it a second from now. Either resumes one still unfinished from its current
            // row.
            Err(RuntimeError::Store(StoreError::Conflict { .. })) => {
                tracing::debug!(deployment = %stored.id, "a resumption read an out-of-date row; looking again");
                if self.replica().is_none() {
                    self.retry_soon(&Arc::new(stored.id));
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The receiving end of the store's change notices, for the scheduler loop.
    pub(crate) fn take_notices(&self) -> Notices<'_> {
        let replica = self.replica();
        Notices {
            receiver: replica.and_then(|r| lock(&r.notices).take()),
            replica,
            shutdown: &self.inner.shutdown,
        }
    }
}

/// The store's change notices, held by a scheduler loop and given back to the replica when
/// the loop ends, its future dropped too (a host that aborts its scheduler's task and starts
/// another): the next loop hears of the other replicas' writes as this one did.
pub(crate) struct Notices<'a> {
    replica: Option<&'a Replica>,
    receiver: Option<mpsc::UnboundedReceiver<(DeploymentId, u64)>>,
    /// The engine's: once it is cancelled, no notice is heard or kept any more.
    shutdown: &'a CancellationToken,
}

impl Notices<'_> {
    /// The next notice, or never when there are none to hear (not a replica, or another loop
    /// holds them).
    pub(crate) async fn recv(&mut self) -> Option<(DeploymentId, u64)> {
        match self.receiver.as_mut() {
            Some(receiver) => receiver.recv().await,
            None => std::future::pending().await,
        }
    }

    /// A notice that came already, if any.
    pub(crate) fn try_recv(&mut self) -> Option<(DeploymentId, u64)> {
        self.receiver.as_mut()?.try_recv().ok()
    }
}

impl Drop for Notices<'_> {
    fn drop(&mut self) {
        if let (Some(replica), Some(mut receiver)) = (self.replica, self.receiver.take()) {
            // A loop that ends after shutdown gives back what it had not taken: dropped here,
            // as `drop_notices` drops what waited in the replica.
            if self.shutdown.is_cancelled() {
                drain(&mut receiver);
            }
            *lock(&replica.notices) = Some(receiver);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::runtime::SimulatedHost;
    use crate::runtime::builder::tests::dispatcher;
    use crate::store::MemoryStore;

    /// Two replicas over one memory store, recovered.
    async fn two_replicas() -> (Engine, Engine) {
        let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
        let replica = |id: &str| {
            Engine::builder(dispatcher(), SimulatedHost)
                .shared_store(Arc::clone(&store) as _)
                .replica(ReplicaOptions::new(id))
                .build()
        };
        let (a, b) = (replica("a"), replica("b"));
        a.recover().await.unwrap();
        b.recover().await.unwrap();
        (a, b)
    }

    /// The notices waiting for `engine`'s scheduler, taken out.
    fn queued(engine: &Engine) -> usize {
        let replica = engine.replica().expect("a replica");
        let mut notices = lock(&replica.notices);
        let receiver = notices.as_mut().expect("no scheduler holds them");
        std::iter::from_fn(|| receiver.try_recv().ok()).count()
    }

    /// A replica shut down hears no more of the others' writes: kept after it, with no
    /// scheduler to take them, it would hold every later write of the cluster.
    #[tokio::test]
    async fn a_replica_shut_down_queues_no_more_change_notices() {
        let (a, b) = two_replicas().await;
        let file =
            |application: &str| format!("application: {application}\ntargets: {{prod: {{}}}}\n");
        b.start(&file("shop"), BTreeMap::new()).await.unwrap();
        assert!(queued(&a) > 0, "a replica hears the others' writes");

        a.shutdown().await;
        b.start(&file("till"), BTreeMap::new()).await.unwrap();
        assert_eq!(queued(&a), 0);
    }

    /// What a scheduler loop held at shutdown and had not taken is dropped when the loop ends,
    /// not handed back to wait for good.
    #[tokio::test]
    async fn notices_a_scheduler_held_at_shutdown_are_dropped_when_it_ends() {
        let (a, b) = two_replicas().await;
        let held = a.take_notices();
        b.start("application: shop\ntargets: {prod: {}}\n", BTreeMap::new())
            .await
            .unwrap();
        a.shutdown().await;
        drop(held);
        assert_eq!(queued(&a), 0);
    }
}
