//! Appending a record: `Spool::begin_record` reserves room and a segment, `RecordWriter`
//! takes the pages and commits the record into the write buffer (or straight to disk for a
//! large one). This is on the commit path: it must not hash what the record's integrity does
//! not need, nor write a small record out before the shim flushes.

use super::error::{io, SpoolError};
use super::handle::{Inner, Spool};
use super::layout;
use super::record::{
    encode_header, record_len, Integrity, RecordHeader, RecordMeta, RECORD_HEADER_SIZE,
};
use super::segment::{Segment, SEGMENT_ROLL_BYTES};
use crate::base::lock::lock;
use crate::ltx::Crc64;
use crate::wal::WalPosition;
use std::os::unix::fs::FileExt;
use std::sync::MutexGuard;

/// Committed records are kept in memory up to this size before they are written out.
const WRITE_BUFFER_BYTES: usize = 8 << 20;

impl Spool {
    /// Starts appending one record of `npages` pages; the caller pushes exactly that many.
    pub fn begin_record(
        &self,
        header: RecordHeader,
        npages: u32,
    ) -> Result<RecordWriter<'_>, SpoolError> {
        let mut inner = lock(&self.inner);
        self.make_room(&mut inner, record_len(npages as u64, header.page_size))?;
        let seq = inner.next_seq;
        self.ensure_segment(&mut inner, seq)?;
        let seg = inner.segment.as_ref().expect("segment just ensured");
        let meta = RecordMeta {
            seq,
            page_size: header.page_size,
            commit_size: header.commit_size,
            end: header.end,
            end_cksum: header.end_cksum,
            captured_at_ms: header.captured_at_ms,
            pgnos: Vec::with_capacity(npages as usize),
            segment: seg.id,
            offset: seg.len,
        };
        let mut buf = Vec::with_capacity(
            (RECORD_HEADER_SIZE as usize
                + (4 + header.page_size as usize) * (npages as usize).min(64))
            .max(64),
        );
        encode_header(seq, &header, npages, &mut buf);
        let mut crc = Crc64::new();
        crc.update(&buf);
        let hash_entries = header.integrity == Integrity::Crc;
        Ok(RecordWriter {
            spool: self,
            inner,
            meta,
            npages,
            buf,
            crc,
            hash_entries,
            written: 0,
        })
    }

    /// Refuses a record of `len` bytes that would take the spool past its cap, and every
    /// record after one was refused (until a snapshot ships), remembering that on disk.
    fn make_room(&self, inner: &mut Inner, len: u64) -> Result<(), SpoolError> {
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

/// Appends one record; dropping it without `commit` rolls the segment back.
pub struct RecordWriter<'a> {
    spool: &'a Spool,
    inner: MutexGuard<'a, Inner>,
    meta: RecordMeta,
    npages: u32,
    buf: Vec<u8>,
    crc: Crc64,
    hash_entries: bool,
    written: u64,
}

impl RecordWriter<'_> {
    pub fn push(&mut self, pgno: u32, page: &[u8]) -> Result<(), SpoolError> {
        if self.meta.pgnos.len() as u32 >= self.npages || page.len() != self.meta.page_size as usize
        {
            return Err(SpoolError::Corrupt(format!(
                "record {}: page {pgno} does not fit the record header",
                self.meta.seq
            )));
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&pgno.to_be_bytes());
        self.buf.extend_from_slice(page);
        if self.hash_entries {
            self.crc.update(&self.buf[start..]);
        }
        self.meta.pgnos.push(pgno);
        if self.buf.len() >= 1 << 20 {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes the record so far to disk (a large record does not stay in memory).
    fn spill(&mut self) -> Result<(), SpoolError> {
        let seg = self
            .inner
            .segment
            .as_mut()
            .expect("record writer has a segment");
        seg.write_out()?;
        seg.file
            .write_all_at(&self.buf, seg.len + self.written)
            .map_err(|e| SpoolError::Io(format!("appending to spool: {e}")))?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Finishes the record and returns its sequence number.
    pub fn commit(mut self) -> Result<u64, SpoolError> {
        if self.meta.pgnos.len() as u32 != self.npages {
            return Err(SpoolError::Corrupt(format!(
                "record {}: short of pages",
                self.meta.seq
            )));
        }
        let crc = self.crc.finish();
        self.buf.extend_from_slice(&crc.to_be_bytes());
        let buffered = self.buffer_or_spill()?;
        let meta = std::mem::replace(
            &mut self.meta,
            RecordMeta {
                seq: 0,
                page_size: 0,
                commit_size: 0,
                end: WalPosition {
                    salt1: 0,
                    salt2: 0,
                    frame: 0,
                },
                end_cksum: (0, 0),
                captured_at_ms: 0,
                pgnos: Vec::new(),
                segment: 0,
                offset: 0,
            },
        );
        let seq = meta.seq;
        let len = meta.len();
        let inner = &mut *self.inner;
        let seg = inner.segment.as_mut().expect("record writer has a segment");
        seg.len += self.written;
        if !buffered {
            seg.flushed = seg.len; // spilled: the whole record is on disk, after the buffer
        }
        self.written = 0;
        inner.next_seq = seq + 1;
        inner.pending_bytes += len;
        inner.pending.push(meta);
        Ok(seq)
    }

    /// Puts the finished record into the segment's write buffer when it is small (the WAL
    /// still holds its frames; see `Spool::flush`), or on disk; returns whether it buffered.
    fn buffer_or_spill(&mut self) -> Result<bool, SpoolError> {
        let seg = self
            .inner
            .segment
            .as_mut()
            .expect("record writer has a segment");
        let buffered = self.written == 0 && seg.buffer.len() + self.buf.len() <= WRITE_BUFFER_BYTES;
        if buffered {
            if seg.unflushed_marker.is_none() {
                let marker = self.spool.dir.at("unflushed");
                self.spool
                    .modes
                    .open_rw()
                    .open(&marker)
                    .map_err(|e| io("writing", &self.spool.dir.shown("unflushed"), e))?;
                seg.unflushed_marker = Some(marker);
            }
            seg.buffer.extend_from_slice(&self.buf);
            self.written = self.buf.len() as u64;
            self.buf.clear();
        } else {
            self.spill()?;
        }
        Ok(buffered)
    }
}

impl Drop for RecordWriter<'_> {
    fn drop(&mut self) {
        if self.written > 0 {
            // Not committed: cut the partial record off so the segment stays well-formed.
            if let Some(seg) = self.inner.segment.as_mut() {
                let _ = seg.file.set_len(seg.len);
            }
        }
    }
}
