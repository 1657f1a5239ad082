use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::{Method, Request, Uri, header::ACCEPT};
use serde::Deserialize;

use super::keys::VerifyKey;
use crate::auth::AuthError;
use crate::clock::Clock;
use crate::transport::{BodyTruncated, DynTransport, RequestOptions, TransportError};

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
/// for it instead of starting their own. A fetch belongs to no caller: whichever polls it
/// drives it, so one whose caller went away (a client hanging up) is carried on by the next
/// caller rather than abandoned, and its keys are used.
pub(super) struct Jwks {
    url: Uri,
    transport: DynTransport,
    min_interval: TimeDelta,
    max_age: TimeDelta,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// A fetch of the JWKS, shared by every caller that waits for it.
type Fetch = Shared<BoxFuture<'static, Result<Arc<[VerifyKey]>, String>>>;

#[derive(Default)]
struct State {
    keys: Arc<[VerifyKey]>,
    /// When the fetch that got `keys` started; `None` until one succeeded.
    loaded_at: Option<DateTime<Utc>>,
    /// When the last fetch started; the rate limit counts from here.
    last_fetch: Option<DateTime<Utc>>,
    /// Why the last fetch failed, if it did.
    last_error: Option<String>,
    /// The fetch under way, kept here rather than in the future of the caller that started
    /// it: a caller that goes away mid-fetch would otherwise take it along, and with the rate
    /// limit counting from its start, no fetch could begin until the interval passed. A client
    /// hanging up on purpose at every interval would keep the keys from ever loading.
    fetching: Option<Fetch>,
}

impl State {
    /// Whether the cache has a key for a token naming `kid`: one with that `kid`, or one with
    /// none, which fits every token of its algorithm.
    fn holds(&self, kid: Option<&str>) -> bool {
        self.loaded_at.is_some()
            && kid.is_none_or(|kid| {
                self.keys
                    .iter()
                    .any(|k| k.kid.as_deref().is_none_or(|own| own == kid))
            })
    }

    /// Takes in the result of `fetch`, unless that fetch is no longer the one under way (another
    /// caller took its result in first).
    fn finish(&mut self, fetch: &Fetch, result: Result<Arc<[VerifyKey]>, String>) {
        if !self.fetching.as_ref().is_some_and(|f| f.ptr_eq(fetch)) {
            return;
        }
        self.fetching = None;
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "fetched the JWKS");
                self.keys = keys;
                self.loaded_at = self.last_fetch;
                self.last_error = None;
            }
            Err(reason) => {
                tracing::warn!(%reason, "could not refresh the JWKS; keeping the keys known so far");
                self.last_error = Some(reason);
            }
        }
    }

    /// Polls the fetch under way once, without waiting: a caller that does not wait for it
    /// still moves it on, and takes its result in if it has finished while nobody waited.
    fn drive(&mut self) {
        let Some(fetch) = self.fetching.clone() else {
            return;
        };
        if let Some(result) = fetch.clone().now_or_never() {
            self.finish(&fetch, result);
        }
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
        // Decided under the lock, waited for after it is released: it must not be held across
        // an await.
        let fetch = {
            let mut s = self.lock();
            s.drive();
            let usable = match tried {
                // Another caller fetched since `tried` was handed out: try its keys first.
                Some(tried) => !Arc::ptr_eq(&s.keys, tried),
                None => s.holds(kid) && s.loaded_at.is_some_and(|at| within(at, now, self.max_age)),
            };
            if usable {
                return Ok(Arc::clone(&s.keys));
            }
            match &s.fetching {
                // Keys that are only old stay good while the fetch that replaces them is under
                // way: only callers that need new keys wait for it.
                Some(_) if tried.is_none() && s.holds(kid) => return Ok(Arc::clone(&s.keys)),
                Some(fetch) => fetch.clone(),
                None if s
                    .last_fetch
                    .is_some_and(|at| within(at, now, self.min_interval)) =>
                {
                    return s.settle(kid);
                }
                None => {
                    let fetch = self.start_fetch();
                    s.fetching = Some(fetch.clone());
                    s.last_fetch = Some(now);
                    fetch
                }
            }
        };
        let result = fetch.clone().await;
        let mut s = self.lock();
        s.finish(&fetch, result);
        s.settle(kid)
    }

    /// A fetch of the JWKS that owns what it needs, so that it outlives the caller starting it.
    ///
    /// The transport is the user's code and may panic: the fetch then fails as if it had
    /// answered with an error. A panic unwinding out of the shared future would poison it, so
    /// that every caller polling it later panicked too and its end was never taken in: each
    /// token needing the JWKS would panic until a restart. The panic's message goes to the
    /// process's panic hook, not into the error, which is logged and handed to callers: it may
    /// hold what the request held.
    fn start_fetch(&self) -> Fetch {
        let (url, transport) = (self.url.clone(), Arc::clone(&self.transport));
        // Nothing the fetch touched is looked at after a panic but the transport, which the
        // next fetch uses again as the engine does after a transport's panic.
        AssertUnwindSafe(async move { fetch(url, &transport).await.map(Arc::from) })
            .catch_unwind()
            .map(|caught| {
                caught.unwrap_or_else(|_| {
                    Err("the JWKS fetch panicked (a bug in its transport)".to_owned())
                })
            })
            .boxed()
            .shared()
    }
}

/// Whether `now` lies less than `span` after `at`. A wall clock stepped back (an NTP step, a
/// restored virtual machine) puts `now` before `at`: that counts as the span having passed, or
/// no fetch would start, and cached keys would not age, until the clock caught up again.
fn within(at: DateTime<Utc>, now: DateTime<Utc>, span: TimeDelta) -> bool {
    at <= now && now - at < span
}

/// Fetches and parses the JWKS at `url`.
async fn fetch(url: Uri, transport: &DynTransport) -> Result<Vec<VerifyKey>, String> {
    let mut request = Request::new(Bytes::new());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = url;
    request
        .headers_mut()
        .insert(ACCEPT, http::HeaderValue::from_static("application/json"));
    request.extensions_mut().insert(
        RequestOptions::default()
            .with_timeout(FETCH_TIMEOUT)
            .with_max_response_bytes(MAX_JWKS_BYTES),
    );
    let response = (**transport).send(request).await.map_err(|e| match e {
        // Its own advice, to raise the request timeout, is not the operator's to follow:
        // the JWKS's timeout is fixed.
        TransportError::Timeout { target, after } => format!(
            "the JWKS endpoint ({target}) did not answer within {after:?}; find out why the \
                 identity provider is slow or cannot be reached"
        ),
        e => format!("fetching the JWKS failed: {e}"),
    })?;
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

/// Parses a JWKS, keeping its RS256 and ES256 signing keys. A well-formed set without one is
/// still the provider's answer, not a failed fetch: a set emptied to revoke a key must replace
/// the keys cached before, or the revoked key would verify for as long as the set stays empty.
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
        tracing::warn!(
            "the JWKS holds no RS256 or ES256 signing key, so no token it signs verifies; \
             check the identity provider's keys and the JWKS URL"
        );
    }
    Ok(keys)
}
