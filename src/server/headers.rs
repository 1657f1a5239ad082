//! Request headers that must be given at most once, or hold only what hookgate reads.

use http::header::{ACCEPT_ENCODING, AsHeaderName};
use http::{HeaderMap, HeaderValue, Response};

/// A header given more than once: a proxy in front, or another hop, could read one value while
/// hookgate reads another, so which one decided would depend on their order.
pub(super) struct Repeated;

/// The value of header `name`, if given; [`Repeated`] when it is given more than once.
pub(super) fn single<K: AsHeaderName>(
    headers: &HeaderMap,
    name: K,
) -> Result<Option<&HeaderValue>, Repeated> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    match values.next() {
        Some(_) => Err(Repeated),
        None => Ok(first),
    }
}

/// Whether every value of header `name` (a content coding) lists only `identity`, the coding
/// that changes nothing; an absent header does.
pub(super) fn all_identity<K: AsHeaderName>(headers: &HeaderMap, name: K) -> bool {
    headers.get_all(name).iter().all(|value| {
        value.as_bytes().split(|&b| b == b',').all(|coding| {
            let coding = coding.trim_ascii();
            coding.is_empty() || coding.eq_ignore_ascii_case(b"identity")
        })
    })
}

/// `refusal`, the `415` of a body [`all_identity`] refused, naming the one coding taken (RFC 9110
/// §12.5.3).
pub(super) fn accepting_identity_only<B>(mut refusal: Response<B>) -> Response<B> {
    refusal
        .headers_mut()
        .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    refusal
}
