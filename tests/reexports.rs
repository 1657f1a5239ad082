//! The crates hookgate re-exports are the ones its API uses: code naming their types through
//! hookgate compiles against hookgate's functions without a matching dependency of its own.

use hookgate::chrono::{DateTime, Utc};
use hookgate::clock::{Clock, SystemClock};

#[test]
fn times_and_requests_are_the_reexported_crates_types() {
    let now: DateTime<Utc> = SystemClock.now();
    assert!(now.timestamp() > 0);
    let _: fn(&hookgate::http::Uri) -> bool = |uri| uri.host().is_some();
    let url: hookgate::url::Url = "https://gates.example/callbacks".parse().unwrap();
    assert_eq!(url.host_str(), Some("gates.example"));
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
