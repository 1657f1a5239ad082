//! A webhook's whole request as templates, and the request rendered from them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use url::Url;

use super::parse::Segment;
use super::{ArmoryValues, ArmoryVar, Escape, RenderError, RenderValues, Template, Variable};

/// A webhook's request: method, `uriTemplate`, header templates and `bodyTemplate.inline`.
///
/// Built from templates the deployment file's validator has already parsed, kept for the gate's
/// life, and rendered again for every attempt (so rendered secrets are never stored).
///
/// ```
/// use hookgate::template::{RequestTemplate, Template};
/// let request = RequestTemplate::new(Template::parse("https://ci.example.com/hooks").unwrap())
///     .with_header("Authorization", Template::parse("Bearer {{secrets.ci_token}}").unwrap())
///     .with_header("Content-Type", Template::parse("application/json").unwrap())
///     .with_body(Template::parse(r#"{"callbackUri": "{{armory.callbackUri}}"}"#).unwrap());
/// assert_eq!(request.method(), "POST");
/// assert_eq!(request.secret_names().into_iter().collect::<Vec<_>>(), ["ci_token"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTemplate {
    method: String,
    uri: Template,
    headers: Vec<(String, Template)>,
    body: Option<Template>,
}

impl RequestTemplate {
    /// A `POST` to `uri` with no headers and an empty body.
    pub fn new(uri: Template) -> Self {
        Self {
            method: "POST".to_owned(),
            uri,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Sets the HTTP method. It is upper-cased when rendered, so `post` sends `POST`.
    #[must_use]
    pub fn with_method(mut self, method: impl Into<String>) -> Self {
        self.method = method.into();
        self
    }

    /// Adds a header. Repeats of one name are all sent, in the order added, together where the
    /// name was first added (an [`http::HeaderMap`] groups them). A header the HTTP
    /// client writes from the request ([`is_reserved_header`]) makes
    /// [`render`](Self::render) fail with [`RenderError::ReservedHeader`].
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: Template) -> Self {
        self.headers.push((name.into(), value));
        self
    }

    /// Sets the body template.
    #[must_use]
    pub fn with_body(mut self, body: Template) -> Self {
        self.body = Some(body);
        self
    }

    /// The HTTP method as configured.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The `uriTemplate`.
    pub fn uri(&self) -> &Template {
        &self.uri
    }

    /// The header names and value templates, in order.
    pub fn headers(&self) -> &[(String, Template)] {
        &self.headers
    }

    /// The body template, if any.
    pub fn body(&self) -> Option<&Template> {
        self.body.as_ref()
    }

    /// Whether the body looks like JSON (the first character of its text other than whitespace
    /// is `{` or `[`, before any placeholder) and inserts values, yet no `Content-Type` header
    /// can have them escaped: none is set, or every one set names another media type than JSON
    /// in its own text (`text/plain`, `text/plain; charset={{context.charset}}`).
    /// [`render`](Self::render) escapes a body by its `Content-Type` alone (PROTOCOL.md §3), so
    /// such a body takes each value as it is, and a value holding a `"`, a `\` or a line break
    /// can add fields to the document or break it. Not an error, since a receiver may read text
    /// that merely starts with a brace; a host warns of it
    /// ([`Plan::webhooks_with_unescaped_json`](crate::config::Plan::webhooks_with_unescaped_json)).
    ///
    /// A `Content-Type` whose media type holds a placeholder may render as JSON, and counts as
    /// escaping; one from `context.*` lets whoever starts a deployment choose.
    pub fn json_body_unescaped(&self) -> bool {
        let Some(body) = &self.body else {
            return false;
        };
        // Judged by the template's own text: a body that starts with a placeholder is whatever
        // the value is, and the placeholder's own braces say nothing.
        let looks_like_json = match body.segments().first() {
            Some(Segment::Literal(text)) => {
                matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['))
            }
            _ => false,
        };
        if !looks_like_json || body.variables().next().is_none() {
            return false;
        }
        self.headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(CONTENT_TYPE.as_str()))
            .all(|(_, value)| {
                fixed_media_type(value).is_some_and(|media| !is_json(media.as_bytes()))
            })
    }

    /// The names of the secrets the request uses, to fetch exactly those before rendering.
    pub fn secret_names(&self) -> BTreeSet<&str> {
        self.templates()
            .flat_map(Template::variables)
            .filter_map(|variable| match variable {
                Variable::Secret(name) => Some(name.as_str()),
                Variable::Armory(_) | Variable::Context(_) => None,
            })
            .collect()
    }

    /// Renders the request.
    ///
    /// The URI is rendered with [`Escape::Uri`] and must be an absolute http(s) URL; header
    /// values with [`Escape::Header`]; the body with [`Escape::Json`] when a `Content-Type`
    /// header renders to `application/json` or `…+json` (parameters allowed, in any bytes),
    /// otherwise with [`Escape::None`]. Header values that use a secret, and every
    /// `Authorization` and `Proxy-Authorization` value, are marked sensitive. Credentials in
    /// the URL (`https://user:password@host/…`, as Jenkins URLs often carry them) are taken
    /// out of it and sent as `Authorization: Basic`, marked sensitive, as HTTP clients do,
    /// unless a header template sets `Authorization` itself.
    pub fn render(&self, values: &RenderValues<'_>) -> Result<RenderedRequest, RenderError> {
        self.render_limited(values, usize::MAX)
    }

    /// Renders the request as [`render`](Self::render) does, failing with
    /// [`RenderError::TooLarge`] when the URI, header values and body together pass `limit`
    /// bytes.
    pub fn render_limited(
        &self,
        values: &RenderValues<'_>,
        limit: usize,
    ) -> Result<RenderedRequest, RenderError> {
        let method = parse_method(&self.method).ok_or_else(|| RenderError::InvalidMethod {
            method: self.method.clone(),
        })?;
        // Each part is rendered within what the parts before it left, and a part that passes
        // it reports the whole request's limit.
        let whole = |e| match e {
            RenderError::TooLarge { .. } => RenderError::TooLarge { limit },
            other => other,
        };
        let (uri, uri_len, credentials) = render_uri(&self.uri, values, limit)?;
        let mut left = limit - uri_len;
        let too_many = |_| RenderError::TooManyHeaders {
            count: self.headers.len(),
        };
        let mut headers = HeaderMap::try_with_capacity(self.headers.len()).map_err(too_many)?;
        let mut json_body = false;
        for (name, template) in &self.headers {
            let (header, value) = render_header(name, template, values, left).map_err(whole)?;
            left -= value.len();
            json_body |= header == CONTENT_TYPE && is_json(value.as_bytes());
            headers.try_append(header, value).map_err(too_many)?;
        }
        // A header the templates set wins over the URL's credentials.
        if let Some(credentials) = credentials
            && !headers.contains_key(AUTHORIZATION)
        {
            left = left
                .checked_sub(credentials.len())
                .ok_or(RenderError::TooLarge { limit })?;
            headers
                .try_insert(AUTHORIZATION, credentials)
                .map_err(too_many)?;
        }
        let body = match &self.body {
            Some(template) => {
                let escape = if json_body {
                    Escape::Json
                } else {
                    Escape::None
                };
                Bytes::from(
                    template
                        .render_limited(values, escape, left)
                        .map_err(whole)?,
                )
            }
            None => Bytes::new(),
        };
        Ok(RenderedRequest {
            method,
            uri,
            headers,
            body,
            shown_url: ShownUrl::of(&self.uri),
        })
    }

    /// The secret names in the order the templates use them, repeats included, when that order
    /// is already sorted: then fetching them in it (skipping repeats) reads exactly
    /// [`secret_names`](Self::secret_names) in the same order, without building the set.
    pub(crate) fn sorted_secret_names(&self) -> Option<impl Iterator<Item = &str> + Clone> {
        let names =
            self.templates()
                .flat_map(Template::segments)
                .filter_map(|segment| match segment {
                    Segment::Var(Variable::Secret(name)) => Some(name.as_str()),
                    Segment::Var(Variable::Armory(_) | Variable::Context(_))
                    | Segment::Literal(_) => None,
                });
        names.clone().is_sorted().then_some(names)
    }

    fn templates(&self) -> impl Iterator<Item = &Template> + Clone {
        std::iter::once(&self.uri)
            .chain(self.headers.iter().map(|(_, value)| value))
            .chain(self.body.as_ref())
    }
}

/// Why a `uriTemplate` without placeholders can never be a request's target, as rendering it
/// would find; `None` if it can be.
pub(crate) fn fixed_uri_problem(template: &Template) -> Option<String> {
    let (armory, context, secrets) = (ArmoryValues::default(), BTreeMap::new(), BTreeMap::new());
    let values = RenderValues {
        armory: &armory,
        context: &context,
        secrets: &secrets,
    };
    match render_uri(template, &values, usize::MAX) {
        Err(RenderError::InvalidUri { reason, .. }) => Some(reason),
        Err(RenderError::UriTooLong { length, limit, .. }) => Some(format!(
            "it is {length} bytes long once percent-encoded, more than the {limit} an HTTP \
             request target may have"
        )),
        _ => None,
    }
}

/// The longest request target `http::Uri` accepts.
const MAX_URI_BYTES: usize = u16::MAX as usize - 1;

/// The URL `template` renders, its length, and the `Authorization` value of the credentials it
/// held (`user:password@`), which are taken out of it: the request line never carries them.
fn render_uri(
    template: &Template,
    values: &RenderValues<'_>,
    limit: usize,
) -> Result<(Uri, usize, Option<HeaderValue>), RenderError> {
    let invalid = |reason: String| RenderError::InvalidUri {
        reason,
        variables: variable_names(template),
    };
    let mut rendered = template.render_limited(values, Escape::Uri, limit)?;
    let not_a_target = || invalid("not a valid HTTP request target".to_owned());
    let too_long = |length| RenderError::UriTooLong {
        length,
        limit: MAX_URI_BYTES,
        variables: variable_names(template),
    };
    if let Some(end) = canonical_http_url(&rendered) {
        if end > MAX_URI_BYTES {
            return Err(too_long(end));
        }
        // `Url::parse` would accept this URL and serialize it byte for byte as it is (fragment
        // aside), so its checks and serialization can be skipped.
        rendered.truncate(end);
        return Uri::from_maybe_shared(Bytes::from(rendered))
            .map(|uri| (uri, end, None))
            .map_err(|_| not_a_target());
    }
    if has_empty_authority(&rendered) {
        return Err(invalid(
            "the host is empty (a value in it rendered empty?)".to_owned(),
        ));
    }
    // `url::ParseError`'s messages are fixed texts, so they cannot leak the URL.
    let mut url = Url::parse(&rendered).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".to_owned()));
    }
    // Fragments are never sent over HTTP.
    url.set_fragment(None);
    let credentials = take_credentials(&mut url);
    // Parsing may percent-encode and so lengthen the URL.
    if url.as_str().len() > limit {
        return Err(RenderError::TooLarge { limit });
    }
    if url.as_str().len() > MAX_URI_BYTES {
        return Err(too_long(url.as_str().len()));
    }
    Uri::try_from(url.as_str())
        .map(|uri| (uri, url.as_str().len(), credentials))
        .map_err(|_| not_a_target())
}

