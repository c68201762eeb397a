//! A database between two logs. When the last connection anywhere closes, SQLite
//! checkpoints the log and deletes it; a process without the extension (Debian's `sqlite3`)
//! that then writes and closes deletes its own log too, leaving nothing to catch up from but
//! a changed database file. The next log this process starts must not continue the replica
//! over that change (the restore would hold a state the database never had): a snapshot
//! closes it. And with no such write in between, no snapshot is spent.

mod common;

use common::restores::{check_restores, snapshot_files};
use common::*;
use std::path::Path;

/// The rows in short (each id with its value's length and first bytes), through Debian's CLI.
fn rows(db: &Path) -> String {
    sqlite3_dot(
        db,
        "SELECT group_concat(id || ':' || length(v) || ':' || substr(hex(v), 1, 8), ' ') FROM (SELECT * FROM t ORDER BY id);",
    )
}

/// `PY_LOAD` then: open app.db (through the replica VFS, or opened before a load into it
/// when `adopted`), run `body` with `c`, sync, print the status, close; what it printed,
/// then its log lines.
fn session(dir: &TempDir, adopted: bool, body: &str) -> String {
    let url = format!("file://{}", dir.join("replica").display());
    let open = match adopted {
        false => "c = sqlite3.connect('app.db', isolation_level=None)\n".to_string(),
        true => "c = sqlite3.connect('app.db', isolation_level=None)\n\
                 c.execute('pragma journal_mode=wal')\n\
                 c.enable_load_extension(True)\n\
                 c.load_extension(os.environ['REPLICA_TEST_LIB'])\n"
            .to_string(),
    };
    let script = format!(
        "import os\n{open}{body}\n\
         print('synced', c.execute('select replica_sync(20000)').fetchone()[0])\n\
         print('status', c.execute('select snapshots, state from replica_status()').fetchone())\n\
         c.close()\n\
         print('log left', os.path.exists('app.db-wal'))\n\
         print('index left', os.path.exists('app.db-shm'))\n"
    );
    let mut env = vec![("REPLICA_URL", url.as_str())];
    if adopted {
        env.push(("REPLICA_DEFAULT_VFS", "0"));
    }
    let o = python_loaded(&script, dir.path(), &env);
    // The log lines (each snapshot with its reason) go with what failures print.
    format!(
        "{}\nlog:\n{}",
        check(&o, "a session writing app.db"),
        stderr(&o)
    )
}

const CREATE: &str = "c.execute('create table if not exists t(id integer primary key, v blob)')";
const INSERT: &str = "for i in range(20): c.execute('insert into t(v) values (randomblob(400))')";

/// Debian's sqlite3, without the extension: rewrites rows on pages the next session does
/// not touch, and closes (deleting its log).
fn write_without_the_extension(dir: &TempDir) {
    sqlite3_without_the_extension(
        dir,
        "UPDATE t SET v = x'0102' WHERE id <= 10; INSERT INTO t(v) VALUES (randomblob(3000));",
    );
}

fn sqlite3_without_the_extension(dir: &TempDir, sql: &str) {
    let o = run(SQLITE3, &["app.db", sql], dir.path(), &[], "");
    check(&o, "sqlite3 without the extension");
    assert!(!dir.join("app.db-wal").exists(), "sqlite3 left its log");
}

fn between_sessions(adopted: bool, foreign_write: bool, what: &str) {
    let dir = TempDir::new(&format!("no-log-{adopted}-{foreign_write}"));
    let first = session(&dir, adopted, &format!("{CREATE}\n{INSERT}"));
    assert!(
        first.contains("log left False"),
        "{what}: the log stayed: {first}"
    );
    assert!(
        first.contains("index left False"),
        "{what}: a -shm was left: {first}"
    );
    if foreign_write {
        write_without_the_extension(&dir);
    }
    let second = session(&dir, adopted, INSERT);
    assert!(second.contains("'up to date'"), "{what}: {second}");
    check_restores(&dir, &rows, what);
    // The first upload is a snapshot; the write without the extension costs one more.
    let want = 1 + usize::from(foreign_write);
    assert_eq!(
        snapshot_files(&dir.join("replica")),
        want,
        "{what}: first session:\n{first}\nsecond session:\n{second}"
    );
}

#[test]
fn a_write_without_the_extension_while_the_database_had_no_log_is_not_lost() {
    between_sessions(false, true, "replica VFS");
}

