//! The checksums of the LTX format: CRC-64/ISO (slicing-by-8 in four lanes, incremental), the
//! zero-advance matrix that lets one pass give both the file and the page checksum, page
//! checksums and the rolling database checksum. Pure arithmetic; it must not do I/O.

use super::header::{lock_pgno, CHECKSUM_FLAG};

// CRC-64/ISO (Go's crc64.ISO table): reflected poly 0xD800000000000000, init and xorout !0.

const CRC64_ISO_POLY_REFLECTED: u64 = 0xD800_0000_0000_0000;

/// Slicing-by-8 tables: `table[0]` is the classic byte table, `table[k]` advances k more bytes.
static CRC64_TABLES: [[u64; 256]; 8] = build_crc64_tables();

const fn build_crc64_tables() -> [[u64; 256]; 8] {
    let mut tables = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        tables[0][i] = zero_byte_advance(i as u64);
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
}

/// Incremental CRC-64/ISO.
#[derive(Clone, Debug)]
pub struct Crc64 {
    pub(super) state: u64, // inverted running remainder
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64 {
    pub fn new() -> Self {
        Crc64 { state: !0 }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.state = crc64_advance(self.state, data);
    }

    pub fn finish(&self) -> u64 {
        !self.state
    }
}

/// The CRC register after `data`, from `crc`: no init or final inversion. Linear over
/// GF(2) in the register and the data together, which [`ZeroAdvance`] relies on.
pub(super) fn crc64_advance(mut crc: u64, data: &[u8]) -> u64 {
    let mut blocks = data.chunks_exact(LANES * LANE_BYTES);
    for block in &mut blocks {
        crc = advance_in_lanes(crc, block);
    }
    advance_serial(crc, blocks.remainder())
}

/// Bytes each lane of [`advance_in_lanes`] takes.
const LANE_BYTES: usize = 1024;
/// Lanes of a block: enough independent registers to keep the table loads busy.
const LANES: usize = 4;

/// [`crc64_advance`] over one block of `LANES * LANE_BYTES` bytes: a register per lane, each
/// from zero but the first (the serial loop waits on every table load before the next), then
/// joined in order: `advance(r, A ++ B) = advance(advance(r, A), zeros) ^ advance(0, B)`.
fn advance_in_lanes(crc: u64, block: &[u8]) -> u64 {
    let mut regs = [0u64; LANES];
    regs[0] = crc;
    for i in (0..LANE_BYTES).step_by(8) {
        for (lane, reg) in regs.iter_mut().enumerate() {
            let at = lane * LANE_BYTES + i;
            let word: [u8; 8] = block[at..at + 8].try_into().unwrap_or_default();
            *reg = advance_word(*reg ^ u64::from_le_bytes(word));
        }
    }
    regs[1..]
        .iter()
        .fold(regs[0], |joined, &reg| OVER_LANE.apply(joined) ^ reg)
}

/// The register after eight more bytes already XORed into it.
fn advance_word(crc: u64) -> u64 {
    let t = &CRC64_TABLES;
    t[7][(crc & 0xff) as usize]
        ^ t[6][((crc >> 8) & 0xff) as usize]
        ^ t[5][((crc >> 16) & 0xff) as usize]
        ^ t[4][((crc >> 24) & 0xff) as usize]
        ^ t[3][((crc >> 32) & 0xff) as usize]
        ^ t[2][((crc >> 40) & 0xff) as usize]
        ^ t[1][((crc >> 48) & 0xff) as usize]
        ^ t[0][(crc >> 56) as usize]
}

/// Advancing over one lane of zeros, made at compile time (made at run time behind a lock,
/// a child forked while another thread made it would wait on that lock for ever).
static OVER_LANE: ZeroAdvance = ZeroAdvance::new(LANE_BYTES);

/// The register after one zero byte, bit by bit (the byte table's entries are those of the
/// bytes' own values).
const fn zero_byte_advance(mut crc: u64) -> u64 {
    let mut bit = 0;
    while bit < 8 {
        crc = if crc & 1 == 1 {
            (crc >> 1) ^ CRC64_ISO_POLY_REFLECTED
        } else {
            crc >> 1
        };
        bit += 1;
    }
    crc
}

/// Slicing-by-8, one register.
fn advance_serial(mut crc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        crc = advance_word(crc ^ u64::from_le_bytes(word));
    }
    for &b in chunks.remainder() {
        crc = CRC64_TABLES[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Advancing a CRC register over `len` zero bytes, as a GF(2) matrix (column `i` is the
/// image of register bit `i`). Since `advance(r, d) = advance(r, 0…0) ^ advance(0, d)`,
/// one CRC pass over a page gives both the file's running checksum and the page's own
/// checksum (`pgno ++ page`), where the decoder used to make a pass for each.
#[derive(Clone, Debug)]
pub struct ZeroAdvance {
    cols: [u64; 64],
}

impl ZeroAdvance {
    /// By squaring: `advance` over one zero byte, composed to `len` bytes.
    pub const fn new(len: usize) -> Self {
        let mut step = ZeroAdvance { cols: [0; 64] };
        let mut acc = ZeroAdvance { cols: [0; 64] };
        let mut i = 0;
        while i < 64 {
            step.cols[i] = zero_byte_advance(1 << i);
            acc.cols[i] = 1 << i; // identity
            i += 1;
        }
        let mut n = len;
        while n > 0 {
            if n & 1 == 1 {
                acc = acc.then(&step);
            }
            step = step.then(&step);
            n >>= 1;
        }
        acc
    }

    /// `other` applied after `self`.
    const fn then(&self, other: &ZeroAdvance) -> ZeroAdvance {
        let mut cols = [0; 64];
        let mut i = 0;
        while i < 64 {
            cols[i] = other.apply(self.cols[i]);
            i += 1;
        }
        ZeroAdvance { cols }
    }

    pub const fn apply(&self, mut reg: u64) -> u64 {
        let mut out = 0;
        let mut i = 0;
        while reg != 0 {
            out ^= self.cols[i] & (reg & 1).wrapping_neg();
            reg >>= 1;
            i += 1;
        }
        out
    }
}

pub fn crc64(data: &[u8]) -> u64 {
    let mut c = Crc64::new();
    c.update(data);
    c.finish()
}

/// `CHECKSUM_FLAG | crc64(pgno as big-endian u32 ++ page)`, as ltx's `ChecksumPage`.
pub fn page_checksum(pgno: u32, page: &[u8]) -> u64 {
    let mut c = Crc64::new();
    c.update(&pgno.to_be_bytes());
    c.update(page);
    CHECKSUM_FLAG | c.finish()
}

/// Rolling database checksum: the XOR of every page's checksum, lock page excluded.
///
/// The field holds the raw XOR of the pages' low 63 bits; [`DbChecksum::value`] adds
/// `CHECKSUM_FLAG` as ltx does (`chksum = FLAG | (chksum ^ page)`), so an empty
/// database is `CHECKSUM_FLAG`. Removing a page's old contents and adding its new ones
/// updates the checksum after a page write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DbChecksum(pub u64);

impl DbChecksum {
    /// Resumes from a checksum stored in a header or trailer.
    pub fn from_value(value: u64) -> Self {
        DbChecksum(value & !CHECKSUM_FLAG)
    }

    /// Adds a page; the lock page (derived from `page.len()`) is ignored as ltx ignores it.
    pub fn add_page(&mut self, pgno: u32, page: &[u8]) {
        if pgno != lock_pgno(page.len() as u32) {
            self.add_page_checksum(page_checksum(pgno, page));
        }
    }

    /// Adds a page by its [`page_checksum`], already computed (the caller skips the lock
    /// page).
    pub fn add_page_checksum(&mut self, sum: u64) {
        self.0 ^= sum & !CHECKSUM_FLAG;
    }

    /// Removes a page's previous contents (XOR is its own inverse).
    pub fn remove_page(&mut self, pgno: u32, page: &[u8]) {
        self.add_page(pgno, page);
    }

    /// The value stored in headers and trailers.
    pub fn value(&self) -> u64 {
        CHECKSUM_FLAG | self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::test_support::noise;

    #[test]
    fn zero_advance_splits_one_pass_into_file_and_page_checksums() {
        for len in [0usize, 1, 7, 8, 512, 4096, 65536] {
            let shift = ZeroAdvance::new(len);
            let page = noise(len as u64 + 3, len);
            let prefix = noise(99, 37);
            // Running checksum: prefix then page, in one go and from the page's own pass.
            let mut whole = Crc64::new();
            whole.update(&prefix);
            whole.update(&page);
            let mut split = Crc64::new();
            split.update(&prefix);
            split.state = shift.apply(split.state) ^ crc64_advance(0, &page);
            assert_eq!(split.finish(), whole.finish(), "len {len}");
            let pgno_crc = crc64_advance(!0, &7u32.to_be_bytes());
            let sum = CHECKSUM_FLAG | !(shift.apply(pgno_crc) ^ crc64_advance(0, &page));
            assert_eq!(sum, page_checksum(7, &page), "len {len}");
        }
    }

    #[test]
    fn crc64_iso_check_value() {
        assert_eq!(crc64(b"123456789"), 0xB909_56C7_75A4_1001);
        assert_eq!(crc64(b""), 0);
    }

    #[test]
    fn crc64_incremental_matches_one_shot_at_every_split() {
        let data = noise(7, 100);
        for split in 0..data.len() {
            let mut c = Crc64::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.finish(), crc64(&data), "split {split}");
        }
        // Slicing-by-8 against a plain bytewise loop.
        assert_eq!(!bytewise(!0, &data), crc64(&data));
    }

    /// The plain bytewise CRC loop, the reference for the faster paths.
    fn bytewise(mut crc: u64, data: &[u8]) -> u64 {
        for &b in data {
            crc = CRC64_TABLES[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
        }
        crc
    }

    #[test]
    fn lanes_give_the_bytewise_crc_at_every_block_boundary() {
        let block = LANES * LANE_BYTES;
        let lens = [
            block - 1,
            block,
            block + 1,
            block + 8,
            2 * block - 7,
            2 * block,
            3 * block + 5,
        ];
        for (k, &len) in lens.iter().enumerate() {
            let seed = 1000 + k as u64;
            let data = noise(seed, len);
            for start in [0u64, !0, 0x0123_4567_89ab_cdef] {
                let want = bytewise(start, &data);
                assert_eq!(
                    crc64_advance(start, &data),
                    want,
                    "noise seed {seed}, len {len}, register {start:#x}"
                );
            }
        }
        // A change in any one lane changes the result.
        let data = noise(5, block);
        for lane in 0..LANES {
            let mut changed = data.clone();
            changed[lane * LANE_BYTES + 3] ^= 0x10;
            assert_ne!(crc64(&changed), crc64(&data), "lane {lane}");
            assert_eq!(
                crc64_advance(!0, &changed),
                bytewise(!0, &changed),
                "lane {lane}"
            );
        }
    }

    #[test]
    fn db_checksum_matches_ltx_reference() {
        // ltx's TestChecksumReader: pages of 0x01, 0x02, 0x03 (512 B each).
        let mut sum = DbChecksum::default();
        for (pgno, byte) in [(1u32, 1u8), (2, 2), (3, 3)] {
            sum.add_page(pgno, &[byte; 512]);
        }
        assert_eq!(sum.value(), 0xefff_ffff_ecd9_9000);
        sum.remove_page(2, &[2; 512]);
        sum.add_page(2, &[2; 512]);
        assert_eq!(sum.value(), 0xefff_ffff_ecd9_9000);
        assert_eq!(DbChecksum::from_value(sum.value()), sum);
        assert_eq!(DbChecksum::default().value(), CHECKSUM_FLAG);
    }

    #[test]
    #[ignore = "checksums 1 GiB; run with --release --ignored"]
    fn db_checksum_excludes_lock_page_like_ltx() {
        // ltx's TestDecoder_DecodeDatabaseTo/WithLockPage canonical value.
        let page = vec![b'x'; 4096];
        let lock = lock_pgno(4096);
        let mut sum = DbChecksum::default();
        for pgno in 1..=lock + 10 {
            sum.add_page(
                pgno,
                if pgno == lock {
                    &[0u8; 4096][..]
                } else {
                    &page
                },
            );
        }
        assert_eq!(sum.value(), 0xc19b_668c_3766_62c7);
    }

    #[test]
    fn lock_page_numbers() {
        assert_eq!(lock_pgno(4096), 262_145);
        assert_eq!(lock_pgno(512), 2_097_153);
        assert_eq!(lock_pgno(65536), 16_385);
        let mut sum = DbChecksum::default();
        sum.add_page(lock_pgno(4096), &[9; 4096]);
        assert_eq!(sum, DbChecksum::default(), "lock page must not count");
    }
}
