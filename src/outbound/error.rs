use crate::secrets::SecretError;
use crate::template::RenderError;
use crate::transport::TransportError;

/// Why the outbound layer could not set up or perform a webhook call.
///
/// A failed call is reported to the core as a [`CallResult`](crate::core::CallResult) whose
/// reason is one of these messages; none of them ever carries a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// The public base URL given to the builder cannot prefix callback URIs.
    #[error(
        "the public base URL cannot be used for callback URIs: {reason}; give the absolute \
         http(s) URL at which this orchestrator is reachable, e.g. https://hookgate.example.com"
    )]
    InvalidBaseUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The builder was given a request timeout of zero, which would time every call out
    /// before it is sent.
    #[error(
        "the request timeout is zero, which times every call out before it is sent; give one \
         above zero (the default is 30 s)"
    )]
    ZeroRequestTimeout,
    /// The call names a webhook or environment its deployment's plan does not have.
    #[error(
        "the call does not belong to this deployment: its {what} is not in the plan; prepare \
         calls with the deployment that produced them"
    )]
    NotInPlan {
        /// `webhook` or `environment`.
        what: &'static str,
    },
    /// A secret the templates name could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The request could not be rendered from its templates.
    #[error("the webhook's request could not be rendered: {0}")]
    Render(#[from] RenderError),
    /// The request could not be signed.
    #[cfg(feature = "signing")]
    #[error("the webhook's request could not be signed: {0}")]
    Signing(#[from] crate::signing::SignatureError),
    /// No transport for the webhook's network agent, or the exchange failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}
