use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, Request};
use serde_json::Value;
use url::Url;

/// The JSON keys and query parameters that commonly hold the callback URI, in the order they
/// are tried.
pub const CALLBACK_URI_KEYS: [&str; 4] =
    ["callbackUri", "callbackURL", "callback_url", "callbackUrl"];

/// The header that may hold the callback URI (matched case-insensitively).
pub const CALLBACK_URI_HEADER: &str = "CallbackURI";

/// Longer values are refused rather than parsed; real callback URIs are well under 1 KiB.
const MAX_URI_BYTES: usize = 8 * 1024;

/// What the external process received with the webhook call, as far as finding the callback
/// URI is concerned.
///
/// ```
/// use hookgate::receiver::ReceivedRequest;
/// let body = br#"{"client_payload": {"callbackUri": "https://gate.example/callbacks/abc"}}"#;
/// let uri = ReceivedRequest::new().with_body(body).callback_uri().unwrap();
/// assert_eq!(uri.as_str(), "https://gate.example/callbacks/abc");
/// ```
///
/// `Debug` shows which parts were given and their sizes, never their contents: the
/// headers and body of a webhook call may carry its rendered secrets.
#[derive(Clone, Copy, Default)]
pub struct ReceivedRequest<'a> {
    body: Body<'a>,
    query: Option<&'a str>,
    headers: Option<&'a HeaderMap>,
}

#[derive(Clone, Copy, Default)]
enum Body<'a> {
    #[default]
    Absent,
    Bytes(&'a [u8]),
    Json(&'a Value),
}

impl fmt::Debug for ReceivedRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match self.body {
            Body::Absent => "absent".to_owned(),
            Body::Bytes(bytes) => format!("{} bytes", bytes.len()),
            Body::Json(_) => "parsed JSON".to_owned(),
        };
        f.debug_struct("ReceivedRequest")
            .field("body", &format_args!("{body}"))
            .field("query_bytes", &self.query.map(str::len))
            .field("headers", &self.headers.map(HeaderMap::len))
            .finish()
    }
}

impl<'a> ReceivedRequest<'a> {
    /// Nothing received yet; add the parts with the `with_*` methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// The body, query string and headers of `request`.
    pub fn from_http<B: AsRef<[u8]>>(request: &'a Request<B>) -> Self {
        Self {
            body: Body::Bytes(request.body().as_ref()),
            query: request.uri().query(),
            headers: Some(request.headers()),
        }
    }

    /// The raw body; it is searched when it parses as JSON.
    #[must_use]
    pub fn with_body(mut self, body: &'a [u8]) -> Self {
        self.body = Body::Bytes(body);
        self
    }

    /// A body the caller already parsed.
    #[must_use]
    pub fn with_json(mut self, body: &'a Value) -> Self {
        self.body = Body::Json(body);
        self
    }

    /// The query string of the URL that was called (without the leading `?`).
    #[must_use]
    pub fn with_query(mut self, query: &'a str) -> Self {
        self.query = Some(query);
        self
    }

    /// The request headers.
    #[must_use]
    pub fn with_headers(mut self, headers: &'a HeaderMap) -> Self {
        self.headers = Some(headers);
        self
    }

