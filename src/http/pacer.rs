//! Pacing: request starts spaced by the source's rate limit, and every
//! request held when the platform answers with a rate limit.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces request starts at least `interval` apart, and lets a rate-limit
/// answer hold every request of the source.
pub(crate) struct Pacer {
    interval: Duration,
    next_slot: Mutex<Option<Instant>>,
}

impl Pacer {
    /// Starts `rate` a second, held to the range a configuration accepts
    /// (so no value makes an interval a `Duration` cannot hold).
    pub(crate) fn per_second(rate: f64) -> Self {
        Pacer::new(Duration::from_secs_f64(1.0 / rate.clamp(0.001, 1e6)))
    }

    pub(crate) fn new(interval: Duration) -> Self {
        Pacer {
            interval,
            next_slot: Mutex::new(None),
        }
    }

    pub(crate) async fn wait(&self) {
        let slot = {
            let mut next = self.next_slot.lock().expect("pacer lock");
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    pub(super) fn block_for(&self, pause: Duration) {
        let mut next = self.next_slot.lock().expect("pacer lock");
        let until = Instant::now() + pause;
        *next = Some(next.map_or(until, |n| n.max(until)));
    }
}
