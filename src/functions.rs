//! The logic behind the SQL functions (`replica_sync`, `replica_snapshot`,
//! `replica_restore`, `replica_verify`, `replica_restore_points`, `replica_version`) and
//! the restore a database gets when it is opened missing; the FFI layer only converts
//! arguments and results. It owns argument meaning and error wording; it must not touch
//! SQLite itself (the integrity check and the live database reader are handed in).

use crate::config::{self, ReplicaTarget};
use crate::database::{self, Database};
use crate::error::Error;
use crate::restore::{self, RestoreRequest, Target, Tuning};
use crate::status::{Cell, RestoreTracker};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEFAULT_SYNC_TIMEOUT_MS: i64 = 30_000;
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);

pub fn version(sqlite_version: &str) -> String {
    format!(
        "libreplica {} (git {}, {} build, SQLite {sqlite_version})",
        env!("CARGO_PKG_VERSION"),
        env!("REPLICA_GIT_SHA"),
        env!("REPLICA_PROFILE")
    )
}

/// The databases a call on a connection refers to: its main database, which must replicate;
/// for a connection on an in-memory or temporary database, every database this process
/// replicates.
fn databases_for(conn_db: Option<&Path>, what: &str) -> Result<Vec<Arc<Database>>, Error> {
    if let Some(db) = conn_db.and_then(database::get) {
        if !db.owned_here() {
            return Err(Error::Unsupported(format!(
                "{what}: this process was forked from the one that replicates {}; that process ships this one's commits too (multi-process support is not built yet)",
                db.name
            )));
        }
        return Ok(vec![db]);
    }
    if let Some(path) = conn_db {
        // A real database file that does not replicate: succeeding here would mislead.
        return Err(Error::NotReplicated(format!(
            "{what}: {} is not replicated (set REPLICA_URL, add it to litestream.yml, or open it with ?replica=URL; replica_status() and its warnings say why)",
            path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| path.display().to_string())
        )));
    }
    // An in-memory or temporary main database: the call is about the process's databases.
    let all = database::all();
    if all.is_empty() {
        return Err(Error::NotReplicated(format!(
            "{what}: no database is replicated in this process (set REPLICA_URL, add it to litestream.yml, or open it with ?replica=URL)"
        )));
    }
    Ok(all)
}

/// Opens a database's WAL for reading (the FFI layer reads through SQLite's VFS).
pub type WalOpener<'a> = dyn FnMut(&Path) -> Option<Box<dyn crate::base::io::ReadAt>> + 'a;

/// Blocks until every commit made before the call is in the replica; returns the txid.
pub fn sync(
    conn_db: Option<&Path>,
    timeout_ms: Option<i64>,
    open_wal: &mut WalOpener<'_>,
) -> Result<i64, Error> {
    let timeout_ms = timeout_ms.unwrap_or(DEFAULT_SYNC_TIMEOUT_MS);
    if timeout_ms < 0 {
        return Err(Error::InvalidArgument(format!(
            "replica_sync: timeout must be >= 0 ms, got {timeout_ms}"
        )));
    }
    let dbs = databases_for(conn_db, "replica_sync")?;
    let deadline = std::time::Instant::now() + Duration::from_millis(timeout_ms as u64);
    let mut txid = 0;
    for db in dbs {
        let mut wal_path = db.path.as_os_str().to_owned();
        wal_path.push("-wal");
        crate::shim::settle_deferred(&db, &mut || open_wal(Path::new(&wal_path)));
        crate::shim::take_foreign_commits_now(&db, &mut || open_wal(Path::new(&wal_path)));
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

/// Parses `replica_restore`'s point-in-time argument: a txid or an RFC 3339 timestamp.
pub fn parse_point(s: Option<&str>) -> Result<Target, Error> {
    let Some(s) = s
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("latest"))
    else {
        return Ok(Target::Latest);
    };
    if let Ok(t) = s.parse::<u64>() {
        return Ok(Target::Txid(t));
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if let Ok(t) = u64::from_str_radix(hex, 16) {
            return Ok(Target::Txid(t));
        }
    }
    crate::base::clock::parse_rfc3339(s).map(Target::Timestamp).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "replica_restore: point in time {s:?} is neither a txid nor an RFC 3339 timestamp like 2026-11-25T18:00:00Z"
        ))
    })
}

