//! Fuzzes `auth::JwtAuthorizer` (an HS256 key and an ES256 public key, no JWKS, so no network)
//! with a fuzz-chosen bearer token: any text, or a JWT built from fuzz-chosen header and claims
//! and signed with the configured HS256 key, another key or not at all, so that the fuzzer gets
//! past the signature to the claim checks. The verdict is checked against the token's text,
//! read here independently of hookgate and jsonwebtoken: only a token whose HMAC-SHA256 the
//! configured key makes is accepted, with the `sub`, issuer, audience, times and scopes the
//! documentation promises; a refusal has a message that does not quote the token.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hmac::{Hmac, Mac};
use hookgate::auth::{AuthError, CallbackAuthorizer, JwtAuthorizer, Principal};
use hookgate::test_util::ManualClock;
use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use shared::runtime;

mod shared;

const ISS: &str = "https://idp.example";
const AUD: &str = "hookgate";
const KEY: &str = "a shared HS256 secret that is long enough";
const SUB: &str = "ci-bot";
const REQUIRED_SCOPE: &str = "callbacks";
const TENANT_CLAIM: &str = "tenant";
/// The authorizers' default leeway for `exp` and `nbf`.
const LEEWAY_SECS: f64 = 60.0;
/// A P-256 public key (tests/data/jwt/ec_public.pem), configured beside the HS256 key: tokens
/// claiming ES256 reach its verification, and tokens claiming HS256 must not be checked with it.
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEN5rgHUJPVAUDkCpevXYFXtmIIiCA
kjTEvAwW7MBqCzAz9XZCwmkQCJUPIMNwfTa3Vr/mCegYQ6NPWx6IHGjhvg==
-----END PUBLIC KEY-----
";

/// Base64url that also takes padding and non-zero trailing bits: the oracle's reading is at
/// least as lenient as any the verifier may have.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

#[derive(Debug, Arbitrary)]
enum Alg<'a> {
    Hs256,
    Es256,
    Rs256,
    Hs384,
    None,
    Other(&'a str),
}

#[derive(Debug, Arbitrary)]
enum HeaderInput<'a> {
    Fields {
        alg: Alg<'a>,
        typ: Option<&'a str>,
        kid: Option<&'a str>,
    },
    /// Any text, base64url-encoded as the header.
    Raw(&'a str),
}

