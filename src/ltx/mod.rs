//! LTX file encoding/decoding (the superfly/ltx v0.5 format read and written by Litestream v0.5.x) and the CRC-64/ISO checksums it uses; it does no I/O besides the `Read`/`Write` it is handed and reads no clock (timestamps are passed in).
//!
//! # File layout (every integer big-endian)
//!
//! ```text
//! header   100 B  "LTX1" flags:u32 page_size:u32 commit:u32 min_txid:u64 max_txid:u64
//!                 timestamp_ms:u64 pre_apply_checksum:u64 wal_offset:u64 wal_size:u64
//!                 wal_salt1:u32 wal_salt2:u32 node_id:u64, then 24 reserved zero bytes
//! pages    per page: pgno:u32 flags:u16 (=1, "size follows") size:u32, then `size` bytes
//!          of one LZ4 *block* (not frame) that decompresses to exactly page_size bytes
//! end      6 zero bytes (an all-zero page header)
//! index    per page, ascending: uvarint pgno, uvarint offset (of its page header from
//!          file start), uvarint size (page header + size field + compressed bytes);
//!          then uvarint 0; then the index's byte length (entries + terminator) as u64
//! trailer  post_apply_checksum:u64 file_checksum:u64
//! ```
//!
//! The file checksum is `1<<63 | crc64` over the header, every page header and size
//! field, the *decompressed* page data (not the compressed bytes), the end marker, the
//! index with its length and the trailer's first 8 bytes. Page checksums are
//! `1<<63 | crc64(pgno as u32 BE ++ page)`; the database checksum is `1<<63 | XOR` of the
//! page checksums of every page except the lock page. With header flag
//! [`FLAG_NO_CHECKSUM`] both pre- and post-apply checksums must be zero.
//! Snapshots are files with `min_txid == 1` and hold every page `1..=commit` but the lock
//! page. Files from ltx before v0.5 (LZ4 frames, no size field) are rejected.
//!
//! # Interop with litestream v0.5.17 (checked by hand against the real binary)
//!
//! - Everything litestream writes (L0, L1 compactions, L9 snapshots; page sizes 512, 4096,
//!   65536) has flags `FLAG_NO_CHECKSUM` and zero pre/post-apply checksums, and decodes and
//!   verifies here. Its snapshots are named `1-<txid>` and carry the WAL fields of their last
//!   transaction; its compactions have zero WAL fields.
//! - A replica written by this encoder (L9 `1-1` snapshot of a checkpointed database, then
//!   L0 `2-2`, `3-3` with the changed pages, no-checksum) restores byte-for-byte equal to
//!   the source, including a last file whose smaller `commit` shrinks the database.
//! - Real checksums (flags 0) are read and verified by litestream (it computed the same
//!   snapshot checksum as [`DbChecksum`] and rejected a tampered one), but `restore` fails
//!   with "post-apply checksum not allowed" whenever the *last* file of the restore plan
//!   has a non-zero post-apply checksum: it compacts the plan under the no-checksum flag
//!   and copies that value along. Files meant for litestream must use `FLAG_NO_CHECKSUM`.
//! - A snapshot needs `min_txid == 1` (`1-1` or `1-N`); a `5-5` snapshot fails with
//!   "cannot decode non-snapshot LTX file". L0 files must continue at `max_txid + 1`.
//! - The header timestamp is not needed to restore (0 works); litestream copies it into
//!   the file's mtime / the object's `litestream-timestamp` metadata for `-timestamp`.
//! - `commit` must match the pages available: more pages than exist fails the restore.
//!   The lock page is never stored (not exercised: it needs a database over 1 GiB).

mod merge;
pub use merge::merge;

use std::fmt;
use std::io::{self, BufReader, Read, Write};

pub const MAGIC: &[u8; 4] = b"LTX1";
pub const HEADER_SIZE: usize = 100;
pub const PAGE_HEADER_SIZE: usize = 6;
pub const TRAILER_SIZE: usize = 16;
/// Header flag: the file tracks no database checksums (pre/post-apply are zero).
/// Named `HeaderFlagNoChecksum = 1 << 1` in superfly/ltx; it is the only defined flag.
pub const FLAG_NO_CHECKSUM: u32 = 0x2;
const HEADER_FLAG_MASK: u32 = FLAG_NO_CHECKSUM;
/// Page header flag: a u32 compressed size follows and the data is an LZ4 block.
pub const PAGE_FLAG_SIZE: u16 = 0x1;
/// Set on every stored checksum so that a valid checksum is never zero.
pub const CHECKSUM_FLAG: u64 = 1 << 63;
pub const MIN_PAGE_SIZE: u32 = 512;
pub const MAX_PAGE_SIZE: u32 = 65536;
/// SQLite's PENDING_BYTE: the page containing it (the lock page) is never used.
const PENDING_BYTE: u32 = 0x4000_0000;

#[derive(Debug)]
pub enum LtxError {
    Io(io::Error),
    /// The input ended before the structure being read was complete.
    Truncated,
    BadMagic,
    BadHeader(String),
    BadPage(String),
    BadIndex(String),
    BadTrailer(String),
    /// The trailer's file checksum does not match the file's contents.
    ChecksumMismatch {
        expected: u64,
        actual: u64,
    },
    /// A snapshot's post-apply checksum does not match the checksum of its pages.
    PostApplyChecksumMismatch {
        expected: u64,
        actual: u64,
    },
}

