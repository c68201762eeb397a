//! The seeded randomized workload (tests/workload/driver.py), shared by `tests/workload.rs`
//! (a file replica) and `tests/s3_e2e.rs` (an S3 bucket): running the driver, its report,
//! the checks on the sync points it recorded, and restoring every one of them.

use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// `var` parsed as a seed, else a new seed from the clock (so each run tries another).
pub fn seed_from_env_or_time(var: &str) -> u64 {
    super::seeded::seed_from_env(var, |t| t % 1_000_000_007)
}

/// How many operations the driver runs: `$WORKLOAD_OPS`, else `default`.
pub fn ops_from_env(default: u64) -> u64 {
    std::env::var("WORKLOAD_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The sync interval for `seed`: varies how commits are batched into files with the seed.
pub fn sync_interval(seed: u64) -> &'static str {
    ["20ms", "150ms", "1s"][(seed % 3) as usize]
}

pub fn driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/driver.py")
}

/// Runs the driver with `args` in `cwd` (clean replica environment plus `env`), killed
/// after `limit`: the extension's load path in REPLICA_TEST_LIB, and the extension's
/// messages on stderr (the driver marks them with the operation they belong to).
pub fn run_driver(cwd: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let lib = load_path();
    let script = driver();
    let mut argv: Vec<&str> = vec![script.to_str().unwrap()];
    argv.extend_from_slice(args);
    let mut all: Vec<(&str, &str)> = vec![("REPLICA_TEST_LIB", &lib), ("REPLICA_LOG", "stderr")];
    all.extend_from_slice(env);
    run_command(replica_command(PYTHON3, &argv, cwd, &all), "", limit)
}

/// A state `replica_sync()` vouched for: the txid it returned and the database's canonical
/// content then.
#[derive(Debug, Clone)]
pub struct Point {
    pub label: String,
    pub txid: u64,
    pub hash: String,
    pub rows: String,
}

/// The driver's report (`report.txt`).
#[derive(Debug, Default)]
pub struct Report {
    pub points: Vec<Point>,
    pub final_point: Option<Point>,
    pub status: BTreeMap<String, String>,
    pub status_rows: usize,
    pub open_retries: u64,
    /// Operations after which SQLite's own WAL did not chain (see the driver).
    pub sqlite_broken_chains: Vec<u64>,
    pub counts: String,
    pub seconds: String,
}

pub fn parse_report(text: &str, seed: u64) -> Report {
    let mut r = Report::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let num = |s: &str| {
            s.parse::<u64>()
                .unwrap_or_else(|_| panic!("seed {seed}: bad number {s:?} in {line:?}"))
        };
        match f[0] {
            "point" => r.points.push(Point {
                label: f[1].into(),
                txid: num(f[2]),
                hash: f[3].into(),
                rows: f[4].into(),
            }),
            "final" => {
                r.final_point = Some(Point {
                    label: "final".into(),
                    txid: num(f[1]),
                    hash: f[2].into(),
                    rows: f[3].into(),
                })
            }
            "status" => {
                r.status
                    .insert(f[1].into(), f.get(2).copied().unwrap_or("").into());
            }
            "status_rows" => r.status_rows = num(f[1]) as usize,
            "open_retries" => r.open_retries = num(f[1]),
            "sqlite_broken_chains" => {
                r.sqlite_broken_chains = f[2]
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .filter(|x| !x.trim().is_empty())
                    .map(|x| num(x.trim()))
                    .collect()
            }
            "counts" => r.counts = f[1].into(),
            "seconds" => r.seconds = f[1].into(),
            _ => {}
        }
    }
    r
}

/// One run of the workload: where, which seed, and what differs between the replicas.
pub struct Run<'a> {
    pub dir: &'a Path,
    pub seed: u64,
    /// The replica's environment (REPLICA_URL, keys, sync interval, proxy).
    pub env: &'a [(&'a str, &'a str)],
    /// The time limit of each driver run.
    pub limit: Duration,
    /// Added to the names of the driver's runs in failures, e.g. " over s3".
    pub over: &'a str,
    /// The variable that replays the seed.
    pub replay_var: &'a str,
}

