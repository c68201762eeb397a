//! Segment files: the append-only files records live in, the write buffer that keeps recent
//! records in memory until they must be on disk, and the scan that reads a segment's
//! well-formed records back at recovery. It must not decide which records are pending.

use super::error::{io, SpoolError};
use super::layout::segment_name;
use super::record::{RecordCheck, RecordMeta, StoredHeader, RECORD_HEADER_SIZE};
use crate::base::held_dir::HeldDir;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// A new segment is started past this size, so shipped data can be deleted in pieces.
pub(super) const SEGMENT_ROLL_BYTES: u64 = 64 << 20;

pub(super) struct Segment {
    pub id: u64,
    pub file: File,
    /// Bytes of committed records, on disk or in `buffer`.
    pub len: u64,
    /// Bytes on disk; `buffer` holds `[flushed, len)`.
    pub flushed: u64,
    pub buffer: Vec<u8>,
    /// While `buffer` holds records, this marker file exists: if the process dies and the
    /// WAL is gone too, recovery knows records were lost and asks for a snapshot. (Reached
    /// through the spool's held directory, which lives as long as the spool.)
    pub unflushed_marker: Option<PathBuf>,
}

impl Segment {
    pub fn new(id: u64, file: File, len: u64) -> Segment {
        Segment {
            id,
            file,
            len,
            flushed: len,
            buffer: Vec::new(),
            unflushed_marker: None,
        }
    }

    pub fn write_out(&mut self) -> Result<(), SpoolError> {
        if !self.buffer.is_empty() {
            self.file
                .write_all_at(&self.buffer, self.flushed)
                .map_err(|e| SpoolError::Io(format!("writing the spool: {e}")))?;
            self.flushed += self.buffer.len() as u64;
            self.buffer.clear();
            self.remove_unflushed_marker();
        }
        Ok(())
    }

    /// Forgets every record (all shipped before they were ever written out): the segment is
    /// rewritten from its start.
    pub fn reset(&mut self) {
        self.len = 0;
        self.flushed = 0;
        self.buffer.clear();
        self.remove_unflushed_marker();
    }

    fn remove_unflushed_marker(&mut self) {
        if let Some(marker) = self.unflushed_marker.take() {
            let _ = std::fs::remove_file(marker);
        }
    }

    /// Copies the bytes at `offset` (at or past `flushed`) of record `seq` from the write
    /// buffer into `buf`.
    pub fn read_buffered(&self, offset: u64, buf: &mut [u8], seq: u64) -> Result<(), SpoolError> {
        let at = (offset - self.flushed) as usize;
        let src = self.buffer.get(at..at + buf.len()).ok_or_else(|| {
            SpoolError::Corrupt(format!("record {seq} is not in the spool's write buffer"))
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Reads every well-formed record of segment `id` in `seg`; returns them, the length of the
/// well-formed prefix and the file length.
pub(super) fn read_segment(
    seg: &HeldDir,
    id: u64,
) -> Result<(Vec<RecordMeta>, u64, u64), SpoolError> {
    let name = segment_name(id);
    let shown = seg.shown(&name);
    let f =
        crate::base::private_fs::open_read(&seg.at(&name)).map_err(|e| io("opening", &shown, e))?;
    let file_len = f.metadata().map_err(|e| io("reading", &shown, e))?.len();
    let (records, valid_len) = read_records(f, id, file_len);
    Ok((records, valid_len, file_len))
}

/// The well-formed records at the start of segment `id`, read from `r` (`len` bytes), and
/// the length they take: what recovery keeps of a segment. A torn or stale record ends it.
pub(super) fn read_records(mut r: impl Read, id: u64, len: u64) -> (Vec<RecordMeta>, u64) {
    let mut records: Vec<RecordMeta> = Vec::new();
    let mut offset = 0u64;
    while let Some(rec) = read_record(&mut r, id, offset, len, records.last()) {
        offset += rec.len();
        records.push(rec);
    }
    (records, offset)
}

/// [`read_records`] of a segment held in memory: the records recovery keeps of a segment
/// file holding `bytes`, and the length of that well-formed prefix (the rest is cut off).
pub fn scan_segment(bytes: &[u8], id: u64) -> (Vec<RecordMeta>, u64) {
    read_records(bytes, id, bytes.len() as u64)
}

/// The record at `offset` (where `f` stands), if it is whole and follows `previous`.
fn read_record(
    f: &mut impl Read,
    id: u64,
    offset: u64,
    file_len: u64,
    previous: Option<&RecordMeta>,
) -> Option<RecordMeta> {
    if offset + RECORD_HEADER_SIZE + 8 > file_len {
        return None;
    }
    let mut raw = [0u8; RECORD_HEADER_SIZE as usize];
    f.read_exact(&mut raw).ok()?;
    let h = StoredHeader::parse(&raw)?;
    if previous.is_some_and(|r| h.seq <= r.seq) {
        return None; // a stale record from before the segment was reused
    }
    if offset + RECORD_HEADER_SIZE + h.body_len() + 8 > file_len {
        return None;
    }
    let mut check = RecordCheck::new(&raw, &h);
    let mut pgnos = Vec::with_capacity(h.npages as usize);
    let mut entry = vec![0u8; 4 + h.page_size as usize];
    for i in 0..h.npages {
        f.read_exact(&mut entry).ok()?;
        check.entry(i, &entry);
        pgnos.push(u32::from_be_bytes(entry[0..4].try_into().unwrap()));
    }
    let mut tail = [0u8; 8];
    f.read_exact(&mut tail).ok()?;
    if !check.holds(u64::from_be_bytes(tail)) {
        return None;
    }
    Some(RecordMeta {
        seq: h.seq,
        page_size: h.page_size,
        commit_size: h.commit_size,
        end: h.end,
        end_cksum: h.end_cksum,
        captured_at_ms: h.captured_at_ms,
        pgnos,
        segment: id,
        offset,
    })
}
