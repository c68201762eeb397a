//! Snapshots: the one asked for (first upload, a gap, `replica_snapshot()`), which is
//! `1-<txid + 1>` at level 9 and restarts the chain there, and the scheduled one, which
//! holds exactly the replicated state and is `1-<txid>`, so level 0 stays contiguous. It
//! owns reading the live database through a [`SnapshotSource`] into an LTX file; it must
//! not write to the database (it only reads, inside a read transaction).

use super::known::file_id;
use super::remote::Replica;
use super::ship::Shipper;
use super::types::{carried_checksum, next_txid, Step, LTX_FLAGS};
use crate::base::io::ReadAt;
use crate::database::{Counters, Dest, Progress, UploaderState};
use crate::error::Error;
use crate::ltx::{self, Encoder, Header};
use crate::snapshot::{map_indexed_pages, read_committed_page, read_wal_header, SnapshotSource};
use crate::spool::{FileStamp, SpoolState};
use crate::store::keys;
use crate::wal;
use std::collections::HashMap;
use std::io::BufWriter;
use std::path::Path;

/// Snapshot reads put off in a row because a writer was starting a new log, 20 ms apart:
/// after 5 s of it the step fails (and backs off).
const MAX_RESTART_WAITS: u32 = 250;

#[derive(Default)]
pub(super) struct Snapshotter {
    /// Snapshot attempts in a row put off because a new log was being started.
    restart_waits: u32,
}

impl Snapshotter {
    /// Ships the snapshot asked for at the next txid, and continues the chain from it.
    pub fn on_demand(
        &mut self,
        dest: &Dest,
        replica: &mut Replica,
        shipper: &mut Shipper,
        source: &dyn SnapshotSource,
        now: u64,
    ) -> Result<Step, Error> {
        // Before reading the whole database: a replica another uploader holds gets nothing.
        replica.hold_lease(now)?;
        let state = dest.state();
        let txid = next_txid(state.txid.max(replica.max_txid))?;
        let scratch = dest.scratch_path("snapshot.ltx.tmp");
        let progress = dest.progress();
        let request = progress.snapshot_request;
        let reason = progress
            .needs_snapshot
            .clone()
            .unwrap_or_else(|| "the replicated state is unknown".into());
        let built = match read_snapshot(dest, source, txid, now, &scratch)? {
            SnapshotRead::Built(built) => built,
            SnapshotRead::LogStarting => return self.log_starting(&scratch, now),
        };
        self.restart_waits = 0;
        let Some(snap) = built else {
            // An empty database: nothing to replicate until its first commit.
            dest.update_progress(|p| {
                if p.snapshot_request == request {
                    p.needs_snapshot = None;
                }
            });
            return Ok(Step::Idle);
        };
        if misses_uncaptured_commit(&snap, &progress, now) {
            let _ = std::fs::remove_file(&scratch);
            return Ok(Step::WaitUntil(now + 20));
        }
        crate::base::log::notice(&format!(
            "{}: shipping snapshot txid {txid}: {reason}",
            dest.db.name
        ));
        let size = upload(replica, txid, &scratch, now)?;
        replica.last_snapshot_at = now;
        restart_spool(dest, &snap, txid, request, now)?;
        replica.max_txid = txid;
        shipper.restart(snap.table, now);
        {
            let mut c = dest.counters();
            count_snapshot(&mut c, size, now);
            c.state = UploaderState::Replicating;
            replica.count_requests(&mut c);
        }
        dest.update_progress(|p| {
            p.txid = txid;
            p.shipped_seq = snap.seq;
            p.last_error = None;
            p.retries = 0;
            p.next_retry_at_ms = None;
            if p.snapshot_request == request {
                p.needs_snapshot = None;
                p.snapshot_must_cover = None;
            }
            p.snapshots += 1;
        });
        Ok(Step::Snapshot { txid })
    }

