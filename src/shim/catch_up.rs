//! Catching up with a WAL this process has not seen written: at open (commits made since
//! the spool's last record, after a crash), for commits of processes without the extension
//! (taken from the log while it still holds them), and for what other processes handed off
//! before restarting or truncating the log. It streams the log one transaction at a time
//! and must never fail the application: what cannot be placed becomes an owed snapshot.

use super::fallback::{capture_failed, flush_spool, owe_snapshot};
use super::no_log::{check_unchanged_since_log_gone, poll_without_log};
use super::queue::drain_queued;
use super::vouch::accept_vouched_log_on_disk;
use super::wal_file::{header_on_disk, published_end, salts_on_disk};
use crate::base::clock::now_ms;
use crate::base::io::ReadAt;
use crate::database::{CaptureState, CompleteLog, Database};
use crate::error::Error;
use crate::handoff::{Handoff, NextLog};
use crate::spool::{Integrity, RecordHeader};
use crate::wal::{self, FrameChain, FrameHeader, WalHeader, WalPosition, FRAME_HEADER_SIZE};
use std::sync::atomic::Ordering;

/// Compares the WAL on disk with what the spool holds and captures commits made since
/// (after a crash between a commit and its capture, or records lost from memory), or asks
/// for a snapshot when the WAL belongs to a generation this spool never saw. Streams the log
/// one transaction at a time.
pub(super) fn catch_up(
    db: &Database,
    cap: &mut CaptureState,
    file: &mut dyn ReadAt,
    upto: u32,
    doing: &str,
) -> Result<(), Error> {
    let lost = std::mem::take(&mut cap.unflushed_lost);
    let Some(header) = header_on_disk(file)? else {
        if lost {
            owe_snapshot(
                db,
                "records held in memory were lost and the WAL they came from is gone",
            );
        }
        return Ok(()); // an empty WAL: the next writer writes a header
    };
    cap.header = Some(header);
    let (chain, continues) = continuation(db, file, &header)?;
    let (resume, found_commit) = stream(db, file, &header, chain, upto, continues)?;
    cap.chain = Some(resume);
    if found_commit && !continues {
        owe_snapshot(
            db,
            &format!(
                "{doing}: the WAL holds commits from a log generation this spool never captured"
            ),
        );
    } else if lost && !continues {
        // A restart hands what is still in memory to the spool's writer thread and does not
        // wait: a crash before it wrote them leaves a new log, maybe still without a commit,
        // that the generation does not vouch for.
        owe_snapshot(
            db,
            &format!(
                "{doing}: records held in memory were lost and the WAL does not continue them"
            ),
        );
    } else if !continues {
        // A log with no commit yet, followed from its first frame from now on: it started
        // after the one the spool ends in went away.
        check_unchanged_since_log_gone(db);
    }
    Ok(())
}

/// Captures the commits the log holds after the chain capture has reached (the log capture
/// follows, `cap.header`), reading no frame past `upto`.
pub(super) fn follow(
    db: &Database,
    cap: &mut CaptureState,
    file: &mut dyn ReadAt,
    upto: u32,
) -> Result<(), Error> {
    let (Some(header), Some(chain)) = (cap.header, cap.chain.clone()) else {
        return Err(Error::Internal(
            "following a log whose position is unknown".into(),
        ));
    };
    let (resume, _) = stream(db, file, &header, chain, upto, true)?;
    cap.chain = Some(resume);
    Ok(())
}

/// Whether the log capture follows (read through `file`, to its end: when it is about to go,
/// no WAL index bounds it) holds a committed transaction past capture's position, which it
/// cannot tell from one a killed writer left unpublished; a read failure counts as one.
pub(super) fn holds_more_commits(db: &Database, cap: &CaptureState, file: &mut dyn ReadAt) -> bool {
    let (Some(header), Some(chain)) = (cap.header, cap.chain.clone()) else {
        return false;
    };
    if salts_on_disk(file) != Some(header.salts()) {
        return false;
    }
    stream(db, file, &header, chain, u32::MAX, false).map_or(true, |(_, found)| found)
}

