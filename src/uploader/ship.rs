//! Shipping the spool's pending transactions as level-0 LTX files, one per batch: when a
//! batch is due, which records go in it, encoding the latest version of each page, and
//! continuing the replicated database checksum. It owns the per-page checksums of the
//! replicated state; it must not read the live database (snapshots do).
//!
//! Txids count shipped files, as in Litestream: each level-0 file has min = max =
//! previous + 1.

use super::known::file_id;
use super::remote::Replica;
use super::types::{carried_checksum, next_txid, Step, LTX_FLAGS};
use crate::database::{Dest, UploaderState};
use crate::error::Error;
use crate::ltx::{self, Encoder, Header};
use crate::spool::{RecordMeta, SpoolState};
use crate::wal;
use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::Path;

/// Level-0 batches larger than this are split at a transaction boundary.
const MAX_BATCH_BYTES: u64 = 256 << 20;

#[derive(Default)]
pub(super) struct Shipper {
    /// Per-page checksums of the replicated state; `None` until known (then a snapshot).
    table: Option<Vec<u64>>,
    /// The schedule's last slot (see [`Shipper::due`] and [`Shipper::shipped`]); the next
    /// is an interval later.
    last_slot_ms: u64,
}

/// How early a periodic writer's commit may come and still count as after an idle period:
/// a hundredth of the interval.
fn jitter(interval: u64) -> u64 {
    interval / 100
}

/// How late a file may ship and keep the schedule's slot: a quarter of the interval.
fn lateness(interval: u64) -> u64 {
    interval / 4
}

/// A level-0 file encoded: the database checksum after it, and the pages it changes with
/// their new checksums.
struct Encoded {
    raw: u64,
    changes: Vec<(u32, u64)>,
}

impl Shipper {
    /// Whether the replicated state is known (else a snapshot has to be shipped first).
    pub fn knows_state(&self) -> bool {
        self.table.is_some()
    }

    /// The replicated state's page checksums, read back from the spool at start-up.
    pub fn resume(&mut self, table: Vec<u64>) {
        self.table = Some(table);
    }

    /// The chain continues from a snapshot shipped at `now`.
    pub fn restart(&mut self, table: Vec<u64>, now: u64) {
        self.table = Some(table);
        self.last_slot_ms = now;
    }

    /// When a batch whose first commit was captured at `first_captured_at` is due: at once
    /// when asked to flush or after an idle period (its first commit came no sooner than a
    /// hundredth of an interval before the schedule's next slot: that much early is the
    /// jitter of a writer that commits once an interval); while commits keep coming, at the
    /// next slot.
    ///
    /// The schedule runs from slots, not from when files shipped, and takes that jitter as
    /// idle: otherwise, when commits come once an interval, the uploader's delay in waking
    /// and the writer's jitter add up file after file (at 1 tx/s with a 1 s interval, lag
    /// grew from 2 to 10 ms over 20 commits).
    pub fn due(&self, now: u64, first_captured_at: u64, flush: bool, interval: u64) -> u64 {
        let next = self.next_slot(now, interval);
        if flush {
            now
        } else if first_captured_at.saturating_add(jitter(interval)) >= next {
            first_captured_at.min(now)
        } else {
            next
        }
    }

    /// The schedule's next slot, an interval after the last. A last slot ahead of `now` by
    /// more than the hundredth an early file can put it there comes from the clock stepping
    /// back: the next slot is then `now`.
    fn next_slot(&self, now: u64, interval: u64) -> u64 {
        if self.last_slot_ms > now.saturating_add(jitter(interval)) {
            now
        } else {
            self.last_slot_ms.saturating_add(interval)
        }
    }

    /// A file due at `due` shipped in a step that began at `now` (an upload's own time is
    /// not counted). A file due from a hundredth of an interval before the next slot (a
    /// writer's jitter) to a quarter after it (a commit or a step a little late) takes that
    /// slot: the schedule keeps its phase, and a writer slightly faster than the interval
    /// still gets one file an interval. Any other (after an idle period, a flush) starts
    /// the schedule again at its due time. A step more than a quarter interval late (an
    /// upload retried, a long step before it) moves the slot on by whole intervals to the
    /// first at most a quarter interval before `now`: no burst of files after a stall, and
    /// the phase kept.
    fn shipped(&mut self, due: u64, now: u64, interval: u64) {
        let next = self.next_slot(now, interval);
        let on_schedule = due.saturating_add(jitter(interval)) >= next
            && due <= next.saturating_add(lateness(interval));
        let slot = if on_schedule { next } else { due };
        let behind = now.saturating_sub(lateness(interval)).saturating_sub(slot);
        self.last_slot_ms = slot + behind.div_ceil(interval.max(1)) * interval;
    }

