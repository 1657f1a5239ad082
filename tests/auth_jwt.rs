//! `JwtAuthorizer`: HS256, RS256 and ES256 keys; issuer, audience, expiry, leeway and scope;
//! a JWKS served by wiremock, refreshed for unknown `kid`s at a limited rate.
#![cfg(all(feature = "jwt", feature = "test-util", feature = "reqwest"))]

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeDelta, TimeZone, Utc};
use futures_util::FutureExt;
use hookgate::auth::{AuthError, CallbackAuthorizer, JwtAuthorizer, JwtAuthorizerBuilder};
use hookgate::clock::Clock;
use hookgate::test_util::ManualClock;
use hookgate::transport::{ReqwestTransport, TransportError};
use http::StatusCode;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ISS: &str = "https://idp.example";
const AUD: &str = "hookgate";
const SECRET: &str = "a shared HS256 secret that is long enough";
const RSA_PRIVATE: &[u8] = include_bytes!("data/jwt/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("data/jwt/rsa_public.pem");
/// The identity provider's next RSA key, for rotations.
const RSA2_PRIVATE: &[u8] = include_bytes!("data/jwt/rsa2_private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("data/jwt/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("data/jwt/ec_public.pem");

fn clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap())
}

fn claims(clock: &ManualClock, extra: Value) -> Value {
    let now = clock.now().timestamp();
    let mut claims = json!({"iss": ISS, "aud": AUD, "sub": "ci-bot", "iat": now, "exp": now + 300});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

/// jsonwebtoken's crypto provider, for this file's own signing: the tests build with both of
/// its back ends (see Cargo.toml), where it picks none by itself. hookgate's builders install
/// one (`tests/auth_crypto_provider.rs`), but a test may sign before it builds one.
fn crypto() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    crypto();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        claims,
    )
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap()
}

fn rsa2() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA2_PRIVATE).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE).unwrap()
}

