//! Other local users against the spool (`<db>-replica/`): reading pages they may not read
//! from its files, planting symlinks so the spool writes where they choose (before it is
//! opened, or swapped in after), or handing it a directory of their own; and databases it
//! may not write (a read-only directory, `mode=ro`, `immutable=1`, an unwritable spool),
//! which must still open and read. Each runs Debian's python3 with the release build
//! loaded, and runs as root (as CI does) where it needs another user, or as user nobody
//! where root would not be stopped by a mode.
mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes, syncs and checkpoints `app.db` with the extension loaded (umask 022), then
/// prints the database's rows and its `replica_status()` state and error.
const WORKLOAD: &str = r#"
os.umask(0o022)
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
for i in range(20):
    c.execute("INSERT INTO t VALUES (?, ?)", (i, "secret-%d" % i))
try:
    c.execute("SELECT replica_sync(20000)").fetchone()
    print("synced")
except sqlite3.Error as e:
    print("sync_error", e)
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.execute("INSERT INTO t VALUES (100, 'after the checkpoint')")
print("rows", c.execute("SELECT count(*) FROM t").fetchone()[0])
row = c.execute("SELECT state, last_error FROM replica_status() WHERE name = 'app.db'").fetchone()
print("status", row[0] if row else None)
print("last_error", row[1] if row else None)
"#;

fn run_workload(dir: &TempDir) -> String {
    let url = format!("file://{}", dir.join("replicas").display());
    let out = python_loaded(WORKLOAD, dir.path(), &[("REPLICA_URL", &url)]);
    check(&out, "workload")
}

fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"))
}

/// Every path under `dir` (not following symlinks), with its metadata.
fn walk(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            out.extend(walk(&e.path()));
        }
        out.push((e.path(), m));
    }
    out
}

