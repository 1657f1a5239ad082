//! Turning a [`DeploymentFile`] into a [`Plan`], collecting every problem with its path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::de::IgnoredAny;

use super::error::{ConfigError, Problem, ProblemKind};
use super::file::{
    self, AnalysisConfig, AnalysisQuery, Constraint, Context, DeploymentFile, DurationSpec,
};
use super::limits::{self, Limits};
use super::near_miss::NearMiss;
use super::plan::{
    AnalysisSpec, CanaryStep, EnvId, Environment, Gate, GateId, GateKind, InProgressPolicy,
    NetworkMode, Plan, RollBackMode, Stage, Strategy, Webhook, WebhookId,
};
use crate::invisible::invisible;
use crate::template::{ArmoryVar, RequestTemplate, Segment, Template, Variable, fixed_uri_problem};

/// The longest duration accepted anywhere in a file; longer ones are almost certainly typos and
/// would overflow deadline arithmetic far sooner than any deployment ends.
const MAX_DURATION_DAYS: u32 = 366;
/// Retries beyond this would keep a gate busy for hours at the 60 s backoff cap.
const MAX_RETRY_COUNT: i64 = 100;
/// The HTTP statuses an answer can have (RFC 9110 §15).
const STATUS_CODES: std::ops::RangeInclusive<i64> = 100..=599;

impl DeploymentFile {
    /// Reads a deployment file written in YAML (JSON is YAML too), within [`Limits::default`].
    pub fn from_yaml(source: &str) -> Result<Self, ConfigError> {
        Self::from_yaml_with(source, &Limits::default())
    }

    /// Reads a deployment file written in YAML within `limits`.
    pub fn from_yaml_with(source: &str, limits: &Limits) -> Result<Self, ConfigError> {
        check_size(source, limits)?;
        // A JSON file may hold, in its strings, characters the YAML reader refuses anywhere:
        // read as JSON, they are escaped for it first. Only such files pay for the look.
        if source.contains(unprintable)
            && let Ok((source, value)) = read_json(source)
        {
            return Self::from_json_value(source, &value, limits);
        }
        Self::typed(source, limits).map_err(|field| {
            // A file that is not well formed is reported as such, rather than as the field
            // its reading stopped at; but a key given twice is the field's own fault, and
            // reading it found its path. Every scalar is well formed here, `.nan` included,
            // which only a field wanting a number refuses.
            let mut well_formed = options(limits);
            well_formed.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
            match serde_saphyr::from_str_with_options::<IgnoredAny>(source, well_formed) {
                Ok(_) => field,
                Err(e) if is_duplicate_key(&e) => field,
                Err(e) => over_budget(&e, limits).unwrap_or_else(|| ConfigError::Syntax {
                    path: "(file)".into(),
                    message: for_people(&e),
                }),
            }
        })
    }

    /// Reads a deployment file written in JSON, within [`Limits::default`].
    pub fn from_json(source: &str) -> Result<Self, ConfigError> {
        Self::from_json_with(source, &Limits::default())
    }

    /// Reads a deployment file written in JSON within `limits`.
    pub fn from_json_with(source: &str, limits: &Limits) -> Result<Self, ConfigError> {
        check_size(source, limits)?;
        // JSON's own grammar first, so that YAML is refused here and a file deeper than the
        // limit is reported as such (serde_json itself stops at a depth of 128, with a syntax
        // error); then the fields are read as YAML's are, JSON being a subset of it.
        let (source, value) = read_json(source).map_err(|e| ConfigError::Syntax {
            path: "(file)".into(),
            message: e.to_string(),
        })?;
        Self::from_json_value(source, &value, limits)
    }

    /// [`DeploymentFile::from_json_with`] past the size check, `value` being `source` read as
    /// JSON.
    fn from_json_value(
        source: &str,
        value: &serde_json::Value,
        limits: &Limits,
    ) -> Result<Self, ConfigError> {
        if limits::depth(value) > limits.depth_limit() {
            return Err(ConfigError::TooLarge {
                what: "nesting depth",
                limit: limits.depth_limit(),
            });
        }
        if let Some(path) = long_key(value) {
            return Err(ConfigError::Syntax {
                path: if path.is_empty() {
                    "(file)".to_owned()
                } else {
                    path
                },
                message: format!(
                    "a key here is longer than the {MAX_KEY_CHARS} characters (quotes and \
                     escapes included) that a deployment file's key may have; shorten it"
                ),
            });
        }
        Self::typed(&escape_unprintable(source), limits)
    }

    /// The file read straight into its types, so that a field wanting text gets an unquoted
    /// scalar as it was written (`1.10`, `007`, `NO`), not the number or boolean that reading
    /// untyped YAML would make of it.
    fn typed(source: &str, limits: &Limits) -> Result<Self, ConfigError> {
        let mut path = None;
        let mut ignored = Vec::new();
        let mut near_misses = Vec::new();
        let mut examined = 0;
        let note_ignored = |field: serde_ignored::Path<'_>| {
            let listed = (ignored.len() < Self::MAX_IGNORED_LISTED).then(|| field_path(&field));
            // A hostile file can hold a hundred thousand keys, and spelling each against every
            // key read would cost more than reading the file.
            if examined < Self::MAX_IGNORED_EXAMINED
                && near_misses.len() < Self::MAX_IGNORED_LISTED
                && let serde_ignored::Path::Map { key, .. } = &field
            {
                examined += 1;
                let path = || listed.clone().unwrap_or_else(|| field_path(&field));
                near_misses.extend(NearMiss::of(path, key));
            }
            ignored.extend(listed);
        };
        file::with_scalars_as_written(|| {
            serde_saphyr::with_deserializer_from_str_with_options(source, options(limits), |yaml| {
                let mut track = serde_path_to_error::Track::new();
                let tracked = serde_path_to_error::Deserializer::new(yaml, &mut track);
                serde_ignored::deserialize(tracked, note_ignored).inspect_err(|_| {
                    path = Some(track.path().to_string());
                })
            })
        })
        .map(|file: Self| Self {
            ignored,
            near_misses,
            ..file
        })
        .map_err(|e| {
            over_budget(&e, limits).unwrap_or_else(|| ConfigError::Syntax {
                // The reader names a segment it could not read (a key given twice) `?`.
                path: match path.as_deref().map(|path| path.trim_end_matches(".?")) {
                    Some(path) if !path.is_empty() && path != "." && path != "?" => path.to_owned(),
                    _ => "(file)".into(),
                },
                message: for_people(&e),
            })
        })
    }

    /// Checks the file against PROTOCOL.md §2 and builds the plan it describes, within
    /// [`Limits::default`]. Every problem found is reported, each with the path of its field.
    pub fn validate(&self) -> Result<Plan, ConfigError> {
        self.validate_with(&Limits::default())
    }

    /// Checks the file within `limits` and builds the plan it describes.
    pub fn validate_with(&self, limits: &Limits) -> Result<Plan, ConfigError> {
        self.validate_as(limits, false)
    }

    /// [`DeploymentFile::validate_with`], the analysis fields' problems left unreported when
    /// `stored` (see [`Plan::from_stored_yaml`]).
    fn validate_as(&self, limits: &Limits, stored: bool) -> Result<Plan, ConfigError> {
        let mut v = Validator {
            problems: Vec::new(),
            unlisted: 0,
            listing_left: ConfigError::MAX_LISTED_BYTES,
            gates: Vec::new(),
            checked: BTreeMap::new(),
            limits: limits.clone(),
            previews: BTreeMap::new(),
            exposed: BTreeSet::new(),
            default_metric_provider: None,
            query_names: BTreeSet::new(),
            stored,
            muted: false,
        };
        let plan = v.plan(self);
        if v.problems.is_empty() {
            Ok(plan)
        } else {
            Err(ConfigError::Invalid {
                problems: v.problems,
                unlisted: v.unlisted,
            })
        }
    }
}

