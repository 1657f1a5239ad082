//! Standard Webhooks signing and verification (PROTOCOL.md §8).
#![cfg(feature = "signing")]

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hookgate::clock::Clock;
use hookgate::signing::{SignatureError, Signer, SigningSecret, Verifier};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

/// A published test vector of the reference implementation:
/// standard-webhooks/standard-webhooks, `libraries/rust/src/lib.rs`, `test_sign`.
const RUST_VECTOR: Vector = Vector {
    secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    id: "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
    timestamp: 1_649_367_553,
    body: r#"{"email":"test@example.com","username":"test_user"}"#,
    signature: "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
};

/// standard-webhooks/standard-webhooks, `libraries/javascript/src/webhook.test.ts`,
/// "sign function works".
const JS_VECTOR: Vector = Vector {
    secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
    timestamp: 1_614_265_330,
    body: r#"{"test": 2432232314}"#,
    signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
};

struct Vector {
    secret: &'static str,
    id: &'static str,
    timestamp: i64,
    body: &'static str,
    signature: &'static str,
}

impl Vector {
    fn secret(&self) -> SigningSecret {
        self.secret.parse().unwrap()
    }

    fn headers(&self, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static(self.id));
        headers.insert("webhook-timestamp", HeaderValue::from(self.timestamp));
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    fn at(&self, offset_seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(self.timestamp + offset_seconds, 0).unwrap()
    }
}

#[test]
fn signs_the_published_vectors() {
    for v in [RUST_VECTOR, JS_VECTOR] {
        let headers = Signer::new(v.secret())
            .sign(v.id, v.timestamp, v.body.as_bytes())
            .unwrap();
        assert_eq!(headers.signature(), v.signature);
        assert_eq!(headers.id(), v.id);
        assert_eq!(headers.timestamp(), v.timestamp);
    }
}

#[test]
fn verifies_the_published_vectors() {
    for v in [RUST_VECTOR, JS_VECTOR] {
        let verifier = Verifier::new(v.secret());
        assert_eq!(
            verifier.verify_at(&v.headers(v.signature), v.body.as_bytes(), v.at(0)),
            Ok(())
        );
    }
}

#[test]
fn secrets_parse_with_or_without_prefix_and_padding() {
    let v = JS_VECTOR;
    let bare = v.secret.strip_prefix("whsec_").unwrap();
    let headers = Signer::new(SigningSecret::parse(bare).unwrap())
        .sign(v.id, v.timestamp, v.body.as_bytes())
        .unwrap();
    assert_eq!(headers.signature(), v.signature);

    // 25 bytes: base64 with one `=` of padding, accepted with or without it.
    let padded = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGA==";
    let unpadded = padded.trim_end_matches('=');
    let sign = |s: &str| {
        Signer::new(s.parse().unwrap())
            .sign("m", 1, b"x")
            .unwrap()
            .signature()
            .to_owned()
    };
    assert_eq!(sign(padded), sign(unpadded));
    let raw: Vec<u8> = (0..25).collect();
    let from_raw = Signer::new(SigningSecret::from_bytes(&raw).unwrap())
        .sign("m", 1, b"x")
        .unwrap();
    assert_eq!(from_raw.signature(), sign(padded));
}

#[test]
fn bad_secrets_are_refused_without_echoing_them() {
    for bad in ["whsec_not base64!", "whsec_c2hvcnQ=", "", "whsec_"] {
        let err = SigningSecret::parse(bad).unwrap_err();
        assert!(matches!(err, SignatureError::InvalidSecret { .. }));
        if !bad.is_empty() && bad != "whsec_" {
            assert!(
                !err.to_string().contains(bad.trim_start_matches("whsec_")),
                "{err}"
            );
        }
    }
    assert!(SigningSecret::from_bytes(&[7; 65]).is_err());
    assert!(SigningSecret::from_bytes(&[7; 64]).is_ok());
    assert_eq!(
        format!("{:?}", RUST_VECTOR.secret()),
        "SigningSecret([redacted])"
    );
    assert!(!format!("{:?}", Verifier::new(RUST_VECTOR.secret())).contains("C2FV"));
}