/// The command prefix that runs a program as user nobody (uid 65534); `None` when neither
/// `runuser` nor `setpriv` exists.
fn as_nobody() -> Option<[&'static str; 4]> {
    [
        ["/usr/sbin/runuser", "-u", "nobody", "--"],
        [
            "/usr/bin/setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
    ]
    .into_iter()
    .find(|prefix| Path::new(prefix[0]).exists())
}

/// Runs `cat path` as user nobody; `None` when neither `runuser` nor `setpriv` exists.
fn cat_as_nobody(path: &Path) -> Option<std::process::Output> {
    let [tool, args @ ..] = as_nobody()?;
    let mut args = args.to_vec();
    args.extend(["cat", path.to_str().unwrap()]);
    Some(run(tool, &args, Path::new("/"), &[], ""))
}

/// Whether this test runs as root (a mode does not stop root: such a test runs its host as
/// user nobody instead).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// Runs `body` after `PY_LOAD` in `dir` as a user that modes stop: this one when it is not
/// root, else user nobody, to whom `dir` is then given (`chown -R`). `None` (with a notice)
/// when this runs as root and neither `runuser` nor `setpriv` exists.
fn python_loaded_unprivileged(dir: &TempDir, body: &str, env: &[(&str, &str)]) -> Option<String> {
    let prefix: Vec<&str> = if running_as_root() {
        let Some(prefix) = as_nobody() else {
            println!("NOTICE: running as root without runuser or setpriv; skipped");
            return None;
        };
        let path = dir.path().to_str().unwrap();
        check(
            &run("chown", &["-R", "65534:65534", path], dir.path(), &[], ""),
            "chown",
        );
        prefix.to_vec()
    } else {
        Vec::new()
    };
    let lib = load_path();
    let mut all: Vec<(&str, &str)> = vec![("REPLICA_TEST_LIB", &lib)];
    all.extend_from_slice(env);
    let mut argv = prefix;
    argv.extend([PYTHON3, "-"]);
    let cmd = replica_command(argv[0], &argv[1..], dir.path(), &all);
    let out = run_command(
        cmd,
        &format!("{PY_LOAD}{body}"),
        std::time::Duration::from_secs(300),
    );
    Some(check(&out, "python3 as an unprivileged user"))
}

/// An empty database file (a valid empty database) with mode `mode`, made before the
/// extension sees it.
fn database_with_mode(dir: &TempDir, mode: u32) {
    let db = dir.join("app.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn spool_files_are_no_wider_than_the_database_under_umask_022() {
    let dir = TempDir::new("hostile-modes");
    database_with_mode(&dir, 0o600);
    let text = run_workload(&dir);
    assert_eq!(line(&text, "rows "), "21", "{text}");
    assert!(text.contains("synced"), "{text}");
    let spool = dir.join("app.db-replica");
    let mut entries = walk(&spool);
    entries.push((spool.clone(), std::fs::symlink_metadata(&spool).unwrap()));
    let mut segments = Vec::new();
    for (path, m) in &entries {
        let mode = m.mode() & 0o7777;
        let limit = if m.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(
            mode & !limit,
            0,
            "{} has mode {mode:o}, wider than {limit:o}",
            path.display()
        );
        if path.extension().is_some_and(|e| e == "seg") {
            segments.push(path.clone());
        }
    }
    let names: Vec<String> = entries
        .iter()
        .map(|(p, _)| p.strip_prefix(&spool).unwrap().display().to_string())
        .collect();
    for expected in ["state", "lock", "seg", "pages.crc"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    assert!(!segments.is_empty(), "no segment in {names:?}");
    match cat_as_nobody(&segments[0]) {
        None => {
            println!("NOTICE: neither runuser nor setpriv exists; the read as nobody is not tried")
        }
        Some(out) => {
            assert!(
                !out.status.success(),
                "nobody read {}",
                segments[0].display()
            );
            assert!(
                stderr(&out).contains("Permission denied"),
                "{}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn a_symlinked_spool_directory_is_refused() {
    let dir = TempDir::new("hostile-symlink-dir");
    let elsewhere = dir.join("attackers");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("app.db-replica")).unwrap();
    let text = run_workload(&dir);
    assert_eq!(line(&text, "rows "), "21", "{text}");
    assert_eq!(line(&text, "status "), "error", "{text}");
    let err = line(&text, "last_error ");
    assert!(
        err.contains(&dir.join("app.db-replica").display().to_string()) && err.contains("symlink"),
        "{text}"
    );
    let written: Vec<_> = walk(&elsewhere).into_iter().map(|(p, _)| p).collect();
    assert!(
        written.is_empty(),
        "written into the symlink's target: {written:?}"
    );
}

#[test]
fn a_planted_lock_symlink_does_not_truncate_its_target() {
    let dir = TempDir::new("hostile-lock-link");
    let victim = dir.join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    let spool = dir.join("app.db-replica");
    std::fs::create_dir(&spool).unwrap();
    std::os::unix::fs::symlink(&victim, spool.join("lock")).unwrap();
    let text = run_workload(&dir);
    assert_eq!(line(&text, "rows "), "21", "{text}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n", "{text}");
    assert_eq!(line(&text, "status "), "error", "{text}");
    let err = line(&text, "last_error ");
    assert!(
        err.contains(&spool.join("lock").display().to_string()) && err.contains("symlink"),
        "{text}"
    );
}

#[test]
fn a_spool_owned_by_another_user_is_refused() {
    let dir = TempDir::new("hostile-foreign-spool");
    let spool = dir.join("app.db-replica");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(
        "chown",
        &["65534:65534", spool.to_str().unwrap()],
        dir.path(),
        &[],
        "",
    );
    check(&out, "chown");
    let text = run_workload(&dir);
    assert_eq!(line(&text, "rows "), "21", "{text}");
    assert_eq!(line(&text, "status "), "error", "{text}");
    let err = line(&text, "last_error ");
    assert!(
        err.contains(&spool.display().to_string()) && err.contains("uid 65534"),
        "{text}"
    );
    let written: Vec<_> = walk(&spool).into_iter().map(|(p, _)| p).collect();
    assert!(
        written.is_empty(),
        "written into another user's spool: {written:?}"
    );
}

/// Makes `app.db` with 20 rows in journal mode `journal` (`delete` or `wal`), without the
/// extension; it is closed (a WAL database's `-wal` and `-shm` are gone) when this returns.
fn database_with_rows(dir: &TempDir, journal: &str) {
    let script = r#"
import os, sqlite3
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=" + os.environ["JOURNAL"])
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
for i in range(20):
    c.execute("INSERT INTO t VALUES (?, ?)", (i, "row-%d" % i))
c.close()
"#;
    check(
        &python(script, dir.path(), &[("JOURNAL", journal)]),
        "making app.db",
    );
}

/// Opens `$DB_URI` with the extension loaded (inserting a row first when `$WRITE` is set),
/// prints its rows, its `replica_status()` state and error, and what `replica_sync` says.
const READ_AND_ASK: &str = r#"
c = sqlite3.connect(os.environ["DB_URI"], uri=True, isolation_level=None)
if os.environ.get("WRITE"):
    c.execute("INSERT INTO t VALUES (100, 'written while not replicated')")
print("rows", c.execute("SELECT count(*) FROM t").fetchone()[0])
row = c.execute("SELECT state, last_error FROM replica_status() WHERE name = 'app.db'").fetchone()
print("status", row[0] if row else None)
print("last_error", row[1] if row else None)
try:
    c.execute("SELECT replica_sync(2000)").fetchone()
    print("sync_error none")
except sqlite3.Error as e:
    print("sync_error", e)
"#;

/// `READ_AND_ASK` on `uri` in `dir` (unprivileged when `unprivileged`), with a replica
/// configured; `None` when it cannot run unprivileged here.
fn read_and_ask(dir: &TempDir, uri: &str, write: bool, unprivileged: bool) -> Option<String> {
    let url = format!("file://{}", dir.join("replicas").display());
    let mut env = vec![("REPLICA_URL", url.as_str()), ("DB_URI", uri)];
    if write {
        env.push(("WRITE", "1"));
    }
    if unprivileged {
        python_loaded_unprivileged(dir, READ_AND_ASK, &env)
    } else {
        Some(check(
            &python_loaded(READ_AND_ASK, dir.path(), &env),
            "read_and_ask",
        ))
    }
}

/// The state is `state`, and both the status and `replica_sync` say `why`.
fn says_why(text: &str, state: &str, why: &str) {
    assert_eq!(line(text, "status "), state, "{text}");
    assert!(line(text, "last_error ").contains(why), "{text}");
    assert!(line(text, "sync_error ").contains(why), "{text}");
}

#[test]
fn a_database_in_a_read_only_directory_is_read_and_says_why_it_is_not_replicated() {
    let dir = TempDir::new("readonly-dir");
    database_with_rows(&dir, "delete");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let text = read_and_ask(&dir, "app.db", false, true);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(text) = text else { return };
    assert_eq!(line(&text, "rows "), "20", "{text}");
    let why = format!(
        "not replicating: directory {} is not writable",
        dir.path().display()
    );
    says_why(&text, "not replicating", &why);
    assert!(!dir.join("app.db-replica").exists(), "{text}");
}

#[test]
fn a_database_opened_with_mode_ro_is_read_and_not_replicated() {
    let dir = TempDir::new("readonly-mode-ro");
    database_with_rows(&dir, "wal");
    let text = read_and_ask(&dir, "file:app.db?mode=ro", false, false).unwrap();
    assert_eq!(line(&text, "rows "), "20", "{text}");
    says_why(
        &text,
        "not replicating",
        "not replicating: opened read-only (mode=ro)",
    );
    // It took no spool and shipped nothing.
    assert!(!dir.join("app.db-replica").exists(), "{text}");
    assert!(!dir.join("replicas").exists(), "{text}");
}

#[test]
fn a_database_opened_immutable_is_read_and_not_replicated() {
    let dir = TempDir::new("readonly-immutable");
    database_with_rows(&dir, "wal");
    let text = read_and_ask(&dir, "file:app.db?immutable=1", false, false).unwrap();
    assert_eq!(line(&text, "rows "), "20", "{text}");
    says_why(
        &text,
        "not replicating",
        "not replicating: opened with immutable=1",
    );
    assert!(!dir.join("app.db-replica").exists(), "{text}");
    assert!(!dir.join("replicas").exists(), "{text}");
}

#[test]
fn an_unwritable_spool_directory_leaves_the_database_working_unreplicated() {
    let dir = TempDir::new("readonly-spool");
    database_with_rows(&dir, "wal");
    // A spool as an earlier run left it, then made read-only.
    let spool = dir.join("app.db-replica");
    std::fs::create_dir_all(spool.join("seg")).unwrap();
    std::fs::set_permissions(spool.join("seg"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o555)).unwrap();
    let Some(text) = read_and_ask(&dir, "app.db", true, true) else {
        return;
    };
    assert_eq!(line(&text, "rows "), "21", "{text}");
    let why = format!(
        "not replicating: spool directory {} is not writable",
        spool.display()
    );
    says_why(&text, "error", &why);
    assert!(
        line(&text, "last_error ").contains("Permission denied"),
        "{text}"
    );
    assert_eq!(walk(&spool).len(), 1, "{text}");
}

#[test]
fn a_spool_directory_swapped_for_a_symlink_after_it_was_opened_gets_nothing() {
    let dir = TempDir::new("hostile-swap");
    let attackers = dir.join("attackers");
    std::fs::create_dir(&attackers).unwrap();
    std::fs::set_permissions(&attackers, std::fs::Permissions::from_mode(0o777)).unwrap();
    // The spool is open (the connection registered the database) before anything is
    // spooled; then someone who can write the directory swaps it for a symlink.
    let script = r#"
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
os.rename("app.db-replica", "app.db-replica.moved")
os.symlink(os.environ["ATTACKERS"], "app.db-replica")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
for i in range(20):
    c.execute("INSERT INTO t VALUES (?, ?)", (i, "secret-%d" % i))
c.execute("SELECT replica_sync(20000)").fetchone()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.execute("INSERT INTO t VALUES (100, 'after the checkpoint')")
c.execute("SELECT replica_sync(20000)").fetchone()
print("rows", c.execute("SELECT count(*) FROM t").fetchone()[0])
row = c.execute("SELECT state, last_error FROM replica_status() WHERE name = 'app.db'").fetchone()
print("status", row[0])
print("last_error", row[1])
"#;
    let url = format!("file://{}", dir.join("replicas").display());
    let attackers_s = attackers.to_str().unwrap();
    let out = python_loaded(
        script,
        dir.path(),
        &[("REPLICA_URL", &url), ("ATTACKERS", attackers_s)],
    );
    let text = check(&out, "swap");
    assert_eq!(line(&text, "rows "), "21", "{text}");
    assert_eq!(line(&text, "status "), "up to date", "{text}");
    let written: Vec<_> = walk(&attackers).into_iter().map(|(p, _)| p).collect();
    assert!(
        written.is_empty(),
        "written into the directory swapped in: {written:?}"
    );
    // What was spooled went where the spool was checked and held.
    assert!(dir.join("app.db-replica.moved/state").exists(), "{text}");
    let restored = dir.join("restored.db");
    common::restores::restore(dir.path(), &format!("{url}/app.db"), &restored).unwrap();
    assert!(dump(&restored).contains("after the checkpoint"));
}

#[test]
fn files_an_older_build_left_wide_in_the_spool_are_narrowed() {
    let dir = TempDir::new("hostile-old-modes");
    database_with_mode(&dir, 0o600);
    let text = run_workload(&dir);
    assert!(text.contains("synced"), "{text}");
    // As a build that created them under umask 022 left them.
    let spool = dir.join("app.db-replica");
    for (path, m) in walk(&spool) {
        let mode = if m.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let url = format!("file://{}", dir.join("replicas").display());
    let again = r#"
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("INSERT INTO t VALUES (200, 'a later run')")
c.execute("SELECT replica_sync(20000)").fetchone()
print("rows", c.execute("SELECT count(*) FROM t").fetchone()[0])
"#;
    let text = check(
        &python_loaded(again, dir.path(), &[("REPLICA_URL", &url)]),
        "again",
    );
    assert_eq!(line(&text, "rows "), "22", "{text}");
    for (path, m) in walk(&spool) {
        let mode = m.mode() & 0o7777;
        let limit = if m.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(
            mode & !limit,
            0,
            "{} has mode {mode:o}, wider than {limit:o}",
            path.display()
        );
    }
}
