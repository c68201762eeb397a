//! Synchronous commits (`replica_sync=commit`, `replica_sync_mode()`): a COMMIT returns only
//! once its transaction is in the bucket, concurrent committers share uploads (group
//! commit), and a bucket that does not confirm in time fails the statement with
//! SQLITE_WARNING while the transaction stays committed locally.

mod common;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::*;
use procs::Procs;
use s3env::*;

#[test]
fn eight_committers_share_uploads_and_every_acknowledged_commit_survives_a_crash() {
    let dir = TempDir::new("sync-commit");
    let srv = s3server::start(&dir.join("server"), "bkt");
    let url = s3_url(srv.port, "sync");
    let env = s3_env(&srv, &url);
    let env = as_refs(&env);
    // Eight threads, each with its own synchronous connection; the process then dies at
    // once: no replica_sync, no close, no chance for the uploader to catch up.
    let out = python_loaded(
        r#"
import threading, time
setup = sqlite3.connect("app.db", isolation_level=None)
setup.execute("PRAGMA journal_mode=wal")
setup.execute("CREATE TABLE t(writer INTEGER, n INTEGER, pad TEXT)")
setup.execute("SELECT replica_sync(10000)")
puts0 = setup.execute("SELECT put_requests FROM replica_status()").fetchone()[0]
lat = []
lock = threading.Lock()
def writer(w):
    c = sqlite3.connect("file:app.db?replica_sync=commit&replica_sync_timeout=30000", uri=True,
                        isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA busy_timeout=10000")
    for n in range(25):
        t0 = time.perf_counter()
        c.execute("INSERT INTO t VALUES (?, ?, ?)", (w, n, "x" * 200))
        with lock:
            lat.append(time.perf_counter() - t0)
    assert c.execute("SELECT replica_sync_mode()").fetchone()[0] == "commit"
threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
for t in threads: t.start()
for t in threads: t.join()
puts = setup.execute("SELECT put_requests FROM replica_status()").fetchone()[0] - puts0
lat.sort()
print("commits", len(lat), flush=True)
print("puts", puts, flush=True)
print("p50_ms %.2f p99_ms %.2f" % (lat[len(lat) // 2] * 1000, lat[len(lat) * 99 // 100] * 1000), flush=True)
os._exit(0)
"#,
        dir.path(),
        &env,
    );
    let text = check(&out, "eight synchronous committers");
    eprintln!("{text}");
    let num = |k: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {text}"))
    };
    let (commits, puts) = (num("commits "), num("puts "));
    assert_eq!(commits, 200);
    assert!(puts > 0, "{text}");
    // Group commit: waiters ride the next upload instead of each making its own.
    assert!(
        puts * 2 <= commits,
        "{puts} PUTs for {commits} synchronous commits: no group commit\n{text}"
    );

    // Everything acknowledged is in the bucket, though the process never synced or closed.
    let restore = python_loaded(
        r#"
c = sqlite3.connect(":memory:")
print("restored", c.execute("SELECT replica_restore('s3://bkt/sync/app.db?endpoint=' || ? || '&force-path-style=true', 'r.db')", (os.environ["ENDPOINT"],)).fetchone()[0])
r = sqlite3.connect("r.db")
print("rows", r.execute("SELECT count(*), count(DISTINCT writer * 100 + n) FROM t").fetchone())
"#,
        dir.path(),
        &[
            ("ENDPOINT", srv.endpoint().as_str()),
            ("AWS_ACCESS_KEY_ID", srv.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", srv.secret_key.as_str()),
            ("REPLICA_CONFIG", "off"),
        ],
    );
    let text = check(&restore, "restore after the crash");
    assert!(text.contains("rows (200, 200)"), "{text}");
}

#[test]
fn a_replica_that_does_not_confirm_fails_the_statement_but_not_the_commit() {
    let dir = TempDir::new("sync-commit-down");
    let url = format!("file://{}", dir.join("replica").display());
    let out = python_loaded(
        r#"
c = sqlite3.connect("file:app.db?replica_sync=commit&replica_sync_timeout=400", uri=True, isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(x)")
c.execute("INSERT INTO t VALUES (1)")
print("mode", c.execute("SELECT replica_sync_mode()").fetchone()[0])
print("replicated", c.execute("SELECT local_txid = replicated_txid FROM replica_status()").fetchone()[0])
level0 = "replica/app.db/ltx/0"
if os.path.isdir(level0):
    os.rename(level0, level0 + ".aside")
open(level0, "w").write("in the way")          # the replica is "down"
try:
    c.execute("INSERT INTO t VALUES (2)")
    print("no error")
except sqlite3.Error as e:
    print("error", e.sqlite_errorname, "|", e)
print("rows", c.execute("SELECT count(*) FROM t").fetchone()[0])
print("in_txn", c.in_transaction)
os.remove(level0)                              # back
if os.path.isdir(level0 + ".aside"):
    os.rename(level0 + ".aside", level0)
c.execute("INSERT INTO t VALUES (3)")
print("mode", c.execute("SELECT replica_sync_mode('async')").fetchone()[0])
print("checkpoint_pages", c.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
c.execute("INSERT INTO t VALUES (4)")
print("rows", c.execute("SELECT count(*) FROM t").fetchone()[0])
try:
    c.execute("SELECT replica_sync_mode('later')")
except sqlite3.Error as e:
    print("bad_mode", e)
"#,
        dir.path(),
        &[("REPLICA_URL", url.as_str()), ("REPLICA_LOG", "stderr")],
    );
    let text = check(&out, "synchronous commit with the replica down");
    let log = stderr(&out);
    assert!(text.contains("mode commit"), "{text}");
    assert!(text.contains("replicated 1"), "{text}");
    assert!(
        text.contains("error SQLITE_WARNING | warning message"),
        "{text}"
    );
    assert!(text.contains("rows 2\n"), "the commit stayed: {text}");
    assert!(text.contains("in_txn False"), "{text}");
    assert!(
        log.contains("synchronous COMMIT: committed locally, not confirmed by the replica"),
        "{log}"
    );
    assert!(text.contains("mode async"), "{text}");
    assert!(
        text.contains("checkpoint_pages 1000"),
        "auto-checkpoint restored: {text}"
    );
    assert!(text.contains("rows 4"), "{text}");
    assert!(
        text.contains("bad_mode replica sync mode must be 'commit'"),
        "{text}"
    );
}

/// A synchronous connection in a process that does not replicate the database (another
/// process holds its spool): each COMMIT waits until that process has shipped it. Killing
/// that process right after the last acknowledged commit loses none of them.
#[test]
fn commits_acknowledged_in_another_process_are_in_the_replica() {
    let procs = Procs::new("sync-commit-other", &[("REPLICA_SYNC_INTERVAL", "50ms")]);
    let mut owner = procs.spawn(
        r#"
import sys
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
print("synced", c.execute("SELECT replica_sync(10000)").fetchone()[0])
sys.stdin.readline()
"#,
    );
    let line = owner.line();
    assert!(line.starts_with("synced"), "{line:?}");
    let out = procs.python(
        r#"
c = sqlite3.connect("file:app.db?replica_sync=commit&replica_sync_timeout=20000", uri=True, isolation_level=None)
c.execute("PRAGMA busy_timeout=5000")
acked = 0
for i in range(1, 21):
    c.execute("INSERT INTO t VALUES (?, 'other')", (i,))
    acked += 1
print("acked", acked)
print("mode", c.execute("SELECT replica_sync_mode()").fetchone()[0])
"#,
    );
    let text = check(&out, "synchronous commits in the second process");
    assert!(text.contains("acked 20"), "{text}");
    assert!(
        stderr(&out).contains("another process replicates this database"),
        "the second process must not own the spool: {}",
        stderr(&out)
    );
    owner.kill(); // SIGKILL right after the last acknowledgement
    let restore = python_loaded(
        r#"
c = sqlite3.connect(":memory:")
c.execute("SELECT replica_restore(?, 'r.db')", (os.environ["URL"] + "/app.db",)).fetchone()
print("rows", sqlite3.connect("r.db").execute("SELECT count(*) FROM t WHERE who = 'other'").fetchone()[0])
"#,
        procs.dir.path(),
        &[("URL", procs.url.as_str())],
    );
    let text = check(&restore, "restore");
    assert!(text.contains("rows 20"), "{text}");
}
