//! `Retry-After` (RFC 9110 §10.2.3), read the same way by the orchestrator's outbound calls and
//! by the receiver's token and callback requests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use http::header::RETRY_AFTER;

/// The wait `headers` ask for: delta-seconds, or an HTTP-date in any of the three forms a
/// recipient must accept (IMF-fixdate and the obsolete RFC 850 and asctime forms), measured from
/// `now`. A date in the past means now; delta-seconds too many for a `u64` mean the longest
/// wait, which the caller's cap then cuts; a value that is neither is ignored.
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    // `1*DIGIT` only: `u64`'s parser would also take a leading `+`.
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = DateTime::<Utc>::from(httpdate::parse_http_date(value).ok()?);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use http::HeaderValue;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 0).unwrap()
    }

    fn after(value: &'static str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
        retry_after(&headers, now())
    }

    #[test]
    fn seconds_and_all_three_date_forms_are_read() {
        assert_eq!(after("120"), Some(Duration::from_secs(120)));
        assert_eq!(after(" 2 "), Some(Duration::from_secs(2)));
        let in_37s = Some(Duration::from_secs(37));
        assert_eq!(after("Sun, 06 Nov 1994 08:49:37 GMT"), in_37s);
        assert_eq!(after("Sunday, 06-Nov-94 08:49:37 GMT"), in_37s);
        assert_eq!(after("Sun Nov  6 08:49:37 1994"), in_37s);
    }

    #[test]
    fn delta_seconds_too_many_for_a_u64_mean_the_longest_wait() {
        assert_eq!(
            after("99999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn a_past_date_means_now_and_other_values_are_ignored() {
        assert_eq!(after("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(after("-5"), None);
        assert_eq!(after("+120"), None, "delta-seconds are digits only");
        assert_eq!(after("soon"), None);
        assert_eq!(
            after("Mon, 06 Nov 1994 08:49:37 GMT"),
            None,
            "wrong weekday"
        );
        assert_eq!(after("Sun, 06 Nov 1994 08:49:37 +0000"), None, "not GMT");
        assert_eq!(retry_after(&HeaderMap::new(), now()), None);
    }
}
