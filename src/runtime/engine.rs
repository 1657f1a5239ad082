use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::apply::{Ready, restore};
use super::chores::{Chores, Work};
use super::error::RuntimeError;
use super::event::EngineEvent;
use super::failed_loads::FailedLoads;
use super::host::Host;
use super::launches::Launches;
use super::recoveries::Recoveries;
use super::replica::{Renewals, Replica};
use super::scheduler::{Deadlines, DueRound, Slot};
use super::unsure_creates::UnsureCreates;
use super::view::DeploymentView;
use crate::clock::Clock;
use crate::config::{GateId, InProgressPolicy, NearMiss, Plan};
use crate::core::{
    CallbackId, Decision, Deployment, DeploymentId, DeploymentStatus, IdSource, Settings,
    StartOptions, later,
};
use crate::ids::IdHasher;
use crate::outbound::Dispatcher;
use crate::store::{DynStore, HistoryEntry, NewDeployment, StoreError, StoredDeployment};

/// Drives many deployments: performs their actions, keeps their state durable, fires their
/// deadlines from one scheduler, and recovers them after a crash.
///
/// Every input to a deployment — a callback, an outbound call's result, a host step's result, a
/// decision, a deadline — goes through one cycle under that deployment's lock: apply it to the
/// core, store the new state and its events, and only then answer, publish events and start
/// the actions it produced. A store failure leaves the deployment in memory as it was; a
/// write whose answer was lost is looked for in the store afterwards, and taken up if it was
/// stored.
///
/// A call or host step whose result is ready as soon as it is started (a host or transport that
/// answers at once) is recorded in a cycle of its own that follows at once, still under the
/// lock: without a task of its own when the store answers at once too, and in a task that holds
/// the lock when the store makes the write wait, so that the input is answered first.
///
/// Build one with [`Engine::builder`]; it is cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

/// What an engine is doing, in counts: its parts (store, host, dispatcher) are the host's own.
/// A count whose table is locked at that moment shows as `None`, rather than wait for it (or
/// never return, on the thread holding it).
impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.inner.live.try_lock().ok().map(|live| live.len());
        let armed = self.inner.deadlines.try_len();
        f.debug_struct("Engine")
            .field(
                "replica",
                &self.inner.replica.as_ref().map(|r| &r.options.id),
            )
            .field("live_deployments", &live)
            .field("armed_deadlines", &armed)
            .field("shutting_down", &self.inner.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<DynStore>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) host: Arc<dyn Host>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Mutex<Box<dyn IdSource + Send>>,
    pub(crate) settings: Settings,
    /// Keyed by the deployments' own shared ids, so an entry costs no copy of its id's text.
    pub(crate) live: Mutex<HashMap<Arc<DeploymentId>, Arc<AsyncMutex<Live>>, IdHasher>>,
    /// The entries of the deployments in memory, by callback id: a callback finds its
    /// deployment's entry in one look-up.
    pub(crate) callbacks: Mutex<HashMap<CallbackId, Arc<AsyncMutex<Live>>, IdHasher>>,
    /// Deployments of the same file share one plan; weak, so a plan goes with its last
    /// deployment.
    pub(crate) plans: Mutex<HashMap<Arc<str>, Weak<Plan>>>,
    pub(crate) allow_concurrent: bool,
    pub(crate) queued: Mutex<HashMap<String, Queued>>,
    /// Held from the check for a running deployment of the application to the end of the
    /// launch; shared, so that a launch whose caller went away holds it to the end.
    pub(crate) start_lock: Arc<AsyncMutex<()>>,
    pub(crate) deadlines: Deadlines,
    /// Work owed that no deployment in memory carries, tried again by the engine's clock.
    pub(crate) chores: Chores,
    /// Deployments not in memory whose deadline could not be fired, tried again later.
    pub(crate) failed_loads: FailedLoads,
    /// Deployments whose create failed and may have been stored all the same (see
    /// [`Engine::look_for_create`]).
    pub(crate) unsure_creates: UnsureCreates,
    pub(crate) launches: Launches,
    /// Deployments that finished (and were retired) here while `recover` ran: its rows of
    /// them are out of date.
    pub(crate) recoveries: Recoveries,
    pub(crate) events: broadcast::Sender<EngineEvent>,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// Set when the engine is one of several replicas sharing its store.
    pub(crate) replica: Option<Replica>,
}

/// A deployment with the store version its state was saved at.
pub(crate) struct Live {
    pub(crate) d: Deployment,
    pub(crate) version: u64,
    /// Whether this engine drives it (performs its actions, fires its deadlines), or only
    /// applies an input to a copy: a finished deployment, or one another replica drives.
    pub(crate) owned: bool,
    /// Where its deadline is in the scheduler's table.
    pub(crate) deadline: Slot,
    /// Set when a write failed and whether it was stored is not known: if it was, the actions
    /// it led to were never performed (the next reload from the store asks again for the work
    /// in flight there, as every reload of a deployment driven here does), and its events were
    /// never published, which that reload publishes from the store's history.
    pub(crate) unsure: bool,
    /// How many times it was looked for in the store since `unsure` was set.
    pub(crate) looks: u8,
    /// Set when the entry leaves memory (its deployment finished, this replica lost or gave up
    /// its lease, or its resumption's write failed). An input that was waiting on its lock
    /// then looks the deployment up again: applied to this copy, it would be stored but acted
    /// on by no one here, or by this replica while another drives the deployment, and after a
    /// failed resumption the work it asked for again would wait for the deployment's next
    /// deadline.
    pub(crate) gone: bool,
    /// Results of calls and steps whose write failed, oldest first. They are recorded, before
    /// its own change, by the deployment's next input: its deadline, armed by the engine's
    /// clock after the failure ([`Live::arm_after_failure`]), at the latest. Dropped with the
    /// entry when it leaves memory: stale if it finished, and asked for again by whoever
    /// resumes it otherwise.
    pub(crate) unrecorded: Vec<Ready>,
    /// How many of its writes in a row failed (a conflict is not counted; a write that
    /// succeeds resets it): each wait to try a due deadline or kept results again is twice the
    /// one before ([`retry_wait`]).
    pub(crate) failed_writes: u8,
}

impl Live {
    pub(crate) fn new(d: Deployment, version: u64, owned: bool) -> Self {
        Self {
            d,
            version,
            owned,
            deadline: None,
            unsure: false,
            looks: 0,
            gone: false,
            unrecorded: Vec::new(),
            failed_writes: 0,
        }
    }

    /// Records its next deadline with the scheduler, unless it left memory: the next look-up
    /// of it arms its own.
    pub(crate) fn arm(&mut self, deadlines: &Deadlines) {
        if self.gone {
            return;
        }
        deadlines.set(
            self.d.shared_id(),
            &mut self.deadline,
            self.d.poll_timeout(),
        );
    }

    /// Records its next deadline after a write failed and the deployment was put back as it
    /// was: one already due (the write may have been its firing), or holding results not
    /// recorded, is tried again a second after `now`, and twice as long after each further
    /// failure in a row, up to [`MAX_RETRY_AFTER_FAILURE`], so a store that fails at once is
    /// neither retried in a tight loop nor, through an outage, every second. A deadline still
    /// to come keeps its time, or comes a second after `now` if that is sooner. A write that
    /// may have been stored has the deployment looked for in the store then too, whatever its
    /// deadline, and again at doubling waits, [`MAX_LOOKS`] times in all: stored, the write
    /// may have finished the deployment, or asked for work no one performs, and no input may
    /// come to find out. Not for one that left memory, as [`Live::arm`].
    pub(crate) fn arm_after_failure(&mut self, deadlines: &Deadlines, now: DateTime<Utc>) {
        if self.gone {
            return;
        }
        let wait = retry_wait(self.failed_writes);
        let retry = later(now, wait);
        // Only what the failed write was doing waits longer: a deadline still to come keeps
        // its time (a second from now at the soonest).
        let soonest = later(now, RETRY_AFTER_FAILURE);
        let due = if self.unrecorded.is_empty() {
            self.d
                .poll_timeout()
                .map(|at| if at <= now { retry } else { at.max(soonest) })
        } else {
            Some(retry)
        };
        let at = if self.looking() {
            // Every failure starts the looks again; through an outage, they too wait longer.
            let look = later(now, look_wait(self.looks).max(wait));
            Some(due.map_or(look, |due| due.min(look)))
        } else {
            due
        };
        deadlines.set(self.d.shared_id(), &mut self.deadline, at);
    }