/// What `replica_restore`'s first argument names.
fn resolve_source(src: &str) -> Result<ReplicaTarget, Error> {
    if src.contains("://") || src.starts_with("s3:") {
        return Ok(config::parse_replica_url(
            src,
            &config::Env::from_process(),
        )?);
    }
    if let Some(db) = database::find(src) {
        return Ok(db.config.target.clone());
    }
    let abs =
        std::path::absolute(src).map_err(|e| Error::InvalidArgument(format!("{src}: {e}")))?;
    match crate::shim::resolve_for_path(&abs)? {
        Some(cfg) => Ok(cfg.target),
        None => Err(Error::NotReplicated(format!(
            "replica_restore: {src} has no replica: give a replica URL (file:///dir/{0} or s3://bucket/path), set REPLICA_URL, or add it to litestream.yml",
            abs.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
        ))),
    }
}

/// `replica_restore`'s options: comma-separated `overwrite`, `full`, `parallelism=N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    pub overwrite: bool,
    /// `PRAGMA integrity_check` instead of `quick_check`: slower, but also checks indexes.
    pub full_check: bool,
    pub parallelism: usize,
}

pub fn parse_restore_options(options: Option<&str>) -> Result<RestoreOptions, Error> {
    let mut o = RestoreOptions {
        overwrite: false,
        full_check: false,
        parallelism: restore::DEFAULT_PARALLELISM,
    };
    for opt in options
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        let bad = |what: String| Error::InvalidArgument(format!("replica_restore: {what}"));
        match opt.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            None if opt == "overwrite" => o.overwrite = true,
            None if opt == "full" => o.full_check = true,
            Some(("parallelism", n)) => {
                o.parallelism = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| bad(format!("parallelism must be 1 to 64, got {n:?}")))?
            }
            _ => {
                return Err(bad(format!(
                    "unknown option {opt:?} (known: overwrite, full, parallelism=N)"
                )))
            }
        }
    }
    Ok(o)
}

/// The store and key prefix of a replica.
fn open_replica(
    replica: &ReplicaTarget,
) -> Result<(Box<dyn crate::store::ObjectStore>, String), Error> {
    let store = crate::store::open(replica)?;
    let prefix = match replica {
        ReplicaTarget::S3(t) => t.prefix.clone(),
        ReplicaTarget::File { .. } => String::new(),
    };
    Ok((store, prefix))
}

/// Why a restore runs, which decides what it must also do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// `replica_restore`.
    Asked,
    /// At open of a missing database: never replace a file that appears meanwhile.
    Boot,
    /// `replica_verify`: the restored file's database checksum is needed.
    Drill,
}

/// Restores `replica` into `output`, showing progress in status while it runs.
fn restore_tracked(
    replica: &ReplicaTarget,
    output: &Path,
    target: Target,
    opts: RestoreOptions,
    purpose: Purpose,
    check: &dyn Fn(&Path, bool) -> Result<(), String>,
) -> Result<restore::Restored, Error> {
    let (store, prefix) = open_replica(replica)?;
    let tracker = RestoreTracker::start(replica.url(), output);
    restore::restore_with(
        &RestoreRequest {
            store: store.as_ref(),
            prefix: &prefix,
            output,
            target,
            overwrite: opts.overwrite,
            check: &|p| check(p, opts.full_check),
        },
        &Tuning {
            parallelism: opts.parallelism,
            want_checksum: purpose == Purpose::Drill,
            exclusive: purpose == Purpose::Boot,
            progress: &|p| tracker.update(p),
            ..Default::default()
        },
    )
}

pub fn restore(
    src: &str,
    output: &str,
    point: Option<&str>,
    options: Option<&str>,
    check: &dyn Fn(&Path, bool) -> Result<(), String>,
) -> Result<i64, Error> {
    let opts = parse_restore_options(options)?;
    if output.is_empty() {
        return Err(Error::InvalidArgument(
            "replica_restore: the target path is empty".into(),
        ));
    }
    let output = PathBuf::from(output);
    let abs_out = std::path::absolute(&output).unwrap_or(output.clone());
    if database::get(&abs_out).is_some() {
        return Err(Error::InvalidArgument(format!(
            "replica_restore: {} is a live database replicated by this process; restore to another path",
            output.display()
        )));
    }
    let target = parse_point(point)?;
    let replica = resolve_source(src)?;
    let restored = restore_tracked(&replica, &output, target, opts, Purpose::Asked, check)?;
    Ok(restored.txid as i64)
}

