use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::Dispatcher;
use crate::config::{NetworkMode, Plan, WebhookId};
use crate::core::{Deployment, WebhookCall};
use crate::template::ArmoryValues;

/// Everything one attempt of a webhook call needs, copied out of its [`Deployment`] by
/// [`Dispatcher::prepare`], so [`Dispatcher::send`] runs without the deployment (or its lock).
///
/// Holds no secret: secrets are fetched by `send`, for that attempt only. `Debug` shows the
/// call's identity and the context keys, not the context values or the callback URI.
#[derive(Clone)]
pub struct PreparedCall {
    pub(super) call: WebhookCall,
    pub(super) plan: Arc<Plan>,
    pub(super) webhook: WebhookId,
    /// The webhook's name, or empty when the plan lacks the webhook (`send` reports that).
    pub(super) webhook_name: String,
    /// The remote network agent to route through; `None`: direct.
    pub(super) agent: Option<String>,
    pub(super) armory: ArmoryValues,
    pub(super) context: BTreeMap<String, String>,
}

impl PreparedCall {
    /// The call this attempt performs.
    pub fn call(&self) -> &WebhookCall {
        &self.call
    }

    /// The values of `{{armory.*}}`, the callback URI included.
    pub fn armory(&self) -> &ArmoryValues {
        &self.armory
    }

    /// The merged context for `{{context.*}}`.
    pub fn context(&self) -> &BTreeMap<String, String> {
        &self.context
    }
}

impl fmt::Debug for PreparedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedCall")
            .field("deployment", &self.armory.deployment_id)
            .field("gate", &self.call.gate)
            .field("attempt", &self.call.attempt)
            .field("webhook", &self.webhook_name)
            .field("environment", &self.armory.environment_name)
            .field("context_keys", &self.context.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Copies what `call` needs from `deployment`: the `armory.*` values (with this gate's
    /// callback URI, and `replica_set_name` if given, else the one the environment's deploy
    /// step reported with [`StepOutcome::Deployed`](crate::core::StepOutcome::Deployed)), the
    /// gate's merged context, the environment's preview URLs, the plan and the route.
    ///
    /// Cheap and synchronous: call it while holding the deployment, then release it before
    /// [`send`](Self::send).
    pub fn prepare(
        &self,
        deployment: &Deployment,
        call: &WebhookCall,
        replica_set_name: Option<&str>,
    ) -> PreparedCall {
        let plan = Arc::clone(deployment.plan());
        let webhook = plan.webhooks().get(usize::from(call.webhook.0));
        let environment = plan.environments().get(usize::from(call.env.0));
        let account = environment.and_then(|e| e.account());
        // §2: a remote agent defaults to the target's account, as `Plan::remote_agents` says.
        let agent = match webhook.map(|w| &w.network) {
            Some(NetworkMode::RemoteAgent { agent }) => {
                Some(agent.as_deref().or(account).unwrap_or_default().to_owned())
            }
            _ => None,
        };
        let armory = ArmoryValues {
            callback_uri: format!("{}/callbacks/{}", self.callback_base, call.callback_id),
            deployment_id: deployment.id().0.clone(),
            application_name: plan.application().to_owned(),
            environment_name: environment.map(|e| e.name().to_owned()).unwrap_or_default(),
            // §3: the target's account, or the agent identifier when the target has none.
            account_name: account
                .map(str::to_owned)
                .or_else(|| agent.clone())
                .unwrap_or_default(),
            namespace: environment
                .and_then(|e| e.namespace())
                .unwrap_or_default()
                .to_owned(),
            replica_set_name: replica_set_name
                .or_else(|| deployment.replica_set_name(call.env))
                .map(str::to_owned),
            preview: deployment
                .preview_urls(call.env)
                .cloned()
                .unwrap_or_default(),
        };
        PreparedCall {
            webhook_name: webhook.map(|w| w.name.clone()).unwrap_or_default(),
            context: deployment.context_for(call.gate),
            call: call.clone(),
            webhook: call.webhook,
            agent,
            armory,
            plan,
        }
    }
}
