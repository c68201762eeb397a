//! The commits the commit path leaves to the capture thread: queued with only their commit
//! frame (see `wal_observer`), taken in order. The capture thread reads and verifies a batch
//! of them without the capture lock (committed frames do not change until a restart or
//! truncation, and those take the queue first) and holds the lock only to take them off
//! the queue and start their spool record (the record holds the spool's lock, so nothing else
//! lands before it; the pages are copied once the capture lock is let go). The commits of a
//! batch make one record of the latest version of each page they wrote;
//! anyone else who moves the chain or appends to the spool takes the whole queue first,
//! under the lock, through the same verification as capture at commit.

use super::capture::{capture, commit_captured, frame_header_at, record_header, seal, Mode};
use super::fallback::{capture_failed, owe_snapshot_covering};
use crate::base::io::ReadAt;
use crate::base::lock::lock;
use crate::database::{CaptureState, Database};
use crate::spool::{Appended, Integrity, RecordBatch, RecordWriter};
use crate::wal::{self, FrameChain, FrameHeader, WalHeader, WalPosition, FRAME_HEADER_SIZE};
use std::sync::atomic::Ordering;

/// Leaves the transaction ending at `commit_frame` (written as plain appends, so its
/// checksums are final) to the capture thread; whether the queue was empty (the thread may
/// need waking).
pub(super) fn queue_commit(
    db: &Database,
    cap: &mut CaptureState,
    commit_frame: u32,
    fh: FrameHeader,
) -> bool {
    cap.queued.push_back((commit_frame, fh));
    if db.capture_queued.load(Ordering::Relaxed) {
        return false;
    }
    db.capture_queued.store(true, Ordering::SeqCst);
    true
}

/// Captures every queued commit, oldest first, reading the frames through `file`: before
/// anything else moves the chain or appends to the spool, and before the log's frames can
/// be overwritten.
pub(super) fn drain_queued(db: &Database, cap: &mut CaptureState, file: &mut dyn ReadAt) {
    let mut first = None;
    while !cap.queued.is_empty() {
        let appended = capture_oldest_queued(db, cap, file);
        first = first.or(appended);
    }
    wake_for(first);
}

/// The queued commits' log is gone before they were captured (deleted after a checkpoint,
/// so they are in the database): a snapshot is owed for them.
pub(super) fn fail_queue_without_log(db: &Database, cap: &mut CaptureState) {
    if !cap.queued.is_empty() {
        let why = "the WAL went away before queued commits could be captured";
        capture_failed(db, cap, why, None);
    }
}

/// Captures the queued commits now, reading the WAL through `open_wal`: `replica_sync`
/// must not leave out a commit the capture thread has not taken yet.
pub fn take_queued_now(db: &Database, open_wal: &mut dyn FnMut() -> Option<Box<dyn ReadAt>>) {
    if !db.owned_here() || !db.capture_queued.load(Ordering::SeqCst) {
        return;
    }
    // No log left: the queue's commits cannot be read (a snapshot is owed), and must not
    // wait unaccounted for while `replica_sync` reports the spool shipped.
    match open_wal() {
        Some(mut wal) => drain_queued(db, &mut lock(&db.capture), wal.as_mut()),
        None => fail_queue_without_log(db, &mut lock(&db.capture)),
    }
}

/// Wakes the uploader for a batch whose first record is `first`: only the first pending
/// commit needs to (with commits already pending it has a deadline and comes back by itself,
/// and a wake-up per commit costs a context switch).
fn wake_for(first: Option<Appended>) {
    if first.is_some_and(|a| a.pending <= 1) {
        crate::database::wake_uploader();
    }
}

