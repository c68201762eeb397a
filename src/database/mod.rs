//! One replicated database's state shared inside this process (spool, capture position,
//! each destination's replication progress and status counters) and the process-wide
//! registry of them. It owns the hand-offs between the shim (app threads), the uploader
//! thread and the SQL functions; it must not do I/O beyond opening the spool.
//!
//! One concern per file: `progress` (what an uploader publishes and counts), `destination`
//! (one destination's view of the database, as its uploader and status use it), `outside`
//! (requests made to a replica outside its uploader), `write_lock` (what the WAL write lock
//! found, while a connection of this process holds it).

mod destination;
mod outside;
mod progress;
mod write_lock;

pub use destination::Dest;
pub use outside::{note_outside_requests, take_outside_requests};
pub use progress::{CaptureCounters, Counters, JournalMode, Progress, UploaderState};
pub use write_lock::{
    hold_notes_for_fork, release_notes_after_fork, write_lock_note, WriteLockNote,
};

use crate::base::lock::lock;
use crate::base::padded::Padded;
use crate::config::ReplicaConfig;
use crate::spool::{FileStamp, Spool};
use crate::wal::{FrameChain, FrameHeader, WalHeader};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Default spool cap: beyond it, captured commits are dropped and a snapshot ships instead.
pub const DEFAULT_SPOOL_CAP_BYTES: u64 = 1 << 30;

/// Where capture stands in the live WAL.
#[derive(Default)]
pub struct CaptureState {
    pub header: Option<WalHeader>,
    /// Verifies frames after the last captured commit; `None` when the position is unknown.
    pub chain: Option<FrameChain>,
    /// A commit frame whose header has been written and whose page has not, yet.
    pub pending_commit: Option<(u32, FrameHeader)>,
    /// A written commit frame whose transaction rewrote frames in place: SQLite recomputes
    /// the checksums from the rewritten frame on, ending with this frame's header, and
    /// capture waits for that last header write.
    pub deferred_commit: Option<u32>,
    /// The current transaction wrote a page into an existing frame (a hint, see above).
    pub rewrote_in_place: bool,
    /// The frame whose header the previous write was, to tell appends from in-place writes.
    pub last_header_frame: Option<u32>,
    /// Commits written through the replica VFS and not yet captured, oldest first: their
    /// commit frames (with headers) in the log `header` is of, continuing `chain`. The
    /// capture thread takes them (see `shim::capture_thread`); whoever else moves `chain`
    /// or appends to the spool takes them first, and a restart or truncation of the log
    /// waits for them.
    pub queued: VecDeque<(u32, FrameHeader)>,
    /// Whether this process has compared the WAL on disk with the spool since it started.
    pub caught_up: bool,
    /// Set by a hooked connection's commit hook (see `shim::hooked`), or by a standby's
    /// hand-off: the log that a new one may replace without losing anything, checked in
    /// `shim::vouch`.
    pub log_complete: Option<CompleteLog>,
    /// The previous process died with records only in memory: catch-up must find them in
    /// the WAL or ask for a snapshot.
    pub unflushed_lost: bool,
}

/// What a hooked connection's commit hook found just before its commit: a log capture has
/// taken through its end (or none), and SQLite's commit counter then (`change`). A new log
/// replacing it continues the spool only if the counter shows no other commit in between
/// (see `shim::vouch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteLog {
    /// The log with these salts.
    Salts { salts: (u32, u32), change: u32 },
    /// No log at all (none on disk, or an empty one): the next writer starts the first.
    Absent { change: u32 },
}

/// One place a database replicates to, and what its uploader counts.
pub struct Destination {
    /// Its settings; `config.name` is its short name.
    pub config: ReplicaConfig,
    pub counters: Mutex<Counters>,
}