fn hs_authorizer(clock: &ManualClock) -> JwtAuthorizer {
    JwtAuthorizer::builder(ISS, AUD)
        .hs256(SECRET)
        .tenant_claim("org")
        .roles_claim("https://hookgate.example/roles")
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn hs256_claims_become_the_principal() {
    let clock = clock();
    let token = hs(&claims(
        &clock,
        json!({"scope": "callbacks read", "scp": ["extra"],
        "https://hookgate.example/roles": ["release-manager"], "org": "payments"}),
    ));
    let p = hs_authorizer(&clock).authorize(&token).await.unwrap();
    assert_eq!(p.subject, "ci-bot");
    assert_eq!(p.scopes, ["callbacks", "read", "extra"]);
    assert_eq!(p.roles, ["release-manager"]);
    assert_eq!(p.tenant.as_deref(), Some("payments"));
}

#[tokio::test]
async fn rs256_and_es256_public_keys_verify_their_tokens_only() {
    let clock = clock();
    let authorizer = JwtAuthorizer::builder(ISS, AUD)
        .rs256_pem(RSA_PUBLIC)
        .es256_pem(EC_PUBLIC)
        .clock(clock.clone())
        .build()
        .unwrap();
    let c = claims(&clock, json!({}));
    assert!(
        authorizer
            .authorize(&sign(Algorithm::RS256, None, &rsa(), &c))
            .await
            .is_ok()
    );
    assert!(
        authorizer
            .authorize(&sign(Algorithm::ES256, Some("any"), &ec(), &c))
            .await
            .is_ok()
    );
    // HS256 "signed" with the public key as the secret: the classic algorithm confusion.
    let confused = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
        &c,
    );
    let err = authorizer.authorize(&confused).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    // Signed by a key that is not configured.
    let other = JwtAuthorizer::builder(ISS, AUD)
        .es256_pem(EC_PUBLIC)
        .clock(clock.clone())
        .build()
        .unwrap();
    let err = other
        .authorize(&sign(Algorithm::RS256, None, &rsa(), &c))
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn issuer_audience_and_subject_are_required_and_checked() {
    let clock = clock();
    let authorizer = hs_authorizer(&clock);
    for (what, claims, mentions) in [
        (
            "other issuer",
            claims(&clock, json!({"iss": "https://evil.example"})),
            "issuer",
        ),
        (
            "other audience",
            claims(&clock, json!({"aud": "other"})),
            "audience",
        ),
        (
            "audience list without ours",
            claims(&clock, json!({"aud": ["a", "b"]})),
            "audience",
        ),
        (
            "no audience",
            remove(claims(&clock, json!({})), "aud"),
            "aud",
        ),
        ("no issuer", remove(claims(&clock, json!({})), "iss"), "iss"),
        (
            "no subject",
            remove(claims(&clock, json!({})), "sub"),
            "sub",
        ),
        ("no expiry", remove(claims(&clock, json!({})), "exp"), "exp"),
    ] {
        let token = hs(&claims);
        let err = authorizer.authorize(&token).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{what}");
        let text = err.to_string();
        assert!(text.contains(mentions), "{what}: {text}");
        assert!(!text.contains(&token), "{what}");
    }
    let listed = hs(&claims(&clock, json!({"aud": ["other", AUD]})));
    assert!(authorizer.authorize(&listed).await.is_ok());
    // `aud` may list several audiences (RFC 7519 §4.1.3), `iss` names one issuer (§4.1.1).
    let issuers = hs(&claims(
        &clock,
        json!({"iss": [ISS, "https://evil.example"]}),
    ));
    let err = authorizer.authorize(&issuers).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert!(err.to_string().contains("iss"), "{err}");
}

fn remove(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

#[tokio::test]
async fn expiry_is_checked_against_the_injected_clock_with_leeway() {
    let clock = clock();
    let strict = JwtAuthorizer::builder(ISS, AUD)
        .hs256(SECRET)
        .leeway(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    let token = hs(&claims(&clock, json!({"exp": clock.now().timestamp() + 5})));
    assert!(strict.authorize(&token).await.is_ok());
    clock.advance(TimeDelta::seconds(14));
    assert!(strict.authorize(&token).await.is_ok(), "within the leeway");
    // RFC 7519 §4.1.4: valid only before `exp`, here with the leeway added.
    clock.advance(TimeDelta::seconds(1));
    assert_eq!(strict.authorize(&token).await, Err(AuthError::ExpiredToken));

    let early = hs(&claims(
        &clock,
        json!({"nbf": clock.now().timestamp() + 60}),
    ));
    let err = strict.authorize(&early).await.unwrap_err();
    assert!(err.to_string().contains("nbf"), "{err}");
}

/// RFC 7519 §2: a NumericDate is any JSON number, so a negative or fractional `exp` is a time
/// like another, not a missing claim.
#[tokio::test]
async fn an_exp_that_is_not_an_unsigned_integer_is_still_a_time() {
    let clock = clock();
    let authorizer = hs_authorizer(&clock);
    let long_ago = hs(&claims(&clock, json!({"exp": -5})));
    assert_eq!(
        authorizer.authorize(&long_ago).await,
        Err(AuthError::ExpiredToken)
    );
    let far_off = hs(&claims(&clock, json!({"exp": 1e20})));
    assert!(authorizer.authorize(&far_off).await.is_ok());
    let fractional = hs(&claims(
        &clock,
        json!({"exp": clock.now().timestamp() as f64 + 0.5}),
    ));
    assert!(authorizer.authorize(&fractional).await.is_ok());
    let text = hs(&claims(&clock, json!({"exp": "tomorrow"})));
    let err = authorizer.authorize(&text).await.unwrap_err();
    assert!(err.to_string().contains("exp"), "{err}");
}

#[tokio::test]
async fn a_required_scope_comes_from_scope_or_scp_and_its_absence_is_forbidden() {
    let clock = clock();
    let authorizer = JwtAuthorizer::builder(ISS, AUD)
        .hs256(SECRET)
        .required_scope("callbacks")
        .clock(clock.clone())
        .build()
        .unwrap();
    for ok in [
        json!({"scope": "read callbacks"}),
        json!({"scp": ["callbacks"]}),
    ] {
        assert!(authorizer.authorize(&hs(&claims(&clock, ok))).await.is_ok());
    }
    // Only a space separates scope tokens (RFC 6749 §3.3): one token holding another kind of
    // space grants nothing of its words.
    for refused in [
        "read",
        "approvals\u{2003}callbacks",
        "approvals\u{a0}callbacks",
        "a\tcallbacks",
    ] {
        let err = authorizer
            .authorize(&hs(&claims(&clock, json!({"scope": refused}))))
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN, "{refused:?}");
    }
}

#[tokio::test]
async fn garbage_is_refused_without_panicking() {
    let clock = clock();
    let authorizer = hs_authorizer(&clock);
    let valid = hs(&claims(&clock, json!({})));
    let (head, rest) = valid.split_once('.').unwrap();
    for junk in [
        "",
        ".",
        "..",
        "a.b.c",
        "Bearer x",
        "\u{0}",
        &format!("{head}.{rest}x"),
        &format!("{head}..{rest}"),
        &"e".repeat(10_000),
        "eyJhbGciOiJub25lIn0.e30.",
    ] {
        assert_eq!(
            authorizer.authorize(junk).await.unwrap_err().status(),
            StatusCode::UNAUTHORIZED,
            "{junk:?}"
        );
    }
}

#[test]
fn bad_configuration_says_what_to_fix() {
    let cases = [
        (
            JwtAuthorizer::builder(ISS, AUD).build(),
            "configure an HS256 secret, a PEM public key or a JWKS URL",
        ),
        (
            JwtAuthorizer::builder(ISS, AUD).hs256("short").build(),
            "at least 32 bytes",
        ),
        (
            JwtAuthorizer::builder(ISS, AUD)
                .rs256_pem(b"not a pem")
                .build(),
            "not a PEM-encoded RSA public key",
        ),
        (
            JwtAuthorizer::builder(ISS, AUD)
                .es256_pem(RSA_PUBLIC)
                .build(),
            "not a PEM-encoded P-256 public key",
        ),
        (
            JwtAuthorizer::builder(ISS, AUD)
                .jwks("ftp://idp/keys", ReqwestTransport::new().unwrap())
                .build(),
            "must be an absolute http(s) URL",
        ),
        (
            JwtAuthorizer::builder(ISS, AUD)
                .jwks("https://idp/keys", ReqwestTransport::new().unwrap())
                .jwks_refresh_interval(Duration::from_millis(999))
                .build(),
            "refresh interval must be at least 1s",
        ),
    ];
    for (result, what_to_fix) in cases {
        let err = result.unwrap_err();
        assert!(matches!(err, AuthError::Config { .. }), "{err}");
        assert!(
            err.to_string().contains(what_to_fix),
            "{what_to_fix:?} not in {err}"
        );
    }
}

#[test]
fn the_shortest_jwks_refresh_interval_is_accepted() {
    let built = JwtAuthorizer::builder(ISS, AUD)
        .jwks("https://idp/keys", ReqwestTransport::new().unwrap())
        .jwks_refresh_interval(JwtAuthorizerBuilder::MIN_JWKS_REFRESH_INTERVAL)
        .build();
    assert!(built.is_ok());
}

#[test]
fn a_plain_http_jwks_url_is_accepted_only_on_loopback_or_when_allowed() {
    let build = |url: &str, allow: bool| {
        let builder = JwtAuthorizer::builder(ISS, AUD).jwks(url, ReqwestTransport::new().unwrap());
        if allow {
            builder.allow_http_jwks().build()
        } else {
            builder.build()
        }
    };
    for url in [
        "http://idp.example.com/keys",
        "http://10.0.0.7:8080/keys",
        "http://localhost.example.com/keys",
    ] {
        let err = build(url, false).unwrap_err();
        assert!(
            matches!(&err, AuthError::Config { .. }) && err.to_string().contains("https"),
            "{url}: {err}"
        );
        assert!(build(url, true).is_ok(), "{url} with allow_http_jwks");
    }
    for url in [
        "https://idp.example.com/keys",
        "http://localhost:8080/keys",
        "http://127.0.0.1:9/keys",
        "http://127.3.2.1/keys",
        "http://[::1]:9/keys",
    ] {
        assert!(build(url, false).is_ok(), "{url}");
    }
}

/// A JWKS with the test RSA key as `kid` "rsa-1" and, if `with_ec`, the EC key as "ec-1".
fn jwks(with_ec: bool) -> Value {
    crypto();
    let mut rsa = Jwk::from_encoding_key(&rsa(), Algorithm::RS256).unwrap();
    rsa.common.key_id = Some("rsa-1".into());
    let mut keys = vec![rsa];
    if with_ec {
        let mut ec = Jwk::from_encoding_key(&ec(), Algorithm::ES256).unwrap();
        ec.common.key_id = Some("ec-1".into());
        keys.push(ec);
    }
    serde_json::to_value(JwkSet { keys }).unwrap()
}

/// Replaces what `server` serves with `body`, to be fetched `expected_fetches` times; checks
/// first that what it served before was fetched as often as expected, which the reset would
/// otherwise forget.
async fn serve_jwks(server: &MockServer, body: Value, expected_fetches: u64) {
    server.verify().await;
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(expected_fetches)
        .mount(server)
        .await;
}

/// A token signed with the JWKS's key `rsa-1`, valid at `clock`'s time.
fn rsa_token(clock: &ManualClock) -> String {
    sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa(),
        &claims(clock, json!({})),
    )
}

/// A builder taking keys from `server`'s JWKS, on `clock`.
fn jwks_builder(server: &MockServer, clock: &ManualClock) -> JwtAuthorizerBuilder {
    JwtAuthorizer::builder(ISS, AUD)
        .jwks(
            format!("{}/.well-known/jwks.json", server.uri()),
            ReqwestTransport::new().unwrap(),
        )
        .clock(clock.clone())
}

fn jwks_authorizer(server: &MockServer, clock: &ManualClock) -> JwtAuthorizer {
    jwks_builder(server, clock)
        .jwks_refresh_interval(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_jwks_is_fetched_once_and_refreshed_for_an_unknown_kid_at_a_limited_rate() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);
    let c = claims(&clock, json!({}));
    let rsa_token = sign(Algorithm::RS256, Some("rsa-1"), &rsa(), &c);
    let ec_token = sign(Algorithm::ES256, Some("ec-1"), &ec(), &c);

    serve_jwks(&server, jwks(false), 1).await;
    for _ in 0..3 {
        assert!(authorizer.authorize(&rsa_token).await.is_ok());
    }
    // Made-up kids right after a fetch do not reach the identity provider.
    for kid in ["zz-1", "zz-2", "zz-3"] {
        let forged = sign(Algorithm::RS256, Some(kid), &rsa(), &c);
        let err = authorizer.authorize(&forged).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{kid}");
    }

    // The identity provider rotates in a new key; once the interval has passed, a token
    // naming it triggers one refresh and verifies.
    serve_jwks(&server, jwks(true), 1).await;
    clock.advance(TimeDelta::seconds(31));
    assert!(authorizer.authorize(&ec_token).await.is_ok());
    assert!(authorizer.authorize(&ec_token).await.is_ok());
    assert!(authorizer.authorize(&rsa_token).await.is_ok());
    server.verify().await;
}

#[tokio::test]
async fn concurrent_callers_share_one_fetch() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(jwks(false))
                .set_delay(Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let clock = clock();
    let authorizer = Arc::new(jwks_authorizer(&server, &clock));
    let token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa(),
        &claims(&clock, json!({})),
    );
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (authorizer, token) = (Arc::clone(&authorizer), token.clone());
            tokio::spawn(async move { authorizer.authorize(&token).await })
        })
        .collect();
    for caller in callers {
        assert!(caller.await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn an_unreachable_jwks_is_unavailable_so_senders_retry() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);
    let token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa(),
        &claims(&clock, json!({})),
    );
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    for _ in 0..2 {
        let err = authorizer.authorize(&token).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err}");
    }
    serve_jwks(
        &server,
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}),
        1,
    )
    .await;
    // A set with no key hookgate verifies with is the provider's answer, not a failure to
    // retry: its tokens are refused.
    clock.advance(TimeDelta::seconds(31));
    let err = authorizer.authorize(&token).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{err}");
    assert!(err.to_string().contains("`kid`"), "{err}");
}

