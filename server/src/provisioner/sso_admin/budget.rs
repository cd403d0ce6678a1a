//! The client-side call budget: at most N calls a second to one AWS API.

use std::time::Duration;
use tokio::time::Instant;

/// At most `rate` calls a second, spread evenly: each call takes the next free slot.
pub struct Budget {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl Budget {
    pub fn per_second(rate: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate.max(1),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    pub async fn take(&self) {
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