/// Why a `uriTemplate` can never render a usable URL, known before any value is rendered: a
/// fixed one is checked as its render would be, and one that starts with text rather than a
/// placeholder must start with the scheme. One starting with a placeholder that is inserted as
/// a whole base URL (a secret, the callback URI, a preview URL) is left to the render; one
/// starting with another (a context value, percent-encoded like any value) must have `://`
/// further on, after a scheme such a value can spell.
fn never_a_url(template: &Template) -> Option<String> {
    if template.starts_with_variable() {
        let encoded = template
            .variables()
            .next()
            .is_some_and(|first| !crate::template::whole_url_allowed(first));
        if encoded && !template.source().contains("://") {
            return Some(
                "it starts with a value that is percent-encoded (only a secret, the callback \
                 URI or a preview URL is inserted as a whole base URL), and no `://` follows"
                    .to_owned(),
            );
        }
        return None;
    }
    if template.variables().next().is_none() {
        return fixed_uri_problem(template);
    }
    let scheme = template
        .source()
        .split_once("://")
        .map(|(scheme, _)| scheme);
    match scheme.map(str::to_ascii_lowercase).as_deref() {
        Some("http" | "https") => None,
        _ => Some("it does not start with http:// or https://".to_owned()),
    }
}

/// `field` written as the paths of [`ConfigError`]'s problems are: `targets.prod.x`,
/// `webhooks[0].y`.
fn field_path(field: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match field {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// The YAML reader's settings, with [`budget`]'s limits.
fn options(limits: &Limits) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget(limits));
    options
}

/// What the YAML reader may read: the file's nesting depth; the text it may produce, aliases
/// expanded, a few times the file's size, so that aliases repeating a large value cannot make
/// a file under the size limit cost many times it; and its nodes and events, which grow with
/// the text, in proportion to the file's size limit (never below the reader's defaults), so
/// that raising that limit lets a larger file through.
fn budget(limits: &Limits) -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = limits.depth_limit();
    budget.max_total_scalar_bytes = expanded_limit(limits);
    budget.max_recorded_anchor_bytes = expanded_limit(limits);
    budget.max_nodes = budget.max_nodes.max(limits.max_file_bytes / 4);
    budget.max_events = budget.max_events.max(limits.max_file_bytes);
    budget
}

impl Plan {
    /// Reads and validates a YAML (or JSON) deployment file.
    ///
    /// ```
    /// let plan = hookgate::config::Plan::from_yaml(
    ///     "application: demo\ntargets:\n  dev: {account: k8s, namespace: demo}\n",
    /// )
    /// .unwrap();
    /// assert_eq!(plan.environments()[0].name(), "dev");
    /// ```
    pub fn from_yaml(source: &str) -> Result<Plan, ConfigError> {
        DeploymentFile::from_yaml(source)?.validate()
    }

    /// Reads and validates a JSON deployment file.
    pub fn from_json(source: &str) -> Result<Plan, ConfigError> {
        DeploymentFile::from_json(source)?.validate()
    }

    /// Reads and validates a YAML (or JSON) deployment file within `limits`.
    pub fn from_yaml_with(source: &str, limits: &Limits) -> Result<Plan, ConfigError> {
        DeploymentFile::from_yaml_with(source, limits)?.validate_with(limits)
    }

    /// Reads the file a deployment was stored with, as [`Plan::from_yaml`] does, but without
    /// the checks releases before them did not make: of the analysis fields
    /// (`analysis.queries`, a step's `metricProviderName`, `interval`, `units` and
    /// `numberOfJudgmentRuns`), and of the characters of strategy names. A deployment such a
    /// release started and stored resumes, its analysis steps reaching the host with what of
    /// those fields is well formed. A new deployment of the same file is refused.
    #[cfg(feature = "runtime")]
    pub(crate) fn from_stored_yaml(source: &str) -> Result<Plan, ConfigError> {
        let limits = Limits::default();
        DeploymentFile::from_yaml_with(source, &limits)?.validate_as(&limits, true)
    }

    /// Reads and validates a JSON deployment file within `limits`.
    pub fn from_json_with(source: &str, limits: &Limits) -> Result<Plan, ConfigError> {
        DeploymentFile::from_json_with(source, limits)?.validate_with(limits)
    }
}

/// Whether YAML's reader refuses `c` anywhere in a file (outside YAML's printable set), where
/// JSON allows it in strings.
fn unprintable(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{84}' | '\u{86}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}')
}

/// `source` read as JSON, and its text without a leading byte order mark, which editors on
/// Windows write: ignored, as RFC 8259 allows (serde_json refuses it) and YAML's reader does.
fn read_json(source: &str) -> Result<(&str, serde_json::Value), serde_json::Error> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    serde_json::from_str(source).map(|value| (source, value))
}

/// `source`, a JSON text, with the characters JSON allows in strings but YAML's reader refuses
/// anywhere (outside YAML's printable set: DEL, the C1 controls but NEL, U+FFFE, U+FFFF)
/// written as `\uXXXX` escapes, which both read as the same character. Outside strings they are
/// not JSON at all, which serde_json has refused by now, so every one is inside a string.
fn escape_unprintable(source: &str) -> std::borrow::Cow<'_, str> {
    if !source.contains(unprintable) {
        return source.into();
    }
    let mut escaped = String::with_capacity(source.len() + 16);
    for c in source.chars() {
        if unprintable(c) {
            write!(escaped, "\\u{:04x}", u32::from(c)).expect("writing to a String cannot fail");
        } else {
            escaped.push(c);
        }
    }
    escaped.into()
}

/// The longest key a JSON file's reader takes, written with its quotes: the fields are read as
/// YAML's are, JSON being a subset of it, and YAML limits a key written without `?` to this.
const MAX_KEY_CHARS: usize = 1024;

/// The path (in [`ConfigError::Syntax`]'s form, empty for the file itself) of the first object
/// in `value` holding a key longer, as JSON writes it, than [`MAX_KEY_CHARS`]. Refused before
/// the YAML reader, which would take the key for no key and report a value missing beside it.
/// The path is built only for such a key, on the way back out.
fn long_key(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => map.iter().find_map(|(key, value)| {
            if too_long(key) {
                return Some(String::new());
            }
            long_key(value).map(|within| match within.as_str() {
                "" => key.clone(),
                _ if within.starts_with('[') => format!("{key}{within}"),
                _ => format!("{key}.{within}"),
            })
        }),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            long_key(item).map(|within| match within.as_str() {
                "" => format!("[{i}]"),
                _ if within.starts_with('[') => format!("[{i}]{within}"),
                _ => format!("[{i}].{within}"),
            })
        }),
        _ => None,
    }
}

/// Whether `key`, written as JSON with its quotes, is longer than [`MAX_KEY_CHARS`]. JSON
/// writes a character in at most six (`\u001f`), so a short key is told without writing it.
fn too_long(key: &str) -> bool {
    6 * key.len() + 2 > MAX_KEY_CHARS
        && serde_json::Value::from(key).to_string().chars().count() > MAX_KEY_CHARS
}

fn check_size(source: &str, limits: &Limits) -> Result<(), ConfigError> {
    if source.len() > limits.max_file_bytes {
        return Err(ConfigError::TooLarge {
            what: "file size in bytes",
            limit: limits.max_file_bytes,
        });
    }
    Ok(())
}

struct Validator {
    problems: Vec<Problem>,
    /// Problems found once `problems` held [`ConfigError::MAX_LISTED_BYTES`] of text.
    unlisted: usize,
    /// What is left of that text.
    listing_left: usize,
    gates: Vec<Gate>,
    /// Each strategy checked so far, by name. A strategy is the same for every target using
    /// it but for the environment its gates belong to, so later targets copy it: checking it
    /// again for each would repeat its problems, and copy what they quote from the file, as
    /// many times as targets use it.
    checked: BTreeMap<String, Checked>,
    limits: Limits,
    /// The services whose preview URLs each webhook's templates use, found once per webhook:
    /// a webhook may be named by thousands of gates, and its templates hold thousands of
    /// variables.
    previews: BTreeMap<WebhookId, BTreeSet<String>>,
    /// The services the canary of the target being read has exposed by the gate being read:
    /// only those have preview URLs when it runs.
    exposed: BTreeSet<String>,
    /// The file's `analysis.defaultMetricProviderName`.
    default_metric_provider: Option<String>,
    /// The names of the file's `analysis.queries`, which analysis steps must name from when
    /// the file lists any.
    query_names: BTreeSet<String>,
    /// Whether the file is one a deployment was stored with, by a release that did not read
    /// the analysis fields: their problems are not reported (see
    /// [`Plan::from_stored_yaml`]).
    stored: bool,
    /// Whether problems found now go unreported: an analysis field's, in a stored file.
    muted: bool,
}

/// A strategy as a target's check built it.
struct Checked {
    strategy: Strategy,
    /// The gates it pushed.
    gates: std::ops::Range<usize>,
}