    /// Ships the next batch of `pending` as the next txid in a step that began at `now`;
    /// the batch was due at `due` on the schedule ([`Self::due`]; the request budget may
    /// have held it longer).
    pub fn ship(
        &mut self,
        dest: &Dest,
        replica: &mut Replica,
        now: u64,
        due: u64,
        pending: &[RecordMeta],
    ) -> Result<Step, Error> {
        // `pending` was taken before this look: had records it lacks been let go of
        // first, it would start past them, and shipping it would leave a hole.
        if dest.db.spool.is_let_go(dest.index) {
            dest.request_snapshot(super::types::LET_GO);
            return Ok(Step::WaitUntil(now));
        }
        let state = dest.state();
        if skip_covered(dest, &state, pending)? {
            return Ok(Step::WaitUntil(now));
        }
        let Some(batch) = take_batch(dest, &state, pending) else {
            return Ok(Step::WaitUntil(now));
        };
        let last = *batch.last().expect("pending is not empty");
        let commit = last.commit_size;
        let table = self.table.as_ref().expect("checked by try_step");
        let txid = next_txid(state.txid)?;
        let scratch = dest.scratch_path("batch.ltx.tmp");
        let encoded = encode_batch(dest, table, &state, &batch, txid, &scratch)?;
        let size = upload(replica, txid, last.captured_at_ms, &scratch, now)?;
        let changed = self.apply(&encoded, commit, state.page_size);
        let table = self.table.as_ref().expect("checked by try_step");
        dest.store_page_checksums(table, &changed, false)?;
        let new_state = SpoolState {
            replica_url: dest.config().url(),
            txid,
            post_checksum: encoded.raw,
            page_size: state.page_size,
            commit,
            shipped_seq: last.seq,
            position: Some((last.end, last.end_cksum)),
            shipped_at_ms: now,
            lineage: state.lineage,
        };
        dest.mark_shipped(new_state)?;
        crate::fault::point("upload.after_state");
        replica.max_txid = txid;
        self.shipped(due, now, dest.config().sync_interval.as_millis() as u64);
        {
            let mut c = dest.counters();
            // Counters first: replica_sync() returns as soon as progress is published.
            c.uploads += 1;
            c.bytes_uploaded += size;
            c.last_upload_at_ms = Some(now);
            c.state = UploaderState::Replicating;
            replica.count_requests(&mut c);
        }
        // Commits captured while this batch was uploading count too: their waiters' flush
        // requests must survive this one (else they wait out a whole sync interval).
        let more = pending.len() > batch.len() || dest.db.spool.last_seq() > last.seq;
        publish(dest, txid, last.seq, more);
        Ok(Step::Shipped { txid })
    }

    /// Brings the page checksums to the state after the shipped file; the pages changed.
    fn apply(&mut self, encoded: &Encoded, commit: u32, page_size: u32) -> Vec<u32> {
        let table = self.table.as_mut().expect("checked by try_step");
        table.resize(commit as usize, 0);
        for &(pgno, sum) in &encoded.changes {
            if let Some(slot) = table.get_mut(pgno as usize - 1) {
                *slot = sum;
            }
        }
        let lock_pgno = ltx::lock_pgno(page_size);
        if lock_pgno <= commit {
            table[lock_pgno as usize - 1] = 0;
        }
        encoded.changes.iter().map(|c| c.0).collect()
    }
}

/// Commits captured while a snapshot was being read can already be in it; so can a commit
/// captured twice. They end at or before the replicated WAL position: marks them shipped
/// (true) so that the next step looks at what follows.
fn skip_covered(dest: &Dest, state: &SpoolState, pending: &[RecordMeta]) -> Result<bool, Error> {
    let covered = pending
        .iter()
        .take_while(|r| {
            state
                .position
                .is_some_and(|(p, _)| r.end.salts() == p.salts() && r.end.frame <= p.frame)
        })
        .count();
    if covered == 0 {
        return Ok(false);
    }
    let seq = pending[covered - 1].seq;
    dest.mark_shipped(SpoolState {
        shipped_seq: seq,
        ..state.clone()
    })?;
    dest.update_progress(|p| p.shipped_seq = seq);
    Ok(true)
}

