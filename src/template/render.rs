//! Rendering a parsed [`Template`] with one gate's values (PROTOCOL.md §3).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use super::parse::Segment;
use super::{ArmoryVar, Template, Variable};
use crate::Secret;

/// The `armory.*` values of one gate.
///
/// `Debug` leaves the callback URI out: with a callback token, it resolves the gate.
///
/// Built from [`Default`] with its fields set one by one, so that the `armory.*` variables
/// PROTOCOL.md adds can become fields here without breaking code that builds one.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
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
/// `Debug` shows context keys and secret names only, and the `armory.*` values as
/// [`ArmoryValues`] shows them. Built with [`RenderValues::new`].
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct RenderValues<'a> {
    /// The `armory.*` values.
    pub armory: &'a ArmoryValues,
    /// The merged context (file < `runWebhook.context` < start-time context), for `context.*`.
    pub context: &'a BTreeMap<String, String>,
    /// The secrets fetched for this attempt, for `secrets.*`.
    pub secrets: &'a BTreeMap<String, Secret>,
}

impl<'a> RenderValues<'a> {
    /// The values of one rendering: `armory.*`, `context.*` and `secrets.*`.
    pub fn new(
        armory: &'a ArmoryValues,
        context: &'a BTreeMap<String, String>,
        secrets: &'a BTreeMap<String, Secret>,
    ) -> Self {
        Self {
            armory,
            context,
            secrets,
        }
    }
}

impl fmt::Debug for ArmoryValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmoryValues")
            .field("deployment_id", &self.deployment_id)
            .field("application_name", &self.application_name)
            .field("environment_name", &self.environment_name)
            .field("account_name", &self.account_name)
            .field("namespace", &self.namespace)
            .field("replica_set_name", &self.replica_set_name)
            .field("preview", &self.preview)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RenderValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderValues")
            .field("armory", self.armory)
            .field("context_keys", &self.context.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// How a value is inserted, depending on where the template's output goes (§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Escape {
    /// As JSON-string content: the template supplies the quotes (`"env": "{{armory.namespace}}"`),
    /// the value's quotes, backslashes and control characters are escaped.
    Json,
    /// Percent-encoded (everything but `A-Z a-z 0-9 - . _ ~`), except a leading
    /// `{{secrets.*}}`, `{{armory.callbackUri}}` or `{{armory.preview.*}}`, which is a whole base
    /// URL and is inserted as it is (a leading `{{context.*}}` is encoded like any other). A
    /// path segment an encoded value is part of or borders may not read as `.` or `..`
    /// ([`RenderError::DotSegment`]), and an encoded value may not end the host after text
    /// of the template's own in the same label ([`RenderError::HostExtended`]).
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
    /// A value rendered into a URI makes a path segment `.` or `..` (also spelled with `%2e`),
    /// alone or with the template's text beside it, which would change the URL's path.
    #[error(
        "the value of `{variable}` makes a path segment `.` or `..`, which would move the call to another path; give a real path segment"
    )]
    DotSegment {
        /// The variable, the first of those the segment holds or borders.
        variable: String,
    },
    /// An encoded value ends the URL's host, continuing a label of the template's own text or
    /// of a whole base URL (`https://hooks.example.com{{context.x}}`): `.` and letters survive
    /// percent-encoding, so the value would choose the host the call, and its secrets, go to
    /// (`.attacker.example`).
    #[error(
        "the value of `{variable}` would end the URL's host, continuing the template's own host text, and so choose where the call and its secrets go; put it after a `/`, or make it a whole label (`.{{{{{variable}}}}}`) or the whole host"
    )]
    HostExtended {
        /// The variable.
        variable: String,
    },
    /// The rendered request would be larger than the limit: values inserted into it are
    /// too long.
    #[error(
        "the rendered request is larger than {limit} bytes: shorten the context or secret values inserted into it, or raise the limit (`DispatcherBuilder::max_request_bytes`)"
    )]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A configured header name is not a valid HTTP header name.
    #[error("`{name}` is not a valid HTTP header name: use letters, digits and `-`")]
    InvalidHeaderName {
        /// The name as configured.
        name: String,
    },
    /// A configured header is one the HTTP client writes from the request itself
    /// ([`is_reserved_header`](super::is_reserved_header)).
    #[error(
        "`{name}` is written by the HTTP client from the request's URL and body: remove it from the headers"
    )]
    ReservedHeader {
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
    /// The rendered `uriTemplate` is longer than an HTTP request target may be.
    #[error(
        "the rendered uriTemplate is {length} bytes long, more than the {limit} an HTTP request target may have; values used: {}: shorten them",
        list(.variables)
    )]
    UriTooLong {
        /// Its length, in bytes.
        length: usize,
        /// The longest request target `http` accepts.
        limit: usize,
        /// The variables the template uses.
        variables: Vec<String>,
    },
    /// More headers than one request's header map can hold.
    #[error(
        "the webhook has {count} headers, more than one request can carry: remove some (a deployment file is limited by `Limits::max_headers`)"
    )]
    TooManyHeaders {
        /// How many the webhook has.
        count: usize,
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
    /// let mut armory = ArmoryValues::default();
    /// armory.namespace = "a\"b".into();
    /// let (context, secrets) = (BTreeMap::new(), BTreeMap::new());
    /// let values = RenderValues::new(&armory, &context, &secrets);
    /// let t = Template::parse(r#"{"ns": "{{armory.namespace}}"}"#).unwrap();
    /// assert_eq!(t.render(&values, Escape::Json).unwrap(), r#"{"ns": "a\"b"}"#);
    /// assert!(Template::parse("{{context.missing}}").unwrap().render(&values, Escape::None).is_err());
    /// ```
    pub fn render(&self, values: &RenderValues<'_>, escape: Escape) -> Result<String, RenderError> {
        self.render_limited(values, escape, usize::MAX)
    }

    /// Renders the template as [`render`](Self::render) does, failing with
    /// [`RenderError::TooLarge`] once the output passes `limit` bytes, so values that are too
    /// long cannot make hookgate build an unbounded request.
    pub fn render_limited(
        &self,
        values: &RenderValues<'_>,
        escape: Escape,
        limit: usize,
    ) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source().len().min(limit));
        let mut encoded = Vec::new();
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
                Escape::Uri if index == 0 && whole_url_allowed(variable) => out.push_str(value),
                Escape::Uri => {
                    let start = out.len();
                    push_percent_encoded(&mut out, value);
                    encoded.push((start..out.len(), variable));
                }
                Escape::Header if value.bytes().any(|b| b == b'\r' || b == b'\n') => {
                    return Err(RenderError::LineBreakInHeader {
                        variable: variable.to_string(),
                    });
                }
                Escape::Header | Escape::None => out.push_str(value),
            }
            if out.len() > limit {
                return Err(RenderError::TooLarge { limit });
            }
        }
        if out.len() > limit {
            return Err(RenderError::TooLarge { limit });
        }
        refuse_dot_segments(&out, &encoded)?;
        refuse_host_extension(&out, &encoded)?;
        Ok(out)
    }
}

