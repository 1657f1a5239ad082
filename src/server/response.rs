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

/// What an accepted request did, as its `200` answer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    /// A callback's outcome was applied.
    Applied,
    /// The callback repeated one already applied.
    Duplicate,
    /// A progress note was recorded.
    Recorded,
    /// A manual approval was approved.
    Approved,
    /// A manual approval was rejected.
    Rejected,
}

impl Done {
    /// The status, as the log and the answer name it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Recorded => "recorded",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    /// The answer's body, written out: this answers every accepted callback, and a body
    /// built for each costs allocations that a constant does not.
    fn body(self) -> &'static str {
        match self {
            Self::Applied => r#"{"status":"applied"}"#,
            Self::Duplicate => r#"{"status":"duplicate"}"#,
            Self::Recorded => r#"{"status":"recorded"}"#,
            Self::Approved => r#"{"status":"approved"}"#,
            Self::Rejected => r#"{"status":"rejected"}"#,
        }
    }
}

/// `200 {"status": "<status>"}`.
pub(super) fn done(done: Done) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(done.body().as_bytes()));
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
            "the deployment id in the URL is not valid percent-encoded UTF-8, or holds a control \
             character",
        ),
        NoRoute::EmptyDeployment => (
            "unknown_deployment",
            "the deployment id in the URL is empty",
        ),
        NoRoute::UnknownGate => ("unknown_gate", "the gate in the URL is not a gate number"),
    };
    error(StatusCode::NOT_FOUND, code, message)
}

/// `405`, naming in `Allow` (and the message) the methods `allowed` at the path.
pub(super) fn method_not_allowed(allowed: &'static str) -> Response<Bytes> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format_args!("only {allowed} is served at this path"),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
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
    // What failed on this side (a JWKS host that cannot be reached, a misconfiguration) is for
    // the operator's log, not for a sender not yet authenticated.
    let mut response = if status.is_server_error() {
        tracing::warn!(error = %err, "a bearer token could not be checked");
        error(
            status,
            code,
            "bearer tokens cannot be checked right now; retry later",
        )
    } else {
        error(status, code, err)
    };
    // RFC 6750 §3: say which scheme to use, and that a presented token was refused.
    let challenge = match err {
        AuthError::InvalidToken { .. } | AuthError::ExpiredToken => {
            Some(r#"Bearer error="invalid_token""#)
        }
        // §3.1: a valid token lacking what the request needs.
        AuthError::Forbidden { .. } => Some(r#"Bearer error="insufficient_scope""#),
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
        // The same answer as a malformed id's, so that it tells a token holder nothing about
        // the id: unknown or of a gate not called yet.
        GateError::Core(CoreError::UnknownCallback | CoreError::GateNotOpen) => {
            return no_route(NoRoute::UnknownCallback);
        }
        GateError::Core(core) => match core {
            CoreError::Conflict { .. }
            | CoreError::AlreadyDecided { .. }
            | CoreError::NotAwaitingDecision(_) => (StatusCode::CONFLICT, "conflict"),
            CoreError::GateClosed { .. } | CoreError::CallbackDisabled | CoreError::Finished => {
                (StatusCode::GONE, "gate_closed")
            }
            CoreError::UnknownGate(_) => (StatusCode::NOT_FOUND, "unknown_gate"),
            CoreError::MissingRole { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            // Final, unlike `429`, which senders retry: no later request gets the note in.
            CoreError::TooManyProgressNotes { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "too_many_notes")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        },
        GateError::UnknownDeployment => (StatusCode::NOT_FOUND, "unknown_deployment"),
        GateError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        GateError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    if status.is_server_error() {
        tracing::warn!(error = %err, "the gates could not apply a request");
    }
    // An unexpected refusal by the core names this side's state (a stored state that does not
    // match its plan): the detail is in the log. A `GateService` words its own `Unavailable`.
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        return error(
            status,
            code,
            "the request could not be applied; the server's log says why",
        );
    }
    error(status, code, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_done_body_is_its_status_as_json() {
        for done in [
            Done::Applied,
            Done::Duplicate,
            Done::Recorded,
            Done::Approved,
            Done::Rejected,
        ] {
            let body: Value = serde_json::from_str(done.body()).unwrap();
            assert_eq!(body, json!({"status": done.as_str()}));
        }
    }
}
