//! The checked, immutable plan a deployment runs: what [`DeploymentFile::validate`] produces.
//!
//! Names are resolved to indices, templates are parsed, durations are converted and every
//! gate of every environment is listed once in [`Plan::gates`], so the core never looks
//! anything up by name.
//!
//! [`DeploymentFile::validate`]: super::DeploymentFile::validate

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::NearMiss;
use super::file::AnalysisQuery;
use crate::template::RequestTemplate;

/// Index of an environment in [`Plan::environments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvId(pub u16);

/// Index of a gate in [`Plan::gates`]. It displays as `gate 3`, for messages; the approval
/// URL (`/deployments/<deployment>/gates/<gate>/approve`) takes the bare number, `.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GateId(pub u32);

/// Index of a webhook in [`Plan::webhooks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookId(pub u16);

impl fmt::Display for GateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gate {}", self.0)
    }
}

/// A validated deployment file.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) application: String,
    pub(crate) context: BTreeMap<String, String>,
    pub(crate) step_timeout: Option<Duration>,
    pub(crate) if_in_progress: InProgressPolicy,
    pub(crate) environments: Vec<Environment>,
    pub(crate) webhooks: Vec<Webhook>,
    pub(crate) gates: Vec<Gate>,
    pub(crate) analysis_queries: Vec<AnalysisQuery>,
    pub(crate) ignored: Vec<String>,
    pub(crate) near_misses: Vec<NearMiss>,
}

impl Plan {
    /// `application`.
    pub fn application(&self) -> &str {
        &self.application
    }

    /// The keys of the file that hookgate does not read, as
    /// [`DeploymentFile::ignored_fields`](super::DeploymentFile::ignored_fields) lists them:
    /// no error (PROTOCOL.md §2), but a misspelt key is among them.
    pub fn ignored_fields(&self) -> &[String] {
        &self.ignored
    }

    /// The keys hookgate does not read but likely meant to be one it does, misspelt or
    /// misplaced, as [`DeploymentFile::near_misses`](super::DeploymentFile::near_misses)
    /// lists them.
    pub fn near_misses(&self) -> &[NearMiss] {
        &self.near_misses
    }

    /// The webhooks whose body looks like JSON and inserts values, yet is sent without a JSON
    /// `Content-Type`, so that the values go in unescaped
    /// ([`RequestTemplate::json_body_unescaped`](crate::template::RequestTemplate::json_body_unescaped)):
    /// no error, since PROTOCOL.md §3 escapes a body by its `Content-Type` alone, but a value
    /// with a `"` in it can add fields to what the receiver reads. The engine warns of them
    /// when it starts a deployment; setting the webhook's `Content-Type` to `application/json`,
    /// in place of any other, has its values escaped.
    pub fn webhooks_with_unescaped_json(&self) -> impl Iterator<Item = &Webhook> {
        self.webhooks
            .iter()
            .filter(|webhook| webhook.request.json_body_unescaped())
    }

    /// The file's `analysis.queries`, in the order written: what a host running an analysis
    /// step ([`AnalysisSpec::queries`]) looks its queries up in. Empty when the file has none,
    /// and the steps' query names are then the host's to know.
    pub fn analysis_queries(&self) -> &[AnalysisQuery] {
        &self.analysis_queries
    }

    /// The query of `analysis.queries` named `name`.
    pub fn analysis_query(&self, name: &str) -> Option<&AnalysisQuery> {
        self.analysis_queries.iter().find(|q| q.name == name)
    }

    /// The file's `context`.
    pub fn context(&self) -> &BTreeMap<String, String> {
        &self.context
    }

    /// `deploymentConfig.timeout`: how long a host step may take before it counts as failed.
    pub fn step_timeout(&self) -> Option<Duration> {
        self.step_timeout
    }

    /// `deploymentConfig.ifDeploymentInProgress.strategy`.
    pub fn if_in_progress(&self) -> InProgressPolicy {
        self.if_in_progress
    }

    /// The environments, ordered so that every environment comes after its dependencies
    /// (alphabetical order of their names among independent ones).
    pub fn environments(&self) -> &[Environment] {
        &self.environments
    }

    /// One environment.
    ///
    /// # Panics
    ///
    /// For an id that is not this plan's (as slice indexing does): ids come from the plan
    /// itself, its events and its actions; [`Plan::environments`] has them all.
    pub fn environment(&self, id: EnvId) -> &Environment {
        &self.environments[usize::from(id.0)]
    }