/// Whether `url` is an http(s) URL with nothing between `//` and the next slash: a value that
/// rendered empty in its host (`https://{{context.host}}/api`). The URL parser would skip the
/// extra slash and take the first path segment for the host, sending the call, credentials and
/// all, to another server than the template names.
fn has_empty_authority(url: &str) -> bool {
    // As the parser reads it: leading spaces and controls dropped, tabs and line breaks
    // ignored everywhere, `\` taken for `/`.
    let mut chars = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'));
    let scheme: String = chars.by_ref().take(6).take_while(|&c| c != ':').collect();
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    chars.take(3).filter(|c| matches!(c, '/' | '\\')).count() == 3
}

/// The credentials `url` holds (`user:password@`, percent-decoded), taken out of it, as the
/// `Authorization: Basic` value HTTP clients send for them (RFC 7617), marked sensitive.
fn take_credentials(url: &mut Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decoded = |part: &str| percent_encoding::percent_decode_str(part).collect::<Vec<u8>>();
    let mut pair = decoded(url.username());
    pair.push(b':');
    pair.extend(decoded(url.password().unwrap_or_default()));
    // Neither fails on an http(s) URL, which always has a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(pair))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The HTTP method `method` names, compared case-insensitively, without allocating for the
/// usual ones.
fn parse_method(method: &str) -> Option<Method> {
    const COMMON: [Method; 5] = [
        Method::POST,
        Method::PUT,
        Method::GET,
        Method::PATCH,
        Method::DELETE,
    ];
    if let Some(common) = COMMON
        .into_iter()
        .find(|common| common.as_str().eq_ignore_ascii_case(method))
    {
        return Some(common);
    }
    Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()
}

/// For a URL that [`Url::parse`] accepts as an http(s) URL and serializes unchanged up to
/// the fragment, the length of that part; `None` for anything else, including URLs that are
/// fine but need the full parser (upper case, user info, IPv6, default or zero-padded ports,
/// dot segments, characters it would percent-encode, IDNA labels, numeric hosts other than
/// plain dotted quads...).
///
/// Deliberately conservative: `None` only costs the full parse.
fn canonical_http_url(url: &str) -> Option<usize> {
    let end = url.find('#').unwrap_or(url.len());
    let (rest, default_port) = if let Some(rest) = url[..end].strip_prefix("https://") {
        (rest, "443")
    } else if let Some(rest) = url[..end].strip_prefix("http://") {
        (rest, "80")
    } else {
        return None;
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    // An empty path would be serialized as `/`.
    if !path_and_query.starts_with('/') {
        return None;
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if !canonical_host(host) {
        return None;
    }
    if let Some(port) = port
        && (port.is_empty()
            || port.starts_with('0')
            || port == default_port
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return None;
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    if !path.bytes().all(|b| is_plain(b) || b == b'\'') || path.split('/').any(is_dot_segment) {
        return None;
    }
    // In a query, `'` is percent-encoded for http(s) and `?` is kept.
    if let Some(query) = query
        && !query.bytes().all(|b| is_plain(b) || b == b'?')
    {
        return None;
    }
    Some(end)
}

/// Bytes kept as they are in both a URL path and a query, and valid in an `http::Uri`:
/// unreserved characters, sub-delimiters but `'`, `:`, `@`, `/` and `%`.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'%'
        )
}

/// `.` or `..`, also spelled with `%2e`, which the URL parser resolves away. Over-approximated:
/// any segment made of `.`, `%`, `2`, `e` and `E` only, with a `.` or `%` in it.
fn is_dot_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 6
        && segment
            .bytes()
            .all(|b| matches!(b, b'.' | b'%' | b'2' | b'e' | b'E'))
        && segment.bytes().any(|b| matches!(b, b'.' | b'%'))
}

/// A lower-case ASCII domain name without empty labels or IDNA (`xn--`) labels whose last label
/// is not numeric, or a dotted-quad IPv4 address without leading zeros: hosts the URL parser
/// keeps as they are.
fn canonical_host(host: &str) -> bool {
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return false;
    }
    let mut labels = host.split('.');
    if labels
        .clone()
        .any(|label| label.is_empty() || label.starts_with("xn--"))
    {
        return false;
    }
    let last = labels.next_back().unwrap_or_default();
    if !last.starts_with(|c: char| c.is_ascii_digit()) {
        return true;
    }
    host.split('.').count() == 4
        && host.split('.').all(|octet| {
            octet.len() <= 3
                && octet.bytes().all(|b| b.is_ascii_digit())
                && (octet.len() == 1 || !octet.starts_with('0'))
                && octet.parse::<u8>().is_ok()
        })
}

