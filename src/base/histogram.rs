//! A histogram of durations in microseconds, in buckets a quarter of a power of two wide, so
//! that percentiles of anything from a microsecond to an hour cost a few hundred bytes and
//! are off by at most a quarter. It must stay a pure value: the caller measures.

/// Buckets 0–3 hold 0–3 µs exactly; above that, four per power of two, up to 2^32 µs.
const BUCKETS: usize = 4 + 30 * 4;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: [u32; BUCKETS],
    total: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: [0; BUCKETS],
            total: 0,
            max_us: 0,
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize; // 2^exp ≤ us
    let quarter = ((us >> (exp - 2)) & 3) as usize;
    (4 * (exp - 1) + quarter).min(BUCKETS - 1)
}

/// The largest value bucket `b` holds.
fn upper_bound(b: usize) -> u64 {
    if b < 4 {
        return b as u64;
    }
    let exp = b / 4 + 1;
    let quarter = (b % 4) as u64;
    ((4 + quarter + 1) << (exp - 2)) - 1
}

impl Histogram {
    pub fn record(&mut self, us: u64) {
        let b = bucket_of(us);
        self.counts[b] = self.counts[b].saturating_add(1);
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value `p` (0–100) percent of the durations are at or below, rounded up to its
    /// bucket's bound (never above the largest seen); 0 when nothing was recorded.
    pub fn percentile(&self, p: f64) -> u64 {
        let want = ((self.total as f64) * p / 100.0).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (b, &n) in self.counts.iter().enumerate() {
            seen += u64::from(n);
            if seen >= want && n > 0 {
                return upper_bound(b).min(self.max_us);
            }
        }
        self.max_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_that_holds_it_within_a_quarter() {
        for us in (0..5000).chain([1 << 20, (1 << 32) - 1, 123_456_789]) {
            let b = bucket_of(us);
            assert!(us <= upper_bound(b), "{us} above bucket {b}");
            if b > 0 {
                assert!(us > upper_bound(b - 1), "{us} belongs below bucket {b}");
            }
            assert!(
                upper_bound(b) as f64 <= us as f64 * 1.25 + 1.0,
                "{us}: {}",
                upper_bound(b)
            );
        }
    }

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(99.0), 0);
        for us in 1..=100 {
            h.record(us);
        }
        assert_eq!(h.count(), 100);
        let p50 = h.percentile(50.0);
        assert!((50..=63).contains(&p50), "{p50}");
        let p99 = h.percentile(99.0);
        assert!((99..=100).contains(&p99), "{p99}");
        assert_eq!(h.percentile(100.0), 100);
    }
}
