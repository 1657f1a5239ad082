//! Real deployments for the checks, with ids that no other check, and no earlier run against
//! the same database, uses.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{GateId, Plan};
use crate::core::{
    CallResult, CallbackId, Deployment, DeploymentId, DeploymentState, DeploymentStatus, Event,
    IdSource, StartOptions,
};
use crate::ids::RandomIds;
use crate::store::{DynStore, NewDeployment, StoreError};
use crate::test_util::SequentialIds;

/// One environment whose `beforeDeployment` calls a webhook: the smallest plan with a callback
/// id, and one that can be finished (cancelled) before anything is deployed.
const PLAN: &str = r#"
application: APPLICATION
targets:
  staging:
    constraints:
      beforeDeployment:
        - runWebhook: {name: ticket}
webhooks:
  - name: ticket
    uriTemplate: "https://tickets.example/{{armory.deploymentId}}"
"#;

pub(super) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01 is a valid time")
}

/// `ids` oldest first, as the listings promise: by the store's own `created_at`, then by id.
///
/// The checks create the older deployment under the id that sorts later (`z-…` before
/// `a-…`), so that a store ordering by id alone lists them the wrong way round. Their
/// expected order is read from the rows rather than assumed from the order of the creates:
/// a store whose clock did not move between two creates rightly breaks the tie by id.
pub(super) async fn oldest_first(store: &DynStore, ids: &[&DeploymentId]) -> Vec<DeploymentId> {
    let mut rows = Vec::new();
    for id in ids {
        let row = store
            .load(id)
            .await
            .expect("load succeeds")
            .expect("the deployment is stored");
        rows.push((row.created_at, row.id));
    }
    rows.sort();
    rows.into_iter().map(|(_, id)| id).collect()
}

pub(super) struct Fixture {
    tag: String,
    ids: SequentialIds,
}

impl Fixture {
    /// Fresh ids for the check `check`: a random tag in every name and a random first callback
    /// id, so that checks sharing a store (or a database kept between runs) never collide.
    pub(super) fn new(check: &str) -> Self {
        let base = u128::from_be_bytes(RandomIds.callback_id().0);
        Self {
            tag: format!("{check}-{:016x}", base as u64),
            ids: SequentialIds::starting_at(base),
        }
    }

    /// A name unique to this check and run, for deployment ids and applications.
    pub(super) fn name(&self, name: &str) -> String {
        format!("conformance-{}-{name}", self.tag)
    }

    /// Starts deployment `name` of `application`.
    pub(super) fn start(&mut self, name: &str, application: &str) -> Started {
        self.start_with(name, application, StartOptions::default())
    }

    pub(super) fn start_with(
        &mut self,
        name: &str,
        application: &str,
        options: StartOptions,
    ) -> Started {
        let source = PLAN.replace("APPLICATION", application);
        let plan = Plan::from_yaml(&source).expect("the conformance plan is valid");
        let deployment = Deployment::start(
            Arc::new(plan),
            DeploymentId(self.name(name)),
            options,
            &mut self.ids,
            t0(),
        );
        let mut started = Started {
            deployment,
            source,
            events: Vec::new(),
        };
        started.events = started.drain();
        started
    }
}

/// A started deployment, its plan's text and the events its last input produced.
#[derive(Debug, Clone)]
pub(super) struct Started {
    pub(super) deployment: Deployment,
    pub(super) source: String,
    pub(super) events: Vec<Event>,
}

impl Started {
    pub(super) fn id(&self) -> &DeploymentId {
        self.deployment.id()
    }

    pub(super) fn state(&self) -> &Arc<DeploymentState> {
        self.deployment.state()
    }

    pub(super) fn new_deployment(&self) -> NewDeployment {
        NewDeployment::new(&self.deployment, &self.source)
    }

    /// Creates it in `store`, with the events its start produced.
    pub(super) async fn create_in(&self, store: &DynStore) {
        store
            .create(self.new_deployment(), &self.events)
            .await
            .expect("create succeeds");
    }

    pub(super) fn callback(&self) -> CallbackId {
        self.gate().1
    }

    fn gate(&self) -> (GateId, CallbackId) {
        let mut gates = self.deployment.callback_ids();
        gates
            .next()
            .expect("the conformance plan has a webhook gate")
    }

    /// The webhook call went through `secs` seconds after the start: the gate now waits for
    /// its callback until a deadline that depends on `secs`, so each `secs` gives its own state.
    pub(super) fn sent(&mut self, secs: i64) -> Vec<Event> {
        let gate = self.gate().0;
        let now = t0() + TimeDelta::seconds(secs);
        let sent = CallResult::Sent { status: 202 };
        self.deployment
            .handle_call_result(now, gate, 1, sent)
            .expect("the gate is calling");
        self.drain()
    }

    /// A progress note: one event; the state changes only in the gate's note count.
    pub(super) fn progress(&mut self, message: &str) -> Vec<Event> {
        self.deployment
            .handle_progress(t0(), self.callback(), message.to_owned())
            .expect("the gate is open");
        self.drain()
    }

    /// Cancels before anything is deployed, which finishes the deployment as `canceled`.
    pub(super) fn cancel(&mut self) -> Vec<Event> {
        self.deployment
            .handle_cancel(t0(), "conformance")
            .expect("the deployment is running");
        assert_eq!(self.deployment.status(), DeploymentStatus::Canceled);
        self.drain()
    }

    /// [`cancel`](Self::cancel)s it, and saves that over the version its create wrote.
    pub(super) async fn cancel_created(&mut self, store: &DynStore) {
        let events = self.cancel();
        self.save(store, 1, &events).await.expect("save succeeds");
    }

    /// Saves the current state and status with `events`.
    pub(super) async fn save(
        &self,
        store: &DynStore,
        expected_version: u64,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        let status = self.deployment.status();
        store
            .save(self.id(), expected_version, self.state(), status, events)
            .await
    }

    /// Drops the actions (nothing is performed here) and returns the events.
    fn drain(&mut self) -> Vec<Event> {
        while self.deployment.poll_action().is_some() {}
        std::iter::from_fn(|| self.deployment.poll_event()).collect()
    }
}
