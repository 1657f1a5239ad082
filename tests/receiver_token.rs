//! `ClientCredentials` against a real loopback token endpoint (PROTOCOL.md §6).
#![cfg(all(feature = "reqwest", feature = "receiver"))]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hookgate::{
    Secret,
    clock::Clock,
    receiver::{Backoff, ClientCredentials, TokenError, TokenSource},
    transport::ReqwestTransport,
};
use serde_json::json;
use url::Url;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string, header, method, path},
};

mod log_capture;
mod raw_peer;
use log_capture::Captured;
use raw_peer::{OK_CUT_SHORT, RawPeer, Turn, UNAVAILABLE_CUT_SHORT};

const SECRET: &str = "s3cr&t=+/é-hunter2";

/// A raw answer carrying token `t-1`, valid for a minute.
const TOKEN_T1: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 38\r\n\
                        connection: close\r\n\r\n{\"access_token\":\"t-1\",\"expires_in\":60}";

/// A clock moved by hand (the crate's `ManualClock` needs the `test-util` feature).
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        )))
    }

    fn advance(&self, by: TimeDelta) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn quick() -> Backoff {
    Backoff::default()
        .with_max_attempts(4)
        .with_base(Duration::from_millis(1))
}

fn token(access_token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": access_token,
        "scope": "openid",
        "expires_in": expires_in,
        "token_type": "Bearer",
    }))
}

/// An endpoint answering token `first` once, then `second`, each living `expires_in` seconds;
/// each is fetched exactly once.
async fn first_then_second(expires_in: u64) -> MockServer {
    answering(token("first", expires_in), 1, token("second", expires_in)).await
}

/// A token endpoint answering `first` exactly `times` times, then `then` exactly once.
async fn answering(
    first: impl wiremock::Respond + 'static,
    times: u64,
    then: ResponseTemplate,
) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/oauth/token"))
        .respond_with(first)
        .up_to_n_times(times)
        .expect(times)
        .mount(&server)
        .await;
    Mock::given(path("/oauth/token"))
        .respond_with(then)
        .expect(1)
        .mount(&server)
        .await;
    server
}

fn source(server: &MockServer) -> hookgate::receiver::ClientCredentialsBuilder {
    ClientCredentials::builder("my client", SECRET)
        .token_url(Url::parse(&format!("{}/oauth/token", server.uri())).unwrap())
        .backoff(quick())
}

/// The client credentials of `server`, refreshing a minute before expiry by `clock`.
fn on_clock(server: &MockServer, clock: &TestClock) -> ClientCredentials {
    source(server)
        .refresh_margin(Duration::from_secs(60))
        .clock(clock.clone())
        .build(transport())
        .unwrap()
}

fn transport() -> ReqwestTransport {
    ReqwestTransport::new().unwrap()
}

#[tokio::test]
async fn token_request_has_exactly_the_form_of_the_protocol() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string(
            "audience=https%3A%2F%2Fapi.cloud.armory.io&grant_type=client_credentials\
             &client_id=my+client&client_secret=s3cr%26t%3D%2B%2F%C3%A9-hunter2",
        ))
        .respond_with(token("tok-1", 86400))
        .expect(1)
        .mount(&server)
        .await;

    let tokens = source(&server).build(transport()).unwrap();
    assert_eq!(tokens.token().await.unwrap().expose(), "tok-1");
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "tok-1",
        "second call is served from the cache"
    );

    let requests = server.received_requests().await.unwrap();
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .collect();
    let expected = [
        ("audience", "https://api.cloud.armory.io"),
        ("grant_type", "client_credentials"),
        ("client_id", "my client"),
        ("client_secret", SECRET),
    ];
    assert_eq!(fields, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
}

#[tokio::test]
async fn audience_is_configurable() {
    let server = MockServer::start().await;
    Mock::given(body_string(
        "audience=urn%3Ahookgate&grant_type=client_credentials&client_id=my+client\
         &client_secret=s3cr%26t%3D%2B%2F%C3%A9-hunter2",
    ))
    .respond_with(token("tok", 60))
    .expect(1)
    .mount(&server)
    .await;

    let tokens = source(&server)
        .audience("urn:hookgate")
        .build(transport())
        .unwrap();
    tokens.token().await.unwrap();
}

