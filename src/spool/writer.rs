//! Appending a record: `Spool::begin_record` reserves room and a segment, `RecordWriter`
//! builds the record in the segment's write buffer (spilling a large one to disk as it grows)
//! and commits it; `RecordBatch` appends several under one hold of the spool's lock. This is on the commit path: it must not hash what the record's integrity
//! does not need, copy a page more than once, nor wait for a write of the spool to the disk
//! (the writer thread does those; the shim flushes what is left at a restart).

use super::error::{io, SpoolError};
use super::handle::{Inner, Spool};
use super::layout;
use super::record::{encode_header, record_len, Integrity, Pgnos, RecordHeader, RecordMeta};
use super::segment::{Segment, SEGMENT_ROLL_BYTES};
use crate::base::lock::lock;
use crate::ltx::Crc64;
use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;

/// Committed records are kept in memory up to this size before they are written out on the
/// commit path (the writer thread normally takes them long before: see `Segment`).
const WRITE_BUFFER_BYTES: usize = 8 << 20;

/// A record growing past this is written out as it grows rather than kept in memory.
const SPILL_BYTES: usize = 1 << 20;

impl Spool {
    /// Starts appending one record of `npages` pages; the caller pushes exactly that many.
    pub fn begin_record(
        &self,
        header: RecordHeader,
        npages: u32,
    ) -> Result<RecordWriter<'_>, SpoolError> {
        self.begin_in(Held::Own(lock(&self.inner)), header, npages)
    }

    /// Starts appending records one after another under one hold of the spool's lock (see
    /// [`RecordBatch`]).
    pub fn begin_batch(&self) -> RecordBatch<'_> {
        RecordBatch {
            spool: self,
            inner: lock(&self.inner),
            on_failure: None,
        }
    }

    fn begin_in<'a>(
        &'a self,
        mut inner: Held<'a>,
        header: RecordHeader,
        npages: u32,
    ) -> Result<RecordWriter<'a>, SpoolError> {
        if inner.refusing {
            return Err(SpoolError::AfterFailedRecord);
        }
        self.make_room(&mut inner, record_len(npages as u64, header.page_size))?;
        let seq = inner.next_seq;
        self.ensure_segment(&mut inner, seq)?;
        let seg = inner.segment.as_mut().expect("segment just ensured");
        let meta = RecordMeta {
            seq,
            page_size: header.page_size,
            commit_size: header.commit_size,
            end: header.end,
            end_cksum: header.end_cksum,
            captured_at_ms: header.captured_at_ms,
            pgnos: Pgnos::with_capacity(npages as usize),
            txns_before: 0,
            segment: seg.id,
            offset: seg.len,
        };
        let start = seg.buffer.len();
        encode_header(seq, &header, npages, &mut seg.buffer);
        let mut crc = Crc64::new();
        crc.update(&seg.buffer[start..]);
        let in_buffer = seg.buffer.len() - start;
        Ok(RecordWriter {
            spool: self,
            inner,
            meta,
            npages,
            in_buffer,
            crc,
            hash_entries: header.integrity == Integrity::Crc,
            txns: 1,
            spilled: 0,
            committed: false,
        })
    }

    /// Refuses a record of `len` bytes that would take the spool past its cap, and every
    /// record after one was refused (until a snapshot ships), remembering that on disk.
    fn make_room(&self, inner: &mut Inner, len: u64) -> Result<(), SpoolError> {
        if inner.overflowed {
            self.end_overflow_where_caught_up(inner);
        } else if inner.pending_bytes + len > self.cap_bytes {
            self.let_laggards_go(inner, len);
        }
        if inner.overflowed || inner.pending_bytes + len > self.cap_bytes {
            if !inner.overflowed {
                inner.overflowed = true;
                self.modes
                    .open_rw()
                    .open(self.dir.at("overflow"))
                    .map_err(|e| io("creating", &self.dir.shown("overflow"), e))?;
            }
            return Err(SpoolError::Overflow {
                cap_bytes: self.cap_bytes,
            });
        }
        Ok(())
    }

    /// With several destinations, the spool is over its cap only because some fell behind
    /// (a stalled bucket): when a record of `len` bytes still fits beside what another one
    /// needs, the records those behind have not shipped are let go of for them, so that the
    /// others go on.
    fn let_laggards_go(&self, inner: &mut Inner, len: u64) {
        let fits = |inner: &Inner, d| inner.pending_bytes_for(d) + len <= self.cap_bytes;
        let count = inner.states.len();
        if count < 2 || !(0..count).any(|d| fits(inner, d)) {
            return;
        }
        let behind: Vec<usize> = (0..count).filter(|&d| !fits(inner, d)).collect();
        for d in behind {
            self.let_go(inner, d);
        }
        inner.forget_shipped();
    }

    /// The spool overflowed (records were refused: every destination owes a snapshot). Once
    /// one destination's snapshot took it past the refused records, the others are let go
    /// of, so that records are taken again for it rather than refused until the slowest
    /// is back.
    fn end_overflow_where_caught_up(&self, inner: &mut Inner) {
        let last = inner.next_seq - 1;
        let count = inner.states.len();
        if count < 2 || !(0..count).any(|d| inner.shipped_by(d) >= last) {
            return;
        }
        let behind: Vec<usize> = (0..count).filter(|&d| inner.shipped_by(d) < last).collect();
        for d in behind {
            self.let_go(inner, d);
        }
        inner.forget_shipped();
        inner.overflowed = false;
        let _ = std::fs::remove_file(self.dir.at("overflow"));
    }

    /// Lets go of the records destination `d` has not shipped: it is owed a snapshot (its
    /// `gap` says so across a restart; its uploader asks for it, see [`Spool::is_let_go`]).
    fn let_go(&self, inner: &mut Inner, d: usize) {
        inner.let_go_through[d] = inner.next_seq - 1;
        let dir = &self.dests[d];
        let reason =
            "it fell behind the spool's cap while the database's other destinations went on";
        if let Err(e) = super::destinations::write_gap(dir, self.modes, reason, false) {
            crate::base::log::error(&e.to_string());
        }
        crate::base::log::notice(&format!(
            "{}: the spool reached its cap of {} MiB; the records the destination kept in {} had not shipped are let go of, and it gets a snapshot when it is back",
            self.dir.path().display(),
            self.cap_bytes >> 20,
            dir.path().display()
        ));
    }

    /// Starts a new segment at record `seq` when there is none or the current one is full.
    fn ensure_segment(&self, inner: &mut Inner, seq: u64) -> Result<(), SpoolError> {
        let roll = match &inner.segment {
            None => true,
            Some(s) => s.len >= SEGMENT_ROLL_BYTES,
        };
        if roll {
            let name = layout::segment_name(seq);
            let file = self
                .modes
                .open_rw()
                .truncate(true)
                .open(self.seg.at(&name))
                .map_err(|e| io("creating", &self.seg.shown(&name), e))?;
            if let Some(old) = inner.segment.as_mut() {
                old.write_out()?;
            }
            inner.segment = Some(Segment::new(seq, file, 0));
        }
        Ok(())
    }
}

