//! One replicated database's state shared inside this process (spool, capture position,
//! replication progress, status counters) and the process-wide registry of them. It owns
//! the hand-offs between the shim (app threads), the uploader thread and the SQL functions;
//! it must not do I/O beyond opening the spool.

use crate::base::lock::lock;
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

/// Progress the uploader publishes; waiters in `replica_sync` watch it.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// Last txid in the replica.
    pub txid: u64,
    /// Every spool record up to this sequence number is in the replica.
    pub shipped_seq: u64,
    /// A snapshot has been asked for (gap, overflow, first upload, or on demand).
    pub needs_snapshot: Option<String>,
    /// The database file's stamp when a snapshot was last asked for because the file
    /// changed without a log, while that snapshot is owed: any snapshot that clears
    /// `needs_snapshot` began reading after the file carried it, so the same change found
    /// again (a log starting while the poll's snapshot is read) asks for no second one.
    pub owed_for_file: Option<FileStamp>,
    /// Count of snapshots shipped, so an on-demand snapshot can wait for the next one.
    pub snapshots: u64,
    /// Bumped by every snapshot request, so one made while a snapshot is being read is
    /// not cleared by that snapshot.
    pub snapshot_request: u64,
    /// A commit the next snapshot must contain (one whose capture failed: it becomes
    /// visible to readers a moment after the failure), and until when to insist (ms).
    pub snapshot_must_cover: Option<(crate::wal::WalPosition, u64)>,
    /// The uploader should ship what is pending now rather than wait for the interval.
    pub flush_requested: bool,
    pub last_error: Option<String>,
    /// Consecutive failed attempts, and when the next one is due (ms), while retrying.
    pub retries: u32,
    pub next_retry_at_ms: Option<u64>,
    /// Failed attempts ever (never reset), so a waiter can tell that one failed after it asked.
    pub failed_attempts: u64,
    /// Requests to hand the replica's lease back (the last connection closed), and the
    /// last one done.
    pub lease_release_requests: u64,
    pub lease_released: u64,
    /// How the database is journaled, as its writes through this process show: out of WAL
    /// mode, nothing of it is captured.
    pub journal: JournalMode,
    /// Since when (ms) a snapshot has been owed: the replica misses everything committed
    /// since then, which is what the lag counts from.
    pub snapshot_owed_since_ms: Option<u64>,
    /// The replica's place also holds a Litestream 0.3 replica (a database moving in from
    /// Litestream 0.3): status says so until libreplica's own history has begun.
    pub holds_litestream_03: bool,
}

impl Progress {
    /// Starts or ends the time a snapshot is owed, as `needs_snapshot` now says.
    fn note_snapshot_owed(&mut self, now: u64) {
        match (&self.needs_snapshot, self.snapshot_owed_since_ms) {
            (Some(_), None) => self.snapshot_owed_since_ms = Some(now),
            (None, Some(_)) => self.snapshot_owed_since_ms = None,
            _ => {}
        }
        if self.needs_snapshot.is_none() {
            self.owed_for_file = None;
        }
    }
}

/// A database's journal mode as far as replication is concerned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum JournalMode {
    /// WAL mode (the file header says so), or not known otherwise: replicating.
    #[default]
    Wal,
    /// A rollback journal that each transaction deletes (`PRAGMA journal_mode=DELETE`).
    Delete,
    /// Another rollback journal (truncate, persist, memory, off).
    Rollback,
}

impl JournalMode {
    /// How status and errors name it.
    pub fn describe(self) -> &'static str {
        match self {
            JournalMode::Wal => "journal_mode=wal",
            JournalMode::Delete => "journal_mode=delete",
            JournalMode::Rollback => "journal_mode is not WAL",
        }
    }
}

/// What the uploader of a database is doing, as `replica_status()` shows some of it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum UploaderState {
    /// Not stepped yet.
    #[default]
    Starting,
    /// The database is not in WAL mode: nothing to replicate until its first WAL commit.
    WaitingForWal,
    /// Another uploader holds the replica's lease.
    LeaseHeldElsewhere,
    /// The last step failed and is retried after a backoff.
    Retrying,
    /// Something waits for its batch interval or a lifecycle job.
    Pending,
    Replicating,
}

impl UploaderState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploaderState::Starting => "starting",
            UploaderState::WaitingForWal => "waiting for WAL mode",
            UploaderState::LeaseHeldElsewhere => "lease held elsewhere",
            UploaderState::Retrying => "retrying",
            UploaderState::Pending => "pending",
            UploaderState::Replicating => "replicating",
        }
    }
}

