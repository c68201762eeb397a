//! Frames a writer left past what SQLite published: a process killed after writing its
//! commit frame but before updating the WAL index (SQLite syncs the log between the two)
//! leaves a transaction whose checksums chain but that no reader sees and the next writer
//! overwrites. The owner must not take it for another process's commit.

mod common;
#[path = "common/procs.rs"]
mod procs;

use common::*;
use procs::Procs;

/// Plays the killed writer without the extension: a copy of the database and its log
/// commits a row, and the frames it appended are written past the end of the real log
/// (same salts, same checksum chain), as that writer's own frames would be.
const WRITE_UNPUBLISHED_COMMIT: &str = r#"
import os, shutil, sqlite3
os.makedirs("shadow", exist_ok=True)
shutil.copyfile("app.db", "shadow/app.db")
shutil.copyfile("app.db-wal", "shadow/app.db-wal")
size = os.path.getsize("app.db-wal")
s = sqlite3.connect("shadow/app.db", isolation_level=None)
s.execute("PRAGMA wal_autocheckpoint=0")
s.execute("INSERT INTO u VALUES ('unpublished')")  # a page no later commit rewrites
with open("shadow/app.db-wal", "rb") as f:
    shadow = f.read()
with open("app.db-wal", "rb") as f:
    assert f.read() == shadow[:size], "the copy's log does not extend the real one"
with open("app.db-wal", "r+b") as f:
    f.seek(size)
    f.write(shadow[size:])
print("appended", len(shadow) - size, "bytes")
"#;

/// The owner's start: a table of rows and an empty table `u`, synced; it then waits for a
/// line on stdin.
const OWNER_START: &str = r#"
import sys
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
c.execute("CREATE TABLE u(v TEXT)")
for i in range(20):
    c.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
print("synced", c.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
sys.stdin.readline()
print("synced", c.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
"#;

/// The owner's end: a restore of the replica, checked, compared with the source, whether
/// it holds the unpublished row, and how many snapshots were shipped.
const OWNER_CHECK: &str = r#"
c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
q = "SELECT id, v FROM t ORDER BY id"
r = sqlite3.connect("r.db")
print("integrity", r.execute("PRAGMA integrity_check").fetchone()[0], flush=True)
print("same", c.execute(q).fetchall() == r.execute(q).fetchall(), flush=True)
print("unpublished", r.execute("SELECT count(*) FROM u").fetchone()[0], flush=True)
print("snapshots", c.execute("SELECT snapshots FROM replica_status() WHERE name = 'app.db'").fetchone()[0], flush=True)
"#;

/// Starts the owner (`OWNER_START`, then `middle`, then `OWNER_CHECK`) and, once it has
/// synced, writes the unpublished commit past the log's end.
fn owner_with_unpublished_frames(procs: &Procs, middle: &str) -> procs::Steered {
    let mut owner = procs.spawn(&format!("{OWNER_START}{middle}{OWNER_CHECK}"));
    let line = owner.line();
    assert!(line.starts_with("synced"), "{line:?}");
    let out = python(WRITE_UNPUBLISHED_COMMIT, procs.dir.path(), &procs.env());
    let text = check(&out, "writing frames past the published end");
    assert!(text.starts_with("appended"), "{text}");
    owner
}

/// The owner's output once told to go on: its restore is whole and equal to the source,
/// without the unpublished row, and no snapshot had to repair anything.
fn finish_without_the_unpublished_row(mut owner: procs::Steered, what: &str) -> String {
    owner.send("go");
    let (rest, status) = owner.finish();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("integrity ok"), "{rest}");
    assert!(
        rest.contains("unpublished 0"),
        "an unpublished commit was {what}: {rest}"
    );
    assert!(rest.contains("same True"), "{rest}");
    assert!(rest.contains("snapshots 1\n"), "{rest}");
    rest
}

#[test]
fn a_commit_frame_the_wal_index_does_not_publish_is_not_captured() {
    let procs = Procs::new("unpublished", &[("REPLICA_SYNC_INTERVAL", "50ms")]);
    // The poll for other processes' commits reads the log past its published end; then
    // the owner's next commit overwrites those frames.
    let owner = owner_with_unpublished_frames(
        &procs,
        r#"
c.execute("SELECT replica_restore('app.db', 'r1.db')").fetchone()
print("shipped", sqlite3.connect("r1.db").execute("SELECT count(*) FROM u").fetchone()[0], flush=True)
c.execute("INSERT INTO t(v) VALUES ('published')")
print("synced", c.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
"#,
    );
    let rest = finish_without_the_unpublished_row(owner, "captured");
    assert!(
        rest.contains("shipped 0"),
        "an unpublished commit was shipped: {rest}"
    );
}

/// The same frames, then a process that does not upload restarts the log (after a complete
/// checkpoint, which does not copy them either): the hand-off of the old log holds only what
/// SQLite published, although the index was already reset for the new log when it was written.
#[test]
fn a_restart_hands_off_only_what_the_wal_index_published() {
    let procs = Procs::new("unpublished-restart", &[("REPLICA_SYNC_INTERVAL", "50ms")]);
    let owner = owner_with_unpublished_frames(&procs, "");
    let out = procs.python(
        r#"
c = sqlite3.connect("app.db", isolation_level=None)
print("checkpoint", *c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
salts = lambda: open("app.db-wal", "rb").read(32)[16:24]
before = salts()
c.execute("INSERT INTO t(v) VALUES ('restarted')")
print("restarted", salts() != before)
print("state", c.execute("SELECT state FROM replica_status() WHERE name = 'app.db'").fetchone()[0])
"#,
    );
    let text = check(&out, "the restart by a process that does not upload");
    assert!(text.contains("restarted True"), "{text}");
    assert!(text.contains("state standby"), "{text}");
    finish_without_the_unpublished_row(owner, "handed off");
}
