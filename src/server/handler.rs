use std::error::Error;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;

use super::body::{self, ReadError};
use super::headers::{self, Repeated};
use super::response::Done;
use super::route::{NoRoute, Route};
use super::{GateService, response};
use crate::auth::{AuthError, CallbackAuthorizer, Principal};
use crate::config::GateId;
use crate::core::{CallbackAck, CallbackId, Decision, DeploymentId};

/// Serves callbacks and approvals over plain `http` types, for any server framework.
///
/// Routes, below an optional prefix (all `POST`):
/// - `/callbacks/<id>` and `/callbacks/<id>/callback`: a callback (PROTOCOL.md §5, §8).
///   `200 {"status": "applied"}` when it resolved the gate, `{"status": "duplicate"}` for a
///   repeat of the same outcome, `{"status": "recorded"}` for a progress note.
/// - `/deployments/<deployment>/gates/<gate>/approve` and `/reject`, body empty or
///   `{"comment": "..."}`: a decision by the token's principal (its subject and roles). An
///   empty body is taken whatever its `Content-Type` says.
///   `<gate>` is the gate's number, [`GateId`](crate::config::GateId)'s `.0` (`3`, not its
///   `Display`, `gate 3`).
///   `200 {"status": "approved"}` or `{"status": "rejected"}`, also for the decision that
///   resolved the gate sent again (nothing changes); the opposite one is `409 conflict`, and
///   any decision once the approval closed another way (expired, its environment ended, the
///   deployment cancelled) `410 gate_closed`, as for callbacks.
///
/// Every refusal is `{"error": "<code>", "message": "..."}` with the status of §5's table
/// where it has one:
/// `unknown_callback` 404 (also for a malformed id), `conflict` 409, `gate_closed` 410,
/// `unauthorized` 401 with `WWW-Authenticate: Bearer`, `forbidden` 403, `invalid_body` 400
/// naming the field, `body_too_large` 413, `unsupported_media_type` 415, `unavailable` 503;
/// also `not_found` 404, `unknown_deployment`/`unknown_gate` 404, `method_not_allowed` 405,
/// and `too_many_notes` 422 for a progress note past its gate's
/// [`Settings::max_progress_notes`](crate::core::Settings::max_progress_notes).
///
/// The checks run in this order, so that nothing is read before the sender is known: path,
/// method, bearer token, `Content-Type`, `Content-Encoding` (none, or `identity`; any other
/// is `415` with `Accept-Encoding: identity`), body size (while reading), body.
pub struct CallbackHandler {
    gates: Arc<dyn GateService>,
    authorizer: Arc<dyn CallbackAuthorizer>,
    prefix: String,
    body_limit: usize,
    message_limit: usize,
    deciders: Deciders,
    callback_scope: Option<String>,
}

/// Whose tokens may decide approvals.
#[derive(Debug)]
enum Deciders {
    /// Nobody's: not configured yet.
    Unset,
    /// Any valid token's ([`CallbackHandler::allow_any_token_to_decide`]).
    AnyToken,
    /// Tokens holding this scope ([`CallbackHandler::with_approval_scope`]).
    Scope(String),
}

impl fmt::Debug for CallbackHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackHandler")
            .field("prefix", &self.prefix)
            .field("body_limit", &self.body_limit)
            .field("message_limit", &self.message_limit)
            .field("deciders", &self.deciders)
            .field("callback_scope", &self.callback_scope)
            .finish_non_exhaustive()
    }
}

impl CallbackHandler {
    /// The default body limit: 64 KiB.
    pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
    /// The default longest `mdMessage` or `comment`: 64 KiB.
    pub const DEFAULT_MESSAGE_LIMIT: usize = 64 * 1024;

    /// A handler applying requests to `gates`, with senders authorized by `authorizer`.
    pub fn new(gates: Arc<dyn GateService>, authorizer: Arc<dyn CallbackAuthorizer>) -> Self {
        Self {
            gates,
            authorizer,
            prefix: String::new(),
            body_limit: Self::DEFAULT_BODY_LIMIT,
            message_limit: Self::DEFAULT_MESSAGE_LIMIT,
            deciders: Deciders::Unset,
            callback_scope: None,
        }
    }