/// Refuses a segment of `url`'s path that an encoded value is part of or borders (so an empty
/// one counts too) and that reads as `.` or `..`: `.` survives percent-encoding, and a URL
/// parser resolves such a segment, moving the call (and its secrets) to another path. Values
/// alone are not enough to check, as `{{a}}.{{b}}` with both empty makes `.`. A dot segment of
/// the template's own text (or of a whole base URL the host supplied) is left to the parser, as
/// its author wrote it. Everything before the first `?` or `#` is checked, the authority too
/// (a host of `.` is no host either); after it, dots are query or fragment text.
fn refuse_dot_segments(
    url: &str,
    encoded: &[(Range<usize>, &Variable)],
) -> Result<(), RenderError> {
    if encoded.is_empty() {
        return Ok(());
    }
    let path_end = url.find(['?', '#']).unwrap_or(url.len());
    let mut start = 0;
    // The parser reads `\` as `/` in http(s) URLs.
    for segment in url[..path_end].split(['/', '\\']) {
        let end = start + segment.len();
        if reads_as_dot_segment(segment, end == url.len())
            && let Some((_, variable)) = encoded
                .iter()
                .find(|(range, _)| range.start <= end && range.end >= start)
        {
            return Err(RenderError::DotSegment {
                variable: variable.to_string(),
            });
        }
        start = end + 1;
    }
    Ok(())
}

