//! How the shim falls back when it cannot capture a commit: the gap is remembered in the
//! spool (across a crash) and a snapshot is requested, which restores continuity by itself.
//! It must never fail the application's write: every problem here ends as a status error or
//! a log line.

use crate::base::clock::now_ms;
use crate::database::{CaptureState, Database};
use crate::spool::FileStamp;
use crate::wal::WalPosition;

/// Writes out the spool's in-memory records before the WAL frames they came from go away;
/// whether they are on disk.
pub(super) fn flush_spool(db: &Database) -> bool {
    spool_written(db, db.spool.flush())
}

/// Before SQLite restarts the log with `salts`: the spool's records go to disk and then the
/// new log's generation is recorded, both by the spool's writer thread when it can (the
/// restart does not wait for the disk); whether nothing failed so far.
pub(super) fn flush_spool_for_restart(db: &Database, salts: (u32, u32)) -> bool {
    spool_written(db, db.spool.flush_then_set_generation(salts))
}

fn spool_written(db: &Database, result: Result<(), crate::spool::SpoolError>) -> bool {
    match result {
        Ok(()) => true,
        Err(e) => {
            // Without them on disk a crash would leave a gap: fall back to a snapshot, and
            // remember that across a crash.
            owe_snapshot(db, &format!("writing the spool failed: {e}"));
            crate::base::log::error(&format!("{}: {e}", db.name));
            false
        }
    }
}

/// A gap only a snapshot can close, remembered across a crash.
pub(super) fn owe_snapshot(db: &Database, why: &str) {
    owe_snapshot_of(db, why, None);
}

/// [`owe_snapshot`], because the database file changed to carry `file`.
pub(super) fn owe_snapshot_of(db: &Database, why: &str, file: Option<FileStamp>) {
    if let Err(e) = db.spool.mark_gap(why) {
        crate::base::log::error(&format!("{}: {e}", db.name));
    }
    db.request_snapshot_of(why, file);
}

/// A commit (at `commit`, when known) could not be captured: the checksum chain it broke is
/// forgotten, and a snapshot that covers the commit is owed.
pub(super) fn capture_failed(
    db: &Database,
    cap: &mut CaptureState,
    why: &str,
    commit: Option<WalPosition>,
) {
    owe_snapshot_covering(db, why, commit);
    cap.chain = None;
    // Queued commits no longer continue a chain; the snapshot owed covers them.
    cap.queued.clear();
    db.capture_queued
        .store(false, std::sync::atomic::Ordering::SeqCst);
    db.capture_counters().capture_errors += 1;
    // Not an error for the user: the snapshot restores continuity by itself. (SQLite 3.40
    // itself leaves a broken checksum chain after ROLLBACK TO inside a spilled transaction.)
    crate::base::log::notice(&format!(
        "{}: capture: {why}; a snapshot will be shipped",
        db.name
    ));
}

/// A commit (at `commit`, when known) is missing from the spool: a snapshot that covers it
/// is owed, remembered across a crash. Needs no capture lock: the capture thread calls it
/// while the record that failed still holds the spool's lock, so that nothing reads the
/// spool as complete before it is said.
pub(super) fn owe_snapshot_covering(db: &Database, why: &str, commit: Option<WalPosition>) {
    if let Err(e) = db.spool.mark_gap(why) {
        crate::base::log::error(&format!("{}: {e}", db.name));
    }
    match commit {
        Some(pos) => db.request_snapshot_covering(why, pos, now_ms()),
        None => db.request_snapshot(why),
    }
}
