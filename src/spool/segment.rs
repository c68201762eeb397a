//! Segment files: the append-only files records live in, the write buffer that keeps recent
//! records in memory until the writer thread takes them or they must be on disk, and the
//! scan that reads a segment's well-formed records back at recovery. It must not decide
//! which records are pending.

use super::error::{io, SpoolError};
use super::layout::segment_name;
use super::record::{Pgnos, RecordCheck, RecordMeta, StoredHeader, RECORD_HEADER_SIZE};
use super::write_behind::{FollowUp, Settled, Slot};
use crate::base::held_dir::HeldDir;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A new segment is started past this size, so shipped data can be deleted in pieces.
pub(super) const SEGMENT_ROLL_BYTES: u64 = 64 << 20;

/// Buffered records are handed to the writer thread once they take this much: a wake-up
/// of that thread every few hundred small commits, and little left to write at a restart.
const WRITE_BEHIND_BYTES: usize = 1 << 20;

/// While a checkpoint runs, buffered records are handed over early once they take this much
/// (see `Spool::write_behind_now`). Fewer are left to the restart, which hands them over
/// with the generation, as every restart did before: a crash before that write stays an
/// ordinary case, not one that only a slow capture thread reaches.
pub(super) const EARLY_WRITE_BEHIND_BYTES: usize = 256 << 10;

pub(super) struct Segment {
    pub id: u64,
    pub file: Arc<File>,
    /// Bytes of committed records, on disk, being written, or in `buffer`.
    pub len: u64,
    /// Bytes on disk; the writer thread has `[flushed, flushed + in_flight)` and `buffer`
    /// holds `[flushed + in_flight, len)`, then the record being appended, if any.
    pub flushed: u64,
    in_flight: u64,
    /// The writer thread's last write failed: until a write out on the commit path succeeds
    /// (or reports the error to the commit), nothing more is handed to it.
    write_failed: bool,
    pub buffer: Vec<u8>,
    /// The write handed to the writer thread, and an emptied buffer to take turns with.
    writing: Arc<Slot>,
    spare: Vec<u8>,
    /// While records may be only in memory (`buffer` or the writer thread), this marker
    /// file exists: if the process dies and the WAL is gone too, recovery knows records
    /// were lost and asks for a snapshot. (Reached through the spool's held directory,
    /// which lives as long as the spool.)
    pub unflushed_marker: Option<PathBuf>,
}

impl Segment {
    pub fn new(id: u64, file: File, len: u64) -> Segment {
        Segment {
            id,
            file: Arc::new(file),
            len,
            flushed: len,
            in_flight: 0,
            write_failed: false,
            buffer: Vec::new(),
            writing: Arc::default(),
            spare: Vec::new(),
            unflushed_marker: None,
        }
    }

    /// Writes out everything buffered, after the write handed off (if any) has ended (what
    /// a failed one gave back is tried again here, where its error reaches the caller).
    pub fn write_out(&mut self) -> Result<(), SpoolError> {
        self.settle()?;
        if !self.buffer.is_empty() {
            self.file
                .write_all_at(&self.buffer, self.flushed)
                .map_err(write_error)?;
            self.flushed += self.buffer.len() as u64;
            self.buffer.clear();
        }
        self.write_failed = false;
        self.remove_unflushed_marker();
        Ok(())
    }

    /// Whether the commit path must write out now: a failed write is waiting to be tried
    /// again (and reported), or more than `cap` bytes are only in memory.
    pub fn must_write_out(&self, cap: usize) -> bool {
        self.write_failed || self.buffer.len() as u64 + self.in_flight > cap as u64
    }

    /// Hands the buffer to the writer thread once it holds enough, unless a write is still
    /// out (the commit path must not wait for one).
    pub fn write_behind(&mut self) {
        self.write_behind_from(WRITE_BEHIND_BYTES);
    }

    /// [`Self::write_behind`] of a buffer holding at least `min` bytes.
    pub fn write_behind_from(&mut self, min: usize) {
        if self.buffer.is_empty() || self.buffer.len() < min || self.write_failed {
            return;
        }
        if self.in_flight > 0 {
            match self.writing.try_settle() {
                Some(settled) => self.take_settled(settled),
                None => return,
            }
            if self.in_flight > 0 || self.write_failed {
                return; // orphaned in a forked child, or failed: see `must_write_out`
            }
        }
        let _ = self.hand_off_buffer(None);
    }

