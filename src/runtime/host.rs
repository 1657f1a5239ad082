use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{EnvId, Environment, Plan, Strategy};
use crate::core::{DeploymentId, HostStep, OpId, StepOutcome};

/// Where a host step runs: the deployment and the target's fields from the deployment file.
///
/// It shares the deployment's id and plan rather than copying their text: the engine builds one
/// for every step and rollback it asks for, most of which a host answers at once.
#[derive(Clone)]
pub struct StepContext {
    deployment: Arc<DeploymentId>,
    op: OpId,
    plan: Arc<Plan>,
    env: EnvId,
}

impl StepContext {
    pub(crate) fn new(
        deployment: Arc<DeploymentId>,
        op: OpId,
        plan: Arc<Plan>,
        env: EnvId,
    ) -> Self {
        Self {
            deployment,
            op,
            plan,
            env,
        }
    }

    /// The deployment.
    pub fn deployment(&self) -> &DeploymentId {
        &self.deployment
    }

    /// The step (or rollback) within the deployment: the same when the step is asked for again
    /// (after a restart, or by the replica that took the deployment over), and different for
    /// every other step, even one that looks the same (`setWeight` 50, then 20, then 50 again).
    /// With [`deployment`](Self::deployment), the key to make a step idempotent by.
    pub fn op(&self) -> OpId {
        self.op
    }

    /// `application`.
    pub fn application(&self) -> &str {
        self.plan.application()
    }

    /// The deployment's whole plan: for an analysis step, the file's queries
    /// ([`Plan::analysis_query`]) that [`HostStep::Analysis`]'s spec names.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The target: its name, `account`, `namespace`, strategy and constraints as the deployment
    /// file gave them.
    pub fn target(&self) -> &Environment {
        self.plan.environment(self.env)
    }

    /// The target's name.
    pub fn environment(&self) -> &str {
        self.target().name()
    }

    /// The target's `account`.
    pub fn account(&self) -> Option<&str> {
        self.target().account()
    }

    /// The target's `namespace`.
    pub fn namespace(&self) -> Option<&str> {
        self.target().namespace()
    }

    /// The target's `strategy`: what [`HostStep::Deploy`] deploys beside, and for blue/green
    /// the services [`HostStep::RedirectTraffic`] switches.
    pub fn strategy(&self) -> StepStrategy<'_> {
        self.target().strategy().into()
    }
}

impl fmt::Debug for StepContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("deployment", self.deployment())
            .field("op", &self.op)
            .field("application", &self.application())
            .field("environment", &self.environment())
            .field("account", &self.account())
            .field("namespace", &self.namespace())
            .field("strategy", &self.strategy())
            .finish()
    }
}

/// Equal when everything a host sees is: the deployment, the step, and the target's fields.
impl PartialEq for StepContext {
    fn eq(&self, other: &Self) -> bool {
        self.deployment() == other.deployment()
            && self.op == other.op
            && self.application() == other.application()
            && self.environment() == other.environment()
            && self.account() == other.account()
            && self.namespace() == other.namespace()
            && self.strategy() == other.strategy()
    }
}

impl Eq for StepContext {}

/// How a target is deployed, from its `strategy` (PROTOCOL.md §2), borrowed from the
/// deployment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepStrategy<'a> {
    /// No strategy: the new version replaces the old.
    Direct,
    /// A canary strategy: the new version runs beside the old, traffic moved by
    /// [`HostStep::SetWeight`].
    Canary {
        /// The strategy's name.
        name: &'a str,
    },
    /// A blue/green strategy: the new version behind the preview service until
    /// [`HostStep::RedirectTraffic`] points the active service at it.
    BlueGreen {
        /// The strategy's name.
        name: &'a str,
        /// `activeService`.
        active_service: &'a str,
        /// `previewService`.
        preview_service: Option<&'a str>,
    },
}

