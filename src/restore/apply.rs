//! Applying a planned chain into a temporary file: each downloaded object streams through
//! the LTX decoder straight into place, checked as it goes (names and header txids, page
//! size, page numbers within the commit size, SQLite's page-1 header, every file checksum,
//! and the database checksum chain where files carry one) and what each file may do to the
//! database's size, before anything is sized from its header. It must stop at the first
//! file that fails, naming its object, and leave publishing (or removing) the file to its
//! caller.

use super::fetch::{Fetcher, ObjectReader};
use super::plan::LtxObject;
use super::types::{Base, RestoreProgress, Restored, Tuning};
use super::write::{WriteJob, WriteRun, Writer};
use crate::error::{Error, RestoreFailure};
use crate::ltx::{self, Decoder};
use crate::store::{ObjectStore, StoreError};
use crate::wal::DbHeader;
use std::io::Read;
use std::os::unix::fs::FileExt;

/// Downloads and applies `chain` into `out` (a new, empty temporary file), verifying as it
/// goes.
pub(super) fn apply(
    store: &dyn ObjectStore,
    chain: &[LtxObject],
    out: &std::fs::File,
    tuning: &Tuning,
) -> Result<Restored, Error> {
    apply_onto(store, chain, out, Base::default(), tuning)
}

/// Downloads and applies `chain` into `out`, which holds the database `base` describes (a
/// follower's copy, which the chain continues: its first file starts one txid after
/// `out`'s), verifying as it goes: every check a restore makes, the growth of the size
/// counted from `base.commit` and the files' history against `base.lineage`.
pub fn apply_onto(
    store: &dyn ObjectStore,
    chain: &[LtxObject],
    out: &std::fs::File,
    base: Base,
    tuning: &Tuning,
) -> Result<Restored, Error> {
    let fetcher = Fetcher::new(store, chain, tuning.chunk_bytes, tuning.parallelism);
    let mut progress = RestoreProgress {
        files_total: chain.len() as u64,
        bytes_total: chain.iter().map(|o| o.size).sum(),
        ..Default::default()
    };
    (tuning.progress)(&progress);
    std::thread::scope(|s| {
        for _ in 0..tuning.parallelism.clamp(1, fetcher.piece_count().max(1)) {
            s.spawn(|| fetcher.work());
        }
        let (writer, write_loop) = Writer::start(out);
        s.spawn(write_loop);
        let r = apply_pieces(&fetcher, chain, (out, base), &writer, tuning, &mut progress)
            .and_then(|restored| writer.settle().map(|()| restored));
        fetcher.stop();
        r
    })
    .and_then(|restored| {
        if !tuning.verify_only {
            out.sync_all()?;
        }
        Ok(restored)
    })
}

/// Applies every object of `chain` in order, reading each one's pieces from `fetcher`.
fn apply_pieces(
    fetcher: &Fetcher,
    chain: &[LtxObject],
    (out, base): (&std::fs::File, Base),
    writer: &Writer,
    tuning: &Tuning,
    progress: &mut RestoreProgress,
) -> Result<Restored, Error> {
    let mut rebuild = Rebuild::new(out, writer, tuning.want_checksum, base);
    rebuild.verify_only = tuning.verify_only;
    rebuild.rollback_mode = tuning.rollback_mode;
    rebuild.db_checksums = tuning.db_checksums;
    let mut downloaded = 0u64;
    let mut next_piece = 0;
    for (index, obj) in chain.iter().enumerate() {
        let end_piece = fetcher.end_of_object(index, next_piece);
        let mut on_piece = |n: u64| {
            downloaded += n;
            progress.bytes_done += n;
            (tuning.progress)(progress);
        };
        let mut reader = ObjectReader::new(fetcher, next_piece, end_piece, &mut on_piece);
        next_piece = end_piece;
        rebuild.apply_object(obj, &mut reader)?;
        progress.files_done += 1;
        (tuning.progress)(progress);
    }
    rebuild.finish(chain, downloaded)
}

/// Why copying one file's pages stopped.
enum Stop {
    /// Its bytes: a download or decoding failure (the download error is named if any).
    Decode(ltx::LtxError),
    /// What its bytes say: a refused file, or a failed write.
    Refuse(Error),
}

