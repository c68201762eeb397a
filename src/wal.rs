//! Owns parsing the SQLite WAL format (header, frame headers, cumulative checksum chain) and grouping verified frames into committed transactions; does no I/O (callers pass bytes or a `read_at` closure) and never panics on bad input.
//!
//! # The format (sqlite.org/fileformat2.html#walformat)
//!
//! A WAL file is a 32-byte header followed by frames; every integer is
//! big-endian.
//!
//! * Header: magic (`0x377f0682` or `0x377f0683`; its low bit says the
//!   checksums are computed over big-endian (1) or little-endian (0) 32-bit
//!   words), format version 3007000, page size (a power of two from 512 to
//!   65536, stored as is — unlike the wal-index in the `-shm` file, the WAL
//!   file never encodes 65536 as 1), checkpoint sequence, salt-1, salt-2, and
//!   a checksum of the first 24 bytes.
//! * Frame `i` (1-based) starts at `32 + (i-1) * (24 + page_size)`: a 24-byte
//!   frame header (page number, database size in pages after the commit —
//!   non-zero only on a commit frame —, salt-1, salt-2, checksum-1,
//!   checksum-2) then the page.  A frame is valid when its salts equal the
//!   header's, its page number is not 0, and its checksum equals the checksum
//!   of its first 8 header bytes and its page, seeded with the previous
//!   frame's checksum (the header's for frame 1).
//!
//! # What counts as committed
//!
//! SQLite's own recovery reads frames from frame 1 until the first invalid
//! one; the log ends at the last commit frame before that.  This module does
//! the same, which covers what a writer leaves behind:
//!
//! * a transaction bigger than the page cache *spills* uncommitted frames; if
//!   it rolls back, the write position is rewound and later transactions
//!   overwrite those frames; the leftovers after the new commit carry the
//!   live salts but a checksum chained from the overwritten frames, so the
//!   chain stops there;
//! * within one transaction SQLite may rewrite a spilled frame in place; it
//!   then writes the following frames with zero salts and checksums and
//!   recomputes them all at commit, so before the commit the chain stops at
//!   the rewritten frame and after it the whole transaction verifies;
//! * a page can appear in several frames of one transaction (the commit frame
//!   is never rewritten in place): the last one wins;
//! * after a checkpoint the next writer restarts the log: a new header with
//!   salt-1 incremented and a new random salt-2, frames from 1 again, and the
//!   file is not truncated, so frames of the previous generation follow; their
//!   salts do not match and stop the chain; `journal_size_limit` may then
//!   truncate the file anywhere, even inside a frame.
//!
//! A committed transaction's pages beyond its commit size (the database
//! shrank) are not part of the database after it and are dropped.
//!
//! With `PRAGMA synchronous=FULL` on storage without powersafe overwrite,
//! SQLite pads a commit to a sector boundary by repeating the commit frame;
//! each copy is a valid commit frame, so it shows up here as one more
//! (identical, one-page) transaction.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

/// Size of the WAL file header.
pub const WAL_HEADER_SIZE: usize = 32;
/// Size of the header in front of every page in the WAL.
pub const FRAME_HEADER_SIZE: usize = 24;
/// Header magic when checksums are computed over little-endian words.
pub const WAL_MAGIC_LE: u32 = 0x377f_0682;
/// Header magic when checksums are computed over big-endian words.
pub const WAL_MAGIC_BE: u32 = 0x377f_0683;
/// The only WAL format version SQLite writes or reads.
pub const WAL_FORMAT_VERSION: u32 = 3_007_000;
/// Smallest SQLite page size.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest SQLite page size.
pub const MAX_PAGE_SIZE: u32 = 65_536;

/// Why WAL bytes could not be interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalError {
    /// The first 4 bytes are neither `0x377f0682` nor `0x377f0683`.
    BadMagic(u32),
    /// The format version is not 3007000.
    BadVersion(u32),
    /// The page size is not a power of two between 512 and 65536.
    BadPageSize(u32),
    /// The header's checksum does not match its first 24 bytes.
    HeaderChecksum,
    /// A buffer was too short (or, for a page, not exactly one page long).
    Short(&'static str),
    /// The `read_at` callback failed.
    Io(String),
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::BadMagic(m) => write!(
                f,
                "not a SQLite WAL file: magic {m:#010x}, expected {WAL_MAGIC_LE:#010x} or {WAL_MAGIC_BE:#010x}"
            ),
            WalError::BadVersion(v) => {
                write!(f, "unsupported WAL format version {v}, expected {WAL_FORMAT_VERSION}")
            }
            WalError::BadPageSize(s) => write!(
                f,
                "invalid WAL page size {s}: must be a power of two from {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE}"
            ),
            WalError::HeaderChecksum => write!(f, "WAL header checksum mismatch"),
            WalError::Short(what) => write!(f, "WAL data too short: {what}"),
            WalError::Io(msg) => write!(f, "I/O error reading the WAL: {msg}"),
        }
    }
}

impl std::error::Error for WalError {}

impl From<io::Error> for WalError {
    fn from(e: io::Error) -> Self {
        WalError::Io(e.to_string())
    }
}

/// Big-endian u32 at `at`; 0 if out of range (callers check lengths first).
fn get_u32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    if let Some(dst) = out.get_mut(at..at + 4) {
        dst.copy_from_slice(&v.to_be_bytes());
    }
}

/// True for the page sizes SQLite can use: powers of two from 512 to 65536.
pub fn is_valid_page_size(page_size: u32) -> bool {
    page_size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size)
}

/// The page size a database header or a WAL index stores in 16 bits: 65536 does not fit,
/// so SQLite stores it as 1 there (the WAL file header stores it as is).
pub fn page_size_from_header_field(raw: u16) -> u32 {
    match raw {
        1 => 65536,
        n => n as u32,
    }
}

/// What the first 100 bytes of a database file (its page 1) say about its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbHeader {
    pub page_size: u32,
    /// The database size in pages, as stored (0 or stale when not `page_count_valid`).
    pub page_count: u32,
    /// SQLite marks the stored size valid by making the change counter equal to
    /// version-valid-for.
    pub page_count_valid: bool,
}

impl DbHeader {
    /// Reads the fields of `b`; `None` when it is shorter than 100 bytes. It does not check
    /// the magic string.
    pub fn parse(b: &[u8]) -> Option<DbHeader> {
        let b = b.get(..100)?;
        Some(DbHeader {
            page_size: page_size_from_header_field(u16::from_be_bytes([b[16], b[17]])),
            page_count: get_u32(b, 28),
            page_count_valid: b[24..28] == b[92..96],
        })
    }
}

/// The 32-byte WAL file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalHeader {
    pub magic: u32,
    pub version: u32,
    /// The page size in bytes, as stored (65536 is stored as 65536).
    pub page_size: u32,
    pub checkpoint_seq: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub cksum1: u32,
    pub cksum2: u32,
}

impl WalHeader {
    /// Parses and validates the first 32 bytes of `b` (extra bytes are
    /// ignored), in SQLite's order: magic, page size, header checksum, version.
    pub fn parse(b: &[u8]) -> Result<WalHeader, WalError> {
        if b.len() < WAL_HEADER_SIZE {
            return Err(WalError::Short("WAL header needs 32 bytes"));
        }
        let h = WalHeader {
            magic: get_u32(b, 0),
            version: get_u32(b, 4),
            page_size: get_u32(b, 8),
            checkpoint_seq: get_u32(b, 12),
            salt1: get_u32(b, 16),
            salt2: get_u32(b, 20),
            cksum1: get_u32(b, 24),
            cksum2: get_u32(b, 28),
        };
        if h.magic != WAL_MAGIC_LE && h.magic != WAL_MAGIC_BE {
            return Err(WalError::BadMagic(h.magic));
        }
        if !is_valid_page_size(h.page_size) {
            return Err(WalError::BadPageSize(h.page_size));
        }
        let computed = wal_checksum(h.big_endian_checksums(), (0, 0), &b[..24]);
        if computed != (h.cksum1, h.cksum2) {
            return Err(WalError::HeaderChecksum);
        }
        if h.version != WAL_FORMAT_VERSION {
            return Err(WalError::BadVersion(h.version));
        }
        Ok(h)
    }

