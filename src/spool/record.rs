//! One spool record: what a caller says about a transaction (`RecordHeader`), what the spool
//! keeps about it (`RecordMeta`), and the bytes of its 64-byte header and its integrity check
//! as they are on disk (the layout is in the module docs above). It must not touch files:
//! segments read and write the bytes.

use crate::ltx::Crc64;
use crate::wal::WalPosition;

pub(super) const RECORD_MAGIC: &[u8; 4] = b"RSP1";
pub(super) const RECORD_HEADER_SIZE: u64 = 64;

/// What the spool holds about one captured transaction (its pages stay on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    pub seq: u64,
    pub page_size: u32,
    pub commit_size: u32,
    pub end: WalPosition,
    pub end_cksum: (u32, u32),
    pub captured_at_ms: u64,
    /// Page numbers in frame order; entry i's page is at `page_offset(i)`.
    pub pgnos: Pgnos,
    /// Transactions held by the records before this one since the spool was opened (see
    /// [`super::RecordWriter::holding_txns`]; a record read back at open holds one).
    pub(super) txns_before: u64,
    pub(super) segment: u64,
    pub(super) offset: u64,
}

impl RecordMeta {
    /// A placeholder for a record taken out of its writer.
    pub(super) fn empty() -> RecordMeta {
        RecordMeta {
            seq: 0,
            page_size: 0,
            commit_size: 0,
            end: WalPosition {
                salt1: 0,
                salt2: 0,
                frame: 0,
            },
            end_cksum: (0, 0),
            captured_at_ms: 0,
            pgnos: Pgnos::with_capacity(0),
            txns_before: 0,
            segment: 0,
            offset: 0,
        }
    }

    pub(super) fn len(&self) -> u64 {
        record_len(self.pgnos.len() as u64, self.page_size)
    }
    pub(super) fn page_offset(&self, i: usize) -> u64 {
        self.offset + RECORD_HEADER_SIZE + i as u64 * (4 + self.page_size as u64) + 4
    }
}

/// How many page numbers a record keeps without an allocation of its own: a small commit,
/// the commonest record, then costs the commit path no allocation (and the uploader, which
/// drops it on another thread, no free).
const INLINE_PGNOS: usize = 6;

/// A record's page numbers in frame order (a slice, through `Deref`).
#[derive(Clone)]
pub struct Pgnos(PgnoRepr);

#[derive(Clone)]
enum PgnoRepr {
    Inline { len: u8, pgnos: [u32; INLINE_PGNOS] },
    Heap(Vec<u32>),
}

impl Pgnos {
    /// Room for `n` page numbers.
    pub fn with_capacity(n: usize) -> Pgnos {
        Pgnos(match n <= INLINE_PGNOS {
            true => PgnoRepr::Inline {
                len: 0,
                pgnos: [0; INLINE_PGNOS],
            },
            false => PgnoRepr::Heap(Vec::with_capacity(n)),
        })
    }

    pub fn push(&mut self, pgno: u32) {
        match &mut self.0 {
            PgnoRepr::Inline { len, pgnos } if (*len as usize) < INLINE_PGNOS => {
                pgnos[*len as usize] = pgno;
                *len += 1;
            }
            PgnoRepr::Inline { pgnos, .. } => {
                let mut v = pgnos.to_vec();
                v.push(pgno);
                self.0 = PgnoRepr::Heap(v);
            }
            PgnoRepr::Heap(v) => v.push(pgno),
        }
    }
}

impl std::ops::Deref for Pgnos {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        match &self.0 {
            PgnoRepr::Inline { len, pgnos } => &pgnos[..*len as usize],
            PgnoRepr::Heap(v) => v,
        }
    }
}

impl std::fmt::Debug for Pgnos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Pgnos {
    fn eq(&self, other: &Pgnos) -> bool {
        **self == **other
    }
}

impl Eq for Pgnos {}

impl PartialEq<Vec<u32>> for Pgnos {
    fn eq(&self, other: &Vec<u32>) -> bool {
        **self == other[..]
    }
}

/// Bytes a record of `npages` pages takes: header, entries, CRC.
pub(super) fn record_len(npages: u64, page_size: u32) -> u64 {
    RECORD_HEADER_SIZE + npages * (4 + page_size as u64) + 8
}

/// How a record's pages are protected against a torn write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// A CRC-64 over the whole record.
    Crc,
    /// The entries are WAL frames in order: SQLite's checksum chain from `start` must end at
    /// the record's `end_cksum` (the header alone gets a CRC).
    WalChain { start: (u32, u32), big_endian: bool },
}

/// The header of a record about to be appended.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    pub page_size: u32,
    pub commit_size: u32,
    pub end: WalPosition,
    pub end_cksum: (u32, u32),
    pub captured_at_ms: u64,
    pub integrity: Integrity,
}

