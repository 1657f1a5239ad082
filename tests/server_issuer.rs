//! The token endpoint through the router, and a token it issued authorizing a callback.
#![cfg(all(feature = "axum", feature = "issuer", feature = "test-util"))]

mod server_support;

use std::sync::Arc;

use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hookgate::Secret;
use hookgate::auth::{IssuerClient, TokenIssuer};
use hookgate::server::{CallbackHandler, MemoryGates, ServerState, router};
use http::{Request, StatusCode};
use server_support::*;

const SECRET: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d";

fn setup() -> (axum::Router, Arc<MemoryGates>) {
    let clock = clock();
    let gates = Arc::new(MemoryGates::new(clock.clone()));
    gates.insert(deployment("d1", 1, |_| {}));
    let issuer = Arc::new(
        TokenIssuer::builder(
            "https://hookgate.example",
            "https://api.cloud.armory.io",
            "a signing key of at least 32 bytes!",
        )
        .client(IssuerClient::from_secret("ci", &Secret::new(SECRET)).with_scopes(["callbacks"]))
        .required_scope("callbacks")
        .clock(clock)
        .build()
        .unwrap(),
    );
    let handler = CallbackHandler::new(gates.clone(), issuer.clone());
    (router(ServerState::new(handler).with_issuer(issuer)), gates)
}

