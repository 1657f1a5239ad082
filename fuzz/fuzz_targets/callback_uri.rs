//! Fuzzes the receiver SDK's callback-URI extraction (`ReceivedRequest`) with a hostile body,
//! query string, `CallbackURI` header and JSON pointer.
#![no_main]

use arbitrary::Arbitrary;
use hookgate::receiver::{CALLBACK_URI_HEADER, CallbackUriError, ReceivedRequest};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    query: Option<&'a str>,
    header: Option<&'a [u8]>,
    pointer: &'a str,
    /// Hand the body over pre-parsed (`with_json`) instead of as bytes, when it is JSON.
    pre_parsed: bool,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let mut headers = HeaderMap::new();
    if let Some(value) = input.header.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        headers.insert(CALLBACK_URI_HEADER, value);
    }
    let json = serde_json::from_slice::<serde_json::Value>(input.body).ok();
    let mut request = match (&json, input.pre_parsed) {
        (Some(json), true) => ReceivedRequest::new().with_json(json),
        _ => ReceivedRequest::new().with_body(input.body),
    }
    .with_headers(&headers);
    if let Some(query) = input.query {
        request = request.with_query(query);
    }
    check(request.callback_uri());
    check(request.callback_uri_at(input.pointer));
});

/// A found URI is an absolute http(s) URL with a host; a refusal explains itself.
fn check(result: Result<url::Url, CallbackUriError>) {
    match result {
        Ok(url) => {
            assert!(matches!(url.scheme(), "http" | "https"), "{url}");
            assert!(url.host().is_some(), "{url}");
        }
        Err(error) => assert!(!error.to_string().is_empty(), "{error:?}"),
    }
}
