//! Faults a user meets with a local replica: a replica directory that cannot be written
//! (the store is "down"), and a corrupt object at restore time. Nothing committed is lost,
//! errors name the problem, and no unverified file is left behind.
mod common;

use common::*;

/// The replica cannot be written for a while (a plain file stands where its `ltx/0` folder
/// must go): the application's commits still succeed, status reports the error, and once
/// the path is writable again the replica converges without losing a commit.
#[test]
fn an_unwritable_replica_delays_but_loses_nothing() {
    let dir = TempDir::new("store-down");
    let url = format!("file://{}", dir.join("replicas").display());
    let script = r#"
import shutil, time
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
c.execute("INSERT INTO t VALUES (0, 'first')")
print("first_sync", c.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
level0 = "replicas/app.db/ltx/0"
if os.path.isdir(level0):
    os.rename(level0, level0 + ".aside")
open(level0, "w").write("in the way")          # the store is "down"
for i in range(1, 51):
    c.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * i))   # commits never fail
try:
    c.execute("SELECT replica_sync(1500)").fetchone()
    print("sync_while_down unexpectedly succeeded")
except sqlite3.Error as e:
    print("sync_while_down_error", e)
row = c.execute("SELECT state, last_error, upload_errors > 0, retries > 0, next_retry_at IS NOT NULL FROM replica_status()").fetchone()
print("status_while_down", row[0], "|", row[2], "|", row[1])
print("retrying", row[3], row[4])
os.remove(level0)                              # the store is back
if os.path.isdir(level0 + ".aside"):
    os.rename(level0 + ".aside", level0)
print("sync_after", c.execute("SELECT replica_sync(60000)").fetchone()[0])
print("state_after", c.execute("SELECT state, last_error, retries, next_retry_at FROM replica_status()").fetchone())
c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
print("rows", sqlite3.connect("r.db").execute("SELECT count(*), sum(length(v)) FROM t").fetchone())
print("source", c.execute("SELECT count(*), sum(length(v)) FROM t").fetchone())
"#;
    let out = python_loaded(script, dir.path(), &[("REPLICA_URL", &url)]);
    let text = check(&out, "store-down script");
    assert!(
        text.contains("sync_while_down_error replica_sync: timed out"),
        "{text}"
    );
    assert!(text.contains("The commits are safe locally"), "{text}");
    assert!(
        text.contains("status_while_down error | 1 |"),
        "status must show the error:\n{text}"
    );
    assert!(
        text.contains("retrying 1 1"),
        "status must show the retry state:\n{text}"
    );
    assert!(
        text.contains("state_after ('up to date', None, 0, None)"),
        "{text}"
    );
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(String::from)
    };
    assert_eq!(get("rows "), get("source "), "{text}");
    assert_eq!(get("source ").as_deref(), Some("(51, 1280)"), "{text}");
}

/// A corrupt object: restore refuses with a message naming it, and leaves no output behind.
#[test]
fn a_corrupt_object_is_named_and_nothing_is_written() {
    let dir = TempDir::new("corrupt");
    let url = format!("file://{}", dir.join("replicas").display());
    let script = r#"
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("CREATE TABLE t(v)")
c.execute("INSERT INTO t VALUES (randomblob(5000))")
c.execute("SELECT replica_sync(10000)").fetchone()
c.execute("INSERT INTO t VALUES ('second')")
print("txid", c.execute("SELECT replica_sync(10000)").fetchone()[0])
c.execute("INSERT INTO t VALUES ('third')")
c.execute("SELECT replica_sync(10000)").fetchone()
name = sorted(os.listdir("replicas/app.db/ltx/0"))[0]   # the first level-0 file after the snapshot
print("victim", name)
victim = "replicas/app.db/ltx/0/" + name
data = bytearray(open(victim, "rb").read())
data[len(data) // 2] ^= 0x55
open(victim, "wb").write(data)
try:
    c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
    print("restore unexpectedly succeeded")
except sqlite3.Error as e:
    print("restore_error", e)
print("left", sorted(f for f in os.listdir(".") if f.startswith("r.db")))
os.remove(victim)
try:
    c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
    print("restore unexpectedly succeeded")
except sqlite3.Error as e:
    print("gap_error", e)
print("left", sorted(f for f in os.listdir(".") if f.startswith("r.db")))
print("at1", c.execute("SELECT replica_restore('app.db', 'r.db', 1)").fetchone()[0])
print("after_ok", sorted(f for f in os.listdir(".") if f.startswith("r.db")))
"#;
    let out = python_loaded(script, dir.path(), &[("REPLICA_URL", &url)]);
    let text = check(&out, "corrupt-object script");
    let victim = text
        .lines()
        .find_map(|l| l.strip_prefix("victim "))
        .expect("victim")
        .to_string();
    assert!(
        text.contains(&format!("restore_error restore failed: 0000/{victim}:")),
        "the error must name the object:\n{text}"
    );
    assert!(
        text.contains("gap_error restore failed: the replica's chain is broken")
            || text.contains("gap_error restore failed: txid"),
        "a missing file must be an error, never an older database:\n{text}"
    );
    assert_eq!(
        text.matches("left []").count(),
        2,
        "no output may be left behind:\n{text}"
    );
    assert!(
        text.contains("at1 1"),
        "restoring before the damage still works:\n{text}"
    );
    assert!(
        text.contains("after_ok ['r.db']"),
        "a restore leaves only its output behind:\n{text}"
    );
}
