//! What `replica_status()` shows: one row per replicated database (plus one per running
//! restore of a replica no database here replicates), process-wide warnings (config keys
//! accepted but unused, misspellings), running restores' progress, drill results and the
//! error log. It owns the wording of states and the time format; it must never show a secret (replica URLs come from
//! `ReplicaConfig::url`, which redacts).

use crate::database;
use std::collections::VecDeque;
use std::sync::Mutex;

static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static ERRORS: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

pub fn add_warning(msg: &str) {
    let mut w = WARNINGS.lock().unwrap_or_else(|p| p.into_inner());
    if !w.iter().any(|x| x == msg) {
        w.push(msg.to_string());
    }
    log_line("warning", msg);
}

pub fn warnings() -> Vec<String> {
    WARNINGS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Records an error for status and SQLite's log; `REPLICA_LOG=stderr` also prints it.
pub fn log_error(msg: &str) {
    let mut e = ERRORS.lock().unwrap_or_else(|p| p.into_inner());
    if e.len() >= 100 {
        e.pop_front();
    }
    e.push_back(msg.to_string());
    drop(e);
    log_line("error", msg);
}

/// Something worth knowing that needs no action: a fallback that repairs itself.
pub fn log_notice(msg: &str) {
    log_line("notice", msg);
}

fn log_line(level: &str, msg: &str) {
    crate::ffi::sqlite_log(
        libsqlite3_sys::SQLITE_WARNING,
        &format!("libreplica: {msg}"),
    );
    if std::env::var("REPLICA_LOG")
        .map(|v| v == "stderr")
        .unwrap_or(false)
    {
        eprintln!("libreplica {level}: {msg}");
    }
}

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
}

/// The rows of a table-valued function.
pub type Rows = Vec<Vec<Cell>>;

/// A value of a table-valued function's row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
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
        RESTORES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ActiveRestore {
                id,
                replica_url,
                output: output.display().to_string(),
                progress: Default::default(),
            });
        RestoreTracker { id }
    }

    pub fn update(&self, p: &crate::restore::RestoreProgress) {
        let mut all = RESTORES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = all.iter_mut().find(|r| r.id == self.id) {
            r.progress = *p;
        }
    }
}

impl Drop for RestoreTracker {
    fn drop(&mut self) {
        RESTORES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| r.id != self.id);
    }
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
];

pub fn rows(now_ms: u64) -> Vec<StatusRow> {
    let warnings = warnings();
    let warnings = (!warnings.is_empty()).then(|| warnings.join("; "));
    let restores = RESTORES.lock().unwrap_or_else(|p| p.into_inner());
    let dbs = database::all();
    let mut rows: Vec<StatusRow> = dbs
        .iter()
        .map(|db| {
            let progress = db.progress();
            let pending = db.spool.pending();
            let c = db.counters().clone();
            let lag = pending
                .first()
                .map(|r| now_ms.saturating_sub(r.captured_at_ms))
                .unwrap_or(0);
            let behind = !pending.is_empty() || progress.needs_snapshot.is_some();
            let state = if c.state == "lease held elsewhere" && progress.last_error.is_some() {
                c.state.to_string()
            } else if progress.last_error.is_some() {
                "error".to_string()
            } else if c.state == "waiting for WAL mode" {
                c.state.to_string()
            } else if progress.needs_snapshot.is_some() {
                "snapshot pending".to_string()
            } else if behind {
                "pending".to_string()
            } else {
                "up to date".to_string()
            };
            StatusRow {
                name: db.name.clone(),
                path: db.path.display().to_string(),
                replica_url: db.config.url(),
                state,
                local_txid: (progress.txid + behind as u64) as i64,
                replicated_txid: progress.txid as i64,
                lag_ms: lag as i64,
                pending_bytes: db.spool.pending_bytes() as i64,
                last_upload_at: c.last_upload_at_ms.map(format_rfc3339),
                last_error: progress.last_error.clone(),
                uploads: c.uploads as i64,
                upload_errors: c.upload_errors as i64,
                snapshots: c.snapshots as i64,
                pending_txns: pending.len() as i64,
                captured_txns: c.captured_txns as i64,
                put_requests: c.requests.put as i64,
                get_requests: c.requests.get as i64,
                list_requests: c.requests.list as i64,
                delete_requests: c.requests.delete as i64,
                uploader: Some(if db.owned_here() {
                    format!("pid {} (this process)", std::process::id())
                } else {
                    crate::spool::Spool::owner_pid(&crate::spool::Spool::dir_for(&db.path))
                        .map_or_else(|| "another process".into(), |p| format!("pid {p}"))
                }),
                retries: i64::from(progress.retries),
                next_retry_at: progress.next_retry_at_ms.map(format_rfc3339),
                compactions: c.compactions as i64,
                files_deleted: c.files_deleted as i64,
                warnings: warnings.clone(),
                restore: restores
                    .iter()
                    .find(|r| r.replica_url == db.config.url())
                    .map(|r| r.progress),
                last_verify_at: c.last_verify.as_ref().map(|(at, _)| format_rfc3339(*at)),
                last_verify: c.last_verify.as_ref().map(|(_, v)| v.clone()),
            }
        })
        .collect();
    // Databases another process replicates for this one (it stands by to take over).
    for (path, cfg) in crate::shim::standby_databases() {
        let owner = crate::spool::Spool::owner_pid(&crate::spool::Spool::dir_for(&path));
        rows.push(StatusRow {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            path: path.display().to_string(),
            replica_url: cfg.url(),
            state: "standby".into(),
            uploader: Some(owner.map_or_else(|| "another process".into(), |p| format!("pid {p}"))),
            warnings: warnings.clone(),
            ..StatusRow::default()
        });
    }
    // Restores of replicas no database here replicates (by URL, or at boot before the
    // database is registered) get a row of their own.
    for r in restores
        .iter()
        .filter(|r| !dbs.iter().any(|db| db.config.url() == r.replica_url))
    {
        let output = std::path::Path::new(&r.output);
        rows.push(StatusRow {
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
        });
    }
    rows
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-25T18:00:00.123Z`
pub fn format_rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Parses RFC 3339 (`2026-11-25T18:00:00Z`, fractional seconds and `±hh:mm` offsets too)
/// into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0u64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        let padded = format!("{:0<3}", &digits[..digits.len().min(3)]);
        frac_ms = padded.parse().ok()?;
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)? as i64;
            let om = num(i + 4..i + 6)? as i64;
            let v = oh * 3600 + om * 60;
            if sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y as i64, mo, d);
    let secs = days * 86_400 + h as i64 * 3600 + mi as i64 * 60 + se as i64 - offset_secs;
    (secs >= 0).then(|| secs as u64 * 1000 + frac_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn rfc3339_round_trips_and_accepts_offsets() {
        let ms = 1_795_629_600_123; // 2026-11-25T...
        assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms));
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z"), Some(951_825_600_000));
        assert_eq!(
            parse_rfc3339("2000-02-29T13:30:00+01:30"),
            Some(951_825_600_000)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T12:00:00.5Z"),
            Some(951_825_600_500)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2000-13-01T00:00:00Z"), None);
    }
}