/// The database being rebuilt in the temporary file, carried from one file of the chain to
/// the next.
struct Rebuild<'w> {
    out: &'w std::fs::File,
    writer: &'w Writer,
    want_checksum: bool,
    /// Checks only: nothing is written (and no database checksum is kept).
    verify_only: bool,
    /// Page 1 goes out with read and write versions 1 (see `Tuning::rollback_mode`).
    rollback_mode: bool,
    db_checksums: bool,
    /// The pages written, when only verifying.
    touched: Vec<u32>,
    /// Page checksums, kept from the first file that carries a database checksum (or from
    /// the start when the result's checksum is wanted).
    table: Option<ChecksumTable>,
    page_size: u32,
    /// The replication history the files so far belong to (their LTX node id; 0 until one
    /// carries one).
    lineage: u64,
    commit: u32,
    /// What the file being applied may do to the size, checked page by page.
    growth: Growth,
    pages_written: u32,
    /// The post-apply checksum of the last file, when it carried one and it was checked.
    expected_post: Option<u64>,
    buf: Vec<u8>,
    run: WriteRun,
}

impl<'w> Rebuild<'w> {
    fn new(out: &'w std::fs::File, writer: &'w Writer, want_checksum: bool, base: Base) -> Self {
        Rebuild {
            out,
            writer,
            want_checksum,
            verify_only: false,
            rollback_mode: false,
            db_checksums: true,
            touched: Vec::new(),
            table: None,
            page_size: base.page_size,
            lineage: base.lineage,
            commit: base.commit,
            growth: Growth::default(),
            pages_written: 0,
            expected_post: None,
            buf: Vec::new(),
            run: WriteRun::default(),
        }
    }

    /// Decodes `obj` from `reader` into the file, checking it.
    fn apply_object(&mut self, obj: &LtxObject, reader: &mut ObjectReader) -> Result<(), Error> {
        let mut dec = match Decoder::new(&mut *reader) {
            Ok(d) => d,
            Err(e) => return Err(object_error(&obj.key, e, reader.failed.take())),
        };
        let h = *dec.header();
        self.start_object(obj, &h)?;
        let trailer = match self.copy_pages(obj, &h, &mut dec) {
            Ok(()) => dec.finish(),
            Err(Stop::Decode(e)) => {
                drop(dec);
                Err(e)
            }
            Err(Stop::Refuse(e)) => return Err(e),
        };
        let trailer = trailer.map_err(|e| object_error(&obj.key, e, reader.failed.take()))?;
        self.end_object(obj, &h, &trailer)
    }

    /// Checks `h` against the object's name and the files before it, before any page.
    fn start_object(&mut self, obj: &LtxObject, h: &ltx::Header) -> Result<(), Error> {
        if (h.min_txid, h.max_txid) != (obj.min_txid, obj.max_txid) {
            return Err(Error::Restore(
                RestoreFailure::Corrupt,
                format!(
                    "{}: its header says txids {}-{}, its name says otherwise",
                    obj.key, h.min_txid, h.max_txid
                ),
            ));
        }
        if self.page_size != 0 && h.page_size != self.page_size {
            return Err(Error::Restore(
                RestoreFailure::Corrupt,
                format!(
                    "{}: page size {} differs from {} (a file from another database?)",
                    obj.key, h.page_size, self.page_size
                ),
            ));
        }
        self.lineage = follow_lineage(self.lineage, h.node_id)
            .map_err(|e| Error::Restore(RestoreFailure::Corrupt, format!("{}: {e}", obj.key)))?;
        self.page_size = h.page_size;
        self.growth = Growth::start(self.commit, h, obj.size)
            .map_err(|e| Error::Restore(RestoreFailure::Corrupt, format!("{}: {e}", obj.key)))?;
        let checksums = !h.no_checksum();
        let keep_table = !self.verify_only && self.db_checksums;
        if self.table.is_none() && keep_table && (self.want_checksum || checksums) {
            self.writer.settle()?; // reads back what has been written
            self.table = Some(ChecksumTable::from_file(
                self.out,
                self.page_size,
                self.commit,
            )?);
        }
        if obj.min_txid != 1 && checksums {
            if let Some(prev) = self.expected_post {
                if h.pre_apply_checksum != prev {
                    return Err(Error::Restore(RestoreFailure::Corrupt, format!(
                        "{}: pre-apply checksum {:016x} does not match the state before it ({prev:016x}): the file belongs to another database or a gap",
                        obj.key, h.pre_apply_checksum
                    )));
                }
            }
        }
        Ok(())
    }

