//! `CallbackClient` against a real loopback callback endpoint (PROTOCOL.md §1, §5, §6, §7).
#![cfg(all(feature = "reqwest", feature = "receiver"))]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hookgate::{
    receiver::{
        Backoff, Callback, CallbackClient, CallbackError, CallbackOutcome, ClientCredentials,
        StaticToken, TokenSource,
    },
    transport::{ReqwestTransport, TransportError},
};
use http::{Request, Response, StatusCode};
use serde_json::json;
use url::Url;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path},
};

mod log_capture;
mod raw_peer;
use log_capture::Captured;
use raw_peer::{OK_CUT_SHORT, OK_EMPTY, RawPeer, Turn, UNAVAILABLE_CUT_SHORT};

const CALLBACK_PATH: &str = "/callbacks/abc/callback";

fn quick() -> Backoff {
    Backoff::default()
        .with_max_attempts(4)
        .with_base(Duration::from_millis(1))
}

fn callback_url(server: &MockServer) -> Url {
    Url::parse(&format!("{}{CALLBACK_PATH}", server.uri())).unwrap()
}

fn token(access_token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"access_token": access_token, "expires_in": 86400, "token_type": "Bearer"}),
    )
}

/// A token endpoint handing out `stale` once, then `fresh` once.
async fn stale_then_fresh(server: &MockServer) {
    Mock::given(path("/oauth/token"))
        .respond_with(token("stale"))
        .up_to_n_times(1)
        .expect(1)
        .mount(server)
        .await;
    Mock::given(path("/oauth/token"))
        .respond_with(token("fresh"))
        .expect(1)
        .mount(server)
        .await;
}

/// Sends `count` success callbacks at once, each from a task of its own, and checks that each
/// was delivered.
async fn all_delivered(client: &CallbackClient, url: &Url, count: usize) {
    let sends: Vec<_> = (0..count)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.send(&url, &Callback::success()).await })
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap().unwrap(), CallbackOutcome::Delivered);
    }
}

fn credentials(server: &MockServer) -> ClientCredentials {
    ClientCredentials::builder("id", "client-secret")
        .token_url(Url::parse(&format!("{}/oauth/token", server.uri())).unwrap())
        .backoff(quick())
        .build(ReqwestTransport::new().unwrap())
        .unwrap()
}

fn static_client() -> CallbackClient {
    CallbackClient::new(
        ReqwestTransport::new().unwrap(),
        StaticToken::new("static-token"),
    )
    .with_backoff(quick())
    .allow_any_origin()
}

/// The error of a success callback that a gate server answers once with `answer`.
async fn refused_once(answer: ResponseTemplate) -> CallbackError {
    let server = MockServer::start().await;
    Mock::given(path(CALLBACK_PATH))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    static_client()
        .send(&callback_url(&server), &Callback::success())
        .await
        .unwrap_err()
}

fn error_body(code: &str, message: &str) -> serde_json::Value {
    json!({"error": code, "message": message})
}

