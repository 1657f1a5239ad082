use std::error::Error as StdError;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
use reqwest::redirect;

use super::{
    AddressPolicy, BodyTruncated, HttpTransport, PolicyResolver, PolicyViolation, RequestOptions,
    RequestTarget, TransportError, is_loopback,
};

/// The production [`HttpTransport`]: reqwest over rustls, HTTP/1.1 and HTTP/2.
///
/// - Connections are pooled and reused; clone the transport (cheaply) rather than building
///   another.
/// - Each request gets a total timeout (default 30 s) covering connect, send and reading the
///   body; [`RequestOptions`] in the request's extensions overrides it.
/// - Redirects are not followed unless
///   [`max_get_redirects`](ReqwestTransportBuilder::max_get_redirects) is set, and then only
///   for `GET`: following a redirect of a `POST` would resend (or, for 301–303, silently turn
///   into a `GET`) a request that carries a callback URI and secrets. A redirect that is not
///   followed is returned as the response.
/// - The response body is read up to [`RequestOptions::max_response_bytes`] (default 64 KiB);
///   the rest is left unread and the response carries [`BodyTruncated`].
///
/// ```no_run
/// use std::time::Duration;
/// use hookgate::transport::ReqwestTransport;
/// # fn demo() -> Result<(), hookgate::transport::TransportError> {
/// let transport = ReqwestTransport::builder()
///     .timeout(Duration::from_secs(10))
///     .max_get_redirects(3)
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    /// Through the proxies the environment names (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`,
    /// less `NO_PROXY`), if any, unless an address policy is set.
    proxied: Clients,
    /// Without proxies, for this machine's loopback: a proxy would carry a request meant never
    /// to leave the machine off it, in the clear for plain `http`. Built on first use.
    loopback: Arc<OnceLock<Result<Clients, TransportError>>>,
    /// What it was built with: the default request options, and what the loopback clients
    /// are built from.
    settings: Arc<ReqwestTransportBuilder>,
}

/// The clients of one proxy setting.
#[derive(Debug, Clone)]
struct Clients {
    no_redirects: reqwest::Client,
    get_with_redirects: Option<reqwest::Client>,
}

impl ReqwestTransport {
    /// A builder with the defaults: 30 s timeout, 64 KiB bodies, no redirects.
    pub fn builder() -> ReqwestTransportBuilder {
        ReqwestTransportBuilder {
            defaults: RequestOptions::default(),
            max_get_redirects: 0,
            policy: None,
        }
    }

    /// A transport with the defaults.
    ///
    /// # Errors
    ///
    /// [`TransportError::Build`] when the TLS backend cannot be set up.
    pub fn new() -> Result<Self, TransportError> {
        Self::builder().build()
    }
}

/// Configures a [`ReqwestTransport`].
#[derive(Debug, Clone)]
pub struct ReqwestTransportBuilder {
    defaults: RequestOptions,
    max_get_redirects: usize,
    policy: Option<Arc<AddressPolicy>>,
}

impl ReqwestTransportBuilder {
    /// The total timeout of a request without [`RequestOptions`] (default 30 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.defaults.timeout = timeout;
        self
    }

    /// How much of a response body is read for a request without [`RequestOptions`]
    /// (default 64 KiB).
    #[must_use]
    pub fn max_response_bytes(mut self, max_response_bytes: usize) -> Self {
        self.defaults.max_response_bytes = max_response_bytes;
        self
    }

    /// How many redirects a `GET` follows (default 0). Other methods never follow redirects.
    ///
    /// Only redirects within the request's origin (scheme, host and port) are followed; one
    /// elsewhere is answered as it is. A redirect carries the request's headers along, and
    /// reqwest strips only its own credentials (`Authorization`, `Cookie`) on the way to
    /// another host, not a header a template filled from a secret; nor would a redirect from
    /// `https` to `http` keep them from being sent in the clear.
    #[must_use]
    pub fn max_get_redirects(mut self, max_get_redirects: usize) -> Self {
        self.max_get_redirects = max_get_redirects;
        self
    }

    /// Resolves host names through `policy` ([`PolicyResolver`]), so the addresses the client
    /// connects to are the ones the policy checked: wrap the transport in a
    /// [`PolicyTransport`](super::PolicyTransport) with the same policy to cover IP-literal URLs
    /// too, and close the gap a rebinding name server would otherwise use between the check and
    /// the connection. With a policy the client connects directly, ignoring the environment's
    /// proxies (`HTTP_PROXY`, ...): through a proxy it would check the proxy's address, and the
    /// proxy would reach the webhook unchecked.
    #[must_use]
    pub fn address_policy(mut self, policy: impl Into<Arc<AddressPolicy>>) -> Self {
        self.policy = Some(policy.into());
        self
    }

    /// Builds the transport.
    ///
    /// # Errors
    ///
    /// [`TransportError::Build`] when the TLS backend cannot be set up.
    pub fn build(self) -> Result<ReqwestTransport, TransportError> {
        Ok(ReqwestTransport {
            proxied: self.clients(Proxies::FromEnvironment)?,
            loopback: Arc::default(),
            settings: Arc::new(self),
        })
    }

    fn clients(&self, proxies: Proxies) -> Result<Clients, TransportError> {
        let policy = self.policy.as_ref();
        let no_redirects = client(redirect::Policy::none(), policy, proxies)?;
        let get_with_redirects = match self.max_get_redirects {
            0 => None,
            max => Some(client(
                redirect::Policy::custom(move |attempt| {
                    // `previous` starts with the original URL, so it holds one more entry than
                    // the number of redirects followed so far.
                    let leaves_origin = attempt
                        .previous()
                        .first()
                        .is_some_and(|first| first.origin() != attempt.url().origin());
                    if leaves_origin || attempt.previous().len() > max {
                        attempt.stop()
                    } else {
                        attempt.follow()
                    }
                }),
                policy,
                proxies,
            )?),
        };
        Ok(Clients {
            no_redirects,
            get_with_redirects,
        })
    }
}