/// What a committed record became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// Records pending shipment now for the destination furthest ahead, this one included
    /// (1: its uploader had nothing to do).
    pub pending: usize,
}

/// The spool's lock as a record holds it: its own, or lent by a [`RecordBatch`].
enum Held<'a> {
    Own(MutexGuard<'a, Inner>),
    Lent(&'a mut Inner),
}

impl Deref for Held<'_> {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        match self {
            Held::Own(guard) => guard,
            Held::Lent(inner) => inner,
        }
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        match self {
            Held::Own(guard) => guard,
            Held::Lent(inner) => inner,
        }
    }
}

/// Records appended one after another under one hold of the spool's lock, so that nothing
/// anyone else appends lands between them, and nobody reads the spool (a flush, the
/// generation line, the uploader) before the last of them is in. For a writer that has
/// counted them as captured already (the capture thread moves the chain past a run of
/// commits, then copies their pages).
pub struct RecordBatch<'a> {
    spool: &'a Spool,
    inner: MutexGuard<'a, Inner>,
    /// See [`Self::refuse_after_failure`].
    on_failure: Option<Box<dyn FnOnce() + 'a>>,
}

impl<'a> RecordBatch<'a> {
    /// Makes the batch, should it not be finished (a record failed, or a panic while one
    /// was written), refuse every record after it until [`Spool::stop_refusing`], and run
    /// `owe` while it still holds the spool's lock: nothing lands beyond the missing
    /// records, and nobody reads the spool as complete before `owe` has said what is missing.
    pub fn refuse_after_failure(&mut self, owe: Box<dyn FnOnce() + 'a>) {
        self.on_failure = Some(owe);
    }

    /// Starts the next record of the batch (see [`Spool::begin_record`]).
    pub fn begin_record(
        &mut self,
        header: RecordHeader,
        npages: u32,
    ) -> Result<RecordWriter<'_>, SpoolError> {
        self.spool
            .begin_in(Held::Lent(&mut self.inner), header, npages)
    }

    /// Every record of the batch is committed: the lock goes with nothing owed.
    pub fn finish(mut self) {
        self.on_failure = None;
    }
}

impl Drop for RecordBatch<'_> {
    fn drop(&mut self) {
        if let Some(owe) = self.on_failure.take() {
            self.inner.refusing = true;
            owe();
        }
    }
}

