use bytes::Bytes;
use http::Response;
use serde_json::Value;

use crate::{
    Secret,
    receiver::{TokenError, server_text},
};

/// The error of a non-2xx answer: RFC 6749 §5.2 when the body says so, else the status and
/// the start of the body; each of `hidden` masked in its text.
pub(super) fn refusal(response: &Response<Bytes>, attempts: u32, hidden: &[&str]) -> TokenError {
    let status = response.status();
    let unexpected = || unexpected_status(response, attempts, hidden);
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(response.body()) else {
        return unexpected();
    };
    let Some(error) = answer.get("error").and_then(Value::as_str) else {
        return unexpected();
    };
    TokenError::Refused {
        status,
        error: server_text(error, hidden),
        description: answer
            .get("error_description")
            .and_then(Value::as_str)
            .map(|d| server_text(d, hidden)),
    }
}

/// [`TokenError::Status`] for `response`, with the start of its body; each of `hidden` masked.
pub(super) fn unexpected_status(
    response: &Response<Bytes>,
    attempts: u32,
    hidden: &[&str],
) -> TokenError {
    let body = String::from_utf8_lossy(response.body());
    let body = body.trim();
    TokenError::Status {
        status: response.status(),
        attempts,
        body: (!body.is_empty()).then(|| server_text(body, hidden)),
    }
}

/// `n` as a number of seconds: an integer, or a float (`3600.0`, `1e3`), which some servers
/// send, rounded down. One too large for a `u64` is `u64::MAX`, a lifetime as unending as the
/// largest integer's; a negative one is 0, a token to use once and fetch again the next time.
/// An odd lifetime does not refuse a token that works: every callback would fail with it.
fn seconds(n: &serde_json::Number) -> Option<u64> {
    if let Some(seconds) = n.as_u64() {
        return Some(seconds);
    }
    let seconds = n.as_f64()?;
    if seconds < 0.0 || seconds.fract() != 0.0 {
        tracing::warn!(
            expires_in = seconds,
            "the token endpoint answered a lifetime that is not a whole number of seconds; rounded down, to 0 at least"
        );
    }
    // `as` saturates a float beyond `u64::MAX` and a negative one at 0, and drops a fraction.
    Some(seconds as u64)
}

/// Parses `{"access_token", "expires_in", "token_type", "scope"}`; `scope` is not needed.
///
/// Reasons are written here rather than taken from serde: its messages may quote the body,
/// which holds the token.
pub(super) fn parse_token(body: &[u8]) -> Result<(Secret, Option<u64>), TokenError> {
    let invalid = |reason: &str| TokenError::InvalidResponse {
        reason: reason.to_owned(),
    };
    let not_seconds = || invalid("`expires_in` is not a number of seconds");
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        return Err(invalid("the body is not a JSON object"));
    };
    let token = match answer.get("access_token") {
        Some(Value::String(token)) if !token.is_empty() => token,
        _ => {
            return Err(invalid(
                "`access_token` is missing or not a non-empty string",
            ));
        }
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "`access_token` holds characters not allowed in an HTTP header",
        ));
    }
    match answer.get("token_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(_) => {
            return Err(invalid(
                "`token_type` is not `Bearer`, the only type supported",
            ));
        }
    }
    let expires_in = match answer.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(seconds(n).ok_or_else(not_seconds)?),
        // Some servers send the number as a string.
        Some(Value::String(s)) => Some(
            s.parse::<u64>()
                .ok()
                .or_else(|| {
                    s.parse::<serde_json::Number>()
                        .ok()
                        .as_ref()
                        .and_then(seconds)
                })
                .ok_or_else(not_seconds)?,
        ),
        Some(_) => return Err(not_seconds()),
    };
    Ok((Secret::new(token.as_str()), expires_in))
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn token_answer_parsing() {
        let answer =
            br#"{"access_token":"abc","expires_in":86400,"token_type":"Bearer","scope":"x"}"#;
        let (token, expires) = parse_token(answer).unwrap();
        assert_eq!((token.expose(), expires), ("abc", Some(86400)));
        for (whole, seconds) in [
            ("\"60\"", 60),
            ("\"+60\"", 60),
            ("\"060\"", 60),
            ("\"3600.0\"", 3600),
            ("\"18446744073709551616\"", u64::MAX),
            ("3600.0", 3600),
            ("1e3", 1000),
            ("0.0", 0),
            ("18446744073709551615", u64::MAX),
            ("18446744073709551616", u64::MAX),
            ("1e300", u64::MAX),
            // Odd lifetimes: rounded down, and a negative one is none.
            ("1.5", 1),
            ("3599.9", 3599),
            ("\"1.5\"", 1),
            ("-5", 0),
            ("-1.0", 0),
            ("\"-5\"", 0),
        ] {
            let answer = format!(r#"{{"access_token":"abc","expires_in":{whole}}}"#);
            let (_, expires) = parse_token(answer.as_bytes()).unwrap();
            assert_eq!(expires, Some(seconds), "{whole}");
        }
        for bad in [
            &br#"{"expires_in":1}"#[..],
            br#"{"access_token":""}"#,
            br#"{"access_token":"a b"}"#,
            br#"{"access_token":"abc","token_type":"mac"}"#,
            br#"{"access_token":"abc","expires_in":"soon"}"#,
            br#"{"access_token":"abc","expires_in":" 60"}"#,
            b"not json",
        ] {
            assert!(matches!(
                parse_token(bad),
                Err(TokenError::InvalidResponse { .. })
            ));
        }
    }

    #[test]
    fn refusal_without_an_rfc6749_body_is_the_bare_status() {
        let mut response = Response::new(Bytes::from_static(b"<html>nope</html>"));
        *response.status_mut() = StatusCode::NOT_FOUND;
        assert!(matches!(
            refusal(&response, 1, &["s"]),
            TokenError::Status { attempts: 1, .. }
        ));
    }
}
