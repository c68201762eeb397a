//! Applying a planned chain into a temporary file: each downloaded object streams through
//! the LTX decoder straight into place, checked as it goes (names and header txids, page
//! size, page numbers within the commit size, SQLite's page-1 header, every file checksum,
//! and the database checksum chain where files carry one). It must stop at the first file
//! that fails, naming its object, and leave publishing (or removing) the file to its caller.

use super::fetch::{Fetcher, ObjectReader};
use super::plan::LtxObject;
use super::types::{RestoreProgress, Restored, Tuning};
use super::write::{WriteJob, WriteRun, Writer};
use crate::error::Error;
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
        let r = apply_pieces(&fetcher, chain, out, &writer, tuning, &mut progress)
            .and_then(|restored| writer.settle().map(|()| restored));
        fetcher.stop();
        r
    })
    .and_then(|restored| {
        out.sync_all()?;
        Ok(restored)
    })
}

/// Applies every object of `chain` in order, reading each one's pieces from `fetcher`.
fn apply_pieces(
    fetcher: &Fetcher,
    chain: &[LtxObject],
    out: &std::fs::File,
    writer: &Writer,
    tuning: &Tuning,
    progress: &mut RestoreProgress,
) -> Result<Restored, Error> {
    let mut rebuild = Rebuild::new(out, writer, tuning.want_checksum);
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
    /// Page checksums, kept from the first file that carries a database checksum (or from
    /// the start when the result's checksum is wanted).
    table: Option<ChecksumTable>,
    page_size: u32,
    commit: u32,
    pages_written: u32,
    /// The post-apply checksum of the last file, when it carried one and it was checked.
    expected_post: Option<u64>,
    buf: Vec<u8>,
    run: WriteRun,
}

impl<'w> Rebuild<'w> {
    fn new(out: &'w std::fs::File, writer: &'w Writer, want_checksum: bool) -> Self {
        Rebuild {
            out,
            writer,
            want_checksum,
            table: None,
            page_size: 0,
            commit: 0,
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
            return Err(Error::Restore(format!(
                "{}: its header says txids {}-{}, its name says otherwise",
                obj.key, h.min_txid, h.max_txid
            )));
        }
        if self.page_size != 0 && h.page_size != self.page_size {
            return Err(Error::Restore(format!(
                "{}: page size {} differs from {} (a file from another database?)",
                obj.key, h.page_size, self.page_size
            )));
        }
        self.page_size = h.page_size;
        let checksums = !h.no_checksum();
        if self.table.is_none() && (self.want_checksum || checksums) {
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
                    return Err(Error::Restore(format!(
                        "{}: pre-apply checksum {:016x} does not match the state before it ({prev:016x}): the file belongs to another database or a gap",
                        obj.key, h.pre_apply_checksum
                    )));
                }
            }
        }
        if let Some(t) = self.table.as_mut() {
            t.grow(h.commit, self.page_size);
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
                return Err(Stop::Refuse(Error::Restore(format!(
                    "{}: page {pgno} is outside the database size {}",
                    obj.key, h.commit
                ))));
            }
            if pgno == 1 {
                check_page1(&obj.key, &self.buf, h).map_err(Stop::Refuse)?;
            }
            let offset = (pgno as u64 - 1) * self.page_size as u64;
            self.run
                .write(self.writer, offset, &self.buf)
                .map_err(Stop::Refuse)?;
            if let Some(t) = self.table.as_mut() {
                t.set(pgno, dec.page_checksum());
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
        if h.commit < self.commit {
            // A shrink: pages past the end must not come back if a later file grows it again.
            self.writer
                .send(WriteJob::SetLen(h.commit as u64 * self.page_size as u64))?;
        }
        self.commit = h.commit;
        if let Some(t) = self.table.as_mut() {
            t.truncate(self.commit);
        }
        match (&self.table, !h.no_checksum()) {
            (Some(t), true) => {
                let ours = t.value();
                if ours != trailer.post_apply_checksum {
                    return Err(Error::Restore(format!(
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
        self.writer
            .send(WriteJob::SetLen(self.commit as u64 * self.page_size as u64))?;
        Ok(Restored {
            txid: chain.last().map(|o| o.max_txid).unwrap_or(0),
            files: chain.len(),
            pages: self.pages_written,
            bytes_downloaded: downloaded,
            db_checksum: self.table.map(|t| t.value()),
        })
    }
}

/// An object that failed to download or decode, named in the message.
fn object_error(key: &str, e: ltx::LtxError, store: Option<StoreError>) -> Error {
    match store {
        Some(s) => Error::Restore(format!("{key}: download failed: {s}")),
        None => Error::Restore(format!("{key}: {e}")),
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
        return Err(Error::Restore(format!(
            "{key}: page 1 says page size {ps}, the file says {}",
            h.page_size
        )));
    }
    let size = db.page_count;
    if db.page_count_valid && size != 0 && size != h.commit {
        return Err(Error::Restore(format!(
            "{key}: page 1 says the database has {size} pages, the file says {} (a file from another database?)",
            h.commit
        )));
    }
    Ok(())
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

    /// Pages inside a grown size that no file writes are zero pages (as the uploader counts).
    fn grow(&mut self, commit: u32, page_size: u32) {
        let zero = vec![0u8; page_size as usize];
        while self.sums.len() < commit as usize {
            let pgno = self.sums.len() as u32 + 1;
            self.push(pgno, &zero, page_size);
        }
    }

    /// Page `pgno` now has checksum `sum` (the decoder's `page_checksum`).
    fn set(&mut self, pgno: u32, sum: u64) {
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
