//! Rendering a parsed [`Template`] with one gate's values (PROTOCOL.md §3).

use std::collections::BTreeMap;

use super::parse::Segment;
use super::{ArmoryVar, Template, Variable};
use crate::Secret;

/// The `armory.*` values of one gate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArmoryValues {
    /// `armory.callbackUri`: this gate's callback base URI.
    pub callback_uri: String,
    /// `armory.deploymentId`.
    pub deployment_id: String,
    /// `armory.applicationName`: the file's `application`.
    pub application_name: String,
    /// `armory.environmentName`: the target's name.
    pub environment_name: String,
    /// `armory.accountName`: the target's account, or the agent identifier.
    pub account_name: String,
    /// `armory.namespace`: the target's namespace.
    pub namespace: String,
    /// `armory.replicaSetName`, when the host knows it; renders as the empty string otherwise.
    pub replica_set_name: Option<String>,
    /// `armory.preview.<service>`: service name → URL, from `exposeServices` steps so far.
    pub preview: BTreeMap<String, String>,
}

/// Everything a template may reference, borrowed for one rendering.
///
/// `Debug` shows secret names only ([`Secret`] redacts its value).
#[derive(Debug, Clone, Copy)]
pub struct RenderValues<'a> {
    /// The `armory.*` values.
    pub armory: &'a ArmoryValues,
    /// The merged context (file < `runWebhook.context` < start-time context), for `context.*`.
    pub context: &'a BTreeMap<String, String>,
    /// The secrets fetched for this attempt, for `secrets.*`.
    pub secrets: &'a BTreeMap<String, Secret>,
}

/// How a value is inserted, depending on where the template's output goes (§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Escape {
    /// As JSON-string content: the template supplies the quotes (`"env": "{{armory.namespace}}"`),
    /// the value's quotes, backslashes and control characters are escaped.
    Json,
    /// Percent-encoded (everything but `A-Z a-z 0-9 - . _ ~`), except a placeholder that starts
    /// the template, which is a whole base URL and is inserted as it is.
    Uri,
    /// As it is, but a value containing CR or LF is an error (no header injection).
    Header,
    /// As it is.
    None,
}

/// Why a template or request could not be rendered. Names variables and keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// `context.<key>` is not in the merged context.
    #[error(
        "context key `{key}` is not set: add it to the file's `context`, the runWebhook's `context` or the context given when the deployment starts"
    )]
    UnknownContext {
        /// The key after `context.`.
        key: String,
    },
    /// `secrets.<name>` is not among the fetched secrets.
    #[error(
        "secret `{name}` was not fetched: fetch every name from `RequestTemplate::secret_names` from the secret source before rendering"
    )]
    UnknownSecret {
        /// The name after `secrets.`.
        name: String,
    },
    /// `armory.preview.<service>` names a service no `exposeServices` step has exposed.
    #[error(
        "no preview URL for service `{service}`: expose it with an `exposeServices` step that runs before this webhook"
    )]
    UnknownPreview {
        /// The service after `armory.preview.`.
        service: String,
    },
    /// A value inserted into a header contains CR or LF.
    #[error(
        "the value of `{variable}` contains a line break (CR or LF), which would inject a header: remove line breaks from it"
    )]
    LineBreakInHeader {
        /// The variable whose value has the line break, e.g. `context.ticket`.
        variable: String,
    },
    /// The webhook's `method` is not an HTTP method.
    #[error("`{method}` is not a valid HTTP method: use a method such as POST or PUT")]
    InvalidMethod {
        /// The method as configured.
        method: String,
    },
    /// The rendered `uriTemplate` is not an absolute http(s) URL.
    #[error(
        "the rendered uriTemplate is not an absolute http(s) URL ({reason}); values used: {}: check them and the template",
        list(.variables)
    )]
    InvalidUri {
        /// What is wrong, without the URL (it may hold a secret).
        reason: String,
        /// The variables the template uses, e.g. `secrets.base_url`.
        variables: Vec<String>,
    },
    /// A configured header name is not a valid HTTP header name.
    #[error("`{name}` is not a valid HTTP header name: use letters, digits and `-`")]
    InvalidHeaderName {
        /// The name as configured.
        name: String,
    },
    /// A rendered header value is not a valid HTTP header value.
    #[error(
        "header `{header}` is not a valid HTTP header value after rendering; values used: {}: remove control characters from them",
        list(.variables)
    )]
    InvalidHeaderValue {
        /// The header's name.
        header: String,
        /// The variables its template uses.
        variables: Vec<String>,
    },
}

