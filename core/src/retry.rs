//! [`RetryPolicy`]: how every retrying part of annals (command execution, subscriptions,
//! runners) waits between attempts.

use std::time::Duration;

/// How many attempts, and how long to wait between them: a random time up to
/// `backoff × 2^(attempt-1)`, capped at `max_backoff` ("full jitter"), so competing
/// writers and reconnecting followers spread out instead of retrying in step.
///
/// [`Repository`](crate::Repository) uses it for conflicts and transient store failures,
/// [`Subscription`](crate::subscription::Subscription) for failed reads and batches.
///
/// ```
/// # use annals::RetryPolicy;
/// # use std::time::Duration;
/// let policy = RetryPolicy { max_attempts: 10, ..RetryPolicy::default() };
/// assert!(policy.delay(3) <= Duration::from_millis(4));
/// assert_eq!(RetryPolicy::never().max_attempts, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many attempts at most (1 = never retry).
    pub max_attempts: u32,
    /// The base of the exponential back-off.
    pub backoff: Duration,
    /// The longest single wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, back-off from 1 ms up to 50 ms: what command execution uses.
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(50) }
    }
}

impl RetryPolicy {
    /// One attempt: report the first failure instead of retrying.
    pub fn never() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// Whether another attempt follows failed attempt number `attempt` (counting from 1).
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts.max(1)
    }

    /// The wait after failed attempt number `attempt` (counting from 1): random, up to
    /// `backoff × 2^(attempt-1)` capped at `max_backoff`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.ceiling(attempt).mul_f64(fastrand::f64())
    }

    /// The longest wait after attempt `attempt`.
    fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_stay_under_the_cap() {
        let policy = RetryPolicy { max_attempts: 40, backoff: Duration::from_millis(10), max_backoff: Duration::from_secs(1) };
        assert_eq!(policy.ceiling(1), Duration::from_millis(10));
        assert_eq!(policy.ceiling(3), Duration::from_millis(40));
        assert_eq!(policy.ceiling(30), Duration::from_secs(1));
        assert!((1..40).all(|attempt| policy.delay(attempt) <= Duration::from_secs(1)));
        assert!(policy.allows_another(39) && !policy.allows_another(40));
        assert!(!RetryPolicy::never().allows_another(1));
    }
}
