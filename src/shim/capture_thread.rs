//! The capture thread: takes the commits the commit path queued (see `capture::queue_commit`)
//! off the thread that holds SQLite's write lock, so a commit costs the application only the
//! note of where it ends. One per process, started by the first queued commit (again in a
//! forked child that replicates). It reads the frames through its own handle on the log,
//! takes a batch of commits off the queue in one short hold of the capture lock (which
//! every log write of the commit path takes: the fewer times the other core takes it, the
//! less that lock costs there) and copies their pages under the spool's lock alone, and
//! wakes the uploader. While commits keep coming it looks again after a short pause rather
//! than being woken for each (a wake-up is a system call on the commit path, tens of µs in
//! a virtual machine); idle, it parks until the next commit wakes it. A look while a
//! checkpoint runs also hands the spool's buffer to its writer thread, so that the restart
//! of the log that may follow (on the committing thread) has only the generation to write.
//! Nothing is lost if it lags or dies with the process: the log holds every queued commit
//! until a restart or truncation, which takes the queue first, and a process that dies is
//! caught up with from the log.

use super::fallback::capture_failed;
use super::queue::{fail_queue_without_log, take_queued, Scratch};
use crate::base::io::ReadAt;
use crate::base::lock::{lock, tries, try_lock_yielding};
use crate::database::{self, CaptureState, Database};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The pause between two looks while commits keep coming: a restart of the log waits for
/// at most this much capture (less when the checkpoint before it outlasts the pause, as it
/// usually does), and lag grows by at most this much.
const BATCH_PAUSE: Duration = Duration::from_micros(500);
/// Looks that found nothing before the thread parks.
const IDLE_LOOKS: u32 = 3;

/// Opens a database's WAL for reading (given by the FFI layer, which opens it through the
/// base VFS); `None` without an opener (unit tests: commits then wait for whoever drains).
static WAL_OPENER: OnceLock<WalOpener> = OnceLock::new();

/// Opens the `-wal` file at a path for reading; `None` if it does not exist.
pub type WalOpener = fn(&Path) -> Option<Box<dyn ReadAt>>;

/// Installs the WAL opener (once, at load).
pub fn set_wal_opener(open: WalOpener) {
    let _ = WAL_OPENER.set(open);
}

/// Queued commits beyond which the committing thread captures them itself: the capture
/// thread is not keeping up (or not running: a forked child could not start it).
const QUEUE_MAX: usize = 4096;

/// Whether another commit can be left to the capture thread: the queue has room, and there
/// is a thread (the FFI layer installed the opener it reads the log with).
pub(super) fn room_for_more(cap: &CaptureState) -> bool {
    cap.queued.len() < QUEUE_MAX && WAL_OPENER.get().is_some()
}

/// Opens the `-wal` of the database at `db_path` through the installed opener.
pub(super) fn open_wal_of(db_path: &Path) -> Option<Box<dyn ReadAt>> {
    let open = WAL_OPENER.get()?;
    open(&crate::wal::log_path_of(db_path))
}

/// Whether the thread is parked (or about to park) and must be woken for a new commit.
static PARKED: AtomicBool = AtomicBool::new(false);
/// One more than the fork epoch the running thread was started in (0: none started).
static STARTED_IN: AtomicU64 = AtomicU64::new(0);
/// The running thread and the fork epoch it belongs to.
static THREAD: Mutex<Option<(u64, Thread)>> = Mutex::new(None);

/// A commit was queued on an empty queue: make sure the thread runs and will look.
pub(super) fn notify() {
    let epoch = database::fork_epoch();
    if STARTED_IN.load(Ordering::Relaxed) != epoch + 1 {
        start(epoch);
        return;
    }
    if PARKED.load(Ordering::SeqCst) && PARKED.swap(false, Ordering::SeqCst) {
        if let Some(thread) = running(epoch) {
            thread.unpark();
        }
    }
}

/// The thread of this process image, if the table can be had (in a forked child its lock
/// may be held by a thread of the parent that is not there: then the uploader's poll, which
/// also takes the queue, stands in).
fn running(epoch: u64) -> Option<Thread> {
    let held = try_lock_yielding(&THREAD, tries(100))?;
    held.as_ref()
        .filter(|(e, _)| *e == epoch)
        .map(|(_, t)| t.clone())
}

fn start(epoch: u64) {
    let Ok(mut slot) = THREAD.try_lock() else {
        return; // being started by another thread (or see `running`)
    };
    if STARTED_IN.load(Ordering::SeqCst) == epoch + 1 {
        return;
    }
    PARKED.store(false, Ordering::SeqCst);
    match std::thread::Builder::new()
        .name("replica-capture".into())
        .spawn(run)
    {
        Ok(handle) => {
            *slot = Some((epoch, handle.thread().clone()));
            STARTED_IN.store(epoch + 1, Ordering::SeqCst);
        }
        Err(e) => crate::base::log::error(&format!("starting the capture thread: {e}")),
    }
}

