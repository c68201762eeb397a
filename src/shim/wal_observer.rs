//! `WalObserver`: the reactions to the writes and truncations of one open `-wal` file of a
//! database this process replicates. It tracks the log (a new header starts a new chain;
//! truncation and deletion forget it), notices when a write completes a commit frame and
//! has capture take that transaction, and settles what depends on old frames before a new
//! header or a truncation removes them. It runs on the commit path: no allocation, and
//! never a failed write.

use super::capture::{abandon_deferred, capture, resolve_deferred, Mode};
use super::capture_thread;
use super::catch_up::{catch_up_or_fall_back, holds_more_commits, take_foreign_commits};
use super::fallback::{flush_spool, flush_spool_for_restart, owe_snapshot};
use super::no_log::{check_unchanged_since_log_gone, note_log_gone, LEFT_IN_A_DELETED_LOG};
use super::queue::{drain_queued, fail_queue_without_log, queue_commit};
use super::wal_file::{db_path_of, restarting_the_log, salts_on_disk};
use crate::base::io::ReadAt;
use crate::base::lock::lock;
use crate::database::{self, CaptureState, Database};
use crate::spool::{Appended, FileStamp};
use crate::wal::{self, FrameChain, FrameHeader, WalHeader, FRAME_HEADER_SIZE, WAL_HEADER_SIZE};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// How many times a write tries for the capture lock before it sleeps on it (tens of µs
/// at most: longer than the capture thread usually holds it, shorter than a sleep and a
/// wake-up of the committing thread; it holds it longer only when the spool starts a
/// segment or waits for its writer thread).
const COMMIT_PATH_SPINS: u32 = 1000;

/// Watches one open `-wal` file of a replicated database.
pub struct WalObserver {
    db: Arc<Database>,
}

/// The WAL of a database is being opened by a connection of this process.
pub fn on_open_wal(wal_path: &str, file: &mut dyn ReadAt) -> Option<WalObserver> {
    let db = database::get(&db_path_of(wal_path)?).filter(|db| db.owned_here())?;
    {
        let mut cap = lock(&db.capture);
        if !cap.caught_up {
            cap.caught_up = true;
            catch_up_or_fall_back(&db, &mut cap, file, "reading the WAL at open");
        }
    }
    Some(WalObserver { db })
}

impl WalObserver {
    /// A write to the WAL starts (before [`Self::before_write`]); [`Self::write_ended`]
    /// follows once the write and its capture are done, whatever the outcome.
    pub fn write_starting(&self) {
        self.db.wal_writes_in_flight.fetch_add(1, Ordering::SeqCst);
    }

