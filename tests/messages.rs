//! What a user sees, in real hosts (Debian's `sqlite3` and `python3` with the release
//! extension): the lines the load writes to stderr by default (one per configured database,
//! each configuration warning, or that nothing is configured, once per process however many
//! connections load it), `REPLICA_LOG=off` and `=syslog`, configuration errors caused by a
//! typo naming the key and its near miss, a boot-time restore that cannot reach its bucket
//! (failing within 20 s with the reason in the error, the log and `replica_status()`), a
//! database switched out of WAL mode (status and `replica_sync` say so; switching back
//! resumes), and the result codes of the SQL functions' errors (SQLITE_ERROR, which Python
//! raises as `OperationalError`, never SQLITE_MISUSE's `InterfaceError`; a failed restore is
//! SQLITE_CORRUPT only when the replica's content is damaged).
mod common;

use common::*;
use std::time::{Duration, Instant};

/// `sqlite3 :memory:` loading the extension (then `sql`) in `dir` with `env`.
fn cli_load(dir: &TempDir, env: &[(&str, &str)], sql: &str) -> std::process::Output {
    let script = format!(".load {}\n{sql}\n", load_path());
    run_command(
        replica_command(SQLITE3, &[":memory:"], dir.path(), env),
        &script,
        Duration::from_secs(60),
    )
}

#[test]
fn the_load_names_each_configured_database_and_warning_once_per_process() {
    let dir = TempDir::new("msg-load-lines");
    let replicas = dir.join("replicas");
    let config = format!(
        r#"access-key-id: AKIAIOSFODNN7EXAMPLE
secret-access-key: wJalrXUtnFEMI-TOPSECRET-bPxRfiCYEXAMPLEKEY
dbs:
  - path: app.db
    replica:
      url: file://{}/app
  - path: other.db
    replica:
      type: s3
      bucket: my-bucket
      path: backups/other
      endpoint: http://127.0.0.1:9
      retention: 24h
      sync-intervall: 1s
"#,
        replicas.display()
    );
    std::fs::write(dir.join("litestream.yml"), config).unwrap();
    // A pool: the extension loaded into several connections of one process.
    let script = r#"
import os, sqlite3
for i in range(3):
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(os.environ["REPLICA_TEST_LIB"])
print("loaded")
"#;
    let o = python(script, dir.path(), &[("REPLICA_CONFIG", "litestream.yml")]);
    let out = check(&o, "python3 loading into three connections");
    assert!(out.contains("loaded"), "{out}");
    let err = stderr(&o);
    let app = format!("{}/app.db", dir.path().display());
    let app_lines = lines_with(&err, &app);
    assert_eq!(app_lines.len(), 1, "one line for app.db:\n{err}");
    assert!(
        app_lines[0].contains(&format!("file://{}/app", replicas.display())),
        "{err}"
    );
    let other_lines = lines_with(&err, "other.db");
    assert_eq!(other_lines.len(), 1, "one line for other.db:\n{err}");
    assert!(
        other_lines[0].contains("s3://my-bucket/backups/other"),
        "{err}"
    );
    let unused = lines_with(&err, "`retention` is accepted but not used");
    assert_eq!(unused.len(), 1, "one warning for retention:\n{err}");
    let typo = lines_with(&err, "sync-intervall");
    assert_eq!(typo.len(), 1, "one warning for the typo:\n{err}");
    assert!(typo[0].contains("did you mean `sync-interval`?"), "{err}");
    assert!(
        !err.contains("TOPSECRET") && !err.contains("AKIAIOSFODNN7EXAMPLE"),
        "a secret on stderr:\n{err}"
    );
    assert!(
        err.lines().count() <= 6,
        "a few lines per load, not:\n{err}"
    );
}