    /// A valid header with its checksum computed (the writer's side; used by
    /// tests and tools that build logs).
    pub fn new(
        big_endian: bool,
        page_size: u32,
        checkpoint_seq: u32,
        salt1: u32,
        salt2: u32,
    ) -> WalHeader {
        let mut h = WalHeader {
            magic: if big_endian {
                WAL_MAGIC_BE
            } else {
                WAL_MAGIC_LE
            },
            version: WAL_FORMAT_VERSION,
            page_size,
            checkpoint_seq,
            salt1,
            salt2,
            cksum1: 0,
            cksum2: 0,
        };
        let bytes = h.to_bytes();
        let (c1, c2) = wal_checksum(big_endian, (0, 0), &bytes[..24]);
        h.cksum1 = c1;
        h.cksum2 = c2;
        h
    }

    /// The 32 bytes of this header, fields as they are (no checksum computed).
    pub fn to_bytes(&self) -> [u8; WAL_HEADER_SIZE] {
        let mut out = [0u8; WAL_HEADER_SIZE];
        let fields = [
            self.magic,
            self.version,
            self.page_size,
            self.checkpoint_seq,
            self.salt1,
            self.salt2,
            self.cksum1,
            self.cksum2,
        ];
        for (i, v) in fields.iter().enumerate() {
            put_u32(&mut out, i * 4, *v);
        }
        out
    }

    /// True when checksums are computed over big-endian words (magic low bit 1).
    pub fn big_endian_checksums(&self) -> bool {
        self.magic & 1 == 1
    }

    /// (salt-1, salt-2): identifies this generation of the log.
    pub fn salts(&self) -> (u32, u32) {
        (self.salt1, self.salt2)
    }

    /// The header checksum: the seed of frame 1's checksum.
    pub fn checksum(&self) -> (u32, u32) {
        (self.cksum1, self.cksum2)
    }

    /// Bytes per frame: frame header plus page.
    pub fn frame_size(&self) -> u64 {
        FRAME_HEADER_SIZE as u64 + u64::from(self.page_size)
    }
}

/// The 24-byte header in front of each page in the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub pgno: u32,
    /// Database size in pages after the commit; 0 unless a commit frame.
    pub commit_size: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub cksum1: u32,
    pub cksum2: u32,
}

impl FrameHeader {
    /// Decodes the first 24 bytes of `b` (extra bytes are ignored).  Nothing is
    /// validated here: see [`FrameChain::accept`].
    pub fn parse(b: &[u8]) -> Result<FrameHeader, WalError> {
        if b.len() < FRAME_HEADER_SIZE {
            return Err(WalError::Short("WAL frame header needs 24 bytes"));
        }
        Ok(FrameHeader {
            pgno: get_u32(b, 0),
            commit_size: get_u32(b, 4),
            salt1: get_u32(b, 8),
            salt2: get_u32(b, 12),
            cksum1: get_u32(b, 16),
            cksum2: get_u32(b, 20),
        })
    }

    /// The 24 bytes of this frame header.
    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_SIZE] {
        let mut out = [0u8; FRAME_HEADER_SIZE];
        let fields = [
            self.pgno,
            self.commit_size,
            self.salt1,
            self.salt2,
            self.cksum1,
            self.cksum2,
        ];
        for (i, v) in fields.iter().enumerate() {
            put_u32(&mut out, i * 4, *v);
        }
        out
    }

    /// True for a commit frame (the last frame of a transaction).
    pub fn is_commit(&self) -> bool {
        self.commit_size != 0
    }

    pub fn salts(&self) -> (u32, u32) {
        (self.salt1, self.salt2)
    }

    pub fn checksum(&self) -> (u32, u32) {
        (self.cksum1, self.cksum2)
    }
}

/// SQLite's WAL checksum of `data`, continuing from `seed`: for each pair of
/// 32-bit words `(x0, x1)`, `s1 += x0 + s2; s2 += x1 + s1` (wrapping), words
/// read big- or little-endian.  `data.len()` should be a multiple of 8 (it
/// always is in a WAL); a trailing partial block is ignored.
pub fn wal_checksum(big_endian: bool, seed: (u32, u32), data: &[u8]) -> (u32, u32) {
    let (mut s1, mut s2) = seed;
    for block in data.chunks_exact(8) {
        let (x0, x1) = match block {
            &[a, b, c, d, e, f, g, h] => {
                if big_endian {
                    (
                        u32::from_be_bytes([a, b, c, d]),
                        u32::from_be_bytes([e, f, g, h]),
                    )
                } else {
                    (
                        u32::from_le_bytes([a, b, c, d]),
                        u32::from_le_bytes([e, f, g, h]),
                    )
                }
            }
            _ => continue,
        };
        s1 = s1.wrapping_add(x0).wrapping_add(s2);
        s2 = s2.wrapping_add(x1).wrapping_add(s1);
    }
    (s1, s2)
}

/// Byte offset of the header of frame `frame` (1-based) in a log of
/// `page_size`-byte pages.  Frame 0 does not exist; it maps to 32, the end
/// of the WAL header.  Saturates instead of overflowing.
pub fn frame_offset(page_size: u32, frame: u32) -> u64 {
    let frame_size = FRAME_HEADER_SIZE as u64 + u64::from(page_size);
    u64::from(frame.saturating_sub(1))
        .saturating_mul(frame_size)
        .saturating_add(WAL_HEADER_SIZE as u64)
}

/// Where a frame sits, independent of file offsets: which log generation
/// (salts) and which frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WalPosition {
    pub salt1: u32,
    pub salt2: u32,
    pub frame: u32,
}

impl WalPosition {
    pub fn new(salts: (u32, u32), frame: u32) -> WalPosition {
        WalPosition {
            salt1: salts.0,
            salt2: salts.1,
            frame,
        }
    }

    pub fn salts(&self) -> (u32, u32) {
        (self.salt1, self.salt2)
    }

    /// Whether a replica that reached `shipped` holds the commit ending here: the same log
    /// and at least as far, or a later log. SQLite adds one to salt1 at every restart of a
    /// log, so "later" is a (wrapping) larger salt1; a log created anew after the old one
    /// was deleted has random salts, which this cannot order, so a waiter on it may wait
    /// until its timeout, never be told too early in the common cases.
    pub fn covered_by(&self, shipped: &WalPosition) -> bool {
        if self.salts() == shipped.salts() {
            return self.frame <= shipped.frame;
        }
        let ahead = shipped.salt1.wrapping_sub(self.salt1);
        (1..=64).contains(&ahead)
    }
}

/// Verifies frames one by one against the header's salts and the running
/// checksum.
#[derive(Clone, Debug)]
pub struct FrameChain {
    page_size: u32,
    big_endian: bool,
    salts: (u32, u32),
    /// 0 once the frame counter would overflow: nothing more is accepted.
    next_frame: u32,
    cksum: (u32, u32),
}

impl FrameChain {
    /// A chain expecting frame 1, seeded with the header checksum.
    pub fn new(header: &WalHeader) -> FrameChain {
        FrameChain::resume(header, 1, header.checksum())
    }

    /// A chain continuing after a known frame: `next_frame` is the frame
    /// expected next and `cksum` the checksum stored in the frame before it
    /// (the header checksum if `next_frame` is 1).  `next_frame` 0 is no frame:
    /// such a chain accepts nothing.
    pub fn resume(header: &WalHeader, next_frame: u32, cksum: (u32, u32)) -> FrameChain {
        FrameChain {
            page_size: header.page_size,
            big_endian: header.big_endian_checksums(),
            salts: header.salts(),
            next_frame,
            cksum,
        }
    }

    /// The 1-based index of the frame `accept` expects next.
    pub fn next_frame(&self) -> u32 {
        self.next_frame
    }

