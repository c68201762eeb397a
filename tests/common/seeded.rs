//! Seeded randomness for tests that pick random moments and values: the seed comes from an
//! environment variable when it is set, so that a failure (whose message prints its seed)
//! replays exactly. The one seed helper and the one PRNG of the integration tests
//! (`common::seeded`).
#![allow(dead_code)]

/// The seed in `$var` when it is set (a replay; anything but a number there is a mistake
/// worth stopping for), else the clock's nanoseconds passed through `shape`: `|t| t | 1`
/// for [`Rng`] (xorshift stays at 0 forever), or `|t| t % 100_000` for a seed short enough
/// to type.
pub fn seed_from_env(var: &str, shape: impl FnOnce(u64) -> u64) -> u64 {
    match std::env::var(var) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={s:?} is not a number")),
        Err(_) => shape(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        ),
    }
}

/// xorshift64: small, and the same sequence for a seed on every machine. The seed must not
/// be 0.
pub struct Rng(pub u64);

impl Rng {
    /// A generator for any seed, 0 included (the seed is spread over the bits first).
    pub fn from_seed(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

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
