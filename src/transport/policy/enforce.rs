use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};

use super::AddressPolicy;
use crate::transport::{HttpTransport, RequestOptions, RequestTarget, TransportError};

/// An [`HttpTransport`] that checks every request against an [`AddressPolicy`] before handing
/// it to the inner transport.
///
/// The URL's host is used as is when it is an IP literal and resolved otherwise; the request is
/// refused if any address fails the policy. Resolution is bounded by the timeout the request
/// will be sent with, and the time it took is taken off the timeout the inner transport sees,
/// so the whole call keeps to that timeout: the request's [`RequestOptions::timeout`], or for a
/// request without [`RequestOptions`] the inner transport's own
/// ([`HttpTransport::default_options`], which `ReqwestTransport` reports), in which case the
/// request is handed on with the inner transport's default options, shortened. An inner
/// transport that does not report its defaults gets such a request unchanged: its own timeout
/// cannot be shortened without being known, so the lookup is bounded by 10 seconds, which
/// come on top of it. See [`AddressPolicy`] for what this does and does not protect against
/// (DNS rebinding, redirects, proxies, remote network agents, whose names this machine
/// resolves in place of the agent).
///
/// ```no_run
/// use hookgate::transport::{AddressPolicy, PolicyTransport, ReqwestTransport};
/// # fn demo() -> Result<(), hookgate::transport::TransportError> {
/// let transport = PolicyTransport::new(
///     ReqwestTransport::new()?,
///     AddressPolicy::deny_internal().deny_loopback(),
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PolicyTransport<T> {
    inner: T,
    policy: Arc<AddressPolicy>,
}

impl<T> PolicyTransport<T> {
    /// Wraps `inner` with `policy` (an [`AddressPolicy`] or an `Arc` of one, so that a
    /// [`PolicyResolver`] can share it).
    pub fn new(inner: T, policy: impl Into<Arc<AddressPolicy>>) -> Self {
        Self {
            inner,
            policy: policy.into(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<AddressPolicy> {
        &self.policy
    }

    /// The inner transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The inner transport, unwrapped.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T> fmt::Debug for PolicyTransport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyTransport")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<T: HttpTransport> HttpTransport for PolicyTransport<T> {
    async fn send(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        let Some(host) = request.uri().host().map(str::to_owned) else {
            return Err(TransportError::invalid_request(
                RequestTarget::of(&request),
                "the URI must be an absolute http or https URL",
            ));
        };
        let addrs = match ip_literal(&host) {
            Some(addr) => vec![addr],
            None => resolve(&mut request, &host, || self.inner.default_options()).await?,
        };
        if let Err(violation) = self.policy.check_all(&host, addrs) {
            // Without the host, which a secret may have written (a capability URL); the
            // refusal's reason, which names it, is redacted by whoever sent the request.
            tracing::warn!(addr = %violation.addr(), "address policy refused a request");
            return Err(TransportError::invalid_request(
                RequestTarget::of(&request),
                violation.to_string(),
            ));
        }
        self.inner.send(request).await
    }

    fn default_options(&self) -> Option<RequestOptions> {
        self.inner.default_options()
    }
}

/// The address of `host` when it is an IP literal (IPv6 in brackets, as in a URL).
fn ip_literal(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse().ok().map(IpAddr::V6),
        None => host.parse().ok(),
    }
}

/// How long a lookup may take when the timeout of the call is not known (a request without
/// options for an inner transport that does not report its defaults), on top of whatever the
/// inner transport then allows: a resolver with no answer by then is failing (glibc's default
/// gives up after two tries of 5 s each), and the caller waits this much longer than it asked.
const UNTOLD_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves `host` within the timeout the request will be sent with, its own options' or else
/// `inner_defaults`, and hands the request on with those options less the time spent.
async fn resolve(
    request: &mut Request<Bytes>,
    host: &str,
    inner_defaults: impl FnOnce() -> Option<RequestOptions>,
) -> Result<Vec<IpAddr>, TransportError> {
    let started = tokio::time::Instant::now();
    let options = request
        .extensions()
        .get::<RequestOptions>()
        .copied()
        .or_else(inner_defaults);
    let limit = options.map_or(UNTOLD_LOOKUP_TIMEOUT, |options| options.timeout);
    let port = request.uri().port_u16().unwrap_or(0);
    let addrs: Vec<IpAddr> =
        match tokio::time::timeout(limit, tokio::net::lookup_host((host, port))).await {
            Err(_) => return Err(TransportError::timeout(RequestTarget::of(request), limit)),
            Ok(Err(error)) => {
                return Err(TransportError::connect(RequestTarget::of(request), error));
            }
            Ok(Ok(addrs)) => addrs.map(|addr| addr.ip()).collect(),
        };
    if addrs.is_empty() {
        return Err(TransportError::connect(
            RequestTarget::of(request),
            "the host name resolved to no address",
        ));
    }
    if let Some(mut options) = options {
        options.timeout = options.timeout.saturating_sub(started.elapsed());
        request.extensions_mut().insert(options);
    }
    Ok(addrs)
}

/// A reqwest DNS resolver that refuses names resolving to an address an [`AddressPolicy`]
/// refuses, so that the addresses checked are the ones connected to (no DNS rebinding window).
///
/// It sees host names only: reqwest connects to IP literals without asking a resolver, so pair
/// it with [`PolicyTransport`] (sharing one policy) or another check of literal addresses. A
/// refusal surfaces from reqwest as a connection error.
///
/// ```no_run
/// use std::sync::Arc;
/// use hookgate::transport::{AddressPolicy, PolicyResolver};
/// # fn demo() -> Result<(), reqwest::Error> {
/// let policy = Arc::new(AddressPolicy::deny_internal());
/// let client = reqwest::Client::builder()
///     .dns_resolver(PolicyResolver::new(Arc::clone(&policy)))
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<AddressPolicy>,
}

impl PolicyResolver {
    /// A resolver applying `policy` (an [`AddressPolicy`] or an `Arc` of one).
    pub fn new(policy: impl Into<Arc<AddressPolicy>>) -> Self {
        Self {
            policy: policy.into(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<AddressPolicy> {
        &self.policy
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            policy.check_all(&host, addrs.iter().map(SocketAddr::ip))?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_recognised() {
        assert_eq!(ip_literal("127.0.0.1"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(ip_literal("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(ip_literal("[127.0.0.1]"), None);
        assert_eq!(ip_literal("::1"), Some("::1".parse().unwrap()));
        assert_eq!(ip_literal("localhost"), None);
        assert_eq!(ip_literal("[::1"), None);
    }
}
