//! The futures allocated for every callback stay small enough for the allocator's per-thread
//! cache. glibc serves blocks of up to 1,032 bytes from it; a larger block takes the slow path,
//! which first merges every freed small block it holds, and under load those are cold. The
//! router allocates the handler's future inside axum's own (about 270 bytes more), and the
//! engine's callback is boxed again behind the `GateService` trait object.
#![cfg(all(feature = "runtime", feature = "axum", feature = "test-util"))]

use std::sync::Arc;

use axum::body::Body;
use hookgate::auth::{Principal, StaticTokens};
use hookgate::core::CallbackId;
use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::server::{CallbackHandler, CallbackReport, GateService};
use hookgate::test_util::RecordingTransport;
use http::Request;

/// What leaves room for axum's part of the router's block under 1,032 bytes.
const HANDLER_LIMIT: usize = 760;

fn engine() -> Engine {
    let external = RecordingTransport::new();
    let dispatcher = external.dispatcher("https://gates.example").unwrap();
    Engine::builder(dispatcher, SimulatedHost).build()
}

#[tokio::test]
async fn a_requests_future_in_the_handler_fits_the_allocators_cache_with_axums_part() {
    let handler = CallbackHandler::new(Arc::new(engine()), Arc::new(StaticTokens::new()));
    let request = Request::post("/callbacks/0").body(Body::empty()).unwrap();
    let size = std::mem::size_of_val(&handler.handle(request));
    assert!(size <= HANDLER_LIMIT, "{size} bytes");
}

#[tokio::test]
async fn the_engines_callback_future_fits_the_allocators_cache() {
    let engine = engine();
    let by = Principal::new("ci");
    let report = CallbackReport::Outcome {
        success: true,
        message: None,
    };
    let future = engine.callback(CallbackId([0; 16]), report, &by);
    let size = std::mem::size_of_val(&*future);
    assert!(size <= 1024, "{size} bytes");
}