    /// Writes every page `dec` yields into place.
    fn copy_pages<R: Read>(
        &mut self,
        obj: &LtxObject,
        h: &ltx::Header,
        dec: &mut Decoder<R>,
    ) -> Result<(), Stop> {
        loop {
            let pgno = match dec.next_page(&mut self.buf) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Stop::Decode(e)),
            };
            if pgno == 0 || pgno > h.commit {
                return Err(Stop::Refuse(Error::Restore(
                    RestoreFailure::Corrupt,
                    format!(
                        "{}: page {pgno} is outside the database size {}",
                        obj.key, h.commit
                    ),
                )));
            }
            self.growth.page(pgno).map_err(|e| {
                Stop::Refuse(Error::Restore(
                    RestoreFailure::Corrupt,
                    format!("{}: {e}", obj.key),
                ))
            })?;
            if pgno == 1 {
                check_page1(&obj.key, &self.buf, h).map_err(Stop::Refuse)?;
                if self.rollback_mode && self.buf.len() > 19 {
                    self.buf[18..20].copy_from_slice(&[1, 1]);
                }
            }
            let offset = (pgno as u64 - 1) * self.page_size as u64;
            if self.verify_only {
                self.touched.push(pgno);
            } else {
                self.run
                    .write(self.writer, offset, &self.buf)
                    .map_err(Stop::Refuse)?;
            }
            if let Some(t) = self.table.as_mut() {
                t.set(pgno, dec.page_checksum(), self.page_size);
            }
            self.pages_written += 1;
        }
    }

    /// After the last page: the new size, and the database checksum the file says it has.
    fn end_object(
        &mut self,
        obj: &LtxObject,
        h: &ltx::Header,
        trailer: &ltx::Trailer,
    ) -> Result<(), Error> {
        self.run.flush(self.writer)?;
        self.growth
            .finish()
            .map_err(|e| Error::Restore(RestoreFailure::Corrupt, format!("{}: {e}", obj.key)))?;
        if h.commit < self.commit && !self.verify_only {
            // A shrink: pages past the end must not come back if a later file grows it again.
            self.writer
                .send(WriteJob::SetLen(h.commit as u64 * self.page_size as u64))?;
        }
        self.commit = h.commit;
        if let Some(t) = self.table.as_mut() {
            t.grow(self.commit, self.page_size); // at most the lock page: the rest came
            t.truncate(self.commit);
        }
        match (&self.table, !h.no_checksum()) {
            (Some(t), true) => {
                let ours = t.value();
                if ours != trailer.post_apply_checksum {
                    return Err(Error::Restore(RestoreFailure::Corrupt, format!(
                        "{}: database checksum after applying it is {ours:016x}, the file says {:016x}",
                        obj.key, trailer.post_apply_checksum
                    )));
                }
                self.expected_post = Some(trailer.post_apply_checksum);
            }
            _ => self.expected_post = None,
        }
        Ok(())
    }

    /// Sizes the file to the last commit size; what was restored.
    fn finish(self, chain: &[LtxObject], downloaded: u64) -> Result<Restored, Error> {
        if !self.verify_only {
            self.writer
                .send(WriteJob::SetLen(self.commit as u64 * self.page_size as u64))?;
        }
        Ok(Restored {
            txid: chain.last().map(|o| o.max_txid).unwrap_or(0),
            files: chain.len(),
            pages: self.pages_written,
            bytes_downloaded: downloaded,
            db_checksum: self.table.map(|t| t.value()),
            base: Base {
                commit: self.commit,
                page_size: self.page_size,
                lineage: self.lineage,
            },
            touched: {
                let mut t = self.touched;
                t.sort_unstable();
                t.dedup();
                t
            },
        })
    }
}

/// An object that failed to download or decode, named in the message.
fn object_error(key: &str, e: ltx::LtxError, store: Option<StoreError>) -> Error {
    match store {
        Some(s) => Error::Restore(
            RestoreFailure::Unreadable,
            format!("{key}: download failed: {s}"),
        ),
        None => Error::Restore(RestoreFailure::Corrupt, format!("{key}: {e}")),
    }
}

/// SQLite's own header on page 1 must agree with the file carrying it: the page size, and
/// the database size in pages whenever SQLite marks it valid (change counter equal to
/// version-valid-for). A page 1 from another database, or a file of another size, fails.
/// (SQLite writes both fields whenever it writes page 1, in WAL mode too.)
fn check_page1(key: &str, page: &[u8], h: &ltx::Header) -> Result<(), Error> {
    let Some(db) = DbHeader::parse(page).filter(|_| page.starts_with(b"SQLite format 3\0")) else {
        // Not a header at all: the integrity check after the restore refuses it.
        return Ok(());
    };
    let ps = db.page_size;
    if ps != h.page_size {
        return Err(Error::Restore(
            RestoreFailure::Corrupt,
            format!(
                "{key}: page 1 says page size {ps}, the file says {}",
                h.page_size
            ),
        ));
    }
    let size = db.page_count;
    if db.page_count_valid && size != 0 && size != h.commit {
        return Err(Error::Restore(RestoreFailure::Corrupt, format!(
            "{key}: page 1 says the database has {size} pages, the file says {} (a file from another database?)",
            h.commit
        )));
    }
    Ok(())
}

