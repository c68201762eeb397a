//! LTX file encoding/decoding (the superfly/ltx v0.5 format read and written by Litestream v0.5.x) and the CRC-64/ISO checksums it uses; it does no I/O besides the `Read`/`Write` it is handed and reads no clock (timestamps are passed in).
//!
//! # File layout (every integer big-endian)
//!
//! ```text
//! header   100 B  "LTX1" flags:u32 page_size:u32 commit:u32 min_txid:u64 max_txid:u64
//!                 timestamp_ms:u64 pre_apply_checksum:u64 wal_offset:u64 wal_size:u64
//!                 wal_salt1:u32 wal_salt2:u32 node_id:u64, then 24 reserved zero bytes
//! pages    per page: pgno:u32 flags:u16 (=1, "size follows") size:u32, then `size` bytes
//!          of one LZ4 *block* (not frame) that decompresses to exactly page_size bytes
//! end      6 zero bytes (an all-zero page header)
//! index    per page, ascending: uvarint pgno, uvarint offset (of its page header from
//!          file start), uvarint size (page header + size field + compressed bytes);
//!          then uvarint 0; then the index's byte length (entries + terminator) as u64
//! trailer  post_apply_checksum:u64 file_checksum:u64
//! ```
//!
//! The file checksum is `1<<63 | crc64` over the header, every page header and size
//! field, the *decompressed* page data (not the compressed bytes), the end marker, the
//! index with its length and the trailer's first 8 bytes. Page checksums are
//! `1<<63 | crc64(pgno as u32 BE ++ page)`; the database checksum is `1<<63 | XOR` of the
//! page checksums of every page except the lock page. With header flag
//! [`FLAG_NO_CHECKSUM`] both pre- and post-apply checksums must be zero.
//! Snapshots are files with `min_txid == 1` and hold every page `1..=commit` but the lock
//! page. The page encoding of ltx v0.5.0-v0.5.1, which Litestream 0.5.0-0.5.15 write (page
//! flags 0, then one LZ4 *frame*, no size field; the index counts the frame's bytes, the
//! file checksum the decompressed page), is read too ([`frame`]), never written: those
//! Litestream versions refuse page flags other than 0 ("no flags allowed, reserved for future
//! use"), so they cannot restore what is written here.
//!
//! # Interop with litestream v0.5.17 (checked by hand against the real binary)
//!
//! - Everything litestream writes (L0, L1 compactions, L9 snapshots; page sizes 512, 4096,
//!   65536) has flags `FLAG_NO_CHECKSUM` and zero pre/post-apply checksums, and decodes and
//!   verifies here. Its snapshots are named `1-<txid>` and carry the WAL fields of their last
//!   transaction; its compactions have zero WAL fields.
//! - A replica written by this encoder (L9 `1-1` snapshot of a checkpointed database, then
//!   L0 `2-2`, `3-3` with the changed pages, no-checksum) restores byte-for-byte equal to
//!   the source, including a last file whose smaller `commit` shrinks the database.
//! - Real checksums (flags 0) are read and verified by litestream (it computed the same
//!   snapshot checksum as [`DbChecksum`] and rejected a tampered one), but `restore` fails
//!   with "post-apply checksum not allowed" whenever the *last* file of the restore plan
//!   has a non-zero post-apply checksum: it compacts the plan under the no-checksum flag
//!   and copies that value along. A lone checksummed snapshot fails the same way, and so
//!   does `-txid` at a checksummed file. Nor does it chain them: a checksummed level-0 file
//!   from another database, whose pre-apply checksum matches nothing, restored without a
//!   word when a later file came after it. So checksums in the files would make every
//!   replica unrestorable by litestream and bind nothing for it: files meant for litestream
//!   must use `FLAG_NO_CHECKSUM`, and a restore here binds files to their database by what
//!   it can check instead (the header against the name, page 1 against the commit size,
//!   what a file may grow, then `PRAGMA integrity_check`, indexes against tables). Its
//!   decoder still verifies the chain of files that do carry checksums.
//! - A snapshot needs `min_txid == 1` (`1-1` or `1-N`); a `5-5` snapshot fails with
//!   "cannot decode non-snapshot LTX file". L0 files must continue at `max_txid + 1`.
//! - The header timestamp is not needed to restore (0 works); litestream copies it into
//!   the file's mtime / the object's `litestream-timestamp` metadata for `-timestamp`.
//! - `commit` must match the pages available: more pages than exist fails the restore.
//!   The lock page is never stored (not exercised: it needs a database over 1 GiB). A
//!   level-0 file that grows `commit` without carrying every page it adds fails with
//!   "decode page N: EOF" (or "nonsequential page numbers" when it carries a later one);
//!   carrying them all, it restores. Restore here refuses such a file itself, and first
//!   any header whose `commit` the file's byte size cannot back ([`max_pages_in`]).

mod checksum;
mod decode;
mod encode;
mod error;
mod frame;
mod header;
mod merge;
mod page;
#[cfg(test)]
mod test_support;

pub use checksum::{crc64, page_checksum, Crc64, DbChecksum, ZeroAdvance};
pub use decode::{decode_all, Decoder};
pub use encode::Encoder;
pub use error::LtxError;
pub use header::{
    is_valid_page_size, lock_pgno, max_pages_in, min_page_bytes, Header, Trailer, CHECKSUM_FLAG,
    FLAG_NO_CHECKSUM, HEADER_SIZE, MAGIC, MAX_PAGE_SIZE, MAX_TXID, MIN_PAGE_SIZE, PAGE_FLAG_SIZE,
    PAGE_HEADER_SIZE, TRAILER_SIZE,
};
pub use merge::merge;
