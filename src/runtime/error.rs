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
    /// The store failed. The deployment in memory is as it was, but a write whose answer was
    /// lost ([`StoreError::Backend`]) may have been stored all the same: the engine looks for
    /// it and goes on with what it finds. A start answered so may still run (looked for a
    /// second later and again at doubling waits for about two minutes, and resumed if found),
    /// and retrying it may start the application's deployment a second time.
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
