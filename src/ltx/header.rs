//! The LTX header and trailer: the format's constants and flags, their encoding, decoding
//! and validation (ltx's `Header.Validate` / `Trailer.Validate`), page-size validity and the
//! lock page. Pure functions of bytes and fields; it must not read or write streams.

use super::error::LtxError;

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
/// The page sizes are SQLite's, so the WAL format owns their bounds.
pub use crate::wal::{is_valid_page_size, MAX_PAGE_SIZE, MIN_PAGE_SIZE};
/// The largest transaction id accepted: ltx's are unsigned, but SQL shows them as signed
/// 64-bit integers, and the next id after any accepted one must exist (`max_txid + 1` is
/// where the next file starts). A replica at a million commits a second takes 290,000 years
/// to get here; a file or name beyond it is damaged or hostile.
pub const MAX_TXID: u64 = i64::MAX as u64;
/// SQLite's PENDING_BYTE: the page containing it (the lock page) is never used.
const PENDING_BYTE: u32 = 0x4000_0000;

/// The bytes of a file besides its pages: the header, the end marker, the page index's
/// terminator and length, and the trailer.
const FIXED_BYTES: u64 = (HEADER_SIZE + PAGE_HEADER_SIZE + 1 + 8 + TRAILER_SIZE) as u64;

/// The fewest bytes one stored page takes: its page header and size field, its LZ4 block
/// and its index entry (three uvarints of at least a byte). An LZ4 block yields at most 255
/// bytes per byte it holds (a match length grows by 255 per extension byte), so a page
/// takes at least `page_size / 256` of them, and never fewer than one.
pub fn min_page_bytes(page_size: u32) -> u64 {
    (PAGE_HEADER_SIZE + 4 + 3) as u64 + (page_size as u64 / 256).max(1)
}

/// The most pages a file of `size` bytes can store: what a header is checked against
/// before anything is sized from it.
pub fn max_pages_in(size: u64, page_size: u32) -> u64 {
    size.saturating_sub(FIXED_BYTES) / min_page_bytes(page_size)
}

/// The page holding byte offset 0x40000000 (SQLite's lock page); `page_size` should be valid.
pub fn lock_pgno(page_size: u32) -> u32 {
    PENDING_BYTE / page_size.max(1) + 1
}

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

pub(super) fn be_u32(b: &[u8], at: usize) -> u32 {
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
        if b.starts_with(b"age-encryption.org/") {
            return Err(LtxError::Encrypted);
        }
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

    /// Pages a snapshot must store: every page up to `commit` but the lock page.
    pub fn snapshot_pages(&self) -> u64 {
        let lock = u64::from(self.commit >= self.lock_pgno());
        u64::from(self.commit) - lock
    }

    /// Checks the header against the size of the file it heads, before a reader sizes
    /// anything from it: a snapshot must have room for every page it declares.
    pub fn check_file_size(&self, size: u64) -> Result<(), LtxError> {
        let most = max_pages_in(size, self.page_size);
        if self.is_snapshot() && self.snapshot_pages() > most {
            return Err(LtxError::BadHeader(format!(
                "a snapshot of {} pages of {} bytes cannot fit in {size} bytes (room for {most} pages at most)",
                self.commit, self.page_size
            )));
        }
        Ok(())
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
        if self.max_txid > MAX_TXID {
            return bad(format!(
                "transaction id {} is above the largest there can be ({MAX_TXID})",
                self.max_txid
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

pub(super) fn check_post_apply(header: &Header, post_apply_checksum: u64) -> Result<(), LtxError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::encode::Encoder;
    use crate::ltx::test_support::{encode, header};

    #[test]
    fn headers_are_checked_against_the_file_size() {
        // The most compressible real files (zero pages) fit their own headers.
        let snap = crate::ltx::test_support::sample_snapshot().1;
        Header::decode(&snap)
            .unwrap()
            .check_file_size(snap.len() as u64)
            .unwrap();
        for page_size in [512u32, 4096, 65536] {
            let h = Header {
                page_size,
                ..header(1, 1, 40, FLAG_NO_CHECKSUM)
            };
            let zeros: Vec<(u32, Vec<u8>)> = (1..=40)
                .map(|p| (p, vec![0u8; page_size as usize]))
                .collect();
            let bytes = encode(h, &zeros, 0);
            assert!(
                max_pages_in(bytes.len() as u64, page_size) >= 40,
                "{page_size}"
            );
            h.check_file_size(bytes.len() as u64).unwrap();
            assert!(h.check_file_size(bytes.len() as u64 / 2).is_err());
        }
        let h = header(1, 1, 3, FLAG_NO_CHECKSUM);
        // A 4 KiB snapshot claiming 2^32-1 pages is refused from the header alone.
        let huge = Header {
            commit: u32::MAX,
            page_size: 4096,
            ..h
        };
        let err = huge.check_file_size(4096).unwrap_err().to_string();
        assert!(
            err.contains("4294967295 pages") && err.contains("4096 bytes"),
            "{err}"
        );
        // Zero-page bounds for every page size: at least 1/256 of a page plus 13 bytes.
        assert_eq!(min_page_bytes(512), 15);
        assert_eq!(min_page_bytes(4096), 29);
        assert_eq!(min_page_bytes(65536), 269);
        assert_eq!(max_pages_in(100, 4096), 0);
        assert_eq!(max_pages_in(131 + 29 * 10, 4096), 10);
        // A level-0 file declares no pages of its own: the chain decides what it may grow.
        let l0 = Header {
            commit: u32::MAX,
            ..header(2, 2, 3, FLAG_NO_CHECKSUM)
        };
        l0.check_file_size(200).unwrap();
        // The lock page is never stored.
        let lock = lock_pgno(4096);
        let at_lock = Header {
            commit: lock,
            page_size: 4096,
            ..h
        };
        assert_eq!(at_lock.snapshot_pages(), u64::from(lock) - 1);
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
}
