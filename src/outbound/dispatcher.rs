use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::OutboundError;
use crate::clock::{Clock, SystemClock};
use crate::config::Plan;
use crate::secrets::DynSecretSource;
use crate::transport::{RequestOptions, TransportRegistry};

#[cfg(feature = "signing")]
use super::signers::Signers;

/// Performs [`Action::CallWebhook`](crate::core::Action::CallWebhook): renders a webhook's
/// request, sends it through the right transport and says how it ended as a
/// [`CallResult`](crate::core::CallResult).
///
/// A call is done in two halves so that a host never holds a deployment's lock across an
/// `await`: [`prepare`](Self::prepare) copies what the request needs out of the
/// [`Deployment`](crate::core::Deployment) (synchronously, under the lock), and
/// [`send`](Self::send) does the IO from that copy alone. Clone it cheaply or share it in an
/// `Arc`.
#[derive(Clone)]
pub struct Dispatcher {
    pub(super) transports: TransportRegistry,
    pub(super) secrets: DynSecretSource,
    /// The public base URL without a trailing `/`, so `/callbacks/<id>` can be appended.
    pub(super) callback_base: String,
    pub(super) request_timeout: Duration,
    pub(super) max_response_bytes: usize,
    pub(super) max_request_bytes: usize,
    pub(super) clock: Arc<dyn Clock>,
    #[cfg(feature = "signing")]
    pub(super) signers: Signers,
}

impl Dispatcher {
    /// A builder. `public_base_url` is where this orchestrator's callback endpoint is reached
    /// from outside: a gate's `{{armory.callbackUri}}` is `<public_base_url>/callbacks/<id>`,
    /// a path prefix in the base URL included (`https://ci.example/hookgate` gives
    /// `https://ci.example/hookgate/callbacks/<id>`).
    pub fn builder(
        transports: TransportRegistry,
        secrets: DynSecretSource,
        public_base_url: impl Into<String>,
    ) -> DispatcherBuilder {
        DispatcherBuilder {
            transports,
            secrets,
            public_base_url: public_base_url.into(),
            options: RequestOptions::default(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            clock: Arc::new(SystemClock),
            #[cfg(feature = "signing")]
            signers: Signers::default(),
        }
    }

    /// Checks that every remote network agent the plan's webhooks use has a transport, so a host
    /// can refuse to start a deployment instead of failing a gate halfway through.
    ///
    /// # Errors
    ///
    /// [`OutboundError::Transport`] holding
    /// [`TransportError::UnknownAgents`](crate::transport::TransportError::UnknownAgents),
    /// which lists every agent without a transport.
    pub fn check_agents(&self, plan: &Plan) -> Result<(), OutboundError> {
        Ok(self.transports.check_agents(plan.remote_agents())?)
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Dispatcher");
        d.field("transports", &self.transports)
            .field("callback_base", &self.callback_base)
            .field("request_timeout", &self.request_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_request_bytes", &self.max_request_bytes);
        #[cfg(feature = "signing")]
        d.field("signers", &self.signers);
        d.finish_non_exhaustive()
    }
}

/// Configures a [`Dispatcher`]; made by [`Dispatcher::builder`].
pub struct DispatcherBuilder {
    transports: TransportRegistry,
    secrets: DynSecretSource,
    public_base_url: String,
    options: RequestOptions,
    max_request_bytes: usize,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "signing")]
    signers: Signers,
}

/// The default of [`DispatcherBuilder::max_request_bytes`].
const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024;

impl DispatcherBuilder {
    /// The request timeout of webhooks without `requestTimeout` (default 30 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// How many bytes of a response body are read (default 64 KiB); the first KiB of a failed
    /// call's body goes into its reason.
    #[must_use]
    pub fn max_response_bytes(mut self, max_response_bytes: usize) -> Self {
        self.options.max_response_bytes = max_response_bytes;
        self
    }

    /// How large a rendered request (URI, header values and body together) may be (default
    /// 1 MiB). A request that renders larger fails its gate with
    /// [`RenderError::TooLarge`](crate::template::RenderError::TooLarge) instead of being
    /// sent: context values given at start could otherwise make hookgate build and send
    /// requests of any size.
    #[must_use]
    pub fn max_request_bytes(mut self, max_request_bytes: usize) -> Self {
        self.max_request_bytes = max_request_bytes;
        self
    }

    /// Where signing timestamps and `Retry-After` dates are measured from (default: the system
    /// clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Signs every call whose webhook has no signer of its own (PROTOCOL.md §8).
    ///
    /// Whoever writes a deployment file chooses its webhooks' URLs and bodies, so they can have
    /// this key sign a body of theirs and send it to a server of theirs, then replay it to any
    /// receiver that trusts the key. Where files come from people who must not hold such
    /// signatures, give each receiver its own key with
    /// [`origin_signer`](Self::origin_signer) instead.
    #[cfg(feature = "signing")]
    #[must_use]
    pub fn signer(mut self, signer: crate::signing::Signer) -> Self {
        self.signers.global = Some(signer);
        self
    }