#[tokio::test]
async fn callback_carries_bearer_token_json_content_type_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CALLBACK_PATH))
        .and(header("authorization", "Bearer static-token"))
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({"success": true, "mdMessage": "all **green**"}),
        ))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CALLBACK_PATH))
        .and(body_json(json!({"success": false})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CALLBACK_PATH))
        .and(body_json(
            json!({"inProgress": true, "mdMessage": "50% done"}),
        ))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;

    let client = static_client();
    let url = callback_url(&server);
    let sent = client
        .send(&url, &Callback::success().with_message("all **green**"))
        .await;
    assert_eq!(sent.unwrap(), CallbackOutcome::Delivered);
    assert_eq!(
        client.send(&url, &Callback::failure()).await.unwrap(),
        CallbackOutcome::Delivered
    );
    assert_eq!(
        client
            .send(&url, &Callback::progress("50% done"))
            .await
            .unwrap(),
        CallbackOutcome::Delivered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_sends_with_a_cold_cache_fetch_one_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token("shared").set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;

    // The callback endpoint is in-process so that 1,000 simultaneous sends do not need 2,000
    // sockets; the token endpoint, the subject of this test, is a real server.
    let delivered = Arc::new(AtomicUsize::new(0));
    let endpoint = {
        let delivered = delivered.clone();
        move |request: Request<Bytes>| {
            let delivered = delivered.clone();
            async move {
                let status = if request.headers()["authorization"] == "Bearer shared" {
                    delivered.fetch_add(1, Ordering::Relaxed);
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                };
                let mut response = Response::new(Bytes::new());
                *response.status_mut() = status;
                Ok::<_, TransportError>(response)
            }
        }
    };
    let client = CallbackClient::new(endpoint, credentials(&server))
        .with_backoff(quick())
        .allow_any_origin();
    let url = callback_url(&server);

    all_delivered(&client, &url, 1000).await;
    assert_eq!(delivered.load(Ordering::Relaxed), 1000);
    // wiremock checks its expectations when the server is dropped, blocking on a Tokio lock.
    // The thousand awaits above can leave the task's cooperative budget used up, and then that
    // lock answers "not yet" forever and the drop spins (1 run in 50 here); a yield gives the
    // task a fresh budget.
    tokio::task::yield_now().await;
}

/// Two hundred sends turned away with the same stale token, their `401`s held until all two
/// hundred have arrived (however slowly a loaded machine sends them) and then coming back over
/// 20 ms: the first to come back refreshes the token, and the later ones, finding a fresh token
/// already cached, keep it rather than each fetching another (the fresh token's mock expects
/// one fetch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_for_one_stale_token_fetch_one_fresh_token() {
    let server = MockServer::start().await;
    stale_then_fresh(&server).await;
    const SENDS: usize = 200;
    let refused = Arc::new(AtomicUsize::new(0));
    let all_refused = Arc::new(tokio::sync::Barrier::new(SENDS));
    let endpoint = {
        let (refused, all_refused) = (refused.clone(), all_refused.clone());
        move |request: Request<Bytes>| {
            let (refused, all_refused) = (refused.clone(), all_refused.clone());
            async move {
                let mut response = Response::new(Bytes::new());
                if request.headers()["authorization"] != "Bearer fresh" {
                    let n = refused.fetch_add(1, Ordering::Relaxed);
                    // Bounded, so that a send that never comes fails the count below instead
                    // of hanging the test.
                    let _ = tokio::time::timeout(Duration::from_secs(30), all_refused.wait()).await;
                    tokio::time::sleep(Duration::from_millis(n as u64 % 20)).await;
                    *response.status_mut() = StatusCode::UNAUTHORIZED;
                }
                Ok::<_, TransportError>(response)
            }
        }
    };
    let tokens = Arc::new(credentials(&server));
    assert_eq!(tokens.token().await.unwrap().expose(), "stale");
    let client = CallbackClient::new(endpoint, tokens)
        .with_backoff(quick())
        .allow_any_origin();
    let url = callback_url(&server);

    all_delivered(&client, &url, SENDS).await;
    assert_eq!(refused.load(Ordering::Relaxed), SENDS);
    tokio::task::yield_now().await;
}

