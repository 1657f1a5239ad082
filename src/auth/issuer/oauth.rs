use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use crate::Secret;

/// A refused token request, as RFC 6749 §5.2 defines them.
///
/// [`code`](Self::code) is the `error` field, [`description`](Self::description) the
/// `error_description`, [`status`](Self::status) the HTTP status and
/// [`to_json`](Self::to_json) the whole answer body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The request is malformed: wrong content type, a missing or repeated parameter, an
    /// unknown audience, credentials both in the `Authorization` header and in the body. 400.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed: unknown client, wrong or missing secret, an
    /// `Authorization` header that is not Basic credentials. 401, with
    /// [`www_authenticate`](Self::www_authenticate).
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// A `grant_type` other than `client_credentials`. 400.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// A requested scope the client is not granted. 400.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// The issuer failed (e.g. could not sign). 500.
    #[error("server_error: {0}")]
    ServerError(String),
}

impl OAuthError {
    /// The RFC 6749 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::ServerError(_) => "server_error",
        }
    }

    /// The `error_description`: what was wrong and what to do.
    pub fn description(&self) -> &str {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::ServerError(d) => d,
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            Self::ServerError(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The `WWW-Authenticate` challenge to answer with, if any: `Basic realm="hookgate"` for
    /// `invalid_client`. Its `401` must carry a challenge (RFC 9110 §15.5.2), of the scheme the
    /// client tried if it tried the `Authorization` header (RFC 6749 §5.2); Basic is the only
    /// scheme the issuer takes.
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Self::InvalidClient(_) => Some(r#"Basic realm="hookgate""#),
            _ => None,
        }
    }

    /// `{"error": "...", "error_description": "..."}`.
    pub fn to_json(&self) -> Bytes {
        let body = json!({"error": self.code(), "error_description": self.description()});
        Bytes::from(body.to_string())
    }
}

/// A successful token answer (PROTOCOL.md §6). The token is only shown by
/// [`to_json`](Self::to_json); `Debug` redacts it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TokenResponse {
    /// The signed JWT.
    pub access_token: Secret,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

impl TokenResponse {
    /// `{"access_token", "scope", "expires_in", "token_type": "Bearer"}`: the answer body.
    pub fn to_json(&self) -> Bytes {
        let body = json!({
            "access_token": self.access_token.expose(),
            "scope": self.scope,
            "expires_in": self.expires_in,
            "token_type": "Bearer",
        });
        Bytes::from(body.to_string())
    }
}