    /// Finds the callback URI in the usual places, first match wins: the JSON body under
    /// [`CALLBACK_URI_KEYS`] at the top level, then one level down (e.g.
    /// `client_payload.callbackUri`), then the query parameters of the same names, then the
    /// [`CALLBACK_URI_HEADER`] header. A JSON `null` counts as absent.
    ///
    /// # Errors
    ///
    /// [`CallbackUriError::NotFound`] listing where it looked,
    /// [`CallbackUriError::Ambiguous`] when objects one level down hold different values, or
    /// [`CallbackUriError::Invalid`] when the first value found is not an absolute http(s) URL.
    pub fn callback_uri(&self) -> Result<Url, CallbackUriError> {
        let body = self.json();
        if let Ok(Some(json)) = &body
            && let Some((location, value)) = find_in_json(json)?
        {
            return parse_json_value(value, &location);
        }
        if let Some(query) = self.query {
            for key in CALLBACK_URI_KEYS {
                let found =
                    url::form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == key);
                if let Some((_, value)) = found {
                    return parse_uri(&value, &format!("query parameter `{key}`"));
                }
            }
        }
        if let Some(value) = self
            .headers
            .and_then(|headers| headers.get(CALLBACK_URI_HEADER))
        {
            let location = format!("header `{CALLBACK_URI_HEADER}`");
            let value = value
                .to_str()
                .map_err(|_| invalid(&location, "the value is not visible ASCII"))?;
            return parse_uri(value, &location);
        }
        Err(CallbackUriError::NotFound {
            looked_in: self.looked_in(&body),
        })
    }

    /// Finds the callback URI at a JSON pointer (RFC 6901, e.g. `/data/links/callback`) in the
    /// body, for senders that put it somewhere unusual. Only that place is looked at.
    ///
    /// # Errors
    ///
    /// [`CallbackUriError::BodyNotJson`], [`CallbackUriError::NothingAtPointer`] or
    /// [`CallbackUriError::Invalid`].
    pub fn callback_uri_at(&self, pointer: &str) -> Result<Url, CallbackUriError> {
        let json = match self.json() {
            Ok(Some(json)) => json,
            Ok(None) => {
                return Err(CallbackUriError::BodyNotJson {
                    pointer: pointer.to_owned(),
                    reason: "no body was given".to_owned(),
                });
            }
            Err(reason) => {
                return Err(CallbackUriError::BodyNotJson {
                    pointer: pointer.to_owned(),
                    reason,
                });
            }
        };
        match json.pointer(pointer) {
            None | Some(Value::Null) => Err(CallbackUriError::NothingAtPointer {
                pointer: pointer.to_owned(),
            }),
            Some(value) => parse_json_value(value, &format!("body at `{pointer}`")),
        }
    }

    /// The parsed body: `Ok(None)` without a body, `Err(reason)` when it is not JSON.
    fn json(&self) -> Result<Option<Cow<'a, Value>>, String> {
        match self.body {
            Body::Absent => Ok(None),
            Body::Json(value) => Ok(Some(Cow::Borrowed(value))),
            Body::Bytes(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(None),
            // serde_json refuses nesting deeper than 128 levels, so hostile input cannot
            // exhaust the stack. Its messages are not quoted: they may echo body content.
            Body::Bytes(bytes) => serde_json::from_slice(bytes)
                .map(|value| Some(Cow::Owned(value)))
                .map_err(|error| {
                    format!(
                        "{:?} error at line {} column {}",
                        error.classify(),
                        error.line(),
                        error.column()
                    )
                }),
        }
    }

    fn looked_in(&self, body: &Result<Option<Cow<'a, Value>>, String>) -> Vec<String> {
        let keys = CALLBACK_URI_KEYS.join(", ");
        let body = match body {
            Ok(Some(_)) => {
                format!("the JSON body (keys {keys}, at the top level and one level down)")
            }
            Ok(None) => "the body (empty or none given)".to_owned(),
            Err(reason) => format!("the body (not JSON: {reason})"),
        };
        let query = match self.query {
            Some(_) => "the query parameters of the same names".to_owned(),
            None => "the query string (none given)".to_owned(),
        };
        let header = match self.headers {
            Some(_) => format!("the `{CALLBACK_URI_HEADER}` header"),
            None => "the headers (none given)".to_owned(),
        };
        vec![body, query, header]
    }
}