/// Captures the oldest queued commit; what its record became, `None` if there was none or
/// it failed (then the whole queue is dropped: its commits no longer continue a chain, and
/// the snapshot owed covers them).
pub(super) fn capture_oldest_queued(
    db: &Database,
    cap: &mut CaptureState,
    file: &mut dyn ReadAt,
) -> Option<Appended> {
    let (frame, fh) = cap.queued.pop_front()?;
    if cap.queued.is_empty() {
        db.capture_queued.store(false, Ordering::SeqCst);
    }
    let Some(header) = cap.header else {
        capture_failed(db, cap, "a queued commit's log was forgotten", None);
        return None;
    };
    let result = capture(db, cap, header, frame, fh, file, Mode::Strict).or_else(|why| {
        // SQLite rewrites a transaction's checksums after its commit frame when it owes a
        // rewrite (a ROLLBACK TO across a log restart, not only a frame rewritten in place):
        // the commit frame on disk, the same commit with its final checksum, is the one to
        // verify against, and its pages are final either way. As at the release of the
        // write lock, frames that still do not chain are then taken as written.
        match commit_frame_on_disk(file, &header, frame) {
            Some(now) if now.pgno == fh.pgno && now.commit_size == fh.commit_size => {
                capture(db, cap, header, frame, now, file, Mode::AfterRewrite)
                    .or_else(|_| capture(db, cap, header, frame, now, file, Mode::Lenient))
            }
            _ => Err(why),
        }
    });
    match result {
        Ok(appended) => Some(appended),
        Err(why) => {
            let pos = WalPosition::new(header.salts(), frame);
            capture_failed(db, cap, &format!("a queued commit: {why}"), Some(pos));
            None
        }
    }
}

/// The header of frame `k` of the log with `header`, if the file still holds that log.
fn commit_frame_on_disk(file: &mut dyn ReadAt, header: &WalHeader, k: u32) -> Option<FrameHeader> {
    if super::wal_file::salts_on_disk(file) != Some(header.salts()) {
        return None;
    }
    frame_header_at(file, header, k)
}

/// The most frame bytes the capture thread reads and holds for one batch.
const BATCH_BYTES: usize = 4 << 20;

/// What the capture thread reuses from batch to batch.
#[derive(Default)]
pub(super) struct Scratch {
    notes: Vec<(u32, FrameHeader)>,
    /// The chain after each verified note.
    ends: Vec<FrameChain>,
    frames: Vec<u8>,
    /// The newest frame of each page of a run (see [`latest_frames`]).
    latest: Vec<(u32, u32)>,
}

/// The capture thread's way through the queue: the frames of the commits queued now are
/// read and verified without the capture lock, then taken off the queue in one hold of it,
/// as many as are still the oldest queued while the chain still ends where it began, and
/// appended under the spool's lock alone (see [`append_batch`]). A commit that does not
/// verify goes the way of [`capture_oldest_queued`]. Wakes the uploader as [`drain_queued`]
/// does.
///
/// `file` may be a handle opened before the log was deleted and started again (the capture
/// thread keeps its handles open): unless `last_try`, a handle whose log is not the
/// queue's is left alone, and false returned for a fresh one.
pub(super) fn take_queued(
    db: &Database,
    file: &mut dyn ReadAt,
    scratch: &mut Scratch,
    last_try: bool,
) -> bool {
    match take_verified(db, file, scratch, last_try) {
        Taken::OtherLog => false,
        Taken::First(first) => {
            wake_for(first);
            true
        }
    }
}

/// What [`take_verified`] did.
enum Taken {
    /// The handle's log is not the one the queue is of; nothing was taken.
    OtherLog,
    /// What the first record appended became, if one was.
    First(Option<Appended>),
}

/// [`take_queued`]'s work.
fn take_verified(
    db: &Database,
    file: &mut dyn ReadAt,
    scratch: &mut Scratch,
    last_try: bool,
) -> Taken {
    let (header, start) = {
        let cap = lock_between_writes(db);
        scratch.notes.clear();
        scratch.notes.extend(cap.queued.iter().copied());
        match (cap.header, cap.chain.clone()) {
            (Some(h), Some(c)) => (h, c),
            _ => return Taken::First(None),
        }
    };
    let Some(&oldest) = scratch.notes.first() else {
        return Taken::First(None);
    };
    if !last_try && super::wal_file::salts_on_disk(file) != Some(header.salts()) {
        return Taken::OtherLog;
    }
    Taken::First(append_batch(db, file, scratch, (header, start), oldest))
}