    /// The running checksum: that of the last accepted frame (or the seed).
    pub fn checksum(&self) -> (u32, u32) {
        self.cksum
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    pub fn salts(&self) -> (u32, u32) {
        self.salts
    }

    /// The position `accept` would give the next frame.
    pub fn next_position(&self) -> WalPosition {
        WalPosition::new(self.salts, self.next_frame)
    }

    fn frame_checksum(&self, frame_header: &[u8], page: &[u8]) -> (u32, u32) {
        let seeded = wal_checksum(
            self.big_endian,
            self.cksum,
            frame_header.get(..8).unwrap_or(&[]),
        );
        wal_checksum(self.big_endian, seeded, page)
    }

    fn check_page_len(&self, page: &[u8]) -> Result<(), WalError> {
        if page.len() as u64 != u64::from(self.page_size) {
            return Err(WalError::Short(
                "a frame's page must be exactly page_size bytes",
            ));
        }
        Ok(())
    }

    /// Checks the frame `next_frame()` given its header bytes (the first 24
    /// are used) and its page (exactly `page_size` bytes, else `Err(Short)`).
    /// Returns `Ok(Some(header))` and advances if the frame is valid (salts
    /// match, page number non-zero, checksum chains); `Ok(None)` if not — the
    /// end of the log — and then never advances.
    pub fn accept(
        &mut self,
        frame_header: &[u8],
        page: &[u8],
    ) -> Result<Option<FrameHeader>, WalError> {
        let fh = FrameHeader::parse(frame_header)?;
        self.check_page_len(page)?;
        if self.next_frame == 0 || fh.pgno == 0 || fh.salts() != self.salts {
            return Ok(None);
        }
        let computed = self.frame_checksum(frame_header, page);
        if computed != fh.checksum() {
            return Ok(None);
        }
        self.cksum = computed;
        self.next_frame = self.next_frame.checked_add(1).unwrap_or(0);
        Ok(Some(fh))
    }

    /// The writer's side of `accept`: the header of the next frame holding
    /// `page` for `pgno` (`commit_size` non-zero for a commit frame), with
    /// this chain's salts and checksum; advances the chain.  Used to build
    /// logs in tests and tools.
    pub fn seal(
        &mut self,
        pgno: u32,
        commit_size: u32,
        page: &[u8],
    ) -> Result<FrameHeader, WalError> {
        self.check_page_len(page)?;
        let mut fh = FrameHeader {
            pgno,
            commit_size,
            salt1: self.salts.0,
            salt2: self.salts.1,
            cksum1: 0,
            cksum2: 0,
        };
        let (c1, c2) = self.frame_checksum(&fh.to_bytes(), page);
        fh.cksum1 = c1;
        fh.cksum2 = c2;
        self.cksum = (c1, c2);
        self.next_frame = self.next_frame.checked_add(1).unwrap_or(0);
        Ok(fh)
    }
}

/// A committed transaction: the final image of every page it wrote, in
/// ascending page order (pages beyond `commit_size` are dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedTxn {
    pub page_size: u32,
    /// Database size in pages after this transaction.
    pub commit_size: u32,
    /// Its commit frame.
    pub end: WalPosition,
    pub pages: Vec<(u32, Vec<u8>)>,
}

/// Groups verified frames into transactions; frames after the last commit
/// are pending, and dropped if the chain ends before a commit.
#[derive(Clone, Debug)]
pub struct TxnAssembler {
    page_size: u32,
    /// Generation of the pending frames.
    salts: Option<(u32, u32)>,
    pending: BTreeMap<u32, Vec<u8>>,
    frames: u32,
}

impl TxnAssembler {
    pub fn new(page_size: u32) -> Self {
        TxnAssembler {
            page_size,
            salts: None,
            pending: BTreeMap::new(),
            frames: 0,
        }
    }

    /// Adds a verified frame (its page as given; a later frame for the same
    /// page replaces it).  Returns the transaction when `fh` is a commit frame.
    /// A frame of another generation (salts) than the pending ones drops them
    /// first: they can never commit.
    pub fn push(
        &mut self,
        pos: WalPosition,
        fh: &FrameHeader,
        page: &[u8],
    ) -> Option<CommittedTxn> {
        if self.salts != Some(pos.salts()) {
            self.discard_pending();
            self.salts = Some(pos.salts());
        }
        let slot = self.pending.entry(fh.pgno).or_default();
        slot.clear();
        slot.extend_from_slice(page);
        self.frames = self.frames.saturating_add(1);
        if !fh.is_commit() {
            return None;
        }
        let commit_size = fh.commit_size;
        let pages = std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|(pgno, _)| (1..=commit_size).contains(pgno))
            .collect();
        self.frames = 0;
        self.salts = None;
        Some(CommittedTxn {
            page_size: self.page_size,
            commit_size,
            end: pos,
            pages,
        })
    }

    /// Frames pushed since the last commit.
    pub fn pending_frames(&self) -> u32 {
        self.frames
    }

    /// Distinct pages among the pending frames.
    pub fn pending_pages(&self) -> usize {
        self.pending.len()
    }

    /// Forgets the pending frames (the chain ended, or the log restarted).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
        self.frames = 0;
        self.salts = None;
    }
}

/// Result of [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// `None` when the file is shorter than a WAL header (empty or absent log).
    pub header: Option<WalHeader>,
    /// The transactions committed after the start, in log order.
    pub txns: Vec<CommittedTxn>,
    /// The last commit frame verified, or the start position if nothing was
    /// committed after it; `None` if there is none (or `restarted`).
    pub last_commit: Option<WalPosition>,
    /// The running checksum after `last_commit`: pass it with `last_commit` as
    /// the next `start`.  The header checksum when there is a header but no
    /// commit (resume then with frame 0), (0, 0) without header or when
    /// `restarted`.
    pub last_commit_checksum: (u32, u32),
    /// The first frame not accepted (frames before it verified); 0 when no
    /// frame was examined (no header, or `restarted`).
    pub stopped_at: u32,
    /// `start` was given but does not continue this log: another generation
    /// (salts differ), or the frame at `start` is not a commit frame carrying
    /// that checksum (the log was rewritten).  `txns` is empty: the caller
    /// must start over from frame 1 (a new snapshot).
    pub restarted: bool,
}

/// Result of [`map_committed_pages`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageMap {
    pub header: Option<WalHeader>,
    /// pgno → index of the frame holding the latest committed image of that
    /// page, for pages up to `commit_size`.
    pub latest_frame: BTreeMap<u32, u32>,
    pub last_commit: Option<WalPosition>,
    /// Database size in pages after the last commit; 0 if none.
    pub commit_size: u32,
    /// Checksum after the last commit (header checksum if none; (0,0) without header).
    pub last_commit_checksum: (u32, u32),
}

type ReadAt<'a> = &'a mut dyn FnMut(u64, &mut [u8]) -> io::Result<usize>;
/// Receives each verified frame: position, header, page, checksum after it.
type FrameSink<'a> = &'a mut dyn FnMut(WalPosition, &FrameHeader, &[u8], (u32, u32));

/// Fills `buf` from `offset`; returns how many bytes were read (fewer at end
/// of file).  Partial reads are continued until a read returns 0.
fn read_full(read_at: ReadAt<'_>, offset: u64, buf: &mut [u8]) -> Result<usize, WalError> {
    let mut filled = 0usize;
    let mut interrupted = 0u32;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        let at = offset.saturating_add(filled as u64);
        match read_at(at, rest) {
            Ok(0) => break,
            Ok(n) => {
                filled = filled.saturating_add(n.min(rest.len()));
                interrupted = 0;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted && interrupted < 100 => {
                interrupted += 1
            }
            Err(e) => return Err(WalError::Io(format!("at offset {at}: {e}"))),
        }
    }
    Ok(filled)
}

/// The header, `None` if the file is shorter than one.
fn read_header(read_at: ReadAt<'_>) -> Result<Option<WalHeader>, WalError> {
    let mut buf = [0u8; WAL_HEADER_SIZE];
    if read_full(read_at, 0, &mut buf)? < WAL_HEADER_SIZE {
        return Ok(None);
    }
    WalHeader::parse(&buf).map(Some)
}

