//! `kill -9` of a writing process at random points: the next process that opens the database
//! resumes from the spool (and the WAL), and the replica converges to the source.
mod common;
use common::seeded;
#[path = "common/procs.rs"]
mod procs;

use common::*;
use procs::Procs;
use seeded::seed_from_env;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts the writer, lets it commit `commits` transactions, then kills it with SIGKILL.
fn write_then_kill(dir: &TempDir, url: &str, seed: u64, commits: u64) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crash/writer.py");
    let mut child = Command::new(PYTHON3)
        .arg(&script)
        .arg(seed.to_string())
        .current_dir(dir.path())
        .env("REPLICA_TEST_LIB", load_path())
        .env("REPLICA_URL", url)
        .env("REPLICA_CONFIG", "off")
        .env("REPLICA_SYNC_INTERVAL", "200ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let out = child.stdout.take().unwrap();
    let mut seen = 0;
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            seen = n.parse().unwrap();
            if seen >= commits {
                break;
            }
        }
    }
    // SAFETY of the test: kill -9, the crash under test.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen >= commits,
        "seed {seed}: the writer stopped after {seen} commits"
    );
}

#[test]
fn killed_writers_lose_nothing_and_the_replica_converges() {
    let seed = seed_from_env("CRASH_SEED", |t| t % 100_000);
    let dir = TempDir::new("crash");
    let url = format!("file://{}", dir.join("replicas").display());
    let mut rng = seed;
    let mut next = |m: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % m
    };
    for round in 0..6 {
        write_then_kill(&dir, &url, seed * 10 + round, 5 + next(120));
    }
    // A fresh process opens the database (SQLite recovers the WAL, we catch up), syncs,
    // and restores; the restore must equal the database as SQLite sees it.
    let verify = r#"
import hashlib
db = sqlite3.connect("app.db", isolation_level=None)
print("synced", db.execute("SELECT replica_sync(30000)").fetchone()[0])
src = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
db.execute("SELECT replica_restore('app.db', 'restored.db')").fetchone()
dst = hashlib.sha256("\n".join(sqlite3.connect("restored.db").iterdump()).encode()).hexdigest()
print("source", src)
print("restored", dst)
print("rows", db.execute("SELECT count(*) FROM t").fetchone()[0])
print("status", *db.execute("SELECT snapshots, captured_txns, uploads FROM replica_status() WHERE name = 'app.db'").fetchone())
"#;
    let out = python_loaded(verify, dir.path(), &[("REPLICA_URL", &url)]);
    let text = check(
        &out,
        &format!("verify after crashes (seed {seed}, replay with CRASH_SEED={seed})"),
    );
    eprintln!("seed {seed} (replay with CRASH_SEED={seed}):\n{text}");
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .map(String::from)
    };
    assert!(
        get("rows ").unwrap().parse::<u64>().unwrap() > 0,
        "seed {seed}: nothing was written:\n{text}"
    );
    assert_eq!(
        get("restored "),
        get("source "),
        "seed {seed} (replay with CRASH_SEED={seed}): the restore differs:\n{text}\n{}",
        stderr(&out)
    );
}

/// A forked child leaves capture of the databases its
/// parent replicates to the parent (which ships the child's commits with its own next one)
/// and replicates the databases it opens itself with its own uploader thread.
#[test]
fn a_forked_child_never_corrupts_the_parents_spool() {
    let dir = TempDir::new("fork");
    let url = format!("file://{}", dir.join("replicas").display());
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crash/fork.py"),
    )
    .unwrap();
    let out = python(&script, dir.path(), &[("REPLICA_URL", &url)]);
    let text = check(&out, "tests/crash/fork.py");
    assert!(
        text.contains("child_exit 0"),
        "the child failed:\n{text}\n{}",
        stderr(&out)
    );
    // The child's sync waited for the parent to ship its commit: a txid past the parent's.
    let txid = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let (parent, child) = (txid("parent_sync "), txid("child_sync "));
    assert!(
        parent.is_some() && child > parent,
        "{text}\n{}",
        stderr(&out)
    );
    // And its drill restores what the parent shipped, and its status shows it (not the
    // counters its copy of the parent's memory stopped at).
    assert!(txid("child_verify ") >= child, "{text}");
    let status = text.lines().find_map(|l| l.strip_prefix("child_status "));
    let (state, shipped) = status.and_then(|s| s.split_once(' ')).unwrap_or_default();
    assert_eq!(state, "standby", "{text}");
    assert!(shipped.parse::<u64>().ok() >= child, "{text}");
    assert!(
        text.contains("restored parent-1,child-1,parent-2"),
        "{text}"
    );
    assert!(text.contains("restored_child 42"), "{text}");
}

