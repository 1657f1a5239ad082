//! Fuzzes the built-in OAuth2 token endpoint (`server::token_endpoint` over a `TokenIssuer`,
//! PROTOCOL.md §6) with a fuzz-chosen method, `Authorization` (Basic credentials of the right,
//! a wrong or a fuzz-chosen client, or any bytes), `Content-Type`, `Content-Encoding` and form
//! body. Every answer must be RFC 6749 §5.1/§5.2 shaped and `no-store`, carry no client
//! secret, and a token must only go to a request that presented a configured client's id with
//! that client's secret (read from the request here, independently of hookgate).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hookgate::Secret;
use hookgate::auth::{CallbackAuthorizer, IssuerClient, TokenIssuer};
use hookgate::server::token_endpoint;
use hookgate::test_util::ManualClock;
use http::header::{
    ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, PRAGMA,
    WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use shared::runtime;

mod shared;

const ISSUER: &str = "https://hookgate.example";
const AUDIENCE: &str = "hookgate";
const SIGNING_KEY: &str = "fuzz signing key of at least thirty-two bytes";
const LIFETIME_SECS: u64 = 600;

/// A client with a plain id and secret.
const CI_ID: &str = "ci";
const CI_SECRET: &str = "ci-secret-5f1d9a7c3e0b8d6f4a2c";
const CI_SCOPES: [&str; 2] = ["callbacks", "approvals"];
/// A client whose id and secret hold what form-urlencoding and Basic's `:` must carry.
const DEPLOY_ID: &str = "deploy bot:1+x";
const DEPLOY_SECRET: &str = "dep:loy&secret=+%41 9c7e1a3b5d";
const DEPLOY_SCOPES: [&str; 1] = ["approvals"];
/// A secret no client has, long and distinctive enough to spot if an answer echoes it.
const CANARY_SECRET: &str = "canary-not-a-client-secret-4e8b2d";

/// RFC 6749 §5.2's error codes (`server_error` is §4.1.2.1's, not one of them).
const RFC6749_ERRORS: [&str; 6] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

#[derive(Debug, Arbitrary)]
enum Id<'a> {
    Ci,
    Deploy,
    Raw(&'a str),
}

impl Id<'_> {
    fn text(&self) -> &str {
        match self {
            Id::Ci => CI_ID,
            Id::Deploy => DEPLOY_ID,
            Id::Raw(text) => text,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum ClientSecret<'a> {
    Ci,
    Deploy,
    Canary,
    Raw(&'a str),
}

impl ClientSecret<'_> {
    fn text(&self) -> &str {
        match self {
            ClientSecret::Ci => CI_SECRET,
            ClientSecret::Deploy => DEPLOY_SECRET,
            ClientSecret::Canary => CANARY_SECRET,
            ClientSecret::Raw(text) => text,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Param<'a> {
    /// `None` is `client_credentials`.
    GrantType(Option<&'a str>),
    ClientId(Id<'a>),
    ClientSecret(ClientSecret<'a>),
    /// `None` is the issuer's audience.
    Audience(Option<&'a str>),
    Scope(&'a str),
    Other {
        name: &'a str,
        value: &'a str,
    },
}

#[derive(Debug, Arbitrary)]
enum Body<'a> {
    /// Form-urlencoded parameters.
    Form(Vec<Param<'a>>),
    /// The same, padded past the endpoint's 16 KiB limit.
    Huge(Vec<Param<'a>>),
    Raw(&'a [u8]),
}

#[derive(Debug, Arbitrary)]
enum Authorization<'a> {
    /// RFC 6749 §2.3.1: form-urlencoded id and secret, joined by `:`, base64-encoded;
    /// `scheme` `None` is `Basic`.
    Basic {
        scheme: Option<&'a str>,
        id: Id<'a>,
        secret: ClientSecret<'a>,
    },
    Raw(&'a [u8]),
}

#[derive(Debug, Arbitrary)]
enum ContentType<'a> {
    Form,
    FormUtf8,
    Json,
    Raw(&'a [u8]),
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// `None` is POST.
    method: Option<&'a str>,
    /// Usually none or one; two are refused.
    authorization: Vec<Authorization<'a>>,
    /// Usually one; two are refused.
    content_type: Vec<ContentType<'a>>,
    content_encoding: Option<&'a [u8]>,
    body: Body<'a>,
    /// When the token is asked for: seconds and nanoseconds after the start.
    seconds: u32,
    nanos: u32,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn clock() -> &'static ManualClock {
    static CLOCK: OnceLock<ManualClock> = OnceLock::new();
    CLOCK.get_or_init(|| ManualClock::new(start()))
}

/// Built once: hashing the secrets and preparing the keys is the same for every run.
fn issuer() -> &'static TokenIssuer {
    static ISSUER_ONCE: OnceLock<TokenIssuer> = OnceLock::new();
    ISSUER_ONCE.get_or_init(|| {
        let issuer = TokenIssuer::builder(ISSUER, AUDIENCE, SIGNING_KEY)
            .client(
                IssuerClient::from_secret(CI_ID, &Secret::new(CI_SECRET))
                    .with_scopes(CI_SCOPES)
                    .with_roles(["release-manager"])
                    .with_tenant("payments"),
            )
            .client(
                IssuerClient::from_secret(DEPLOY_ID, &Secret::new(DEPLOY_SECRET))
                    .with_scopes(DEPLOY_SCOPES),
            )
            .lifetime(Duration::from_secs(LIFETIME_SECS))
            .clock(clock().clone())
            .build()
            .expect("a valid issuer");
        let debug = format!("{issuer:?}");
        assert!(!debug.contains(SIGNING_KEY) && !debug.contains(CI_SECRET));
        issuer
    })
}

fn form(params: &[Param<'_>]) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for param in params {
        match param {
            Param::GrantType(grant) => {
                form.append_pair("grant_type", grant.unwrap_or("client_credentials"))
            }
            Param::ClientId(id) => form.append_pair("client_id", id.text()),
            Param::ClientSecret(secret) => form.append_pair("client_secret", secret.text()),
            Param::Audience(audience) => form.append_pair("audience", audience.unwrap_or(AUDIENCE)),
            Param::Scope(scope) => form.append_pair("scope", scope),
            Param::Other { name, value } => form.append_pair(name, value),
        };
    }
    form.finish()
}

fn form_encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn header_value(authorization: &Authorization<'_>) -> Option<HeaderValue> {
    match authorization {
        Authorization::Basic { scheme, id, secret } => {
            let pair = format!(
                "{}:{}",
                form_encoded(id.text()),
                form_encoded(secret.text())
            );
            let value = format!("{} {}", scheme.unwrap_or("Basic"), STANDARD.encode(pair));
            HeaderValue::from_str(&value).ok()
        }
        Authorization::Raw(bytes) => HeaderValue::from_bytes(bytes).ok(),
    }
}

/// The id and secret of a Basic `Authorization` value, decoded here independently of hookgate
/// (RFC 7617, with RFC 6749 §2.3.1's form-urlencoding); empty ones count as omitted.
fn basic_credentials(value: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(text) = std::str::from_utf8(value) else {
        return (None, None);
    };
    let text = text.trim_matches([' ', '\t']);
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return (None, None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return (None, None);
    }
    let Ok(decoded) = STANDARD.decode(encoded.trim_start_matches(' ')) else {
        return (None, None);
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return (None, None);
    };
    let decode = |part: &[u8]| {
        // Form-decoded as the value of a one-parameter form, with the `&` and `=` that such a
        // value may hold literally escaped first.
        let mut escaped = b"v=".to_vec();
        for &b in part {
            match b {
                b'&' => escaped.extend_from_slice(b"%26"),
                b'=' => escaped.extend_from_slice(b"%3D"),
                _ => escaped.push(b),
            }
        }
        url::form_urlencoded::parse(&escaped)
            .next()
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty())
    };
    (decode(&decoded[..colon]), decode(&decoded[colon + 1..]))
}

/// RFC 6749 §5.2: an `error_description` is printable ASCII but `"` and `\`.
fn is_rfc6749_description(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

fn secret_of(client_id: &str) -> Option<&'static str> {
    match client_id {
        CI_ID => Some(CI_SECRET),
        DEPLOY_ID => Some(DEPLOY_SECRET),
        _ => None,
    }
}

fn scopes_of(client_id: &str) -> &'static [&'static str] {
    match client_id {
        CI_ID => &CI_SCOPES,
        DEPLOY_ID => &DEPLOY_SCOPES,
        _ => &[],
    }
}

/// Checks a `200`: what the request presented must be exactly one client's id and its secret,
/// and the token must stand for that client, with the scopes and lifetime the answer names.
fn check_issued(
    method: &Method,
    request_headers: &HeaderMap,
    body: &[u8],
    json: &serde_json::Value,
    nanos: u32,
) {
    assert_eq!(*method, Method::POST, "a token for a {method} request");
    let mut ids = Vec::new();
    let mut secrets = Vec::new();
    let mut grants = Vec::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if value.is_empty() {
            continue;
        }
        match &*name {
            "client_id" => ids.push(value.into_owned()),
            "client_secret" => secrets.push(value.into_owned()),
            "grant_type" => grants.push(value.into_owned()),
            _ => {}
        }
    }
    assert_eq!(grants, ["client_credentials"], "a token for another grant");
    let authorizations: Vec<_> = request_headers.get_all(AUTHORIZATION).iter().collect();
    assert!(
        authorizations.len() <= 1,
        "a token despite two Authorization headers"
    );
    if let Some(value) = authorizations.first() {
        let (id, secret) = basic_credentials(value.as_bytes());
        ids.extend(id);
        secrets.extend(secret);
    }
    let [secret] = secrets.as_slice() else {
        panic!("a token for {} client secrets presented", secrets.len());
    };
    let Some(id) = ids.first() else {
        panic!("a token without a client id presented");
    };
    assert!(
        ids.iter().all(|other| other == id),
        "a token for two client ids: {ids:?}"
    );
    assert_eq!(
        secret_of(id),
        Some(secret.as_str()),
        "a token for client {id:?} without its secret"
    );

    assert_eq!(json["token_type"], "Bearer", "{json}");
    // `exp` counts from the whole second the token was asked in.
    let expected_expiry = LIFETIME_SECS - u64::from(nanos > 0);
    assert_eq!(json["expires_in"].as_u64(), Some(expected_expiry), "{json}");
    let token = json["access_token"]
        .as_str()
        .expect("an access_token string");
    assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
    let scope = json["scope"].as_str().expect("a scope string");
    let granted: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    assert!(
        granted.iter().all(|s| scopes_of(id).contains(s)),
        "scopes {scope:?} beyond client {id:?}'s"
    );
    // The token is the issuer's, for this client, with the scopes the answer names.
    let principal = runtime()
        .block_on(issuer().authorize(token))
        .expect("the issuer accepts the token it just issued");
    assert_eq!(&principal.subject, id);
    assert_eq!(principal.scopes, granted);
}

fuzz_target!(|input: Input<'_>| {
    let nanos = input.nanos % 1_000_000_000;
    clock().set(
        start()
            + TimeDelta::seconds(i64::from(input.seconds))
            + TimeDelta::nanoseconds(nanos.into()),
    );

    let method = match input.method {
        Some(method) => match Method::from_bytes(method.as_bytes()) {
            Ok(method) => method,
            Err(_) => return,
        },
        None => Method::POST,
    };
    let mut request = Request::builder()
        .method(method.clone())
        .uri("/oauth/token");
    for authorization in &input.authorization {
        if let Some(value) = header_value(authorization) {
            request = request.header(AUTHORIZATION, value);
        }
    }
    for content_type in &input.content_type {
        let value = match content_type {
            ContentType::Form => HeaderValue::from_static("application/x-www-form-urlencoded"),
            ContentType::FormUtf8 => {
                HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8")
            }
            ContentType::Json => HeaderValue::from_static("application/json"),
            ContentType::Raw(bytes) => match HeaderValue::from_bytes(bytes) {
                Ok(value) => value,
                Err(_) => continue,
            },
        };
        request = request.header(CONTENT_TYPE, value);
    }
    if let Some(value) = input
        .content_encoding
        .and_then(|v| HeaderValue::from_bytes(v).ok())
    {
        request = request.header(CONTENT_ENCODING, value);
    }
    let body = match &input.body {
        Body::Form(params) => Bytes::from(form(params)),
        Body::Huge(params) => {
            let mut body = form(params);
            body.push_str("&padding=");
            body.push_str(&"x".repeat(16 * 1024));
            Bytes::from(body)
        }
        Body::Raw(bytes) => Bytes::copy_from_slice(bytes),
    };
    let request = request
        .body(Full::new(body.clone()))
        .expect("a valid request");
    let request_headers = request.headers().clone();

    let response = runtime().block_on(token_endpoint(issuer(), request));
    let status = response.status();
    let headers = response.headers();

    // No client secret, nor the credentials of the Authorization header, in any part of the
    // answer.
    let mut leaks: Vec<&[u8]> = vec![
        CI_SECRET.as_bytes(),
        DEPLOY_SECRET.as_bytes(),
        CANARY_SECRET.as_bytes(),
    ];
    let sent: Vec<&[u8]> = request_headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| {
            let (_, credentials) = std::str::from_utf8(v.as_bytes()).ok()?.split_once(' ')?;
            // Base64 of 12 bytes or more: no fixed wording of an answer holds such a run.
            let credentials = credentials.trim().as_bytes();
            let base64 = |b: &u8| b.is_ascii_alphanumeric() || b"+/=".contains(b);
            (credentials.len() >= 16 && credentials.iter().all(base64)).then_some(credentials)
        })
        .collect();
    leaks.extend(sent);
    let spots = std::iter::once(response.body().as_ref())
        .chain(headers.values().map(HeaderValue::as_bytes));
    for spot in spots {
        for leak in &leaks {
            assert!(
                !spot.windows(leak.len()).any(|w| w == *leak),
                "the answer carries a credential: {:?} in {:?}",
                String::from_utf8_lossy(leak),
                String::from_utf8_lossy(spot)
            );
        }
    }

    // RFC 6749 §5.1/§5.2: JSON, and never cached, on every answer.
    assert_eq!(headers[CONTENT_TYPE], "application/json", "{status}");
    assert_eq!(headers[CACHE_CONTROL], "no-store", "{status}");
    assert_eq!(headers[PRAGMA], "no-cache", "{status}");
    let json: serde_json::Value =
        serde_json::from_slice(response.body()).expect("every answer is JSON");
    assert!(json.is_object(), "{json}");

    if status == StatusCode::OK {
        check_issued(&method, &request_headers, &body, &json, nanos);
        return;
    }
    let error = json["error"].as_str().expect("an error code");
    assert!(RFC6749_ERRORS.contains(&error), "{status}: {json}");
    let description = json["error_description"]
        .as_str()
        .expect("an error_description");
    assert!(
        !description.is_empty() && is_rfc6749_description(description),
        "{json}"
    );
    assert!(json.get("access_token").is_none(), "{json}");
    match status.as_u16() {
        401 => {
            assert_eq!(error, "invalid_client", "{json}");
            let challenge = headers
                .get(WWW_AUTHENTICATE)
                .expect("a 401 carries WWW-Authenticate");
            assert!(challenge.as_bytes().starts_with(b"Basic "), "{challenge:?}");
        }
        400 => assert_ne!(error, "invalid_client", "{json}"),
        405 => {
            assert_ne!(method, Method::POST);
            assert_eq!(headers[ALLOW], "POST");
            assert_eq!(error, "invalid_request", "{json}");
        }
        413 => assert_eq!(error, "invalid_request", "{json}"),
        415 => {
            assert!(request_headers.contains_key(CONTENT_ENCODING));
            assert_eq!(headers[ACCEPT_ENCODING], "identity");
            assert_eq!(error, "invalid_request", "{json}");
        }
        _ => panic!("undocumented status {status}: {json}"),
    }
});