pub struct Database {
    /// The database file's name, e.g. `app.db`.
    pub name: String,
    pub path: PathBuf,
    /// The first destination's settings, which are also the database's own (the boot-time
    /// restore, the shutdown wait, how often the log is polled).
    pub config: ReplicaConfig,
    /// Every destination, the first one first; never empty.
    pub destinations: Vec<Destination>,
    pub spool: Spool,
    /// Taken on each of the committing thread's log writes and by the capture thread for
    /// each batch of commits it takes: alone on its lines, like the atomics both threads
    /// touch.
    pub capture: Padded<Mutex<CaptureState>>,
    /// Each destination's progress, in the order of `destinations`, under one lock so that
    /// a waiter can watch all of them.
    progress: Mutex<Vec<Progress>>,
    progress_changed: Condvar,
    pub capture_counters: Mutex<CaptureCounters>,
    /// Transactions captured into the spool: counted on the commit path, so an atomic
    /// rather than a field of `counters`, whose lock the uploader also takes.
    pub captured_txns: Padded<AtomicU64>,
    /// Writes to the WAL by this process under way (between the VFS call and the end of
    /// its capture): a poll for other processes' commits waits for them to finish.
    pub wal_writes_in_flight: Padded<AtomicU32>,
    /// What the WAL write lock found while a connection of this process holds it.
    pub write_lock: Arc<WriteLockNote>,
    /// Whether `capture.queued` holds commits (set and cleared under that lock), so the
    /// capture thread can tell without taking it.
    pub capture_queued: Padded<AtomicBool>,
    /// Set when a commit's capture is deferred (`capture.deferred_commit`), cleared once
    /// none is: the release of every write lock looks here before it takes that lock.
    pub capture_deferred: AtomicBool,
    /// Whether a connection of this process holds the checkpoint lock: the capture thread's
    /// looks meanwhile hand the spool's buffer to its writer thread, so that the log restart
    /// that may follow finds nothing to hand over (see `shim::capture_thread`).
    pub checkpoint_running: Padded<AtomicBool>,
    /// Connections of this process that have the database open through the replica VFS.
    pub open_handles: AtomicU32,
    /// When (ms) the log is next looked at for commits nobody captured: one look serves
    /// every destination, made by whichever uploader is first when it is due.
    pub next_wal_poll_ms: AtomicU64,
    /// The process that opened the spool, as the fork epoch and pid at open. A forked child
    /// shares this memory but not the uploader thread: like any process that does not own
    /// the spool, it leaves capture to the parent (whose next capture or catch-up takes the
    /// child's commits along with its own).
    owner_epoch: u64,
    owner_pid: u32,
}

/// Bumped in every forked child by the `pthread_atfork` handler the extension installs,
/// so "is this still the process that opened it?" is an atomic load on the commit path
/// rather than a `getpid` system call.
static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);
/// Whether that handler is installed; without it (the crate used as a library) the pid
/// is compared instead.
static FORK_HANDLER: AtomicBool = AtomicBool::new(false);

/// The `pthread_atfork` child handler's whole job: async-signal-safe (one atomic add).
/// Which process image this is: a forked child gets another (see [`Database::owned_here`]).
pub fn process_identity() -> (u64, u32) {
    (FORK_EPOCH.load(Ordering::SeqCst), std::process::id())
}

/// This process image's fork generation (see [`process_identity`]): one atomic load.
pub fn fork_epoch() -> u64 {
    FORK_EPOCH.load(Ordering::SeqCst)
}