#[tokio::test]
async fn token_is_refreshed_once_the_margin_before_expiry_is_reached() {
    let server = first_then_second(3600).await;

    let clock = TestClock::new();
    let tokens = on_clock(&server, &clock);

    assert_eq!(tokens.token().await.unwrap().expose(), "first");
    clock.advance(TimeDelta::seconds(3600 - 60 - 1));
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "first",
        "still outside the margin"
    );
    clock.advance(TimeDelta::seconds(2));
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "second",
        "inside the margin: refreshed before use"
    );
    assert_eq!(tokens.token().await.unwrap().expose(), "second");
}

#[tokio::test]
async fn a_token_living_no_longer_than_the_margin_is_cached_for_half_its_lifetime() {
    let server = first_then_second(60).await;

    // The default margin of 60 s would leave a 60 s token no time in the cache at all.
    let clock = TestClock::new();
    let tokens = source(&server)
        .clock(clock.clone())
        .build(transport())
        .unwrap();
    assert_eq!(tokens.token().await.unwrap().expose(), "first");
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "first",
        "served from the cache"
    );
    clock.advance(TimeDelta::seconds(29));
    assert_eq!(tokens.token().await.unwrap().expose(), "first");
    clock.advance(TimeDelta::seconds(1));
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "second",
        "half its lifetime gone: refreshed before use"
    );
}

/// An endpoint that takes its time answering, moving the test clock on by `delay` as it
/// does: the token's lifetime may have started when it was asked for.
struct SlowToken {
    clock: TestClock,
    delay: TimeDelta,
    token: &'static str,
}

impl wiremock::Respond for SlowToken {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.clock.advance(self.delay);
        token(self.token, 3600)
    }
}

#[tokio::test]
async fn a_tokens_lifetime_counts_from_when_it_was_asked_for() {
    let clock = TestClock::new();
    let asked_at = clock.now();
    let slow = SlowToken {
        clock: clock.clone(),
        delay: TimeDelta::seconds(30),
        token: "first",
    };
    let server = answering(slow, 1, token("second", 3600)).await;
    let tokens = on_clock(&server, &clock);

    assert_eq!(tokens.token().await.unwrap().expose(), "first");
    // Refreshed 60 s before an hour after it was asked for, not after it arrived.
    clock.advance(asked_at + TimeDelta::seconds(3600 - 60 - 1) - clock.now());
    assert_eq!(tokens.token().await.unwrap().expose(), "first");
    clock.advance(TimeDelta::seconds(1));
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "second",
        "the margin is reached an hour after the request, whenever the answer came"
    );
}

/// A token endpoint down at refresh time does not stop callbacks while the cached token is
/// still valid; once it has expired, the refresh's error is what callers get.
#[tokio::test]
async fn a_failed_refresh_falls_back_to_the_cached_token_until_it_expires() {
    let server = answering(token("first", 3600), 1, ResponseTemplate::new(503)).await;
    let clock = TestClock::new();
    let tokens = source(&server)
        .refresh_margin(Duration::from_secs(60))
        .backoff(Backoff::default().with_max_attempts(1))
        .clock(clock.clone())
        .build(transport())
        .unwrap();
    assert_eq!(tokens.token().await.unwrap().expose(), "first");

    clock.advance(TimeDelta::seconds(3600 - 30));
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "first",
        "inside the margin, the refresh failed, and the token has 30 s left"
    );
    clock.advance(TimeDelta::seconds(4));
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "first",
        "served for 5 s after a failed refresh without another"
    );
    server.verify().await;

    clock.advance(TimeDelta::seconds(26));
    server.reset().await;
    Mock::given(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let expired = tokens.token().await.unwrap_err();
    assert!(
        matches!(expired, TokenError::Status { status, .. } if status == 503),
        "{expired:?}"
    );

    // An invalidated token is never fallen back on, however long it has left.
    server.reset().await;
    Mock::given(path("/oauth/token"))
        .respond_with(token("third", 3600))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let third = tokens.token().await.unwrap();
    assert_eq!(third.expose(), "third");
    tokens.invalidate(&third);
    assert!(
        tokens.token().await.is_err(),
        "the rejected token came back"
    );
}

