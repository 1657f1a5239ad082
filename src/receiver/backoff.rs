use std::{future::Future, time::Duration};

/// How often and how patiently the receiver retries: exponential backoff with full jitter.
///
/// Retry `n` (counting from 1) waits a random time between zero and
/// `min(max_delay, base * 2^(n-1))`, or what the server asked for in `Retry-After`, capped at
/// `retry_after_cap`.
///
/// ```
/// use std::time::Duration;
/// use hookgate::receiver::Backoff;
/// let quick = Backoff::default().with_max_attempts(3).with_base(Duration::from_millis(10));
/// assert_eq!(quick.max_attempts, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// Attempts in all, the first included (default 5). Zero counts as one.
    pub max_attempts: u32,
    /// The delay ceiling of the first retry (default 1 s).
    pub base: Duration,
    /// The largest delay ceiling (default 60 s).
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured (default 60 s).
    pub retry_after_cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            retry_after_cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Sets the number of attempts, the first included.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the delay ceiling of the first retry.
    #[must_use]
    pub fn with_base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets the largest delay ceiling.
    #[must_use]
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets the longest `Retry-After` honoured.
    #[must_use]
    pub fn with_retry_after_cap(mut self, retry_after_cap: Duration) -> Self {
        self.retry_after_cap = retry_after_cap;
        self
    }

    /// The wait before retry `retry` (1 for the first retry).
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.retry_after_cap);
        }
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max_delay);
        // Without randomness the full ceiling is a safe, merely less spread-out, wait.
        let fraction =
            getrandom::u64().map_or(1.0, |bits| (bits >> 11) as f64 / (1u64 << 53) as f64);
        part_of(ceiling, fraction)
    }
}

/// `fraction` (in `0.0..=1.0`) of `ceiling`, at most `ceiling`. `Duration::mul_f64` would panic
/// for a ceiling near `Duration::MAX` (`with_base(Duration::MAX)` and as long a `max_delay`)
/// and a fraction of 1, as when no randomness is to be had: in `f64` the ceiling rounds up to
/// 2^64 seconds, which no `Duration` holds.
fn part_of(ceiling: Duration, fraction: f64) -> Duration {
    Duration::try_from_secs_f64(ceiling.as_secs_f64() * fraction)
        .map_or(ceiling, |part| part.min(ceiling))
}

/// What one attempt came to.
pub(super) enum Step<T, E> {
    /// Final: success or a failure not worth retrying.
    Done(Result<T, E>),
    /// Worth retrying; `last` is the error to report if no attempt is left.
    Retry {
        retry_after: Option<Duration>,
        last: E,
    },
}

/// Runs `attempt(1)`, `attempt(2)`, … until one is final or the attempts run out. Each retry
/// is logged, naming `what` is retried: an attempt logs its own failure without promising a
/// retry, which only this loop knows will come.
pub(super) async fn with_retries<T, E, F, Fut>(
    backoff: &Backoff,
    what: &str,
    attempt: F,
) -> Result<T, E>
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = Step<T, E>>,
{
    with_retries_while(backoff, what, attempt, || true).await
}

/// [`with_retries`], retrying only while `go_on()` says so when an attempt fails.
pub(super) async fn with_retries_while<T, E, F, Fut>(
    backoff: &Backoff,
    what: &str,
    attempt: F,
    go_on: impl Fn() -> bool,
) -> Result<T, E>
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = Step<T, E>>,
{
    let mut number = 1;
    loop {
        match attempt(number).await {
            Step::Done(result) => return result,
            Step::Retry { last, .. } if number >= backoff.max_attempts || !go_on() => {
                return Err(last);
            }
            Step::Retry { retry_after, .. } => {
                let wait = backoff.delay(number, retry_after);
                tracing::debug!(after_attempt = number, ?wait, "retrying {what}");
                tokio::time::sleep(wait).await;
                number += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_exponential_ceiling_and_the_cap() {
        let backoff = Backoff::default()
            .with_base(Duration::from_millis(100))
            .with_max_delay(Duration::from_millis(250));
        for _ in 0..100 {
            assert!(backoff.delay(1, None) <= Duration::from_millis(100));
            assert!(backoff.delay(2, None) <= Duration::from_millis(200));
            assert!(backoff.delay(40, None) <= Duration::from_millis(250));
        }
    }

    /// Upper bounds alone would pass a backoff that never waits, and then the Retry-After
    /// tests, whose point is a wait far shorter than the backoff's, would prove nothing.
    #[test]
    fn delays_reach_close_to_their_ceiling() {
        let backoff = Backoff::default()
            .with_base(Duration::from_millis(100))
            .with_max_delay(Duration::from_millis(250));
        // Full jitter draws uniformly below the ceiling, so each sample falls short of 90% of
        // it with probability 0.9: all 1,000 do with probability 0.9^1000, about 1.7e-46.
        const SAMPLES: usize = 1000;
        for (retry, ceiling_ms) in [(1, 100), (2, 200), (40, 250)] {
            let longest = (0..SAMPLES)
                .map(|_| backoff.delay(retry, None))
                .max()
                .unwrap();
            let floor = Duration::from_millis(ceiling_ms * 9 / 10);
            assert!(
                longest >= floor,
                "retry {retry}: the longest of {SAMPLES} waits was {longest:?}, under {floor:?}"
            );
        }
    }

    #[test]
    fn a_ceiling_near_duration_max_saturates_instead_of_panicking() {
        assert_eq!(part_of(Duration::MAX, 1.0), Duration::MAX);
        assert!(part_of(Duration::MAX, 0.5) < Duration::MAX);
        assert_eq!(
            part_of(Duration::from_secs(10), 0.25),
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let backoff = Backoff::default().with_retry_after_cap(Duration::from_secs(5));
        assert_eq!(
            backoff.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(5)
        );
    }
}
