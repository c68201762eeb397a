//! What `replica_status()` shows: one row per replicated database and destination (plus one
//! per database the configuration selects that this process does not replicate, saying why,
//! and one per running restore of a replica no database here replicates), process-wide
//! warnings (config keys accepted but unused, misspellings), running restores' progress,
//! drill results and the error log. It owns the wording of states and the time format; it
//! must never show a secret (replica URLs come from `ReplicaConfig::url`, which redacts).

use crate::base::clock::format_rfc3339;
use crate::database::{self, UploaderState};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusRow {
    pub name: String,
    pub path: String,
    pub replica_url: String,
    pub state: String,
    pub local_txid: i64,
    pub replicated_txid: i64,
    pub lag_ms: i64,
    pub pending_bytes: i64,
    pub last_upload_at: Option<String>,
    pub last_error: Option<String>,
    pub uploads: i64,
    pub upload_errors: i64,
    pub snapshots: i64,
    pub pending_txns: i64,
    pub captured_txns: i64,
    pub put_requests: i64,
    pub get_requests: i64,
    pub list_requests: i64,
    pub delete_requests: i64,
    /// Which process uploads this database: `pid N (this process)` or `pid N`.
    pub uploader: Option<String>,
    /// Consecutive failed upload attempts (0 when the last one succeeded).
    pub retries: i64,
    /// When the uploader tries again, while it is backing off.
    pub next_retry_at: Option<String>,
    /// Files written by compaction into levels 1–3.
    pub compactions: i64,
    /// Files retention deleted (each checked gone).
    pub files_deleted: i64,
    pub warnings: Option<String>,
    /// Progress of a restore from this replica running now.
    pub restore: Option<crate::restore::RestoreProgress>,
    /// The last `replica_verify` drill: when, and its outcome.
    pub last_verify_at: Option<String>,
    pub last_verify: Option<String>,
    /// How often the WAL was restarted or truncated while this process captured it, and how
    /// long (µs, median and 99th percentile) each waited for the spool (writing out what
    /// is still in memory, recording the new log).
    pub restart_waits: i64,
    pub restart_wait_p50_us: i64,
    pub restart_wait_p99_us: i64,
    /// Bytes of LTX files uploaded (transactions, snapshots, compactions).
    pub bytes_uploaded: i64,
    /// When the oldest commit not yet in the replica was captured (or since when a
    /// snapshot has been owed): what `lag_ms` counts from.
    pub oldest_pending_at: Option<String>,
    /// The replica's request budget per month, if it has one.
    pub request_budget: Option<i64>,
    /// Requests to the replica this calendar month (UTC), every process that uploaded it
    /// counted, and their projection to the month's end at the rate counted so far.
    pub requests_month: i64,
    pub requests_month_projected: Option<i64>,
    /// What this month's requests cost at the configured prices (R2's by default), USD.
    pub request_cost_month_usd: Option<f64>,
    /// Whether the replica is encrypted (`age:`), and how many of its files are still
    /// sealed to other recipients than the configured ones (NULL until the uploader has
    /// listed it, and for a plaintext replica).
    pub encrypted: bool,
    pub sealed_to_other_keys: Option<i64>,
    /// The destination's short name (`name:` in the config, or its type): a database with
    /// several destinations has a row for each. NULL for rows that are about no destination
    /// (a restore by URL).
    pub replica: Option<String>,
}

/// The rows of a table-valued function.
pub type Rows = Vec<Vec<Cell>>;

/// A value of a table-valued function's row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    Real(f64),
    Text(String),
    Null,
}

impl From<i64> for Cell {
    fn from(v: i64) -> Cell {
        Cell::Int(v)
    }
}

impl From<Option<String>> for Cell {
    fn from(v: Option<String>) -> Cell {
        v.map_or(Cell::Null, Cell::Text)
    }
}

impl From<&str> for Cell {
    fn from(v: &str) -> Cell {
        Cell::Text(v.to_string())
    }
}

