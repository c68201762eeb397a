//! Capture for connections the replica VFS does not see: those opened before the extension
//! was loaded (frameworks open the database, then load extensions into that connection).
//! Their writes go straight to the base VFS, so their commits are followed through SQLite's
//! hooks instead: the commit hook (before the commit's frames are written, while the
//! connection holds the WAL write lock) and the WAL hook (after the commit). The WAL hook
//! queues the commit for the capture thread, as the replica VFS does for its own commits,
//! when it continues the log capture follows; otherwise both reuse catch-up, which reads
//! committed frames from the log through this process's own handle.
//!
//! The one thing such a connection can do that catch-up cannot repair is restart the log
//! unseen (a restart happens while it writes its commit's first frame). So the commit hook
//! captures everything the log holds, flushes the spool when a restart is possible, and
//! records the log it found complete together with SQLite's commit counter; whoever meets
//! the new log first accepts it as continuing the spool only when the counter shows that
//! the commits the new log holds are all the commits made since (`super::vouch`).
//! Everything else is caught up, owing a snapshot when it cannot be placed. It must never
//! fail the application's commit.

use super::capture::resolve_deferred;
use super::catch_up::{catch_up_through, follow, holds_more_commits, take_foreign_commits};
use super::fallback::{capture_failed, flush_spool, owe_snapshot};
use super::no_log::note_log_gone;
use super::no_log::LEFT_IN_A_DELETED_LOG;
use super::queue::{drain_queued, fail_queue_without_log};
use super::vouch::accept_vouched_log;
use super::wal_file::{header_on_disk, salts_on_disk};
use crate::base::io::ReadAt;
use crate::base::lock::lock;
use crate::database::{self, CaptureState, CompleteLog, Database};
use crate::spool::FileStamp;
use crate::wal::{FrameHeader, WalHeader, WalIndexState, WalPosition, FRAME_HEADER_SIZE};

/// A connection opened before the load now replicates this database: compare the log with
/// the spool once (as a connection of the replica VFS does when it opens the WAL).
pub fn on_adopt(db: &Database, wal: Option<&mut dyn ReadAt>) {
    if !db.owned_here() {
        return;
    }
    let mut cap = lock(&db.capture);
    if cap.caught_up {
        return;
    }
    let Some(file) = wal else { return };
    drain_queued(db, &mut cap, file);
    cap.caught_up = true;
    catch_up_through(db, &mut cap, file, u32::MAX, "reading the WAL when adopted");
}

/// A hooked connection closed: what its commit hook last recorded can no longer vouch for a
/// log (once every connection has closed, SQLite may rebuild the WAL index and restart its
/// commit counter, and an old record must not be counted against the new one).
///
/// When that close was the last anywhere, SQLite checkpointed the log completely and deleted
/// it. Through a wrapped default VFS the shim saw the deletion and took the log first
/// (`before_delete`), and nothing is left to do here; through a VFS that is not ours it did
/// not see it. `held` (the connection's handle
/// on the log, when it had one) still reads the deleted file: capture takes the queued
/// commits from it (anything else it holds past them is owed as a snapshot, as at a deletion
/// the replica VFS sees), then follows no log; the next log starts from what the checkpoint
/// left, whose stamp is taken first, before any I/O here gives another process time to
/// write (see `super::no_log`).
pub fn on_hooked_close(db: &Database, held: Option<&mut dyn ReadAt>) {
    if !db.owned_here() {
        return;
    }
    let stamp = FileStamp::of(&db.path);
    let mut cap = lock(&db.capture);
    cap.log_complete = None;
    let Some(known) = cap.header else {
        return;
    };
    if salts_at_path(&db.path) == Some(known.salts()) {
        return; // the log capture follows is still there
    }
    let held = held.and_then(|h| (salts_on_disk(&mut *h) == Some(known.salts())).then_some(h));
    let Some(held) = held else {
        fail_queue_without_log(db, &mut cap);
        return; // capture cannot tell what it held: the next log is not vouched for
    };
    drain_queued(db, &mut cap, held);
    if holds_more_commits(db, &cap, held) {
        owe_snapshot(db, LEFT_IN_A_DELETED_LOG);
    }
    cap.header = None;
    cap.chain = None;
    // Under the lock, with the log let go: the poll must not find no log followed and no
    // stamp for it. (A failed flush owes a snapshot, so the stamp cannot vouch for a gap.)
    note_log_gone(db, stamp);
    drop(cap);
    flush_spool(db);
}

/// The salts of the log at `db_path`'s WAL path now, if there is one.
fn salts_at_path(db_path: &std::path::Path) -> Option<(u32, u32)> {
    salts_on_disk(super::capture_thread::open_wal_of(db_path)?.as_mut())
}

