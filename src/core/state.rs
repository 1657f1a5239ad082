use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use super::action::Action;
use super::event::Event;
use super::ids::{CallbackId, DeploymentId, OpId};
use super::settings::Settings;
use super::status::{DeploymentStatus, EnvStatus, Resolution};
use crate::config::{EnvId, GateId};

/// Everything a deployment has decided and still has to do, apart from the plan it shares.
///
/// Serialize it to store a deployment; [`Deployment::restore`] with the same plan continues
/// exactly where it stopped, including actions and events not yet drained.
///
/// [`Deployment::restore`]: super::Deployment::restore
#[derive(PartialEq, Serialize, Deserialize)]
pub struct DeploymentState {
    /// Shared between copies, as are the callback ids: neither changes after the start, and an
    /// engine's deployment copies its state at every input (the copy it keeps to roll back to,
    /// and the memory store's row, share the state it had).
    pub(crate) id: Arc<DeploymentId>,
    #[serde(serialize_with = "super::timestamp::serialize")]
    pub(crate) started_at: DateTime<Utc>,
    /// Shared between copies too: it is fixed at the start.
    pub(crate) context: Arc<BTreeMap<String, String>>,
    /// The tenant that owns the deployment, for hosts that scope callers by tenant; the core
    /// only keeps it. Absent in states written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<Arc<str>>,
    pub(crate) settings: Settings,
    pub(crate) rng: Pcg64Mcg,
    pub(crate) next_op: u64,
    pub(crate) status: DeploymentStatus,
    pub(crate) canceled: bool,
    pub(crate) envs: Vec<EnvState>,
    pub(crate) gates: Vec<GateState>,
    /// How many progress notes each gate has recorded, for gates with any: what
    /// `Settings::max_progress_notes` is checked against. Absent in states written before it
    /// existed, and left out of the JSON while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) notes: BTreeMap<GateId, u32>,
    pub(crate) callbacks: Arc<[(GateId, CallbackId)]>,
    /// Shared between copies until it changes, which only a finished `exposeServices` step
    /// does.
    pub(crate) previews: Arc<BTreeMap<EnvId, BTreeMap<String, String>>>,
    /// The ReplicaSet each environment's deploy step reported, for
    /// `{{armory.replicaSetName}}`: none until one does, so that a deployment allocates nothing
    /// for it before, and then shared between copies like `previews`. Absent in states written
    /// before it existed, and left out of the JSON while none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) replica_sets: Option<Arc<BTreeMap<EnvId, String>>>,
    pub(crate) actions: VecDeque<Action>,
    pub(crate) events: VecDeque<Event>,
    /// Not part of the state: see [`Touched`].
    #[serde(skip)]
    pub(crate) touched: Touched,
}

/// A gate or an environment, as a deadline's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Due {
    Gate(GateId),
    Env(EnvId),
}

/// The gates and environments given a new state while recording: firing due deadlines one by
/// one then looks at those for deadlines the firings made due, rather than at every gate after
/// every firing, which made firing thousands of zero-length pauses at once quadratic. Scratch,
/// not state: never stored, compared or copied, and recording only inside one call.
///
/// Boxed, as every state carries it and only a call recording fills it: 8 bytes rather than
/// 24, which kept 100,000 waiting deployments at 912 bytes each rather than 928
/// (`core_memory`).
#[derive(Default)]
#[allow(clippy::box_collection)]
pub(crate) struct Touched(Option<Box<Vec<Due>>>);

impl Touched {
    /// Starts recording, from nothing.
    pub(crate) fn record(&mut self) {
        self.0 = Some(Box::default());
    }

    /// Notes `due`, while recording.
    pub(crate) fn note(&mut self, due: Due) {
        if let Some(touched) = &mut self.0 {
            touched.push(due);
        }
    }

    /// Puts what was noted since the last swap into `into`, in the order noted, and records on
    /// into `into`'s buffer, emptied: two buffers taking turns, rather than one allocated for
    /// each firing.
    pub(crate) fn swap(&mut self, into: &mut Vec<Due>) {
        into.clear();
        if let Some(touched) = &mut self.0 {
            std::mem::swap(&mut **touched, into);
        }
    }

