//! `Spool`, the spool this process owns once it is open: the records pending shipment (in
//! memory, with their pages in segments), what shipping them reclaims, and the marker files
//! that outlive a crash (`generation`, `gap`). It must not parse records or recover a spool;
//! appending lives with the record writer, opening with recovery.

use super::error::{io, SpoolError};
use super::layout;
use super::pending_copy::{PendingCopy, PENDING_CHUNK};
use super::record::RecordMeta;
use super::segment::{Segment, SEGMENT_ROLL_BYTES};
use super::state::{self, SpoolState};
use super::write_behind::FollowUp;
use crate::base::child_release::ReleasedInChildren;
use crate::base::held_dir::HeldDir;
use crate::base::lock::lock;
use crate::base::private_fs::{self, Modes};
use crate::wal::WalPosition;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub(super) struct Inner {
    /// Each destination's replicated position, in the order of [`Spool::dests`].
    pub states: Vec<SpoolState>,
    /// Per destination, the last record let go of while it had not shipped it (0: none):
    /// a destination that fell behind the spool's cap is owed a snapshot, and the records
    /// it lacked are no longer kept for it (see `make_room`).
    pub let_go_through: Vec<u64>,
    pub pending: Vec<RecordMeta>,
    pub pending_bytes: u64,
    /// Transactions held by every record taken in since the spool was opened: the pending
    /// records of a destination hold this less the first one's `txns_before`.
    pub txns_through: u64,
    pub next_seq: u64,
    pub segment: Option<Segment>,
    pub overflowed: bool,
    /// A batch of records failed after its commits were taken off the capture queue (see
    /// [`super::RecordBatch::refuse_after_failure`]): every record is refused until the
    /// capture that failed has owed its snapshot ([`Spool::stop_refusing`]), so none lands
    /// beyond the ones missing.
    pub refusing: bool,
}

/// Where every destination's replicated state ends, with nothing pending: one that shipped
/// a snapshot may end further than the records (the snapshot held commits capture had not
/// taken yet), and capture must go on from where the others end, or they would never get
/// those commits (the snapshot's destination drops them by position when shipping). Ends
/// in different logs cannot be ordered: `None`, so capture owes a snapshot instead.
/// A destination that has shipped nothing yet is left out: its first snapshot holds
/// whatever capture finds.
fn earliest_position(states: &[SpoolState]) -> Option<(WalPosition, (u32, u32))> {
    let mut shipped = states.iter().filter(|st| st.txid != 0);
    let first = shipped.next()?.position?;
    let mut earliest = first;
    for st in shipped {
        let end = st.position?;
        if end.0.salts() != first.0.salts() {
            return None;
        }
        if end.0.frame < earliest.0.frame {
            earliest = end;
        }
    }
    Some(earliest)
}

impl Inner {
    /// The last record destination `d` needs no more: shipped, or let go of.
    pub fn shipped_by(&self, d: usize) -> u64 {
        self.states[d].shipped_seq.max(self.let_go_through[d])
    }

    /// The last record no destination needs any more.
    pub fn shipped_by_all(&self) -> u64 {
        (0..self.states.len())
            .map(|d| self.shipped_by(d))
            .min()
            .unwrap_or_default()
    }

    /// The records destination `d` still needs, oldest first.
    pub fn needed_by(&self, d: usize) -> &[RecordMeta] {
        self.after(self.shipped_by(d))
    }

    /// Transactions held by the pending records from `first` on.
    fn txns_after(&self, first: &RecordMeta) -> usize {
        self.txns_through.saturating_sub(first.txns_before) as usize
    }

    /// Numbers the records read back at open (each counts one transaction: how many a
    /// record holds is not on disk).
    pub fn count_recovered(pending: &mut [RecordMeta]) -> u64 {
        for (i, r) in pending.iter_mut().enumerate() {
            r.txns_before = i as u64;
        }
        pending.len() as u64
    }

    /// The pending records after `seq`.
    fn after(&self, seq: u64) -> &[RecordMeta] {
        &self.pending[self.pending.partition_point(|r| r.seq <= seq)..]
    }

    /// The bytes of the records destination `d` still needs.
    pub fn pending_bytes_for(&self, d: usize) -> u64 {
        self.needed_by(d).iter().map(|r| r.len()).sum()
    }