#[test]
fn the_load_names_replica_url_once() {
    let dir = TempDir::new("msg-load-url");
    let url = format!("file://{}/replicas", dir.path().display());
    let o = cli_load(
        &dir,
        &[("REPLICA_URL", &url)],
        &format!(".load {}\n.load {}\nSELECT 1;", load_path(), load_path()),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let lines = lines_with(&err, &url);
    assert_eq!(lines.len(), 1, "one line for REPLICA_URL:\n{err}");
    assert!(lines[0].contains("REPLICA_URL"), "{err}");
    assert!(!err.contains("nothing is configured"), "{err}");
}

#[test]
fn nothing_configured_says_no_database_will_be_replicated() {
    let dir = TempDir::new("msg-nothing");
    let o = cli_load(&dir, &[], "SELECT 1;");
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(
        lines_with(
            &err,
            "nothing is configured: no database will be replicated"
        )
        .len(),
        1,
        "stderr:\n{err}"
    );
}

#[test]
fn a_top_level_typo_is_a_warning_on_stderr() {
    let dir = TempDir::new("msg-top-typo");
    std::fs::write(
        dir.join("litestream.yml"),
        "dbz:\n  - path: app.db\n    replica:\n      url: file:///tmp/nowhere\n",
    )
    .unwrap();
    let o = cli_load(&dir, &[("REPLICA_CONFIG", "litestream.yml")], "SELECT 1;");
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let typo = lines_with(&err, "`dbz`");
    assert_eq!(typo.len(), 1, "stderr:\n{err}");
    assert!(typo[0].contains("did you mean `dbs`?"), "{err}");
    assert!(
        err.contains("nothing is configured: no database will be replicated"),
        "{err}"
    );
}

#[test]
fn replica_log_off_silences_what_stderr_shows_by_default() {
    let dir = TempDir::new("msg-off");
    let o = cli_load(&dir, &[], "SELECT 1;");
    assert!(o.status.success());
    assert!(
        stderr(&o).starts_with("libreplica: "),
        "nothing on stderr by default:\n{}",
        stderr(&o)
    );
    let o = cli_load(&dir, &[("REPLICA_LOG", "off")], "SELECT 1;");
    assert!(o.status.success());
    assert_eq!(stderr(&o), "", "REPLICA_LOG=off wrote to stderr");
}

#[test]
fn replica_log_syslog_leaves_stderr_to_the_host() {
    let dir = TempDir::new("msg-syslog");
    let o = cli_load(&dir, &[("REPLICA_LOG", "syslog")], "SELECT 1;");
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    if std::path::Path::new("/dev/log").exists() {
        assert_eq!(err, "", "REPLICA_LOG=syslog wrote to stderr");
    } else {
        // No syslog here: said once, and the lines go to stderr rather than nowhere.
        assert_eq!(lines_with(&err, "/dev/log").len(), 1, "{err}");
        assert!(err.contains("nothing is configured"), "{err}");
    }
}

/// A config file that a typo makes invalid: the load fails naming the typo and its near miss.
fn load_fails_naming(config: &str, typo: &str, meant: &str) {
    let dir = TempDir::new("msg-hard-typo");
    std::fs::write(dir.join("litestream.yml"), config).unwrap();
    let o = cli_load(&dir, &[("REPLICA_CONFIG", "litestream.yml")], "SELECT 1;");
    let err = stderr(&o);
    assert!(!o.status.success(), "the load succeeded:\n{err}");
    let line = lines_with(&err, "libreplica");
    assert!(
        line.iter()
            .any(|l| l.contains(&format!("`{typo}`"))
                && l.contains(&format!("did you mean `{meant}`?"))),
        "the error does not name `{typo}` and suggest `{meant}`:\n{err}"
    );
}

#[test]
fn a_misspelled_replica_key_fails_the_load_naming_it() {
    load_fails_naming(
        "dbs:\n  - path: app.db\n    replicaz:\n      url: file:///tmp/nowhere\n",
        "replicaz",
        "replica",
    );
}

#[test]
fn a_misspelled_access_key_id_fails_the_load_naming_it() {
    load_fails_naming(
        "dbs:\n  - path: app.db\n    replica:\n      url: s3://my-bucket/app\n      acess-key-id: AKIAIOSFODNN7EXAMPLE\n      secret-access-key: wJalrXUtnFEMI\n",
        "acess-key-id",
        "access-key-id",
    );
}

/// A server on 127.0.0.1 that accepts connections and never answers, in the script.
const PY_SILENT_SERVER: &str = r#"
import socket, threading
silent = socket.socket()
silent.bind(("127.0.0.1", 0))
silent.listen(64)
held = []
def accept_forever():
    while True:
        conn, _ = silent.accept()
        held.append(conn)
threading.Thread(target=accept_forever, daemon=True).start()
SILENT_PORT = silent.getsockname()[1]
"#;

#[test]
fn a_boot_restore_from_a_silent_endpoint_fails_within_20_s_saying_why() {
    let dir = TempDir::new("msg-boot-restore");
    let script = format!(
        r#"{PY_SILENT_SERVER}
import os, sqlite3, time
os.environ["REPLICA_URL"] = f"s3://my-bucket/dbs?endpoint=http://127.0.0.1:{{SILENT_PORT}}"
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])
t0 = time.monotonic()
try:
    sqlite3.connect("app.db").execute("SELECT 1")
    print("OPENED")
except sqlite3.Error as e:
    print("ERROR", type(e).__name__, "|", e)
print("ELAPSED", round(time.monotonic() - t0, 1))
print("EXISTS", os.path.exists("app.db"))
for row in boot.execute("SELECT path, state, last_error FROM replica_status()"):
    print("STATUS", "|".join(str(v) for v in row))
"#
    );
    let lib = load_path();
    let started = Instant::now();
    let o = run_command(
        replica_command(
            PYTHON3,
            &["-"],
            dir.path(),
            &[
                ("REPLICA_TEST_LIB", &lib),
                ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-TOPSECRET"),
            ],
        ),
        &script,
        Duration::from_secs(45),
    );
    let took = started.elapsed();
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}\n{err}");
    let error = lines_with(&out, "ERROR ");
    assert_eq!(error.len(), 1, "the open did not fail:\n{out}\n{err}");
    let elapsed: f64 = lines_with(&out, "ELAPSED ")[0][8..].parse().unwrap();
    assert!(
        elapsed < 20.0,
        "the open failed after {elapsed} s (took {took:?}):\n{out}"
    );
    // The reason, not a bare "unable to open database file".
    let reason = |text: &str| {
        text.contains("app.db")
            && text.contains("s3://my-bucket/dbs/app.db")
            && (text.contains("timed out") || text.contains("timeout"))
    };
    assert!(error[0].contains("OperationalError"), "{out}");
    assert!(reason(error[0]), "the error does not say why:\n{out}");
    assert!(lines_with(&out, "EXISTS False").len() == 1, "{out}");
    let status = lines_with(&out, "STATUS ");
    assert!(
        status.iter().any(|l| l.contains("|error|") && reason(l)),
        "replica_status() does not say why:\n{out}"
    );
    assert!(
        lines_with(&err, "libreplica error")
            .iter()
            .any(|l| reason(l)),
        "the log does not say why:\n{err}"
    );
    assert!(!out.contains("TOPSECRET") && !err.contains("TOPSECRET"));
}