    /// Stops recording.
    pub(crate) fn stop(&mut self) {
        self.0 = None;
    }
}

impl PartialEq for Touched {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// By hand, as the scratch `touched` is not copied, and for `clone_from`, which reuses the
/// target's allocations: the engine copies each state before an input into one it kept. The
/// destructurings list every field, so a new field cannot be forgotten here.
impl Clone for DeploymentState {
    fn clone(&self) -> Self {
        let Self {
            id,
            started_at,
            context,
            tenant,
            settings,
            rng,
            next_op,
            status,
            canceled,
            envs,
            gates,
            notes,
            callbacks,
            previews,
            replica_sets,
            actions,
            events,
            touched: _,
        } = self;
        Self {
            id: id.clone(),
            started_at: *started_at,
            context: context.clone(),
            tenant: tenant.clone(),
            settings: settings.clone(),
            rng: rng.clone(),
            next_op: *next_op,
            status: *status,
            canceled: *canceled,
            envs: envs.clone(),
            gates: gates.clone(),
            notes: notes.clone(),
            callbacks: callbacks.clone(),
            previews: previews.clone(),
            replica_sets: replica_sets.clone(),
            actions: copy_queue(actions),
            events: copy_queue(events),
            touched: Touched::default(),
        }
    }

    fn clone_from(&mut self, source: &Self) {
        let Self {
            id,
            started_at,
            context,
            tenant,
            settings,
            rng,
            next_op,
            status,
            canceled,
            envs,
            gates,
            notes,
            callbacks,
            previews,
            replica_sets,
            actions,
            events,
            touched: _,
        } = source;
        share(&mut self.id, id);
        self.started_at = *started_at;
        share(&mut self.context, context);
        self.tenant.clone_from(tenant);
        self.settings.clone_from(settings);
        self.rng.clone_from(rng);
        self.next_op = *next_op;
        self.status = *status;
        self.canceled = *canceled;
        self.envs.clone_from(envs);
        self.gates.clone_from(gates);
        self.notes.clone_from(notes);
        share(&mut self.callbacks, callbacks);
        share(&mut self.previews, previews);
        match (&mut self.replica_sets, replica_sets) {
            (Some(target), Some(source)) => share(target, source),
            (target, source) => target.clone_from(source),
        }
        self.actions = copy_queue(actions);
        self.events = copy_queue(events);
        self.touched.stop();
    }
}

/// Points `target` at what `source` points to. `Arc::clone_from` writes both counts even when
/// they already share it; the counts of an id shared between threads are then written by every
/// copy, and each write takes the count's cache line from the other cores.
fn share<T: ?Sized>(target: &mut Arc<T>, source: &Arc<T>) {
    if !Arc::ptr_eq(target, source) {
        *target = Arc::clone(source);
    }
}

/// A copy of `queue`, at once for an empty one, as the queues of a state at rest are (every
/// input copies one): `VecDeque::clone` goes through its iterators even then.
fn copy_queue<T: Clone>(queue: &VecDeque<T>) -> VecDeque<T> {
    if queue.is_empty() {
        VecDeque::new()
    } else {
        queue.clone()
    }
}

impl std::fmt::Debug for DeploymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentState")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("envs", &self.envs)
            .field("gates", &self.gates)
            .field("pending_actions", &self.actions.len())
            .field("pending_events", &self.events.len())
            .finish_non_exhaustive()
    }
}

/// Where an environment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EnvState {
    /// Waiting for its dependencies.
    Waiting,
    /// At a position of its sequence; `op` is the host step it waits on, if the position is one.
    Running {
        pos: Pos,
        op: Option<OpId>,
        #[serde(serialize_with = "super::timestamp::serialize_option")]
        deadline: Option<DateTime<Utc>>,
    },
    /// Waiting for a rollback; past `deadline` (`deploymentConfig.timeout`, as for every host
    /// step) the rollback counts as failed.
    RollingBack {
        op: OpId,
        /// Absent in states written before rollbacks had a deadline, and when no timeout is
        /// configured; left out of the JSON then, so such states keep their stored form.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            serialize_with = "super::timestamp::serialize_option"
        )]
        deadline: Option<DateTime<Utc>>,
    },
    /// Finished with this (terminal) status.
    Done(EnvStatus),
}

