//! Capture: the frames of one committed transaction, from the last captured commit up to
//! its commit frame, read back from the WAL (they are in the page cache), verified against
//! the salts and checksum chain and appended to the spool as one record; the commits the
//! commit path queued for the capture thread, taken in order; and the commits whose frames
//! did not verify when written (deferred until SQLite is done with them). It must never
//! fail the application's write: a frame that does not verify is reported to the caller.

use super::fallback::capture_failed;
use crate::base::clock::now_ms;
use crate::base::io::ReadAt;
use crate::database::{self, CaptureState, Database};
use crate::spool::{Appended, Integrity, RecordHeader, RecordWriter};
use crate::wal::{self, FrameChain, FrameHeader, WalHeader, WalPosition, FRAME_HEADER_SIZE};

/// How strictly capture checks the frames it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Salts and the checksum chain must hold.
    Strict,
    /// SQLite has just rewritten the checksums: frames it left unsealed are accepted too.
    AfterRewrite,
    /// The transaction is over (see `resolve_deferred`): frames of this log are accepted.
    Lenient,
}

/// Reads the frames of one transaction back from the WAL (or takes them from the write
/// buffer) and appends them to the spool; says what the record became.
pub(super) fn capture(
    db: &Database,
    cap: &mut CaptureState,
    header: WalHeader,
    commit_frame: u32,
    fh: FrameHeader,
    file: &mut dyn ReadAt,
    mode: Mode,
) -> Result<Appended, String> {
    let chain = cap
        .chain
        .as_mut()
        .ok_or("the WAL position was unknown before this commit")?;
    let first = chain.next_frame();
    if commit_frame < first {
        return Err(format!(
            "commit frame {commit_frame} precedes the next expected frame {first}"
        ));
    }
    // Sealed by the chain unless the frames turn out to hold another transaction's commit
    // (see `seal`): then the record is taken back and written again with the spool's CRC.
    let mut one_transaction = true;
    let (appended, trial) = loop {
        let integrity = seal(&header, chain.checksum(), mode, one_transaction);
        let record = record_header(&header, commit_frame, &fh, integrity);
        match append_frames(db, &header, chain, record, commit_frame, file, mode)? {
            Some(done) => break done,
            None => one_transaction = false,
        }
    };
    *chain = trial;
    Ok(appended)
}

/// Reads, verifies and appends the frames after `chain` through `commit_frame` as one
/// record with `record`'s header; what it became and the chain after it, or `None` (the
/// record taken back) if it is sealed by the chain and a frame before the last is a
/// commit frame.
fn append_frames(
    db: &Database,
    header: &WalHeader,
    chain: &FrameChain,
    record: RecordHeader,
    commit_frame: u32,
    file: &mut dyn ReadAt,
    mode: Mode,
) -> Result<Option<(Appended, FrameChain)>, String> {
    let first = chain.next_frame();
    let by_chain = record.integrity != Integrity::Crc;
    let mut trial = chain.clone();
    let mut buf = vec![0u8; FRAME_HEADER_SIZE + header.page_size as usize];
    let mut rec = db
        .spool
        .begin_record(record, commit_frame - first + 1)
        .map_err(|e| e.to_string())?;
    for f in first..=commit_frame {
        read_frame(file, header, f, &mut buf)?;
        let (h, page) = buf.split_at(FRAME_HEADER_SIZE);
        let frame = verify_frame(&mut trial, header, f, h, page, mode)?;
        if by_chain && f < commit_frame && frame.is_commit() {
            return Ok(None);
        }
        rec.push(frame.pgno, page).map_err(|e| e.to_string())?;
    }
    Ok(Some((commit_captured(db, rec, 1)?, trial)))
}

/// Commits a record of captured commits holding `txns` transactions, and counts them.
pub(super) fn commit_captured(
    db: &Database,
    mut rec: RecordWriter<'_>,
    txns: u32,
) -> Result<Appended, String> {
    rec.holding_txns(txns);
    crate::fault::point("capture.before_append");
    let appended = rec.commit().map_err(|e| e.to_string())?;
    crate::fault::point("capture.after_append");
    db.captured_txns
        .fetch_add(u64::from(txns), std::sync::atomic::Ordering::Relaxed);
    Ok(appended)
}

