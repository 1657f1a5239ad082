use std::fmt::Write as _;
use std::{error::Error as StdError, fmt, sync::Arc, time::Duration};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};

/// A source error shared between clones of a [`TransportError`].
type Source = Arc<dyn StdError + Send + Sync>;

/// What a request was aimed at, safe to print: the method and the URL's origin (scheme, host
/// and port, if given). The rest of the URL is left out: user info, a query string or a fragment may
/// carry a secret, and so may a path (a chat webhook's key, a gate's callback id, which
/// resolves the gate for whoever holds a callback token).
///
/// ```
/// use hookgate::transport::RequestTarget;
/// let request = http::Request::post("https://user:pw@hooks.example.com:8443/T0/s3cr3t?token=s3cr3t")
///     .body(())
///     .unwrap();
/// assert_eq!(
///     RequestTarget::of(&request).to_string(),
///     "POST https://hooks.example.com:8443"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    method: Method,
    origin: String,
}

impl RequestTarget {
    /// The target of `request`.
    pub fn of<B>(request: &Request<B>) -> Self {
        Self::new(request.method().clone(), request.uri())
    }

    /// The target of a `method` request to `uri`.
    pub fn new(method: Method, uri: &Uri) -> Self {
        let mut origin = String::new();
        if let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) {
            origin.push_str(scheme);
            origin.push_str("://");
            origin.push_str(host);
            if let Some(port) = uri.port_u16() {
                // Writing to a `String` cannot fail.
                let _ = write!(origin, ":{port}");
            }
        }
        Self { method, origin }
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL's scheme, host and port (`https://hooks.example.com:8443`); empty for a
    /// relative URI.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Display for RequestTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.origin.is_empty() {
            return write!(f, "{} (a relative URI)", self.method);
        }
        write!(f, "{} {}", self.method, self.origin)
    }
}

/// Why a request could not be exchanged with the server.
///
/// Messages name the request by its [`RequestTarget`] only: header values, bodies and the URL
/// past its origin (path, query string) never appear, because they may carry secrets. Cloning
/// is cheap; the underlying source error is shared.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No connection could be established (refused, DNS failure, TLS handshake failure).
    #[error(
        "could not connect for {target}; check that the host is reachable and accepts \
         connections"
    )]
    Connect {
        /// The request that failed.
        target: RequestTarget,
        /// The underlying error.
        #[source]
        source: Source,
    },
    /// The exchange did not finish within the request timeout.
    #[error(
        "{target} timed out after {after:?}; raise the request timeout or find out why the \
         server is slow"
    )]
    Timeout {
        /// The request that timed out.
        target: RequestTarget,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The request cannot be sent as it is (e.g. a relative or non-http(s) URI).
    #[error("{target} cannot be sent: {reason}")]
    InvalidRequest {
        /// The offending request.
        target: RequestTarget,
        /// What is wrong with it.
        reason: String,
    },
    /// The connection was closed or reset before the exchange finished: the server hung up,
    /// the connection was reset, or it ended before a message was complete; or, over HTTP/2,
    /// the server refused, cancelled or reset the request's stream, or went away without
    /// answering it. Sending again may succeed. When the response head had already arrived,
    /// this is the source of a [`ResponseBody`](Self::ResponseBody) error.
    #[error(
        "the connection or stream for {target} was closed or reset before the exchange \
         finished; the server may or may not have seen the request, and sending it again may \
         succeed"
    )]
    Disconnected {
        /// The request that failed.
        target: RequestTarget,
        /// The underlying error.
        #[source]
        source: Source,
    },
    /// The exchange failed for a reason other than a broken connection or a timeout, such as
    /// an answer that is not valid HTTP. Sending again would most likely fail the same way.
    #[error(
        "{target} failed while exchanging data with the server; the server may or may not have \
         seen it; check what the server answers"
    )]
    Io {
        /// The request that failed.
        target: RequestTarget,
        /// The underlying error.
        #[source]
        source: Source,
    },
    /// The server answered with `status`, but reading the response body then failed (`source`
    /// says how: a broken connection, a timeout, a malformed body). The status stands: a caller
    /// that does not need the body can act on it, e.g. count a 2xx as accepted, or retry a 503
    /// when its `Retry-After` says.
    #[error(
        "{target} was answered with {status}, but reading the response body failed; the status \
         stands, the body is lost"
    )]
    ResponseBody {
        /// The request that was answered.
        target: RequestTarget,
        /// The status of the answer.
        status: StatusCode,
        /// The answer's `Retry-After` header, if it had one.
        retry_after: Option<HeaderValue>,
        /// Why the body could not be read.
        #[source]
        source: Box<TransportError>,
    },
    /// The HTTP client itself could not be built.
    #[error("the HTTP client could not be built; check the TLS configuration of this machine")]
    Build {
        /// The underlying error.
        #[source]
        source: Source,
    },
    /// Webhooks use remote network agents for which no transport is registered.
    #[error(
        "no transport is registered for remote network agent(s) {}; register one with \
         TransportRegistry::with_agent before starting the deployment",
        agents.join(", ")
    )]
    UnknownAgents {
        /// The agent identifiers without a transport, in the order they were asked for.
        agents: Vec<String>,
    },
}

impl TransportError {
    /// A [`TransportError::Connect`] for `target`.
    pub fn connect(
        target: RequestTarget,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self::Connect {
            target,
            source: source.into().into(),
        }
    }

    /// A [`TransportError::Timeout`] for `target` after `after`.
    pub fn timeout(target: RequestTarget, after: Duration) -> Self {
        Self::Timeout { target, after }
    }

