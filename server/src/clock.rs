//! The one clock every due time is compared against (invariant 8).

use app::domain::Timestamp;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that moves only when told to: tests and benchmarks drive the worker with it.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicI64::new(start.millis()))
    }

    pub fn advance(&self, d: std::time::Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// The database's clock, as every replica reads it: a local clock plus the offset to the
/// database server's time, measured at start and every minute (half the round trip
/// allowed for). Replicas whose own clocks disagree still agree on when a lease lapses
/// and a grant ends, because they all compare against the same server's time.
pub struct DatabaseClock {
    local: std::sync::Arc<dyn Clock>,
    offset_ms: AtomicI64,
}

/// How often the offset to the database's clock is measured again.
pub const DATABASE_CLOCK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl DatabaseClock {
    /// Measures the offset once (the database must answer), then keeps it fresh in the
    /// background for as long as the clock is in use.
    pub async fn start(
        store: crate::store::Store,
        local: std::sync::Arc<dyn Clock>,
    ) -> anyhow::Result<std::sync::Arc<Self>> {
        let clock = std::sync::Arc::new(Self {
            local,
            offset_ms: AtomicI64::new(0),
        });
        clock.sync(&store).await?;
        let weak = std::sync::Arc::downgrade(&clock);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(DATABASE_CLOCK_EVERY).await;
                let Some(clock) = weak.upgrade() else { return };
                if let Err(e) = clock.sync(&store).await {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot read the database's clock; keeping the last offset"
                    );
                }
            }
        });
        Ok(clock)
    }

    /// Reads the database's time and sets the offset from the local clock to it.
    pub async fn sync(&self, store: &crate::store::Store) -> anyhow::Result<()> {
        let db = store.database_time().await?;
        let after = self.local.now();
        // The database read its clock somewhere between the call and `after`. Taking
        // `after` keeps this replica's estimate at or behind the database's time, never
        // ahead: a job is never due early, and no revocation starts before `ends_at` (a
        // midpoint ran ahead by up to half a round trip, tens of milliseconds when the
        // read opened a connection: the chaos harness saw a delete a few milliseconds
        // before the end). The price is lateness of at most one round trip.
        let offset = db.millis() - after.millis();
        let old = self.offset_ms.swap(offset, Ordering::SeqCst);
        if (offset - old).abs() > 1_000 {
            tracing::info!(
                offset_ms = offset,
                "this replica's clock differs from the database's"
            );
        }
        Ok(())
    }

    /// The last measured offset from the local clock to the database's, in ms.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

impl Clock for DatabaseClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.local.now().millis() + self.offset_ms.load(Ordering::SeqCst))
    }
}