/// Whether `name` is a header the HTTP client writes from the request itself, which a webhook's
/// headers may not set: `Host` would send the call to another site than its URL names (behind
/// a shared front end), which a signer bound to the URL's origin would vouch for;
/// `Content-Length` and `Transfer-Encoding` would cut or extend the body a signature covers;
/// the rest govern the connection rather than the request.
pub fn is_reserved_header(name: &HeaderName) -> bool {
    use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};

    [
        HOST,
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        CONNECTION,
        TE,
        TRAILER,
        UPGRADE,
    ]
    .contains(name)
        || name == "keep-alive"
        || name == "proxy-connection"
}

fn render_header(
    name: &str,
    template: &Template,
    values: &RenderValues<'_>,
    limit: usize,
) -> Result<(HeaderName, HeaderValue), RenderError> {
    let header =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| RenderError::InvalidHeaderName {
            name: name.to_owned(),
        })?;
    if is_reserved_header(&header) {
        return Err(RenderError::ReservedHeader {
            name: name.to_owned(),
        });
    }
    let rendered = template.render_limited(values, Escape::Header, limit)?;
    let mut value = HeaderValue::from_maybe_shared(Bytes::from(rendered)).map_err(|_| {
        RenderError::InvalidHeaderValue {
            header: name.to_owned(),
            variables: variable_names(template),
        }
    })?;
    // Credentials, wherever they come from (the file, the context), are never printed.
    value.set_sensitive(
        uses_secret(template) || header == AUTHORIZATION || header == PROXY_AUTHORIZATION,
    );
    Ok((header, value))
}

