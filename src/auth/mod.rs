//! Who may resolve a gate: bearer-token authorization of callbacks and approvals.
//!
//! The HTTP layer ([`crate::server`]) takes the token out of `Authorization: Bearer <token>`
//! and asks a [`CallbackAuthorizer`] who it belongs to. The answer is a [`Principal`] (subject,
//! scopes, roles, tenant) or an [`AuthError`] that maps to 401, 403, 503 or, for a
//! misconfigured authorizer, 500.
//!
//! - [`StaticTokens`]: a fixed table of tokens, compared in constant time.
//! - `JwtAuthorizer` (feature `jwt`): JWTs signed with HS256, RS256 or ES256, keys configured
//!   or fetched from a JWKS URL.
//! - `TokenIssuer` (feature `issuer`): a built-in OAuth2 client-credentials issuer
//!   (PROTOCOL.md §6) that also verifies the tokens it issued.
//!
//! Tokens never appear in `Debug` output, error messages or traces.

mod constant_time;
mod error;
#[cfg(feature = "issuer")]
mod issuer;
#[cfg(feature = "jwt")]
mod jwt;
mod principal;
mod static_tokens;

use std::sync::Arc;

use async_trait::async_trait;

pub use error::AuthError;
#[cfg(feature = "issuer")]
pub use issuer::{IssuerClient, OAuthError, TokenIssuer, TokenIssuerBuilder, TokenResponse};
#[cfg(feature = "jwt")]
pub use jwt::{JwtAuthorizer, JwtAuthorizerBuilder};
pub use principal::Principal;
pub use static_tokens::StaticTokens;

/// Decides who a bearer token belongs to.
///
/// Implementations must not put the token into errors, logs or panics, and must not panic on
/// any input: the token comes straight from the network.
#[async_trait]
pub trait CallbackAuthorizer: Send + Sync {
    /// The principal `bearer_token` stands for, or why it is refused.
    async fn authorize(&self, bearer_token: &str) -> Result<Principal, AuthError>;
}

#[async_trait]
impl<T: CallbackAuthorizer + ?Sized> CallbackAuthorizer for Arc<T> {
    async fn authorize(&self, bearer_token: &str) -> Result<Principal, AuthError> {
        (**self).authorize(bearer_token).await
    }
}

#[async_trait]
impl<T: CallbackAuthorizer + ?Sized> CallbackAuthorizer for Box<T> {
    async fn authorize(&self, bearer_token: &str) -> Result<Principal, AuthError> {
        (**self).authorize(bearer_token).await
    }
}