impl fmt::Display for LtxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LtxError::Io(e) => write!(f, "ltx i/o error: {e}"),
            LtxError::Truncated => write!(f, "ltx file is truncated"),
            LtxError::BadMagic => write!(f, "not an ltx file (magic is not \"LTX1\")"),
            LtxError::BadHeader(m) => write!(f, "invalid ltx header: {m}"),
            LtxError::BadPage(m) => write!(f, "invalid ltx page: {m}"),
            LtxError::BadIndex(m) => write!(f, "invalid ltx page index: {m}"),
            LtxError::BadTrailer(m) => write!(f, "invalid ltx trailer: {m}"),
            LtxError::ChecksumMismatch { expected, actual } => write!(
                f,
                "ltx file checksum mismatch: trailer says {expected:016x}, contents hash to {actual:016x}"
            ),
            LtxError::PostApplyChecksumMismatch { expected, actual } => write!(
                f,
                "ltx snapshot post-apply checksum mismatch: trailer says {expected:016x}, pages sum to {actual:016x}"
            ),
        }
    }
}

impl std::error::Error for LtxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LtxError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for LtxError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            LtxError::Truncated
        } else {
            LtxError::Io(e)
        }
    }
}

pub fn is_valid_page_size(page_size: u32) -> bool {
    page_size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size)
}

/// The page holding byte offset 0x40000000 (SQLite's lock page); `page_size` should be valid.
pub fn lock_pgno(page_size: u32) -> u32 {
    PENDING_BYTE / page_size.max(1) + 1
}

// ---------------------------------------------------------------------------------------
// CRC-64/ISO (Go's crc64.ISO table): reflected poly 0xD800000000000000, init and xorout !0.

const CRC64_ISO_POLY_REFLECTED: u64 = 0xD800_0000_0000_0000;

/// Slicing-by-8 tables: table[0] is the classic byte table, table[k] advances k more bytes.
static CRC64_TABLES: [[u64; 256]; 8] = build_crc64_tables();