    /// A [`TransportError::InvalidRequest`] for `target`; `reason` must not quote secrets.
    pub fn invalid_request(target: RequestTarget, reason: impl Into<String>) -> Self {
        Self::InvalidRequest {
            target,
            reason: reason.into(),
        }
    }

    /// A [`TransportError::Disconnected`] for `target`.
    pub fn disconnected(
        target: RequestTarget,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self::Disconnected {
            target,
            source: source.into().into(),
        }
    }

    /// A [`TransportError::ResponseBody`]: `target` was answered with `status` and `headers`,
    /// then reading the body failed with `cause`. Of the headers, only `Retry-After` is kept:
    /// the others are no use without the body and may carry what should not be logged.
    pub fn response_body(
        target: RequestTarget,
        status: StatusCode,
        headers: &HeaderMap,
        cause: TransportError,
    ) -> Self {
        Self::ResponseBody {
            target,
            status,
            retry_after: headers.get(RETRY_AFTER).cloned(),
            source: Box::new(cause),
        }
    }

    /// A [`TransportError::Io`] for `target`.
    pub fn io(target: RequestTarget, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Io {
            target,
            source: source.into().into(),
        }
    }

    /// Whether sending the same request again may succeed: true for connection failures
    /// (refused, closed or reset), timeouts, and a body lost to either of them.
    ///
    /// A [`ResponseBody`](Self::ResponseBody) carries the status the server answered with
    /// ([`status`](Self::status)): look at it first, since a 2xx that lost its body was still
    /// accepted.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Disconnected { .. } => true,
            Self::ResponseBody { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// The status the server answered with before the failure: `Some` only for
    /// [`ResponseBody`](Self::ResponseBody).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::ResponseBody { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The answer as far as it arrived, for a caller that can act on its status alone: the
    /// status and `Retry-After` of a [`ResponseBody`](Self::ResponseBody) with an empty body,
    /// `None` for every other failure.
    pub(crate) fn bodiless_answer(&self) -> Option<http::Response<bytes::Bytes>> {
        let Self::ResponseBody {
            status,
            retry_after,
            ..
        } = self
        else {
            return None;
        };
        let mut answer = http::Response::new(bytes::Bytes::new());
        *answer.status_mut() = *status;
        if let Some(value) = retry_after {
            answer.headers_mut().insert(RETRY_AFTER, value.clone());
        }
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_the_origin_alone() {
        let uri: Uri = "http://u:p@127.0.0.1:8080/a/b?x=1#f".parse().unwrap();
        let target = RequestTarget::new(Method::GET, &uri);
        assert_eq!(target.to_string(), "GET http://127.0.0.1:8080");
        assert_eq!(target.origin(), "http://127.0.0.1:8080");
        let relative = RequestTarget::new(Method::POST, &Uri::from_static("/a/b"));
        assert_eq!(relative.to_string(), "POST (a relative URI)");
    }

    #[test]
    fn only_connection_failures_and_timeouts_are_retryable() {
        let target = RequestTarget::new(Method::POST, &Uri::from_static("https://h/"));
        assert!(TransportError::connect(target.clone(), "refused").is_retryable());
        assert!(TransportError::timeout(target.clone(), Duration::from_secs(1)).is_retryable());
        assert!(TransportError::disconnected(target.clone(), "reset").is_retryable());
        assert!(!TransportError::io(target.clone(), "bad chunk").is_retryable());
        assert!(!TransportError::invalid_request(target, "relative URI").is_retryable());
        assert!(
            !TransportError::UnknownAgents {
                agents: vec!["a".into()]
            }
            .is_retryable()
        );
    }

    #[test]
    fn a_lost_body_keeps_the_status_and_the_retryability_of_its_cause() {
        let target = RequestTarget::new(Method::POST, &Uri::from_static("https://h/x?k=s3cr3t"));
        let lost = TransportError::response_body(
            target.clone(),
            StatusCode::ACCEPTED,
            &HeaderMap::new(),
            TransportError::disconnected(target.clone(), "reset"),
        );
        assert_eq!(lost.status(), Some(StatusCode::ACCEPTED));
        assert!(lost.is_retryable());
        let text = lost.to_string();
        assert!(
            text.contains("POST https://h ") && text.contains("202"),
            "{text}"
        );
        assert!(!text.contains("s3cr3t") && !text.contains("/x"), "{text}");
        let malformed = TransportError::response_body(
            target.clone(),
            StatusCode::OK,
            &HeaderMap::new(),
            TransportError::io(target.clone(), "bad chunk"),
        );
        assert!(!malformed.is_retryable());
        assert_eq!(TransportError::disconnected(target, "reset").status(), None);
    }

    #[test]
    fn a_lost_body_keeps_retry_after_and_no_other_header() {
        let target = RequestTarget::new(Method::POST, &Uri::from_static("https://h/"));
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        headers.insert("set-cookie", HeaderValue::from_static("session=s3cr3t"));
        let lost = TransportError::response_body(
            target.clone(),
            StatusCode::SERVICE_UNAVAILABLE,
            &headers,
            TransportError::disconnected(target, "reset"),
        );

        let answer = lost.bodiless_answer().expect("the head arrived");
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers().len(), 1, "{:?}", answer.headers());
        assert_eq!(answer.headers()[RETRY_AFTER], "7");
        assert!(!format!("{lost:?}").contains("s3cr3t"), "{lost:?}");
    }

    #[test]
    fn unknown_agents_message_names_them_and_says_what_to_do() {
        let err = TransportError::UnknownAgents {
            agents: vec!["a-1".into(), "a-2".into()],
        };
        let text = err.to_string();
        assert!(text.contains("a-1, a-2"), "{text}");
        assert!(text.contains("register"), "{text}");
    }
}