#[test]
fn sign_request_sets_headers_that_verify() {
    let secret = RUST_VECTOR.secret();
    let mut request = http::Request::new(Bytes::from_static(b"{\"success\": true}"));
    request
        .headers_mut()
        .insert("webhook-id", HeaderValue::from_static("stale"));
    Signer::new(secret.clone())
        .sign_request("gate_01", 1_700_000_000, &mut request)
        .unwrap();
    assert_eq!(request.headers()["webhook-id"], "gate_01");
    assert_eq!(request.headers().get_all("webhook-id").iter().count(), 1);
    assert_eq!(request.headers()["webhook-timestamp"], "1700000000");
    let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    assert_eq!(
        Verifier::new(secret).verify_at(request.headers(), request.body(), now),
        Ok(())
    );
}

#[test]
fn message_ids_that_cannot_be_signed_safely_are_refused() {
    let signer = Signer::new(RUST_VECTOR.secret());
    for id in ["", "msg.1", "msg\n1", "méssage"] {
        let mut request = http::Request::new(Bytes::new());
        let err = signer.sign_request(id, 1, &mut request).unwrap_err();
        assert!(
            matches!(err, SignatureError::InvalidMessageId { .. }),
            "{id:?}"
        );
        assert!(request.headers().is_empty());
        // Signed alone, to set the headers by hand, it is refused too: no verifier would
        // accept its signature.
        let err = signer.sign(id, 1, b"{}").unwrap_err();
        assert!(
            matches!(err, SignatureError::InvalidMessageId { .. }),
            "{id:?}"
        );
    }
}

#[test]
fn rotation_signs_with_every_secret_and_verifies_with_any() {
    let (old, new) = (RUST_VECTOR.secret(), JS_VECTOR.secret());
    let v = RUST_VECTOR;
    let headers = Signer::new(new.clone())
        .with_secret(old.clone())
        .sign(v.id, v.timestamp, v.body.as_bytes())
        .unwrap();
    let entries: Vec<_> = headers.signature().split(' ').collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1], v.signature);

    let map = v.headers(headers.signature());
    for verifier in [
        Verifier::new(old.clone()),
        Verifier::new(new.clone()),
        Verifier::new(SigningSecret::from_bytes(&[1; 32]).unwrap()).with_secret(new),
    ] {
        assert_eq!(verifier.verify_at(&map, v.body.as_bytes(), v.at(0)), Ok(()));
    }
    // A receiver holding only the old secret also accepts a header listing other entries.
    let mixed = format!(
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,x  {}",
        v.signature
    );
    assert_eq!(
        Verifier::new(old).verify_at(&v.headers(&mixed), v.body.as_bytes(), v.at(0)),
        Ok(())
    );
}

#[test]
fn tolerance_edges() {
    let v = RUST_VECTOR;
    let verifier = Verifier::new(v.secret());
    let headers = v.headers(v.signature);
    let check =
        |verifier: &Verifier, offset| verifier.verify_at(&headers, v.body.as_bytes(), v.at(offset));
    assert_eq!(check(&verifier, 300), Ok(()));
    assert_eq!(check(&verifier, -300), Ok(()));
    assert_eq!(
        check(&verifier, 301),
        Err(SignatureError::TooOld {
            age_seconds: 301,
            tolerance_seconds: 300
        })
    );
    assert_eq!(
        check(&verifier, -301),
        Err(SignatureError::TooNew {
            ahead_seconds: 301,
            tolerance_seconds: 300
        })
    );
    let strict = verifier.clone().with_tolerance(Duration::from_secs(10));
    assert_eq!(check(&strict, 10), Ok(()));
    assert!(matches!(
        check(&strict, 11),
        Err(SignatureError::TooOld { .. })
    ));
}

struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

#[test]
fn verify_reads_the_injected_clock() {
    let v = JS_VECTOR;
    let headers = v.headers(v.signature);
    let on_time = Verifier::new(v.secret()).with_clock(FixedClock(v.at(60)));
    assert_eq!(on_time.verify(&headers, v.body.as_bytes()), Ok(()));
    let late = Verifier::new(v.secret()).with_clock(FixedClock(v.at(3600)));
    assert!(matches!(
        late.verify(&headers, v.body.as_bytes()),
        Err(SignatureError::TooOld { .. })
    ));
}

