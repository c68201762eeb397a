//! The header of the WAL index (the `-shm` file) as SQLite keeps it in shared memory. Pure
//! parsing of bytes the caller read; it must not map or lock the `-shm` file.

use super::header::{is_valid_page_size, WAL_FORMAT_VERSION};

/// The header of the WAL index (`-shm`) as SQLite keeps it: what readers treat as committed,
/// even where the log's own checksum chain is broken (SQLite 3.40 can leave frames of a
/// committed transaction with zero salts after `ROLLBACK TO` inside a spilled transaction;
/// its readers follow the index, so snapshots must too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalIndexHeader {
    /// Counts commits (SQLite's `iChange`): one more per commit, kept across log restarts,
    /// unchanged by a commit that wrote nothing.
    pub change: u32,
    /// 0 while the log holds no frame (the index of an empty log).
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
        let page_size =
            super::header::page_size_from_header_field(u16::from_ne_bytes([b[14], b[15]]));
        let mx_frame = u32_at(16);
        // An index rebuilt from an empty log has no page size yet.
        if !is_valid_page_size(page_size) && (page_size, mx_frame) != (0, 0) {
            return None;
        }
        // The salts are stored as the raw big-endian bytes of the log header.
        let salt = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        Some(WalIndexHeader {
            change: u32_at(8),
            page_size,
            mx_frame,
            n_page: u32_at(20),
            salt1: salt(32),
            salt2: salt(36),
            cksum: (u32_at(24), u32_at(28)),
        })
    }
}

/// What the start of the WAL index says: its header and how many frames a checkpoint has
/// copied into the database file (`nBackfill`; once it reaches `header.mx_frame` the next
/// writer may restart the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalIndexState {
    pub header: WalIndexHeader,
    pub backfilled: u32,
}

/// Bytes of the WAL index [`WalIndexState::parse`] reads: two header copies, then the
/// checkpoint information with `nBackfill` first.
pub const WAL_INDEX_STATE_SIZE: usize = 2 * WAL_INDEX_HEADER_SIZE + 4;

/// The two header copies of the WAL index differed: a writer was updating them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornIndex;

impl WalIndexState {
    /// Parses the first [`WAL_INDEX_STATE_SIZE`] bytes of the index (`None` when too short,
    /// uninitialised or of an unknown version); [`TornIndex`] while its two header copies
    /// differ, for the caller to read again.
    pub fn parse(b: &[u8]) -> Result<Option<WalIndexState>, TornIndex> {
        if b.len() < WAL_INDEX_STATE_SIZE {
            return Ok(None);
        }
        let (first, rest) = b.split_at(WAL_INDEX_HEADER_SIZE);
        if first != &rest[..WAL_INDEX_HEADER_SIZE] {
            return Err(TornIndex);
        }
        let at = 2 * WAL_INDEX_HEADER_SIZE;
        Ok(WalIndexHeader::parse(first).map(|header| WalIndexState {
            header,
            backfilled: u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()),
        }))
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
        b[14..16].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(WalIndexHeader::parse(&b), None, "no page size but frames");
        b[16..20].copy_from_slice(&0u32.to_ne_bytes());
        let empty = WalIndexHeader::parse(&b).expect("the index of an empty log");
        assert_eq!((empty.page_size, empty.mx_frame), (0, 0));
        b[12] = 0;
        assert_eq!(WalIndexHeader::parse(&b), None);
    }

    #[test]
    fn the_index_state_is_read_only_when_both_header_copies_agree() {
        let mut h = [0u8; WAL_INDEX_HEADER_SIZE];
        h[0..4].copy_from_slice(&WAL_FORMAT_VERSION.to_ne_bytes());
        h[8..12].copy_from_slice(&41u32.to_ne_bytes());
        h[12] = 1;
        h[14..16].copy_from_slice(&4096u16.to_ne_bytes());
        h[16..20].copy_from_slice(&9u32.to_ne_bytes());
        let mut b = [0u8; WAL_INDEX_STATE_SIZE];
        b[..48].copy_from_slice(&h);
        b[48..96].copy_from_slice(&h);
        b[96..100].copy_from_slice(&5u32.to_ne_bytes());
        let s = WalIndexState::parse(&b).unwrap().unwrap();
        assert_eq!(
            (s.header.change, s.header.mx_frame, s.backfilled),
            (41, 9, 5)
        );
        assert_eq!(WalIndexState::parse(&b[..99]), Ok(None), "too short");
        b[60] ^= 1;
        assert_eq!(
            WalIndexState::parse(&b),
            Err(TornIndex),
            "copies differ mid-update"
        );
        b[12] = 0;
        b[60] = 0;
        assert_eq!(WalIndexState::parse(&b), Ok(None), "uninitialised");
    }
}
