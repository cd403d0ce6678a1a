//! The client-side call budget: at most N calls a second to one AWS API, slowed down when
//! AWS throttles (AIMD: the pace halves at each throttle and recovers a little with each
//! call after, back to the configured rate), so a throttled portal backs off at once
//! instead of failing jobs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The slowest pace throttling can push the budget to: one call every 5 s.
const SLOWEST: Duration = Duration::from_secs(5);

/// At most `rate` calls a second, spread evenly: each call takes the next free slot.
pub struct Budget {
    /// The configured pace.
    base: Duration,
    /// The pace now, in microseconds between calls (at least `base`).
    interval_us: AtomicU64,
    next: tokio::sync::Mutex<Instant>,
}

impl Budget {
    pub fn per_second(rate: u32) -> Self {
        let base = Duration::from_secs(1) / rate.max(1);
        Self {
            base,
            interval_us: AtomicU64::new(base.as_micros() as u64),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// The time between two calls now.
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us.load(Ordering::Relaxed))
    }

    /// AWS answered "slow down": halve the pace (multiplicative decrease).
    pub fn throttled(&self) {
        let slowest = SLOWEST.as_micros() as u64;
        let _ = self
            .interval_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |us| {
                Some(us.saturating_mul(2).min(slowest))
            });
    }

    pub async fn take(&self) {
        let interval = self.interval();
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot - now
        };
        // Each call brings the pace back a little (additive increase of the rate: a
        // twentieth of the configured interval off the current one).
        let base = self.base.as_micros() as u64;
        let _ = self
            .interval_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |us| {
                Some(us.saturating_sub(base / 20).max(base))
            });
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_halves_the_pace_and_calls_bring_it_back() {
        let b = Budget::per_second(10);
        assert_eq!(b.interval(), Duration::from_millis(100));
        b.throttled();
        b.throttled();
        assert_eq!(b.interval(), Duration::from_millis(400));
        for _ in 0..100 {
            b.throttled();
        }
        assert_eq!(b.interval(), SLOWEST, "never slower than the floor");
    }

    #[tokio::test]
    async fn calls_recover_the_configured_pace_and_no_further() {
        let b = Budget::per_second(1000);
        b.throttled();
        assert_eq!(b.interval(), Duration::from_millis(2));
        for _ in 0..5 {
            b.take().await;
        }
        assert!(
            b.interval() < Duration::from_millis(2),
            "{:?}",
            b.interval()
        );
        for _ in 0..50 {
            b.take().await;
        }
        assert_eq!(
            b.interval(),
            Duration::from_millis(1),
            "back to the configured rate"
        );
    }
}
