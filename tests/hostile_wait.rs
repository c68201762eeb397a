//! Waiting for another uploader without burning the host's CPU, and saying honestly who
//! replicates a database: a process whose replica's lease another host holds sleeps until
//! the lease can be taken (measured from `/proc/<pid>/stat`), and a process standing by
//! for another process of this host answers `replica_sync` for it instead of calling the
//! database "not replicated".

mod common;
#[path = "common/procs.rs"]
mod procs;

use common::*;
use procs::Procs;
use std::time::{Duration, Instant};

/// A process's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces: the fields counted here start after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Host a keeps committing (so it keeps renewing its 2 s lease); host b, on its own spool
/// but the same replica, is refused the lease and must wait for it asleep: over 4 s of
/// wall time it may use well under a fifth of one core.
#[test]
fn a_process_waiting_for_a_held_lease_does_not_spin() {
    let procs = Procs::new("wait-lease-cpu", &[("REPLICA_LEASE_TTL", "2s")]);
    let dir = &procs.dir;
    for host in ["host-a", "host-b"] {
        std::fs::create_dir_all(dir.join(host)).unwrap();
    }
    let writer = r#"
import sys, threading, time
c = sqlite3.connect("app.db", isolation_level=None, check_same_thread=False)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE IF NOT EXISTS t(n INTEGER)")
c.execute("INSERT INTO t VALUES (0)")
print("synced", c.execute("SELECT replica_sync(5000)").fetchone()[0], flush=True)
stop = threading.Event()
def keep_writing():
    while not stop.wait(0.2):
        c.execute("INSERT INTO t VALUES (1)")
threading.Thread(target=keep_writing, daemon=True).start()
sys.stdin.readline()
stop.set()
"#;
    let mut a = procs.spawn_in(&dir.join("host-a"), writer);
    let line = a.line();
    assert!(line.starts_with("synced"), "host a: {line:?}");

    let waiter = r#"
import sys
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE IF NOT EXISTS t(n INTEGER)")
c.execute("INSERT INTO t VALUES (2)")
try:
    print("synced", c.execute("SELECT replica_sync(1500)").fetchone()[0], flush=True)
except sqlite3.Error as e:
    print("refused", e, flush=True)
while sys.stdin.readline():
    print("status", c.execute("SELECT state FROM replica_status()").fetchone()[0], flush=True)
"#;
    let mut b = procs.spawn_in(&dir.join("host-b"), waiter);
    let line = b.line();
    assert!(
        line.starts_with("refused") && line.contains("another uploader holds this replica's lease"),
        "host b must be waiting for host a's lease: {line:?}"
    );

    let pid = b.child.id();
    let hz = clock_ticks_per_second();
    let (ticks0, t0) = (cpu_ticks(pid), Instant::now());
    // Not a synchronization: the measurement needs this much wall time to pass.
    std::thread::sleep(Duration::from_secs(4));
    let (ticks1, wall) = (cpu_ticks(pid), t0.elapsed());
    b.send("status");
    let status = b.line();

    let cpu = (ticks1 - ticks0) as f64 / hz as f64;
    let share = cpu / wall.as_secs_f64();
    println!(
        "host b used {cpu:.2} s of CPU in {:.2} s of wall time ({:.1}% of one core; {} ticks at {hz} Hz)",
        wall.as_secs_f64(),
        share * 100.0,
        ticks1 - ticks0
    );
    assert_eq!(
        status.trim(),
        "status lease held elsewhere",
        "host b waited for the lease the whole time"
    );
    a.send("stop");
    a.finish();
    b.child.stdin.take();
    b.finish();
    assert!(
        share < 0.2,
        "waiting for another host's lease used {:.1}% of a core",
        share * 100.0
    );
}

/// Two processes on one database: the first owns its spool and uploads; the second stands
/// by. The second's `replica_sync` must not call the configured database "not replicated":
/// it waits until the first has shipped the second's commit, `replica_verify` drills what
/// the first shipped, and `replica_snapshot`, which it cannot do, says who uploads.
#[test]
fn a_standby_process_is_not_told_its_database_is_not_replicated() {
    let procs = Procs::new("standby-sync", &[]);
    let owner = r#"
import sys
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE IF NOT EXISTS t(who TEXT)")
c.execute("INSERT INTO t VALUES ('owner')")
print("synced", c.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
sys.stdin.readline()
"#;
    let mut a = procs.spawn(owner);
    let line = a.line();
    assert!(line.starts_with("synced"), "owner: {line:?}");

    let standby = r#"
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("INSERT INTO t VALUES ('standby')")
print("state", c.execute("SELECT state FROM replica_status()").fetchone()[0], flush=True)
for sql in ["SELECT replica_sync(10000)", "SELECT replica_snapshot()", "SELECT replica_verify()"]:
    try:
        print("ok", c.execute(sql).fetchone()[0], flush=True)
    except sqlite3.Error as e:
        print("error", e, flush=True)
row = c.execute("SELECT replicated_txid, last_upload_at IS NOT NULL FROM replica_status()").fetchone()
print("shipped", *row, flush=True)
"#;
    let mut b = procs.spawn(standby);
    let state = b.line();
    let sync = b.line();
    let snapshot = b.line();
    let verify = b.line();
    let shipped = b.line();
    b.finish();
    a.send("stop");
    a.finish();
    println!("standby: {state}  replica_sync: {sync}  replica_snapshot: {snapshot}");
    assert_eq!(
        state.trim(),
        "state standby",
        "the second process stands by"
    );
    assert!(!sync.contains("not replicated"), "replica_sync: {sync:?}");
    assert!(
        sync.starts_with("ok "),
        "replica_sync waits for the owner to ship the standby's commit: {sync:?}"
    );
    assert!(
        snapshot.contains("another process (pid ") && snapshot.contains("stands by"),
        "replica_snapshot says who uploads: {snapshot:?}"
    );
    // A drill of what the owner shipped: the replica restored at the owner's txid has the
    // checksum the owner recorded for it.
    let synced = sync.strip_prefix("ok ").map(|t| t.trim().to_string());
    assert_eq!(
        verify.strip_prefix("ok ").map(|t| t.trim().to_string()),
        synced,
        "replica_verify drills the state the owner shipped: {verify:?}"
    );
    // The standby's status row shows what the owner shipped, from the spool they share.
    assert_eq!(
        shipped.trim(),
        format!("shipped {} 1", synced.unwrap_or_default()),
        "the standby's status: {shipped:?}"
    );

    let out = python_loaded(
        r#"
c = sqlite3.connect(":memory:")
c.execute("SELECT replica_restore(?, 'r.db', NULL, 'overwrite')", (os.environ["URL"] + "/app.db",)).fetchone()
print(sqlite3.connect("r.db").execute("SELECT group_concat(who) FROM (SELECT who FROM t ORDER BY who)").fetchone()[0])
"#,
        procs.dir.path(),
        &[("URL", procs.url.as_str())],
    );
    assert_eq!(
        check(&out, "restore").trim(),
        "owner,standby",
        "the synced commit of the standby is in the replica"
    );
}
