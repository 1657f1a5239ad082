use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{EnvId, GateId};
use crate::core::{ApprovalKind, DeploymentId, Event};

/// What the engine publishes to subscribers ([`Engine::subscribe`](super::Engine::subscribe)).
/// Serialized with a `type` field naming the variant (`deployment`, `approval_requested`) beside
/// the variant's fields, for a queue or a log to carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EngineEvent {
    /// An event of a deployment's history, after it was stored.
    Deployment {
        /// The deployment.
        id: DeploymentId,
        /// The event.
        event: Event,
    },
    /// A person must decide an approval; decide it with
    /// [`Engine::decide`](super::Engine::decide) or through the approval endpoint.
    #[non_exhaustive]
    ApprovalRequested {
        /// The deployment.
        id: DeploymentId,
        /// The gate to decide.
        gate: GateId,
        /// Its environment.
        env: EnvId,
        /// What is asked.
        kind: ApprovalKind,
        /// When it expires, if ever.
        expires_at: Option<DateTime<Utc>>,
        /// The tenant the deployment was started for, if any: only that tenant's principals
        /// may decide it through the approval endpoint.
        tenant: Option<String>,
    },
}
