use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand_core::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::action::Action;
use super::error::CoreError;
use super::event::Event;
use super::ids::{CallbackId, DeploymentId, IdSource, OpId};
use super::input::{CallResult, CallbackAck, Decision, StepOutcome};
use super::settings::Settings;
use super::state::{DeploymentState, EnvState, GateState, Touched};
use super::status::{DeploymentStatus, EnvStatus};
use crate::config::{EnvId, GateId, GateKind, Plan};

mod in_flight;
mod inputs;

use inputs::Inputs;

/// What a deployment starts with besides its plan and id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartOptions {
    /// Context given when the deployment starts; wins over the file's and `runWebhook`'s.
    pub context: BTreeMap<String, String>,
    /// Deployment-wide settings.
    pub settings: Settings,
    /// Seed of the jitter of retry backoffs. Production hosts pass a random value; tests a fixed
    /// one, so that runs repeat exactly.
    pub seed: u64,
    /// The tenant that owns the deployment, kept with its state for hosts that let only that
    /// tenant's principals act on it. The core does nothing else with it.
    pub tenant: Option<String>,
}

impl StartOptions {
    /// Sets the owning tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Adds a start-time context value.
    #[must_use]
    pub fn with_context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.context.insert(key.into(), value.into());
        self
    }

    /// Sets the settings.
    #[must_use]
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Sets the jitter seed.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// One deployment's gates and environments: a deterministic state machine with no IO.
///
/// Methods come in four families, as in quinn-proto:
/// - **getters** ([`status`](Self::status), [`env_status`](Self::env_status),
///   [`gate_state`](Self::gate_state), ...) read the state;
/// - **inputs** (`handle_*`) report what happened, each with `now`; a refused input returns a
///   [`CoreError`] and changes nothing but firing the deadlines that `now` had already passed
///   and that fail something (of any gate or environment), as the host's timer would have;
/// - **commands** ([`reissue_in_flight`](Self::reissue_in_flight)) ask for something;
/// - **outputs**: after any input, drain [`poll_action`](Self::poll_action) until `None` and
///   perform each action, drain [`poll_event`](Self::poll_event) for the history, then call
///   [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout).
///   Calling `handle_timeout` early or twice is harmless.
///
/// Time is wall-clock and only ever comes in as an argument, so deadlines keep their meaning
/// across a restore. The same inputs give the same outputs.
///
/// A clone shares the state with the deployment it was cloned from, as a store given
/// [`state`](Self::state) may: the first input to either afterwards copies the state for
/// itself. A host keeping the deployment as it was before an input, to put it back should
/// the input's write fail, pays one copy of the state per input, not two.
#[derive(Debug, Clone)]
pub struct Deployment {
    plan: Arc<Plan>,
    s: Arc<DeploymentState>,
}

impl Deployment {
    /// Starts a deployment: every webhook gate gets its callback id from `ids`, and the
    /// environments without dependencies start at once.
    pub fn start(
        plan: Arc<Plan>,
        id: DeploymentId,
        options: StartOptions,
        ids: &mut (impl IdSource + ?Sized),
        now: DateTime<Utc>,
    ) -> Self {
        let mut d = Self::queue(plan, id, options, ids, now);
        d.inputs().begin(now);
        d
    }

    /// A deployment waiting for another one of its application to finish
    /// (`ifDeploymentInProgress: enqueueOne`), to be started later by
    /// [`handle_begin`](Self::handle_begin). Every webhook gate gets its callback id from
    /// `ids` now, so a host can store it as it stores a started one (its callback ids
    /// indexed); until it begins, its status is [`DeploymentStatus::Queued`], nothing is asked
    /// for, no event is emitted and no deadline is armed. [`started_at`](Self::started_at) is
    /// `now` until it begins.
    ///
    /// A queued deployment refuses the inputs of a started one (a callback meets its gate not
    /// open, a result is stale) and takes [`handle_cancel`](Self::handle_cancel), which
    /// finishes it `canceled` without anything of it having run.
    pub fn queue(
        plan: Arc<Plan>,
        id: DeploymentId,
        options: StartOptions,
        ids: &mut (impl IdSource + ?Sized),
        now: DateTime<Utc>,
    ) -> Self {
        let callbacks = plan
            .webhook_gates()
            .map(|gate| (gate, ids.callback_id()))
            .collect();
        let s = DeploymentState {
            id: Arc::new(id),
            started_at: now,
            context: Arc::new(options.context),
            tenant: options.tenant.map(Arc::from),
            settings: options.settings,
            rng: Pcg64Mcg::seed_from_u64(options.seed),
            next_op: 0,
            status: DeploymentStatus::Queued,
            canceled: false,
            envs: vec![EnvState::Waiting; plan.environments().len()],
            gates: vec![GateState::Idle; plan.gates().len()],
            notes: BTreeMap::new(),
            callbacks,
            previews: Arc::default(),
            replica_sets: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            touched: Touched::default(),
        };
        Self {
            plan,
            s: Arc::new(s),
        }
    }