/// Counters for `replica_status()`.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub uploads: u64,
    pub upload_errors: u64,
    pub snapshots: u64,
    /// Files written by compaction, and files retention deleted (verified gone).
    pub compactions: u64,
    pub files_deleted: u64,
    pub bytes_uploaded: u64,
    /// Files of an encrypted replica sealed to other recipients than the configured ones;
    /// `None` for a plaintext replica.
    pub sealed_otherwise: Option<u64>,
    pub last_upload_at_ms: Option<u64>,
    pub capture_errors: u64,
    pub requests: crate::store::RequestCounts,
    pub state: UploaderState,
    /// The last `replica_verify` drill: when (ms) and what it found.
    pub last_verify: Option<(u64, String)>,
    /// How long each WAL restart or truncation this process captured waited for the
    /// spool (writing it out, recording the new log), in µs.
    pub restart_waits: crate::base::histogram::Histogram,
    /// This month's requests and the request budget's bucket, as the uploader last
    /// counted them (`None` before its first step).
    pub ledger: Option<crate::budget::Ledger>,
}

pub struct Database {
    /// The database file's name, e.g. `app.db`.
    pub name: String,
    pub path: PathBuf,
    pub config: ReplicaConfig,
    pub spool: Spool,
    pub capture: Mutex<CaptureState>,
    progress: Mutex<Progress>,
    progress_changed: Condvar,
    pub counters: Mutex<Counters>,
    /// Transactions captured into the spool: counted on the commit path, so an atomic
    /// rather than a field of `counters`, whose lock the uploader also takes.
    pub captured_txns: AtomicU64,
    /// Writes to the WAL by this process under way (between the VFS call and the end of
    /// its capture): a poll for other processes' commits waits for them to finish.
    pub wal_writes_in_flight: AtomicU32,
    /// Whether `capture.queued` holds commits (set and cleared under that lock), so the
    /// capture thread can tell without taking it.
    pub capture_queued: AtomicBool,
    /// Set when a commit's capture is deferred (`capture.deferred_commit`), cleared once
    /// none is: the release of every write lock looks here before it takes that lock.
    pub capture_deferred: AtomicBool,
    /// Connections of this process that have the database open through the replica VFS.
    pub open_handles: AtomicU32,
    /// The process that opened the spool, as the fork epoch and pid at open. A forked child
    /// shares this memory but not the uploader thread: like any process that does not own
    /// the spool, it leaves capture to the parent (whose next capture or catch-up takes the
    /// child's commits along with its own).
    owner_epoch: u64,
    owner_pid: u32,
}

/// Requests made to a replica by others than its uploader (restores, drills, restore points,
/// the boot-time check), by replica, until its uploader counts them in its ledger; each
/// with the fork epoch of the process that made them, so that a forked child never counts
/// its parent's. The oldest are forgotten beyond a bound: restores from replicas nobody
/// here uploads are never taken.
static OUTSIDE_REQUESTS: Mutex<Vec<OutsideRequests>> = Mutex::new(Vec::new());
const OUTSIDE_REQUESTS_MAX: usize = 64;

struct OutsideRequests {
    replica: String,
    /// The process that made them ([`process_identity`]).
    process: (u64, u32),
    counts: crate::store::RequestCounts,
}
/// Which replica a target is, whatever its timeouts or credentials.
fn replica_identity(target: &crate::config::ReplicaTarget) -> String {
    match target {
        crate::config::ReplicaTarget::File { dir } => format!("file {}", dir.display()),
        crate::config::ReplicaTarget::S3(t) => format!(
            "s3 {} {} {}",
            t.endpoint.as_deref().unwrap_or(""),
            t.bucket,
            t.prefix
        ),
    }
}

/// Notes requests made to the replica `target` outside its uploader.
pub fn note_outside_requests(
    target: &crate::config::ReplicaTarget,
    made: crate::store::RequestCounts,
) {
    let (replica, process) = (replica_identity(target), process_identity());
    let mut all = lock(&OUTSIDE_REQUESTS);
    all.retain(|o| o.process == process);
    let at = match all.iter().position(|o| o.replica == replica) {
        Some(i) => i,
        None => {
            if all.len() >= OUTSIDE_REQUESTS_MAX {
                all.remove(0);
            }
            all.push(OutsideRequests {
                replica,
                process,
                counts: Default::default(),
            });
            all.len() - 1
        }
    };
    let counts = &mut all[at].counts;
    counts.put += made.put;
    counts.get += made.get;
    counts.list += made.list;
    counts.delete += made.delete;
}

