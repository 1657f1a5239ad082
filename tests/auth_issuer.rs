//! `TokenIssuer`: PROTOCOL.md §6's token request, RFC 6749 §5.2 errors, and verification of
//! the tokens it issued.
#![cfg(all(feature = "issuer", feature = "test-util"))]

mod log_capture;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{TimeDelta, TimeZone, Utc};
use hookgate::Secret;
use hookgate::auth::{AuthError, CallbackAuthorizer, IssuerClient, OAuthError, TokenIssuer};
use hookgate::test_util::ManualClock;
use http::StatusCode;
use log_capture::Captured;
use serde_json::Value;

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const KEY: &str = "signing key: 32+ random bytes in production";
const SECRET: &str = "c1f0e5d8a7b6c5d4e3f2a1b0c9d8e7f6";
/// Exactly what the receiver's client-credentials token source sends.
const REQUEST: &str = "audience=hookgate&grant_type=client_credentials&client_id=ci&client_secret=c1f0e5d8a7b6c5d4e3f2a1b0c9d8e7f6";

/// RFC 6749 §5.2: an `error_description` is printable ASCII but `"` and `\`.
fn is_rfc6749_description(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// An `Authorization: Basic` value as RFC 6749 §2.3.1 has clients send it: the id and the
/// secret form-urlencoded, then joined by `:` and base64-encoded.
fn basic(id: &str, secret: &str) -> Vec<u8> {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", form(id), form(secret)))
    )
    .into_bytes()
}

fn form(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap())
}

fn issuer(clock: &ManualClock) -> TokenIssuer {
    TokenIssuer::builder("https://hookgate.example", "hookgate", KEY)
        .client(
            IssuerClient::from_secret("ci", &Secret::new(SECRET))
                .with_scopes(["callbacks", "approvals"])
                .with_roles(["release-manager"])
                .with_tenant("payments"),
        )
        .client(IssuerClient::new("other", [7; 32]))
        .lifetime(Duration::from_secs(600))
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_issued_token_carries_the_clients_grants_and_verifies_until_it_expires() {
    let clock = clock();
    let issuer = issuer(&clock);
    let answer = issuer.issue(FORM, REQUEST.as_bytes()).unwrap();
    assert_eq!(
        (answer.expires_in, answer.scope.as_str()),
        (600, "callbacks approvals")
    );
    let json: Value = serde_json::from_slice(&answer.to_json()).unwrap();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 600);
    let token = json["access_token"].as_str().unwrap();
    assert!(
        !format!("{answer:?}").contains(token),
        "Debug redacts the token"
    );

    let principal = issuer.authorize(token).await.unwrap();
    assert_eq!(principal.subject, "ci");
    assert_eq!(principal.scopes, ["callbacks", "approvals"]);
    assert_eq!(principal.roles, ["release-manager"]);
    assert_eq!(principal.tenant.as_deref(), Some("payments"));

    // Accepted for exactly the `expires_in` the client was told: the issuer's verifier shares
    // its clock, so it allows no leeway for skew.
    clock.advance(TimeDelta::seconds(599));
    assert!(issuer.authorize(token).await.is_ok(), "one second left");
    clock.advance(TimeDelta::seconds(1));
    assert_eq!(issuer.authorize(token).await, Err(AuthError::ExpiredToken));
}

/// `exp` counts from the whole second of `iat`: asked for 900 ms into a second, a token is told
/// to live a second less, so a client counting `expires_in` from when it asked never uses it
/// past `exp`.
#[tokio::test]
async fn a_token_asked_for_within_a_second_is_told_a_second_less() {
    let clock = clock();
    clock.advance(TimeDelta::milliseconds(900));
    let issuer = issuer(&clock);
    let answer = issuer.issue(FORM, REQUEST.as_bytes()).unwrap();
    assert_eq!(answer.expires_in, 599);
    let json: Value = serde_json::from_slice(&answer.to_json()).unwrap();
    let token = json["access_token"].as_str().unwrap();

    clock.advance(TimeDelta::seconds(599));
    assert!(
        issuer.authorize(token).await.is_ok(),
        "at the end of expires_in, before exp"
    );
    clock.advance(TimeDelta::milliseconds(100));
    assert_eq!(issuer.authorize(token).await, Err(AuthError::ExpiredToken));
}