    /// Continues a stored deployment. `plan` must be the plan it was started with.
    ///
    /// Returns [`CoreError::PlanMismatch`] for a state that does not fit `plan`: other numbers
    /// of environments, gates or webhook gates, an environment at a position its strategy does
    /// not have, a gate in a state its kind of gate never takes, and so on. Such a state (an
    /// edited row, another layout of the plan) is refused here rather than met later.
    pub fn restore(plan: Arc<Plan>, state: Arc<DeploymentState>) -> Result<Self, CoreError> {
        super::fit::check(&plan, &state).map_err(|what| CoreError::PlanMismatch { what })?;
        Ok(Self { plan, s: state })
    }

    // ---- getters -------------------------------------------------------------------------

    /// The deployment's id.
    pub fn id(&self) -> &DeploymentId {
        &self.s.id
    }

    /// The deployment's id, as the state shares it between copies: tables that index
    /// deployments by id keep this rather than a copy of the text.
    #[cfg(feature = "runtime")]
    pub(crate) fn shared_id(&self) -> &Arc<DeploymentId> {
        &self.s.id
    }

    /// The plan it runs.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// When it started.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.s.started_at
    }

    /// The tenant that owns the deployment, if it was started for one.
    pub fn tenant(&self) -> Option<&str> {
        self.s.tenant.as_deref()
    }

    /// The settings it started with.
    pub fn settings(&self) -> &Settings {
        &self.s.settings
    }

    /// Its status; terminal once every environment is.
    pub fn status(&self) -> DeploymentStatus {
        self.s.status
    }

    /// Whether it has finished.
    pub fn is_finished(&self) -> bool {
        self.s.status.is_terminal()
    }

    /// An environment's status.
    ///
    /// # Panics
    ///
    /// If `env` is not one of the plan's environments (as indexing a slice out of bounds
    /// does): take ids from the plan, not from outside input.
    pub fn env_status(&self, env: EnvId) -> EnvStatus {
        self.s.env_status(env)
    }

    /// A gate's state.
    ///
    /// # Panics
    ///
    /// If `gate` is not one of the plan's gates (as indexing a slice out of bounds does):
    /// take ids from the plan, not from outside input.
    pub fn gate_state(&self, gate: GateId) -> GateState {
        self.s.gate(gate)
    }

    /// The callback id of a webhook gate.
    pub fn callback_id(&self, gate: GateId) -> Option<CallbackId> {
        self.s.callback_id(gate)
    }

    /// The gate a callback id belongs to.
    pub fn gate_for_callback(&self, callback: CallbackId) -> Option<GateId> {
        self.s.gate_for_callback(callback)
    }

    /// Every webhook gate with its callback id, for indexing by a store.
    pub fn callback_ids(&self) -> impl Iterator<Item = (GateId, CallbackId)> + '_ {
        self.s.callbacks.iter().copied()
    }

    /// The template context of a gate: the file's `context`, overridden by the gate's
    /// `runWebhook.context`, overridden by the context given at start (PROTOCOL.md §3).
    pub fn context_for(&self, gate: GateId) -> BTreeMap<String, String> {
        let mut context = self.plan.context().clone();
        if let Some(GateKind::Webhook { context: own, .. }) =
            self.plan.gates().get(gate.0 as usize).map(|g| g.kind())
        {
            context.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        context.extend(self.s.context.iter().map(|(k, v)| (k.clone(), v.clone())));
        context
    }

    /// Preview URLs reported by `exposeServices` steps of an environment.
    pub fn preview_urls(&self, env: EnvId) -> Option<&BTreeMap<String, String>> {
        self.s.previews.get(&env)
    }

    /// The ReplicaSet an environment's deploy step reported ([`StepOutcome::Deployed`]), for
    /// `{{armory.replicaSetName}}`.
    pub fn replica_set_name(&self, env: EnvId) -> Option<&str> {
        self.s.replica_sets.as_ref()?.get(&env).map(String::as_str)
    }

    /// The state to store. Serialize it (it implements `serde::Serialize`) and restore it with
    /// [`Deployment::restore`]. A store that keeps values may keep this `Arc`: the deployment
    /// copies the state before its next input changes it.
    pub fn state(&self) -> &Arc<DeploymentState> {
        &self.s
    }

    /// Makes the deployment hold its state alone before an input, copying it into `spare`
    /// (written over, its allocations reused) if another copy shares it. Returns `spare` when
    /// it was not needed, or not held alone itself.
    #[cfg(feature = "runtime")]
    pub(crate) fn unshare_into(
        &mut self,
        mut spare: Arc<DeploymentState>,
    ) -> Option<Arc<DeploymentState>> {
        if Arc::strong_count(&self.s) == 1 {
            return Some(spare);
        }
        let Some(target) = Arc::get_mut(&mut spare) else {
            return Some(spare);
        };
        target.clone_from(&self.s);
        self.s = spare;
        None
    }

    /// Whether another copy (the one kept to roll back to, the memory store's row) shares the
    /// deployment's state, which the next input would then copy.
    #[cfg(feature = "runtime")]
    pub(crate) fn shares_state(&self) -> bool {
        Arc::strong_count(&self.s) > 1
    }

    /// The state, for a spare once the deployment is done with.
    #[cfg(feature = "runtime")]
    pub(crate) fn into_state(self) -> Arc<DeploymentState> {
        self.s
    }

    /// Whether `other` is in the same state, found at once when they still share it.
    #[cfg(feature = "runtime")]
    pub(crate) fn same_state(&self, other: &Deployment) -> bool {
        Arc::ptr_eq(&self.s, &other.s) || self.s == other.s
    }

    // ---- outputs -------------------------------------------------------------------------

    /// The next thing the host must do. Once none is left, the queue's memory is given back.
    pub fn poll_action(&mut self) -> Option<Action> {
        holds(&self.s.actions).then(|| next_or_release(&mut self.state_mut().actions))?
    }

    /// The next event of the history. Once none is left, the queue's memory is given back.
    pub fn poll_event(&mut self) -> Option<Event> {
        holds(&self.s.events).then(|| next_or_release(&mut self.state_mut().events))?
    }

    /// Every action waiting, at once, in the buffer they were queued in: the engine's drain,
    /// without moving each one out. The deployment is left holding no buffer for actions, as
    /// after [`poll_action`](Self::poll_action) answered `None`.
    #[cfg(feature = "runtime")]
    pub(crate) fn take_actions(&mut self) -> Vec<Action> {
        if !holds(&self.s.actions) {
            return Vec::new();
        }
        std::mem::take(&mut self.state_mut().actions).into()
    }

    /// Every event waiting, at once, as `take_actions` does actions.
    #[cfg(feature = "runtime")]
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        if !holds(&self.s.events) {
            return Vec::new();
        }
        std::mem::take(&mut self.state_mut().events).into()
    }

    /// Hands the deployment empty buffers to queue its next input's outputs in, where it holds
    /// none (at rest, drained): the engine lends back the buffers its drains took, and the input
    /// then allocates none for its outputs. Buffers that are not empty are dropped, not lent.
    #[cfg(feature = "runtime")]
    pub(crate) fn lend_queues(&mut self, actions: Vec<Action>, events: Vec<Event>) {
        let s = self.state_mut();
        if s.actions.capacity() == 0 && actions.is_empty() {
            s.actions = actions.into();
        }
        if s.events.capacity() == 0 && events.is_empty() {
            s.events = events.into();
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<DateTime<Utc>> {
        let gates = self.s.gates.iter().filter_map(|g| g.deadline());
        let envs = self.s.envs.iter().filter_map(|e| e.deadline());
        gates.chain(envs).min()
    }

    // ---- inputs --------------------------------------------------------------------------

    /// Fires every deadline at or before `now`, earliest first: retries go out, callback
    /// timeouts and approval expirations fail their gates, pauses end, host steps that took
    /// longer than `deploymentConfig.timeout` fail, and so do rollbacks (the environment ends
    /// `failed`, as when the host reports a failed rollback).
    pub fn handle_timeout(&mut self, now: DateTime<Utc>) {
        self.inputs().handle_timeout(now)
    }

    /// Reports how one attempt of a [`WebhookCall`](super::WebhookCall) ended.
    ///
    /// A result for an attempt the gate no longer waits for (a callback already resolved it, the
    /// deployment was cancelled) returns [`CoreError::Stale`] and changes nothing itself. As
    /// before every input, the deadlines passed by `now` that fail something fire first.
    pub fn handle_call_result(
        &mut self,
        now: DateTime<Utc>,
        gate: GateId,
        attempt: u32,
        result: CallResult,
    ) -> Result<(), CoreError> {
        self.inputs().handle_call_result(now, gate, attempt, result)
    }

    /// Applies a callback (PROTOCOL.md §5): the first one resolves the gate; a repeat with the
    /// same outcome is [`CallbackAck::Duplicate`]; the opposite outcome is
    /// [`CoreError::Conflict`]; a gate closed without a callback is [`CoreError::GateClosed`];
    /// a gate whose webhook has `disableCallback: true` is [`CoreError::CallbackDisabled`].
    /// A callback that arrives before the send's result is accepted; one that arrives after the
    /// callback timeout is refused even if [`handle_timeout`](Self::handle_timeout) was not
    /// called for it yet: every deadline passed by `now` that fails something fires first,
    /// whichever gate or environment it is (another gate's timeout may have closed this one).
    pub fn handle_callback(
        &mut self,
        now: DateTime<Utc>,
        callback: CallbackId,
        success: bool,
        message: Option<String>,
    ) -> Result<CallbackAck, CoreError> {
        self.inputs()
            .handle_callback(now, callback, success, message)
    }

    /// Records a progress note (`"inProgress": true`) for an open webhook gate; the gate stays
    /// open. A gate records at most [`Settings::max_progress_notes`]; later notes are refused
    /// with [`CoreError::TooManyProgressNotes`] and change nothing.
    pub fn handle_progress(
        &mut self,
        now: DateTime<Utc>,
        callback: CallbackId,
        message: String,
    ) -> Result<(), CoreError> {
        self.inputs().handle_progress(now, callback, message)
    }

    /// Decides a manual approval, or a failed `rollBackMode: manual` analysis (approve to
    /// continue, reject to fail the gate). `requiresRoles` is met when the person holds any
    /// one of the roles; a person holding none is refused with [`CoreError::MissingRole`]
    /// whatever the approval's state, before its state is looked at, so that they learn
    /// nothing of it. A decision after the approval expired is refused even if
    /// [`handle_timeout`](Self::handle_timeout) was not called for it yet: every deadline passed
    /// by `now` that fails something fires first, as for a callback.
    ///
    /// As with callbacks (PROTOCOL.md §5), the decision that resolved the gate, sent again (a
    /// retry whose answer was lost), is `Ok` and changes nothing; the opposite one is refused
    /// with [`CoreError::AlreadyDecided`], and any decision once the gate closed another way
    /// (expired, superseded, the deployment cancelled) with [`CoreError::GateClosed`].
    pub fn handle_approval(
        &mut self,
        now: DateTime<Utc>,
        gate: GateId,
        decision: Decision,
    ) -> Result<(), CoreError> {
        self.inputs().handle_approval(now, gate, decision)
    }

    /// Reports how a host step or rollback ended. A result for an operation the core no longer
    /// waits for returns [`CoreError::Stale`] and changes nothing itself. One that arrives after
    /// `deploymentConfig.timeout` is stale too, even if [`handle_timeout`](Self::handle_timeout)
    /// was not called for it yet: every deadline passed that fails something fires first, this
    /// step's timeout among them.
    pub fn handle_step_result(
        &mut self,
        now: DateTime<Utc>,
        op: OpId,
        outcome: StepOutcome,
    ) -> Result<(), CoreError> {
        self.inputs().handle_step_result(now, op, outcome)
    }

    /// Starts a [queued](Self::queue) deployment at `now`, as [`start`](Self::start) starts a
    /// new one: its status becomes `running`, [`started_at`](Self::started_at) becomes `now`,
    /// and the environments without dependencies start. Its callback ids are those it was
    /// queued with.
    ///
    /// Returns [`CoreError::NotQueued`] for a deployment that has begun already, and
    /// [`CoreError::Finished`] for one that has finished (a queued one canceled).
    pub fn handle_begin(&mut self, now: DateTime<Utc>) -> Result<(), CoreError> {
        match self.s.status {
            DeploymentStatus::Queued => {
                self.inputs().begin(now);
                Ok(())
            }
            DeploymentStatus::Running => Err(CoreError::NotQueued),
            _ => Err(CoreError::Finished),
        }
    }

    /// Cancels the deployment: environments not yet deployed are cancelled, environments in
    /// the middle of their strategy are rolled back, environments already verifying keep the
    /// new version and are cancelled. The outcome is `canceled`.
    ///
    /// Deadlines that passed by `now` and fail something fire first, as before every input,
    /// even when the cancel is then refused; so do the ends of pauses passed, when they finish
    /// the deployment. The cancel meets the deployment as they left it, possibly finished, not
    /// as the host's late timer did. Pause ends that would not finish it, and due retries, are
    /// left to the timer: they would ask for work (a strategy's next step, a call) that the
    /// cancel then undoes. The deadlines of such work (a step's timeout, an approval's expiry)
    /// never count towards finishing it: no one has performed that work yet.
    pub fn handle_cancel(
        &mut self,
        now: DateTime<Utc>,
        by: impl Into<String>,
    ) -> Result<(), CoreError> {
        self.inputs().handle_cancel(now, by)
    }

    /// The deployment's plan and its state for one input, the state copied first if another
    /// copy of the deployment (or a store) shares it.
    fn inputs(&mut self) -> Inputs<'_> {
        Inputs {
            plan: &self.plan,
            s: Arc::make_mut(&mut self.s),
        }
    }

    /// The state, to change, copied first if it is shared.
    fn state_mut(&mut self) -> &mut DeploymentState {
        Arc::make_mut(&mut self.s)
    }
}