#[tokio::test]
async fn unauthorized_refreshes_the_token_once_and_retries_once() {
    let server = MockServer::start().await;
    stale_then_fresh(&server).await;
    Mock::given(path(CALLBACK_PATH))
        .and(header("authorization", "Bearer stale"))
        .respond_with(ResponseTemplate::new(401).insert_header("www-authenticate", "Bearer"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(CALLBACK_PATH))
        .and(header("authorization", "Bearer fresh"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;

    let client = CallbackClient::new(ReqwestTransport::new().unwrap(), credentials(&server))
        .with_backoff(quick())
        .allow_any_origin();
    assert_eq!(
        client
            .send(&callback_url(&server), &Callback::success())
            .await
            .unwrap(),
        CallbackOutcome::Delivered
    );
}

#[tokio::test]
async fn a_second_unauthorized_is_an_error_not_a_loop() {
    let server = MockServer::start().await;
    Mock::given(path("/oauth/token"))
        .respond_with(token("tok-xyz-9"))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(path(CALLBACK_PATH))
        .respond_with(
            // A server (or a proxy in front of it) that echoes the token it refused.
            ResponseTemplate::new(401).set_body_json(error_body(
                "unauthorized",
                "token tok-xyz-9 (TOK-XYZ-9) expired",
            )),
        )
        .expect(2)
        .mount(&server)
        .await;

    let client = CallbackClient::new(ReqwestTransport::new().unwrap(), credentials(&server))
        .with_backoff(quick())
        .allow_any_origin();
    let error = client
        .send(&callback_url(&server), &Callback::success())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CallbackError::Unauthorized { message } if message.as_deref() == Some("token [redacted] ([redacted]) expired")),
        "{error:?}"
    );
    assert!(
        !format!("{error} {error:?}")
            .to_ascii_lowercase()
            .contains("tok-xyz-9"),
        "token leaked"
    );
}

#[tokio::test]
async fn final_answers_are_typed_and_not_retried() {
    let cases = [
        (409, "conflict", "already failed"),
        (410, "gate_closed", "timed out"),
        (404, "unknown_callback", "no such gate"),
        (400, "invalid_body", "success must be a boolean"),
        (403, "forbidden", "wrong tenant"),
        (415, "unsupported_media_type", "send JSON"),
        (422, "too_many_notes", "limit of 2000 progress notes"),
        (422, "unprocessable", "something else"),
    ];
    for (status, code, message) in cases {
        let server = MockServer::start().await;
        Mock::given(path(CALLBACK_PATH))
            .respond_with(ResponseTemplate::new(status).set_body_json(error_body(code, message)))
            .expect(1)
            .mount(&server)
            .await;

        let result = static_client()
            .send(&callback_url(&server), &Callback::success())
            .await;
        let message = Some(message.to_owned());
        match (status, result) {
            (409, Ok(CallbackOutcome::Conflict { message: m })) => assert_eq!(m, message),
            (410, Ok(CallbackOutcome::GateClosed { message: m })) => assert_eq!(m, message),
            (422, Ok(CallbackOutcome::TooManyNotes { message: m })) if code == "too_many_notes" => {
                assert_eq!(m, message)
            }
            (404, Err(CallbackError::UnknownCallback { message: m })) => assert_eq!(m, message),
            (403, Err(CallbackError::Forbidden { message: m })) => assert_eq!(m, message),
            (400 | 415 | 422, Err(error @ CallbackError::Rejected { .. })) => {
                let CallbackError::Rejected {
                    status: s,
                    code: c,
                    message: m,
                } = &error
                else {
                    unreachable!()
                };
                assert_eq!(
                    (s.as_u16(), c.as_deref(), m),
                    (status, Some(code), &message)
                );
                let text = error.to_string();
                assert!(
                    text.contains(code) && text.contains(message.as_deref().unwrap()),
                    "{text}"
                );
            }
            (status, other) => panic!("HTTP {status} gave {other:?}"),
        }
    }
}

/// A redirect is not followed (the token would go with it) and not blamed on the request: it
/// says the callback URI is not where the orchestrator takes callbacks, after one attempt.
#[tokio::test]
async fn a_redirect_is_not_followed_and_names_the_base_url_as_the_cause() {
    let elsewhere = MockServer::start().await;
    let error = refused_once(
        ResponseTemplate::new(307)
            .insert_header("location", format!("{}{CALLBACK_PATH}", elsewhere.uri())),
    )
    .await;
    assert!(
        matches!(&error, CallbackError::Redirected { status } if *status == 307),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("public base URL"), "{error}");
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

/// A hostile server's message must not forge log lines (a newline) or drive a terminal (an
/// ANSI escape) where the error is shown; it is kept readable, escaped.
#[tokio::test]
async fn a_servers_message_cannot_forge_log_lines() {
    let message = "bad body\nINFO callback delivered \u{1b}[2J\r\u{202e}\"ok\"";
    let error = refused_once(
        ResponseTemplate::new(400).set_body_json(error_body("invalid_body\nforged", message)),
    )
    .await;
    assert!(
        matches!(&error, CallbackError::Rejected { status, .. } if *status == 400),
        "{error:?}"
    );
    let shown = error.to_string();
    for forbidden in ['\n', '\r', '\u{1b}', '\u{202e}'] {
        assert!(!shown.contains(forbidden), "{forbidden:?} in {shown:?}");
    }
    assert!(
        shown.contains(r#"bad body\nINFO callback delivered \u{1b}[2J\r\u{202e}"ok""#),
        "{shown}"
    );
    assert!(shown.contains(r"invalid_body\nforged"), "{shown}");
}

#[tokio::test]
async fn server_errors_are_retried_then_delivered() {
    let server = MockServer::start().await;
    Mock::given(path(CALLBACK_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(path(CALLBACK_PATH))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;

    let outcome = static_client()
        .send(&callback_url(&server), &Callback::success())
        .await
        .unwrap();
    assert_eq!(outcome, CallbackOutcome::Delivered);
}

#[tokio::test]
async fn retries_give_up_after_the_configured_attempts() {
    let server = MockServer::start().await;
    Mock::given(path(CALLBACK_PATH))
        .respond_with(
            ResponseTemplate::new(502).set_body_json(error_body("bad_gateway", "upstream down")),
        )
        .expect(4)
        .mount(&server)
        .await;

    let error = static_client()
        .send(&callback_url(&server), &Callback::success())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CallbackError::Unavailable { status, attempts: 4, message }
            if *status == 502 && message.as_deref() == Some("upstream down")),
        "{error:?}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_instead_of_the_backoff() {
    let server = MockServer::start().await;
    Mock::given(path(CALLBACK_PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(CALLBACK_PATH))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;

    // Without Retry-After the wait would be up to an hour.
    let patient = Backoff::default()
        .with_base(Duration::from_secs(3600))
        .with_max_delay(Duration::from_secs(3600));
    let client = CallbackClient::new(ReqwestTransport::new().unwrap(), StaticToken::new("t"))
        .with_backoff(patient)
        .allow_any_origin();
    let (url, success) = (callback_url(&server), Callback::success());
    let send = client.send(&url, &success);
    let outcome = tokio::time::timeout(Duration::from_secs(10), send)
        .await
        .expect("Retry-After: 0 was not honoured");
    assert_eq!(outcome.unwrap(), CallbackOutcome::Delivered);
}

/// A client whose own backoff would wait up to an hour, and that honours a `Retry-After` of at
/// most 10 ms: a retry that comes quickly was timed by the server.
fn patient_but_obedient() -> CallbackClient {
    let backoff = Backoff::default()
        .with_base(Duration::from_secs(3600))
        .with_max_delay(Duration::from_secs(3600))
        .with_retry_after_cap(Duration::from_millis(10));
    CallbackClient::new(ReqwestTransport::new().unwrap(), StaticToken::new("t"))
        .with_backoff(backoff)
        .allow_any_origin()
}

#[tokio::test]
async fn retry_after_in_the_obsolete_date_forms_is_honoured() {
    for date in [
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun, 06 Nov 1994 08:49:37 GMT",
    ] {
        let server = MockServer::start().await;
        Mock::given(path(CALLBACK_PATH))
            .respond_with(ResponseTemplate::new(503).insert_header("retry-after", date))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(path(CALLBACK_PATH))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;

        let (url, success) = (callback_url(&server), Callback::success());
        let client = patient_but_obedient();
        let outcome = tokio::time::timeout(Duration::from_secs(10), client.send(&url, &success))
            .await
            .unwrap_or_else(|_| panic!("Retry-After: {date} was not honoured"));
        assert_eq!(outcome.unwrap(), CallbackOutcome::Delivered, "{date}");
    }
}

#[tokio::test]
async fn a_503_whose_body_breaks_off_is_retried_when_its_retry_after_says() {
    let peer = RawPeer::start(&[Turn::Write(UNAVAILABLE_CUT_SHORT), Turn::Write(OK_EMPTY)]).await;
    let url = Url::parse(&format!("{}{CALLBACK_PATH}", peer.base)).unwrap();

    let client = patient_but_obedient();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        client.send(&url, &Callback::success()),
    )
    .await
    .expect("the lost body's Retry-After was not honoured");

    assert_eq!(outcome.unwrap(), CallbackOutcome::Delivered);
    assert_eq!(peer.accepted(), 2);
}

/// A forged webhook call can name any callback URI; a client limited to its orchestrator's
/// origin sends neither the callback nor its token anywhere else, and never asks for a token.
#[tokio::test]
async fn a_callback_uri_outside_the_allowed_origins_is_refused_before_anything_is_sent() {
    let gate = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(path("/oauth/token"))
        .respond_with(token("t-1"))
        .expect(1)
        .mount(&gate)
        .await;
    Mock::given(path(CALLBACK_PATH))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&gate)
        .await;
    let client = CallbackClient::new(ReqwestTransport::new().unwrap(), credentials(&gate))
        .with_backoff(quick())
        .with_allowed_origins([Url::parse(&gate.uri()).unwrap()]);

    // What a receiver asks before it answers the webhook call: refused, nothing sent.
    let checked = client.check(&callback_url(&elsewhere)).unwrap_err();
    assert!(
        matches!(&checked, CallbackError::InvalidUrl { reason } if reason.contains("origin")),
        "{checked:?}"
    );
    assert!(client.check(&callback_url(&gate)).is_ok());
    let refused = client
        .send(&callback_url(&elsewhere), &Callback::success())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, CallbackError::InvalidUrl { reason } if reason.contains("origin")),
        "{refused:?}"
    );
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
    // Checked before the send below, which fetches the one token the mock expects: a token
    // fetched for the refused URI would be cached and serve that send too.
    assert!(
        gate.received_requests().await.unwrap().is_empty(),
        "a token was asked for a refused callback URI"
    );
    let delivered = client
        .send(&callback_url(&gate), &Callback::success())
        .await;
    assert_eq!(delivered.unwrap(), CallbackOutcome::Delivered);
}

/// A client not told where it may send, and one whose allow-list came out empty (an unset
/// variable, a filter that matched nothing), send nowhere: the token would otherwise go wherever
/// a forged webhook call points it.
#[tokio::test]
async fn a_client_not_told_where_to_send_or_with_an_empty_allow_list_refuses_every_origin() {
    let gate = MockServer::start().await;
    let unset = CallbackClient::new(ReqwestTransport::new().unwrap(), credentials(&gate))
        .with_backoff(quick());
    let empty = unset.clone().with_allowed_origins([]);

    for (client, says) in [(unset, "allow_any_origin"), (empty, "origin")] {
        let checked = client.check(&callback_url(&gate));
        assert!(
            matches!(&checked, Err(CallbackError::InvalidUrl { reason }) if reason.contains(says)),
            "{checked:?}"
        );
        let refused = client
            .send(&callback_url(&gate), &Callback::success())
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, CallbackError::InvalidUrl { reason } if reason.contains(says)),
            "{refused:?}"
        );
    }
    assert!(
        gate.received_requests().await.unwrap().is_empty(),
        "a token or callback was sent"
    );
}