impl Validator {
    /// Lists a problem, or counts it once the list is full. `path` is written out only when
    /// listed: a hostile file can hold a hundred thousand problems whose paths each repeat a
    /// long name.
    fn problem(&mut self, path: impl fmt::Display, kind: ProblemKind) {
        if self.muted {
            return;
        }
        if self.listing_left == 0 {
            self.unlisted += 1;
            return;
        }
        let problem = Problem {
            path: path.to_string(),
            kind,
        };
        let mut shown = Counted(0);
        let _ = write!(shown, "{problem}");
        self.listing_left = self.listing_left.saturating_sub(shown.0);
        self.problems.push(problem);
    }

    fn plan(&mut self, file: &DeploymentFile) -> Plan {
        if file.application.trim().is_empty() {
            self.problem(
                "application",
                ProblemKind::Missing {
                    what: "an application name",
                },
            );
        } else if file.application.contains(invisible) {
            self.problem(
                "application",
                ProblemKind::ControlCharacter {
                    what: "the application name",
                },
            );
        } else if file.application.len() > Limits::MAX_APPLICATION_BYTES {
            self.problem(
                "application",
                ProblemKind::TooLong {
                    what: "the application name",
                    bytes: file.application.len(),
                    max: Limits::MAX_APPLICATION_BYTES,
                },
            );
        }
        // A target's name is its environment's, written into calls as the application's is
        // (`{{armory.environmentName}}`, in headers too), stored and logged.
        for name in file.targets.keys() {
            if name.trim().is_empty() {
                self.problem(
                    "targets",
                    ProblemKind::Missing {
                        what: "a target name",
                    },
                );
            } else if name.contains(invisible) {
                self.problem(
                    format_args!("targets.{}", name.escape_debug()),
                    ProblemKind::ControlCharacter {
                        what: "a target name",
                    },
                );
            }
        }
        // A strategy's name is in the paths of its gates, which are stored, logged and shown.
        self.added_check(|v| {
            for name in file
                .strategies
                .keys()
                .filter(|name| name.contains(invisible))
            {
                v.problem(
                    format_args!("strategies.{}", name.escape_debug()),
                    ProblemKind::ControlCharacter {
                        what: "a strategy name",
                    },
                );
            }
        });
        if file.targets.is_empty() {
            self.problem(
                "targets",
                ProblemKind::Missing {
                    what: "at least one target",
                },
            );
        }
        let config = file.deployment_config.clone().unwrap_or_default();
        let step_timeout = config.timeout.as_ref().and_then(|d| {
            self.wait(
                d,
                "deploymentConfig.timeout",
                Some(ProblemKind::ZeroStepTimeout),
            )
        });
        let if_in_progress = match config.if_deployment_in_progress.as_ref() {
            None => InProgressPolicy::default(),
            Some(p) => match p.strategy.as_str() {
                "reject" => InProgressPolicy::Reject,
                "enqueueOne" => InProgressPolicy::EnqueueOne,
                other => {
                    self.problem(
                        "deploymentConfig.ifDeploymentInProgress.strategy",
                        ProblemKind::UnknownValue {
                            value: other.to_owned(),
                            expected: "reject or enqueueOne",
                        },
                    );
                    InProgressPolicy::default()
                }
            },
        };
        let max_targets = self.limits.max_targets.min(limits::HARD_MAX_INDEX);
        let max_webhooks = self.limits.max_webhooks.min(limits::HARD_MAX_INDEX);
        if file.targets.len() > max_targets || file.webhooks.len() > max_webhooks {
            let (path, value, max) = if file.targets.len() > max_targets {
                ("targets", file.targets.len(), max_targets)
            } else {
                ("webhooks", file.webhooks.len(), max_webhooks)
            };
            self.problem(
                path,
                ProblemKind::OutOfRange {
                    value: value as i64,
                    min: 0,
                    max: max as i64,
                },
            );
            return Plan::empty(file.application.clone());
        }
        let size = PlanSize::of(file);
        if size.gates > self.limits.max_gates {
            self.problem(
                "targets",
                ProblemKind::TooLarge {
                    what: "gates over all targets",
                    limit: self.limits.max_gates,
                },
            );
            return Plan::empty(file.application.clone());
        }
        let plan_limit = self
            .limits
            .max_file_bytes
            .saturating_mul(PLAN_BYTES_PER_FILE_BYTE);
        if size.bytes > plan_limit {
            self.problem(
                "targets",
                ProblemKind::TooLarge {
                    what: "bytes of plan built from the file (a strategy, context or long name \
                           repeated for many targets)",
                    limit: plan_limit,
                },
            );
            return Plan::empty(file.application.clone());
        }
        let webhooks = self.webhooks(&file.webhooks);
        let analysis_queries = self.added_check(|v| v.analysis_queries(file.analysis.as_ref()));
        let hooks = WebhookNames::new(&webhooks);
        let order = self.dependency_order(&file.targets);
        let ids: BTreeMap<&str, EnvId> = order
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, EnvId(i as u16)))
            .collect();
        let environments = order
            .iter()
            .map(|name| {
                let target = &file.targets[*name];
                self.environment(name, target, &ids, file, &hooks)
            })
            .collect();
        self.unused_strategies(file, &hooks);
        Plan {
            application: file.application.clone(),
            context: strings(&file.context),
            step_timeout,
            if_in_progress,
            environments,
            webhooks,
            gates: std::mem::take(&mut self.gates),
            analysis_queries,
            ignored: file.ignored.clone(),
            near_misses: file.near_misses.clone(),
        }
    }

    /// Checks the file's `analysis` section and returns its queries; notes its default
    /// provider and its query names for the analysis steps.
    fn analysis_queries(&mut self, config: Option<&AnalysisConfig>) -> Vec<AnalysisQuery> {
        let Some(config) = config else {
            return Vec::new();
        };
        if let Some(provider) = &config.default_metric_provider_name {
            self.not_blank(
                provider,
                "analysis.defaultMetricProviderName",
                "a metrics provider name",
            );
            self.default_metric_provider = Some(provider.clone());
        }
        for (i, q) in config.queries.iter().enumerate() {
            let path = format!("analysis.queries[{i}]");
            if q.name.trim().is_empty() {
                self.problem(
                    format_args!("{path}.name"),
                    ProblemKind::Missing {
                        what: "a query name",
                    },
                );
            } else if !self.query_names.insert(q.name.clone()) {
                self.problem(
                    format_args!("{path}.name"),
                    ProblemKind::DuplicateQuery {
                        name: q.name.clone(),
                    },
                );
            }
            if q.query_template.trim().is_empty() {
                self.problem(
                    format_args!("{path}.queryTemplate"),
                    ProblemKind::Missing {
                        what: "a query template",
                    },
                );
            }
            for (limit, field) in [(q.lower_limit, "lowerLimit"), (q.upper_limit, "upperLimit")] {
                if limit.is_some_and(|l| !l.is_finite()) {
                    self.problem(
                        format_args!("{path}.{field}"),
                        ProblemKind::InvalidAnalysis {
                            message: "a limit must be a finite number",
                        },
                    );
                }
            }
            if let (Some(lower), Some(upper)) = (q.lower_limit, q.upper_limit)
                && lower > upper
            {
                self.problem(
                    path,
                    ProblemKind::InvalidAnalysis {
                        message: "lowerLimit is above upperLimit, so no result could pass",
                    },
                );
            }
        }
        config.queries.clone()
    }

    /// `check`, with its problems unreported in a stored file (see [`Plan::from_stored_yaml`]):
    /// the checks releases before them did not make (the analysis fields', strategy names').
    fn added_check<T>(&mut self, check: impl FnOnce(&mut Self) -> T) -> T {
        self.muted = self.stored;
        let checked = check(self);
        self.muted = false;
        checked
    }

    /// Checks the names of analysis step `a`'s queries, at `path`, against the file's section,
    /// and returns the rest beyond its modes: its provider, its judgment runs' interval and
    /// their number.
    fn judgment(
        &mut self,
        a: &file::Analysis,
        path: &str,
    ) -> (Option<String>, Option<Duration>, Option<u32>) {
        if !self.query_names.is_empty() {
            for (i, query) in a.queries.iter().enumerate() {
                if !self.query_names.contains(query) {
                    self.problem(
                        format_args!("{path}.queries[{i}]"),
                        ProblemKind::UnknownQuery {
                            name: query.clone(),
                        },
                    );
                }
            }
        }
        let provider = match &a.metric_provider_name {
            Some(name) => {
                let at = format!("{path}.metricProviderName");
                self.not_blank(name, &at, "a metrics provider name");
                Some(name.clone())
            }
            None => self.default_metric_provider.clone(),
        };
        let interval = match (a.interval, &a.units) {
            (None, None) => None,
            (Some(interval), Some(units)) => {
                let spec = DurationSpec {
                    duration: interval,
                    unit: units.clone(),
                };
                let zero = ProblemKind::InvalidAnalysis {
                    message: "an interval of zero judges nothing: give at least 1 second",
                };
                self.wait_in(&spec, path, ("interval", "units"), Some(zero))
            }
            (Some(_), None) | (None, Some(_)) => {
                self.problem(
                    path,
                    ProblemKind::InvalidAnalysis {
                        message: "interval and units go together: give both or neither",
                    },
                );
                None
            }
        };
        let runs = a.number_of_judgment_runs.and_then(|runs| {
            let fits = u32::try_from(runs).ok().filter(|&r| r >= 1);
            if fits.is_none() {
                self.problem(
                    format_args!("{path}.numberOfJudgmentRuns"),
                    ProblemKind::OutOfRange {
                        value: runs,
                        min: 1,
                        max: i64::from(u32::MAX),
                    },
                );
            }
            fits
        });
        (provider, interval, runs)
    }

    fn webhooks(&mut self, raw: &[file::Webhook]) -> Vec<Webhook> {
        let mut seen = BTreeSet::new();
        raw.iter()
            .enumerate()
            .map(|(i, w)| {
                let path = format!("webhooks[{i}]");
                if w.name.trim().is_empty() {
                    self.problem(
                        format_args!("{path}.name"),
                        ProblemKind::Missing {
                            what: "a webhook name",
                        },
                    );
                } else if w.name.contains(invisible) {
                    // It is logged and written into gate failures as a target's name is.
                    self.problem(
                        format_args!("{path}.name"),
                        ProblemKind::ControlCharacter {
                            what: "a webhook name",
                        },
                    );
                } else if !seen.insert(w.name.as_str()) {
                    self.problem(
                        format_args!("{path}.name"),
                        ProblemKind::DuplicateWebhook {
                            name: w.name.clone(),
                        },
                    );
                }
                self.webhook(w, &path)
            })
            .collect()
    }

    fn webhook(&mut self, w: &file::Webhook, path: &str) -> Webhook {
        let method = match w.method.as_deref() {
            None => "POST".to_owned(),
            Some(m) => {
                let upper = m.to_ascii_uppercase();
                if http::Method::from_bytes(upper.as_bytes()).is_err() || upper.is_empty() {
                    self.problem(
                        format_args!("{path}.method"),
                        ProblemKind::InvalidMethod {
                            method: m.to_owned(),
                        },
                    );
                } else if upper == "CONNECT" {
                    self.problem(
                        format_args!("{path}.method"),
                        ProblemKind::TunnelMethod {
                            method: m.to_owned(),
                        },
                    );
                }
                upper
            }
        };
        let problems = self.problems.len();
        let uri = self.template(&w.uri_template, format!("{path}.uriTemplate"));
        // A template refused already stands in as the empty one, which says nothing of the URL.
        if self.problems.len() == problems
            && let Some(reason) = never_a_url(&uri)
        {
            self.problem(
                format_args!("{path}.uriTemplate"),
                ProblemKind::InvalidUriTemplate { reason },
            );
        }
        let max_headers = self.limits.max_headers.min(limits::HARD_MAX_HEADERS);
        if w.headers.len() > max_headers {
            self.problem(
                format_args!("{path}.headers"),
                ProblemKind::OutOfRange {
                    value: i64::try_from(w.headers.len()).unwrap_or(i64::MAX),
                    min: 0,
                    max: max_headers as i64,
                },
            );
        }
        let headers: Vec<(String, Template)> = w
            .headers
            .iter()
            .take(max_headers)
            .enumerate()
            .map(|(j, h)| {
                match http::HeaderName::from_bytes(h.key.as_bytes()) {
                    Err(_) => self.problem(
                        format_args!("{path}.headers[{j}].key"),
                        ProblemKind::InvalidHeaderName {
                            name: h.key.clone(),
                        },
                    ),
                    Ok(name) if crate::template::is_reserved_header(&name) => self.problem(
                        format_args!("{path}.headers[{j}].key"),
                        ProblemKind::ReservedHeader {
                            name: h.key.clone(),
                        },
                    ),
                    Ok(_) => {}
                }
                let value = self.template(&h.value, format!("{path}.headers[{j}].value"));
                // Text the file writes that no header value may carry (a control character but
                // a tab, DEL) would fail every call; a value inserted is checked as it renders.
                if value.segments().iter().any(|segment| {
                    matches!(segment, Segment::Literal(text)
                        if http::HeaderValue::from_bytes(text.as_bytes()).is_err())
                }) {
                    self.problem(
                        format_args!("{path}.headers[{j}].value"),
                        ProblemKind::ControlCharacter {
                            what: "a header value (tabs aside)",
                        },
                    );
                }
                (h.key.clone(), value)
            })
            .collect();
        let body = w
            .body_template
            .as_ref()
            .and_then(|b| b.inline.as_ref())
            .map(|inline| self.template(inline, format!("{path}.bodyTemplate.inline")));
        let network = match w.network_mode.as_deref() {
            None | Some("direct") => {
                if w.agent_identifier.is_some() {
                    self.problem(
                        format_args!("{path}.agentIdentifier"),
                        ProblemKind::AgentWithDirectMode,
                    );
                }
                NetworkMode::Direct
            }
            Some("remoteNetworkAgent") => {
                if w.agent_identifier.as_deref() == Some("") {
                    self.problem(
                        format_args!("{path}.agentIdentifier"),
                        ProblemKind::NoAgent {
                            webhook: w.name.clone(),
                            target: None,
                        },
                    );
                }
                NetworkMode::RemoteAgent {
                    agent: w.agent_identifier.clone(),
                }
            }
            Some(other) => {
                self.problem(
                    format_args!("{path}.networkMode"),
                    ProblemKind::UnknownValue {
                        value: other.to_owned(),
                        expected: "direct or remoteNetworkAgent",
                    },
                );
                NetworkMode::Direct
            }
        };
        let retry_count = match w.retry_count {
            None => 0,
            Some(n) if (0..=MAX_RETRY_COUNT).contains(&n) => n as u32,
            Some(n) => {
                self.problem(
                    format_args!("{path}.retryCount"),
                    ProblemKind::OutOfRange {
                        value: n,
                        min: 0,
                        max: MAX_RETRY_COUNT,
                    },
                );
                0
            }
        };
        let mut request = RequestTemplate::new(uri).with_method(method);
        for (name, value) in headers {
            request = request.with_header(name, value);
        }
        if let Some(body) = body {
            request = request.with_body(body);
        }
        Webhook {
            name: w.name.clone(),
            request,
            network,
            retry_count,
            disable_callback: w.disable_callback.unwrap_or(false),
            callback_timeout: w.callback_timeout.as_ref().and_then(|d| {
                // Unused by a webhook that takes no callbacks.
                let zero =
                    (!w.disable_callback.unwrap_or(false)).then_some(ProblemKind::ZeroWait {
                        what: "callbackTimeout",
                    });
                self.wait(d, &format!("{path}.callbackTimeout"), zero)
            }),
            request_timeout: w.request_timeout.as_ref().and_then(|d| {
                let zero = Some(ProblemKind::ZeroRequestTimeout);
                self.wait(d, &format!("{path}.requestTimeout"), zero)
            }),
            retryable_status_codes: w
                .retryable_status_codes
                .as_ref()
                .map(|codes| self.retryable_statuses(codes, path)),
        }
    }

    /// `retryableStatusCodes`, sorted. A status listed twice is refused rather than merged: the
    /// list is short and written by hand, so a repeat is more likely a slip for a neighbouring
    /// status (`[502, 502]` for `[502, 503]`) than meant, and a slip here is otherwise silent.
    fn retryable_statuses(&mut self, codes: &[i64], path: &str) -> Vec<u16> {
        let mut kept = BTreeSet::new();
        for (j, &code) in codes.iter().enumerate() {
            let at = || format!("{path}.retryableStatusCodes[{j}]");
            if !STATUS_CODES.contains(&code) {
                self.problem(
                    at(),
                    ProblemKind::OutOfRange {
                        value: code,
                        min: *STATUS_CODES.start(),
                        max: *STATUS_CODES.end(),
                    },
                );
                continue;
            }
            let status = code as u16;
            if (200..300).contains(&status) {
                self.problem(at(), ProblemKind::SuccessStatusRetryable { status });
            } else if !kept.insert(status) {
                self.problem(at(), ProblemKind::DuplicateStatus { status });
            }
        }
        kept.into_iter().collect()
    }

    fn template(&mut self, source: &str, path: String) -> Template {
        if source.len() > self.limits.max_template_bytes {
            self.problem(
                path,
                ProblemKind::TooLarge {
                    what: "template bytes",
                    limit: self.limits.max_template_bytes,
                },
            );
            return Template::parse("")
                .unwrap_or_else(|_| unreachable!("the empty template parses"));
        }
        Template::parse(source).unwrap_or_else(|e| {
            self.problem(path, ProblemKind::Template(e));
            Template::parse("").unwrap_or_else(|_| unreachable!("the empty template parses"))
        })
    }

    /// Orders targets so that dependencies come first (Kahn's algorithm: linear in targets plus
    /// edges), reporting unknown names and one cycle per strongly connected tangle.
    fn dependency_order<'f>(
        &mut self,
        targets: &'f BTreeMap<String, file::Target>,
    ) -> Vec<&'f str> {
        let names: Vec<&str> = targets.keys().map(String::as_str).collect();
        let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        // The last target each was found a dependency of: a name listed twice (as an alias of
        // a long list can make it) is seen in constant time, not by a look along the list.
        let mut last_dependent = vec![usize::MAX; names.len()];
        for (i, (name, target)) in targets.iter().enumerate() {
            let Some(constraints) = &target.constraints else {
                continue;
            };
            for (j, dep) in constraints.depends_on.iter().enumerate() {
                match index.get(dep.as_str()) {
                    Some(&d) if last_dependent[d] != i => {
                        last_dependent[d] = i;
                        deps[i].push(d);
                        dependents[d].push(i);
                    }
                    Some(_) => {}
                    None => self.problem(
                        format_args!("targets.{name}.constraints.dependsOn[{j}]"),
                        ProblemKind::UnknownTarget { name: dep.clone() },
                    ),
                }
            }
        }
        let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut ready: std::collections::BTreeSet<usize> =
            (0..names.len()).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(names.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &d in &dependents[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        if order.len() < names.len() {
            self.report_cycles(&names, &deps, &waiting);
            let placed: BTreeSet<usize> = order.iter().copied().collect();
            order.extend((0..names.len()).filter(|i| !placed.contains(i)));
        }
        order.into_iter().map(|i| names[i]).collect()
    }

    /// Reports one cycle in each tangle of targets that depend on one another (a strongly
    /// connected component of the unmet dependencies): every target left waiting lies in one
    /// or depends on one. One per tangle, not every cycle in it: a few hundred targets can hold
    /// more cycles than memory, and naming one is enough to untangle it.
    fn report_cycles(&mut self, names: &[&str], deps: &[Vec<usize>], waiting: &[usize]) {
        let mut unmet = petgraph::Graph::<(), ()>::with_capacity(names.len(), 0);
        let nodes: Vec<_> = names.iter().map(|_| unmet.add_node(())).collect();
        for (from, to) in deps
            .iter()
            .enumerate()
            .filter(|&(from, _)| waiting[from] > 0)
        {
            for &to in to.iter().filter(|&&to| waiting[to] > 0) {
                unmet.add_edge(nodes[from], nodes[to], ());
            }
        }
        // Kosaraju's walk keeps its own stack, where Tarjan's recursion took a frame per target
        // of a cycle: 4,500 overflowed a 2 MiB thread in a debug build, within the limits.
        let mut tangles: Vec<Vec<usize>> = petgraph::algo::kosaraju_scc(&unmet)
            .into_iter()
            .map(|component| {
                let mut members: Vec<usize> = component.iter().map(|n| n.index()).collect();
                members.sort_unstable();
                members
            })
            .filter(|members| members.len() > 1 || deps[members[0]].contains(&members[0]))
            .collect();
        tangles.sort_unstable();
        for tangle in tangles {
            // Within a tangle every target has a dependency in it: walking those from its
            // first target must come back to one already walked.
            let mut walk = vec![tangle[0]];
            let mut position = BTreeMap::from([(tangle[0], 0usize)]);
            let cycle_start = loop {
                let at = walk[walk.len() - 1];
                let Some(&next) = deps[at].iter().find(|d| tangle.binary_search(d).is_ok()) else {
                    break None;
                };
                if let Some(&p) = position.get(&next) {
                    break Some(p);
                }
                position.insert(next, walk.len());
                walk.push(next);
            };
            let Some(p) = cycle_start else { continue };
            let on_cycle = &walk[p..];
            let mut cycle: Vec<String> = on_cycle.iter().map(|&n| names[n].to_owned()).collect();
            cycle.push(names[on_cycle[0]].to_owned());
            self.problem(
                format_args!("targets.{}.constraints.dependsOn", names[on_cycle[0]]),
                ProblemKind::DependencyCycle { cycle },
            );
        }
    }

    fn environment(
        &mut self,
        name: &str,
        target: &file::Target,
        ids: &BTreeMap<&str, EnvId>,
        file: &DeploymentFile,
        hooks: &WebhookNames<'_>,
    ) -> Environment {
        let env = ids[name];
        let first_gate = self.gates.len();
        let path = format!("targets.{name}");
        let constraints = target.constraints.clone().unwrap_or_default();
        let mut depends_on: Vec<EnvId> = constraints
            .depends_on
            .iter()
            .filter_map(|d| ids.get(d.as_str()).copied())
            .collect();
        depends_on.sort();
        depends_on.dedup();
        self.exposed.clear();
        let before = self.constraint_list(
            env,
            Stage::BeforeDeployment,
            &constraints.before_deployment,
            &format!("{path}.constraints.beforeDeployment"),
            hooks,
        );
        let strategy = match target.strategy.as_deref() {
            None => Strategy::Direct,
            Some(s) => match file.strategies.get(s) {
                None => {
                    self.problem(
                        format_args!("{path}.strategy"),
                        ProblemKind::UnknownStrategy { name: s.to_owned() },
                    );
                    Strategy::Direct
                }
                Some(raw) => self.used_strategy(env, s, raw, hooks),
            },
        };
        let after = self.constraint_list(
            env,
            Stage::AfterDeployment,
            &constraints.after_deployment,
            &format!("{path}.constraints.afterDeployment"),
            hooks,
        );
        if target.account.as_deref().is_none_or(str::is_empty) {
            self.agentless_calls(name, first_gate, hooks);
        }
        Environment {
            name: name.to_owned(),
            account: target.account.clone(),
            namespace: target.namespace.clone(),
            depends_on,
            before,
            strategy,
            after,
        }
    }

    /// Problems for the gates from `first` on, of a target with no account, that call a webhook
    /// through a remote network agent with no `agentIdentifier`: the agent defaults to the
    /// target's account (PROTOCOL.md §2), so there is none to call through. Looked at after the
    /// target's gates are built, as a strategy's are built once for every target using it.
    fn agentless_calls(&mut self, target: &str, first: usize, hooks: &WebhookNames<'_>) {
        for i in first..self.gates.len() {
            let GateKind::Webhook { webhook, .. } = self.gates[i].kind else {
                continue;
            };
            let Some(w) = hooks.get(webhook) else {
                continue;
            };
            if matches!(w.network, NetworkMode::RemoteAgent { agent: None }) {
                let path = format!("{}.runWebhook.name", self.gates[i].path);
                let kind = ProblemKind::NoAgent {
                    webhook: w.name.clone(),
                    target: Some(target.to_owned()),
                };
                self.problem(path, kind);
            }
        }
    }

    /// `raw`, the strategy `name`, for the target of `env`: checked and built by the first
    /// target using it, copied for the others (see [`Validator::checked`]).
    fn used_strategy(
        &mut self,
        env: EnvId,
        name: &str,
        raw: &file::Strategy,
        hooks: &WebhookNames<'_>,
    ) -> Strategy {
        if let Some(checked) = self.checked.get(name) {
            let first = self.gates.len();
            self.gates.extend_from_within(checked.gates.clone());
            for gate in &mut self.gates[first..] {
                gate.env = env;
            }
            // What its canary exposes, for the checks of `afterDeployment` that follow.
            if let Strategy::Canary { steps, .. } = &checked.strategy {
                let exposed = steps.iter().flat_map(|step| match step {
                    CanaryStep::ExposeServices { services, .. } => services.as_slice(),
                    _ => &[],
                });
                self.exposed.extend(exposed.cloned());
            }
            // Gate ids are positions in `gates`, which `max_gates` keeps within u32.
            let by = (first - checked.gates.start) as u32;
            return shifted(&checked.strategy, by);
        }
        let first = self.gates.len();
        let strategy = self.strategy(env, name, raw, hooks);
        let checked = Checked {
            strategy: strategy.clone(),
            gates: first..self.gates.len(),
        };
        self.checked.insert(name.to_owned(), checked);
        strategy
    }

    /// Checks the strategies no target uses, as a file with a broken one is still wrong; their
    /// gates are not part of the plan.
    fn unused_strategies(&mut self, file: &DeploymentFile, hooks: &WebhookNames<'_>) {
        let used: BTreeSet<&str> = file
            .targets
            .values()
            .filter_map(|t| t.strategy.as_deref())
            .collect();
        for (name, raw) in &file.strategies {
            if !used.contains(name.as_str()) {
                self.exposed.clear();
                let kept = self.gates.len();
                self.strategy(EnvId(0), name, raw, hooks);
                self.gates.truncate(kept);
            }
        }
    }

    fn strategy(
        &mut self,
        env: EnvId,
        name: &str,
        raw: &file::Strategy,
        hooks: &WebhookNames<'_>,
    ) -> Strategy {
        let path = format!("strategies.{name}");
        match (&raw.canary, &raw.blue_green) {
            (Some(canary), None) if canary.steps.len() > limits::HARD_MAX_INDEX => {
                self.problem(
                    format_args!("{path}.canary.steps"),
                    ProblemKind::TooLarge {
                        what: "steps in one canary",
                        limit: limits::HARD_MAX_INDEX,
                    },
                );
                Strategy::Direct
            }
            (Some(canary), None) => {
                let steps = canary
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, step)| {
                        let step_path = format!("{path}.canary.steps[{i}]");
                        self.canary_step(env, i, step, &step_path, hooks)
                    })
                    .collect();
                Strategy::Canary {
                    name: name.to_owned(),
                    steps,
                }
            }
            (None, Some(bg)) => {
                let active_service = bg.active_service.clone().unwrap_or_default();
                // An empty one would ask the host to move traffic to a service with no name.
                if active_service.trim().is_empty() {
                    self.problem(
                        format_args!("{path}.blueGreen.activeService"),
                        ProblemKind::Missing {
                            what: "activeService",
                        },
                    );
                }
                if bg
                    .preview_service
                    .as_deref()
                    .is_some_and(|p| p.trim().is_empty())
                {
                    self.problem(
                        format_args!("{path}.blueGreen.previewService"),
                        ProblemKind::Missing {
                            what: "previewService (or leave it out)",
                        },
                    );
                }
                let redirect_after = self.constraint_list(
                    env,
                    Stage::RedirectTrafficAfter,
                    &bg.redirect_traffic_after,
                    &format!("{path}.blueGreen.redirectTrafficAfter"),
                    hooks,
                );
                let shutdown_after = self.constraint_list(
                    env,
                    Stage::ShutDownOldVersionAfter,
                    &bg.shut_down_old_version_after,
                    &format!("{path}.blueGreen.shutDownOldVersionAfter"),
                    hooks,
                );
                Strategy::BlueGreen {
                    name: name.to_owned(),
                    active_service,
                    preview_service: bg.preview_service.clone(),
                    redirect_after,
                    shutdown_after,
                }
            }
            _ => {
                self.problem(path, ProblemKind::StrategyKind);
                Strategy::Direct
            }
        }
    }

    fn canary_step(
        &mut self,
        env: EnvId,
        index: usize,
        step: &file::CanaryStep,
        path: &str,
        hooks: &WebhookNames<'_>,
    ) -> CanaryStep {
        let stage = Stage::Strategy(index as u16);
        let gate = |v: &mut Self, c: Constraint| {
            let kind = v.gate_kind(stage, &c, path, hooks);
            CanaryStep::Gate(v.push_gate(env, stage, kind, path))
        };
        match step {
            file::CanaryStep::SetWeight(w) => {
                if !(0..=100).contains(&w.weight) {
                    self.problem(
                        format_args!("{path}.setWeight.weight"),
                        ProblemKind::WeightOutOfRange { weight: w.weight },
                    );
                }
                CanaryStep::SetWeight(w.weight.clamp(0, 100) as u8)
            }
            file::CanaryStep::ExposeServices(e) => CanaryStep::ExposeServices {
                services: {
                    // The host would be asked to expose a service with no name.
                    let at = format!("{path}.exposeServices.services");
                    self.no_blank(&e.services, &at, "a service name");
                    self.exposed.extend(e.services.iter().cloned());
                    e.services.clone()
                },
                ttl: e
                    .ttl
                    .as_ref()
                    .and_then(|d| self.duration(d, &format!("{path}.exposeServices.ttl"))),
            },
            file::CanaryStep::Pause(p) => gate(self, Constraint::Pause(p.clone())),
            file::CanaryStep::RunWebhook(r) => gate(self, Constraint::RunWebhook(r.clone())),
            file::CanaryStep::Analysis(a) => gate(self, Constraint::Analysis(a.clone())),
        }
    }

    fn constraint_list(
        &mut self,
        env: EnvId,
        stage: Stage,
        list: &[Constraint],
        path: &str,
        hooks: &WebhookNames<'_>,
    ) -> Vec<GateId> {
        list.iter()
            .enumerate()
            .map(|(i, c)| {
                let entry = format!("{path}[{i}]");
                let kind = self.gate_kind(stage, c, &entry, hooks);
                self.push_gate(env, stage, kind, &entry)
            })
            .collect()
    }

    fn push_gate(&mut self, env: EnvId, stage: Stage, kind: GateKind, path: &str) -> GateId {
        let id = GateId(self.gates.len() as u32);
        self.gates.push(Gate {
            env,
            stage,
            kind,
            path: path.to_owned(),
        });
        id
    }

    fn gate_kind(
        &mut self,
        stage: Stage,
        c: &Constraint,
        path: &str,
        hooks: &WebhookNames<'_>,
    ) -> GateKind {
        match c {
            Constraint::Pause(p) => self.pause(p, &format!("{path}.pause")),
            Constraint::RunWebhook(r) => {
                let name_path = format!("{path}.runWebhook.name");
                let webhook = match hooks.find(&r.name) {
                    Some((id, w)) => {
                        self.check_previews(stage, id, w, &name_path);
                        id
                    }
                    None => {
                        self.problem(
                            name_path,
                            ProblemKind::UnknownWebhook {
                                name: r.name.clone(),
                            },
                        );
                        UNKNOWN_WEBHOOK
                    }
                };
                GateKind::Webhook {
                    webhook,
                    context: strings(&r.context),
                }
            }
            Constraint::Analysis(a) => {
                if stage == Stage::BeforeDeployment {
                    self.problem(
                        format_args!("{path}.analysis"),
                        ProblemKind::AnalysisBeforeDeployment,
                    );
                }
                let roll_back_mode = match a.roll_back_mode.as_deref() {
                    None | Some("automatic") => RollBackMode::Automatic,
                    Some("manual") => RollBackMode::Manual,
                    Some(other) => {
                        self.problem(
                            format_args!("{path}.analysis.rollBackMode"),
                            ProblemKind::UnknownValue {
                                value: other.to_owned(),
                                expected: "automatic or manual",
                            },
                        );
                        RollBackMode::Automatic
                    }
                };
                match a.roll_forward_mode.as_deref() {
                    None | Some("automatic") => {}
                    Some("manual") => self.problem(
                        format_args!("{path}.analysis.rollForwardMode"),
                        ProblemKind::ManualRollForward,
                    ),
                    Some(other) => self.problem(
                        format_args!("{path}.analysis.rollForwardMode"),
                        ProblemKind::UnknownValue {
                            value: other.to_owned(),
                            expected: "automatic (manual is not supported)",
                        },
                    ),
                }
                let at = format!("{path}.analysis");
                let (metric_provider_name, interval, judgment_runs) =
                    self.added_check(|v| v.judgment(a, &at));
                GateKind::Analysis(AnalysisSpec {
                    queries: a.queries.clone(),
                    roll_back_mode,
                    context: strings(&a.context),
                    metric_provider_name,
                    interval,
                    judgment_runs,
                })
            }
        }
    }

    /// Checks that every preview URL the webhook uses has been exposed where a gate of
    /// `stage` calls it: the render would fail otherwise, every time, failing or rolling back
    /// the environment.
    fn check_previews(&mut self, stage: Stage, id: WebhookId, w: &Webhook, path: &str) {
        let services = self.previews.entry(id).or_insert_with(|| {
            let r = &w.request;
            std::iter::once(r.uri())
                .chain(r.headers().iter().map(|(_, t)| t))
                .chain(r.body())
                .flat_map(Template::variables)
                .filter_map(|v| match v {
                    Variable::Armory(ArmoryVar::Preview(service)) => Some(service.clone()),
                    _ => None,
                })
                .collect()
        });
        let Some(missing) = services.iter().find(|s| !self.exposed.contains(*s)) else {
            return;
        };
        let variable = Variable::Armory(ArmoryVar::Preview(missing.clone())).to_string();
        let webhook = w.name.clone();
        let kind = if stage == Stage::BeforeDeployment {
            ProblemKind::PreviewBeforeDeployment { webhook, variable }
        } else {
            ProblemKind::PreviewNotExposed { webhook, variable }
        };
        self.problem(path, kind);
    }

    fn pause(&mut self, p: &file::Pause, path: &str) -> GateKind {
        let fixed = p.duration.is_some() || p.unit.is_some();
        let approval = p.until_approved == Some(true);
        match (fixed, approval) {
            (true, true) => {
                self.problem(
                    path,
                    ProblemKind::InvalidPause {
                        message: "a pause is either a fixed duration or untilApproved, not both",
                    },
                );
                GateKind::Pause(Duration::ZERO)
            }
            (false, false) => {
                self.problem(
                    path,
                    ProblemKind::InvalidPause {
                        message: "a pause needs duration and unit, or untilApproved: true",
                    },
                );
                GateKind::Pause(Duration::ZERO)
            }
            (true, false) => {
                if !p.requires_roles.is_empty() || p.approval_expiration.is_some() {
                    self.problem(
                        path,
                        ProblemKind::InvalidPause {
                            message: "requiresRoles and approvalExpiration need untilApproved: true",
                        },
                    );
                }
                let spec = match (&p.duration, &p.unit) {
                    (Some(duration), Some(unit)) => DurationSpec {
                        duration: *duration,
                        unit: unit.clone(),
                    },
                    _ => {
                        self.problem(
                            path,
                            ProblemKind::InvalidPause {
                                message: "a fixed pause needs both duration and unit",
                            },
                        );
                        return GateKind::Pause(Duration::ZERO);
                    }
                };
                GateKind::Pause(self.duration(&spec, path).unwrap_or_default())
            }
            (false, true) => GateKind::Approval {
                roles: {
                    // A blank role is one no decider holds, or a slip for a missing entry.
                    let at = format!("{path}.requiresRoles");
                    self.no_blank(&p.requires_roles, &at, "a role name");
                    p.requires_roles.clone()
                },
                expiration: p.approval_expiration.as_ref().and_then(|d| {
                    let zero = Some(ProblemKind::ZeroWait {
                        what: "approvalExpiration",
                    });
                    self.wait(d, &format!("{path}.approvalExpiration"), zero)
                }),
            },
        }
    }

    /// The duration `spec` at `path`, where a length of zero is the problem `zero`, if any,
    /// reported at its `duration`: a wait that would fail as soon as it began.
    fn wait(
        &mut self,
        spec: &DurationSpec,
        path: &str,
        zero: Option<ProblemKind>,
    ) -> Option<Duration> {
        self.wait_in(spec, path, DURATION_FIELDS, zero)
    }

    /// [`Validator::wait`] of a duration whose fields are named `fields`, as
    /// [`Validator::duration_in`] reads one.
    fn wait_in(
        &mut self,
        spec: &DurationSpec,
        path: &str,
        fields: (&str, &str),
        zero: Option<ProblemKind>,
    ) -> Option<Duration> {
        let length = self.duration_in(spec, path, fields)?;
        if let Some(kind) = zero.filter(|_| length.is_zero()) {
            self.problem(format_args!("{path}.{}", fields.0), kind);
        }
        Some(length)
    }

    /// Reports `name` at `path` as `what` missing if it is blank.
    fn not_blank(&mut self, name: &str, path: &str, what: &'static str) {
        if name.trim().is_empty() {
            self.problem(path, ProblemKind::Missing { what });
        }
    }

    /// Reports each blank entry of the list `names` at `path`, as `what` missing.
    fn no_blank(&mut self, names: &[String], path: &str, what: &'static str) {
        for (i, name) in names.iter().enumerate() {
            if name.trim().is_empty() {
                self.problem(format_args!("{path}[{i}]"), ProblemKind::Missing { what });
            }
        }
    }

    fn duration(&mut self, spec: &DurationSpec, path: &str) -> Option<Duration> {
        self.duration_in(spec, path, DURATION_FIELDS)
    }

    /// [`Validator::duration`] of a duration whose two fields are named `fields` (length, unit)
    /// rather than `duration` and `unit`, as an analysis's `interval` and `units` are.
    fn duration_in(
        &mut self,
        spec: &DurationSpec,
        path: &str,
        (length, unit): (&str, &str),
    ) -> Option<Duration> {
        let unit_seconds = match spec.unit.to_ascii_lowercase().as_str() {
            "seconds" | "second" => Some(1),
            "minutes" | "minute" => Some(60),
            "hours" | "hour" => Some(3600),
            _ => {
                self.problem(
                    format_args!("{path}.{unit}"),
                    ProblemKind::UnknownUnit {
                        unit: spec.unit.clone(),
                    },
                );
                None
            }
        };
        if spec.duration < 0 {
            self.problem(
                format_args!("{path}.{length}"),
                ProblemKind::NegativeDuration {
                    duration: spec.duration,
                },
            );
            return None;
        }
        let unit_seconds = unit_seconds?;
        let max = u64::from(MAX_DURATION_DAYS) * 86_400;
        match (spec.duration as u64).checked_mul(unit_seconds) {
            Some(secs) if secs <= max => Some(Duration::from_secs(secs)),
            _ => {
                self.problem(
                    format_args!("{path}.{length}"),
                    ProblemKind::DurationTooLong {
                        max_days: MAX_DURATION_DAYS,
                    },
                );
                None
            }
        }
    }
}