/// The media type a `Content-Type` template names in its own text, before any parameters
/// (`text/plain` of `text/plain; charset={{context.charset}}`); `None` when a placeholder comes
/// before the first `;`, which may render as any media type.
fn fixed_media_type(content_type: &Template) -> Option<&str> {
    // Literals never follow one another: after a first one without `;`, a placeholder comes
    // before any, and the media type is not fixed.
    match content_type.segments() {
        [] => Some(""),
        [Segment::Literal(text), rest @ ..] => match text.find(';') {
            Some(end) => Some(&text[..end]),
            None => rest.is_empty().then_some(text.as_str()),
        },
        [Segment::Var(_), ..] => None,
    }
}

/// Whether a `Content-Type` value names a JSON media type: `application/json` or a `+json`
/// suffix.
///
/// Read from the raw bytes, since a parameter may hold non-ASCII text (`profile="Bestätigung"`)
/// and the media type alone decides how the receiver reads the body: a value that refused to be
/// read as text would have the body rendered unescaped, open to injected JSON fields.
fn is_json(bytes: &[u8]) -> bool {
    let essence = bytes
        .split(|&b| b == b';')
        .next()
        .unwrap_or(bytes)
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
        || essence
            .len()
            .checked_sub(5)
            .is_some_and(|start| essence[start..].eq_ignore_ascii_case(b"+json"))
}

