mod answer;
mod builder;

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use http::{HeaderValue, Method, Request, Uri, header::CONTENT_TYPE};

pub use builder::ClientCredentialsBuilder;

use super::{
    TokenError, TokenSource,
    backoff::{Backoff, Step, with_retries_while},
    long_uri_parts,
    token::transient_status,
};
use crate::{
    Secret,
    clock::Clock,
    retry_after::retry_after,
    transport::{BodyTruncated, DynTransport, RequestTarget},
};

/// How long a cached token keeps serving, without a refresh, after a refresh failed while it
/// had not expired.
const REFRESH_AGAIN_AFTER: TimeDelta = TimeDelta::seconds(5);

/// Armory's token endpoint, the default token URL.
pub const DEFAULT_TOKEN_URL: &str = "https://auth.cloud.armory.io/oauth/token";

/// Armory's API audience, the default audience.
pub const DEFAULT_AUDIENCE: &str = "https://api.cloud.armory.io";

/// An OAuth2 client-credentials [`TokenSource`] (RFC 6749 §4.4), as Armory issues tokens.
///
/// - The token is cached until `refresh_margin` (default 60 s), but at most half its lifetime,
///   before its `expires_in` runs out, measured with the configured [`Clock`]. An answer without
///   `expires_in` is cached until [`invalidate`](TokenSource::invalidate)d.
/// - Callers arriving while the cache is cold share one fetch, and its result: a failed fetch
///   fails every caller that waited for it instead of being repeated by each.
/// - Once the margin is reached, one caller refreshes the token; callers arriving while that
///   refresh is under way get the cached token at once, as long as it has not expired, rather
///   than wait through the refresh's retries.
/// - A refresh while the cached token has not yet expired makes one attempt, not the
///   [`Backoff`]'s retries, and when it fails serves that token (with a warning), so that the
///   token endpoint being down for less than the margin stops nothing; a refresh is tried
///   again 5 s later, or at the token's expiry if sooner. If the token expires or is
///   invalidated during that attempt, the refresh retries as a fetch with no token in hand
///   does. A token
///   [`invalidate`](TokenSource::invalidate)d is never served again.
/// - A fetch retries connection errors, timeouts, 408, 429 and 5xx with [`Backoff`]; an RFC 6749
///   error answer is final ([`TokenError::Refused`]).
/// - `Debug` shows neither the client secret nor the token, nor the token URL's user
///   information or query.
/// - It waits between attempts, and for a refresh under way, with Tokio: call it from within a
///   Tokio runtime (with its timer enabled), whatever the transport runs on.
///
/// ```no_run
/// # #[cfg(feature = "reqwest")]
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::receiver::{ClientCredentials, TokenSource};
/// use hookgate::transport::ReqwestTransport;
///
/// let tokens = ClientCredentials::builder("my-client-id", "my-client-secret")
///     .build(ReqwestTransport::new()?)?;
/// let token = tokens.token().await?;
/// # Ok(())
/// # }
/// ```
pub struct ClientCredentials {
    transport: DynTransport,
    client_id: String,
    client_secret: Secret,
    token_uri: Uri,
    audience: String,
    refresh_margin: TimeDelta,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    cache: Mutex<Option<CachedToken>>,
    flight: tokio::sync::Mutex<Option<Result<Secret, TokenError>>>,
    /// Fetches completed so far; lets a caller that waited for the flight lock tell whether a
    /// fetch finished meanwhile, and take its result.
    flights: AtomicU64,
}

struct CachedToken {
    token: Secret,
    /// `None`: no `expires_in` was given; valid until invalidated.
    refresh_at: Option<DateTime<Utc>>,
    /// When `expires_in` runs out: until then the token still serves while a refresh fails.
    expires_at: Option<DateTime<Utc>>,
}

impl ClientCredentials {
    /// The cached token until its refresh point.
    fn cached(&self) -> Option<Secret> {
        self.cached_until(|cached| cached.refresh_at)
    }

    /// The cached token until it expires, whatever its refresh point: for callers arriving
    /// while another refreshes it.
    fn valid(&self) -> Option<Secret> {
        self.cached_until(|cached| cached.expires_at)
    }