/// The first non-null value under a known key at the top level, or else the one value under a
/// known key one level down. Objects one level down come in no meaningful order (a JSON object
/// is unordered, and the keys are sorted here), so when several hold different values none is
/// picked: taking the first would let whoever adds an object with an earlier name choose.
fn find_in_json(json: &Value) -> Result<Option<(String, &Value)>, CallbackUriError> {
    let Some(object) = json.as_object() else {
        return Ok(None);
    };
    if let Some((key, value)) = known_key(object) {
        return Ok(Some((format!("body at `{key}`"), value)));
    }
    let mut found = object.iter().filter_map(|(outer, nested)| {
        let (key, value) = known_key(nested.as_object()?)?;
        Some((format!("{}.{key}", shown_key(outer)), value))
    });
    let Some((first, value)) = found.next() else {
        return Ok(None);
    };
    let others: Vec<String> = found
        .filter(|(_, other)| *other != value)
        .map(|(place, _)| place)
        .collect();
    if others.is_empty() {
        return Ok(Some((format!("body at `{first}`"), value)));
    }
    let mut places = vec![first];
    places.extend(others);
    Err(CallbackUriError::Ambiguous { places })
}

/// The first few of `places`, quoted, and how many more there are: the body is untrusted and
/// may hold thousands.
fn shown_places(places: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut shown = places
        .iter()
        .take(SHOWN)
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if places.len() > SHOWN {
        shown.push_str(&format!(" and {} more", places.len() - SHOWN));
    }
    shown
}

/// A key of the received body as an error message may show it: the body is untrusted.
fn shown_key(key: &str) -> String {
    const MAX_CHARS: usize = 64;
    super::untrusted_text(key, MAX_CHARS)
}

fn known_key(object: &serde_json::Map<String, Value>) -> Option<(&'static str, &Value)> {
    CALLBACK_URI_KEYS
        .into_iter()
        .find_map(|key| match object.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some((key, value)),
        })
}

fn parse_json_value(value: &Value, location: &str) -> Result<Url, CallbackUriError> {
    match value {
        Value::String(text) => parse_uri(text, location),
        Value::Bool(_) => Err(invalid(location, "it is a boolean, not a string")),
        Value::Number(_) => Err(invalid(location, "it is a number, not a string")),
        Value::Array(_) => Err(invalid(location, "it is an array, not a string")),
        Value::Object(_) => Err(invalid(location, "it is an object, not a string")),
        Value::Null => Err(invalid(location, "it is null")),
    }
}

