use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{self, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::SignatureError;

/// Secrets are handed around by people, and some tools drop base64 padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The Standard Webhooks bounds: at least 192 bits, at most 512.
const KEY_LENGTHS: std::ops::RangeInclusive<usize> = 24..=64;

/// A Standard Webhooks HMAC secret. `Debug` prints `[redacted]`.
///
/// ```
/// use hookgate::signing::SigningSecret;
/// let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// assert_eq!(format!("{secret:?}"), "SigningSecret([redacted])");
/// assert!(SigningSecret::parse("whsec_c2hvcnQ=").is_err()); // 5 bytes: too short
/// ```
#[derive(Clone)]
pub struct SigningSecret {
    // Keyed once here, where a bad key can still be reported; signing clones the keyed state.
    mac: Hmac<Sha256>,
}

impl SigningSecret {
    /// Parses `whsec_<base64>`. The prefix may be left out and padding is optional, as in the
    /// reference libraries; the key must be 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let key = LENIENT
            .decode(encoded)
            .map_err(|_| SignatureError::InvalidSecret {
                reason: "the key (after any `whsec_` prefix) is not standard base64".to_owned(),
            })?;
        Self::from_bytes(&key)
    }

    /// Uses raw key bytes (24 to 64 of them).
    pub fn from_bytes(key: &[u8]) -> Result<Self, SignatureError> {
        if !KEY_LENGTHS.contains(&key.len()) {
            return Err(SignatureError::InvalidSecret {
                reason: format!("the key is {} bytes long", key.len()),
            });
        }
        // HMAC takes a key of any length (a long one is hashed first), so this cannot fail.
        let mac = Hmac::new_from_slice(key).expect("HMAC-SHA256 takes keys of any length");
        Ok(Self { mac })
    }

    /// The base64 signature of `msg_id.timestamp.body`, without the `v1,` prefix.
    pub(super) fn signature(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }
}

impl FromStr for SigningSecret {
    type Err = SignatureError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}