/// What one file may do to the database's size. A snapshot stores every page up to its size
/// (the decoder checks the order) and must have the bytes for them; any other file may grow
/// the database only by pages it carries, in order from the previous size: SQLite writes
/// every page a transaction adds, and the real `litestream restore` refuses a chain that
/// leaves a page below the size unwritten ("decode page N: EOF"). So a file's declared size
/// is bounded by the previous size plus what its bytes can hold, and checked before any
/// page: a tiny file cannot make the restore size a table or a file after a huge header.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Growth {
    commit: u32,
    lock: u32,
    /// Every page up to here is in the database: the previous size, then each page after
    /// it as it arrives.
    covered: u32,
}

impl Growth {
    /// Checks `h`, heading an object of `size` bytes, against the size before it, `prev`.
    fn start(prev: u32, h: &ltx::Header, size: u64) -> Result<Growth, String> {
        let prev = if h.is_snapshot() { 0 } else { prev };
        h.check_file_size(size).map_err(|e| e.to_string())?;
        let lock = h.lock_pgno();
        let crosses_lock = prev < lock && lock <= h.commit;
        let added = u64::from(h.commit.saturating_sub(prev)) - u64::from(crosses_lock);
        let room = ltx::max_pages_in(size, h.page_size);
        if added > room {
            return Err(format!(
                "declares a database of {} pages, {added} more than the {prev} it continues, \
                 but its {size} bytes hold at most {room} pages: refused",
                h.commit
            ));
        }
        Ok(Growth {
            commit: h.commit,
            lock,
            covered: prev,
        })
    }

    /// The page after `covered`, past the lock page (never stored).
    fn next(&self) -> u32 {
        let n = self.covered.saturating_add(1);
        if n == self.lock {
            n.saturating_add(1)
        } else {
            n
        }
    }

    /// Page `pgno` arrived (pages ascend): past the covered size, it must be the next one.
    fn page(&mut self, pgno: u32) -> Result<(), String> {
        if pgno <= self.covered {
            return Ok(());
        }
        if pgno != self.next() {
            return Err(self.missing());
        }
        self.covered = pgno;
        Ok(())
    }

    /// After the last page: every page up to the declared size is there.
    fn finish(&self) -> Result<(), String> {
        if self.next() <= self.commit {
            return Err(self.missing());
        }
        Ok(())
    }

    fn missing(&self) -> String {
        format!(
            "declares a database of {} pages but does not carry page {}, which it adds \
             (a file may only grow the database by pages it holds): refused",
            self.commit,
            self.next()
        )
    }
}

/// Page checksums of the database being rebuilt, for files that carry a database checksum.
struct ChecksumTable {
    sums: Vec<u64>,
    raw: u64,
}

impl ChecksumTable {
    /// Reads back what has been written so far (a checksummed file after unchecksummed ones).
    fn from_file(out: &std::fs::File, page_size: u32, commit: u32) -> std::io::Result<Self> {
        let mut t = ChecksumTable {
            sums: Vec::new(),
            raw: 0,
        };
        let mut page = vec![0u8; page_size as usize];
        for pgno in 1..=commit {
            page.fill(0);
            let _ = out.read_at(&mut page, (pgno as u64 - 1) * page_size as u64)?;
            t.push(pgno, &page, page_size);
        }
        Ok(t)
    }

    fn push(&mut self, pgno: u32, page: &[u8], page_size: u32) {
        let sum = if pgno == ltx::lock_pgno(page_size) {
            0
        } else {
            ltx::page_checksum(pgno, page)
        };
        self.raw ^= sum;
        self.sums.push(sum);
    }

    /// Pages up to `commit` that no file wrote (only ever the lock page) are zero pages.
    fn grow(&mut self, commit: u32, page_size: u32) {
        let zero = vec![0u8; page_size as usize];
        while self.sums.len() < commit as usize {
            let pgno = self.sums.len() as u32 + 1;
            self.push(pgno, &zero, page_size);
        }
    }