#[tokio::test]
async fn a_narrower_scope_may_be_asked_for_and_a_wider_one_is_invalid_scope() {
    let clock = clock();
    let issuer = issuer(&clock);
    let narrow = issuer
        .issue(FORM, format!("{REQUEST}&scope=callbacks").as_bytes())
        .unwrap();
    assert_eq!(narrow.scope, "callbacks");
    let principal = issuer
        .authorize(narrow.access_token.expose())
        .await
        .unwrap();
    assert_eq!(principal.scopes, ["callbacks"]);
    let wide = issuer.issue(
        FORM,
        format!("{REQUEST}&scope=callbacks%20admin").as_bytes(),
    );
    assert!(matches!(wide, Err(OAuthError::InvalidScope(_))), "{wide:?}");
}

/// RFC 6749 §3.3 separates scopes with spaces: other blanks (a tab, a line break, an em
/// space) are refused, as the verifiers would not split at them either, and a scope asked for
/// twice is granted once.
#[test]
fn scopes_are_separated_by_spaces_alone_and_granted_once() {
    let issuer = issuer(&clock());
    for joined in [
        "callbacks%09approvals",
        "callbacks%0Aapprovals",
        "callbacks%E2%80%83approvals",
    ] {
        let err = issuer
            .issue(FORM, format!("{REQUEST}&scope={joined}").as_bytes())
            .unwrap_err();
        assert_eq!(err.code(), "invalid_scope", "{joined}");
        assert!(err.to_string().contains("single spaces"), "{err}");
    }
    let twice = issuer
        .issue(
            FORM,
            format!("{REQUEST}&scope=approvals+callbacks++approvals").as_bytes(),
        )
        .unwrap();
    assert_eq!(twice.scope, "approvals callbacks");
}

