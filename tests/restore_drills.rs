//! Restore through the loaded extension in Debian's python3: refusing corrupt replicas
//! (naming the object, leaving no file), failing cleanly when the output cannot be written, `replica_restore_points`, `replica_verify` drills,
//! and the boot-time restore of a configured database whose file is missing.

mod common;

use common::restores::*;
use common::*;
use std::path::{Path, PathBuf};

#[test]
fn corrupt_replicas_are_refused_naming_the_object_and_leave_no_file() {
    let (dir, url, last) = app_replica("restore-corrupt", 6);
    // Another database with its own schema and more pages: its files have the same names.
    let other_last = write_replica(
        dir.path(),
        &url,
        "other.db",
        "CREATE TABLE t(x PRIMARY KEY, y) WITHOUT ROWID",
        6,
    );
    assert_eq!(last, other_last, "both replicas should have the same txids");
    let good = dir.join("replicas/app.db");
    let other = dir.join("replicas/other.db");
    assert_eq!(
        restore(
            dir.path(),
            &format!("file://{}", good.display()),
            &dir.join("whole.db")
        ),
        Ok(last)
    );

    // The file holding the schema's text: the first snapshot, or the level-0 file after it
    // when the snapshot was taken before the schema was committed (the database exists,
    // in WAL mode, a moment earlier).
    let schema_file = ["ltx/9", "ltx/0"]
        .iter()
        .flat_map(|level| {
            let mut files: Vec<PathBuf> = std::fs::read_dir(good.join(level))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files
        })
        .find(|f| {
            std::fs::read(f)
                .unwrap()
                .windows(12)
                .any(|w| w == b"CREATE TABLE")
        })
        .expect("a file with the schema");
    let schema_rel = schema_file.strip_prefix(&good).unwrap().to_path_buf();
    let mid = last / 2 + 1;
    type Corrupt = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Corrupt, String)> = vec![
        (
            "a truncated object",
            Box::new(move |r: &Path| {
                let f = l0(r, mid);
                let len = std::fs::metadata(&f).unwrap().len();
                let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
                file.set_len(len - 30).unwrap();
            }),
            format!("{mid:016x}-{mid:016x}.ltx"),
        ),
        (
            "a flipped byte in a page",
            Box::new(move |r: &Path| {
                let f = r.join(&schema_rel);
                let mut b = std::fs::read(&f).unwrap();
                // A byte of page data stored as an LZ4 literal (the schema's text): flipping
                // a compressed token instead may decode to the same page, which is no
                // corruption at all (the checksums cover the decompressed pages).
                let at = b.windows(12).position(|w| w == b"CREATE TABLE").unwrap() + 7;
                b[at] ^= 0x10;
                std::fs::write(&f, b).unwrap();
            }),
            schema_file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string(),
        ),
        (
            "a missing level-0 file in the middle",
            Box::new(move |r: &Path| std::fs::remove_file(l0(r, mid)).unwrap()),
            format!("{mid:016x}"),
        ),
        (
            "a file from another database",
            Box::new({
                let other = other.clone();
                move |r: &Path| {
                    std::fs::copy(l0(&other, mid), l0(r, mid))
                        .map(|_| ())
                        .unwrap()
                }
            }),
            format!("{mid:016x}-{mid:016x}.ltx"),
        ),
    ];
    for (i, (what, corrupt, names)) in cases.into_iter().enumerate() {
        let replica = dir.join(&format!("case{i}/replica"));
        copy_dir(&good, &replica);
        corrupt(&replica);
        let out_dir = dir.join(&format!("case{i}/out"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let err = restore(
            dir.path(),
            &format!("file://{}", replica.display()),
            &out_dir.join("r.db"),
        )
        .expect_err(what);
        eprintln!("{what}: {err}");
        assert!(
            err.contains(&names),
            "{what}: the error should name {names}: {err}"
        );
        let left = files_in(&out_dir);
        assert!(left.is_empty(), "{what}: left behind {left:?}");
    }
}

#[test]
fn a_restore_that_cannot_write_fails_naming_why_and_leaves_no_file() {
    let (dir, url, _) = app_replica("restore-nospace", 8);
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // A file-size limit stands in for a full disk: every write past 16 KiB fails (EFBIG),
    // as writes fail with ENOSPC, with the signal that would kill the process ignored.
    let err = restore_after(
        r#"
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
"#,
        dir.path(),
        &format!("{url}/app.db"),
        &out_dir.join("r.db"),
    )
    .expect_err("a restore under a file-size limit");
    assert!(
        err.contains("writing the restored database: File too large"),
        "the restore should fail naming the write: {err}"
    );
    let left = files_in(&out_dir);
    assert!(left.is_empty(), "left behind {left:?}");
    // The same restore without the limit succeeds: the limit was the only obstacle.
    restore(dir.path(), &format!("{url}/app.db"), &out_dir.join("r.db")).unwrap();
}

#[test]
fn restore_points_list_every_file_and_a_drill_verifies_the_replica() {
    let dir = TempDir::new("restore-points");
    let url = format!("file://{}", dir.join("replicas").display());
    create_schema(dir.path(), "app.db", APP_SCHEMA);
    let o = python_loaded(
        r#"
import time
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("SELECT replica_sync(10000)")
for b in range(3):
    db.execute("INSERT INTO t VALUES (?, ?)", (b, "x" * 5000))
    db.execute("SELECT replica_sync(10000)")
for r in db.execute("SELECT name, level, min_txid, max_txid, timestamp, size, key FROM replica_restore_points()"):
    print("point", *r)
print("verify", db.execute("SELECT replica_verify()").fetchone()[0])
print("status", *db.execute("SELECT last_verify, last_verify_at IS NOT NULL, restore_files_done FROM replica_status()").fetchone())
# By name, from another connection on an in-memory database.
print("byname", boot.execute("SELECT count(*), max(max_txid) FROM replica_restore_points('app.db')").fetchone())
# A corrupted replica: the drill fails and says so in status.
import glob
newest = sorted(glob.glob(os.environ["REPLICA_DIR"] + "/ltx/0/*.ltx"))[-1]
data = bytearray(open(newest, "rb").read())
data[len(data) // 2] ^= 1
open(newest, "wb").write(bytes(data))
try:
    db.execute("SELECT replica_verify()").fetchone()
    print("verify-corrupt ok?!")
except sqlite3.Error as e:
    print("verify-corrupt error", e)
print("status-corrupt", db.execute("SELECT last_verify FROM replica_status()").fetchone()[0])
"#,
        dir.path(),
        &[
            ("REPLICA_URL", &url),
            ("REPLICA_DIR", dir.join("replicas/app.db").to_str().unwrap()),
        ],
    );
    let text = check(&o, "restore points and verify");
    let points: Vec<Vec<&str>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("point "))
        .map(|l| l.split(' ').collect())
        .collect();
    // Snapshot 1-1, then level-0 files 2..=4, oldest first.
    let ranges: Vec<(&str, &str, &str)> = points.iter().map(|p| (p[1], p[2], p[3])).collect();
    assert_eq!(
        ranges,
        vec![
            ("9", "1", "1"),
            ("0", "2", "2"),
            ("0", "3", "3"),
            ("0", "4", "4")
        ],
        "{text}"
    );
    for p in &points {
        assert_eq!(p[0], "app.db");
        assert!(
            p[4].starts_with("20") && p[4].ends_with('Z'),
            "timestamp {p:?}"
        );
        let file = dir
            .join("replicas/app.db/ltx")
            .join(p[1])
            .join(Path::new(p[6]).file_name().unwrap());
        assert_eq!(
            p[5].parse::<u64>().unwrap(),
            std::fs::metadata(&file).unwrap().len()
        );
    }
    assert!(text.contains("verify 4\n"), "{text}");
    assert!(text.contains("status ok: txid 4, checksum "), "{text}");
    assert!(text.contains("byname (4, 4)"), "{text}");
    let corrupt = text
        .lines()
        .find(|l| l.starts_with("verify-corrupt"))
        .unwrap();
    assert!(
        corrupt.starts_with("verify-corrupt error")
            && corrupt.contains("0000000000000004-0000000000000004.ltx"),
        "{text}"
    );
    assert!(text.contains("status-corrupt failed: "), "{text}");
}

#[test]
fn a_missing_configured_database_is_restored_when_opened() {
    let (dir, url, last) = app_replica("boot-restore", 3);
    // A fresh container: an empty volume, the same configuration.
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let open = |cwd: &Path, env: &[(&str, &str)]| {
        python_loaded(
            r#"
try:
    db = sqlite3.connect("app.db", isolation_level=None)
    print("rows", db.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone()[0] and db.execute("SELECT count(*) FROM t").fetchone()[0])
    db.execute("CREATE TABLE IF NOT EXISTS u(x)")
    db.execute("INSERT INTO u VALUES (1)")
    print("synced", db.execute("SELECT replica_sync(10000)").fetchone()[0])
except sqlite3.Error as e:
    print("error", e)
"#,
            cwd,
            env,
        )
    };
    let text = check(
        &open(&fresh, &[("REPLICA_URL", &url)]),
        "opening a missing database",
    );
    assert!(text.contains("rows 120\n"), "{text}");
    // It goes on from the restored state: the next txids follow the replica's.
    let synced: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("synced "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(synced > last, "{text}");

    // Another database of the same name in the same process: REPLICA_URL gives it the same
    // replica, which is not its own, so it starts empty (and does not replicate).
    let text = check(
        &python_loaded(
            r#"
os.mkdir("b")
a = sqlite3.connect("app.db")
print("a", a.execute("SELECT count(*) FROM t").fetchone()[0])
b = sqlite3.connect("b/app.db")
print("b", b.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
"#,
            &fresh,
            &[("REPLICA_URL", &url)],
        ),
        "a second app.db",
    );
    assert!(text.contains("a 120\nb 0\n"), "{text}");

    // A replica that does not exist yet: a new, empty database.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let new_url = format!("file://{}", dir.join("new-replicas").display());
    let text = check(
        &open(&empty, &[("REPLICA_URL", &new_url)]),
        "opening a new database",
    );
    assert!(text.contains("rows 0\n"), "{text}");

    // Turned off: a new empty database although the replica has data.
    let off = dir.join("off");
    std::fs::create_dir_all(&off).unwrap();
    let other_url = format!("file://{}", dir.join("replicas-copy").display());
    copy_dir(&dir.join("replicas"), &dir.join("replicas-copy"));
    let text = check(
        &open(
            &off,
            &[
                ("REPLICA_URL", &other_url),
                ("REPLICA_RESTORE_IF_MISSING", "0"),
            ],
        ),
        "opening with boot restore off",
    );
    assert!(text.contains("rows 0\n"), "{text}");

    // Turned off by the config file's `restore-if-db-not-exists: false` for this database;
    // REPLICA_RESTORE_IF_MISSING=1 wins over the file.
    for (name, env_switch, rows) in [
        ("file-off", None, "rows 0\n"),
        ("env-on", Some("1"), "rows 120\n"),
    ] {
        let cwd = dir.join(name);
        std::fs::create_dir_all(&cwd).unwrap();
        let copy = dir.join(&format!("replicas-{name}"));
        copy_dir(&dir.join("replicas"), &copy);
        std::fs::write(
            cwd.join("litestream.yml"),
            format!(
                "dbs:\n  - path: app.db\n    restore-if-db-not-exists: false\n    replica:\n      url: file://{}/app.db\n",
                copy.display()
            ),
        )
        .unwrap();
        let mut env = vec![("REPLICA_CONFIG", "litestream.yml")];
        env.extend(env_switch.map(|v| ("REPLICA_RESTORE_IF_MISSING", v)));
        let text = check(&open(&cwd, &env), name);
        assert!(text.contains(rows), "{name}: {text}");
    }

    // An unreadable replica fails the open and creates nothing.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let broken_url = format!("file://{}", dir.join("replicas-broken").display());
    copy_dir(&dir.join("replicas"), &dir.join("replicas-broken"));
    for e in std::fs::read_dir(dir.join("replicas-broken/app.db/ltx/9")).unwrap() {
        let p = e.unwrap().path();
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    }
    let text = check(
        &open(&broken, &[("REPLICA_URL", &broken_url)]),
        "opening over a broken replica",
    );
    // The open fails saying why (it was a bare "unable to open database file").
    assert!(
        text.starts_with("error ") && text.contains("restore failed:"),
        "{text}"
    );
    assert!(
        !broken.join("app.db").exists(),
        "an empty database was created"
    );
}

#[test]
fn scheduled_drills_report_in_status() {
    let dir = TempDir::new("scheduled-drills");
    let url = format!("file://{}", dir.join("replicas").display());
    let o = python_loaded(
        &format!(
            "{PY_WAIT_FOR}{}",
            r#"
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("CREATE TABLE t(x)")
db.execute("INSERT INTO t VALUES (1)")
txid = db.execute("SELECT replica_sync(10000)").fetchone()[0]
v = wait_for("scheduled drill in replica_status()", lambda: db.execute("SELECT last_verify FROM replica_status()").fetchone()[0])
print("txid", txid)
print("drill", v)
"#
        ),
        dir.path(),
        &[
            ("REPLICA_URL", &url),
            ("REPLICA_VALIDATION_INTERVAL", "100ms"),
        ],
    );
    let text = check(&o, "scheduled drills");
    let txid = text.lines().find_map(|l| l.strip_prefix("txid ")).unwrap();
    assert!(
        text.contains(&format!("drill ok: txid {txid}, checksum ")),
        "{text}"
    );
    // The config file's `validation-interval`, per database: a.db's replica drills every
    // 100 ms, b.db (no interval anywhere) never.
    std::fs::write(
        dir.join("litestream.yml"),
        format!(
            "dbs:\n  - path: a.db\n    replica: {{url: {url}/a.db, validation-interval: 100ms}}\n  - path: b.db\n    replica: {{url: {url}/b.db}}\n"
        ),
    )
    .unwrap();
    let o = python_loaded(
        &format!(
            "{PY_WAIT_FOR}{}",
            r#"
dbs = {n: sqlite3.connect(n + ".db", isolation_level=None) for n in ("a", "b")}
for n, db in dbs.items():
    db.execute("CREATE TABLE t(x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.execute("SELECT replica_sync(10000)")
status = "SELECT name, last_verify FROM replica_status() ORDER BY name"
def a_drilled():
    rows = dbs["a"].execute(status).fetchall()
    return rows if rows[0][1] is not None else None
for name, v in wait_for("drill of a.db in replica_status()", a_drilled):
    print(name, v)
"#
        ),
        dir.path(),
        &[("REPLICA_CONFIG", "litestream.yml")],
    );
    let text = check(&o, "scheduled drills from the config file");
    assert!(text.contains("a.db ok: txid "), "{text}");
    assert!(text.contains("b.db None\n"), "{text}");
    // A bad interval fails the load, naming the variable.
    let o = python_loaded("", dir.path(), &[("REPLICA_VALIDATION_INTERVAL", "often")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("REPLICA_VALIDATION_INTERVAL"),
        "{}",
        stderr(&o)
    );
}