pub fn on_fork_child() {
    FORK_EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// Records that [`on_fork_child`] runs in every child.
/// How capture wakes the uploader: installed by the FFI entry once the extension is loaded
/// into a host; until then waking does nothing (unit tests step the uploader themselves).
static UPLOADER_WAKE: OnceLock<fn()> = OnceLock::new();

pub fn set_uploader_wake(wake: fn()) {
    let _ = UPLOADER_WAKE.set(wake);
}

/// Asks the uploader to look at the databases now (a commit was captured, one was opened).
pub fn wake_uploader() {
    if let Some(wake) = UPLOADER_WAKE.get() {
        wake();
    }
}

pub fn fork_handler_installed() {
    FORK_HANDLER.store(true, Ordering::SeqCst);
}

impl Database {
    /// Opens the spool of the database at `path` for its destinations (`configs`, the
    /// first one first; never empty).
    pub fn open(
        path: &Path,
        configs: Vec<ReplicaConfig>,
        spool_cap: u64,
    ) -> Result<Database, crate::error::Error> {
        let config = configs.first().cloned().ok_or_else(|| {
            crate::error::Error::InvalidArgument(format!("{}: no destination", path.display()))
        })?;
        // Nothing the spool writes may be readable by anyone the database is not.
        let modes = crate::base::private_fs::Modes::beside(path);
        let others: Vec<&str> = configs[1..].iter().map(|c| c.name.as_str()).collect();
        let (spool, recovery) = Spool::open_with(&Spool::dir_for(path), spool_cap, modes, &others)?;
        let progress = (0..configs.len())
            .map(|d| initial_progress(&spool, d, recovery.overflowed))
            .collect();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let destinations = configs
            .into_iter()
            .map(|config| Destination {
                config,
                counters: Mutex::new(Counters::default()),
            })
            .collect();
        Ok(Database {
            name,
            path: path.to_path_buf(),
            config,
            destinations,
            spool,
            capture: Padded(Mutex::new(CaptureState {
                unflushed_lost: recovery.unflushed_lost,
                ..Default::default()
            })),
            progress: Mutex::new(progress),
            progress_changed: Condvar::new(),
            captured_txns: Padded(AtomicU64::new(0)),
            wal_writes_in_flight: Padded(AtomicU32::new(0)),
            write_lock: write_lock_note(path),
            capture_queued: Padded(AtomicBool::new(false)),
            checkpoint_running: Padded(AtomicBool::new(false)),
            capture_deferred: AtomicBool::new(false),
            open_handles: AtomicU32::new(0),
            next_wal_poll_ms: AtomicU64::new(0),
            owner_epoch: FORK_EPOCH.load(Ordering::SeqCst),
            owner_pid: std::process::id(),
            capture_counters: Mutex::new(CaptureCounters::default()),
        })
    }

    /// Whether this process is the one that owns the spool (false in a forked child).
    pub fn owned_here(&self) -> bool {
        self.owner_epoch == FORK_EPOCH.load(Ordering::Relaxed)
            && (FORK_HANDLER.load(Ordering::Relaxed) || self.owner_pid == std::process::id())
    }

    /// Whether the database has more than one destination (messages then name the one
    /// they are about).
    pub fn has_several_destinations(&self) -> bool {
        self.destinations.len() > 1
    }

    /// The first destination's progress (what is the same for all, such as the journal
    /// mode, is kept in each).
    pub fn progress(&self) -> Progress {
        self.progress_of(0)
    }

    /// Destination `d`'s progress.
    pub fn progress_of(&self, d: usize) -> Progress {
        lock(&self.progress)[d].clone()
    }

    /// Every destination's progress, in order.
    pub fn all_progress(&self) -> Vec<Progress> {
        lock(&self.progress).clone()
    }

    /// Changes every destination's progress alike (what capture and the SQL functions
    /// learn is about the database, so it concerns all of them).
    pub fn update_progress(&self, f: impl Fn(&mut Progress)) {
        {
            let mut all = lock(&self.progress);
            let now = crate::base::clock::now_ms();
            for progress in all.iter_mut() {
                f(progress);
                progress.note_snapshot_owed(now);
            }
        }
        self.progress_changed.notify_all();
    }

    /// Changes destination `d`'s progress (what its uploader did).
    pub fn update_progress_of(&self, d: usize, f: impl FnOnce(&mut Progress)) {
        {
            let mut all = lock(&self.progress);
            f(&mut all[d]);
            all[d].note_snapshot_owed(crate::base::clock::now_ms());
        }
        self.progress_changed.notify_all();
    }

    /// How the database is journaled (see [`Progress::journal`]).
    pub fn journal_mode(&self) -> JournalMode {
        lock(&self.progress)[0].journal
    }

    /// Asks every destination for a snapshot.
    pub fn request_snapshot(&self, reason: &str) {
        self.request_snapshot_of(reason, None);
    }

    /// [`Self::request_snapshot`], because the database file changed to carry `file`
    /// (see [`Progress::owed_for_file`]).
    pub fn request_snapshot_of(&self, reason: &str, file: Option<FileStamp>) {
        self.update_progress(|p| ask_for_snapshot(p, reason, file));
    }

    /// [`Self::request_snapshot`] for a commit at `pos` the spool lacks: the snapshot must
    /// hold it (see [`Progress::snapshot_must_cover`]), asked in the same update so that no
    /// snapshot can ship between the two.
    pub fn request_snapshot_covering(&self, reason: &str, pos: crate::wal::WalPosition, now: u64) {
        self.update_progress(|p| {
            p.snapshot_must_cover = Some((pos, now + 10_000));
            ask_for_snapshot(p, reason, None);
        });
    }

    /// Asks destination `d` alone for a snapshot (its replica is behind the others').
    pub fn request_snapshot_at(&self, d: usize, reason: &str) {
        self.update_progress_of(d, |p| ask_for_snapshot(p, reason, None));
    }

    /// Waits until `done(progress)` holds for every destination, or the timeout passes;
    /// returns each destination's last progress either way.
    // Both outcomes hand back the progress the waiter saw; it is not an error type.
    #[allow(clippy::result_large_err)]
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&Progress) -> bool,
    ) -> Result<Vec<Progress>, Vec<Progress>> {
        self.wait_for_some(timeout, usize::MAX, done)
    }

    /// [`Self::wait_for`], satisfied once `done` holds for `quorum` destinations (all of
    /// them when there are fewer).
    #[allow(clippy::result_large_err)]
    pub fn wait_for_some(
        &self,
        timeout: Duration,
        quorum: usize,
        done: impl Fn(&Progress) -> bool,
    ) -> Result<Vec<Progress>, Vec<Progress>> {
        self.wait_until(timeout, |all| {
            all.iter().filter(|p| done(p)).count() >= quorum.min(all.len())
        })
    }

    /// Waits until `done(d, progress)` holds for every destination `d`, or the timeout
    /// passes; returns each destination's last progress either way.
    #[allow(clippy::result_large_err)]
    pub fn wait_for_each(
        &self,
        timeout: Duration,
        done: impl Fn(usize, &Progress) -> bool,
    ) -> Result<Vec<Progress>, Vec<Progress>> {
        self.wait_until(timeout, |all| {
            all.iter().enumerate().all(|(d, p)| done(d, p))
        })
    }

    /// Waits until `met(every destination's progress)` holds, or the timeout passes.
    #[allow(clippy::result_large_err)]
    fn wait_until(
        &self,
        timeout: Duration,
        met: impl Fn(&[Progress]) -> bool,
    ) -> Result<Vec<Progress>, Vec<Progress>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut all = lock(&self.progress);
        loop {
            if met(&all) {
                return Ok(all.clone());
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(all.clone());
            }
            all = self
                .progress_changed
                .wait_timeout(all, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Destination `d`'s counters.
    pub fn counters_of(&self, d: usize) -> MutexGuard<'_, Counters> {
        lock(&self.destinations[d].counters)
    }

    pub fn capture_counters(&self) -> MutexGuard<'_, CaptureCounters> {
        lock(&self.capture_counters)
    }

    /// Each destination, as its uploader and status see it.
    pub fn dests(self: &Arc<Self>) -> Vec<Dest> {
        (0..self.destinations.len())
            .map(|index| Dest {
                db: self.clone(),
                index,
            })
            .collect()
    }
}