/// Reads the log's committed transactions from `chain` on (no frame past `upto`, nor past
/// what SQLite published: see [`published_end`]), appending
/// them to the spool when `append`; the chain after the last complete one, and whether
/// there was one.
fn stream(
    db: &Database,
    file: &mut dyn ReadAt,
    header: &WalHeader,
    mut chain: FrameChain,
    upto: u32,
    append: bool,
) -> Result<(FrameChain, bool), Error> {
    let upto = upto.min(published_end(&db.path, &db.write_lock, header.salts()));
    let mut assembler = wal::TxnAssembler::new(header.page_size);
    let mut buf = vec![0u8; FRAME_HEADER_SIZE + header.page_size as usize];
    let mut resume = chain.clone();
    let mut found_commit = false;
    loop {
        let f = chain.next_frame();
        if f > upto || file.read_at(wal::frame_offset(header.page_size, f), &mut buf)? < buf.len() {
            break;
        }
        let (h, page) = buf.split_at(FRAME_HEADER_SIZE);
        let Ok(Some(fh)) = chain.accept(h, page) else {
            break;
        };
        let pos = WalPosition::new(header.salts(), f);
        if let Some(txn) = assembler.push(pos, &fh, page) {
            found_commit = true;
            resume = chain.clone();
            if append {
                append_txn(db, &txn, chain.checksum())?;
            }
        }
    }
    Ok((resume, found_commit))
}

/// Where the log with `header` continues what the spool holds, if it does: the chain to
/// read it from, and whether its commits go into the spool.
fn continuation(
    db: &Database,
    file: &mut dyn ReadAt,
    header: &WalHeader,
) -> Result<(FrameChain, bool), Error> {
    match db.spool.last_position() {
        Some((pos, cksum)) if pos.salts() == header.salts() => {
            if frame_carries(file, header, pos.frame, cksum)? {
                return Ok((FrameChain::resume(header, pos.frame + 1, cksum), true));
            }
            owe_snapshot(
                db,
                "the WAL no longer continues from the spool's last captured frame",
            );
            Ok((FrameChain::new(header), false))
        }
        // This process saw the log start over with everything before it spooled.
        _ if db.spool.generation() == Some(header.salts()) && db.spool.shipped_anything() => {
            Ok((FrameChain::new(header), true))
        }
        // Nothing captured, shipped or owed yet: the first upload is a snapshot, and the
        // log's commits from its start follow it (those it holds are dropped by position
        // when shipping). Owing a second snapshot for them would only repeat the first.
        None if db.spool.nothing_shipped_anywhere() => Ok((FrameChain::new(header), true)),
        _ => Ok((FrameChain::new(header), false)),
    }
}

/// [`catch_up`] through the end of the log, with a failure turned into a capture failure
/// that says what was `doing`.
pub(super) fn catch_up_or_fall_back(
    db: &Database,
    cap: &mut CaptureState,
    file: &mut dyn ReadAt,
    doing: &str,
) {
    catch_up_through(db, cap, file, u32::MAX, doing);
}

/// [`catch_up_or_fall_back`], reading no frame past `upto` (frames after it may belong to
/// a commit of this process whose capture has not run yet).
pub(super) fn catch_up_through(
    db: &Database,
    cap: &mut CaptureState,
    file: &mut dyn ReadAt,
    upto: u32,
    doing: &str,
) {
    if let Err(e) = catch_up(db, cap, file, upto, doing) {
        capture_failed(db, cap, &format!("{doing}: {e}"), None);
    }
}

/// A log on disk that capture did not see start (none was known, or a connection this
/// process's VFS does not see restarted the one it knew): followed from its first frame when
/// the last hooked commit vouches for it (see `super::vouch`), otherwise caught up with,
/// owing a snapshot when it cannot be placed. Reads no frame past `upto`.
pub(super) fn meet_unseen_log(
    db: &Database,
    cap: &mut CaptureState,
    file: &mut dyn ReadAt,
    upto: u32,
    doing: &str,
) {
    // A process standing by hands its hooked connection's log over before it may restart
    // it, with the commit counter that vouches for the next one.
    ingest_handoffs(db, cap);
    if let Ok(Some(new)) = header_on_disk(file) {
        if accept_vouched_log_on_disk(db, cap, &new, file) {
            follow_or_fall_back(db, cap, file, upto, doing);
            return;
        }
    }
    cap.header = None;
    cap.chain = None;
    catch_up_through(db, cap, file, upto, doing);
}