    /// Whether `outcome`, a fetch's that a caller waited for, is a token no longer cached: one
    /// [`invalidate`](TokenSource::invalidate)d since (a callback refused it), which is never
    /// served again. A failure is shared with the callers that waited for it as it is.
    fn invalidated(&self, outcome: &Result<Secret, TokenError>) -> bool {
        let Ok(token) = outcome else {
            return false;
        };
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .as_ref()
            .is_none_or(|cached| cached.token.expose() != token.expose())
    }

    /// The cached token, unless `end` (`None`: never) has come.
    fn cached_until(&self, end: impl Fn(&CachedToken) -> Option<DateTime<Utc>>) -> Option<Secret> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = cache.as_ref()?;
        match end(cached) {
            Some(at) if self.clock.now() >= at => None,
            _ => Some(cached.token.clone()),
        }
    }

    /// The cached token past its refresh point but not yet expired, for when the refresh
    /// failed: the token endpoint being down for a while need not stop callbacks that the
    /// token still authorizes.
    /// It is served from the cache for [`REFRESH_AGAIN_AFTER`] more (but not past its expiry),
    /// so that callers meanwhile do not each wait through a refresh's retries.
    fn unexpired(&self) -> Option<Secret> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = cache.as_mut()?;
        let now = self.clock.now();
        if cached.expires_at.is_some_and(|at| now >= at) {
            return None;
        }
        let again = now
            .checked_add_signed(REFRESH_AGAIN_AFTER)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        cached.refresh_at = Some(
            cached
                .expires_at
                .map_or(again, |expires| again.min(expires)),
        );
        Some(cached.token.clone())
    }

    /// A fresh token, or while the token endpoint fails, the cached one until it expires.
    ///
    /// While the cached token still serves, the refresh makes one attempt: the caller that
    /// happens to pass the refresh point would otherwise wait through every retry (minutes,
    /// with an endpoint that hangs), and fail if the token expired meanwhile, when the token in
    /// hand would have done; a failed attempt is tried again [`REFRESH_AGAIN_AFTER`] later.
    /// Once the token stops serving (it expired during the attempt, or a callback it was
    /// refused invalidated it), the callers waiting on this refresh have no token but the one
    /// it fetches, and it retries as a fetch with no token in hand would.
    async fn refresh(&self) -> Result<Secret, TokenError> {
        let serving = self.valid().is_some();
        let error = match self.fetch(|| !serving || self.valid().is_none()).await {
            Ok(token) => return Ok(token),
            Err(error) => error,
        };
        match self.unexpired() {
            Some(token) => {
                tracing::warn!(error = %error, "could not refresh the client-credentials token; using the cached one until it expires");
                Ok(token)
            }
            None => Err(error),
        }
    }

    /// Fetches a token, retrying a failed attempt while `go_on()` says so.
    async fn fetch(&self, go_on: impl Fn() -> bool) -> Result<Secret, TokenError> {
        let (token, expires_in, sent_at) = with_retries_while(
            &self.backoff,
            "the token request",
            |attempt| self.attempt(attempt),
            go_on,
        )
        .await?;
        let (refresh_at, expires_at) = match expires_in {
            None => (None, None),
            Some(seconds) => {
                // A lifetime too long to represent: refresh on invalidation only.
                let after = |span: Option<TimeDelta>| {
                    span.and_then(|span| sent_at.checked_add_signed(span))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC)
                };
                let lifetime = i64::try_from(seconds).ok().and_then(TimeDelta::try_seconds);
                // A margin as long as the lifetime would refetch on every call: short-lived
                // tokens are kept for at least half their lifetime instead.
                let until_refresh = lifetime.and_then(|lifetime| {
                    lifetime.checked_sub(&self.refresh_margin.min(lifetime / 2))
                });
                (Some(after(until_refresh)), Some(after(lifetime)))
            }
        };
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = Some(CachedToken {
            token: token.clone(),
            refresh_at,
            expires_at,
        });
        tracing::debug!(expires_in, "fetched a client-credentials token");
        Ok(token)
    }

    /// One request for a token; a token comes with `expires_in` and when it was asked for,
    /// which is when its lifetime may have started: a slow answer does not stretch it.
    async fn attempt(
        &self,
        attempt: u32,
    ) -> Step<(Secret, Option<u64>, DateTime<Utc>), TokenError> {
        let sent_at = self.clock.now();
        // Through the trait object: the blanket impl for `Arc` would box a second future.
        let sent = (*self.transport).send(self.request()).await;
        // An answer other than a success that lost its body is judged by its status, as below:
        // a refusal such as `invalid_client` is not retried for the lost body.
        let sent = sent.or_else(|source| {
            match source
                .bodiless_answer()
                .filter(|a| !a.status().is_success())
            {
                Some(answer) => {
                    tracing::warn!(attempt, error = %source, "token answer lost its body");
                    Ok(answer)
                }
                None => Err(source),
            }
        });
        let response = match sent {
            Ok(response) => response,
            Err(source) if source.is_retryable() => {
                tracing::warn!(attempt, error = %source, "token request failed");
                return Step::Retry {
                    retry_after: None,
                    last: TokenError::Transport {
                        attempts: attempt,
                        source,
                    },
                };
            }
            Err(source) => {
                return Step::Done(Err(TokenError::Transport {
                    attempts: attempt,
                    source,
                }));
            }
        };
        let status = response.status();
        if status.is_success() {
            if response.extensions().get::<BodyTruncated>().is_some() {
                return Step::Done(Err(TokenError::AnswerTooLarge));
            }
            return Step::Done(
                answer::parse_token(response.body())
                    .map(|(token, expires_in)| (token, expires_in, sent_at)),
            );
        }
        if transient_status(status) {
            tracing::warn!(attempt, %status, "token endpoint unavailable");
            return Step::Retry {
                retry_after: retry_after(response.headers(), self.clock.now()),
                last: answer::unexpected_status(
                    &response,
                    attempt,
                    &hidden(self.client_secret.expose(), &self.token_uri),
                ),
            };
        }
        Step::Done(Err(answer::refusal(
            &response,
            attempt,
            &hidden(self.client_secret.expose(), &self.token_uri),
        )))
    }

    /// The request of RFC 6749 §4.4.2 with Armory's `audience`.
    fn request(&self) -> Request<Bytes> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("audience", &self.audience)
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", self.client_secret.expose())
            .finish();
        let mut request = Request::new(Bytes::from(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.token_uri.clone();
        request.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        request
    }
}

