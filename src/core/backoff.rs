//! Retry delays for outbound calls: exponential backoff with full jitter (PROTOCOL.md §4).

use std::time::Duration;

/// The delay before retry number `retry` (1 for the first retry): uniform in
/// `[0, min(cap, base * 2^(retry-1))]`, drawn from `random`; a `Retry-After` from the server
/// replaces the draw and is capped at `cap`.
pub(crate) fn delay(
    base: Duration,
    cap: Duration,
    retry: u32,
    retry_after: Option<Duration>,
    random: u64,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(cap);
    }
    let cap_ms = cap.as_millis().min(u128::from(u64::MAX)) as u64;
    let base_ms = base.as_millis().min(u128::from(u64::MAX)) as u64;
    let growth = 1u64
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u64::MAX);
    let ceiling = base_ms.saturating_mul(growth).min(cap_ms);
    Duration::from_millis(random % (ceiling.saturating_add(1)))
}

/// Whether an HTTP status from the external system is worth retrying (PROTOCOL.md §4: 408, 429
/// and 5xx are; other non-2xx answers fail the gate at once). The default: a webhook with
/// `retryableStatusCodes` retries exactly the statuses it lists.
pub fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let max = |retry| delay(S, 60 * S, retry, None, u64::MAX - 1);
        let at_most = |retry| {
            (0..2000u64)
                .map(|r| delay(S, 60 * S, retry, None, r * 7919))
                .max()
                .unwrap()
        };
        assert!(at_most(1) <= S);
        assert!(at_most(3) <= 4 * S);
        assert!(at_most(3) > 2 * S, "draws spread over the whole window");
        assert!(max(40) <= 60 * S);
        assert!(at_most(40) > 50 * S);
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        assert_eq!(delay(S, 60 * S, 1, Some(5 * S), 0), 5 * S);
        assert_eq!(delay(S, 60 * S, 1, Some(3600 * S), 0), 60 * S);
    }

    #[test]
    fn retryable_statuses_follow_the_protocol() {
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 409, 410, 422, 600] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }
}