struct WebhookNames<'a> {
    all: &'a [Webhook],
    by_name: BTreeMap<&'a str, (WebhookId, &'a Webhook)>,
}

impl<'a> WebhookNames<'a> {
    fn new(webhooks: &'a [Webhook]) -> Self {
        let mut by_name = BTreeMap::new();
        for (i, w) in webhooks.iter().enumerate() {
            by_name
                .entry(w.name.as_str())
                .or_insert((WebhookId(i as u16), w));
        }
        Self {
            all: webhooks,
            by_name,
        }
    }

    fn find(&self, name: &str) -> Option<(WebhookId, &'a Webhook)> {
        self.by_name.get(name).copied()
    }

    fn get(&self, id: WebhookId) -> Option<&'a Webhook> {
        self.all.get(usize::from(id.0))
    }
}

/// `strategy` with its gates `by` places further on in the plan's list.
fn shifted(strategy: &Strategy, by: u32) -> Strategy {
    let shift = |ids: &[GateId]| ids.iter().map(|id| GateId(id.0 + by)).collect();
    match strategy {
        Strategy::Direct => Strategy::Direct,
        Strategy::Canary { name, steps } => Strategy::Canary {
            name: name.clone(),
            steps: steps
                .iter()
                .map(|step| match step {
                    CanaryStep::Gate(id) => CanaryStep::Gate(GateId(id.0 + by)),
                    other => other.clone(),
                })
                .collect(),
        },
        Strategy::BlueGreen {
            name,
            active_service,
            preview_service,
            redirect_after,
            shutdown_after,
        } => Strategy::BlueGreen {
            name: name.clone(),
            active_service: active_service.clone(),
            preview_service: preview_service.clone(),
            redirect_after: shift(redirect_after),
            shutdown_after: shift(shutdown_after),
        },
    }
}