    /// A writer is starting a new log: read again in a moment, for a while.
    fn log_starting(&mut self, scratch: &Path, now: u64) -> Result<Step, Error> {
        let _ = std::fs::remove_file(scratch);
        self.restart_waits += 1;
        if self.restart_waits > MAX_RESTART_WAITS {
            self.restart_waits = 0;
            return Err(Error::Io(
                "the WAL header and SQLite's WAL index have disagreed for 5 s; will retry".into(),
            ));
        }
        Ok(Step::WaitUntil(now + 20))
    }
}

/// Whether a snapshot asked for because a commit could not be captured lacks that commit
/// while it may still appear: it becomes visible to readers a moment after its capture
/// failed, and the snapshot must contain it.
fn misses_uncaptured_commit(snap: &BuiltSnapshot, progress: &Progress, now: u64) -> bool {
    let Some((pos, until)) = progress.snapshot_must_cover else {
        return false;
    };
    let covered = match snap.position {
        Some((p, _)) => p.salts() != pos.salts() || p.frame >= pos.frame,
        None => true,
    };
    !covered && now < until
}

/// Uploads the asked-for snapshot at `scratch` as `1-<txid>` under the lease; its size.
fn upload(replica: &mut Replica, txid: u64, scratch: &Path, now: u64) -> Result<u64, Error> {
    let id = file_id(keys::SNAPSHOT_LEVEL, 1, txid);
    let size = std::fs::metadata(scratch).map(|m| m.len()).unwrap_or(0);
    if let Err(e) = replica.hold_lease(now) {
        let _ = std::fs::remove_file(scratch);
        return Err(e);
    }
    replica.put_file(id, scratch)?;
    crate::fault::point("snapshot.after_put");
    let _ = std::fs::remove_file(scratch);
    replica.known.insert(id, now, size);
    Ok(size)
}

/// Records in the spool that the replica now continues from the snapshot at `txid`.
fn restart_spool(
    dest: &Dest,
    snap: &BuiltSnapshot,
    txid: u64,
    request: u64,
    now: u64,
) -> Result<(), Error> {
    let new_state = SpoolState {
        replica_url: dest.config().url(),
        txid,
        post_checksum: snap.raw_checksum,
        page_size: snap.page_size,
        commit: snap.commit,
        shipped_seq: snap.seq,
        position: snap.position,
        shipped_at_ms: now,
        lineage: dest.state().lineage,
    };
    dest.store_page_checksums(&snap.table, &[], true)?;
    // Before the state says the replica holds it, so that a log starting meanwhile is not
    // checked against no stamp; unless the file changed since (then a stamp recorded
    // meanwhile, newer, stays).
    if let Some(stamp) = snap
        .file_stamp
        .filter(|s| FileStamp::of(&dest.db.path) == Some(*s))
    {
        dest.db.spool.record_log_gone(&stamp)?;
    }
    dest.mark_shipped(new_state)?;
    if dest.progress().snapshot_request == request {
        dest.clear_gap();
    }
    Ok(())
}

fn count_snapshot(c: &mut Counters, size: u64, now: u64) {
    c.uploads += 1;
    c.snapshots += 1;
    c.bytes_uploaded += size;
    c.last_upload_at_ms = Some(now);
}