/// The first snapshot of a database is read while its first commits are being made: a
/// commit is captured a moment before readers can see it, so the snapshot must not claim
/// commits it does not hold (this once lost the second commit now and then).
#[test]
fn first_snapshots_racing_commits_lose_nothing() {
    let dir = TempDir::new("snapshot-race");
    let url = format!("file://{}", dir.join("replicas").display());
    let script = r#"
bad = []
for i in range(40):
    name = f"db{i}.db"
    c = sqlite3.connect(name, isolation_level=None)
    c.execute("CREATE TABLE t(x)")
    for j in range(i % 4 + 1):
        c.execute("INSERT INTO t VALUES (?)", (j,))
    c.execute("SELECT replica_sync(10000)").fetchone()
    c.execute(f"SELECT replica_restore('{name}', 'r{i}.db')").fetchone()
    want = c.execute("SELECT count(*) FROM t").fetchone()[0]
    got = sqlite3.connect(f"r{i}.db").execute("SELECT count(*) FROM t").fetchone()[0]
    if want != got:
        bad.append((name, want, got))
    c.close()
print("bad", bad)
"#;
    let out = python_loaded(script, dir.path(), &[("REPLICA_URL", &url)]);
    let text = check(&out, "snapshot race script");
    assert!(
        text.contains("bad []"),
        "restores missed commits that replica_sync vouched for:\n{text}"
    );
}

/// After this process's WAL was deleted (last close), another process without the
/// extension starts the next one; this process's later commits must still be captured.
#[test]
fn a_wal_started_by_another_process_is_followed() {
    let dir = TempDir::new("foreign-wal-start");
    let url = format!("file://{}", dir.join("replicas").display());
    let script = r#"
import subprocess
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
c.execute("INSERT INTO t VALUES (0, 'x')")
c.execute("SELECT replica_sync(10000)").fetchone()
c.close()  # the last connection: SQLite checkpoints and deletes the WAL
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("SELECT count(*) FROM t").fetchone()
subprocess.run(["/usr/bin/sqlite3", "app.db", "INSERT INTO t VALUES (100, 'cli');"], check=True)
for i in range(1, 6):
    c.execute("INSERT INTO t VALUES (?, randomblob(3000))", (i,))
c.execute("SELECT replica_sync(10000)").fetchone()
c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
r = sqlite3.connect("r.db")
print("source", [x[0] for x in c.execute("SELECT id FROM t")])
print("restored", [x[0] for x in r.execute("SELECT id FROM t")])
"#;
    let out = python_loaded(script, dir.path(), &[("REPLICA_URL", &url)]);
    let text = check(&out, "foreign WAL start");
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(String::from)
    };
    assert_eq!(get("restored "), get("source "), "{text}\n{}", stderr(&out));
    assert_eq!(
        get("source ").as_deref(),
        Some("[0, 1, 2, 3, 4, 5, 100]"),
        "{text}"
    );
}

/// Records still only in memory when the process is killed, while their WAL frames are gone
/// (another process checkpointed with TRUNCATE): the next process must ship a snapshot rather
/// than continue the chain over the hole.
#[test]
fn records_lost_from_memory_with_their_wal_are_healed_by_a_snapshot() {
    let dir = TempDir::new("memloss");
    let url = format!("file://{}", dir.join("replicas").display());
    let writer = r#"
import sys
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
c.execute("INSERT INTO t VALUES (0, 'x')")
c.execute("SELECT replica_sync(10000)").fetchone()
for i in range(1, 6):
    c.execute("INSERT INTO t VALUES (?, randomblob(3000))", (i,))
print("ready", flush=True)
sys.stdin.read()  # until killed
"#;
    let mut child = replica_command(
        PYTHON3,
        &["-c", &format!("{PY_LOAD}{writer}")],
        dir.path(),
        &[
            ("REPLICA_URL", &url),
            ("REPLICA_TEST_LIB", &load_path()),
            ("REPLICA_SYNC_INTERVAL", "1h"),
        ],
    );
    child.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = child.spawn().unwrap();
    let _stdin = child.stdin.take();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let ckpt = run(
        SQLITE3,
        &["app.db", "PRAGMA wal_checkpoint(TRUNCATE);"],
        dir.path(),
        &[],
        "",
    );
    check(&ckpt, "TRUNCATE checkpoint without the extension");
    child.kill().unwrap();
    child.wait().unwrap();
    let verify = r#"
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("INSERT INTO t VALUES (6, randomblob(3000))")
c.execute("SELECT replica_sync(10000)").fetchone()
c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
r = sqlite3.connect("r.db")
print("integrity", r.execute("PRAGMA integrity_check").fetchone()[0])
print("source", [x[0] for x in c.execute("SELECT id FROM t")])
print("restored", [x[0] for x in r.execute("SELECT id FROM t")])
"#;
    let out = python_loaded(verify, dir.path(), &[("REPLICA_URL", &url)]);
    let text = check(&out, "verify after losing records from memory");
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(String::from)
    };
    assert_eq!(get("integrity ").as_deref(), Some("ok"), "{text}");
    assert_eq!(get("restored "), get("source "), "{text}\n{}", stderr(&out));
}

