//! The cycle every input goes through: apply to the core, store, then publish and act.

use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Instrument;

use super::engine::{Engine, Live, drain, lock};
use super::error::RuntimeError;
use super::event::EngineEvent;
use super::host::StepContext;
use super::spare;
use crate::config::{EnvId, Plan};
use crate::core::{
    Action, CallFailure, CallResult, CoreError, Deployment, DeploymentId, DeploymentState,
    DeploymentStatus, Event, OpId, StepOutcome,
};
use crate::store::{StoreError, StoredDeployment};

/// Where the deployment a commit stores came from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Memory, where this engine keeps it up to date.
    Memory,
    /// A row just read and resumed, which may be out of date: read before another write
    /// finished the deployment or moved it on (a `recover` listing, a replica's claim). The
    /// commit then writes even if nothing changed, when it asks for work again, so that such a
    /// row fails with a conflict before the work is asked for: the work a resumption asks for
    /// again comes out of a successful versioned write.
    Row,
}

/// How many times an input is applied before a run of conflicting saves is reported to the
/// caller (who may retry: a callback's sender gets a 503); also how many times it may find the
/// deployment gone from memory before that is reported as the store failing.
const MAX_CONFLICT_RETRIES: u32 = 5;

/// How many rounds of results that were ready at once [`Engine::settle`] records under one
/// lock hold before handing the rest to tasks, so that a host answering every step at once
/// cannot keep one caller waiting for a whole deployment.
const MAX_INLINE_ROUNDS: usize = 8;

impl Engine {
    /// Applies `input` to deployment `id` and commits the result. The outer error is the
    /// engine's (unknown deployment, store failure: nothing changed in memory); the inner value
    /// is what `input` returned.
    ///
    /// When someone else saved the deployment first (another replica, or a write racing this
    /// one), `input` is applied again to what they stored, a few times at most.
    pub(crate) async fn apply<R>(
        &self,
        id: &DeploymentId,
        input: impl FnMut(&mut Deployment, DateTime<Utc>) -> R,
    ) -> Result<R, RuntimeError> {
        self.apply_at(Target::Id(Cow::Borrowed(id)), |_| None, input)
            .await
    }

    /// [`Engine::apply`] to `target`: a deployment to look up, or its entry, already found (as
    /// the callback index finds a callback's).
    ///
    /// An input that waited on an entry which then left memory looks the deployment up again,
    /// which may resume it or take it over from a replica that stopped: acting on it, which a
    /// caller the deployment refuses (another tenant's) must not make happen. `refuse` answers
    /// for such a caller instead of `input`, from the copy that left.
    ///
    /// Not an `async fn`: its future would hold `apply_carrying`'s inside its own, a second
    /// layer for every callback to poll and move.
    pub(crate) fn apply_at<R>(
        &self,
        target: Target<'_>,
        refuse: impl Fn(&Deployment) -> Option<R>,
        input: impl FnMut(&mut Deployment, DateTime<Utc>) -> R,
    ) -> impl Future<Output = Result<R, RuntimeError>> {
        self.apply_carrying(target, Vec::new(), refuse, input)
    }