/// A loopback port nothing listens on: bound, then given back at once.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    let port = closed_port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}{CALLBACK_PATH}")).unwrap();

    let error = static_client()
        .send(&url, &Callback::success())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CallbackError::Transport { attempts: 4, source } if source.is_retryable()),
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

/// A failure that is not retried (an answer that is not HTTP) is reported at once, and its
/// message says what it was rather than only to send the callback again, which would fail the
/// same way.
#[tokio::test]
async fn a_failure_not_retried_is_reported_with_its_cause() {
    let peer = RawPeer::start(&[Turn::Write("this is not HTTP\r\n\r\n")]).await;
    let url = Url::parse(&format!("{}{CALLBACK_PATH}", peer.base)).unwrap();

    let error = static_client()
        .send(&url, &Callback::success())
        .await
        .unwrap_err();
    let CallbackError::Transport {
        attempts: 1,
        source,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(!source.is_retryable(), "{source:?}");
    assert_eq!(peer.accepted(), 1);
    let shown = error.to_string();
    assert!(shown.ends_with(&source.to_string()), "{shown}");
    assert!(!shown.contains("send it again"), "{shown}");
}

/// A callback id resolves its gate for whoever holds a callback token, so the client keeps it,
/// with the rest of the path, out of what it returns and logs.
#[tokio::test]
async fn a_callback_id_stays_out_of_errors_and_logs() {
    let (logs, _guard) = Captured::on_this_thread();
    let port = closed_port();
    let id = "0123456789abcdef0123456789abcdef";
    let url = Url::parse(&format!("http://127.0.0.1:{port}/callbacks/{id}/callback")).unwrap();

    let error = static_client()
        .send(&url, &Callback::success())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CallbackError::Transport { .. }),
        "{error:?}"
    );
    let logged = logs.text();
    assert!(
        logged.contains(&format!(
            "could not connect for POST http://127.0.0.1:{port};"
        )),
        "the log names the origin: {logged}"
    );
    for shown in [error.to_string(), format!("{error:?}"), logged] {
        assert!(!shown.contains(id), "{shown}");
    }
}