/// The records of the next batch, up to [`MAX_BATCH_BYTES`] (at least one); `None` when a
/// record changes the page size (then a snapshot is asked for instead).
fn take_batch<'a>(
    dest: &Dest,
    state: &SpoolState,
    pending: &'a [RecordMeta],
) -> Option<Vec<&'a RecordMeta>> {
    let mut bytes = 0u64;
    let mut batch = Vec::new();
    for r in pending {
        let len = r.pgnos.len() as u64 * r.page_size as u64;
        if !batch.is_empty() && bytes + len > MAX_BATCH_BYTES {
            break;
        }
        if r.page_size != state.page_size {
            dest.request_snapshot(&format!(
                "page size changed from {} to {}",
                state.page_size, r.page_size
            ));
            return None;
        }
        bytes += len;
        batch.push(r);
    }
    Some(batch)
}

/// Writes the batch as the level-0 file `txid` at `scratch`, continuing the checksum of
/// the state `table` describes. No fsync (it was one per shipment, before the upload): the
/// file is uploaded from there, and a local copy torn by a crash fails its checksum at the
/// level-1 compaction and is downloaded instead.
fn encode_batch(
    dest: &Dest,
    table: &[u64],
    state: &SpoolState,
    batch: &[&RecordMeta],
    txid: u64,
    scratch: &Path,
) -> Result<Encoded, Error> {
    let last = batch.last().expect("pending is not empty");
    let commit = last.commit_size;
    let latest = latest_pages(batch, commit);
    let file = crate::base::private_fs::create_fresh(scratch)
        .map_err(|e| Error::Io(format!("{}: {e}", scratch.display())))?;
    let header = batch_header(state, last, txid);
    let mut enc = Encoder::new(BufWriter::with_capacity(1 << 20, file), header)?;
    let mut raw = state.post_checksum;
    let mut changes: Vec<(u32, u64)> = Vec::with_capacity(latest.len());
    let mut buf = Vec::new();
    let lock_pgno = ltx::lock_pgno(state.page_size);
    for (&pgno, &(ri, ei)) in &latest {
        if pgno == lock_pgno {
            continue;
        }
        dest.db.spool.read_page(batch[ri], ei, &mut buf)?;
        let sum = ltx::page_checksum(pgno, &buf);
        raw ^= table.get(pgno as usize - 1).copied().unwrap_or(0) ^ sum;
        changes.push((pgno, sum));
        enc.encode_page(pgno, &buf)?;
    }
    // Pages past the old end that no frame wrote read back as zeros after a restore.
    let zero = vec![0u8; state.page_size as usize];
    for pgno in (table.len() as u32 + 1)..=commit {
        if pgno != lock_pgno && !latest.contains_key(&pgno) {
            let sum = ltx::page_checksum(pgno, &zero);
            raw ^= sum;
            changes.push((pgno, sum));
        }
    }
    // A shrinking database drops its tail pages from the checksum.
    for pgno in (commit + 1)..=(table.len() as u32) {
        raw ^= table[pgno as usize - 1];
    }
    let (w, _trailer) = enc.finish(carried_checksum(raw))?;
    w.into_inner()
        .map_err(|e| Error::Io(format!("{}: {e}", scratch.display())))?;
    Ok(Encoded { raw, changes })
}

/// Where the latest version of each page up to `commit` is: (record, entry). Later
/// records, and later entries, overwrite.
fn latest_pages(batch: &[&RecordMeta], commit: u32) -> BTreeMap<u32, (usize, usize)> {
    let mut latest: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    for (ri, r) in batch.iter().enumerate() {
        for (ei, &pgno) in r.pgnos.iter().enumerate() {
            latest.insert(pgno, (ri, ei));
        }
    }
    latest.retain(|&pgno, _| pgno <= commit);
    latest
}