    /// Whether a write of it may have been stored unanswered and it is still looked for in the
    /// store ([`Live::arm_after_failure`]).
    pub(crate) fn looking(&self) -> bool {
        self.unsure && self.looks < MAX_LOOKS
    }

    /// Whether the deadline armed for it has come, which for a deployment looked for in the
    /// store ([`Live::arm_after_failure`]) is the time of its next look.
    pub(crate) fn look_due(&self, now: DateTime<Utc>) -> bool {
        self.deadline.is_none_or(|(at, _)| at <= now)
    }
}

/// How many change notices the scheduler takes up at each turn besides the one its `select!`
/// may pick.
const MAX_NOTICES_PER_TURN: usize = 1024;

/// How many times a deployment whose write may have been stored unanswered is looked for in
/// the store with no input to make it so, each look twice as long after the last (1 s to about
/// a minute; two minutes in all): a database may commit a statement whose client gave up on it
/// a while after.
pub(crate) const MAX_LOOKS: u8 = 7;

/// How long after `looks` looks the next one comes.
fn look_wait(looks: u8) -> std::time::Duration {
    RETRY_AFTER_FAILURE * (1 << looks)
}

/// How long after a failed write a deadline is tried again: soon, but not in a tight loop
/// against a store that fails at once.
const RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest wait to try a deployment's write again after failures in a row.
const MAX_RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(8);

/// How long after the last of `failed` writes in a row the next is tried: a second after the
/// first, doubling after each further one, up to [`MAX_RETRY_AFTER_FAILURE`].
pub(crate) fn retry_wait(failed: u8) -> std::time::Duration {
    let doublings = failed.saturating_sub(1).min(3);
    (RETRY_AFTER_FAILURE * (1 << doublings)).min(MAX_RETRY_AFTER_FAILURE)
}

/// How long until a deployment not in memory is tried again ([`Engine::retry_soon`]), for a
/// log: unknown when a retry was armed already.
pub(crate) struct RetryIn(Option<std::time::Duration>);

impl std::fmt::Display for RetryIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(wait) => write!(f, "in {wait:?}"),
            None => f.write_str("when the retry armed already fires"),
        }
    }
}

/// A deployment waiting for another one of its application (`enqueueOne`), or about to start.
pub(crate) struct Queued {
    pub(crate) id: DeploymentId,
    /// Kept, as the engine's plan cache holds plans only while something uses them: viewing or
    /// starting a queued deployment then reads no file again.
    pub(crate) plan: Arc<Plan>,
    pub(crate) source: Arc<str>,
    pub(crate) context: BTreeMap<String, String>,
    pub(crate) tenant: Option<String>,
    /// Whether a launch of it failed on the store: its create may be stored all the same, and
    /// found by a look, it runs while still queued until the hand-off tries again.
    pub(crate) maybe_stored: bool,
}

/// A deployment taken out of the queue, unstarted as far as the queue knows.
#[derive(Debug)]
pub(crate) struct Withdrawn {
    /// Whether its cancel was recorded for a create still looked for.
    pub(crate) recorded: bool,
    /// Whether it may be stored and running all the same ([`Queued::maybe_stored`]).
    pub(crate) maybe_stored: bool,
}

/// How [`Engine::start`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Started {
    /// The new deployment's id.
    pub id: DeploymentId,
    /// `running`, or `queued` behind another deployment of the application (`enqueueOne`).
    pub status: DeploymentStatus,
    /// The keys of the deployment file that hookgate does not read
    /// ([`Plan::ignored_fields`](crate::config::Plan::ignored_fields)). They are no error, as
    /// Armory files carry more than hookgate reads, but a misspelt key is among them, and a
    /// misspelt `beforeDeployment` drops its gates: show them to whoever sent the file.
    pub ignored_fields: Vec<String>,
    /// The keys hookgate does not read but likely meant to be one it does, misspelt or
    /// misplaced, each with that key ([`Plan::near_misses`](crate::config::Plan::near_misses)).
    pub near_misses: Vec<NearMiss>,
    /// The names of the webhooks whose body looks like JSON but goes out without a JSON
    /// `Content-Type`, its values unescaped
    /// ([`Plan::webhooks_with_unescaped_json`](crate::config::Plan::webhooks_with_unescaped_json)):
    /// no error (PROTOCOL.md §3), but a value with a `"` in it can add fields to what the
    /// receiver reads. Show them to whoever sent the file.
    pub unescaped_json: Vec<String>,
}

impl Started {
    fn of(id: DeploymentId, status: DeploymentStatus, plan: &Plan) -> Self {
        Self {
            id,
            status,
            ignored_fields: plan.ignored_fields().to_vec(),
            near_misses: plan.near_misses().to_vec(),
            unescaped_json: plan
                .webhooks_with_unescaped_json()
                .map(|webhook| webhook.name.clone())
                .collect(),
        }
    }
}

/// What [`Engine::recover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovered {
    /// Unfinished deployments this call loaded and resumed. One resumed before it, by an input
    /// naming it (a callback that arrived before `recover` ran), is driven all the same but
    /// not counted here; [`Engine::live_deployments`] counts every deployment driven.
    pub resumed: usize,
    /// Of those, deployments whose state changed on resuming (a deadline passed while the
    /// engine was down).
    pub changed: usize,
    /// Unfinished deployments left as they are, neither resumed nor changed, for an operator
    /// to look at while the others resume (each logged at ERROR with what is wrong): their row
    /// could not be read ([`StoreError::Corrupt`]), their deployment file no longer
    /// validates, or their state does not fit it. A replica lists the unreadable ones it held
    /// and those it claimed from a replica that stopped.
    pub not_resumed: Vec<DeploymentId>,
}

