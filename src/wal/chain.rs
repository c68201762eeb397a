//! The frame checksum chain: where a frame sits (`WalPosition`) and `FrameChain`, which
//! accepts frames one by one while their salts match and their checksums chain. It sees
//! one frame at a time; it must not read the log or group frames into transactions.

use super::header::{wal_checksum, FrameHeader, WalError, WalHeader};

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