fn uses_secret(template: &Template) -> bool {
    template
        .variables()
        .any(|variable| matches!(variable, Variable::Secret(_)))
}

fn variable_names(template: &Template) -> Vec<String> {
    let unique: BTreeSet<String> = template.variables().map(ToString::to_string).collect();
    unique.into_iter().collect()
}

/// A rendered request, ready to send.
///
/// Header values and the body may hold secrets, so `Debug` shows only the method, the URL
/// without user info or query, the header names and the body's length. The URL is
/// `[redacted]` when the URI template uses a secret, and shown without its path when it uses
/// `armory.callbackUri`.
#[derive(Clone)]
pub struct RenderedRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    shown_url: ShownUrl,
}

/// How much of a rendered URL `Debug` may show, decided by what its template inserted.
#[derive(Clone, Copy)]
enum ShownUrl {
    /// Origin and path.
    Path,
    /// The origin only: the path may hold the gate's callback id, which resolves the gate for
    /// whoever holds a callback token.
    Origin,
    /// Nothing: a secret may have written any part of it, the host included.
    Nothing,
}

impl ShownUrl {
    fn of(template: &Template) -> Self {
        if uses_secret(template) {
            Self::Nothing
        } else if template
            .variables()
            .any(|variable| matches!(variable, Variable::Armory(ArmoryVar::CallbackUri)))
        {
            Self::Origin
        } else {
            Self::Path
        }
    }
}