/// The caller that passes the refresh point of a token that still serves makes one attempt, not
/// the retries of a fetch with no token in hand: it would wait through them all (minutes, with
/// an endpoint that hangs) and fail once the token expired meanwhile.
#[tokio::test]
async fn a_refresh_while_the_token_still_serves_makes_one_attempt() {
    let server = answering(token("first", 3600), 1, ResponseTemplate::new(503)).await;
    let clock = TestClock::new();
    let tokens = on_clock(&server, &clock);
    assert_eq!(tokens.token().await.unwrap().expose(), "first");
    clock.advance(TimeDelta::seconds(3600 - 30));
    assert_eq!(tokens.token().await.unwrap().expose(), "first");
    server.verify().await;

    // Expired, there is nothing to fall back on: the fetch retries as configured.
    clock.advance(TimeDelta::seconds(30));
    server.reset().await;
    Mock::given(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(503))
        .expect(4)
        .mount(&server)
        .await;
    assert!(tokens.token().await.is_err());
    server.verify().await;
}

/// Callers arriving while one refreshes a token that has not expired get that token at once,
/// rather than wait through the refresh; once it has expired, they wait for the refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_during_a_refresh_are_served_the_unexpired_token() {
    let server = answering(
        token("first", 120),
        1,
        // Long enough that the callers below ask while the refresh is under way, however
        // slowly a loaded machine runs them; well within the transport's 30 s timeout.
        token("second", 120).set_delay(Duration::from_secs(5)),
    )
    .await;
    let clock = TestClock::new();
    let tokens = Arc::new(on_clock(&server, &clock));
    assert_eq!(tokens.token().await.unwrap().expose(), "first");

    clock.advance(TimeDelta::seconds(70));
    let refreshing = tokio::spawn({
        let tokens = Arc::clone(&tokens);
        async move { tokens.token().await }
    });
    while server.received_requests().await.unwrap_or_default().len() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "first",
        "inside the margin, a refresh under way, and the token has 50 s left"
    );
    assert!(!refreshing.is_finished(), "the refresh had not ended");

    clock.advance(TimeDelta::seconds(50));
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "second",
        "expired: the caller waited for the refresh"
    );
    assert_eq!(refreshing.await.unwrap().unwrap().expose(), "second");
    server.verify().await;
}

#[tokio::test]
async fn invalidate_forces_a_fresh_token() {
    let server = first_then_second(3600).await;

    let tokens = source(&server).build(transport()).unwrap();
    let first = tokens.token().await.unwrap();
    assert_eq!(first.expose(), "first");
    tokens.invalidate(&Secret::new("some other token"));
    assert_eq!(
        tokens.token().await.unwrap().expose(),
        "first",
        "a token that is not the cached one leaves the cache alone"
    );
    tokens.invalidate(&first);
    assert_eq!(tokens.token().await.unwrap().expose(), "second");
}

#[tokio::test]
async fn rfc6749_error_is_typed_final_and_never_shows_the_secret() {
    let server = MockServer::start().await;
    Mock::given(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": format!("wrong secret {SECRET}"),
        })))
        .expect(1)
        .mount(&server)
        .await;

    let tokens = source(&server).build(transport()).unwrap();
    let error = tokens.token().await.unwrap_err();

    let TokenError::Refused {
        status,
        error: code,
        description,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((status.as_u16(), code.as_str()), (401, "invalid_client"));
    assert_eq!(description.as_deref(), Some("wrong secret [redacted]"));
    let shown = format!("{error} {error:?} {tokens:?}");
    assert!(shown.contains("invalid_client"), "{shown}");
    assert!(!shown.contains("hunter2"), "secret leaked: {shown}");
}

/// A token URL may carry a credential in its query (or a long path segment); an endpoint that
/// quotes the URL back in its error does not show it.
#[tokio::test]
async fn a_refusal_never_shows_the_token_urls_credentials() {
    const IN_QUERY: &str = "q5ecret-in-the-query-0123";
    const IN_PATH: &str = "tenant-0123456789abcdef";
    let server = MockServer::start().await;
    Mock::given(path(format!("/{IN_PATH}/oauth/token")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_request",
            "error_description": format!(
                "POST /{IN_PATH}/oauth/token?key={IN_QUERY} refused; key={IN_QUERY}; {}",
                IN_QUERY.to_uppercase()
            ),
        })))
        .expect(1)
        .mount(&server)
        .await;

    let url = format!("{}/{IN_PATH}/oauth/token?key={IN_QUERY}", server.uri());
    let tokens = ClientCredentials::builder("my client", SECRET)
        .token_url(Url::parse(&url).unwrap())
        .build(transport())
        .unwrap();
    let error = tokens.token().await.unwrap_err();

    let TokenError::Refused { description, .. } = &error else {
        panic!("{error:?}")
    };
    let description = description.as_deref().unwrap_or_default();
    assert!(description.contains("refused"), "{description}");
    let shown = format!("{error} {error:?}");
    for credential in [IN_QUERY, IN_PATH, &IN_QUERY.to_uppercase()] {
        assert!(!shown.contains(credential), "{credential} shown: {shown}");
    }
}

