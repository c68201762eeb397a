//! The uploader thread: one per process, started lazily by the first wake-up, stepping the
//! worker of every database this process owns and sleeping until the earliest time one of
//! them asked for (or a wake-up). It owns the thread and how snapshots read the live
//! database; it must not do any database's work itself (the workers do).

use super::types::Step;
use super::worker::{DbUploader, WAL_POLL_MAX_MS};
use crate::base::clock::now_ms;
use crate::database;
use crate::snapshot::SnapshotSource;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The uploader thread of this process: its process id and how to wake it. A forked child
/// inherits the value but not the thread, so a different pid means "start one here".
static UPLOADER: std::sync::Mutex<Option<(u32, crossbeam_channel::Sender<()>)>> =
    std::sync::Mutex::new(None);
static SOURCE: OnceLock<Box<dyn SnapshotSource>> = OnceLock::new();

/// Installs how snapshots read the live database (the FFI layer does this at load).
pub fn set_snapshot_source(source: Box<dyn SnapshotSource>) {
    let _ = SOURCE.set(source);
}

/// Nudges the uploader thread, starting it on first use. A lost wake-up is harmless: the
/// thread re-examines every database on each turn.
pub fn wake() {
    if SOURCE.get().is_none() {
        return; // not loaded into a host (unit tests drive `step` themselves)
    }
    let pid = std::process::id();
    let mut uploader = crate::base::lock::lock(&UPLOADER);
    if uploader.as_ref().is_none_or(|(owner, _)| *owner != pid) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("replica-uploader".into())
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            crate::base::log::error(&format!("cannot start the uploader thread: {e}"));
            return;
        }
        *uploader = Some((pid, tx));
    }
    if let Some((_, tx)) = uploader.as_ref() {
        let _ = tx.try_send(());
    }
}

fn run(rx: crossbeam_channel::Receiver<()>) {
    let source = SOURCE.get().expect("set before the thread starts");
    let mut workers: HashMap<PathBuf, DbUploader> = HashMap::new();
    loop {
        for db in database::all().into_iter().filter(|db| db.owned_here()) {
            workers
                .entry(db.path.clone())
                .or_insert_with(|| DbUploader::new(db));
        }
        let standby = crate::shim::take_over_standbys();
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
