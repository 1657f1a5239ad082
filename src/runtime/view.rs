use crate::config::GateId;
use crate::core::{Deployment, DeploymentId, DeploymentStatus, EnvStatus, GateState};

/// A deployment as [`Engine::view`](super::Engine::view) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeploymentView {
    /// Its id.
    pub id: DeploymentId,
    /// `application`.
    pub application: String,
    /// Its status.
    pub status: DeploymentStatus,
    /// Every environment with its status, dependencies first.
    pub environments: Vec<(String, EnvStatus)>,
    /// Every gate, in plan order.
    pub gates: Vec<GateView>,
}

/// A gate.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        let plan = d.plan();
        Self {
            id: d.id().clone(),
            application: plan.application().to_owned(),
            status: d.status(),
            environments: plan
                .environments()
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    (
                        e.name().to_owned(),
                        d.env_status(crate::config::EnvId(i as u16)),
                    )
                })
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
                        state: d.gate_state(gate),
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
