//! Randomized workload: a seeded mix of inserts, updates and deletes of rows of random sizes
//! (some with overflow pages), transactions that spill past the page cache into the WAL and
//! then roll back (or commit), savepoints with partial rollbacks, VACUUM, every checkpoint
//! mode, journal_size_limit changes, schema changes, and 2-3 connections taking turns —
//! all through Debian's python3 with the extension loaded (tests/workload/driver.py).
//!
//! At ten points the driver calls `replica_sync()` and records the txid it returns and a
//! hash of the database's canonical content; every one of those txids must restore to
//! exactly that content, and the latest restore must equal the final database, down to the
//! LTX database checksum. A failure names its seed: replay with
//! `WORKLOAD_SEED=<seed> cargo nextest run --test workload workload_seed_from_env_or_time`.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

fn driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/driver.py")
}

/// Runs the driver with `args` in `cwd`: the extension's load path in REPLICA_TEST_LIB, and
/// the extension's errors on stderr.
fn run_driver(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let lib = load_path();
    let script = driver();
    let mut argv: Vec<&str> = vec![script.to_str().unwrap()];
    argv.extend_from_slice(args);
    let mut all: Vec<(&str, &str)> = vec![("REPLICA_TEST_LIB", &lib), ("REPLICA_LOG", "stderr")];
    all.extend_from_slice(env);
    run(PYTHON3, &argv, cwd, &all, "")
}

#[derive(Debug, Clone)]
struct Point {
    label: String,
    txid: u64,
    hash: String,
    rows: String,
}

#[derive(Debug, Default)]
struct Report {
    points: Vec<Point>,
    final_point: Option<Point>,
    status: BTreeMap<String, String>,
    status_rows: usize,
    open_retries: u64,
    counts: String,
    seconds: String,
}

fn parse_report(text: &str, seed: u64) -> Report {
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
            "counts" => r.counts = f[1].into(),
            "seconds" => r.seconds = f[1].into(),
            _ => {}
        }
    }
    r
}

/// Level-0 and level-9 files of a file replica, as (level, min, max).
fn replica_files(replica: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(levels) = std::fs::read_dir(replica.join("ltx")) else {
        return out;
    };
    for level in levels.flatten() {
        for f in std::fs::read_dir(level.path()).unwrap().flatten() {
            out.push((
                level.file_name().to_string_lossy().to_string(),
                f.file_name().to_string_lossy().to_string(),
            ));
        }
    }
    out.sort();
    out
}

