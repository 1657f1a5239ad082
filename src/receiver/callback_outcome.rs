use http::StatusCode;

use super::{TokenError, attempt_count};
use crate::transport::TransportError;

/// The orchestrator's final word on a callback it understood.
///
/// A server's `message` has the token and the parts of the callback URI that may hold its id
/// masked (the path, and its segments of 16 characters or more), is cut short and has its
/// control characters escaped, so that it cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a callback may be answered `Conflict`, `GateClosed` or `TooManyNotes` rather than delivered"]
pub enum CallbackOutcome {
    /// Any 2xx: recorded, or already recorded with the same outcome (a repeat is answered
    /// `200` too).
    Delivered,
    /// `409`: the gate was already resolved with the opposite outcome, which stands.
    Conflict {
        /// The server's `message`, if any.
        message: Option<String>,
    },
    /// `410`: the gate closed without a callback (timed out, cancelled, or its deployment
    /// ended); nothing more can be reported to it.
    GateClosed {
        /// The server's `message`, if any.
        message: Option<String>,
    },
    /// `422` `too_many_notes`: the gate has recorded as many progress notes as it takes, and
    /// refused this one. The gate is still open: send no more notes, but do send its outcome
    /// ([`Callback::success`](super::Callback::success) or
    /// [`Callback::failure`](super::Callback::failure)).
    TooManyNotes {
        /// The server's `message`, if any.
        message: Option<String>,
    },
}

/// Why a callback was not delivered.
///
/// `409`, `410` and a `422` `too_many_notes` are not errors but [`CallbackOutcome`]s: the
/// orchestrator understood the callback and nothing the sender does can change the answer.
///
/// A server's `code` and `message` have the token and the parts of the callback URI that may
/// hold its id masked (the path, and its segments of 16 characters or more), are cut short and
/// have their control characters escaped, so that they cannot forge log lines.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// `404`: no gate has this callback URI.
    #[error(
        "the orchestrator knows no gate at this callback URI (HTTP 404){}; check that the whole \
         URI was extracted",
        detail(message)
    )]
    UnknownCallback {
        /// The server's `message`, if any.
        message: Option<String>,
    },
    /// `400` (or another unexpected answer): the request itself is wrong; sending it again
    /// unchanged will not help.
    #[error(
        "the orchestrator rejected the callback (HTTP {status}{}){}; fix the request before \
         sending it again",
        code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
        detail(message)
    )]
    Rejected {
        /// The answer's status.
        status: StatusCode,
        /// The server's `error` code, e.g. `invalid_body`.
        code: Option<String>,
        /// The server's `message`, if any.
        message: Option<String>,
    },
    /// A redirect (`3xx`): never followed, since the token would go with it. The callback
    /// URI is not where the orchestrator takes callbacks: its public base URL is likely
    /// configured wrong (`http` where it is served over `https`, a path a proxy moves).
    #[error(
        "the callback URI answered a redirect (HTTP {status}), which is not followed, since the \
         token would go with it; check the orchestrator's public base URL (http for https, a \
         path a proxy in front moves) and have callbacks sent where it takes them"
    )]
    Redirected {
        /// The answer's status.
        status: StatusCode,
    },
    /// `401` again after one retry with the token source's next token (a freshly fetched one
    /// for [`ClientCredentials`](super::ClientCredentials); the same one for a
    /// [`StaticToken`](super::StaticToken), which has no other).
    #[error(
        "the orchestrator refused the bearer token (HTTP 401), also when sent again with the \
         token source's next one{}; check the token or the client credentials and audience",
        detail(message)
    )]
    Unauthorized {
        /// The server's `message`, if any.
        message: Option<String>,
    },
    /// `403`: the token is valid but not allowed for this gate.
    #[error(
        "the token is not allowed to resolve this gate (HTTP 403){}; check the client's scope \
         and tenant",
        detail(message)
    )]
    Forbidden {
        /// The server's `message`, if any.
        message: Option<String>,
    },
    /// `408`, `429` or `5xx` until the attempts ran out.
    #[error(
        "the callback endpoint still answered HTTP {status} after {}{}; send the callback again \
         later",
        attempt_count(*attempts),
        detail(message)
    )]
    Unavailable {
        /// The last status received.
        status: StatusCode,
        /// How many requests were sent (not counting the one retry after a `401`).
        attempts: u32,
        /// The server's last `message`, if any.
        message: Option<String>,
    },
    /// The callback could not be exchanged with the server (connection errors and timeouts
    /// are retried first).
    // The cause is in the message, with its own advice: a failure that is not retried (an
    // answer that is not HTTP, a request the transport's policy refuses) would fail the same
    // way if sent again, and many loggers show only `Display`. It names the request by its
    // origin only, never the path that holds the callback id.
    #[error(
        "could not deliver the callback after {}: {source}",
        attempt_count(*attempts)
    )]
    Transport {
        /// How many requests were sent.
        attempts: u32,
        /// The last transport failure.
        #[source]
        source: TransportError,
    },
    /// No token could be had for the callback.
    // The cause is in the message too: its reason (such as `invalid_client`) is what the
    // operator must act on, and many loggers show only `Display`. It never holds the secret.
    #[error("could not get a bearer token for the callback: {source}")]
    Token {
        /// Why.
        #[source]
        source: TokenError,
    },
    /// The callback URL cannot be sent to.
    #[error("the callback URL cannot be used: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
}

