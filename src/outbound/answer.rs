//! Turning what came back from the server into a [`CallResult`] (PROTOCOL.md §4).

use std::error::Error as StdError;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::Response;

use super::OutboundError;
use super::redact::Redactor;
use crate::core::{CallFailure, CallResult};
use crate::retry_after::retry_after;
use crate::secrets::SecretError;
use crate::transport::BodyTruncated;

/// How much of a failed answer's body goes into the reason: enough for an error message,
/// little enough for the deployment's history.
const EXCERPT_BYTES: usize = 1024;

/// A 2xx is sent; anything else fails with `HTTP <code>: <start of the body>`.
pub(super) fn from_response(
    response: &Response<Bytes>,
    redactor: &Redactor<'_>,
    now: DateTime<Utc>,
) -> CallResult {
    let status = response.status().as_u16();
    let result = CallResult::from_status(status, retry_after(response.headers(), now));
    let CallResult::Failed(mut failure) = result else {
        return result;
    };
    let truncated = response.extensions().get::<BodyTruncated>().is_some();
    let excerpt = excerpt(response.body(), truncated, redactor);
    if !excerpt.is_empty() {
        failure.reason = format!("{}: {excerpt}", failure.reason);
    }
    CallResult::Failed(failure)
}

/// Transport failures that another attempt may fix (connection refused, closed or reset, a
/// timeout, an unreachable secret store) are transient; the rest (a template that cannot
/// render, a missing secret, an agent without transport) would fail the same way every time.
///
/// An answer whose body could not be read is judged by its status: a 2xx is sent, since any
/// 2xx counts as sent (the body is never needed then), and other statuses keep their classes
/// and their `Retry-After`.
pub(super) fn from_error(
    error: &OutboundError,
    redactor: &Redactor<'_>,
    now: DateTime<Utc>,
) -> CallResult {
    if let OutboundError::Transport(e) = error
        && let Some(answer) = e.bodiless_answer()
    {
        // The answer's body is empty, so the reason gains no excerpt, only what broke off.
        return match from_response(&answer, redactor, now) {
            CallResult::Failed(mut failure) => {
                failure.reason =
                    format!("{} ({})", failure.reason, redactor.redact(&describe(error)));
                CallResult::Failed(failure)
            }
            sent => sent,
        };
    }
    let retryable = match error {
        OutboundError::Transport(e) => e.is_retryable(),
        OutboundError::Secret(SecretError::Backend { .. }) => true,
        _ => false,
    };
    let reason = redactor.redact(&describe(error));
    CallResult::Failed(if retryable {
        CallFailure::transient(reason)
    } else {
        CallFailure::permanent(reason)
    })
}

/// The error's message, plus its root cause when the message does not already say it
/// (`could not connect ...` gains `Connection refused`).
fn describe(error: &OutboundError) -> String {
    let message = error.to_string();
    let mut root: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(next) = root.and_then(StdError::source) {
        root = Some(next);
    }
    match root.map(ToString::to_string) {
        Some(cause) if !message.contains(&cause) => format!("{message} (cause: {cause})"),
        _ => message,
    }
}

/// The start of a body for people: lossy UTF-8, secrets redacted, line breaks and tabs as
/// spaces, other control characters dropped (they could forge log lines or garble terminals),
/// at most [`EXCERPT_BYTES`]. Secrets are redacted in the text as it came and again once it is
/// cleaned: a secret holding a line break is found only in the first, and one that cleaning
/// puts together (`pass\nword` for `pass word`) only in the second; the start of one that a
/// truncated body ends with is cut in both.
fn excerpt(body: &[u8], truncated: bool, redactor: &Redactor<'_>) -> String {
    let mut raw = String::from_utf8_lossy(body).into_owned();
    if truncated {
        // A body cut inside a character ends in a replacement character, which would hide a
        // secret's partial tail from `cut_partial_tail`.
        raw.truncate(raw.trim_end_matches(char::REPLACEMENT_CHARACTER).len());
    }
    let mut text = redactor.redact(&raw);
    if truncated {
        redactor.cut_partial_tail(&mut text);
    }
    let clean: String = text
        .chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    let mut text = redactor.redact(&clean);
    if truncated {
        // Cleaning too may put a secret's start together (`pass\nwo` for `pass word`).
        redactor.cut_partial_tail(&mut text);
    }
    let mut end = text.len().min(EXCERPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use super::*;
    use crate::Secret;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 0).unwrap()
    }

    #[test]
    fn excerpts_are_clean_short_and_redacted() {
        let secrets: BTreeMap<String, Secret> = [("t".to_owned(), Secret::new("s3cr3t"))].into();
        let r = Redactor::new(&secrets, Vec::new());
        assert_eq!(
            excerpt(b"bad\x1b[31m token s3cr3t\r\nline\xff", false, &r),
            "bad[31m token [redacted]  line\u{fffd}"
        );
        let long = "é".repeat(EXCERPT_BYTES);
        assert_eq!(excerpt(long.as_bytes(), false, &r).len(), EXCERPT_BYTES);
        assert_eq!(excerpt(b"echo s3c", true, &r), "echo");
        let multiline: BTreeMap<String, Secret> = [("t".to_owned(), Secret::new("tok\nén"))].into();
        let r = Redactor::new(&multiline, Vec::new());
        assert_eq!(
            excerpt(b"got tok\n\xc3\xa9n ok", false, &r),
            "got [redacted] ok"
        );
        assert_eq!(
            excerpt(b"got tok\n\xc3", true, &r),
            "got",
            "cut inside a character"
        );
        let spaced: BTreeMap<String, Secret> = [("t".to_owned(), Secret::new("pass word"))].into();
        let r = Redactor::new(&spaced, Vec::new());
        assert_eq!(excerpt(b"got pass\nword", false, &r), "got [redacted]");
        assert_eq!(
            excerpt(b"got pass\nwo", true, &r),
            "got",
            "a start cleaning puts together"
        );
    }

    /// A secret store that failed may answer next time; a secret missing or unusable would
    /// fail the same way every time.
    #[test]
    fn only_a_failed_secret_store_is_retried() {
        let secrets = BTreeMap::new();
        let r = Redactor::new(&secrets, Vec::new());
        let retryable = |error: SecretError| match from_error(&error.into(), &r, now()) {
            CallResult::Failed(failure) => failure.retryable,
            other => panic!("{other:?}"),
        };
        assert!(retryable(SecretError::backend("t", "vault answered 503")));
        assert!(!retryable(SecretError::NotFound {
            name: "t".into(),
            location: "memory".into(),
        }));
        assert!(!retryable(SecretError::Unusable {
            name: "t".into(),
            location: "environment variable T".into(),
            reason: "its value is not valid UTF-8",
        }));
    }

    #[test]
    fn statuses_keep_the_protocol_classes_and_gain_the_body() {
        let secrets = BTreeMap::new();
        let r = Redactor::new(&secrets, Vec::new());
        let answer = |status: u16, body: &'static str| {
            let mut response = Response::new(Bytes::from_static(body.as_bytes()));
            *response.status_mut() = status.try_into().unwrap();
            from_response(&response, &r, now())
        };
        assert_eq!(answer(204, ""), CallResult::Sent { status: 204 });
        let CallResult::Failed(f) = answer(503, "  down for maintenance\n") else {
            panic!()
        };
        assert!(f.retryable);
        assert_eq!(f.reason, "HTTP 503: down for maintenance");
        let CallResult::Failed(f) = answer(404, "") else {
            panic!()
        };
        assert!(!f.retryable);
        assert_eq!(f.reason, "HTTP 404");
    }
}
