//! Crash at each named fault point (`src/fault.rs`, built with the `fault-points` feature
//! into `target/fault/`; `make test` builds it): a writer is killed there with SIGKILL, the
//! next process opens the database, and the replica converges on the source with every
//! txid exactly once.

mod common;

use common::*;
use std::path::Path;

const POINTS: &[&str] = &[
    "capture.queued",
    "capture.before_append",
    "capture.after_append",
    "spool.write_behind",
    "spool.generation_behind",
    "spool.flush",
    "upload.after_put",
    "upload.after_state",
    "snapshot.after_put",
    "lease.after_write",
    "compaction.after_put",
];

/// The writer a crash point ends: commits (some large, some in bursts, some waiting for
/// the replica), checkpoints, for up to 20 s.
const WRITER: &str = r#"
import os, sqlite3, time
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
deadline = time.time() + 20
n = 0
while time.time() < deadline:
    n += 1
    db.execute("INSERT INTO t(v) VALUES (randomblob(3000))")
    if n % 5 == 0:
        try:
            db.execute("SELECT replica_sync(2000)")
        except sqlite3.Error:
            pass
    if n % 40 == 0:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if n % 50 == 25:
        # A transaction of over a MiB: the spool writes it out as it grows, on its thread.
        db.execute("BEGIN")
        for _ in range(400):
            db.execute("INSERT INTO t(v) VALUES (randomblob(3000))")
        db.execute("COMMIT")
    if n % 50 == 40:
        # A burst of commits without waiting for the replica: the log restarts with records
        # still in memory, which go to the spool's writer thread while the checkpoint runs,
        # or with the generation at the restart.
        db.execute("PRAGMA synchronous=NORMAL")  # no fsync per commit: the burst stays short
        for _ in range(2500):
            db.execute("INSERT INTO t(v) VALUES (randomblob(100))")
        db.execute("PRAGMA synchronous=FULL")
print("never crashed", n)
"#;

#[test]
fn the_test_names_every_fault_point() {
    assert_eq!(POINTS, replica::fault::POINTS);
}

#[test]
fn a_crash_at_each_fault_point_loses_nothing() {
    let lib = fault_load_path();
    for (i, point) in POINTS.iter().enumerate() {
        let dir = TempDir::new(&format!("fault-{i}"));
        // Crash at the point's second arrival, so that some state came before it; the
        // compaction point needs a level-1 window: one second, here.
        let (after, levels) = match *point {
            "compaction.after_put" => ("1", "levels:\n  - interval: 1s\n"),
            // The first lease write comes before the first upload; renewals are 30 s apart.
            "snapshot.after_put" | "lease.after_write" => ("1", ""),
            _ => ("2", ""),
        };
        write_config(dir.path(), levels, "50ms");
        crash_there(dir.path(), &crash_env(&lib, point, after), WRITER, point);
        let text = next_process_converges(dir.path(), point);
        assert!(text.contains("same True"), "{point}: {text}");
        let files = assert_each_txid_once(&dir.join("replicas/app.db/ltx/0"), point);
        eprintln!("{point}: crashed, converged ({files} level-0 files)");
    }
}

/// A database with two destinations, crashed where one destination's upload is done and
/// the other's is not (or not recorded): the next process converges both, each restoring
/// equal to the source on its own, with every txid once in each.
#[test]
fn a_crash_between_two_destinations_loses_nothing_in_either() {
    let lib = fault_load_path();
    // The second arrival of a snapshot's point is the other destination's first snapshot.
    for (i, (point, after)) in [
        ("upload.after_put", "3"),
        ("upload.after_state", "3"),
        ("snapshot.after_put", "2"),
    ]
    .iter()
    .enumerate()
    {
        let dir = TempDir::new(&format!("fault-two-{i}"));
        let url = |d: &str| format!("file://{}", dir.join(d).display());
        std::fs::write(
            dir.join("litestream.yml"),
            format!(
                "dbs:\n  - path: app.db\n    replicas:\n      - name: a\n        url: {}\n        sync-interval: 50ms\n      - name: b\n        url: {}\n        sync-interval: 50ms\n",
                url("replicas-a/app.db"),
                url("replicas-b/app.db")
            ),
        )
        .unwrap();
        crash_there(dir.path(), &crash_env(&lib, point, after), WRITER, point);
        let next = python_loaded(
            &format!(
                r#"
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("INSERT INTO t(v) VALUES (randomblob(10))")
print("synced", db.execute("SELECT replica_sync(30000)").fetchone()[0])
q = "SELECT id, hex(v) FROM t ORDER BY id"
a = db.execute(q).fetchall()
for name, url in (("a", "{}"), ("b", "{}")):
    db.execute("SELECT replica_restore(?, ?)", (url, name + ".db")).fetchone()
    print("replica", name, "rows", len(a), "same", a == sqlite3.connect(name + ".db").execute(q).fetchall())
"#,
                url("replicas-a/app.db"),
                url("replicas-b/app.db")
            ),
            dir.path(),
            &[("REPLICA_CONFIG", "litestream.yml")],
        );
        let text = check(&next, &format!("{point}: the process after the crash"));
        for name in ["a", "b"] {
            assert!(
                text.contains(&format!("replica {name} rows")) && !text.contains("same False"),
                "{point}: {text}"
            );
            let dir = dir.join(&format!("replicas-{name}/app.db/ltx/0"));
            let files = assert_each_txid_once(&dir, point);
            eprintln!("{point}: replica {name} converged ({files} level-0 files)");
        }
    }
}

