use std::fmt;

/// A parsed template: literal text interleaved with variable references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Text copied as it is.
    Literal(String),
    /// A `{{ variable }}` placeholder.
    Var(Variable),
}

/// A variable a template may reference (PROTOCOL.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Variable {
    /// `armory.*`: values hookgate supplies.
    Armory(ArmoryVar),
    /// `context.<key>`: deployment context.
    Context(String),
    /// `secrets.<name>`: a value from the host's secret source.
    Secret(String),
}

/// The `armory.*` variables.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ArmoryVar {
    /// `armory.callbackUri`: this gate's callback base URI.
    CallbackUri,
    /// `armory.deploymentId`.
    DeploymentId,
    /// `armory.applicationName`.
    ApplicationName,
    /// `armory.environmentName`: the target's name.
    EnvironmentName,
    /// `armory.accountName`: the target's account, or the agent identifier.
    AccountName,
    /// `armory.namespace`: the target's namespace.
    Namespace,
    /// `armory.replicaSetName`: supplied by the host when known.
    ReplicaSetName,
    /// `armory.preview.<service>`: URL of a service exposed by an `exposeServices` step.
    Preview(String),
}

/// Why a template could not be parsed. Offsets are byte offsets into the template text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `{{` without a matching `}}`.
    #[error("unclosed `{{{{` at byte {offset}: close the placeholder with `}}}}`")]
    Unclosed {
        /// Where the `{{` starts.
        offset: usize,
    },
    /// `{{ }}` with nothing inside.
    #[error(
        "empty placeholder at byte {offset}: write a variable such as `{{{{armory.deploymentId}}}}`"
    )]
    Empty {
        /// Where the `{{` starts.
        offset: usize,
    },
    /// A placeholder that is not a plain variable name (sections, partials, triple braces...).
    #[error(
        "unsupported placeholder `{{{{{text}}}}}` at byte {offset}: only variable tags like `{{{{context.key}}}}` are allowed"
    )]
    Unsupported {
        /// The text between the braces.
        text: String,
        /// Where the `{{` starts.
        offset: usize,
    },
    /// A variable outside `armory.*`, `context.*` and `secrets.*`, or an unknown `armory.*` name.
    #[error(
        "unknown variable `{name}` at byte {offset}: use armory.callbackUri, armory.deploymentId, armory.applicationName, armory.environmentName, armory.accountName, armory.namespace, armory.replicaSetName, armory.preview.<service>, context.<key> or secrets.<name>"
    )]
    UnknownVariable {
        /// The variable as written.
        name: String,
        /// Where the `{{` starts.
        offset: usize,
    },
}

impl Template {
    /// Parses template text.
    ///
    /// ```
    /// use hookgate::template::{ArmoryVar, Template, Variable};
    /// let t = Template::parse("{{armory.callbackUri}}/callback?team={{ context.team }}").unwrap();
    /// let vars: Vec<_> = t.variables().cloned().collect();
    /// assert_eq!(vars, [Variable::Armory(ArmoryVar::CallbackUri), Variable::Context("team".into())]);
    /// assert!(Template::parse("{{armory.nope}}").is_err());
    /// ```
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut rest = source;
        let mut base = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                segments.push(Segment::Literal(rest[..open].to_owned()));
            }
            let offset = base + open;
            let after_open = &rest[open + 2..];
            let close = after_open
                .find("}}")
                .ok_or(TemplateError::Unclosed { offset })?;
            let inner = &after_open[..close];
            segments.push(Segment::Var(parse_variable(inner, offset)?));
            let consumed = open + 2 + close + 2;
            base += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        Ok(Self {
            source: source.to_owned(),
            segments,
        })
    }

    /// The template text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables referenced, in order of appearance (with repeats).
    pub fn variables(&self) -> impl Iterator<Item = &Variable> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(v) => Some(v),
            Segment::Literal(_) => None,
        })
    }

    /// Whether the template starts with a placeholder. In a `uriTemplate`, a leading
    /// `secrets.*`, `armory.callbackUri` or `armory.preview.*` value is inserted as a whole URL,
    /// without percent-encoding (§3); any other leading value, `context.*` included, is
    /// percent-encoded like the rest (see [`Escape::Uri`](super::Escape::Uri)).
    pub fn starts_with_variable(&self) -> bool {
        matches!(self.segments.first(), Some(Segment::Var(_)))
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variable::Armory(a) => write!(f, "armory.{a}"),
            Variable::Context(k) => write!(f, "context.{k}"),
            Variable::Secret(k) => write!(f, "secrets.{k}"),
        }
    }
}