/// The periodic snapshot: the replicated state at the current txid, named `1-<txid>`
/// as Litestream names its snapshots, so that level 0 stays contiguous for compaction.
/// It is read from the live database, so it is taken only when nothing is pending, and
/// kept only if it holds exactly the replicated state (its checksum says so); else
/// `None` and it is tried again after the next shipment.
pub(super) fn scheduled(
    dest: &Dest,
    replica: &mut Replica,
    source: &dyn SnapshotSource,
    now: u64,
) -> Result<Option<Step>, Error> {
    let state = dest.state();
    if dest.pending_summary().is_some() || state.txid == 0 {
        return Ok(None);
    }
    // Its timestamp is that of its state: the time of the file that ends at its txid.
    let state_at = replica.known.state_time(state.txid).unwrap_or(now);
    let scratch = dest.scratch_path("snapshot.ltx.tmp");
    let SnapshotRead::Built(built) = read_snapshot(dest, source, state.txid, state_at, &scratch)?
    else {
        return Ok(None); // a writer is starting a new log: try again later
    };
    let same = built.as_ref().is_some_and(|b| {
        b.raw_checksum == state.post_checksum
            && b.commit == state.commit
            && b.page_size == state.page_size
    });
    if !same {
        let _ = std::fs::remove_file(&scratch);
        if dest.pending_summary().is_none() && built.is_some() {
            // Nothing was committed meanwhile, yet the database is not the replicated
            // state: close the difference with a full snapshot (a new txid).
            dest.request_snapshot(
                "the scheduled snapshot found the database differs from the replicated state",
            );
            return Ok(Some(Step::WaitUntil(now)));
        }
        return Ok(None); // a commit raced the read: ship it, then try again
    }
    let id = file_id(keys::SNAPSHOT_LEVEL, 1, state.txid);
    let size = std::fs::metadata(&scratch).map(|m| m.len()).unwrap_or(0);
    let put = replica
        .hold_lease(now)
        .and_then(|_| replica.put_file(id, &scratch));
    let _ = std::fs::remove_file(&scratch);
    put?;
    replica.known.insert(id, state_at, size);
    replica.last_snapshot_at = now;
    {
        let mut c = dest.counters();
        count_snapshot(&mut c, size, now);
        replica.count_requests(&mut c);
    }
    dest.update_progress(|p| p.snapshots += 1);
    Ok(Some(Step::Snapshot { txid: state.txid }))
}

/// What [`read_snapshot`] got.
enum SnapshotRead {
    /// The snapshot (`None` for a database without pages).
    Built(Option<BuiltSnapshot>),
    /// A writer was starting a new log: read again in a moment.
    LogStarting,
}

struct BuiltSnapshot {
    seq: u64,
    page_size: u32,
    commit: u32,
    raw_checksum: u64,
    table: Vec<u64>,
    position: Option<(wal::WalPosition, (u32, u32))>,
    /// The database file's stamp, when the snapshot holds nothing but that file (no
    /// committed frame in the log): the replica then continues from the file as it is, and
    /// a log that starts later needs no other snapshot while it still is (`shim::no_log`).
    file_stamp: Option<FileStamp>,
}

/// Reads the database's committed state through `source` into a level-9 LTX file at
/// `scratch` (see `build_snapshot`); `seq` of the result is the last spool record it holds.
fn read_snapshot(
    dest: &Dest,
    source: &dyn SnapshotSource,
    txid: u64,
    now: u64,
    scratch: &Path,
) -> Result<SnapshotRead, Error> {
    let mut built: Option<BuiltSnapshot> = None;
    // Everything captured before the read transaction begins is in what it reads when there
    // is no WAL then (it was all checkpointed); later captures may not be.
    let captured_before_read = dest.db.spool.last_seq();
    // Records let go of for this destination (it fell behind the spool's cap) were all
    // captured before the read: the snapshot holds them, as it holds those shipped.
    let let_go_before_read = dest.db.spool.shipped_by_of(dest.index);
    let mut log_starting = false;
    source.with_read_transaction(&dest.db.path, &mut |dbf, mut walf, index| {
        for _attempt in 0..5 {
            // Which captured commits the snapshot holds is decided by position: a commit
            // is captured as its last frame is written, a moment before SQLite publishes
            // it to readers, so the newest captured commit may be missing from what is
            // read below. Commits captured later that it does hold are dropped by
            // position when shipping.
            let captured: Vec<(u64, wal::WalPosition)> =
                dest.pending().iter().map(|r| (r.seq, r.end)).collect();
            let shipped_before = dest.state().shipped_seq.max(let_go_before_read);
            let before = read_wal_header(&mut walf)?;
            let index = index();
            if new_log_starting(before.as_ref(), index.as_ref()) {
                log_starting = true;
                return Ok(());
            }
            let lineage = dest.state().lineage;
            let snap = build_snapshot(dbf, &mut walf, index, (txid, lineage), now, scratch)?;
            // With no frame to read, the read transaction keeps checkpoints from writing the
            // file until it ends: its stamp now is that of what was read.
            let only_the_file = index.is_none_or(|i| i.mx_frame == 0);
            let snap = snap.map(|mut s| {
                s.file_stamp = only_the_file
                    .then(|| FileStamp::of(&dest.db.path))
                    .flatten();
                s
            });
            if read_wal_header(&mut walf)? == before {
                built = snap.map(|snap| {
                    let held = Captured {
                        records: &captured,
                        before_read: captured_before_read,
                        shipped_before,
                    };
                    held.place(snap, index)
                });
                return Ok(());
            }
        }
        Err(Error::Io(
            "the WAL kept restarting while a snapshot was read; will retry".into(),
        ))
    })?;
    Ok(if log_starting {
        SnapshotRead::LogStarting
    } else {
        SnapshotRead::Built(built)
    })
}