impl StatusRow {
    /// The row's values in [`COLUMNS`] order.
    pub fn cells(&self) -> Vec<Cell> {
        let restore = |f: fn(&crate::restore::RestoreProgress) -> u64| -> Cell {
            self.restore.map_or(Cell::Null, |p| Cell::Int(f(&p) as i64))
        };
        vec![
            self.name.as_str().into(),
            self.path.as_str().into(),
            self.replica_url.as_str().into(),
            self.state.as_str().into(),
            self.local_txid.into(),
            self.replicated_txid.into(),
            self.lag_ms.into(),
            self.pending_bytes.into(),
            self.last_upload_at.clone().into(),
            self.last_error.clone().into(),
            self.uploads.into(),
            self.upload_errors.into(),
            self.snapshots.into(),
            self.pending_txns.into(),
            self.captured_txns.into(),
            self.put_requests.into(),
            self.get_requests.into(),
            self.list_requests.into(),
            self.delete_requests.into(),
            self.uploader.clone().into(),
            self.retries.into(),
            self.next_retry_at.clone().into(),
            self.compactions.into(),
            self.files_deleted.into(),
            self.warnings.clone().into(),
            restore(|p| p.files_done),
            restore(|p| p.files_total),
            restore(|p| p.bytes_done),
            restore(|p| p.bytes_total),
            self.last_verify_at.clone().into(),
            self.last_verify.clone().into(),
            self.restart_waits.into(),
            self.restart_wait_p50_us.into(),
            self.restart_wait_p99_us.into(),
            self.bytes_uploaded.into(),
            self.oldest_pending_at.clone().into(),
            self.request_budget.map_or(Cell::Null, Cell::Int),
            self.requests_month.into(),
            self.requests_month_projected.map_or(Cell::Null, Cell::Int),
            self.request_cost_month_usd.map_or(Cell::Null, Cell::Real),
            i64::from(self.encrypted).into(),
            self.sealed_to_other_keys.map_or(Cell::Null, Cell::Int),
            self.replica.clone().into(),
        ]
    }
}

struct ActiveRestore {
    id: u64,
    replica_url: String,
    output: String,
    progress: crate::restore::RestoreProgress,
}

static RESTORES: Mutex<Vec<ActiveRestore>> = Mutex::new(Vec::new());

/// A restore running now, shown in status until dropped.
pub struct RestoreTracker {
    id: u64,
}

impl RestoreTracker {
    /// `replica_url` must be redacted (`ReplicaTarget::url`).
    pub fn start(replica_url: String, output: &std::path::Path) -> RestoreTracker {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::base::lock::lock(&RESTORES).push(ActiveRestore {
            id,
            replica_url,
            output: output.display().to_string(),
            progress: Default::default(),
        });
        RestoreTracker { id }
    }

    pub fn update(&self, p: &crate::restore::RestoreProgress) {
        let mut all = crate::base::lock::lock(&RESTORES);
        if let Some(r) = all.iter_mut().find(|r| r.id == self.id) {
            r.progress = *p;
        }
    }
}

impl Drop for RestoreTracker {
    fn drop(&mut self) {
        crate::base::lock::lock(&RESTORES).retain(|r| r.id != self.id);
    }
}

/// A boot-time restore that failed, so its database could not be opened.
#[derive(Clone)]
struct BootFailure {
    path: std::path::PathBuf,
    replica_url: String,
    reason: String,
}

static BOOT_FAILURES: Mutex<Vec<BootFailure>> = Mutex::new(Vec::new());

/// The boot-time restore of `path` failed: status shows why (state `error`) until an open
/// of it succeeds. `replica_url` must be redacted (`ReplicaTarget::url`).
pub fn boot_restore_failed(path: &std::path::Path, replica_url: String, reason: String) {
    let mut all = crate::base::lock::lock(&BOOT_FAILURES);
    all.retain(|f| f.path != path);
    all.push(BootFailure {
        path: path.to_path_buf(),
        replica_url,
        reason,
    });
}

/// The boot-time restore of `path` succeeded (or found nothing to restore).
pub fn boot_restore_done(path: &std::path::Path) {
    crate::base::lock::lock(&BOOT_FAILURES).retain(|f| f.path != path);
}

/// Column names, in order, of the `replica_status` table.
pub const COLUMNS: &[&str] = &[
    "name",
    "path",
    "replica_url",
    "state",
    "local_txid",
    "replicated_txid",
    "lag_ms",
    "pending_bytes",
    "last_upload_at",
    "last_error",
    "uploads",
    "upload_errors",
    "snapshots",
    "pending_txns",
    "captured_txns",
    "put_requests",
    "get_requests",
    "list_requests",
    "delete_requests",
    "uploader",
    "retries",
    "next_retry_at",
    "compactions",
    "files_deleted",
    "warnings",
    "restore_files_done",
    "restore_files_total",
    "restore_bytes_done",
    "restore_bytes_total",
    "last_verify_at",
    "last_verify",
    "restart_waits",
    "restart_wait_p50_us",
    "restart_wait_p99_us",
    "bytes_uploaded",
    "oldest_pending_at",
    "request_budget",
    "requests_month",
    "requests_month_projected",
    "request_cost_month_usd",
    "encrypted",
    "sealed_to_other_keys",
    "replica",
];

