use std::fmt;

use super::constant_time::position;
use async_trait::async_trait;

use super::{AuthError, CallbackAuthorizer, Principal};
use crate::Secret;

/// A fixed table of bearer tokens, each standing for a [`Principal`].
///
/// The presented token is compared with **every** configured token in constant time, and the
/// match is selected without branching, so the time taken tells neither whether nor which token
/// matched (only, as with any comparison, the lengths involved). Tokens should be long random
/// strings.
///
/// ```
/// # async fn demo() {
/// use hookgate::auth::{CallbackAuthorizer, Principal, StaticTokens};
/// let tokens = StaticTokens::new().with_token("7f3c9a...random", Principal::new("ci"));
/// assert_eq!(tokens.authorize("7f3c9a...random").await.unwrap().subject, "ci");
/// assert!(tokens.authorize("guess").await.is_err());
/// # }
/// ```
#[derive(Clone, Default)]
pub struct StaticTokens {
    entries: Vec<(Secret, Principal)>,
}

impl StaticTokens {
    /// An empty table, which refuses every token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token, without the whitespace around it: a token read from a file often ends
    /// with a line break, which no bearer token holds (the callback handler drops what
    /// surrounds the one it is sent), so with it the token could never match. An empty token
    /// never matches.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<Secret>, principal: Principal) -> Self {
        let token = Secret::new(token.into().expose().trim());
        self.entries.push((token, principal));
        self
    }
}

impl fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokens")
            .field("tokens", &self.entries.len())
            .finish()
    }
}

#[async_trait]
impl CallbackAuthorizer for StaticTokens {
    async fn authorize(&self, bearer_token: &str) -> Result<Principal, AuthError> {
        if bearer_token.is_empty() {
            return Err(AuthError::MalformedToken {
                reason: "the token is empty",
            });
        }
        let tokens = self.entries.iter().map(|(t, _)| t.expose().as_bytes());
        match position(tokens, bearer_token.as_bytes()) {
            Some(index) => Ok(self.entries[index].1.clone()),
            None => Err(AuthError::invalid("it is not one of the configured tokens")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> StaticTokens {
        StaticTokens::new()
            .with_token("token-a", Principal::new("a"))
            .with_token("token-b", Principal::new("b"))
            .with_token("", Principal::new("empty"))
    }

    #[tokio::test]
    async fn each_token_maps_to_its_principal() {
        let t = table();
        assert_eq!(t.authorize("token-a").await.unwrap().subject, "a");
        assert_eq!(t.authorize("token-b").await.unwrap().subject, "b");
    }

    #[tokio::test]
    async fn unknown_prefixes_and_empty_tokens_are_refused() {
        let t = table();
        for bad in ["token-", "token-c", "token-aa", ""] {
            let err = t.authorize(bad).await.unwrap_err();
            assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED, "{bad:?}");
        }
    }

    /// A token read from a file with its line break matches the token sent without it.
    #[tokio::test]
    async fn whitespace_around_a_configured_token_is_dropped() {
        let t = StaticTokens::new().with_token(" token-c\r\n", Principal::new("c"));
        assert_eq!(t.authorize("token-c").await.unwrap().subject, "c");
        assert!(t.authorize(" token-c\r\n").await.is_err());
        let blank = StaticTokens::new().with_token(" \n", Principal::new("blank"));
        assert!(blank.authorize(" ").await.is_err());
    }

    #[test]
    fn debug_shows_no_token() {
        assert!(!format!("{:?}", table()).contains("token-a"));
    }
}