/// A log header on disk that the index does not know yet: a writer is starting a new log
/// (its salts need not follow the index's: a connection that never checkpointed picks
/// random ones). Until it publishes, positions cannot be ordered: better try again in a
/// moment than guess.
fn new_log_starting(
    header: Option<&[u8; wal::WAL_HEADER_SIZE]>,
    index: Option<&wal::WalIndexHeader>,
) -> bool {
    let (Some(h), Some(i)) = (header, index) else {
        return false;
    };
    // The salts as written, whether or not the header is complete yet (no validation).
    let disk_salt1 = u32::from_be_bytes(h[16..20].try_into().unwrap());
    let disk_salt2 = u32::from_be_bytes(h[20..24].try_into().unwrap());
    // A checkpoint that restarted the log bumps salt1 in the index and leaves the old
    // header on disk until the next writer: that header is older.
    let stale = i.mx_frame == 0 && i.salt1 == disk_salt1.wrapping_add(1);
    (disk_salt1, disk_salt2) != (i.salt1, i.salt2) && !stale
}

/// The spool's records when a snapshot was read: which of them it holds.
struct Captured<'a> {
    /// Pending records (sequence number, end position) just before the read.
    records: &'a [(u64, wal::WalPosition)],
    /// The last record captured before the read transaction began.
    before_read: u64,
    /// The last record shipped before the read.
    shipped_before: u64,
}

impl Captured<'_> {
    /// Gives `snap` its WAL position and the last spool record it holds.
    fn place(&self, mut snap: BuiltSnapshot, index: Option<wal::WalIndexHeader>) -> BuiltSnapshot {
        // With an index but no committed frame, the log's start is the position.
        let at = snap.position.map(|(p, _)| p).or_else(|| {
            index.map(|i| wal::WalPosition {
                salt1: i.salt1,
                salt2: i.salt2,
                frame: i.mx_frame,
            })
        });
        if snap.position.is_none() {
            snap.position = index.map(|i| (at.unwrap(), i.cksum));
        }
        snap.seq = self
            .records
            .iter()
            .take_while(|(seq, end)| match at {
                Some(p) => end.salts() != p.salts() || end.frame <= p.frame,
                // No WAL: what was captured before the read began is in the database
                // file; a WAL started since holds the rest.
                None => *seq <= self.before_read,
            })
            .map(|(seq, _)| *seq)
            .last()
            .unwrap_or(self.shipped_before);
        snap
    }
}