/// The webhook of a gate whose `runWebhook.name` names none: no file has this many webhooks, so
/// later checks of the gate's webhook find none, rather than another's.
const UNKNOWN_WEBHOOK: WebhookId = WebhookId(u16::MAX);

/// A writer that only counts the bytes written to it.
struct Counted(usize);

impl fmt::Write for Counted {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}

impl Plan {
    fn empty(application: String) -> Plan {
        Plan {
            application,
            context: BTreeMap::new(),
            step_timeout: None,
            if_in_progress: InProgressPolicy::default(),
            environments: Vec::new(),
            webhooks: Vec::new(),
            gates: Vec::new(),
            analysis_queries: Vec::new(),
            ignored: Vec::new(),
            near_misses: Vec::new(),
        }
    }
}

/// The names of a [`DurationSpec`]'s length and unit as most of the file writes them.
const DURATION_FIELDS: (&str, &str) = ("duration", "unit");

/// How much text the YAML reader may produce for each byte of the file, aliases expanded.
const EXPANDED_BYTES_PER_FILE_BYTE: usize = 4;

fn expanded_limit(limits: &Limits) -> usize {
    limits
        .max_file_bytes
        .saturating_mul(EXPANDED_BYTES_PER_FILE_BYTE)
}

/// The limit the YAML reader stopped at, if `e` (under the wrappers that add the place in the
/// file and the alias it was reached through) says it stopped at one that grows with the file
/// or is the file's nesting limit: a file over it is too large rather than malformed.
fn over_budget(e: &serde_saphyr::Error, limits: &Limits) -> Option<ConfigError> {
    use serde_saphyr::budget::BudgetBreach;

    let serde_saphyr::Error::Budget { breach, .. } = innermost(e) else {
        return None;
    };
    let budget = budget(limits);
    let (what, limit) = match breach {
        BudgetBreach::ScalarBytes { .. } | BudgetBreach::RecordedAnchorBytes { .. } => {
            ("bytes of text, aliases expanded", expanded_limit(limits))
        }
        BudgetBreach::Nodes { .. } => ("nodes (maps, lists and values)", budget.max_nodes),
        BudgetBreach::Events { .. } => ("parser events", budget.max_events),
        BudgetBreach::Depth { .. } => ("nesting depth", limits.depth_limit()),
        _ => return None,
    };
    Some(ConfigError::TooLarge { what, limit })
}

