//! Other local users against the spool (`<db>-replica/`): reading pages they may not read
//! from its files, planting symlinks so the spool writes where they choose, or handing it a
//! directory of their own. Each runs Debian's python3 with the release build loaded, and
//! runs as root (as CI does) where it needs another user.
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

/// Runs `cat path` as user nobody; `None` when neither `runuser` nor `setpriv` exists.
fn cat_as_nobody(path: &Path) -> Option<std::process::Output> {
    let p = path.to_str().unwrap();
    let tries: [(&str, Vec<&str>); 2] = [
        ("/usr/sbin/runuser", vec!["-u", "nobody", "--", "cat", p]),
        (
            "/usr/bin/setpriv",
            vec!["--reuid=65534", "--regid=65534", "--clear-groups", "cat", p],
        ),
    ];
    tries
        .iter()
        .find(|(tool, _)| Path::new(tool).exists())
        .map(|(tool, args)| run(tool, args, Path::new("/"), &[], ""))
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