impl Recovered {
    /// Records a deployment whose row `e` (a [`StoreError::Corrupt`]) could not be read.
    fn left_unread(&mut self, e: StoreError) {
        tracing::error!(error = %e, "an unfinished deployment cannot be read; it is left as it is while the others resume");
        if let StoreError::Corrupt { id, .. } = e {
            self.not_resumed.push(id);
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Engine {
    /// Starts a deployment of the deployment file `source` (YAML or JSON) with start-time
    /// `context`, which wins over the file's context.
    ///
    /// With `ifDeploymentInProgress: reject` (the default) a second deployment of a running
    /// application is refused; with `enqueueOne` it waits, replacing any deployment already
    /// waiting, which never starts (one a launch had stored all the same, its create answered
    /// with a failure, is canceled, as [`Engine::cancel`] cancels one it withdraws). The
    /// waiting one is kept in memory only: after a restart it is gone.
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::Config`]: the file is invalid; nothing was started.
    /// - [`RuntimeError::Outbound`]: a webhook cannot be sent (a remote network agent with no
    ///   transport); nothing was started.
    /// - [`RuntimeError::InProgress`]: `ifDeploymentInProgress: reject` and the application
    ///   runs.
    /// - [`RuntimeError::Store`]: the store failed before anything was written.
    /// - [`RuntimeError::MaybeStarted`]: the store failed writing the deployment, which may
    ///   run all the same; cancel it by the id it names rather than start the file again.
    /// - [`RuntimeError::ShuttingDown`].
    pub async fn start(
        &self,
        source: &str,
        context: BTreeMap<String, String>,
    ) -> Result<Started, RuntimeError> {
        self.start_owned(source, context, None).await
    }

    /// Starts a deployment as [`Engine::start`] does, owned by `tenant`: callbacks and
    /// decisions through the HTTP layer are then accepted only from principals of that tenant
    /// ([`Principal::tenant`](crate::auth::Principal::tenant)); others get `403`.
    pub async fn start_for_tenant(
        &self,
        source: &str,
        context: BTreeMap<String, String>,
        tenant: impl Into<String>,
    ) -> Result<Started, RuntimeError> {
        self.start_owned(source, context, Some(tenant.into())).await
    }

    async fn start_owned(
        &self,
        source: &str,
        context: BTreeMap<String, String>,
        tenant: Option<String>,
    ) -> Result<Started, RuntimeError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(RuntimeError::ShuttingDown);
        }
        let plan = self.plan_for(source)?;
        self.inner.dispatcher.check_agents(&plan)?;
        if !plan.ignored_fields().is_empty() {
            // No error (PROTOCOL.md §2), but a misspelt key is among them.
            tracing::info!(
                application = plan.application(),
                fields = ?plan.ignored_fields(),
                "the deployment file holds keys hookgate does not read"
            );
        }
        for miss in plan.near_misses() {
            tracing::warn!(
                application = plan.application(),
                field = ?miss.path,
                likely_meant = miss.known,
                slip = ?miss.slip,
                "the deployment file holds a key hookgate does not read, likely meant to be one it does"
            );
        }
        for webhook in plan.webhooks_with_unescaped_json() {
            tracing::warn!(
                application = plan.application(),
                webhook = ?webhook.name,
                "the webhook's body looks like JSON but is sent without a JSON Content-Type, so its values go in unescaped; set its Content-Type to application/json, in place of any other"
            );
        }
        let source: Arc<str> = Arc::from(source);
        let id = self.new_deployment_id();
        let serial = Arc::clone(&self.inner.start_lock).lock_owned().await;
        let in_flight = self.in_flight()?;
        let running = if self.inner.allow_concurrent {
            Vec::new()
        } else {
            self.inner
                .store
                .running_for_application(plan.application())
                .await?
        };
        let queued = Queued {
            id,
            plan: Arc::clone(&plan),
            source,
            context,
            tenant,
            maybe_stored: false,
        };
        if let Some(running) = running.into_iter().next() {
            return self.in_progress(queued, running);
        }
        // One still waits: the last one of its application finished, and the hand-off that
        // starts the waiting one has not run yet. Started now, this newer one would run first,
        // and the older file would be deployed over it next; it is queued in the waiting one's
        // place instead, as while the last one ran.
        let waiting = lock(&self.inner.queued)
            .get(plan.application())
            .map(|w| w.id.clone());
        if let Some(waiting) = waiting {
            return self.in_progress(queued, waiting);
        }
        // From here the deployment may be stored, so the caller going away (a client hanging
        // up) must not stop half-way: that would leave a stored deployment nobody drives, and
        // its application locked against new ones until a restart. Should another replica have
        // started the application since the check above, the policy is applied here too, still
        // under the start lock, so that a newer start never loses its place in the queue to
        // this older one.
        let engine = self.clone();
        self.detached(in_flight, async move {
            let _serial = serial;
            match engine.launch(&queued).await {
                Ok(()) => Ok(Started::of(
                    queued.id,
                    DeploymentStatus::Running,
                    &queued.plan,
                )),
                Err(RuntimeError::Store(StoreError::ApplicationBusy { running, .. })) => {
                    engine.in_progress(queued, running)
                }
                // Not found by the look that followed: looked for again, and run if found.
                Err(RuntimeError::Store(source @ StoreError::Backend { .. })) => {
                    Err(RuntimeError::MaybeStarted {
                        id: queued.id,
                        source,
                    })
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// What `ifDeploymentInProgress` says to do with `new` while `running` runs or is about
    /// to: queue it (`enqueueOne`, in place of one queued before) or refuse it.
    fn in_progress(&self, new: Queued, running: DeploymentId) -> Result<Started, RuntimeError> {
        let application = new.plan.application().to_owned();
        match new.plan.if_in_progress() {
            InProgressPolicy::EnqueueOne => {
                let (id, plan) = (new.id.clone(), Arc::clone(&new.plan));
                let replaced = lock(&self.inner.queued).insert(application, new);
                if let Some(old) = replaced {
                    tracing::info!(replaced = %old.id, by = %id, "queued deployment replaced by a newer one");
                    // Forgotten, it never starts: canceled where it is stored all the same, as
                    // a cancel withdrawing it would, until that is done (nothing else would).
                    let by = format!("hookgate (replaced in the queue by {id})");
                    let withdrawn = Withdrawn {
                        recorded: self.inner.unsure_creates.record_cancel(&old.id, &by),
                        maybe_stored: old.maybe_stored,
                    };
                    if withdrawn.recorded || withdrawn.maybe_stored {
                        let engine = self.clone();
                        let cancel = Work::Cancel {
                            id: old.id,
                            by,
                            withdrawn,
                        };
                        self.inner
                            .tasks
                            .spawn(async move { engine.attempt(cancel).await });
                    }
                }
                Ok(Started::of(id, DeploymentStatus::Queued, &plan))
            }
            _ => Err(RuntimeError::InProgress {
                application,
                running,
            }),
        }
    }

    /// Starts and stores `new`; it stays the caller's, for the policy to apply should the store
    /// find the application busy.
    pub(crate) async fn launch(&self, new: &Queued) -> Result<(), RuntimeError> {
        let plan = Arc::clone(&new.plan);
        let now = self.inner.clock.now();
        let mut d = {
            let mut ids = lock(&self.inner.ids);
            let seed = u64::from_be_bytes(ids.callback_id().0[..8].try_into().unwrap_or_default());
            let options = StartOptions {
                context: new.context.clone(),
                tenant: new.tenant.clone(),
                settings: self.inner.settings.clone(),
                seed,
            };
            Deployment::start(plan, new.id.clone(), options, &mut **ids, now)
        };
        let (actions, mut events) = drain(&mut d);
        let _launching = self.inner.launches.begin(d.id());
        let mut new = NewDeployment::new(&d, &*new.source);
        let lease = self.lease();
        let leased_at = lease.as_ref().map(|lease| lease.now);
        if let Some(lease) = lease {
            new = new.leased(lease);
        }
        // Checked by the store in the same step as the write: the check of `start` and of a
        // hand-off holds only for this engine, and a replica may start the application at once.
        if !self.inner.allow_concurrent {
            new = new.exclusive();
        }
        let version = match self.inner.store.create(new, &events).await {
            // Not known to be stored or not: deadlines from a moment from now look again, and
            // resume it if it is there, since nothing else would before a restart.
            Err(e @ StoreError::Backend { .. }) => {
                let id = d.shared_id();
                self.stored_anyway(d.id(), 1, d.state(), e, || self.look_for_create(id))
                    .await?
            }
            created => created?,
        };
        // The new row's lease was taken before the create, which a slow store may have made
        // last a good part of it (or all of it): another replica would take the deployment
        // over before this one's next upkeep round renews it.
        if let (Some(replica), Some(leased_at)) = (self.replica(), leased_at) {
            self.renew_leases_when_due(&mut Renewals::since(replica, leased_at))
                .await;
        }
        // Stored, so no longer looked for: an earlier launch of it by a hand-off may have
        // failed unsure.
        self.inner.unsure_creates.remove(d.id());
        match self.register(Live::new(d, version, true)) {
            (_, Some(mut live)) => {
                let ready = self.after_commit(&mut live, actions, events);
                self.settle_soon(live, ready);
            }
            (entry, None) => {
                // Put in memory by someone else first, who drives it: only the start's events
                // are left to publish. Not expected, since resumptions leave a deployment being
                // started to its start.
                let live = entry.lock().await;
                self.publish(live.d.id(), &mut events);
            }
        }
        Ok(())
    }

    /// Loads every unfinished deployment from the store and resumes it: deadlines that passed
    /// while the engine was down fire at once (a callback timeout that expired fails its
    /// gate), and outbound calls and host steps that were in flight are asked for again (with
    /// the same idempotency keys and operation ids). Deployments that cannot be resumed are
    /// left as they are and listed in [`Recovered::not_resumed`]; one whose write fails is
    /// tried again a second later by a single engine (then 2, 4 and at most 8 s after each
    /// further failure in a row), and by a replica at its next lease upkeep. Once [`Engine::shutdown`] has begun, it stops with
    /// [`RuntimeError::ShuttingDown`] and resumes nothing more.
    ///
    /// A replica ([`EngineBuilder::replica`](super::EngineBuilder::replica)) resumes only the
    /// deployments it held itself before it restarted and those no live replica holds, starts
    /// hearing of the other replicas' writes, and, once all that is done, records its run
    /// under its name in the store (see [`RuntimeError::ReplicaNameTaken`]); after shutdown has
    /// begun it claims and records nothing more either.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Store`] when the store cannot list the unfinished deployments (or, for
    /// a replica, claim them or record its run), and [`RuntimeError::ShuttingDown`]. A
    /// deployment that cannot be resumed is no error: it is listed in
    /// [`Recovered::not_resumed`].
    pub async fn recover(&self) -> Result<Recovered, RuntimeError> {
        let _recovering = self.inner.recoveries.begin();
        let mut recovered = Recovered {
            resumed: 0,
            changed: 0,
            not_resumed: Vec::new(),
        };
        let Some(replica) = self.replica() else {
            let listed = self.inner.store.list_unfinished().await?;
            for e in listed.unreadable {
                recovered.left_unread(e);
            }
            self.resume_all(listed.deployments, &mut recovered, None)
                .await?;
            return Ok(recovered);
        };
        self.watch_store().await?;
        // A batch at a time, the deployments this replica held first and then orphans, each
        // batch resumed before the next is read and the leases renewed in between and, when a
        // third of the lease has passed, within a batch, so a long recovery does not let its
        // first leases lapse. Each batch holds a token of the
        // engine's tasks: a shutdown gives the leases up only after the batch under way, and
        // none is claimed once it has begun.
        // The field is public: a zero set there would make no batches at all.
        let batch = replica.options.takeover_batch.max(1);
        let lease = self.lease_of(replica);
        let held = self.inner.store.renew(&lease).await?;
        let mut renewals = Renewals::since(replica, lease.now);
        for held in held.chunks(batch) {
            let _in_flight = self.in_flight()?;
            let mut stored = Vec::with_capacity(held.len());
            for (id, _) in held {
                match self.inner.store.load(id).await {
                    Ok(found) => stored.extend(found),
                    // Held, as a row a takeover could not read stays held: left as it is
                    // for an operator, while the rest resume.
                    Err(e @ StoreError::Corrupt { .. }) => recovered.left_unread(e),
                    Err(e) => return Err(e.into()),
                }
            }
            self.resume_and_renew(stored, &mut renewals, &mut recovered)
                .await?;
        }
        loop {
            let _in_flight = self.in_flight()?;
            let orphans = self
                .inner
                .store
                .claim_orphans(&self.lease_of(replica), batch)
                .await?;
            // A batch of rows all unreadable answers no deployment, and readable ones may be
            // left behind it: only an answer without either says none is left.
            if orphans.deployments.is_empty() && orphans.unreadable.is_empty() {
                break;
            }
            for e in orphans.unreadable {
                recovered.left_unread(e);
            }
            self.resume_and_renew(orphans.deployments, &mut renewals, &mut recovered)
                .await?;
        }
        // Last, once this engine drives the name's deployments: a recovery that failed, or
        // one refused by a shutdown, leaves the engine running under the name undisturbed.
        let _in_flight = self.in_flight()?;
        self.register_run(replica).await?;
        Ok(recovered)
    }

    /// [`Engine::resume_all`] for one batch of a replica's recovery, then its leases renewed
    /// (with a fresh lease: the batch may have taken a while).
    async fn resume_and_renew(
        &self,
        batch: Vec<StoredDeployment>,
        renewals: &mut Renewals<'_>,
        recovered: &mut Recovered,
    ) -> Result<(), RuntimeError> {
        self.resume_all(batch, recovered, Some(&mut *renewals))
            .await?;
        self.renew_leases(renewals).await?;
        Ok(())
    }

    /// Resumes `stored`, one after another; a replica's leases renewed as they go
    /// (`renewals`).
    async fn resume_all(
        &self,
        stored: Vec<StoredDeployment>,
        recovered: &mut Recovered,
        mut renewals: Option<&mut Renewals<'_>>,
    ) -> Result<(), RuntimeError> {
        for stored in stored {
            if let Some(renewals) = renewals.as_deref_mut() {
                self.renew_leases_when_due(renewals).await;
            }
            let id = stored.id.clone();
            match self.resume(stored).await {
                Ok(Some(changed)) => {
                    recovered.resumed += 1;
                    recovered.changed += usize::from(changed);
                }
                // Driven here already, or its row was out of date.
                Ok(None) => {}
                // The rest are resumed by the next start, or by another replica.
                Err(RuntimeError::ShuttingDown) => return Err(RuntimeError::ShuttingDown),
                // A store that failed the write may work in a moment; a replica's upkeep
                // rounds try again on their own.
                Err(e @ RuntimeError::Store(_)) => {
                    if self.replica().is_none() {
                        let wait = self.retry_soon(&Arc::new(id.clone()));
                        tracing::error!(deployment = %id, error = %e, "could not resume a deployment; trying again {wait}");
                    } else {
                        tracing::error!(deployment = %id, error = %e, "could not resume a deployment; trying again at the next lease upkeep");
                    }
                }
                Err(e) => {
                    // A file that no longer validates or a state that does not fit it stays
                    // stored as it is, for an operator to look at; the rest still resume.
                    tracing::error!(deployment = %id, error = %e, "could not resume a deployment; it is left as it is");
                    recovered.not_resumed.push(id);
                }
            }
        }
        Ok(())
    }

    /// Cancels a deployment (see [`Deployment::handle_cancel`]). A deployment still queued
    /// (`enqueueOne`) leaves the queue and never starts. One whose create was answered with a
    /// failure but may still be stored (a start answered [`RuntimeError::MaybeStarted`], or a
    /// queued one's launch) is canceled if it is found stored, before anything of it is asked
    /// for (unless its resumption had begun before the cancel was recorded: it is then
    /// canceled right after; when another replica took it up first, the cancel reaches that
    /// replica through the store once this engine's look finds the row). That cancel is kept
    /// in this engine's memory until it is stored: it is lost if the looks for the create run
    /// out (the deployment was then never stored) or the engine restarts first. The host's own
    /// call: it checks no tenant (see [`Engine::decide`]).
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::UnknownDeployment`]: no deployment has this id, queued, stored or
    ///   looked for.
    /// - [`RuntimeError::Core`]: the deployment has finished
    ///   ([`CoreError::Finished`](crate::core::CoreError::Finished)).
    /// - [`RuntimeError::Store`]: the cancel's write failed; the deployment is as it was, or
    ///   (its answer lost) canceled: cancel again to find out.
    /// - [`RuntimeError::ShuttingDown`].
    pub async fn cancel(&self, id: &DeploymentId, by: &str) -> Result<(), RuntimeError> {
        let cancel = |d: &mut Deployment, now| d.handle_cancel(now, by);
        let withdrawn = self
            .queued_or_stored(
                || self.withdraw(id, by).map(Some),
                || async {
                    match self.apply(id, cancel).await {
                        Err(RuntimeError::UnknownDeployment(_))
                            if self.inner.unsure_creates.record_cancel(id, by) =>
                        {
                            Ok(Some(Withdrawn {
                                recorded: true,
                                maybe_stored: true,
                            }))
                        }
                        applied => {
                            applied??;
                            Ok(None)
                        }
                    }
                },
            )
            .await?;
        match withdrawn {
            Some(w) if w.recorded || w.maybe_stored => self.cancel_withdrawn(id, by, &w).await,
            // Never launched: out of the queue, it never starts.
            _ => Ok(()),
        }
    }

    /// Cancels `id`, just taken out of the queue (or named by a start's
    /// [`RuntimeError::MaybeStarted`]), where it is stored all the same: by a launch whose
    /// create was answered with a failure, still looked for (its cancel recorded for when it
    /// is found) and perhaps resumed already, having looked for a cancel before this one was
    /// recorded; or found stored and running while its hand-off waits to try again with it
    /// queued. A look that finds a create whose recorded cancel no resumption here stored
    /// applies it the same way.
    pub(crate) async fn cancel_withdrawn(
        &self,
        id: &DeploymentId,
        by: &str,
        withdrawn: &Withdrawn,
    ) -> Result<(), RuntimeError> {
        let cancel = |d: &mut Deployment, now| d.handle_cancel(now, by);
        match self.apply(id, cancel).await {
            // Stored canceled, or found finished (canceled by its resumption first).
            Ok(_) => {
                if withdrawn.recorded {
                    self.inner.unsure_creates.cancel_stored(id);
                }
            }
            // Not stored: it never starts (a recorded cancel cancels it if it is found).
            Err(RuntimeError::UnknownDeployment(_)) => {}
            // Kept, and tried again by the deadline that fires a second or more from now: the
            // deployment may be in memory here, resumed before the cancel was recorded, with
            // nothing else due for a day.
            Err(e) if withdrawn.recorded => {
                let wait = self.retry_soon(&Arc::new(id.clone()));
                tracing::warn!(deployment = %id, error = %e, "could not store a cancel taken while the deployment's create was looked for; the cancel is kept and tried again {wait}");
            }
            // Out of the queue, and perhaps running: a retry of the cancel finds it stored, or
            // nowhere if it never was.
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// `queued()` for a deployment still queued, else `stored()`. One leaving the queue to start
    /// is in neither for a moment: its hand-off holds the start lock until it is stored, so a
    /// deployment found nowhere is looked for again once that lock is free.
    async fn queued_or_stored<R, F>(
        &self,
        queued: impl Fn() -> Option<R>,
        stored: impl Fn() -> F,
    ) -> Result<R, RuntimeError>
    where
        F: Future<Output = Result<R, RuntimeError>>,
    {
        if let Some(r) = queued() {
            return Ok(r);
        }
        match stored().await {
            Err(RuntimeError::UnknownDeployment(_)) => {
                let _serial = self.inner.start_lock.lock().await;
                match queued() {
                    Some(r) => Ok(r),
                    None => stored().await,
                }
            }
            found => found,
        }
    }

    /// Takes `id` out of the queue, if it is queued there: `None` if it was not, else whether
    /// it may be stored all the same, and whether its cancel was recorded for a create still
    /// looked for.
    fn withdraw(&self, id: &DeploymentId, by: &str) -> Option<Withdrawn> {
        let mut queued = lock(&self.inner.queued);
        let application = queued_entry(&queued, id).map(|(application, _)| application.clone())?;
        let withdrawn = queued.remove(&application)?;
        // A launch of it whose create failed may still be stored: found, it is canceled then.
        let recorded = self.inner.unsure_creates.record_cancel(id, by);
        tracing::info!(deployment = %id, by, "queued deployment withdrawn");
        Some(Withdrawn {
            recorded,
            maybe_stored: withdrawn.maybe_stored,
        })
    }

    /// Decides an approval (see [`Deployment::handle_approval`]).
    ///
    /// This is the host's own call, trusted as the host is: it checks no caller's tenant.
    /// A host deciding on a caller's behalf checks [`DeploymentView::tenant`] first, or goes
    /// through [`GateService::decide`](crate::server::GateService::decide), which refuses
    /// another tenant's principal (the approval endpoint does).
    ///
    /// # Errors
    ///
    /// - [`RuntimeError::UnknownDeployment`]: no deployment has this id.
    /// - [`RuntimeError::Core`]: the core refused the decision: the gate waits for none, the
    ///   decider lacks a required role, or the deployment has finished (see
    ///   [`Deployment::handle_approval`]).
    /// - [`RuntimeError::Store`] and [`RuntimeError::ShuttingDown`], as for
    ///   [`Engine::cancel`].
    pub async fn decide(
        &self,
        id: &DeploymentId,
        gate: GateId,
        decision: Decision,
    ) -> Result<(), RuntimeError> {
        self.apply(id, |d, now| d.handle_approval(now, gate, decision.clone()))
            .await??;
        Ok(())
    }

    /// A deployment's status, its environments' statuses and every gate's state
    /// ([`DeploymentView::open_gates`] for those waiting); a deployment
    /// still queued shows as [`DeploymentStatus::Queued`], nothing of it begun. Like
    /// [`Engine::cancel`], [`Engine::decide`] and [`Engine::history`], a call of the host's
    /// own that checks no tenant.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::UnknownDeployment`] when no deployment has this id, and
    /// [`RuntimeError::Store`] when the store cannot load it.
    pub async fn view(&self, id: &DeploymentId) -> Result<DeploymentView, RuntimeError> {
        self.queued_or_stored(
            || {
                queued_entry(&lock(&self.inner.queued), id)
                    .map(|(_, q)| DeploymentView::queued(id, &q.plan, q.tenant.as_deref()))
            },
            || async {
                let entry = self.entry(id, false).await?;
                let live = entry.lock().await;
                Ok(DeploymentView::of(&live.d))
            },
        )
        .await
    }

    /// The plan a deployment runs, read from its deployment file: what names the environments
    /// and gates of its events ([`EventKind::describe`](crate::core::EventKind::describe)).
    /// A call of the host's own that checks no tenant, like [`Engine::view`]: the plan holds
    /// the whole file (its URLs, header templates and context), so a host showing it to a
    /// caller checks the view's tenant first. Like `view`, it takes up an unfinished
    /// deployment this engine may drive and does not yet hold in memory.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::UnknownDeployment`] when no deployment has this id,
    /// [`RuntimeError::Store`] when the store cannot load it, [`RuntimeError::Config`] when its
    /// stored file no longer validates, and [`RuntimeError::Core`] when its stored state does
    /// not fit that file.
    pub async fn plan(&self, id: &DeploymentId) -> Result<Arc<Plan>, RuntimeError> {
        self.queued_or_stored(
            || queued_entry(&lock(&self.inner.queued), id).map(|(_, q)| Arc::clone(&q.plan)),
            || async {
                let entry = self.entry(id, false).await?;
                let live = entry.lock().await;
                Ok(Arc::clone(live.d.plan()))
            },
        )
        .await
    }

    /// A deployment's history: every event, with the `mdMessage` of each callback and who
    /// decided each approval. The host's own call: it checks no tenant (see
    /// [`Engine::decide`]). An id no deployment has, or one still queued, has an empty history,
    /// as [`Store::history`](crate::store::Store::history) answers it: use [`Engine::view`] to
    /// tell an unknown id apart.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Store`] when the store cannot read it.
    pub async fn history(&self, id: &DeploymentId) -> Result<Vec<HistoryEntry>, RuntimeError> {
        Ok(self.inner.store.history(id).await?)
    }

    /// Events as they are stored: every status change, call, callback, approval and rollback.
    /// The events of a write whose answer was lost come when the engine, driving the
    /// deployment, finds the write stored and takes it up (a look or a conflict after a save, a
    /// later look after a start), read from the store's history with those of any writes
    /// stored between; if that read fails, they are not sent. A replica sends no events of
    /// other replicas' writes but those. A subscriber that falls behind by more than
    /// the channel's capacity misses events (and is told so by `broadcast`); the store's
    /// history is the complete record.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Waits until the deployment has finished, and returns how: `succeeded`, `failed`,
    /// `rolled_back` or `canceled`. It looks at the deployment ([`Engine::view`]) after each of
    /// its events and at least once a second, so it also sees a deployment another replica
    /// drives, whose events this engine does not hear of. Waiting costs each write of every
    /// deployment the sending of its events, as any subscriber does.
    ///
    /// # Errors
    ///
    /// As [`Engine::view`]'s: [`RuntimeError::UnknownDeployment`] when no deployment has this
    /// id (or a queued one was replaced by a newer one and never started), and
    /// [`RuntimeError::Store`] when the store cannot load it.
    pub async fn wait_finished(&self, id: &DeploymentId) -> Result<DeploymentStatus, RuntimeError> {
        /// The longest wait between two looks.
        const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
        // Subscribed before the first look, so that no event between the two is missed.
        let mut events = self.subscribe();
        loop {
            let status = self.view(id).await?.status;
            if status.is_terminal() {
                return Ok(status);
            }
            let _ = tokio::time::timeout(LOOK_EVERY, async {
                loop {
                    match events.recv().await {
                        Ok(EngineEvent::Deployment { id: of, .. }) if of == *id => return,
                        Ok(_) => {}
                        // Missed events may have been this deployment's: look again.
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        // No more events: the looks go on, once a second.
                        Err(broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            })
            .await;
        }
    }

    /// Fires every deadline that is due by the engine's clock; returns how many deployments
    /// were visited, and how many retries of work the engine owes it took up. The scheduler
    /// ([`Engine::run_scheduler`]) calls this; tests on a manual clock call it directly. A
    /// deployment whose write failed is visited a second later (then 2, 4 and at most 8 s after
    /// each further failure in a row): a deadline's write is made again, and so is one
    /// recording the results of calls and steps, which the deployment kept (a callback's or
    /// decision's failure was answered to its sender). The start of a deployment queued
    /// behind one that finished (`enqueueOne`), and the cancel of one replaced in the queue
    /// that may be stored, are tried again the same way when the store fails them. (A retried
    /// start that finds another start under way waits for it in a task rather than hold up
    /// the round.) A deadline whose firing panics is fired again a second later (longer while
    /// it keeps failing), with the deployment read again from the store.
    pub async fn fire_due(&self) -> usize {
        self.fire_due_for(None).await
    }

    /// [`Engine::fire_due`], stopping once `budget` of real time has passed: the deadlines left
    /// stay due, for the next round. The scheduler's rounds stop so, so that a backlog (many
    /// retries due at once after an outage, each a write) cannot hold up its lease upkeep until
    /// the leases end and other replicas take over deployments still driven here.
    async fn fire_due_for(&self, budget: Option<std::time::Duration>) -> usize {
        let started = std::time::Instant::now();
        // Owed work first: few, and a backlog of deadlines after an outage cannot hold it up.
        let mut fired = self.do_due_chores(started, budget).await;
        let mut round = self.inner.deadlines.take_due(self.inner.clock.now());
        // Caught around the round rather than each deadline's firing, which would put a layer
        // around every firing: after a panic, the round goes on from the deadline after the one
        // that panicked.
        loop {
            let firing = self.fire_round(&mut round, started, budget, &mut fired);
            if AssertUnwindSafe(firing).catch_unwind().await.is_ok() {
                return fired;
            }
            if let Some(id) = round.take_current() {
                self.panicked_firing(&id).await;
            }
        }
    }

    /// Fires the deadlines of `round`, counting each in `fired`, until none is left or `budget`
    /// has passed since `started`.
    async fn fire_round(
        &self,
        round: &mut DueRound<'_>,
        started: std::time::Instant,
        budget: Option<std::time::Duration>,
        fired: &mut usize,
    ) {
        while let Some(id) = round.next() {
            if budget.is_some_and(|budget| started.elapsed() > budget) {
                break;
            }
            *fired += 1;
            self.inner.failed_loads.firing(&id);
            let applied = self.apply(&id, |d, now| d.handle_timeout(now)).await;
            round.fired();
            let Err(e) = applied else {
                self.inner.failed_loads.forget(&id);
                // Found, if it was a create looked for: resumed here (which ends the looks
                // itself), finished already, or driven by another replica.
                self.inner.unsure_creates.remove(&id);
                // A cancel taken while it was looked for, which no resumption here has stored:
                // another replica drives it, or the resumption's write went unanswered.
                if let Some(by) = self.inner.unsure_creates.canceled_by(&id) {
                    let recorded = Withdrawn {
                        recorded: true,
                        maybe_stored: true,
                    };
                    // Never an error for a recorded cancel: a failure is tried again.
                    let _ = self.cancel_withdrawn(&id, &by, &recorded).await;
                }
                continue;
            };
            // A create that may still be stored is looked for again later, whether this look
            // found nothing or failed.
            if self.missed_create(&id) {
                self.inner.failed_loads.forget(&id);
                if matches!(e, RuntimeError::UnknownDeployment(_)) {
                    tracing::debug!(deployment = %id, "a create that may have been stored is not found yet");
                } else {
                    tracing::warn!(deployment = %id, error = %e, "could not look for a create that may have been stored; looking again later");
                }
                continue;
            }
            if matches!(e, RuntimeError::UnknownDeployment(_)) {
                self.inner.failed_loads.forget(&id);
                tracing::debug!(deployment = %id, "a deadline of a deployment not stored");
                continue;
            }
            // A deployment in memory counts its own failures, and was armed again when its
            // write failed.
            if lock(&self.inner.live).contains_key(&*id) {
                self.inner.failed_loads.forget(&id);
                tracing::warn!(deployment = %id, error = %e, "could not fire a deadline; trying again by its own deadline");
                continue;
            }
            let wait = self.retry_soon(&id);
            tracing::warn!(deployment = %id, error = %e, "could not fire a deadline; trying again {wait}");
        }
    }

    /// After firing the deadline of `id` panicked (a bug, in a `Store` implementation or the
    /// engine): its copy in memory, which the panic may have left half changed, is let go, and
    /// it is read again from the store a second from now (longer while it keeps failing), as
    /// after a write that panicked ([`Engine::panicked_in_commit`]). The scheduler's round goes
    /// on: unwound, the panic would end it and every one after it.
    // Out of line, so that the firing loop's inlining is what it was without this path.
    #[cold]
    #[inline(never)]
    async fn panicked_firing(&self, id: &Arc<DeploymentId>) {
        tracing::error!(deployment = %id, "firing a deadline panicked; reading the deployment again from the store");
        // Armed first: the round, and this with it, may be dropped while waiting for the lock.
        self.retry_soon(id);
        let entry = lock(&self.inner.live).get(&**id).cloned();
        if let Some(entry) = entry {
            let mut live = entry.lock().await;
            if live.owned {
                self.unregister(&mut live);
            }
        }
    }

    /// Fires `id` again a moment from now: a deployment not in memory, whose load, resumption
    /// or write failed. A second from now, and twice as long after each further failure in a
    /// row, up to [`MAX_RETRY_AFTER_FAILURE`], so a failing store is neither hammered in a tight
    /// loop nor, through an outage, asked for it every second. One retry is armed at a time:
    /// a failure that reaches two callers is counted once. Returns the wait, for the log.
    pub(crate) fn retry_soon(&self, id: &Arc<DeploymentId>) -> RetryIn {
        let Some(failures) = self.inner.failed_loads.retry(id) else {
            return RetryIn(None);
        };
        let wait = retry_wait(failures);
        self.inner
            .deadlines
            .add(id, later(self.inner.clock.now(), wait));
        RetryIn(Some(wait))
    }

    /// Looks for `id`, whose create failed and may have been stored all the same, a second from
    /// now, and again at doubling waits while it is not found or the look fails, [`MAX_LOOKS`]
    /// times in all, as for a write of a deployment in memory ([`Live::arm_after_failure`]): a
    /// database may commit a statement a while after its client gave up on it. Found, it is
    /// resumed, and its events published then.
    fn look_for_create(&self, id: &Arc<DeploymentId>) {
        if self.inner.unsure_creates.insert(id) {
            let look = later(self.inner.clock.now(), look_wait(0));
            self.inner.deadlines.add(id, look);
        }
    }

    /// Counts a look for `id` that did not find it, and arms the next unless that was the last;
    /// whether `id` was a create looked for.
    fn missed_create(&self, id: &Arc<DeploymentId>) -> bool {
        let Some(looks) = self.inner.unsure_creates.missed(id) else {
            return false;
        };
        if looks < MAX_LOOKS {
            let next = later(self.inner.clock.now(), look_wait(looks));
            self.inner.deadlines.add(id, next);
        }
        true
    }

    /// How many deployments the engine holds in memory (unfinished ones).
    pub fn live_deployments(&self) -> usize {
        lock(&self.inner.live).len()
    }

    /// The ids of the unfinished deployments this engine drives, those queued here behind
    /// another (`enqueueOne`) last, in no other order: after a restart and
    /// [`Engine::recover`], with [`Engine::view`] for each, what an application shows of
    /// the deployments under way. A replica lists those it holds the leases of;
    /// [`Store::list_unfinished`](crate::store::Store::list_unfinished) lists every one in the
    /// store.
    pub fn live_deployment_ids(&self) -> Vec<DeploymentId> {
        let mut ids: Vec<DeploymentId> = lock(&self.inner.live)
            .keys()
            .map(|id| DeploymentId::clone(id))
            .collect();
        ids.extend(lock(&self.inner.queued).values().map(|q| q.id.clone()));
        ids
    }

    /// The earliest deadline pending in the scheduler, by the engine's clock: when
    /// [`Engine::fire_due`] may next have work. A test on a manual clock moves the clock to it
    /// rather than by a guess (a retry's jittered wait, a pause). It may be in the past (due,
    /// not fired yet: move the clock to the later of it and now), and firing it may find
    /// nothing left to do (a look or retry already made). The scheduler, on a real clock,
    /// sleeps until it or its next lease upkeep; a replica's leases run on the engine's clock
    /// too, so a test moving a shared manual clock further than a third of the lease calls
    /// [`Engine::maintain_leases`] on the way.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let chores = self.inner.chores.next();
        self.inner.deadlines.next().into_iter().chain(chores).min()
    }

    /// How many deadlines are pending in the scheduler: one for each deployment waiting on
    /// one, and more while writes, looks or work the engine owes (a queued deployment's start,
    /// a replaced one's cancel) are retried (a deployment whose write failed may have two).
    pub fn armed_deadlines(&self) -> usize {
        self.inner.deadlines.len() + self.inner.chores.len()
    }

    /// Runs the scheduler until [`Engine::shutdown`]: one loop sleeps until the earliest
    /// deadline of all deployments (or until an earlier one appears) and fires what is due.
    /// A panic (a `Store` implementation's bug, say) does not end it: a deadline whose firing
    /// panics is fired again a second later with the deployment read again from the store
    /// ([`Engine::fire_due`]), and a round of lease upkeep that panics is tried again at the
    /// next.
    ///
    /// A replica's loop also keeps its leases ([`Engine::maintain_leases`], every third of the
    /// lease time) and takes up at once the changes other replicas make to the deployments it
    /// drives, as the store's notices report them. One loop hears them at a time; a loop whose
    /// future is dropped (its task aborted) gives them back to the next. It returns too when
    /// the replica shuts itself down on finding another engine under its name
    /// ([`RuntimeError::ReplicaNameTaken`]); [`Engine::is_shut_down`] then tells.
    pub async fn run_scheduler(&self) {
        let mut notices = self.take_notices();
        let upkeep_every = self
            .replica()
            .map_or(std::time::Duration::from_secs(3600), |r| {
                r.options.lease / 3
            })
            .max(std::time::Duration::from_millis(10));
        let mut upkeep = tokio::time::interval(upkeep_every);
        upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.fire_due_for(Some(upkeep_every)).await;
            let wait = self
                .next_deadline()
                .map(|at| (at - self.inner.clock.now()).to_std().unwrap_or_default())
                .unwrap_or(std::time::Duration::from_secs(3600));
            // Biased, upkeep before the deadlines: a round cut short leaves deadlines due, and a
            // random pick could pass the upkeep over round after round until the leases ended.
            // Every turn of the loop fires deadlines first, so they are not starved in turn.
            tokio::select! {
                biased;
                () = self.inner.shutdown.cancelled() => return,
                _ = upkeep.tick(), if self.replica().is_some() => {
                    // A panic (a bug) ends this round of upkeep, not the loop.
                    let upkept = AssertUnwindSafe(self.maintain_leases()).catch_unwind().await;
                    match upkept {
                        // Logged where it was found; the engine has shut down.
                        Ok(Ok(_) | Err(RuntimeError::ReplicaNameTaken { .. })) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "could not keep the leases; trying again at the next round");
                        }
                        Err(_) => {
                            tracing::error!("keeping the leases panicked; trying again at the next round");
                        }
                    }
                }
                Some((id, version)) = notices.recv() => self.take_up(id, version),
                () = self.inner.deadlines.changed.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            // Those that came meanwhile: while a backlog keeps the upkeep due at every turn,
            // the branch above would not be reached.
            for _ in 0..MAX_NOTICES_PER_TURN {
                let Some((id, version)) = notices.try_recv() else {
                    break;
                };
                self.take_up(id, version);
            }
        }
    }

    /// Takes up another replica's change to a deployment driven here. In a task, so a slow store
    /// or a busy deployment never holds up deadlines; with a token taken first, so none starts
    /// once shutdown has begun (it would act on a deployment whose lease is being given up).
    fn take_up(&self, id: DeploymentId, version: u64) {
        if let Ok(_in_flight) = self.in_flight()
            && lock(&self.inner.live).contains_key(&id)
        {
            let engine = self.clone();
            // A task of the engine's own, which nobody stops waiting for: `sync`'s carrying
            // to its end is not needed here, only its refusal once shutdown has begun.
            self.inner.tasks.spawn(async move {
                if !engine.inner.shutdown.is_cancelled() {
                    engine.sync_now(&id, version).await;
                }
            });
        }
    }

    /// Stops the scheduler, abandons outbound calls and host steps still waiting for an answer
    /// (they are asked for again by [`Engine::recover`] on the next start), and waits until
    /// every state write already under way has finished, whether or not its caller still
    /// waits for it; inputs that arrive from now on are refused with
    /// [`RuntimeError::ShuttingDown`].
    ///
    /// A replica then gives up its leases, so the other replicas take its deployments over at
    /// their next round of lease upkeep (every third of a lease) or their next input to one,
    /// rather than when the leases end, and stops hearing the store's change notices. Should
    /// a later engine have recorded itself under the replica's name by then (a rolling
    /// restart), the leases are that engine's and stay with it.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        if let Some(replica) = self.replica() {
            replica.drop_notices();
            self.release_leases(replica).await;
        }
    }