/// A callback endpoint (or a proxy before it) that echoes the path it refused does not put the
/// callback id into the error: the path, and its segments long enough to be an id, are hidden.
#[tokio::test]
async fn a_callback_id_echoed_by_the_callback_endpoint_is_hidden() {
    let id = "0123456789abcdef0123456789abcdef";
    let callback_path = format!("/callbacks/{id}/callback");
    let server = MockServer::start().await;
    let echo = format!("no route for {callback_path}; unknown callback {id}");
    Mock::given(path(callback_path.as_str()))
        .respond_with(ResponseTemplate::new(404).set_body_json(error_body("not_found", &echo)))
        .mount(&server)
        .await;
    let url = Url::parse(&format!("{}{callback_path}", server.uri())).unwrap();

    let error = static_client()
        .send(&url, &Callback::success())
        .await
        .unwrap_err();
    let CallbackError::UnknownCallback {
        message: Some(message),
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(message.starts_with("no route for "), "{message}");
    assert!(message.contains("unknown callback "), "{message}");
    for shown in [message.clone(), error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(id), "{shown}");
    }
}

#[tokio::test]
async fn a_connection_reset_mid_request_is_retried_then_delivered() {
    for broken in [Turn::Reset, Turn::Close] {
        let peer = RawPeer::start(&[broken, Turn::Write(OK_EMPTY)]).await;
        let url = Url::parse(&format!("{}{CALLBACK_PATH}", peer.base)).unwrap();

        let outcome = static_client()
            .send(&url, &Callback::success())
            .await
            .unwrap_or_else(|e| panic!("{broken:?}: {e}"));

        assert_eq!(outcome, CallbackOutcome::Delivered);
        assert_eq!(peer.accepted(), 2, "{broken:?}");
    }
}