impl serde::Serialize for Deployment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.s.serialize(serializer)
    }
}

/// Whether `queue` holds anything, or memory to give back: a poll of a queue that holds
/// neither changes nothing, and need not copy a shared state to do it.
fn holds<T>(queue: &VecDeque<T>) -> bool {
    queue.capacity() > 0
}

/// The front of `queue`, or, once it is empty, `None` with its buffer freed. A deployment at
/// rest, drained, then holds no buffer for outputs, which halves a waiting deployment's memory;
/// and the next input's outputs go to memory the allocator has just had back (in cache) rather
/// than to a buffer last written at this deployment's previous input (`take_actions` and
/// `take_events` do the same for the engine).
fn next_or_release<T>(queue: &mut VecDeque<T>) -> Option<T> {
    let next = queue.pop_front();
    if next.is_none() {
        queue.shrink_to_fit();
    }
    next
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::inputs::{FireAt, closes_on_deadline, ends_on_cancel};
    use super::*;
    #[cfg(feature = "runtime")]
    use crate::core::event::EventKind;
    use crate::core::state::{Due, Pos};

    struct NoIds;

    impl IdSource for NoIds {
        fn callback_id(&mut self) -> CallbackId {
            unreachable!("the plan has no webhooks")
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
    }

    /// `source` (a plan without webhooks) started at [`t0`].
    fn started(source: &str) -> Deployment {
        Deployment::start(
            Arc::new(Plan::from_yaml(source).unwrap()),
            DeploymentId::from("d"),
            StartOptions::default(),
            &mut NoIds,
            t0(),
        )
    }

    /// A state `restore` refuses, built here without it: the timeout loop must still end, and
    /// still fire the other deadlines due.
    #[test]
    fn handle_timeout_ends_on_a_deadline_whose_firing_changes_nothing() {
        let mut d = started(
            "application: a\ntargets:\n  x: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}\n  y: {constraints: {beforeDeployment: [pause: {duration: 1, unit: minutes}]}}",
        );
        let t0 = t0();
        d.state_mut().envs[0] = EnvState::Running {
            pos: Pos::Before,
            op: None,
            deadline: Some(t0),
        };
        d.handle_timeout(t0 + chrono::TimeDelta::minutes(2));
        assert_eq!(
            d.env_status(EnvId(1)),
            EnvStatus::Deploying,
            "y's pause, due after x's inert deadline, still ends"
        );
        assert_eq!(d.env_status(EnvId(0)), EnvStatus::Checking);
    }

    /// The operation of the next host step `d` asks for.
    fn next_step_op(d: &mut Deployment) -> OpId {
        std::iter::from_fn(|| d.poll_action())
            .find_map(|a| match a {
                Action::RunStep(r) => Some(r.op),
                _ => None,
            })
            .expect("a host step")
    }

    /// A ReplicaSet is kept from the deploy step only; from a canary's weight step the same
    /// outcome is a plain success. Copies share the names until they change.
    #[test]
    fn only_the_deploy_step_reports_a_replica_set() {
        let mut d = started(
            "application: a\ntargets: {x: {strategy: c}}\nstrategies: {c: {canary: {steps: [setWeight: {weight: 50}]}}}",
        );
        let answer = |d: &mut Deployment, name: &str| {
            let op = next_step_op(d);
            let deployed = StepOutcome::Deployed {
                replica_set_name: name.to_owned(),
            };
            d.handle_step_result(t0(), op, deployed).unwrap();
        };
        answer(&mut d, "rs-deploy");
        assert_eq!(d.replica_set_name(EnvId(0)), Some("rs-deploy"));
        let copy = d.clone();
        assert!(Arc::ptr_eq(
            d.s.replica_sets.as_ref().unwrap(),
            copy.s.replica_sets.as_ref().unwrap()
        ));
        answer(&mut d, "rs-weight");
        assert_eq!(d.replica_set_name(EnvId(0)), Some("rs-deploy"));
        assert_eq!(
            d.status(),
            DeploymentStatus::Succeeded,
            "the weight step passed"
        );
    }

    /// Copies (by `clone` and by `clone_from`) point at one map of preview URLs until the
    /// deployment they came from records new ones; only then does it get a map of its own.
    #[test]
    fn copies_share_preview_urls_only_until_they_change() {
        let mut d = started(
            "application: a\ntargets: {x: {strategy: c}}\nstrategies: {c: {canary: {steps: [exposeServices: {services: [web]}]}}}",
        );
        let deploy = next_step_op(&mut d);
        d.handle_step_result(t0(), deploy, StepOutcome::Succeeded)
            .unwrap();
        let expose = next_step_op(&mut d);
        let kept = d.clone();
        let mut written = started("application: b\ntargets: {y: {}}");
        written.clone_from(&d);
        assert!(
            Arc::ptr_eq(&d.s.previews, &kept.s.previews),
            "a clone shares"
        );
        assert!(
            Arc::ptr_eq(&d.s.previews, &written.s.previews),
            "a copy written over shares"
        );

        let urls = [("web".to_owned(), "https://preview.example/web".to_owned())].into();
        d.handle_step_result(t0(), expose, StepOutcome::Exposed(urls))
            .unwrap();
        assert_eq!(
            d.preview_urls(EnvId(0)).unwrap()["web"],
            "https://preview.example/web"
        );
        assert!(!Arc::ptr_eq(&d.s.previews, &kept.s.previews));
        assert_eq!(kept.preview_urls(EnvId(0)), None, "the copies keep none");
        assert!(
            Arc::ptr_eq(&kept.s.previews, &written.s.previews),
            "the copies still share the map they had"
        );
        let again = d.clone();
        assert!(
            Arc::ptr_eq(&d.s.previews, &again.s.previews),
            "a later copy shares the new map"
        );
    }

    /// A clone shares the whole state until one of them takes an input, which copies it for
    /// itself once and leaves the other as it was; an input to a state held alone copies
    /// nothing, and neither does polling a drained one.
    #[test]
    fn a_clone_shares_the_state_until_an_input_copies_it() {
        let mut d = started(
            "application: a\ntargets:\n  x: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}",
        );
        while d.poll_action().is_some() {}
        while d.poll_event().is_some() {}
        let kept = d.clone();
        assert!(Arc::ptr_eq(&d.s, &kept.s), "a clone shares the state");
        assert_eq!((d.poll_action(), d.poll_event()), (None, None));
        assert!(
            Arc::ptr_eq(&d.s, &kept.s),
            "a poll of nothing copies nothing"
        );

        d.handle_cancel(t0(), "ops").unwrap();
        assert!(!Arc::ptr_eq(&d.s, &kept.s), "the input copied the state");
        assert_eq!(d.status(), DeploymentStatus::Canceled);
        assert_eq!(
            kept.status(),
            DeploymentStatus::Running,
            "the clone is as it was"
        );
        assert!(
            kept.state().events.is_empty(),
            "the cancel's events went to the copy"
        );

        let copied: *const DeploymentState = &*d.s;
        d.handle_timeout(t0());
        assert!(
            std::ptr::eq(&*d.s, copied),
            "a state held alone is changed in place"
        );
    }

    #[test]
    fn a_drained_deployment_keeps_no_buffer_for_its_outputs() {
        let mut d = started(
            "application: a\ntargets:\n  x: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}",
        );
        assert!(d.s.actions.capacity() > 0 && d.s.events.capacity() > 0);
        let actions = std::iter::from_fn(|| d.poll_action()).count();
        let events = std::iter::from_fn(|| d.poll_event()).count();
        assert!(actions > 0 && events > 0, "the start asks for the approval");
        assert_eq!(d.s.actions.capacity(), 0);
        assert_eq!(d.s.events.capacity(), 0);
    }

    /// Taken at once, outputs come in the order polling gives them, and leave no buffer.
    #[cfg(feature = "runtime")]
    #[test]
    fn outputs_taken_at_once_come_in_order_and_leave_no_buffer() {
        let two = "application: a\ntargets:\n  x: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}\n  y: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}";
        let (mut polled, mut taken) = (started(two), started(two));
        let actions: Vec<_> = std::iter::from_fn(|| polled.poll_action()).collect();
        let events: Vec<_> = std::iter::from_fn(|| polled.poll_event()).collect();
        assert!(actions.len() > 1 && events.len() > 1);
        assert_eq!(taken.take_actions(), actions);
        assert_eq!(taken.take_events(), events);
        assert_eq!(taken.s.actions.capacity(), 0);
        assert_eq!(taken.s.events.capacity(), 0);
    }

    /// Lent buffers hold the next input's outputs and leave with them; a deployment holding
    /// buffers of its own keeps them, and a buffer that is not empty is not lent.
    #[cfg(feature = "runtime")]
    #[test]
    fn lent_buffers_take_the_next_outputs_and_leave_with_them() {
        let two = "application: a\ntargets:\n  x: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}\n  y: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}";
        let now = Utc::now();
        let (mut plain, mut lent) = (started(two), started(two));
        for d in [&mut plain, &mut lent] {
            d.take_actions();
            d.take_events();
        }
        plain.handle_cancel(now, "ops").unwrap();
        let (actions, events) = (Vec::with_capacity(16), Vec::with_capacity(16));
        let event_buffer = events.as_ptr();
        lent.lend_queues(actions, events);
        lent.handle_cancel(now, "ops").unwrap();
        let events = lent.take_events();
        assert_eq!(
            events.as_ptr(),
            event_buffer,
            "the outputs went to the lent buffer"
        );
        assert!(!events.is_empty());
        assert_eq!(events, plain.take_events());
        assert_eq!(lent.take_actions(), plain.take_actions());
        assert_eq!(
            lent.s.events.capacity(),
            0,
            "the buffer left with the outputs"
        );

        let mut holding = started(two);
        let held = holding.s.events.as_slices().0.as_ptr();
        holding.lend_queues(Vec::with_capacity(16), Vec::with_capacity(16));
        assert_eq!(
            holding.s.events.as_slices().0.as_ptr(),
            held,
            "its own buffer kept"
        );

        let event = Event {
            at: now,
            kind: EventKind::DeploymentStarted,
        };
        let mut drained = started(two);
        drained.take_events();
        drained.lend_queues(Vec::new(), vec![event]);
        assert!(
            drained.take_events().is_empty(),
            "a buffer holding an event is not lent"
        );
    }

    /// Firing as `fire_passed` did before it kept a heap: the earliest deadline due over every
    /// gate (in a state `fires` accepts) and environment, looked for again after every firing.
    /// The oracle of [`firing_from_the_heap_keeps_the_order_of_a_full_scan`]; written apart
    /// from `due_at`, so that a fault there does not show on both sides.
    fn fire_passed_by_scan(
        d: &mut Deployment,
        now: DateTime<Utc>,
        on_time: bool,
        fires: impl Fn(GateState) -> bool,
    ) {
        let mut passed_over = Vec::new();
        let due_now = |d: &Deployment| {
            let gates = d.s.gates.iter().enumerate().filter_map(|(i, g)| {
                let due = Due::Gate(GateId(i as u32));
                fires(*g)
                    .then(|| g.deadline().map(|at| (at, due)))
                    .flatten()
            });
            let envs =
                d.s.envs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, e)| e.deadline().map(|at| (at, Due::Env(EnvId(i as u16)))));
            gates
                .chain(envs)
                .filter(|(at, _)| *at <= now)
                .collect::<Vec<_>>()
        };
        // Only the deadlines passed when the round began fire, and pauses' that a firing sets.
        let at_start = due_now(d);
        loop {
            let next = due_now(d)
                .into_iter()
                .filter(|(at, due)| {
                    let pausing = matches!(
                        due,
                        Due::Gate(g) if matches!(d.s.gate(*g), GateState::Pausing { .. })
                    );
                    (pausing || at_start.contains(&(*at, *due))) && !passed_over.contains(due)
                })
                .min();
            let Some((at, due)) = next else { return };
            let when = if on_time { at } else { now };
            let fired = match due {
                Due::Gate(g) => d.inputs().fire_gate(when, g),
                Due::Env(env) => d.inputs().fire_env(when, env),
            };
            if !fired {
                passed_over.push(due);
            }
        }
    }

    /// A gate list entry: a pause of 0-2 s, an approval expiring after 1-2 s (a file may not
    /// ask for 0), or a webhook whose callback times out after 0-2 s.
    fn gate_entry() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u8..3).prop_map(|s| format!("pause: {{duration: {s}, unit: seconds}}")),
            (1u8..3).prop_map(|s| format!(
                "pause: {{untilApproved: true, approvalExpiration: {{duration: {s}, unit: seconds}}}}"
            )),
            (0u8..3).prop_map(|s| format!("runWebhook: {{name: w{s}}}")),
        ]
    }

    /// Callback ids 1, 2, 3, ...
    struct Counting(u128);

    impl IdSource for Counting {
        fn callback_id(&mut self) -> CallbackId {
            self.0 += 1;
            CallbackId(self.0.to_be_bytes())
        }
    }

    /// Up to four targets, each after the one before or not, each with a gate list before
    /// deploying and a canary of pauses, host steps timing out after 1-2 s.
    fn plan_source() -> impl Strategy<Value = String> {
        let target = (
            any::<bool>(),
            prop::collection::vec(gate_entry(), 0..4),
            prop::collection::vec(gate_entry(), 0..3),
        );
        (prop::collection::vec(target, 1..5), 1u8..3).prop_map(|(targets, timeout)| {
            let mut source = format!(
                "application: a\ndeploymentConfig: {{timeout: {{duration: {timeout}, unit: seconds}}}}\ntargets:\n"
            );
            let mut strategies = String::new();
            for (i, (after_previous, before, canary)) in targets.iter().enumerate() {
                let depends = if *after_previous && i > 0 {
                    format!("dependsOn: [t{}], ", i - 1)
                } else {
                    String::new()
                };
                let strategy = if canary.is_empty() {
                    String::new()
                } else {
                    strategies.push_str(&format!(
                        "  c{i}: {{canary: {{steps: [{}]}}}}\n",
                        canary.join(", ")
                    ));
                    format!("strategy: c{i}, ")
                };
                source.push_str(&format!(
                    "  t{i}: {{{strategy}constraints: {{{depends}beforeDeployment: [{}]}}}}\n",
                    before.join(", ")
                ));
            }
            if !strategies.is_empty() {
                source.push_str("strategies:\n");
                source.push_str(&strategies);
            }
            source.push_str("webhooks:\n");
            // w0 takes the deployment's default callback timeout, which the test sets to zero:
            // a file may not ask for a zero one itself.
            source.push_str("  - {name: w0, uriTemplate: 'https://w.example', retryCount: 2}\n");
            for s in 1..3 {
                source.push_str(&format!(
                    "  - {{name: w{s}, uriTemplate: 'https://w.example', retryCount: 2, callbackTimeout: {{duration: {s}, unit: seconds}}}}\n"
                ));
            }
            source
        })
    }

    proptest! {
        /// Deadlines fired from the heap fire in the order of a full scan after every firing,
        /// with the same outcome: the same state, actions and events, at every second of a
        /// deployment whose host answers some steps and lets others time out, and whose
        /// webhook calls are answered or fail and are retried. Every firing is `handle_timeout`'s
        /// (every deadline) but, at random seconds, an input's (those that fail something) and
        /// a cancel's (every deadline but a retry's).
        #[test]
        fn firing_from_the_heap_keeps_the_order_of_a_full_scan(
            source in plan_source(),
            answers in prop::collection::vec(any::<bool>(), 64),
            input_at in 0i64..8,
            cancel_at in 0i64..8,
        ) {
            let mut d = Deployment::start(
                Arc::new(Plan::from_yaml(&source).unwrap()),
                DeploymentId::from("d"),
                StartOptions::default()
                    .with_settings(Settings::default().with_callback_timeout(std::time::Duration::ZERO)),
                &mut Counting(0),
                t0(),
            );
            let mut answers = answers.into_iter().cycle();
            for second in 0..6 {
                let now = t0() + chrono::TimeDelta::seconds(second);
                while let Some(action) = d.poll_action() {
                    let answered = answers.next().unwrap_or(true);
                    match action {
                        Action::RunStep(step) if answered => {
                            let _ = d.handle_step_result(now, step.op, StepOutcome::Succeeded);
                        }
                        Action::CallWebhook(call) => {
                            let result = if answered {
                                CallResult::Sent { status: 202 }
                            } else {
                                CallResult::Failed(crate::core::CallFailure::transient("down"))
                            };
                            let _ = d.handle_call_result(now, call.gate, call.attempt, result);
                        }
                        _ => {}
                    }
                }
                let mut by_scan = d.clone();
                if second == input_at {
                    d.inputs().expire_all(now);
                    fire_passed_by_scan(&mut by_scan, now, false, closes_on_deadline);
                } else if second == cancel_at {
                    d.inputs().fire_passed(now, FireAt::Deadline, ends_on_cancel);
                    fire_passed_by_scan(&mut by_scan, now, true, ends_on_cancel);
                } else {
                    d.handle_timeout(now);
                    fire_passed_by_scan(&mut by_scan, now, false, |_| true);
                }
                prop_assert_eq!(d.state(), by_scan.state(), "at {}s of\n{}", second, source);
            }
        }
    }
}