/// A claim's value; `Ours` is what the authorizer wants there (its issuer, its audience, the
/// required scope, ...).
#[derive(Debug, Arbitrary)]
enum Claim<'a> {
    Absent,
    Ours,
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    Strings(Vec<&'a str>),
    /// An array holding `Ours` among others.
    StringsWithOurs(Vec<&'a str>),
    Object(&'a str),
}

/// A NumericDate; `Rel` is seconds after the fixed start the clock is also set from.
#[derive(Debug, Arbitrary)]
enum Time<'a> {
    Absent,
    Rel(i32),
    RelFraction(i32, u16),
    Other(Claim<'a>),
}

#[derive(Debug, Arbitrary)]
struct Claims<'a> {
    iss: Claim<'a>,
    aud: Claim<'a>,
    sub: Claim<'a>,
    exp: Time<'a>,
    nbf: Time<'a>,
    iat: Time<'a>,
    scope: Claim<'a>,
    scp: Claim<'a>,
    roles: Claim<'a>,
    tenant: Claim<'a>,
}

#[derive(Debug, Arbitrary)]
enum Payload<'a> {
    Claims(Box<Claims<'a>>),
    /// Any bytes, base64url-encoded as the payload.
    Raw(&'a [u8]),
}

#[derive(Debug, Arbitrary)]
enum Signature<'a> {
    /// HMAC-SHA256 with the configured key.
    Key,
    /// HMAC-SHA256 with another (fuzz-chosen) key.
    OtherKey(&'a [u8]),
    /// The configured key's HMAC with its last byte changed.
    Flipped(u8),
    Empty,
    Raw(&'a str),
}

#[derive(Debug, Arbitrary)]
enum Token<'a> {
    Raw(&'a str),
    Built {
        header: HeaderInput<'a>,
        payload: Payload<'a>,
        signature: Signature<'a>,
        /// Padded base64url for the header and payload, which JWTs do not use.
        padded: bool,
        /// Text put after the signature.
        trailer: Option<&'a str>,
    },
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    token: Token<'a>,
    /// With `required_scope("callbacks")`.
    scoped: bool,
    /// The clock: seconds and nanoseconds after the start.
    now_secs: i32,
    now_nanos: u32,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn clock() -> &'static ManualClock {
    static CLOCK: OnceLock<ManualClock> = OnceLock::new();
    CLOCK.get_or_init(|| ManualClock::new(start()))
}

fn build(scoped: bool) -> JwtAuthorizer {
    let mut builder = JwtAuthorizer::builder(ISS, AUD)
        .hs256(KEY)
        .es256_pem(EC_PUBLIC.as_bytes())
        .tenant_claim(TENANT_CLAIM)
        .clock(clock().clone());
    if scoped {
        builder = builder.required_scope(REQUIRED_SCOPE);
    }
    let authorizer = builder.build().expect("a valid authorizer");
    assert!(
        !format!("{authorizer:?}").contains(KEY),
        "Debug shows the key"
    );
    authorizer
}

/// Built once each: with and without a required scope.
fn authorizer(scoped: bool) -> &'static JwtAuthorizer {
    static PLAIN: OnceLock<JwtAuthorizer> = OnceLock::new();
    static SCOPED: OnceLock<JwtAuthorizer> = OnceLock::new();
    if scoped {
        SCOPED.get_or_init(|| build(true))
    } else {
        PLAIN.get_or_init(|| build(false))
    }
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn claim(claim: &Claim<'_>, ours: &str) -> Option<Value> {
    Some(match claim {
        Claim::Absent => return None,
        Claim::Ours => json!(ours),
        Claim::Str(text) => json!(text),
        Claim::Int(n) => json!(n),
        // JSON has no NaN or infinity: serde_json writes them as `null`.
        Claim::Float(x) => json!(x),
        Claim::Bool(b) => json!(b),
        Claim::Null => Value::Null,
        Claim::Strings(items) => json!(items),
        Claim::StringsWithOurs(items) => {
            let mut items: Vec<&str> = items.clone();
            let at = items.len() / 2;
            items.insert(at, ours);
            json!(items)
        }
        Claim::Object(key) => json!({ *key: ours }),
    })
}

fn time(time: &Time<'_>) -> Option<Value> {
    let base = start().timestamp();
    match time {
        Time::Absent => None,
        Time::Rel(secs) => Some(json!(base + i64::from(*secs))),
        Time::RelFraction(secs, fraction) => Some(json!(
            (base + i64::from(*secs)) as f64 + f64::from(*fraction) / 65536.0
        )),
        Time::Other(other) => claim(other, "0"),
    }
}

fn payload(claims: &Claims<'_>) -> Vec<u8> {
    let mut map = Map::new();
    let fields = [
        ("iss", claim(&claims.iss, ISS)),
        ("aud", claim(&claims.aud, AUD)),
        ("sub", claim(&claims.sub, SUB)),
        ("exp", time(&claims.exp)),
        ("nbf", time(&claims.nbf)),
        ("iat", time(&claims.iat)),
        ("scope", claim(&claims.scope, REQUIRED_SCOPE)),
        ("scp", claim(&claims.scp, REQUIRED_SCOPE)),
        ("roles", claim(&claims.roles, "release-manager")),
        (TENANT_CLAIM, claim(&claims.tenant, "payments")),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            map.insert(name.to_owned(), value);
        }
    }
    serde_json::to_vec(&map).expect("JSON")
}

fn token_text(token: &Token<'_>) -> String {
    let Token::Built {
        header,
        payload: claims,
        signature,
        padded,
        trailer,
    } = token
    else {
        let Token::Raw(text) = token else {
            unreachable!()
        };
        return (*text).to_owned();
    };
    let encode = |bytes: &[u8]| {
        if *padded {
            base64::engine::general_purpose::URL_SAFE.encode(bytes)
        } else {
            URL_SAFE_NO_PAD.encode(bytes)
        }
    };
    let header = match header {
        HeaderInput::Fields { alg, typ, kid } => {
            let alg = match alg {
                Alg::Hs256 => "HS256",
                Alg::Es256 => "ES256",
                Alg::Rs256 => "RS256",
                Alg::Hs384 => "HS384",
                Alg::None => "none",
                Alg::Other(alg) => alg,
            };
            let mut header = json!({ "alg": alg });
            if let Some(typ) = typ {
                header["typ"] = json!(typ);
            }
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            header.to_string().into_bytes()
        }
        HeaderInput::Raw(text) => text.as_bytes().to_vec(),
    };
    let claims = match claims {
        Payload::Claims(claims) => payload(claims),
        Payload::Raw(bytes) => bytes.to_vec(),
    };
    let message = format!("{}.{}", encode(&header), encode(&claims));
    let signature = match signature {
        Signature::Key => URL_SAFE_NO_PAD.encode(hmac(KEY.as_bytes(), message.as_bytes())),
        Signature::OtherKey(key) => URL_SAFE_NO_PAD.encode(hmac(key, message.as_bytes())),
        Signature::Flipped(bits) => {
            let mut mac = hmac(KEY.as_bytes(), message.as_bytes());
            *mac.last_mut().expect("32 bytes") ^= bits.max(&1);
            URL_SAFE_NO_PAD.encode(mac)
        }
        Signature::Empty => String::new(),
        Signature::Raw(text) => (*text).to_owned(),
    };
    format!("{message}.{signature}{}", trailer.unwrap_or(""))
}

/// The token's header and claims, if the configured key made its signature: split as JWS
/// compact serialization is (the signature after the last dot), the MAC computed here.
fn signed_by_key(token: &str) -> Option<(Map<String, Value>, Map<String, Value>)> {
    let (message, signature) = token.rsplit_once('.')?;
    let signature = LENIENT.decode(signature).ok()?;
    if signature != hmac(KEY.as_bytes(), message.as_bytes()) {
        return None;
    }
    let (header, payload) = message.rsplit_once('.')?;
    let object = |part: &str| -> Option<Map<String, Value>> {
        serde_json::from_slice(&LENIENT.decode(part).ok()?).ok()
    };
    Some((object(header)?, object(payload)?))
}

/// Checks an accepted token against the documentation of `JwtAuthorizer`.
fn check_accepted(token: &str, principal: &Principal, scoped: bool, now: DateTime<Utc>) {
    let Some((header, claims)) = signed_by_key(token) else {
        panic!("accepted a token the configured key did not sign: {token:?}");
    };
    // The ES256 key's private half is not here, so an accepted token is an HS256 one.
    assert_eq!(header.get("alg"), Some(&json!("HS256")), "{header:?}");
    assert_eq!(claims.get("iss"), Some(&json!(ISS)), "{claims:?}");
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == AUD,
        Some(Value::Array(auds)) => auds.iter().any(|a| a == AUD),
        _ => false,
    };
    assert!(audience_ok, "accepted for another audience: {claims:?}");
    assert_eq!(
        claims.get("sub"),
        Some(&json!(principal.subject)),
        "the principal is not the token's `sub`"
    );
    assert!(!principal.subject.is_empty());
    let now = now.timestamp() as f64 + f64::from(now.timestamp_subsec_nanos()) / 1e9;
    let exp = claims.get("exp").and_then(Value::as_f64);
    assert!(
        exp.is_some_and(|exp| now < exp + LEEWAY_SECS),
        "accepted at {now} with exp {exp:?}"
    );
    if let Some(nbf) = claims.get("nbf") {
        assert!(
            nbf.as_f64().is_some_and(|nbf| nbf - LEEWAY_SECS <= now),
            "accepted at {now} with nbf {nbf}"
        );
    }
    // The scopes of the space-separated `scope` and of the `scp` array; the roles of `roles`,
    // an array or one string naming one role; the tenant of the tenant claim.
    let strings = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(s)) => s
                .split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut scopes = strings(claims.get("scope"));
    scopes.extend(strings(claims.get("scp")));
    assert_eq!(principal.scopes, scopes, "{claims:?}");
    if scoped {
        assert!(principal.has_scope(REQUIRED_SCOPE), "{claims:?}");
    }
    let roles = match claims.get("roles") {
        Some(Value::String(role)) if !role.is_empty() => vec![role.clone()],
        other => strings(other.filter(|v| v.is_array())),
    };
    assert_eq!(principal.roles, roles, "{claims:?}");
    assert_eq!(
        principal.tenant.as_deref(),
        claims.get(TENANT_CLAIM).and_then(Value::as_str),
        "{claims:?}"
    );
}

