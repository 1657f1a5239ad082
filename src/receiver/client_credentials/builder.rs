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
    transport::{HttpTransport, plain_http_off_machine},
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
            allow_http_token_url: false,
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
    allow_http_token_url: bool,
    audience: String,
    refresh_margin: Duration,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
}

impl ClientCredentialsBuilder {
    /// The token endpoint (default [`DEFAULT_TOKEN_URL`]). It must be `https`, or plain `http`
    /// on this machine's loopback (`localhost`, `127.0.0.0/8`, `::1`);
    /// [`build`](Self::build) refuses any other unless
    /// [`allow_http_token_url`](Self::allow_http_token_url) is set.
    #[must_use]
    pub fn token_url(mut self, token_url: Url) -> Self {
        self.token_url = Some(token_url);
        self
    }

    /// Accepts a plain `http` token URL on another host than this one. The client secret is
    /// then sent, and the token returned, readable by anyone on the way: set it only where the
    /// network encrypts and authenticates below HTTP (a service mesh with mutual TLS, say).
    #[must_use]
    pub fn allow_http_token_url(mut self) -> Self {
        self.allow_http_token_url = true;
        self
    }

    /// The API audience the token is for (default [`DEFAULT_AUDIENCE`], Armory's). Against
    /// hookgate's own issuer (`auth::TokenIssuer`, feature `issuer`), give the audience it
    /// was built with, or `""`: the parameter then goes empty, which the issuer takes as left
    /// out. Another audience is refused (`invalid_request`).
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
    /// [`TokenError::InvalidConfig`] when the client id or secret is empty (a token endpoint
    /// reads an empty parameter as omitted, RFC 6749 §3.2, and refuses every request), the token
    /// URL is not http(s), is plain http on another host than loopback without
    /// [`allow_http_token_url`](Self::allow_http_token_url), or the refresh margin is absurdly
    /// long.
    pub fn build(
        self,
        transport: impl HttpTransport + 'static,
    ) -> Result<ClientCredentials, TokenError> {
        let config = |reason: &str| TokenError::InvalidConfig {
            reason: reason.to_owned(),
        };
        // Most often a variable set but empty: refused here rather than as `invalid_client`
        // from the token endpoint at the first callback.
        if self.client_id.is_empty() || self.client_secret.expose().is_empty() {
            return Err(config(
                "the client id and secret must not be empty; check where they are read from",
            ));
        }
        let token_uri = match &self.token_url {
            None => Uri::from_static(DEFAULT_TOKEN_URL),
            Some(url) if matches!(url.scheme(), "http" | "https") => url
                .as_str()
                .parse()
                .map_err(|_| config("the token URL is not a valid HTTP URI"))?,
            Some(_) => return Err(config("the token URL must be an http or https URL")),
        };
        if plain_http_off_machine(&token_uri) && !self.allow_http_token_url {
            return Err(config(
                "the token URL must use https: over plain http the client secret and the token \
                 can be read by anyone on the network path (plain http is accepted on loopback, \
                 or with allow_http_token_url)",
            ));
        }
        let refresh_margin = TimeDelta::from_std(self.refresh_margin).map_err(|_| {
            config(
                "the refresh margin is too long to represent; use one shorter than the \
                     tokens' lifetime, such as the default of 60 s",
            )
        })?;
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
            .field(
                "token_endpoint",
                &self
                    .token_url
                    .as_ref()
                    .map(|url| super::shown_endpoint(url.as_str().parse::<Uri>().ok().as_ref())),
            )
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
    fn debug_hides_the_secret_and_credentials_in_the_token_url() {
        let url = "https://user:pa55@auth.example.com/oauth/p4th?client_secret=q5ecret";
        let builder =
            ClientCredentials::builder("id", "hunter2").token_url(Url::parse(url).unwrap());
        let shown = format!("{builder:?}");
        let source = builder.build(never_called).unwrap();
        for shown in [shown, format!("{source:?}")] {
            for hidden in ["hunter2", "pa55", "q5ecret", "p4th"] {
                assert!(!shown.contains(hidden), "{shown}");
            }
            assert!(shown.contains("https://auth.example.com"), "{shown}");
        }
    }

    #[test]
    fn plain_http_token_url_is_accepted_only_on_loopback_or_when_allowed() {
        let build = |url: &str, allow: bool| {
            let builder = ClientCredentials::builder("id", "s").token_url(Url::parse(url).unwrap());
            let builder = if allow {
                builder.allow_http_token_url()
            } else {
                builder
            };
            builder.build(never_called)
        };
        for url in [
            "http://auth.example.com/oauth/token",
            "http://10.0.0.7:8080/oauth/token",
            "http://localhost.example.com/oauth/token",
        ] {
            match build(url, false) {
                Err(TokenError::InvalidConfig { reason }) => {
                    assert!(reason.contains("https"), "{url}: {reason}");
                }
                other => panic!("{url}: {other:?}"),
            }
            assert!(build(url, true).is_ok(), "{url} with allow_http_token_url");
        }
        for url in [
            "https://auth.example.com/oauth/token",
            "http://localhost:8080/oauth/token",
            "http://LOCALHOST/oauth/token",
            "http://127.0.0.1:9/oauth/token",
            "http://127.3.2.1/oauth/token",
            "http://[::1]:9/oauth/token",
        ] {
            assert!(build(url, false).is_ok(), "{url}");
        }
    }

    /// An empty parameter counts as omitted at the token endpoint: such credentials could
    /// only ever be refused, so they are refused at once, saying so.
    #[test]
    fn an_empty_client_id_or_secret_is_refused() {
        for (id, secret) in [("", "s"), ("id", ""), ("", "")] {
            match ClientCredentials::builder(id, secret).build(never_called) {
                Err(TokenError::InvalidConfig { reason }) => {
                    assert!(reason.contains("must not be empty"), "{reason}");
                }
                other => panic!("{id:?} / {secret:?}: {other:?}"),
            }
        }
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
