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

/// How many of a database's destinations `replica_sync` (and a synchronous commit) waits
/// for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    All,
    Any,
    /// At least this many (all of them when there are fewer); never zero.
    AtLeast(usize),
}

impl Quorum {
    /// `all`, `any` or a positive count; `None` is `all`.
    pub fn parse(text: Option<&str>, what: &str) -> Result<Quorum, Error> {
        let Some(text) = text.map(str::trim) else {
            return Ok(Quorum::All);
        };
        match text.to_ascii_lowercase().as_str() {
            "all" => Ok(Quorum::All),
            "any" => Ok(Quorum::Any),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Quorum::AtLeast(n)),
                _ => Err(Error::InvalidArgument(format!(
                    "{what}: expected 'all', 'any' or a number of destinations (at least 1), got {text:?}"
                ))),
            },
        }
    }

    /// The quorum as `replica_sync`'s second argument spells it.
    pub fn as_sql(self) -> String {
        match self {
            Quorum::All => "all".into(),
            Quorum::Any => "any".into(),
            Quorum::AtLeast(n) => n.to_string(),
        }
    }

    /// How many of `destinations` must have it.
    pub fn of(self, destinations: usize) -> usize {
        match self {
            Quorum::All => destinations,
            Quorum::Any => 1,
            Quorum::AtLeast(n) => n.min(destinations),
        }
    }
}

/// Blocks until every commit made before the call is in the replica (in as many of the
/// database's destinations as `quorum` says); returns the smallest txid among the
/// destinations that have it. `wal_end` is where the connection's WAL ends (its last
/// commit), when it is in WAL mode: a process that stands by for another one's replication
/// waits for that one to ship it.
pub fn sync(
    conn_db: Option<&Path>,
    timeout_ms: Option<i64>,
    quorum: Quorum,
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
        return sync_by_other_process(path, wal_end, timeout_ms, quorum);
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
        let done =
            |p: &database::Progress| p.shipped_seq >= target_seq && p.needs_snapshot.is_none();
        let need = quorum.of(db.destinations.len());
        match db.wait_for_some(left, need, done) {
            Ok(all) => {
                let synced = all.iter().filter(|p| done(p)).map(|p| p.txid).min();
                txid = synced.unwrap_or_default() as i64;
            }
            Err(all) => {
                let behind = describe_behind(&db, &all, &done);
                return Err(Error::Timeout(format!(
                    "replica_sync: timed out after {timeout_ms} ms: {behind}. The commits are safe locally and will be shipped.",
                )));
            }
        }
    }
    Ok(txid)
}

/// What a timed-out `replica_sync` says about each destination that lacks what it waited
/// for: where it is, what is pending, and why.
fn describe_behind(
    db: &database::Database,
    all: &[database::Progress],
    done: &dyn Fn(&database::Progress) -> bool,
) -> String {
    let mut parts = Vec::new();
    for (d, p) in all.iter().enumerate().filter(|(_, p)| !done(p)) {
        let pending = db.spool.pending_summary_of(d).map_or(0, |(n, _)| n);
        let not_wal = db.counters_of(d).state == database::UploaderState::WaitingForWal;
        let why = match (&p.needs_snapshot, &p.last_error) {
            _ if not_wal => "it is not in WAL mode, so nothing of it can be replicated: run PRAGMA journal_mode=WAL on it".into(),
            (_, Some(e)) => format!("last error: {e}"),
            (Some(s), None) => format!("waiting for a snapshot ({s})"),
            _ => "the uploader is still working".into(),
        };
        let whose = match db.has_several_destinations() {
            true => format!("{}'s replica '{}'", db.name, db.destinations[d].config.name),
            false => db.name.clone(),
        };
        parts.push(format!(
            "{whose} is at txid {} with {pending} transaction(s) pending; {why}",
            p.txid
        ));
    }
    parts.join("; ")
}