fn run() {
    let mut idle = 0;
    let mut held = Held::default();
    loop {
        if look(&mut held) {
            idle = 0;
        } else {
            idle += 1;
        }
        if idle < IDLE_LOOKS {
            // (An unpark left over from a `notify` only brings the next look forward.)
            std::thread::park_timeout(BATCH_PAUSE);
            continue;
        }
        PARKED.store(true, Ordering::SeqCst);
        if database::all()
            .iter()
            .any(|db| db.capture_queued.load(Ordering::SeqCst))
        {
            PARKED.store(false, Ordering::SeqCst);
            continue;
        }
        std::thread::park();
        PARKED.store(false, Ordering::SeqCst);
        idle = 0;
    }
}

/// What the thread keeps between looks: a handle on each database's log (opening one
/// takes SQLite's own locks, which the application's threads wait on), and the buffers of a
/// batch. A handle whose log is not the queue's (the file was replaced since) is reopened.
#[derive(Default)]
struct Held {
    wals: Wals,
    scratch: Scratch,
    /// Since when each database with queued commits has had no log to read them from.
    missing: HashMap<PathBuf, Instant>,
}

/// How long a queue whose log was deleted unseen waits for the closing connection that
/// deleted it to take it (it does so right after the deletion) before it is failed here.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// Each database's log handle.
#[derive(Default)]
struct Wals(Vec<(PathBuf, Box<dyn ReadAt>)>);

impl Wals {
    /// The handle on `db`'s log, opened if there is none.
    fn wal(&mut self, db: &Database) -> Option<&mut dyn ReadAt> {
        let i = match self.0.iter().position(|(p, _)| *p == db.path) {
            Some(i) => i,
            None => {
                self.0.push((db.path.clone(), open_wal_of(&db.path)?));
                self.0.len() - 1
            }
        };
        Some(self.0[i].1.as_mut())
    }

    /// Closes the handle on `db`'s log.
    fn forget(&mut self, db: &Database) {
        self.0.retain(|(p, _)| *p != db.path);
    }

    /// Closes the handles of databases no longer replicated here.
    fn forget_others(&mut self, dbs: &[std::sync::Arc<Database>]) {
        self.0.retain(|(p, _)| dbs.iter().any(|db| db.path == *p));
    }
}

/// Takes every database's queued commits; whether there were any. A database a checkpoint
/// is running on also has its spool's buffer handed to the writer thread, after the queue
/// (see `DbObserver::checkpointing`).
fn look(held: &mut Held) -> bool {
    let dbs = database::all();
    held.wals.forget_others(&dbs);
    let mut took = false;
    for db in &dbs {
        if !db.owned_here() {
            continue;
        }
        if db.capture_queued.load(Ordering::SeqCst) {
            took = true;
            take_queue_guarded(db, held);
        }
        // After the queue: the records it became go too.
        if db.checkpoint_running.load(Ordering::Relaxed) {
            db.spool.write_behind_now();
        }
    }
    took
}

/// [`take_queue`], where a bug must not take the thread down, nor lose a commit quietly:
/// the commit it held is owed as a snapshot.
fn take_queue_guarded(db: &Database, held: &mut Held) {
    let taken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| take_queue(db, held)));
    if taken.is_err() {
        let mut cap = lock(&db.capture);
        let why = "internal error (panic) in the capture thread";
        capture_failed(db, &mut cap, why, None);
        // A record the panic left unwritten refuses the next until this is noted.
        db.spool.stop_refusing();
    }
}

fn take_queue(db: &Database, held: &mut Held) {
    let Some(wal) = held.wals.wal(db) else {
        // No log to read: deleted unseen, by the last close of a connection opened before
        // the load. That close takes the queue through its own handle on the deleted log
        // (`super::hooked::on_hooked_close`) a moment later; if none does, it is failed.
        let since = *held
            .missing
            .entry(db.path.clone())
            .or_insert_with(Instant::now);
        if db.open_handles.load(Ordering::SeqCst) == 0 || since.elapsed() >= CLOSE_GRACE {
            fail_queue_without_log(db, &mut lock(&db.capture));
            held.missing.remove(&db.path);
        }
        return;
    };
    if !held.missing.is_empty() {
        held.missing.remove(&db.path);
    }
    // Batch after batch while commits are queued (a batch holds at most a few MiB).
    for _ in 0..64 {
        if !take_queued(db, wal, &mut held.scratch, false) {
            // The held handle is of a log since deleted (seen, or unseen by a connection
            // opened before the load): take the queue from the file there now (or fail
            // it, if that is another log too).
            held.wals.forget(db);
            if let Some(fresh) = held.wals.wal(db) {
                take_queued(db, fresh, &mut held.scratch, true);
            }
            return;
        }
        if !db.capture_queued.load(Ordering::SeqCst) {
            return;
        }
    }
}