pub fn rows(now_ms: u64) -> Vec<StatusRow> {
    let restores = crate::base::lock::lock(&RESTORES);
    let dbs = database::all();
    let standby = crate::shim::standby_databases();
    let refused = crate::shim::refused_databases();
    let boot_failures: Vec<BootFailure> = crate::base::lock::lock(&BOOT_FAILURES)
        .iter()
        .filter(|f| !dbs.iter().any(|db| db.path == f.path))
        .cloned()
        .collect();
    let paths = dbs.iter().map(|db| db.path.clone());
    let paths = paths.chain(standby.iter().map(|(p, _)| p.clone()));
    let paths = paths.chain(refused.iter().map(|r| r.path.clone()));
    let paths = paths.chain(boot_failures.iter().map(|f| f.path.clone()));
    let warnings = ProcessWarnings {
        all: crate::base::log::warnings(),
        databases: paths.collect(),
    };
    // A forked child's copies of its parent's databases: the parent uploads them, and the
    // copies' counters stopped at the fork.
    let mut rows: Vec<StatusRow> = Vec::new();
    for db in &dbs {
        let w = warnings.for_database(&db.path);
        for (d, dest) in db.dests().iter().enumerate() {
            rows.push(match db.owned_here() {
                true => database_row(dest, now_ms, &w, &restores),
                false => standby_row(&db.path, d, dest.config(), &w, now_ms),
            });
        }
    }
    for (path, url, p) in crate::follow::all() {
        rows.push(follower_row(&path, url, &p, &warnings.for_database(&path)));
    }
    // Databases another process replicates for this one (it stands by to take over).
    for (path, cfgs) in &standby {
        for (d, cfg) in cfgs.iter().enumerate() {
            rows.push(standby_row(
                path,
                d,
                cfg,
                &warnings.for_database(path),
                now_ms,
            ));
        }
    }
    // Databases not replicated here: opened read-only, or a spool this process may not
    // write or cannot trust (a symlink, another user's).
    for r in &refused {
        rows.push(refused_row(r, &warnings.for_database(&r.path)));
    }
    // Databases that could not be opened because their boot-time restore failed.
    for f in &boot_failures {
        rows.push(boot_failure_row(f, &warnings.for_database(&f.path)));
    }
    // Restores of replicas no database here replicates (by URL, or at boot before the
    // database is registered) get a row of their own.
    for r in restores.iter().filter(|r| {
        !dbs.iter().any(|db| {
            db.destinations
                .iter()
                .any(|d| d.config.url() == r.replica_url)
        })
    }) {
        rows.push(restore_row(r, &warnings.general()));
    }
    rows
}

/// The process's warnings, shown on each row they concern: a warning about one database
/// starts with its path and a colon and shows on that database's row only; the others (the
/// configuration's, the load's) show on every row.
struct ProcessWarnings {
    all: Vec<String>,
    /// The paths of the databases that have rows.
    databases: Vec<std::path::PathBuf>,
}

impl ProcessWarnings {
    fn about(&self, warning: &str) -> Option<&std::path::Path> {
        self.databases.iter().map(|p| p.as_path()).find(|p| {
            warning
                .strip_prefix(p.to_string_lossy().as_ref())
                .is_some_and(|rest| rest.starts_with(": "))
        })
    }

    fn for_database(&self, path: &std::path::Path) -> Option<String> {
        self.joined(|about| about.is_none_or(|p| p == path))
    }

    fn general(&self) -> Option<String> {
        self.joined(|about| about.is_none())
    }

    fn joined(&self, keep: impl Fn(Option<&std::path::Path>) -> bool) -> Option<String> {
        let kept: Vec<&str> = self
            .all
            .iter()
            .filter(|w| keep(self.about(w)))
            .map(String::as_str)
            .collect();
        (!kept.is_empty()).then(|| kept.join("; "))
    }
}