/// The error `e` wraps, with its snippet or alias trail taken off.
fn innermost(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = e
    {
        e = error;
    }
    e
}

fn is_duplicate_key(e: &serde_saphyr::Error) -> bool {
    matches!(
        innermost(e),
        serde_saphyr::Error::DuplicateMappingKey { .. }
    )
}

/// `e` in the file's terms, for its author: the reader's default wording advises Rust types
/// and reader settings (`use Option<String>`, `set DuplicateKeyPolicy`) that the author cannot
/// reach.
fn for_people(e: &serde_saphyr::Error) -> String {
    // The reader's own name for the text, `<input>`, tells a person nothing.
    e.render_with_options(serde_saphyr::render_options! {
        formatter: &ForPeople,
        source_name: Some("deployment file"),
    })
}

/// The reader's wording for people, but for a scalar its field cannot take, which it names by
/// the Rust type it was read into (`invalid i64` for `weight: 12.5`).
struct ForPeople;

impl serde_saphyr::MessageFormatter for ForPeople {
    fn format_message<'a>(&self, err: &'a serde_saphyr::Error) -> std::borrow::Cow<'a, str> {
        match err {
            serde_saphyr::Error::InvalidScalar { ty, .. } => match *ty {
                "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128"
                | "isize" | "usize" => "expected a whole number written in digits (such as 30), \
                     without a fraction or exponent and small enough for this field"
                    .into(),
                "f32" | "f64" => "expected a number".into(),
                "bool" | "boolean" => "expected true or false".into(),
                _ => serde_saphyr::UserMessageFormatter.format_message(err),
            },
            _ => serde_saphyr::UserMessageFormatter.format_message(err),
        }
    }
}