impl<'a> From<&'a Strategy> for StepStrategy<'a> {
    fn from(strategy: &'a Strategy) -> Self {
        match strategy {
            Strategy::Direct => StepStrategy::Direct,
            Strategy::Canary { name, .. } => StepStrategy::Canary { name },
            Strategy::BlueGreen {
                name,
                active_service,
                preview_service,
                ..
            } => StepStrategy::BlueGreen {
                name,
                active_service,
                preview_service: preview_service.as_deref(),
            },
        }
    }
}

/// The host application's side of a deployment: the steps hookgate asks for but cannot do
/// itself (deploy, shift traffic, expose services, analyse, roll back).
///
/// Each call reports how the step ended; a step that cannot be completed returns
/// [`StepOutcome::Failed`] (`Failed { reason }`, a reason for people). A call that panics fails
/// its step the same way, with a reason saying so (the panic's message goes to the process's
/// panic hook only). A deploy step that knows the ReplicaSet the new version runs in reports it
/// with [`StepOutcome::Deployed`], and the environment's later webhook calls render it as
/// `{{armory.replicaSetName}}`. A step is first polled while the input that asked for it is
/// applied ([`Engine::start`](super::Engine::start), a callback, a decision), on the caller's
/// task: do not block in it. A result ready at once is applied before the deployment is let
/// go (a later [`Engine::view`](super::Engine::view) sees it), though it may be stored and
/// published after the input returns; on a replica that does not hold the deployment, the
/// one that does runs the step. A result whose write fails is kept and written again by the
/// engine's clock; the step is not asked for again for it. The engine calls these concurrently
/// for different environments and deployments, and again for a step that was in flight when
/// the deployment is resumed (after a restart, a store write that panicked, or another
/// replica taking it over), so an implementation should be idempotent per step: per
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
        tracing::info!(environment = %context.environment(), step = step.name(), "simulated host step");
        match step {
            HostStep::ExposeServices { services, .. } => StepOutcome::Exposed(
                services
                    .iter()
                    .map(|s| {
                        (
                            s.clone(),
                            format!("https://{s}.{}.preview.invalid", context.environment()),
                        )
                    })
                    .collect(),
            ),
            _ => StepOutcome::Succeeded,
        }
    }

    async fn roll_back(&self, context: &StepContext) -> StepOutcome {
        tracing::info!(environment = %context.environment(), "simulated rollback");
        StepOutcome::Succeeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Deployment, StartOptions};
    use crate::ids::RandomIds;

    /// A context reads the target from the plan it shares, equals another of the same step,
    /// and shows what a host sees in `Debug`.
    #[test]
    fn a_context_reads_its_target_from_the_shared_plan() {
        let plan = Arc::new(
            Plan::from_yaml(
                "application: shop\ntargets:\n  prod: {account: main, namespace: web, strategy: fast}\nstrategies:\n  fast: {canary: {steps: [setWeight: {weight: 50}]}}\n",
            )
            .expect("a valid plan"),
        );
        let d = Deployment::start(
            Arc::clone(&plan),
            DeploymentId::from("d-1"),
            StartOptions::default(),
            &mut RandomIds,
            chrono::Utc::now(),
        );
        let env = plan.environment_by_name("prod").expect("prod");
        let context = StepContext::new(Arc::clone(d.shared_id()), OpId(3), plan, env);
        assert_eq!(context.deployment(), &DeploymentId::from("d-1"));
        assert_eq!(context.op(), OpId(3));
        assert_eq!(
            (context.application(), context.environment()),
            ("shop", "prod")
        );
        assert_eq!(
            (context.account(), context.namespace()),
            (Some("main"), Some("web"))
        );
        assert_eq!(context.strategy(), StepStrategy::Canary { name: "fast" });
        assert_eq!(context, context.clone());
        let other = StepContext::new(
            Arc::clone(d.shared_id()),
            OpId(4),
            Arc::clone(d.plan()),
            env,
        );
        assert_ne!(context, other, "another step");
        let shown = format!("{context:?}");
        for part in ["d-1", "shop", "prod", "main", "web", "fast"] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
    }
}