#[test]
fn tampering_and_wrong_secrets_are_refused() {
    let v = RUST_VECTOR;
    let verifier = Verifier::new(v.secret());
    let headers = v.headers(v.signature);
    let body = v.body.replace("test_user", "admin");
    assert_eq!(
        verifier.verify_at(&headers, body.as_bytes(), v.at(0)),
        Err(SignatureError::NoMatchingSignature)
    );
    let mut other_id = headers.clone();
    other_id.insert("webhook-id", HeaderValue::from_static("msg_other"));
    assert_eq!(
        verifier.verify_at(&other_id, v.body.as_bytes(), v.at(0)),
        Err(SignatureError::NoMatchingSignature)
    );
    for signature in [
        "v1,",
        "v1,dawfeoifkpqwoekfpqoekf",
        "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        &v.signature[..8],
    ] {
        assert_eq!(
            verifier.verify_at(&v.headers(signature), v.body.as_bytes(), v.at(0)),
            Err(SignatureError::NoMatchingSignature),
            "{signature}"
        );
    }
    assert_eq!(
        Verifier::new(JS_VECTOR.secret()).verify_at(&headers, v.body.as_bytes(), v.at(0)),
        Err(SignatureError::NoMatchingSignature)
    );
}

#[test]
fn missing_and_malformed_headers_are_typed_errors() {
    let v = RUST_VECTOR;
    let verifier = Verifier::new(v.secret());
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut headers = v.headers(v.signature);
        headers.remove(name);
        assert_eq!(
            verifier.verify_at(&headers, v.body.as_bytes(), v.at(0)),
            Err(SignatureError::MissingHeader { name })
        );
    }
    let mut headers = v.headers(v.signature);
    headers.insert("webhook-id", HeaderValue::from_static(""));
    assert_eq!(
        verifier.verify_at(&headers, v.body.as_bytes(), v.at(0)),
        Err(SignatureError::MissingHeader { name: "webhook-id" }),
        "an empty id is none, as the Signer signs none"
    );
    let mut headers = v.headers(v.signature);
    headers.insert("webhook-timestamp", HeaderValue::from_static("hello"));
    assert_eq!(
        verifier.verify_at(&headers, v.body.as_bytes(), v.at(0)),
        Err(SignatureError::InvalidTimestamp)
    );
    headers.insert(
        "webhook-timestamp",
        HeaderValue::from_bytes(b"\xff").unwrap(),
    );
    assert_eq!(
        verifier.verify_at(&headers, v.body.as_bytes(), v.at(0)),
        Err(SignatureError::InvalidHeader {
            name: "webhook-timestamp"
        })
    );
}

/// A signed message split at another dot (`id.ts` as the id, the body's start as the
/// timestamp) would carry the same signature: an id with a dot, which the signer never sends,
/// is refused before any signature is looked at.
#[test]
fn an_id_with_a_dot_is_refused() {
    let v = RUST_VECTOR;
    let mut headers = v.headers(v.signature);
    headers.insert("webhook-id", HeaderValue::from_static("msg.1614265330"));
    assert!(matches!(
        Verifier::new(v.secret()).verify_at(&headers, v.body.as_bytes(), v.at(0)),
        Err(SignatureError::InvalidMessageId { .. })
    ));
}

