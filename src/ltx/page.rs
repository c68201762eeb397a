//! The page rules the encoder and decoder share: page order (ascending, within `commit`,
//! never the lock page, every page of a snapshot), snapshot completeness, the page-index
//! entry encoding and the largest LZ4 block accepted for a page. Pure; no I/O.

use super::error::LtxError;
use super::header::Header;

/// Checks `pgno` may follow `prev_pgno` (0 = none yet) in a file with `header`.
pub(super) fn check_page_order(header: &Header, prev_pgno: u32, pgno: u32) -> Result<(), LtxError> {
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

pub(super) fn next_snapshot_pgno(prev_pgno: u32, lock: u32) -> u32 {
    let next = prev_pgno.saturating_add(1);
    if next == lock {
        next.saturating_add(1)
    } else {
        next
    }
}

/// Snapshots must end with the last non-lock page of the database.
pub(super) fn check_snapshot_complete(header: &Header, last_pgno: u32) -> Result<(), LtxError> {
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

pub(super) fn append_index_entry(index: &mut Vec<u8>, pgno: u32, offset: u64, size: u64) {
    append_uvarint(index, pgno as u64);
    append_uvarint(index, offset);
    append_uvarint(index, size);
}

/// Largest LZ4 block we accept for one page; lz4_flex's bound exceeds the Go encoder's.
pub(super) fn max_compressed_size(page_size: u32) -> usize {
    lz4_flex::block::get_maximum_output_size(page_size as usize)
}
