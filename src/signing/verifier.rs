use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use subtle::{Choice, ConstantTimeEq};

use super::{SignatureError, SigningSecret, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use crate::clock::{Clock, SystemClock};

/// Checks Standard Webhooks signatures on received requests.
///
/// A request passes when its timestamp is within the tolerance of now (either side) and any
/// `v1` entry of `webhook-signature` matches the signature made with any of the secrets.
/// Signatures are compared in constant time. A `webhook-id` holding `.` is refused, as the
/// signer refuses it: the signed text is `id.timestamp.body`, so a dot would let one message
/// pass for another. Deduplicating by `webhook-id` is left to the receiver.
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<SigningSecret>,
    tolerance: Duration,
    clock: Arc<dyn Clock>,
}

impl Verifier {
    /// The tolerance used unless [`Verifier::with_tolerance`] says otherwise: 5 minutes.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

    /// A verifier with one secret, the default tolerance and the system clock.
    pub fn new(secret: SigningSecret) -> Self {
        Self {
            secrets: vec![secret],
            tolerance: Self::DEFAULT_TOLERANCE,
            clock: Arc::new(SystemClock),
        }
    }

    /// Also accepts signatures made with `secret` (while senders rotate secrets).
    #[must_use]
    pub fn with_secret(mut self, secret: SigningSecret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// Sets how far (in whole seconds) a timestamp may lie from now, in either direction.
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Reads now from `clock` in [`Verifier::verify`].
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Verifies a received request's headers and body (exactly as received) against the clock.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        self.verify_at(headers, body, self.clock.now())
    }

    /// Verifies a received request's headers and body (exactly as received) at time `now`.
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), SignatureError> {
        let id = header(headers, WEBHOOK_ID)?;
        // An empty id is no id, as the Signer refuses to sign one and the spec's Python and
        // JavaScript libraries read it.
        if id.is_empty() {
            return Err(SignatureError::MissingHeader { name: WEBHOOK_ID });
        }
        super::refuse_dotted(id)?;
        let signatures = header(headers, WEBHOOK_SIGNATURE)?;
        let timestamp: i64 = header(headers, WEBHOOK_TIMESTAMP)?
            .parse()
            .map_err(|_| SignatureError::InvalidTimestamp)?;
        self.check_timestamp(timestamp, now)?;

        let candidates: Vec<&str> = signatures
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .collect();
        let mut matched = Choice::from(0);
        for secret in &self.secrets {
            let expected = secret.signature(id, timestamp, body);
            for candidate in &candidates {
                matched |= expected.as_bytes().ct_eq(candidate.as_bytes());
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SignatureError::NoMatchingSignature)
        }
    }

    fn check_timestamp(&self, timestamp: i64, now: DateTime<Utc>) -> Result<(), SignatureError> {
        // i128: an attacker-chosen i64 timestamp must not overflow the subtraction.
        let age = i128::from(now.timestamp()) - i128::from(timestamp);
        let tolerance_seconds = self.tolerance.as_secs();
        let seconds = |delta: i128| u64::try_from(delta).unwrap_or(u64::MAX);
        if age > i128::from(tolerance_seconds) {
            Err(SignatureError::TooOld {
                age_seconds: seconds(age),
                tolerance_seconds,
            })
        } else if -age > i128::from(tolerance_seconds) {
            Err(SignatureError::TooNew {
                ahead_seconds: seconds(-age),
                tolerance_seconds,
            })
        } else {
            Ok(())
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, SignatureError> {
    headers
        .get(name)
        .ok_or(SignatureError::MissingHeader { name })?
        .to_str()
        .map_err(|_| SignatureError::InvalidHeader { name })
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.secrets)
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_received_id_is_cut_short_and_escaped_in_the_error() {
        let id = format!("\tmsg_{}.x", "a".repeat(60 * 1024));
        let mut headers = HeaderMap::new();
        headers.insert(WEBHOOK_ID, id.parse().unwrap());
        headers.insert(WEBHOOK_TIMESTAMP, "1700000000".parse().unwrap());
        headers.insert(WEBHOOK_SIGNATURE, "v1,AAAA".parse().unwrap());
        let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let err = Verifier::new(secret)
            .verify_at(&headers, b"", now)
            .unwrap_err();
        assert!(
            matches!(err, SignatureError::InvalidMessageId { .. }),
            "{err:?}"
        );
        let shown = err.to_string();
        assert!(shown.len() < 300, "{} bytes", shown.len());
        assert!(
            shown.contains("\\tmsg_aaa") && shown.contains('…'),
            "{shown}"
        );
        assert!(!shown.contains('\t'), "{shown}");
        assert!(format!("{err:?}").len() < 300);
    }
}