/// A hostile token endpoint's error must not forge log lines where it is shown.
#[tokio::test]
async fn a_token_endpoints_error_cannot_forge_log_lines() {
    let server = MockServer::start().await;
    Mock::given(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_request\r\nINFO token issued",
            "error_description": "bad\nINFO token issued \u{1b}[2J",
        })))
        .expect(1)
        .mount(&server)
        .await;

    let error = source(&server)
        .build(transport())
        .unwrap()
        .token()
        .await
        .unwrap_err();
    assert!(matches!(error, TokenError::Refused { .. }), "{error:?}");
    let shown = error.to_string();
    for forbidden in ['\n', '\r', '\u{1b}'] {
        assert!(!shown.contains(forbidden), "{forbidden:?} in {shown:?}");
    }
    assert!(
        shown.contains(r"bad\nINFO token issued \u{1b}[2J"),
        "{shown}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = answering(ResponseTemplate::new(503), 2, token("after-retries", 60)).await;

    let tokens = source(&server).build(transport()).unwrap();
    assert_eq!(tokens.token().await.unwrap().expose(), "after-retries");
}

#[tokio::test]
async fn retries_stop_after_the_configured_attempts() {
    let server = MockServer::start().await;
    Mock::given(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(429))
        .expect(4)
        .mount(&server)
        .await;

    let tokens = source(&server).build(transport()).unwrap();
    let error = tokens.token().await.unwrap_err();
    assert!(
        matches!(error, TokenError::Status { status, attempts: 4, body: None } if status == 429),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains("HTTP 429 Too Many Requests after 4 attempts;"),
        "{shown}"
    );
}

