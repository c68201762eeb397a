//! The uploader threads: one per process and destination slot, started lazily by the first
//! wake-up (a process whose databases have one destination each has one), each stepping the
//! worker of its destination of every database this process owns and sleeping until the
//! earliest time one of them asked for (or a wake-up). Thread `k` steps the `k`-th
//! destination of each database, so that a destination that stalls holds back no other. It
//! owns the threads and how snapshots read the live database; it must not do any database's
//! work itself (the workers do).

use super::types::Step;
use super::worker::{DbUploader, WAL_POLL_MAX_MS};
use crate::base::clock::now_ms;
use crate::database;
use crate::snapshot::SnapshotSource;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The uploader threads of this process, by destination slot (thread `k` steps the `k`-th
/// destination of every database, so that a destination that stalls holds back no other
/// destination), with the process id that started them and how to wake each. A forked
/// child inherits the value but not the threads, so a different pid means "start them here".
static UPLOADERS: std::sync::Mutex<(u32, Vec<crossbeam_channel::Sender<()>>)> =
    std::sync::Mutex::new((0, Vec::new()));
static SOURCE: OnceLock<Box<dyn SnapshotSource>> = OnceLock::new();

/// Installs how snapshots read the live database (the FFI layer does this at load).
pub fn set_snapshot_source(source: Box<dyn SnapshotSource>) {
    let _ = SOURCE.set(source);
}

/// Nudges the uploader threads, starting them on first use (one per destination slot that
/// some database has). A lost wake-up is harmless: each thread re-examines every database
/// on each turn.
pub fn wake() {
    if SOURCE.get().is_none() {
        return; // not loaded into a host (unit tests drive `step` themselves)
    }
    let pid = std::process::id();
    let mut uploaders = crate::base::lock::lock(&UPLOADERS);
    if uploaders.0 != pid {
        *uploaders = (pid, Vec::new());
    }
    while uploaders.1.len() < database::most_destinations().max(1) {
        let slot = uploaders.1.len();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name(thread_name(slot))
            .spawn(move || run(rx, slot));
        if let Err(e) = spawned {
            crate::base::log::error(&format!("cannot start an uploader thread: {e}"));
            break;
        }
        uploaders.1.push(tx);
    }
    for tx in &uploaders.1 {
        let _ = tx.try_send(());
    }
}

/// `replica-uploader` for slot 0, then `replica-upload2`, … (Linux keeps 15 bytes of a
/// thread's name).
fn thread_name(slot: usize) -> String {
    match slot {
        0 => "replica-uploader".into(),
        n => format!("replica-upload{}", n + 1),
    }
}

fn run(rx: crossbeam_channel::Receiver<()>, slot: usize) {
    let source = SOURCE.get().expect("set before the thread starts");
    let mut workers: HashMap<PathBuf, DbUploader> = HashMap::new();
    loop {
        for db in database::all().into_iter().filter(|db| db.owned_here()) {
            if slot < db.destinations.len() && !workers.contains_key(&db.path) {
                let dest = database::Dest {
                    db: db.clone(),
                    index: slot,
                };
                workers.insert(db.path.clone(), DbUploader::new(dest));
            }
        }
        // Standbys are taken over once, by the first thread.
        let standby = slot == 0 && crate::shim::take_over_standbys();
        let now = now_ms();
        // Awake at least once per WAL poll, and while a database waits to be taken over.
        let mut next = now
            + if workers.is_empty() && !standby {
                60_000
            } else {
                WAL_POLL_MAX_MS
            };
        for w in workers.values_mut() {
            next = next.min(step_one(w, now, source.as_ref()));
        }
        let wait = next.saturating_sub(now_ms());
        if wait > 0 {
            match rx.recv_timeout(Duration::from_millis(wait)) {
                Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Steps one database's worker; when it wants to be stepped again.
fn step_one(w: &mut DbUploader, now: u64, source: &dyn SnapshotSource) -> u64 {
    // A bug in one database's upload must not take the thread (and the others) down.
    let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.step(now, source)))
        .unwrap_or_else(|_| Step::Failed {
            retry_at: now + 1000,
            error: "internal error (panic)".into(),
        });
    if step.wrote() {
        return now;
    }
    // A poll time already past was not reached by this step (a backoff, or a lease held
    // elsewhere, returns before it): it is no time to wake for, or the thread would spin
    // until the wait is over. The loop's own cap still wakes it for the next poll.
    let next = Some(w.next_wal_poll())
        .filter(|t| *t > now)
        .unwrap_or(u64::MAX);
    match step {
        Step::WaitUntil(t) | Step::Failed { retry_at: t, .. } => next.min(t),
        _ => next,
    }
}