/// A token a direct key fits but does not verify is refused (`401`) while the JWKS is down, as
/// it was before the JWKS was consulted for such tokens: its sender should not retry.
#[tokio::test]
async fn a_bad_signature_on_a_direct_keys_token_is_401_while_the_jwks_is_down() {
    let server = jwks_down().await;
    let clock = clock();
    let authorizer = jwks_builder(&server, &clock).hs256(SECRET).build().unwrap();
    let forged = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"another secret of the same length, or so").unwrap(),
        &claims(&clock, json!({})),
    );

    let err = authorizer.authorize(&forged).await.unwrap_err();

    assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{err}");
}

/// A token of an algorithm no JWKS key can have (HS256, HS384) is refused (`401`), not sent to
/// retry (`503`) while the JWKS is down, and costs no fetch: with the JWKS alone, and beside a
/// direct key of another algorithm (ES256). Its sender would retry a token that never passes.
#[tokio::test]
async fn a_token_no_jwks_key_could_verify_is_401_while_the_jwks_is_down() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let clock = clock();
    let secret = EncodingKey::from_secret(b"some secret some secret some secret!!").unwrap();
    for with_es256 in [false, true] {
        let builder = jwks_builder(&server, &clock);
        let authorizer = match with_es256 {
            true => builder.es256_pem(EC_PUBLIC),
            false => builder,
        }
        .build()
        .unwrap();
        for alg in [Algorithm::HS256, Algorithm::HS384] {
            let token = sign(alg, None, &secret, &claims(&clock, json!({})));

            let err = authorizer.authorize(&token).await.unwrap_err();

            assert_eq!(
                err.status(),
                StatusCode::UNAUTHORIZED,
                "{alg:?}, ES256 key: {with_es256}: {err}"
            );
            assert!(err.to_string().contains("no configured key fits"), "{err}");
        }
    }
}

