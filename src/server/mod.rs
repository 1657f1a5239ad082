//! The orchestrator's HTTP side: callbacks (PROTOCOL.md §5, §8) and approvals.
//!
//! - [`GateService`]: what the HTTP layer asks of the gates; the runtime's engine and
//!   [`MemoryGates`] implement it.
//! - [`CallbackHandler`]: the framework-agnostic handler over `http::Request` /
//!   `http::Response`, mapping every row of §5's table.
//! - `token_endpoint` (feature `issuer`): the OAuth2 token endpoint of a `TokenIssuer`.
//! - `router` (feature `axum`): an axum router over both, plus `GET /healthz`.
//!
//! ```
//! # async fn demo() {
//! use std::sync::Arc;
//! use hookgate::auth::{Principal, StaticTokens};
//! use hookgate::clock::SystemClock;
//! use hookgate::server::{CallbackHandler, MemoryGates};
//!
//! let gates = Arc::new(MemoryGates::new(SystemClock));
//! let tokens = StaticTokens::new().with_token("4c1f...random", Principal::new("ci"));
//! let handler = CallbackHandler::new(gates, Arc::new(tokens));
//! let request = http::Request::post("/callbacks/00000000000000000000000000000001")
//!     .header("authorization", "Bearer 4c1f...random")
//!     .body(http_body_util::Full::new(bytes::Bytes::from(r#"{"success": true}"#)))
//!     .unwrap();
//! let response = handler.handle(request).await;
//! assert_eq!(response.status(), 404); // no deployment has that callback id
//! # }
//! ```

mod body;
mod fields;
mod handler;
mod headers;
mod memory;
mod response;
mod route;
#[cfg(feature = "axum")]
mod router;
mod service;
#[cfg(feature = "issuer")]
mod token;

pub use body::InvalidBody;
pub use handler::CallbackHandler;
pub use memory::MemoryGates;
#[cfg(feature = "axum")]
pub use router::{ServerState, router};
pub use service::{CallbackReport, GateError, GateService};
#[cfg(feature = "issuer")]
pub use token::token_endpoint;
