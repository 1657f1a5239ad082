use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, Request};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use url::Url;

mod pointer;

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

    /// The body, query string and headers of `request`, whose body is read already (bytes).
    /// A server framework's streaming body (axum's `Body`) is not: with axum, take the parts
    /// with its extractors (`HeaderMap`, `RawQuery`, `Bytes`) and give them to
    /// [`with_headers`](Self::with_headers), [`with_query`](Self::with_query) and
    /// [`with_body`](Self::with_body), as the `webhook_receiver` example does.
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

    /// Finds the callback URI in the first of these places that holds one: the JSON body
    /// under [`CALLBACK_URI_KEYS`] at the top level or one level down (e.g.
    /// `client_payload.callbackUri`), then the query parameters of the same names, then the
    /// [`CALLBACK_URI_HEADER`] header. A JSON `null` counts as absent.
    ///
    /// Every value in that place must be the same: a key, parameter or header given more than
    /// once, several of the known keys, or the top level and objects one level down holding
    /// different values make the request ambiguous, not one of them picked.
    ///
    /// # Errors
    ///
    /// [`CallbackUriError::NotFound`] listing where it looked,
    /// [`CallbackUriError::Ambiguous`] when the place holds different values, or
    /// [`CallbackUriError::Invalid`] when the value found is not an absolute http(s) URL.
    pub fn callback_uri(&self) -> Result<Url, CallbackUriError> {
        let body = self.known_values();
        if let Ok(Some(found)) = &body
            && let Some((location, value)) = find_in_json(found)?
        {
            return parse_json_value(value, &location);
        }
        if let Some(query) = self.query {
            let mut found: Vec<_> = url::form_urlencoded::parse(query.as_bytes())
                .filter_map(|(name, value)| Some((known(&name)?, value)))
                .collect();
            found.sort_by_key(|(key, _)| rank(key));
            if let Some((location, value)) =
                agreed(found, |key| format!("query parameter `{key}`"))?
            {
                return parse_uri(&value, &location);
            }
        }
        if let Some(headers) = self.headers {
            let found = headers.get_all(CALLBACK_URI_HEADER).iter().map(|v| ((), v));
            if let Some((location, value)) =
                agreed(found, |()| format!("header `{CALLBACK_URI_HEADER}`"))?
            {
                let value = value
                    .to_str()
                    .map_err(|_| invalid(&location, "the value is not visible ASCII"))?;
                return parse_uri(value, &location);
            }
        }
        Err(CallbackUriError::NotFound {
            looked_in: self.looked_in(&body),
        })
    }

    /// Finds the callback URI at a JSON pointer (RFC 6901, e.g. `/data/links/callback`) in the
    /// body, for senders that put it somewhere unusual. Only that place is looked at, and a
    /// JSON `null` there counts as absent. A key on the pointer's path given more than once is
    /// followed each time, and every value found must be the same: a value rendered without
    /// JSON escaping can repeat the key, and a parser keeping the last one would pick its URI.
    ///
    /// # Errors
    ///
    /// [`CallbackUriError::BodyNotJson`], [`CallbackUriError::NothingAtPointer`],
    /// [`CallbackUriError::Ambiguous`] or [`CallbackUriError::Invalid`].
    pub fn callback_uri_at(&self, pointer: &str) -> Result<Url, CallbackUriError> {
        let not_json = |reason| CallbackUriError::BodyNotJson {
            pointer: pointer.to_owned(),
            reason,
        };
        let found: Vec<Cow<'_, Value>> = match self.body {
            // A parsed value holds each key once.
            Body::Json(json) => json
                .pointer(pointer)
                .map(Cow::Borrowed)
                .into_iter()
                .collect(),
            Body::Bytes(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => {
                pointer::values_at(bytes, pointer)
                    .map_err(not_json)?
                    .into_iter()
                    .map(Cow::Owned)
                    .collect()
            }
            Body::Absent | Body::Bytes(_) => return Err(not_json("no body was given".to_owned())),
        };
        let location = format!("body at `{pointer}`");
        let found = found.into_iter().filter(|value| !value.is_null());
        match agreed(found.map(|value| ((), value)), |()| location.clone())? {
            Some((location, value)) => parse_json_value(&value, &location),
            None => Err(CallbackUriError::NothingAtPointer {
                pointer: pointer.to_owned(),
            }),
        }
    }

    /// What [`Self::callback_uri`] reads of the body: `Ok(None)` without a body, `Err(reason)`
    /// when it is not JSON. Parsing into a [`Value`] would keep only the last of a repeated
    /// key, so raw bytes are read with a visitor instead.
    fn known_values(&self) -> Result<Option<KnownValues<'a>>, String> {
        match self.body {
            Body::Absent => Ok(None),
            Body::Json(value) => Ok(Some(KnownValues::of_value(value))),
            Body::Bytes(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(None),
            Body::Bytes(bytes) => KnownValues::read(bytes).map(Some),
        }
    }

    fn looked_in<T>(&self, body: &Result<Option<T>, String>) -> Vec<String> {
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

/// The value under the known keys at the top level and of the objects one level down; it must
/// be the same wherever it is given. Objects one level down come in no meaningful order (a JSON
/// object is unordered), nor do the known keys, and a top-level key is as easily added as a
/// nested one (a value rendered without JSON escaping can close the object it is in and add
/// either), so when values differ none is picked: taking the first, or the top level's, would
/// let whoever adds a key choose.
fn find_in_json<'v>(
    found: &'v KnownValues<'_>,
) -> Result<Option<(String, &'v Value)>, CallbackUriError> {
    let mut top: Vec<_> = found
        .top
        .iter()
        .map(|(key, value)| (BodyPlace::Top(key), value.as_ref()))
        .collect();
    top.sort_by_key(|(place, _)| place.rank());
    let mut nested: Vec<_> = found
        .nested
        .iter()
        .flat_map(|(outer, known)| {
            known
                .iter()
                .map(move |(key, value)| (BodyPlace::Nested(outer.as_ref(), key), value.as_ref()))
        })
        .collect();
    // Key order, so that the first place named does not depend on the sender's order.
    nested.sort_by(|(a, _), (b, _)| (a.outer(), a.rank()).cmp(&(b.outer(), b.rank())));
    agreed(top.into_iter().chain(nested), BodyPlace::shown)
}

