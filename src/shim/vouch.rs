//! Whether a log capture did not see start continues the spool. Connections the replica VFS
//! does not see (opened before the load, see `super::hooked`) restart the log unseen; their
//! commit hook records the log it found complete and SQLite's commit counter then
//! (`CompleteLog`). A new log is then accepted as continuing the spool, by whoever meets it
//! first, only when the WAL index shows the counter moved by exactly the commits the new log
//! holds: every commit made since the claim is in the new log, none went missing in between.
//! A stale claim (a commit that wrote nothing) or a restart by another process fails the
//! count and is caught up conservatively.

use super::fallback::flush_spool;
use super::no_log::check_unchanged_since_log_gone;
use super::wal_file::index_on_disk;
use crate::base::io::ReadAt;
use crate::database::{CaptureState, CompleteLog, Database};
use crate::wal::{self, FrameChain, WalHeader, WalIndexState, FRAME_HEADER_SIZE};

/// Makes `new` the log capture follows from its first frame if the last claim (a hooked
/// commit's, or a standby's hand-off) vouches for it, by `index` (the WAL index now);
/// returns whether it did, spending the claim when it did.
pub(super) fn accept_vouched_log(
    db: &Database,
    cap: &mut CaptureState,
    new: &WalHeader,
    index: Option<WalIndexState>,
    wal: &mut dyn ReadAt,
) -> bool {
    if !spool_ends_in_claimed_log(db, cap.log_complete)
        || !restart_continues(cap.log_complete, cap.header.as_ref(), new, index, wal)
    {
        return false;
    }
    let after_none = matches!(cap.log_complete, Some(CompleteLog::Absent { .. }));
    cap.log_complete = None;
    // The generation says every commit before the new log is on disk (a crash then resumes
    // from the new log's start): records of the old log still in memory go first. (A
    // checkpoint may have completed after the hooked commit hook found no restart possible
    // and so did not write them out.) Without them on disk, the log is not accepted.
    if !flush_spool(db) {
        return false;
    }
    if let Err(e) = db.spool.set_generation(new.salts()) {
        crate::base::log::error(&format!("{}: {e}", db.name));
        return false;
    }
    cap.header = Some(*new);
    cap.chain = Some(FrameChain::new(new));
    if after_none {
        check_unchanged_since_log_gone(db);
    }
    true
}

/// Whether the spool ends in the log a `Salts` claim names (its last record is from that
/// log, or that log started with nothing of it captured yet): a claim whose log the spool
/// has since left behind vouches for nothing.
fn spool_ends_in_claimed_log(db: &Database, claim: Option<CompleteLog>) -> bool {
    match claim {
        Some(CompleteLog::Salts { salts, .. }) => {
            db.spool
                .last_position()
                .is_some_and(|(p, _)| p.salts() == salts)
                || db.spool.generation() == Some(salts)
        }
        Some(CompleteLog::Absent { .. }) => true,
        None => false,
    }
}

/// [`accept_vouched_log`] with the WAL index read from the database's `-shm` file, for
/// those that meet the log without a connection's view of the index.
pub(super) fn accept_vouched_log_on_disk(
    db: &Database,
    cap: &mut CaptureState,
    new: &WalHeader,
    wal: &mut dyn ReadAt,
) -> bool {
    cap.log_complete.is_some() && accept_vouched_log(db, cap, new, index_on_disk(&db.path), wal)
}

/// Whether the log on disk is a first log (none before it) that a hooked commit of this
/// process claimed (`CompleteLog::Absent`) and is still writing: SQLite draws a first log's
/// salts as it writes its header and publishes them in the WAL index only with the commit,
/// after the frames and their sync. While the index shows other salts nothing of the log is
/// committed, and the claim cannot be checked yet: that commit's WAL hook meets the log
/// once it is published (a look before then would owe a snapshot for nothing).
pub(super) fn claimed_first_log_unpublished(
    db: &Database,
    cap: &CaptureState,
    wal: &mut dyn ReadAt,
) -> bool {
    if !matches!(cap.log_complete, Some(CompleteLog::Absent { .. })) || cap.header.is_some() {
        return false;
    }
    let Ok(Some(new)) = super::wal_file::header_on_disk(wal) else {
        return false;
    };
    index_on_disk(&db.path).is_some_and(|i| (i.header.salt1, i.header.salt2) != new.salts())
}

/// Whether the log `new` continues the spool: the claim found the log before it complete
/// (`Salts`: `new` replaced that log, its first salt one more) or found no log at all
/// (`Absent`, while capture `known` none), and SQLite's commit counter has moved by exactly
/// the number of commits `new` holds — so no commit was made anywhere else in between.
fn restart_continues(
    claim: Option<CompleteLog>,
    known: Option<&WalHeader>,
    new: &WalHeader,
    index: Option<WalIndexState>,
    wal: &mut dyn ReadAt,
) -> bool {
    let Some(i) = index.filter(|i| (i.header.salt1, i.header.salt2) == new.salts()) else {
        return false;
    };
    let since = match (claim, known) {
        // Whatever log capture last followed: the claim says the spool holds everything
        // through the end of log `salts` (taken here, or handed off by another process), and
        // `new` is the log that replaced it.
        (Some(CompleteLog::Salts { salts, change }), _) => {
            if new.salt1 != salts.0.wrapping_add(1) {
                return false;
            }
            change
        }
        (Some(CompleteLog::Absent { change }), None) => change,
        _ => return false,
    };
    let commits = commits_through(wal, new, i.header.mx_frame);
    commits.is_some_and(|n| i.header.change.wrapping_sub(since) == n)
}

/// How many commits the log `header` holds through frame `mx_frame`, its checksum chain
/// intact all the way (`None` when it is not).
fn commits_through(wal: &mut dyn ReadAt, header: &WalHeader, mx_frame: u32) -> Option<u32> {
    let mut chain = FrameChain::new(header);
    let mut buf = vec![0u8; FRAME_HEADER_SIZE + header.page_size as usize];
    let mut commits = 0;
    for f in 1..=mx_frame {
        let n = wal
            .read_at(wal::frame_offset(header.page_size, f), &mut buf)
            .ok()?;
        if n < buf.len() {
            return None;
        }
        let (h, page) = buf.split_at(FRAME_HEADER_SIZE);
        let fh = chain.accept(h, page).ok()??;
        if fh.is_commit() {
            commits += 1;
        }
    }
    Some(commits)
}