#[tokio::test]
async fn a_2xx_whose_body_breaks_off_is_delivered_without_a_retry() {
    let peer = RawPeer::start(&[Turn::Write(OK_CUT_SHORT)]).await;
    let url = Url::parse(&format!("{}{CALLBACK_PATH}", peer.base)).unwrap();

    let outcome = static_client()
        .send(&url, &Callback::failure())
        .await
        .unwrap();

    assert_eq!(outcome, CallbackOutcome::Delivered);
    assert_eq!(peer.accepted(), 1);
}

#[tokio::test]
async fn token_failure_is_reported_without_sending_the_callback() {
    const SECRET: &str = "s3cr&t=+/é sp~ce";
    let server = MockServer::start().await;
    // A token endpoint that quotes the request it refused, secret and all, in the spellings it
    // may have: as the form body carried it, percent-encoded, raw.
    let form_encoded: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    let percent_encoded: String = SECRET
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let description = format!(
        "bad body: client_secret={form_encoded}; decoded {SECRET}; as a path {percent_encoded}"
    );
    Mock::given(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(
                json!({"error": "invalid_client", "error_description": description}),
            ),
        )
        .mount(&server)
        .await;
    Mock::given(path(CALLBACK_PATH))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;

    let tokens = ClientCredentials::builder("id", SECRET)
        .token_url(Url::parse(&format!("{}/oauth/token", server.uri())).unwrap())
        .backoff(quick())
        .build(ReqwestTransport::new().unwrap())
        .unwrap();
    let client = CallbackClient::new(ReqwestTransport::new().unwrap(), tokens)
        .with_backoff(quick())
        .allow_any_origin();
    let error = client
        .send(&callback_url(&server), &Callback::success())
        .await
        .unwrap_err();
    assert!(matches!(error, CallbackError::Token { .. }), "{error:?}");
    // The message says why, so that the cause shows where only `Display` is logged.
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("invalid_client"), "{shown}");
    assert!(shown.contains("check the client id"), "{shown}");
    for spelling in [
        SECRET,
        &form_encoded,
        &percent_encoded,
        "s3cr&t",
        "s3cr%26t",
    ] {
        assert!(
            !shown.contains(spelling),
            "secret leaked as {spelling}: {shown}"
        );
    }
}