fn batch_header(state: &SpoolState, last: &RecordMeta, txid: u64) -> Header {
    Header {
        flags: LTX_FLAGS,
        page_size: state.page_size,
        commit: last.commit_size,
        min_txid: txid,
        max_txid: txid,
        timestamp_ms: last.captured_at_ms,
        pre_apply_checksum: carried_checksum(state.post_checksum),
        wal_offset: wal::frame_offset(state.page_size, last.end.frame),
        wal_size: wal::FRAME_HEADER_SIZE as u64 + state.page_size as u64,
        wal_salt1: last.end.salt1,
        wal_salt2: last.end.salt2,
        node_id: state.lineage,
    }
}

/// Uploads the level-0 file `txid` at `scratch` under the lease, keeping a local copy for
/// the level-1 compaction (which would otherwise download it again); its size.
fn upload(
    replica: &mut Replica,
    txid: u64,
    captured_at_ms: u64,
    scratch: &Path,
    now: u64,
) -> Result<u64, Error> {
    let id = file_id(0, txid, txid);
    let size = std::fs::metadata(scratch).map(|m| m.len()).unwrap_or(0);
    if let Err(e) = replica.hold_lease(now) {
        let _ = std::fs::remove_file(scratch);
        return Err(e);
    }
    replica.put_file(id, scratch)?;
    crate::fault::point("upload.after_put");
    replica.known.insert(id, captured_at_ms, size);
    replica.cache.keep(id, scratch, size);
    Ok(size)
}

