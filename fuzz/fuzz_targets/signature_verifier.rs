//! Fuzzes `hookgate::signing::Verifier` with hostile headers, body, secret, tolerance and
//! clock, and checks that whatever the signer produces for fuzz-chosen values verifies, and
//! stops verifying once the body changes.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use chrono::DateTime;
use hookgate::signing::{
    SignatureError, Signer, SigningSecret, Verifier, WEBHOOK_ID, WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum SecretInput<'a> {
    /// `whsec_<base64>` text, as configured by people.
    Text(&'a str),
    /// Raw key bytes.
    Bytes(&'a [u8]),
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    secret: SecretInput<'a>,
    id: Option<&'a [u8]>,
    timestamp: Option<&'a [u8]>,
    signature: Option<&'a [u8]>,
    tolerance_seconds: u64,
    now_seconds: i64,
    signed_id: &'a str,
    signed_timestamp: i64,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let secret = match input.secret {
        SecretInput::Text(text) => SigningSecret::parse(text),
        SecretInput::Bytes(bytes) => SigningSecret::from_bytes(bytes),
    };
    let secret = match secret {
        Ok(secret) => secret,
        Err(error) => return check_error(&error),
    };

    // Hostile headers: whatever the fuzzer chose, at whatever time.
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (WEBHOOK_ID, input.id),
        (WEBHOOK_TIMESTAMP, input.timestamp),
        (WEBHOOK_SIGNATURE, input.signature),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.insert(name, value);
        }
    }
    let now = DateTime::from_timestamp(input.now_seconds, 0).unwrap_or_default();
    let verifier =
        Verifier::new(secret.clone()).with_tolerance(Duration::from_secs(input.tolerance_seconds));
    if let Err(error) = verifier.verify_at(&headers, input.body, now) {
        check_error(&error);
    }

    // Round trip: a request the signer signed verifies (with every timestamp allowed), and a
    // changed body does not.
    let signed =
        match Signer::new(secret.clone()).sign(input.signed_id, input.signed_timestamp, input.body)
        {
            Ok(signed) => signed,
            Err(error) => return check_error(&error),
        };
    let mut headers = HeaderMap::new();
    signed.apply(&mut headers);
    let verifier = Verifier::new(secret).with_tolerance(Duration::from_secs(u64::MAX));
    verifier
        .verify_at(&headers, input.body, now)
        .expect("a request signed with the verifier's secret verifies");
    let mut tampered = input.body.to_vec();
    tampered.push(b'x');
    assert_eq!(
        verifier.verify_at(&headers, &tampered, now),
        Err(SignatureError::NoMatchingSignature)
    );
});

/// A refusal explains itself.
fn check_error(error: &SignatureError) {
    assert!(!error.to_string().is_empty(), "{error:?}");
}