/// [`follow`], with a failure turned into a capture failure that says what was `doing`.
fn follow_or_fall_back(
    db: &Database,
    cap: &mut CaptureState,
    file: &mut dyn ReadAt,
    upto: u32,
    doing: &str,
) {
    if let Err(e) = follow(db, cap, file, upto) {
        capture_failed(db, cap, &format!("{doing}: {e}"), None);
    }
}

/// Commits that processes without the extension appended after this process's last
/// capture: taken from the log while it still holds them. A log this process knew that
/// another process restarted or truncated may have lost such commits, which only a snapshot
/// can close. Skipped while a commit of this process is in flight (its own capture takes it).
pub(super) fn take_foreign_commits(db: &Database, cap: &mut CaptureState, file: &mut dyn ReadAt) {
    // This process's own commits come first, in order.
    drain_queued(db, cap, file);
    if cap.pending_commit.is_some() || cap.deferred_commit.is_some() {
        return;
    }
    // What other processes handed off first: the log this process knew may be gone.
    ingest_handoffs(db, cap);
    let Some(known) = cap.header else {
        // A log another process started (after handing the old one off, it continues the
        // generation the hand-off announced; otherwise catch-up decides), or none yet.
        if salts_on_disk(file).is_some() {
            meet_unseen_log(db, cap, file, u32::MAX, "reading the WAL");
        }
        return;
    };
    let on_disk = match header_on_disk(file) {
        Ok(h) => h,
        Err(e) => {
            crate::base::log::error(&format!("{}: reading the WAL header: {e}", db.name));
            return;
        }
    };
    if on_disk.map(|h| h.salts()) != Some(known.salts()) {
        // A restart a hooked connection of this process vouched for continues the spool.
        if let Some(new) = on_disk {
            if accept_vouched_log_on_disk(db, cap, &new, file) {
                follow_or_fall_back(db, cap, file, u32::MAX, "reading a restarted WAL");
                return;
            }
        }
        cap.header = None;
        cap.chain = None;
        // A restart another process handed off (see `ingest_handoffs`) announced the new
        // log, which then continues the spool: read it from its start.
        if on_disk.is_some() && on_disk.map(|h| h.salts()) == db.spool.generation() {
            catch_up_or_fall_back(db, cap, file, "reading the WAL");
            return;
        }
        owe_snapshot(
            db,
            "another process restarted or truncated the WAL; commits it made after the last capture may be missing",
        );
        return;
    }
    catch_up_or_fall_back(db, cap, file, "reading commits of another process");
}

/// [`take_foreign_commits`] for `replica_sync`, which must not leave out a commit made by
/// a process without the extension just before it was called.
pub fn take_foreign_commits_now(
    db: &Database,
    open_wal: &mut dyn FnMut() -> Option<Box<dyn ReadAt>>,
) {
    if !db.owned_here() {
        return;
    }
    // This process's queued commits are complete: take them whatever is in flight.
    super::queue::take_queued_now(db, open_wal);
    // A commit of this process whose write has landed but whose capture has not run yet
    // would look like another process's: leave the log to that capture.
    if db.wal_writes_in_flight.load(Ordering::SeqCst) > 0 {
        return;
    }
    let mut cap = crate::base::lock::lock(&db.capture);
    if db.wal_writes_in_flight.load(Ordering::SeqCst) > 0 {
        return;
    }
    let Some(mut wal) = open_wal() else {
        ingest_handoffs(db, &mut cap);
        poll_without_log(db, &mut cap);
        return;
    };
    // A process restarting the log hands the old one off before it writes the new header:
    // read the header, take the hand-offs, and go round again while the log keeps moving
    // on (a busy writer can restart it many times between two polls).
    for _ in 0..8 {
        let before = salts_on_disk(wal.as_mut());
        if ingest_handoffs(db, &mut cap) == 0 || salts_on_disk(wal.as_mut()) == before {
            break;
        }
    }
    if salts_on_disk(wal.as_mut()).is_none() {
        poll_without_log(db, &mut cap);
    }
    if !cap.caught_up {
        // Replication was taken over from a process that died, or started before any
        // connection here opened the WAL: catch up with the whole log first.
        cap.caught_up = true;
        catch_up_or_fall_back(db, &mut cap, wal.as_mut(), "reading the WAL");
        return;
    }
    if super::vouch::claimed_first_log_unpublished(db, &cap, wal.as_mut()) {
        return; // a hooked commit of this process is writing the first log
    }
    take_foreign_commits(db, &mut cap, wal.as_mut());
}