fn check_refused(token: &str, error: &AuthError) {
    let status = error.status();
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
        "{status} for a token, with static keys only: {error}"
    );
    // A token's time or scope is looked at only once its signature verified.
    if matches!(error, AuthError::ExpiredToken | AuthError::Forbidden { .. }) {
        assert!(
            signed_by_key(token).is_some(),
            "{error} for a token the key did not sign: {token:?}"
        );
    }
    let message = error.to_string();
    let debug = format!("{error:?}");
    assert!(!message.is_empty());
    // Never the token, nor a part of it: a part long enough and without a space cannot be
    // the fixed wording of a message by chance.
    let mut parts: Vec<&str> = token.split('.').collect();
    parts.push(token);
    for part in parts {
        if part.len() >= 16 && !part.contains(' ') {
            assert!(
                !message.contains(part),
                "the error quotes the token: {message}"
            );
            assert!(!debug.contains(part), "the error quotes the token: {debug}");
        }
    }
}

fuzz_target!(|input: Input<'_>| {
    let now = start()
        + TimeDelta::seconds(i64::from(input.now_secs))
        + TimeDelta::nanoseconds(i64::from(input.now_nanos % 1_000_000_000));
    clock().set(now);
    let token = token_text(&input.token);
    let authorizer = authorizer(input.scoped);

    match runtime().block_on(authorizer.authorize(&token)) {
        Ok(principal) => check_accepted(&token, &principal, input.scoped, now),
        Err(error) => check_refused(&token, &error),
    }
});