/// How much larger than its file a plan may be: a file names a strategy, a context or a long
/// target name once, and the plan repeats it for every target and step that uses it.
const PLAN_BYTES_PER_FILE_BYTE: usize = 16;

/// The size of the plan of `file`, counted from the file alone in one walk, so that a file
/// whose plan would be far larger than itself is refused before it is built. A strategy's
/// gates and steps are counted once for every target that uses it, and those of a strategy no
/// target uses once, for its check.
struct PlanSize {
    /// Every entry of a constraint list, and a strategy's pauses, webhooks and analyses.
    gates: usize,
    /// Roughly the bytes held for its gates and steps: each keeps a path naming its target (or
    /// its strategy), and its own copy of what the file wrote for it (a context, analysis
    /// queries, required roles, services).
    bytes: usize,
    /// The length of `analysis.defaultMetricProviderName`, which each analysis step naming no
    /// provider of its own keeps a copy of.
    default_provider: usize,
}

impl PlanSize {
    fn of(file: &DeploymentFile) -> Self {
        let default_provider = file
            .analysis
            .as_ref()
            .and_then(|a| a.default_metric_provider_name.as_ref())
            .map_or(0, String::len);
        let mut size = Self {
            gates: 0,
            bytes: 0,
            default_provider,
        };
        for (target_name, target) in &file.targets {
            for c in target
                .constraints
                .iter()
                .flat_map(|c| c.before_deployment.iter().chain(&c.after_deployment))
            {
                size.add(true, target_name, constraint_bytes(c, default_provider));
            }
            if let Some((name, strategy)) = target
                .strategy
                .as_deref()
                .and_then(|s| file.strategies.get_key_value(s))
            {
                size.strategy(name, strategy);
            }
        }
        // Checked as well, once each, with gates and paths built for the check and dropped
        // after it: they count towards the bytes, not towards the plan's gates.
        let used: BTreeSet<&str> = file
            .targets
            .values()
            .filter_map(|t| t.strategy.as_deref())
            .collect();
        let gates = size.gates;
        for (name, strategy) in &file.strategies {
            if !used.contains(name.as_str()) {
                size.strategy(name, strategy);
            }
        }
        size.gates = gates;
        size
    }

