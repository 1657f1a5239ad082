//! A webhook's whole request as templates, and the request rendered from them.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use url::Url;

use super::{Escape, RenderError, RenderValues, Template, Variable};

/// A webhook's request: method, `uriTemplate`, header templates and `bodyTemplate.inline`.
///
/// Built from templates the deployment file's validator has already parsed, kept for the gate's
/// life, and rendered again for every attempt (so rendered secrets are never stored).
///
/// ```
/// use hookgate::template::{RequestTemplate, Template};
/// let request = RequestTemplate::new(Template::parse("https://ci.example.com/hooks").unwrap())
///     .with_header("Authorization", Template::parse("Bearer {{secrets.ci_token}}").unwrap())
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

    /// Adds a header; headers are sent in the order added, repeats included.
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
    /// header renders to `application/json` or `…+json` (parameters allowed), otherwise with
    /// [`Escape::None`]. Header values that use a secret are marked sensitive.
    pub fn render(&self, values: &RenderValues<'_>) -> Result<RenderedRequest, RenderError> {
        let method =
            Method::from_bytes(self.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                RenderError::InvalidMethod {
                    method: self.method.clone(),
                }
            })?;
        let uri = render_uri(&self.uri, values)?;
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        let mut json_body = false;
        for (name, template) in &self.headers {
            let (header, value) = render_header(name, template, values)?;
            json_body |= header == CONTENT_TYPE && is_json(&value);
            headers.append(header, value);
        }
        let body = match &self.body {
            Some(template) => {
                let escape = if json_body {
                    Escape::Json
                } else {
                    Escape::None
                };
                Bytes::from(template.render(values, escape)?)
            }
            None => Bytes::new(),
        };
        Ok(RenderedRequest {
            method,
            uri,
            headers,
            body,
            uri_uses_secret: uses_secret(&self.uri),
        })
    }

    fn templates(&self) -> impl Iterator<Item = &Template> {
        std::iter::once(&self.uri)
            .chain(self.headers.iter().map(|(_, value)| value))
            .chain(self.body.as_ref())
    }
}

fn render_uri(template: &Template, values: &RenderValues<'_>) -> Result<Uri, RenderError> {
    let invalid = |reason: String| RenderError::InvalidUri {
        reason,
        variables: variable_names(template),
    };
    let rendered = template.render(values, Escape::Uri)?;
    // `url::ParseError`'s messages are fixed texts, so they cannot leak the URL.
    let mut url = Url::parse(&rendered).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".to_owned()));
    }
    // Fragments are never sent over HTTP.
    url.set_fragment(None);
    Uri::try_from(url.as_str()).map_err(|_| invalid("not a valid HTTP request target".to_owned()))
}

fn render_header(
    name: &str,
    template: &Template,
    values: &RenderValues<'_>,
) -> Result<(HeaderName, HeaderValue), RenderError> {
    let header =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| RenderError::InvalidHeaderName {
            name: name.to_owned(),
        })?;
    let rendered = template.render(values, Escape::Header)?;
    let mut value = HeaderValue::from_bytes(rendered.as_bytes()).map_err(|_| {
        RenderError::InvalidHeaderValue {
            header: name.to_owned(),
            variables: variable_names(template),
        }
    })?;
    value.set_sensitive(uses_secret(template));
    Ok((header, value))
}

fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(content_type) = content_type.to_str() else {
        return false;
    };
    let essence = content_type
        .split_once(';')
        .map_or(content_type, |(essence, _)| essence)
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
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
/// without query (or `[redacted]` when the URI template uses a secret), the header names and
/// the body's length.
#[derive(Clone)]
pub struct RenderedRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    uri_uses_secret: bool,
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

    /// The headers, in template order.
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
        let url = if self.uri_uses_secret {
            "[redacted]".to_owned()
        } else {
            // Built from parts so that user info and the query are left out.
            let scheme = self.uri.scheme_str().unwrap_or_default();
            let host = self.uri.host().unwrap_or_default();
            let port = self.uri.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{}", self.uri.path())
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