/// Destination `d`'s progress when the spool is opened: where its replica stands, and the
/// snapshot it is owed, if any.
fn initial_progress(spool: &Spool, d: usize, overflowed: bool) -> Progress {
    let state = spool.state_of(d);
    let mut progress = Progress {
        txid: state.txid,
        shipped_seq: state.shipped_seq,
        ..Default::default()
    };
    if state.txid == 0 {
        progress.needs_snapshot = Some("first upload of this database".into());
    } else if overflowed {
        progress.needs_snapshot = Some("the spool overflowed before a restart".into());
    } else if let Some(reason) = spool.gap_of(d) {
        progress.needs_snapshot = Some(format!("owed since before a restart: {reason}"));
    }
    progress.note_snapshot_owed(crate::base::clock::now_ms());
    progress
}

fn ask_for_snapshot(p: &mut Progress, reason: &str, file: Option<FileStamp>) {
    p.snapshot_request += 1;
    if p.needs_snapshot.is_none() {
        p.needs_snapshot = Some(reason.to_string());
    }
    if file.is_some() {
        p.owed_for_file = file;
    }
}

static REGISTRY: Mutex<Registry> = Mutex::new(BTreeMap::new());

/// Every database this process replicates, by path.
type Registry = BTreeMap<PathBuf, Arc<Database>>;
/// The most destinations a database of the registry has (the uploader runs a thread for
/// each destination slot).
static MOST_DESTINATIONS: AtomicU32 = AtomicU32::new(0);