/// Refuses an encoded value that ends `url`'s host while continuing a label that text of the
/// template's own (or of a whole base URL) began: `https://hooks.example.com{{context.x}}`
/// with `.attacker.example` would send the call elsewhere. A value that is the whole host
/// (`https://{{context.host}}/`) or a whole label after a `.` (`https://api.{{context.domain}}/`)
/// is how its template's author chose to let it name the host; a value inside the host whose
/// end is the template's text keeps the host under that text's domain.
fn refuse_host_extension(
    url: &str,
    encoded: &[(Range<usize>, &Variable)],
) -> Result<(), RenderError> {
    if encoded.is_empty() {
        return Ok(());
    }
    // As bytes: the delimiters are ASCII, and `str` searches cost more than the whole rest
    // of the check (the scheme's end is a few bytes in).
    let bytes = url.as_bytes();
    let Some(scheme_end) = bytes.windows(3).position(|w| w == b"://") else {
        return Ok(());
    };
    let authority_start = scheme_end + 3;
    // The parser reads `\` as `/` in http(s) URLs.
    let authority_end = bytes[authority_start..]
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#' | b'\\'))
        .map_or(url.len(), |end| authority_start + end);
    let authority = &bytes[authority_start..authority_end];
    // Values cannot hold `@`, `:` or `[`, which encoding escapes: these are the URL's own.
    let host_start = authority
        .iter()
        .rposition(|&b| b == b'@')
        .map_or(authority_start, |at| authority_start + at + 1);
    let host = &bytes[host_start..authority_end];
    let host_end = match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host.first() != Some(&b'[') => host_start + colon,
        _ => authority_end,
    };
    let extended = encoded.iter().find(|(range, _)| {
        !range.is_empty()
            && range.start > host_start
            && range.start < host_end
            && range.end >= host_end
            && bytes[range.start - 1] != b'.'
    });
    match extended {
        Some((_, variable)) => Err(RenderError::HostExtended {
            variable: variable.to_string(),
        }),
        None => Ok(()),
    }
}

/// Whether a URL parser reads `segment` as `.` or `..`: it drops tabs and line breaks, and
/// spaces and control characters that end the URL, and takes `%2e` in either case for `.`.
fn reads_as_dot_segment(segment: &str, ends_url: bool) -> bool {
    let segment = if ends_url {
        segment.trim_end_matches(|c: char| c <= ' ')
    } else {
        segment
    };
    let segment: Cow<'_, str> = if segment.contains(['\t', '\n', '\r']) {
        segment.replace(['\t', '\n', '\r'], "").into()
    } else {
        segment.into()
    };
    let dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    dot(&segment)
        || (1..segment.len())
            .any(|i| segment.is_char_boundary(i) && dot(&segment[..i]) && dot(&segment[i..]))
}

/// PROTOCOL.md §3: a placeholder that starts a `uriTemplate` is a whole base URL only when it
/// comes from the host's secrets or from hookgate itself. Context can be given by whoever starts
/// a deployment, so a leading `context.*` value is encoded like any other and cannot redirect a
/// call that carries secrets.
pub(crate) fn whole_url_allowed(variable: &Variable) -> bool {
    matches!(
        variable,
        Variable::Secret(_) | Variable::Armory(ArmoryVar::CallbackUri | ArmoryVar::Preview(_))
    )
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, byte: u8, digits: &[u8; 16]) {
    out.push(char::from(digits[usize::from(byte >> 4)]));
    out.push(char::from(digits[usize::from(byte & 0x0f)]));
}

/// RFC 8259 §7: quote, backslash and U+0000..U+001F must be escaped; everything else may stay.
pub(crate) fn push_json_escaped(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    // Runs of bytes that stay as they are are copied at once. Every byte escaped is ASCII, so
    // each run starts and ends on a character boundary.
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            byte if byte < 0x20 => "",
            _ => continue,
        };
        out.push_str(&value[start..index]);
        start = index + 1;
        if escaped.is_empty() {
            out.push_str("\\u00");
            push_hex(out, byte, HEX_LOWER);
        } else {
            out.push_str(escaped);
        }
    }
    out.push_str(&value[start..]);
}