/// Beside a direct key of the same algorithm (RS256), a token the JWKS signed, while the JWKS
/// cannot be fetched, is sent to retry (`503`) as in a JWKS-only setup: refused (`401`), its
/// sender would give up on a valid token.
#[tokio::test]
async fn a_jwks_token_is_503_while_the_jwks_is_down_beside_a_direct_key_of_its_algorithm() {
    let server = jwks_down().await;
    let clock = clock();
    let authorizer = jwks_builder(&server, &clock)
        .rs256_pem(RSA_PUBLIC)
        .build()
        .unwrap();
    let token = sign(
        Algorithm::RS256,
        Some("rsa-2"),
        &rsa2(),
        &claims(&clock, json!({})),
    );

    let err = authorizer.authorize(&token).await.unwrap_err();

    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err}");
}

/// A JWKS endpoint that fails every fetch.
async fn jwks_down() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    server
}

/// A JWKS holding `key` (RS256) as `kid`.
fn rsa_jwks(key: &EncodingKey, kid: &str) -> Value {
    crypto();
    let mut jwk = Jwk::from_encoding_key(key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(JwkSet { keys: vec![jwk] }).unwrap()
}

#[tokio::test]
async fn a_key_rotated_without_a_new_kid_is_fetched_at_the_limited_rate() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);
    let c = claims(&clock, json!({}));

    serve_jwks(&server, rsa_jwks(&rsa(), "rsa-1"), 1).await;
    let old = sign(Algorithm::RS256, None, &rsa(), &c);
    assert!(authorizer.authorize(&old).await.is_ok());
    // The provider rotates to a new key under the same `kid`. Right after a fetch, tokens no
    // cached key verifies do not reach it, whether they name no `kid` or the reused one.
    serve_jwks(&server, rsa_jwks(&rsa2(), "rsa-1"), 0).await;
    let without_kid = sign(Algorithm::RS256, None, &rsa2(), &c);
    let reused_kid = sign(Algorithm::RS256, Some("rsa-1"), &rsa2(), &c);
    for token in [&without_kid, &reused_kid] {
        let err = authorizer.authorize(token).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{err}");
        assert!(err.to_string().contains("signature"), "{err}");
    }

    // Once the interval has passed, one refresh picks up the new key.
    serve_jwks(&server, rsa_jwks(&rsa2(), "rsa-1"), 1).await;
    clock.advance(TimeDelta::seconds(31));
    for token in [&without_kid, &reused_kid, &without_kid] {
        assert!(authorizer.authorize(token).await.is_ok());
    }
    // The old key is gone with the rotation, and forgeries do not refetch.
    let err = authorizer.authorize(&old).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{err}");
    server.verify().await;
}