/// Snapshots forced in a loop while another thread commits (`synchronous=FULL` widens the
/// moment between a commit's capture and its visibility to readers): every restore point
/// must hold exactly what was acknowledged, and the final restore equals the source.
#[test]
fn snapshots_in_a_loop_beside_a_writer_stay_exact() {
    let dir = TempDir::new("snapshot-loop");
    let url = format!("file://{}", dir.join("replicas").display());
    let script = r#"
import threading
w = sqlite3.connect("app.db", isolation_level=None, check_same_thread=False)
w.execute("PRAGMA synchronous=FULL")
w.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)")
w.execute("SELECT replica_sync(10000)").fetchone()
done = threading.Event()
counts = []
def writer():
    for i in range(1200):
        w.execute("INSERT INTO t VALUES (?, randomblob(3000))", (i,))
    done.set()
def snapper():
    c = sqlite3.connect("app.db", isolation_level=None, check_same_thread=False)
    while not done.is_set():
        c.execute("SELECT replica_snapshot()").fetchone()
        counts.append(1)
ts = [threading.Thread(target=writer), threading.Thread(target=snapper)]
for t in ts: t.start()
for t in ts: t.join()
print("snapshots", len(counts))
w.execute("SELECT replica_sync(30000)").fetchone()
w.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
r = sqlite3.connect("r.db")
print("integrity", r.execute("PRAGMA integrity_check").fetchone()[0])
print("source", w.execute("SELECT count(*), sum(id), sum(length(pad)) FROM t").fetchone())
print("restored", r.execute("SELECT count(*), sum(id), sum(length(pad)) FROM t").fetchone())
same = [x[0] for x in w.execute("SELECT pad FROM t ORDER BY id")] == [x[0] for x in r.execute("SELECT pad FROM t ORDER BY id")]
print("pads_equal", same)
"#;
    let out = python_loaded(script, dir.path(), &[("REPLICA_URL", &url)]);
    let text = check(&out, "snapshot loop");
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(String::from)
    };
    assert!(
        get("snapshots ").unwrap().parse::<u32>().unwrap() > 1,
        "no snapshot raced the writer:\n{text}"
    );
    assert_eq!(get("integrity ").as_deref(), Some("ok"), "{text}");
    assert_eq!(get("restored "), get("source "), "{text}");
    assert_eq!(get("pads_equal ").as_deref(), Some("True"), "{text}");
}