/// Whether a client goes through the environment's proxies.
#[derive(Clone, Copy)]
enum Proxies {
    FromEnvironment,
    None,
}

fn client(
    redirects: redirect::Policy,
    addresses: Option<&Arc<AddressPolicy>>,
    proxies: Proxies,
) -> Result<reqwest::Client, TransportError> {
    let mut builder = reqwest::Client::builder()
        .redirect(redirects)
        // A Referer would hand the previous URL, query string included, to the next host.
        .referer(false)
        .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")));
    if let Some(policy) = addresses {
        builder = builder.dns_resolver(Arc::new(PolicyResolver::new(Arc::clone(policy))));
    }
    // Through a proxy a policy's resolver would check the proxy's address, not the webhook's.
    if addresses.is_some() || matches!(proxies, Proxies::None) {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|error| TransportError::Build {
        source: std::sync::Arc::new(error),
    })
}

#[async_trait]
impl HttpTransport for ReqwestTransport {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        if !matches!(request.uri().scheme_str(), Some("http" | "https"))
            || request.uri().host().is_none()
        {
            return Err(TransportError::invalid_request(
                RequestTarget::of(&request),
                "the URI must be an absolute http or https URL",
            ));
        }
        // Cheap clones (no allocation for standard methods; the URI's parts are shared), from
        // which the printable target is built only should the request fail.
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let target = || RequestTarget::new(method.clone(), &uri);
        let options = request
            .extensions()
            .get::<RequestOptions>()
            .copied()
            .unwrap_or(self.settings.defaults);
        // With a policy every client goes direct already.
        let clients = if self.settings.policy.is_none() && is_loopback(request.uri()) {
            self.loopback
                .get_or_init(|| self.settings.clients(Proxies::None))
                .as_ref()
                .map_err(Clone::clone)?
        } else {
            &self.proxied
        };
        let client = match (&clients.get_with_redirects, request.method()) {
            (Some(client), &Method::GET) => client,
            _ => &clients.no_redirects,
        };
        let mut outgoing = reqwest::Request::try_from(request)
            .map_err(|_| TransportError::invalid_request(target(), "the URI is not a valid URL"))?;
        *outgoing.timeout_mut() = Some(options.timeout);

        let mut incoming = client
            .execute(outgoing)
            .await
            .map_err(|e| map_error(e, target(), options.timeout))?;
        let status = incoming.status();
        // The head has arrived: a failure now loses the body but not the status, which the
        // caller may still act on (a 2xx was accepted whatever became of its body).
        let (body, truncated) = read_limited(&mut incoming, options.max_response_bytes)
            .await
            .map_err(|e| {
                TransportError::response_body(
                    target(),
                    status,
                    incoming.headers(),
                    map_error(e, target(), options.timeout),
                )
            })?;

        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.version_mut() = incoming.version();
        *response.headers_mut() = std::mem::take(incoming.headers_mut());
        if truncated {
            response.extensions_mut().insert(BodyTruncated);
        }
        Ok(response)
    }

    fn default_options(&self) -> Option<RequestOptions> {
        Some(self.settings.defaults)
    }
}

/// How much of a body's announced length is set aside before any of it arrives: the
/// `Content-Length` is the peer's word, and a hostile one would have a generous limit
/// allocated in full at once (or the process aborted, for more than memory holds). Past it the
/// buffer grows with what actually arrives.
const PREALLOCATED_BODY: usize = 64 * 1024;