proptest! {
    #[test]
    fn round_trip_for_any_id_timestamp_and_body(
        id in "[A-Za-z0-9_-]{1,40}",
        timestamp in 0i64..4_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let secret = RUST_VECTOR.secret();
        let mut request = http::Request::new(Bytes::from(body));
        Signer::new(secret.clone()).sign_request(&id, timestamp, &mut request).unwrap();
        let now = DateTime::from_timestamp(timestamp, 0).unwrap();
        prop_assert_eq!(Verifier::new(secret).verify_at(request.headers(), request.body(), now), Ok(()));
    }

    /// Most cases carry headers a signer could have sent (a valid id, a timestamp within the
    /// tolerance, `v1` entries), so that the verifier gets as far as comparing signatures and
    /// has to refuse on them; the others carry arbitrary bytes in some headers.
    #[test]
    fn arbitrary_headers_never_panic_and_never_pass(
        id in header_value("[!-\\-/-~]{1,40}"),
        timestamp in prop::option::weighted(0.2, proptest::collection::vec(any::<u8>(), 0..24)),
        skew in -300i64..=300,
        signature in prop_oneof![
            4 => proptest::collection::vec(signature_entry(), 1..4).prop_map(Signature::Entries),
            1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Signature::Bytes),
        ],
        body in proptest::collection::vec(any::<u8>(), 0..64),
        now in any::<i32>(),
    ) {
        let secret = RUST_VECTOR.secret();
        let now_seconds = i64::from(now);
        let signed_id = match &id {
            Value::Plausible(id) => id.as_str(),
            Value::Bytes(_) => "msg_x",
        };
        let mut near_miss_body = body.clone();
        near_miss_body.push(b'!');
        // The signature the same secret gives this id and timestamp with another body.
        let near_miss = Signer::new(secret.clone())
            .sign(signed_id, now_seconds + skew, &near_miss_body)
            .unwrap()
            .signature()
            .to_owned();
        let signature = match &signature {
            Signature::Entries(entries) => Value::Plausible(
                entries
                    .iter()
                    .map(|e| match e {
                        Entry::Text(text) => text.as_str(),
                        Entry::NearMiss => near_miss.as_str(),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Signature::Bytes(bytes) => Value::Bytes(bytes.clone()),
        };
        let timestamp = match timestamp {
            None => Value::Plausible((now_seconds + skew).to_string()),
            Some(bytes) => Value::Bytes(bytes),
        };
        let all_plausible = [&id, &timestamp, &signature]
            .iter()
            .all(|v| matches!(v, Value::Plausible(_)));

        let mut headers = HeaderMap::new();
        for (name, value) in [("webhook-id", id), ("webhook-timestamp", timestamp), ("webhook-signature", signature)] {
            let bytes = match value {
                Value::Plausible(text) => text.into_bytes(),
                Value::Bytes(bytes) => bytes,
            };
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                headers.insert(name, value);
            }
        }
        let now = DateTime::from_timestamp(now_seconds, 0).unwrap();
        let verified = Verifier::new(secret).verify_at(&headers, &body, now);
        if all_plausible {
            prop_assert_eq!(verified, Err(SignatureError::NoMatchingSignature));
        } else {
            prop_assert!(
                matches!(
                    verified,
                    Err(SignatureError::MissingHeader { .. }
                        | SignatureError::InvalidHeader { .. }
                        | SignatureError::InvalidMessageId { .. }
                        | SignatureError::InvalidTimestamp
                        | SignatureError::TooOld { .. }
                        | SignatureError::TooNew { .. }
                        | SignatureError::NoMatchingSignature)
                ),
                "{:?}",
                verified
            );
        }
    }

    #[test]
    fn extreme_timestamps_never_panic(timestamp in any::<i64>(), now in any::<i32>()) {
        let v = RUST_VECTOR;
        let mut headers = v.headers(v.signature);
        headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
        let now = DateTime::from_timestamp(i64::from(now), 0).unwrap();
        let verifier = Verifier::new(v.secret()).with_tolerance(Duration::MAX);
        let verified = verifier.verify_at(&headers, v.body.as_bytes(), now);
        // The timestamp is signed: any other than the vector's breaks the signature.
        prop_assert_eq!(verified.is_ok(), timestamp == v.timestamp);
    }
}

/// A header as received: text a signer could have sent, or arbitrary bytes.
#[derive(Debug, Clone)]
enum Value {
    Plausible(String),
    Bytes(Vec<u8>),
}

/// Mostly text matching `plausible`, sometimes arbitrary bytes.
fn header_value(plausible: &'static str) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => plausible.prop_map(Value::Plausible),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bytes),
    ]
}

#[derive(Debug, Clone)]
enum Signature {
    Entries(Vec<Entry>),
    Bytes(Vec<u8>),
}

/// One entry of a `webhook-signature` list.
#[derive(Debug, Clone)]
enum Entry {
    Text(String),
    /// A genuine signature by the verifier's secret, of another body.
    NearMiss,
}

fn signature_entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        "v1,[A-Za-z0-9+/]{43}=".prop_map(Entry::Text),
        "(v1|v2|v1a),[!-~]{0,60}".prop_map(Entry::Text),
        Just(Entry::NearMiss),
    ]
}
