use std::fmt::Display;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use super::GateError;
use super::route::NoRoute;
use crate::auth::AuthError;
use crate::core::CoreError;

/// A JSON answer.
pub(super) fn json(status: StatusCode, body: &Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `200 {"status": "<status>"}`, written directly: this answers every accepted callback, and a
/// `Value` built for it costs a map and its allocations.
pub(super) fn done(status: &'static str) -> Response<Bytes> {
    debug_assert!(status.bytes().all(|b| b.is_ascii_lowercase()), "{status}");
    let mut response = Response::new(Bytes::from(format!(r#"{{"status":"{status}"}}"#)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"error": "<code>", "message": "<what was wrong>"}`.
pub(super) fn error(status: StatusCode, code: &str, message: impl Display) -> Response<Bytes> {
    tracing::debug!(%status, code, %message, "refused a request");
    json(
        status,
        &json!({"error": code, "message": message.to_string()}),
    )
}

pub(super) fn no_route(why: NoRoute) -> Response<Bytes> {
    let (code, message) = match why {
        NoRoute::NotFound => ("not_found", "nothing is served at this path"),
        NoRoute::UnknownCallback => (
            "unknown_callback",
            "no gate has this callback id; check the callback URI",
        ),
        NoRoute::UnknownDeployment => (
            "unknown_deployment",
            "the deployment id in the URL is not valid percent-encoded UTF-8",
        ),
        NoRoute::UnknownGate => ("unknown_gate", "the gate in the URL is not a gate number"),
    };
    error(StatusCode::NOT_FOUND, code, message)
}

pub(super) fn method_not_allowed() -> Response<Bytes> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "only POST is served at this path",
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST"));
    response
}

pub(super) fn auth(err: &AuthError) -> Response<Bytes> {
    let status = err.status();
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "internal_error",
    };
    let mut response = error(status, code, err);
    // RFC 6750 §3: say which scheme to use, and that a presented token was refused.
    let challenge = match err {
        AuthError::InvalidToken { .. } | AuthError::ExpiredToken => {
            Some(r#"Bearer error="invalid_token""#)
        }
        _ if status == StatusCode::UNAUTHORIZED => Some("Bearer"),
        _ => None,
    };
    if let Some(challenge) = challenge {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}

/// The answer of PROTOCOL.md §5's table for a refusal by the gates.
pub(super) fn gate(err: &GateError) -> Response<Bytes> {
    let (status, code) = match err {
        GateError::Core(core) => match core {
            CoreError::UnknownCallback | CoreError::GateNotOpen => {
                (StatusCode::NOT_FOUND, "unknown_callback")
            }
            CoreError::Conflict { .. } | CoreError::NotAwaitingDecision(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            CoreError::GateClosed { .. } | CoreError::Finished => (StatusCode::GONE, "gate_closed"),
            CoreError::UnknownGate(_) => (StatusCode::NOT_FOUND, "unknown_gate"),
            CoreError::MissingRole { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        },
        GateError::UnknownDeployment => (StatusCode::NOT_FOUND, "unknown_deployment"),
        GateError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        GateError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    if status.is_server_error() {
        tracing::warn!(error = %err, "the gates could not apply a request");
    }
    error(status, code, err)
}
