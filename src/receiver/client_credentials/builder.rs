use std::{
    fmt,
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::Duration,
};

use chrono::TimeDelta;
use http::Uri;
use url::Url;

use super::{ClientCredentials, DEFAULT_AUDIENCE, DEFAULT_TOKEN_URL};
use crate::{
    Secret,
    clock::{Clock, SystemClock},
    receiver::{Backoff, TokenError},
    transport::HttpTransport,
};

impl ClientCredentials {
    /// A builder for the given client id and secret, with Armory's token URL and audience.
    pub fn builder(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            token_url: None,
            audience: DEFAULT_AUDIENCE.to_owned(),
            refresh_margin: Duration::from_secs(60),
            clock: Arc::new(SystemClock),
            backoff: Backoff::default(),
        }
    }
}

/// Configures a [`ClientCredentials`] token source.
pub struct ClientCredentialsBuilder {
    client_id: String,
    client_secret: Secret,
    token_url: Option<Url>,
    audience: String,
    refresh_margin: Duration,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
}

impl ClientCredentialsBuilder {
    /// The token endpoint (default [`DEFAULT_TOKEN_URL`]).
    #[must_use]
    pub fn token_url(mut self, token_url: Url) -> Self {
        self.token_url = Some(token_url);
        self
    }

    /// The API audience the token is for (default [`DEFAULT_AUDIENCE`]).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// How long before `expires_in` runs out the token is refreshed (default 60 s); capped at
    /// half the token's lifetime, so that short-lived tokens are still cached.
    #[must_use]
    pub fn refresh_margin(mut self, refresh_margin: Duration) -> Self {
        self.refresh_margin = refresh_margin;
        self
    }

    /// The clock that measures token lifetimes (default [`SystemClock`]).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The retry policy of token requests (default [`Backoff::default`]).
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Builds the token source, which sends its requests through `transport`.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidConfig`] when the token URL is not http(s) or the refresh margin is
    /// absurdly long.
    pub fn build(
        self,
        transport: impl HttpTransport + 'static,
    ) -> Result<ClientCredentials, TokenError> {
        let config = |reason: &str| TokenError::InvalidConfig {
            reason: reason.to_owned(),
        };
        let token_uri = match &self.token_url {
            None => Uri::from_static(DEFAULT_TOKEN_URL),
            Some(url) if matches!(url.scheme(), "http" | "https") => url
                .as_str()
                .parse()
                .map_err(|_| config("the token URL is not a valid HTTP URI"))?,
            Some(_) => return Err(config("the token URL must be an http or https URL")),
        };
        let refresh_margin = TimeDelta::from_std(self.refresh_margin)
            .map_err(|_| config("the refresh margin is too long"))?;
        Ok(ClientCredentials {
            transport: Arc::new(transport),
            client_id: self.client_id,
            client_secret: self.client_secret,
            token_uri,
            audience: self.audience,
            refresh_margin,
            clock: self.clock,
            backoff: self.backoff,
            cache: Mutex::new(None),
            flight: tokio::sync::Mutex::new(None),
            flights: AtomicU64::new(0),
        })
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("token_url", &self.token_url)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{Request, Response};

    use super::*;
    use crate::transport::TransportError;

    async fn never_called(_request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        Ok(Response::new(Bytes::new()))
    }

    #[test]
    fn debug_hides_the_secret() {
        let builder = ClientCredentials::builder("id", "hunter2");
        assert!(!format!("{builder:?}").contains("hunter2"));
        let source = builder.build(never_called).unwrap();
        assert!(!format!("{source:?}").contains("hunter2"));
    }

    #[test]
    fn non_http_token_url_is_refused() {
        let builder =
            ClientCredentials::builder("id", "s").token_url(Url::parse("ftp://x/token").unwrap());
        assert!(matches!(
            builder.build(never_called),
            Err(TokenError::InvalidConfig { .. })
        ));
    }
}
