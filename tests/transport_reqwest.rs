//! `ReqwestTransport` against a real loopback server, plus closure transports and the registry.
#![cfg(feature = "reqwest")]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use hookgate::transport::{
    BodyTruncated, DynTransport, HttpTransport, RequestOptions, ReqwestTransport, TransportError,
    TransportRegistry,
};
use http::{Request, Response, StatusCode};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string, header, method, path, query_param},
};

mod raw_peer;
use raw_peer::{GARBAGE, OK_CUT_SHORT, RawPeer, Turn, UNAVAILABLE_CUT_SHORT};

fn post(uri: String, body: &'static str) -> Request<Bytes> {
    Request::post(uri)
        .body(Bytes::from_static(body.as_bytes()))
        .unwrap()
}

/// How a default transport fails to send `request`.
async fn failure(request: Request<Bytes>) -> TransportError {
    ReqwestTransport::new()
        .unwrap()
        .send(request)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn request_arrives_with_exact_method_headers_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/hooks/run"))
        .and(query_param("deployment", "d-1"))
        .and(header("authorization", "Bearer t0k3n"))
        .and(header("content-type", "application/json"))
        .and(header("x-custom", "a b c"))
        .and(body_string(r#"{"callbackUri":"https://cb.example/x"}"#))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header("x-answer", "yes")
                .set_body_string("queued"),
        )
        .expect(1)
        .mount(&server)
        .await;

    let request = Request::put(format!("{}/hooks/run?deployment=d-1", server.uri()))
        .header("Authorization", "Bearer t0k3n")
        .header("Content-Type", "application/json")
        .header("X-Custom", "a b c")
        .body(Bytes::from_static(
            br#"{"callbackUri":"https://cb.example/x"}"#,
        ))
        .unwrap();
    let response = ReqwestTransport::new()
        .unwrap()
        .send(request)
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["x-answer"], "yes");
    assert_eq!(response.body(), "queued");
    assert!(response.extensions().get::<BodyTruncated>().is_none());
}

#[tokio::test]
async fn slow_server_times_out_with_the_per_request_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;

    let mut request = post(format!("{}/slow?secret=abc", server.uri()), "{}");
    let timeout = Duration::from_millis(200);
    request
        .extensions_mut()
        .insert(RequestOptions::default().with_timeout(timeout));
    let error = failure(request).await;

    assert!(
        matches!(error, TransportError::Timeout { after, .. } if after == timeout),
        "{error:?}"
    );
    assert!(error.is_retryable());
    let text = error.to_string();
    assert!(text.contains("POST http://127.0.0.1"), "{text}");
    assert!(!text.contains("/slow"), "path leaked: {text}");
    assert!(!text.contains("secret=abc"), "query string leaked: {text}");
}

#[tokio::test]
async fn builder_timeout_applies_without_request_options() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;

    let transport = ReqwestTransport::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let error = transport.send(post(server.uri(), "")).await.unwrap_err();
    assert!(
        matches!(error, TransportError::Timeout { after, .. } if after == Duration::from_millis(150))
    );
}

#[tokio::test]
async fn redirect_of_a_post_is_returned_as_is() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/start"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/elsewhere"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;

    let transport = ReqwestTransport::builder()
        .max_get_redirects(5)
        .build()
        .unwrap();
    let response = transport
        .send(post(format!("{}/start", server.uri()), "x"))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "/elsewhere");
}

#[tokio::test]
async fn get_follows_at_most_the_configured_redirects() {
    let server = MockServer::start().await;
    for (from, to) in [("/a", "/b"), ("/b", "/c")] {
        Mock::given(method("GET"))
            .and(path(from))
            .respond_with(ResponseTemplate::new(302).insert_header("location", to))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/c"))
        .respond_with(ResponseTemplate::new(200).set_body_string("end"))
        .mount(&server)
        .await;
    let get = |p: &str| {
        Request::get(format!("{}{p}", server.uri()))
            .body(Bytes::new())
            .unwrap()
    };

    let two = ReqwestTransport::builder()
        .max_get_redirects(2)
        .build()
        .unwrap();
    let response = two.send(get("/a")).await.unwrap();
    assert_eq!(
        (response.status(), response.body().as_ref()),
        (StatusCode::OK, &b"end"[..])
    );

    let one = ReqwestTransport::builder()
        .max_get_redirects(1)
        .build()
        .unwrap();
    let response = one.send(get("/a")).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "/c");

    let none = ReqwestTransport::new().unwrap();
    assert_eq!(
        none.send(get("/a")).await.unwrap().status(),
        StatusCode::FOUND
    );
}

