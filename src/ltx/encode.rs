//! The LTX encoder: streams a file to a `Write`, page by page, enforcing the page rules and
//! computing the file checksum as it goes. It must not read a clock or choose what pages go
//! in; the caller passes the header (timestamp included) and the pages.

use super::checksum::{Crc64, DbChecksum};
use super::error::LtxError;
use super::header::{
    check_post_apply, Header, Trailer, CHECKSUM_FLAG, HEADER_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE,
};
use super::page::{
    append_index_entry, check_page_order, check_snapshot_complete, max_compressed_size,
};
use std::io::Write;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::header::{lock_pgno, FLAG_NO_CHECKSUM};
    use crate::ltx::page::next_snapshot_pgno;
    use crate::ltx::test_support::header;

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
}
