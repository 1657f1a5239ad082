use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};

use crate::outbound::{Dispatcher, OutboundError};
use crate::secrets::MemorySecrets;
use crate::transport::{HttpTransport, TransportError, TransportRegistry};

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
#[derive(Debug, Clone)]
pub struct RecordingTransport {
    status: StatusCode,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

/// A request a [`RecordingTransport`] was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl RecordingTransport {
    /// A transport answering 202 Accepted, as an external system that took the call does.
    pub fn new() -> Self {
        Self::answering(StatusCode::ACCEPTED)
    }

    /// A [`Dispatcher`] that sends every webhook to this transport (a clone sharing its
    /// record), with no secrets, and builds callback URIs on `public_base_url`: the outbound
    /// side of an engine under test. Fails as [`DispatcherBuilder::build`] does on a base URL
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