/// The requests this process noted for the replica `target` since the last call.
pub fn take_outside_requests(target: &crate::config::ReplicaTarget) -> crate::store::RequestCounts {
    let (replica, process) = (replica_identity(target), process_identity());
    let mut all = lock(&OUTSIDE_REQUESTS);
    all.retain(|o| o.process == process);
    match all.iter().position(|o| o.replica == replica) {
        Some(i) => all.remove(i).counts,
        None => Default::default(),
    }
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
    pub fn open(
        path: &Path,
        config: ReplicaConfig,
        spool_cap: u64,
    ) -> Result<Database, crate::error::Error> {
        // Nothing the spool writes may be readable by anyone the database is not.
        let modes = crate::base::private_fs::Modes::beside(path);
        let (spool, recovery) = Spool::open_with(&Spool::dir_for(path), spool_cap, modes)?;
        let state = spool.state();
        let mut progress = Progress {
            txid: state.txid,
            shipped_seq: state.shipped_seq,
            ..Default::default()
        };
        if state.txid == 0 {
            progress.needs_snapshot = Some("first upload of this database".into());
        } else if recovery.overflowed {
            progress.needs_snapshot = Some("the spool overflowed before a restart".into());
        } else if let Some(reason) = spool.gap() {
            progress.needs_snapshot = Some(format!("owed since before a restart: {reason}"));
        }
        progress.note_snapshot_owed(crate::base::clock::now_ms());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        Ok(Database {
            name,
            path: path.to_path_buf(),
            config,
            spool,
            capture: Mutex::new(CaptureState {
                unflushed_lost: recovery.unflushed_lost,
                ..Default::default()
            }),
            progress: Mutex::new(progress),
            progress_changed: Condvar::new(),
            captured_txns: AtomicU64::new(0),
            wal_writes_in_flight: AtomicU32::new(0),
            capture_queued: AtomicBool::new(false),
            capture_deferred: AtomicBool::new(false),
            open_handles: AtomicU32::new(0),
            owner_epoch: FORK_EPOCH.load(Ordering::SeqCst),
            owner_pid: std::process::id(),
            counters: Mutex::new(Counters {
                state: UploaderState::Starting,
                ..Default::default()
            }),
        })
    }

    /// Whether this process is the one that owns the spool (false in a forked child).
    pub fn owned_here(&self) -> bool {
        self.owner_epoch == FORK_EPOCH.load(Ordering::Relaxed)
            && (FORK_HANDLER.load(Ordering::Relaxed) || self.owner_pid == std::process::id())
    }

    pub fn progress(&self) -> Progress {
        lock(&self.progress).clone()
    }

    pub fn update_progress(&self, f: impl FnOnce(&mut Progress)) {
        {
            let mut progress = lock(&self.progress);
            f(&mut progress);
            progress.note_snapshot_owed(crate::base::clock::now_ms());
        }
        self.progress_changed.notify_all();
    }

    /// How the database is journaled (see [`Progress::journal`]).
    pub fn journal_mode(&self) -> JournalMode {
        lock(&self.progress).journal
    }

    pub fn request_snapshot(&self, reason: &str) {
        self.request_snapshot_of(reason, None);
    }

    /// [`Self::request_snapshot`], because the database file changed to carry `file`
    /// (see [`Progress::owed_for_file`]).
    pub fn request_snapshot_of(&self, reason: &str, file: Option<FileStamp>) {
        self.update_progress(|p| {
            p.snapshot_request += 1;
            if p.needs_snapshot.is_none() {
                p.needs_snapshot = Some(reason.to_string());
            }
            if file.is_some() {
                p.owed_for_file = file;
            }
        });
    }

    /// Waits until `done(progress)` holds or the timeout passes; returns the last progress.
    // Both outcomes hand back the progress the waiter saw; it is not an error type.
    #[allow(clippy::result_large_err)]
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&Progress) -> bool,
    ) -> Result<Progress, Progress> {
        let deadline = std::time::Instant::now() + timeout;
        let mut p = lock(&self.progress);
        loop {
            if done(&p) {
                return Ok(p.clone());
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(p.clone());
            }
            p = self
                .progress_changed
                .wait_timeout(p, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn counters(&self) -> MutexGuard<'_, Counters> {
        lock(&self.counters)
    }
}

static REGISTRY: Mutex<BTreeMap<PathBuf, Arc<Database>>> = Mutex::new(BTreeMap::new());

/// The database at `path`, opened on first use.
pub fn get_or_open(
    path: &Path,
    config: ReplicaConfig,
) -> Result<Arc<Database>, crate::error::Error> {
    let mut reg = lock(&REGISTRY);
    if let Some(db) = reg.get(path) {
        return Ok(db.clone());
    }
    // Two databases writing one replica would overwrite each other's files (REPLICA_URL
    // names replicas by file name, so /a/app.db and /b/app.db collide): the first one wins.
    let url = config.url();
    if let Some(other) = reg.values().find(|db| db.config.url() == url) {
        return Err(crate::error::Error::InvalidArgument(format!(
            "{} is not replicated: its replica {url} is already the replica of {}; give it its own (a litestream.yml entry or ?replica=URL)",
            path.display(),
            other.path.display()
        )));
    }
    let db = Arc::new(Database::open(path, config, DEFAULT_SPOOL_CAP_BYTES)?);
    reg.insert(path.to_path_buf(), db.clone());
    Ok(db)
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