/// Verifies the batch in `scratch` (of the log with `header`, from `start` on; `oldest` its
/// first commit) and appends it: the verified commits still queued are taken off the queue
/// in one hold of the capture lock, which starts their run of records under the spool's
/// lock, and their pages are copied after the capture lock is let go. What the first record
/// appended became.
fn append_batch(
    db: &Database,
    file: &mut dyn ReadAt,
    scratch: &mut Scratch,
    (header, start): (WalHeader, FrameChain),
    oldest: (u32, FrameHeader),
) -> Option<Appended> {
    let verified = read_and_verify(file, &header, &start, scratch);
    let mut first = None;
    if verified > 0 {
        let mut cap = lock_between_writes(db);
        let taken = still_queued(&cap, scratch, &header, &start, verified);
        if taken == 0 {
            return None; // taken by someone else meanwhile
        }
        let last = WalPosition::new(header.salts(), scratch.notes[taken - 1].0);
        // Taken under the capture lock: whatever anyone appends next lands after the run,
        // and the commit path need not wait for its pages to be copied.
        let batch = batch_owing(db, last);
        for _ in 0..taken {
            pop_queued(db, &mut cap);
        }
        cap.chain = Some(scratch.ends[taken - 1].clone());
        drop(cap);
        let filled = fill_run(db, batch, &header, start, scratch, taken);
        first = filled.as_ref().ok().copied();
        if let Err(why) = filled {
            // The run owed its snapshot as it failed. Owing it again here costs at most one
            // more snapshot, and covers whatever was queued on a chain restarted since (which
            // forgetting the chain drops) should one have shipped meanwhile.
            let mut cap = lock(&db.capture);
            capture_failed(db, &mut cap, &format!("a queued commit: {why}"), Some(last));
            db.spool.stop_refusing();
            return first;
        }
        if taken < verified {
            return first;
        }
    }
    // The first commit that did not verify (or did not fit in a batch) goes the slow way.
    let stuck = match scratch.notes.get(verified) {
        Some(note) => Some(*note),
        None if verified == 0 => Some(oldest),
        None => None,
    };
    if let Some(note) = stuck {
        let mut cap = lock(&db.capture);
        if cap.queued.front() == Some(&note) {
            let appended = capture_oldest_queued(db, &mut cap, file);
            first = first.or(appended);
        }
    }
    first
}

/// How many of the first `verified` notes of `scratch` are still the oldest queued, in
/// order, on the chain capture is at (`start` of the log with `header`).
fn still_queued(
    cap: &CaptureState,
    scratch: &Scratch,
    header: &WalHeader,
    start: &FrameChain,
    verified: usize,
) -> usize {
    let same_chain = cap.header.map(|h| h.salts()) == Some(header.salts())
        && cap.chain.as_ref().map(FrameChain::next_frame) == Some(start.next_frame());
    if !same_chain {
        return 0;
    }
    scratch.notes[..verified]
        .iter()
        .zip(&cap.queued)
        .take_while(|(note, queued)| note == queued)
        .count()
}

/// The spool's lock for a run of records whose commits the chain has moved past already:
/// should the run not be finished (an error, or a panic), it owes the snapshot that covers
/// `last` before it lets the lock go, and refuses the records after it until the capture
/// failure is noted.
fn batch_owing(db: &Database, last: WalPosition) -> RecordBatch<'_> {
    let mut batch = db.spool.begin_batch();
    batch.refuse_after_failure(Box::new(move || {
        let why = "a queued commit's spool record could not be written";
        owe_snapshot_covering(db, why, Some(last));
    }));
    batch
}

/// Appends the first `taken` verified commits of `scratch` (their frames follow `chain`) to
/// `batch`, and finishes it: one commit as its own record, several as one record holding
/// the latest version of each page they wrote (see [`append_coalesced`]). What the record
/// became; after an error the batch, dropped unfinished, has owed its snapshot.
fn fill_run<'s>(
    db: &'s Database,
    mut batch: RecordBatch<'s>,
    header: &WalHeader,
    chain: FrameChain,
    scratch: &mut Scratch,
    taken: usize,
) -> Result<Appended, String> {
    let frames = (chain.next_frame(), scratch.frames.as_slice());
    let appended = match &scratch.notes[..taken] {
        [note] => begin_verified(&mut batch, header, &chain, *note, frames)
            .and_then(|rec| fill_verified(db, rec, header, &chain, *note, frames)),
        notes => {
            let latest = &mut scratch.latest;
            latest_frames(header, frames, notes, latest)?;
            append_coalesced(db, &mut batch, header, notes, frames, latest)
        }
    }?;
    batch.finish();
    Ok(appended)
}