/// The row of one destination of a database this process replicates.
fn database_row(
    dest: &database::Dest,
    now_ms: u64,
    warnings: &Option<String>,
    restores: &[ActiveRestore],
) -> StatusRow {
    let (db, config) = (&dest.db, dest.config());
    let progress = dest.progress();
    // Only what the status shows of them: copying every pending record would hold the
    // spool's lock for milliseconds under a busy writer.
    let pending = dest.pending_summary();
    let c = dest.counters().clone();
    let waits = db.capture_counters().restart_waits.clone();
    // The replica misses everything since the oldest pending commit, or since a snapshot
    // became owed, whichever is older.
    let oldest = pending
        .map(|(_, captured_at_ms)| captured_at_ms)
        .into_iter()
        .chain(progress.snapshot_owed_since_ms)
        .min();
    let lag = oldest.map_or(0, |at| now_ms.saturating_sub(at));
    let ledger = c.ledger.as_ref();
    let month_requests = ledger.map(|l| l.month_in(now_ms));
    // Commits queued for the capture thread are not in the spool yet, nor in the replica.
    let queued = db.capture_queued.load(std::sync::atomic::Ordering::SeqCst);
    let behind = pending.is_some() || queued || progress.needs_snapshot.is_some();
    StatusRow {
        name: db.name.clone(),
        replica: Some(dest.name().to_string()),
        path: db.path.display().to_string(),
        replica_url: config.url(),
        state: state_of(&progress, c.state, behind),
        local_txid: (progress.txid + behind as u64) as i64,
        replicated_txid: progress.txid as i64,
        lag_ms: lag as i64,
        pending_bytes: db.spool.pending_bytes_of(dest.index) as i64,
        last_upload_at: c.last_upload_at_ms.map(format_rfc3339),
        last_error: progress.last_error.clone(),
        uploads: c.uploads as i64,
        upload_errors: c.upload_errors as i64,
        snapshots: c.snapshots as i64,
        pending_txns: pending.map_or(0, |(n, _)| n) as i64,
        captured_txns: db.captured_txns.load(std::sync::atomic::Ordering::Relaxed) as i64,
        put_requests: c.requests.put as i64,
        get_requests: c.requests.get as i64,
        list_requests: c.requests.list as i64,
        delete_requests: c.requests.delete as i64,
        // Only the databases this process uploads get this row (see `rows`).
        uploader: Some(format!("pid {} (this process)", std::process::id())),
        retries: i64::from(progress.retries),
        next_retry_at: progress.next_retry_at_ms.map(format_rfc3339),
        compactions: c.compactions as i64,
        files_deleted: c.files_deleted as i64,
        warnings: with_migration(warnings, &progress),
        restore: restores
            .iter()
            .find(|r| r.replica_url == config.url())
            .map(|r| r.progress),
        last_verify_at: c.last_verify.as_ref().map(|(at, _)| format_rfc3339(*at)),
        last_verify: c.last_verify.as_ref().map(|(_, v)| v.clone()),
        restart_waits: waits.count() as i64,
        restart_wait_p50_us: waits.percentile(50.0) as i64,
        restart_wait_p99_us: waits.percentile(99.0) as i64,
        bytes_uploaded: c.bytes_uploaded as i64,
        oldest_pending_at: oldest.map(format_rfc3339),
        request_budget: config.request_budget.map(|b| b.per_month as i64),
        requests_month: month_requests.map_or(0, |m| m.total() as i64),
        requests_month_projected: ledger.and_then(|l| l.projected(now_ms)).map(|n| n as i64),
        request_cost_month_usd: month_requests.map(|m| m.cost_nanos(&config.prices) as f64 / 1e9),
        encrypted: config.age.is_some(),
        sealed_to_other_keys: c.sealed_otherwise.map(|n| n as i64),
    }
}

/// What a database moving in from Litestream 0.3 is told until its own history has begun.
pub const MIGRATION_WARNING: &str = "the replica's place holds a Litestream 0.3 replica (generations/): libreplica starts its own LTX history beside it and never deletes the 0.3 files; until its first snapshot is up, a restore reads the 0.3 replica";

/// The process's warnings, and the migration's while it lasts (until the replica holds a
/// txid of libreplica's).
fn with_migration(warnings: &Option<String>, progress: &database::Progress) -> Option<String> {
    if !progress.holds_litestream_03 || progress.txid > 0 {
        return warnings.clone();
    }
    Some(match warnings {
        Some(w) => format!("{w}; {MIGRATION_WARNING}"),
        None => MIGRATION_WARNING.to_string(),
    })
}