/// The token goes with the callback, so a plain `http` URI on another machine would send it in
/// the clear: refused before a token is asked for, unless the client allows it.
#[tokio::test]
async fn a_plain_http_callback_uri_off_this_machine_is_refused_unless_allowed() {
    let tokens = MockServer::start().await;
    Mock::given(path("/oauth/token"))
        .respond_with(token("t-1"))
        .mount(&tokens)
        .await;
    let client = CallbackClient::new(ReqwestTransport::new().unwrap(), credentials(&tokens))
        .with_backoff(quick())
        .allow_any_origin();
    let url = Url::parse("http://gates.example/callbacks/x").unwrap();
    let checked = client.check(&url);
    assert!(
        matches!(&checked, Err(CallbackError::InvalidUrl { reason }) if reason.contains("allow_http_callbacks")),
        "{checked:?}"
    );
    let error = client.send(&url, &Callback::success()).await;
    assert!(
        matches!(&error, Err(CallbackError::InvalidUrl { reason }) if reason.contains("allow_http_callbacks")),
        "{error:?}"
    );
    assert!(
        tokens.received_requests().await.unwrap().is_empty(),
        "a token was asked for a callback that was refused"
    );

    // Allowed, it is sent, with a token: the unresolvable host fails the attempt instead.
    let error = client
        .allow_http_callbacks()
        .send(
            &Url::parse("http://gates.invalid/callbacks/x").unwrap(),
            &Callback::success(),
        )
        .await;
    assert!(
        matches!(error, Err(CallbackError::Transport { .. })),
        "{error:?}"
    );
    assert_eq!(tokens.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn non_http_callback_url_is_refused() {
    let error = static_client()
        .send(
            &Url::parse("ftp://gate.example/cb").unwrap(),
            &Callback::success(),
        )
        .await;
    assert!(
        matches!(error, Err(CallbackError::InvalidUrl { .. })),
        "{error:?}"
    );
}

/// A message longer than the gate's server takes (hookgate's refuses bodies over 64 KiB, as a
/// final `413`) is cut to fit, so that the outcome still arrives: eleven thousand control
/// characters are 11 KB in memory and 66 KB JSON-escaped.
#[tokio::test]
async fn a_message_too_long_for_the_gates_server_is_cut_so_the_outcome_arrives() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CALLBACK_PATH))
        .respond_with(|request: &wiremock::Request| {
            if request.body.len() > CallbackClient::DEFAULT_MAX_BODY_BYTES {
                ResponseTemplate::new(413)
            } else {
                ResponseTemplate::new(200).set_body_json(json!({"status": "applied"}))
            }
        })
        .mount(&server)
        .await;
    let log = "\u{1}".repeat(11_000);

    let outcome = static_client()
        .send(
            &callback_url(&server),
            &Callback::failure().with_message(log),
        )
        .await;

    assert_eq!(outcome.unwrap(), CallbackOutcome::Delivered);
    let received = server.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["success"], false);
    let message = body["mdMessage"].as_str().unwrap();
    assert!(message.ends_with('…') && message.starts_with('\u{1}'));
    let escaped_len = "\\u0001".len();
    assert!(
        received[0].body.len() > CallbackClient::DEFAULT_MAX_BODY_BYTES - escaped_len,
        "one more character would have fit in {} bytes",
        received[0].body.len()
    );
}

