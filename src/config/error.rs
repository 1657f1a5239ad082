use std::fmt;

use crate::template::TemplateError;

/// Why a deployment file was refused. Nothing has run when this is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not YAML or JSON, or a value has the wrong shape (a list where a map is
    /// expected, a missing required field, a word where a number goes). Reported at the first
    /// such place, where reading stopped: the file's other problems
    /// ([`Invalid`](Self::Invalid)) are listed once it reads.
    #[error("{path}: {message}")]
    Syntax {
        /// Where, as a field path (`targets.prod.constraints`), or `(file)` for the whole text.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// The file is over one of its [`Limits`](super::Limits); nothing more was read.
    #[error(
        "the deployment file exceeds the limit on {what} ({limit}); shrink it or raise the limit with `Limits`"
    )]
    TooLarge {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: usize,
    },
    /// The file parsed but breaks the rules of PROTOCOL.md §2. Every problem is listed, up to
    /// [`MAX_LISTED_BYTES`](Self::MAX_LISTED_BYTES) of their text; the rest are counted.
    #[error("{}", ProblemList { problems, unlisted: *unlisted })]
    Invalid {
        /// The problems found: the file-wide ones (`application`, `deploymentConfig`, sizes)
        /// first, then the webhooks', then unknown dependencies and cycles, then each target's
        /// (in dependency order, then by name), then unused strategies. Each names its path in
        /// the file.
        problems: Vec<Problem>,
        /// How many more problems were found after `problems` reached
        /// [`MAX_LISTED_BYTES`](Self::MAX_LISTED_BYTES) of text. A hostile file can hold
        /// thousands of problems, each naming a long path, and listing them all would take far
        /// more memory than the file.
        unlisted: usize,
    },
}

impl ConfigError {
    /// How much text (paths and messages, as displayed) the problems of
    /// [`ConfigError::Invalid`] hold at most, give or take its last problem: more than anyone
    /// reads before fixing the first of them.
    pub const MAX_LISTED_BYTES: usize = 64 * 1024;
}

impl ConfigError {
    /// Every problem listed, with its path (those past
    /// [`MAX_LISTED_BYTES`](Self::MAX_LISTED_BYTES) are only counted, in
    /// [`ConfigError::Invalid`]'s `unlisted`); a syntax error is one problem of kind
    /// [`ProblemKind::Shape`].
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Syntax { path, message } => vec![Problem {
                path: path.clone(),
                kind: ProblemKind::Shape {
                    message: message.clone(),
                },
            }],
            ConfigError::TooLarge { what, limit } => vec![Problem {
                path: "(file)".into(),
                kind: ProblemKind::TooLarge {
                    what,
                    limit: *limit,
                },
            }],
            ConfigError::Invalid { problems, .. } => problems.clone(),
        }
    }
}

struct ProblemList<'a> {
    problems: &'a [Problem],
    unlisted: usize,
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len().saturating_add(self.unlisted);
        write!(
            f,
            "the deployment file has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.problems {
            write!(f, "\n  {p}")?;
        }
        if self.unlisted > 0 {
            write!(
                f,
                "\n  and {} more, not listed: fix these and read the file again",
                self.unlisted
            )?;
        }
        Ok(())
    }
}