    /// How many records the destination furthest ahead has not shipped (a destination
    /// that lags keeps the others' wake-ups as they were). On the commit path: with one
    /// destination, every pending record is its.
    pub fn pending_for_the_furthest(&self) -> usize {
        if self.states.len() == 1 {
            return self.pending.len();
        }
        let furthest = (0..self.states.len()).map(|d| self.shipped_by(d)).max();
        self.after(furthest.unwrap_or_default()).len()
    }

    /// Drops the records no destination needs from memory (their segments go at the next
    /// shipment).
    pub fn forget_shipped(&mut self) {
        let floor = self.shipped_by_all();
        self.pending.retain(|r| r.seq > floor);
        self.pending_bytes = self.pending.iter().map(|r| r.len()).sum();
    }
}

pub struct Spool {
    /// The spool directory, held open since it was checked: every file is reached through
    /// it, so a directory swapped in at its path later is never written.
    pub(super) dir: HeldDir,
    /// Its `seg/`, held the same way.
    pub(super) seg: HeldDir,
    pub(super) cap_bytes: u64,
    /// What every file and directory this spool creates gets (no wider than the database).
    pub(super) modes: Modes,
    pub(super) inner: Mutex<Inner>,
    /// Where each destination keeps its own files (`state`, `pages.crc`, `gap`, `requests`,
    /// `cache/`): the first one in the spool directory itself, as before a database had
    /// several, each other one in `dest/<name>/` (see `destinations`).
    pub(super) dests: Vec<HeldDir>,
    /// This spool's lasting id, read (or made) once: the uploader threads of its several
    /// destinations ask for it at the same time, and must get the same one.
    pub(super) id: std::sync::OnceLock<String>,
    /// The `generation` file, opened on first use (shared with the writer thread).
    pub(super) generation: Mutex<Option<Arc<File>>>,
    /// Held (an exclusive `flock`) for as long as this process owns the spool; a forked
    /// child gives its share up (the lock would outlive the parent in it).
    pub(super) _lock: ReleasedInChildren,
}

impl Spool {
    /// The replicated state as the owning process last wrote it, read without opening (or
    /// locking) the spool: another process waits on it for its synchronous commits.
    pub fn read_state_file(dir: &Path) -> Option<SpoolState> {
        state::read_state_file(dir)
    }

    /// The request ledger as the owning process last stored it, read without opening the
    /// spool (for the status of a process that stands by).
    pub fn read_request_ledger_file(dir: &Path) -> Option<String> {
        use std::io::Read;
        let dir = HeldDir::existing(dir).ok()?;
        let mut text = String::new();
        let file = private_fs::open_read(&dir.at("requests")).ok()?;
        // One short line: anything longer is not a ledger.
        file.take(512).read_to_string(&mut text).ok()?;
        Some(text)
    }

    /// The directory destination `d` (named `name`) of the spool in `dir` keeps its files
    /// in, for reading them without opening the spool.
    pub fn dest_dir_for(dir: &Path, d: usize, name: &str) -> PathBuf {
        super::destinations::dir_of(dir, d, name)
    }

    /// Records, before the spool of the database at `db_path` is opened, that its
    /// destination `d` (named `name`) is owed a snapshot for `reason`; nothing when that
    /// destination has no folder there yet (its first upload is a snapshot anyway).
    pub fn owe_snapshot_before_open(db_path: &Path, d: usize, name: &str, reason: &str) {
        let dir = super::destinations::dir_of(&layout::dir_for(db_path), d, name);
        let Ok(held) = HeldDir::existing(&dir) else {
            return;
        };
        if let Err(e) = super::destinations::write_gap(&held, Modes::beside(db_path), reason, true)
        {
            crate::base::log::error(&e.to_string());
        }
    }