/// Encodes the database's committed state (db file overlaid with the WAL's committed frames)
/// into a level-9 LTX file at `out`. `None` for a database without pages.
fn build_snapshot(
    dbf: &mut dyn ReadAt,
    walf: &mut Option<&mut dyn ReadAt>,
    index: Option<wal::WalIndexHeader>,
    (txid, lineage): (u64, u64),
    now: u64,
    out: &Path,
) -> Result<Option<BuiltSnapshot>, Error> {
    let map = committed_pages(walf, index)?;
    let committed = map.as_ref().filter(|m| m.last_commit.is_some());
    let Some((page_size, commit)) = database_size(dbf, committed)? else {
        return Ok(None);
    };
    let position = committed.map(|m| (m.last_commit.unwrap(), m.last_commit_checksum));
    let header = Header {
        node_id: lineage,
        ..snapshot_header(page_size, commit, txid, now, position)
    };
    let file = crate::base::private_fs::create_fresh(out)
        .map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
    let mut enc = Encoder::new(BufWriter::with_capacity(1 << 20, file), header)?;
    let lock_pgno = ltx::lock_pgno(page_size);
    let mut table = vec![0u64; commit as usize];
    let mut raw = 0u64;
    let mut page = vec![0u8; page_size as usize];
    let latest: HashMap<u32, u32> = committed
        .map(|m| m.latest_frame.iter().map(|(a, b)| (*a, *b)).collect())
        .unwrap_or_default();
    for pgno in 1..=commit {
        if pgno == lock_pgno {
            continue;
        }
        read_committed_page(dbf, walf, latest.get(&pgno).copied(), pgno, &mut page)?;
        let sum = ltx::page_checksum(pgno, &page);
        table[pgno as usize - 1] = sum;
        raw ^= sum;
        enc.encode_page(pgno, &page)?;
    }
    let (w, _) = enc.finish(carried_checksum(raw))?;
    w.into_inner()
        .map_err(|e| Error::Io(format!("{}: {e}", out.display())))?
        .sync_all()?;
    Ok(Some(BuiltSnapshot {
        seq: 0, // placed by `Captured::place`
        page_size,
        commit,
        raw_checksum: raw,
        table,
        position,
        file_stamp: None,
    }))
}

/// The latest committed frame of each page in the WAL, if there is one.
fn committed_pages(
    walf: &mut Option<&mut dyn ReadAt>,
    index: Option<wal::WalIndexHeader>,
) -> Result<Option<wal::PageMap>, Error> {
    Ok(match (walf.as_mut(), index) {
        // SQLite's own view of what is committed: the WAL index. Frames up to its last
        // frame are committed even where the log's checksum chain is broken.
        (Some(w), Some(idx)) if idx.mx_frame > 0 => Some(map_indexed_pages(*w, &idx)?),
        (Some(_), Some(_)) => None,
        (Some(w), None) => Some(wal::map_committed_pages(&mut |o, b| w.read_at(o, b))?),
        (None, _) => None,
    })
}

/// Page size and size in pages of the committed database (after the WAL's last commit,
/// else per the database header); `None` for a database without pages.
fn database_size(
    dbf: &mut dyn ReadAt,
    committed: Option<&wal::PageMap>,
) -> Result<Option<(u32, u32)>, Error> {
    let mut db_header = [0u8; 100];
    let have_header = dbf.read_at(0, &mut db_header)? == 100;
    let (page_size, commit) = match committed {
        Some(m) => (
            m.header.expect("a commit implies a header").page_size,
            m.commit_size,
        ),
        None => match wal::DbHeader::parse(&db_header).filter(|_| have_header) {
            Some(h) => (h.page_size, h.page_count),
            None => return Ok(None),
        },
    };
    if commit == 0 || !wal::is_valid_page_size(page_size) {
        return Ok(None);
    }
    Ok(Some((page_size, commit)))
}

/// The header of a snapshot `1-<txid>` of `commit` pages, ending at `position` in the WAL.
fn snapshot_header(
    page_size: u32,
    commit: u32,
    txid: u64,
    now: u64,
    position: Option<(wal::WalPosition, (u32, u32))>,
) -> Header {
    Header {
        flags: LTX_FLAGS,
        page_size,
        commit,
        min_txid: 1,
        max_txid: txid,
        timestamp_ms: now,
        pre_apply_checksum: 0,
        wal_offset: position
            .map(|(p, _)| wal::frame_offset(page_size, p.frame))
            .unwrap_or(0),
        wal_size: if position.is_some() {
            wal::FRAME_HEADER_SIZE as u64 + page_size as u64
        } else {
            0
        },
        wal_salt1: position.map(|(p, _)| p.salt1).unwrap_or(0),
        wal_salt2: position.map(|(p, _)| p.salt2).unwrap_or(0),
        node_id: 0,
    }
}
