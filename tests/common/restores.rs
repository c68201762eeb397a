//! Replicas written and restored through the loaded extension in Debian's python3, shared by
//! the restore tests (tests/restore_drills.rs, tests/hostile_restore.rs): a database with a
//! schema, a replica of it written one synced batch at a time, and `replica_restore` run in
//! a fresh process, its result or its SQL error.

use super::*;
use std::path::{Path, PathBuf};

/// The schema of `app.db` in most restore tests.
pub const APP_SCHEMA: &str = "CREATE TABLE t(a INTEGER PRIMARY KEY, b)";

/// Creates `name` in WAL mode with `schema`, without the extension: the schema exists before
/// the extension sees the database, so that the first snapshot (taken as soon as it is
/// opened) holds it and the txids do not depend on timing.
pub fn create_schema(cwd: &Path, name: &str, schema: &str) {
    check(
        &run(
            SQLITE3,
            &[name, &format!("PRAGMA journal_mode=wal; {schema};")],
            cwd,
            &[],
            "",
        ),
        "create the schema",
    );
}

/// Writes `app.db` (or `name`) through the extension, one synced commit per batch, so the
/// replica holds a snapshot then one level-0 file per batch. Returns the last txid.
pub fn write_replica(cwd: &Path, url: &str, name: &str, schema: &str, batches: usize) -> u64 {
    write_replica_env(cwd, &[("REPLICA_URL", url)], name, schema, batches)
}

/// [`write_replica`] with the environment `env` (the replica URL and any keys it needs).
pub fn write_replica_env(
    cwd: &Path,
    env: &[(&str, &str)],
    name: &str,
    schema: &str,
    batches: usize,
) -> u64 {
    create_schema(cwd, name, schema);
    let out = python_loaded(
        &format!(
            r#"
db = sqlite3.connect("{name}", isolation_level=None)
txid = db.execute("SELECT replica_sync(10000)").fetchone()[0]
for b in range({batches}):
    db.execute("BEGIN")
    for i in range(40):
        db.execute("INSERT INTO t VALUES (?, ?)", (b * 1000 + i, ("row %d " % i) * 30))
    db.execute("COMMIT")
    txid = db.execute("SELECT replica_sync(10000)").fetchone()[0]
print(txid)
"#
        ),
        cwd,
        env,
    );
    check(&out, "writing the replica").trim().parse().unwrap()
}

/// A new scratch directory `name` whose `app.db` (`APP_SCHEMA`) was written to
/// `file://<dir>/replicas` by `write_replica`: the directory, that URL and the last txid.
pub fn app_replica(name: &str, batches: usize) -> (TempDir, String, u64) {
    let dir = TempDir::new(name);
    let url = format!("file://{}", dir.join("replicas").display());
    let last = write_replica(dir.path(), &url, "app.db", APP_SCHEMA, batches);
    (dir, url, last)
}

/// Runs `replica_restore(src, out)`; `Ok(txid)` or `Err(message)`.
pub fn restore(cwd: &Path, src: &str, out: &Path) -> Result<u64, String> {
    restore_after("", cwd, src, out)
}

/// `restore` in a process that first runs the Python lines `setup`.
pub fn restore_after(setup: &str, cwd: &Path, src: &str, out: &Path) -> Result<u64, String> {
    restore_in(setup, cwd, &[("REPLICA_URL", "")], src, out, None)
}

/// `replica_restore(src, out, NULL, options)` in a process with the environment `env` that
/// first runs the Python lines `setup`: `Ok(txid)` or `Err(the SQL error)`. A NULL result
/// without an error fails the test: a restore that did nothing must never read as success.
pub fn restore_in(
    setup: &str,
    cwd: &Path,
    env: &[(&str, &str)],
    src: &str,
    out: &Path,
    options: Option<&str>,
) -> Result<u64, String> {
    let o = python_loaded(
        &format!(
            r#"
{setup}
try:
    print("ok", boot.execute("SELECT replica_restore(?, ?, NULL, ?)", ({src:?}, {out:?}, {options})).fetchone()[0])
except sqlite3.Error as e:
    print("error", e)
"#,
            out = out.display().to_string(),
            options = options.map_or("None".to_string(), |o| format!("{o:?}")),
        ),
        cwd,
        env,
    );
    let text = check(&o, "replica_restore");
    match text.trim().split_once(' ') {
        Some(("ok", t)) => Ok(t.parse().unwrap_or_else(|_| {
            panic!("replica_restore returned {t} and no error:\n{}", stderr(&o))
        })),
        Some(("error", e)) => Err(e.to_string()),
        _ => panic!("unexpected output {text}"),
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// What `dir` holds.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// The level-0 file of `txid` in a file replica.
pub fn l0(replica: &Path, txid: u64) -> PathBuf {
    replica.join(format!("ltx/0/{txid:016x}-{txid:016x}.ltx"))
}

/// How many snapshots (level-9 files) the replica of `app.db` under `replica` holds.
pub fn snapshot_files(replica: &Path) -> usize {
    std::fs::read_dir(replica.join("app.db/ltx/9"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Restores `<dir>/replica/app.db` with the real `litestream restore` and with
/// `replica_restore`; both must hold what `rows` reads from the live `<dir>/app.db`.
pub fn check_restores(dir: &TempDir, rows: &dyn Fn(&Path) -> String, what: &str) {
    let live = rows(&dir.join("app.db"));
    let url = format!("file://{}", dir.join("replica/app.db").display());
    let by_litestream = dir.join("litestream.db");
    litestream_restore(&url, &by_litestream, None);
    assert_eq!(
        rows(&by_litestream),
        live,
        "{what}: litestream restore differs"
    );
    let by_replica = dir.join("replica.db");
    let o = python_loaded(
        &format!(
            "boot.execute(\"select replica_restore('{url}', '{}')\")\n",
            by_replica.display()
        ),
        dir.path(),
        &[],
    );
    check(&o, "replica_restore");
    assert_eq!(rows(&by_replica), live, "{what}: replica_restore differs");
}