fn parse_uri(text: &str, location: &str) -> Result<Url, CallbackUriError> {
    if text.len() > MAX_URI_BYTES {
        return Err(invalid(
            location,
            &format!("it is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    let url = Url::parse(text)
        .map_err(|error| invalid(location, &format!("it does not parse ({error})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(location, "its scheme is not http or https"));
    }
    if url.host().is_none() {
        return Err(invalid(location, "it has no host"));
    }
    Ok(url)
}

fn invalid(location: &str, reason: &str) -> CallbackUriError {
    CallbackUriError::Invalid {
        location: location.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Why no usable callback URI was found. Messages never quote the received values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackUriError {
    /// None of the usual places holds a callback URI.
    #[error(
        "no callback URI found; looked in {}; if the sender puts it elsewhere, name the place \
         with a JSON pointer (ReceivedRequest::callback_uri_at)",
        looked_in.join(", ")
    )]
    NotFound {
        /// The places searched, with a note where a part was missing or not JSON.
        looked_in: Vec<String>,
    },
    /// A callback URI was found but cannot be used.
    #[error(
        "the callback URI in the {location} is unusable: {reason}; it must be an absolute \
         http(s) URL"
    )]
    Invalid {
        /// Where it was found, e.g. ``body at `client_payload.callbackUri` ``.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Objects one level down in the body hold different callback URIs.
    #[error(
        "the body holds different callback URIs at {}; name the one to use with a JSON pointer \
         (ReceivedRequest::callback_uri_at)",
        shown_places(places)
    )]
    Ambiguous {
        /// Where they are, e.g. `client_payload.callbackUri`: the first place in key order,
        /// then every place whose URI differs from that one's (a place repeating the first
        /// place's URI is left out). The message names only the first few.
        places: Vec<String>,
    },
    /// A JSON pointer was given but the body is missing or not JSON.
    #[error("cannot follow JSON pointer `{pointer}`: the body is not JSON ({reason})")]
    BodyNotJson {
        /// The pointer asked for.
        pointer: String,
        /// Why the body is not JSON.
        reason: String,
    },
    /// The JSON pointer leads nowhere (or to `null`).
    #[error(
        "nothing at JSON pointer `{pointer}` in the body; check it against what the sender \
         puts there (a pointer looks like `/client_payload/callbackUri`)"
    )]
    NothingAtPointer {
        /// The pointer asked for.
        pointer: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_wins_over_nested() {
        let body =
            br#"{"a": {"callbackUri": "https://nested/x"}, "callback_url": "https://top/x"}"#;
        let uri = ReceivedRequest::new()
            .with_body(body)
            .callback_uri()
            .unwrap();
        assert_eq!(uri.host_str(), Some("top"));
    }

    #[test]
    fn an_ambiguous_body_of_thousands_of_uris_makes_a_short_message() {
        let objects: Vec<String> = (0..5000)
            .map(|i| format!(r#""k{i:04}": {{"callbackUri": "https://gate/{i}"}}"#))
            .collect();
        let body = format!("{{{}}}", objects.join(","));
        let err = ReceivedRequest::new()
            .with_body(body.as_bytes())
            .callback_uri()
            .unwrap_err();
        let CallbackUriError::Ambiguous { places } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(places.len(), 5000, "every place is kept");
        let shown = err.to_string();
        assert!(shown.contains("`k0000.callbackUri`"), "{shown}");
        assert!(shown.contains("and 4995 more"), "{shown}");
        assert!(shown.len() < 400, "{} bytes: {shown}", shown.len());
    }

    #[test]
    fn different_nested_uris_are_ambiguous_and_equal_ones_are_not() {
        let forged = br#"{"a": {"callbackUri": "https://evil/x"},
                          "client_payload": {"callbackUri": "https://gate/x"}}"#;
        let err = ReceivedRequest::new()
            .with_body(forged)
            .callback_uri()
            .unwrap_err();
        assert_eq!(
            err,
            CallbackUriError::Ambiguous {
                places: vec!["a.callbackUri".into(), "client_payload.callbackUri".into()]
            }
        );
        assert!(!err.to_string().contains("evil"), "{err}");
        let pointer = ReceivedRequest::new()
            .with_body(forged)
            .callback_uri_at("/client_payload/callbackUri")
            .unwrap();
        assert_eq!(pointer.host_str(), Some("gate"));

        let repeated = br#"{"a": {"callbackUri": "https://gate/x"},
                            "b": {"callback_url": "https://gate/x"}}"#;
        let uri = ReceivedRequest::new()
            .with_body(repeated)
            .callback_uri()
            .unwrap();
        assert_eq!(uri.host_str(), Some("gate"));
    }

    #[test]
    fn body_wins_over_query_and_header() {
        let mut headers = HeaderMap::new();
        headers.insert("callbackuri", "https://header/x".parse().unwrap());
        let request = ReceivedRequest::new()
            .with_body(br#"{"callbackURL": "https://body/x"}"#)
            .with_query("callbackUri=https%3A%2F%2Fquery%2Fx")
            .with_headers(&headers);
        assert_eq!(request.callback_uri().unwrap().host_str(), Some("body"));
    }

    #[test]
    fn null_counts_as_absent() {
        let request = ReceivedRequest::new()
            .with_body(br#"{"callbackUri": null}"#)
            .with_query("callbackUrl=http://query:8080/cb");
        assert_eq!(request.callback_uri().unwrap().port(), Some(8080));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        let error = ReceivedRequest::new()
            .with_body(deep.as_bytes())
            .callback_uri()
            .unwrap_err();
        assert!(matches!(error, CallbackUriError::NotFound { .. }));
        assert!(error.to_string().contains("not JSON"), "{error}");
    }

    #[test]
    fn huge_value_is_refused_without_quoting_it() {
        let body = format!(r#"{{"callbackUri": "https://h/{}"}}"#, "a".repeat(100_000));
        let error = ReceivedRequest::new()
            .with_body(body.as_bytes())
            .callback_uri()
            .unwrap_err();
        assert!(matches!(error, CallbackUriError::Invalid { .. }));
        assert!(error.to_string().len() < 300);
    }
}
