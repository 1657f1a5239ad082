//! The deployment file as written: serde types for every field hookgate reads (PROTOCOL.md §2).
//!
//! These types accept anything that has the right shape, so that [`DeploymentFile::validate`]
//! can check meaning and report every problem at once with its path. Fields hookgate does not
//! use (`version`, `kind`, `manifests`, ...) are ignored.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::NearMiss;

mod entry;

pub(super) use entry::{CANARY_STEPS, CONSTRAINTS};

/// A whole deployment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeploymentFile {
    /// `application`: the application's name.
    pub application: String,
    /// `context`: deployment-wide template context.
    #[serde(default, deserialize_with = "unique_keys")]
    pub context: Context,
    /// `deploymentConfig`.
    #[serde(default)]
    pub deployment_config: Option<DeploymentConfig>,
    /// `targets`: environments by name.
    #[serde(deserialize_with = "unique_keys")]
    pub targets: BTreeMap<String, Target>,
    /// `strategies`: strategies by name.
    #[serde(default, deserialize_with = "unique_keys")]
    pub strategies: BTreeMap<String, Strategy>,
    /// `webhooks`.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    /// `analysis`: the queries the file's analysis steps name, for the host to run.
    #[serde(default)]
    pub analysis: Option<AnalysisConfig>,
    /// See [`DeploymentFile::ignored_fields`].
    #[serde(skip)]
    pub(super) ignored: Vec<String>,
    /// See [`DeploymentFile::near_misses`].
    #[serde(skip)]
    pub(super) near_misses: Vec<NearMiss>,
}

impl DeploymentFile {
    /// The most keys [`DeploymentFile::ignored_fields`] lists: a file may hold any number,
    /// and a plan keeps its list for as long as a deployment of it runs.
    pub const MAX_IGNORED_LISTED: usize = 64;

    /// The most keys not read that [`DeploymentFile::near_misses`] looks at: far more than an
    /// Armory file carries (two keys of Armory's own in each of 34 targets fill
    /// [`MAX_IGNORED_LISTED`](Self::MAX_IGNORED_LISTED)), few enough that a hostile file of a
    /// hundred thousand costs no more to read.
    pub const MAX_IGNORED_EXAMINED: usize = 1024;

    /// The paths of the keys the file holds that hookgate does not read, in the order written
    /// (`targets.prod.constraints.beforDeployment`, `webhooks[0].uriTemplte`), up to
    /// [`MAX_IGNORED_LISTED`](Self::MAX_IGNORED_LISTED). PROTOCOL.md §2 ignores unknown fields,
    /// as Armory files carry more than hookgate reads (`kind`, `version`, `manifests`), so they
    /// are no error; but a misspelt key is one too, and a misspelt `beforeDeployment` drops
    /// its gates: show these to whoever wrote the file. Empty for a file not read by
    /// [`from_yaml`](Self::from_yaml) or [`from_json`](Self::from_json).
    pub fn ignored_fields(&self) -> &[String] {
        &self.ignored
    }

    /// The keys the file holds that hookgate does not read but likely meant to be one it
    /// does, each with that key and what is likely wrong ([`Slip`](super::Slip)): spelt like
    /// it (one edit away, two for a key longer than eight letters, whatever the case, `_` and
    /// `-`; its start; or it with more written around it):
    /// `targets.prod.constraints.beforDeployment`, did you mean `beforeDeployment`? Or spelt
    /// so but in a place that does not read it (`dependsOn` directly under a target). Armory's
    /// own keys that hookgate has no use for are none of them. Among the first
    /// [`MAX_IGNORED_EXAMINED`](Self::MAX_IGNORED_EXAMINED) keys not read, up to
    /// [`MAX_IGNORED_LISTED`](Self::MAX_IGNORED_LISTED) of them.
    pub fn near_misses(&self) -> &[NearMiss] {
        &self.near_misses
    }
}

/// Template context: string keys to string values. Unquoted numbers and booleans are accepted
/// and kept as written, since YAML writers rarely quote them.
pub type Context = BTreeMap<String, ContextValue>;

/// One context value: a string, or a number or boolean kept as text. Read by
/// [`DeploymentFile::from_yaml`] or [`DeploymentFile::from_json`], an unquoted scalar keeps the
/// spelling it was written with (`1.10` stays `1.10`); read through another serde format, a
/// number or boolean is written out as text (`1.10` becomes `1.1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ContextValue(pub String);

thread_local! {
    /// Set while `from_yaml` or `from_json` reads a file. Their reader answers a request for
    /// text with a scalar as written, where asking for any value would have it guess a number
    /// (`1.10` as 1.1); other formats (a host's own serde_json) refuse a number asked for as
    /// text, so they are asked for any value. The flag, rather than two types, keeps one public
    /// `DeploymentFile` for both.
    static SCALARS_AS_WRITTEN: Cell<bool> = const { Cell::new(false) };
}

