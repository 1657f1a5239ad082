//! The external-process side: find the callback URI, get a token, call back (PROTOCOL.md §6, §7).
//!
//! - [`ReceivedRequest`] finds the callback URI in what the webhook call delivered (always
//!   built, pure).
//! - [`TokenSource`] hands out bearer tokens; [`ClientCredentials`] (feature `receiver`) gets
//!   them with OAuth2 client credentials, as Armory does.
//! - [`CallbackClient`] (feature `receiver`) reports the outcome, retrying what is worth
//!   retrying.
//!
//! ```no_run
//! # #[cfg(all(feature = "receiver", feature = "reqwest"))]
//! # async fn handle(
//! #     webhook: http::Request<bytes::Bytes>,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use hookgate::receiver::{Callback, CallbackClient, ClientCredentials, ReceivedRequest};
//! use hookgate::transport::ReqwestTransport;
//!
//! let callback_uri = ReceivedRequest::from_http(&webhook).callback_uri()?;
//! // ... answer the webhook with 2xx, then do the work ...
//! let transport = Arc::new(ReqwestTransport::new()?);
//! let tokens = ClientCredentials::builder("client-id", "client-secret").build(transport.clone())?;
//! CallbackClient::new(transport, tokens).send(&callback_uri, &Callback::success()).await?;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "receiver")]
mod backoff;
#[cfg(feature = "receiver")]
mod callback;
#[cfg(feature = "receiver")]
mod callback_client;
#[cfg(feature = "receiver")]
mod callback_outcome;
mod callback_uri;
#[cfg(feature = "receiver")]
mod client_credentials;
mod token;

#[cfg(feature = "receiver")]
pub use backoff::Backoff;
#[cfg(feature = "receiver")]
pub use callback::Callback;
#[cfg(feature = "receiver")]
pub use callback_client::CallbackClient;
#[cfg(feature = "receiver")]
pub use callback_outcome::{CallbackError, CallbackOutcome};
pub use callback_uri::{CALLBACK_URI_HEADER, CALLBACK_URI_KEYS, CallbackUriError, ReceivedRequest};
#[cfg(feature = "receiver")]
pub use client_credentials::{
    ClientCredentials, ClientCredentialsBuilder, DEFAULT_AUDIENCE, DEFAULT_TOKEN_URL,
};
pub use token::{StaticToken, TokenError, TokenSource};

/// Text from a server, fit for an error message: each of `secrets` masked in the spellings a
/// server may echo it back in (as sent in a form body, JSON-escaped, percent-encoded), then
/// shown as [`untrusted_text`] shows it.
#[cfg(feature = "receiver")]
fn server_text(text: &str, secrets: &[&str]) -> String {
    const MAX_CHARS: usize = 500;
    let form_encoded = secrets
        .iter()
        .map(|secret| url::form_urlencoded::byte_serialize(secret.as_bytes()).collect())
        .collect();
    // Masked before escaping, which would change the spelling of a secret holding a control
    // character and let it through.
    let masked =
        crate::outbound::redact::Redactor::of_values(secrets.iter().copied(), form_encoded)
            .redact(text);
    untrusted_text(&masked, MAX_CHARS)
}

/// Untrusted text as an error message may show it: its first `max_chars` characters (then
/// `…`), with what [`char::escape_debug`] escapes (control characters such as newlines and
/// ANSI escapes, invisible ones such as bidirectional overrides) escaped, so that it can
/// neither bloat nor forge log lines. Quotes and backslashes are kept: they break no line, and
/// servers quote JSON in their messages.
fn untrusted_text(text: &str, max_chars: usize) -> String {
    let mut shown = String::new();
    for c in text.chars().take(max_chars) {
        match c {
            '"' | '\'' | '\\' => shown.push(c),
            _ => shown.extend(c.escape_debug()),
        }
    }
    if text.chars().nth(max_chars).is_some() {
        shown.push('…');
    }
    shown
}