/// Keeps RFC 3986's unreserved characters only, so a value stays inside its path segment or
/// query parameter whatever it contains (`/`, `?`, `&`, `#`, spaces...), with upper-case hex
/// digits as RFC 3986 recommends.
pub(crate) fn push_percent_encoded(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    // Runs of unreserved (ASCII) characters are copied at once. A byte of a multi-byte
    // character is encoded on its own, so `start` may fall inside one: only non-empty runs
    // (which start and end on ASCII, hence on boundaries) are sliced.
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            continue;
        }
        if start < index {
            out.push_str(&value[start..index]);
        }
        start = index + 1;
        out.push('%');
        push_hex(out, byte, HEX_UPPER);
    }
    out.push_str(&value[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_out_the_callback_uri_and_context_values() {
        let armory = ArmoryValues {
            callback_uri: "https://gates.example/callbacks/0123456789abcdef".into(),
            deployment_id: "d-1".into(),
            ..ArmoryValues::default()
        };
        let context = BTreeMap::from([("ticket".to_owned(), "private-value".to_owned())]);
        let secrets = BTreeMap::from([("token".to_owned(), Secret::new("s3cr3t"))]);
        let values = RenderValues {
            armory: &armory,
            context: &context,
            secrets: &secrets,
        };
        let shown = format!("{values:?}");
        for hidden in ["0123456789abcdef", "private-value", "s3cr3t"] {
            assert!(!shown.contains(hidden), "{shown}");
        }
        for kept in ["d-1", "ticket", "token"] {
            assert!(shown.contains(kept), "{shown}");
        }
    }

    fn render_uri(source: &str, context: &[(&str, &str)]) -> Result<String, RenderError> {
        let armory = ArmoryValues::default();
        let context = context
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let secrets = BTreeMap::from([("base".to_owned(), Secret::new("https://h/api/"))]);
        Template::parse(source)
            .unwrap()
            .render(&RenderValues::new(&armory, &context, &secrets), Escape::Uri)
    }

    #[test]
    fn values_that_make_a_dot_segment_with_the_text_around_them_are_refused() {
        let refused = |source: &str, context: &[(&str, &str)], variable: &str| {
            assert_eq!(
                render_uri(source, context),
                Err(RenderError::DotSegment {
                    variable: variable.to_owned()
                }),
                "{source} with {context:?}"
            );
        };
        let both_empty = [("name", ""), ("ext", "")];
        refused(
            "https://h/api/{{context.name}}.{{context.ext}}/delete",
            &both_empty,
            "context.name",
        );
        refused(
            "https://h/api/{{context.name}}..{{context.ext}}?x",
            &both_empty,
            "context.name",
        );
        for dots in ["%2e", "%2E", ".%2e", "%2E.", "%2e%2E", ".\t."] {
            refused(
                &format!("https://h/api/{dots}{{{{context.ext}}}}/delete"),
                &both_empty,
                "context.ext",
            );
        }
        refused(
            "https://h/api\\{{context.ext}}.\\x",
            &both_empty,
            "context.ext",
        );
        refused(
            "https://h/api/{{context.ext}}. ",
            &both_empty,
            "context.ext",
        );
        refused(
            "{{secrets.base}}{{context.name}}.",
            &both_empty,
            "context.name",
        );
        refused(
            "https://h/api/{{context.name}}",
            &[("name", "..")],
            "context.name",
        );

        // Values that make no dot segment, a dot segment in the query, and one the
        // template's own text makes are left as they are.
        for (source, context, rendered) in [
            (
                "https://h/api/{{context.name}}.{{context.ext}}/delete",
                &[("name", "report"), ("ext", "")][..],
                "https://h/api/report./delete",
            ),
            (
                "https://h/api/v{{context.name}}/x",
                &[("name", "..")][..],
                "https://h/api/v../x",
            ),
            (
                "https://h/api?q={{context.name}}.{{context.ext}}/x",
                &both_empty[..],
                "https://h/api?q=./x",
            ),
            (
                "https://h/api/../{{context.name}}/x",
                &[("name", "a")][..],
                "https://h/api/../a/x",
            ),
        ] {
            assert_eq!(render_uri(source, context).as_deref(), Ok(rendered));
        }
    }

    #[test]
    fn escaping_copies_runs_and_escapes_the_rest() {
        let mut out = String::new();
        push_json_escaped(&mut out, "a\"b\\c\nd\re\tf\u{1}g\u{1f}é🦀");
        assert_eq!(out, r#"a\"b\\c\nd\re\tf\u0001g\u001fé🦀"#);
        let mut out = String::new();
        push_percent_encoded(&mut out, "a b/é🦀-._~Z9?");
        assert_eq!(out, "a%20b%2F%C3%A9%F0%9F%A6%80-._~Z9%3F");
        for (value, json_form, uri_form) in [
            ("", "", ""),
            ("é", "é", "%C3%A9"),
            ("éé", "éé", "%C3%A9%C3%A9"),
            ("\"", "\\\"", "%22"),
            ("x", "x", "x"),
        ] {
            let (mut json, mut percent) = (String::new(), String::new());
            push_json_escaped(&mut json, value);
            push_percent_encoded(&mut percent, value);
            assert_eq!((json.as_str(), percent.as_str()), (json_form, uri_form));
        }
    }
}