/// Where in the body a known key was found.
#[derive(Clone, Copy)]
enum BodyPlace<'v> {
    Top(&'static str),
    Nested(&'v str, &'static str),
}

impl<'v> BodyPlace<'v> {
    /// The object one level down holding it; the top level sorts first.
    fn outer(self) -> Option<&'v str> {
        match self {
            Self::Top(_) => None,
            Self::Nested(outer, _) => Some(outer),
        }
    }

    fn rank(self) -> Option<usize> {
        match self {
            Self::Top(key) | Self::Nested(_, key) => rank(key),
        }
    }

    fn shown(self) -> String {
        match self {
            Self::Top(key) => format!("body at `{key}`"),
            Self::Nested(outer, key) => format!("body at `{}.{key}`", shown_key(outer)),
        }
    }
}

/// The value every one of `found` holds, with the place of the first, or
/// [`CallbackUriError::Ambiguous`]. `place` names a place; only those in an error are named.
fn agreed<P, V: PartialEq>(
    found: impl IntoIterator<Item = (P, V)>,
    place: impl Fn(P) -> String,
) -> Result<Option<(String, V)>, CallbackUriError> {
    let mut found = found.into_iter();
    let Some((first, value)) = found.next() else {
        return Ok(None);
    };
    let others: Vec<String> = found
        .filter(|(_, other)| *other != value)
        .map(|(other, _)| place(other))
        .collect();
    if others.is_empty() {
        return Ok(Some((place(first), value)));
    }
    let mut places = vec![place(first)];
    places.extend(others);
    Err(CallbackUriError::Ambiguous { places })
}

/// The first few of `places` and how many more there are: the body is untrusted and may hold
/// thousands.
fn shown_places(places: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut shown = places
        .iter()
        .take(SHOWN)
        .cloned()
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

/// `key` as the entry of [`CALLBACK_URI_KEYS`] it is, if it is one.
fn known(key: &str) -> Option<&'static str> {
    CALLBACK_URI_KEYS.into_iter().find(|known| *known == key)
}

/// Where a known key stands in [`CALLBACK_URI_KEYS`].
fn rank(key: &str) -> Option<usize> {
    CALLBACK_URI_KEYS.iter().position(|known| *known == key)
}

/// A parser's error as a reason the body is not JSON. Its message is not quoted: it may echo
/// body content.
fn not_json(error: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        error.classify(),
        error.line(),
        error.column()
    )
}

/// A non-null value under one of [`CALLBACK_URI_KEYS`].
type Known<'a> = (&'static str, Cow<'a, Value>);