    /// Page `pgno` now has checksum `sum` (the decoder's `page_checksum`); the table grows
    /// with the pages that arrive, never ahead of them.
    fn set(&mut self, pgno: u32, sum: u64, page_size: u32) {
        self.grow(pgno, page_size);
        self.raw ^= self.sums[pgno as usize - 1] ^ sum;
        self.sums[pgno as usize - 1] = sum;
    }

    fn truncate(&mut self, commit: u32) {
        for s in self.sums.drain((commit as usize).min(self.sums.len())..) {
            self.raw ^= s;
        }
    }

    fn value(&self) -> u64 {
        ltx::DbChecksum(self.raw).value()
    }
}

/// The history a chain belongs to after a file with LTX node id `node_id`, or why that
/// file belongs to another: a replica stamps every file with its history's id, and files
/// without one (0: Litestream's, or an older build's) go with any.
fn follow_lineage(lineage: u64, node_id: u64) -> Result<u64, String> {
    match (lineage, node_id) {
        (_, 0) => Ok(lineage),
        (0, id) => Ok(id),
        (ours, id) if ours == id => Ok(id),
        (ours, id) => Err(format!(
            "written by another replication history (node id {id:016x}; the files before it \
             carry {ours:016x}): a file of another database, or of a copy of this one that \
             diverged"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(min: u64, commit: u32) -> ltx::Header {
        ltx::Header {
            flags: ltx::FLAG_NO_CHECKSUM,
            page_size: 4096,
            commit,
            min_txid: min,
            max_txid: min,
            ..Default::default()
        }
    }

    /// Room for `n` pages of 4096 bytes.
    fn room(n: u64) -> u64 {
        131 + n * ltx::min_page_bytes(4096)
    }

    #[test]
    fn a_file_of_another_history_is_refused_and_one_without_a_history_is_not() {
        assert_eq!(follow_lineage(0, 0), Ok(0));
        assert_eq!(follow_lineage(0, 7), Ok(7));
        assert_eq!(follow_lineage(7, 0), Ok(7));
        assert_eq!(follow_lineage(7, 7), Ok(7));
        let err = follow_lineage(7, 9).unwrap_err();
        assert!(
            err.contains("another replication history") && err.contains("0000000000000009"),
            "{err}"
        );
    }

    #[test]
    fn a_huge_header_is_refused_before_any_page() {
        // A 4 KiB snapshot claiming 2^32-1 pages.
        let err = Growth::start(0, &header(1, u32::MAX), 4096).unwrap_err();
        assert!(err.contains("4294967295 pages"), "{err}");
        // An 80-byte level-0 file declaring a huge size after a 3-page database.
        let err = Growth::start(3, &header(2, 1 << 30), 80).unwrap_err();
        assert!(
            err.contains("1073741824 pages") && err.contains("80 bytes"),
            "{err}"
        );
        // Room for 2 more pages: 5 is fine, 6 is not.
        Growth::start(3, &header(2, 5), room(2)).unwrap();
        assert!(Growth::start(3, &header(2, 6), room(2)).is_err());
        // Shrinking needs no room; a snapshot ignores the size before it.
        Growth::start(300, &header(2, 1), room(0)).unwrap();
        Growth::start(300, &header(1, 2), room(2)).unwrap();
    }

    #[test]
    fn a_file_grows_the_database_only_by_the_pages_it_carries() {
        let grow = |prev: u32, commit: u32, pages: &[u32]| -> Result<(), String> {
            let mut g = Growth::start(prev, &header(2, commit), room(1000))?;
            pages.iter().try_for_each(|&p| g.page(p))?;
            g.finish()
        };
        grow(3, 5, &[1, 4, 5]).unwrap();
        grow(3, 3, &[2]).unwrap();
        grow(3, 2, &[1]).unwrap(); // a shrink
        let err = grow(3, 5, &[2, 5]).unwrap_err();
        assert!(err.contains("does not carry page 4"), "{err}");
        let err = grow(3, 5, &[4]).unwrap_err();
        assert!(err.contains("does not carry page 5"), "{err}");
        assert!(grow(3, 6, &[]).is_err());
        // The lock page is never stored, whatever the growth crosses.
        let lock = ltx::lock_pgno(4096);
        grow(lock - 1, lock + 1, &[lock + 1]).unwrap();
        grow(lock - 1, lock, &[]).unwrap();
        assert!(grow(lock - 2, lock + 1, &[lock + 1]).is_err());
        // A snapshot starts from nothing.
        let mut g = Growth::start(7, &header(1, 2), room(2)).unwrap();
        assert!(g.page(1).is_ok() && g.page(2).is_ok() && g.finish().is_ok());
    }
}