    /// Whether the engine has begun shutting down, by [`Engine::shutdown`] or, for a replica,
    /// on finding another engine under its name: it refuses every input from then on. A
    /// health check reporting it has the process restarted rather than left serving `503`.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// The engine's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub(crate) fn plan_for(&self, source: &str) -> Result<Arc<Plan>, RuntimeError> {
        if let Some(plan) = lock(&self.inner.plans).get(source).and_then(Weak::upgrade) {
            return Ok(plan);
        }
        let plan = Arc::new(Plan::from_yaml(source)?);
        let mut plans = lock(&self.inner.plans);
        plans.retain(|_, p| p.strong_count() > 0);
        plans.insert(Arc::from(source), Arc::downgrade(&plan));
        Ok(plan)
    }

    /// [`Engine::plan_for`] the file a deployment was stored with: one an earlier release
    /// stored, which the checks of a later one refuse, is read as
    /// [`Plan::from_stored_yaml`] reads it, so that the deployment goes on.
    pub(crate) fn stored_plan_for(
        &self,
        id: &DeploymentId,
        source: &str,
    ) -> Result<Arc<Plan>, RuntimeError> {
        match self.plan_for(source) {
            Err(RuntimeError::Config(refused)) => match Plan::from_stored_yaml(source) {
                Ok(plan) => {
                    tracing::warn!(deployment = %id, problems = %refused, "the deployment's stored file is refused by checks this release added (analysis fields, strategy names); it goes on as stored");
                    Ok(Arc::new(plan))
                }
                Err(_) => Err(RuntimeError::Config(refused)),
            },
            read => read,
        }
    }

    fn new_deployment_id(&self) -> DeploymentId {
        let id = lock(&self.inner.ids).callback_id();
        DeploymentId(format!("d-{}", &id.to_string()[16..]))
    }

    /// The deployment's entry: in memory while this engine drives it, loaded from the store
    /// otherwise. An unfinished deployment loaded from the store becomes this engine's to
    /// drive if it is the only one, or, for a replica, if `take_over` and no live replica
    /// holds it; otherwise the entry is a copy that only records an input. So is the entry of
    /// one whose resumption found its row out of date (written again meanwhile): what the
    /// input leads to waits in the store until this engine resumes it from its current row.
    pub(crate) async fn entry(
        &self,
        id: &DeploymentId,
        take_over: bool,
    ) -> Result<Arc<AsyncMutex<Live>>, RuntimeError> {
        if let Some(entry) = lock(&self.inner.live).get(id) {
            return Ok(Arc::clone(entry));
        }
        // Boxed: its future holds whole stored deployments, and every input's future would
        // otherwise be as large, allocated outside the allocator's per-thread caches.
        Box::pin(self.entry_from_store(id, take_over)).await
    }

    /// [`Engine::entry`] for a deployment not in memory.
    async fn entry_from_store(
        &self,
        id: &DeploymentId,
        take_over: bool,
    ) -> Result<Arc<AsyncMutex<Live>>, RuntimeError> {
        let stored = self.load_stored(id).await?;
        self.entry_from_row(stored, take_over).await
    }

    /// [`Engine::entry`] for a deployment whose row the caller has read already.
    pub(crate) async fn entry_of_stored(
        &self,
        stored: StoredDeployment,
        take_over: bool,
    ) -> Result<Arc<AsyncMutex<Live>>, RuntimeError> {
        if let Some(entry) = lock(&self.inner.live).get(&stored.id) {
            return Ok(Arc::clone(entry));
        }
        Box::pin(self.entry_from_row(stored, take_over)).await
    }

    /// [`Engine::entry`] for a deployment not in memory, from its row.
    async fn entry_from_row(
        &self,
        mut stored: StoredDeployment,
        take_over: bool,
    ) -> Result<Arc<AsyncMutex<Live>>, RuntimeError> {
        let id = stored.id.clone();
        let owned = !stored.status.is_terminal()
            && match self.lease() {
                None => true,
                Some(lease) => take_over && self.inner.store.claim(&id, &lease).await?,
            };
        if owned {
            if self.replica().is_some() {
                // Taken over from a replica that stopped: read again now that the lease keeps
                // others out.
                stored = self.load_stored(&id).await?;
            }
            // Resumed as a restart would (deadlines that passed fire, work in flight is asked
            // for again): a single engine comes here for a deployment whose resumption at
            // recovery failed. Its write goes on if the caller stops waiting, as an input's does.
            self.resume(stored).await?;
            if self.inner.launches.contains(&id) {
                // Left to its start, which holds the start lock until the deployment is in
                // memory (and which a caller holding that lock never waits on here).
                drop(self.inner.start_lock.lock().await);
            }
            if let Some(entry) = lock(&self.inner.live).get(&id) {
                return Ok(Arc::clone(entry));
            }
            // Resuming finished it (a deadline that passed ended it), or found its row out of
            // date: a copy of the current row answers now.
            stored = self.load_stored(&id).await?;
        }
        // A copy is private: a finished deployment never changes again, and an input applied
        // to another replica's deployment is stored for that replica to act on.
        let plan = self.stored_plan_for(&stored.id, &stored.plan_source)?;
        let live = Live::new(restore(plan, stored.state)?, stored.version, false);
        Ok(Arc::new(AsyncMutex::new(live)))
    }

    async fn load_stored(&self, id: &DeploymentId) -> Result<StoredDeployment, RuntimeError> {
        self.inner
            .store
            .load(id)
            .await?
            .ok_or_else(|| RuntimeError::UnknownDeployment(id.clone()))
    }

    /// Makes an unfinished deployment the engine's to drive: in memory, its callback ids
    /// indexed. When another caller registered it first, theirs is kept and returned, so there is
    /// only ever one copy to apply inputs to. When `live` is the one kept, it comes back locked,
    /// as it was before anyone could find it: no input reaches it, and no event of one is
    /// published, before the caller has stored and published what it began with.
    pub(crate) fn register(
        &self,
        live: Live,
    ) -> (Arc<AsyncMutex<Live>>, Option<OwnedMutexGuard<Live>>) {
        let id = Arc::clone(live.d.shared_id());
        let callbacks: Vec<_> = live.d.callback_ids().map(|(_, c)| c).collect();
        let mut kept = None;
        let entry = Arc::clone(lock(&self.inner.live).entry(id).or_insert_with(|| {
            let entry = Arc::new(AsyncMutex::new(live));
            kept = Some(
                Arc::clone(&entry)
                    .try_lock_owned()
                    .expect("a mutex made here has no other holder"),
            );
            entry
        }));
        let mut index = lock(&self.inner.callbacks);
        for callback in callbacks {
            index.insert(callback, Arc::clone(&entry));
        }
        (entry, kept)
    }

    /// Takes the deployment of `live`, whose lock the caller holds, out of memory: its entry, its
    /// callback index and its deadline; whether it did. Once only: by then the map may hold a
    /// newer entry of the same deployment.
    pub(crate) fn unregister(&self, live: &mut Live) -> bool {
        if live.gone {
            return false;
        }
        live.gone = true;
        self.inner.deadlines.clear(&mut live.deadline);
        lock(&self.inner.live).remove(live.d.id());
        let mut index = lock(&self.inner.callbacks);
        for (_, callback) in live.d.callback_ids() {
            index.remove(&callback);
        }
        true
    }
}