impl fmt::Display for ArmoryVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ArmoryVar::CallbackUri => "callbackUri",
            ArmoryVar::DeploymentId => "deploymentId",
            ArmoryVar::ApplicationName => "applicationName",
            ArmoryVar::EnvironmentName => "environmentName",
            ArmoryVar::AccountName => "accountName",
            ArmoryVar::Namespace => "namespace",
            ArmoryVar::ReplicaSetName => "replicaSetName",
            ArmoryVar::Preview(service) => return write!(f, "preview.{service}"),
        };
        f.write_str(name)
    }
}

fn parse_variable(inner: &str, offset: usize) -> Result<Variable, TemplateError> {
    let name = inner.trim_matches(|c| c == ' ' || c == '\t');
    if name.is_empty() {
        return Err(TemplateError::Empty { offset });
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(TemplateError::Unsupported {
            text: inner.to_owned(),
            offset,
        });
    }
    let unknown = || TemplateError::UnknownVariable {
        name: name.to_owned(),
        offset,
    };
    let (namespace, key) = name.split_once('.').ok_or_else(unknown)?;
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(unknown());
    }
    let armory = match (namespace, key) {
        ("context", key) => return Ok(Variable::Context(key.to_owned())),
        ("secrets", key) => return Ok(Variable::Secret(key.to_owned())),
        ("armory", "callbackUri") => ArmoryVar::CallbackUri,
        ("armory", "deploymentId") => ArmoryVar::DeploymentId,
        ("armory", "applicationName") => ArmoryVar::ApplicationName,
        ("armory", "environmentName") => ArmoryVar::EnvironmentName,
        ("armory", "accountName") => ArmoryVar::AccountName,
        ("armory", "namespace") => ArmoryVar::Namespace,
        ("armory", "replicaSetName") => ArmoryVar::ReplicaSetName,
        ("armory", key) => match key.strip_prefix("preview.") {
            Some(service) => ArmoryVar::Preview(service.to_owned()),
            None => return Err(unknown()),
        },
        _ => return Err(unknown()),
    };
    Ok(Variable::Armory(armory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_variables_alternate() {
        let t = Template::parse("a{{armory.deploymentId}}b{{ secrets.tok }}").unwrap();
        assert_eq!(
            t.segments(),
            [
                Segment::Literal("a".into()),
                Segment::Var(Variable::Armory(ArmoryVar::DeploymentId)),
                Segment::Literal("b".into()),
                Segment::Var(Variable::Secret("tok".into())),
            ]
        );
        assert!(!t.starts_with_variable());
        assert_eq!(t.to_string(), "a{{armory.deploymentId}}b{{ secrets.tok }}");
    }

    #[test]
    fn preview_and_dotted_keys() {
        let t = Template::parse("{{armory.preview.check-out}}{{context.a.b}}").unwrap();
        let vars: Vec<_> = t.variables().map(ToString::to_string).collect();
        assert_eq!(vars, ["armory.preview.check-out", "context.a.b"]);
        assert!(t.starts_with_variable());
    }

    #[test]
    fn text_without_placeholders_and_lone_closers_are_literal() {
        for text in ["plain }} text {", "}}", "{", "a } { b", "x}}y}}"] {
            assert_eq!(
                Template::parse(text).unwrap().segments(),
                [Segment::Literal(text.into())],
                "{text:?}"
            );
        }
        assert_eq!(Template::parse("").unwrap().segments(), []);
    }

    #[test]
    fn malformed_placeholders_are_rejected_with_offsets() {
        assert_eq!(
            Template::parse("ab{{armory.deploymentId"),
            Err(TemplateError::Unclosed { offset: 2 })
        );
        assert_eq!(
            Template::parse("{{  }}"),
            Err(TemplateError::Empty { offset: 0 })
        );
        assert!(matches!(
            Template::parse("x{{#section}}"),
            Err(TemplateError::Unsupported { offset: 1, .. })
        ));
        assert!(matches!(
            Template::parse("{{{context.a}}}"),
            Err(TemplateError::Unsupported { .. })
        ));
        for bad in [
            "{{armory.unknown}}",
            "{{env.HOME}}",
            "{{context}}",
            "{{context.}}",
            "{{secrets..x}}",
            "{{armory.preview.}}",
        ] {
            assert!(
                matches!(
                    Template::parse(bad),
                    Err(TemplateError::UnknownVariable { .. })
                ),
                "{bad}"
            );
        }
    }
}