#[tokio::test]
async fn a_removed_key_stops_verifying_once_the_cache_is_older_than_its_max_age() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);

    serve_jwks(&server, jwks(false), 1).await;
    assert!(authorizer.authorize(&rsa_token(&clock)).await.is_ok());
    // The provider removes the key. Within the default max age of an hour the cache is used.
    serve_jwks(&server, json!({"keys": [jwks(true)["keys"][1]]}), 0).await;
    clock.advance(TimeDelta::minutes(59));
    assert!(authorizer.authorize(&rsa_token(&clock)).await.is_ok());
    // After it, the JWKS is fetched again before use, once, and the key no longer verifies.
    serve_jwks(&server, json!({"keys": [jwks(true)["keys"][1]]}), 1).await;
    clock.advance(TimeDelta::minutes(2));
    for _ in 0..2 {
        let err = authorizer.authorize(&rsa_token(&clock)).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{err}");
    }
    server.verify().await;
}

/// Once the keys are older than the max age, one caller fetches them again; the callers that
/// arrive meanwhile use the old keys rather than wait for a slow identity provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_keys_serve_other_callers_while_one_fetches_them_again() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = Arc::new(jwks_authorizer(&server, &clock));
    serve_jwks(&server, jwks(false), 1).await;
    assert!(authorizer.authorize(&rsa_token(&clock)).await.is_ok());

    server.verify().await;
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(jwks(false))
                .set_delay(Duration::from_secs(3600)),
        )
        .mount(&server)
        .await;
    clock.advance(TimeDelta::minutes(61));
    let fetching = tokio::spawn({
        let (authorizer, token) = (Arc::clone(&authorizer), rsa_token(&clock));
        async move { authorizer.authorize(&token).await }
    });
    while server
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        tokio::task::yield_now().await;
    }

    let other_token = rsa_token(&clock);
    let mut other = std::pin::pin!(authorizer.authorize(&other_token));
    let answered = std::future::poll_fn(|cx| std::task::Poll::Ready(other.as_mut().poll(cx))).await;
    assert!(
        matches!(answered, std::task::Poll::Ready(Ok(_))),
        "answered at once with the old keys: {answered:?}"
    );
    assert!(!fetching.is_finished(), "the fetching caller still waits");
    fetching.abort();
}