/// Plain `/usr/bin/sqlite3` (no extension) writes between this process's commits: in the
/// middle of a WAL generation, before a `wal_checkpoint(TRUNCATE)` of its own (its commit
/// is lost from the log: a snapshot closes the gap, and must not claim the commit this
/// process makes right after, in a log it starts with salts of its own), and as the very
/// last commit before `replica_sync`. Then a snapshot right after a foreign RESTART
/// checkpoint (the old log header stays on disk). The replica must hold every row.
#[test]
fn commits_by_a_process_without_the_extension_reach_the_replica() {
    let dir = TempDir::new("foreign-writer");
    let url = format!("file://{}", dir.join("replicas").display());
    let script = r#"
import subprocess
def cli(sql):
    subprocess.run(["/usr/bin/sqlite3", "-cmd", ".timeout 5000", "app.db", sql], check=True)
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, v BLOB)")
c.execute("INSERT INTO t VALUES (1, 'ext', randomblob(500))")
c.execute("SELECT replica_sync(10000)").fetchone()
cli("INSERT INTO t VALUES (2, 'cli', randomblob(500));")
c.execute("INSERT INTO t VALUES (3, 'ext', randomblob(500))")
cli("INSERT INTO t VALUES (4, 'cli', randomblob(5000)); PRAGMA wal_checkpoint(TRUNCATE);")
c.execute("INSERT INTO t VALUES (5, 'ext', randomblob(500))")
cli("UPDATE t SET who = 'cli-updated' WHERE id = 1;")
c.execute("INSERT INTO t VALUES (6, 'ext', randomblob(500))")
cli("INSERT INTO t VALUES (7, 'cli', 'last');")
print("synced", c.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
r = sqlite3.connect("r.db")
q = "SELECT id, who, hex(v) FROM t ORDER BY id"
print("same", c.execute(q).fetchall() == r.execute(q).fetchall())
print("source", [(x[0], x[1]) for x in c.execute(q)])
print("restored", [(x[0], x[1]) for x in r.execute(q)])
print("status", c.execute("SELECT state, warnings, snapshots FROM replica_status()").fetchone())
cli("PRAGMA wal_checkpoint(RESTART);")
c.execute("SELECT replica_snapshot()").fetchone()
c.execute("SELECT replica_restore('app.db', 'r2.db')").fetchone()
print("same_after_restart", c.execute(q).fetchall() == sqlite3.connect("r2.db").execute(q).fetchall())
"#;
    let out = python_loaded(script, dir.path(), &[("REPLICA_URL", &url)]);
    let text = check(&out, "foreign writer");
    assert!(text.contains("same True"), "{text}\n{}", stderr(&out));
    assert!(
        text.contains("same_after_restart True"),
        "{text}\n{}",
        stderr(&out)
    );
}

/// Two processes write one database; the first owns its spool and replicates, taking the
/// second's commits from the WAL. When it is killed, the second takes over within seconds
/// and the replica ends up with every commit of both.
#[test]
fn a_second_process_takes_over_when_the_owner_is_killed() {
    let procs = Procs::new("takeover", &[]);
    // The owner: writes, syncs, then idles until killed.
    let mut owner = procs.spawn(
        r#"
import sys
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
for i in range(1, 11):
    c.execute("INSERT INTO t VALUES (?, 'owner')", (i,))
print("synced", c.execute("SELECT replica_sync(10000)").fetchone()[0])
sys.stdin.readline()
"#,
    );
    let line = owner.line();
    assert!(line.starts_with("synced"), "owner: {line:?}");
    // The second process: writes while the owner lives, then after it is gone.
    let mut second = procs.spawn(&format!(
        "{PY_WAIT_FOR}{}",
        r#"
import sys
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA busy_timeout=5000")
for i in range(11, 21):
    c.execute("INSERT INTO t VALUES (?, 'second')", (i,))
print("standby", *c.execute("SELECT state, uploader FROM replica_status()").fetchone(), flush=True)
print("wrote", flush=True)
sys.stdin.readline()  # the owner has been killed
for i in range(21, 31):
    c.execute("INSERT INTO t VALUES (?, 'second')", (i,))
synced = wait_for("takeover (a replica_sync that succeeds)", lambda: c.execute("SELECT replica_sync(1000)").fetchone()[0], retry_on=sqlite3.Error)
print("synced", synced, flush=True)
c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
q = "SELECT id, who FROM t ORDER BY id"
print("same", c.execute(q).fetchall() == sqlite3.connect("r.db").execute(q).fetchall(), flush=True)
print("uploader", c.execute("SELECT uploader FROM replica_status() WHERE name = 'app.db'").fetchone()[0], "pid", os.getpid(), flush=True)
print("rows", sqlite3.connect("r.db").execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
"#,
    ));
    assert_eq!(
        second.line().trim(),
        format!("standby standby pid {}", owner.child.id()),
        "status names the process that uploads"
    );
    assert_eq!(second.line().trim(), "wrote");
    owner.kill();
    second.send("go");
    let (rest, status) = second.finish();
    assert!(status.success(), "second process: {rest}");
    assert!(rest.contains("same True"), "{rest}");
    assert!(rest.contains("rows 30"), "{rest}");
    let uploader = rest
        .lines()
        .find_map(|l| l.strip_prefix("uploader "))
        .unwrap();
    let (said, pid) = uploader.split_once(" pid ").unwrap();
    assert_eq!(said, format!("pid {pid} (this process)"), "{rest}");
}