    /// Serves the routes below `prefix` (e.g. `/hookgate`) in [`handle`](Self::handle). A
    /// slash it ends with is dropped and one it lacks at its start added: `hookgate/` serves
    /// `/hookgate/callbacks/…`, since a request's path always starts with one.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let prefix = prefix.trim_end_matches('/');
        self.prefix = if prefix.is_empty() || prefix.starts_with('/') {
            prefix.to_owned()
        } else {
            format!("/{prefix}")
        };
        self
    }

    /// The largest body read; a larger one is refused with 413 without being read.
    #[must_use]
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The longest `mdMessage` or approval `comment`, in bytes.
    #[must_use]
    pub fn with_message_limit(mut self, bytes: usize) -> Self {
        self.message_limit = bytes;
        self
    }

    /// Requires this scope to approve or reject, so that tokens meant for callbacks cannot
    /// decide approvals (403 otherwise). Until this or
    /// [`allow_any_token_to_decide`](Self::allow_any_token_to_decide) is called, every decision
    /// is refused with 403: a manual approval is a person's say, which the tokens given to
    /// external systems for their callbacks must not have.
    #[must_use]
    pub fn with_approval_scope(mut self, scope: impl Into<String>) -> Self {
        self.deciders = Deciders::Scope(scope.into());
        self
    }

    /// Lets any valid token approve or reject, limited only by each approval's
    /// `requiresRoles`: for a server whose tokens all belong to people, or a trial. An approval
    /// without `requiresRoles` can then be decided by the external systems' callback tokens
    /// too. In place of [`with_approval_scope`](Self::with_approval_scope), if called before.
    #[must_use]
    pub fn allow_any_token_to_decide(mut self) -> Self {
        self.deciders = Deciders::AnyToken;
        self
    }

    /// Requires this scope to send callbacks and progress notes, so that tokens meant for
    /// approvers cannot resolve webhook gates (403 otherwise). With
    /// [`with_approval_scope`](Self::with_approval_scope), each kind of token does one thing
    /// only, where a scope the authorizer requires of every request (the `jwt` feature's
    /// `JwtAuthorizerBuilder::required_scope`) would have approvers hold the callback scope
    /// too.
    #[must_use]
    pub fn with_callback_scope(mut self, scope: impl Into<String>) -> Self {
        self.callback_scope = Some(scope.into());
        self
    }

    /// Answers one request whose path includes the prefix. The future is `Send`, for hosts
    /// that spawn it.
    pub fn handle<B>(&self, request: Request<B>) -> impl Future<Output = Response<Bytes>> + Send
    where
        B: Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let route = match request.uri().path().strip_prefix(self.prefix.as_str()) {
            Some(rest) => Route::parse(rest),
            None => Err(NoRoute::NotFound),
        };
        Self::serve(self, route, request)
    }

    /// Answers one request whose path is already below the mount point (axum's `nest`
    /// strips it), ignoring the prefix. The future owns the handler, as a router's must.
    #[cfg(feature = "axum")]
    pub(super) fn handle_unprefixed<B>(
        self: &Arc<Self>,
        request: Request<B>,
    ) -> impl Future<Output = Response<Bytes>> + use<B>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let route = Route::parse(request.uri().path());
        Self::serve(Arc::clone(self), route, request)
    }

    /// The answer to a request on `route`. A function returning a block rather than an
    /// `async fn`: an `async fn`'s future keeps its arguments twice (as passed, and moved into
    /// its body), and a router allocates this future for every request; under about 1 KiB the
    /// allocator serves it from its per-thread cache instead of its slow path.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` would keep the request twice in its future"
    )]
    fn serve<H, B>(
        handler: H,
        route: Result<Route, NoRoute>,
        request: Request<B>,
    ) -> impl Future<Output = Response<Bytes>>
    where
        H: Deref<Target = Self>,
        B: Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        async move {
            let route = match route {
                Ok(route) => route,
                Err(why) => return response::no_route(why),
            };
            if request.method() != Method::POST {
                return response::method_not_allowed("POST");
            }
            let principal = match handler.authorize(request.headers(), &route).await {
                Ok(principal) => principal,
                Err(err) => return response::auth(&err),
            };
            // A decision's body may be empty whatever a client labels it (`curl -d ''` says
            // it is a form): there is nothing to read as anything else.
            let empty_decision = matches!(route, Route::Decide { .. })
                && request.body().size_hint().exact() == Some(0);
            let refusal = match headers::single(request.headers(), CONTENT_TYPE) {
                _ if empty_decision => None,
                Err(Repeated) => Some(
                    "the Content-Type header is given more than once; send it once: application/json",
                ),
                Ok(content_type) if !body::is_json(content_type) => {
                    Some("the body must be JSON; send Content-Type: application/json")
                }
                Ok(_) => None,
            };
            if let Some(refusal) = refusal {
                return response::error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    refusal,
                );
            }
            if !headers::all_identity(request.headers(), CONTENT_ENCODING) {
                // RFC 9110 §15.5.16: the coding is refused rather than read as JSON, as a hop
                // in front decoding it would not.
                return headers::accepting_identity_only(response::error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the body must not be content-coded; send it without Content-Encoding",
                ));
            }
            let bytes = match body::read_limited(request.into_body(), handler.body_limit).await {
                Ok(bytes) => bytes,
                Err(ReadError::TooLarge) => {
                    return response::error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        format_args!("the body is larger than {} bytes", handler.body_limit),
                    );
                }
                Err(ReadError::Broken) => {
                    return response::error(
                        StatusCode::BAD_REQUEST,
                        "invalid_body",
                        "the body could not be read to its end",
                    );
                }
            };
            match route {
                Route::Callback(id) => handler.callback(id, &bytes, &principal).await,
                Route::Decide {
                    deployment,
                    gate,
                    approve,
                } => {
                    handler
                        .decide(&deployment, gate, approve, &bytes, &principal)
                        .await
                }
            }
        }
    }

    async fn authorize(&self, headers: &HeaderMap, route: &Route) -> Result<Principal, AuthError> {
        // Through the trait objects themselves: the blanket impls for `Arc` would box a second
        // future around each call.
        let principal = (*self.authorizer).authorize(bearer(headers)?).await?;
        let (needed, doing) = match (route, &self.deciders) {
            (Route::Decide { .. }, Deciders::Unset) => {
                return Err(AuthError::Forbidden {
                    reason: "this server takes no decisions yet: it names the scope approvers' \
                             tokens hold (CallbackHandler::with_approval_scope), or lets any \
                             token decide (CallbackHandler::allow_any_token_to_decide)"
                        .to_owned(),
                });
            }
            (Route::Decide { .. }, Deciders::AnyToken) => (None, "deciding approvals"),
            (Route::Decide { .. }, Deciders::Scope(scope)) => (Some(scope), "deciding approvals"),
            (Route::Callback(_), _) => (self.callback_scope.as_ref(), "sending callbacks"),
        };
        if let Some(scope) = needed
            && !principal.has_scope(scope)
        {
            return Err(AuthError::Forbidden {
                reason: format!("{doing} needs the scope `{scope}`"),
            });
        }
        Ok(principal)
    }

    async fn callback(&self, id: CallbackId, body: &[u8], by: &Principal) -> Response<Bytes> {
        let report = match body::parse_callback(body, self.message_limit) {
            Ok(report) => report,
            Err(problem) => return invalid_body(problem),
        };
        let progress = matches!(report, super::CallbackReport::Progress { .. });
        match (*self.gates).callback(id, report, by).await {
            Ok(ack) => {
                let done = match ack {
                    _ if progress => Done::Recorded,
                    CallbackAck::Duplicate => Done::Duplicate,
                    _ => Done::Applied,
                };
                // Not the id: with a callback token it resolves the gate, which a note keeps open.
                tracing::info!(subject = %by.subject, status = done.as_str(), "callback accepted");
                response::done(done)
            }
            Err(err) => response::gate(&err),
        }
    }

    async fn decide(
        &self,
        deployment: &DeploymentId,
        gate: GateId,
        approve: bool,
        body: &[u8],
        by: &Principal,
    ) -> Response<Bytes> {
        let comment = match body::parse_decision(body, self.message_limit) {
            Ok(comment) => comment,
            Err(problem) => return invalid_body(problem),
        };
        let decision = if approve {
            Decision::approve(&by.subject, &by.roles)
        } else {
            Decision::reject(&by.subject, &by.roles)
        };
        let decision = match comment {
            Some(comment) => decision.with_comment(comment),
            None => decision,
        };
        match (*self.gates).decide(deployment, gate, decision, by).await {
            Ok(()) => {
                let done = if approve {
                    Done::Approved
                } else {
                    Done::Rejected
                };
                tracing::info!(%deployment, %gate, subject = %by.subject, status = done.as_str(), "decision applied");
                response::done(done)
            }
            Err(err) => response::gate(&err),
        }
    }
}

