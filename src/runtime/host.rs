use std::sync::Arc;

use async_trait::async_trait;

use crate::config::Strategy;
use crate::core::{DeploymentId, HostStep, OpId, StepOutcome};

/// Where a host step runs: the deployment and the target's fields from the deployment file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepContext {
    /// The deployment.
    pub deployment: DeploymentId,
    /// The step (or rollback) within the deployment: the same when the step is asked for again
    /// (after a restart, or by the replica that took the deployment over), and different for
    /// every other step, even one that looks the same (`setWeight` 50, then 20, then 50 again).
    /// With `deployment`, the key to make a step idempotent by.
    pub op: OpId,
    /// `application`.
    pub application: String,
    /// The target's name.
    pub environment: String,
    /// The target's `account`.
    pub account: Option<String>,
    /// The target's `namespace`.
    pub namespace: Option<String>,
    /// The target's `strategy`: what [`HostStep::Deploy`] deploys beside, and for blue/green
    /// the services [`HostStep::RedirectTraffic`] switches.
    pub strategy: StepStrategy,
}

/// How a target is deployed, from its `strategy` (PROTOCOL.md §2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepStrategy {
    /// No strategy: the new version replaces the old.
    Direct,
    /// A canary strategy: the new version runs beside the old, traffic moved by
    /// [`HostStep::SetWeight`].
    Canary {
        /// The strategy's name.
        name: String,
    },
    /// A blue/green strategy: the new version behind the preview service until
    /// [`HostStep::RedirectTraffic`] points the active service at it.
    BlueGreen {
        /// The strategy's name.
        name: String,
        /// `activeService`.
        active_service: String,
        /// `previewService`.
        preview_service: Option<String>,
    },
}

impl From<&Strategy> for StepStrategy {
    fn from(strategy: &Strategy) -> Self {
        match strategy {
            Strategy::Direct => StepStrategy::Direct,
            Strategy::Canary { name, .. } => StepStrategy::Canary { name: name.clone() },
            Strategy::BlueGreen {
                name,
                active_service,
                preview_service,
                ..
            } => StepStrategy::BlueGreen {
                name: name.clone(),
                active_service: active_service.clone(),
                preview_service: preview_service.clone(),
            },
        }
    }
}

/// The host application's side of a deployment: the steps hookgate asks for but cannot do
/// itself (deploy, shift traffic, expose services, analyse, roll back).
///
/// Each call reports how the step ended; a step that cannot be completed returns
/// [`StepOutcome::Failed`] with a reason for people. A call that panics fails its step the same
/// way, with a reason saying so (the panic's message goes to the process's panic hook only). A deploy step that knows the ReplicaSet the
/// new version runs in reports it with [`StepOutcome::Deployed`], and the environment's later
/// webhook calls render it as `{{armory.replicaSetName}}`. The engine calls these concurrently for
/// different environments and deployments, and again after a restart for a step that was in
/// flight, so an implementation should be idempotent per step: per
/// ([`StepContext::deployment`], [`StepContext::op`]). The environment and the step's fields are
/// not enough: a canary strategy may set the same weight twice, with another between.
#[async_trait]
pub trait Host: Send + Sync + 'static {
    /// Performs a step.
    async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome;

    /// Rolls the environment back to the version it ran before this deployment.
    async fn roll_back(&self, context: &StepContext) -> StepOutcome;
}

#[async_trait]
impl<T: Host + ?Sized> Host for Arc<T> {
    async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
        (**self).run_step(context, step).await
    }

    async fn roll_back(&self, context: &StepContext) -> StepOutcome {
        (**self).roll_back(context).await
    }
}

/// A host that completes every step at once: `exposeServices` reports
/// `https://<service>.<environment>.preview.invalid` URLs, everything else succeeds. For trying
/// hookgate against a real external system without a cluster.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimulatedHost;

#[async_trait]
impl Host for SimulatedHost {
    async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
        tracing::info!(environment = %context.environment, step = step.name(), "simulated host step");
        match step {
            HostStep::ExposeServices { services, .. } => StepOutcome::Exposed(
                services
                    .iter()
                    .map(|s| {
                        (
                            s.clone(),
                            format!("https://{s}.{}.preview.invalid", context.environment),
                        )
                    })
                    .collect(),
            ),
            _ => StepOutcome::Succeeded,
        }
    }

    async fn roll_back(&self, context: &StepContext) -> StepOutcome {
        tracing::info!(environment = %context.environment, "simulated rollback");
        StepOutcome::Succeeded
    }
}