/// Runs `read` with context values asked for as text (see [`SCALARS_AS_WRITTEN`]).
pub(super) fn with_scalars_as_written<T>(read: impl FnOnce() -> T) -> T {
    /// Puts the flag back, even if `read` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCALARS_AS_WRITTEN.set(self.0);
        }
    }
    let _restore = Restore(SCALARS_AS_WRITTEN.replace(true));
    read()
}

/// A map read with each key at most once. The YAML reader refuses a key written twice alike,
/// but compares keys as the values they spell: a plain `1` (a number) and a quoted `"1"` (text)
/// pass as two keys, and both arrive here as the text `1`. Kept, the later would silently
/// replace the earlier: a target with an approval gate dropped for one without.
fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct UniqueKeys<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueKeys<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut read = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if read.contains_key(&key) {
                    return Err(de::Error::custom(format_args!(
                        "the key `{key}` is given twice (keys are compared as text: `1` and \"1\" are one key)"
                    )));
                }
                let value = map.next_value()?;
                read.insert(key, value);
            }
            Ok(read)
        }
    }
    deserializer.deserialize_map(UniqueKeys(PhantomData))
}

impl<'de> Deserialize<'de> for ContextValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = ContextValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ContextValue(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(ContextValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ContextValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ContextValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ContextValue(v.to_string()))
            }
        }
        if SCALARS_AS_WRITTEN.get() {
            deserializer.deserialize_string(ScalarVisitor)
        } else {
            deserializer.deserialize_any(ScalarVisitor)
        }
    }
}

/// `deploymentConfig`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeploymentConfig {
    /// `timeout`: how long a host step may take.
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
    /// `ifDeploymentInProgress`.
    #[serde(default)]
    pub if_deployment_in_progress: Option<IfDeploymentInProgress>,
}

/// `ifDeploymentInProgress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IfDeploymentInProgress {
    /// `strategy`: `reject` or `enqueueOne`.
    pub strategy: String,
}

/// A duration as written: `{duration: 30, unit: minutes}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DurationSpec {
    /// `duration`: a non-negative whole number.
    pub duration: i64,
    /// `unit`: `seconds`, `minutes` or `hours`.
    pub unit: String,
}

/// One target (environment).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Target {
    /// `account`.
    #[serde(default)]
    pub account: Option<String>,
    /// `namespace`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `strategy`: a key of `strategies`.
    #[serde(default)]
    pub strategy: Option<String>,
    /// `constraints`.
    #[serde(default)]
    pub constraints: Option<Constraints>,
}

/// A target's `constraints`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Constraints {
    /// `dependsOn`: environments that must succeed first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// `beforeDeployment`: evaluated in parallel before deploying.
    #[serde(default)]
    pub before_deployment: Vec<Constraint>,
    /// `afterDeployment`: evaluated in parallel after deploying.
    #[serde(default)]
    pub after_deployment: Vec<Constraint>,
}

/// One entry of a constraint list (also used for blue/green's lists).
///
/// Written as a map holding one of its kinds; other keys beside it are ignored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Constraint {
    /// `pause`.
    Pause(Pause),
    /// `runWebhook`.
    RunWebhook(RunWebhook),
    /// `analysis`.
    Analysis(Analysis),
}

/// `pause`: a fixed wait, or a wait for manual approval.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Pause {
    /// `duration`, with `unit`.
    #[serde(default)]
    pub duration: Option<i64>,
    /// `unit`, with `duration`.
    #[serde(default)]
    pub unit: Option<String>,
    /// `untilApproved`.
    #[serde(default)]
    pub until_approved: Option<bool>,
    /// `requiresRoles`: any one of them may approve.
    #[serde(default)]
    pub requires_roles: Vec<String>,
    /// `approvalExpiration`.
    #[serde(default)]
    pub approval_expiration: Option<DurationSpec>,
}

/// `runWebhook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RunWebhook {
    /// `name`: a webhook's name.
    pub name: String,
    /// `context`: overrides the file's context for this call.
    #[serde(default, deserialize_with = "unique_keys")]
    pub context: Context,
}

/// `analysis`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Analysis {
    /// `queries`: names of the queries the host evaluates.
    #[serde(default)]
    pub queries: Vec<String>,
    /// `rollBackMode`: `automatic` (default) or `manual`.
    #[serde(default)]
    pub roll_back_mode: Option<String>,
    /// `rollForwardMode`: `automatic` (the default, and the only one hookgate runs; `manual`
    /// is refused, see [`ProblemKind::ManualRollForward`](super::ProblemKind::ManualRollForward)).
    #[serde(default)]
    pub roll_forward_mode: Option<String>,
    /// `context`: passed to the host with the analysis request.
    #[serde(default, deserialize_with = "unique_keys")]
    pub context: Context,
    /// `metricProviderName`: the metrics provider to query; the file's
    /// `analysis.defaultMetricProviderName` when absent.
    #[serde(default)]
    pub metric_provider_name: Option<String>,
    /// `interval`: how long each judgment run looks at, in `units`.
    #[serde(default)]
    pub interval: Option<i64>,
    /// `units`: `seconds`, `minutes` or `hours`, the unit of `interval`.
    #[serde(default)]
    pub units: Option<String>,
    /// `numberOfJudgmentRuns`: how many times the queries are judged.
    #[serde(default)]
    pub number_of_judgment_runs: Option<i64>,
}

