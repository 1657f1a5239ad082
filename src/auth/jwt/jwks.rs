use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use http::{Method, Request, Uri, header::ACCEPT};
use serde::Deserialize;

use super::keys::VerifyKey;
use crate::auth::AuthError;
use crate::clock::Clock;
use crate::transport::{BodyTruncated, DynTransport, RequestOptions};

/// A JWKS is a few kilobytes; anything much larger is not one.
const MAX_JWKS_BYTES: usize = 256 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The keys of a JWKS URL, cached, and fetched again when a token names a `kid` the cache does
/// not hold, when none of the cached keys verifies a token ([`Jwks::refresh`]), and before use
/// once the cache is older than `max_age` (so a key the provider removed stops verifying). When
/// such a fetch fails, the keys known so far stay in use until one succeeds; while it is under
/// way, callers other than the one that started it use them too.
///
/// Fetches start at most once per `min_interval` (so tokens with made-up `kid`s cannot make
/// hookgate hammer the identity provider), and callers arriving while a fetch is under way wait
/// for it instead of starting their own.
pub(super) struct Jwks {
    url: Uri,
    transport: DynTransport,
    min_interval: TimeDelta,
    max_age: TimeDelta,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: Arc<[VerifyKey]>,
    /// When the fetch that got `keys` started; `None` until one succeeded.
    loaded_at: Option<DateTime<Utc>>,
    /// When the last fetch started; the rate limit counts from here.
    last_fetch: Option<DateTime<Utc>>,
    /// Why the last fetch failed, if it did.
    last_error: Option<String>,
    fetching: bool,
    /// Counts finished fetches, so waiters can tell that theirs has finished.
    generation: u64,
    waiters: Vec<Waker>,
}

