use http::StatusCode;

/// Why a bearer token was not accepted, or why an authorizer could not be built.
///
/// Messages never contain the token. [`AuthError::status`] gives the HTTP status of
/// PROTOCOL.md §5.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header was sent.
    #[error("no bearer token was sent; send `Authorization: Bearer <token>`")]
    MissingToken,
    /// The `Authorization` header is not a usable bearer token (another scheme, empty).
    #[error(
        "the Authorization header is not a bearer token ({reason}); send `Authorization: Bearer <token>`"
    )]
    MalformedToken {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token is not one this server accepts (unknown, bad signature, wrong issuer or
    /// audience).
    // The advice fits static tokens too, which no issuer gives out.
    #[error(
        "the bearer token was refused: {reason}; send one this server accepts (a token from its \
         issuer, or one of its configured static tokens)"
    )]
    InvalidToken {
        /// Why, without the token.
        reason: String,
    },
    /// The token's `exp` has passed (beyond the leeway).
    #[error("the bearer token has expired; get a new token from the configured issuer")]
    ExpiredToken,
    /// The token is valid but not allowed to do this (missing scope, other tenant).
    #[error("the token is valid but not allowed to do this: {reason}")]
    Forbidden {
        /// What it lacks.
        reason: String,
    },
    /// Tokens cannot be checked right now (for example the JWKS could not be fetched); the
    /// sender should retry later.
    #[error("bearer tokens cannot be checked right now: {reason}; retry later")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// An authorizer was configured wrongly (a key that does not parse, a key too short).
    #[error("the authorization setup is invalid: {reason}")]
    Config {
        /// What to fix.
        reason: String,
    },
}

impl AuthError {
    /// The HTTP status to answer with: 401 for a missing, malformed, invalid or expired token,
    /// 403 for [`Forbidden`](Self::Forbidden), 503 for [`Unavailable`](Self::Unavailable) and
    /// 500 for [`Config`](Self::Config).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken
            | Self::MalformedToken { .. }
            | Self::InvalidToken { .. }
            | Self::ExpiredToken => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Config { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidToken {
            reason: reason.into(),
        }
    }

    #[cfg(feature = "jwt")]
    pub(crate) fn config(reason: impl Into<String>) -> Self {
        Self::Config {
            reason: reason.into(),
        }
    }
}
