//! [`RetryPolicy`]: how every retrying part of annals (command execution, subscriptions,
//! runners) waits between attempts, and when it gives up.

use std::time::{Duration, Instant};

/// How many attempts, for how long, and how long to wait between them: a random time up
/// to `backoff × 2^(attempt-1)`, capped at `max_backoff` ("full jitter"), so competing
/// writers and reconnecting followers spread out instead of retrying in step.
///
/// [`Repository`](crate::Repository) uses it for conflicts and transient store failures
/// (by default for up to 10 s, however many attempts that takes);
/// [`Subscription`](crate::subscription::Subscription) for failing handlers, while it
/// waits out transient store failures for as long as they last
/// ([`RetryPolicy::forever`]).
///
/// ```
/// # use annals::RetryPolicy;
/// # use std::time::Duration;
/// let policy = RetryPolicy { max_attempts: 10, budget: None, ..RetryPolicy::default() };
/// let mut attempts = policy.start();
/// let wait = attempts.failed().expect("9 more attempts allowed");
/// assert!(wait <= policy.max_backoff);
/// assert_eq!(RetryPolicy::never().start().failed(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many attempts at most (1 = never retry; `u32::MAX`: no limit but the budget).
    pub max_attempts: u32,
    /// How long after the first attempt a new attempt may still start; `None`: no limit
    /// but `max_attempts`.
    pub budget: Option<Duration>,
    /// The base of the exponential back-off.
    pub backoff: Duration,
    /// The longest single wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// What command execution uses: attempts for up to 10 s, back-off from 1 ms up to
    /// 100 ms. Long enough to ride through a database restart or heavy contention from
    /// other processes; short enough to answer a request.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: u32::MAX,
            budget: Some(Duration::from_secs(10)),
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// One attempt: report the first failure instead of retrying.
    pub fn never() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// Retry for as long as it takes, waiting from 50 ms up to 5 s between attempts: what
    /// long-lived followers use for transient failures (a database restart, an outage).
    pub fn forever() -> Self {
        RetryPolicy {
            max_attempts: u32::MAX,
            budget: None,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// Whether failed attempt number `attempt` may be followed by another, counting
    /// attempts only (the budget needs [`start`](Self::start)).
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts.max(1)
    }

    /// Starts counting attempts under this policy: the first attempt is under way.
    pub fn start(&self) -> Attempts {
        Attempts { policy: *self, attempt: 1, started: Instant::now() }
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

/// The attempts of one operation under a [`RetryPolicy`].
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: RetryPolicy,
    attempt: u32,
    started: Instant,
}

impl Attempts {
    /// The number of the attempt under way (1 for the first).
    pub fn count(&self) -> u32 {
        self.attempt
    }

    /// How long ago the first attempt started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records that the attempt under way failed. Returns how long to wait before the next
    /// one, or `None` when the policy allows no more (attempts or budget used up).
    pub fn failed(&mut self) -> Option<Duration> {
        if self.attempt >= self.policy.max_attempts.max(1) {
            return None;
        }
        let wait = self.policy.delay(self.attempt);
        if self.policy.budget.is_some_and(|budget| self.started.elapsed() + wait > budget) {
            return None;
        }
        self.attempt += 1;
        Some(wait)
    }

    /// Records a failed attempt and waits as the policy says; false (without waiting)
    /// when the policy allows no more attempts.
    pub async fn wait_after_failure(&mut self) -> bool {
        match self.failed() {
            Some(wait) => {
                tokio::time::sleep(wait).await;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_stay_under_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 40,
            budget: None,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(policy.ceiling(1), Duration::from_millis(10));
        assert_eq!(policy.ceiling(3), Duration::from_millis(40));
        assert_eq!(policy.ceiling(30), Duration::from_secs(1));
        let mut attempts = policy.start();
        let mut waits = 0;
        while let Some(wait) = attempts.failed() {
            assert!(wait <= Duration::from_secs(1));
            waits += 1;
        }
        assert_eq!((waits, attempts.count()), (39, 40));
        assert_eq!(RetryPolicy::never().start().failed(), None);
    }

    #[test]
    fn the_budget_ends_retries_however_many_attempts_are_left() {
        let policy = RetryPolicy {
            max_attempts: u32::MAX,
            budget: Some(Duration::from_millis(30)),
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        };
        let mut attempts = policy.start();
        let mut slept = Duration::ZERO;
        while let Some(wait) = attempts.failed() {
            std::thread::sleep(wait);
            slept += wait;
        }
        assert!(attempts.elapsed() <= Duration::from_millis(30) + Duration::from_millis(25), "{slept:?}");
        assert!(RetryPolicy::forever().start().failed().is_some());
    }
}