    /// The environment with this name.
    pub fn environment_by_name(&self, name: &str) -> Option<EnvId> {
        self.environments
            .iter()
            .position(|e| e.name == name)
            .map(|i| EnvId(i as u16))
    }

    /// The webhooks.
    pub fn webhooks(&self) -> &[Webhook] {
        &self.webhooks
    }

    /// One webhook.
    ///
    /// # Panics
    ///
    /// For an id that is not this plan's (as slice indexing does); [`Plan::webhooks`] has
    /// them all.
    pub fn webhook(&self, id: WebhookId) -> &Webhook {
        &self.webhooks[usize::from(id.0)]
    }

    /// Every gate of every environment.
    pub fn gates(&self) -> &[Gate] {
        &self.gates
    }

    /// The webhook gates, in gate order: each has a callback id in a deployment's state.
    pub(crate) fn webhook_gates(&self) -> impl Iterator<Item = GateId> + Clone + '_ {
        self.gates
            .iter()
            .enumerate()
            .filter(|(_, g)| matches!(g.kind(), GateKind::Webhook { .. }))
            .map(|(i, _)| GateId(i as u32))
    }

    /// Whether `gate` is a webhook gate with `disableCallback: true`, which its call alone
    /// decides; false for a gate not in the plan.
    pub(crate) fn callback_disabled(&self, gate: GateId) -> bool {
        matches!(
            self.gates.get(gate.0 as usize).map(Gate::kind),
            Some(GateKind::Webhook { webhook, .. }) if self.webhook(*webhook).disable_callback
        )
    }

    /// One gate.
    ///
    /// # Panics
    ///
    /// For an id that is not this plan's (as slice indexing does); [`Plan::gates`] has them
    /// all.
    pub fn gate(&self, id: GateId) -> &Gate {
        &self.gates[id.0 as usize]
    }

    /// The agent identifiers that webhooks sent through a remote network agent will use, so a
    /// host can refuse to start when one has no transport.
    pub fn remote_agents(&self) -> impl Iterator<Item = &str> {
        self.gates.iter().filter_map(|g| match &g.kind {
            GateKind::Webhook { webhook, .. } => match &self.webhook(*webhook).network {
                NetworkMode::RemoteAgent { agent } => Some(
                    agent
                        .as_deref()
                        .unwrap_or_else(|| self.environment(g.env).account().unwrap_or("")),
                ),
                NetworkMode::Direct => None,
            },
            _ => None,
        })
    }
}

/// What to do when a deployment of the same application is already running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum InProgressPolicy {
    /// Refuse the new deployment.
    #[default]
    Reject,
    /// Keep at most one waiting; a newer one replaces it.
    EnqueueOne,
}

/// One environment (a `targets` entry).
#[derive(Debug, Clone)]
pub struct Environment {
    pub(crate) name: String,
    pub(crate) account: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) depends_on: Vec<EnvId>,
    pub(crate) before: Vec<GateId>,
    pub(crate) strategy: Strategy,
    pub(crate) after: Vec<GateId>,
}

impl Environment {
    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// `account`.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }
    /// `namespace`.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
    /// `dependsOn`, resolved.
    pub fn depends_on(&self) -> &[EnvId] {
        &self.depends_on
    }
    /// The `beforeDeployment` gates.
    pub fn before(&self) -> &[GateId] {
        &self.before
    }
    /// The strategy.
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }
    /// The `afterDeployment` gates.
    pub fn after(&self) -> &[GateId] {
        &self.after
    }
}

/// How an environment is deployed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Strategy {
    /// No strategy: deploy, then `afterDeployment`.
    Direct,
    /// Canary steps, one after another, after the initial deploy.
    Canary {
        /// The strategy's name.
        name: String,
        /// The steps.
        steps: Vec<CanaryStep>,
    },
    /// Blue/green: deploy the new version beside the old, move traffic, shut the old down.
    BlueGreen {
        /// The strategy's name.
        name: String,
        /// `activeService`.
        active_service: String,
        /// `previewService`.
        preview_service: Option<String>,
        /// `redirectTrafficAfter` gates.
        redirect_after: Vec<GateId>,
        /// `shutDownOldVersionAfter` gates.
        shutdown_after: Vec<GateId>,
    },
}

/// One canary step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CanaryStep {
    /// `setWeight`: a host step.
    SetWeight(u8),
    /// `exposeServices`: a host step that reports preview URLs.
    ExposeServices {
        /// The services to expose.
        services: Vec<String>,
        /// How long they stay exposed.
        ttl: Option<Duration>,
    },
    /// `pause`, `runWebhook` or `analysis`: a gate.
    Gate(GateId),
}

