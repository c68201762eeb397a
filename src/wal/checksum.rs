//! SQLite's WAL checksum, computed a page at a time in independent lanes. The checksum is a
//! serial recurrence, but an affine one: each 8-byte step is `s ← M·s + v` with the same
//! matrix `M = [[1, 1], [1, 2]]` (mod 2³²), so a block's effect on any seed is `M^n·seed`
//! plus what the block gives from a zero seed. Computing four blocks from zero side by side
//! and combining them gives the same result as the serial loop with four independent
//! dependency chains instead of one (capture verifies every committed page on the commit
//! path). It must give exactly the serial result for every input.

/// Blocks computed side by side.
const LANES: usize = 4;

/// Below this many 8-byte words per lane, the serial loop is as fast.
const MIN_LANE_WORDS: usize = 16;

/// SQLite's WAL checksum of `data`, continuing from `seed`: for each pair of
/// 32-bit words `(x0, x1)`, `s1 += x0 + s2; s2 += x1 + s1` (wrapping), words
/// read big- or little-endian.  `data.len()` should be a multiple of 8 (it
/// always is in a WAL); a trailing partial block is ignored.
pub fn wal_checksum(big_endian: bool, seed: (u32, u32), data: &[u8]) -> (u32, u32) {
    match big_endian {
        true => checksum::<true>(seed, data),
        false => checksum::<false>(seed, data),
    }
}

fn checksum<const BE: bool>(seed: (u32, u32), data: &[u8]) -> (u32, u32) {
    let lane_words = data.len() / 8 / LANES;
    if lane_words < MIN_LANE_WORDS {
        return serial::<BE>(seed, data);
    }
    let (lanes, rest) = data.split_at(lane_words * 8 * LANES);
    let step = power(lane_words);
    let s = lanes_from_zero::<BE>(lanes, lane_words)
        .into_iter()
        .fold(seed, |s, block| add(apply(&step, s), block));
    serial::<BE>(s, rest)
}

/// What each of the `LANES` consecutive blocks of `lane_words` words gives from a zero seed.
fn lanes_from_zero<const BE: bool>(data: &[u8], lane_words: usize) -> [(u32, u32); LANES] {
    let (a, rest) = data.split_at(lane_words * 8);
    let (b, rest) = rest.split_at(lane_words * 8);
    let (c, d) = rest.split_at(lane_words * 8);
    let mut s = [(0u32, 0u32); LANES];
    let words = a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .zip(c.chunks_exact(8).zip(d.chunks_exact(8)));
    for ((wa, wb), (wc, wd)) in words {
        for (lane, w) in s.iter_mut().zip([wa, wb, wc, wd]) {
            *lane = step(*lane, word::<BE>(w));
        }
    }
    s
}

fn serial<const BE: bool>(seed: (u32, u32), data: &[u8]) -> (u32, u32) {
    data.chunks_exact(8)
        .fold(seed, |s, w| step(s, word::<BE>(w)))
}

#[inline(always)]
fn step((s1, s2): (u32, u32), (x0, x1): (u32, u32)) -> (u32, u32) {
    let s1 = s1.wrapping_add(x0).wrapping_add(s2);
    (s1, s2.wrapping_add(x1).wrapping_add(s1))
}

#[inline(always)]
fn word<const BE: bool>(w: &[u8]) -> (u32, u32) {
    let x0 = [w[0], w[1], w[2], w[3]];
    let x1 = [w[4], w[5], w[6], w[7]];
    match BE {
        true => (u32::from_be_bytes(x0), u32::from_be_bytes(x1)),
        false => (u32::from_le_bytes(x0), u32::from_le_bytes(x1)),
    }
}

/// A 2×2 matrix mod 2³², rows first.
type Matrix = [[u32; 2]; 2];

/// `M^n`: what `n` steps do to a seed.
fn power(mut n: usize) -> Matrix {
    let mut result: Matrix = [[1, 0], [0, 1]];
    let mut base: Matrix = [[1, 1], [1, 2]];
    while n > 0 {
        if n & 1 == 1 {
            result = mul(&result, &base);
        }
        base = mul(&base, &base);
        n >>= 1;
    }
    result
}

fn mul(a: &Matrix, b: &Matrix) -> Matrix {
    let cell = |i: usize, j: usize| {
        a[i][0]
            .wrapping_mul(b[0][j])
            .wrapping_add(a[i][1].wrapping_mul(b[1][j]))
    };
    [[cell(0, 0), cell(0, 1)], [cell(1, 0), cell(1, 1)]]
}

fn apply(m: &Matrix, (s1, s2): (u32, u32)) -> (u32, u32) {
    (
        m[0][0]
            .wrapping_mul(s1)
            .wrapping_add(m[0][1].wrapping_mul(s2)),
        m[1][0]
            .wrapping_mul(s1)
            .wrapping_add(m[1][1].wrapping_mul(s2)),
    )
}

fn add(a: (u32, u32), b: (u32, u32)) -> (u32, u32) {
    (a.0.wrapping_add(b.0), a.1.wrapping_add(b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths around every lane boundary, both byte orders, seeds with every bit pattern
    /// that matters for wrapping: the lanes give exactly the serial loop's result.
    #[test]
    fn lanes_give_the_serial_result() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..(65536 + 24 + 64))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let lens = [
            0, 8, 24, 504, 512, 520, 1024, 4096, 4104, 4120, 8192, 65536, 65560,
        ];
        let seeds = [(0, 0), (1, 2), (u32::MAX, u32::MAX), (0x8000_0000, 7)];
        for len in lens.into_iter().chain((0..600).step_by(8)) {
            for seed in seeds {
                for be in [false, true] {
                    let d = &data[3..3 + len];
                    let want = match be {
                        true => serial::<true>(seed, d),
                        false => serial::<false>(seed, d),
                    };
                    assert_eq!(
                        wal_checksum(be, seed, d),
                        want,
                        "len {len} seed {seed:?} be {be}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_trailing_partial_word_is_ignored() {
        let d: Vec<u8> = (0..4099u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(
            wal_checksum(false, (5, 6), &d),
            wal_checksum(false, (5, 6), &d[..4096])
        );
    }
}
