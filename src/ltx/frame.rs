//! The page encoding of ltx v0.5.0 and v0.5.1, which Litestream 0.5.0 to 0.5.15 write: a page
//! header with flags 0, then the page as one LZ4 *frame* (magic, descriptor, blocks, end mark,
//! optional content checksum) with no size field in front; ltx v0.5.2 (Litestream 0.5.16)
//! replaced it with a size field and a raw LZ4 block ([`super::PAGE_FLAG_SIZE`]), and still
//! reads it. Only read here, never written.
//!
//! The frame descriptor is read by `crate::lz4frame`, which Litestream 0.3's objects use too
//! (its header checksum verified). The block and content checksums are skipped, not
//! verified: the LTX file checksum covers the page header and the decompressed page, so a
//! frame that does not decompress to the page that was written fails that check instead.

use super::error::LtxError;
use std::io::Read;

const BLOCK_UNCOMPRESSED: u32 = 1 << 31;

/// Reads one LZ4 frame from `r` that must decompress to exactly `out.len()` bytes (the page
/// size) into `out`; `scratch` holds a block's compressed bytes. Returns the frame's length
/// in bytes (for the page index). `pgno` only names the page in errors.
pub(super) fn read_page_frame(
    r: &mut impl Read,
    out: &mut [u8],
    scratch: &mut Vec<u8>,
    pgno: u32,
) -> Result<u64, LtxError> {
    let bad = |what: String| LtxError::BadPage(format!("page {pgno} (LZ4 frame): {what}"));
    let (desc, mut len) = read_descriptor(r, out.len() as u64).map_err(|e| match e {
        LtxError::BadPage(what) => bad(what),
        e => e,
    })?;
    let mut filled = 0;
    loop {
        let mut word = [0u8; 4];
        r.read_exact(&mut word)?;
        len += 4;
        let word = u32::from_le_bytes(word);
        if word == 0 {
            break; // end mark
        }
        let size = (word & !BLOCK_UNCOMPRESSED) as usize;
        let room = out.len() - filled;
        if size == 0
            || size > desc.block_max
            || size > super::page::max_compressed_size(room as u32)
        {
            return Err(bad(format!(
                "a block of {size} bytes with {room} bytes of the page left"
            )));
        }
        scratch.resize(size, 0);
        r.read_exact(scratch)?;
        len += size as u64;
        let (done, rest) = out.split_at_mut(filled);
        let n = if word & BLOCK_UNCOMPRESSED != 0 {
            rest.get_mut(..size)
                .ok_or_else(|| bad("an uncompressed block overruns the page".into()))?
                .copy_from_slice(scratch);
            size
        } else {
            // A linked block may refer to the blocks before it, which `done` holds.
            lz4_flex::block::decompress_into_with_dict(scratch, rest, done)
                .map_err(|e| bad(format!("does not decompress: {e}")))?
        };
        if n == 0 {
            return Err(bad("an empty block".into()));
        }
        filled += n;
        if desc.block_checksums {
            r.read_exact(&mut [0u8; 4])?;
            len += 4;
        }
    }
    if filled != out.len() {
        return Err(bad(format!(
            "decompresses to {filled} bytes, page size is {}",
            out.len()
        )));
    }
    if desc.content_checksum {
        r.read_exact(&mut [0u8; 4])?;
        len += 4;
    }
    Ok(len)
}

/// The frame's magic and descriptor, its header checksum verified (`lz4frame`): returns
/// the descriptor and the bytes read. A content size, when given, must be `page_size`.
fn read_descriptor(
    r: &mut impl Read,
    page_size: u64,
) -> Result<(crate::lz4frame::Descriptor, u64), LtxError> {
    use crate::lz4frame::Lz4Error;
    let d = crate::lz4frame::read_descriptor(r).map_err(|e| {
        match e.get_ref().and_then(|i| i.downcast_ref::<Lz4Error>()) {
            Some(Lz4Error::Truncated) => LtxError::Truncated,
            Some(Lz4Error::Invalid(_)) => LtxError::BadPage(e.to_string()),
            None => LtxError::Io(e),
        }
    })?;
    if let Some(size) = d.content_size.filter(|s| *s != page_size) {
        return Err(LtxError::BadPage(format!(
            "content size {size} for a {page_size}-byte page"
        )));
    }
    Ok((d, d.encoded_len()))
}

#[cfg(test)]
mod tests {
    use crate::ltx::{decode_all, LtxError, FLAG_NO_CHECKSUM};

    /// Written by `litestream replicate` 0.5.13 (ltx v0.5.1, LZ4 frames) for a fresh 6-page
    /// database (level 0, txid 1) and the next transaction (txid 2, one row into table t).
    const L0_TXID1: &[u8] =
        include_bytes!("../../tests/fixtures/ltx/litestream-0.5.13-l0-txid1.ltx");
    const L0_TXID2: &[u8] =
        include_bytes!("../../tests/fixtures/ltx/litestream-0.5.13-l0-txid2.ltx");

    #[test]
    fn decodes_what_litestream_0_5_13_wrote() {
        let (h, pages, t) = decode_all(L0_TXID1).unwrap();
        assert_eq!(
            (h.flags, h.page_size, h.commit),
            (FLAG_NO_CHECKSUM, 4096, 6)
        );
        assert_eq!((h.min_txid, h.max_txid), (1, 1));
        assert_eq!(
            pages.iter().map(|p| p.0).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(&pages[0].1[..16], b"SQLite format 3\0");
        assert_eq!(t.post_apply_checksum, 0);

        let (h, pages, _) = decode_all(L0_TXID2).unwrap();
        assert_eq!((h.min_txid, h.max_txid, h.commit), (2, 2, 6));
        assert_eq!(pages.len(), 1);
        let page = &pages[0].1;
        assert_eq!(page.len(), 4096);
        let row = b"hello from litestream 0.5.13";
        assert!(page.windows(row.len()).any(|w| w == row));
    }

    #[test]
    fn a_damaged_frame_file_is_refused_or_decodes_to_the_same_pages() {
        // The frame's block and content checksums are not checked (the file checksum covers
        // what they would), so a flip there goes unnoticed; a flip anywhere else must fail.
        let good = decode_all(L0_TXID2).unwrap();
        let mut unnoticed = Vec::new();
        for at in 0..L0_TXID2.len() {
            let mut bad = L0_TXID2.to_vec();
            bad[at] ^= 0x10;
            match decode_all(&bad) {
                Err(_) => {}
                Ok(got) => {
                    assert_eq!(got.1, good.1, "a flip at byte {at} changed the pages");
                    unnoticed.push(at);
                }
            }
        }
        // Page header at 100, frame at 106: magic 4, FLG, BD, the header checksum (verified,
        // so a flip of BD that would change nothing for a 4 KiB page is refused too), and
        // the 4-byte content checksum after the end mark.
        let content_checksum = 106 + 7 + 4 + 0x41 + 4;
        let skipped: Vec<usize> = (content_checksum..content_checksum + 4).collect();
        assert_eq!(unnoticed, skipped);
    }

    #[test]
    fn every_truncation_of_a_frame_file_is_refused() {
        for len in 0..L0_TXID1.len() {
            let err = decode_all(&L0_TXID1[..len]).unwrap_err();
            assert!(matches!(err, LtxError::Truncated), "len {len}: {err}");
        }
    }
}
