//! `replica_restore` tried as an attacker (or a careless caller) would, through the loaded
//! extension in Debian's python3: overwriting the live database by another spelling, its
//! `-wal`/`-shm`/`-journal` or its spool, a file that is not a database, a database another
//! process has open; a symlink planted where the temporary file used to go; an object whose
//! name says its first txid is after its last; a replica URL whose listing holds two
//! databases. Each must be refused with an SQL error naming why, and leave every file as it
//! was.

mod common;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::restores::*;
use common::*;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// Python helpers after `PY_LOAD`: `attempt(target, src, options)` runs
/// `replica_restore(src, target, NULL, options)` and prints `restored <target> <txid>` or
/// `refused <target> <error>` (the target as given, one line).
const PY_ATTEMPT: &str = r#"
def attempt(target, src, options="overwrite"):
    try:
        r = boot.execute("SELECT replica_restore(?, ?, NULL, ?)", (src, target, options)).fetchone()[0]
        print("restored", target, r)
    except sqlite3.Error as e:
        print("refused", target, str(e).replace("\n", " "))
"#;

/// The line `attempt` printed for `target`.
fn outcome<'a>(text: &'a str, target: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l.strip_prefix("restored ")
                .or_else(|| l.strip_prefix("refused "))
                .is_some_and(|rest| rest.starts_with(&format!("{target} ")))
        })
        .unwrap_or_else(|| panic!("no outcome for {target}:\n{text}"))
}

/// Asserts that restoring over `target` was refused with an error containing `why`.
fn assert_refused(text: &str, target: &str, why: &str) {
    let line = outcome(text, target);
    assert!(
        line.starts_with("refused ") && line.contains(why),
        "a restore over {target} should be refused naming {why:?}: {line}\n{text}"
    );
}

/// A live, replicated `app.db` in the scratch directory with ten synced commits: the Python
/// lines that open it as `db` (after `PY_LOAD`), and the environment to run them in.
const PY_LIVE_APP: &str = r#"
db = sqlite3.connect("app.db", isolation_level=None)
for i in range(10):
    db.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 100))
    db.execute("SELECT replica_sync(10000)")
"#;

/// What the live database looks like after the attempts: its rows, whether its WAL is still
/// there, and a commit that still replicates.
const PY_LIVE_AFTER: &str = r#"
print("rows", db.execute("SELECT count(*) FROM t").fetchone()[0])
print("wal", os.path.exists("app.db-wal"))
db.execute("INSERT INTO t VALUES (100, 'after')")
print("synced", db.execute("SELECT replica_sync(10000)").fetchone()[0] > 10)
"#;

fn assert_live_database_intact(text: &str) {
    assert!(
        text.contains("rows 10\nwal True\nsynced True\n"),
        "the live database should be untouched:\n{text}"
    );
}

#[test]
fn a_restore_over_the_live_database_by_another_spelling_is_refused() {
    let dir = TempDir::new("hostile-live");
    let url = format!("file://{}", dir.join("replicas").display());
    create_schema(dir.path(), "app.db", APP_SCHEMA);
    let abs = dir.join("app.db").display().to_string();
    let text = check(
        &python_loaded(
            &format!(
                r#"{PY_ATTEMPT}{PY_LIVE_APP}
os.mkdir("sub")
os.symlink(".", "alias")
os.link("app.db", "hard.db")
for target in ["sub/../app.db", "./app.db", "alias/app.db", {abs:?}, "hard.db"]:
    attempt(target, "app.db")
{PY_LIVE_AFTER}"#
            ),
            dir.path(),
            &[("REPLICA_URL", &url)],
        ),
        "restores over the live database",
    );
    for target in ["sub/../app.db", "./app.db", "alias/app.db", &abs, "hard.db"] {
        assert_refused(
            &text,
            target,
            "is a live database replicated by this process",
        );
    }
    assert_live_database_intact(&text);
}

#[test]
fn a_restore_over_a_database_this_process_has_open_is_refused() {
    let (dir, url, _) = app_replica("hostile-open-here", 2);
    // A database this process uses but does not replicate (rollback journal, idle: it holds
    // no lock SQLite could show).
    let text = check(
        &python_loaded(
            &format!(
                r#"{PY_ATTEMPT}
plain = sqlite3.connect("plain.db", isolation_level=None)
plain.execute("CREATE TABLE p(x)")
plain.execute("INSERT INTO p VALUES (1)")
os.mkdir("sub")
attempt("sub/../plain.db", {src:?})
print("plain", plain.execute("SELECT count(*) FROM p").fetchone()[0])
"#,
                src = format!("{url}/app.db")
            ),
            dir.path(),
            &[("REPLICA_URL", "")],
        ),
        "a restore over a database open in this process",
    );
    assert_refused(&text, "sub/../plain.db", "is open in this process");
    assert!(text.contains("plain 1\n"), "{text}");
}

