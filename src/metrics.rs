//! What `replica_metrics()` shows: the rows of `replica_status()` in the Prometheus text
//! exposition format (version 0.0.4), for an app to serve on a route of its own. It owns
//! the metric names, types and help texts, the label escaping and the request-cost estimate;
//! it reads nothing but the rows it is given, so it never shows more than status does (no
//! secret: replica URLs in status are redacted).
//!
//! Every metric is one entry of [`METRICS`], its value read off a [`StatusRow`]: a new
//! status field becomes a metric by adding one entry there.

use crate::base::clock::parse_rfc3339;
use crate::status::StatusRow;
use std::fmt::Write;

/// A row's request counters as (operation, R2 billing class, count). `put` is every PUT
/// and multipart POST status counts in `put_requests`; `get` every GET and HEAD.
fn requests_by_class(r: &StatusRow) -> [(&'static str, &'static str, i64); 4] {
    [
        ("put", "A", r.put_requests),
        ("list", "A", r.list_requests),
        ("get", "B", r.get_requests),
        ("delete", "free", r.delete_requests),
    ]
}

/// What a row's requests cost at R2's prices, in US dollars (the budget's own arithmetic,
/// exact to the last request).
pub fn request_cost_usd(r: &StatusRow) -> f64 {
    let counts = crate::budget::ClassCounts {
        class_a: (r.put_requests.max(0) + r.list_requests.max(0)) as u64,
        class_b: r.get_requests.max(0) as u64,
        free: r.delete_requests.max(0) as u64,
    };
    counts.cost_nanos(&crate::budget::Prices::default()) as f64 / 1e9
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Only goes up while the process runs (it starts again at 0 in a new process); its
    /// name ends in `_total`.
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample's labels beyond the database's own, and its value.
type Samples = Vec<(Vec<(&'static str, String)>, f64)>;

/// How a metric's samples come out of one row.
#[derive(Clone, Copy)]
enum Value {
    /// One sample, or none when the row does not have the value.
    One(fn(&StatusRow) -> Option<f64>),
    /// Samples with labels of their own.
    Labelled(fn(&StatusRow) -> Samples),
}

struct Metric {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: Value,
}

const fn counter(
    name: &'static str,
    help: &'static str,
    f: fn(&StatusRow) -> Option<f64>,
) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        help,
        value: Value::One(f),
    }
}

const fn gauge(name: &'static str, help: &'static str, f: fn(&StatusRow) -> Option<f64>) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        help,
        value: Value::One(f),
    }
}

const fn labelled(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    f: fn(&StatusRow) -> Samples,
) -> Metric {
    Metric {
        name,
        kind,
        help,
        value: Value::Labelled(f),
    }
}

fn int(v: i64) -> Option<f64> {
    Some(v as f64)
}

/// An RFC 3339 time of status as seconds since the Unix epoch.
fn unix_seconds(t: &Option<String>) -> Option<f64> {
    t.as_deref()
        .and_then(parse_rfc3339)
        .map(|ms| ms as f64 / 1000.0)
}

/// A drill's outcome as `functions::verify` words it: `ok: …` or `failed: …`.
fn verify_succeeded(outcome: &str) -> f64 {
    f64::from(u8::from(outcome.starts_with("ok")))
}

fn micros_as_seconds(us: i64) -> Option<f64> {
    Some(us as f64 / 1e6)
}

