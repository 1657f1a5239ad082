//! The crates hookgate re-exports are the ones its API uses: code naming their types through
//! hookgate compiles against hookgate's functions without a matching dependency of its own.

use hookgate::chrono::{DateTime, Utc};
use hookgate::clock::{Clock, SystemClock};

#[test]
fn times_and_requests_are_the_reexported_crates_types() {
    let now: DateTime<Utc> = SystemClock.now();
    assert!(now.timestamp() > 0);
    let request = hookgate::http::Request::post("https://gates.example/callbacks/x")
        .body(())
        .unwrap();
    let target = hookgate::transport::RequestTarget::of(&request);
    assert_eq!(target.method(), hookgate::http::Method::POST);
}

/// A transport written against the re-exported `bytes` and `async-trait` alone, and a callback
/// body built with the re-exported `serde_json`.
#[tokio::test]
async fn a_transport_and_a_callback_body_need_no_crates_of_their_own() {
    use hookgate::async_trait::async_trait;
    use hookgate::bytes::Bytes;
    use hookgate::http::{Request, Response};
    use hookgate::transport::{HttpTransport, TransportError};

    struct Answering;

    #[async_trait]
    impl HttpTransport for Answering {
        async fn send(&self, _request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
            Ok(Response::new(Bytes::from_static(b"ok")))
        }
    }

    let answer = Answering
        .send(Request::new(Bytes::from_static(b"{}")))
        .await
        .unwrap();
    assert_eq!(answer.body(), &Bytes::from_static(b"ok"));
    let body: hookgate::serde_json::Value = hookgate::serde_json::json!({"success": true});
    assert_eq!(body["success"], true);
}

#[cfg(feature = "signing")]
#[test]
fn origins_are_the_reexported_urls() {
    use hookgate::signing::{Signer, SigningSecret};

    let origin: hookgate::url::Url = "https://receiver.example".parse().unwrap();
    let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
    let _ = hookgate::outbound::Dispatcher::builder(
        hookgate::transport::TransportRegistry::new(|_request| async {
            unreachable!("nothing is sent")
        }),
        std::sync::Arc::new(hookgate::secrets::MemorySecrets::new()),
        "https://gates.example",
    )
    .origin_signer(&origin, Signer::new(secret));
}

#[cfg(feature = "axum")]
#[test]
fn the_router_is_the_reexported_axums() {
    let _: fn(hookgate::server::ServerState) -> hookgate::axum::Router = hookgate::server::router;
}

#[cfg(feature = "postgres")]
#[test]
fn the_postgres_pool_is_the_reexported_sqlxs() {
    let _: fn(hookgate::sqlx::PgPool, hookgate::store::PostgresOptions) -> _ =
        hookgate::store::PostgresStore::from_pool;
}

#[cfg(all(feature = "receiver", feature = "reqwest"))]
#[test]
fn allowed_origins_are_the_reexported_urls() {
    let url: hookgate::url::Url = "https://gates.example".parse().unwrap();
    let _ = hookgate::receiver::CallbackClient::new(
        hookgate::transport::ReqwestTransport::new().unwrap(),
        hookgate::receiver::StaticToken::new("t"),
    )
    .with_allowed_origins([url]);
}
