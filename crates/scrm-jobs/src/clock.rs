//! Where the engine gets the time: a [`Clock`], so that tests of retries, backoff, spacing,
//! cron and leases move time by hand instead of sleeping.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A boxed future that sleeps.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The source of "now" (epoch milliseconds) and of timed waits for the whole engine.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Epoch milliseconds now.
    fn now_ms(&self) -> i64;
    /// A future that completes once `now_ms() >= at_ms`.
    fn sleep_until(&self, at_ms: i64) -> Sleep;
}

/// The wall clock, with tokio timers for waits.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// Epoch milliseconds of the system clock.
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }

    fn sleep_until(&self, at_ms: i64) -> Sleep {
        // Clamp to a day: a far-future wake-up is only a fallback, and tokio timers beyond
        // ~2 years panic.
        let wait = (at_ms - system_now_ms()).clamp(0, 86_400_000);
        Box::pin(tokio::time::sleep(Duration::from_millis(wait as u64)))
    }
}

/// A clock that only moves when a test says so. Waits complete when [`ManualClock::advance`] or
/// [`ManualClock::set`] passes their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
    tick: Arc<watch::Sender<i64>>,
}

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: i64) -> Self {
        let (tx, _rx) = watch::channel(start_ms);
        Self {
            now: Arc::new(AtomicI64::new(start_ms)),
            tick: Arc::new(tx),
        }
    }

    /// A clock standing at the current wall-clock time (so rows look plausible).
    pub fn starting_now() -> Self {
        Self::new(system_now_ms())
    }

    /// Move time forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let now = self.now.fetch_add(ms, Ordering::SeqCst) + ms;
        self.tick.send_replace(now);
    }

    /// Jump to a time (forward or back).
    pub fn set(&self, at_ms: i64) {
        self.now.store(at_ms, Ordering::SeqCst);
        self.tick.send_replace(at_ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at_ms: i64) -> Sleep {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            // `wait_for` checks the current value first, so an already-passed deadline returns
            // at once; an error means the clock was dropped: then nothing will ever wake us.
            if rx.wait_for(|now| *now >= at_ms).await.is_err() {
                futures::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleep_ends_when_time_is_advanced_past_it() {
        let clock = ManualClock::new(1_000);
        let sleep = clock.sleep_until(1_500);
        let waiter = tokio::spawn(sleep);
        clock.advance(Duration::from_millis(400));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        clock.advance(Duration::from_millis(100));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(clock.now_ms(), 1_500);
    }
}