/// The whole check for one seed.
fn workload(seed: u64) {
    let ops: u64 = std::env::var("WORKLOAD_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(450);
    // Vary how commits are batched into files with the seed.
    let interval = ["20ms", "150ms", "1s"][(seed % 3) as usize];
    eprintln!("workload seed {seed} ({ops} ops, sync interval {interval}); replay with WORKLOAD_SEED={seed}");
    let dir = TempDir::new(&format!("workload-{seed}"));
    let replicas = dir.join("replicas");
    let url = format!("file://{}", replicas.display());
    let env = [
        ("REPLICA_URL", url.as_str()),
        ("REPLICA_SYNC_INTERVAL", interval),
    ];
    let started = std::time::Instant::now();

    let out = run_driver(
        dir.path(),
        &["run", &seed.to_string(), &ops.to_string(), "report.txt"],
        &env,
    );
    check(&out, &format!("workload driver (seed {seed})"));
    let report = parse_report(
        &std::fs::read_to_string(dir.join("report.txt")).unwrap(),
        seed,
    );
    let driver_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "seed {seed}: driver {:.1} s (ops {} s), counts {}, open retries {}",
        driver_secs, report.seconds, report.counts, report.open_retries
    );

    // The extension logged no error during the run. (Failures to switch a freshly opened
    // database to WAL mode are the open race, which `fresh_databases_open_without_busy`
    // covers; the driver retries those opens.)
    let stderr_text = stderr(&out);
    let errors: Vec<&str> = stderr_text
        .lines()
        .filter(|l| {
            l.starts_with("libreplica error") && !l.contains("could not switch to WAL mode")
        })
        .collect();
    assert!(
        errors.is_empty(),
        "seed {seed}: the extension logged errors during the workload:\n{}",
        errors.join("\n")
    );

    assert_eq!(
        report.points.len(),
        10,
        "seed {seed}: the driver recorded {} sync points, not 10",
        report.points.len()
    );
    let fin = report
        .final_point
        .clone()
        .unwrap_or_else(|| panic!("seed {seed}: no final point in the report"));
    for w in report.points.windows(2) {
        assert!(
            w[0].txid <= w[1].txid,
            "seed {seed}: replica_sync went backwards: {:?} then {:?}",
            w[0],
            w[1]
        );
        if w[0].txid == w[1].txid {
            assert_eq!(
                w[0].hash, w[1].hash,
                "seed {seed}: replica_sync returned txid {} at {} and at {} but the database differed between them",
                w[0].txid, w[0].label, w[1].label
            );
        }
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

    // Status after the final sync: nothing pending, no errors, and no fallback snapshot
    // (every commit was made through the extension, so capture must never have lost one).
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
    assert_eq!(
        st("snapshots"),
        "1",
        "seed {seed}: the uploader shipped fallback snapshots (a capture gap?) during a workload made entirely through the extension: {:?}",
        report.status
    );

    // The replica has the Litestream layout: one snapshot at level 9, level-0 files after it.
    let replica = replicas.join("app.db");
    let files = replica_files(&replica);
    let level0 = files.iter().filter(|(l, _)| l == "0").count() as u64;
    assert!(
        files
            .iter()
            .any(|(l, n)| l == "9" && n == "0000000000000001-0000000000000001.ltx"),
        "seed {seed}: no initial snapshot 9/0000000000000001-0000000000000001.ltx in {files:?}"
    );
    assert_eq!(level0 + 1, fin.txid, "seed {seed}: txids count shipped files, but there are {level0} level-0 files for txid {}: {files:?}", fin.txid);

    // Make the source a plain database file (from a connection without the extension).
    let src = dir.join("app.db");
    check(
        &run(
            SQLITE3,
            &[src.to_str().unwrap(), "PRAGMA wal_checkpoint(TRUNCATE);"],
            dir.path(),
            &[],
            "",
        ),
        "checkpoint the source",
    );

    // Restore the latest and every sync point; alternate naming the replica by database
    // name (resolved through REPLICA_URL) and by URL.
    let mut args: Vec<String> = vec!["app.db".into(), "latest.db".into(), "latest".into()];
    for (i, p) in report.points.iter().enumerate() {
        args.push(if i % 2 == 0 {
            "app.db".into()
        } else {
            format!("{url}/app.db")
        });
        args.push(format!("r{i}.db"));
        args.push(p.txid.to_string());
    }
    let argv: Vec<&str> = std::iter::once("restore")
        .chain(args.iter().map(String::as_str))
        .collect();
    let out = run_driver(dir.path(), &argv, &env);
    let text = check(&out, &format!("replica_restore (seed {seed})"));
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
    assert_eq!(
        restored.get("latest.db").map(String::as_str),
        Some(fin.txid.to_string().as_str()),
        "seed {seed}: latest restore returned {restored:?}"
    );
    for (i, p) in report.points.iter().enumerate() {
        assert_eq!(
            restored.get(&format!("r{i}.db")).map(String::as_str),
            Some(p.txid.to_string().as_str()),
            "seed {seed}: restore at txid {} ({}) returned {restored:?}",
            p.txid,
            p.label
        );
    }

    // Contents: each restore equals the state recorded when its txid was returned.
    let mut dbs = vec!["latest.db".to_string()];
    dbs.extend((0..report.points.len()).map(|i| format!("r{i}.db")));
    let argv: Vec<&str> = std::iter::once("hash")
        .chain(dbs.iter().map(String::as_str))
        .collect();
    let text = check(
        &run_driver(dir.path(), &argv, &[]),
        &format!("hash restored databases (seed {seed})"),
    );
    let hashes: BTreeMap<String, (String, String, String)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 4).then(|| {
                (
                    f[0].to_string(),
                    (f[1].to_string(), f[2].to_string(), f[3].to_string()),
                )
            })
        })
        .collect();
    let mut mismatches = Vec::new();
    let expected = std::iter::once(("latest.db".to_string(), &fin)).chain(
        report
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("r{i}.db"), p)),
    );
    for (db, p) in expected {
        let (hash, integrity, rows) = hashes
            .get(&db)
            .unwrap_or_else(|| panic!("seed {seed}: no hash for {db}: {text}"));
        assert_eq!(
            integrity, "ok",
            "seed {seed}: integrity_check of {db} (txid {}): {integrity}",
            p.txid
        );
        if *hash != p.hash {
            mismatches.push(format!(
                "{db} restored at txid {} ({}): rows {rows}, but at that point the database had rows {}",
                p.txid, p.label, p.rows
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "seed {seed}: restored databases differ from the recorded states:\n{}",
        mismatches.join("\n")
    );

    // The latest restore is the source, to the byte and to the LTX checksum.
    let latest = dir.join("latest.db");
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
    eprintln!(
        "seed {seed}: OK, final txid {}, {level0} level-0 files, {:.1} s",
        fin.txid,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn workload_seed_1() {
    workload(1);
}

#[test]
fn workload_seed_2() {
    workload(0x5eed_0002);
}

/// `WORKLOAD_SEED` replays a failure; otherwise a new seed each run (from the clock).
#[test]
fn workload_seed_from_env_or_time() {
    let seed = match std::env::var("WORKLOAD_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WORKLOAD_SEED={s:?} is not a number")),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_007
        }
    };
    workload(seed);
}

/// Opening a brand-new database right after loading the extension must not fail. The
/// uploader's first snapshot attempt (woken by the open) takes the write lock through a
/// private connection while the application's connection is still inside
/// `sqlite3_open_v2`, where the auto-extension switches it to WAL mode with no busy
/// handler yet: the PRAGMA fails with SQLITE_BUSY and SQLite then fails the open itself
/// ("database is locked"), because it checks the error code after running auto-extensions.
#[test]
fn fresh_databases_open_without_busy() {
    let dir = TempDir::new("open-race");
    let url = format!("file://{}", dir.join("replicas").display());
    let script = r#"
import os, sqlite3
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])
failures = []
conns = []
for i in range(40):
    try:
        c = sqlite3.connect("db%d.db" % i, isolation_level=None)
        mode = c.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            failures.append("db%d.db: journal_mode %s" % (i, mode))
        c.execute("CREATE TABLE t(x)")
        conns.append(c)
    except sqlite3.Error as e:
        failures.append("db%d.db: %s" % (i, e))
print("failures", len(failures))
for f in failures:
    print(f)
"#;
    let out = python(script, dir.path(), &[("REPLICA_URL", &url)]);
    let text = check(&out, "opening fresh databases");
    assert!(
        text.starts_with("failures 0\n"),
        "opening brand-new databases with the extension loaded failed (open race with the uploader's snapshot):\n{text}\nstderr:\n{}",
        stderr(&out)
    );
}
