//! The external-process side: find the callback URI, get a token, call back (PROTOCOL.md §6, §7).
//!
//! - [`ReceivedRequest`] finds the callback URI in what the webhook call delivered (always
//!   built, pure).
//! - [`TokenSource`] hands out bearer tokens; [`ClientCredentials`] (feature `receiver`) gets
//!   them with OAuth2 client credentials, as Armory does.
//! - [`CallbackClient`] (feature `receiver`) reports the outcome, retrying what is worth
//!   retrying.
//!
//! The example below is the whole exchange; `examples/webhook_receiver.rs` is a server doing it
//! with axum. The same webhook call can arrive more than once: the orchestrator retries a
//! call whose answer it did not get, and one restarted while a call was under way sends it
//! again. Every attempt for one gate carries the same `Idempotency-Key` header (and callback
//! URI): a receiver whose work must not run twice keeps the keys it has seen. To test a
//! receiver against a local orchestrator's token endpoint, serve `server::token_endpoint` over
//! an `auth::TokenIssuer` (features `axum` and `issuer`).
//!
//! ```no_run
//! # #[cfg(all(feature = "receiver", feature = "reqwest"))]
//! # async fn handle(
//! #     webhook: http::Request<bytes::Bytes>,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use hookgate::receiver::{
//!     Callback, CallbackClient, CallbackOutcome, ClientCredentials, ReceivedRequest,
//! };
//! use hookgate::transport::ReqwestTransport;
//!
//! let transport = Arc::new(ReqwestTransport::new()?);
//! let tokens = ClientCredentials::builder("client-id", "client-secret").build(transport.clone())?;
//! // Only the orchestrator gets the token: a forged call could name any callback URI.
//! let client = CallbackClient::new(transport, tokens)
//!     .with_allowed_origins(["https://gates.example.com".parse()?]);
//!
//! let callback_uri = ReceivedRequest::from_http(&webhook).callback_uri()?;
//! client.check(&callback_uri)?; // else answer the webhook 400: no callback could reach it
//! // ... answer the webhook with 2xx, then do the work ...
//! match client.send(&callback_uri, &Callback::success()).await {
//!     Ok(CallbackOutcome::Delivered) => {}
//!     Ok(other) => eprintln!("the gate did not take the callback: {other:?}"),
//!     Err(e) if e.is_retryable() => eprintln!("send it again later: {e}"),
//!     Err(e) => eprintln!("the callback cannot be delivered: {e}"),
//! }
//! # Ok(())
//! # }
//! ```
// What the docs above link to that feature `receiver` builds: where it is off, the pages
// docs.rs builds with every feature.
#![cfg_attr(
    feature = "receiver",
    doc = "[`ClientCredentials`]: ClientCredentials\n[`CallbackClient`]: CallbackClient"
)]
#![cfg_attr(
    not(feature = "receiver"),
    doc = "[`ClientCredentials`]: https://docs.rs/hookgate/latest/hookgate/receiver/struct.ClientCredentials.html\n\
           [`CallbackClient`]: https://docs.rs/hookgate/latest/hookgate/receiver/struct.CallbackClient.html"
)]

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

/// The parts of `uri` that may carry a credential on their own and that a server may quote back
/// in an error: its path segments, its query, and each query parameter and value, each of at
/// least [`MIN_HIDDEN_LEN`](crate::outbound::redact::MIN_HIDDEN_LEN) characters.
#[cfg(feature = "receiver")]
fn long_uri_parts(uri: &http::Uri) -> impl Iterator<Item = &str> {
    let query = uri.query().unwrap_or_default();
    let parameters = query.split('&').flat_map(|pair| {
        let value = pair.split_once('=').map(|(_, value)| value);
        std::iter::once(pair).chain(value)
    });
    uri.path()
        .split('/')
        .chain([query])
        .chain(parameters)
        .filter(|part| part.len() >= crate::outbound::redact::MIN_HIDDEN_LEN)
}

/// How many requests an error counts, in words: "1 attempt", "3 attempts".
fn attempt_count(attempts: u32) -> String {
    match attempts {
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    }
}

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
/// `…`), with control characters (newlines, ANSI escapes) and every other character that
/// prints as nothing or moves what follows ([`invisible`](crate::invisible::invisible): format
/// characters such as bidirectional overrides, zero-width characters and tag characters, the
/// line and paragraph separators, Hangul fillers) escaped as [`char::escape_unicode`] writes
/// them, so that it can neither bloat nor forge log lines.
/// Everything else is kept as it is: quotes and backslashes break no line, and combining marks
/// belong to the letters of many languages (which [`char::escape_debug`] would escape).
pub(crate) fn untrusted_text(text: &str, max_chars: usize) -> String {
    let mut shown = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(max_chars) {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if crate::invisible::invisible(c) => shown.extend(c.escape_unicode()),
            c => shown.push(c),
        }
    }
    if chars.next().is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::untrusted_text;

    /// Letters with combining marks (Thai vowels, a decomposed é) are shown as they are; what
    /// could break or disguise a log line is escaped.
    #[test]
    fn only_control_and_invisible_characters_are_escaped() {
        let thai = "ข้อผิดพลาด e\u{301} \"quoted\" \\";
        assert_eq!(untrusted_text(thai, 500), thai);
        assert_eq!(
            untrusted_text("a\nb\r\u{1b}[2J\u{202e}\u{200b}\u{feff}", 500),
            r"a\nb\r\u{1b}[2J\u{202e}\u{200b}\u{feff}"
        );
        assert_eq!(
            untrusted_text("x\u{2028}y\u{2029}\u{061c}\u{2060}\u{180e}", 500),
            r"x\u{2028}y\u{2029}\u{61c}\u{2060}\u{180e}"
        );
        // Tag characters spell text no viewer shows; a soft hyphen and a Hangul filler print
        // as nothing.
        assert_eq!(
            untrusted_text("ok\u{e0041}\u{e007f}\u{ad}\u{3164}", 500),
            r"ok\u{e0041}\u{e007f}\u{ad}\u{3164}"
        );
        assert_eq!(untrusted_text("abcdef", 3), "abc…");
    }
}
