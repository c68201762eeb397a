//! `replica_sync` and `replica_snapshot`: ask the uploader for work and wait until it is
//! in the replica (or say, within the timeout, why it is not); and the wait of a
//! synchronous commit whose database another process replicates. It must not upload
//! anything itself; the commits it waits for are safe locally whatever it answers.

use super::scope::{databases_for, forked_copy, standby_owner, standing_by, WalOpener};
use crate::database;
use crate::error::Error;
use crate::wal::WalPosition;
use std::path::Path;
use std::time::Duration;

const DEFAULT_SYNC_TIMEOUT_MS: i64 = 30_000;
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest pause between two looks at another process's progress.
const MAX_POLL_PAUSE: Duration = Duration::from_millis(20);

/// Blocks until every commit made before the call is in the replica; returns the txid.
/// `wal_end` is where the connection's WAL ends (its last commit), when it is in WAL mode:
/// a process that stands by for another one's replication waits for that one to ship it.
pub fn sync(
    conn_db: Option<&Path>,
    timeout_ms: Option<i64>,
    wal_end: Option<WalPosition>,
    open_wal: &mut WalOpener<'_>,
) -> Result<i64, Error> {
    let timeout_ms = timeout_ms.unwrap_or(DEFAULT_SYNC_TIMEOUT_MS);
    if timeout_ms < 0 {
        return Err(Error::InvalidArgument(format!(
            "replica_sync: timeout must be >= 0 ms, got {timeout_ms}"
        )));
    }
    if let Some(path) = conn_db.filter(|p| standing_by(p) || forked_copy(p)) {
        return sync_by_other_process(path, wal_end, timeout_ms);
    }
    let dbs = databases_for(conn_db, "replica_sync")?;
    let deadline = std::time::Instant::now() + Duration::from_millis(timeout_ms as u64);
    let mut txid = 0;
    for db in dbs {
        replicating("replica_sync", &db)?;
        let wal_path = crate::wal::log_path_of(&db.path);
        crate::shim::settle_deferred(&db, &mut || open_wal(&wal_path));
        crate::shim::take_foreign_commits_now(&db, &mut || open_wal(&wal_path));
        let target_seq = db.spool.last_seq();
        db.update_progress(|p| p.flush_requested = true);
        crate::uploader::wake();
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match db.wait_for(left, |p| {
            p.shipped_seq >= target_seq && p.needs_snapshot.is_none()
        }) {
            Ok(p) => txid = p.txid as i64,
            Err(p) => {
                let pending = db.spool.pending().len();
                let not_wal = db.counters().state == database::UploaderState::WaitingForWal;
                let why = match (&p.needs_snapshot, &p.last_error) {
                    _ if not_wal => "it is not in WAL mode, so nothing of it can be replicated: run PRAGMA journal_mode=WAL on it".into(),
                    (_, Some(e)) => format!("last error: {e}"),
                    (Some(s), None) => format!("waiting for a snapshot ({s})"),
                    _ => "the uploader is still working".into(),
                };
                return Err(Error::Timeout(format!(
                    "replica_sync: timed out after {timeout_ms} ms: {} is at txid {} with {pending} transaction(s) pending; {why}. The commits are safe locally and will be shipped.",
                    db.name, p.txid
                )));
            }
        }
    }
    Ok(txid)
}

/// An error for a database out of WAL mode: nothing of it can be replicated until it is
/// back, so waiting would only time out.
fn replicating(what: &str, db: &database::Database) -> Result<(), Error> {
    match db.journal_mode() {
        database::JournalMode::Wal => Ok(()),
        mode => Err(Error::NotWal(format!(
            "{what}: {} is not replicating: {} (commits made since it left WAL mode are not captured); run PRAGMA journal_mode=WAL on it to replicate it again, and a snapshot will ship what was missed",
            db.name,
            mode.describe()
        ))),
    }
}

