//! Request headers that must be given at most once.

use http::header::AsHeaderName;
use http::{HeaderMap, HeaderValue};

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