/// Feeds every valid frame from `chain.next_frame()` on to `f` (position,
/// header, page, running checksum after it); stops at the first invalid or
/// incomplete frame.
fn walk(read_at: ReadAt<'_>, chain: &mut FrameChain, f: FrameSink<'_>) -> Result<(), WalError> {
    let page_size = chain.page_size();
    if !is_valid_page_size(page_size) {
        return Ok(());
    }
    let mut buf = vec![0u8; FRAME_HEADER_SIZE + page_size as usize];
    while chain.next_frame() != 0 {
        let pos = chain.next_position();
        if read_full(read_at, frame_offset(page_size, pos.frame), &mut buf)? < buf.len() {
            break;
        }
        let (fh_bytes, page) = buf.split_at(FRAME_HEADER_SIZE);
        match chain.accept(fh_bytes, page)? {
            Some(fh) => f(pos, &fh, page, chain.checksum()),
            None => break,
        }
    }
    Ok(())
}

/// Does the frame at `pos` exist in this log as a commit frame whose stored
/// checksum is `cksum`?  (Frame 0 stands for the header.)
fn start_matches(
    read_at: ReadAt<'_>,
    header: &WalHeader,
    pos: WalPosition,
    cksum: (u32, u32),
) -> Result<bool, WalError> {
    if pos.salts() != header.salts() {
        return Ok(false);
    }
    if pos.frame == 0 {
        return Ok(cksum == header.checksum());
    }
    let mut buf = [0u8; FRAME_HEADER_SIZE];
    if read_full(read_at, frame_offset(header.page_size, pos.frame), &mut buf)? < FRAME_HEADER_SIZE
    {
        return Ok(false);
    }
    let fh = FrameHeader::parse(&buf)?;
    Ok(fh.salts() == header.salts() && fh.is_commit() && fh.pgno != 0 && fh.checksum() == cksum)
}

/// Reads a whole log through `read_at(offset, buf) -> io::Result<usize>` (a
/// short read means end of file) and returns the transactions committed
/// after `start`, stopping at the first invalid frame.
///
/// `start = None` reads from frame 1.  `start = Some((pos, cksum))`, where
/// `pos` is a commit frame and `cksum` the checksum stored in it (a previous
/// result's `last_commit` and `last_commit_checksum`; frame 0 with the header
/// checksum means "before frame 1"), resumes at `pos.frame + 1` if the log is
/// still the same: same salts, and that frame still carries that checksum.
/// Otherwise the result is empty with the header and `restarted` set.
///
/// A file shorter than 32 bytes is an empty log (`header: None`); a header
/// that is invalid is an error (SQLite would treat the log as empty).
pub fn scan(
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<usize>,
    start: Option<(WalPosition, (u32, u32))>,
) -> Result<ScanResult, WalError> {
    let mut result = ScanResult {
        header: None,
        txns: Vec::new(),
        last_commit: None,
        last_commit_checksum: (0, 0),
        stopped_at: 0,
        restarted: false,
    };
    let Some(header) = read_header(read_at)? else {
        return Ok(result);
    };
    result.header = Some(header);
    let mut chain = match start {
        None => FrameChain::new(&header),
        Some((pos, cksum)) => {
            if !start_matches(read_at, &header, pos, cksum)? {
                result.restarted = true;
                return Ok(result);
            }
            if pos.frame != 0 {
                result.last_commit = Some(pos);
            }
            FrameChain::resume(&header, pos.frame.checked_add(1).unwrap_or(0), cksum)
        }
    };
    result.last_commit_checksum = chain.checksum();
    let mut asm = TxnAssembler::new(header.page_size);
    let txns = &mut result.txns;
    let last_commit = &mut result.last_commit;
    let last_cksum = &mut result.last_commit_checksum;
    walk(read_at, &mut chain, &mut |pos, fh, page, cksum| {
        if let Some(txn) = asm.push(pos, fh, page) {
            *last_commit = Some(pos);
            *last_cksum = cksum;
            txns.push(txn);
        }
    })?;
    result.stopped_at = chain.next_frame();
    Ok(result)
}

/// Like [`scan`] from frame 1 but memory-light: for the last committed state
/// only, maps each page to the frame holding its latest committed image
/// (pages beyond the final database size left out), plus the last commit's
/// position, database size and checksum.  The caller reads the pages itself
/// (at `frame_offset(page_size, frame) + 24`).
pub fn map_committed_pages(
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<usize>,
) -> Result<PageMap, WalError> {
    let mut map = PageMap {
        header: None,
        latest_frame: BTreeMap::new(),
        last_commit: None,
        commit_size: 0,
        last_commit_checksum: (0, 0),
    };
    let Some(header) = read_header(read_at)? else {
        return Ok(map);
    };
    map.header = Some(header);
    map.last_commit_checksum = header.checksum();
    let mut chain = FrameChain::new(&header);
    let mut pending: BTreeMap<u32, u32> = BTreeMap::new();
    walk(read_at, &mut chain, &mut |pos, fh, _page, cksum| {
        pending.insert(fh.pgno, pos.frame);
        if fh.is_commit() {
            map.latest_frame.append(&mut pending);
            if let Some(beyond) = fh.commit_size.checked_add(1) {
                map.latest_frame.split_off(&beyond);
            }
            map.last_commit = Some(pos);
            map.commit_size = fh.commit_size;
            map.last_commit_checksum = cksum;
        }
    })?;
    Ok(map)
}

#[cfg(test)]
mod position_tests {
    use super::*;