/// An answer that is not RFC 6749's, such as a gateway's page, is shown in part, the secret
/// masked in the spellings it was sent in and control characters escaped.
#[tokio::test]
async fn an_unexpected_answers_body_is_shown_without_the_secret() {
    let server = MockServer::start().await;
    let form_encoded: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    let page = format!(
        "<html>\n<h1>403 Forbidden</h1> request blocked by policy; got client_secret={form_encoded} \
         ({SECRET})</html>\n{}",
        "x".repeat(2_000)
    );
    Mock::given(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(403).set_body_string(page))
        .expect(1)
        .mount(&server)
        .await;
    let error = source(&server)
        .build(transport())
        .unwrap()
        .token()
        .await
        .unwrap_err();
    let TokenError::Status {
        status,
        attempts: 1,
        body: Some(body),
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(status.as_u16(), 403);
    assert!(
        body.starts_with("<html>\\n<h1>403 Forbidden</h1> request blocked by policy"),
        "{body}"
    );
    assert!(
        body.ends_with('…') && body.chars().count() < 600,
        "cut short: {body}"
    );
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("after 1 attempt: <html>"), "{shown}");
    assert!(shown.contains("client credentials were refused"), "{shown}");
    for spelling in [SECRET, &form_encoded, "hunter2"] {
        assert!(
            !shown.contains(spelling),
            "secret leaked as {spelling}: {shown}"
        );
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_a_retried_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tokens = ClientCredentials::builder("id", SECRET)
        .token_url(Url::parse(&format!("http://127.0.0.1:{port}/oauth/token")).unwrap())
        .backoff(quick())
        .build(transport())
        .unwrap();
    let error = tokens.token().await.unwrap_err();
    assert!(
        matches!(&error, TokenError::Transport { attempts: 4, source } if source.is_retryable()),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains(&format!(
            "could not connect for POST http://127.0.0.1:{port}"
        )),
        "the message names its cause: {shown}"
    );
}

#[tokio::test]
async fn a_connection_reset_or_a_token_cut_short_is_retried() {
    let peer = RawPeer::start(&[
        Turn::Reset,
        Turn::Write(OK_CUT_SHORT),
        Turn::Write(TOKEN_T1),
    ])
    .await;
    let tokens = ClientCredentials::builder("id", SECRET)
        .token_url(Url::parse(&format!("{}/oauth/token", peer.base)).unwrap())
        .backoff(quick())
        .build(transport())
        .unwrap();

    let token = tokens.token().await.unwrap_or_else(|e| panic!("{e:?}"));

    assert_eq!(token.expose(), "t-1");
    assert_eq!(peer.accepted(), 3);
}

/// A 503 that loses its body still says when to ask again: the backoff here would wait an hour,
/// the `Retry-After` (7 s, capped at 10 ms) hardly at all.
#[tokio::test]
async fn an_unavailable_answer_cut_short_is_retried_when_its_retry_after_says() {
    let peer = RawPeer::start(&[Turn::Write(UNAVAILABLE_CUT_SHORT), Turn::Write(TOKEN_T1)]).await;
    let patient = Backoff::default()
        .with_base(Duration::from_secs(3600))
        .with_max_delay(Duration::from_secs(3600))
        .with_retry_after_cap(Duration::from_millis(10));
    let tokens = ClientCredentials::builder("id", SECRET)
        .token_url(Url::parse(&format!("{}/oauth/token", peer.base)).unwrap())
        .backoff(patient)
        .build(transport())
        .unwrap();

    let token = tokio::time::timeout(Duration::from_secs(10), tokens.token())
        .await
        .expect("the lost body's Retry-After was not honoured")
        .unwrap_or_else(|e| panic!("{e:?}"));

    assert_eq!(token.expose(), "t-1");
    assert_eq!(peer.accepted(), 2);
}

/// A refusal is final even when its body is lost: the lost body is no reason to ask again.
#[tokio::test]
async fn a_refusal_cut_short_is_not_retried() {
    let refused = "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
                   content-length: 64\r\nconnection: close\r\n\r\n{\"error\":";
    let peer = RawPeer::start(&[Turn::Write(refused), Turn::Write(refused)]).await;
    let tokens = ClientCredentials::builder("id", SECRET)
        .token_url(Url::parse(&format!("{}/oauth/token", peer.base)).unwrap())
        .backoff(quick())
        .build(transport())
        .unwrap();

    let error = tokens.token().await.unwrap_err();

    assert!(!matches!(error, TokenError::Transport { .. }), "{error:?}");
    assert!(error.to_string().contains("401"), "{error}");
    assert_eq!(peer.accepted(), 1, "asked once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fetch_and_its_failure() {
    let server = MockServer::start().await;
    Mock::given(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": "unsupported_grant_type"}))
                // Long enough that every caller asks while the one fetch is under way, however
                // slowly a loaded machine runs them; well within the transport's 30 s timeout.
                .set_delay(Duration::from_secs(5)),
        )
        .expect(1)
        .mount(&server)
        .await;

    let tokens = Arc::new(source(&server).build(transport()).unwrap());
    // All running before any asks, so that all ask while the one fetch is under way, however
    // slowly a loaded machine starts them.
    let ready = Arc::new(tokio::sync::Barrier::new(50));
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let (tokens, ready) = (tokens.clone(), ready.clone());
            tokio::spawn(async move {
                ready.wait().await;
                tokens.token().await
            })
        })
        .collect();
    for caller in callers {
        let error = caller.await.unwrap().unwrap_err();
        assert!(
            matches!(&error, TokenError::Refused { error, .. } if error == "unsupported_grant_type")
        );
    }
}

#[tokio::test]
async fn malformed_success_answer_is_an_invalid_response() {
    let server = MockServer::start().await;
    Mock::given(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": "x"})))
        .mount(&server)
        .await;

    let error = source(&server)
        .build(transport())
        .unwrap()
        .token()
        .await
        .unwrap_err();
    assert!(
        matches!(error, TokenError::InvalidResponse { .. }),
        "{error:?}"
    );
}

/// A caller that waited for another's fetch is not handed its token once that token has been
/// invalidated meanwhile (the other caller's callback refused it): it fetches a fresh one.
#[tokio::test]
async fn a_caller_waiting_on_a_fetch_is_not_handed_a_token_invalidated_meanwhile() {
    let server = answering(
        token("first", 3600).set_delay(Duration::from_millis(200)),
        1,
        token("second", 3600),
    )
    .await;
    let tokens = source(&server).build(transport()).unwrap();

    let fetcher = async {
        let first = tokens.token().await.unwrap();
        tokens.invalidate(&first);
        first
    };
    let waiter = async {
        // Polled after the fetcher has begun its fetch, so it waits for that one.
        tokio::task::yield_now().await;
        tokens.token().await.unwrap()
    };
    let (first, waited) = tokio::join!(fetcher, waiter);
    assert_eq!(first.expose(), "first");
    assert_eq!(waited.expose(), "second");
}

/// A refresh that begins while the token still serves, and during whose one attempt a callback
/// refused that token, retries as a fetch with no token in hand would: the callers waiting on it
/// have no other token to fall back on.
#[tokio::test]
async fn a_refresh_whose_token_stops_serving_during_its_attempt_retries() {
    let server = MockServer::start().await;
    let unavailable = ResponseTemplate::new(503).set_delay(Duration::from_millis(300));
    for answer in [token("first", 3600), unavailable, token("second", 3600)] {
        Mock::given(path("/oauth/token"))
            .respond_with(answer)
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
    }
    let clock = TestClock::new();
    let tokens = on_clock(&server, &clock);
    let first = tokens.token().await.unwrap();
    // Past the refresh point, not yet expired.
    clock.advance(TimeDelta::seconds(3600 - 30));

    let refresher = tokens.token();
    let refused = async {
        // Polled after the refresher's attempt is under way.
        tokio::task::yield_now().await;
        tokens.invalidate(&first);
        tokens.token().await
    };
    let (refreshed, waited) = tokio::join!(refresher, refused);
    assert_eq!(waited.unwrap().expose(), "second");
    assert_eq!(refreshed.unwrap().expose(), "second");
    server.verify().await;
}

/// A `401` or `403` without an RFC 6749 body (a gateway's or an HTTP Basic front's refusal)
/// points at the credentials, not at the URL or an overloaded server.
#[tokio::test]
async fn a_bare_401_or_403_points_at_the_credentials() {
    for status in [401, 403] {
        let server = MockServer::start().await;
        Mock::given(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(status).insert_header("www-authenticate", "Basic"))
            .mount(&server)
            .await;
        let error = ClientCredentials::builder("id", SECRET)
            .token_url(Url::parse(&format!("{}/oauth/token", server.uri())).unwrap())
            .backoff(Backoff::default().with_max_attempts(1))
            .build(ReqwestTransport::new().unwrap())
            .unwrap()
            .token()
            .await
            .unwrap_err();
        let shown = error.to_string();
        assert!(matches!(error, TokenError::Status { .. }), "{error:?}");
        assert!(shown.contains("client credentials were refused"), "{shown}");
        assert!(!shown.contains("overloaded"), "{shown}");
    }
}

/// None of the warnings of failed attempts promises a retry: only the retry loop knows whether
/// one comes. Only the absence is asserted: `tracing` caches whether a call site is enabled
/// across the test threads, so an event of code other tests run at once on threads without a
/// subscriber now and then goes unseen by this thread's (CI saw a run where none was).
#[tokio::test]
async fn no_warning_promises_a_retry() {
    for attempts in [1, 2] {
        let (logs, _guard) = Captured::on_this_thread();
        let server = MockServer::start().await;
        Mock::given(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(503))
            .expect(u64::from(attempts))
            .mount(&server)
            .await;
        let error = ClientCredentials::builder("id", SECRET)
            .token_url(Url::parse(&format!("{}/oauth/token", server.uri())).unwrap())
            .backoff(
                Backoff::default()
                    .with_max_attempts(attempts)
                    .with_base(Duration::from_millis(1)),
            )
            .build(ReqwestTransport::new().unwrap())
            .unwrap()
            .token()
            .await
            .unwrap_err();
        assert!(matches!(error, TokenError::Status { .. }), "{error:?}");
        server.verify().await;
        let text = logs.text();
        let promising: Vec<&str> = text
            .lines()
            .filter(|line| line.contains(" WARN ") && line.contains("retry"))
            .collect();
        assert!(promising.is_empty(), "{promising:?}");
    }
}

/// A well-formed answer longer than the transport's response limit is reported as such, not
/// as a broken answer from the wrong URL.
#[tokio::test]
async fn an_answer_cut_at_the_response_limit_is_reported_as_too_large() {
    let server = MockServer::start().await;
    Mock::given(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "a".repeat(2000), "expires_in": 3600, "token_type": "Bearer"
        })))
        .mount(&server)
        .await;
    let transport = ReqwestTransport::builder()
        .max_response_bytes(1024)
        .build()
        .unwrap();
    let error = ClientCredentials::builder("id", SECRET)
        .token_url(Url::parse(&format!("{}/oauth/token", server.uri())).unwrap())
        .build(transport)
        .unwrap()
        .token()
        .await
        .unwrap_err();
    assert!(matches!(error, TokenError::AnswerTooLarge), "{error:?}");
    assert!(error.to_string().contains("response limit"), "{error}");
}