/// What the finder reads of a JSON body: the non-null values under known keys at the top level,
/// and those of each object one level down with its key, in the body's order, a repeated key
/// (which a parsed [`Value`] cannot hold) as often as it is given.
#[derive(Default)]
struct KnownValues<'a> {
    top: Vec<Known<'a>>,
    nested: Vec<(Cow<'a, str>, Vec<Known<'a>>)>,
}

impl<'a> KnownValues<'a> {
    fn of_value(json: &'a Value) -> Self {
        let mut found = Self::default();
        for (key, value) in json.as_object().into_iter().flatten() {
            match (known(key), value) {
                (_, Value::Null) => {}
                (Some(known), value) => found.top.push((known, Cow::Borrowed(value))),
                (None, Value::Object(object)) => {
                    let values: Vec<Known<'a>> = object
                        .iter()
                        .filter(|(_, value)| !value.is_null())
                        .filter_map(|(key, value)| Some((known(key)?, Cow::Borrowed(value))))
                        .collect();
                    if !values.is_empty() {
                        found.nested.push((Cow::Borrowed(key), values));
                    }
                }
                (None, _) => {}
            }
        }
        found
    }

    /// Reads only what the finder needs: values under known keys are parsed, every other
    /// value is skipped unread but for the objects one level down, so a body costs little more
    /// than its known keys' values. serde_json refuses nesting deeper than 128 levels where it
    /// parses, and skips deeper nesting without recursion, so hostile input cannot exhaust the
    /// stack.
    fn read(bytes: &'a [u8]) -> Result<Self, String> {
        // Skipping a string does not check that it is UTF-8 (RFC 8259 §8.1).
        let text = std::str::from_utf8(bytes).map_err(|error| format!("not UTF-8: {error}"))?;
        let mut json = serde_json::Deserializer::from_str(text);
        IfObject(TopLevel)
            .deserialize(&mut json)
            .and_then(|found| json.end().map(|()| found))
            .map_err(|error| not_json(&error))
    }
}

/// How [`IfObject`] reads an object.
trait ObjectReader<'de> {
    /// What it keeps of an object, and the default of any other value.
    type Kept: Default;

    fn read<A: MapAccess<'de>>(self, map: A) -> Result<Self::Kept, A::Error>;
}

/// Reads what its [`ObjectReader`] keeps of an object, and skips any other JSON value.
struct IfObject<R>(R);