/// The newest frame of each page the commits `notes` wrote, by page number, into `latest`
/// (their frames from `batch_first` on in `frames`). A page past the last commit's size is
/// kept like any other: the uploader drops it, as it does for records shipped together (a
/// commit that shrinks the database and a later one that grows it again write every page
/// they add, so no older version of one is left to read).
fn latest_frames(
    header: &WalHeader,
    (batch_first, frames): (u32, &[u8]),
    notes: &[(u32, FrameHeader)],
    latest: &mut Vec<(u32, u32)>,
) -> Result<(), String> {
    let frame_size = FRAME_HEADER_SIZE + header.page_size as usize;
    let last = notes.last().map_or(batch_first, |n| n.0);
    latest.clear();
    for f in batch_first..=last {
        let at = (f - batch_first) as usize * frame_size;
        let h =
            FrameHeader::parse(&frames[at..][..FRAME_HEADER_SIZE]).map_err(|e| e.to_string())?;
        latest.push((h.pgno, f));
    }
    latest.sort_unstable_by_key(|&(pgno, f)| (pgno, std::cmp::Reverse(f)));
    latest.dedup_by_key(|&mut (pgno, _)| pgno);
    Ok(())
}

/// Appends the verified commits `notes` as one record: the pages of `latest` (see
/// [`latest_frames`]), ending at the last commit. Under a stream of small commits most of
/// them write the same few pages, and the uploader keeps only the latest version of a page
/// anyway: the spool's writes (and the disk's) shrink by as much. Sealed by the spool's CRC:
/// the entries are no longer the log's frames in order.
fn append_coalesced(
    db: &Database,
    batch: &mut RecordBatch<'_>,
    header: &WalHeader,
    notes: &[(u32, FrameHeader)],
    (batch_first, frames): (u32, &[u8]),
    latest: &[(u32, u32)],
) -> Result<Appended, String> {
    let frame_size = FRAME_HEADER_SIZE + header.page_size as usize;
    let &(last_frame, last_fh) = notes.last().ok_or("a run without a commit")?;
    let record = record_header(header, last_frame, &last_fh, Integrity::Crc);
    let mut rec = batch
        .begin_record(record, latest.len() as u32)
        .map_err(|e| e.to_string())?;
    for &(pgno, f) in latest {
        let at = (f - batch_first) as usize * frame_size + FRAME_HEADER_SIZE;
        rec.push(pgno, &frames[at..at + header.page_size as usize])
            .map_err(|e| e.to_string())?;
    }
    commit_captured(db, rec, notes.len() as u32)
}

/// The capture lock, taken (when it can be within a few microseconds) while no connection
/// of this process is writing the log: the committing thread takes the lock in each of its
/// log writes, and finding it held there costs it a wait.
fn lock_between_writes(db: &Database) -> std::sync::MutexGuard<'_, CaptureState> {
    for _ in 0..GAP_SPINS {
        if db.wal_writes_in_flight.load(Ordering::Relaxed) == 0 {
            break;
        }
        std::hint::spin_loop();
    }
    lock(&db.capture)
}

/// How long the capture thread looks for a moment between two log writes (a few µs).
const GAP_SPINS: u32 = 256;