#[test]
fn a_database_switched_out_of_wal_mode_says_it_is_not_replicating() {
    let open = r#"
c = sqlite3.connect("app.db", isolation_level=None)
"#;
    switched_out_of_wal_mode("msg-journal-mode", open, python_loaded);
}

/// The same through a connection opened before the load (how frameworks load extensions),
/// followed through SQLite's hooks rather than the VFS.
#[test]
fn an_adopted_database_switched_out_of_wal_mode_says_it_is_not_replicating() {
    let open = r#"
import os, sqlite3
c = sqlite3.connect("app.db", isolation_level=None)
c.enable_load_extension(True)
c.load_extension(os.environ["REPLICA_TEST_LIB"])
"#;
    switched_out_of_wal_mode("msg-journal-mode-adopted", open, python);
}

fn switched_out_of_wal_mode(
    name: &str,
    open: &str,
    run: fn(&str, &std::path::Path, &[(&str, &str)]) -> std::process::Output,
) {
    let dir = TempDir::new(name);
    let url = format!("file://{}/replicas", dir.path().display());
    let body = r#"
c.execute("CREATE TABLE t(x)")
c.execute("INSERT INTO t VALUES (1)")
print("SYNC1", c.execute("SELECT replica_sync(20000)").fetchone()[0])
print("MODE", c.execute("PRAGMA journal_mode=DELETE").fetchone()[0])
c.execute("INSERT INTO t VALUES (2)")
print("STATE", c.execute("SELECT state FROM replica_status()").fetchone()[0])
try:
    print("SYNC2 returned", c.execute("SELECT replica_sync(2000)").fetchone()[0])
except sqlite3.Error as e:
    print("SYNC2", type(e).__name__, "|", e)
print("MODE", c.execute("PRAGMA journal_mode=TRUNCATE").fetchone()[0])
c.execute("INSERT INTO t VALUES (3)")
print("STATE", c.execute("SELECT state FROM replica_status()").fetchone()[0])
print("MODE", c.execute("PRAGMA journal_mode=WAL").fetchone()[0])
c.execute("INSERT INTO t VALUES (4)")
print("SYNC3", c.execute("SELECT replica_sync(20000)").fetchone()[0])
print("STATE", c.execute("SELECT state FROM replica_status()").fetchone()[0])
c.execute("SELECT replica_restore('app.db', 'restored.db')")
r = sqlite3.connect("restored.db")
print("RESTORED", [x for (x,) in r.execute("SELECT x FROM t ORDER BY x")])
"#;
    let o = run(
        &format!("{open}{body}"),
        dir.path(),
        &[("REPLICA_URL", &url)],
    );
    let out = check(&o, "python3 switching journal modes");
    let err = stderr(&o);
    let modes = lines_with(&out, "MODE ");
    assert_eq!(
        modes,
        ["MODE delete", "MODE truncate", "MODE wal"],
        "{out}\n{err}"
    );
    let states = lines_with(&out, "STATE ");
    assert_eq!(
        states[0], "STATE not replicating: journal_mode=delete",
        "{out}\n{err}"
    );
    let sync2 = lines_with(&out, "SYNC2");
    assert!(
        sync2[0].starts_with("SYNC2 OperationalError |")
            && sync2[0].contains("not replicating: journal_mode=delete"),
        "replica_sync did not fail saying so:\n{out}\n{err}"
    );
    assert_eq!(
        states[1], "STATE not replicating: journal_mode is not WAL",
        "{out}\n{err}"
    );
    // Back in WAL mode: replicating again, with what was missed.
    assert_eq!(states[2], "STATE up to date", "{out}\n{err}");
    assert!(out.contains("RESTORED [1, 2, 3, 4]"), "{out}\n{err}");
}