/// Reads at most `limit` body bytes; `true` when more was on offer.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<(Bytes, bool), reqwest::Error> {
    let expected = response
        .content_length()
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(0);
    let mut body = BytesMut::with_capacity(expected.min(limit).min(PREALLOCATED_BODY));
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
}

fn map_error(error: reqwest::Error, target: RequestTarget, timeout: Duration) -> TransportError {
    // reqwest's message quotes the full URL, query string included.
    let error = error.without_url();
    if let Some(violation) = policy_violation(&error) {
        // Final, as `PolicyTransport`'s refusal is: the next lookup is refused the same way.
        TransportError::invalid_request(target, violation.to_string())
    } else if error.is_timeout() {
        TransportError::timeout(target, timeout)
    } else if error.is_connect() {
        TransportError::connect(target, error)
    } else if error.is_builder() {
        TransportError::invalid_request(target, "the HTTP client refused to build it")
    } else if is_disconnect(&error) {
        TransportError::disconnected(target, error)
    } else {
        TransportError::io(target, error)
    }
}

/// The address policy's refusal that `error` comes from: the resolver refused what a name
/// resolved to.
fn policy_violation(error: &reqwest::Error) -> Option<&PolicyViolation> {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(err) = source {
        if let Some(violation) = err.downcast_ref::<PolicyViolation>() {
            return Some(violation);
        }
        source = err.source();
    }
    None
}