#[tokio::test]
async fn the_max_age_is_configurable_and_a_failed_refetch_keeps_the_known_keys() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = jwks_builder(&server, &clock)
        .jwks_max_age(Duration::from_secs(120))
        .build()
        .unwrap();
    serve_jwks(&server, jwks(false), 1).await;
    assert!(authorizer.authorize(&rsa_token(&clock)).await.is_ok());
    server.verify().await;

    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    clock.advance(TimeDelta::seconds(121));
    assert!(authorizer.authorize(&rsa_token(&clock)).await.is_ok());
    server.verify().await;
}

/// During a key migration both are configured: a static key (no `kid`, so it fits every RS256
/// token) and the identity provider's JWKS. A token the static key does not verify is tried
/// against the JWKS's keys rather than refused.
#[tokio::test]
async fn a_static_key_without_a_kid_does_not_hide_the_jwks() {
    let server = MockServer::start().await;
    let clock = clock();
    serve_jwks(&server, rsa_jwks(&rsa2(), "rsa-2"), 1).await;
    let authorizer = jwks_builder(&server, &clock)
        .rs256_pem(RSA_PUBLIC)
        .build()
        .unwrap();
    let c = claims(&clock, json!({}));

    let by_static_key = sign(Algorithm::RS256, None, &rsa(), &c);
    assert!(authorizer.authorize(&by_static_key).await.is_ok());
    let by_jwks_key = sign(Algorithm::RS256, Some("rsa-2"), &rsa2(), &c);
    assert!(authorizer.authorize(&by_jwks_key).await.is_ok());
    let signature_at = by_jwks_key.rfind('.').unwrap() + 10;
    let flipped = if &by_jwks_key[signature_at..=signature_at] == "A" {
        "B"
    } else {
        "A"
    };
    let mut by_neither = by_jwks_key.clone();
    by_neither.replace_range(signature_at..=signature_at, flipped);
    let err = authorizer.authorize(&by_neither).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert!(err.to_string().contains("signature"), "{err}");
    server.verify().await;
}

/// Serves `body` as the JWKS for one fetch, answered `delay` late: time for a test to see the
/// request before the answer comes, yet under the 10 s the authorizer gives a JWKS fetch, so
/// the fetch ends with this answer, not with its timeout. Checks what it replaces first, as
/// [`serve_jwks`] does.
async fn serve_jwks_late(server: &MockServer, body: Value, delay: Duration) {
    server.verify().await;
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(body)
                .set_delay(delay),
        )
        .expect(1)
        .mount(server)
        .await;
}

/// Sends `token` and hangs up once the JWKS fetch it starts has reached `server` (however long
/// a loaded machine takes to get it there), before the answer comes.
async fn hang_up_mid_fetch(server: &MockServer, authorizer: &JwtAuthorizer, token: &str) {
    let reached = async {
        while server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let hung_up = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            // Checked first: a fetch that reached the server counts, even if its answer came
            // at the same moment.
            biased;
            () = reached => true,
            _ = authorizer.authorize(token) => false,
        }
    })
    .await
    .expect("the fetch reaches the server");
    assert!(
        hung_up,
        "the fetch was answered before the test saw it reach the server, so the caller never \
         went away mid-fetch: the test did not exercise what it is about"
    );
}

