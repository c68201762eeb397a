//! What `replica_status()` shows: one row per replicated database, process-wide warnings
//! (config keys accepted but unused, misspellings) and the error log. It owns the wording of
//! states and the time format; it must never show a secret (replica URLs come from
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

#[derive(Debug, Clone, PartialEq)]
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
    /// Files written by compaction into levels 1–3.
    pub compactions: i64,
    /// Files retention deleted (each checked gone).
    pub files_deleted: i64,
    pub warnings: Option<String>,
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
    "compactions",
    "files_deleted",
    "warnings",
];

pub fn rows(now_ms: u64) -> Vec<StatusRow> {
    let warnings = warnings();
    let warnings = (!warnings.is_empty()).then(|| warnings.join("; "));
    database::all()
        .into_iter()
        .map(|db| {
            let progress = db.progress();
            let pending = db.spool.pending();
            let c = db.counters().clone();
            let lag = pending
                .first()
                .map(|r| now_ms.saturating_sub(r.captured_at_ms))
                .unwrap_or(0);
            let behind = !pending.is_empty() || progress.needs_snapshot.is_some();
            let state = if progress.last_error.is_some() {
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
                compactions: c.compactions as i64,
                files_deleted: c.files_deleted as i64,
                warnings: warnings.clone(),
            }
        })
        .collect()
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
