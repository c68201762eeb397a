//! A database without a log. Capture follows the log; once it is gone (checkpointed, then
//! deleted or truncated), a process without the extension can write the database and close,
//! and its log is gone too before this process looks again: nothing is left to catch up
//! from but a changed file. So when the log capture followed goes away with every commit of
//! it in the spool, the database file's stamp is kept in the spool, and the next log started
//! after none continues the spool only while the file still carries it; otherwise a
//! snapshot is owed.

use super::fallback::{owe_snapshot, owe_snapshot_of};
use crate::database::{CaptureState, Database, Progress};
use crate::spool::FileStamp;
use std::sync::atomic::Ordering;

/// Why a snapshot is owed for commits a deleted log held past capture.
pub(super) const LEFT_IN_A_DELETED_LOG: &str =
    "the WAL was deleted holding commits capture had not taken (another process's, or one a killed writer left unpublished)";

/// The log capture followed went away, everything it held in the spool, the database file
/// then carrying `stamp` (taken before anyone else could write it).
pub(super) fn note_log_gone(db: &Database, stamp: Option<FileStamp>) {
    let Some(stamp) = stamp else {
        return;
    };
    if let Err(e) = db.spool.record_log_gone(&stamp) {
        crate::base::log::error(&format!("{}: {e}", db.name));
    }
}

/// A log starts where there was none (or an empty one): a snapshot is owed unless the
/// database file is as it was when the last log capture followed went away, or nothing was
/// shipped or owed yet (the first upload is a snapshot anyway).
pub(super) fn check_unchanged_since_log_gone(db: &Database) {
    if db.spool.nothing_shipped_anywhere() {
        return;
    }
    let now = FileStamp::of(&db.path);
    if !changed_without_a_snapshot(db.spool.log_gone(), now, &db.progress()) {
        return;
    }
    owe_snapshot_of(
        db,
        "the database changed while it had no WAL (written by a process without libreplica, or in rollback-journal mode)",
        now,
    );
}

/// Whether the file, carrying `now`, changed since the last log went away (`kept`) in a
/// way no snapshot owed yet covers: one owed for this very change (found by the poll, then
/// again by the log starting while it is read) began reading after the file carried `now`.
fn changed_without_a_snapshot(
    kept: Option<FileStamp>,
    now: Option<FileStamp>,
    progress: &Progress,
) -> bool {
    if kept.is_some() && kept == now {
        return false;
    }
    !(now.is_some() && progress.needs_snapshot.is_some() && progress.owed_for_file == now)
}

/// The poll found no log on disk (no file, or an empty one). If capture still follows one,
/// another process deleted it at its last close, unseen (a standby, or a process without the
/// extension, that closed after every connection here), and what it held past capture may
/// be missing; if not, the file must still carry the stamp of the last log's end. Either way
/// `replica_sync` must not report the replica current meanwhile.
pub(super) fn poll_without_log(db: &Database, cap: &mut CaptureState) {
    if db.all_progress().iter().all(|p| p.needs_snapshot.is_some()) {
        return; // the snapshots asked for read the file as it is
    }
    if cap.header.is_none() {
        // Without a stamp (a spool older than stamps, or a log that went unseen) the next
        // log's start owes the snapshot; the poll looks only for a changed file.
        if db.spool.log_gone().is_some() {
            check_unchanged_since_log_gone(db);
        }
        return;
    }
    if db.open_handles.load(Ordering::SeqCst) > 0 {
        return; // a connection of this process is closing it, and settles it
    }
    cap.header = None;
    cap.chain = None;
    owe_snapshot(
        db,
        "another process deleted the WAL at its last close; commits it held after the last capture may be missing",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64) -> Option<FileStamp> {
        Some(FileStamp {
            ino: 7,
            size,
            mtime: (1, size as i64),
        })
    }

    fn owed(for_file: Option<FileStamp>) -> Progress {
        Progress {
            needs_snapshot: Some("owed".into()),
            owed_for_file: for_file,
            ..Progress::default()
        }
    }

    #[test]
    fn a_change_is_owed_a_snapshot_once() {
        let idle = Progress::default();
        assert!(!changed_without_a_snapshot(stamp(1), stamp(1), &idle));
        assert!(changed_without_a_snapshot(stamp(1), stamp(2), &idle));
        assert!(changed_without_a_snapshot(None, stamp(2), &idle));
        assert!(changed_without_a_snapshot(stamp(1), None, &idle));
        // The poll owed one for this change, still unread: the log starting owes none.
        assert!(!changed_without_a_snapshot(
            stamp(1),
            stamp(2),
            &owed(stamp(2))
        ));
        // Owed for an earlier change, or for another reason: this one is owed again.
        assert!(changed_without_a_snapshot(
            stamp(1),
            stamp(3),
            &owed(stamp(2))
        ));
        assert!(changed_without_a_snapshot(stamp(1), stamp(2), &owed(None)));
        assert!(changed_without_a_snapshot(stamp(1), None, &owed(None)));
        // Taken (needs_snapshot cleared): a stamp still noted would not count.
        let taken = Progress {
            owed_for_file: stamp(2),
            ..Progress::default()
        };
        assert!(changed_without_a_snapshot(stamp(1), stamp(2), &taken));
    }
}
