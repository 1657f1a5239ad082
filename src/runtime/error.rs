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
    /// it and goes on with what it finds. A start answered so is
    /// [`RuntimeError::MaybeStarted`] instead, which names the deployment.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// A start's write to the store failed in a way that may have stored the deployment all
    /// the same (its answer lost with the connection, [`StoreError::Backend`]), and a look at
    /// the store did not find it. The engine looks for it again a second later and at
    /// doubling waits for about two minutes, and runs it if it is found; until then
    /// [`Engine::view`](super::Engine::view) answers [`RuntimeError::UnknownDeployment`].
    ///
    /// Starting the file again may deploy the application twice. Cancel this one by `id`
    /// first, on the engine that answered: [`Engine::cancel`](super::Engine::cancel) records
    /// the cancel there, and a deployment found stored later is canceled (before anything of
    /// it is asked for, when that engine resumes it; through the store, when another replica
    /// took it up first). Another replica knows the id only once the deployment is stored.
    #[error(
        "the store failed while storing deployment {id}, which may have been stored all the same and would then run; cancel it by that id before starting the file again: {source}"
    )]
    MaybeStarted {
        /// The deployment's id: what it would run as.
        id: DeploymentId,
        /// The store's failure.
        source: StoreError,
    },
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
    /// Another engine recorded itself in the store under this replica's name
    /// ([`ReplicaOptions::id`](super::ReplicaOptions::id)) after this one did: both held the
    /// same leases and drove the same deployments. This engine has shut down, keeping the
    /// leases for the other one.
    #[error(
        "another engine runs as replica {name:?}, recorded in the store after this one; this \
         engine has shut down and left the deployments to it: give every replica a name of its \
         own"
    )]
    ReplicaNameTaken {
        /// The replica's name.
        name: String,
    },
}