#[async_trait]
impl TokenSource for ClientCredentials {
    async fn token(&self) -> Result<Secret, TokenError> {
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let seen = self.flights.load(Ordering::Acquire);
        let mut flight = match self.flight.try_lock() {
            Ok(flight) => flight,
            // Another caller is refreshing: a token that still serves spares this one the wait,
            // and the error if that refresh fails past the token's expiry.
            Err(_) => match self.valid() {
                Some(token) => return Ok(token),
                None => self.flight.lock().await,
            },
        };
        if self.flights.load(Ordering::Acquire) != seen
            && let Some(outcome) = flight.as_ref()
            && !self.invalidated(outcome)
        {
            return outcome.clone();
        }
        // A fetch may have finished between the cache check and reading `seen`.
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let outcome = self.refresh().await;
        *flight = Some(outcome.clone());
        self.flights.fetch_add(1, Ordering::Release);
        outcome
    }

    fn invalidate(&self, rejected: &Secret) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache
            .as_ref()
            .is_some_and(|cached| cached.token.expose() == rejected.expose())
        {
            *cache = None;
        }
    }
}

/// What a refusal's text must not show: the client secret, and the parts of the token URL that
/// may carry credentials (see [`shown_endpoint`]), which an endpoint may quote back.
fn hidden<'a>(secret: &'a str, uri: &'a Uri) -> Vec<&'a str> {
    std::iter::once(secret).chain(long_uri_parts(uri)).collect()
}

/// The token endpoint for `Debug`: `POST` and its origin, since user information, a path or a
/// query may carry credentials.
fn shown_endpoint(uri: Option<&Uri>) -> String {
    uri.map_or_else(
        || "<not a valid URI>".to_owned(),
        |uri| RequestTarget::new(Method::POST, uri).to_string(),
    )
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("token_endpoint", &shown_endpoint(Some(&self.token_uri)))
            .field("audience", &self.audience)
            .field("refresh_margin", &self.refresh_margin)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}