impl CallbackError {
    /// Whether sending the callback again later may succeed, the client's own retries having
    /// run out: the orchestrator was unavailable (`408`, `429`, `5xx`), the network failed, or
    /// no token could be had for a reason that may pass ([`TokenError::is_retryable`]). A
    /// receiver that keeps callbacks to send later keeps these and gives up on the others,
    /// which fail the same way until someone changes the request, the URI or the credentials.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::Transport { source, .. } => source.is_retryable(),
            Self::Token { source } => source.is_retryable(),
            Self::UnknownCallback { .. }
            | Self::Rejected { .. }
            | Self::Redirected { .. }
            | Self::Unauthorized { .. }
            | Self::Forbidden { .. }
            | Self::InvalidUrl { .. } => false,
        }
    }
}

fn detail(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{Method, Uri};

    use super::*;
    use crate::transport::RequestTarget;

    fn target() -> RequestTarget {
        RequestTarget::new(Method::POST, &Uri::from_static("https://gates.example/"))
    }

    #[test]
    fn only_what_may_pass_is_worth_sending_again() {
        let status = |code: u16| StatusCode::from_u16(code).unwrap();
        let unavailable = CallbackError::Unavailable {
            status: status(503),
            attempts: 3,
            message: None,
        };
        let timed_out = CallbackError::Transport {
            attempts: 3,
            source: TransportError::timeout(target(), Duration::from_secs(1)),
        };
        let refused_request = CallbackError::Transport {
            attempts: 1,
            source: TransportError::invalid_request(target(), "no"),
        };
        let token = |source| CallbackError::Token { source };
        let token_status = |code| {
            token(TokenError::Status {
                status: status(code),
                attempts: 3,
                body: None,
            })
        };
        let refused = |code, error: &str| {
            token(TokenError::Refused {
                status: status(code),
                error: error.to_owned(),
                description: None,
            })
        };
        for (error, retryable) in [
            (unavailable, true),
            (timed_out, true),
            (refused_request, false),
            (token_status(502), true),
            (token_status(429), true),
            (token_status(408), true),
            (token_status(404), false),
            (refused(400, "invalid_client"), false),
            (refused(503, "temporarily_unavailable"), true),
            (refused(400, "temporarily_unavailable"), true),
            (token(TokenError::AnswerTooLarge), false),
            (CallbackError::Unauthorized { message: None }, false),
            (CallbackError::Forbidden { message: None }, false),
            (CallbackError::UnknownCallback { message: None }, false),
            (
                CallbackError::Rejected {
                    status: status(400),
                    code: None,
                    message: None,
                },
                false,
            ),
            (
                CallbackError::InvalidUrl {
                    reason: "x".to_owned(),
                },
                false,
            ),
        ] {
            assert_eq!(error.is_retryable(), retryable, "{error}");
        }
    }
}
