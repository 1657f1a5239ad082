use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};

use crate::core::WebhookCall;
use crate::outbound::{Dispatcher, OutboundError};
use crate::secrets::MemorySecrets;
use crate::transport::{HttpTransport, RequestTarget, TransportError, TransportRegistry};

/// An [`HttpTransport`] for tests: answers every request at once with one status (202 unless
/// told otherwise) and an empty body, and keeps what it was sent. Clones share the record.
///
/// ```
/// use bytes::Bytes;
/// use hookgate::test_util::RecordingTransport;
/// use hookgate::transport::HttpTransport;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let transport = RecordingTransport::new();
/// let request = http::Request::post("https://ci.example/hook").body(Bytes::from("{}")).unwrap();
/// let response = transport.send(request).await.unwrap();
/// assert_eq!(response.status(), 202);
/// assert_eq!(transport.requests()[0].body, "{}");
/// # }
/// ```
#[derive(Clone)]
pub struct RecordingTransport {
    status: StatusCode,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

/// A request a [`RecordingTransport`] was sent. Its `Debug` names the request by its
/// [`RequestTarget`], header names and body length only: the path, the query, header values
/// and the body may carry rendered secrets or a client secret, which a failed `assert_eq!`
/// would print into a test log. The fields hold all of it, for tests to assert on.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// Its method.
    pub method: Method,
    /// Its URI.
    pub uri: Uri,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// The call it performs, for a request a [`Dispatcher`](crate::outbound::Dispatcher)
    /// sent (its extension): the gate, the attempt, and the callback id a test answers it
    /// with (`recorded.call.as_ref().map(|call| call.callback_id)`).
    pub call: Option<WebhookCall>,
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field(
                "target",
                &format_args!("{}", RequestTarget::new(self.method.clone(), &self.uri)),
            )
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("body_bytes", &self.body.len())
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RecordingTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingTransport")
            .field("status", &self.status)
            .field("requests", &*self.record())
            .finish()
    }
}

impl RecordingTransport {
    /// A transport answering 202 Accepted, as an external system that took the call does.
    pub fn new() -> Self {
        Self::answering(StatusCode::ACCEPTED)
    }

    /// A [`Dispatcher`] that sends every `direct` webhook to this transport (a clone sharing
    /// its record), with no secrets, and builds callback URIs on `public_base_url`: the
    /// outbound side of an engine under test. It has no remote network agents: for webhooks
    /// sent through one, build the dispatcher with a [`TransportRegistry`] that names it
    /// ([`TransportRegistry::with_agent`], this transport's clone for each agent). Fails as [`DispatcherBuilder::build`] does on a base URL
    /// that is not an absolute `http(s)` URL.
    ///
    /// [`DispatcherBuilder::build`]: crate::outbound::DispatcherBuilder::build
    pub fn dispatcher(
        &self,
        public_base_url: impl Into<String>,
    ) -> Result<Dispatcher, OutboundError> {
        Dispatcher::builder(
            TransportRegistry::new(Arc::new(self.clone())),
            Arc::new(MemorySecrets::new()),
            public_base_url,
        )
        .build()
    }

    /// A transport answering `status`.
    pub fn answering(status: StatusCode) -> Self {
        Self {
            status,
            requests: Arc::default(),
        }
    }

    /// Every request sent so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.record().clone()
    }

    /// How many requests were sent so far.
    pub fn count(&self) -> usize {
        self.record().len()
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        // Pushing a request cannot panic halfway, so a poisoned record is still whole.
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for RecordingTransport {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl HttpTransport for RecordingTransport {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        let (parts, body) = request.into_parts();
        self.record().push(RecordedRequest {
            call: parts.extensions.get::<WebhookCall>().cloned(),
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        });
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = self.status;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a request carried past its origin (a secret in the path, the query, a header
    /// value, the body) stays out of the `Debug` of the record and of the transport.
    #[tokio::test]
    async fn debug_names_the_request_without_what_it_carried() {
        let transport = RecordingTransport::new();
        let request = Request::post("https://user:pw-s3cret@ci.example:8443/p-s3cret?q=q-s3cret")
            .header("x-api-key", "h-s3cret")
            .body(Bytes::from("client_secret=b-s3cret"))
            .unwrap();
        transport.send(request).await.unwrap();
        let printed = format!("{transport:?} {:?}", transport.requests());
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains("POST https://ci.example:8443") && printed.contains("x-api-key"),
            "{printed}"
        );
    }
}