#[test]
fn refused_requests_get_rfc_6749_errors() {
    let clock = clock();
    let issuer = issuer(&clock);
    let cases: [(&str, Option<&str>, &str, &str, StatusCode); 10] = [
        (
            "json body",
            Some("application/json"),
            REQUEST,
            "invalid_request",
            StatusCode::BAD_REQUEST,
        ),
        (
            "no content type",
            None,
            REQUEST,
            "invalid_request",
            StatusCode::BAD_REQUEST,
        ),
        (
            "no grant type",
            FORM,
            "client_id=ci&client_secret=x",
            "invalid_request",
            StatusCode::BAD_REQUEST,
        ),
        (
            "password grant",
            FORM,
            "grant_type=password&client_id=ci&client_secret=x",
            "unsupported_grant_type",
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong secret",
            FORM,
            "grant_type=client_credentials&client_id=ci&client_secret=c1f0e5d8a7b6c5d4e3f2a1b0c9d8e7f7",
            "invalid_client",
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown client",
            FORM,
            "grant_type=client_credentials&client_id=nobody&client_secret=c1f0e5d8a7b6c5d4e3f2a1b0c9d8e7f6",
            "invalid_client",
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no secret",
            FORM,
            "grant_type=client_credentials&client_id=ci",
            "invalid_client",
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no client",
            FORM,
            "grant_type=client_credentials",
            "invalid_client",
            StatusCode::UNAUTHORIZED,
        ),
        (
            "repeated parameter",
            FORM,
            "grant_type=client_credentials&grant_type=client_credentials&client_id=ci&client_secret=x",
            "invalid_request",
            StatusCode::BAD_REQUEST,
        ),
        (
            "other audience",
            FORM,
            "audience=other&grant_type=client_credentials&client_id=ci&client_secret=c1f0e5d8a7b6c5d4e3f2a1b0c9d8e7f6",
            "invalid_request",
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, content_type, body, code, status) in cases {
        let err = issuer.issue(content_type, body.as_bytes()).unwrap_err();
        assert_eq!((err.code(), err.status()), (code, status), "{what}");
        let json: Value = serde_json::from_slice(&err.to_json()).unwrap();
        assert_eq!(json["error"], code, "{what}");
        let description = json["error_description"].as_str().unwrap();
        assert!(
            is_rfc6749_description(description) && !description.contains(SECRET),
            "{what}: {description}"
        );
    }
    assert!(
        issuer.issue(FORM, b"\xff\xfe=\x00&&==").is_err(),
        "garbage is refused, not panicked on"
    );
}

/// RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if they were omitted".
#[test]
fn a_parameter_without_a_value_counts_as_omitted() {
    let issuer = issuer(&clock());
    let all_scopes = issuer
        .issue(FORM, format!("{REQUEST}&scope=").as_bytes())
        .unwrap();
    assert_eq!(all_scopes.scope, "callbacks approvals");
    let no_audience = REQUEST.replace("audience=hookgate", "audience=");
    assert!(issuer.issue(FORM, no_audience.as_bytes()).is_ok());

    let no_grant = REQUEST.replace("grant_type=client_credentials", "grant_type=");
    let err = issuer.issue(FORM, no_grant.as_bytes()).unwrap_err();
    assert_eq!(err.code(), "invalid_request");
    assert!(err.description().contains("missing"), "{err}");
    let no_id = REQUEST.replace("client_id=ci", "client_id=");
    let err = issuer.issue(FORM, no_id.as_bytes()).unwrap_err();
    assert_eq!(err.code(), "invalid_client");
}

/// A scope of blanks only names no scope (RFC 6749 §3.3): refused, rather than a token with
/// no scopes.
#[test]
fn a_scope_of_blanks_only_is_invalid() {
    let issuer = issuer(&clock());
    for blanks in ["%20", "+", "%20%09"] {
        let err = issuer
            .issue(FORM, format!("{REQUEST}&scope={blanks}").as_bytes())
            .unwrap_err();
        assert_eq!(err.code(), "invalid_scope", "{blanks}");
    }
}

/// Given twice, a parameter is refused even if one of the two is empty: which one the client
/// meant is unknown either way.
#[test]
fn a_parameter_given_twice_is_refused_even_if_one_is_empty() {
    let issuer = issuer(&clock());
    for body in [
        format!("{REQUEST}&scope=&scope=callbacks"),
        format!("{REQUEST}&scope=callbacks&scope="),
        format!("{REQUEST}&audience="),
        format!("grant_type=&{REQUEST}"),
    ] {
        let err = issuer.issue(FORM, body.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "invalid_request", "{body}");
        assert!(
            err.description().contains("more than once"),
            "{body}: {err}"
        );
    }
}

/// The audience is configured text, and may hold what an `error_description` may not.
#[test]
fn a_refusal_quoting_the_audience_keeps_to_the_characters_rfc_6749_allows() {
    let issuer = TokenIssuer::builder("https://hookgate.example", "aud \"x\" \\ é 100%", KEY)
        .client(IssuerClient::from_secret("ci", &Secret::new(SECRET)))
        .clock(clock())
        .build()
        .unwrap();
    let err = issuer.issue(FORM, REQUEST.as_bytes()).unwrap_err();
    assert_eq!(err.code(), "invalid_request");
    let json: Value = serde_json::from_slice(&err.to_json()).unwrap();
    let description = json["error_description"].as_str().unwrap();
    assert!(is_rfc6749_description(description), "{description}");
    assert!(
        description.contains("`aud %22x%22 %5C %C3%A9 100%25`"),
        "{description}"
    );
}

#[tokio::test]
async fn http_basic_authenticates_with_the_form_urlencoded_id_and_secret() {
    // `:` in either would split the pair at the wrong place if it were not encoded.
    let (id, secret) = ("ci:east+1 é", "s3:cr+t%2F/é=&");
    let issuer = TokenIssuer::builder("https://hookgate.example", "hookgate", KEY)
        .client(IssuerClient::from_secret(id, &Secret::new(secret)).with_scopes(["callbacks"]))
        .clock(clock())
        .build()
        .unwrap();
    let body = b"grant_type=client_credentials";
    let header = basic(id, secret);
    let answer = issuer
        .issue_with_authorization(Some(&header), FORM, body)
        .unwrap();
    let principal = issuer
        .authorize(answer.access_token.expose())
        .await
        .unwrap();
    assert_eq!(
        (principal.subject.as_str(), answer.scope.as_str()),
        (id, "callbacks")
    );

    // The scheme is case-insensitive and may be followed by several spaces (RFC 9110 §11).
    let encoded = String::from_utf8(header[b"Basic ".len()..].to_vec()).unwrap();
    let spelled = format!("bAsIc   {encoded}");
    assert!(
        issuer
            .issue_with_authorization(Some(spelled.as_bytes()), FORM, body)
            .is_ok()
    );
    // Some clients also send their id in the body; the same id is accepted. An empty
    // client_secret is no second method: it counts as omitted (RFC 6749 §3.2).
    let with_id = format!("grant_type=client_credentials&client_id={}", form(id));
    for body in [
        with_id.as_str(),
        "grant_type=client_credentials&client_secret=",
    ] {
        assert!(
            issuer
                .issue_with_authorization(Some(&header), FORM, body.as_bytes())
                .is_ok(),
            "{body}"
        );
    }
}

/// RFC 6749 §2.3.1: "The client MUST NOT use more than one authentication method in each
/// request."
#[test]
fn credentials_in_both_the_header_and_the_body_are_invalid_request() {
    let issuer = issuer(&clock());
    let header = basic("ci", SECRET);
    for body in [
        REQUEST.to_owned(),
        format!("grant_type=client_credentials&client_secret={SECRET}"),
        "grant_type=client_credentials&client_id=other".to_owned(),
    ] {
        let err = issuer
            .issue_with_authorization(Some(&header), FORM, body.as_bytes())
            .unwrap_err();
        assert_eq!(
            (err.code(), err.status(), err.www_authenticate()),
            ("invalid_request", StatusCode::BAD_REQUEST, None),
            "{body}"
        );
        assert!(is_rfc6749_description(err.description()), "{err}");
    }
}

#[test]
fn an_authorization_header_that_fails_is_invalid_client_with_a_basic_challenge() {
    let issuer = issuer(&clock());
    let no_colon = format!("Basic {}", STANDARD.encode("ci"));
    let not_utf8 = format!("Basic {}", STANDARD.encode("ci:%FF%FE"));
    let other_scheme = format!("Bearer {SECRET}");
    let cases: [(&str, &[u8]); 9] = [
        ("wrong secret", &basic("ci", "wrong")),
        ("unknown client", &basic("nobody", SECRET)),
        ("no secret", &basic("ci", "")),
        ("not base64", b"Basic c2VjcmV0!!"),
        ("no colon", no_colon.as_bytes()),
        ("not UTF-8 once decoded", not_utf8.as_bytes()),
        ("not UTF-8", b"Basic \xff\xfe"),
        ("scheme alone", b"Basic"),
        ("another scheme", other_scheme.as_bytes()),
    ];
    for (what, header) in cases {
        let err = issuer
            .issue_with_authorization(Some(header), FORM, b"grant_type=client_credentials")
            .unwrap_err();
        assert_eq!(
            (err.code(), err.status(), err.www_authenticate()),
            (
                "invalid_client",
                StatusCode::UNAUTHORIZED,
                Some(r#"Basic realm="hookgate""#)
            ),
            "{what}"
        );
        assert!(
            is_rfc6749_description(err.description()) && !err.description().contains(SECRET),
            "{what}: {err}"
        );
    }
}

#[test]
fn a_secret_sent_in_the_authorization_header_is_never_logged() {
    let issuer = issuer(&clock());
    let (logs, _guard) = Captured::on_this_thread();
    let swapped = basic(SECRET, "ci");
    let malformed = format!("Basic {SECRET}:ci");
    let other_scheme = format!("Bearer {SECRET}");
    for header in [&swapped, malformed.as_bytes(), other_scheme.as_bytes()] {
        let err = issuer
            .issue_with_authorization(Some(header), FORM, b"grant_type=client_credentials")
            .unwrap_err();
        assert_eq!(err.code(), "invalid_client");
    }
    let logged = logs.text();
    assert!(!logged.contains(SECRET), "the secret was logged: {logged}");
    assert!(logged.contains("refused a token request"), "{logged}");
}

/// A refused token request logs the client id only when it names a client: a client that
/// swapped its id and secret must not have its secret written to the log.
#[test]
fn a_refused_client_id_is_logged_only_when_it_names_a_client() {
    let issuer = issuer(&clock());
    let (logs, _guard) = Captured::on_this_thread();
    let swapped = format!("grant_type=client_credentials&client_id={SECRET}&client_secret=ci");
    let wrong = "grant_type=client_credentials&client_id=ci&client_secret=wrong";
    for body in [swapped.as_str(), wrong] {
        let err = issuer.issue(FORM, body.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "invalid_client");
    }
    let logged = logs.text();
    assert!(!logged.contains(SECRET), "the secret was logged: {logged}");
    assert!(logged.contains("unknown client id"), "{logged}");
    assert!(
        logged.contains("client_id=\"ci\"") || logged.contains("client_id=ci"),
        "a known client's id is logged: {logged}"
    );
}

#[tokio::test]
async fn tokens_of_another_issuer_or_key_are_refused() {
    let clock = clock();
    let ours = issuer(&clock);
    let theirs = TokenIssuer::builder("https://other.example", "hookgate", KEY)
        .client(IssuerClient::from_secret("ci", &Secret::new(SECRET)))
        .clock(clock.clone())
        .build()
        .unwrap();
    let other_key = TokenIssuer::builder(
        "https://hookgate.example",
        "hookgate",
        "another signing key, 32 bytes long!",
    )
    .client(IssuerClient::from_secret("ci", &Secret::new(SECRET)))
    .clock(clock.clone())
    .build()
    .unwrap();
    for foreign in [&theirs, &other_key] {
        let token = foreign
            .issue(FORM, REQUEST.as_bytes())
            .unwrap()
            .access_token;
        let err = ours.authorize(token.expose()).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{err}");
    }
}

#[test]
fn configuration_is_checked() {
    let hash = "c5b6a1b0e4a1b4b2a5d3c4e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1";
    assert!(IssuerClient::from_hex_hash("ci", hash).is_ok());
    for bad in ["", "zz", &hash[1..], &format!("+{}", &hash[1..])] {
        assert!(IssuerClient::from_hex_hash("ci", bad).is_err(), "{bad}");
    }
    let builder = || TokenIssuer::builder("iss", "aud", KEY);
    let errors = [
        TokenIssuer::builder("iss", "aud", "short")
            .build()
            .unwrap_err(),
        builder().lifetime(Duration::ZERO).build().unwrap_err(),
        builder()
            .client(IssuerClient::new("ci", [0; 32]))
            .client(IssuerClient::new("ci", [1; 32]))
            .build()
            .unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, AuthError::Config { .. }), "{err}");
    }
    // A token request's empty `client_id` or `client_secret` counts as omitted: such a client
    // could never get a token, which would show only as every request of it refused.
    let empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for (client, says) in [
        (
            IssuerClient::from_secret("", &Secret::new("s3cret")),
            "empty id",
        ),
        (
            IssuerClient::from_secret("ci", &Secret::new("")),
            "empty secret",
        ),
        (
            IssuerClient::from_hex_hash("ci", empty_sha256).unwrap(),
            "empty secret",
        ),
    ] {
        let err = builder().client(client).build().unwrap_err();
        assert!(matches!(err, AuthError::Config { .. }), "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
    // A scope with a space would be two in the token, granting what was never configured.
    for scope in [
        "callbacks approvals",
        "",
        "quo\"te",
        "back\\slash",
        "tab\t",
        "é",
    ] {
        let with_client = builder()
            .client(IssuerClient::new("ci", [0; 32]).with_scopes([scope]))
            .build();
        let required = builder().required_scope(scope).build();
        for err in [with_client.unwrap_err(), required.unwrap_err()] {
            assert!(matches!(err, AuthError::Config { .. }), "{scope:?}: {err}");
            assert!(err.to_string().contains("scope token"), "{err}");
        }
    }
    assert!(
        builder()
            .client(IssuerClient::new("ci", [0; 32]).with_scopes(["callbacks", "a:b/c"]))
            .required_scope("callbacks")
            .build()
            .is_ok()
    );
    let debug = format!("{:?}", builder().build().unwrap());
    assert!(!debug.contains(KEY), "{debug}");
}