/// Every metric, in the order they are written.
static METRICS: &[Metric] = &[
    labelled(
        "replica_state",
        Kind::Gauge,
        "1 for the state replica_status() shows (up to date, pending, error, standby, ...).",
        |r| vec![(vec![("state", r.state.clone())], 1.0)],
    ),
    gauge(
        "replica_lag_seconds",
        "Age of the oldest committed transaction not yet in the replica (0 when caught up).",
        |r| Some(r.lag_ms as f64 / 1000.0),
    ),
    gauge(
        "replica_pending_bytes",
        "Bytes of committed transactions waiting in the spool to be uploaded.",
        |r| int(r.pending_bytes),
    ),
    gauge(
        "replica_pending_transactions",
        "Committed transactions waiting in the spool to be uploaded.",
        |r| int(r.pending_txns),
    ),
    gauge(
        "replica_local_txid",
        "Transaction ID of the newest commit this process knows of.",
        |r| int(r.local_txid),
    ),
    gauge(
        "replica_replicated_txid",
        "Transaction ID the replica holds.",
        |r| int(r.replicated_txid),
    ),
    counter(
        "replica_captured_transactions_total",
        "Transactions captured from the WAL.",
        |r| int(r.captured_txns),
    ),
    counter(
        "replica_uploads_total",
        "LTX files uploaded: level-0 files and snapshots (compactions count apart).",
        |r| int(r.uploads),
    ),
    counter(
        "replica_uploaded_bytes_total",
        "Bytes of LTX files uploaded (level 0, snapshots and compactions).",
        |r| int(r.bytes_uploaded),
    ),
    counter(
        "replica_upload_errors_total",
        "Upload attempts that failed (each is retried).",
        |r| int(r.upload_errors),
    ),
    gauge(
        "replica_retries",
        "Consecutive failed upload attempts now (0 once one succeeds).",
        |r| int(r.retries),
    ),
    gauge(
        "replica_next_retry_timestamp_seconds",
        "When the uploader tries again, while it backs off (Unix time).",
        |r| unix_seconds(&r.next_retry_at),
    ),
    labelled(
        "replica_requests_total",
        Kind::Counter,
        "Requests by operation (put: PUT, POST; get: GET, HEAD) and R2 billing class.",
        |r| {
            requests_by_class(r)
                .iter()
                .map(|&(op, class, n)| {
                    (
                        vec![("operation", op.into()), ("class", class.into())],
                        n as f64,
                    )
                })
                .collect()
        },
    ),
    gauge(
        "replica_request_cost_usd",
        "Estimated cost of these requests at R2 prices: Class A $4.50, B $0.36 per million.",
        |r| Some(request_cost_usd(r)),
    ),
    gauge(
        "replica_requests_month",
        "Requests to the replica this calendar month (UTC), by every process that uploaded it.",
        |r| int(r.requests_month),
    ),
    gauge(
        "replica_requests_month_projected",
        "This month's requests at month end, at the rate counted so far.",
        |r| r.requests_month_projected.map(|n| n as f64),
    ),
    gauge(
        "replica_request_budget_month",
        "The replica's request budget per month (request-budget), when it has one.",
        |r| r.request_budget.map(|n| n as f64),
    ),
    gauge(
        "replica_request_cost_month_usd",
        "This month's requests at the configured prices (request-price; R2's by default).",
        |r| r.request_cost_month_usd,
    ),
    gauge(
        "replica_oldest_pending_timestamp_seconds",
        "When the oldest commit not yet in the replica was captured (Unix time).",
        |r| unix_seconds(&r.oldest_pending_at),
    ),
    counter("replica_snapshots_total", "Snapshots uploaded.", |r| {
        int(r.snapshots)
    }),
    counter(
        "replica_compactions_total",
        "Files written by compaction (levels 1 and up).",
        |r| int(r.compactions),
    ),
    counter(
        "replica_files_deleted_total",
        "Files retention deleted (each checked gone).",
        |r| int(r.files_deleted),
    ),
    gauge(
        "replica_last_upload_timestamp_seconds",
        "When the last upload succeeded (Unix time).",
        |r| unix_seconds(&r.last_upload_at),
    ),
    gauge(
        "replica_last_verify_timestamp_seconds",
        "When the last restore drill (replica_verify) ended (Unix time).",
        |r| unix_seconds(&r.last_verify_at),
    ),
    gauge(
        "replica_last_verify_success",
        "1 if the last restore drill (replica_verify) matched the database, 0 if it failed.",
        |r| r.last_verify.as_deref().map(verify_succeeded),
    ),
    gauge(
        "replica_restore_bytes_done",
        "Bytes a running restore from this replica has downloaded.",
        |r| r.restore.map(|p| p.bytes_done as f64),
    ),
    gauge(
        "replica_restore_bytes_expected",
        "Bytes a running restore from this replica downloads in all.",
        |r| r.restore.map(|p| p.bytes_total as f64),
    ),
    gauge(
        "replica_restore_files_done",
        "Files a running restore from this replica has applied.",
        |r| r.restore.map(|p| p.files_done as f64),
    ),
    gauge(
        "replica_restore_files_expected",
        "Files a running restore from this replica applies in all.",
        |r| r.restore.map(|p| p.files_total as f64),
    ),
    counter(
        "replica_restart_waits_total",
        "WAL restarts and truncations this process captured (each waited for the spool).",
        |r| int(r.restart_waits),
    ),
    gauge(
        "replica_restart_wait_p50_seconds",
        "Median time a WAL restart waited for the spool (bucket bound).",
        |r| micros_as_seconds(r.restart_wait_p50_us),
    ),
    gauge(
        "replica_restart_wait_p99_seconds",
        "99th percentile of how long a WAL restart waited for the spool (bucket bound).",
        |r| micros_as_seconds(r.restart_wait_p99_us),
    ),
];