/// The positions an environment passes through, in order; positions that do not apply to its
/// strategy, and empty gate lists, are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Pos {
    Before,
    Deploy,
    Canary(u16),
    RedirectGates,
    Redirect,
    ShutdownGates,
    Shutdown,
    After,
}

impl Pos {
    /// Whether a failure here rolls the environment back (PROTOCOL.md §4's table).
    pub(crate) fn rolls_back(self) -> bool {
        !matches!(self, Pos::Before | Pos::After)
    }

    pub(crate) fn status(self) -> EnvStatus {
        match self {
            Pos::Before => EnvStatus::Checking,
            Pos::After => EnvStatus::Verifying,
            _ => EnvStatus::Deploying,
        }
    }
}

/// Where a gate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GateState {
    /// Not reached yet.
    Idle,
    /// An outbound call attempt is under way.
    Calling {
        /// The attempt, 1 for the first.
        attempt: u32,
    },
    /// Waiting to retry the outbound call.
    RetryWaiting {
        /// The attempt that will go.
        attempt: u32,
        /// When.
        #[serde(serialize_with = "super::timestamp::serialize")]
        at: DateTime<Utc>,
    },
    /// The call went through; waiting for the callback.
    AwaitingCallback {
        /// When the callback timeout fails the gate.
        #[serde(serialize_with = "super::timestamp::serialize")]
        deadline: DateTime<Utc>,
    },
    /// A fixed pause.
    Pausing {
        /// When it ends.
        #[serde(serialize_with = "super::timestamp::serialize")]
        until: DateTime<Utc>,
    },
    /// Waiting for a manual approval.
    AwaitingApproval {
        /// When it expires, if ever.
        #[serde(serialize_with = "super::timestamp::serialize_option")]
        expires: Option<DateTime<Utc>>,
    },
    /// Waiting for the host's analysis.
    Analysing {
        /// The host operation.
        op: OpId,
        /// When it times out, if ever.
        #[serde(serialize_with = "super::timestamp::serialize_option")]
        deadline: Option<DateTime<Utc>>,
    },
    /// An analysis failed with `rollBackMode: manual`: waiting for a person.
    AwaitingDecision,
    /// Passed.
    Passed(Resolution),
    /// Failed.
    Failed(Resolution),
    /// Closed without a decision.
    Closed(Resolution),
}

impl GateState {
    /// Whether the gate is still waiting on something.
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            GateState::Idle | GateState::Passed(_) | GateState::Failed(_) | GateState::Closed(_)
        )
    }

    /// When the gate next needs the host's attention through `handle_timeout`.
    pub fn deadline(self) -> Option<DateTime<Utc>> {
        match self {
            GateState::RetryWaiting { at, .. } => Some(at),
            GateState::AwaitingCallback { deadline } => Some(deadline),
            GateState::Pausing { until } => Some(until),
            GateState::AwaitingApproval { expires } => expires,
            GateState::Analysing { deadline, .. } => deadline,
            _ => None,
        }
    }
}

impl EnvState {
    /// When the host step or rollback under way took too long, if a timeout is configured.
    pub(crate) fn deadline(self) -> Option<DateTime<Utc>> {
        match self {
            EnvState::Running { deadline, .. } | EnvState::RollingBack { deadline, .. } => deadline,
            _ => None,
        }
    }

    pub(crate) fn status(self) -> EnvStatus {
        match self {
            EnvState::Waiting => EnvStatus::Pending,
            EnvState::Running { pos, .. } => pos.status(),
            EnvState::RollingBack { .. } => EnvStatus::RollingBack,
            EnvState::Done(s) => s,
        }
    }
}