const fn build_crc64_tables() -> [[u64; 256]; 8] {
    let mut tables = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC64_ISO_POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
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
    state: u64, // inverted running remainder
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
fn crc64_advance(mut crc: u64, data: &[u8]) -> u64 {
    let t = &CRC64_TABLES;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        crc ^= u64::from_le_bytes(word);
        crc = t[7][(crc & 0xff) as usize]
            ^ t[6][((crc >> 8) & 0xff) as usize]
            ^ t[5][((crc >> 16) & 0xff) as usize]
            ^ t[4][((crc >> 24) & 0xff) as usize]
            ^ t[3][((crc >> 32) & 0xff) as usize]
            ^ t[2][((crc >> 40) & 0xff) as usize]
            ^ t[1][((crc >> 48) & 0xff) as usize]
            ^ t[0][(crc >> 56) as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
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
    pub fn new(len: usize) -> Self {
        let mut step = ZeroAdvance {
            cols: std::array::from_fn(|i| crc64_advance(1 << i, &[0])),
        };
        let mut acc = ZeroAdvance {
            cols: std::array::from_fn(|i| 1 << i), // identity
        };
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
    fn then(&self, other: &ZeroAdvance) -> ZeroAdvance {
        ZeroAdvance {
            cols: std::array::from_fn(|i| other.apply(self.cols[i])),
        }
    }

    pub fn apply(&self, mut reg: u64) -> u64 {
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

// ---------------------------------------------------------------------------------------
// Header & trailer

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    pub flags: u32,
    pub page_size: u32,
    /// Database size in pages after this file is applied.
    pub commit: u32,
    pub min_txid: u64,
    pub max_txid: u64,
    /// Milliseconds since the Unix epoch; litestream uses it for point-in-time restore.
    pub timestamp_ms: u64,
    pub pre_apply_checksum: u64,
    /// Offset/size of the WAL range this file was built from; zero if not from a WAL.
    pub wal_offset: u64,
    pub wal_size: u64,
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    pub node_id: u64,
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b
    }

    /// Parses and validates the first [`HEADER_SIZE`] bytes of `b`.
    pub fn decode(b: &[u8]) -> Result<Header, LtxError> {
        if b.len() < HEADER_SIZE {
            return Err(LtxError::Truncated);
        }
        if &b[0..4] != MAGIC {
            return Err(LtxError::BadMagic);
        }
        let header = Header {
            flags: be_u32(b, 4),
            page_size: be_u32(b, 8),
            commit: be_u32(b, 12),
            min_txid: be_u64(b, 16),
            max_txid: be_u64(b, 24),
            timestamp_ms: be_u64(b, 32),
            pre_apply_checksum: be_u64(b, 40),
            wal_offset: be_u64(b, 48),
            wal_size: be_u64(b, 56),
            wal_salt1: be_u32(b, 64),
            wal_salt2: be_u32(b, 68),
            node_id: be_u64(b, 72),
        };
        header.validate()?;
        Ok(header)
    }

    /// A snapshot holds the whole database; ltx defines it as "starts at transaction 1".
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == 1
    }

    pub fn no_checksum(&self) -> bool {
        self.flags & FLAG_NO_CHECKSUM != 0
    }

    pub fn lock_pgno(&self) -> u32 {
        lock_pgno(self.page_size)
    }

    /// The rules of ltx's `Header.Validate`.
    pub fn validate(&self) -> Result<(), LtxError> {
        let bad = |m: String| Err(LtxError::BadHeader(m));
        if self.flags & !HEADER_FLAG_MASK != 0 {
            return bad(format!("unknown flags 0x{:08x}", self.flags));
        }
        if !is_valid_page_size(self.page_size) {
            return bad(format!(
                "page size {} is not a power of two in 512..=65536",
                self.page_size
            ));
        }
        if self.min_txid == 0 || self.max_txid == 0 {
            return bad("min and max transaction ids must be non-zero".into());
        }
        if self.min_txid > self.max_txid {
            return bad(format!(
                "transaction ids out of order: {} > {}",
                self.min_txid, self.max_txid
            ));
        }
        // ltx stores these as signed 64-bit integers.
        if self.wal_offset > i64::MAX as u64 || self.wal_size > i64::MAX as u64 {
            return bad("wal offset/size exceed i64::MAX".into());
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0) && self.wal_offset == 0 {
            return bad("wal salts set without a wal offset".into());
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return bad("wal size set without a wal offset".into());
        }
        if self.is_snapshot() || self.no_checksum() {
            if self.pre_apply_checksum != 0 {
                return bad(if self.is_snapshot() {
                    "snapshot must have a zero pre-apply checksum".into()
                } else {
                    "pre-apply checksum must be zero with the no-checksum flag".into()
                });
            }
        } else if self.pre_apply_checksum & CHECKSUM_FLAG == 0 {
            return bad(format!(
                "pre-apply checksum {:016x} lacks the 1<<63 flag (required unless no-checksum)",
                self.pre_apply_checksum
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub post_apply_checksum: u64,
    pub file_checksum: u64,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        b[0..8].copy_from_slice(&self.post_apply_checksum.to_be_bytes());
        b[8..16].copy_from_slice(&self.file_checksum.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Trailer, LtxError> {
        if b.len() < TRAILER_SIZE {
            return Err(LtxError::Truncated);
        }
        Ok(Trailer {
            post_apply_checksum: be_u64(b, 0),
            file_checksum: be_u64(b, 8),
        })
    }

    /// The rules of ltx's `Trailer.Validate`.
    pub fn validate(&self, header: &Header) -> Result<(), LtxError> {
        check_post_apply(header, self.post_apply_checksum)?;
        if self.file_checksum & CHECKSUM_FLAG == 0 {
            return Err(LtxError::BadTrailer(format!(
                "file checksum {:016x} lacks the 1<<63 flag",
                self.file_checksum
            )));
        }
        Ok(())
    }
}

fn check_post_apply(header: &Header, post_apply_checksum: u64) -> Result<(), LtxError> {
    if header.no_checksum() {
        if post_apply_checksum != 0 {
            return Err(LtxError::BadTrailer(
                "post-apply checksum must be zero with the no-checksum flag".into(),
            ));
        }
    } else if post_apply_checksum & CHECKSUM_FLAG == 0 {
        return Err(LtxError::BadTrailer(format!(
            "post-apply checksum {post_apply_checksum:016x} lacks the 1<<63 flag"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Page rules shared by the encoder and decoder.

/// Checks `pgno` may follow `prev_pgno` (0 = none yet) in a file with `header`.
fn check_page_order(header: &Header, prev_pgno: u32, pgno: u32) -> Result<(), LtxError> {
    let lock = header.lock_pgno();
    if pgno == 0 {
        return Err(LtxError::BadPage("page number 0".into()));
    }
    if pgno > header.commit {
        return Err(LtxError::BadPage(format!(
            "page {pgno} is beyond the database size of {} pages",
            header.commit
        )));
    }
    if pgno == lock {
        return Err(LtxError::BadPage(format!(
            "page {pgno} is the lock page and is never stored"
        )));
    }
    if header.is_snapshot() {
        let expected = next_snapshot_pgno(prev_pgno, lock);
        if pgno != expected {
            return Err(LtxError::BadPage(format!(
                "snapshot must hold every page in order: expected page {expected}, got {pgno}"
            )));
        }
    } else if pgno <= prev_pgno {
        return Err(LtxError::BadPage(format!(
            "page numbers must ascend: {pgno} after {prev_pgno}"
        )));
    }
    Ok(())
}

fn next_snapshot_pgno(prev_pgno: u32, lock: u32) -> u32 {
    let next = prev_pgno.saturating_add(1);
    if next == lock {
        next.saturating_add(1)
    } else {
        next
    }
}

/// Snapshots must end with the last non-lock page of the database.
fn check_snapshot_complete(header: &Header, last_pgno: u32) -> Result<(), LtxError> {
    if !header.is_snapshot() {
        return Ok(());
    }
    let expected_last = if header.commit == header.lock_pgno() {
        header.commit - 1
    } else {
        header.commit
    };
    if last_pgno != expected_last {
        return Err(LtxError::BadPage(format!(
            "snapshot ends at page {last_pgno} but the database has {} pages",
            header.commit
        )));
    }
    Ok(())
}

fn append_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn append_index_entry(index: &mut Vec<u8>, pgno: u32, offset: u64, size: u64) {
    append_uvarint(index, pgno as u64);
    append_uvarint(index, offset);
    append_uvarint(index, size);
}

/// Largest LZ4 block we accept for one page; lz4_flex's bound exceeds the Go encoder's.
fn max_compressed_size(page_size: u32) -> usize {
    lz4_flex::block::get_maximum_output_size(page_size as usize)
}

// ---------------------------------------------------------------------------------------
// Encoder

/// Streams an LTX file to `W`. After an I/O error the encoder must be discarded; a
/// rejected page (a validation error) leaves it usable.
pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    hash: Crc64,
    bytes_written: u64,
    prev_pgno: u32,
    /// Encoded page-index entries; pages arrive in ascending order so this is sorted.
    index: Vec<u8>,
    compressed: Vec<u8>,
    /// Checksum of a snapshot's pages, to check the post-apply checksum against.
    snapshot_checksum: DbChecksum,
}

impl<W: Write> Encoder<W> {
    /// Validates `header` and writes it.
    pub fn new(mut w: W, header: Header) -> Result<Self, LtxError> {
        header.validate()?;
        let bytes = header.encode();
        w.write_all(&bytes)?;
        let mut hash = Crc64::new();
        hash.update(&bytes);
        Ok(Encoder {
            w,
            header,
            hash,
            bytes_written: HEADER_SIZE as u64,
            prev_pgno: 0,
            index: Vec::new(),
            compressed: vec![0; max_compressed_size(header.page_size)],
            snapshot_checksum: DbChecksum::default(),
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Appends a page. Page numbers must ascend, stay within `commit` and skip the lock
    /// page; a snapshot must hold every page from 1 up.
    pub fn encode_page(&mut self, pgno: u32, data: &[u8]) -> Result<(), LtxError> {
        if data.len() != self.header.page_size as usize {
            return Err(LtxError::BadPage(format!(
                "page {pgno} has {} bytes, page size is {}",
                data.len(),
                self.header.page_size
            )));
        }
        check_page_order(&self.header, self.prev_pgno, pgno)?;
        let size = lz4_flex::block::compress_into(data, &mut self.compressed).map_err(|e| {
            LtxError::BadPage(format!("lz4 compression of page {pgno} failed: {e}"))
        })?;

        let mut page_header = [0u8; PAGE_HEADER_SIZE + 4];
        page_header[0..4].copy_from_slice(&pgno.to_be_bytes());
        page_header[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
        page_header[6..10].copy_from_slice(&(size as u32).to_be_bytes());
        self.w.write_all(&page_header)?;
        self.w.write_all(&self.compressed[..size])?;
        // The checksum covers the uncompressed page, not the compressed bytes.
        self.hash.update(&page_header);
        self.hash.update(data);

        let entry_size = (page_header.len() + size) as u64;
        append_index_entry(&mut self.index, pgno, self.bytes_written, entry_size);
        self.bytes_written += entry_size;
        self.prev_pgno = pgno;
        if self.header.is_snapshot() && !self.header.no_checksum() {
            self.snapshot_checksum.add_page(pgno, data);
        }
        Ok(())
    }

    /// Writes the end marker, page index and trailer, flushes, and returns the writer.
    /// `post_apply_checksum` must be 0 with `FLAG_NO_CHECKSUM`, else the database checksum
    /// after this file (checked against the pages for a snapshot).
    pub fn finish(mut self, post_apply_checksum: u64) -> Result<(W, Trailer), LtxError> {
        check_snapshot_complete(&self.header, self.prev_pgno)?;
        check_post_apply(&self.header, post_apply_checksum)?;
        if self.header.is_snapshot() && !self.header.no_checksum() {
            let actual = self.snapshot_checksum.value();
            if post_apply_checksum != actual {
                return Err(LtxError::PostApplyChecksumMismatch {
                    expected: post_apply_checksum,
                    actual,
                });
            }
        }

        let mut tail = Vec::with_capacity(PAGE_HEADER_SIZE + self.index.len() + 1 + 8 + 8);
        tail.extend_from_slice(&[0u8; PAGE_HEADER_SIZE]);
        tail.extend_from_slice(&self.index);
        tail.push(0); // index terminator: uvarint pgno 0
        let index_len = self.index.len() as u64 + 1;
        tail.extend_from_slice(&index_len.to_be_bytes());
        tail.extend_from_slice(&post_apply_checksum.to_be_bytes());
        self.hash.update(&tail);
        let trailer = Trailer {
            post_apply_checksum,
            file_checksum: CHECKSUM_FLAG | self.hash.finish(),
        };
        tail.extend_from_slice(&trailer.file_checksum.to_be_bytes());
        self.w.write_all(&tail)?;
        self.w.flush()?;
        Ok((self.w, trailer))
    }
}

// ---------------------------------------------------------------------------------------
// Decoder

/// Streams an LTX file from `R`, verifying it as it goes; memory use is a few pages
/// plus a few bytes per page for the index check. After an error it stays failed.
pub struct Decoder<R: Read> {
    r: BufReader<R>,
    header: Header,
    hash: Crc64,
    bytes_read: u64,
    prev_pgno: u32,
    pages_done: bool,
    failed: bool,
    /// The page index rebuilt from the pages read, compared with the stored one.
    expected_index: Vec<u8>,
    compressed: Vec<u8>,
    snapshot_checksum: DbChecksum,
    /// Advances a CRC register over one page.
    page_shift: ZeroAdvance,
    /// The checksum of the page `next_page` returned last.
    page_sum: u64,
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(r: R) -> Result<Self, LtxError> {
        let mut r = BufReader::new(r);
        let mut bytes = [0u8; HEADER_SIZE];
        r.read_exact(&mut bytes)?;
        let header = Header::decode(&bytes)?;
        let mut hash = Crc64::new();
        hash.update(&bytes);
        Ok(Decoder {
            r,
            header,
            hash,
            bytes_read: HEADER_SIZE as u64,
            prev_pgno: 0,
            pages_done: false,
            failed: false,
            expected_index: Vec::new(),
            compressed: Vec::new(),
            snapshot_checksum: DbChecksum::default(),
            page_shift: ZeroAdvance::new(header.page_size as usize),
            page_sum: 0,
        })
    }

    /// `page_checksum(pgno, page)` of the page [`Decoder::next_page`] returned last,
    /// computed in the pass that checks the file.
    pub fn page_checksum(&self) -> u64 {
        self.page_sum
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Decodes the next page into `buf` (resized to the page size) and returns its
    /// number, or `None` after the last page.
    pub fn next_page(&mut self, buf: &mut Vec<u8>) -> Result<Option<u32>, LtxError> {
        if self.failed {
            return Err(LtxError::BadPage(
                "decoder already failed on this file".into(),
            ));
        }
        if self.pages_done {
            return Ok(None);
        }
        let result = self.read_page(buf);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn read_hashed(&mut self, buf: &mut [u8]) -> Result<(), LtxError> {
        self.r.read_exact(buf)?;
        self.hash.update(buf);
        self.bytes_read += buf.len() as u64;
        Ok(())
    }

    fn read_page(&mut self, buf: &mut Vec<u8>) -> Result<Option<u32>, LtxError> {
        let offset = self.bytes_read;
        let mut page_header = [0u8; PAGE_HEADER_SIZE];
        self.read_hashed(&mut page_header)?;
        if page_header == [0u8; PAGE_HEADER_SIZE] {
            check_snapshot_complete(&self.header, self.prev_pgno)?;
            self.pages_done = true;
            return Ok(None);
        }
        let pgno = be_u32(&page_header, 0);
        let flags = u16::from_be_bytes([page_header[4], page_header[5]]);
        if flags & !PAGE_FLAG_SIZE != 0 {
            return Err(LtxError::BadPage(format!(
                "page {pgno} has unknown flags 0x{flags:04x}"
            )));
        }
        if flags & PAGE_FLAG_SIZE == 0 {
            return Err(LtxError::BadPage(format!(
                "page {pgno} uses the pre-v0.5 LZ4 frame encoding, which is not supported"
            )));
        }
        check_page_order(&self.header, self.prev_pgno, pgno)?;

        let mut size_field = [0u8; 4];
        self.read_hashed(&mut size_field)?;
        let size = u32::from_be_bytes(size_field) as usize;
        let page_size = self.header.page_size as usize;
        if size == 0 || size > max_compressed_size(self.header.page_size) {
            return Err(LtxError::BadPage(format!(
                "page {pgno} claims {size} compressed bytes for a {page_size}-byte page"
            )));
        }
        self.compressed.resize(size, 0);
        self.r.read_exact(&mut self.compressed)?;
        buf.resize(page_size, 0); // no clearing: the page is checked to be fully written
        let n = lz4_flex::block::decompress_into(&self.compressed, buf)
            .map_err(|e| LtxError::BadPage(format!("page {pgno} does not decompress: {e}")))?;
        if n != page_size {
            return Err(LtxError::BadPage(format!(
                "page {pgno} decompresses to {n} bytes, page size is {page_size}"
            )));
        }
        // One CRC pass over the page serves the file checksum and the page checksum.
        let page_crc = crc64_advance(0, buf);
        self.hash.state = self.page_shift.apply(self.hash.state) ^ page_crc;
        let pgno_crc = crc64_advance(!0, &pgno.to_be_bytes());
        self.page_sum = CHECKSUM_FLAG | !(self.page_shift.apply(pgno_crc) ^ page_crc);

        let entry_size = (PAGE_HEADER_SIZE + 4 + size) as u64;
        append_index_entry(&mut self.expected_index, pgno, offset, entry_size);
        self.bytes_read += size as u64; // the header and size field were counted when read
        self.prev_pgno = pgno;
        if self.header.is_snapshot()
            && !self.header.no_checksum()
            && pgno != lock_pgno(self.header.page_size)
        {
            self.snapshot_checksum.add_page_checksum(self.page_sum);
        }
        Ok(Some(pgno))
    }

    /// Reads (and verifies) any pages not read yet, then the page index and trailer;
    /// checks the file checksum, the snapshot post-apply checksum and that nothing follows.
    pub fn finish(mut self) -> Result<Trailer, LtxError> {
        let mut scratch = Vec::new();
        while self.next_page(&mut scratch)?.is_some() {}

        // The index must be exactly the one the pages imply (plus its terminator).
        let mut index = vec![0u8; self.expected_index.len() + 1];
        self.read_hashed(&mut index)?;
        if index[..self.expected_index.len()] != self.expected_index[..]
            || index[self.expected_index.len()] != 0
        {
            return Err(LtxError::BadIndex(
                "does not match the pages in the file".into(),
            ));
        }
        let mut index_len = [0u8; 8];
        self.read_hashed(&mut index_len)?;
        if u64::from_be_bytes(index_len) != index.len() as u64 {
            return Err(LtxError::BadIndex(format!(
                "stored length {} but the index is {} bytes",
                u64::from_be_bytes(index_len),
                index.len()
            )));
        }

        let mut trailer_bytes = [0u8; TRAILER_SIZE];
        self.r.read_exact(&mut trailer_bytes)?;
        self.hash.update(&trailer_bytes[..8]);
        let trailer = Trailer::decode(&trailer_bytes)?;
        let actual = CHECKSUM_FLAG | self.hash.finish();
        if trailer.file_checksum != actual {
            return Err(LtxError::ChecksumMismatch {
                expected: trailer.file_checksum,
                actual,
            });
        }
        trailer.validate(&self.header)?;
        if self.header.is_snapshot() && !self.header.no_checksum() {
            let actual = self.snapshot_checksum.value();
            if trailer.post_apply_checksum != actual {
                return Err(LtxError::PostApplyChecksumMismatch {
                    expected: trailer.post_apply_checksum,
                    actual,
                });
            }
        }
        let mut extra = [0u8; 1];
        if self.r.read(&mut extra)? != 0 {
            return Err(LtxError::BadTrailer(
                "unexpected bytes after the trailer".into(),
            ));
        }
        Ok(trailer)
    }
}

/// Decodes and verifies a whole file held in memory (pages are ≤ ~256× the input size).
#[allow(clippy::type_complexity)] // the tuple is the agreed API
pub fn decode_all(bytes: &[u8]) -> Result<(Header, Vec<(u32, Vec<u8>)>, Trailer), LtxError> {
    let mut dec = Decoder::new(bytes)?;
    let mut pages = Vec::new();
    loop {
        let mut buf = Vec::new();
        match dec.next_page(&mut buf)? {
            Some(pgno) => pages.push((pgno, buf)),
            None => break,
        }
    }
    let header = *dec.header();
    let trailer = dec.finish()?;
    Ok((header, pages, trailer))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by litestream v0.5.17 for a fresh 4-page database (L0, txid 1) and the
    /// next transaction (txid 2), both with `FLAG_NO_CHECKSUM`.
    const REAL_SNAPSHOT: &[u8] =
        include_bytes!("../../tests/fixtures/ltx/litestream-0.5.17-snapshot-txid1.ltx");
    const REAL_L0: &[u8] =
        include_bytes!("../../tests/fixtures/ltx/litestream-0.5.17-l0-txid2.ltx");

    /// Deterministic, poorly compressible bytes (xorshift64).
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn header(min_txid: u64, max_txid: u64, commit: u32, flags: u32) -> Header {
        Header {
            flags,
            page_size: 512,
            commit,
            min_txid,
            max_txid,
            timestamp_ms: 1_700_000_000_123,
            ..Default::default()
        }
    }

    fn encode(header: Header, pages: &[(u32, Vec<u8>)], post: u64) -> Vec<u8> {
        let mut enc = Encoder::new(Vec::new(), header).unwrap();
        for (pgno, data) in pages {
            enc.encode_page(*pgno, data).unwrap();
        }
        enc.finish(post).unwrap().0
    }

    /// A checksummed 3-page snapshot with one page of noise, one of zeros, one of text.
    fn sample_snapshot() -> (Vec<(u32, Vec<u8>)>, Vec<u8>) {
        let pages = vec![
            (1, noise(1, 512)),
            (2, vec![0; 512]),
            (3, b"hello ".repeat(86)[..512].to_vec()),
        ];
        let mut sum = DbChecksum::default();
        pages.iter().for_each(|(p, d)| sum.add_page(*p, d));
        let bytes = encode(header(1, 1, 3, 0), &pages, sum.value());
        (pages, bytes)
    }

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
        let mut bytewise = !0u64;
        for &b in &data {
            bytewise = CRC64_TABLES[0][((bytewise ^ b as u64) & 0xff) as usize] ^ (bytewise >> 8);
        }
        assert_eq!(!bytewise, crc64(&data));
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

    #[test]
    fn decodes_real_litestream_files() {
        let (h, pages, t) = decode_all(REAL_L0).unwrap();
        assert_eq!(
            h,
            Header {
                flags: FLAG_NO_CHECKSUM,
                page_size: 4096,
                commit: 4,
                min_txid: 2,
                max_txid: 2,
                timestamp_ms: 1_795_629_558_992,
                pre_apply_checksum: 0,
                wal_offset: 16512,
                wal_size: 4120,
                wal_salt1: 3_848_668_070,
                wal_salt2: 1_926_925_375,
                node_id: 0,
            }
        );
        assert_eq!(pages.iter().map(|p| p.0).collect::<Vec<_>>(), [2]);
        assert_eq!(
            t,
            Trailer {
                post_apply_checksum: 0,
                file_checksum: 0xce7e_9ca7_3ecf_7fa0
            }
        );
        // Regression value; the same code's snapshot checksums were accepted by litestream.
        assert_eq!(page_checksum(2, &pages[0].1), 0xc702_e0f9_d60b_30d7);

        let (h, pages, t) = decode_all(REAL_SNAPSHOT).unwrap();
        assert!(h.is_snapshot() && h.no_checksum());
        assert_eq!(pages.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(&pages[0].1[..16], b"SQLite format 3\0");
        assert_eq!(t.file_checksum, 0x843c_093f_6603_a165);
    }

    #[test]
    fn reencoding_real_file_reproduces_its_pages() {
        // Our LZ4 blocks differ from Go's, and the index (offsets, sizes) is hashed, so the
        // file checksum differs; the decoded contents must not.
        let (h, pages, t) = decode_all(REAL_L0).unwrap();
        let bytes = encode(h, &pages, 0);
        let (h2, pages2, t2) = decode_all(&bytes).unwrap();
        assert_eq!((h2, pages2), (h, pages));
        assert_ne!(t2.file_checksum, t.file_checksum);
    }

    #[test]
    fn round_trip_checksummed_snapshot() {
        let (pages, bytes) = sample_snapshot();
        let (h, got, t) = decode_all(&bytes).unwrap();
        assert_eq!(h, header(1, 1, 3, 0));
        assert_eq!(got, pages);
        assert!(t.post_apply_checksum & CHECKSUM_FLAG != 0);
    }

    #[test]
    fn round_trip_streaming_incremental_file() {
        let mut h = header(5, 7, 100, FLAG_NO_CHECKSUM);
        h.wal_offset = 32;
        h.wal_size = 4120;
        h.wal_salt1 = 1;
        h.wal_salt2 = 2;
        h.node_id = 42;
        let pages: Vec<(u32, Vec<u8>)> = [3u32, 9, 100]
            .iter()
            .map(|&p| (p, noise(p as u64, 512)))
            .collect();
        let bytes = encode(h, &pages, 0);
        let mut dec = Decoder::new(&bytes[..]).unwrap();
        assert_eq!(*dec.header(), h);
        let mut buf = Vec::new();
        for (pgno, data) in &pages {
            assert_eq!(dec.next_page(&mut buf).unwrap(), Some(*pgno));
            assert_eq!(&buf, data);
        }
        assert_eq!(dec.next_page(&mut buf).unwrap(), None);
        assert_eq!(dec.next_page(&mut buf).unwrap(), None);
        dec.finish().unwrap();
        // finish() also verifies pages that were never read.
        Decoder::new(&bytes[..]).unwrap().finish().unwrap();
    }

    #[test]
    fn checksummed_incremental_file_round_trips() {
        let pre = DbChecksum(0x1234).value();
        let post = DbChecksum(0x5678).value();
        let h = Header {
            pre_apply_checksum: pre,
            ..header(2, 2, 4, 0)
        };
        let bytes = encode(h, &[(4, noise(4, 512))], post);
        let (got, _, t) = decode_all(&bytes).unwrap();
        assert_eq!(got.pre_apply_checksum, pre);
        assert_eq!(t.post_apply_checksum, post);
    }

    #[test]
    fn header_validation() {
        let ok = header(2, 3, 1, FLAG_NO_CHECKSUM);
        assert!(ok.validate().is_ok());
        let cases = [
            Header { flags: 1, ..ok },
            Header {
                page_size: 1000,
                ..ok
            },
            Header {
                page_size: 256,
                ..ok
            },
            Header {
                page_size: 131072,
                ..ok
            },
            Header { min_txid: 0, ..ok },
            Header { min_txid: 4, ..ok },
            Header { wal_salt1: 1, ..ok },
            Header { wal_size: 1, ..ok },
            Header {
                wal_offset: u64::MAX,
                ..ok
            },
            Header {
                pre_apply_checksum: CHECKSUM_FLAG | 1,
                ..ok
            },
            Header { flags: 0, ..ok }, // checksums on, pre-apply missing
            Header {
                flags: 0,
                pre_apply_checksum: 1,
                ..ok
            }, // lacks the flag bit
            Header {
                min_txid: 1,
                flags: 0,
                pre_apply_checksum: CHECKSUM_FLAG,
                ..ok
            }, // snapshot
        ];
        for h in cases {
            assert!(matches!(h.validate(), Err(LtxError::BadHeader(_))), "{h:?}");
            assert!(
                matches!(Encoder::new(Vec::new(), h), Err(LtxError::BadHeader(_))),
                "{h:?}"
            );
            assert!(
                matches!(Header::decode(&h.encode()), Err(LtxError::BadHeader(_))),
                "{h:?}"
            );
        }
        assert_eq!(Header::decode(&ok.encode()).unwrap(), ok);
        assert!(matches!(
            Header::decode(&ok.encode()[..99]),
            Err(LtxError::Truncated)
        ));
        let mut bad_magic = ok.encode();
        bad_magic[3] = b'2';
        assert!(matches!(
            Header::decode(&bad_magic),
            Err(LtxError::BadMagic)
        ));
    }

    #[test]
    fn encoder_enforces_page_rules() {
        let data = vec![7u8; 512];
        let mut enc = Encoder::new(Vec::new(), header(2, 2, 10, FLAG_NO_CHECKSUM)).unwrap();
        assert!(matches!(
            enc.encode_page(0, &data),
            Err(LtxError::BadPage(_))
        ));
        assert!(matches!(
            enc.encode_page(11, &data),
            Err(LtxError::BadPage(_))
        ));
        assert!(matches!(
            enc.encode_page(1, &data[..511]),
            Err(LtxError::BadPage(_))
        ));
        enc.encode_page(5, &data).unwrap();
        assert!(matches!(
            enc.encode_page(5, &data),
            Err(LtxError::BadPage(_))
        ));
        assert!(matches!(
            enc.encode_page(4, &data),
            Err(LtxError::BadPage(_))
        ));
        enc.encode_page(6, &data).unwrap(); // still usable after rejected pages
        assert!(matches!(
            enc.finish(CHECKSUM_FLAG),
            Err(LtxError::BadTrailer(_))
        ));

        let lock = lock_pgno(512);
        let mut enc = Encoder::new(Vec::new(), header(2, 2, lock + 1, FLAG_NO_CHECKSUM)).unwrap();
        enc.encode_page(lock - 1, &data).unwrap();
        assert!(matches!(
            enc.encode_page(lock, &data),
            Err(LtxError::BadPage(_))
        ));
        enc.encode_page(lock + 1, &data).unwrap();
        enc.finish(0).unwrap();
    }

    #[test]
    fn encoder_enforces_snapshot_rules() {
        let data = vec![1u8; 512];
        let mut enc = Encoder::new(Vec::new(), header(1, 1, 3, FLAG_NO_CHECKSUM)).unwrap();
        assert!(matches!(
            enc.encode_page(2, &data),
            Err(LtxError::BadPage(_))
        ));
        enc.encode_page(1, &data).unwrap();
        assert!(matches!(
            enc.encode_page(3, &data),
            Err(LtxError::BadPage(_))
        ));
        enc.encode_page(2, &data).unwrap();
        assert!(
            matches!(enc.finish(0), Err(LtxError::BadPage(_))),
            "page 3 missing"
        );

        // A snapshot's post-apply checksum must be the checksum of its pages.
        let mut enc = Encoder::new(Vec::new(), header(1, 1, 1, 0)).unwrap();
        enc.encode_page(1, &data).unwrap();
        assert!(matches!(
            enc.finish(CHECKSUM_FLAG | 5),
            Err(LtxError::PostApplyChecksumMismatch { .. })
        ));

        assert_eq!(next_snapshot_pgno(0, 3), 1);
        assert_eq!(next_snapshot_pgno(2, 3), 4, "skips the lock page");
        let at_lock = header(1, 1, lock_pgno(512), FLAG_NO_CHECKSUM);
        assert!(check_snapshot_complete(&at_lock, lock_pgno(512) - 1).is_ok());
    }

    #[test]
    fn every_truncation_is_rejected() {
        let (_, bytes) = sample_snapshot();
        for len in 0..bytes.len() {
            let err = decode_all(&bytes[..len]).unwrap_err();
            assert!(matches!(err, LtxError::Truncated), "len {len}: {err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode_all(&longer), Err(LtxError::BadTrailer(_))));
    }

    #[test]
    fn every_single_byte_corruption_is_rejected() {
        // Noise pages compress to literals, so every byte matters. (Within real LZ4 data a
        // flipped match offset can decompress to the same page; the checksum, which covers
        // uncompressed data, cannot catch that and need not.)
        let h = header(2, 2, 9, FLAG_NO_CHECKSUM);
        let bytes = encode(h, &[(3, noise(3, 512)), (9, noise(9, 512))], 0);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(
                decode_all(&bad).is_err(),
                "flip at byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn corruption_reports_the_right_error() {
        let (_, bytes) = sample_snapshot();
        let last = bytes.len() - 1;
        let mut bad = bytes.clone();
        bad[last] ^= 1;
        assert!(matches!(
            decode_all(&bad),
            Err(LtxError::ChecksumMismatch { .. })
        ));

        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(decode_all(&bad), Err(LtxError::BadMagic)));

        // Page 1's header is at offset 100: make it claim an absurd compressed size.
        let mut bad = bytes.clone();
        bad[106..110].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode_all(&bad), Err(LtxError::BadPage(_))));

        // Legacy (frame-format) page encoding.
        let mut bad = bytes.clone();
        bad[105] = 0;
        assert!(matches!(decode_all(&bad), Err(LtxError::BadPage(_))));

        // A decoder that failed stays failed.
        let mut dec = Decoder::new(&bad[..]).unwrap();
        let mut buf = Vec::new();
        assert!(dec.next_page(&mut buf).is_err());
        assert!(dec.next_page(&mut buf).is_err());
        assert!(dec.finish().is_err());
    }

    #[test]
    fn errors_display_clearly() {
        let e = LtxError::ChecksumMismatch {
            expected: 1,
            actual: 2,
        };
        assert_eq!(
            e.to_string(),
            "ltx file checksum mismatch: trailer says 0000000000000001, contents hash to 0000000000000002"
        );
        assert_eq!(LtxError::Truncated.to_string(), "ltx file is truncated");
    }
}