/// A redirect to another origin is answered as it is, not followed: the request's headers
/// (which a template may have filled from secrets) would go along to that origin.
#[tokio::test]
async fn get_does_not_follow_a_redirect_to_another_origin() {
    let (here, elsewhere) = (MockServer::start().await, MockServer::start().await);
    let target = format!("{}/keys", elsewhere.uri());
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", target.as_str()))
        .mount(&here)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&elsewhere)
        .await;

    let transport = ReqwestTransport::builder()
        .max_get_redirects(5)
        .build()
        .unwrap();
    let request = Request::get(format!("{}/keys", here.uri()))
        .header("x-api-key", "s3cret")
        .body(Bytes::new())
        .unwrap();
    let response = transport.send(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], target.as_str());
}

#[tokio::test]
async fn large_body_is_truncated_at_the_limit_keeping_status_and_headers() {
    let server = MockServer::start().await;
    let big = vec![b'x'; 1024 * 1024];
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("x-kept", "1")
                .set_body_bytes(big),
        )
        .mount(&server)
        .await;

    let mut request = post(server.uri(), "");
    request
        .extensions_mut()
        .insert(RequestOptions::default().with_max_response_bytes(1000));
    let response = ReqwestTransport::new()
        .unwrap()
        .send(request)
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-kept"], "1");
    assert_eq!(response.body().len(), 1000);
    assert_eq!(
        response.extensions().get::<BodyTruncated>(),
        Some(&BodyTruncated)
    );
}

#[tokio::test]
async fn body_of_exactly_the_limit_is_not_marked_truncated() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![1u8; 64]))
        .mount(&server)
        .await;

    let transport = ReqwestTransport::builder()
        .max_response_bytes(64)
        .build()
        .unwrap();
    let response = transport.send(post(server.uri(), "")).await.unwrap();
    assert_eq!(response.body().len(), 64);
    assert!(response.extensions().get::<BodyTruncated>().is_none());
}

#[tokio::test]
async fn connection_refused_is_a_retryable_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let request = post(
        format!("http://127.0.0.1:{port}/hook?token=s3cr3t"),
        "body-s3cr3t",
    );
    let error = failure(request).await;

    assert!(matches!(error, TransportError::Connect { .. }), "{error:?}");
    assert!(error.is_retryable());
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("s3cr3t"), "secret leaked: {shown}");
}