/// Boot-time restore of a replicated database whose file is missing (see
/// `shim::restore_needed_before_open`): a replica without files means a new database.
pub fn restore_missing(
    path: &Path,
    replica: &ReplicaTarget,
    check: &dyn Fn(&Path, bool) -> Result<(), String>,
) -> Result<(), Error> {
    let failed = |e: Error| {
        Error::Restore(format!(
            "{} does not exist and restoring it from {} failed ({e}); not creating an empty database that would be replicated over the replica (set `restore-if-db-not-exists: false` or REPLICA_RESTORE_IF_MISSING=0 to start empty)",
            path.display(),
            replica.url()
        ))
    };
    let (store, prefix) = open_replica(replica).map_err(failed)?;
    if restore::list_objects(store.as_ref(), &prefix)
        .map_err(failed)?
        .is_empty()
    {
        return Ok(());
    }
    let opts = parse_restore_options(None)?;
    let restored = match restore_tracked(replica, path, Target::Latest, opts, Purpose::Boot, check)
    {
        Ok(r) => r,
        // Another process restored (or created) it meanwhile: open that one.
        Err(_) if path.exists() => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    crate::base::log::notice(&format!(
        "{} was missing: restored it from {} at txid {} ({} files, {} bytes)",
        path.display(),
        replica.url(),
        restored.txid,
        restored.files,
        restored.bytes_downloaded
    ));
    Ok(())
}

/// The replica a restore-points listing or a drill is about.
fn replica_of(
    db_arg: Option<&str>,
    conn_db: Option<&Path>,
    what: &str,
) -> Result<Vec<(String, ReplicaTarget)>, Error> {
    match db_arg {
        Some(src) => Ok(vec![(
            database::find(src)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| src.to_string()),
            resolve_source(src)?,
        )]),
        None => Ok(databases_for(conn_db, what)?
            .into_iter()
            .map(|db| (db.name.clone(), db.config.target.clone()))
            .collect()),
    }
}

/// Columns of `replica_restore_points`; `db` is the hidden argument.
pub const RESTORE_POINT_COLUMNS: &[&str] = &[
    "name",
    "level",
    "min_txid",
    "max_txid",
    "timestamp",
    "size",
    "key",
    "db HIDDEN",
];

/// Every LTX file of the replica, oldest first: level, txid range, when it was written
/// (the LTX header's timestamp, read with parallel 100-byte ranged GETs; the store's
/// modified time where a header cannot be read) and its size.
pub fn restore_points(
    db_arg: Option<&str>,
    conn_db: Option<&Path>,
) -> Result<crate::status::Rows, Error> {
    let mut rows = Vec::new();
    for (name, replica) in replica_of(db_arg, conn_db, "replica_restore_points")? {
        let (store, prefix) = open_replica(&replica)?;
        let mut objects = restore::list_objects(store.as_ref(), &prefix)?;
        objects.sort_by_key(|o| (o.min_txid, o.max_txid, o.level));
        let headers = restore::read_headers(store.as_ref(), &objects, restore::DEFAULT_PARALLELISM);
        for (o, h) in objects.iter().zip(headers) {
            let ts = h.map(|h| h.timestamp_ms).unwrap_or(o.modified_ms);
            rows.push(vec![
                name.as_str().into(),
                Cell::Int(o.level as i64),
                Cell::Int(o.min_txid as i64),
                Cell::Int(o.max_txid as i64),
                Cell::Text(crate::base::clock::format_rfc3339(ts)),
                Cell::Int(o.size as i64),
                o.key.as_str().into(),
                db_arg.map(str::to_string).into(),
            ]);
        }
    }
    Ok(rows)
}

/// The longest the drill thread sleeps: a database opened meanwhile gets its schedule
/// within this time.
const MAX_DRILL_IDLE: Duration = Duration::from_secs(1);

/// When each database's next scheduled drill is due. The clock is passed in, so the
/// schedule is testable without waiting.
#[derive(Debug, Default)]
pub struct DrillSchedule {
    /// Database path → its interval and when its next drill is due.
    next: HashMap<PathBuf, (Duration, Instant)>,
}

impl DrillSchedule {
    /// The databases of `dbs` (path, `validation-interval`) whose drill is due at `now`, in
    /// the order given; each is due again one interval after `now` (see [`Self::restart`]).
    /// A database seen for the first time, or with another interval, is first due one
    /// interval from `now`; one no longer listed, or without an interval, is forgotten.
    pub fn due(&mut self, now: Instant, dbs: &[(PathBuf, Option<Duration>)]) -> Vec<PathBuf> {
        self.next
            .retain(|path, _| dbs.iter().any(|(p, i)| p == path && i.is_some()));
        let mut due = Vec::new();
        for (path, interval) in dbs {
            let Some(interval) = *interval else { continue };
            let entry = self
                .next
                .entry(path.clone())
                .or_insert((interval, now + interval));
            if entry.0 != interval {
                *entry = (interval, now + interval);
            }
            if now >= entry.1 {
                entry.1 = now + interval;
                due.push(path.clone());
            }
        }
        due
    }