/// A hooked connection is about to write a commit and holds the WAL write lock, so no other
/// commit is in flight: take whatever the log holds that capture has not, remember what the
/// log was (this commit may restart it) and SQLite's commit counter, and when the index says
/// a restart is possible, make the spool durable.
pub fn before_hooked_commit(db: &Database, wal: &mut dyn ReadAt, index: Option<WalIndexState>) {
    if !db.owned_here() {
        return;
    }
    let mut cap = lock(&db.capture);
    cap.log_complete = None;
    drain_queued(db, &mut cap, wal);
    resolve_deferred(db, &mut cap, wal);
    if !ends_at(&cap, index) {
        if cap.caught_up {
            take_foreign_commits(db, &mut cap, wal);
        } else {
            cap.caught_up = true;
            catch_up_through(db, &mut cap, wal, u32::MAX, "reading the WAL");
        }
    }
    let Some(i) = index else { return };
    let no_log = cap.header.is_none() && header_on_disk(wal).ok().flatten().is_none();
    cap.log_complete = if no_log && i.header.mx_frame == 0 {
        Some(CompleteLog::Absent {
            change: i.header.change,
        })
    } else if ends_at(&cap, index) || index_was_reset(&cap, index) {
        cap.header.map(|h| CompleteLog::Salts {
            salts: h.salts(),
            change: i.header.change,
        })
    } else {
        return;
    };
    // Records must be on disk before the frames they came from can be overwritten. Another
    // connection's checkpoint may still complete between this read and the commit's own
    // restart: then they are written out when the new log is accepted, before its
    // generation is recorded (`super::vouch`), and a crash before that finds the new log
    // not continuing the spool, which a snapshot closes.
    if i.backfilled >= i.header.mx_frame {
        drop(cap);
        flush_spool(db);
    }
}

/// A hooked connection committed: its transaction ends at frame `commit_frame` of the log on
/// disk, and `index` is the WAL index now. Capture it (and anything before it), reading no
/// further: frames after it may be a commit of this process's replica VFS whose own capture
/// has not run yet.
pub fn after_hooked_commit(
    db: &Database,
    wal: &mut dyn ReadAt,
    commit_frame: u32,
    index: Option<WalIndexState>,
) {
    if !db.owned_here() {
        return;
    }
    let mut cap = lock(&db.capture);
    drain_queued(db, &mut cap, wal);
    resolve_deferred(db, &mut cap, wal);
    let on_disk = header_on_disk(wal).ok().flatten();
    let known = cap.header;
    if let Some(new) = on_disk.filter(|n| known.map(|k| k.salts()) != Some(n.salts())) {
        if !accept_vouched_log(db, &mut cap, &new, index, wal) {
            cap.header = None;
            cap.chain = None;
        }
    }
    cap.log_complete = None;
    cap.caught_up = true;
    if queue_hooked_commit(db, &mut cap, wal, on_disk, commit_frame) {
        drop(cap);
        crate::fault::point("capture.queued");
        super::capture_thread::notify();
        return;
    }
    let followed = cap.chain.is_some() && follow(db, &mut cap, wal, commit_frame).is_ok();
    if !followed || !reached(&cap, on_disk, commit_frame) {
        catch_up_through(db, &mut cap, wal, commit_frame, "reading a commit");
    }
    if !reached(&cap, on_disk, commit_frame) {
        let pos = on_disk.map(|h| WalPosition::new(h.salts(), commit_frame));
        capture_failed(
            db,
            &mut cap,
            "a commit of a connection opened before the load could not be read back from the WAL",
            pos,
        );
    }
    drop(cap);
    if db.spool.pending_for_the_furthest() <= 1 {
        database::wake_uploader();
    }
}

/// Leaves the commit ending at `commit_frame` of the log capture follows to the capture
/// thread, as a commit of the replica VFS is (SQLite has finished its checksums by the time
/// its WAL hook runs); whether it did. Any other case is followed here.
fn queue_hooked_commit(
    db: &Database,
    cap: &mut CaptureState,
    wal: &mut dyn ReadAt,
    on_disk: Option<WalHeader>,
    commit_frame: u32,
) -> bool {
    let (Some(h), Some(chain)) = (cap.header, cap.chain.as_ref()) else {
        return false;
    };
    let after_queued = cap.queued.back().map_or(chain.next_frame(), |(f, _)| f + 1);
    if on_disk.map(|d| d.salts()) != Some(h.salts())
        || commit_frame < after_queued
        || !super::capture_thread::room_for_more(cap)
    {
        return false;
    }
    let mut bytes = [0u8; FRAME_HEADER_SIZE];
    let read = wal.read_at(
        crate::wal::frame_offset(h.page_size, commit_frame),
        &mut bytes,
    );
    let Some(fh) = read
        .ok()
        .filter(|n| *n == bytes.len())
        .and_then(|_| FrameHeader::parse(&bytes).ok())
        .filter(|fh| fh.is_commit() && fh.salts() == h.salts())
    else {
        return false;
    };
    // The thread always needs a nudge here: this connection's commits do not pass the
    // VFS, so nothing else may wake it.
    super::queue::queue_commit(db, cap, commit_frame, fh);
    true
}

/// Whether capture has passed frame `frame` of the log with header `log`.
fn reached(cap: &CaptureState, log: Option<WalHeader>, frame: u32) -> bool {
    match (cap.header, cap.chain.as_ref(), log) {
        (Some(h), Some(c), Some(l)) => h.salts() == l.salts() && c.next_frame() > frame,
        _ => false,
    }
}

/// Whether capture has taken the log through the end the index shows.
fn ends_at(cap: &CaptureState, index: Option<WalIndexState>) -> bool {
    let (Some(h), Some(chain), Some(i)) = (cap.header, cap.chain.as_ref(), index) else {
        return false;
    };
    h.salts() == (i.header.salt1, i.header.salt2) && chain.next_frame() == i.header.mx_frame + 1
}

/// Whether a checkpoint has reset the index for the next log (no frames, the first salt one
/// more than the log on disk, which capture has just read to its end): no commit can be
/// added to the old log any more.
fn index_was_reset(cap: &CaptureState, index: Option<WalIndexState>) -> bool {
    let (Some(h), true, Some(i)) = (cap.header, cap.chain.is_some(), index) else {
        return false;
    };
    i.header.mx_frame == 0 && i.header.salt1 == h.salt1.wrapping_add(1)
}