impl State {
    fn holds(&self, kid: Option<&str>) -> bool {
        self.loaded_at.is_some()
            && kid.is_none_or(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }

    /// The keys to try now: the cache, unless it is unusable and the last fetch said why.
    fn settle(&self, kid: Option<&str>) -> Result<Arc<[VerifyKey]>, AuthError> {
        if self.holds(kid) {
            return Ok(Arc::clone(&self.keys));
        }
        match &self.last_error {
            Some(reason) => Err(AuthError::Unavailable {
                reason: reason.clone(),
            }),
            None if self.loaded_at.is_none() => Err(AuthError::Unavailable {
                reason: "the JWKS has not been fetched yet".to_owned(),
            }),
            None => Ok(Arc::clone(&self.keys)),
        }
    }
}

impl Jwks {
    pub(super) fn new(
        url: Uri,
        transport: DynTransport,
        min_interval: Duration,
        max_age: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            url,
            transport,
            min_interval: TimeDelta::from_std(min_interval).unwrap_or(TimeDelta::MAX),
            max_age: TimeDelta::from_std(max_age).unwrap_or(TimeDelta::MAX),
            clock,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keys to verify a token naming `kid` with; the caller still checks that one fits.
    pub(super) async fn keys(&self, kid: Option<&str>) -> Result<Arc<[VerifyKey]>, AuthError> {
        self.load(kid, None).await
    }

    /// Newer keys than `tried`, none of which verified a token naming `kid`: the provider may
    /// have rotated its keys without a new `kid`, or reused one. Fetches again, subject to the
    /// rate limit; answers `tried` itself when that limit allows no fetch.
    pub(super) async fn refresh(
        &self,
        kid: Option<&str>,
        tried: &Arc<[VerifyKey]>,
    ) -> Result<Arc<[VerifyKey]>, AuthError> {
        self.load(kid, Some(tried)).await
    }

    async fn load(
        &self,
        kid: Option<&str>,
        tried: Option<&Arc<[VerifyKey]>>,
    ) -> Result<Arc<[VerifyKey]>, AuthError> {
        let now = self.clock.now();
        // Decided under the lock, acted on after it is released: it must not be held across
        // an await.
        let next = {
            let mut s = self.lock();
            let usable = match tried {
                // Another caller fetched since `tried` was handed out: try its keys first.
                Some(tried) => !Arc::ptr_eq(&s.keys, tried),
                None => s.holds(kid) && s.loaded_at.is_some_and(|at| now - at < self.max_age),
            };
            if usable {
                return Ok(Arc::clone(&s.keys));
            }
            if s.fetching {
                // Keys that are only old stay good while the fetch that replaces them is under
                // way: only the caller that started it waits for it, not every caller behind it.
                if tried.is_none() && s.holds(kid) {
                    return Ok(Arc::clone(&s.keys));
                }
                Next::Wait(s.generation)
            } else if s.last_fetch.is_some_and(|at| now - at < self.min_interval) {
                return s.settle(kid);
            } else {
                s.fetching = true;
                s.last_fetch = Some(now);
                Next::Fetch
            }
        };
        match next {
            Next::Wait(generation) => {
                self.wait(generation).await;
                self.lock().settle(kid)
            }
            Next::Fetch => {
                let flight = Flight { jwks: self };
                let result = self.fetch().await;
                flight.finish(result, kid)
            }
        }
    }

    async fn wait(&self, generation: u64) {
        std::future::poll_fn(|cx| {
            let mut s = self.lock();
            if s.generation != generation {
                return Poll::Ready(());
            }
            if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                s.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }

    async fn fetch(&self) -> Result<Vec<VerifyKey>, String> {
        let mut request = Request::new(Bytes::new());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = self.url.clone();
        request
            .headers_mut()
            .insert(ACCEPT, http::HeaderValue::from_static("application/json"));
        request.extensions_mut().insert(
            RequestOptions::default()
                .with_timeout(FETCH_TIMEOUT)
                .with_max_response_bytes(MAX_JWKS_BYTES),
        );
        let response = (*self.transport)
            .send(request)
            .await
            .map_err(|e| format!("fetching the JWKS failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "the JWKS endpoint answered HTTP {}",
                response.status()
            ));
        }
        if response.extensions().get::<BodyTruncated>().is_some() {
            return Err(format!(
                "the JWKS is larger than {MAX_JWKS_BYTES} bytes, so it is not used"
            ));
        }
        parse(response.body())
    }
}

/// Parses a JWKS, keeping the RS256 and ES256 signing keys that have a `kid`.
fn parse(body: &[u8]) -> Result<Vec<VerifyKey>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body)
        .map_err(|_| "the JWKS endpoint did not answer with a JSON key set".to_owned())?;
    let keys: Vec<VerifyKey> = set
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value(k).ok())
        .filter_map(|jwk| VerifyKey::from_jwk(&jwk))
        .collect();
    if keys.is_empty() {
        return Err("the JWKS holds no RS256 or ES256 signing key with a `kid`".to_owned());
    }
    Ok(keys)
}

enum Next {
    /// Wait for the fetch under way, which started in this generation.
    Wait(u64),
    /// Start a fetch: this caller's.
    Fetch,
}

/// One fetch under way. Dropping it unfinished (the caller went away mid-fetch) still wakes
/// the waiters, so nobody waits forever. The fetch still counts toward the rate limit: a
/// client that hangs up on purpose must not buy itself another fetch each time.
struct Flight<'a> {
    jwks: &'a Jwks,
}

impl Flight<'_> {
    fn finish(
        self,
        result: Result<Vec<VerifyKey>, String>,
        kid: Option<&str>,
    ) -> Result<Arc<[VerifyKey]>, AuthError> {
        // The lock is released before `self` drops, since dropping takes it again.
        let mut s = self.jwks.lock();
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "fetched the JWKS");
                s.keys = keys.into();
                s.loaded_at = s.last_fetch;
                s.last_error = None;
            }
            Err(reason) => {
                tracing::warn!(%reason, "could not refresh the JWKS; keeping the keys known so far");
                s.last_error = Some(reason);
            }
        }
        let settled = s.settle(kid);
        drop(s);
        settled
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut s = self.jwks.lock();
        s.fetching = false;
        s.generation += 1;
        for waker in s.waiters.drain(..) {
            waker.wake();
        }
    }
}