fn list(variables: &[String]) -> String {
    if variables.is_empty() {
        "none".to_owned()
    } else {
        variables.join(", ")
    }
}

impl RenderValues<'_> {
    fn lookup(&self, variable: &Variable) -> Result<&str, RenderError> {
        let armory = match variable {
            Variable::Context(key) => {
                return self
                    .context
                    .get(key)
                    .map(String::as_str)
                    .ok_or_else(|| RenderError::UnknownContext { key: key.clone() });
            }
            Variable::Secret(name) => {
                return self
                    .secrets
                    .get(name)
                    .map(Secret::expose)
                    .ok_or_else(|| RenderError::UnknownSecret { name: name.clone() });
            }
            Variable::Armory(armory) => armory,
        };
        let values = self.armory;
        Ok(match armory {
            ArmoryVar::CallbackUri => &values.callback_uri,
            ArmoryVar::DeploymentId => &values.deployment_id,
            ArmoryVar::ApplicationName => &values.application_name,
            ArmoryVar::EnvironmentName => &values.environment_name,
            ArmoryVar::AccountName => &values.account_name,
            ArmoryVar::Namespace => &values.namespace,
            ArmoryVar::ReplicaSetName => values.replica_set_name.as_deref().unwrap_or(""),
            ArmoryVar::Preview(service) => {
                values
                    .preview
                    .get(service)
                    .ok_or_else(|| RenderError::UnknownPreview {
                        service: service.clone(),
                    })?
            }
        })
    }
}

impl Template {
    /// Renders the template, inserting each value as `escape` says.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use hookgate::template::{ArmoryValues, Escape, RenderValues, Template};
    /// let armory = ArmoryValues { namespace: "a\"b".into(), ..Default::default() };
    /// let (context, secrets) = (BTreeMap::new(), BTreeMap::new());
    /// let values = RenderValues { armory: &armory, context: &context, secrets: &secrets };
    /// let t = Template::parse(r#"{"ns": "{{armory.namespace}}"}"#).unwrap();
    /// assert_eq!(t.render(&values, Escape::Json).unwrap(), r#"{"ns": "a\"b"}"#);
    /// assert!(Template::parse("{{context.missing}}").unwrap().render(&values, Escape::None).is_err());
    /// ```
    pub fn render(&self, values: &RenderValues<'_>, escape: Escape) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source().len());
        for (index, segment) in self.segments().iter().enumerate() {
            let variable = match segment {
                Segment::Literal(text) => {
                    out.push_str(text);
                    continue;
                }
                Segment::Var(variable) => variable,
            };
            let value = values.lookup(variable)?;
            match escape {
                Escape::Json => push_json_escaped(&mut out, value),
                Escape::Uri if index > 0 => push_percent_encoded(&mut out, value),
                Escape::Header if value.contains(['\r', '\n']) => {
                    return Err(RenderError::LineBreakInHeader {
                        variable: variable.to_string(),
                    });
                }
                Escape::Uri | Escape::Header | Escape::None => out.push_str(value),
            }
        }
        Ok(out)
    }
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, byte: u8, digits: &[u8; 16]) {
    out.push(char::from(digits[usize::from(byte >> 4)]));
    out.push(char::from(digits[usize::from(byte & 0x0f)]));
}

/// RFC 8259 §7: quote, backslash and U+0000..U+001F must be escaped; everything else may stay.
fn push_json_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str("\\u00");
                push_hex(out, c as u8, HEX_LOWER);
            }
            c => out.push(c),
        }
    }
}

/// Keeps RFC 3986's unreserved characters only, so a value stays inside its path segment or
/// query parameter whatever it contains (`/`, `?`, `&`, `#`, spaces...).
fn push_percent_encoded(out: &mut String, value: &str) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            push_hex(out, byte, HEX_UPPER);
        }
    }
}