/// Ships a full snapshot now; returns its txid.
pub fn snapshot(db_arg: Option<&str>, conn_db: Option<&Path>) -> Result<i64, Error> {
    let dbs = match db_arg {
        Some(name) => vec![database::find(name).ok_or_else(|| {
            Error::NotReplicated(format!(
                "replica_snapshot: {name} is not a replicated database of this process"
            ))
        })?],
        None => databases_for(conn_db, "replica_snapshot")?,
    };
    let mut txid = 0;
    for db in dbs {
        replicating("replica_snapshot", &db)?;
        let before = db.progress();
        // Like replica_sync, the request earns an attempt even while the uploader backs off.
        db.update_progress(|p| {
            p.snapshot_request += 1;
            p.needs_snapshot = Some("requested by replica_snapshot()".into());
            p.flush_requested = true;
        });
        crate::uploader::wake();
        let done = |p: &crate::database::Progress| {
            p.snapshots > before.snapshots || p.failed_attempts > before.failed_attempts
        };
        match db.wait_for(SNAPSHOT_TIMEOUT, done) {
            Ok(p) if p.snapshots > before.snapshots => txid = p.txid as i64,
            // An attempt made after the request failed: say so now rather than wait out
            // the backoff; the snapshot stays owed and is retried in the background.
            Ok(p) => {
                return Err(Error::Upload(format!(
                    "replica_snapshot: {}: the snapshot could not be uploaded ({}); it stays pending and is retried",
                    db.name,
                    p.last_error.unwrap_or_else(|| "unknown error".into())
                )))
            }
            Err(p) => {
                return Err(Error::Timeout(format!(
                    "replica_snapshot: {} did not finish a snapshot in {} s; last error: {}",
                    db.name,
                    SNAPSHOT_TIMEOUT.as_secs(),
                    p.last_error.unwrap_or_else(|| "none".into())
                )))
            }
        }
    }
    Ok(txid)
}

/// `replica_sync` in a process that stands by for `path` (another process of this host
/// owns its spool): waits for the owner to ship everything up to `wal_end`; the owner
/// takes this process's commits from the shared WAL. Returns the txid it shipped.
fn sync_by_other_process(
    path: &Path,
    wal_end: Option<WalPosition>,
    timeout_ms: i64,
) -> Result<i64, Error> {
    let owner = standby_owner(path);
    let Some(end) = wal_end else {
        return Err(Error::Unsupported(format!(
            "replica_sync: {owner}; its log could not be read to know what to wait for (is it in WAL mode?)"
        )));
    };
    let timeout_ms = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    match wait_for_other_process(path, end, timeout_ms) {
        Ok(txid) => Ok(txid as i64),
        Err(e) => Err(Error::Timeout(format!("replica_sync: {owner}: {e}"))),
    }
}

/// A synchronous commit in a process that does not replicate `db_path` itself (another
/// process holds its spool): waits until that process has shipped the commit ending at
/// `commit`, as the spool's state file says; returns the replica's txid then. Polls the
/// file (there is no channel between processes), more slowly the longer it waits, and the
/// wait is bounded by `timeout_ms`.
pub fn wait_for_other_process(
    db_path: &Path,
    commit: crate::wal::WalPosition,
    timeout_ms: u32,
) -> Result<u64, Error> {
    let dir = crate::spool::Spool::dir_for(db_path);
    let deadline = std::time::Instant::now() + Duration::from_millis(u64::from(timeout_ms));
    let mut pause = Duration::from_millis(2);
    loop {
        let state = crate::spool::Spool::read_state_file(&dir);
        let shipped = state.as_ref().and_then(|s| s.position);
        if shipped.is_some_and(|(p, _)| commit.covered_by(&p)) {
            return Ok(state.map_or(0, |s| s.txid));
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Err(Error::Timeout(format!(
                "{}: the process that replicates it (it holds {}) had not shipped this commit after {timeout_ms} ms; the commit is safe locally and will be shipped",
                db_path.display(),
                dir.join("lock").display()
            )));
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_POLL_PAUSE);
    }
}