/// The spool record of the transaction ending at `commit_frame`, whose first frame
/// continues the chain at `chain_start`.
pub(super) fn record_header(
    header: &WalHeader,
    commit_frame: u32,
    fh: &FrameHeader,
    integrity: Integrity,
) -> RecordHeader {
    RecordHeader {
        page_size: header.page_size,
        commit_size: fh.commit_size,
        end: WalPosition {
            salt1: header.salt1,
            salt2: header.salt2,
            frame: commit_frame,
        },
        end_cksum: (fh.cksum1, fh.cksum2),
        captured_at_ms: now_ms(),
        integrity,
    }
}

/// How the record of the frames from the chain's next one (`chain_start` its checksum)
/// through a commit frame is sealed, `one_transaction` when no frame before the commit
/// frame is a commit frame (nor unreadable). Recovery recomputes the WAL's own checksum chain from a
/// record's entries, which keep each frame's page number and page but no commit size: that
/// works only when no frame before the last is a commit frame. A record that also holds
/// other transactions (commits of other processes not taken yet when this one was
/// captured) would read back as torn, and with it every record after it; so would one
/// whose log chain has holes after an in-place rewrite (see `verify_frame`). Those carry
/// the spool's own CRC instead.
pub(super) fn seal(
    header: &WalHeader,
    chain_start: (u32, u32),
    mode: Mode,
    one_transaction: bool,
) -> Integrity {
    if mode != Mode::Strict || !one_transaction {
        return Integrity::Crc;
    }
    Integrity::WalChain {
        start: chain_start,
        big_endian: header.big_endian_checksums(),
    }
}

/// The header of frame `f` of the log with `header`, if it can be read.
pub(super) fn frame_header_at(
    file: &mut dyn ReadAt,
    header: &WalHeader,
    f: u32,
) -> Option<FrameHeader> {
    let mut h = [0u8; FRAME_HEADER_SIZE];
    match file.read_at(wal::frame_offset(header.page_size, f), &mut h) {
        Ok(n) if n == h.len() => FrameHeader::parse(&h).ok(),
        _ => None,
    }
}

/// Reads frame `f` (header and page) into `buf`, which holds exactly one frame.
fn read_frame(
    file: &mut dyn ReadAt,
    header: &WalHeader,
    f: u32,
    buf: &mut [u8],
) -> Result<(), String> {
    let off = wal::frame_offset(header.page_size, f);
    match file.read_at(off, buf) {
        Ok(n) if n == buf.len() => Ok(()),
        Ok(_) => Err(format!("WAL frame {f} is missing")),
        Err(e) => Err(format!("reading WAL frame {f}: {e}")),
    }
}

/// Checks frame `f` (header `h`, `page`) against the chain `trial`, which it advances, as
/// strictly as `mode` says; returns the frame's header.
fn verify_frame(
    trial: &mut FrameChain,
    header: &WalHeader,
    f: u32,
    h: &[u8],
    page: &[u8],
    mode: Mode,
) -> Result<FrameHeader, String> {
    if let Ok(Some(frame)) = trial.accept(h, page) {
        return Ok(frame);
    }
    let not_chained = || format!("WAL frame {f} does not continue the checksum chain");
    let fh = FrameHeader::parse(h).map_err(|_| not_chained())?;
    // SQLite 3.40 writes frames with zero salts and checksums while it owes a checksum
    // rewrite, and a ROLLBACK TO inside a spilled transaction can leave such frames
    // unrewritten in a committed transaction (its WAL index still counts them; the frames
    // after them are chained from their zero checksum). Accept exactly that.
    if mode != Mode::Strict && is_unsealed_frame(&fh) {
        *trial = FrameChain::resume(header, f + 1, (0, 0));
        return Ok(fh);
    }
    // SQLite is done with the transaction (its write lock is released) and its WAL index
    // counts these frames as committed even though their checksums were never rewritten:
    // take them as written, as long as they belong to this log.
    if mode == Mode::Lenient && fh.salts() == header.salts() {
        *trial = FrameChain::resume(header, f + 1, fh.checksum());
        return Ok(fh);
    }
    Err(not_chained())
}

fn is_unsealed_frame(fh: &FrameHeader) -> bool {
    fh.pgno != 0 && fh.salts() == (0, 0) && fh.checksum() == (0, 0)
}