    /// Hands everything buffered to the writer thread once the write out before it ended (a
    /// large record, written out as it grows), and `then` after it; written here if there
    /// is nothing to hand off, no thread, or a failed write to report.
    pub fn write_all_behind(&mut self, then: Option<FollowUp>) -> Result<(), SpoolError> {
        self.settle()?;
        let then = match (self.write_failed, self.buffer.is_empty()) {
            // All on disk already (a log restart after the capture thread handed the buffer
            // off while the checkpoint ran): only `then` is left, without waking the thread.
            // The unflushed marker stays, as after a hand-off: it is removed by the next
            // write out, not on the committing thread.
            (false, true) => {
                if let Some(then) = then {
                    then.write_logged();
                }
                return Ok(());
            }
            (true, _) => then,
            (false, false) => match self.hand_off_buffer(then) {
                Ok(()) => return Ok(()),
                Err(then) => then,
            },
        };
        self.write_out()?;
        match then {
            Some(then) => then.write().map_err(write_error),
            None => Ok(()),
        }
    }

    fn hand_off_buffer(&mut self, then: Option<FollowUp>) -> Result<(), Option<FollowUp>> {
        let chunk = std::mem::replace(&mut self.buffer, std::mem::take(&mut self.spare));
        let len = chunk.len() as u64;
        match self.writing.hand_off(&self.file, self.flushed, chunk, then) {
            Ok(()) => {
                self.in_flight = len;
                Ok(())
            }
            Err((chunk, then)) => {
                self.spare = std::mem::replace(&mut self.buffer, chunk);
                Err(then)
            }
        }
    }