/// `s` as a label value: backslash, double quote and line feed escaped.
fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as help text: backslash and line feed escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers exactly, other numbers in the shortest form that reads back
/// the same (Rust never writes an exponent, which the format would also accept).
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The exposition text of `rows`: each metric's `# HELP` and `# TYPE` lines, then one sample
/// per row that has the value, labelled `db` (the file name), `path` (which tells apart
/// databases of the same name), `replica` (the redacted URL) and, for a database with
/// several destinations, `replica_name` (the destination's name). A row whose database and
/// replica an earlier row already showed is left out: a series appears once.
pub fn render(rows: &[StatusRow]) -> String {
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<&StatusRow> = rows
        .iter()
        .filter(|r| seen.insert((r.path.as_str(), r.replica_url.as_str())))
        .collect();
    // Databases with several destinations: their series are told apart by name too.
    let mut per_path = std::collections::HashMap::new();
    for r in &rows {
        *per_path.entry(r.path.as_str()).or_insert(0) += 1;
    }
    let several = |r: &StatusRow| per_path.get(r.path.as_str()).is_some_and(|n| *n > 1);
    let mut out = String::new();
    for m in METRICS {
        let _ = writeln!(out, "# HELP {} {}", m.name, escape_help(m.help));
        let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind.as_str());
        for r in &rows {
            let samples: Samples = match m.value {
                Value::One(f) => f(r).map(|v| (Vec::new(), v)).into_iter().collect(),
                Value::Labelled(f) => f(r),
            };
            for (extra, v) in samples {
                let mut labels = vec![
                    ("db", r.name.clone()),
                    ("path", r.path.clone()),
                    ("replica", r.replica_url.clone()),
                ];
                if let Some(name) = r.replica.as_ref().filter(|_| several(r)) {
                    labels.push(("replica_name", name.clone()));
                }
                labels.extend(extra);
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                    .collect();
                let _ = writeln!(
                    out,
                    "{}{{{}}} {}",
                    m.name,
                    labels.join(","),
                    format_value(v)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with a value in every field metrics read.
    fn row() -> StatusRow {
        StatusRow {
            name: "app.db".into(),
            path: "/srv/app/app.db".into(),
            replica_url: "s3://bkt/app.db?endpoint=https://r2.example".into(),
            state: "pending".into(),
            local_txid: 12,
            replicated_txid: 10,
            lag_ms: 1500,
            pending_bytes: 8192,
            last_upload_at: Some("2026-11-25T18:00:00.250Z".into()),
            uploads: 7,
            upload_errors: 1,
            snapshots: 1,
            pending_txns: 2,
            captured_txns: 11,
            put_requests: 9,
            get_requests: 3,
            list_requests: 1,
            delete_requests: 2,
            retries: 0,
            compactions: 4,
            files_deleted: 5,
            restore: Some(crate::restore::RestoreProgress {
                files_done: 1,
                files_total: 3,
                bytes_done: 100,
                bytes_total: 400,
            }),
            last_verify_at: Some("2026-11-25T17:00:00.000Z".into()),
            last_verify: Some("ok: txid 9, checksum 00000000deadbeef".into()),
            restart_waits: 6,
            restart_wait_p50_us: 120,
            restart_wait_p99_us: 2500,
            bytes_uploaded: 65536,
            requests_month: 15,
            requests_month_projected: Some(450),
            request_budget: Some(500_000),
            request_cost_month_usd: Some(0.0000567),
            oldest_pending_at: Some("2026-11-25T18:00:01.500Z".into()),
            ..StatusRow::default()
        }
    }

    /// The text of one row, every line of it: names, types, help, label order, values.
    #[test]
    fn a_row_renders_as_this_exposition_text() {
        let l = r#"db="app.db",path="/srv/app/app.db",replica="s3://bkt/app.db?endpoint=https://r2.example""#;
        let want = [
            "# HELP replica_state 1 for the state replica_status() shows (up to date, pending, error, standby, ...).",
            "# TYPE replica_state gauge",
            &format!(r#"replica_state{{{l},state="pending"}} 1"#),
            "# HELP replica_lag_seconds Age of the oldest committed transaction not yet in the replica (0 when caught up).",
            "# TYPE replica_lag_seconds gauge",
            &format!("replica_lag_seconds{{{l}}} 1.5"),
            "# HELP replica_pending_bytes Bytes of committed transactions waiting in the spool to be uploaded.",
            "# TYPE replica_pending_bytes gauge",
            &format!("replica_pending_bytes{{{l}}} 8192"),
            "# HELP replica_pending_transactions Committed transactions waiting in the spool to be uploaded.",
            "# TYPE replica_pending_transactions gauge",
            &format!("replica_pending_transactions{{{l}}} 2"),
            "# HELP replica_local_txid Transaction ID of the newest commit this process knows of.",
            "# TYPE replica_local_txid gauge",
            &format!("replica_local_txid{{{l}}} 12"),
            "# HELP replica_replicated_txid Transaction ID the replica holds.",
            "# TYPE replica_replicated_txid gauge",
            &format!("replica_replicated_txid{{{l}}} 10"),
            "# HELP replica_captured_transactions_total Transactions captured from the WAL.",
            "# TYPE replica_captured_transactions_total counter",
            &format!("replica_captured_transactions_total{{{l}}} 11"),
            "# HELP replica_uploads_total LTX files uploaded: level-0 files and snapshots (compactions count apart).",
            "# TYPE replica_uploads_total counter",
            &format!("replica_uploads_total{{{l}}} 7"),
            "# HELP replica_uploaded_bytes_total Bytes of LTX files uploaded (level 0, snapshots and compactions).",
            "# TYPE replica_uploaded_bytes_total counter",
            &format!("replica_uploaded_bytes_total{{{l}}} 65536"),
            "# HELP replica_upload_errors_total Upload attempts that failed (each is retried).",
            "# TYPE replica_upload_errors_total counter",
            &format!("replica_upload_errors_total{{{l}}} 1"),
            "# HELP replica_retries Consecutive failed upload attempts now (0 once one succeeds).",
            "# TYPE replica_retries gauge",
            &format!("replica_retries{{{l}}} 0"),
            "# HELP replica_next_retry_timestamp_seconds When the uploader tries again, while it backs off (Unix time).",
            "# TYPE replica_next_retry_timestamp_seconds gauge",
            "# HELP replica_requests_total Requests by operation (put: PUT, POST; get: GET, HEAD) and R2 billing class.",
            "# TYPE replica_requests_total counter",
            &format!(r#"replica_requests_total{{{l},operation="put",class="A"}} 9"#),
            &format!(r#"replica_requests_total{{{l},operation="list",class="A"}} 1"#),
            &format!(r#"replica_requests_total{{{l},operation="get",class="B"}} 3"#),
            &format!(r#"replica_requests_total{{{l},operation="delete",class="free"}} 2"#),
            "# HELP replica_request_cost_usd Estimated cost of these requests at R2 prices: Class A $4.50, B $0.36 per million.",
            "# TYPE replica_request_cost_usd gauge",
            &format!("replica_request_cost_usd{{{l}}} 0.00004608"),
            "# HELP replica_requests_month Requests to the replica this calendar month (UTC), by every process that uploaded it.",
            "# TYPE replica_requests_month gauge",
            &format!("replica_requests_month{{{l}}} 15"),
            "# HELP replica_requests_month_projected This month's requests at month end, at the rate counted so far.",
            "# TYPE replica_requests_month_projected gauge",
            &format!("replica_requests_month_projected{{{l}}} 450"),
            "# HELP replica_request_budget_month The replica's request budget per month (request-budget), when it has one.",
            "# TYPE replica_request_budget_month gauge",
            &format!("replica_request_budget_month{{{l}}} 500000"),
            "# HELP replica_request_cost_month_usd This month's requests at the configured prices (request-price; R2's by default).",
            "# TYPE replica_request_cost_month_usd gauge",
            &format!("replica_request_cost_month_usd{{{l}}} 0.0000567"),
            "# HELP replica_oldest_pending_timestamp_seconds When the oldest commit not yet in the replica was captured (Unix time).",
            "# TYPE replica_oldest_pending_timestamp_seconds gauge",
            &format!("replica_oldest_pending_timestamp_seconds{{{l}}} 1795629601.5"),
            "# HELP replica_snapshots_total Snapshots uploaded.",
            "# TYPE replica_snapshots_total counter",
            &format!("replica_snapshots_total{{{l}}} 1"),
            "# HELP replica_compactions_total Files written by compaction (levels 1 and up).",
            "# TYPE replica_compactions_total counter",
            &format!("replica_compactions_total{{{l}}} 4"),
            "# HELP replica_files_deleted_total Files retention deleted (each checked gone).",
            "# TYPE replica_files_deleted_total counter",
            &format!("replica_files_deleted_total{{{l}}} 5"),
            "# HELP replica_last_upload_timestamp_seconds When the last upload succeeded (Unix time).",
            "# TYPE replica_last_upload_timestamp_seconds gauge",
            &format!("replica_last_upload_timestamp_seconds{{{l}}} 1795629600.25"),
            "# HELP replica_last_verify_timestamp_seconds When the last restore drill (replica_verify) ended (Unix time).",
            "# TYPE replica_last_verify_timestamp_seconds gauge",
            &format!("replica_last_verify_timestamp_seconds{{{l}}} 1795626000"),
            "# HELP replica_last_verify_success 1 if the last restore drill (replica_verify) matched the database, 0 if it failed.",
            "# TYPE replica_last_verify_success gauge",
            &format!("replica_last_verify_success{{{l}}} 1"),
            "# HELP replica_restore_bytes_done Bytes a running restore from this replica has downloaded.",
            "# TYPE replica_restore_bytes_done gauge",
            &format!("replica_restore_bytes_done{{{l}}} 100"),
            "# HELP replica_restore_bytes_expected Bytes a running restore from this replica downloads in all.",
            "# TYPE replica_restore_bytes_expected gauge",
            &format!("replica_restore_bytes_expected{{{l}}} 400"),
            "# HELP replica_restore_files_done Files a running restore from this replica has applied.",
            "# TYPE replica_restore_files_done gauge",
            &format!("replica_restore_files_done{{{l}}} 1"),
            "# HELP replica_restore_files_expected Files a running restore from this replica applies in all.",
            "# TYPE replica_restore_files_expected gauge",
            &format!("replica_restore_files_expected{{{l}}} 3"),
            "# HELP replica_restart_waits_total WAL restarts and truncations this process captured (each waited for the spool).",
            "# TYPE replica_restart_waits_total counter",
            &format!("replica_restart_waits_total{{{l}}} 6"),
            "# HELP replica_restart_wait_p50_seconds Median time a WAL restart waited for the spool (bucket bound).",
            "# TYPE replica_restart_wait_p50_seconds gauge",
            &format!("replica_restart_wait_p50_seconds{{{l}}} 0.00012"),
            "# HELP replica_restart_wait_p99_seconds 99th percentile of how long a WAL restart waited for the spool (bucket bound).",
            "# TYPE replica_restart_wait_p99_seconds gauge",
            &format!("replica_restart_wait_p99_seconds{{{l}}} 0.0025"),
        ];
        let got = render(&[row()]);
        for (i, (g, w)) in got.lines().zip(want.iter()).enumerate() {
            assert_eq!(g, *w, "line {}", i + 1);
        }
        assert_eq!(got.lines().count(), want.len(), "{got}");
        assert!(got.ends_with('\n'));
    }

    #[test]
    fn the_request_cost_is_class_a_and_b_at_r2_prices_and_deletes_are_free() {
        let r = StatusRow {
            put_requests: 2_000_000,
            list_requests: 1_000_000,
            get_requests: 1_000_000,
            delete_requests: 5_000_000,
            ..StatusRow::default()
        };
        assert!((request_cost_usd(&r) - (3.0 * 4.50 + 0.36)).abs() < 1e-9);
        assert_eq!(request_cost_usd(&StatusRow::default()), 0.0);
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let r = StatusRow {
            name: "we\"ird\\name\nx.db".into(),
            ..StatusRow::default()
        };
        let text = render(&[r]);
        assert!(
            text.contains(r#"replica_lag_seconds{db="we\"ird\\name\nx.db",path="",replica=""} 0"#),
            "{text}"
        );
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        // Every sample line stays one line.
        assert!(text
            .lines()
            .all(|l| l.starts_with("# ") || l.starts_with("replica_")));
    }

    #[test]
    fn names_are_valid_and_counters_end_in_total() {
        for m in METRICS {
            assert!(m.name.starts_with("replica_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            assert!(!m.help.is_empty() && !m.help.contains('\n'));
        }
        let mut names: Vec<_> = METRICS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "a metric is declared twice");
    }

    #[test]
    fn values_a_row_does_not_have_are_left_out_and_a_series_appears_once() {
        let mut other = row();
        other.path = "/srv/other/app.db".into();
        other.restore = None;
        other.last_verify = Some("failed: checksum mismatch".into());
        let text = render(&[row(), other, row()]);
        let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        // Two databases named app.db in two directories: two series, told apart by path.
        assert_eq!(count("replica_lag_seconds{"), 2);
        assert_eq!(count("replica_restore_bytes_done{"), 1);
        assert_eq!(count("replica_next_retry_timestamp_seconds{"), 0);
        assert!(text.contains(
            r#"replica_last_verify_success{db="app.db",path="/srv/other/app.db",replica="s3://bkt/app.db?endpoint=https://r2.example"} 0"#
        ));
        // No rows: the families alone, still valid text.
        let empty = render(&[]);
        assert_eq!(empty.lines().count(), 2 * METRICS.len());
    }

    #[test]
    fn values_are_written_exactly() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(-2.0), "-2");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e-7), "0.0000001");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(9_007_199_254_740_993.0), "9007199254740992");
    }
}