    /// A follower promoted to writer continues its replica's history: the spool of
    /// `db_path`, which must not exist yet, starts with the replica's position (`state`:
    /// txid, size, history id), so the first upload continues the replica's txids and its
    /// history (a snapshot, since no page checksums are known) rather than starting anew.
    pub fn continue_history_before_open(
        db_path: &Path,
        state: &SpoolState,
    ) -> Result<(), SpoolError> {
        let path = layout::dir_for(db_path);
        if path.exists() {
            return Err(SpoolError::Refused {
                path: path.clone(),
                reason: format!(
                    "{} already exists (the spool of an earlier writer here?): remove it to promote this copy",
                    path.display()
                ),
            });
        }
        let modes = Modes::beside(db_path);
        let dir =
            HeldDir::ensure(&path, modes).map_err(|e| super::error::dir_error(&path, None, e))?;
        state::write_state(&dir, modes, state)?;
        let why = "a follower was promoted to writer: its first upload continues the replica's txids and history";
        super::destinations::write_gap(&dir, modes, why, true)
    }

    /// The process id the spool's lock file names (the process that replicates it).
    pub fn owner_pid(dir: &Path) -> Option<u32> {
        layout::owner_pid(dir)
    }

    /// A name for this spool that outlives processes (made once, kept in the file `id`):
    /// the replica's lease is held by a spool, so that a process restarting on the same
    /// volume continues at once while another host's spool is fenced out.
    pub fn instance_id(&self) -> String {
        self.id
            .get_or_init(|| layout::instance_id(&self.dir, self.modes))
            .clone()
    }

    /// The spool directory as held (its `fstat`, files reached through it).
    pub fn directory(&self) -> &HeldDir {
        &self.dir
    }

    /// The modes of what is created in the spool (the uploader's cache and scratch files).
    pub fn modes(&self) -> Modes {
        self.modes
    }

    /// The sidecar directory of a database: `/x/app.db` → `/x/app.db-replica`.
    pub fn dir_for(db_path: &Path) -> PathBuf {
        layout::dir_for(db_path)
    }

    /// The spool directory's path, for messages.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Hands the buffer to the writer thread now if it holds 256 KiB or more, unless a write
    /// is still out: a checkpoint is running, and the restart of the log that may follow it
    /// then has nothing to hand over (waking that thread costs the committing thread tens of
    /// µs). Fewer records are left to the restart, which hands them over with the
    /// generation, as before.
    pub fn write_behind_now(&self) {
        if let Some(seg) = lock(&self.inner).segment.as_mut() {
            seg.write_behind_from(super::segment::EARLY_WRITE_BEHIND_BYTES);
        }
    }

    /// Writes out records kept in memory. Needed before SQLite may overwrite or remove the
    /// WAL frames they came from (a restart, a truncation, a deletion): until then a crash
    /// loses nothing, because the next open captures them again from the WAL.
    pub fn flush(&self) -> Result<(), SpoolError> {
        crate::fault::point("spool.flush");
        match lock(&self.inner).segment.as_mut() {
            Some(seg) => seg.write_out(),
            None => Ok(()),
        }
    }

    /// Records some destination has not shipped yet, oldest first.
    pub fn pending(&self) -> Vec<RecordMeta> {
        lock(&self.inner).pending.clone()
    }

    /// Records destination `d` has not shipped yet, oldest first: copied a chunk per hold of
    /// the spool's lock (see `PendingCopy`).
    pub fn pending_of(&self, d: usize) -> Vec<RecordMeta> {
        let mut copy = PendingCopy::default();
        loop {
            let done = {
                let inner = lock(&self.inner);
                copy.step(inner.shipped_by(d), inner.needed_by(d), PENDING_CHUNK)
            };
            if done {
                return copy.records;
            }
            // A waiter gets the lock before the next chunk (letting it go hands nothing over).
            std::thread::yield_now();
        }
    }

    /// How many records the destination furthest ahead has not shipped (see
    /// [`Inner::pending_for_the_furthest`]).
    pub fn pending_for_the_furthest(&self) -> usize {
        lock(&self.inner).pending_for_the_furthest()
    }

    /// How many records some destination has not shipped and when the oldest was captured,
    /// without copying them.
    pub fn pending_summary(&self) -> Option<(usize, u64)> {
        let inner = lock(&self.inner);
        inner
            .pending
            .first()
            .map(|r| (inner.txns_after(r), r.captured_at_ms))
    }

    /// [`Self::pending_summary`] of what destination `d` has not shipped.
    pub fn pending_summary_of(&self, d: usize) -> Option<(usize, u64)> {
        let inner = lock(&self.inner);
        let needed = inner.needed_by(d);
        needed
            .first()
            .map(|r| (inner.txns_after(r), r.captured_at_ms))
    }