#[test]
fn a_restore_over_the_wal_shm_journal_or_spool_is_refused() {
    let dir = TempDir::new("hostile-sidecars");
    let url = format!("file://{}", dir.join("replicas").display());
    create_schema(dir.path(), "app.db", APP_SCHEMA);
    let text = check(
        &python_loaded(
            &format!(
                r#"{PY_ATTEMPT}{PY_LIVE_APP}
os.mkdir("sub")
spooled = sorted(f for f in os.listdir("app.db-replica") if os.path.isfile(os.path.join("app.db-replica", f)))[0]
print("spooled", spooled)
for target in ["app.db-wal", "sub/../app.db-shm", "app.db-journal",
               "app.db-replica/" + spooled, "app.db-replica/new.db", "sub/../app.db-replica/cache/new.db"]:
    attempt(target, "app.db")
{PY_LIVE_AFTER}"#
            ),
            dir.path(),
            &[("REPLICA_URL", &url)],
        ),
        "restores over the live database's side files",
    );
    for (target, suffix) in [
        ("app.db-wal", "-wal"),
        ("sub/../app.db-shm", "-shm"),
        ("app.db-journal", "-journal"),
    ] {
        assert_refused(
            &text,
            target,
            &format!("is the {suffix} file of the database"),
        );
    }
    let spooled = text
        .lines()
        .find_map(|l| l.strip_prefix("spooled "))
        .unwrap();
    for target in [
        format!("app.db-replica/{spooled}"),
        "app.db-replica/new.db".into(),
        "sub/../app.db-replica/cache/new.db".into(),
    ] {
        assert_refused(&text, &target, "is inside the replication spool of");
    }
    assert_live_database_intact(&text);
    // Another process opens it as it was.
    let o = run(
        SQLITE3,
        &["app.db", "SELECT count(*) FROM t"],
        dir.path(),
        &[],
        "",
    );
    assert_eq!(check(&o, "reopening app.db").trim(), "11");
}