/// Whether `error` comes from a connection that broke under the exchange: hyper saw it close
/// before a message was complete, or the connection task went away, or the socket was reset,
/// aborted or ended early ([`is_broken_connection`], whether an `io::Error` in the chain or one
/// an `h2::Error` holds says so), or an HTTP/2 server gave the stream up
/// ([`is_abandoned_stream`]). Malformed answers and other failures are not.
fn is_disconnect(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(err) = source {
        // An `h2::Error` does not give its `io::Error` as its source, and hyper passes a body's
        // h2 error on as it is: a connection lost under an HTTP/2 body is only seen here.
        if let Some(h2) = err.downcast_ref::<h2::Error>()
            && (is_abandoned_stream(h2) || h2.get_io().is_some_and(is_broken_connection))
        {
            return true;
        }
        if let Some(hyper) = err.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled())
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && is_broken_connection(io)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether `error` says the connection was reset, aborted or closed under the exchange. h2
/// reports a connection that closed between frames, which ends every open stream, as a broken
/// pipe.
fn is_broken_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// Whether an HTTP/2 server gave the stream up in a way a retry may get past, as PROTOCOL.md
/// retries a connection error: refused it unprocessed (`REFUSED_STREAM`), went away without
/// answering it (`GOAWAY` with `NO_ERROR`, as in a graceful restart), cancelled it, failed
/// inside (`INTERNAL_ERROR`, a 5xx's counterpart) or asked the client to slow down
/// (`ENHANCE_YOUR_CALM`, a 429's). The other codes say the exchange itself was malformed or
/// cannot work (a protocol, flow-control or framing error, HTTP/1.1 required), which a retry
/// repeats.
fn is_abandoned_stream(error: &h2::Error) -> bool {
    use h2::Reason;
    error.is_remote()
        && matches!(
            error.reason(),
            Some(
                Reason::REFUSED_STREAM
                    | Reason::NO_ERROR
                    | Reason::CANCEL
                    | Reason::INTERNAL_ERROR
                    | Reason::ENHANCE_YOUR_CALM
            )
        )
}

#[cfg(test)]
mod tests {
    use http::Uri;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;
    use crate::transport::RequestTarget;

    /// How the HTTP/2 server below treats each stream.
    #[derive(Clone, Copy)]
    enum Server {
        Resets(h2::Reason),
        /// Goes away (`GOAWAY`, `NO_ERROR`) before answering anything.
        GoesAway,
    }

    /// An HTTP/2 server on loopback, without TLS, that never answers a stream.
    async fn serve(server: Server) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(socket).await else {
                        return;
                    };
                    if let Server::GoesAway = server {
                        connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                    }
                    while let Some(Ok((_request, mut respond))) = connection.accept().await {
                        if let Server::Resets(reason) = server {
                            respond.send_reset(reason);
                        }
                    }
                });
            }
        });
        format!("http://{address}/hook")
    }

    /// What the transport makes of the error a real reqwest client, speaking HTTP/2 as it does
    /// with a server that offers it over TLS, gets from `server`. reqwest itself sends a
    /// refused stream, and one a server going away left unanswered, twice more at once before
    /// it gives up; this server treats every attempt alike.
    async fn failure(server: Server) -> TransportError {
        let url = serve(server).await;
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let error = client.post(&url).body("{}").send().await.unwrap_err();
        let target = RequestTarget::new(Method::POST, &url.parse::<Uri>().unwrap());
        map_error(error, target, Duration::from_secs(10))
    }

    #[tokio::test]
    async fn an_http2_stream_the_server_gave_up_is_a_retryable_disconnect() {
        for server in [
            Server::Resets(h2::Reason::REFUSED_STREAM),
            Server::Resets(h2::Reason::NO_ERROR),
            Server::Resets(h2::Reason::CANCEL),
            Server::Resets(h2::Reason::INTERNAL_ERROR),
            Server::Resets(h2::Reason::ENHANCE_YOUR_CALM),
            Server::GoesAway,
        ] {
            let error = failure(server).await;
            assert!(
                matches!(error, TransportError::Disconnected { .. }) && error.is_retryable(),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn an_http2_stream_reset_as_malformed_is_not_retried() {
        for reason in [h2::Reason::PROTOCOL_ERROR, h2::Reason::HTTP_1_1_REQUIRED] {
            let error = failure(Server::Resets(reason)).await;
            assert!(
                matches!(error, TransportError::Io { .. }) && !error.is_retryable(),
                "{error}"
            );
        }
    }

    /// How the HTTP/2 server below ends a stream it has answered with a 200 and part of a body.
    #[derive(Clone, Copy, Debug)]
    enum Ending {
        /// Drops the connection without a frame, as a crashed or killed server does.
        Drops,
        /// Sends `GOAWAY` with the reason, which leaves the answered stream alone, and closes
        /// the connection.
        GoesAway(h2::Reason),
        /// Resets the stream with the reason.
        Resets(h2::Reason),
    }

    /// An HTTP/2 server on loopback, without TLS, that answers one stream with a 200 and part
    /// of a body, then ends it as `ending` says once told to: the signal makes sure the client
    /// has the head and the part first, so the failure is the body's.
    async fn serve_part(ending: Ending) -> (String, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (end, ended) = oneshot::channel();
        tokio::spawn(async move {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut connection) = h2::server::handshake(socket).await else {
                return;
            };
            let Some(Ok((_request, mut respond))) = connection.accept().await else {
                return;
            };
            let mut body = respond
                .send_response(http::Response::new(()), false)
                .unwrap();
            body.send_data(Bytes::from_static(b"{\"ok\":"), false)
                .unwrap();
            // Frames go out only while the connection is driven.
            tokio::select! {
                _ = ended => {}
                _ = connection.accept() => return,
            }
            match ending {
                // Dropped undriven, the connection sends nothing more and closes its socket.
                Ending::Drops => return,
                Ending::GoesAway(reason) => connection.abrupt_shutdown(reason),
                Ending::Resets(reason) => body.send_reset(reason),
            }
            while connection.accept().await.is_some() {}
        });
        (format!("http://{address}/hook"), end)
    }

    /// What the transport makes of the error a real reqwest client speaking HTTP/2 gets while
    /// reading the body of a 200 that the server ends as `ending` says, read as
    /// [`ReqwestTransport::send`] reads it.
    async fn body_failure(ending: Ending) -> TransportError {
        let (url, end) = serve_part(ending).await;
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut response = client.post(&url).body("{}").send().await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert!(response.chunk().await.unwrap().is_some(), "{ending:?}");
        end.send(()).unwrap();
        let error = read_limited(&mut response, 64 * 1024).await.unwrap_err();
        let target = RequestTarget::new(Method::POST, &url.parse::<Uri>().unwrap());
        map_error(error, target, Duration::from_secs(10))
    }

    /// As over HTTP/1.1 (`tests/transport_reqwest.rs`,
    /// `a_body_cut_short_keeps_the_status_and_is_a_retryable_disconnect`).
    #[tokio::test]
    async fn an_http2_body_cut_off_with_its_connection_is_a_retryable_disconnect() {
        for ending in [
            Ending::Drops,
            Ending::GoesAway(h2::Reason::NO_ERROR),
            Ending::GoesAway(h2::Reason::INTERNAL_ERROR),
        ] {
            let error = body_failure(ending).await;
            assert!(
                matches!(error, TransportError::Disconnected { .. }) && error.is_retryable(),
                "{ending:?}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_http2_body_whose_stream_the_server_gave_up_is_a_retryable_disconnect() {
        for reason in [
            h2::Reason::CANCEL,
            h2::Reason::INTERNAL_ERROR,
            h2::Reason::REFUSED_STREAM,
        ] {
            let error = body_failure(Ending::Resets(reason)).await;
            assert!(
                matches!(error, TransportError::Disconnected { .. }) && error.is_retryable(),
                "{reason:?}: {error:?}"
            );
        }
        let error = body_failure(Ending::Resets(h2::Reason::PROTOCOL_ERROR)).await;
        assert!(
            matches!(error, TransportError::Io { .. }) && !error.is_retryable(),
            "{error:?}"
        );
    }
}
