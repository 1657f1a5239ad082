use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use http::{
    HeaderValue, Method, Request, Response, StatusCode, Uri,
    header::{AUTHORIZATION, CONTENT_TYPE},
};
use serde_json::Value;
use url::{Origin, Url};

use super::{
    Callback, CallbackError, CallbackOutcome, TokenError, TokenSource,
    backoff::{Backoff, Step, with_retries},
    long_uri_parts, server_text,
};
use crate::{
    Secret,
    clock::{Clock, SystemClock},
    retry_after::retry_after,
    transport::{
        DynTransport, HttpTransport, RequestOptions, RequestTarget, plain_http_off_machine,
    },
};

/// Sends callbacks to the orchestrator with a bearer token (PROTOCOL.md §1 step 4, §7).
///
/// - Connection errors (refused, closed or reset mid-exchange), timeouts, `408`, `429` and
///   `5xx` are retried with [`Backoff`], honouring `Retry-After` up to its cap; a repeated
///   outcome is harmless (PROTOCOL.md §5). A progress note is not: one the orchestrator
///   recorded before its answer was lost is recorded again by the retry, and counts twice
///   towards the gate's limit of notes.
/// - An answer whose body could not be read is judged by its status alone: a 2xx is delivered.
/// - A `401` drops the cached token and retries once with a fresh one; a second `401` is
///   [`CallbackError::Unauthorized`].
/// - 2xx, `409`, `410` and a `422` `too_many_notes` (a progress note past the gate's limit)
///   are `Ok(`[`CallbackOutcome`]`)`, final and never retried; every other answer is a
///   [`CallbackError`]. A redirect is never followed (the token would go with it):
///   [`CallbackError::Redirected`].
///
/// The callback URI comes from whoever called the external process, and the bearer token goes
/// wherever it points. So a client sends nowhere until told where: name the orchestrators it
/// answers with [`with_allowed_origins`](Self::with_allowed_origins), so that a forged webhook
/// call cannot have the token sent elsewhere, or, where every caller of the external process is
/// trusted, say so with [`allow_any_origin`](Self::allow_any_origin). Until then every callback
/// URI is refused with [`CallbackError::InvalidUrl`]. A plain `http` callback URI is refused unless it
/// names this machine's loopback interface, or [`allow_http_callbacks`](Self::allow_http_callbacks)
/// says to send the token in the clear. A server that echoes the token back does not get it
/// into an error: it is masked there.
///
/// Cloning is cheap and clones share the transport and token source. It waits between attempts
/// with Tokio's timer: call it from within a Tokio runtime with its timer enabled.
///
/// ```no_run
/// # #[cfg(feature = "reqwest")]
/// # async fn demo(callback_uri: url::Url) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use hookgate::receiver::{Callback, CallbackClient, CallbackOutcome, ClientCredentials};
/// use hookgate::transport::ReqwestTransport;
///
/// let transport = Arc::new(ReqwestTransport::new()?);
/// let tokens = ClientCredentials::builder("id", "secret").build(transport.clone())?;
/// let client = CallbackClient::new(transport, tokens)
///     .with_allowed_origins(["https://gates.example.com".parse()?]);
/// match client.send(&callback_uri, &Callback::success().with_message("all green")).await? {
///     CallbackOutcome::Delivered => {}
///     other => eprintln!("the gate had already moved on: {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CallbackClient {
    transport: DynTransport,
    tokens: Arc<dyn TokenSource>,
    backoff: Backoff,
    clock: Arc<dyn Clock>,
    options: Option<RequestOptions>,
    /// Where callbacks (and so the token) may go.
    allowed: Destinations,
    /// Whether the token may go over plain `http` to another machine.
    allow_http: bool,
    /// The longest body sent ([`Callback::to_json_within`]).
    max_body_bytes: usize,
}