fn invalid_body(problem: String) -> Response<Bytes> {
    response::error(StatusCode::BAD_REQUEST, "invalid_body", problem)
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers::single(headers, AUTHORIZATION)
        .map_err(|Repeated| AuthError::MalformedToken {
            reason: "the Authorization header is given more than once",
        })?
        .ok_or(AuthError::MissingToken)?;
    let value = value.to_str().map_err(|_| AuthError::MalformedToken {
        reason: "the header holds characters a token cannot have",
    })?;
    // ASCII, as `to_str` accepts nothing else: found as bytes, which costs far less than
    // searching text for a `char`, and trimmed of ASCII whitespace, as `trim` would.
    let value = value.trim_ascii();
    let (scheme, token) = match value.bytes().position(|b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MalformedToken {
            reason: "it uses another scheme than Bearer",
        });
    }
    match token.trim_ascii() {
        "" => Err(AuthError::MalformedToken {
            reason: "the token is empty",
        }),
        token => Ok(token),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn bearer_of(value: &[u8]) -> Result<String, AuthError> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        bearer(&headers).map(str::to_owned)
    }

    /// The scheme is matched whatever its case, spaces and tabs around the value and the token
    /// are dropped, and a value that is not text, another scheme or no token is malformed.
    #[test]
    fn the_token_is_read_from_a_bearer_authorization() {
        for (value, token) in [
            (&b"Bearer tok-1"[..], "tok-1"),
            (b"bearer tok-1", "tok-1"),
            (b"  BEARER   tok-1 \t", "tok-1"),
            (b"\tBearer tok 1", "tok 1"),
        ] {
            assert_eq!(bearer_of(value).ok().as_deref(), Some(token), "{value:?}");
        }
        for value in [
            &b"Basic dG9r"[..],
            b"Bearer",
            b"Bearer   ",
            b"Bearer\ttok-1",
            b"Bearertok-1",
            b"Bearer tok-\xff",
        ] {
            assert!(
                matches!(bearer_of(value), Err(AuthError::MalformedToken { .. })),
                "{value:?}"
            );
        }
        assert!(matches!(
            bearer(&HeaderMap::new()),
            Err(AuthError::MissingToken)
        ));
    }
}