    #[test]
    fn coverage_follows_frames_then_restarts() {
        let at = |s1, s2, f| WalPosition::new((s1, s2), f);
        assert!(at(7, 9, 10).covered_by(&at(7, 9, 10)));
        assert!(at(7, 9, 10).covered_by(&at(7, 9, 11)));
        assert!(!at(7, 9, 10).covered_by(&at(7, 9, 9)));
        // A later log (salt1 + 1 per restart, salt2 random), wrapping too.
        assert!(at(7, 9, 10).covered_by(&at(8, 1234, 0)));
        assert!(at(u32::MAX, 9, 10).covered_by(&at(0, 5, 1)));
        // An earlier log, or unrelated random salts: not covered.
        assert!(!at(8, 1, 1).covered_by(&at(7, 9, 100)));
        assert!(!at(7, 9, 1).covered_by(&at(0x8000_0000, 3, 1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---------------------------------------------------------------- helpers

    struct Fixture {
        wal: &'static [u8],
        pre: &'static [u8],
        post: &'static [u8],
    }

    macro_rules! fixture {
        ($name:literal) => {
            Fixture {
                wal: include_bytes!(concat!("../tests/fixtures/wal/", $name, ".wal")),
                pre: include_bytes!(concat!("../tests/fixtures/wal/", $name, ".pre.db")),
                post: include_bytes!(concat!("../tests/fixtures/wal/", $name, ".post.db")),
            }
        };
    }

    fn all_fixtures() -> Vec<(&'static str, Fixture)> {
        vec![
            ("simple", fixture!("simple")),
            ("spill", fixture!("spill")),
            ("spill_mid", fixture!("spill_mid")),
            ("restart", fixture!("restart")),
            ("size_limit", fixture!("size_limit")),
            ("rewrite", fixture!("rewrite")),
            ("bigendian", fixture!("bigendian")),
        ]
    }

    fn reader(data: &[u8]) -> impl FnMut(u64, &mut [u8]) -> io::Result<usize> + '_ {
        move |off, buf| {
            let Ok(off) = usize::try_from(off) else {
                return Ok(0);
            };
            let Some(src) = data.get(off..) else {
                return Ok(0);
            };
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
            Ok(n)
        }
    }

    fn scan_bytes(
        data: &[u8],
        start: Option<(WalPosition, (u32, u32))>,
    ) -> Result<ScanResult, WalError> {
        scan(&mut reader(data), start)
    }

    fn map_bytes(data: &[u8]) -> Result<PageMap, WalError> {
        map_committed_pages(&mut reader(data))
    }

    /// Database image → pages (1-based index = position + 1).
    fn db_pages(db: &[u8], page_size: usize) -> Vec<Vec<u8>> {
        assert_eq!(db.len() % page_size, 0);
        db.chunks(page_size).map(|c| c.to_vec()).collect()
    }

    /// Applies transactions to a database image.
    fn apply(db: &[u8], txns: &[CommittedTxn]) -> Vec<u8> {
        let ps = txns.first().map(|t| t.page_size as usize).unwrap_or(1024);
        let mut pages = db_pages(db, ps);
        for t in txns {
            let size = t.commit_size as usize;
            pages.resize(size.max(pages.len()), Vec::new());
            for (pgno, img) in &t.pages {
                assert_eq!(img.len(), ps);
                pages[*pgno as usize - 1] = img.clone();
            }
            pages.truncate(size);
        }
        assert!(
            pages.iter().all(|p| p.len() == ps),
            "a page is neither in the db nor written"
        );
        pages.concat()
    }

    /// Database image from the pre-state plus the pages a PageMap points to.
    fn apply_map(db: &[u8], wal: &[u8], map: &PageMap) -> Vec<u8> {
        let Some(h) = map.header else {
            return db.to_vec();
        };
        if map.last_commit.is_none() {
            return db.to_vec();
        }
        let ps = h.page_size as usize;
        let mut pages = db_pages(db, ps);
        pages.resize(map.commit_size as usize, Vec::new());
        pages.truncate(map.commit_size as usize);
        for (&pgno, &frame) in &map.latest_frame {
            let off = frame_offset(h.page_size, frame) as usize + FRAME_HEADER_SIZE;
            pages[pgno as usize - 1] = wal[off..off + ps].to_vec();
        }
        assert!(pages.iter().all(|p| p.len() == ps));
        pages.concat()
    }

    /// (frame, header) of every complete frame in the file, valid or not.
    fn raw_frames(wal: &[u8]) -> Vec<(u32, FrameHeader)> {
        let h = WalHeader::parse(wal).unwrap();
        let mut out = Vec::new();
        let mut frame = 1u32;
        loop {
            let off = frame_offset(h.page_size, frame) as usize;
            if off as u64 + h.frame_size() > wal.len() as u64 {
                return out;
            }
            out.push((frame, FrameHeader::parse(&wal[off..]).unwrap()));
            frame += 1;
        }
    }

    /// (position, header, checksum after) of every frame the chain accepts.
    fn verified_frames(wal: &[u8]) -> Vec<(WalPosition, FrameHeader, (u32, u32))> {
        let h = WalHeader::parse(wal).unwrap();
        let mut chain = FrameChain::new(&h);
        let mut out = Vec::new();
        walk(&mut reader(wal), &mut chain, &mut |pos, fh, _p, ck| {
            out.push((pos, *fh, ck))
        })
        .unwrap();
        out
    }

    /// Builds a log: `txns` is a list of transactions, each a list of
    /// (pgno, fill byte) frames; the last frame of each gets commit size
    /// `sizes[i]`.
    fn build_wal(header: WalHeader, txns: &[(&[(u32, u8)], u32)]) -> Vec<u8> {
        let mut out = header.to_bytes().to_vec();
        let mut chain = FrameChain::new(&header);
        for (frames, size) in txns {
            for (i, &(pgno, fill)) in frames.iter().enumerate() {
                let commit = if i + 1 == frames.len() { *size } else { 0 };
                let page = page_image(header.page_size, pgno, fill);
                let fh = chain.seal(pgno, commit, &page).unwrap();
                out.extend_from_slice(&fh.to_bytes());
                out.extend_from_slice(&page);
            }
        }
        out
    }

    fn page_image(page_size: u32, pgno: u32, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; page_size as usize];
        p[..4].copy_from_slice(&pgno.to_be_bytes());
        p
    }

    fn check_invariants(r: &ScanResult) {
        let mut prev = 0u32;
        for t in &r.txns {
            assert!(t.end.frame > prev);
            prev = t.end.frame;
            assert!(t.commit_size > 0);
            let mut last = 0;
            for (pgno, img) in &t.pages {
                assert!(*pgno > last && *pgno <= t.commit_size);
                last = *pgno;
                assert_eq!(img.len() as u32, t.page_size);
            }
        }
        if let Some(t) = r.txns.last() {
            assert_eq!(r.last_commit, Some(t.end));
            assert!(r.stopped_at > t.end.frame);
        }
    }

    // ---------------------------------------------------------------- format

    #[test]
    fn header_roundtrip_and_validation() {
        let h = WalHeader::new(false, 4096, 7, 0x1234_5678, 0x9abc_def0);
        let bytes = h.to_bytes();
        assert_eq!(WalHeader::parse(&bytes), Ok(h));
        assert!(!h.big_endian_checksums());
        assert_eq!(h.salts(), (0x1234_5678, 0x9abc_def0));
        assert!(WalHeader::new(true, 4096, 7, 1, 2).big_endian_checksums());

        assert_eq!(
            WalHeader::parse(&bytes[..31]),
            Err(WalError::Short("WAL header needs 32 bytes"))
        );
        let mut bad = bytes;
        bad[3] = 0x84;
        assert_eq!(WalHeader::parse(&bad), Err(WalError::BadMagic(0x377f_0684)));
        let mut bad = bytes;
        bad[20] ^= 1; // salt-2
        assert_eq!(WalHeader::parse(&bad), Err(WalError::HeaderChecksum));
        for ps in [0u32, 1, 256, 1000, 131_072, u32::MAX] {
            let hb = WalHeader::new(false, ps, 0, 1, 2).to_bytes();
            assert_eq!(
                WalHeader::parse(&hb),
                Err(WalError::BadPageSize(ps)),
                "page size {ps}"
            );
        }
        for ps in [512u32, 1024, 32_768, 65_536] {
            assert!(WalHeader::parse(&WalHeader::new(true, ps, 0, 1, 2).to_bytes()).is_ok());
        }
        // A correctly checksummed header of another version.
        let mut v = WalHeader::new(false, 1024, 0, 1, 2);
        v.version = 3_007_001;
        let vb = v.to_bytes();
        let (c1, c2) = wal_checksum(false, (0, 0), &vb[..24]);
        v.cksum1 = c1;
        v.cksum2 = c2;
        assert_eq!(
            WalHeader::parse(&v.to_bytes()),
            Err(WalError::BadVersion(3_007_001))
        );
    }

    #[test]
    fn checksum_and_offsets() {
        // Hand-computed: words (1, 2) then (3, 4).
        let le = [1u8, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0];
        // s1 = 1, s2 = 2 + 1 = 3; s1 = 1 + 3 + 3 = 7, s2 = 3 + 4 + 7 = 14
        assert_eq!(wal_checksum(false, (0, 0), &le), (7, 14));
        let be = [0u8, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        assert_eq!(wal_checksum(true, (0, 0), &be), (7, 14));
        // Chaining equals one pass; a trailing partial block is ignored.
        assert_eq!(
            wal_checksum(true, wal_checksum(true, (0, 0), &be[..8]), &be[8..]),
            (7, 14)
        );
        assert_eq!(
            wal_checksum(true, (0, 0), &[be.as_slice(), &[9, 9, 9]].concat()),
            (7, 14)
        );
        // Wrapping.
        assert_eq!(
            wal_checksum(true, (u32::MAX, u32::MAX), &[0, 0, 0, 1, 0, 0, 0, 0]),
            (u32::MAX, u32::MAX - 1)
        );

        assert_eq!(frame_offset(1024, 1), 32);
        assert_eq!(frame_offset(1024, 2), 32 + 1048);
        assert_eq!(frame_offset(4096, 10), 32 + 9 * 4120);
        assert_eq!(
            frame_offset(65_536, u32::MAX),
            32 + (u32::MAX as u64 - 1) * 65_560
        );
        assert_eq!(frame_offset(1024, 0), 32);
        assert_eq!(frame_offset(u32::MAX, u32::MAX), u64::MAX);
    }

    #[test]
    fn frame_chain_accepts_and_rejects() {
        let h = WalHeader::new(false, 512, 0, 11, 22);
        let wal = build_wal(h, &[(&[(1, 0xaa), (2, 0xbb)], 2)]);
        let f1 = &wal[32..32 + 536];
        let f2 = &wal[32 + 536..];
        let mut chain = FrameChain::new(&h);
        assert_eq!(chain.checksum(), h.checksum());
        // Wrong lengths are errors, not "end of log".
        assert!(chain.accept(&f1[..23], &f1[24..]).is_err());
        assert!(chain.accept(&f1[..24], &f1[24..535]).is_err());
        // Out of order: frame 2 first does not chain.
        assert_eq!(chain.accept(&f2[..24], &f2[24..]), Ok(None));
        assert_eq!(chain.next_frame(), 1);
        let a = chain.accept(&f1[..24], &f1[24..]).unwrap().unwrap();
        assert_eq!((a.pgno, a.commit_size, a.is_commit()), (1, 0, false));
        let ck1 = chain.checksum();
        assert_eq!(ck1, a.checksum());
        // A corrupted page stops the chain and does not advance it.
        let mut bad = f2.to_vec();
        bad[300] ^= 0x40;
        assert_eq!(chain.accept(&bad[..24], &bad[24..]), Ok(None));
        assert_eq!((chain.next_frame(), chain.checksum()), (2, ck1));
        // Salts are checked even when the checksum is right.
        let mut other = FrameChain::new(&WalHeader { salt2: 23, ..h });
        assert_eq!(other.accept(&f1[..24], &f1[24..]), Ok(None));
        // Resume after frame 1 with its checksum.
        let mut resumed = FrameChain::resume(&h, 2, ck1);
        assert!(resumed
            .accept(&f2[..24], &f2[24..])
            .unwrap()
            .unwrap()
            .is_commit());
        assert!(chain
            .accept(&f2[..24], &f2[24..])
            .unwrap()
            .unwrap()
            .is_commit());
        assert_eq!(chain.next_frame(), 3);
        // A chain past the last frame index accepts nothing.
        let mut end = FrameChain::resume(&h, 0, h.checksum());
        assert_eq!(end.accept(&f1[..24], &f1[24..]), Ok(None));
    }

    #[test]
    fn page_number_zero_is_invalid() {
        let h = WalHeader::new(true, 512, 0, 1, 2);
        let mut chain = FrameChain::new(&h);
        let page = vec![7u8; 512];
        let fh = chain.clone().seal(0, 1, &page).unwrap();
        assert_eq!(chain.accept(&fh.to_bytes(), &page), Ok(None));
    }

    #[test]
    fn assembler_latest_image_wins_and_truncation() {
        let h = WalHeader::new(false, 512, 0, 5, 6);
        // txn 1: pages 3, 1, 3 (rewritten), 4 → commit size 4.
        // txn 2: pages 4, 2 with commit size 2: page 4 is beyond and dropped.
        let wal = build_wal(
            h,
            &[
                (&[(3, 1), (1, 2), (3, 3), (4, 4)], 4),
                (&[(4, 5), (2, 6)], 2),
            ],
        );
        let r = scan_bytes(&wal, None).unwrap();
        check_invariants(&r);
        assert_eq!(r.txns.len(), 2);
        let t1 = &r.txns[0];
        assert_eq!(
            t1.pages.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
        assert_eq!(t1.pages[1].1, page_image(512, 3, 3));
        assert_eq!((t1.commit_size, t1.end), (4, WalPosition::new((5, 6), 4)));
        let t2 = &r.txns[1];
        assert_eq!(t2.pages, vec![(2, page_image(512, 2, 6))]);
        assert_eq!(r.stopped_at, 7);

        let m = map_bytes(&wal).unwrap();
        assert_eq!(m.latest_frame, BTreeMap::from([(1, 2), (2, 6)]));
        assert_eq!((m.commit_size, m.last_commit), (2, r.last_commit));
        assert_eq!(m.last_commit_checksum, r.last_commit_checksum);

        // Frames of another generation drop the pending ones.
        let mut asm = TxnAssembler::new(512);
        let fh = |pgno, commit_size| FrameHeader {
            pgno,
            commit_size,
            salt1: 0,
            salt2: 0,
            cksum1: 0,
            cksum2: 0,
        };
        assert!(asm
            .push(WalPosition::new((1, 1), 1), &fh(9, 0), &[1; 512])
            .is_none());
        assert_eq!((asm.pending_frames(), asm.pending_pages()), (1, 1));
        let t = asm
            .push(WalPosition::new((2, 2), 1), &fh(8, 10), &[2; 512])
            .unwrap();
        assert_eq!(t.pages, vec![(8, vec![2; 512])]);
        assert_eq!(asm.pending_frames(), 0);
    }

    #[test]
    fn page_size_65536() {
        let h = WalHeader::new(true, 65_536, 3, 0xffff_ffff, 0);
        let wal = build_wal(h, &[(&[(1, 9), (2, 8)], 2), (&[(2, 7)], 2)]);
        let r = scan_bytes(&wal, None).unwrap();
        assert_eq!(r.txns.len(), 2);
        assert_eq!(r.txns[1].pages, vec![(2, page_image(65_536, 2, 7))]);
        assert_eq!(r.header.unwrap().frame_size(), 65_560);
    }

    // ---------------------------------------------------------------- real logs

    #[test]
    fn fixtures_reconstruct_the_checkpointed_database() {
        for (name, fx) in all_fixtures() {
            let r = scan_bytes(fx.wal, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            check_invariants(&r);
            assert!(!r.txns.is_empty(), "{name}");
            assert!(
                apply(fx.pre, &r.txns) == fx.post,
                "{name}: scan does not rebuild the checkpointed db"
            );
            let m = map_bytes(fx.wal).unwrap();
            assert_eq!(m.last_commit, r.last_commit, "{name}");
            assert_eq!(m.last_commit_checksum, r.last_commit_checksum, "{name}");
            assert!(
                apply_map(fx.pre, fx.wal, &m) == fx.post,
                "{name}: page map does not rebuild the db"
            );
            // Resuming from the end finds nothing new.
            let again = scan_bytes(
                fx.wal,
                Some((r.last_commit.unwrap(), r.last_commit_checksum)),
            )
            .unwrap();
            assert!(!again.restarted && again.txns.is_empty(), "{name}");
            assert_eq!(
                (again.last_commit, again.stopped_at),
                (r.last_commit, r.stopped_at),
                "{name}"
            );
        }
    }

    #[test]
    fn simple_commits_and_resume_from_each() {
        let fx = fixture!("simple");
        let r = scan_bytes(fx.wal, None).unwrap();
        let h = r.header.unwrap();
        assert_eq!((h.page_size, h.big_endian_checksums()), (1024, false));
        // INSERT×5, UPDATE, DELETE, CREATE INDEX: four transactions, and
        // every frame in the file is committed.
        assert_eq!(r.txns.len(), 4);
        let frames = raw_frames(fx.wal).len() as u32;
        assert_eq!(r.last_commit.unwrap().frame, frames);
        assert_eq!(r.stopped_at, frames + 1);
        assert_eq!(fx.wal.len() as u64, frame_offset(1024, frames + 1));
        // Resume from the header and from every commit.
        let commits: Vec<_> = verified_frames(fx.wal)
            .into_iter()
            .filter(|f| f.1.is_commit())
            .collect();
        assert_eq!(commits.len(), 4);
        let from_header =
            scan_bytes(fx.wal, Some((WalPosition::new(h.salts(), 0), h.checksum()))).unwrap();
        assert_eq!(from_header.txns, r.txns);
        for (i, (pos, _, ck)) in commits.iter().enumerate() {
            let rest = scan_bytes(fx.wal, Some((*pos, *ck))).unwrap();
            assert!(!rest.restarted);
            assert_eq!(rest.txns, r.txns[i + 1..], "resume after commit {i}");
            assert_eq!(rest.last_commit, r.last_commit);
            // Applying a prefix, then the rest, gives the same result.
            let mid = apply(fx.pre, &r.txns[..=i]);
            assert!(apply(&mid, &rest.txns) == fx.post);
        }
        // A start that is not a commit frame, or carries the wrong checksum,
        // or lies beyond the log, is reported as a restart.
        let (pos, _, ck) = commits[1];
        let first = verified_frames(fx.wal)[0];
        for bad in [
            (pos, (ck.0 ^ 1, ck.1)),
            (first.0, first.2),
            (
                WalPosition {
                    frame: frames + 5,
                    ..pos
                },
                ck,
            ),
            (WalPosition::new(h.salts(), 0), (1, 2)),
        ] {
            let x = scan_bytes(fx.wal, Some(bad)).unwrap();
            assert!(
                x.restarted && x.txns.is_empty() && x.last_commit.is_none(),
                "{bad:?}"
            );
            assert_eq!(x.header, Some(h));
        }
    }

    #[test]
    fn spilled_then_rolled_back_frames_never_appear() {
        let fx = fixture!("spill");
        assert!(
            fx.wal.windows(10).any(|w| w == b"ROLLEDBACK"),
            "fixture lost its point"
        );
        let r = scan_bytes(fx.wal, None).unwrap();
        assert_eq!(r.txns.len(), 2); // committed-1, committed-2
        for t in &r.txns {
            for (_, img) in &t.pages {
                assert!(!img.windows(10).any(|w| w == b"ROLLEDBACK"));
            }
        }
        // The frame after the last commit is a leftover with the live salts;
        // only the checksum chain rejects it.
        let h = r.header.unwrap();
        let raw = raw_frames(fx.wal);
        assert!(raw.len() as u32 > r.stopped_at);
        let (n, stale) = raw[r.stopped_at as usize - 1];
        assert_eq!(n, r.stopped_at);
        assert_eq!(stale.salts(), h.salts());
        assert_eq!(r.stopped_at, r.last_commit.unwrap().frame + 1);
    }

    #[test]
    fn spilled_uncommitted_frames_are_pending_only() {
        let fx = fixture!("spill_mid");
        let h = WalHeader::parse(fx.wal).unwrap();
        let mut chain = FrameChain::new(&h);
        let mut asm = TxnAssembler::new(h.page_size);
        let mut txns = Vec::new();
        walk(&mut reader(fx.wal), &mut chain, &mut |pos, fh, page, _| {
            txns.extend(asm.push(pos, fh, page))
        })
        .unwrap();
        assert_eq!(txns.len(), 1); // committed-1
                                   // The open transaction's spilled frames all verify but never commit.
        assert!(asm.pending_frames() >= 10);
        assert_eq!(chain.next_frame() as usize, raw_frames(fx.wal).len() + 1);
        let r = scan_bytes(fx.wal, None).unwrap();
        assert_eq!(r.txns, txns);
        assert_eq!(r.stopped_at, chain.next_frame());
        assert!(r.last_commit.unwrap().frame + asm.pending_frames() == r.stopped_at - 1);
    }

    #[test]
    fn restart_ignores_stale_generation() {
        let fx = fixture!("restart");
        let r = scan_bytes(fx.wal, None).unwrap();
        let h = r.header.unwrap();
        assert_eq!(r.txns.len(), 1);
        let raw = raw_frames(fx.wal);
        let stopped = r.stopped_at as usize;
        assert!(
            raw.len() >= stopped,
            "no stale frames after the new generation"
        );
        // Stale frames belong to the previous generation: salt-1 one less.
        for (_, fh) in &raw[stopped - 1..] {
            assert_eq!(fh.salt1, h.salt1.wrapping_sub(1));
            assert_ne!(fh.salts(), h.salts());
        }
        // A reader positioned in the old generation is told to start over.
        let (n, old_commit) = raw
            .iter()
            .rev()
            .find(|(_, fh)| fh.is_commit() && fh.salts() != h.salts())
            .unwrap();
        let old = (
            WalPosition::new(old_commit.salts(), *n),
            old_commit.checksum(),
        );
        let x = scan_bytes(fx.wal, Some(old)).unwrap();
        assert!(x.restarted && x.txns.is_empty() && x.last_commit.is_none() && x.stopped_at == 0);
        assert_eq!(x.header, Some(h));
    }

    #[test]
    fn journal_size_limit_truncation() {
        let fx = fixture!("size_limit");
        assert_eq!(fx.wal.len(), 6000);
        assert_ne!((fx.wal.len() - 32) % 1048, 0);
        let r = scan_bytes(fx.wal, None).unwrap();
        assert_eq!(r.txns.len(), 1);
        let raw = raw_frames(fx.wal);
        assert!(raw.len() as u32 >= r.stopped_at);
        assert_ne!(
            raw[r.stopped_at as usize - 1].1.salts(),
            r.header.unwrap().salts()
        );
    }

    #[test]
    fn rewritten_in_place_final_image_wins() {
        let fx = fixture!("rewrite");
        let r = scan_bytes(fx.wal, None).unwrap();
        let v = verified_frames(fx.wal);
        let last = r.txns.last().unwrap();
        let start = r.txns[r.txns.len() - 2].end.frame;
        let pgnos: Vec<u32> = v
            .iter()
            .filter(|f| f.0.frame > start)
            .map(|f| f.1.pgno)
            .collect();
        assert!(
            pgnos.len() > last.pages.len(),
            "the last transaction should hold a page twice: {pgnos:?}"
        );
        assert!(apply(fx.pre, &r.txns) == fx.post);
        // The pages' final images are those of the checkpointed file.
        for (pgno, img) in &last.pages {
            let off = (*pgno as usize - 1) * 1024;
            assert!(fx.post[off..off + 1024] == img[..], "page {pgno}");
        }
    }

    #[test]
    fn big_endian_checksums() {
        let fx = fixture!("bigendian");
        let r = scan_bytes(fx.wal, None).unwrap();
        assert_eq!(r.header.unwrap().magic, WAL_MAGIC_BE);
        assert_eq!(r.txns.len(), 4);
        // The same frames re-sealed little-endian scan to the same transactions.
        let le = reseal(fx.wal, false);
        let r2 = scan_bytes(&le, None).unwrap();
        assert_eq!(r2.txns, r.txns);
        assert!(!r2.header.unwrap().big_endian_checksums());
        // And misreading the byte order breaks the chain at frame 1.
        let mut wrong = fx.wal.to_vec();
        let mut h = WalHeader::parse(&wrong).unwrap();
        h = WalHeader::new(false, h.page_size, h.checkpoint_seq, h.salt1, h.salt2);
        wrong[..32].copy_from_slice(&h.to_bytes());
        let r3 = scan_bytes(&wrong, None).unwrap();
        assert!(r3.txns.is_empty() && r3.stopped_at == 1);
    }

    /// Re-encodes every complete frame of `wal` with fresh chained checksums.
    fn reseal(wal: &[u8], big_endian: bool) -> Vec<u8> {
        let h = WalHeader::parse(wal).unwrap();
        let nh = WalHeader::new(big_endian, h.page_size, h.checkpoint_seq, h.salt1, h.salt2);
        let mut out = nh.to_bytes().to_vec();
        let mut chain = FrameChain::new(&nh);
        for (n, fh) in raw_frames(wal) {
            let off = frame_offset(h.page_size, n) as usize + FRAME_HEADER_SIZE;
            let page = &wal[off..off + h.page_size as usize];
            let sealed = chain.seal(fh.pgno, fh.commit_size, page).unwrap();
            out.extend_from_slice(&sealed.to_bytes());
            out.extend_from_slice(page);
        }
        out
    }

    // ---------------------------------------------------------------- damage

    #[test]
    fn flipped_bytes_stop_the_chain_there() {
        let fx = fixture!("simple");
        let full = scan_bytes(fx.wal, None).unwrap();
        let n = raw_frames(fx.wal).len() as u32;
        // One byte in each frame: its header (page number, commit size, salts,
        // checksums) and its page.
        for frame in 1..=n {
            for at in [0usize, 3, 7, 9, 14, 17, 23, 24, 500, 1047] {
                let mut w = fx.wal.to_vec();
                w[frame_offset(1024, frame) as usize + at] ^= 0x10;
                let r = scan_bytes(&w, None).unwrap();
                check_invariants(&r);
                assert_eq!(r.stopped_at, frame, "frame {frame} byte {at}");
                let expect: Vec<_> = full
                    .txns
                    .iter()
                    .filter(|t| t.end.frame < frame)
                    .cloned()
                    .collect();
                assert_eq!(r.txns, expect, "frame {frame} byte {at}");
                assert_eq!(r.last_commit, expect.last().map(|t| t.end));
            }
        }
        // Any byte of the header: an error, never a partial result.
        for at in 0..32 {
            let mut w = fx.wal.to_vec();
            w[at] ^= 0x01;
            let e = scan_bytes(&w, None).unwrap_err();
            if at == 3 {
                // 0x82 → 0x83: big-endian magic, so the checksum fails.
                assert_eq!(e, WalError::HeaderChecksum);
            } else if at < 4 {
                assert!(matches!(e, WalError::BadMagic(_)), "{at}: {e}");
            } else if (8..12).contains(&at) {
                assert!(matches!(e, WalError::BadPageSize(_)), "{at}: {e}");
            } else {
                assert_eq!(e, WalError::HeaderChecksum, "{at}");
            }
            assert_eq!(map_bytes(&w), Err(e));
        }
    }

    #[test]
    fn truncated_files() {
        let fx = fixture!("simple");
        let full = scan_bytes(fx.wal, None).unwrap();
        let mut lens: Vec<usize> = (0..fx.wal.len()).step_by(97).collect();
        for f in 1..=full.stopped_at {
            let end = frame_offset(1024, f) as usize;
            lens.extend([end - 1, end, end + 1, end + 24]);
        }
        for len in lens.into_iter().filter(|&l| l <= fx.wal.len()) {
            let w = &fx.wal[..len];
            let r = scan_bytes(w, None).unwrap();
            check_invariants(&r);
            if len < 32 {
                assert!(r.header.is_none() && r.txns.is_empty() && r.last_commit.is_none());
                assert_eq!(map_bytes(w).unwrap().header, None);
                continue;
            }
            let complete = ((len - 32) / 1048) as u32;
            assert_eq!(r.stopped_at, complete + 1, "len {len}");
            let expect: Vec<_> = full
                .txns
                .iter()
                .filter(|t| t.end.frame <= complete)
                .cloned()
                .collect();
            assert_eq!(r.txns, expect, "len {len}");
            let m = map_bytes(w).unwrap();
            assert_eq!(m.last_commit, r.last_commit);
            if r.last_commit.is_none() {
                assert_eq!(r.last_commit_checksum, r.header.unwrap().checksum());
            }
        }
    }

    #[test]
    fn garbage_and_io_errors() {
        assert_eq!(scan_bytes(b"", None).unwrap().header, None);
        assert_eq!(scan_bytes(&[0u8; 31], None).unwrap().header, None);
        assert!(matches!(
            scan_bytes(&[0u8; 4096], None),
            Err(WalError::BadMagic(0))
        ));
        let junk: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!(scan_bytes(&junk, None).is_err());
        // An I/O error is reported, with its message.
        let mut failing =
            |_: u64, _: &mut [u8]| -> io::Result<usize> { Err(io::Error::other("disk on fire")) };
        let e = scan(&mut failing, None).unwrap_err();
        assert!(e.to_string().contains("disk on fire"), "{e}");
        // A reader returning one byte at a time, with interruptions, and one
        // claiming more bytes than asked: same result.
        let fx = fixture!("simple");
        let want = scan_bytes(fx.wal, None).unwrap();
        let mut tick = 0u32;
        let mut slow = |off: u64, buf: &mut [u8]| -> io::Result<usize> {
            tick += 1;
            if tick.is_multiple_of(3) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let off = off as usize;
            if off >= fx.wal.len() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = fx.wal[off];
            Ok(1)
        };
        assert_eq!(scan(&mut slow, None).unwrap(), want);
        let mut liar = |off: u64, buf: &mut [u8]| -> io::Result<usize> {
            let n = reader(fx.wal)(off, buf)?;
            Ok(if n == 0 { 0 } else { n + 1000 })
        };
        assert_eq!(scan(&mut liar, None).unwrap(), want);
        // Display messages.
        assert!(WalError::BadMagic(1).to_string().contains("0x00000001"));
        assert!(WalError::BadPageSize(3).to_string().contains("page size 3"));
        assert!(WalError::BadVersion(9).to_string().contains("version 9"));
        assert!(WalError::HeaderChecksum.to_string().contains("checksum"));
    }

    /// Deterministic mutation fuzzing over the fixtures: scan must never
    /// panic and must agree with map_committed_pages.
    #[test]
    fn mutations_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (_, fx) in all_fixtures() {
            for _ in 0..40 {
                let mut w = fx.wal.to_vec();
                for _ in 0..(rnd() % 4) {
                    let i = rnd() as usize % w.len();
                    w[i] = rnd() as u8;
                }
                if rnd() % 3 == 0 {
                    w.truncate(rnd() as usize % (w.len() + 1));
                }
                if rnd() % 2 == 0 && w.len() >= 32 {
                    // Keep the header valid so that the frames get exercised.
                    w[..32].copy_from_slice(&fx.wal[..32]);
                }
                let a = scan_bytes(&w, None);
                let b = map_bytes(&w);
                match (a, b) {
                    (Ok(r), Ok(m)) => {
                        check_invariants(&r);
                        assert_eq!(m.last_commit, r.last_commit);
                        assert_eq!(m.last_commit_checksum, r.last_commit_checksum);
                        if let Some(t) = r.txns.last() {
                            assert_eq!(m.commit_size, t.commit_size);
                        }
                        assert!(m
                            .latest_frame
                            .values()
                            .all(|&f| Some(f) <= r.last_commit.map(|p| p.frame)));
                    }
                    (Err(x), Err(y)) => assert_eq!(x, y),
                    (x, y) => panic!("scan {x:?} vs map {y:?}"),
                }
            }
        }
    }
}

/// The header of the WAL index (`-shm`) as SQLite keeps it: what readers treat as committed,
/// even where the log's own checksum chain is broken (SQLite 3.40 can leave frames of a
/// committed transaction with zero salts after `ROLLBACK TO` inside a spilled transaction;
/// its readers follow the index, so snapshots must too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalIndexHeader {
    pub page_size: u32,
    /// Last committed frame; 0 = the log holds nothing committed.
    pub mx_frame: u32,
    /// Database size in pages at `mx_frame`.
    pub n_page: u32,
    pub salt1: u32,
    pub salt2: u32,
    /// Running checksum through `mx_frame`.
    pub cksum: (u32, u32),
}

/// Size of one copy of the WAL-index header (the `-shm` file holds two, back to back).
pub const WAL_INDEX_HEADER_SIZE: usize = 48;

impl WalIndexHeader {
    /// Parses one copy (native byte order, as SQLite writes it in shared memory); `None`
    /// when it is not initialised or not a version this code knows.
    pub fn parse(b: &[u8]) -> Option<WalIndexHeader> {
        if b.len() < WAL_INDEX_HEADER_SIZE {
            return None;
        }
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        let version = u32_at(0);
        let is_init = b[12];
        if version != WAL_FORMAT_VERSION || is_init == 0 {
            return None;
        }
        let page_size = page_size_from_header_field(u16::from_ne_bytes([b[14], b[15]]));
        if !is_valid_page_size(page_size) {
            return None;
        }
        // The salts are stored as the raw big-endian bytes of the log header.
        let salt = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        Some(WalIndexHeader {
            page_size,
            mx_frame: u32_at(16),
            n_page: u32_at(20),
            salt1: salt(32),
            salt2: salt(36),
            cksum: (u32_at(24), u32_at(28)),
        })
    }
}

#[cfg(test)]
mod index_header_tests {
    use super::*;

    #[test]
    fn parses_a_native_header_and_rejects_an_uninitialised_one() {
        let mut b = [0u8; WAL_INDEX_HEADER_SIZE];
        b[0..4].copy_from_slice(&WAL_FORMAT_VERSION.to_ne_bytes());
        b[12] = 1;
        b[14..16].copy_from_slice(&4096u16.to_ne_bytes());
        b[16..20].copy_from_slice(&663u32.to_ne_bytes());
        b[20..24].copy_from_slice(&152u32.to_ne_bytes());
        b[24..28].copy_from_slice(&7u32.to_ne_bytes());
        b[28..32].copy_from_slice(&8u32.to_ne_bytes());
        b[32..36].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        b[36..40].copy_from_slice(&0x0506_0708u32.to_be_bytes());
        let h = WalIndexHeader::parse(&b).unwrap();
        assert_eq!(
            (h.page_size, h.mx_frame, h.n_page, h.cksum),
            (4096, 663, 152, (7, 8))
        );
        assert_eq!((h.salt1, h.salt2), (0x0102_0304, 0x0506_0708));
        b[12] = 0;
        assert_eq!(WalIndexHeader::parse(&b), None);
    }
}