/// Publishes the shipment to `replica_sync()` waiters and status.
fn publish(dest: &Dest, txid: u64, seq: u64, more: bool) {
    dest.update_progress(|p| {
        p.txid = txid;
        p.shipped_seq = seq;
        // In the same update as the txid: replica_sync() returns on it, and status read
        // right after must not show the backoff of an error that is gone.
        p.last_error = None;
        p.retries = 0;
        p.next_retry_at_ms = None;
        if !more {
            p.flush_requested = false;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::Shipper;

    const INTERVAL: u64 = 1000;
    /// How late the uploader runs after the time it waited for (its wake-up, the step).
    const LATE: u64 = 1;

    /// A shipper whose schedule's last slot is `at`.
    fn slotted_at(at: u64) -> Shipper {
        let mut s = Shipper::default();
        s.shipped(at, at, INTERVAL);
        s
    }

    /// How long after commit `k` is captured the uploader, woken by it, looks: 0 to 2 ms.
    fn woken_after(k: usize) -> u64 {
        [2, 0, 1][k % 3]
    }

    /// Ships commits made at `commits` (ms, ascending, each captured as it is made) with an
    /// uploader that takes every pending commit whenever it runs: the lag of each commit
    /// (its shipment's time minus its own) and the shipment times.
    fn run(commits: &[u64]) -> (Vec<u64>, Vec<u64>) {
        let mut s = Shipper::default();
        let (mut lags, mut ships) = (Vec::new(), Vec::new());
        let mut next = 0;
        while next < commits.len() {
            let first = commits[next];
            let mut now = first + woken_after(next);
            let due = s.due(now, first, false, INTERVAL);
            if now < due {
                now = due + LATE;
            }
            s.shipped(due, now, INTERVAL);
            ships.push(now);
            while next < commits.len() && commits[next] <= now {
                lags.push(now - commits[next]);
                next += 1;
            }
        }
        (lags, ships)
    }

    #[test]
    fn commits_once_an_interval_ship_without_their_lag_adding_up() {
        // A writer pacing itself at one commit an interval, a few ms early or late.
        let commits: Vec<u64> = (0..200u64)
            .map(|k| 10_000 + k * INTERVAL + [3, 0, 5, 1, 4][k as usize % 5])
            .collect();
        let (lags, _) = run(&commits);
        assert_eq!(lags.len(), 200);
        // At most the uploader's own delay: none of it carried over from earlier files.
        assert!(lags.iter().all(|&l| l <= 2), "lags {lags:?}");
    }

    #[test]
    fn a_commit_after_an_idle_interval_ships_at_once() {
        let (lags, _) = run(&[10_000, 10_000 + 5 * INTERVAL, 10_000 + 5 * INTERVAL + 1500]);
        assert_eq!(lags, vec![woken_after(0), woken_after(1), woken_after(2)]);
    }

    #[test]
    fn commits_more_often_than_once_an_interval_wait_for_it() {
        let commits: Vec<u64> = (0..100u64).map(|k| 10_000 + k * 900).collect();
        let (_, ships) = run(&commits);
        assert!(
            ships.windows(2).all(|w| w[1] - w[0] >= INTERVAL - 2),
            "{ships:?}"
        );
        // Slightly faster, within the jitter taken as idle: still one file an interval.
        let commits: Vec<u64> = (0..1000u64).map(|k| 10_000 + k * 995).collect();
        let (_, ships) = run(&commits);
        // (The first two ship at once, within the jitter; the bound is exact here.)
        let span = ships[ships.len() - 1] - ships[0];
        let most = span / INTERVAL + 2;
        assert!(
            ships.len() as u64 <= most,
            "{} files in {span} ms",
            ships.len()
        );
    }

    #[test]
    fn idle_is_an_interval_after_the_last_slot_less_a_hundredth() {
        let s = slotted_at(10_000);
        assert_eq!(s.due(10_990, 10_990, false, INTERVAL), 10_990);
        assert_eq!(s.due(10_989, 10_989, false, INTERVAL), 11_000);
    }

    #[test]
    fn a_firehose_ships_once_an_interval() {
        let commits: Vec<u64> = (0..60_000).map(|k| 10_000 + k).collect();
        let (_, ships) = run(&commits);
        // The first at once, then one an interval: 60 s of commits, 60 or 61 files, none
        // closer to the one before than an interval less the uploader's own delay.
        assert!((60..=61).contains(&ships.len()), "{} files", ships.len());
        assert!(
            ships.windows(2).all(|w| w[1] - w[0] >= INTERVAL - 2),
            "{ships:?}"
        );
        // On a schedule that does not drift with the uploader's delays.
        assert_eq!(ships[60] - ships[1], 59 * INTERVAL);
    }

    #[test]
    fn a_late_shipment_moves_the_schedule_on_without_a_burst() {
        let mut s = slotted_at(10_000);
        // Due at 11 000, shipped 5 s late (an upload retried).
        let due = s.due(11_000, 10_500, false, INTERVAL);
        assert_eq!(due, 11_000);
        s.shipped(due, 16_000, INTERVAL);
        // The next is due at the schedule's first slot at least three quarters of an
        // interval after it, whether its first commit came after the stall or waited
        // through it.
        assert_eq!(s.due(16_001, 16_001, false, INTERVAL), 17_000);
        assert_eq!(s.due(16_001, 15_000, false, INTERVAL), 17_000);
        // A flush goes at once whatever the schedule.
        assert_eq!(s.due(16_002, 16_001, true, INTERVAL), 16_002);
    }

    #[test]
    fn a_late_commit_or_step_keeps_the_phase_of_the_schedule() {
        // A writer once an interval whose 5th commit comes 200 ms late.
        let commits: Vec<u64> = (0..50u64)
            .map(|k| 10_000 + k * INTERVAL + if k == 5 { 200 } else { 0 })
            .collect();
        let (lags, _) = run(&commits);
        assert_eq!(lags.len(), 50);
        assert!(lags.iter().all(|&l| l <= 2), "lags {lags:?}");
        // A step 600 ms late: the next slot is skipped, then the writer ships at once again.
        let mut s = slotted_at(10_000);
        assert_eq!(s.due(11_600, 11_000, false, INTERVAL), 11_000);
        s.shipped(11_000, 11_600, INTERVAL);
        assert_eq!(s.due(12_001, 12_000, false, INTERVAL), 13_000);
        s.shipped(13_000, 13_001, INTERVAL);
        assert_eq!(s.due(14_001, 14_000, false, INTERVAL), 14_000);
    }

    #[test]
    fn a_flush_starts_the_schedule_again_unless_it_falls_on_a_slot() {
        let mut s = slotted_at(10_000);
        s.shipped(10_300, 10_300, INTERVAL);
        assert_eq!(s.due(10_400, 10_350, false, INTERVAL), 11_300);
        s.shipped(11_300, 11_300, INTERVAL);
        s.shipped(12_295, 12_295, INTERVAL);
        assert_eq!(s.due(12_400, 12_350, false, INTERVAL), 13_300);
    }

    #[test]
    fn a_clock_stepped_back_does_not_hold_files_back() {
        let mut s = slotted_at(20_000);
        assert_eq!(s.due(11_000, 10_000, false, INTERVAL), 11_000);
        s.shipped(11_000, 11_000, INTERVAL);
        assert_eq!(s.due(11_500, 11_400, false, INTERVAL), 12_000);
    }
}
