//! Outbound HTTP: the [`HttpTransport`] trait, its errors and the reqwest implementation.
//!
//! Everything above this module speaks `http::Request<Bytes>` / `http::Response<Bytes>` and
//! never touches a socket. A transport only moves bytes: it sends the request it is given and
//! hands back the status, headers and (possibly truncated) body of the answer. Whether a status
//! is a success, and whether to try again, is decided by the caller.
//!
//! - [`HttpTransport`]: one async method; closures implement it, so a test can pass one.
//! - [`RequestOptions`]: per-request timeout and response-size limit, carried in the request's
//!   extensions.
//! - [`TransportError`]: what went wrong, without ever showing headers, bodies, or the URL past
//!   its origin.
//! - `ReqwestTransport` (feature `reqwest`): the production implementation over reqwest + rustls.
//! - [`TransportRegistry`]: picks the transport for `networkMode: remoteNetworkAgent` webhooks.
//!
//! ```
//! use bytes::Bytes;
//! use hookgate::transport::{HttpTransport, TransportError};
//!
//! # async fn demo() -> Result<(), TransportError> {
//! let canned = |_request: http::Request<Bytes>| async {
//!     Ok::<_, TransportError>(http::Response::new(Bytes::from_static(b"ok")))
//! };
//! let request = http::Request::post("https://hooks.example.com/x").body(Bytes::new()).unwrap();
//! assert_eq!(canned.send(request).await?.body(), "ok");
//! # Ok(())
//! # }
//! ```

mod error;
mod options;
mod policy;
mod registry;
#[cfg(feature = "reqwest")]
mod reqwest_transport;

use std::{fmt, future::Future, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};

pub use error::{RequestTarget, TransportError};
pub use options::{BodyTruncated, RequestOptions};
pub use policy::{AddressPolicy, Cidr, InvalidCidr, PolicyViolation};
#[cfg(feature = "reqwest")]
pub use policy::{PolicyResolver, PolicyTransport};
pub use registry::TransportRegistry;
#[cfg(feature = "reqwest")]
pub use reqwest_transport::{ReqwestTransport, ReqwestTransportBuilder};

/// Sends one HTTP request and returns the answer, whatever its status.
///
/// A non-2xx status is not an error at this level: only failures to exchange bytes are. An
/// implementation honours the [`RequestOptions`] found in the request's extensions and applies
/// its own defaults otherwise. A webhook call the [`Dispatcher`](crate::outbound::Dispatcher)
/// sends also carries the [`WebhookCall`](crate::core::WebhookCall) it performs there (its
/// gate, attempt and callback id), for a transport that routes or counts by gate; extensions
/// are not sent. The callback id lets whoever holds it report on the gate (with a token): log
/// the call with `Debug`, which shows its last digits only, not with `Display` or serde. The engine takes a `send` that panics for a webhook call that
/// failed for good (not retried), since another attempt would meet the same bug.
///
/// Implemented for closures `Fn(Request<Bytes>) -> impl Future<Output = Result<Response<Bytes>,
/// TransportError>>` (which also covers boxed closures), for `Arc<T>` and for
/// `Box<dyn HttpTransport>`.
#[async_trait]
pub trait HttpTransport: Send + Sync {
    /// Sends `request` and returns the response with its body read (up to the size limit).
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError>;

    /// The options this transport applies to a request without [`RequestOptions`], when it
    /// can tell (`None`, the default, when it cannot).
    ///
    /// A wrapper that spends part of a request's time before handing it on, as
    /// `PolicyTransport` does resolving the host, gives such a request these options less the
    /// time spent, so that the whole call still keeps to this transport's timeout. A wrapper
    /// that passes requests on returns its inner transport's.
    fn default_options(&self) -> Option<RequestOptions> {
        None
    }
}

/// A shared, type-erased transport.
pub type DynTransport = Arc<dyn HttpTransport>;

/// Whether `uri` is plain `http` to another host than this machine's loopback: where a
/// secret, or keys to verify tokens with, would cross a network in the clear.
#[cfg(any(feature = "jwt", feature = "receiver"))]
pub(crate) fn plain_http_off_machine(uri: &http::Uri) -> bool {
    uri.scheme_str() == Some("http") && !is_loopback(uri)
}

/// Whether `uri` names this machine's loopback interface (`localhost`, `127.0.0.0/8`, `::1`),
/// where plain `http` cannot be read or altered by anyone on a network, as long as no proxy
/// carries it off the machine: `ReqwestTransport` sends such requests without one.
#[cfg(any(feature = "jwt", feature = "receiver", feature = "reqwest"))]
pub(crate) fn is_loopback(uri: &http::Uri) -> bool {
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

// Lets structs holding a `DynTransport` derive `Debug`.
impl fmt::Debug for dyn HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn HttpTransport")
    }
}

#[async_trait]
impl<F, Fut> HttpTransport for F
where
    F: Fn(Request<Bytes>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Response<Bytes>, TransportError>> + Send,
{
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        self(request).await
    }
}

#[async_trait]
impl<T: HttpTransport + ?Sized> HttpTransport for Arc<T> {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        (**self).send(request).await
    }

    fn default_options(&self) -> Option<RequestOptions> {
        (**self).default_options()
    }
}

// A generic `Box<T>` impl would overlap with the closure impl (a boxed closure is itself `Fn`),
// so only the trait object gets a forwarding impl; boxed closures go through the closure impl.
#[async_trait]
impl HttpTransport for Box<dyn HttpTransport> {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        (**self).send(request).await
    }

    fn default_options(&self) -> Option<RequestOptions> {
        (**self).default_options()
    }
}
