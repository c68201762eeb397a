//! The extension observes, it does not touch: the same deterministic SQL run with the
//! extension loaded (and a replica configured) and without it leaves byte-identical
//! database files, the same schema (no objects of ours), and nothing beside the database
//! but the spool directory `<db>-replica/`.

mod common;

use common::*;
use std::path::Path;

/// Deterministic: no random(), no clock; overflow rows, an index, updates, deletes, a
/// savepoint rolled back, a transaction rolled back, VACUUM and checkpoints.
const SCRIPT: &str = r#"
PRAGMA journal_mode=WAL;
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, body BLOB, qty INTEGER);
CREATE TABLE notes(id INTEGER PRIMARY KEY, item INTEGER REFERENCES items(id), txt TEXT);
CREATE INDEX items_name ON items(name);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600)
INSERT INTO items(name, body, qty)
  SELECT printf('item-%05d', i),
         CASE WHEN i % 17 = 0 THEN zeroblob(9000 + i) ELSE CAST(printf('%.*c', 20 + i % 300, 'x') AS BLOB) END,
         i * 7 % 101
  FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
INSERT INTO notes(item, txt) SELECT i * 2, printf('%.*c', 100 + i * 13 % 5000, 'n') FROM n;
UPDATE items SET qty = qty + 1000, name = name || '-upd' WHERE id % 5 = 0;
DELETE FROM items WHERE id % 9 = 0;
BEGIN;
INSERT INTO items(name, body, qty) VALUES ('kept', zeroblob(5000), 1);
SAVEPOINT sp;
DELETE FROM notes WHERE id < 200;
UPDATE items SET body = zeroblob(20000) WHERE id < 50;
ROLLBACK TO sp;
RELEASE sp;
COMMIT;
BEGIN;
DELETE FROM items;
ROLLBACK;
PRAGMA wal_checkpoint(PASSIVE);
CREATE TABLE scratch AS SELECT id, name FROM items WHERE id % 3 = 0;
DROP TABLE scratch;
VACUUM;
UPDATE notes SET txt = upper(txt) WHERE id % 4 = 1;
PRAGMA wal_checkpoint(RESTART);
INSERT INTO notes(item, txt) VALUES (1, 'after restart');
"#;

/// Runs SCRIPT on `<dir>/app.db` with or without the extension, then a TRUNCATE checkpoint
/// and close; prints the schema.
fn run_script(dir: &Path, with_extension: bool, replica_url: &str) -> String {
    let py = format!(
        r#"
import os, sqlite3
if {load}:
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(os.environ["REPLICA_TEST_LIB"])
db = sqlite3.connect("app.db", isolation_level=None, timeout=30)
db.executescript({script:?})
if {load}:
    print("synced", db.execute("SELECT replica_sync(10000)").fetchone()[0])
    st = db.execute("SELECT state, last_error, pending_txns FROM replica_status()").fetchall()
    print("status", st)
busy, log, ckpt = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
print("checkpoint", busy, log, ckpt)
for row in db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"):
    print("schema", row)
print("journal_mode", db.execute("PRAGMA journal_mode").fetchone()[0])
db.close()
"#,
        load = if with_extension { "True" } else { "False" },
        script = SCRIPT,
    );
    let env: Vec<(&str, &str)> = if with_extension {
        vec![("REPLICA_URL", replica_url)]
    } else {
        vec![]
    };
    check(
        &python(&py, dir, &env),
        if with_extension {
            "script with the extension"
        } else {
            "script without the extension"
        },
    )
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            if e.file_type().unwrap().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect();
    v.sort();
    v
}

