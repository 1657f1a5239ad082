use serde::Serialize;

use crate::config::{EnvId, GateId, Plan};
use crate::core::{Deployment, DeploymentId, DeploymentStatus, EnvStatus, GateState};

/// A deployment as [`Engine::view`](super::Engine::view) shows it; serialized with the field
/// names below, for a status page or API to pass on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeploymentView {
    /// Its id.
    pub id: DeploymentId,
    /// `application`.
    pub application: String,
    /// The tenant it was started for ([`Engine::start_for_tenant`](super::Engine::start_for_tenant)),
    /// if any: a host acting on a caller's behalf checks it against the caller's tenant, as
    /// the engine's [`GateService`](crate::server::GateService) does.
    pub tenant: Option<String>,
    /// Its status.
    pub status: DeploymentStatus,
    /// Every environment with its status, dependencies first: in the plan's order, so that
    /// an event's [`EnvId`] `n` names `environments[n]`.
    pub environments: Vec<(String, EnvStatus)>,
    /// Every gate, in plan order, so that an event's [`GateId`] `n` names `gates[n]`.
    pub gates: Vec<GateView>,
}

/// A gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GateView {
    /// The gate.
    pub gate: GateId,
    /// Its environment's name.
    pub environment: String,
    /// Its path in the deployment file.
    pub path: String,
    /// Its state.
    pub state: GateState,
}

impl DeploymentView {
    pub(crate) fn of(d: &Deployment) -> Self {
        Self::with(
            d.id(),
            d.plan(),
            d.tenant(),
            d.status(),
            |env| d.env_status(env),
            |gate| d.gate_state(gate),
        )
    }

    /// A deployment waiting to start (`enqueueOne`): nothing of it has begun.
    pub(crate) fn queued(id: &DeploymentId, plan: &Plan, tenant: Option<&str>) -> Self {
        Self::with(
            id,
            plan,
            tenant,
            DeploymentStatus::Queued,
            |_| EnvStatus::Pending,
            |_| GateState::Idle,
        )
    }

    fn with(
        id: &DeploymentId,
        plan: &Plan,
        tenant: Option<&str>,
        status: DeploymentStatus,
        env_status: impl Fn(EnvId) -> EnvStatus,
        gate_state: impl Fn(GateId) -> GateState,
    ) -> Self {
        Self {
            id: id.clone(),
            application: plan.application().to_owned(),
            tenant: tenant.map(str::to_owned),
            status,
            environments: plan
                .environments()
                .iter()
                .enumerate()
                .map(|(i, e)| (e.name().to_owned(), env_status(EnvId(i as u16))))
                .collect(),
            gates: plan
                .gates()
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let gate = GateId(i as u32);
                    GateView {
                        gate,
                        environment: plan.environment(g.env()).name().to_owned(),
                        path: g.path().to_owned(),
                        state: gate_state(gate),
                    }
                })
                .collect(),
        }
    }

    /// The gates still waiting.
    pub fn open_gates(&self) -> impl Iterator<Item = &GateView> {
        self.gates.iter().filter(|g| g.state.is_open())
    }
}