#[tokio::test]
async fn a_connection_reset_or_closed_before_the_answer_is_a_retryable_disconnect() {
    for turn in [Turn::Reset, Turn::Close] {
        let peer = RawPeer::start(&[turn]).await;
        let error = failure(post(format!("{}/hook?token=s3cr3t", peer.base), "{}")).await;

        assert!(
            matches!(error, TransportError::Disconnected { .. }),
            "{turn:?}: {error:?}"
        );
        assert!(error.is_retryable(), "{turn:?}");
        assert_eq!(error.status(), None);
        let text = error.to_string();
        assert!(text.contains("closed or reset"), "{text}");
        assert!(
            !format!("{error} {error:?}").contains("s3cr3t"),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn a_body_cut_short_keeps_the_status_and_is_a_retryable_disconnect() {
    let peer = RawPeer::start(&[Turn::Write(OK_CUT_SHORT)]).await;
    let error = failure(post(format!("{}/hook", peer.base), "{}")).await;

    let TransportError::ResponseBody { status, source, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*status, StatusCode::OK);
    assert_eq!(error.status(), Some(StatusCode::OK));
    assert!(
        matches!(**source, TransportError::Disconnected { .. }),
        "{source:?}"
    );
    assert!(error.is_retryable());
    assert!(error.to_string().contains("200"), "{error}");
}

/// A 200 announcing a body of 2⁶² bytes, more than any machine's memory, and sending 7 before
/// hanging up.
const OK_ANNOUNCING_TOO_MUCH: &str =
    "HTTP/1.1 200 OK\r\ncontent-length: 4611686018427387904\r\n\r\n{\"ok\":";

/// An announced length is not set aside in full, even under a limit that would allow it: a
/// buffer of the announced size would abort the process before the first byte arrived.
#[tokio::test]
async fn a_hostile_content_length_is_not_allocated_up_front() {
    let peer = RawPeer::start(&[Turn::Write(OK_ANNOUNCING_TOO_MUCH)]).await;
    let transport = ReqwestTransport::builder()
        .max_response_bytes(usize::MAX)
        .build()
        .unwrap();
    let error = transport
        .send(post(format!("{}/hook", peer.base), "{}"))
        .await
        .unwrap_err();

    let TransportError::ResponseBody { status, source, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*status, StatusCode::OK);
    assert!(
        matches!(**source, TransportError::Disconnected { .. }),
        "{source:?}"
    );
}

#[tokio::test]
async fn a_body_cut_short_keeps_the_retry_after_of_its_head() {
    let peer = RawPeer::start(&[Turn::Write(UNAVAILABLE_CUT_SHORT)]).await;
    let error = failure(post(format!("{}/hook", peer.base), "{}")).await;

    let TransportError::ResponseBody {
        status,
        retry_after,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"7"[..]));
}

#[tokio::test]
async fn an_answer_that_is_not_http_is_an_io_error_and_not_retried() {
    let peer = RawPeer::start(&[Turn::Write(GARBAGE)]).await;
    let error = failure(post(format!("{}/hook", peer.base), "{}")).await;

    assert!(matches!(error, TransportError::Io { .. }), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn non_http_uri_is_an_invalid_request() {
    let request = Request::post("/relative").body(Bytes::new()).unwrap();
    let error = failure(request).await;
    assert!(
        matches!(error, TransportError::InvalidRequest { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn closure_arc_and_boxed_transports_work() {
    let closure = |request: Request<Bytes>| async move {
        let echoed = Bytes::from(format!("{} {}", request.method(), request.uri().path()));
        Ok::<_, TransportError>(Response::new(echoed))
    };
    assert_eq!(
        closure
            .send(post("http://h/a".into(), ""))
            .await
            .unwrap()
            .body(),
        "POST /a"
    );

    let shared: DynTransport = Arc::new(closure);
    assert_eq!(
        shared
            .send(post("http://h/b".into(), ""))
            .await
            .unwrap()
            .body(),
        "POST /b"
    );

    let boxed: Box<dyn HttpTransport> = Box::new(closure);
    assert_eq!(
        boxed
            .send(post("http://h/c".into(), ""))
            .await
            .unwrap()
            .body(),
        "POST /c"
    );
}

#[tokio::test]
async fn registry_routes_direct_and_per_agent() {
    let answer = |tag: &'static str| {
        move |_request: Request<Bytes>| async move {
            Ok::<_, TransportError>(Response::new(Bytes::from_static(tag.as_bytes())))
        }
    };
    let registry =
        TransportRegistry::new(answer("direct")).with_agent("agent-1", answer("agent-1"));
    let send = |agent: Option<&'static str>| {
        let transport = registry.route(agent).unwrap().clone();
        async move {
            transport
                .send(post("http://h/".into(), ""))
                .await
                .unwrap()
                .into_body()
        }
    };

    assert_eq!(send(None).await, "direct");
    assert_eq!(send(Some("agent-1")).await, "agent-1");
    registry.check_agents(["agent-1", "agent-1"]).unwrap();
}

#[test]
fn unknown_agents_are_named_in_a_typed_error() {
    let answer =
        |_request: Request<Bytes>| async { Ok::<_, TransportError>(Response::new(Bytes::new())) };
    let registry = TransportRegistry::new(answer).with_agent("agent-1", answer);

    let error = registry.route(Some("agent-9")).unwrap_err();
    assert!(matches!(&error, TransportError::UnknownAgents { agents } if agents == &["agent-9"]));
    let text = error.to_string();
    assert!(
        text.contains("agent-9") && text.contains("register"),
        "{text}"
    );

    let error = registry
        .check_agents(["agent-2", "agent-1", "agent-3", "agent-2"])
        .unwrap_err();
    assert!(
        matches!(&error, TransportError::UnknownAgents { agents } if agents == &["agent-2", "agent-3"])
    );
}