/// Where in its environment a gate sits; decides what its failure means (PROTOCOL.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// `beforeDeployment`.
    BeforeDeployment,
    /// A canary step, by index.
    Strategy(u16),
    /// Blue/green `redirectTrafficAfter`.
    RedirectTrafficAfter,
    /// Blue/green `shutDownOldVersionAfter`.
    ShutDownOldVersionAfter,
    /// `afterDeployment`.
    AfterDeployment,
}

impl Stage {
    /// Whether a failure here rolls the environment back (strategy and blue/green stages).
    pub fn rolls_back(self) -> bool {
        matches!(
            self,
            Stage::Strategy(_) | Stage::RedirectTrafficAfter | Stage::ShutDownOldVersionAfter
        )
    }
}

/// One gate: something the environment waits on.
#[derive(Debug, Clone)]
pub struct Gate {
    pub(crate) env: EnvId,
    pub(crate) stage: Stage,
    pub(crate) kind: GateKind,
    pub(crate) path: String,
}

impl Gate {
    /// The environment it belongs to.
    pub fn env(&self) -> EnvId {
        self.env
    }
    /// Where it sits.
    pub fn stage(&self) -> Stage {
        self.stage
    }
    /// What it waits on.
    pub fn kind(&self) -> &GateKind {
        &self.kind
    }
    /// Its path in the deployment file, e.g. `targets.prod.constraints.beforeDeployment[1]`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// What a gate waits on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GateKind {
    /// `runWebhook`: an outbound call and (unless disabled) a callback.
    Webhook {
        /// The webhook.
        webhook: WebhookId,
        /// `runWebhook.context`.
        context: BTreeMap<String, String>,
    },
    /// `pause` for a fixed time.
    Pause(Duration),
    /// `pause: {untilApproved: true}`.
    Approval {
        /// `requiresRoles`: any one of them may decide; empty means anyone.
        roles: Vec<String>,
        /// `approvalExpiration`.
        expiration: Option<Duration>,
    },
    /// `analysis`: a host step; its failure fails the gate or asks a person.
    Analysis(AnalysisSpec),
}

/// An `analysis` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AnalysisSpec {
    /// The queries.
    pub queries: Vec<String>,
    /// `rollBackMode`.
    pub roll_back_mode: RollBackMode,
    /// The entry's `context`.
    pub context: BTreeMap<String, String>,
    /// `metricProviderName`, or the file's `analysis.defaultMetricProviderName` when the entry
    /// names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_provider_name: Option<String>,
    /// `interval` in its `units`: how long each judgment run looks at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// `numberOfJudgmentRuns`: how many times the queries are judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judgment_runs: Option<u32>,
}

/// `analysis.rollBackMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum RollBackMode {
    /// A failed analysis fails the gate.
    #[default]
    Automatic,
    /// A failed analysis waits for a person to roll back or continue.
    Manual,
}

/// A webhook, with its templates parsed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Webhook {
    /// `name`.
    pub name: String,
    /// `method` (upper-cased; default `POST`), `uriTemplate`, `headers` and
    /// `bodyTemplate.inline`, parsed.
    pub request: RequestTemplate,
    /// `networkMode` and `agentIdentifier`.
    pub network: NetworkMode,
    /// `retryCount`.
    pub retry_count: u32,
    /// `disableCallback`.
    pub disable_callback: bool,
    /// `callbackTimeout` (hookgate extension); `None`: the deployment's default.
    pub callback_timeout: Option<Duration>,
    /// `requestTimeout` (hookgate extension); `None`: the dispatcher's request timeout
    /// ([`DispatcherBuilder::request_timeout`](crate::outbound::DispatcherBuilder::request_timeout)).
    pub request_timeout: Option<Duration>,
    /// `retryableStatusCodes` (hookgate extension), sorted and without repeats: a failed answer
    /// is retried exactly when its status is listed, whatever its
    /// [`CallFailure::retryable`](crate::core::CallFailure::retryable) says. `None`: the
    /// failure's own classification stands ([`CallResult::from_status`] retries 408, 429 and
    /// 5xx). Failures without a status (connection errors, timeouts) keep their own either way.
    ///
    /// [`CallResult::from_status`]: crate::core::CallResult::from_status
    pub retryable_status_codes: Option<Vec<u16>>,
}

/// `networkMode`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkMode {
    /// Call directly.
    Direct,
    /// Call through a remote network agent.
    RemoteAgent {
        /// `agentIdentifier`; `None`: the target's account.
        agent: Option<String>,
    },
}