/// Appends one record; dropping it without `commit` takes it back out of the segment.
pub struct RecordWriter<'a> {
    spool: &'a Spool,
    inner: Held<'a>,
    meta: RecordMeta,
    npages: u32,
    /// The record's bytes at the end of the segment's buffer (a write the writer thread
    /// gives back may come back in front of them).
    in_buffer: usize,
    crc: Crc64,
    hash_entries: bool,
    /// Transactions the record holds (see [`RecordWriter::holding_txns`]).
    txns: u32,
    /// Bytes of the record already written out (a large record spills as it grows).
    spilled: u64,
    committed: bool,
}

impl RecordWriter<'_> {
    /// The record holds `n` transactions (the latest version of each page they wrote), not
    /// one: counted in the pending transactions status shows.
    pub fn holding_txns(&mut self, n: u32) {
        self.txns = n.max(1);
    }

    pub fn push(&mut self, pgno: u32, page: &[u8]) -> Result<(), SpoolError> {
        if self.meta.pgnos.len() as u32 >= self.npages || page.len() != self.meta.page_size as usize
        {
            return Err(SpoolError::Corrupt(format!(
                "record {}: page {pgno} does not fit the record header",
                self.meta.seq
            )));
        }
        if self.hash_entries {
            self.crc.update(&pgno.to_be_bytes());
            self.crc.update(page);
        }
        let seg = self.segment();
        seg.buffer.extend_from_slice(&pgno.to_be_bytes());
        seg.buffer.extend_from_slice(page);
        self.in_buffer += 4 + page.len();
        self.meta.pgnos.push(pgno);
        if self.in_buffer >= SPILL_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    /// Leaves a trace on disk of records held only in memory (see `Segment`).
    fn mark_unflushed(&mut self) -> Result<(), SpoolError> {
        let (dir, modes) = (&self.spool.dir, self.spool.modes);
        let seg = self
            .inner
            .segment
            .as_mut()
            .expect("record writer has a segment");
        if seg.unflushed_marker.is_none() {
            let marker = dir.at("unflushed");
            modes
                .open_rw()
                .open(&marker)
                .map_err(|e| io("writing", &dir.shown("unflushed"), e))?;
            seg.unflushed_marker = Some(marker);
        }
        Ok(())
    }

    fn segment(&mut self) -> &mut Segment {
        self.inner
            .segment
            .as_mut()
            .expect("record writer has a segment")
    }

    /// Hands the buffer to the writer thread, the record so far with it (a large record does
    /// not stay in memory; it waits for no more than the write before).
    fn spill(&mut self) -> Result<(), SpoolError> {
        self.segment().write_all_behind(None)?;
        self.spilled += self.in_buffer as u64;
        self.in_buffer = 0;
        Ok(())
    }

    /// Finishes the record; says what it became (the commit path learns under this lock
    /// whether the uploader needs waking, instead of taking the spool's lock again).
    pub fn commit(mut self) -> Result<Appended, SpoolError> {
        if self.meta.pgnos.len() as u32 != self.npages {
            return Err(SpoolError::Corrupt(format!(
                "record {}: short of pages",
                self.meta.seq
            )));
        }
        let crc = self.crc.finish();
        self.segment().buffer.extend_from_slice(&crc.to_be_bytes());
        self.in_buffer += 8;
        let record_bytes = self.spilled + self.in_buffer as u64;
        let seg = self.segment();
        if seg.must_write_out(WRITE_BUFFER_BYTES) {
            seg.write_out()?;
        } else {
            self.mark_unflushed()?;
        }
        debug_assert_eq!(record_bytes, self.meta.len());
        let seg = self.segment();
        seg.len += record_bytes;
        seg.write_behind();
        let mut meta = std::mem::replace(&mut self.meta, RecordMeta::empty());
        let seq = meta.seq;
        let inner = &mut *self.inner;
        meta.txns_before = inner.txns_through;
        inner.txns_through += u64::from(self.txns);
        inner.next_seq = seq + 1;
        inner.pending_bytes += meta.len();
        inner.pending.push(meta);
        self.committed = true;
        Ok(Appended {
            seq,
            pending: inner.pending_for_the_furthest(),
        })
    }
}

impl Spool {
    /// Takes records again once the failure a batch refused after (see
    /// [`RecordBatch::refuse_after_failure`]) has been noted by its writer.
    pub fn stop_refusing(&self) {
        lock(&self.inner).refusing = false;
    }
}

impl Drop for RecordWriter<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Not committed: cut the partial record off so the segment stays well-formed.
        let (in_buffer, spilled) = (self.in_buffer, self.spilled);
        let seg = self.segment();
        if spilled > 0 {
            seg.drop_spilled_record();
        } else {
            seg.buffer.truncate(seg.buffer.len() - in_buffer);
        }
    }
}