/// Reads the frames of `scratch.notes` (from `start` on) into `scratch.frames` in one read
/// and verifies them; how many notes verified, with the chain after each in `scratch.ends`.
fn read_and_verify(
    file: &mut dyn ReadAt,
    header: &WalHeader,
    start: &FrameChain,
    scratch: &mut Scratch,
) -> usize {
    scratch.ends.clear();
    let first = start.next_frame();
    let Some(&(last_frame, _)) = scratch.notes.last() else {
        return 0;
    };
    if last_frame < first {
        return 0;
    }
    let frame_size = FRAME_HEADER_SIZE + header.page_size as usize;
    // The notes whose frames fit in one batch (a larger first transaction is captured
    // under the lock, frame by frame).
    let fits = |f: u32| (f - first + 1) as usize * frame_size <= BATCH_BYTES;
    let batch = scratch.notes.iter().take_while(|(f, _)| fits(*f)).count();
    scratch.notes.truncate(batch);
    let Some(&(last_frame, _)) = scratch.notes.last() else {
        return 0;
    };
    if scratch.frames.capacity() > BATCH_BYTES {
        scratch.frames = Vec::new();
    }
    // Zeroed only where it grows: each batch reads over the part it needs.
    let need = (last_frame - first + 1) as usize * frame_size;
    if scratch.frames.len() < need {
        scratch.frames.resize(need, 0);
    }
    let off = wal::frame_offset(header.page_size, first);
    if !matches!(file.read_at(off, &mut scratch.frames[..need]), Ok(n) if n == need) {
        return 0;
    }
    let mut trial = start.clone();
    for &(commit_frame, fh) in &scratch.notes {
        while trial.next_frame() <= commit_frame {
            let i = (trial.next_frame() - first) as usize * frame_size;
            let (h, page) = scratch.frames[i..i + frame_size].split_at(FRAME_HEADER_SIZE);
            if !matches!(trial.accept(h, page), Ok(Some(_))) {
                return scratch.ends.len();
            }
        }
        if trial.checksum() != fh.checksum() {
            return scratch.ends.len();
        }
        scratch.ends.push(trial.clone());
    }
    scratch.ends.len()
}

/// Starts the spool record of the verified commit `note`, whose frames follow `chain`, from
/// `frames` (the frames read from frame `batch_first` on), as the next of `batch`;
/// [`fill_verified`] completes it.
fn begin_verified<'b>(
    batch: &'b mut RecordBatch<'_>,
    header: &WalHeader,
    chain: &FrameChain,
    (commit_frame, fh): (u32, FrameHeader),
    (batch_first, frames): (u32, &[u8]),
) -> Result<RecordWriter<'b>, String> {
    let frame_size = FRAME_HEADER_SIZE + header.page_size as usize;
    let first = chain.next_frame();
    let at = |f: u32| (f - batch_first) as usize * frame_size;
    let one_transaction = (first..commit_frame).all(|f| {
        FrameHeader::parse(&frames[at(f)..][..FRAME_HEADER_SIZE]).is_ok_and(|h| !h.is_commit())
    });
    let integrity = seal(header, chain.checksum(), Mode::Strict, one_transaction);
    let record = record_header(header, commit_frame, &fh, integrity);
    batch
        .begin_record(record, commit_frame - first + 1)
        .map_err(|e| e.to_string())
}

/// Copies the pages of `note` into the record [`begin_verified`] started and commits it (a
/// record that is not committed takes itself back out; its batch owes the snapshot).
fn fill_verified(
    db: &Database,
    mut rec: RecordWriter<'_>,
    header: &WalHeader,
    chain: &FrameChain,
    (commit_frame, _): (u32, FrameHeader),
    (batch_first, frames): (u32, &[u8]),
) -> Result<Appended, String> {
    let frame_size = FRAME_HEADER_SIZE + header.page_size as usize;
    for f in chain.next_frame()..=commit_frame {
        let i = (f - batch_first) as usize * frame_size;
        let (h, page) = frames[i..i + frame_size].split_at(FRAME_HEADER_SIZE);
        let pgno = FrameHeader::parse(h).map_err(|e| e.to_string())?.pgno;
        rec.push(pgno, page).map_err(|e| e.to_string())?;
    }
    commit_captured(db, rec, 1)
}

