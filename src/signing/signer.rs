use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};

use super::{SignatureError, SigningSecret, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};

/// Signs outbound requests with one or more secrets (several while a secret is rotated).
#[derive(Debug, Clone)]
pub struct Signer {
    secrets: Vec<SigningSecret>,
}

impl Signer {
    /// A signer with one secret.
    pub fn new(secret: SigningSecret) -> Self {
        Self {
            secrets: vec![secret],
        }
    }

    /// Adds a secret; every request then carries one signature per secret, in the order added.
    #[must_use]
    pub fn with_secret(mut self, secret: SigningSecret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// Signs `body` as message `msg_id` sent at `timestamp` (Unix seconds).
    ///
    /// `msg_id` should stay the same across retries of one call, so receivers can deduplicate.
    ///
    /// # Errors
    ///
    /// [`SignatureError::InvalidMessageId`] when `msg_id` is empty, contains `.` (the spec
    /// forbids it: the signed text is `id.timestamp.body`, so a dot would let one message pass
    /// for another), or has anything but visible ASCII: no [`Verifier`](super::Verifier)
    /// would accept its signature.
    pub fn sign(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<SignatureHeaders, SignatureError> {
        let id = message_id(msg_id)?;
        let signatures: Vec<String> = self
            .secrets
            .iter()
            .map(|secret| format!("v1,{}", secret.signature(msg_id, timestamp, body)))
            .collect();
        Ok(SignatureHeaders {
            id,
            timestamp,
            signature: signatures.join(" "),
        })
    }

    /// Signs `request`'s body and sets the three headers on it, replacing earlier ones.
    pub fn sign_request(
        &self,
        msg_id: &str,
        timestamp: i64,
        request: &mut Request<Bytes>,
    ) -> Result<(), SignatureError> {
        let headers = self.sign(msg_id, timestamp, request.body())?;
        headers.apply(request.headers_mut());
        Ok(())
    }
}

/// `id` as the value of a `webhook-id` header, if a verifier could accept it.
fn message_id(id: &str) -> Result<HeaderValue, SignatureError> {
    let invalid = |reason| SignatureError::InvalidMessageId {
        id: id.to_owned(),
        reason,
    };
    if id.is_empty() {
        return Err(invalid("it is empty"));
    }
    super::refuse_dotted(id)?;
    // `HeaderValue` alone would let non-ASCII bytes through, which receivers read differently.
    Some(id)
        .filter(|id| id.bytes().all(|b| b.is_ascii_graphic()))
        .and_then(|id| HeaderValue::from_str(id).ok())
        .ok_or_else(|| invalid("it is not visible ASCII text without spaces"))
}

/// The values of the three Standard Webhooks headers for one request, made by
/// [`Signer::sign`] for a message id a verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    id: HeaderValue,
    timestamp: i64,
    signature: String,
}

impl SignatureHeaders {
    /// The `webhook-id` value.
    pub fn id(&self) -> &str {
        self.id
            .to_str()
            .expect("checked to be visible ASCII when signed")
    }

    /// The `webhook-timestamp` value, in Unix seconds.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The `webhook-signature` value: `v1,<base64>` entries separated by spaces.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// Sets the three headers on `headers`, replacing earlier values.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let signature = HeaderValue::from_str(&self.signature)
            .expect("`v1,` entries of base64 separated by spaces are visible ASCII");
        headers.insert(WEBHOOK_ID, self.id.clone());
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(self.timestamp));
        headers.insert(WEBHOOK_SIGNATURE, signature);
    }
}