    pub fn write_ended(&self) {
        self.db.wal_writes_in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// A write to the WAL is about to happen. Before a new log header (a restart) replaces
    /// the old one, whatever still depends on the old frames is settled and on disk.
    pub fn before_write(&self, offset: u64, data: &[u8], file: &mut dyn ReadAt) {
        let db = &self.db;
        if offset != 0 || data.len() < WAL_HEADER_SIZE || !db.owned_here() {
            return;
        }
        let started = Instant::now();
        restarting_the_log(|| self.settle_before_restart(data, file));
        note_restart_wait(db, started);
    }

    fn settle_before_restart(&self, data: &[u8], file: &mut dyn ReadAt) {
        let db = &self.db;
        let mut cap = lock(&db.capture);
        drain_queued(db, &mut cap, file);
        resolve_deferred(db, &mut cap, file);
        // The old log is still intact here (unless another process truncated it).
        take_foreign_commits(db, &mut cap, file);
        // No log to restart (none known, or a hand-off just said it went away): a new one.
        let after_none = cap.header.is_none() && salts_on_disk(file).is_none();
        drop(cap);
        if after_none {
            check_unchanged_since_log_gone(db);
        }
        // The generation says everything before the new log is on disk.
        match WalHeader::parse(&data[..WAL_HEADER_SIZE]) {
            Ok(h) => flush_spool_for_restart(db, h.salts()),
            Err(_) => flush_spool(db),
        };
    }

    /// The WAL is about to be truncated: below a header's size, its frames go away.
    pub fn before_truncate(&self, size: u64, file: &mut dyn ReadAt) {
        let db = &self.db;
        if size >= WAL_HEADER_SIZE as u64 || !db.owned_here() {
            return;
        }
        let started = Instant::now();
        let mut cap = lock(&db.capture);
        drain_queued(db, &mut cap, file);
        resolve_deferred(db, &mut cap, file);
        // What other processes committed goes with the frames (the checkpoint before a
        // truncation copied it into the database).
        take_foreign_commits(db, &mut cap, file);
        drop(cap);
        flush_spool(db);
        note_restart_wait(db, started);
    }

    /// A write to the WAL succeeded.
    pub fn after_write(&self, offset: u64, data: &[u8], file: &mut dyn ReadAt) {
        let db = &self.db;
        // Before any lock: a forked child must not wait on a mutex that a thread of its
        // parent held at the fork, and its copy of this state has no effect outside it.
        if !db.owned_here() {
            return; // a forked child: see Database::owned_here
        }
        // The capture thread holds this lock to take a commit off the queue and start its
        // record, and copies the pages under the spool's lock alone: wait without sleeping.
        let mut cap = crate::base::lock::lock_spinning(&db.capture, COMMIT_PATH_SPINS);
        if offset == 0 {
            if data.len() >= WAL_HEADER_SIZE {
                start_log(&mut cap, data);
            }
            return;
        }
        if cap.header.is_none() && offset >= WAL_HEADER_SIZE as u64 {
            // Another process started this log (after ours was deleted or truncated):
            // read its header and see whether it continues what the spool holds.
            // Frames from this write on are this connection's own, for its capture to take.
            let upto = super::wal_file::header_on_disk(file)
                .ok()
                .flatten()
                .map_or(u32::MAX, |h| {
                    frame_at(offset, h.page_size).saturating_sub(1)
                });
            let doing = "reading a WAL another process started";
            super::catch_up::meet_unseen_log(db, &mut cap, file, upto, doing);
        }
        if offset < WAL_HEADER_SIZE as u64 {
            return;
        }
        follow_unseen_restart(db, &mut cap, offset, data, file);
        let Some(header) = cap.header else { return };
        let Some((commit_frame, fh, mode)) =
            completed_commit(db, &mut cap, header, offset, data, file)
        else {
            return;
        };
        if queueable(&cap, mode) {
            let nudge = queue_commit(db, &mut cap, commit_frame, fh);
            drop(cap);
            // Committed, its position recorded, its frames not yet spooled.
            crate::fault::point("capture.queued");
            if nudge {
                capture_thread::notify();
            }
            return;
        }
        drain_queued(db, &mut cap, file);
        let Some(appended) = capture_or_defer(db, &mut cap, header, commit_frame, fh, file, mode)
        else {
            return;
        };
        drop(cap);
        // Only the first pending commit needs to wake the uploader: with commits already
        // pending it has a deadline and comes back by itself (a wake-up per commit costs a
        // context switch on the commit path).
        if appended.pending <= 1 {
            database::wake_uploader();
        }
    }

    pub fn after_truncate(&self, size: u64) {
        if size < WAL_HEADER_SIZE as u64 && self.db.owned_here() {
            forget_wal(&self.db);
        }
    }
}

/// Whether a completed commit can be left to the capture thread: its frames were plain
/// appends (so their checksums are final and nothing will rewrite them before a restart),
/// it continues a known chain, and no earlier commit waits to be settled on this thread.
fn queueable(cap: &CaptureState, mode: Mode) -> bool {
    mode == Mode::Strict
        && !cap.rewrote_in_place
        && cap.deferred_commit.is_none()
        && cap.chain.is_some()
        && super::capture_thread::room_for_more(cap)
}

/// Counts how long SQLite's restart or truncation of the log waited for the spool.
fn note_restart_wait(db: &Database, started: Instant) {
    let us = started.elapsed().as_micros() as u64;
    db.capture_counters().restart_waits.record(us);
}

/// A frame header written with other salts than the log capture follows: a connection this
/// VFS does not see (one opened before the load, or another process) restarted the log and
/// committed into it. Meet the new log up to the frame being written: it continues the spool
/// when a hooked commit vouches for it (see `super::vouch`), otherwise a snapshot is owed
/// when it cannot be placed.
fn follow_unseen_restart(
    db: &Database,
    cap: &mut CaptureState,
    offset: u64,
    data: &[u8],
    file: &mut dyn ReadAt,
) {
    let Some(known) = cap.header else { return };
    let frame_size = FRAME_HEADER_SIZE as u64 + known.page_size as u64;
    let rel = offset - WAL_HEADER_SIZE as u64;
    if !rel.is_multiple_of(frame_size) || data.len() < FRAME_HEADER_SIZE {
        return;
    }
    let Ok(fh) = FrameHeader::parse(&data[..FRAME_HEADER_SIZE]) else {
        return;
    };
    if fh.salts() == (0, 0) || fh.salts() == known.salts() {
        return;
    }
    let Ok(Some(new)) = super::wal_file::header_on_disk(file) else {
        return;
    };
    if new.salts() != fh.salts() {
        return;
    }
    // The queued commits are of the old log, whose frames the new one is overwriting.
    drain_queued(db, cap, file);
    let frame = frame_at(offset, known.page_size);
    super::catch_up::meet_unseen_log(db, cap, file, frame - 1, "reading a log restarted unseen");
}

/// The frame a write at `offset` (past the log header) falls in.
fn frame_at(offset: u64, page_size: u32) -> u32 {
    let frame_size = FRAME_HEADER_SIZE as u64 + page_size as u64;
    ((offset - WAL_HEADER_SIZE as u64) / frame_size) as u32 + 1
}

/// A new log generation: frames start again at 1 with new salts, overwriting the old ones,
/// so the spool must hold its records on disk from now on. (`before_write` settled the old
/// log while its frames were intact.)
fn start_log(cap: &mut CaptureState, data: &[u8]) {
    let parsed = WalHeader::parse(&data[..WAL_HEADER_SIZE]).ok();
    cap.header = parsed;
    cap.chain = parsed.map(|h| FrameChain::new(&h));
    cap.log_complete = None; // this process started the log: nothing to vouch for
    cap.pending_commit = None;
    cap.deferred_commit = None;
    cap.rewrote_in_place = false;
    cap.last_header_frame = None;
}

/// Follows a write of `data` at `offset` (past the log header) through the frames of the
/// transaction being written: the commit frame and how strictly to capture it, once this
/// write completes a commit.
fn completed_commit(
    db: &Database,
    cap: &mut CaptureState,
    header: WalHeader,
    offset: u64,
    data: &[u8],
    file: &mut dyn ReadAt,
) -> Option<(u32, FrameHeader, Mode)> {
    let frame_size = FRAME_HEADER_SIZE as u64 + header.page_size as u64;
    let rel = offset - WAL_HEADER_SIZE as u64;
    let frame = (rel / frame_size) as u32 + 1;
    let within = rel % frame_size;
    let mut ready: Option<(u32, FrameHeader)> = None;
    let mut rewritten = false;
    if within == 0 && cap.deferred_commit.is_some_and(|k| frame > k) {
        // A later transaction is writing: SQLite is done with the deferred one.
        resolve_deferred(db, cap, file);
    }
    if within == 0 && data.len() >= FRAME_HEADER_SIZE {
        if let Ok(fh) = FrameHeader::parse(&data[..FRAME_HEADER_SIZE]) {
            if data.len() == FRAME_HEADER_SIZE && cap.deferred_commit == Some(frame) {
                // The last checksum rewrite of a transaction that rewrote frames in place.
                cap.deferred_commit = None;
                rewritten = true;
                ready = Some((frame, fh));
            } else if fh.is_commit() {
                // Salts and checksums may still be zero here (after an in-place rewrite
                // SQLite fills them in at the end); capture verifies the final frames.
                cap.pending_commit = Some((frame, fh));
            } else if cap.pending_commit.map(|(f, _)| f) == Some(frame) {
                cap.pending_commit = None;
            }
        }
        cap.last_header_frame = Some(frame);
    } else {
        if within == FRAME_HEADER_SIZE as u64 && cap.last_header_frame != Some(frame) {
            cap.rewrote_in_place = true;
        }
        cap.last_header_frame = None;
    }
    if ready.is_none() {
        if let Some((commit_frame, fh)) = cap.pending_commit {
            let end = offset + data.len() as u64;
            if end == wal::frame_offset(header.page_size, commit_frame) + frame_size {
                cap.pending_commit = None;
                ready = Some((commit_frame, fh));
            }
        }
    }
    let (commit_frame, fh) = ready?;
    let mode = if rewritten {
        Mode::AfterRewrite
    } else {
        Mode::Strict
    };
    Some((commit_frame, fh, mode))
}

/// Captures the transaction ending at `commit_frame`, or defers it while its frames do not
/// verify yet; says what the record became, if it was captured.
fn capture_or_defer(
    db: &Database,
    cap: &mut CaptureState,
    header: WalHeader,
    commit_frame: u32,
    fh: FrameHeader,
    file: &mut dyn ReadAt,
    mode: Mode,
) -> Option<Appended> {
    match capture(db, cap, header, commit_frame, fh, file, mode) {
        Ok(appended) => {
            cap.rewrote_in_place = false;
            cap.deferred_commit = None;
            Some(appended)
        }
        Err(_) => {
            // Checksums can be stale until SQLite rewrites them at the end of the
            // transaction (after an in-place rewrite, or a ROLLBACK TO across a WAL
            // restart), and SQLite 3.40 sometimes never does. Wait for the rewrite; at
            // the latest, the release of the write lock settles it (`resolve_deferred`).
            cap.deferred_commit = Some(commit_frame);
            db.capture_deferred.store(true, Ordering::SeqCst);
            cap.rewrote_in_place = false;
            None
        }
    }
}

/// The log is gone (truncated or deleted): the next writer starts a new one with a header.
/// When capture followed it to its end, the database file's stamp now says whether anyone
/// writes it before that (`super::no_log`).
fn forget_wal(db: &Database) {
    flush_spool(db);
    let mut cap = lock(&db.capture);
    abandon_deferred(
        db,
        &mut cap,
        "the WAL went away before a commit could be captured",
    );
    let followed = cap.header.take().is_some();
    cap.chain = None;
    cap.pending_commit = None;
    cap.deferred_commit = None;
    cap.rewrote_in_place = false;
    cap.last_header_frame = None;
    // Under the lock, with the log let go: the poll must not find no log followed and no
    // stamp for it.
    if followed {
        note_log_gone(db, FileStamp::of(&db.path));
    }
}

/// Takes the queued commits while the log is still there (SQLite deletes it once a
/// checkpoint has copied all of it into the database, and its WAL index first); any other
/// commit it holds past them is owed as a snapshot (see [`holds_more_commits`]).
fn take_rest_before_delete(db: &Database) {
    let mut wal = capture_thread::open_wal_of(&db.path);
    let mut cap = lock(&db.capture);
    match wal.as_mut() {
        Some(w) => {
            drain_queued(db, &mut cap, w.as_mut());
            if holds_more_commits(db, &cap, w.as_mut()) {
                owe_snapshot(db, LEFT_IN_A_DELETED_LOG);
            }
        }
        None => fail_queue_without_log(db, &mut cap),
    }
}

/// A file is about to be deleted; a deleted WAL means the next writer starts a new log.
pub fn before_delete(path: &str) {
    let Some(db) = db_path_of(path).and_then(|p| database::get(&p)) else {
        return;
    };
    if db.owned_here() {
        take_rest_before_delete(&db);
        forget_wal(&db);
    }
}
