//! The retry schedule after a failed step: exponential backoff with jitter, and the time
//! before which shipping waits. It owns the count of failures in a row and the jitter's
//! random state; it must not judge what failed (the worker decides who waits).

use crate::base::clock::now_ms;

/// The longest wait between two attempts (before jitter).
pub const MAX_BACKOFF_MS: u64 = 30_000;

pub(super) struct Backoff {
    /// Failed steps in a row; a step that writes to the replica starts over.
    failures: u32,
    /// Shipping waits until this time (ms since the epoch).
    retry_at: u64,
    /// The jitter's generator state, different in every process.
    seed: u64,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff {
            failures: 0,
            retry_at: 0,
            seed: now_ms() ^ (std::process::id() as u64) << 32,
        }
    }

    /// When shipping may be tried again, while that is after `now`.
    pub fn waiting(&self, now: u64) -> Option<u64> {
        (now < self.retry_at).then_some(self.retry_at)
    }

    pub fn wait_until(&mut self, retry_at: u64) {
        self.retry_at = retry_at;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure and says when to try again: 0.5 s, 1 s, 2 s … capped, ±25%.
    pub fn failed(&mut self, now: u64) -> u64 {
        self.failures = self.failures.saturating_add(1);
        let base = (500u64 << self.failures.min(8).saturating_sub(1)).min(MAX_BACKOFF_MS);
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let jitter = (self.seed >> 33) % (base / 2 + 1);
        now + base * 3 / 4 + jitter
    }
}