    /// Waits for the write handed off (if any) to end: its bytes are then on disk, or, if it
    /// failed, back at the front of the buffer (`write_failed` says so).
    pub fn settle(&mut self) -> Result<(), SpoolError> {
        if self.in_flight == 0 {
            return Ok(());
        }
        let settled = self.writing.settle();
        self.take_settled(settled);
        if self.in_flight > 0 {
            return Err(SpoolError::Io(
                "records being written out by the process this one was forked from \
                 are not in this process"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Counts a settled write's bytes as on disk, or puts them back in front of the buffer.
    fn take_settled(&mut self, settled: Settled) {
        match settled {
            Settled::Idle => {}
            Settled::Written(mut chunk) => {
                self.flushed += self.in_flight;
                chunk.clear();
                self.spare = chunk;
            }
            Settled::Failed(mut chunk) => {
                chunk.extend_from_slice(&self.buffer);
                self.spare = std::mem::replace(&mut self.buffer, chunk);
                self.spare.clear();
                self.write_failed = true;
            }
            Settled::Orphaned => return,
        }
        self.in_flight = 0;
    }

    /// Takes back a record that was not committed and was partly written out: the segment
    /// ends where the record began (`len`), on disk and in memory.
    pub fn drop_spilled_record(&mut self) {
        if self.settle().is_err() {
            // Its bytes went to the writer thread of the process this one was forked from:
            // where the file ends is that process's to say, not this copy's.
            return;
        }
        if self.flushed >= self.len {
            self.buffer.clear();
            self.flushed = self.len;
        } else {
            // A failed write gave committed bytes back: keep them, drop the rest.
            self.buffer.truncate((self.len - self.flushed) as usize);
        }
        let _ = self.file.set_len(self.flushed);
    }

    /// Forgets every record (all shipped, some perhaps never written out): the segment is
    /// rewritten from its start.
    pub fn reset(&mut self) {
        let _ = self.settle();
        self.len = 0;
        self.flushed = 0;
        self.in_flight = 0;
        self.buffer.clear();
        self.remove_unflushed_marker();
    }

    fn remove_unflushed_marker(&mut self) {
        if let Some(marker) = self.unflushed_marker.take() {
            let _ = std::fs::remove_file(marker);
        }
    }

    /// Copies the bytes at `offset` (at or past `flushed`, nothing in flight) of record `seq`
    /// from the write buffer into `buf`.
    pub fn read_buffered(&self, offset: u64, buf: &mut [u8], seq: u64) -> Result<(), SpoolError> {
        let at = (offset - self.flushed - self.in_flight) as usize;
        let src = self.buffer.get(at..at + buf.len()).ok_or_else(|| {
            SpoolError::Corrupt(format!("record {seq} is not in the spool's write buffer"))
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl Drop for Segment {
    /// The writer thread may still hold a write to this file: it ends before the file is
    /// closed (or reopened by a recovery in this process).
    fn drop(&mut self) {
        let _ = self.settle();
    }
}

fn write_error(e: std::io::Error) -> SpoolError {
    SpoolError::Io(format!("writing the spool: {e}"))
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
    let mut pgnos = Pgnos::with_capacity(h.npages as usize);
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
        txns_before: 0, // numbered as the spool takes them in (`Inner::count_recovered`)
        segment: id,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write the thread could not do comes back to the buffer whole and in order, nothing
    /// more goes to the thread, and the write-out the commit path then owes reports the
    /// error instead of counting the bytes as on disk.
    #[test]
    fn a_failed_write_behind_gives_the_bytes_back_and_write_out_reports_it() {
        let path = std::env::temp_dir().join(format!("replica-seg-ro-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        let read_only = File::open(&path).unwrap();
        let mut seg = Segment::new(1, read_only, 0);
        let first: Vec<u8> = (0..WRITE_BEHIND_BYTES).map(|i| i as u8).collect();
        seg.buffer.extend_from_slice(&first);
        seg.len = first.len() as u64;
        seg.write_behind();
        assert_eq!(seg.in_flight, first.len() as u64);
        seg.buffer.extend_from_slice(b"after");
        seg.len += 5;
        seg.settle().unwrap();
        assert!(seg.write_failed && seg.must_write_out(usize::MAX));
        seg.write_behind();
        assert_eq!(
            seg.in_flight, 0,
            "nothing more is handed off after a failure"
        );
        assert_eq!((seg.flushed, seg.in_flight), (0, 0));
        assert_eq!(&seg.buffer[..first.len()], &first[..]);
        assert_eq!(&seg.buffer[first.len()..], b"after");
        let err = seg.write_out().unwrap_err().to_string();
        assert!(err.contains("writing the spool"), "{err}");
        let _ = std::fs::remove_file(&path);
    }

    fn scratch(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("replica-seg-{name}-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        path
    }

    fn writable(path: &PathBuf) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
    }

    /// A buffer handed off before the restart (as the capture thread does while a checkpoint
    /// runs) leaves the restart everything on disk: it writes only the line that follows the
    /// records, itself, and leaves the unflushed marker as a hand-off does (the next write
    /// out removes it).
    #[test]
    fn a_small_buffer_handed_off_early_leaves_a_restart_only_the_follow_up_to_write() {
        let (records, generation, marker) = (scratch("rec"), scratch("gen"), scratch("marker"));
        let mut seg = Segment::new(1, writable(&records), 0);
        seg.write_behind_from(0);
        assert_eq!(seg.in_flight, 0, "nothing buffered, nothing handed off");
        seg.buffer.extend_from_slice(b"one small record");
        seg.len = 16;
        seg.unflushed_marker = Some(marker.clone());
        seg.write_behind();
        assert_eq!(seg.in_flight, 0, "below the usual size, the buffer stays");
        seg.write_behind_from(0);
        assert_eq!((seg.in_flight, seg.buffer.len()), (16, 0));
        let then = FollowUp {
            file: Arc::new(writable(&generation)),
            bytes: b"generation line".to_vec(),
        };
        seg.write_all_behind(Some(then)).unwrap();
        assert_eq!((seg.flushed, seg.in_flight), (16, 0));
        assert_eq!(std::fs::read(&records).unwrap(), b"one small record");
        assert_eq!(std::fs::read(&generation).unwrap(), b"generation line");
        assert!(marker.exists() && seg.unflushed_marker.is_some());
        seg.write_out().unwrap();
        assert!(!marker.exists(), "the next write out removes it");
        for p in [records, generation] {
            let _ = std::fs::remove_file(p);
        }
    }
}