/// The most destinations any database opened in this process has.
pub fn most_destinations() -> usize {
    MOST_DESTINATIONS.load(Ordering::Relaxed) as usize
}

/// The database at `path`, opened on first use.
pub fn get_or_open(
    path: &Path,
    configs: Vec<ReplicaConfig>,
) -> Result<Arc<Database>, crate::error::Error> {
    let mut reg = lock(&REGISTRY);
    if let Some(db) = reg.get(path) {
        return Ok(db.clone());
    }
    // Two databases writing one replica would overwrite each other's files (REPLICA_URL
    // names replicas by file name, so /a/app.db and /b/app.db collide): the first one wins.
    for url in configs.iter().map(ReplicaConfig::url) {
        let taken = |db: &&Arc<Database>| db.destinations.iter().any(|d| d.config.url() == url);
        if let Some(other) = reg.values().find(taken) {
            return Err(crate::error::Error::InvalidArgument(format!(
                "{} is not replicated: its replica {url} is already the replica of {}; give it its own (a litestream.yml entry or ?replica=URL)",
                path.display(),
                other.path.display()
            )));
        }
    }
    let db = Arc::new(Database::open(path, configs, DEFAULT_SPOOL_CAP_BYTES)?);
    let count = db.destinations.len() as u32;
    MOST_DESTINATIONS.fetch_max(count, Ordering::Relaxed);
    reg.insert(path.to_path_buf(), db.clone());
    Ok(db)
}

thread_local! {
    /// The registry's lock, held by the thread that forks from just before the fork to just
    /// after it, in the parent and in the child (see [`hold_registry_for_fork`]).
    static HELD_FOR_FORK: std::cell::RefCell<Option<MutexGuard<'static, Registry>>> =
        const { std::cell::RefCell::new(None) };
}

/// Just before a fork, on the thread that forks: takes the registry's lock. The capture
/// thread, the uploaders and the application's threads take it often, and a forked child
/// has only the thread that forked: had another held it at that moment, the child would
/// wait for ever the first time it opens a database. Tries for at most `wait`: a holder
/// that waits for something the forking thread holds (a host's log callback taking its
/// interpreter's lock while a database opens) must not hang the fork in the parent, which
/// then goes on without it, as it did before this lock was held across forks.
pub fn hold_registry_for_fork(wait: Duration) {
    let held =
        crate::base::lock::try_lock_yielding(&REGISTRY, crate::base::lock::for_at_most(wait));
    HELD_FOR_FORK.with(|h| *h.borrow_mut() = held);
}

/// Just after a fork, in the parent and in the child: lets the registry's lock go.
pub fn release_registry_after_fork() {
    HELD_FOR_FORK.with(|h| drop(h.borrow_mut().take()));
}

pub fn get(path: &Path) -> Option<Arc<Database>> {
    lock(&REGISTRY).get(path).cloned()
}

pub fn all() -> Vec<Arc<Database>> {
    lock(&REGISTRY).values().cloned().collect()
}

/// Finds a database by file name or path, as users type it in SQL.
pub fn find(name: &str) -> Option<Arc<Database>> {
    let reg = lock(&REGISTRY);
    if let Some(db) = reg.get(Path::new(name)) {
        return Some(db.clone());
    }
    let wanted = std::path::absolute(name).ok();
    reg.values()
        .find(|db| db.name == name || Some(&db.path) == wanted.as_ref())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_a_snapshot_was_owed_for_is_forgotten_once_none_is_owed() {
        let stamp = FileStamp {
            ino: 1,
            size: 2,
            mtime: (3, 4),
        };
        let mut p = Progress {
            needs_snapshot: Some("changed".into()),
            owed_for_file: Some(stamp),
            ..Progress::default()
        };
        p.note_snapshot_owed(10);
        assert_eq!(
            (p.owed_for_file, p.snapshot_owed_since_ms),
            (Some(stamp), Some(10))
        );
        p.needs_snapshot = None;
        p.note_snapshot_owed(20);
        assert_eq!((p.owed_for_file, p.snapshot_owed_since_ms), (None, None));
    }
}
