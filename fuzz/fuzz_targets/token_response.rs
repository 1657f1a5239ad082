//! Fuzzes the receiver's OAuth2 token-response handling through the public
//! `ClientCredentials` token source: the transport is a closure answering every request with a
//! fuzz-chosen status, `Retry-After` header and body.
#![no_main]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use hookgate::receiver::{Backoff, ClientCredentials, TokenSource};
use hookgate::transport::TransportError;
use http::{HeaderValue, Request, Response, StatusCode, header::RETRY_AFTER};
use libfuzzer_sys::fuzz_target;
use shared::runtime;

mod shared;

/// Contains no character of `[redacted]` or `…`, so masking it cannot form it again.
const CLIENT_SECRET: &str = "S3CR3T-QZ9-CLIENT";

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    status: u16,
    retry_after: Option<&'a [u8]>,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    // Any status from 100 to 999, as `http` allows.
    let status = StatusCode::from_u16(100 + input.status % 900).expect("in range");
    let body = Bytes::copy_from_slice(input.body);
    let retry_after = input
        .retry_after
        .and_then(|value| HeaderValue::from_bytes(value).ok());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let transport = move |_: Request<Bytes>| {
        counted.fetch_add(1, Ordering::SeqCst);
        let mut response = Response::new(body.clone());
        *response.status_mut() = status;
        if let Some(value) = &retry_after {
            response.headers_mut().insert(RETRY_AFTER, value.clone());
        }
        async move { Ok::<_, TransportError>(response) }
    };
    // Two attempts, so a retryable status goes through the retry path, without any wait.
    let backoff = Backoff::default()
        .with_max_attempts(2)
        .with_base(Duration::ZERO)
        .with_max_delay(Duration::ZERO)
        .with_retry_after_cap(Duration::ZERO);
    let tokens = ClientCredentials::builder("fuzz-client", CLIENT_SECRET)
        .backoff(backoff)
        .build(transport)
        .expect("a valid configuration");

    runtime().block_on(async {
        match tokens.token().await {
            Ok(token) => {
                assert!(status.is_success(), "a token from an HTTP {status} answer");
                let token = token.expose().to_owned();
                assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
                // The same answer again (from the cache or a new fetch) gives the same token.
                let again = tokens
                    .token()
                    .await
                    .expect("the same answer succeeds again");
                assert_eq!(again.expose(), token);
            }
            Err(error) => {
                let message = error.to_string();
                assert!(!message.is_empty(), "{error:?}");
                assert!(
                    !message.contains(CLIENT_SECRET),
                    "the secret leaked: {message}"
                );
                assert!(
                    calls.load(Ordering::SeqCst) <= 2,
                    "more attempts than allowed"
                );
            }
        }
    });
    assert!(!format!("{tokens:?}").contains(CLIENT_SECRET));
});