#[test]
fn sql_function_errors_are_sqlite_error_not_misuse() {
    let dir = TempDir::new("msg-error-codes");
    let url = format!("file://{}/replicas", dir.path().display());
    let body = r#"
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("CREATE TABLE t(x)")
plain = sqlite3.connect("file:plain.db?replica=off", uri=True)
calls = [
    (c, "SELECT replica_sync('x')"),
    (c, "SELECT replica_sync(-1)"),
    (c, "SELECT replica_sync(1, 'any', 3)"),
    (c, "SELECT replica_sync(1, 'most')"),
    (plain, "SELECT replica_sync()"),
    (c, "SELECT replica_snapshot('nope')"),
    (plain, "SELECT replica_snapshot()"),
    (c, "SELECT replica_restore('app.db')"),
    (c, "SELECT replica_restore(NULL, 'a.db')"),
    (c, "SELECT replica_restore('app.db', '')"),
    (c, "SELECT replica_restore('app.db', 'a.db', 'last tuesday')"),
    (c, "SELECT replica_restore('app.db', 'a.db', NULL, 'fast')"),
    (c, "SELECT replica_restore('app.db', 'app.db')"),
    (c, "SELECT replica_sync_mode('sometimes')"),
    (c, "SELECT replica_verify('nope')"),
]
for conn, sql in calls:
    try:
        conn.execute(sql).fetchall()
        print("OK", sql)
    except sqlite3.Error as e:
        print("ERR", type(e).__name__, e.sqlite_errorname, "|", sql, "|", e)
"#;
    let o = python_loaded(body, dir.path(), &[("REPLICA_URL", &url)]);
    let out = check(&o, "python3 calling the SQL functions wrongly");
    let errs = lines_with(&out, "ERR ");
    assert_eq!(errs.len(), 15, "every call fails:\n{out}");
    for line in errs {
        assert!(
            line.starts_with("ERR OperationalError SQLITE_ERROR |"),
            "not SQLITE_ERROR: {line}\n{out}"
        );
    }
}