fn token_request(content_type: &str, body: String) -> Request<Body> {
    Request::post("/oauth/token")
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

fn form(grant: &str, secret: &str) -> String {
    format!(
        "audience=https%3A%2F%2Fapi.cloud.armory.io&grant_type={grant}&client_id=ci&client_secret={secret}"
    )
}

#[tokio::test]
async fn an_issued_token_authorizes_a_callback() {
    let (router, gates) = setup();
    let answer = send(
        &router,
        token_request(
            "application/x-www-form-urlencoded",
            form("client_credentials", SECRET),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(
        (
            answer.json["token_type"].as_str(),
            answer.json["scope"].as_str()
        ),
        (Some("Bearer"), Some("callbacks"))
    );
    assert_eq!(answer.json["expires_in"], 3600);
    let token = answer.json["access_token"].as_str().unwrap();

    let path = format!("/callbacks/{}/callback", callback_id(&gates, "d1", TICKET));
    let applied = send(&router, post(&path, Some(token), r#"{"success": true}"#)).await;
    assert_eq!(
        (applied.status, applied.json["status"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
}

#[tokio::test]
async fn the_token_endpoint_answers_rfc_6749_errors() {
    let (router, _) = setup();
    let cases = [
        (
            token_request(
                "application/x-www-form-urlencoded",
                form("password", SECRET),
            ),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            token_request(
                "application/x-www-form-urlencoded",
                form("client_credentials", "wrong"),
            ),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            token_request("application/json", form("client_credentials", SECRET)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            token_request("application/x-www-form-urlencoded", "x".repeat(64 * 1024)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
        ),
        (
            Request::get("/oauth/token").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
        ),
    ];
    for (request, status, code) in cases {
        let answer = send(&router, request).await;
        assert_eq!(
            (answer.status, answer.json["error"].as_str()),
            (status, Some(code))
        );
        // RFC 6749 §5.2: printable ASCII but `"` and `\`.
        assert!(
            answer.json["error_description"].as_str().is_some_and(|d| {
                !d.is_empty()
                    && d.bytes()
                        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
            }),
            "{}",
            answer.json
        );
    }
}

/// `Authorization: Basic` with the form-urlencoded id and secret (RFC 6749 §2.3.1).
fn basic(id: &str, secret: &str) -> String {
    let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", form(id), form(secret)))
    )
}

fn basic_request(authorization: &[&str], body: &str) -> Request<Body> {
    let mut request =
        Request::post("/oauth/token").header("content-type", "application/x-www-form-urlencoded");
    for value in authorization {
        request = request.header("authorization", *value);
    }
    request.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn a_token_got_with_http_basic_authorizes_a_callback() {
    let (router, gates) = setup();
    let answer = send(
        &router,
        basic_request(
            &[&basic("ci", SECRET)],
            "grant_type=client_credentials&audience=https%3A%2F%2Fapi.cloud.armory.io",
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let token = answer.json["access_token"].as_str().unwrap();
    let path = format!("/callbacks/{}/callback", callback_id(&gates, "d1", TICKET));
    let applied = send(&router, post(&path, Some(token), r#"{"success": true}"#)).await;
    assert_eq!(applied.status, StatusCode::OK);
}

/// RFC 6749 §5.2: a client that tried the `Authorization` header and failed gets `401` with a
/// challenge of its scheme; RFC 9110 §15.5.2: every `401` carries a challenge.
#[tokio::test]
async fn a_refused_client_gets_a_basic_challenge_and_two_methods_a_bad_request() {
    let (router, _) = setup();
    let grant = "grant_type=client_credentials";
    let cases = [
        (
            "wrong Basic secret",
            vec![basic("ci", "wrong")],
            grant.to_owned(),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "malformed Basic",
            vec!["Basic !!".to_owned()],
            grant.to_owned(),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "another scheme",
            vec![format!("Bearer {SECRET}")],
            grant.to_owned(),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "wrong body secret",
            vec![],
            form("client_credentials", "wrong"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            "both methods",
            vec![basic("ci", SECRET)],
            form("client_credentials", SECRET),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "two headers",
            vec![basic("ci", SECRET), basic("ci", SECRET)],
            grant.to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (what, headers, body, status, code) in cases {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let answer = send(&router, basic_request(&headers, &body)).await;
        assert_eq!(
            (answer.status, answer.json["error"].as_str()),
            (status, Some(code)),
            "{what}"
        );
        let challenge = answer
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok());
        let expected = (status == StatusCode::UNAUTHORIZED).then_some(r#"Basic realm="hookgate""#);
        assert_eq!(challenge, expected, "{what}");
    }
}

/// Two `Content-Type` headers could each be read as the one by a different hop: refused
/// whichever comes first, as two `Authorization` headers are, and no token is issued.
#[tokio::test]
async fn two_content_types_are_a_bad_request_in_either_order() {
    let (router, _) = setup();
    let urlencoded = "application/x-www-form-urlencoded";
    for (first, second) in [
        (urlencoded, "application/json"),
        ("application/json", urlencoded),
        (urlencoded, urlencoded),
    ] {
        let request = Request::post("/oauth/token")
            .header("content-type", first)
            .header("content-type", second)
            .body(Body::from(form("client_credentials", SECRET)))
            .unwrap();
        let answer = send(&router, request).await;
        assert_eq!(
            (answer.status, answer.json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{first}, {second}"
        );
        let description = answer.json["error_description"].as_str().unwrap();
        assert!(description.contains("Content-Type"), "{description}");
        assert!(answer.json.get("access_token").is_none());
    }
}

/// A content-coded form is refused with `415` (RFC 9110 §15.5.16) rather than read as plain,
/// and no token is issued; `identity` is no coding.
#[tokio::test]
async fn a_content_coded_token_request_is_unsupported() {
    let (router, _) = setup();
    for (coding, status) in [
        ("gzip", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("identity, br", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("identity", StatusCode::OK),
    ] {
        let request = Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-encoding", coding)
            .body(Body::from(form("client_credentials", SECRET)))
            .unwrap();
        let answer = send(&router, request).await;
        assert_eq!(answer.status, status, "{coding}");
        if status != StatusCode::OK {
            assert_eq!(answer.json["error"], "invalid_request", "{coding}");
            assert_eq!(answer.headers["accept-encoding"], "identity", "{coding}");
            assert!(answer.json.get("access_token").is_none());
        }
    }
}

/// The receiver SDK sends `audience=` for an empty audience, which RFC 6749 §3.2 makes the same
/// as no audience: the issuer, served on a loopback socket, gives it a token.
#[cfg(all(feature = "reqwest", feature = "receiver"))]
#[tokio::test]
async fn the_receiver_sdk_with_an_empty_audience_gets_a_token() {
    use hookgate::receiver::{ClientCredentials, TokenSource};
    use hookgate::transport::ReqwestTransport;

    let (router, _) = setup();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let tokens = ClientCredentials::builder("ci", SECRET)
        .audience("")
        .token_url(format!("http://{address}/oauth/token").parse().unwrap())
        .build(ReqwestTransport::new().unwrap())
        .unwrap();
    assert!(!tokens.token().await.unwrap().expose().is_empty());
}

#[tokio::test]
async fn without_an_issuer_there_is_no_token_endpoint() {
    let gates = Arc::new(MemoryGates::new(clock()));
    let issuer = Arc::new(
        TokenIssuer::builder("i", "a", "a signing key of at least 32 bytes!")
            .build()
            .unwrap(),
    );
    let router = router(ServerState::new(CallbackHandler::new(gates, issuer)));
    let answer = send(
        &router,
        token_request(
            "application/x-www-form-urlencoded",
            form("client_credentials", SECRET),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_token_endpoint_names_post_as_the_allowed_method() {
    let (router, _) = setup();
    for method in ["GET", "PUT", "DELETE"] {
        let request = Request::builder()
            .method(method)
            .uri("/oauth/token")
            .body(Body::empty())
            .unwrap();
        let answer = send(&router, request).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(
            answer.headers.get("allow").and_then(|v| v.to_str().ok()),
            Some("POST"),
            "{method}"
        );
    }
}