/// A caller that goes away while its fetch is under way (a client hanging up) does not free
/// the next caller to fetch again at once: otherwise tokens with made-up `kid`s, each sent and
/// hung up on, would make one fetch apiece.
#[tokio::test]
async fn a_fetch_whose_caller_went_away_still_counts_toward_the_rate_limit() {
    let server = MockServer::start().await;
    serve_jwks_late(&server, jwks(false), Duration::from_secs(3)).await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);
    let c = claims(&clock, json!({}));

    let first = sign(Algorithm::RS256, Some("zz-1"), &rsa(), &c);
    hang_up_mid_fetch(&server, &authorizer, &first).await;
    // Heard out to the end: they wait for the first fetch, carried on, and find their kids
    // missing from it; a fetch either started would reach the server before its answer.
    for kid in ["zz-2", "zz-3"] {
        let forged = sign(Algorithm::RS256, Some(kid), &rsa(), &c);
        let answer = tokio::time::timeout(Duration::from_secs(30), authorizer.authorize(&forged))
            .await
            .expect("an answer");
        assert!(answer.is_err(), "{kid}: not in the JWKS");
    }
    server.verify().await;
}

/// The fetch a caller started and went away from (a client hanging up) is carried on by the
/// next caller rather than abandoned: its keys are used, so hanging up at every interval cannot
/// keep the JWKS from loading.
#[tokio::test]
async fn a_fetch_whose_caller_went_away_is_carried_on_by_the_next_caller() {
    let server = MockServer::start().await;
    serve_jwks_late(&server, jwks(false), Duration::from_secs(2)).await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);
    let token = rsa_token(&clock);

    hang_up_mid_fetch(&server, &authorizer, &token).await;

    let answer = tokio::time::timeout(Duration::from_secs(30), authorizer.authorize(&token))
        .await
        .expect("an answer");
    assert!(
        answer.is_ok(),
        "the keys of the carried-on fetch: {answer:?}"
    );
    server.verify().await;
}

/// A refetch of keys past their max age whose caller went away is moved on by the callers
/// that keep using the old keys meanwhile: once it ends, a key the provider removed stops
/// verifying, though no caller waited for it.
#[tokio::test]
async fn callers_using_old_keys_carry_on_a_refetch_whose_caller_went_away() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);
    serve_jwks(&server, jwks(false), 1).await;
    assert!(authorizer.authorize(&rsa_token(&clock)).await.is_ok());
    server.verify().await;

    // The provider removes the key, and answers slowly.
    let removed = json!({"keys": [jwks(true)["keys"][1]]});
    serve_jwks_late(&server, removed, Duration::from_millis(500)).await;
    clock.advance(TimeDelta::minutes(61));
    let token = rsa_token(&clock);
    hang_up_mid_fetch(&server, &authorizer, &token).await;

    let refused = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match authorizer.authorize(&token).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(err) => return err,
            }
        }
    })
    .await
    .expect("the refetch ends while callers use the old keys");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{refused}");
    server.verify().await;
}

/// A transport whose bug makes it panic mid-fetch fails that one fetch: the sender is told to
/// retry, rather than having its request panic, and once the refresh interval has passed the
/// JWKS is fetched again. A panic that stayed in the shared fetch would answer every later
/// token needing the JWKS with a panic, until a restart.
#[tokio::test]
async fn a_jwks_fetch_that_panics_is_an_error_and_the_next_fetch_goes_ahead() {
    let clock = clock();
    let calls = Arc::new(AtomicUsize::new(0));
    let transport = {
        let calls = Arc::clone(&calls);
        move |_request: http::Request<Bytes>| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(call > 0, "the transport's bug, on its first call only");
                let body = serde_json::to_vec(&jwks(false)).unwrap();
                Ok::<_, TransportError>(http::Response::new(Bytes::from(body)))
            }
        }
    };
    let authorizer = JwtAuthorizer::builder(ISS, AUD)
        .jwks("https://idp.example/.well-known/jwks.json", transport)
        .clock(clock.clone())
        .build()
        .unwrap();
    let token = rsa_token(&clock);

    for attempt in ["the fetch", "the rate-limited retry"] {
        let answer = AssertUnwindSafe(authorizer.authorize(&token))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| panic!("{attempt}: the authorizer panicked"));
        let err = answer.unwrap_err();
        assert_eq!(
            err.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{attempt}: {err}"
        );
        assert!(
            err.to_string().contains("JWKS fetch panicked"),
            "{attempt}: {err}"
        );
        assert!(
            !err.to_string().contains("first call"),
            "the panic's message stays out: {err}"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the retry waits for the interval"
    );

    clock.advance(TimeDelta::seconds(31));
    let answer = authorizer.authorize(&token).await;
    assert!(answer.is_ok(), "the next fetch's keys: {answer:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A provider revoking its only key empties its key set: once the cached keys are older than
/// the max age, the emptied set replaces them, and the revoked key stops verifying. (An empty
/// set was once taken for a failed fetch, which kept the keys known so far for good.)
#[tokio::test]
async fn an_emptied_jwks_revokes_its_keys_once_they_are_older_than_the_max_age() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);
    serve_jwks(&server, jwks(false), 1).await;
    assert!(authorizer.authorize(&rsa_token(&clock)).await.is_ok());

    serve_jwks(&server, json!({"keys": []}), 1).await;
    clock.advance(TimeDelta::minutes(61));
    for _ in 0..2 {
        let err = authorizer.authorize(&rsa_token(&clock)).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{err}");
    }
    server.verify().await;
}