    pub fn pending_bytes(&self) -> u64 {
        lock(&self.inner).pending_bytes
    }

    /// The bytes of the records destination `d` has not shipped.
    pub fn pending_bytes_of(&self, d: usize) -> u64 {
        lock(&self.inner).pending_bytes_for(d)
    }

    /// Whether records destination `d` had not shipped were let go of (it fell behind the
    /// spool's cap while others went on): it is owed a snapshot.
    pub fn is_let_go(&self, d: usize) -> bool {
        let inner = lock(&self.inner);
        inner.let_go_through[d] > inner.states[d].shipped_seq
    }

    pub fn is_overflowed(&self) -> bool {
        lock(&self.inner).overflowed
    }

    /// Sequence number of the newest record appended (or shipped); 0 if none ever.
    pub fn last_seq(&self) -> u64 {
        lock(&self.inner).next_seq - 1
    }

    /// The first destination's replicated position.
    pub fn state(&self) -> SpoolState {
        self.state_of(0)
    }

    /// Destination `d`'s replicated position.
    pub fn state_of(&self, d: usize) -> SpoolState {
        lock(&self.inner).states[d].clone()
    }

    /// How many destinations this spool feeds.
    pub fn destinations(&self) -> usize {
        self.dests.len()
    }

    /// The WAL position everything spooled so far ends at.
    pub fn last_position(&self) -> Option<(WalPosition, (u32, u32))> {
        let inner = lock(&self.inner);
        match inner.pending.last() {
            Some(r) => Some((r.end, r.end_cksum)),
            None => earliest_position(&inner.states),
        }
    }

    /// Reads page `i` of a record into `buf`.
    pub fn read_page(
        &self,
        rec: &RecordMeta,
        i: usize,
        buf: &mut Vec<u8>,
    ) -> Result<(), SpoolError> {
        let name = layout::segment_name(rec.segment);
        let path = self.seg.shown(&name);
        let offset = rec.page_offset(i);
        buf.resize(rec.page_size as usize, 0);
        let several = self.dests.len() > 1;
        let gone = || {
            SpoolError::Io(format!(
                "record {} is no longer in the spool (every destination that needs it was let go of)",
                rec.seq
            ))
        };
        let file = {
            let mut inner = lock(&self.inner);
            // A record no destination needs any more may be reclaimed under a reader on
            // another destination's thread: its segment reset and written over. (With one
            // destination, only the reader's own thread reclaims.)
            if several && rec.seq <= inner.shipped_by_all() {
                return Err(gone());
            }
            if let Some(s) = inner.segment.as_mut().filter(|s| s.id == rec.segment) {
                if offset >= s.flushed {
                    s.settle()?;
                }
            }
            match &inner.segment {
                Some(s) if s.id == rec.segment && offset >= s.flushed => {
                    return s.read_buffered(offset, buf, rec.seq);
                }
                Some(s) if s.id == rec.segment => {
                    s.file.try_clone().map_err(|e| io("opening", &path, e))?
                }
                _ => private_fs::open_read(&self.seg.at(&name))
                    .map_err(|e| io("opening", &path, e))?,
            }
        };
        file.read_exact_at(buf, offset)
            .map_err(|e| io("reading", &path, e))?;
        // Still needed after the read: nothing reclaimed it meanwhile, so what was read is
        // the record's (a segment is only reset once nothing in it is needed).
        match several && rec.seq <= lock(&self.inner).shipped_by_all() {
            true => Err(gone()),
            false => Ok(()),
        }
    }

    /// Records the first destination's new state (see [`Self::mark_shipped_of`]).
    pub fn mark_shipped(&self, state: SpoolState) -> Result<(), SpoolError> {
        self.mark_shipped_of(0, state)
    }