/// Appends what other processes handed off when they restarted or truncated the log (the
/// commits after this spool's last position), announces the log that follows, and removes
/// the hand-off files. A hand-off of a log whose start this spool never saw cannot be
/// placed: it is dropped, and the gap it leaves is found and closed by a snapshot.
pub(super) fn ingest_handoffs(db: &Database, cap: &mut CaptureState) -> usize {
    let Some(pending) = crate::handoff::pending(db.spool.directory()) else {
        return 0;
    };
    for (name, handoff) in &pending.files {
        match handoff {
            Some(h) => ingest_handoff(db, cap, h),
            None => crate::base::log::error(&format!(
                "{}: dropping a torn hand-off file {}",
                db.name,
                pending.shown(name).display()
            )),
        }
        pending.remove(name);
    }
    pending.files.len()
}

fn ingest_handoff(db: &Database, cap: &mut CaptureState, h: &Handoff) {
    let last = db.spool.last_position();
    let in_log = last.is_some_and(|(p, _)| p.salts() == h.old_salts);
    let mut knows_start = in_log || db.spool.generation() == Some(h.old_salts);
    if !knows_start && handoff_follows_claim(cap.log_complete, h) {
        // The log before it was complete and this one holds every commit made since (the
        // generation is written once what precedes it is on disk).
        knows_start = flush_spool(db)
            && match db.spool.set_generation(h.old_salts) {
                Ok(()) => true,
                Err(e) => {
                    crate::base::log::error(&format!("{}: {e}", db.name));
                    false
                }
            };
    }
    if knows_start {
        if append_handed_txns(db, cap, h) && flush_spool(db) {
            match h.next {
                NextLog::Restart(next) => {
                    if let Err(e) = db.spool.set_generation(next) {
                        crate::base::log::error(&format!("{}: {e}", db.name));
                    }
                }
                NextLog::MayRestart { change } => vouch_for_next_log(db, cap, h, change),
                NextLog::Gone => {}
            }
        }
    } else {
        crate::base::log::notice(&format!(
            "{}: a hand-off of a log this spool never saw begin; a snapshot will close the gap",
            db.name
        ));
    }
    // A log that may yet go on (the hooked commit may not have restarted it) stays the one
    // capture follows.
    let gone = !matches!(h.next, NextLog::MayRestart { .. });
    if gone && cap.header.is_some_and(|x| x.salts() == h.old_salts) {
        cap.header = None;
        cap.chain = None;
    }
}

/// Whether hand-off `h` of a hooked connection (`NextLog::MayRestart`) is of the log that
/// replaced the one `claim` found complete, holding every commit made since: SQLite's commit
/// counter moved by exactly its commits (as `super::vouch` checks a log on disk).
fn handoff_follows_claim(claim: Option<CompleteLog>, h: &Handoff) -> bool {
    let (
        Some(CompleteLog::Salts {
            salts,
            change: since,
        }),
        NextLog::MayRestart { change },
    ) = (claim, h.next)
    else {
        return false;
    };
    h.old_salts.0 == salts.0.wrapping_add(1)
        && u32::try_from(h.txns.len()).is_ok_and(|n| change.wrapping_sub(since) == n)
}

/// A hand-off of a hooked connection's log that may restart (`NextLog::MayRestart`): once
/// the spool holds that log through its last commit, it is complete at SQLite's commit
/// counter `change`, as a hooked commit of this process would have recorded it, and a new
/// log holding exactly the commits made since continues the spool (see `super::vouch`).
fn vouch_for_next_log(db: &Database, cap: &mut CaptureState, h: &Handoff, change: u32) {
    let last = db.spool.last_position().map(|(p, _)| p);
    if h.txns.last().is_some_and(|t| last == Some(t.txn.end)) {
        cap.log_complete = Some(CompleteLog::Salts {
            salts: h.old_salts,
            change,
        });
    }
}