/// A restore that fails because the replica holds nothing for what was asked or cannot be
/// reached is SQLITE_ERROR (Python's `OperationalError`); only a replica whose content is
/// damaged is SQLITE_CORRUPT (`DatabaseError`, "database disk image is malformed" in other
/// hosts), which tells the user to look at the bucket rather than at the call.
#[test]
fn restore_errors_are_sqlite_corrupt_only_for_a_damaged_replica() {
    let dir = TempDir::new("msg-restore-codes");
    let url = format!("file://{}/replicas", dir.path().display());
    let body = r#"
import glob, os, shutil
here = os.getcwd()
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("CREATE TABLE t(x)")
c.executemany("INSERT INTO t VALUES (?)", [(os.urandom(100),) for _ in range(50)])
print("SYNC", c.execute("SELECT replica_sync(20000)").fetchone()[0])
os.makedirs("empty")
shutil.copytree("replicas/app.db", "damaged")
# The snapshot: always there (the commits above may all be in it, with no level-0 file).
ltx = sorted(glob.glob("damaged/ltx/9/*.ltx"))[-1]
b = bytearray(open(ltx, "rb").read())
b[len(b) // 2] ^= 0xFF
open(ltx, "wb").write(bytes(b))
calls = [
    ("past-the-end", "SELECT replica_restore('app.db', 'a.db', '999')"),
    ("empty", f"SELECT replica_restore('file://{here}/empty', 'b.db')"),
    ("unreachable", "SELECT replica_restore('s3://bkt/app.db?endpoint=http://127.0.0.1:9', 'c.db')"),
    ("damaged", f"SELECT replica_restore('file://{here}/damaged', 'd.db')"),
]
for name, sql in calls:
    try:
        c.execute(sql).fetchall()
        print("OK", name)
    except sqlite3.Error as e:
        print("ERR", name, type(e).__name__, e.sqlite_errorname, "|", e)
"#;
    let o = python_loaded(
        body,
        dir.path(),
        &[
            ("REPLICA_URL", &url),
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-EXAMPLE"),
        ],
    );
    let out = check(
        &o,
        "python3 restoring from replicas that cannot be restored",
    );
    let want = [
        (
            "past-the-end",
            "OperationalError SQLITE_ERROR",
            "past the end",
        ),
        (
            "empty",
            "OperationalError SQLITE_ERROR",
            "holds no LTX files",
        ),
        (
            "unreachable",
            "OperationalError SQLITE_ERROR",
            "GET s3://bkt/",
        ),
        // A flipped byte is a bad checksum or a page that does not decompress, as it falls:
        // either way the message names the snapshot file.
        (
            "damaged",
            "DatabaseError SQLITE_CORRUPT",
            "0009/0000000000000001-",
        ),
    ];
    for (name, class, says) in want {
        let line = lines_with(&out, &format!("ERR {name} "));
        assert!(
            line.len() == 1 && line[0].contains(class) && line[0].contains(says),
            "{name}: want {class} saying {says:?}:\n{out}"
        );
    }
}
