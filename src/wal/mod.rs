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

mod chain;
mod checksum;
mod header;
mod index;
mod pages;

pub use chain::{FrameChain, WalPosition};
pub use header::{
    frame_offset, is_valid_page_size, is_wal_mode_header, page_size_from_header_field,
    wal_checksum, DbHeader, FrameHeader, WalError, WalHeader, FRAME_HEADER_SIZE, MAX_PAGE_SIZE,
    MIN_PAGE_SIZE, WAL_FORMAT_VERSION, WAL_HEADER_SIZE, WAL_MAGIC_BE, WAL_MAGIC_LE,
};
pub use index::{
    TornIndex, WalIndexHeader, WalIndexState, WAL_INDEX_HEADER_SIZE, WAL_INDEX_STATE_SIZE,
};
pub use pages::{map_committed_pages, scan, CommittedTxn, PageMap, ScanResult, TxnAssembler};

/// The log of the database at `db_path`: `<db_path>-wal`, as SQLite names it.
pub fn log_path_of(db_path: &std::path::Path) -> std::path::PathBuf {
    beside(db_path, "-wal")
}

/// The WAL index (shared memory) of the database at `db_path`: `<db_path>-shm`.
pub fn index_path_of(db_path: &std::path::Path) -> std::path::PathBuf {
    beside(db_path, "-shm")
}

fn beside(db_path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut path = db_path.as_os_str().to_owned();
    path.push(suffix);
    path.into()
}