/// Appends the hand-off's transactions the spool does not hold yet; false if one failed.
fn append_handed_txns(db: &Database, cap: &mut CaptureState, h: &Handoff) -> bool {
    for t in &h.txns {
        let new = match db.spool.last_position() {
            Some((p, _)) if p.salts() == h.old_salts => t.txn.end.frame > p.frame,
            _ => true,
        };
        if new {
            if let Err(e) = append_txn(db, &t.txn, t.end_cksum) {
                capture_failed(db, cap, &format!("appending a hand-off: {e}"), None);
                return false;
            }
        }
    }
    true
}

/// Whether frame `frame` (0 = the log header) still carries the running checksum `cksum`.
fn frame_carries(
    file: &mut dyn ReadAt,
    header: &WalHeader,
    frame: u32,
    cksum: (u32, u32),
) -> Result<bool, Error> {
    if frame == 0 {
        return Ok(header.checksum() == cksum);
    }
    let mut h = [0u8; FRAME_HEADER_SIZE];
    if file.read_at(wal::frame_offset(header.page_size, frame), &mut h)? < h.len() {
        return Ok(false);
    }
    Ok(FrameHeader::parse(&h).is_ok_and(|fh| fh.is_commit() && fh.checksum() == cksum))
}

fn append_txn(db: &Database, txn: &wal::CommittedTxn, end_cksum: (u32, u32)) -> Result<(), Error> {
    let header = RecordHeader {
        page_size: txn.page_size,
        commit_size: txn.commit_size,
        end: txn.end,
        end_cksum,
        captured_at_ms: now_ms(),
        integrity: Integrity::Crc,
    };
    let mut rec = db.spool.begin_record(header, txn.pages.len() as u32)?;
    for (pgno, page) in &txn.pages {
        rec.push(*pgno, page)?;
    }
    rec.commit()?;
    db.captured_txns
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::testing::InMemory;
    use crate::spool::{FileStamp, SpoolState};

    /// A database that has shipped, whose last log went away while the file carried the
    /// stamp it still carries, and whose new log (a header, no commit yet) the spool has no
    /// record of: as after a hooked connection's last close, which notes the stamp before it
    /// writes out the spool's records, and a crash between the two, with another process
    /// starting a log since. The records held in memory were lost or not, as `lost` says;
    /// the snapshot requests catch-up made, and the reason owed.
    fn catch_up_after_a_lost_flush(name: &str, lost: bool) -> (u64, Option<String>) {
        let dir = crate::base::testing::fresh_dir(&format!("catch-up-{name}"));
        std::fs::write(dir.join("app.db"), vec![0u8; 4096]).unwrap();
        let cfg = crate::config::ReplicaConfig::in_dir_for_tests(dir.join("replica"));
        let open = || Database::open(&dir.join("app.db"), vec![cfg.clone()], 1 << 30).unwrap();
        let db = open();
        let shipped = SpoolState {
            txid: 1,
            page_size: 4096,
            commit: 1,
            ..SpoolState::default()
        };
        db.spool.mark_shipped(shipped).unwrap();
        let stamp = FileStamp::of(&db.path).unwrap();
        db.spool.record_log_gone(&stamp).unwrap();
        drop(db);
        // Reopened: the spool's history owes no first snapshot.
        let db = open();
        assert_eq!(db.progress().needs_snapshot, None);
        let before = db.progress().snapshot_request;
        let header = WalHeader::new(false, 4096, 9, 0x0dd_0001, 0x0dd_0002);
        let mut log = InMemory(header.to_bytes().to_vec());
        let mut cap = crate::base::lock::lock(&db.capture);
        cap.unflushed_lost = lost;
        catch_up(&db, &mut cap, &mut log, u32::MAX, "reading the WAL at open").unwrap();
        drop(cap);
        let progress = db.progress();
        let _ = std::fs::remove_dir_all(&dir);
        (progress.snapshot_request - before, progress.needs_snapshot)
    }

    /// The file's stamp vouches for the database file, not for records that never reached
    /// the spool: records lost from memory owe their snapshot whatever the stamp says, and
    /// only they do.
    #[test]
    fn records_lost_from_memory_are_owed_a_snapshot_though_the_file_looks_unchanged() {
        let (requests, why) = catch_up_after_a_lost_flush("lost", true);
        assert_eq!(requests, 1);
        let owed = "reading the WAL at open: records held in memory were lost and the WAL does not continue them";
        assert_eq!(why.as_deref(), Some(owed));
        assert_eq!(catch_up_after_a_lost_flush("kept", false), (0, None));
    }
}