    /// Records destination `d`'s new state: every record up to `state.shipped_seq` is in
    /// its replica (or subsumed by a snapshot); the space of records every destination has
    /// can be reclaimed.
    pub fn mark_shipped_of(&self, d: usize, state: SpoolState) -> Result<(), SpoolError> {
        state::write_state(&self.dests[d], self.modes, &state)?;
        let mut inner = lock(&self.inner);
        inner.states[d] = state;
        let shipped_by_all = inner.shipped_by_all();
        if shipped_by_all >= inner.next_seq - 1 && inner.overflowed {
            inner.overflowed = false;
            let _ = std::fs::remove_file(self.dir.at("overflow"));
        }
        inner.forget_shipped();
        // Segments entirely before the first pending record can go. When nothing is
        // pending, the current segment is rewritten from its start instead of being
        // replaced: overwriting blocks the file already has is much cheaper on the commit
        // path than allocating new ones (recovery stops at the first record whose sequence
        // number does not follow, so the stale tail is never read as records).
        let keep_from = inner.pending.first().map(|r| r.segment);
        let current = inner.segment.as_ref().map(|s| s.id);
        if keep_from.is_none() {
            match inner.segment.as_mut() {
                // Shipped before they were ever written out: they never touch the disk.
                Some(seg) if seg.len < SEGMENT_ROLL_BYTES => seg.reset(),
                Some(seg) => {
                    let _ = seg.settle(); // nothing written to a file about to be removed
                    inner.segment = None;
                }
                None => {}
            }
        }
        let keep_current = keep_from.is_none() && inner.segment.is_some();
        // A segment a commit starts once the lock is released is named after a sequence
        // number from here on: it is never obsolete.
        let started_later = inner.next_seq;
        drop(inner);
        for id in layout::segment_ids(&self.seg)? {
            let obsolete = match keep_from {
                Some(first) => id < first,
                None => id < started_later && !(keep_current && Some(id) == current),
            };
            if obsolete {
                let _ = std::fs::remove_file(self.seg.at(&layout::segment_name(id)));
            }
        }
        Ok(())
    }

    /// Loads the per-page checksums of destination `d`'s replicated state (see the
    /// module docs).
    pub fn load_page_checksums_of(&self, d: usize) -> Result<Vec<u64>, SpoolError> {
        state::load_page_checksums(&self.dests[d])
    }

    /// Writes the changed entries of destination `d`'s per-page checksum table, and its
    /// new length.
    pub fn store_page_checksums_of(
        &self,
        d: usize,
        table: &[u64],
        changed: &[u32],
        rewrite_all: bool,
    ) -> Result<(), SpoolError> {
        state::store_page_checksums(&self.dests[d], self.modes, table, changed, rewrite_all)
    }

    /// Records that every commit of earlier WAL generations is in the spool (or shipped) and
    /// the log now starts over with these salts: after a crash, the commits of that new
    /// generation can be captured again from the WAL without a gap. Written after `flush`:
    /// one write in place of a fixed-size line that carries its own checksum (a temporary
    /// file renamed over the old one cost ten times more, most of it the rename), so a torn
    /// write reads back as no generation at all.
    pub fn set_generation(&self, salts: (u32, u32)) -> Result<(), SpoolError> {
        let line = self.generation_line(salts, self.last_seq());
        let file = self.generation_file()?;
        file.write_all_at(line.as_bytes(), 0)
            .map_err(|e| io("writing", &self.dir.shown("generation"), e))
    }

    /// The generation line for `salts`, vouching for the records through `through_seq`
    /// (the last one appended: recovery finds a line naming more than the segments hold
    /// void, see `recover`).
    fn generation_line(&self, salts: (u32, u32), through_seq: u64) -> String {
        layout::generation_line(layout::Generation { salts, through_seq })
    }

    /// `flush`, then `set_generation`, without waiting for the disk: SQLite waits for this
    /// before it restarts the log, so what is still in memory goes to the writer thread,
    /// which writes the generation once the records are on disk. A crash before then
    /// leaves the older generation, which vouches for less (a snapshot, not a gap).
    pub fn flush_then_set_generation(&self, salts: (u32, u32)) -> Result<(), SpoolError> {
        crate::fault::point("spool.flush");
        let file = match self.generation_file() {
            Ok(file) => file,
            Err(e) => return self.flush().and(Err(e)),
        };
        let mut inner = lock(&self.inner);
        let through_seq = inner.next_seq - 1;
        let then = FollowUp {
            file,
            bytes: self.generation_line(salts, through_seq).into_bytes(),
        };
        match inner.segment.as_mut() {
            Some(seg) => seg.write_all_behind(Some(then)),
            None => then
                .write()
                .map_err(|e| io("writing", &self.dir.shown("generation"), e)),
        }
    }