impl RenderedRequest {
    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The absolute http(s) URI, without fragment.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The headers: names in the order the template first gives them, each name's values in
    /// template order.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body (empty without a body template).
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

impl From<RenderedRequest> for Request<Bytes> {
    fn from(rendered: RenderedRequest) -> Self {
        let mut request = Request::new(rendered.body);
        *request.method_mut() = rendered.method;
        *request.uri_mut() = rendered.uri;
        *request.headers_mut() = rendered.headers;
        request
    }
}

impl fmt::Debug for RenderedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Built from parts so that user info and the query are left out.
        let origin = || {
            let scheme = self.uri.scheme_str().unwrap_or_default();
            let host = self.uri.host().unwrap_or_default();
            let port = self.uri.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}")
        };
        let url = match self.shown_url {
            ShownUrl::Path => format!("{}{}", origin(), self.uri.path()),
            ShownUrl::Origin => format!("{} (path hidden)", origin()),
            ShownUrl::Nothing => "[redacted]".to_owned(),
        };
        f.debug_struct("RenderedRequest")
            .field("method", &self.method)
            .field("url", &url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field(
                "body",
                &format_args!("[redacted; {} bytes]", self.body.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the full parser makes of `input`: the serialization sent, fragment removed.
    fn full_parse(input: &str) -> Option<String> {
        let mut url = Url::parse(input).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        url.set_fragment(None);
        Some(url.as_str().to_owned())
    }

    /// Every URL the fast path takes must come out of the full parser unchanged.
    #[test]
    fn fast_path_only_takes_urls_the_full_parser_keeps_as_they_are() {
        let schemes = [
            "http://", "https://", "HTTP://", "ftp://", "", "http:/", "https:",
        ];
        let hosts = [
            "example.com",
            "api.github.com",
            "127.0.0.1",
            "127.1",
            "0x7f.0.0.1",
            "1.2.3.04",
            "256.1.1.1",
            "1.2.3.4.5",
            "1.2.3",
            "a.b.1",
            "a.123abc",
            "1password.com",
            "-a-.example",
            "ab--cd.example",
            "xn--nxasmq6b.example",
            "xn--a.example",
            "Example.com",
            "a..b",
            "a.",
            ".a",
            "",
            "u:p@h",
            "[::1]",
            "h_h",
            "h%41",
            "localhost",
        ];
        let ports = [
            "", ":", ":0", ":80", ":443", ":8080", ":08080", ":65535", ":65536", ":x",
        ];
        let rests = [
            "",
            "/",
            "/a/b",
            "/a/./b",
            "/a/../b",
            "/a/%2e/b",
            "/a/.%2E/b",
            "/.well-known/x",
            "/a..b/...",
            "/a b",
            "/a%20b",
            "/%zz",
            "/a'b",
            "/a|b",
            "/a\\b",
            "/a\tb",
            "/é",
            "//a",
            "?q=1",
            "/p?q=1&r='x'",
            "/p?q=a/b?c:d@e",
            "/p?",
            "/p?q=%41",
            "/p?q={x}",
            "/p#frag",
            "/p#",
            "/p?q#f g",
            "#f",
            "/a/b/",
            "/!$&()*+,;=:@-._~",
        ];
        let mut taken = 0;
        for scheme in schemes {
            for host in hosts {
                for port in ports {
                    for rest in rests {
                        let input = format!("{scheme}{host}{port}{rest}");
                        let Some(end) = canonical_http_url(&input) else {
                            continue;
                        };
                        taken += 1;
                        assert_eq!(
                            full_parse(&input).as_deref(),
                            Some(&input[..end]),
                            "{input}"
                        );
                    }
                }
            }
        }
        assert!(taken > 100, "{taken}");
        for usual in [
            "http://127.0.0.1:41234/repos/armory/docs-cdaas-sample/dispatches",
            "https://api.github.com/repos/o/r/dispatches?x=1#top",
            "https://hooks.example.com/run?token=s3cr3t&next=%2Fa",
        ] {
            assert!(canonical_http_url(usual).is_some(), "{usual}");
        }
    }

    #[test]
    fn sorted_secret_names_agree_with_the_set() {
        let t = |source: &str| Template::parse(source).unwrap();
        let sorted = RequestTemplate::new(t("{{secrets.a}}/x/{{secrets.a}}"))
            .with_header("Authorization", t("token {{secrets.b}}"))
            .with_body(t("{{context.c}} {{secrets.b}} {{secrets.c}}"));
        let names: Vec<&str> = sorted.sorted_secret_names().unwrap().collect();
        assert_eq!(names, ["a", "a", "b", "b", "c"]);
        let mut deduped = names.clone();
        deduped.dedup();
        assert_eq!(
            deduped,
            sorted.secret_names().into_iter().collect::<Vec<_>>()
        );
        let unsorted = RequestTemplate::new(t("{{secrets.b}}/{{secrets.a}}"));
        assert!(unsorted.sorted_secret_names().is_none());
        let repeated = RequestTemplate::new(t("{{secrets.a}}/{{secrets.b}}/{{secrets.a}}"));
        assert!(repeated.sorted_secret_names().is_none());
        let none = RequestTemplate::new(t("https://h/{{context.p}}"));
        assert_eq!(none.sorted_secret_names().unwrap().count(), 0);
    }

    #[test]
    fn methods_are_case_insensitive() {
        for (given, expected) in [
            ("post", Method::POST),
            ("Put", Method::PUT),
            ("get", Method::GET),
            ("PATCH", Method::PATCH),
            ("delete", Method::DELETE),
            ("options", Method::OPTIONS),
            ("purge", Method::from_bytes(b"PURGE").unwrap()),
        ] {
            assert_eq!(parse_method(given), Some(expected));
        }
        assert_eq!(parse_method("PO ST"), None);
        assert_eq!(parse_method(""), None);
    }

    #[test]
    fn json_content_types() {
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            (" application/vnd.api+json ", true),
            ("application/vnd.api+JSON;x=y", true),
            ("text/plain", false),
            ("json", false),
            ("+json", true),
            ("application/json-seq", false),
        ] {
            assert_eq!(is_json(value.as_bytes()), json, "{value}");
        }
    }

    fn render_with(template: &RequestTemplate, armory: &ArmoryValues, ticket: &str) -> String {
        let context = BTreeMap::from([("ticket".to_owned(), ticket.to_owned())]);
        let secrets = BTreeMap::new();
        let rendered = template
            .render(&RenderValues::new(armory, &context, &secrets))
            .unwrap();
        String::from_utf8(rendered.body().to_vec()).unwrap()
    }

    #[test]
    fn a_json_content_type_with_non_ascii_parameters_still_escapes_the_body() {
        let t = |source: &str| Template::parse(source).unwrap();
        let injection = r#"x", "approved": true, "y": ""#;
        for content_type in [
            "application/json; profile=\"Bestätigung\"",
            "Application/Vnd.Api+JSON ;  titel=Überprüfung",
        ] {
            let template = RequestTemplate::new(t("https://ci.example.com/hooks"))
                .with_header("Content-Type", t(content_type))
                .with_body(t(r#"{"ticket": "{{context.ticket}}"}"#));
            let body = render_with(&template, &ArmoryValues::default(), injection);
            let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                parsed,
                serde_json::json!({ "ticket": injection }),
                "{content_type}"
            );
        }
        // A non-ASCII byte in the media type itself makes it no JSON type.
        let template = RequestTemplate::new(t("https://ci.example.com/hooks"))
            .with_header("Content-Type", t("application/jsön"))
            .with_body(t("{{context.ticket}}"));
        assert_eq!(render_with(&template, &ArmoryValues::default(), "\""), "\"");
    }

    #[test]
    fn debug_leaves_out_the_path_of_a_uri_holding_the_callback_uri() {
        let t = |source: &str| Template::parse(source).unwrap();
        let armory = ArmoryValues {
            callback_uri: "https://gates.example/callbacks/0123456789abcdef".into(),
            ..ArmoryValues::default()
        };
        let context = BTreeMap::new();
        let secrets = BTreeMap::new();
        let values = RenderValues::new(&armory, &context, &secrets);
        for (uri, origin) in [
            ("{{armory.callbackUri}}/progress", "https://gates.example"),
            (
                "https://ci.example.com:8443/run/{{armory.callbackUri}}",
                "https://ci.example.com:8443",
            ),
        ] {
            let rendered = RequestTemplate::new(t(uri)).render(&values).unwrap();
            assert!(rendered.uri().path().contains("0123456789abcdef"), "{uri}");
            let shown = format!("{rendered:?}");
            assert!(!shown.contains("0123456789abcdef"), "{shown}");
            assert!(shown.contains(origin), "{shown}");
        }
    }
}