/// The names of the destinations of a database another process replicates for this one
/// (as this process's configuration has them), the first one first; one unnamed when it
/// knows none.
fn destination_names(path: &Path) -> Vec<String> {
    if let Some(db) = database::get(path) {
        return db
            .destinations
            .iter()
            .map(|d| d.config.name.clone())
            .collect();
    }
    crate::shim::standby_databases()
        .into_iter()
        .find(|(p, _)| p == path)
        .map(|(_, cfgs)| cfgs.into_iter().map(|c| c.name).collect())
        .unwrap_or_else(|| vec![String::new()])
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
        let before = db.all_progress();
        // Like replica_sync, the request earns an attempt even while the uploader backs off.
        db.update_progress(|p| {
            p.snapshot_request += 1;
            p.needs_snapshot = Some("requested by replica_snapshot()".into());
            p.flush_requested = true;
        });
        crate::uploader::wake();
        // Each destination ships its own snapshot, or fails an attempt made after the request.
        let took = |d: usize, p: &database::Progress| p.snapshots > before[d].snapshots;
        let tried = |d: usize, p: &database::Progress| {
            took(d, p) || p.failed_attempts > before[d].failed_attempts
        };
        let all = db.wait_for_each(SNAPSHOT_TIMEOUT, tried);
        let failed = |all: &[database::Progress]| {
            all.iter()
                .enumerate()
                .filter(|(d, p)| !took(*d, p))
                .map(|(d, p)| {
                    let error = p.last_error.clone().unwrap_or_else(|| "none".into());
                    match db.has_several_destinations() {
                        true => format!("replica '{}': {error}", db.destinations[d].config.name),
                        false => error,
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        match all {
            Ok(all) if all.iter().enumerate().all(|(d, p)| took(d, p)) => {
                txid = all.iter().map(|p| p.txid).min().unwrap_or_default() as i64
            }
            // An attempt made after the request failed: say so now rather than wait out
            // the backoff; the snapshot stays owed and is retried in the background.
            Ok(all) => {
                return Err(Error::Upload(format!(
                    "replica_snapshot: {}: the snapshot could not be uploaded ({}); it stays pending and is retried",
                    db.name,
                    failed(&all)
                )))
            }
            Err(all) => {
                return Err(Error::Timeout(format!(
                    "replica_snapshot: {} did not finish a snapshot in {} s; last error: {}",
                    db.name,
                    SNAPSHOT_TIMEOUT.as_secs(),
                    failed(&all)
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
    quorum: Quorum,
) -> Result<i64, Error> {
    let owner = standby_owner(path);
    let Some(end) = wal_end else {
        return Err(Error::Unsupported(format!(
            "replica_sync: {owner}; its log could not be read to know what to wait for (is it in WAL mode?)"
        )));
    };
    let timeout_ms = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    match wait_for_other_process(path, end, timeout_ms, quorum) {
        Ok(txid) => Ok(txid as i64),
        Err(e) => Err(Error::Timeout(format!("replica_sync: {owner}: {e}"))),
    }
}

/// A synchronous commit in a process that does not replicate `db_path` itself (another
/// process holds its spool): waits until that process has shipped the commit ending at
/// `commit` to as many destinations as `quorum` says, as their state files say; returns
/// the smallest txid among them then. Polls the files (there is no channel between
/// processes), more slowly the longer it waits, and the wait is bounded by `timeout_ms`.
pub fn wait_for_other_process(
    db_path: &Path,
    commit: crate::wal::WalPosition,
    timeout_ms: u32,
    quorum: Quorum,
) -> Result<u64, Error> {
    let dir = crate::spool::Spool::dir_for(db_path);
    let names = destination_names(db_path);
    let need = quorum.of(names.len());
    let deadline = std::time::Instant::now() + Duration::from_millis(u64::from(timeout_ms));
    let mut pause = Duration::from_millis(2);
    loop {
        let shipped: Vec<u64> = names
            .iter()
            .enumerate()
            .filter_map(|(d, name)| {
                let dest_dir = crate::spool::Spool::dest_dir_for(&dir, d, name);
                let state = crate::spool::Spool::read_state_file(&dest_dir)?;
                let (end, _) = state.position?;
                commit.covered_by(&end).then_some(state.txid)
            })
            .collect();
        if shipped.len() >= need {
            return Ok(shipped.into_iter().min().unwrap_or_default());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_is_all_any_or_a_count_and_reads_back() {
        for (text, quorum, of_three) in [
            (None, Quorum::All, 3),
            (Some("ALL"), Quorum::All, 3),
            (Some(" any "), Quorum::Any, 1),
            (Some("2"), Quorum::AtLeast(2), 2),
            (Some("5"), Quorum::AtLeast(5), 3),
        ] {
            let parsed = Quorum::parse(text, "q").unwrap();
            assert_eq!((parsed, parsed.of(3)), (quorum, of_three), "{text:?}");
            assert_eq!(Quorum::parse(Some(&parsed.as_sql()), "q").unwrap(), parsed);
        }
        for bad in ["0", "-1", "most", ""] {
            let e = Quorum::parse(Some(bad), "replica_sync")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("expected 'all', 'any' or a number"),
                "{bad}: {e}"
            );
        }
    }
}
