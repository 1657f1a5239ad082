use crate::config::ConfigError;
use crate::core::{CoreError, DeploymentId};
use crate::outbound::OutboundError;
use crate::store::StoreError;

/// Why the engine refused or could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The deployment file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The core refused the input.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The store failed. A write whose answer was lost may have been stored all the same
    /// ([`StoreError::Backend`]); the engine looks again and goes on with what it finds, so look
    /// before retrying a start, which could otherwise start the deployment twice.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// The deployment's webhooks cannot be sent (for example a remote network agent has no
    /// transport).
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    /// No deployment has this id.
    #[error("no deployment has id {0}")]
    UnknownDeployment(DeploymentId),
    /// `ifDeploymentInProgress: reject`: another deployment of the application is running, or
    /// queued (by a file with `enqueueOne`) and about to start.
    #[error(
        "deployment {running} of application {application} is still running or about to start, and the file says ifDeploymentInProgress: reject; wait for it to finish or cancel it"
    )]
    InProgress {
        /// The application.
        application: String,
        /// The deployment that is running, or queued to start next.
        running: DeploymentId,
    },
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
}