impl<'de, R: ObjectReader<'de>> DeserializeSeed<'de> for IfObject<R> {
    type Value = R::Kept;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<R::Kept, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, R: ObjectReader<'de>> Visitor<'de> for IfObject<R> {
    type Value = R::Kept;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<R::Kept, A::Error> {
        self.0.read(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<R::Kept, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(R::Kept::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<R::Kept, E> {
        Ok(R::Kept::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<R::Kept, E> {
        Ok(R::Kept::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<R::Kept, E> {
        Ok(R::Kept::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<R::Kept, E> {
        Ok(R::Kept::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<R::Kept, E> {
        Ok(R::Kept::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<R::Kept, E> {
        Ok(R::Kept::default())
    }
}

/// The body's top level: its known keys' values, and those of its objects one level down.
struct TopLevel;

impl<'de> ObjectReader<'de> for TopLevel {
    type Kept = KnownValues<'de>;

    fn read<A: MapAccess<'de>>(self, mut map: A) -> Result<KnownValues<'de>, A::Error> {
        let mut found = KnownValues::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key {
                Key::Known(key) => keep(&mut map, key, &mut found.top)?,
                Key::Other(outer) => {
                    // Taken raw, and read again only if it is an object: read as it comes, a
                    // number JSON allows but no `f64` holds (`1e400`) would fail the whole
                    // body, and the search would fall through to the query and header.
                    let raw: &'de RawValue = map.next_value()?;
                    if !raw.get().starts_with('{') {
                        continue;
                    }
                    let mut object = serde_json::Deserializer::from_str(raw.get());
                    let values = IfObject(OneLevelDown)
                        .deserialize(&mut object)
                        .map_err(de::Error::custom)?;
                    if !values.is_empty() {
                        found.nested.push((outer, values));
                    }
                }
            }
        }
        Ok(found)
    }
}

/// An object one level down: its known keys' values.
struct OneLevelDown;

impl<'de> ObjectReader<'de> for OneLevelDown {
    type Kept = Vec<Known<'de>>;

    fn read<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Known<'de>>, A::Error> {
        let mut found = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key {
                Key::Known(key) => keep(&mut map, key, &mut found)?,
                Key::Other(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// Adds the value of the entry `map` is at, under the known `key`, to `found` unless it is
/// `null`.
fn keep<'de, A: MapAccess<'de>>(
    map: &mut A,
    key: &'static str,
    found: &mut Vec<Known<'de>>,
) -> Result<(), A::Error> {
    match map.next_value()? {
        Value::Null => {}
        value => found.push((key, Cow::Owned(value))),
    }
    Ok(())
}

/// A key of the body: one of [`CALLBACK_URI_KEYS`], or another, borrowed from the body where
/// it has no escapes.
enum Key<'de> {
    Known(&'static str),
    Other(Cow<'de, str>),
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(known(key).map_or(Key::Other(Cow::Borrowed(key)), Key::Known))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(known(key).map_or_else(|| Key::Other(Cow::Owned(key.to_owned())), Key::Known))
    }
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
    // No URI holds whitespace, which the URL parser would quietly percent-encode: there, it
    // joins two values, as a proxy merging two header lines into one does (`a, b`).
    if text.trim().contains(char::is_whitespace) {
        return Err(invalid(
            location,
            "it holds whitespace, which no URI does (two values joined into one?)",
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
    /// The place where the callback URI was found holds different ones: a key, query
    /// parameter or header given more than once, several of [`CALLBACK_URI_KEYS`], the body's
    /// top level and objects one level down, or several such objects, or a key on the path of
    /// a JSON pointer given more than once. A value rendered into the body or query without
    /// escaping can add one of its own, so none is picked.
    #[error(
        "the request holds different callback URIs ({}); none is picked, as one may be forged: \
         have the sender send one; a JSON pointer (ReceivedRequest::callback_uri_at) can name \
         one in the body whose key is given once",
        shown_places(places)
    )]
    Ambiguous {
        /// Where they are, as [`CallbackUriError::Invalid`] names a location (e.g.
        /// ``body at `client_payload.callbackUri` ``, ``query parameter `callbackUri` ``): the
        /// first place in key order (the top level, then objects by name; within each, the
        /// known keys in the order of [`CALLBACK_URI_KEYS`], then as given), then every
        /// place whose URI differs from that one's (a place repeating the first place's URI
        /// is left out). A key, parameter or header given twice is named twice. The message
        /// names only the first few.
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

    /// A context value rendered without escaping into a nested object can close it and add a
    /// top-level key as easily as a key one level down: the top level does not win.
    #[test]
    fn a_top_level_uri_beside_a_different_nested_one_is_ambiguous() {
        let body =
            br#"{"a": {"callbackUri": "https://nested/x"}, "callback_url": "https://top/x"}"#;
        let err = ReceivedRequest::new()
            .with_body(body)
            .callback_uri()
            .unwrap_err();
        assert_eq!(
            err,
            CallbackUriError::Ambiguous {
                places: vec![
                    "body at `callback_url`".into(),
                    "body at `a.callbackUri`".into()
                ]
            }
        );

        let same = br#"{"a": {"callbackUri": "https://gate/x"}, "callback_url": "https://gate/x"}"#;
        let uri = ReceivedRequest::new()
            .with_body(same)
            .callback_uri()
            .unwrap();
        assert_eq!(uri.host_str(), Some("gate"));
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
        assert!(shown.contains("body at `k0000.callbackUri`"), "{shown}");
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
                places: vec![
                    "body at `a.callbackUri`".into(),
                    "body at `client_payload.callbackUri`".into()
                ]
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

    /// Deeper objects, arrays and other values one level down are skipped unread, so a body
    /// costs no more to search than it did: repeats there are not looked for, and a number
    /// serde_json would refuse to read there does not make the body unreadable.
    #[test]
    fn only_the_top_level_and_objects_one_level_down_are_read() {
        let body = br#"{"a": {"b": {"callbackUri": "https://x/1", "callbackUri": "https://x/2"},
                              "c": [1e400, {"callbackUri": "https://x/3"}]},
                        "callbackUri": "https://gate/x"}"#;
        let uri = ReceivedRequest::new()
            .with_body(body)
            .callback_uri()
            .unwrap();
        assert_eq!(uri.host_str(), Some("gate"));
    }

    /// Skipping a string does not check that it is UTF-8, so the body is checked as a whole.
    #[test]
    fn a_body_not_utf8_is_not_json_even_where_it_is_skipped() {
        let body = b"{\"callbackUri\": \"https://gate/x\", \"a\": {\"b\": \"\xff\"}}";
        let error = ReceivedRequest::new()
            .with_body(body)
            .callback_uri()
            .unwrap_err();
        assert!(error.to_string().contains("not JSON"), "{error}");
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