impl CallbackClient {
    /// A client sending through `transport` with tokens from `tokens`.
    pub fn new(
        transport: impl HttpTransport + 'static,
        tokens: impl TokenSource + 'static,
    ) -> Self {
        Self {
            transport: Arc::new(transport),
            tokens: Arc::new(tokens),
            backoff: Backoff::default(),
            clock: Arc::new(SystemClock),
            options: None,
            allowed: Destinations::Unset,
            allow_http: false,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// The default longest body: the limit of hookgate's own callback endpoint.
    pub const DEFAULT_MAX_BODY_BYTES: usize = crate::server::CallbackHandler::DEFAULT_BODY_LIMIT;

    /// The longest body sent (default [`DEFAULT_MAX_BODY_BYTES`](Self::DEFAULT_MAX_BODY_BYTES)):
    /// a longer message is cut to fit ([`Callback::to_json_within`]) rather than sent whole to
    /// a server that refuses it (`413`, final), which would leave the gate waiting until its
    /// timeout. Set it to the gate's server's limit where that is another.
    #[must_use]
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sends callbacks only to these origins (scheme, host and port, e.g.
    /// `https://gates.example.com`), in place of any set before; a callback URI elsewhere is
    /// refused with [`CallbackError::InvalidUrl`] before a token is asked for. An empty list
    /// accepts none, so that a configured list that came out empty sends nothing rather than
    /// sending anywhere. Until this or [`allow_any_origin`](Self::allow_any_origin) is called,
    /// no origin is accepted.
    #[must_use]
    pub fn with_allowed_origins(mut self, origins: impl IntoIterator<Item = Url>) -> Self {
        self.allowed = Destinations::Only(origins.into_iter().map(|url| url.origin()).collect());
        self
    }

    /// Sends callbacks to whatever http(s) origin a callback URI names, and so the bearer
    /// token to wherever a caller of the external process points it: only for an external
    /// process that no one but its orchestrators can call (on a private network, behind a
    /// check of the webhook's signature). In place of
    /// [`with_allowed_origins`](Self::with_allowed_origins), if called before.
    #[must_use]
    pub fn allow_any_origin(mut self) -> Self {
        self.allowed = Destinations::Any;
        self
    }

    /// Sends callbacks to plain `http` URIs on other machines too, and so the token in the
    /// clear, where anyone on the way can read it and use it until it expires. By default a
    /// plain `http` callback URI is refused with [`CallbackError::InvalidUrl`] unless it names
    /// this machine's loopback interface (`localhost`, `127.0.0.0/8`, `::1`).
    #[must_use]
    pub fn allow_http_callbacks(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// The retry policy (default [`Backoff::default`]).
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The clock that turns a `Retry-After` date into a wait (default [`SystemClock`]).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Timeout and response limit of each request (default: the transport's).
    #[must_use]
    pub fn with_request_options(mut self, options: RequestOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// Sends `callback` to `url` (the callback URI as received, or with `/callback` appended:
    /// the orchestrator accepts both).
    ///
    /// # Errors
    ///
    /// See [`CallbackError`]; `409`, `410` and a `422` `too_many_notes` are `Ok`.
    pub async fn send(
        &self,
        url: &Url,
        callback: &Callback,
    ) -> Result<CallbackOutcome, CallbackError> {
        let uri = self.usable(url)?;
        let body = Bytes::from(callback.to_json_within(self.max_body_bytes));
        let refreshed = AtomicBool::new(false);
        with_retries(&self.backoff, "the callback", |attempt| {
            self.attempt(&uri, &body, attempt, &refreshed)
        })
        .await
    }

    /// Whether [`send`](Self::send) would send to `url`: an absolute http(s) URL, of an
    /// origin this client sends callbacks to
    /// ([`with_allowed_origins`](Self::with_allowed_origins)), and not plain http to another
    /// machine unless [`allow_http_callbacks`](Self::allow_http_callbacks). A receiver checks
    /// the callback URI with it before it answers the webhook call, so that it refuses a call
    /// it could never report on (`400`) rather than accept it and leave the gate waiting for
    /// its callback timeout.
    ///
    /// # Errors
    ///
    /// [`CallbackError::InvalidUrl`], saying why; nothing is sent either way.
    pub fn check(&self, url: &Url) -> Result<(), CallbackError> {
        self.usable(url).map(drop)
    }

    /// `url` as the URI [`send`](Self::send) sends to, if it may.
    fn usable(&self, url: &Url) -> Result<Uri, CallbackError> {
        let uri = http_uri(url)?;
        let refused = match &self.allowed {
            Destinations::Unset => Some(
                "no origin is allowed yet: name the orchestrators this client answers with \
                 CallbackClient::with_allowed_origins (or, where every caller is trusted, \
                 CallbackClient::allow_any_origin); nothing was sent",
            ),
            Destinations::Only(allowed) if !allowed.contains(&url.origin()) => Some(
                "its origin is not one this client sends callbacks to \
                 (CallbackClient::with_allowed_origins); nothing was sent",
            ),
            Destinations::Only(_) | Destinations::Any => None,
        };
        if let Some(reason) = refused {
            return Err(CallbackError::InvalidUrl {
                reason: reason.to_owned(),
            });
        }
        if !self.allow_http && plain_http_off_machine(&uri) {
            return Err(CallbackError::InvalidUrl {
                reason: "it is plain http to another machine, which would send the token in \
                         the clear; use https, or CallbackClient::allow_http_callbacks; \
                         nothing was sent"
                    .to_owned(),
            });
        }
        Ok(uri)
    }

    async fn attempt(
        &self,
        uri: &Uri,
        body: &Bytes,
        attempt: u32,
        refreshed: &AtomicBool,
    ) -> Step<CallbackOutcome, CallbackError> {
        let mut response = self.post(uri, body, attempt).await;
        if let Ok((answer, token)) = &response
            && answer.status() == StatusCode::UNAUTHORIZED
            && !refreshed.swap(true, Ordering::Relaxed)
        {
            tracing::debug!("callback endpoint answered 401; retrying once with a fresh token");
            self.tokens.invalidate(token);
            response = self.post(uri, body, attempt).await;
        }
        match response {
            Ok((response, token)) => self.classify(&response, attempt, &token, uri),
            Err(CallbackError::Transport { attempts, source }) if source.is_retryable() => {
                tracing::warn!(attempt, error = %source, "callback not delivered");
                Step::Retry {
                    retry_after: None,
                    last: CallbackError::Transport { attempts, source },
                }
            }
            Err(error) => Step::Done(Err(error)),
        }
    }

    /// Sends the callback with a token from the source; returns the answer with that token.
    async fn post(
        &self,
        uri: &Uri,
        body: &Bytes,
        attempt: u32,
    ) -> Result<(Response<Bytes>, Secret), CallbackError> {
        let token = (*self.tokens)
            .token()
            .await
            .map_err(|source| CallbackError::Token { source })?;
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", token.expose()))
            .map_err(|_| CallbackError::Token {
                source: TokenError::InvalidResponse {
                    reason: "the token holds characters not allowed in an HTTP header".to_owned(),
                },
            })?;
        authorization.set_sensitive(true);
        let mut request = Request::new(body.clone());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri.clone();
        request.headers_mut().insert(AUTHORIZATION, authorization);
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(options) = self.options {
            request.extensions_mut().insert(options);
        }
        tracing::debug!(target = %RequestTarget::of(&request), attempt, "sending callback");
        match (*self.transport).send(request).await {
            Ok(response) => Ok((response, token)),
            // The answer's status arrived but its body did not: the status decides (a 2xx is
            // delivered), the body only ever feeds error messages.
            Err(source) => match source.bodiless_answer() {
                Some(answer) => {
                    tracing::warn!(attempt, error = %source, "callback answer lost its body");
                    Ok((answer, token))
                }
                None => Err(CallbackError::Transport {
                    attempts: attempt,
                    source,
                }),
            },
        }
    }

    /// What the answer to a callback sent with `token` means; a server that echoes the token
    /// back does not get it into the error.
    fn classify(
        &self,
        response: &Response<Bytes>,
        attempt: u32,
        token: &Secret,
        uri: &Uri,
    ) -> Step<CallbackOutcome, CallbackError> {
        let status = response.status();
        if status.is_success() {
            return Step::Done(Ok(CallbackOutcome::Delivered));
        }
        let (code, message) = error_answer(response.body(), &hidden(token.expose(), uri));
        let result = match status {
            StatusCode::CONFLICT => Ok(CallbackOutcome::Conflict { message }),
            StatusCode::GONE => Ok(CallbackOutcome::GateClosed { message }),
            // The one `422` the orchestrator answers with: a note past the gate's limit, which
            // a sender must not take for a reason to stop before reporting the outcome.
            StatusCode::UNPROCESSABLE_ENTITY if code.as_deref() == Some("too_many_notes") => {
                Ok(CallbackOutcome::TooManyNotes { message })
            }
            StatusCode::NOT_FOUND => Err(CallbackError::UnknownCallback { message }),
            StatusCode::UNAUTHORIZED => Err(CallbackError::Unauthorized { message }),
            StatusCode::FORBIDDEN => Err(CallbackError::Forbidden { message }),
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                return self.retry(response, attempt, message);
            }
            status if status.is_server_error() => return self.retry(response, attempt, message),
            status if status.is_redirection() => Err(CallbackError::Redirected { status }),
            status => Err(CallbackError::Rejected {
                status,
                code,
                message,
            }),
        };
        Step::Done(result)
    }

    fn retry(
        &self,
        response: &Response<Bytes>,
        attempt: u32,
        message: Option<String>,
    ) -> Step<CallbackOutcome, CallbackError> {
        let status = response.status();
        tracing::warn!(attempt, %status, "callback endpoint unavailable");
        Step::Retry {
            retry_after: retry_after(response.headers(), self.clock.now()),
            last: CallbackError::Unavailable {
                status,
                attempts: attempt,
                message,
            },
        }
    }
}

impl std::fmt::Debug for CallbackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackClient")
            .field("backoff", &self.backoff)
            .field("options", &self.options)
            .field("allowed", &self.allowed)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

/// Where a [`CallbackClient`] sends callbacks, and so its token.
#[derive(Clone, Debug)]
enum Destinations {
    /// Nowhere: not configured yet.
    Unset,
    /// Any http(s) origin ([`CallbackClient::allow_any_origin`]).
    Any,
    /// These origins only ([`CallbackClient::with_allowed_origins`]).
    Only(Arc<[Origin]>),
}

fn http_uri(url: &Url) -> Result<Uri, CallbackError> {
    let invalid = |reason: &str| CallbackError::InvalidUrl {
        reason: reason.to_owned(),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("its scheme is not http or https"));
    }
    url.as_str()
        .parse()
        .map_err(|_| invalid("it is not a valid HTTP URI"))
}

/// What an answer's text must not show: the bearer token, and the parts of the callback URI
/// that may hold its id, which resolves the gate for any holder of a callback token (see
/// SECURITY.md). A callback endpoint, or a proxy before it, may echo the path it refused.
fn hidden<'a>(token: &'a str, uri: &'a Uri) -> Vec<&'a str> {
    let path = uri.path();
    std::iter::once(token)
        .chain((path.len() > 1).then_some(path))
        .chain(long_uri_parts(uri))
        .collect()
}

/// `(error, message)` of hookgate's JSON error body `{"error": "...", "message": "..."}`, with
/// each of `hidden` masked.
fn error_answer(body: &[u8], hidden: &[&str]) -> (Option<String>, Option<String>) {
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let text = |key: &str| {
        answer
            .get(key)
            .and_then(Value::as_str)
            .map(|text| server_text(text, hidden))
    };
    (text("error"), text("message"))
}