/// RFC 7517 makes `kid` optional: a JWKS key without one verifies the tokens of its algorithm,
/// with or without a `kid` of their own, as a configured key does.
#[tokio::test]
async fn a_jwks_key_without_a_kid_verifies_the_tokens_of_its_algorithm() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);
    crypto();
    let jwk = Jwk::from_encoding_key(&rsa(), Algorithm::RS256).unwrap();
    assert!(jwk.common.key_id.is_none());
    serve_jwks(
        &server,
        serde_json::to_value(JwkSet { keys: vec![jwk] }).unwrap(),
        1,
    )
    .await;
    let c = claims(&clock, json!({}));
    for kid in [None, Some("rsa-1"), None] {
        let token = sign(Algorithm::RS256, kid, &rsa(), &c);
        assert!(authorizer.authorize(&token).await.is_ok(), "kid {kid:?}");
    }
    let forged = sign(Algorithm::RS256, None, &rsa2(), &c);
    let err = authorizer.authorize(&forged).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{err}");
    server.verify().await;
}

/// The rate limit and the max age count on the injected wall clock. Stepped back (an NTP
/// step, a restored virtual machine), it no longer keeps a new `kid` from being fetched until
/// it has caught up.
#[tokio::test]
async fn a_clock_stepped_back_does_not_hold_fetches_off_until_it_catches_up() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);
    serve_jwks(&server, rsa_jwks(&rsa(), "rsa-1"), 1).await;
    assert!(authorizer.authorize(&rsa_token(&clock)).await.is_ok());

    serve_jwks(&server, rsa_jwks(&rsa2(), "rsa-2"), 1).await;
    clock.advance(TimeDelta::hours(-1));
    let token = sign(
        Algorithm::RS256,
        Some("rsa-2"),
        &rsa2(),
        &claims(&clock, json!({})),
    );
    assert!(authorizer.authorize(&token).await.is_ok());
    server.verify().await;
}

/// RFC 7519 allows an `exp` with a fraction of a second: the token is expired once that
/// fraction has passed, not a second later.
#[tokio::test]
async fn a_fractional_exp_has_passed_once_its_fraction_has() {
    let clock = clock();
    let authorizer = JwtAuthorizer::builder(ISS, AUD)
        .hs256(SECRET)
        .leeway(Duration::ZERO)
        .clock(clock.clone())
        .build()
        .unwrap();
    let now = clock.now().timestamp() as f64;
    let token = hs(&claims(&clock, json!({"exp": now + 0.5})));
    clock.advance(TimeDelta::milliseconds(400));
    assert!(authorizer.authorize(&token).await.is_ok());
    clock.advance(TimeDelta::milliseconds(200));
    assert_eq!(
        authorizer.authorize(&token).await,
        Err(AuthError::ExpiredToken)
    );
}

/// A JWKS larger than its limit (SECURITY.md: 256 KiB) is not used: the fetch fails, and
/// tokens wait (`503`) for a set that can be.
#[tokio::test]
async fn a_jwks_over_its_size_limit_is_not_used() {
    let server = MockServer::start().await;
    let clock = clock();
    let authorizer = jwks_authorizer(&server, &clock);
    let mut set = jwks(false);
    set["padding"] = json!("x".repeat(300 * 1024));
    serve_jwks(&server, set, 1).await;
    let err = authorizer.authorize(&rsa_token(&clock)).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert!(err.to_string().contains("larger than"), "{err}");
}

/// A payload naming `iss` twice, another issuer first and ours last, is refused: the token's
/// signature checker and hookgate's own reading of the claims must not read different issuers.
#[tokio::test]
async fn a_payload_naming_its_issuer_twice_is_refused() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    crypto();
    let clock = clock();
    let authorizer = hs_authorizer(&clock);
    let payload = format!(
        r#"{{"iss":"https://evil.example","aud":"{AUD}","sub":"x","exp":{},"iss":"{ISS}"}}"#,
        clock.now().timestamp() + 300
    );
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    let verdict = authorizer.authorize(&format!("{input}.{signature}")).await;
    assert!(verdict.is_err(), "{verdict:?}");
}