#[test]
fn a_write_without_the_extension_between_adopted_connections_is_not_lost() {
    between_sessions(true, true, "connections opened before the load");
}

/// The first snapshot of an empty database (no log, no WAL index) is all the replica holds
/// when a process without the extension creates a table in it.
#[test]
fn a_write_without_the_extension_after_an_empty_database_first_snapshot_is_not_lost() {
    let dir = TempDir::new("no-log-empty");
    // One page, in WAL mode, no log: what the first snapshot reads is the file alone.
    sqlite3_without_the_extension(&dir, "PRAGMA journal_mode=wal;");
    let first = session(&dir, false, "pass");
    assert!(first.contains("'up to date'"), "{first}");
    sqlite3_without_the_extension(
        &dir,
        // Rows over several pages: the next session rewrites only the last of them.
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) \
         INSERT INTO t(v) SELECT randomblob(3000) FROM n;",
    );
    let second = session(&dir, false, INSERT);
    assert!(second.contains("'up to date'"), "{second}");
    check_restores(&dir, &rows, "after an empty database's first snapshot");
}

#[test]
fn with_no_write_in_between_the_next_log_needs_no_snapshot() {
    between_sessions(false, false, "replica VFS");
    between_sessions(true, false, "connections opened before the load");
}

/// A checkpoint with TRUNCATE by a process without the extension, after it committed: its
/// commits are taken from the log before the truncation (this process truncates it next,
/// in its own checkpoint), and the log it truncates continues without a snapshot.
#[test]
fn a_truncating_checkpoint_takes_the_other_process_commits_first() {
    let dir = TempDir::new("no-log-truncate");
    let url = format!("file://{}", dir.join("replica").display());
    let script = format!(
        r#"import subprocess
c = sqlite3.connect('app.db', isolation_level=None)
{CREATE}
{INSERT}
c.execute('select replica_sync(20000)').fetchone()
other = subprocess.run(['sqlite3', 'app.db', "UPDATE t SET v = x'03' WHERE id <= 5;"])
assert other.returncode == 0
print('checkpoint', c.execute('pragma wal_checkpoint(TRUNCATE)').fetchone())
{INSERT}
print('synced', c.execute('select replica_sync(20000)').fetchone()[0])
print('status', c.execute('select snapshots, state from replica_status()').fetchone())
"#
    );
    let o = python_loaded(&script, dir.path(), &[("REPLICA_URL", &url)]);
    let out = check(&o, "a truncating checkpoint after another process's commit");
    assert!(out.contains("checkpoint (0, 0, 0)"), "{out}");
    assert_eq!(snapshot_files(&dir.join("replica")), 1, "{out}");
    check_restores(&dir, &rows, "a truncating checkpoint");
}

/// This process closes its last connection while a process without the extension still has
/// the database open; that process then writes and closes last, deleting the log unseen.
/// `replica_sync` (on the boot connection: no connection to the database is open here) must
/// not report the replica current without that write.
#[test]
fn a_log_deleted_by_another_process_last_close_is_noticed_by_replica_sync() {
    let dir = TempDir::new("no-log-deleted-elsewhere");
    let url = format!("file://{}", dir.join("replica").display());
    let script = format!(
        r#"import os, subprocess, sys
CHILD = '''
import sqlite3, sys
d = sqlite3.connect("app.db", isolation_level=None)
d.execute("select count(*) from t").fetchone()
print("open", flush=True)
sys.stdin.readline()
d.execute("update t set v = x'0102' where id <= 10")
d.close()
print("done", flush=True)
'''
c = sqlite3.connect('app.db', isolation_level=None)
{CREATE}
{INSERT}
c.execute('select replica_sync(20000)').fetchone()
child = subprocess.Popen([sys.executable, '-c', CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == 'open'
c.close()
assert os.path.exists('app.db-wal'), 'the log went at this close'
child.stdin.write('go\n'); child.stdin.flush()
assert child.stdout.readline().strip() == 'done'
child.wait()
assert not os.path.exists('app.db-wal'), 'the other process left the log'
print('synced', boot.execute('select replica_sync(20000)').fetchone()[0])
print('status', boot.execute('select state from replica_status()').fetchone())
"#
    );
    let o = python_loaded(&script, dir.path(), &[("REPLICA_URL", &url)]);
    let out = check(&o, "a log deleted by another process's last close");
    assert!(out.contains("'up to date'"), "{out}");
    check_restores(&dir, &rows, "a log deleted by another process's last close");
}