    /// Signs the calls of the webhook named `webhook` with `signer` instead of the global one.
    ///
    /// The name is the deployment file's, as is the URL: a file naming a webhook after another
    /// team's gets that team's key to sign its calls, wherever they go (see
    /// [`signer`](Self::signer)); [`origin_signer`](Self::origin_signer) binds a key to where
    /// calls go instead.
    #[cfg(feature = "signing")]
    #[must_use]
    pub fn webhook_signer(
        mut self,
        webhook: impl Into<String>,
        signer: crate::signing::Signer,
    ) -> Self {
        self.signers.by_webhook.insert(webhook.into(), signer);
        self
    }

    /// Signs every call sent directly to `origin` (the scheme, host and port of `origin`; its
    /// path is not looked at) with `signer`, whichever webhook makes it, ahead of the webhook's
    /// own signer and the global one, and never signs a call elsewhere with it: a deployment
    /// file cannot have the key sign a request that goes anywhere but `origin`. Calls sent
    /// through an agent (`networkMode`/`agentIdentifier`) are not signed with it, since the
    /// agent's network decides where they go and sees them on the way; they get the webhook's
    /// own signer or the global one, if any. A URL without a host names no origin that a call
    /// can go to, and signs nothing.
    #[cfg(feature = "signing")]
    #[must_use]
    pub fn origin_signer(mut self, origin: &url::Url, signer: crate::signing::Signer) -> Self {
        self.signers.by_origin.insert(origin.origin(), signer);
        self
    }

    /// Builds the dispatcher.
    ///
    /// # Errors
    ///
    /// [`OutboundError::InvalidBaseUrl`] when the public base URL is not an absolute http(s)
    /// URL, or carries credentials, a query or a fragment (which would end up in the middle of
    /// every callback URI); [`OutboundError::ZeroRequestTimeout`] for a zero
    /// [`request_timeout`](Self::request_timeout).
    pub fn build(self) -> Result<Dispatcher, OutboundError> {
        if self.options.timeout.is_zero() {
            return Err(OutboundError::ZeroRequestTimeout);
        }
        Ok(Dispatcher {
            transports: self.transports,
            secrets: self.secrets,
            callback_base: callback_base(&self.public_base_url)?,
            request_timeout: self.options.timeout,
            max_response_bytes: self.options.max_response_bytes,
            max_request_bytes: self.max_request_bytes,
            clock: self.clock,
            #[cfg(feature = "signing")]
            signers: self.signers,
        })
    }
}

impl fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("transports", &self.transports)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn callback_base(text: &str) -> Result<String, OutboundError> {
    let invalid = |reason| OutboundError::InvalidBaseUrl { reason };
    let url = Url::parse(text).map_err(|_| invalid("it is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid("it must be an http or https URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Every external system would receive them inside the callback URI.
        return Err(invalid("it must not carry a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_keep_their_path_prefix_without_trailing_slash() {
        let ok = |s: &str| callback_base(s).unwrap();
        assert_eq!(ok("https://hg.example.com"), "https://hg.example.com");
        assert_eq!(ok("https://hg.example.com/"), "https://hg.example.com");
        assert_eq!(
            ok("http://h:8080/ci/hookgate/"),
            "http://h:8080/ci/hookgate"
        );
    }

    #[test]
    fn a_zero_request_timeout_is_refused() {
        let builder = || {
            let accept = |_: http::Request<bytes::Bytes>| async {
                Ok::<_, crate::transport::TransportError>(http::Response::new(bytes::Bytes::new()))
            };
            Dispatcher::builder(
                TransportRegistry::new(accept),
                Arc::new(crate::secrets::MemorySecrets::new()),
                "https://hg.example.com",
            )
        };
        let refused = builder().request_timeout(Duration::ZERO).build();
        assert!(matches!(refused, Err(OutboundError::ZeroRequestTimeout)));
        let built = builder().request_timeout(Duration::from_millis(1)).build();
        assert!(built.is_ok());
    }

    #[test]
    fn unusable_base_urls_are_refused() {
        for bad in [
            "",
            "hg.example.com",
            "ftp://hg.example.com",
            "https://u:p@hg.example.com",
            "https://hg.example.com/?x=1",
            "https://hg.example.com/#x",
        ] {
            assert!(
                matches!(
                    callback_base(bad),
                    Err(OutboundError::InvalidBaseUrl { .. })
                ),
                "{bad}"
            );
        }
    }
}