/// A 1 MB test log with ANSI colours (each ESC one byte in memory, six escaped) keeps as much
/// as fits in the body, not an empty message: the cut counts escapes rather than subtracting
/// the excess in memory bytes, which overshot.
#[tokio::test]
async fn a_long_escape_heavy_message_is_cut_to_what_fits_not_to_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CALLBACK_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "applied"})))
        .expect(1)
        .mount(&server)
        .await;
    let line = "\u{1b}[31mFAILED\u{1b}[0m tests::checkout::pays_with_a_saved_card\n";
    let log = line.repeat(1_000_000 / line.len());

    let outcome = static_client()
        .send(
            &callback_url(&server),
            &Callback::failure().with_message(log.clone()),
        )
        .await;

    assert_eq!(outcome.unwrap(), CallbackOutcome::Delivered);
    let received = &server.received_requests().await.unwrap()[0];
    let limit = CallbackClient::DEFAULT_MAX_BODY_BYTES;
    assert!(
        (limit - "\\u001b".len()..=limit).contains(&received.body.len()),
        "{} bytes sent",
        received.body.len()
    );
    let body: serde_json::Value = serde_json::from_slice(&received.body).unwrap();
    let kept = body["mdMessage"]
        .as_str()
        .unwrap()
        .strip_suffix('…')
        .unwrap();
    assert!(
        log.starts_with(kept) && kept.len() > 50_000,
        "{} bytes kept",
        kept.len()
    );
}

/// None of the warnings of failed attempts promises a retry: the last one has none to come
/// (see `receiver_token.rs` for why only the absence is asserted).
#[tokio::test]
async fn no_warning_promises_a_retry() {
    let (logs, _guard) = Captured::on_this_thread();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .expect(4)
        .mount(&server)
        .await;
    let error = static_client()
        .send(&callback_url(&server), &Callback::success())
        .await
        .unwrap_err();
    assert!(
        matches!(error, CallbackError::Unavailable { attempts: 4, .. }),
        "{error:?}"
    );
    server.verify().await;
    let text = logs.text();
    let promising: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(" WARN ") && line.contains("retry"))
        .collect();
    assert!(promising.is_empty(), "{promising:?}");
}