    /// The `generation` file, opened once. Every line has the same length and covers what
    /// an older build wrote (shorter); anything longer is not a generation, and is cut to
    /// one line's length here.
    fn generation_file(&self) -> Result<Arc<File>, SpoolError> {
        let shown = || self.dir.shown("generation");
        let mut file = lock(&self.generation);
        if let Some(f) = file.as_ref() {
            return Ok(f.clone());
        }
        let f = self
            .modes
            .open_rw()
            .open(self.dir.at("generation"))
            .map_err(|e| io("opening", &shown(), e))?;
        let line_len = self.generation_line((0, 0), 0).len() as u64;
        if f.metadata().map_err(|e| io("reading", &shown(), e))?.len() > line_len {
            f.set_len(line_len)
                .map_err(|e| io("writing", &shown(), e))?;
        }
        Ok(file.insert(Arc::new(f)).clone())
    }

    /// The salts `set_generation` last recorded (after the writer thread's write is over).
    pub fn generation(&self) -> Option<(u32, u32)> {
        if let Some(seg) = lock(&self.inner).segment.as_mut() {
            let _ = seg.settle();
        }
        layout::read_generation(&self.dir).map(|g| g.salts)
    }

    /// Remembers, across a crash, that every destination's replica misses something only
    /// a snapshot can give it (a commit whose capture failed).
    pub fn mark_gap(&self, reason: &str) -> Result<(), SpoolError> {
        for dir in &self.dests {
            super::destinations::write_gap(dir, self.modes, reason, false)?;
        }
        Ok(())
    }

    /// Why destination `d` is owed a snapshot, if `mark_gap` said so and no snapshot
    /// shipped to it since.
    pub fn gap_of(&self, d: usize) -> Option<String> {
        private_fs::read_to_string(&self.dests[d].at("gap")).ok()
    }

    /// Forgets why destination `d` was owed a snapshot (one shipped), unless records it
    /// lacks were let go of meanwhile: that owes it another.
    pub fn clear_gap_of(&self, d: usize) {
        let inner = lock(&self.inner);
        if inner.let_go_through[d] <= inner.states[d].shipped_seq {
            let _ = std::fs::remove_file(self.dests[d].at("gap"));
        }
    }

    /// The last record destination `d` needs no more (shipped, or let go of).
    pub fn shipped_by_of(&self, d: usize) -> u64 {
        lock(&self.inner).shipped_by(d)
    }

    /// Destination `d`'s request ledger as its uploader last stored it (see
    /// `crate::budget::Ledger`).
    pub fn request_ledger_of(&self, d: usize) -> Option<String> {
        use std::io::Read;
        let mut text = String::new();
        let file = private_fs::open_read(&self.dests[d].at("requests")).ok()?;
        // One short line: anything longer is not a ledger.
        file.take(512).read_to_string(&mut text).ok()?;
        Some(text)
    }

    /// Stores destination `d`'s request ledger, replacing the old one whole (no fsync: a
    /// crash loses the last few seconds of counts, never the file).
    pub fn store_request_ledger_of(&self, d: usize, text: &str) -> Result<(), SpoolError> {
        let dir = &self.dests[d];
        self.modes
            .write_atomically(&dir.at("requests"), text.as_bytes(), false)
            .map_err(|e| io("writing", &dir.shown("requests"), e))
    }

    /// Whether some destination has shipped something.
    pub fn shipped_anything(&self) -> bool {
        lock(&self.inner).states.iter().any(|st| st.txid != 0)
    }

    /// Whether no destination has anything yet and none is owed a snapshot for a gap:
    /// whatever the log holds, each one's first snapshot will carry it.
    pub fn nothing_shipped_anywhere(&self) -> bool {
        lock(&self.inner).states.iter().all(|st| st.txid == 0)
            && (0..self.dests.len()).all(|d| self.gap_of(d).is_none())
    }

    /// The directory destination `d` keeps its files in (its uploader's `cache/` too).
    pub fn dest_dir(&self, d: usize) -> &HeldDir {
        &self.dests[d]
    }

    /// Scratch path for building an upload (one at a time per spool), inside the held spool
    /// directory (`/proc/self/fd/<fd>/<name>`: valid while the spool is open).
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.dir.at(name)
    }
}