/// One problem in a deployment file, at a field path such as
/// `targets.prod.constraints.dependsOn[0]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {kind}")]
#[non_exhaustive]
pub struct Problem {
    /// The path of the offending field.
    pub path: String,
    /// What is wrong with it.
    pub kind: ProblemKind,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The value has the wrong shape.
    #[error("{message}")]
    Shape {
        /// What the parser said.
        message: String,
    },
    /// A required value is missing or empty.
    #[error("{what} is required")]
    Missing {
        /// What is missing.
        what: &'static str,
    },
    /// A webhook sent through a remote network agent names no agent: its `agentIdentifier` is
    /// empty, or it has none and a target calling it has no `account` to default to.
    #[error("{}", no_agent(webhook, target.as_deref()))]
    NoAgent {
        /// The webhook's name.
        webhook: String,
        /// The target with no account, when that is why; `None` for an empty
        /// `agentIdentifier`.
        target: Option<String>,
    },
    /// `runWebhook.name` names no webhook.
    #[error("unknown webhook \"{name}\": add it under `webhooks` or fix the name")]
    UnknownWebhook {
        /// The name used.
        name: String,
    },
    /// Two webhooks share a name.
    #[error("duplicate webhook name \"{name}\": webhook names must be unique")]
    DuplicateWebhook {
        /// The name.
        name: String,
    },
    /// An analysis step names a query the file's `analysis.queries` does not define.
    #[error("unknown query \"{name}\": add it under analysis.queries or fix the name")]
    UnknownQuery {
        /// The name used.
        name: String,
    },
    /// Two of `analysis.queries` share a name.
    #[error("duplicate query name \"{name}\": query names must be unique")]
    DuplicateQuery {
        /// The name.
        name: String,
    },
    /// An analysis step or query that could never be run as written.
    #[error("{message}")]
    InvalidAnalysis {
        /// What is wrong.
        message: &'static str,
    },
    /// `dependsOn` names an unknown target.
    #[error("unknown target \"{name}\"")]
    UnknownTarget {
        /// The name used.
        name: String,
    },
    /// `dependsOn` forms a cycle.
    #[error("dependsOn forms a cycle: {}", cycle.join(" -> "))]
    DependencyCycle {
        /// The targets on the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// `strategy` names no strategy.
    #[error("unknown strategy \"{name}\": add it under `strategies` or fix the name")]
    UnknownStrategy {
        /// The name used.
        name: String,
    },
    /// A strategy has neither or both of `canary` and `blueGreen`.
    #[error("a strategy needs exactly one of `canary` or `blueGreen`")]
    StrategyKind,
    /// `setWeight.weight` outside 0–100.
    #[error("weight {weight} is outside 0-100")]
    WeightOutOfRange {
        /// The weight given.
        weight: i64,
    },
    /// A negative duration.
    #[error("duration {duration} is negative")]
    NegativeDuration {
        /// The duration given.
        duration: i64,
    },
    /// A webhook's `requestTimeout` of zero, which would time every call out before it is sent.
    #[error(
        "requestTimeout is zero, which times every call out before it is sent: give at least 1 second, or leave it out for the dispatcher's"
    )]
    ZeroRequestTimeout,
    /// A `deploymentConfig.timeout` of zero, which would time every host step out as it
    /// starts, its rollback too: no deployment of the file could succeed.
    #[error(
        "deploymentConfig.timeout is zero, which times every host step out as it starts, so no deployment could succeed: give at least 1 second, or leave it out for none"
    )]
    ZeroStepTimeout,
    /// A wait that fails its gate when it ends, of zero: a webhook's `callbackTimeout` (when it
    /// takes callbacks) or an approval's `approvalExpiration`. The gate would fail as soon as
    /// it started waiting, so no deployment could pass it.
    #[error(
        "{what} is zero, which fails the gate as soon as it starts waiting, so it never passes: give at least 1 second, or leave it out"
    )]
    ZeroWait {
        /// `callbackTimeout` or `approvalExpiration`.
        what: &'static str,
    },
    /// A duration unit other than seconds, minutes, hours.
    #[error("unknown unit \"{unit}\": use seconds, minutes or hours")]
    UnknownUnit {
        /// The unit given.
        unit: String,
    },
    /// A duration longer than hookgate supports.
    #[error("duration is longer than {max_days} days")]
    DurationTooLong {
        /// The limit.
        max_days: u32,
    },
    /// A pause that is neither a fixed wait nor `untilApproved: true`, or mixes both.
    #[error("{message}")]
    InvalidPause {
        /// What is wrong.
        message: &'static str,
    },
    /// `agentIdentifier` with `networkMode: direct`.
    #[error("agentIdentifier is only allowed with networkMode: remoteNetworkAgent")]
    AgentWithDirectMode,
    /// A value outside the allowed set.
    #[error("unknown value \"{value}\": expected {expected}")]
    UnknownValue {
        /// The value given.
        value: String,
        /// The allowed values.
        expected: &'static str,
    },
    /// A template that does not parse or uses a variable outside PROTOCOL.md §3.
    #[error("{0}")]
    Template(TemplateError),
    /// `armory.preview.*` used where no service can be exposed yet.
    #[error(
        "webhook \"{webhook}\" uses {variable}, which has no value before deployment: only strategy steps and afterDeployment can use preview URLs"
    )]
    PreviewBeforeDeployment {
        /// The webhook.
        webhook: String,
        /// The preview variable.
        variable: String,
    },
    /// `armory.preview.<service>` used where no `exposeServices` step of the target's canary
    /// has exposed the service yet: in a canary step before the one exposing it, in
    /// `afterDeployment` of a target whose canary never exposes it, or in a blue/green
    /// strategy's gates.
    #[error(
        "webhook \"{webhook}\" uses {variable}, but no exposeServices step of a canary exposes that service before the webhook runs: preview URLs come only from a canary's exposeServices steps, so use it in a later step of that canary or in afterDeployment of a target whose canary exposes it"
    )]
    PreviewNotExposed {
        /// The webhook.
        webhook: String,
        /// The preview variable.
        variable: String,
    },
    /// A name holding a control character (NUL, a line break, …) or an invisible format
    /// character (a zero-width space, a bidirectional override, …): a database column of text
    /// cannot hold NUL, and a name that prints as something else misleads whoever reads it
    /// (the names of the application, targets, strategies and webhooks). Also the text a header value
    /// writes itself holding a control character no header can carry (any but a tab, and
    /// DEL), which would fail every call.
    #[error("{what} holds a control or invisible character; use printable characters only")]
    ControlCharacter {
        /// Which name, or `"a header value (tabs aside)"`.
        what: &'static str,
    },
    /// A name longer than hookgate stores.
    #[error("{what} is {bytes} bytes long; use at most {max}")]
    TooLong {
        /// Which name.
        what: &'static str,
        /// Its length.
        bytes: usize,
        /// The most allowed.
        max: usize,
    },
    /// `analysis` in `beforeDeployment`.
    #[error("analysis is not allowed in beforeDeployment: nothing is deployed yet to analyse")]
    AnalysisBeforeDeployment,
    /// `rollForwardMode: manual` on an `analysis`: Armory has a person approve going on after
    /// a passing analysis, which hookgate does not do; running the file without that approval
    /// would skip a sign-off its author asked for.
    #[error(
        "rollForwardMode: manual is not supported: put `pause: {{untilApproved: true}}` after the \
         analysis for a person to approve going on, and leave rollForwardMode out"
    )]
    ManualRollForward,
    /// A `uriTemplate` that cannot render an absolute http(s) URL.
    #[error("{reason}; a uriTemplate must render an absolute http(s) URL")]
    InvalidUriTemplate {
        /// What is wrong with it.
        reason: String,
    },
    /// Not a valid HTTP method.
    #[error("\"{method}\" is not an HTTP method")]
    InvalidMethod {
        /// The method given.
        method: String,
    },
    /// `CONNECT`, which asks for a tunnel to the URI's host and port instead of calling the
    /// URI: its path and query would never be sent, and the call would count as sent on any
    /// 2xx from whatever answers there.
    #[error(
        "\"{method}\" opens a tunnel to the host instead of calling the URI (its path and query would not be sent); use POST or another method"
    )]
    TunnelMethod {
        /// The method given.
        method: String,
    },
    /// Not a valid HTTP header name.
    #[error("\"{name}\" is not a valid header name")]
    InvalidHeaderName {
        /// The name given.
        name: String,
    },
    /// A header the HTTP client writes from the request itself
    /// ([`is_reserved_header`](crate::template::is_reserved_header)).
    #[error(
        "\"{name}\" is written by the HTTP client from the request's URL and body; remove it from the webhook's headers"
    )]
    ReservedHeader {
        /// The name given.
        name: String,
    },
    /// Over one of the [`Limits`](super::Limits).
    #[error("over the limit on {what} ({limit}); shrink it or raise the limit with `Limits`")]
    TooLarge {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: usize,
    },
    /// A 2xx in `retryableStatusCodes`: a success, which is never retried.
    #[error("{status} is a success (2xx), which is never retried")]
    SuccessStatusRetryable {
        /// The status given.
        status: u16,
    },
    /// A status listed twice in `retryableStatusCodes`.
    #[error("status {status} is already listed")]
    DuplicateStatus {
        /// The status given.
        status: u16,
    },
    /// A count outside its allowed range.
    #[error("{value} is outside {min}-{max}")]
    OutOfRange {
        /// The value given.
        value: i64,
        /// The smallest allowed.
        min: i64,
        /// The largest allowed.
        max: i64,
    },
}

fn no_agent(webhook: &str, target: Option<&str>) -> String {
    match target {
        None => format!(
            "webhook \"{webhook}\" goes through a remote network agent, and an empty \
             agentIdentifier names none: set it, or leave it out to use the calling target's account"
        ),
        Some(target) => format!(
            "webhook \"{webhook}\" goes through a remote network agent and has no \
             agentIdentifier, and target \"{target}\" has no account to default to: set one of them"
        ),
    }
}