/// The file's top-level `analysis` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AnalysisConfig {
    /// `defaultMetricProviderName`: the provider of analysis steps that name none.
    #[serde(default)]
    pub default_metric_provider_name: Option<String>,
    /// `queries`: the queries analysis steps name.
    #[serde(default)]
    pub queries: Vec<AnalysisQuery>,
}

/// One of `analysis.queries`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AnalysisQuery {
    /// `name`: what analysis steps call it by.
    #[serde(default)]
    pub name: String,
    /// `upperLimit`: a result above it fails the query.
    #[serde(default)]
    pub upper_limit: Option<f64>,
    /// `lowerLimit`: a result below it fails the query.
    #[serde(default)]
    pub lower_limit: Option<f64>,
    /// `queryTemplate`: the query, in the metrics provider's language, with Armory's
    /// placeholders for the host to fill in.
    #[serde(default)]
    pub query_template: String,
}

/// A named strategy: exactly one of `canary` or `blueGreen`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Strategy {
    /// `canary`.
    #[serde(default)]
    pub canary: Option<Canary>,
    /// `blueGreen`.
    #[serde(default)]
    pub blue_green: Option<BlueGreen>,
}

/// `canary`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Canary {
    /// `steps`, run one after another.
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
}

/// One canary step.
///
/// Written as a map holding one of its kinds; other keys beside it are ignored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum CanaryStep {
    /// `setWeight`.
    SetWeight(SetWeight),
    /// `pause`.
    Pause(Pause),
    /// `runWebhook`.
    RunWebhook(RunWebhook),
    /// `analysis`.
    Analysis(Analysis),
    /// `exposeServices`.
    ExposeServices(ExposeServices),
}

/// `setWeight`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SetWeight {
    /// `weight`: 0 to 100.
    pub weight: i64,
}

/// `exposeServices`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExposeServices {
    /// `services`: the services to expose.
    #[serde(default)]
    pub services: Vec<String>,
    /// `ttl`: how long the preview stays up.
    #[serde(default)]
    pub ttl: Option<DurationSpec>,
}

/// `blueGreen`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BlueGreen {
    /// `activeService`.
    #[serde(default)]
    pub active_service: Option<String>,
    /// `previewService`.
    #[serde(default)]
    pub preview_service: Option<String>,
    /// `redirectTrafficAfter`: evaluated in parallel before traffic moves.
    #[serde(default)]
    pub redirect_traffic_after: Vec<Constraint>,
    /// `shutDownOldVersionAfter`: evaluated in parallel before the old version goes.
    #[serde(default)]
    pub shut_down_old_version_after: Vec<Constraint>,
}

/// One entry of `webhooks`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Webhook {
    /// `name`: unique among webhooks.
    pub name: String,
    /// `method`: default `POST`.
    #[serde(default)]
    pub method: Option<String>,
    /// `uriTemplate`.
    pub uri_template: String,
    /// `networkMode`: `direct` (default) or `remoteNetworkAgent`.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// `agentIdentifier`: only with `remoteNetworkAgent`.
    #[serde(default)]
    pub agent_identifier: Option<String>,
    /// `headers`.
    #[serde(default)]
    pub headers: Vec<Header>,
    /// `bodyTemplate`.
    #[serde(default)]
    pub body_template: Option<BodyTemplate>,
    /// `retryCount`: retries of the outbound call, default 0.
    #[serde(default)]
    pub retry_count: Option<i64>,
    /// `disableCallback`: pass as soon as the call succeeds.
    #[serde(default)]
    pub disable_callback: Option<bool>,
    /// hookgate extension: `callbackTimeout`, default 24 hours.
    #[serde(default)]
    pub callback_timeout: Option<DurationSpec>,
    /// hookgate extension: `requestTimeout` of each call, default 30 seconds.
    #[serde(default)]
    pub request_timeout: Option<DurationSpec>,
    /// hookgate extension: `retryableStatusCodes`, the HTTP statuses whose answers are retried
    /// (each 100-599, not 2xx, listed once); an empty list retries no answer. Absent: 408, 429
    /// and 5xx. Connection errors and timeouts are retried either way.
    #[serde(default)]
    pub retryable_status_codes: Option<Vec<i64>>,
}

/// One header of a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Header {
    /// `key`: the header name.
    pub key: String,
    /// `value`: a template.
    pub value: String,
}

/// `bodyTemplate`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BodyTemplate {
    /// `inline`: the body template text.
    #[serde(default)]
    pub inline: Option<String>,
}
