//! Seeded randomness for tests that pick random moments and values: the seed comes from an
//! environment variable when it is set, so that a failure (whose message prints its seed)
//! replays exactly. Included with `#[path = "common/seeded.rs"] mod seeded;`.
#![allow(dead_code)]

/// The seed in `$var` when it holds a number (a replay), else the clock's nanoseconds
/// passed through `shape`: `|t| t | 1` for [`Rng`] (xorshift stays at 0 forever), or
/// `|t| t % 100_000` for a seed short enough to type.
pub fn seed_from_env(var: &str, shape: impl FnOnce(u64) -> u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            shape(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64,
            )
        })
}

/// xorshift64: small, and the same sequence for a seed on every machine. The seed must not
/// be 0.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
