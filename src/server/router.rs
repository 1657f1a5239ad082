use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{any, get};
use futures_util::FutureExt;

use super::CallbackHandler;
#[cfg(feature = "issuer")]
use crate::auth::TokenIssuer;

/// What [`router`] serves: the callback handler and, optionally, a token issuer.
#[derive(Debug, Clone)]
pub struct ServerState {
    handler: Arc<CallbackHandler>,
    #[cfg(feature = "issuer")]
    issuer: Option<Arc<TokenIssuer>>,
}

impl ServerState {
    /// Serves `handler`'s callbacks and approvals.
    pub fn new(handler: CallbackHandler) -> Self {
        Self {
            handler: Arc::new(handler),
            #[cfg(feature = "issuer")]
            issuer: None,
        }
    }

    /// Also serves `POST /oauth/token` for `issuer` (feature `issuer`).
    #[cfg(feature = "issuer")]
    #[must_use]
    pub fn with_issuer(mut self, issuer: Arc<TokenIssuer>) -> Self {
        self.issuer = Some(issuer);
        self
    }
}

/// The axum router (feature `axum`):
///
/// - `POST /callbacks/{id}`, `POST /callbacks/{id}/callback`,
///   `POST /deployments/{deployment}/gates/{gate}/approve` and `/reject`: the
///   [`CallbackHandler`], which answers every method and error itself;
/// - `POST /oauth/token`: the token issuer, when one is configured;
/// - `GET /healthz`: `200 {"status": "ok"}` (another method: `405` with the JSON error
///   body);
/// - any other path: the [`CallbackHandler`] too, which answers `404` with its JSON error body.
///
/// Mount it under a prefix with [`Router::nest`]; the handler's own prefix is not used here.
/// Because it has a fallback, [`Router::merge`] it only into a router without one: axum panics
/// when both routers of a merge have a fallback.
///
/// ```
/// # use std::sync::Arc;
/// # use hookgate::{auth::StaticTokens, clock::SystemClock, server::*};
/// let gates = Arc::new(MemoryGates::new(SystemClock));
/// let handler = CallbackHandler::new(gates, Arc::new(StaticTokens::new()));
/// let app: axum::Router = axum::Router::new().nest("/hookgate", router(ServerState::new(handler)));
/// ```
pub fn router(state: ServerState) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz).fallback(healthz_other_method))
        .route("/callbacks/{id}", any(delegate))
        .route("/callbacks/{id}/callback", any(delegate))
        .route(
            "/deployments/{deployment}/gates/{gate}/{decision}",
            any(delegate),
        )
        // So that near misses (`/callbacks/<id>/`, `/callbacks/<id>/other`) get the JSON error
        // body of PROTOCOL.md §5, not axum's empty 404.
        .fallback(delegate);
    #[cfg(feature = "issuer")]
    let router = match state.issuer.clone() {
        Some(issuer) => router.route(
            "/oauth/token",
            any(move |request: Request| async move {
                super::token_endpoint(&issuer, request)
                    .await
                    .map(Body::from)
            }),
        ),
        None => router,
    };
    router.with_state(state)
}

fn delegate(
    State(state): State<ServerState>,
    request: Request,
) -> impl Future<Output = Response> + Send + 'static {
    // Not an `async fn`, which would hold the request a second time around the handler's
    // future, and the router allocates the whole for every request.
    state
        .handler
        .handle_unprefixed(request)
        .map(|response| response.map(Body::from))
}

async fn healthz() -> Response {
    super::response::json(http::StatusCode::OK, &serde_json::json!({"status": "ok"}))
        .map(Body::from)
}

/// The JSON error body every other refusal has, rather than axum's empty `405`.
async fn healthz_other_method() -> Response {
    super::response::method_not_allowed("GET, HEAD").map(Body::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StaticTokens;
    use crate::clock::SystemClock;
    use crate::server::MemoryGates;

    /// The router allocates this future for every request inside axum's own (about 270 bytes
    /// more): under 760 bytes the whole stays within the 1,032 bytes glibc's allocator serves
    /// from its per-thread cache (see `tests/future_sizes.rs`).
    #[test]
    fn a_requests_future_leaves_room_for_axums_part_in_the_allocators_cache() {
        let gates = Arc::new(MemoryGates::new(SystemClock));
        let handler = CallbackHandler::new(gates, Arc::new(StaticTokens::new()));
        let request = Request::post("/callbacks/0").body(Body::empty()).unwrap();
        let size = std::mem::size_of_val(&delegate(State(ServerState::new(handler)), request));
        assert!(size <= 760, "{size} bytes");
    }
}