fn pop_queued(db: &Database, cap: &mut CaptureState) {
    cap.queued.pop_front();
    if cap.queued.is_empty() {
        db.capture_queued.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::base::testing::InMemory as Log;

    /// A log of `txns` transactions of `pages` frames each, and the queue notes of their
    /// commit frames.
    fn log(txns: u32, pages: u32) -> (WalHeader, Log, Vec<(u32, FrameHeader)>) {
        log_with_salts((0x5eed_0001, 0x5eed_0002), txns, pages)
    }

    fn log_with_salts(
        salts: (u32, u32),
        txns: u32,
        pages: u32,
    ) -> (WalHeader, Log, Vec<(u32, FrameHeader)>) {
        let header = WalHeader::new(false, 512, 3, salts.0, salts.1);
        let mut bytes = header.to_bytes().to_vec();
        let mut chain = FrameChain::new(&header);
        let mut notes = Vec::new();
        for t in 0..txns {
            for p in 1..=pages {
                let commit = if p == pages { pages } else { 0 };
                let page = vec![(t * 7 + p) as u8; 512];
                let fh = chain.seal(p, commit, &page).unwrap();
                bytes.extend_from_slice(&fh.to_bytes());
                bytes.extend_from_slice(&page);
                if commit != 0 {
                    notes.push((chain.next_frame() - 1, fh));
                }
            }
        }
        (header, Log(bytes), notes)
    }

    fn verified(header: &WalHeader, file: &mut Log, notes: &[(u32, FrameHeader)]) -> usize {
        let mut scratch = Scratch {
            notes: notes.to_vec(),
            ..Default::default()
        };
        read_and_verify(file, header, &FrameChain::new(header), &mut scratch)
    }

    #[test]
    fn every_queued_commit_of_an_intact_log_verifies_in_one_read() {
        let (header, mut file, notes) = log(4, 3);
        let mut scratch = Scratch {
            notes: notes.clone(),
            ..Default::default()
        };
        let start = FrameChain::new(&header);
        assert_eq!(read_and_verify(&mut file, &header, &start, &mut scratch), 4);
        // The chain after each note ends at its commit frame, with its checksum.
        for (end, (frame, fh)) in scratch.ends.iter().zip(&notes) {
            assert_eq!(end.next_frame(), frame + 1);
            assert_eq!(end.checksum(), fh.checksum());
        }
    }

    #[test]
    fn verification_stops_at_the_first_commit_whose_frames_changed() {
        let (header, mut file, notes) = log(4, 3);
        // A byte of the second transaction's second page (frame 5).
        let off = wal::frame_offset(header.page_size, 5) as usize + FRAME_HEADER_SIZE + 9;
        file.0[off] ^= 0x40;
        assert_eq!(verified(&header, &mut file, &notes), 1);
    }

    #[test]
    fn a_note_whose_commit_frame_was_rewritten_does_not_verify() {
        let (header, mut file, mut notes) = log(3, 2);
        // The queue says another checksum than the log holds for the last commit.
        notes[2].1.cksum1 ^= 1;
        assert_eq!(verified(&header, &mut file, &notes), 2);
    }

    #[test]
    fn a_log_shorter_than_the_queue_verifies_nothing() {
        let (header, mut file, notes) = log(3, 2);
        let keep = wal::frame_offset(header.page_size, 5) as usize;
        file.0.truncate(keep);
        assert_eq!(verified(&header, &mut file, &notes), 0);
    }

    #[test]
    fn a_log_restarted_with_other_salts_verifies_nothing() {
        let (header, _, notes) = log(2, 2);
        // Another log of the same shape now fills the file.
        let (_, mut restarted, _) = log_with_salts((0x5eed_0002, 0x0bad_0003), 2, 2);
        assert_eq!(verified(&header, &mut restarted, &notes), 0);
    }

    #[test]
    fn only_the_commits_that_fit_in_a_batch_are_read() {
        // Two transactions of 5000 frames of 536 bytes: the first fits in 4 MiB, both do not.
        let (header, mut file, notes) = log(2, 5000);
        let mut scratch = Scratch {
            notes,
            ..Default::default()
        };
        let start = FrameChain::new(&header);
        assert_eq!(read_and_verify(&mut file, &header, &start, &mut scratch), 1);
        assert_eq!(scratch.notes.len(), 1);
        // A first transaction larger than a batch is left to the slow way.
        let (header, mut file, notes) = log(1, 9000);
        assert_eq!(verified(&header, &mut file, &notes), 0);
    }

    /// A database whose spool holds at most `cap` bytes, in a fresh directory named after
    /// `name`, and a log of three verified commits of two 512-byte pages each: the queue
    /// notes in `scratch`, their frames read, and the chain before them.
    struct RunFixture {
        dir: std::path::PathBuf,
        db: Database,
        header: WalHeader,
        start: FrameChain,
        scratch: Scratch,
    }

    fn run_fixture(name: &str, cap: u64) -> RunFixture {
        let dir = crate::base::testing::fresh_dir(&format!("queue-{name}"));
        let cfg = crate::config::ReplicaConfig::in_dir_for_tests(dir.join("replica"));
        let db = Database::open(&dir.join("app.db"), vec![cfg], cap).unwrap();
        let (header, mut file, notes) = log(3, 2);
        let start = FrameChain::new(&header);
        let mut scratch = Scratch {
            notes,
            ..Default::default()
        };
        assert_eq!(read_and_verify(&mut file, &header, &start, &mut scratch), 3);
        RunFixture {
            dir,
            db,
            header,
            start,
            scratch,
        }
    }

    /// The capture thread copies a run of commits' pages after it let go of the capture
    /// lock, the chain already past the whole run: a record that fails then must owe the
    /// snapshot that covers the run's last commit before anyone can read the spool as
    /// complete, and no record may land after the missing one until the failure is noted.
    #[test]
    fn a_run_that_fails_after_the_chain_moved_owes_its_snapshot_at_once() {
        // No room for the run's record (two 512-byte pages: 1104 bytes).
        let mut f = run_fixture("fail", 1000);
        let (db, header, start) = (&f.db, &f.header, &f.start);
        let requests = db.progress().snapshot_request;
        let notes = f.scratch.notes.clone();
        let last = WalPosition::new(header.salts(), notes[2].0);
        let batch = batch_owing(db, last);
        let run = fill_run(db, batch, header, start.clone(), &mut f.scratch, 3);
        assert!(run.is_err(), "the record does not fit");
        assert!(db.spool.pending().is_empty());
        assert!(db.spool.gap_of(0).is_some(), "the gap is on disk");
        assert!(db.progress().snapshot_request > requests);
        let must_cover = db.progress().snapshot_must_cover.map(|(p, _)| p);
        assert_eq!(must_cover, Some(last), "the snapshot covers the whole run");
        let frames = (start.next_frame(), f.scratch.frames.as_slice());
        let refused = |db: &Database| {
            let mut batch = db.spool.begin_batch();
            let begun = begin_verified(&mut batch, header, start, notes[0], frames);
            begun
                .err()
                .is_some_and(|e| e.contains("record before this one failed"))
        };
        assert!(refused(db));
        db.spool.stop_refusing();
        assert!(!refused(db));
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    /// A run of commits goes in as one record of the latest version of each page, ending
    /// at the last commit and counted as its three transactions; it owes nothing. It reads
    /// back after a reopen (then counted as one).
    #[test]
    fn a_run_goes_in_as_one_record_of_its_latest_pages() {
        let mut f = run_fixture("run", 1 << 30);
        let (db, header) = (&f.db, &f.header);
        let requests = db.progress().snapshot_request;
        let last = WalPosition::new(header.salts(), f.scratch.notes[2].0);
        let start = f.start.clone();
        let run = fill_run(db, batch_owing(db, last), header, start, &mut f.scratch, 3);
        assert_eq!(run.map(|a| a.pending), Ok(1));
        let pending = db.spool.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].end, pending[0].pgnos.to_vec()),
            (last, vec![1, 2])
        );
        let mut page = Vec::new();
        for (i, fill) in [(0, 2 * 7 + 1), (1, 2 * 7 + 2)] {
            db.spool.read_page(&pending[0], i, &mut page).unwrap();
            assert_eq!(
                page,
                vec![fill as u8; 512],
                "the third commit's page {}",
                i + 1
            );
        }
        assert_eq!(db.spool.pending_summary().map(|p| p.0), Some(3));
        assert_eq!(db.captured_txns.load(Ordering::Relaxed), 3);
        assert_eq!(db.progress().snapshot_request, requests);
        assert!(db.spool.gap_of(0).is_none());
        db.spool.flush().unwrap();
        let spool_dir = f.dir.join("app.db-replica");
        drop(f.db);
        let (spool, recovery) = crate::spool::Spool::open(&spool_dir, 1 << 30).unwrap();
        assert_eq!(recovery.records, 1);
        assert_eq!(spool.pending()[0].end, last);
        assert_eq!(spool.pending_summary().map(|p| p.0), Some(1));
        drop(spool);
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    /// The newest frame of each page, whatever order the commits wrote them in.
    #[test]
    fn a_run_keeps_the_newest_frame_of_each_page() {
        let header = WalHeader::new(false, 512, 3, 1, 2);
        let mut chain = FrameChain::new(&header);
        let mut bytes = Vec::new();
        let mut notes = Vec::new();
        for txn in [&[5u32, 1][..], &[1], &[3, 5, 2], &[1]] {
            for (k, &pgno) in txn.iter().enumerate() {
                let commit = if k + 1 == txn.len() { 9 } else { 0 };
                let fh = chain.seal(pgno, commit, &[pgno as u8; 512]).unwrap();
                bytes.extend_from_slice(&fh.to_bytes());
                bytes.extend_from_slice(&[pgno as u8; 512]);
                if commit != 0 {
                    notes.push((chain.next_frame() - 1, fh));
                }
            }
        }
        let mut latest = Vec::new();
        latest_frames(&header, (1, &bytes), &notes, &mut latest).unwrap();
        assert_eq!(latest, [(1, 7), (2, 6), (3, 4), (5, 5)]);
        // The first two commits alone.
        latest_frames(&header, (1, &bytes), &notes[..2], &mut latest).unwrap();
        assert_eq!(latest, [(1, 3), (5, 1)]);
    }

    /// Writes one spool record of frames 1..=`commit_frame` of `file` sealed with
    /// `integrity`, reopens the spool and says how many records recovery kept.
    fn records_after_reopen(
        header: &WalHeader,
        file: &Log,
        (commit_frame, fh): (u32, FrameHeader),
        integrity: crate::spool::Integrity,
    ) -> usize {
        let dir = std::env::temp_dir().join(format!(
            "replica-queue-seal-{}-{:?}",
            std::process::id(),
            integrity
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (spool, _) = crate::spool::Spool::open(&dir, 1 << 30).unwrap();
        let frame_size = FRAME_HEADER_SIZE + header.page_size as usize;
        let frames = &file.0[wal::WAL_HEADER_SIZE..];
        let header_record = record_header(header, commit_frame, &fh, integrity);
        let mut rec = spool.begin_record(header_record, commit_frame).unwrap();
        for f in 1..=commit_frame {
            let (h, page) =
                frames[(f - 1) as usize * frame_size..][..frame_size].split_at(FRAME_HEADER_SIZE);
            rec.push(FrameHeader::parse(h).unwrap().pgno, page).unwrap();
        }
        rec.commit().unwrap();
        spool.flush().unwrap();
        drop(spool);
        let (_, recovery) = crate::spool::Spool::open(&dir, 1 << 30).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        recovery.records
    }

    /// A queued commit captured while another process's commits before it were not taken
    /// yet: its record holds both transactions. Recovery recomputes the WAL chain with no
    /// commit size but the last, so sealed by the chain the record read back as torn (and
    /// every record after it with it); it is sealed with the spool's CRC instead.
    #[test]
    fn a_record_holding_another_transaction_is_sealed_so_that_it_reads_back() {
        let (header, file, notes) = log(2, 2);
        let frame_size = FRAME_HEADER_SIZE + header.page_size as usize;
        let frames = &file.0[wal::WAL_HEADER_SIZE..];
        let (commit_frame, _) = notes[1];
        let one_transaction = |last: u32| {
            (1..last).all(|f| {
                FrameHeader::parse(&frames[(f - 1) as usize * frame_size..][..FRAME_HEADER_SIZE])
                    .is_ok_and(|h| !h.is_commit())
            })
        };
        assert!(!one_transaction(commit_frame) && one_transaction(notes[0].0));
        let start = FrameChain::new(&header).checksum();
        let both = seal(&header, start, Mode::Strict, false);
        assert_eq!(both, crate::spool::Integrity::Crc);
        assert_eq!(records_after_reopen(&header, &file, notes[1], both), 1);
        let by_chain = crate::spool::Integrity::WalChain {
            start,
            big_endian: header.big_endian_checksums(),
        };
        assert_eq!(
            records_after_reopen(&header, &file, notes[1], by_chain),
            0,
            "what recovery made of such a record before"
        );
        // One transaction alone is sealed by the chain, and reads back.
        let one = seal(&header, start, Mode::Strict, true);
        assert_eq!(one, by_chain);
        assert_eq!(records_after_reopen(&header, &file, notes[0], one), 1);
        assert_eq!(
            seal(&header, start, Mode::Lenient, true),
            crate::spool::Integrity::Crc
        );
    }
}