    /// A drill of `path` ended at `now`: its next one is one interval later (a drill that
    /// takes longer than its interval does not run back to back).
    pub fn restart(&mut self, path: &Path, now: Instant) {
        if let Some((interval, at)) = self.next.get_mut(path) {
            *at = now + *interval;
        }
    }

    /// How long to wait from `now` for the next due drill, at most [`MAX_DRILL_IDLE`].
    pub fn idle(&self, now: Instant) -> Duration {
        self.next
            .values()
            .map(|(_, at)| at.saturating_duration_since(now))
            .min()
            .unwrap_or(MAX_DRILL_IDLE)
            .min(MAX_DRILL_IDLE)
    }
}

/// Runs a drill (`replica_verify`) on every database this process replicates at that
/// database's own `validation-interval`, for the life of the process (the FFI layer runs it
/// on one thread of its own). Outcomes go to `replica_status().last_verify`; failures are
/// logged too.
pub fn run_scheduled_drills(
    live: &dyn crate::snapshot::SnapshotSource,
    open_wal: &mut WalOpener<'_>,
    check: &dyn Fn(&Path, bool) -> Result<(), String>,
) {
    let mut schedule = DrillSchedule::default();
    loop {
        let dbs = database::all();
        let intervals: Vec<(PathBuf, Option<Duration>)> = dbs
            .iter()
            .map(|db| (db.path.clone(), db.config.validation_interval))
            .collect();
        for path in schedule.due(Instant::now(), &intervals) {
            let Some(db) = dbs.iter().find(|db| db.path == path) else {
                continue;
            };
            // Nothing replicated yet (or another process replicates it): nothing to drill.
            if !db.owned_here() || db.progress().txid == 0 {
                continue;
            }
            let name = db.path.to_string_lossy().to_string();
            if let Err(e) = verify(Some(&name), None, live, open_wal, check) {
                crate::base::log::error(&format!("scheduled restore drill of {}: {e}", db.name));
            }
            schedule.restart(&path, Instant::now());
        }
        // Scheduling, not synchronization: the thread wakes when the next drill is due.
        std::thread::sleep(schedule.idle(Instant::now()));
    }
}

/// How many times a drill syncs again when commits keep arriving while it reads.
const VERIFY_ATTEMPTS: usize = 5;

/// `replica_verify([db])`: syncs, reads the live database's checksum at the replicated txid
/// (inside a read transaction, while nothing is pending), restores that txid into a scratch
/// file and compares. Returns the txid verified; a mismatch or a failed restore is an
/// error. The outcome goes to `replica_status().last_verify`.
pub fn verify(
    db_arg: Option<&str>,
    conn_db: Option<&Path>,
    live: &dyn crate::snapshot::SnapshotSource,
    open_wal: &mut WalOpener<'_>,
    check: &dyn Fn(&Path, bool) -> Result<(), String>,
) -> Result<i64, Error> {
    let dbs = match db_arg {
        Some(name) => vec![database::find(name).ok_or_else(|| {
            Error::NotReplicated(format!(
                "replica_verify: {name} is not a replicated database of this process"
            ))
        })?],
        None => databases_for(conn_db, "replica_verify")?,
    };
    let mut txid = 0;
    for db in dbs {
        let outcome = verify_one(&db, live, open_wal, check);
        let text = match &outcome {
            Ok((t, sum)) => format!("ok: txid {t}, checksum {sum:016x}"),
            Err(e) => format!("failed: {e}"),
        };
        db.counters().last_verify = Some((crate::base::clock::now_ms(), text));
        txid = outcome?.0 as i64;
    }
    Ok(txid)
}