    /// [`Engine::apply_at`], handing `carried` (results that finished since the deployment's
    /// lock was let go) to the deployment's entry first: they are recorded with the input, and
    /// kept there if its write fails ([`Live::unrecorded`]). Dropped when no entry keeps them:
    /// at shutdown, for a deployment that cannot be read, an entry that leaves memory (finished,
    /// its lease lost, a write that panicked), or a copy whose write fails. Whoever resumes the
    /// deployment then asks for their work again.
    async fn apply_carrying<R>(
        &self,
        mut target: Target<'_>,
        mut carried: Vec<Ready>,
        refuse: impl Fn(&Deployment) -> Option<R>,
        mut input: impl FnMut(&mut Deployment, DateTime<Utc>) -> R,
    ) -> Result<R, RuntimeError> {
        let (mut attempts, mut left) = (0, 0);
        loop {
            // After shutdown nothing may be acted on here (calls and steps would be abandoned
            // while the input is acknowledged); the sender retries, reaching another replica
            // or this engine's next start. The token is taken before the look-up, which may
            // claim the deployment's lease: a shutdown then gives the leases up only after it,
            // rather than have this claim one again once they are given up.
            let in_flight = self.in_flight()?;
            let entry = match target {
                Target::Entry(entry) => entry,
                Target::Id(ref id) => self.entry(id, true).await?,
                // Boxed, as rare and large: every callback's future would otherwise carry it,
                // and be allocated outside the allocator's per-thread caches.
                Target::Stored(stored) => Box::pin(self.entry_of_stored(*stored, true)).await?,
            };
            let mut live = entry.lock_owned().await;
            // A second look: shutdown may have begun while this input waited for the lock.
            if self.inner.shutdown.is_cancelled() {
                return Err(RuntimeError::ShuttingDown);
            }
            // It left memory while this input waited: looked up again, it is in memory anew
            // (resumed), or a copy from the store. Only a resumption whose write failed leaves
            // memory again for the next look-up to find gone, so a deployment that keeps
            // leaving is reported as the store failing.
            if live.gone {
                if let Some(refused) = refuse(&live.d) {
                    return Ok(refused);
                }
                left += 1;
                if left >= MAX_CONFLICT_RETRIES {
                    return Err(StoreError::Backend {
                        source: format!(
                            "deployment {} left memory {left} times while an input waited on it (its resumption's write failing)",
                            live.d.id()
                        )
                        .into(),
                    }
                    .into());
                }
                target = Target::Id(Cow::Owned(live.d.id().clone()));
                continue;
            }
            attempts += 1;
            live.keep_unrecorded(&mut carried);
            let now = self.inner.clock.now();
            let lend = live.owned;
            let (before, result) = live.change(now, lend, &mut input);
            match self.commit_detached(in_flight, live, before).await {
                Ok(()) => return Ok(result),
                // The next attempt looks the deployment up again: the entry may have left
                // memory meanwhile.
                Err(RuntimeError::Store(StoreError::Conflict { id, .. }))
                    if attempts < MAX_CONFLICT_RETRIES =>
                {
                    target = Target::Id(Cow::Owned(id));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Engine::commit_once`] and then [`Engine::settle_soon`], carried to their end even when
    /// the caller stops waiting (a client that hangs up, a timeout around a callback): the input
    /// is applied to the deployment in memory by then, so it has to be stored and acted on, or
    /// put back.
    async fn commit_detached(
        &self,
        in_flight: TaskTrackerToken,
        mut live: OwnedMutexGuard<Live>,
        before: Deployment,
    ) -> Result<(), RuntimeError> {
        let engine = self.clone();
        self.detached(in_flight, async move {
            let (_, ready) = engine
                .commit_once(&mut live, before, Source::Memory)
                .await?;
            engine.settle_soon(live, ready);
            Ok(())
        })
        .await
    }

    /// After a commit panicked (a `Store` implementation's bug, say): the deployment in memory
    /// may be ahead of its row, with the actions it asked for taken out and never performed. It is
    /// taken out of memory, to be read again from the store by its next input (a result
    /// recorded by a task, the sender's retry) and resumed from there, asking again for the work
    /// in flight there, as after a restart. It is looked at a second later in any case: a
    /// deployment waiting only on work that the panic kept from being asked for gets no input.
    ///
    /// A copy (of a deployment another replica drives, or a finished one) is private and only
    /// dropped: it was never registered, and unregistering its id would take out of memory the
    /// entry this engine may have registered for the deployment since.
    pub(super) fn panicked_in_commit(&self, live: &mut Live) -> RuntimeError {
        let id = live.d.id().clone();
        tracing::error!(deployment = %id, "storing a deployment panicked; reading it again from the store");
        if live.owned && self.unregister(live) {
            self.retry_soon(live.d.shared_id());
        }
        StoreError::Backend {
            source: format!("storing deployment {id} panicked; send the input again").into(),
        }
        .into()
    }

    /// A token that makes [`Engine::shutdown`] wait for work about to begin, or
    /// [`RuntimeError::ShuttingDown`] once shutdown has begun. The token is taken before the
    /// look, so that a shutdown either refuses the work or waits for it: it never gives the
    /// leases up under a write still to come.
    pub(crate) fn in_flight(&self) -> Result<TaskTrackerToken, RuntimeError> {
        let token = self.inner.tasks.token();
        if self.inner.shutdown.is_cancelled() {
            return Err(RuntimeError::ShuttingDown);
        }
        Ok(token)
    }

    /// `work`, which the caller polls, and which a task finishes if the caller stops waiting.
    /// `in_flight`, a token of the engine's tasks, makes [`Engine::shutdown`] wait for it either
    /// way.
    pub(crate) fn detached<T: Send + 'static>(
        &self,
        in_flight: TaskTrackerToken,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Detached<T> {
        Detached {
            work: Some(Box::pin(work)),
            in_flight,
            polling: false,
        }
    }

    /// Stores what changed since `before` and then publishes events and starts actions. On a
    /// store failure the deployment is put back as it was. Returns whether anything changed.
    /// `before` shares the state the deployment had until the input copied it, as the
    /// memory store's row does: keeping it costs no copy of its own.
    ///
    /// A copy of a deployment another replica drives keeps the actions in its state, for that
    /// replica to perform once the store's notice reaches it.
    pub(crate) async fn commit(
        &self,
        live: &mut Live,
        before: Deployment,
        source: Source,
    ) -> Result<bool, RuntimeError> {
        let (changed, ready) = self.commit_once(live, before, source).await?;
        self.settle(live, ready).await;
        Ok(changed)
    }

    /// [`Engine::commit`] without recording the results that were ready at once. The results
    /// the deployment kept from failed writes were recorded into it first
    /// ([`Live::begin_change`]): stored now, they are let go. A panic in it
    /// (a `Store` implementation's bug) is answered as a store failure, with the deployment
    /// taken out of memory ([`Engine::panicked_in_commit`]), rather than unwound through the
    /// engine.
    async fn commit_once(
        &self,
        live: &mut Live,
        before: Deployment,
        source: Source,
    ) -> Result<(bool, Vec<Ready>), RuntimeError> {
        let committed = AssertUnwindSafe(self.store_and_act(live, before, source))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(self.panicked_in_commit(live)));
        if committed.is_ok() {
            // Its room let go too: kept, it would stay with every deployment that ever
            // recorded a result, all the time it waits.
            live.unrecorded = Vec::new();
        }
        committed
    }

    /// [`Engine::commit_once`]'s work.
    async fn store_and_act(
        &self,
        live: &mut Live,
        mut before: Deployment,
        source: Source,
    ) -> Result<(bool, Vec<Ready>), RuntimeError> {
        let (actions, mut events) = if live.owned {
            drain(&mut live.d)
        } else {
            (Vec::new(), live.d.take_events())
        };
        // An input that produced events changed the deployment: comparing the whole state is
        // left for those that did not.
        let changed = !events.is_empty() || !live.d.same_state(&before);
        // A resumption writes before it asks for work again: see `Source::Row`.
        let write = changed || (source == Source::Row && !actions.is_empty());
        if !write && actions.is_empty() {
            spare::give_back_queues(actions, events);
            // The deployment takes back the state its row shares, rather than keep a copy of it
            // (its memory twice over) until its next write; the copy is kept for a later input.
            std::mem::swap(&mut live.d, &mut before);
            spare::give_back(before);
            if live.owned {
                if live.looking() {
                    // An input before the look is due leaves the look armed: only its time
                    // spends one, however many inputs change nothing meanwhile.
                    if live.look_due(self.inner.clock.now()) {
                        // Boxed, as rare: every commit's future would otherwise carry it.
                        return Box::pin(self.look_again(live)).await;
                    }
                    return Ok((false, Vec::new()));
                }
                live.arm(&self.inner.deadlines);
            }
            return Ok((false, Vec::new()));
        }
        if write {
            let saved = self
                .inner
                .store
                .save(
                    live.d.id(),
                    live.version,
                    live.d.state(),
                    live.d.status(),
                    &events,
                )
                .await;
            let saved = match saved {
                // Boxed, as rare: every commit's future would otherwise carry the look.
                Err(e @ StoreError::Backend { .. }) => {
                    let (id, version) = (live.d.id(), live.version + 1);
                    Box::pin(self.stored_anyway(id, version, live.d.state(), e, || {
                        live.unsure = true;
                        live.looks = 0;
                    }))
                    .await
                }
                other => other,
            };
            match saved {
                Ok(version) => {
                    live.version = version;
                    // Stored after the version the unsure write expected: that one was not.
                    live.unsure = false;
                    live.failed_writes = 0;
                }
                Err(e) => {
                    std::mem::swap(&mut live.d, &mut before);
                    spare::give_back(before);
                    if matches!(e, StoreError::Conflict { .. }) {
                        // Someone else saved first: take their state, so the caller's retry
                        // applies to what is stored rather than failing forever. Boxed, as
                        // rare and large: every commit's future would otherwise carry it.
                        Box::pin(self.reload(live)).await;
                    } else {
                        live.failed_writes = live.failed_writes.saturating_add(1);
                    }
                    if live.owned {
                        live.arm_after_failure(&self.inner.deadlines, self.inner.clock.now());
                    }
                    return Err(e.into());
                }
            }
        }
        let finished_now = write && !before.is_finished() && live.d.is_finished();
        spare::give_back(before);
        if live.owned {
            return Ok((changed, self.after_commit(live, actions, events)));
        }
        self.publish(live.d.id(), &mut events);
        // A copy that this write finished: a single engine has no upkeep round that would start
        // the deployment queued behind it, as a replica's has, and no entry of it to retire.
        if finished_now && self.replica().is_none() {
            self.hand_off_soon(live.d.plan().application());
        }
        Ok((changed, Vec::new()))
    }

    /// An input that changed nothing, on a deployment one of whose writes may have been stored
    /// unanswered (the deadline [`Live::arm_after_failure`] set for it, or any other): the
    /// store is looked at. Found ahead, the deployment is reloaded as after a conflict: retired
    /// if it finished, its work in flight otherwise asked for again and performed here, since
    /// the input's caller may not apply it again; the conflict is returned for the input to be
    /// applied to what is stored. Found as it is, the write may still be under way on the
    /// server: it is looked for again later, [`MAX_LOOKS`](super::engine::MAX_LOOKS) times in
    /// all.
    async fn look_again(&self, live: &mut Live) -> Result<(bool, Vec<Ready>), RuntimeError> {
        live.looks += 1;
        let id = live.d.id().clone();
        let expected = live.version;
        let ahead = match self.inner.store.load(&id).await {
            Ok(stored) => stored.filter(|stored| stored.version > expected),
            Err(e) => {
                tracing::warn!(deployment = %id, error = %e, "could not look at a deployment whose write may have been stored; trying again later");
                None
            }
        };
        let actual = match ahead {
            Some(stored) => {
                let version = stored.version;
                self.restore_stored(live, stored).await.then_some(version)
            }
            None => None,
        };
        let Some(actual) = actual else {
            live.arm_after_failure(&self.inner.deadlines, self.inner.clock.now());
            return Ok((false, Vec::new()));
        };
        if live.d.is_finished() {
            live.arm(&self.inner.deadlines);
        } else {
            let before = live.begin_change(self.inner.clock.now(), false);
            Box::pin(self.commit(live, before, Source::Memory)).await?;
        }
        Err(StoreError::Conflict {
            id,
            expected,
            actual,
        }
        .into())
    }

    /// `version` if the write that failed with `failure` was stored after all, as `state`:
    /// a database whose connection dropped after it committed answers with a failure, and
    /// taking that for a write that changed nothing would drop the actions it led to, which
    /// nothing would ask for again. Otherwise `failure`, with `on_unknown` called first, for a
    /// caller that can have the deployment looked at again later: no look settles it, since a
    /// look that fails or finds a later version cannot tell, and one that finds the version
    /// before may come before a commit still under way on the server.
    pub(crate) async fn stored_anyway(
        &self,
        id: &DeploymentId,
        version: u64,
        state: &DeploymentState,
        failure: StoreError,
        on_unknown: impl FnOnce(),
    ) -> Result<u64, StoreError> {
        match self.inner.store.load(id).await {
            Ok(Some(stored)) if stored.version == version && *stored.state == *state => {
                tracing::warn!(
                    deployment = %id,
                    error = %failure,
                    "the store reported a failed write that it had stored; going on"
                );
                Ok(version)
            }
            // Written again since: ours may be under that write.
            Ok(Some(stored)) if stored.version > version => {
                tracing::warn!(deployment = %id, error = %failure, "a write failed, and whether it was stored under a later one is not known");
                on_unknown();
                Err(failure)
            }
            // Another write took the version: this one can never be stored, and the caller
            // takes the other one up as after any conflict.
            Ok(Some(stored)) if stored.version == version => Err(StoreError::Conflict {
                id: id.clone(),
                expected: version - 1,
                actual: stored.version,
            }),
            Ok(_) => {
                tracing::warn!(deployment = %id, error = %failure, "a write failed and is not stored yet; it may still be");
                on_unknown();
                Err(failure)
            }
            Err(look) => {
                tracing::warn!(deployment = %id, error = %failure, look = %look, "a write failed, and whether it was stored is not known");
                on_unknown();
                Err(failure)
            }
        }
    }

    /// [`Engine::settle`], without keeping the caller waiting on the store: the deployment stays
    /// locked until the results are recorded, but a write that has to wait (a durable store)
    /// goes on in a task while the input that led to it is answered.
    pub(crate) fn settle_soon(&self, live: OwnedMutexGuard<Live>, ready: Vec<Ready>) {
        if ready.is_empty() {
            return;
        }
        let engine = self.clone();
        let mut settle = Box::pin(async move {
            let mut live = live;
            engine.settle(&mut live, ready).await;
        });
        // As in `start_io`: a future still pending is polled again by its task, with its waker.
        if settle
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            self.inner.tasks.spawn(settle);
        }
    }

    /// Records the results of calls and steps that finished as soon as they were started,
    /// still under the deployment's lock: a host or transport that answers at once then costs
    /// no task, wake-up or second lock, and the write that follows is the next in line. What
    /// these results start may be ready at once too; after [`MAX_INLINE_ROUNDS`] rounds the
    /// rest is recorded by a task, as a result that took time would be. A write that conflicts
    /// is made again on what was stored; when one fails, the deployment keeps the results for
    /// its next input or deadline ([`Live::unrecorded`]).
    async fn settle(&self, live: &mut Live, mut ready: Vec<Ready>) {
        for _ in 0..MAX_INLINE_ROUNDS {
            if ready.is_empty() {
                return;
            }
            live.keep_unrecorded(&mut ready);
            let before = live.begin_change(self.inner.clock.now(), true);
            match self.commit_once(live, before, Source::Memory).await {
                Ok((_, more)) => ready = more,
                // Someone else saved first, and the commit took up what they stored: recorded
                // into that at once, as any input is applied again after a conflict.
                Err(RuntimeError::Store(StoreError::Conflict { .. })) if !live.gone => {
                    ready = std::mem::take(&mut live.unrecorded);
                }
                // Out of memory (a reload found it finished, or the write panicked, which is
                // logged): what it kept goes with it, stale or asked for again on resumption.
                Err(_) if live.gone => return,
                Err(e) => {
                    // The failed write armed the deadline that records them.
                    tracing::warn!(error = %e, "could not record a result; the deployment keeps it for its next input, or its deadline to try again");
                    return;
                }
            }
        }
        // The last write left the deadline to the recording of these (`after_commit`), which
        // now comes after the lock is let go.
        live.arm(&self.inner.deadlines);
        self.record_later(live.d.id().clone(), ready);
    }

    /// Everything that follows a durable write. Returns the results that were ready at once,
    /// for [`Engine::settle`], which records them under the same lock; the deadline is then
    /// left to the write recording them: armed now too, a host step's timeout would go into
    /// the table every input shares only to come out again (a step answered at once).
    pub(crate) fn after_commit(
        &self,
        live: &mut Live,
        mut actions: Vec<Action>,
        mut events: Vec<Event>,
    ) -> Vec<Ready> {
        self.publish(live.d.id(), &mut events);
        let mut ready = Vec::new();
        for action in actions.drain(..) {
            ready.extend(self.perform(live, action));
        }
        spare::give_back_queues(actions, events);
        if ready.is_empty() {
            live.arm(&self.inner.deadlines);
        }
        if live.d.is_finished() {
            self.retire(live);
        }
        ready
    }

    /// Sends the subscribers, if there are any, the events `id`'s writes stored after version
    /// `after`, through version `through`: those of a write whose answer was lost, found stored
    /// (and of any stored after it up to the state taken up, not of later ones, whose state
    /// this engine has not seen).
    pub(crate) async fn publish_stored(&self, id: &DeploymentId, after: u64, through: u64) {
        if self.inner.events.receiver_count() == 0 {
            return;
        }
        match self.inner.store.history(id).await {
            Ok(history) => {
                let mut events = history
                    .into_iter()
                    .filter(|entry| (after + 1..=through).contains(&entry.version))
                    .map(|entry| entry.event)
                    .collect();
                self.publish(id, &mut events);
            }
            Err(e) => {
                tracing::warn!(deployment = %id, error = %e, "could not read the events of a write whose answer was lost; subscribers do not hear of them");
            }
        }
    }

    /// Sends `events` to the engine's subscribers, if it has any, leaving it empty.
    pub(crate) fn publish(&self, id: &DeploymentId, events: &mut Vec<Event>) {
        if self.inner.events.receiver_count() == 0 {
            events.clear();
            return;
        }
        for event in events.drain(..) {
            let _ = self.inner.events.send(EngineEvent::Deployment {
                id: id.clone(),
                event,
            });
        }
    }

    /// Replaces the entry's deployment with the stored one; whether it could.
    pub(crate) async fn reload(&self, live: &mut Live) -> bool {
        let id = live.d.id();
        match self.inner.store.load(id).await {
            Ok(Some(stored)) => self.restore_stored(live, stored).await,
            Ok(None) => {
                tracing::error!(deployment = %id, "the deployment vanished from the store");
                false
            }
            Err(e) => {
                tracing::warn!(deployment = %id, error = %e, "could not reload the deployment");
                false
            }
        }
    }

    /// [`Engine::reload`] from a row already read. A deployment driven here that the row shows
    /// finished is retired: an earlier write of ours whose answer was lost may have finished
    /// it, and no later input would change it, so none would retire it and its application's
    /// queue would wait for good.
    async fn restore_stored(&self, live: &mut Live, stored: StoredDeployment) -> bool {
        match restore(Arc::clone(live.d.plan()), stored.state) {
            Ok(d) => {
                let driven = std::mem::replace(&mut live.d, d);
                let published = std::mem::replace(&mut live.version, stored.version);
                // The work in flight in what is stored is asked for again, as after a restart,
                // and performed by this deployment's next commit; not the work in flight in the
                // copy driven here, which was asked for when it was stored and is under way (a
                // write that failed was undone in memory). Such work is another's write's: a
                // write of ours that may have been stored without its actions performed, or
                // one by a replica whose lease lapsed before it learnt so, which performs its
                // actions itself and leaves none for the holder (asked for twice, at least
                // once). Pending actions a copy stored for its driver are among what is
                // reissued: dropped first, so none is asked for twice.
                if live.owned {
                    live.d.reissue_afresh_beside(&driven);
                }
                // Its events were dropped with it: subscribers hear of them from the store's
                // history.
                if std::mem::take(&mut live.unsure) {
                    self.publish_stored(live.d.id(), published, live.version)
                        .await;
                }
                if live.owned && live.d.is_finished() {
                    self.retire(live);
                }
                true
            }
            Err(e) => {
                tracing::error!(deployment = %stored.id, error = %e, "the stored state no longer fits");
                false
            }
        }
    }

    /// A finished deployment leaves memory (late callbacks load it from the store) and lets a
    /// queued deployment of its application start.
    pub(crate) fn retire(&self, live: &mut Live) {
        // Before it leaves memory, for a resumption from a row read earlier to see.
        self.inner.recoveries.finished(live.d.shared_id());
        // Retired already (a reload found it finished, and its caller retires it too).
        if !self.unregister(live) {
            return;
        }
        self.hand_off_soon(live.d.plan().application());
    }

    /// Starts the deployment of `application` queued behind one that just finished, in a task.
    fn hand_off_soon(&self, application: &str) {
        // An engine that runs deployments side by side never queues one.
        if self.inner.allow_concurrent {
            return;
        }
        // Usually nothing waits: seen under the start lock, that settles it without a task,
        // since a `start` that finds the lock free has either queued its deployment already
        // or will find this one finished in the store.
        if let Ok(_serial) = self.inner.start_lock.try_lock()
            && !lock(&self.inner.queued).contains_key(application)
        {
            return;
        }
        let application = application.to_owned();
        let engine = self.clone();
        self.inner
            .tasks
            .spawn(async move { engine.hand_off(application).await });
    }

    /// Starts an action; a call or step that finished at once comes back as its result.
    fn perform(&self, live: &Live, action: Action) -> Option<Ready> {
        let id = live.d.id();
        match action {
            Action::CallWebhook(call) => {
                let prepared = self.inner.dispatcher.prepare(&live.d, &call, None);
                let span = tracing::info_span!("webhook_call", deployment = %id, gate = call.gate.0, attempt = call.attempt);
                self.start_io(
                    id,
                    {
                        let dispatcher = Arc::clone(&self.inner.dispatcher);
                        async move {
                            let limit = dispatcher.attempt_limit(&prepared);
                            tokio::time::timeout(limit, dispatcher.send(&prepared))
                                .await
                                .unwrap_or_else(|_| {
                                    CallResult::Failed(CallFailure::transient(format!(
                                        "the call did not finish within {:?} (twice its request \
                                         timeout): its secrets or its transport did not answer",
                                        limit
                                    )))
                                })
                        }
                    },
                    // Not retried: a panic is a bug, which the next attempt would meet again.
                    || {
                        CallResult::Failed(CallFailure::permanent(
                            "preparing or sending the call panicked (the message went to the \
                             process's panic hook)",
                        ))
                    },
                    move |d, now, result| {
                        d.handle_call_result(now, call.gate, call.attempt, result)
                    },
                    span,
                )
            }
            Action::RunStep(request) => {
                let context = step_context(&live.d, request.env, request.op);
                let host = Arc::clone(&self.inner.host);
                let span = tracing::info_span!("host_step", deployment = %id, env = %context.environment(), step = request.step.name());
                self.start_io(
                    id,
                    async move { host.run_step(&context, &request.step).await },
                    || host_panicked("the step"),
                    move |d, now, outcome| d.handle_step_result(now, request.op, outcome),
                    span,
                )
            }
            Action::RollBack { op, env } => {
                let context = step_context(&live.d, env, op);
                let host = Arc::clone(&self.inner.host);
                let span =
                    tracing::info_span!("rollback", deployment = %id, env = %context.environment());
                self.start_io(
                    id,
                    async move { host.roll_back(&context).await },
                    || host_panicked("the rollback"),
                    move |d, now, outcome| d.handle_step_result(now, op, outcome),
                    span,
                )
            }
            Action::RequestApproval(request) => {
                let _ = self.inner.events.send(EngineEvent::ApprovalRequested {
                    id: id.clone(),
                    gate: request.gate,
                    env: request.env,
                    kind: request.kind,
                    expires_at: request.expires_at,
                    tenant: live.d.tenant().map(str::to_owned),
                });
                None
            }
        }
    }

    /// Polls `io` once where it is started; its result, if ready, is returned for recording
    /// under the lock already held. Otherwise a task finishes `io` and records the result.
    /// Shutdown abandons `io` (the work is asked for again on recovery) but never a write
    /// already under way.
    ///
    /// `io` runs the host's or the transport's code, which may panic: its result is then
    /// `panicked`, a failure recorded as any other. Unwinding would have left the step or call
    /// under way with nothing to finish it, and, where `io` is polled under the deployment's
    /// lock, the rest of the write's work undone. The panic's message goes to the process's
    /// panic hook, not into the failure, which is stored: it may hold what the request held.
    fn start_io<T: Clone + Send + Sync + 'static>(
        &self,
        id: &DeploymentId,
        io: impl Future<Output = T> + Send + 'static,
        panicked: impl FnOnce() -> T + Send + 'static,
        record: impl Fn(&mut Deployment, DateTime<Utc>, T) -> Result<(), CoreError>
        + Send
        + Sync
        + 'static,
        span: tracing::Span,
    ) -> Option<Ready> {
        let mut io = Box::pin(AssertUnwindSafe(io).catch_unwind().map(|caught| {
            caught.unwrap_or_else(|_| {
                tracing::error!(
                    "the host's or the transport's code panicked; recording it as a failure"
                );
                panicked()
            })
        }));
        // A waker that does nothing is enough: a future still pending is polled again by its
        // task below, which registers the task's own waker.
        let first = {
            let _entered = span.enter();
            io.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        let result = match first {
            Poll::Ready(result) => result,
            Poll::Pending => {
                let id = id.clone();
                let engine = self.clone();
                let shutdown = self.inner.shutdown.clone();
                self.inner.tasks.spawn(
                    async move {
                        let result = tokio::select! {
                            result = io => result,
                            () = shutdown.cancelled() => return,
                        };
                        let ready = Ready::new(result, record, tracing::Span::current());
                        engine.record(&id, vec![ready]).await;
                    }
                    .instrument(span),
                );
                return None;
            }
        };
        Some(Ready::new(result, record, span))
    }

    /// Records `ready` in a task of its own (see [`Engine::record`]).
    fn record_later(&self, id: DeploymentId, ready: Vec<Ready>) {
        let engine = self.clone();
        self.inner
            .tasks
            .spawn(async move { engine.record(&id, ready).await });
    }

    /// Applies finished calls' and steps' results. Results whose write fails are kept with
    /// their deployment and recorded by its next input, or its deadline to try again by the
    /// engine's clock ([`Live::unrecorded`]): dropped, they would leave a gate or step waiting
    /// with nothing to wake it. They are dropped only where no entry keeps them (see
    /// [`Engine::apply_carrying`]); whoever resumes the deployment asks for their work again.
    async fn record(&self, id: &DeploymentId, ready: Vec<Ready>) {
        let target = Target::Id(Cow::Borrowed(id));
        if let Err(e) = self
            .apply_carrying(target, ready, |_| None, |_, _| ())
            .await
        {
            tracing::warn!(deployment = %id, error = %e, "could not record a result now; the deployment keeps it for its next input or deadline, or asks for its work again when resumed");
        }
    }
}

/// What an input is applied to: a deployment to look up, its entry, already found, or its
/// stored row, already read (boxed: every input's future would otherwise be as large).
pub(crate) enum Target<'a> {
    Id(Cow<'a, DeploymentId>),
    Entry(Arc<AsyncMutex<Live>>),
    Stored(Box<StoredDeployment>),
}

/// Work that has to end once begun (an input applied in memory has to be stored and acted on):
/// polled by its caller, and finished by a task if the caller stops waiting. Only a caller that
/// goes away costs a task.
pub(crate) struct Detached<T: Send + 'static> {
    work: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
    in_flight: TaskTrackerToken,
    /// Set while `work` is polled: still set when it is dropped, the work panicked.
    polling: bool,
}

impl<T: Send + 'static> Future for Detached<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        let Some(work) = this.work.as_mut() else {
            return Poll::Pending;
        };
        this.polling = true;
        let polled = work.as_mut().poll(cx);
        this.polling = false;
        let done = std::task::ready!(polled);
        this.work = None;
        Poll::Ready(done)
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else {
            return;
        };
        // Dropped as a panic in it unwinds: polled again, it would only panic once more.
        if self.polling {
            return;
        }
        let Ok(runtime) = Handle::try_current() else {
            tracing::error!(
                "work that has to end (an input's write, a resumption) was dropped outside a \
                 tokio runtime, where no task can finish it"
            );
            return;
        };
        self.in_flight.task_tracker().spawn_on(
            async move {
                work.await;
            },
            &runtime,
        );
    }
}

/// The outcome of a host step or rollback whose code panicked.
fn host_panicked(what: &str) -> StepOutcome {
    StepOutcome::failed(format!(
        "the host panicked while running {what} (the message went to the process's panic hook)"
    ))
}

/// Applies one finished call's or step's result to its deployment.
type Record = dyn Fn(&mut Deployment, DateTime<Utc>) -> Result<(), CoreError> + Send + Sync;

/// A finished call's or step's result, with how to apply it to its deployment (again, if a
/// write of it failed).
pub(crate) struct Ready {
    record: Box<Record>,
    span: tracing::Span,
}

impl Ready {
    fn new<T: Clone + Send + Sync + 'static>(
        result: T,
        record: impl Fn(&mut Deployment, DateTime<Utc>, T) -> Result<(), CoreError>
        + Send
        + Sync
        + 'static,
        span: tracing::Span,
    ) -> Self {
        Self {
            record: Box::new(move |d, now| record(d, now, result.clone())),
            span,
        }
    }
}

impl Live {
    /// Keeps `ready` among the results to record ([`Live::unrecorded`]), leaving it empty. Most
    /// often none are kept, and `ready`'s room is taken over rather than copied.
    pub(crate) fn keep_unrecorded(&mut self, ready: &mut Vec<Ready>) {
        if self.unrecorded.is_empty() {
            std::mem::swap(&mut self.unrecorded, ready);
        } else {
            self.unrecorded.append(ready);
        }
    }

    /// Begins a change of its deployment before a commit and makes it with `change`: returns
    /// the copy to put back if the write fails (the commit's `before`), and what `change`
    /// returned. The deployment gets a state of its own to change (and, with `lend`, output
    /// buffers kept from earlier writes), and the results it keeps from writes that failed
    /// ([`Live::unrecorded`]) are recorded into it first; a successful commit lets them go.
    /// Every change of a deployment in memory begins here, so that no write stores it without
    /// them.
    ///
    /// A panic on the way (a bug of the core's) puts the deployment back as it was before it
    /// unwinds on: the lock is let go as it unwinds, and an input waiting on it would otherwise
    /// apply itself to the half-changed copy, and store it. A panic while recording the kept
    /// results drops them too: each input after would record them first, and panic again. The
    /// deployment then waits for their work no longer than its timeouts.
    // Out of line, every callback ran 0.7% more instructions (callgrind, `engine_callbacks`).
    #[inline]
    pub(crate) fn change<R>(
        &mut self,
        now: DateTime<Utc>,
        lend: bool,
        change: impl FnOnce(&mut Deployment, DateTime<Utc>) -> R,
    ) -> (Deployment, R) {
        let before = self.d.clone();
        let mut recorded = false;
        // Unwind safe as asserted: on a panic the deployment, the only thing changed, is
        // replaced by `before`, and `change` is not called again.
        let changed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            spare::unshare(&mut self.d);
            if lend {
                spare::lend_queues(&mut self.d);
            }
            for r in &self.unrecorded {
                let _entered = r.span.enter();
                note_refusal((r.record)(&mut self.d, now));
            }
            recorded = true;
            change(&mut self.d, now)
        }));
        match changed {
            Ok(result) => (before, result),
            Err(panic) => {
                self.d = before;
                if !recorded {
                    tracing::error!(deployment = %self.d.id(), kept = self.unrecorded.len(), "recording the results a deployment kept panicked; they are dropped");
                    self.unrecorded = Vec::new();
                }
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// [`Live::change`] with no change of the caller's own: the results it keeps are recorded.
    pub(crate) fn begin_change(&mut self, now: DateTime<Utc>, lend: bool) -> Deployment {
        self.change(now, lend, |_, _| ()).0
    }
}

/// A result the core refuses is dropped: it is stale (the gate or step moved on, which is
/// normal after a timeout or a cancel), or it no longer fits, which is worth a warning.
fn note_refusal(result: Result<(), CoreError>) {
    match result {
        Ok(()) | Err(CoreError::Stale) => {}
        Err(e) => tracing::warn!(error = %e, "the core refused a result"),
    }
}

/// [`Deployment::restore`] of a deployment to drive. The engine's `enqueueOne` queue is kept
/// in memory, and a queued deployment is never stored: a stored one is a host's own, which the
/// engine would hold without ever beginning it, so it is refused as a state that does not fit.
pub(crate) fn restore(
    plan: Arc<Plan>,
    state: Arc<DeploymentState>,
) -> Result<Deployment, CoreError> {
    if state.status == DeploymentStatus::Queued {
        return Err(CoreError::PlanMismatch {
            what: "a queued deployment, which this engine does not store or resume (its queue \
                   is kept in memory)",
        });
    }
    Deployment::restore(plan, state)
}

pub(crate) fn step_context(d: &Deployment, env: EnvId, op: OpId) -> StepContext {
    StepContext::new(Arc::clone(d.shared_id()), op, Arc::clone(d.plan()), env)
}

#[cfg(test)]
mod tests {
    use std::panic::catch_unwind;

    use super::*;
    use crate::runtime::engine::tests::live;

    fn kept(record: fn() -> Result<(), CoreError>) -> Ready {
        Ready::new((), move |_, _, ()| record(), tracing::Span::none())
    }

    /// A kept result whose recording panics is dropped with the half-changed copy: the next
    /// change goes through, rather than record it first and panic again.
    #[test]
    fn a_kept_result_whose_recording_panics_is_dropped() {
        let mut live = live("d1");
        let before = live.d.clone();
        live.unrecorded.push(kept(|| panic!("a bug of the core's")));
        let caught = catch_unwind(AssertUnwindSafe(|| live.begin_change(Utc::now(), true)));
        assert!(caught.is_err());
        assert!(live.unrecorded.is_empty(), "dropped");
        assert!(live.d.same_state(&before), "put back");
        live.begin_change(Utc::now(), true);
    }

    /// A panic in the input's own change keeps the results: recording them did not panic.
    #[test]
    fn a_change_that_panics_keeps_the_results_kept() {
        let mut live = live("d1");
        let before = live.d.clone();
        live.unrecorded.push(kept(|| Err(CoreError::Stale)));
        let caught = catch_unwind(AssertUnwindSafe(|| {
            live.change(Utc::now(), true, |d, now| {
                d.handle_cancel(now, "someone").unwrap();
                panic!("a bug of the core's")
            })
        }));
        assert!(caught.is_err());
        assert_eq!(live.unrecorded.len(), 1, "kept");
        assert!(live.d.same_state(&before), "put back");
    }
}
