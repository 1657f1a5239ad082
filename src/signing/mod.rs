//! Standard Webhooks signing of outbound calls and verification for receivers (PROTOCOL.md §8).
//!
//! A signed request carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one `v1,` entry per
//! secret, space-separated, so a secret can be rotated without downtime: sign with the new and
//! the old secret while receivers move over, then drop the old one.
//!
//! ```
//! use bytes::Bytes;
//! use chrono::DateTime;
//! use hookgate::signing::{Signer, SigningSecret, Verifier};
//! let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
//! let mut request = http::Request::new(Bytes::from_static(br#"{"success": true}"#));
//! Signer::new(secret.clone()).sign_request("msg_1", 1_700_000_000, &mut request).unwrap();
//!
//! let now = DateTime::from_timestamp(1_700_000_060, 0).unwrap();
//! let verifier = Verifier::new(secret);
//! assert!(verifier.verify_at(request.headers(), request.body(), now).is_ok());
//! assert!(verifier.verify_at(request.headers(), b"tampered", now).is_err());
//! ```

mod secret;
mod signer;
mod verifier;

pub use secret::SigningSecret;
pub use signer::{SignatureHeaders, Signer};
pub use verifier::Verifier;

/// Refuses a message id with a dot, for signer and verifier alike: the signed text is
/// `id.timestamp.body`, so with a dot in the id one signed message could be split into another
/// id, timestamp and body that the same signature covers (the spec forbids it).
fn refuse_dotted(id: &str) -> Result<(), SignatureError> {
    // Senders' ids are a few dozen characters, so this many still tells one apart.
    const MAX_ID_CHARS: usize = 64;
    if id.contains('.') {
        return Err(SignatureError::InvalidMessageId {
            // A received id is checked before its signature, so anyone may have written it: it
            // must neither bloat nor forge the log line of whoever logs the error.
            id: crate::receiver::untrusted_text(id, MAX_ID_CHARS),
            reason: "it contains `.`",
        });
    }
    Ok(())
}

/// The header carrying the message id.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The header carrying the signing time, in seconds since the Unix epoch.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying the space-separated `v1,<signature>` list.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// Why a secret, a signature or a signed request was refused. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signing secret is unusable.
    #[error(
        "invalid signing secret: {reason}; use `whsec_` followed by the base64 of 24 to 64 random bytes"
    )]
    InvalidSecret {
        /// What is wrong with it.
        reason: String,
    },
    /// A message id to sign, or a received `webhook-id`, is not a valid one.
    #[error("message id `{id}` is not a valid Standard Webhooks `webhook-id`: {reason}")]
    InvalidMessageId {
        /// The id; one refused for its `.` (a received `webhook-id` may be) cut to its first 64
        /// characters, then `…`, with control and invisible characters escaped.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A required header is absent (or, for `webhook-id`, empty).
    #[error(
        "the `{name}` header is missing: the request is not a Standard Webhooks signed request"
    )]
    MissingHeader {
        /// The header's name.
        name: &'static str,
    },
    /// A header is present but not visible ASCII text.
    #[error("the `{name}` header is not visible ASCII text")]
    InvalidHeader {
        /// The header's name.
        name: &'static str,
    },
    /// `webhook-timestamp` is not an integer.
    #[error("`webhook-timestamp` is not an integer number of seconds since the Unix epoch")]
    InvalidTimestamp,
    /// `webhook-timestamp` lies further in the past than the tolerance allows.
    #[error(
        "the signature is {age_seconds} s old, beyond the {tolerance_seconds} s tolerance: a replay, or the clocks disagree"
    )]
    TooOld {
        /// How far in the past the timestamp is.
        age_seconds: u64,
        /// The tolerance.
        tolerance_seconds: u64,
    },
    /// `webhook-timestamp` lies further in the future than the tolerance allows.
    #[error(
        "the signature is dated {ahead_seconds} s in the future, beyond the {tolerance_seconds} s tolerance: the clocks disagree"
    )]
    TooNew {
        /// How far in the future the timestamp is.
        ahead_seconds: u64,
        /// The tolerance.
        tolerance_seconds: u64,
    },
    /// No `v1` signature matches any of the verifier's secrets.
    #[error(
        "no `v1` signature in `webhook-signature` matches: check the secret, and verify the body exactly as received (not re-serialized)"
    )]
    NoMatchingSignature,
}