/// Each txid of the level-0 files in `dir` at most once (snapshots stand for their own
/// state); how many files there are.
fn assert_each_txid_once(dir: &Path, point: &str) -> usize {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some((a, b)) = name.strip_suffix(".ltx").and_then(|s| s.split_once('-')) {
                ranges.push((
                    u64::from_str_radix(a, 16).unwrap(),
                    u64::from_str_radix(b, 16).unwrap(),
                ));
            }
        }
    }
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(
            w[0].1 < w[1].0,
            "{point}: a txid twice in {}: {:?} {:?}",
            dir.display(),
            w[0],
            w[1]
        );
    }
    ranges.len()
}

/// A restart hands the records still in memory to the spool's writer thread and does not
/// wait. When the process dies before that thread wrote them, and the new log holds no
/// commit yet (only the frames of a transaction that spilled), the next process must owe a
/// snapshot: the generation still names the old log, and nothing on disk has those records.
#[test]
fn a_crash_before_a_restarts_records_reach_the_disk_owes_a_snapshot() {
    let lib = fault_load_path();
    let dir = TempDir::new("fault-restart-in-memory");
    write_config(dir.path(), "", "1h");
    let env = [
        ("REPLICA_TEST_LIB", lib.as_str()),
        ("REPLICA_CONFIG", "litestream.yml"),
        ("REPLICA_FAULT_POINT", "spool.write_behind"),
        ("REPLICA_FAULT_AFTER", "1"),
    ];
    let script = r#"
import os, signal, sqlite3
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
db.execute("INSERT INTO t(v) VALUES (randomblob(100))")
db.execute("SELECT replica_sync(10000)")
# Commits the spool holds only in memory: about 25 pages, well under the 256 KiB handed
# over while a checkpoint runs and the MiB handed off as it fills.
for i in range(20):
    db.execute("INSERT INTO t(v) VALUES (randomblob(1000))")
db.execute("PRAGMA wal_checkpoint(RESTART)")  # the next write restarts the log
db.execute("PRAGMA cache_size=1")
db.execute("BEGIN")
for i in range(200):  # spills: the new header, then frames of no commit
    db.execute("INSERT INTO t(v) VALUES (randomblob(3000))")
signal.alarm(60)  # the deadline: the writer thread's crash point ends this process first
signal.pause()
"#;
    crash_there(dir.path(), &env, script, "spool.write_behind");
    let text = next_process_converges(dir.path(), "spool.write_behind");
    assert!(text.contains("rows 22 same True"), "{text}");
}

/// `litestream.yml` in `dir`: app.db replicated to `dir/replicas/app.db` every `interval`,
/// after the top-level `levels` lines given.
fn write_config(dir: &Path, levels: &str, interval: &str) {
    let url = format!("file://{}", dir.join("replicas").display());
    std::fs::write(
        dir.join("litestream.yml"),
        format!("{levels}dbs:\n  - path: app.db\n    replica:\n      url: {url}/app.db\n      sync-interval: {interval}\n"),
    )
    .unwrap();
}

/// The environment of a writer that crashes at the `after`-th arrival at `point`.
fn crash_env<'a>(lib: &'a str, point: &'a str, after: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("REPLICA_TEST_LIB", lib),
        ("REPLICA_CONFIG", "litestream.yml"),
        ("REPLICA_FAULT_POINT", point),
        ("REPLICA_FAULT_AFTER", after),
    ]
}

/// Runs the writer `script` with `env` (a crash point armed) and checks that it died of
/// SIGKILL, which only the crash point `point` sends.
fn crash_there(dir: &Path, env: &[(&str, &str)], script: &str, point: &str) {
    let crashed = run(PYTHON3, &["-"], dir, env, script);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&crashed.status),
        Some(9),
        "{point}: the writer did not crash there: {}{}",
        stdout(&crashed),
        stderr(&crashed)
    );
}

/// The next process (without crash points) opens the database, commits, syncs and restores;
/// its output says how many rows the source has and whether the restore equals it.
fn next_process_converges(dir: &Path, point: &str) -> String {
    let next = python_loaded(
        r#"
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
db.execute("INSERT INTO t(v) VALUES (randomblob(10))")
print("synced", db.execute("SELECT replica_sync(30000)").fetchone()[0])
db.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
q = "SELECT id, hex(v) FROM t ORDER BY id"
a, b = db.execute(q).fetchall(), sqlite3.connect("r.db").execute(q).fetchall()
print("rows", len(a), "same", a == b)
"#,
        dir,
        &[("REPLICA_CONFIG", "litestream.yml")],
    );
    check(&next, &format!("{point}: the process after the crash"))
}