/// Settles a commit whose frames did not verify when it was written.
pub(super) fn resolve_deferred(db: &Database, cap: &mut CaptureState, file: &mut dyn ReadAt) {
    let Some(k) = cap.deferred_commit.take() else {
        return;
    };
    let Some(header) = cap.header else { return };
    let fh = frame_header_at(file, &header, k);
    let pos = WalPosition {
        salt1: header.salt1,
        salt2: header.salt2,
        frame: k,
    };
    let result = match fh {
        Some(fh) if fh.is_commit() => {
            capture(db, cap, header, k, fh, file, Mode::Lenient).map(|_| ())
        }
        _ => Err(format!("WAL frame {k} is no longer a commit frame")),
    };
    if let Err(why) = result {
        capture_failed(db, cap, &why, Some(pos));
        let stored = fh.map(|f| (f.cksum1, f.cksum2)).unwrap_or((0, 0));
        cap.chain = Some(FrameChain::resume(&header, k + 1, stored));
    }
    database::wake_uploader();
}

/// Settles a deferred commit now, reading the WAL through `open_wal`. The write-lock release
/// does this in normal locking mode; `replica_sync` does it too, for exclusive locking mode
/// (no shared-memory locks to observe) and any path that skipped the release.
pub fn settle_deferred(db: &Database, open_wal: &mut dyn FnMut() -> Option<Box<dyn ReadAt>>) {
    if !db.owned_here() {
        return;
    }
    // The common case, on every commit: nothing deferred, and the lock (which the capture
    // thread takes too) left alone.
    if !db
        .capture_deferred
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return;
    }
    let mut cap = crate::base::lock::lock(&db.capture);
    if cap.deferred_commit.is_none() {
        db.capture_deferred
            .store(false, std::sync::atomic::Ordering::SeqCst);
        return;
    }
    match open_wal() {
        Some(mut wal) => resolve_deferred(db, &mut cap, wal.as_mut()),
        None => abandon_deferred(
            db,
            &mut cap,
            "the WAL could not be reopened to capture a commit",
        ),
    }
}

/// Gives up on a deferred commit: a snapshot that contains it will be shipped instead.
pub(super) fn abandon_deferred(db: &Database, cap: &mut CaptureState, why: &str) {
    if let (Some(h), Some(k)) = (cap.header, cap.deferred_commit.take()) {
        let pos = WalPosition {
            salt1: h.salt1,
            salt2: h.salt2,
            frame: k,
        };
        capture_failed(db, cap, why, Some(pos));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplicaConfig;

    use crate::base::testing::InMemory as Log;

    /// Capture at a commit whose frames follow another transaction's (another process's
    /// commit not taken yet) makes one record of both; it must read back from the segment
    /// as recovery reads it (sealed by the chain, it read back as torn).
    #[test]
    fn a_capture_holding_another_transaction_reads_back_from_the_segment() {
        let dir = crate::base::testing::fresh_dir("capture-two");
        let cfg = ReplicaConfig::in_dir_for_tests(dir.join("replica"));
        let db = Database::open(&dir.join("app.db"), vec![cfg], 1 << 30).unwrap();
        let header = WalHeader::new(false, 512, 1, 0x11, 0x22);
        let mut log = header.to_bytes().to_vec();
        let mut chain = FrameChain::new(&header);
        let mut commit = None;
        for (pgno, commit_size) in [(1, 0), (2, 2), (1, 0), (3, 3)] {
            let page = vec![pgno as u8 + commit_size as u8; 512];
            let fh = chain.seal(pgno, commit_size, &page).unwrap();
            log.extend_from_slice(&fh.to_bytes());
            log.extend_from_slice(&page);
            commit = Some(fh);
        }
        let mut cap = CaptureState {
            header: Some(header),
            chain: Some(FrameChain::new(&header)),
            ..Default::default()
        };
        let fh = commit.unwrap();
        capture(&db, &mut cap, header, 4, fh, &mut Log(log), Mode::Strict).unwrap();
        assert_eq!(cap.chain.as_ref().map(|c| c.next_frame()), Some(5));
        db.spool.flush().unwrap();
        let seg = dir
            .join("app.db-replica/seg")
            .join(format!("{:016x}.seg", 1));
        let (records, _) = crate::spool::scan_segment(&std::fs::read(seg).unwrap(), 1);
        assert_eq!(records.len(), 1, "the record reads back whole");
        assert_eq!(records[0].pgnos.to_vec(), vec![1, 2, 1, 3]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
