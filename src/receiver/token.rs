use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;

use super::attempt_count;
use crate::{Secret, transport::TransportError};

/// Where the bearer token for callbacks comes from.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A token valid for at least a little while longer; cached where the source can.
    async fn token(&self) -> Result<Secret, TokenError>;

    /// Drops the cached token if it is still `rejected`, so that the next
    /// [`token`](Self::token) fetches a fresh one (call it after the callback endpoint answered
    /// `401` to `rejected`). A token fetched meanwhile stays: of many callers turned away with
    /// the same token, only the first causes a fetch.
    fn invalidate(&self, rejected: &Secret);
}

#[async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    async fn token(&self) -> Result<Secret, TokenError> {
        (**self).token().await
    }

    fn invalidate(&self, rejected: &Secret) {
        (**self).invalidate(rejected);
    }
}

/// A fixed token, for tokens issued out of band (and for tests). Invalidating it does nothing.
#[derive(Debug, Clone)]
pub struct StaticToken(Secret);

impl StaticToken {
    /// Always answers `token`.
    pub fn new(token: impl Into<Secret>) -> Self {
        Self(token.into())
    }
}

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<Secret, TokenError> {
        Ok(self.0.clone())
    }

    fn invalidate(&self, _rejected: &Secret) {}
}

/// Why no token could be had. Never contains the client secret or a token; text from the
/// token endpoint is cut short and its control characters escaped, so that it cannot forge log
/// lines.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token endpoint refused the request with an RFC 6749 §5.2 error.
    #[error(
        "the token endpoint refused the request (HTTP {status}, `{error}`{}); check the client \
         id, client secret and audience",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    Refused {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The RFC 6749 error code, e.g. `invalid_client`.
        error: String,
        /// The server's `error_description`, if any.
        description: Option<String>,
    },
    /// The token endpoint answered with an unexpected status (after retrying 408, 429 and 5xx).
    #[error(
        "the token endpoint answered HTTP {status} after {}{}; {}",
        attempt_count(*attempts),
        body.as_deref().map(|b| format!(": {b}")).unwrap_or_default(),
        status_advice(*status)
    )]
    Status {
        /// The last status received.
        status: StatusCode,
        /// How many requests were sent.
        attempts: u32,
        /// The start of the last answer's body, if it had one: often a gateway's or proxy's
        /// page saying why. Cut short, its control characters escaped, and the client secret
        /// and the token URL's longer parts masked, should the server echo them.
        body: Option<String>,
    },
    /// The token endpoint could not be reached (after retrying connection errors and timeouts).
    // The cause is in the message, with its own advice (see `CallbackError::Transport`); it
    // names the token endpoint by its origin only.
    #[error(
        "could not reach the token endpoint after {}: {source}",
        attempt_count(*attempts)
    )]
    Transport {
        /// How many requests were sent.
        attempts: u32,
        /// The last transport failure.
        #[source]
        source: TransportError,
    },
    /// The token endpoint answered 2xx with something that is not a usable bearer token.
    #[error(
        "the token endpoint's answer is not a usable bearer token: {reason}; check the token URL"
    )]
    InvalidResponse {
        /// What is wrong with the answer.
        reason: String,
    },
    /// The token endpoint answered 2xx with more than the transport's response limit
    /// ([`RequestOptions::max_response_bytes`](crate::transport::RequestOptions)), which cut
    /// the answer before it could be read.
    #[error(
        "the token endpoint's answer is longer than the transport's response limit, which cut \
         it; raise the limit of the transport the token source uses"
    )]
    AnswerTooLarge,
    /// The token source is configured in a way that cannot work.
    #[error("the token source is misconfigured: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
}

impl TokenError {
    /// Whether asking for a token again later may succeed, the token source's own retries
    /// having run out: the endpoint was unreachable, overloaded or failing (`408`, `429`,
    /// `5xx`, or RFC 6749's `temporarily_unavailable`). Refused credentials, an unusable
    /// answer and a misconfigured source fail the same way until someone changes something.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Refused { status, error, .. } => {
                status.is_server_error() || error == "temporarily_unavailable"
            }
            Self::Status { status, .. } => transient_status(*status),
            Self::Transport { source, .. } => source.is_retryable(),
            Self::InvalidResponse { .. } | Self::AnswerTooLarge | Self::InvalidConfig { .. } => {
                false
            }
        }
    }
}

/// `408`, `429` and `5xx`: what a server answers while it cannot serve the request now.
pub(super) fn transient_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// What to do about a token endpoint's answer of `status` without an RFC 6749 error body.
fn status_advice(status: StatusCode) -> &'static str {
    match status {
        // A gateway or an HTTP Basic front in front of the endpoint refusing the credentials.
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            "the client credentials were refused: check the client id, client secret and audience"
        }
        _ => "check the token URL, or try again later if the server is overloaded",
    }
}