#[test]
fn extension_leaves_the_database_file_byte_identical() {
    let root = TempDir::new("untouched");
    let with = root.join("with");
    let without = root.join("without");
    std::fs::create_dir_all(&with).unwrap();
    std::fs::create_dir_all(&without).unwrap();
    let url = format!("file://{}", root.join("replicas").display());

    let out_with = run_script(&with, true, &url);
    let out_without = run_script(&without, false, &url);

    // The run with the extension did replicate, and got its checkpoint done.
    assert!(
        out_with
            .lines()
            .any(|l| l.starts_with("synced ") && l != "synced 0"),
        "nothing replicated:\n{out_with}"
    );
    assert!(
        out_with.contains("status [('up to date', None, 0)]"),
        "replica status after sync:\n{out_with}"
    );
    for out in [&out_with, &out_without] {
        assert!(
            out.contains("checkpoint 0 0 0"),
            "the TRUNCATE checkpoint did not complete:\n{out}"
        );
        assert!(out.contains("journal_mode wal"), "not in WAL mode:\n{out}");
    }

    // Same schema: nothing of ours in sqlite_master.
    let schema = |o: &str| {
        o.lines()
            .filter(|l| l.starts_with("schema "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        schema(&out_with),
        schema(&out_without),
        "sqlite_master differs with the extension loaded"
    );
    let ours: Vec<String> = schema(&out_with)
        .into_iter()
        .filter(|l| l.to_lowercase().contains("replica") || l.to_lowercase().contains("litestream"))
        .collect();
    assert!(
        ours.is_empty(),
        "objects of the extension in sqlite_master: {ours:?}"
    );
    assert_eq!(
        schema(&out_with).len(),
        3,
        "expected the 2 tables and 1 index of the script: {:?}",
        schema(&out_with)
    );

    // Byte-identical database files.
    let a = std::fs::read(with.join("app.db")).unwrap();
    let b = std::fs::read(without.join("app.db")).unwrap();
    assert_eq!(
        a.len(),
        b.len(),
        "the database files differ in size: {} with the extension, {} without",
        a.len(),
        b.len()
    );
    if a != b {
        let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap();
        let page_size = u16::from_be_bytes([b[16], b[17]]) as usize;
        panic!(
            "the database files differ, first at byte {first} (page {}, offset {} in it): {:02x} with the extension, {:02x} without",
            first / page_size + 1,
            first % page_size,
            a[first],
            b[first]
        );
    }

    // Nothing beside the database but the spool directory; -wal and -shm are gone in both.
    assert_eq!(
        listing(&without),
        vec!["app.db".to_string()],
        "files beside the database without the extension"
    );
    assert_eq!(
        listing(&with),
        vec!["app.db".to_string(), "app.db-replica/".to_string()],
        "files beside the database with the extension"
    );

    // And the replica holds that database.
    let o = python(
        r#"
import os, sqlite3
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])
print(boot.execute("SELECT replica_restore(?, 'restored.db')", (os.environ["SRC"],)).fetchone()[0])
"#,
        root.path(),
        &[("SRC", &format!("{url}/app.db"))],
    );
    check(&o, "replica_restore");
    assert!(
        dump(&root.join("restored.db")) == dump(&without.join("app.db")),
        "the replica differs from the database"
    );
    assert_eq!(
        ltx_db_checksum(&root.join("restored.db")),
        ltx_db_checksum(&without.join("app.db"))
    );
}

/// The load leaves SQLite's default VFS in place, by name and as the same object (a
/// shared cache needs one VFS on both sides of the load); a database file names the
/// replica VFS as a shim does, before the VFS it wraps.
#[test]
fn the_default_vfs_keeps_its_name_and_files_name_the_shim() {
    let dir = TempDir::new("untouched-vfs-name");
    let load = format!(".load {}", load_path());
    let o = run(
        SQLITE3,
        &[":memory:", &load, ".vfslist", ".open app.db", ".vfsname"],
        dir.path(),
        &[("REPLICA_CONFIG", "off")],
        "",
    );
    let out = check(&o, "sqlite3 .vfslist and .vfsname after the load");
    let current: Vec<&str> = out.lines().filter(|l| l.contains("CURRENT")).collect();
    assert_eq!(
        current,
        ["vfs.zName      = \"unix\"  <--- CURRENT"],
        "{out}"
    );
    assert!(out.lines().any(|l| l == "replica/unix"), "{out}");
}