/// The state column: a database out of WAL mode is not replicating, whatever else holds;
/// then an error wins over everything but a lease held elsewhere (which explains the
/// error), then waiting for WAL mode, then work still owed.
fn state_of(progress: &database::Progress, counted: UploaderState, behind: bool) -> String {
    if progress.journal != database::JournalMode::Wal {
        format!("not replicating: {}", progress.journal.describe())
    } else if counted == UploaderState::LeaseHeldElsewhere && progress.last_error.is_some() {
        counted.as_str().to_string()
    } else if progress.last_error.is_some() {
        "error".to_string()
    } else if counted == UploaderState::WaitingForWal {
        counted.as_str().to_string()
    } else if progress.needs_snapshot.is_some() {
        "snapshot pending".to_string()
    } else if behind {
        "pending".to_string()
    } else {
        "up to date".to_string()
    }
}

/// The row of a database another process replicates while this one stands by (or a
/// forked child's copy of its parent's): what the uploader last recorded in the spool it
/// shares with this process, its shipped txid and time and its requests this month; the
/// counters of its uploads live in that process alone. One row per destination (`d`).
fn standby_row(
    path: &std::path::Path,
    d: usize,
    cfg: &crate::config::ReplicaConfig,
    warnings: &Option<String>,
    now_ms: u64,
) -> StatusRow {
    let dir = crate::spool::Spool::dir_for(path);
    let owner = crate::spool::Spool::owner_pid(&dir);
    let dest_dir = crate::spool::Spool::dest_dir_for(&dir, d, &cfg.name);
    let shipped = crate::spool::Spool::read_state_file(&dest_dir).unwrap_or_default();
    let month = crate::spool::Spool::read_request_ledger_file(&dest_dir)
        .and_then(|t| crate::budget::Ledger::decode(&t))
        .map(|l| (l.month_in(now_ms), l.projected(now_ms)));
    StatusRow {
        local_txid: shipped.txid as i64,
        replicated_txid: shipped.txid as i64,
        last_upload_at: (shipped.shipped_at_ms > 0).then(|| format_rfc3339(shipped.shipped_at_ms)),
        request_budget: cfg.request_budget.map(|b| b.per_month as i64),
        requests_month: month.as_ref().map_or(0, |(m, _)| m.total() as i64),
        requests_month_projected: month.as_ref().and_then(|(_, p)| p.map(|n| n as i64)),
        request_cost_month_usd: month
            .as_ref()
            .map(|(m, _)| m.cost_nanos(&cfg.prices) as f64 / 1e9),
        encrypted: cfg.age.is_some(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        path: path.display().to_string(),
        replica_url: cfg.url(),
        replica: Some(cfg.name.clone()),
        state: "standby".into(),
        uploader: Some(owner.map_or_else(|| "another process".into(), |p| format!("pid {p}"))),
        warnings: warnings.clone(),
        ..StatusRow::default()
    }
}

/// The row of a database this process does not replicate: state `error` when its spool
/// should work and does not, else `not replicating`; `last_error` says why.
fn refused_row(r: &crate::shim::RefusedDatabase, warnings: &Option<String>) -> StatusRow {
    StatusRow {
        name: r
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        path: r.path.display().to_string(),
        replica_url: r.config.url(),
        state: if r.reason.is_error() {
            "error"
        } else {
            "not replicating"
        }
        .into(),
        last_error: Some(r.reason.to_string()),
        warnings: warnings.clone(),
        ..StatusRow::default()
    }
}

/// The row of a follower's copy: state `following`, the txid applied (`local_txid`), the
/// newest the replica listed, how long the last applied file took from the writer's commit
/// to here, and the follower's requests.
fn follower_row(
    path: &std::path::Path,
    replica_url: String,
    p: &crate::follow::Progress,
    warnings: &Option<String>,
) -> StatusRow {
    StatusRow {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        path: path.display().to_string(),
        replica_url,
        state: "following".into(),
        local_txid: p.applied_txid as i64,
        replicated_txid: p.newest_txid.unwrap_or(p.applied_txid) as i64,
        lag_ms: p.lag_ms.unwrap_or(0) as i64,
        last_upload_at: p.last_apply_at_ms.map(format_rfc3339),
        last_error: p.last_error.clone(),
        uploads: p.applies as i64,
        snapshots: p.resyncs as i64,
        get_requests: p.requests.get as i64,
        list_requests: p.requests.list as i64,
        warnings: warnings.clone(),
        ..StatusRow::default()
    }
}

/// The row of a database whose boot-time restore failed: state `error`, and why.
fn boot_failure_row(f: &BootFailure, warnings: &Option<String>) -> StatusRow {
    StatusRow {
        name: f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        path: f.path.display().to_string(),
        replica_url: f.replica_url.clone(),
        state: "error".into(),
        last_error: Some(f.reason.clone()),
        warnings: warnings.clone(),
        ..StatusRow::default()
    }
}

/// The row of a running restore no replicated database of this process shows.
fn restore_row(r: &ActiveRestore, warnings: &Option<String>) -> StatusRow {
    let output = std::path::Path::new(&r.output);
    StatusRow {
        name: output
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        path: r.output.clone(),
        replica_url: r.replica_url.clone(),
        state: "restoring".into(),
        warnings: warnings.clone(),
        restore: Some(r.progress),
        ..StatusRow::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_about_one_database_shows_on_its_row_only() {
        let w = ProcessWarnings {
            all: vec![
                "/srv/a.db: another process replicates this database; this process leaves replication to it".into(),
                "/srv/litestream.yml: unknown key `replicaz`".into(),
                "/srv/ab.db: scratch file".into(),
            ],
            databases: vec!["/srv/a.db".into(), "/srv/b.db".into()],
        };
        let a = w.for_database(std::path::Path::new("/srv/a.db")).unwrap();
        assert!(
            a.starts_with("/srv/a.db: another") && a.contains("replicaz"),
            "{a}"
        );
        let b = w.for_database(std::path::Path::new("/srv/b.db")).unwrap();
        assert!(
            !b.contains("/srv/a.db:") && b.contains("replicaz") && b.contains("/srv/ab.db"),
            "{b}"
        );
        assert!(!w.general().unwrap().contains("/srv/a.db:"));
    }

    #[test]
    fn a_database_moving_in_from_litestream_03_is_told_until_its_history_begins() {
        let mut p = database::Progress {
            holds_litestream_03: true,
            ..Default::default()
        };
        let w = with_migration(&Some("other".into()), &p).unwrap();
        assert!(
            w.starts_with("other; ") && w.ends_with(MIGRATION_WARNING),
            "{w}"
        );
        assert_eq!(
            with_migration(&None, &p).as_deref(),
            Some(MIGRATION_WARNING)
        );
        p.txid = 1;
        assert_eq!(with_migration(&None, &p), None);
    }

    #[test]
    fn every_column_has_a_cell() {
        let row = StatusRow {
            name: "app.db".into(),
            last_error: Some("boom".into()),
            retries: 3,
            ..StatusRow::default()
        };
        let cells = row.cells();
        assert_eq!(cells.len(), COLUMNS.len());
        let at = |n: &str| cells[COLUMNS.iter().position(|c| *c == n).unwrap()].clone();
        assert_eq!(at("name"), Cell::Text("app.db".into()));
        assert_eq!(at("last_error"), Cell::Text("boom".into()));
        assert_eq!(at("retries"), Cell::Int(3));
        assert_eq!(at("next_retry_at"), Cell::Null);
    }

    #[test]
    fn a_running_restore_shows_its_progress_until_it_ends() {
        let url = "file:///nowhere/status-test-replica".to_string();
        let find = || {
            rows(0)
                .into_iter()
                .find(|r| r.replica_url == url)
                .map(|r| (r.state.clone(), r.restore, r.cells()))
        };
        let t = RestoreTracker::start(url.clone(), std::path::Path::new("/tmp/out.db"));
        let p = crate::restore::RestoreProgress {
            files_done: 1,
            files_total: 4,
            bytes_done: 10,
            bytes_total: 99,
        };
        t.update(&p);
        let (state, progress, cells) = find().expect("a row for the restore");
        assert_eq!(state, "restoring");
        assert_eq!(progress, Some(p));
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(
            cells[COLUMNS
                .iter()
                .position(|c| *c == "restore_bytes_total")
                .unwrap()],
            Cell::Int(99)
        );
        drop(t);
        assert!(find().is_none());
    }
}
