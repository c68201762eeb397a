//! The LTX decoder: streams a file from a `Read`, verifying everything (page rules, index,
//! file checksum, snapshot checksum, nothing after the trailer) as it reads, and
//! `decode_all` for a file held in memory. It must not trust any field before checking it.

use super::checksum::{crc64_advance, Crc64, DbChecksum, ZeroAdvance};
use super::error::LtxError;
use super::frame::read_page_frame;
use super::header::{
    be_u32, lock_pgno, Header, Trailer, CHECKSUM_FLAG, HEADER_SIZE, PAGE_FLAG_SIZE,
    PAGE_HEADER_SIZE, TRAILER_SIZE,
};
use super::page::{
    append_index_entry, check_page_order, check_snapshot_complete, max_compressed_size,
};
use std::io::{BufReader, Read};

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
        check_page_order(&self.header, self.prev_pgno, pgno)?;
        let page_size = self.header.page_size as usize;
        buf.resize(page_size, 0); // no clearing: the page is checked to be fully written
                                  // The bytes after the page header that the index counts (size field and data).
        let body = if flags & PAGE_FLAG_SIZE == 0 {
            // ltx v0.5.0-v0.5.1 (Litestream 0.5.0-0.5.15): an LZ4 frame, not hashed.
            read_page_frame(&mut self.r, buf, &mut self.compressed, pgno)?
        } else {
            self.read_block(pgno, buf)?
        };
        // One CRC pass over the page serves the file checksum and the page checksum.
        let page_crc = crc64_advance(0, buf);
        self.hash.state = self.page_shift.apply(self.hash.state) ^ page_crc;
        let pgno_crc = crc64_advance(!0, &pgno.to_be_bytes());
        self.page_sum = CHECKSUM_FLAG | !(self.page_shift.apply(pgno_crc) ^ page_crc);

        append_index_entry(
            &mut self.expected_index,
            pgno,
            offset,
            PAGE_HEADER_SIZE as u64 + body,
        );
        self.bytes_read += body;
        self.prev_pgno = pgno;
        if self.header.is_snapshot()
            && !self.header.no_checksum()
            && pgno != lock_pgno(self.header.page_size)
        {
            self.snapshot_checksum.add_page_checksum(self.page_sum);
        }
        Ok(Some(pgno))
    }

    /// The block encoding (ltx v0.5.2 on): a size field (hashed) and one LZ4 block that
    /// decompresses to exactly the page. Returns the bytes read (size field and block).
    fn read_block(&mut self, pgno: u32, buf: &mut [u8]) -> Result<u64, LtxError> {
        let mut size_field = [0u8; 4];
        self.r.read_exact(&mut size_field)?;
        self.hash.update(&size_field); // counted in bytes_read with the body, by the caller
        let size = u32::from_be_bytes(size_field) as usize;
        let page_size = self.header.page_size as usize;
        if size == 0 || size > max_compressed_size(self.header.page_size) {
            return Err(LtxError::BadPage(format!(
                "page {pgno} claims {size} compressed bytes for a {page_size}-byte page"
            )));
        }
        self.compressed.resize(size, 0);
        self.r.read_exact(&mut self.compressed)?;
        let n = lz4_flex::block::decompress_into(&self.compressed, buf)
            .map_err(|e| LtxError::BadPage(format!("page {pgno} does not decompress: {e}")))?;
        if n != page_size {
            return Err(LtxError::BadPage(format!(
                "page {pgno} decompresses to {n} bytes, page size is {page_size}"
            )));
        }
        Ok(4 + size as u64)
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
    use crate::ltx::checksum::page_checksum;
    use crate::ltx::header::FLAG_NO_CHECKSUM;
    use crate::ltx::test_support::{encode, header, noise, sample_snapshot};

    /// Written by litestream v0.5.17 for a fresh 4-page database (L0, txid 1) and the
    /// next transaction (txid 2), both with `FLAG_NO_CHECKSUM`.
    const REAL_SNAPSHOT: &[u8] =
        include_bytes!("../../tests/fixtures/ltx/litestream-0.5.17-snapshot-txid1.ltx");
    const REAL_L0: &[u8] =
        include_bytes!("../../tests/fixtures/ltx/litestream-0.5.17-l0-txid2.ltx");

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

        // Page flags 0 (the LZ4 frame encoding of ltx v0.5.1) before bytes that are no frame.
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
}