impl Run<'_> {
    /// Runs `ops` operations of the workload into `report.txt` and checks its sync points:
    /// ten, never going backwards, and the replica advanced after the first. Returns the
    /// driver's output (its stderr holds the extension's log), the report and the final
    /// point.
    pub fn drive(&self, ops: u64) -> (Output, Report, Point) {
        let seed = self.seed;
        let started = Instant::now();
        let run_out = run_driver(
            self.dir,
            &["run", &seed.to_string(), &ops.to_string(), "report.txt"],
            self.env,
            self.limit,
        );
        check(
            &run_out,
            &format!(
                "workload driver{} (seed {seed}, replay with {}={seed})",
                self.over, self.replay_var
            ),
        );
        let report = parse_report(
            &std::fs::read_to_string(self.dir.join("report.txt")).unwrap(),
            seed,
        );
        let fin = report
            .final_point
            .clone()
            .unwrap_or_else(|| panic!("seed {seed}: no final point in the report"));
        eprintln!(
            "seed {seed}: driver {:.1} s (ops {} s), counts {}, open retries {}, final txid {}",
            started.elapsed().as_secs_f64(),
            report.seconds,
            report.counts,
            report.open_retries,
            fin.txid
        );

        assert_eq!(
            report.points.len(),
            10,
            "seed {seed}: the driver recorded {} sync points, not 10",
            report.points.len()
        );
        for w in report.points.windows(2) {
            assert!(
                w[0].txid <= w[1].txid,
                "seed {seed}: replica_sync went backwards: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
        assert!(
            fin.txid >= report.points[9].txid,
            "seed {seed}: final txid {} < last point {:?}",
            fin.txid,
            report.points[9]
        );
        assert!(
            fin.txid > report.points[0].txid,
            "seed {seed}: the replica did not advance after the first sync point"
        );
        (run_out, report, fin)
    }

    /// Restores the latest state and every sync point of `report` from the replica, naming
    /// it alternately by database name (resolved through REPLICA_URL) and by `full_url`;
    /// each restore must return its txid and equal the state recorded when that txid was
    /// returned, and the latest restore must be the source (`app.db`, checkpointed into a
    /// plain file first), to the dump, the LTX checksum and the size.
    pub fn restore_every_point(&self, report: &Report, fin: &Point, full_url: &str) {
        let seed = self.seed;
        // Make the source a plain database file (from a connection without the extension).
        let src = self.dir.join("app.db");
        check(
            &run(
                SQLITE3,
                &[src.to_str().unwrap(), "PRAGMA wal_checkpoint(TRUNCATE);"],
                self.dir,
                &[],
                "",
            ),
            "checkpoint the source",
        );

        let mut args: Vec<String> = vec!["app.db".into(), "latest.db".into(), "latest".into()];
        for (i, p) in report.points.iter().enumerate() {
            args.push(if i % 2 == 0 {
                "app.db".into()
            } else {
                full_url.into()
            });
            args.push(format!("r{i}.db"));
            args.push(p.txid.to_string());
        }
        let argv: Vec<&str> = std::iter::once("restore")
            .chain(args.iter().map(String::as_str))
            .collect();
        let out = run_driver(self.dir, &argv, self.env, self.limit);
        let text = check(&out, &format!("replica_restore{} (seed {seed})", self.over));
        let mut restored: BTreeMap<String, String> = BTreeMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.splitn(3, '\t').collect();
            if f.len() == 3 {
                assert_eq!(
                    f[1], "ok",
                    "seed {seed}: replica_restore into {} failed: {}",
                    f[0], f[2]
                );
                restored.insert(f[0].into(), f[2].into());
            }
        }
        let mut expected: Vec<(String, &Point)> = vec![("latest.db".into(), fin)];
        expected.extend(
            report
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("r{i}.db"), p)),
        );
        for (db, p) in &expected {
            assert_eq!(
                restored.get(db).map(String::as_str),
                Some(p.txid.to_string().as_str()),
                "seed {seed}: restore into {db} at txid {} ({}) returned {restored:?}",
                p.txid,
                p.label
            );
        }

        // Contents: each restore equals the state recorded when its txid was returned.
        let argv: Vec<&str> = std::iter::once("hash")
            .chain(expected.iter().map(|(db, _)| db.as_str()))
            .collect();
        let text = check(
            &run_driver(self.dir, &argv, &[], self.limit),
            &format!("hash restored databases (seed {seed})"),
        );
        let hashes: BTreeMap<&str, Vec<&str>> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 4).then(|| (f[0], f))
            })
            .collect();
        let mut mismatches = Vec::new();
        for (db, p) in &expected {
            let f = hashes
                .get(db.as_str())
                .unwrap_or_else(|| panic!("seed {seed}: no hash for {db}: {text}"));
            let (hash, integrity, rows) = (f[1], f[2], f[3]);
            if integrity != "ok" {
                mismatches.push(format!(
                    "{db} (txid {}): integrity_check: {integrity}",
                    p.txid
                ));
            } else if hash != p.hash {
                mismatches.push(format!(
                    "{db} restored at txid {} ({}) has rows {rows}, but when replica_sync returned that txid the database had rows {}",
                    p.txid, p.label, p.rows
                ));
            }
        }
        assert!(
            mismatches.is_empty(),
            "seed {seed}: restored databases differ from the states replica_sync vouched for:\n{}\n(extension stderr:\n{})",
            mismatches.join("\n"),
            stderr(&out)
        );

        // The latest restore is the source, to the byte and to the LTX checksum.
        let latest = self.dir.join("latest.db");
        assert!(
            dump(&src) == dump(&latest),
            "seed {seed}: `sqlite3 .dump` of the latest restore differs from the source"
        );
        assert_eq!(
            ltx_db_checksum(&latest),
            ltx_db_checksum(&src),
            "seed {seed}: the LTX database checksum of the latest restore differs from the source's"
        );
        assert_eq!(
            std::fs::metadata(&latest).unwrap().len(),
            std::fs::metadata(&src).unwrap().len(),
            "seed {seed}: the latest restore and the source have different sizes"
        );
    }
}

/// `replica_status()` after the final `replica_sync`, as the driver reported it: one row,
/// no error, nothing failed or pending, and replicated up to the final point.
pub fn assert_status_settled(report: &Report, fin: &Point, seed: u64) {
    assert_eq!(
        report.status_rows, 1,
        "seed {seed}: replica_status() has {} rows: {:?}",
        report.status_rows, report.status
    );
    let st = |k: &str| report.status.get(k).cloned().unwrap_or_default();
    assert_eq!(
        st("last_error"),
        "None",
        "seed {seed}: replica_status().last_error: {:?}",
        report.status
    );
    assert_eq!(
        st("upload_errors"),
        "0",
        "seed {seed}: upload errors: {:?}",
        report.status
    );
    assert_eq!(
        st("pending_txns"),
        "0",
        "seed {seed}: pending after replica_sync: {:?}",
        report.status
    );
    assert_eq!(
        st("replicated_txid"),
        fin.txid.to_string(),
        "seed {seed}: status vs final sync: {:?}",
        report.status
    );
}