    fn strategy(&mut self, name: &str, strategy: &file::Strategy) {
        for step in strategy.canary.iter().flat_map(|c| &c.steps) {
            match step {
                file::CanaryStep::RunWebhook(r) => self.add(true, name, context_bytes(&r.context)),
                file::CanaryStep::Analysis(a) => {
                    self.add(true, name, analysis_bytes(a, self.default_provider));
                }
                file::CanaryStep::Pause(p) => self.add(true, name, texts_bytes(&p.requires_roles)),
                file::CanaryStep::ExposeServices(e) => {
                    self.add(false, name, texts_bytes(&e.services));
                }
                file::CanaryStep::SetWeight(_) => self.add(false, name, 0),
            }
        }
        if let Some(bg) = &strategy.blue_green {
            let services = [&bg.active_service, &bg.preview_service]
                .into_iter()
                .flatten()
                .map(String::len)
                .fold(0, usize::saturating_add);
            self.add(false, name, services);
            for c in bg
                .redirect_traffic_after
                .iter()
                .chain(&bg.shut_down_old_version_after)
            {
                self.add(true, name, constraint_bytes(c, self.default_provider));
            }
        }
    }

    /// One more entry, a gate or not, with a path naming `name` and `bytes` of its own.
    fn add(&mut self, gate: bool, name: &str, bytes: usize) {
        const PER_ENTRY: usize = 64;
        self.gates = self.gates.saturating_add(usize::from(gate));
        self.bytes = self
            .bytes
            .saturating_add(PER_ENTRY)
            .saturating_add(name.len())
            .saturating_add(bytes);
    }
}

fn texts_bytes(texts: &[String]) -> usize {
    texts.iter().map(String::len).fold(0, usize::saturating_add)
}

fn context_bytes(context: &Context) -> usize {
    context
        .iter()
        .map(|(k, v)| k.len().saturating_add(v.0.len()))
        .fold(0, usize::saturating_add)
}

/// What analysis step `a` keeps, where the file's default provider name is `default_provider`
/// bytes long.
fn analysis_bytes(a: &file::Analysis, default_provider: usize) -> usize {
    let provider = a
        .metric_provider_name
        .as_ref()
        .map_or(default_provider, String::len);
    texts_bytes(&a.queries)
        .saturating_add(context_bytes(&a.context))
        .saturating_add(provider)
}

fn constraint_bytes(c: &Constraint, default_provider: usize) -> usize {
    match c {
        Constraint::RunWebhook(r) => context_bytes(&r.context),
        Constraint::Analysis(a) => analysis_bytes(a, default_provider),
        Constraint::Pause(p) => texts_bytes(&p.requires_roles),
    }
}

fn strings(context: &Context) -> BTreeMap<String, String> {
    context
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}
