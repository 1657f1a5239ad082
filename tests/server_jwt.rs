//! JWT-authorized callbacks through the router: expired tokens and tokens for another
//! audience are 401, a missing scope is 403 with an `insufficient_scope` challenge, and none of
//! them touches the gate.
#![cfg(all(feature = "axum", feature = "jwt", feature = "test-util"))]

mod server_support;

use std::sync::Arc;

use chrono::TimeDelta;
use hookgate::auth::JwtAuthorizer;
use hookgate::clock::Clock;
use hookgate::core::GateState;
use hookgate::server::{CallbackHandler, MemoryGates, ServerState, router};
use hookgate::test_util::ManualClock;
use http::StatusCode;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use server_support::*;

const SECRET: &str = "a shared HS256 secret that is long enough";

/// jsonwebtoken's crypto provider, for this file's own signing: the tests build with both of
/// its back ends (see Cargo.toml), where it picks none by itself. hookgate's builders install
/// one (`tests/auth_crypto_provider.rs`), but a test may sign before it builds one.
fn crypto() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

fn token(clock: &ManualClock, audience: &str, expires_in: TimeDelta, scope: &str) -> String {
    crypto();
    let now = clock.now().timestamp();
    let claims = json!({"iss": "https://idp.example", "aud": audience, "sub": "ci",
                        "exp": now + expires_in.num_seconds(), "scope": scope});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn expired_wrong_audience_and_unscoped_tokens_are_refused_then_a_good_one_applies() {
    let clock = clock();
    let gates = Arc::new(MemoryGates::new(clock.clone()));
    gates.insert(deployment("d1", 1, |_| {}));
    let jwt = JwtAuthorizer::builder("https://idp.example", "hookgate")
        .hs256(SECRET)
        .required_scope("callbacks")
        .clock(clock.clone())
        .build()
        .unwrap();
    let router = router(ServerState::new(CallbackHandler::new(
        gates.clone(),
        Arc::new(jwt),
    )));
    let path = format!("/callbacks/{}", callback_id(&gates, "d1", TICKET));
    let before = gate_state(&gates, "d1", TICKET);
    assert!(matches!(before, GateState::AwaitingCallback { .. }));

    let expired = token(&clock, "hookgate", TimeDelta::seconds(-120), "callbacks");
    let elsewhere = token(&clock, "another-api", TimeDelta::hours(1), "callbacks");
    let unscoped = token(&clock, "hookgate", TimeDelta::hours(1), "read");
    for (what, token, status, mentions) in [
        ("expired", &expired, StatusCode::UNAUTHORIZED, "expired"),
        (
            "wrong audience",
            &elsewhere,
            StatusCode::UNAUTHORIZED,
            "audience",
        ),
        (
            "missing scope",
            &unscoped,
            StatusCode::FORBIDDEN,
            "callbacks",
        ),
    ] {
        let answer = send(&router, post(&path, Some(token), r#"{"success": true}"#)).await;
        assert_eq!(answer.status, status, "{what}");
        assert!(
            answer.message().contains(mentions),
            "{what}: {}",
            answer.message()
        );
        assert!(!answer.message().contains(token.as_str()), "{what}");
        // RFC 6750 §3 and §3.1: a refused token, or one lacking the scope, is told so.
        let challenge = if status == StatusCode::UNAUTHORIZED {
            r#"Bearer error="invalid_token""#
        } else {
            r#"Bearer error="insufficient_scope""#
        };
        assert_eq!(answer.headers["www-authenticate"], challenge, "{what}");
        assert_eq!(gate_state(&gates, "d1", TICKET), before, "{what}");
    }

    let good = token(&clock, "hookgate", TimeDelta::seconds(30), "callbacks read");
    let answer = send(&router, post(&path, Some(&good), r#"{"success": true}"#)).await;
    assert_eq!(answer.json["status"], "applied");
    // Past its expiry plus the default 60 s leeway, the same token no longer works.
    clock.advance(TimeDelta::seconds(91));
    let answer = send(&router, post(&path, Some(&good), r#"{"success": true}"#)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

/// A JWKS that cannot be fetched is `503`, and the sender, not yet known, is not told where
/// the keys live or what went wrong: that is in the operator's log.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn a_jwks_that_cannot_be_fetched_is_503_without_its_address_in_the_body() {
    use hookgate::transport::ReqwestTransport;
    use jsonwebtoken::Algorithm;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{method, path},
    };

    let jwks = MockServer::start().await;
    // Without a fetch that failed there would be no address or status to keep out of the body.
    Mock::given(method("GET"))
        .and(path("/keys/internal"))
        .respond_with(ResponseTemplate::new(500).set_body_string("idp database down"))
        .expect(1..)
        .mount(&jwks)
        .await;
    let clock = clock();
    let gates = Arc::new(MemoryGates::new(clock.clone()));
    gates.insert(deployment("d1", 1, |_| {}));
    let jwks_url = format!("{}/keys/internal", jwks.uri());
    let jwt = JwtAuthorizer::builder("https://idp.example", "hookgate")
        .jwks(jwks_url.clone(), ReqwestTransport::new().unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let router = router(ServerState::new(CallbackHandler::new(
        gates.clone(),
        Arc::new(jwt),
    )));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    let claims = json!({"iss": "https://idp.example", "aud": "hookgate", "sub": "ci",
                        "exp": clock.now().timestamp() + 3600});
    let key = EncodingKey::from_rsa_pem(include_bytes!("data/jwt/rsa_private.pem")).unwrap();
    crypto();
    let token = encode(&header, &claims, &key).unwrap();
    let path = format!("/callbacks/{}", callback_id(&gates, "d1", TICKET));

    let answer = send(&router, post(&path, Some(&token), r#"{"success": true}"#)).await;

    jwks.verify().await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json["error"], "unavailable");
    assert!(
        answer.message().contains("retry later"),
        "{}",
        answer.message()
    );
    let port = jwks.address().port().to_string();
    for detail in [jwks_url.as_str(), "/keys/internal", port.as_str(), "500"] {
        assert!(
            !answer.message().contains(detail),
            "{detail} in {}",
            answer.message()
        );
    }
    assert!(matches!(
        gate_state(&gates, "d1", TICKET),
        GateState::AwaitingCallback { .. }
    ));
}