/// The queue entry of deployment `id`, if it is queued: its application, and it.
fn queued_entry<'a>(
    queued: &'a HashMap<String, Queued>,
    id: &DeploymentId,
) -> Option<(&'a String, &'a Queued)> {
    queued.iter().find(|(_, q)| q.id == *id)
}

/// `d`'s actions and events, drained.
pub(crate) fn drain(d: &mut Deployment) -> (Vec<crate::core::Action>, Vec<crate::core::Event>) {
    (d.take_actions(), d.take_events())
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::Utc;

    use super::*;
    use crate::core::StartOptions;
    use crate::ids::RandomIds;
    use crate::runtime::SimulatedHost;
    use crate::runtime::builder::tests::dispatcher;
    use crate::runtime::spare;

    #[test]
    fn the_wait_after_failed_writes_doubles_up_to_its_cap() {
        let waits: Vec<u64> = [0, 1, 2, 3, 4, 5, u8::MAX]
            .into_iter()
            .map(|failed| retry_wait(failed).as_secs())
            .collect();
        assert_eq!(waits, [1, 1, 2, 4, 8, 8, 8]);
    }

    /// A deployment of a one-target plan, started, driven here.
    pub(crate) fn live(id: &str) -> Live {
        let plan = Arc::new(Plan::from_yaml("application: shop\ntargets: {prod: {}}\n").unwrap());
        let d = Deployment::start(
            plan,
            DeploymentId::from(id),
            StartOptions::default(),
            &mut RandomIds,
            Utc::now(),
        );
        Live::new(d, 1, true)
    }

    /// An input finds a registered deployment by its id or callback id as soon as it is in
    /// memory, so the one who registered it holds its lock from before then: inputs wait until
    /// it has stored and published what it began with.
    #[test]
    fn a_deployment_is_registered_locked_and_a_second_registration_gets_the_first_entry() {
        let engine = Engine::builder(dispatcher(), SimulatedHost).build();
        let (entry, kept) = engine.register(live("d1"));
        let kept = kept.expect("the first registration is kept");
        let found = Arc::clone(&lock(&engine.inner.live)[&DeploymentId::from("d1")]);
        assert!(Arc::ptr_eq(&found, &entry));
        assert!(found.try_lock().is_err(), "in memory only locked");

        let (again, second) = engine.register(live("d1"));
        assert!(second.is_none(), "the second registration is not kept");
        assert!(Arc::ptr_eq(&again, &entry));
        drop(kept);
        assert!(entry.try_lock().is_ok());
    }

    /// An engine over a memory store the test keeps, with one deployment started, paused
    /// until approved.
    async fn paused() -> (Arc<DynStore>, Engine, DeploymentId) {
        let store: Arc<DynStore> = Arc::new(crate::store::MemoryStore::new());
        let engine = Engine::builder(dispatcher(), SimulatedHost)
            .shared_store(Arc::clone(&store))
            .build();
        let source = "application: shop\ntargets:\n  prod: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}\n";
        let id = engine.start(source, BTreeMap::new()).await.unwrap().id;
        (store, engine, id)
    }

    /// An input that changes nothing leaves the deployment sharing its state with the memory
    /// store's row, as before the input, not holding the copy the input made of it.
    #[tokio::test]
    async fn an_input_that_changes_nothing_shares_the_rows_state_again() {
        let (store, engine, id) = paused().await;
        // A state this thread kept, which the input copies the shared state over.
        spare::give_back(live("spare").d);

        engine.apply(&id, |_, _| ()).await.unwrap();
        let row = store.load(&id).await.unwrap().expect("stored");
        let entry = Arc::clone(&lock(&engine.inner.live)[&id]);
        let live = entry.lock().await;
        assert!(Arc::ptr_eq(live.d.state(), &row.state));
        assert_eq!(live.version, row.version, "nothing was written");
    }

    /// An input that panics part way through its change (a bug) leaves the deployment as it
    /// was: the next input, here one that waited on the lock meanwhile, meets it unchanged,
    /// not half changed and unstored.
    #[tokio::test]
    async fn an_input_that_panics_leaves_the_deployment_as_it_was() {
        let (store, engine, id) = paused().await;
        let entry = Arc::clone(&lock(&engine.inner.live)[&id]);
        let held = entry.lock().await;
        let panicking = tokio::spawn({
            let (engine, id) = (engine.clone(), id.clone());
            async move {
                engine
                    .apply(&id, |d, now| {
                        d.handle_cancel(now, "someone").unwrap();
                        panic!("a bug after the change began");
                    })
                    .await
            }
        });
        let waiting = tokio::spawn({
            let (engine, id) = (engine.clone(), id.clone());
            async move { engine.apply(&id, |d, _| d.status()).await }
        });
        // Both wait on the lock, the panicking input first.
        tokio::task::yield_now().await;
        drop(held);
        assert!(panicking.await.unwrap_err().is_panic());
        let status = waiting.await.unwrap().unwrap();
        assert_eq!(status, crate::core::DeploymentStatus::Running);
        let row = store.load(&id).await.unwrap().expect("stored");
        let live = entry.lock().await;
        assert!(!live.gone, "still in memory");
        assert!(
            live.d
                .same_state(&restore(live.d.plan().clone(), row.state).unwrap())
        );
    }

    /// A copy whose write panicked is dropped: the deployment this engine drives, registered
    /// under the same id, stays in memory with its callbacks.
    #[test]
    fn a_copy_whose_write_panicked_leaves_the_driven_deployment_in_memory() {
        let engine = Engine::builder(dispatcher(), SimulatedHost).build();
        let driven = live("d1");
        let mut copy = Live::new(driven.d.clone(), 1, false);
        let (_, kept) = engine.register(driven);
        drop(kept.expect("registered"));
        let e = engine.panicked_in_commit(&mut copy);
        assert!(
            matches!(e, RuntimeError::Store(StoreError::Backend { .. })),
            "{e:?}"
        );
        assert_eq!(engine.live_deployments(), 1);
        assert!(!copy.gone);
    }
}