#[test]
fn a_restore_over_a_non_database_file_is_refused() {
    let (dir, url, last) = app_replica("hostile-decoys", 2);
    let src = format!("{url}/app.db");
    let passwd = "root:x:0:0:root:/root:/bin/bash\n";
    std::fs::write(dir.join("passwd"), passwd).unwrap();
    std::fs::write(dir.join("short.db"), b"SQLite").unwrap();
    std::fs::create_dir(dir.join("dir.db")).unwrap();
    std::os::unix::fs::symlink(dir.join("passwd"), dir.join("link.db")).unwrap();
    check(&run("mkfifo", &["fifo.db"], dir.path(), &[], ""), "mkfifo");
    std::fs::write(dir.join("empty.db"), b"").unwrap();
    restore(dir.path(), &src, &dir.join("existing.db")).unwrap();
    let text = check(
        &python_loaded(
            &format!(
                r#"{PY_ATTEMPT}
for target in ["passwd", "short.db", "dir.db", "fifo.db", "link.db", "empty.db", "existing.db"]:
    attempt(target, {src:?})
"#
            ),
            dir.path(),
            &[("REPLICA_URL", "")],
        ),
        "restores over decoys",
    );
    assert_refused(&text, "passwd", "is neither empty nor a SQLite database");
    assert_refused(&text, "short.db", "is neither empty nor a SQLite database");
    assert_refused(&text, "dir.db", "is not a regular file");
    assert_refused(&text, "fifo.db", "is not a regular file");
    assert_refused(&text, "link.db", "is a symbolic link");
    assert_eq!(std::fs::read_to_string(dir.join("passwd")).unwrap(), passwd);
    assert_eq!(std::fs::read(dir.join("short.db")).unwrap(), b"SQLite");
    assert!(std::fs::metadata(dir.join("dir.db")).unwrap().is_dir());
    let fifo = std::fs::symlink_metadata(dir.join("fifo.db")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert!(std::fs::symlink_metadata(dir.join("link.db"))
        .unwrap()
        .file_type()
        .is_symlink());
    // An empty file and a database are what a restore may replace.
    for target in ["empty.db", "existing.db"] {
        assert_eq!(
            outcome(&text, target),
            format!("restored {target} {last}"),
            "{text}"
        );
    }
}

#[test]
fn a_restore_over_a_database_another_process_has_open_is_refused() {
    let (dir, url, last) = app_replica("hostile-open-elsewhere", 2);
    let src = format!("{url}/app.db");
    // Another process, without the extension, with uncheckpointed commits in its WAL.
    let holder_script = r#"
import sqlite3, sys
db = sqlite3.connect("theirs.db", isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE mine(x)")
for i in range(5):
    db.execute("INSERT INTO mine VALUES (?)", (i,))
print("ready", flush=True)
sys.stdin.readline()
print("rows", db.execute("SELECT count(*) FROM mine").fetchone()[0], flush=True)
db.close()
print("closed", flush=True)
"#;
    let mut holder = procs::Steered::new(
        replica_command(PYTHON3, &["-u", "-c", holder_script], dir.path(), &[])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(holder.line(), "ready\n");
    let opts = Some("overwrite");
    let env = [("REPLICA_URL", "")];
    let err = restore_in("", dir.path(), &env, &src, &dir.join("theirs.db"), opts)
        .expect_err("a restore over a database another process has open");
    assert!(
        err.contains("is a database another process has open"),
        "{err}"
    );
    holder.send("go");
    assert_eq!(holder.line(), "rows 5\n", "the other process lost its rows");
    assert_eq!(holder.line(), "closed\n");
    let (_, status) = holder.finish();
    assert!(status.success());
    // Once it has closed the database, the same restore replaces it.
    let restored = restore_in("", dir.path(), &env, &src, &dir.join("theirs.db"), opts);
    assert_eq!(restored, Ok(last));
}

#[test]
fn a_restore_does_not_follow_a_planted_temporary_symlink() {
    let (dir, url, last) = app_replica("hostile-temp-symlink", 2);
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // The name the temporary file used to have: `<target>.restoring-<pid>`.
    let setup = format!(
        "os.symlink({:?}, 'out.db.restoring-%d' % os.getpid())",
        victim.display().to_string()
    );
    let restored = restore_in(
        &setup,
        dir.path(),
        &[("REPLICA_URL", "")],
        &format!("{url}/app.db"),
        &dir.join("out.db"),
        None,
    );
    assert_eq!(restored, Ok(last));
    let victim_now = std::fs::read(&victim).unwrap();
    assert!(
        victim_now == b"precious",
        "the restore wrote through the planted symlink"
    );
    let out = std::fs::symlink_metadata(dir.join("out.db")).unwrap();
    assert!(out.file_type().is_file(), "out.db is {out:?}");
    assert!(dump(&dir.join("out.db")).contains("CREATE TABLE t"));
}

#[test]
fn a_restored_file_is_0600_or_keeps_the_mode_of_the_file_it_replaces() {
    let (dir, url, last) = app_replica("hostile-modes", 2);
    let src = format!("{url}/app.db");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let umask = "os.umask(0o022)";
    let env = [("REPLICA_URL", "")];
    let new = dir.join("new.db");
    assert_eq!(
        restore_in(umask, dir.path(), &env, &src, &new, None),
        Ok(last)
    );
    assert_eq!(format!("{:o}", mode(&new)), "600", "a new restored file");
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o640)).unwrap();
    let again = restore_in(umask, dir.path(), &env, &src, &new, Some("overwrite"));
    assert_eq!(again, Ok(last));
    assert_eq!(
        format!("{:o}", mode(&new)),
        "640",
        "a restored file replacing one"
    );
}

#[test]
fn a_reversed_txid_range_in_a_name_is_an_error_not_a_null() {
    let (dir, url, _) = app_replica("hostile-reversed", 3);
    let replica = dir.join("replicas/app.db");
    let reversed = "0000000000000005-0000000000000003.ltx";
    std::fs::copy(l0(&replica, 3), replica.join("ltx/0").join(reversed)).unwrap();
    let out = dir.join("out.db");
    let err = restore(dir.path(), &format!("{url}/app.db"), &out)
        .expect_err("a restore from a replica with a reversed name");
    assert!(
        err.contains(reversed),
        "the error should name {reversed}: {err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_listing_of_two_databases_is_refused() {
    let dir = TempDir::new("hostile-two-dbs");
    let srv = s3server::start(&dir.join("server"), "bkt");
    let env = s3env::s3_env(&srv, &s3env::s3_url(srv.port, "folder"));
    let env = s3env::as_refs(&env);
    let last = write_replica_env(dir.path(), &env, "app.db", APP_SCHEMA, 2);
    write_replica_env(dir.path(), &env, "other.db", APP_SCHEMA, 3);
    let out = dir.join("out.db");
    // The URL of the folder above both replicas.
    let folder = s3env::s3_url(srv.port, "folder");
    let err = restore_in("", dir.path(), &env, &folder, &out, None)
        .expect_err("a restore from a listing of two databases");
    assert!(
        err.contains("folder/app.db") && err.contains("folder/other.db"),
        "the error should name both prefixes: {err}"
    );
    assert!(!out.exists());
    // Each database's own URL restores it.
    let app = s3env::s3_url(srv.port, "folder/app.db");
    assert_eq!(restore_in("", dir.path(), &env, &app, &out, None), Ok(last));
}