/// Appends the 64 header bytes of record `seq` to `buf`.
pub(super) fn encode_header(seq: u64, header: &RecordHeader, npages: u32, buf: &mut Vec<u8>) {
    buf.extend_from_slice(RECORD_MAGIC);
    buf.extend_from_slice(&seq.to_be_bytes());
    for v in [
        header.page_size,
        header.commit_size,
        header.end.salt1,
        header.end.salt2,
        header.end.frame,
        header.end_cksum.0,
        header.end_cksum.1,
        npages,
    ] {
        buf.extend_from_slice(&v.to_be_bytes());
    }
    buf.extend_from_slice(&header.captured_at_ms.to_be_bytes());
    let (kind, start) = match header.integrity {
        Integrity::Crc => (0u32, (0, 0)),
        Integrity::WalChain { start, big_endian } => (1 + big_endian as u32, start),
    };
    for v in [kind, start.0, start.1] {
        buf.extend_from_slice(&v.to_be_bytes());
    }
}

/// A record header read back from a segment, checked for what can be checked alone.
pub(super) struct StoredHeader {
    pub seq: u64,
    pub page_size: u32,
    pub commit_size: u32,
    pub end: WalPosition,
    pub end_cksum: (u32, u32),
    pub npages: u32,
    pub captured_at_ms: u64,
    /// 0: CRC over everything; 1/2: WAL checksum chain, little/big-endian.
    kind: u32,
    chain_start: (u32, u32),
}

impl StoredHeader {
    /// `None` for bytes that are not a record header (the end of the well-formed records).
    pub fn parse(b: &[u8; RECORD_HEADER_SIZE as usize]) -> Option<StoredHeader> {
        if &b[0..4] != RECORD_MAGIC {
            return None;
        }
        let be32 = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        let page_size = be32(12);
        let kind = be32(52);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() || kind > 2 {
            return None;
        }
        Some(StoredHeader {
            seq: u64::from_be_bytes(b[4..12].try_into().unwrap()),
            page_size,
            commit_size: be32(16),
            end: WalPosition {
                salt1: be32(20),
                salt2: be32(24),
                frame: be32(28),
            },
            end_cksum: (be32(32), be32(36)),
            npages: be32(40),
            captured_at_ms: u64::from_be_bytes(b[44..52].try_into().unwrap()),
            kind,
            chain_start: (be32(56), be32(60)),
        })
    }

    /// Bytes of the entries that follow the header.
    pub fn body_len(&self) -> u64 {
        self.npages as u64 * (4 + self.page_size as u64)
    }
}

/// Checks a record's entries as they are read, then its trailing CRC.
pub(super) struct RecordCheck {
    crc: Crc64,
    kind: u32,
    chain: (u32, u32),
    commit_size: u32,
    npages: u32,
    end_cksum: (u32, u32),
}

impl RecordCheck {
    pub fn new(raw: &[u8], h: &StoredHeader) -> RecordCheck {
        let mut crc = Crc64::new();
        crc.update(raw);
        RecordCheck {
            crc,
            kind: h.kind,
            chain: h.chain_start,
            commit_size: h.commit_size,
            npages: h.npages,
            end_cksum: h.end_cksum,
        }
    }

    /// Entry `i` (`pgno` ‖ page).
    pub fn entry(&mut self, i: u32, entry: &[u8]) {
        if self.kind == 0 {
            self.crc.update(entry);
            return;
        }
        // The frame header's first 8 bytes: page number and, on the last frame, the
        // database size after commit.
        let big_endian = self.kind == 2;
        let mut fh = [0u8; 8];
        fh[..4].copy_from_slice(&entry[..4]);
        if i + 1 == self.npages {
            fh[4..].copy_from_slice(&self.commit_size.to_be_bytes());
        }
        self.chain = crate::wal::wal_checksum(big_endian, self.chain, &fh);
        self.chain = crate::wal::wal_checksum(big_endian, self.chain, &entry[4..]);
    }

    /// Whether the record is whole, given the CRC stored after its entries.
    pub fn holds(&self, stored_crc: u64) -> bool {
        stored_crc == self.crc.finish() && (self.kind == 0 || self.chain == self.end_cksum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past the inline room the page numbers move to the heap, in order, none lost.
    #[test]
    fn page_numbers_keep_their_order_inline_and_past_it() {
        for cap in [0, 1, INLINE_PGNOS, INLINE_PGNOS + 1, 40] {
            let mut p = Pgnos::with_capacity(cap);
            let want: Vec<u32> = (0..40).map(|i| i * 3 + 1).collect();
            for (i, &n) in want.iter().enumerate() {
                p.push(n);
                assert_eq!(p, want[..=i].to_vec(), "capacity {cap}");
            }
            assert_eq!(p.clone(), want);
        }
    }
}
