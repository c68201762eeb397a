//! The WAL's fixed-size structures: the 32-byte file header, the 24-byte frame header, the
//! format's constants and errors, SQLite's WAL checksum function and frame offsets. Pure
//! decoding and encoding of bytes; it must not read files or decide which frames count.

pub use super::checksum::wal_checksum;
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

/// Whether the start of a database file (at least 20 bytes) says it is in WAL mode: its
/// file-format version bytes (18 and 19) are 2, where a rollback-journal database has 1.
pub fn is_wal_mode_header(head: &[u8]) -> bool {
    head.len() >= 20 && head[18] == 2 && head[19] == 2
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
    /// validated here: see [`FrameChain::accept`](super::FrameChain::accept).
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

/// Byte offset of the header of frame `frame` (1-based) in a log of
/// `page_size`-byte pages.  Frame 0 does not exist; it maps to 32, the end
/// of the WAL header.  Saturates instead of overflowing.
pub fn frame_offset(page_size: u32, frame: u32) -> u64 {
    let frame_size = FRAME_HEADER_SIZE as u64 + u64::from(page_size);
    u64::from(frame.saturating_sub(1))
        .saturating_mul(frame_size)
        .saturating_add(WAL_HEADER_SIZE as u64)
}