fn verify_one(
    db: &database::Database,
    live: &dyn crate::snapshot::SnapshotSource,
    open_wal: &mut WalOpener<'_>,
    check: &dyn Fn(&Path, bool) -> Result<(), String>,
) -> Result<(u64, u64), Error> {
    for _ in 0..VERIFY_ATTEMPTS {
        sync(Some(&db.path), None, open_wal)?;
        let Some((txid, live_sum)) = crate::verify::live_checksum(db, live)? else {
            continue; // a commit arrived meanwhile: sync again
        };
        let scratch = db.spool.scratch_path("verify.db");
        let restored = restore_tracked(
            &db.config.target,
            &scratch,
            Target::Txid(txid),
            RestoreOptions {
                overwrite: true,
                full_check: false,
                parallelism: restore::DEFAULT_PARALLELISM,
            },
            Purpose::Drill,
            check,
        );
        let _ = std::fs::remove_file(&scratch);
        let restored = restored?;
        let restored_sum = restored.db_checksum.expect("asked for");
        if restored.txid != txid || restored_sum != live_sum {
            return Err(Error::Restore(format!(
                "replica_verify: {}: the replica restored at txid {} has checksum {restored_sum:016x}, the live database at txid {txid} has {live_sum:016x}",
                db.name, restored.txid
            )));
        }
        return Ok((txid, live_sum));
    }
    Err(Error::Timeout(format!(
        "replica_verify: {}: commits kept arriving; {VERIFY_ATTEMPTS} attempts found the database ahead of its replica",
        db.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_database_drills_at_its_own_interval() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let (a, b, c) = (
            PathBuf::from("/a.db"),
            PathBuf::from("/b.db"),
            PathBuf::from("/c.db"),
        );
        let mut dbs = vec![
            (a.clone(), Some(ms(100))),
            (b.clone(), Some(ms(300))),
            (c.clone(), None),
        ];
        let mut s = DrillSchedule::default();
        // First seen: each is due one of its intervals later.
        assert!(s.due(t0, &dbs).is_empty());
        assert_eq!(s.idle(t0), ms(100));
        assert!(s.due(t0 + ms(99), &dbs).is_empty());
        assert_eq!(s.due(t0 + ms(100), &dbs), vec![a.clone()]);
        assert_eq!(s.idle(t0 + ms(100)), ms(100));
        assert_eq!(s.due(t0 + ms(200), &dbs), vec![a.clone()]);
        assert_eq!(s.due(t0 + ms(300), &dbs), vec![a.clone(), b.clone()]);
        // A drill that ran long: the next one is an interval after it ended.
        s.restart(&a, t0 + ms(450));
        assert!(s.due(t0 + ms(500), &dbs).is_empty());
        assert_eq!(s.due(t0 + ms(550), &dbs), vec![a.clone()]);
        // A database opened later gets its own schedule; one closed is forgotten.
        dbs.push((PathBuf::from("/d.db"), Some(ms(50))));
        dbs.remove(0);
        assert!(s.due(t0 + ms(560), &dbs).is_empty());
        assert_eq!(s.idle(t0 + ms(560)), ms(40));
        assert_eq!(
            s.due(t0 + ms(610), &dbs),
            vec![b.clone(), PathBuf::from("/d.db")]
        );
        // Another interval for the same database starts its schedule over.
        dbs[0].1 = Some(ms(20));
        assert!(s.due(t0 + ms(620), &dbs).is_empty());
        assert_eq!(s.due(t0 + ms(640), &dbs), vec![b.clone()]);
        // Long intervals: the thread still wakes every MAX_DRILL_IDLE to see new databases.
        let mut s = DrillSchedule::default();
        assert_eq!(s.idle(t0), MAX_DRILL_IDLE);
        s.due(t0, &[(a, Some(Duration::from_secs(3600)))]);
        assert_eq!(s.idle(t0), MAX_DRILL_IDLE);
    }

    #[test]
    fn points_in_time_parse_or_fail_clearly() {
        assert_eq!(parse_point(None).unwrap(), Target::Latest);
        assert_eq!(parse_point(Some("")).unwrap(), Target::Latest);
        assert_eq!(parse_point(Some("42")).unwrap(), Target::Txid(42));
        assert_eq!(parse_point(Some("0x2a")).unwrap(), Target::Txid(42));
        assert_eq!(
            parse_point(Some("1970-01-01T00:00:01Z")).unwrap(),
            Target::Timestamp(1000)
        );
        let e = parse_point(Some("last tuesday")).unwrap_err().to_string();
        assert!(e.contains("neither a txid nor an RFC 3339"), "{e}");
    }

    #[test]
    fn restore_options_parse_or_fail_clearly() {
        let o = parse_restore_options(Some("overwrite, parallelism=3,full")).unwrap();
        assert_eq!(
            o,
            RestoreOptions {
                overwrite: true,
                full_check: true,
                parallelism: 3
            }
        );
        assert_eq!(
            parse_restore_options(None).unwrap().parallelism,
            restore::DEFAULT_PARALLELISM
        );
        for bad in ["parallelism=0", "parallelism=x", "fast"] {
            assert!(parse_restore_options(Some(bad)).is_err(), "{bad}");
        }
    }
}

/// A synchronous commit in a process that does not replicate `db_path` itself (another
/// process holds its spool): waits until that process has shipped the commit ending at
/// `commit`, as the spool's state file says. Polls the file: there is no channel between
/// processes, and the wait is bounded by `timeout_ms`.
pub fn wait_for_other_process(
    db_path: &Path,
    commit: crate::wal::WalPosition,
    timeout_ms: u32,
) -> Result<(), Error> {
    let dir = crate::spool::Spool::dir_for(db_path);
    let deadline = std::time::Instant::now() + Duration::from_millis(u64::from(timeout_ms));
    loop {
        let shipped = crate::spool::Spool::read_state_file(&dir).and_then(|s| s.position);
        if shipped.is_some_and(|(p, _)| commit.covered_by(&p)) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "{}: the process that replicates it (it holds {}) had not shipped this commit after {timeout_ms} ms; the commit is safe locally and will be shipped",
                db_path.display(),
                dir.join("lock").display()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Synchronous commits (`replica_sync=commit`): a connection's COMMIT returns only once the
/// transaction is in the replica. The setting lives in the `pArg` of SQLite's WAL hook (no
/// allocation, nothing to free when the connection closes), packed by these pure helpers.
pub mod sync_commit {
    use crate::error::Error;

    /// Default wait of a synchronous COMMIT for its upload.
    pub const DEFAULT_TIMEOUT_MS: u32 = 5_000;
    const TAG: u64 = 1 << 63;

    /// What a connection in synchronous mode does after each commit.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Settings {
        pub timeout_ms: u32,
        /// `PRAGMA wal_autocheckpoint` as it was: the WAL hook replaces SQLite's own
        /// auto-checkpoint hook, so it runs the same checkpoint itself.
        pub autocheckpoint: u32,
    }

    impl Settings {
        pub fn pack(self) -> u64 {
            TAG | (u64::from(self.timeout_ms.min(0x7fff_ffff)) << 32)
                | u64::from(self.autocheckpoint)
        }
        /// `None` for a WAL-hook argument that is not ours (another hook, or none).
        pub fn unpack(arg: u64) -> Option<Settings> {
            (arg & TAG != 0).then_some(Settings {
                timeout_ms: ((arg >> 32) & 0x7fff_ffff) as u32,
                autocheckpoint: arg as u32,
            })
        }
    }

    /// `'commit'` (synchronous) or `'async'` (the default), as `replica_sync_mode()` and the
    /// `replica_sync` URI parameter take them.
    pub fn parse_mode(s: &str) -> Result<bool, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "commit" | "sync" | "on" => Ok(true),
            "async" | "off" | "" => Ok(false),
            other => Err(Error::InvalidArgument(format!(
                "replica sync mode must be 'commit' (COMMIT waits for the replica) or 'async', got {other:?}"
            ))),
        }
    }

    /// The timeout argument: 1 ms up to about 24 days.
    pub fn parse_timeout(ms: i64) -> Result<u32, Error> {
        u32::try_from(ms)
            .ok()
            .filter(|&t| t > 0 && t <= 0x7fff_ffff)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "replica sync timeout must be a positive number of milliseconds, got {ms}"
                ))
            })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn settings_round_trip_and_foreign_args_are_not_ours() {
            let s = Settings {
                timeout_ms: 5000,
                autocheckpoint: 1000,
            };
            assert_eq!(Settings::unpack(s.pack()), Some(s));
            let max = Settings {
                timeout_ms: 0x7fff_ffff,
                autocheckpoint: u32::MAX,
            };
            assert_eq!(Settings::unpack(max.pack()), Some(max));
            assert_eq!(Settings::unpack(0), None);
            assert_eq!(
                Settings::unpack(1000),
                None,
                "SQLite's own hook passes the page count"
            );
        }

        #[test]
        fn modes_and_timeouts() {
            assert!(parse_mode("commit").unwrap() && parse_mode("COMMIT").unwrap());
            assert!(!parse_mode("async").unwrap());
            assert!(parse_mode("later")
                .unwrap_err()
                .to_string()
                .contains("'commit'"));
            assert_eq!(parse_timeout(250).unwrap(), 250);
            assert!(parse_timeout(0).is_err() && parse_timeout(-5).is_err());
            assert!(parse_timeout(1 << 40).is_err());
        }
    }
}
