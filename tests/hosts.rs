//! The extension in real host processes: Debian's python3 (its `sqlite3` module can load
//! extensions) and Ruby's `sqlite3` gem. The scripts live in `tests/hosts/`; each runs in a
//! scratch directory with `REPLICA_URL=file://<scratch>/replicas` and prints what it saw.
//! Here we check those values and compare the databases with `sqlite3 .dump`.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

fn script(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hosts")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn replicas_env(tmp: &TempDir) -> String {
    format!("file://{}/replicas", tmp.path().display())
}

/// `key=value` lines (the first `=` splits) → map; a repeated key is a script bug.
fn parse_kv(out: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for line in out.lines() {
        if let Some((k, v)) = line.split_once('=') {
            assert!(
                map.insert(k.to_string(), v.to_string()).is_none(),
                "key {k:?} printed twice:\n{out}"
            );
        }
    }
    map
}

/// `key value` lines (the first space splits) → map.
fn parse_words(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get<'a>(map: &'a HashMap<String, String>, key: &str, all: &str) -> &'a str {
    map.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("the script printed no {key:?}:\n{all}"))
}

fn checked(o: &Output, what: &str) -> String {
    let out = check(o, what);
    // Shown with a failing assert below: the host's warnings and the extension's log.
    if !stderr(o).trim().is_empty() {
        eprintln!("{what} stderr:\n{}", stderr(o));
    }
    out
}

/// `sqlite3 DB .dump` without the extension. (Not `common::dump`: `common::run` does not
/// drain the child's pipes while it waits, so a dump over ~64 KiB never finishes.)
fn dump_db(db: &Path) -> String {
    let o = std::process::Command::new(SQLITE3)
        .arg(db)
        .arg(".dump")
        .env("REPLICA_CONFIG", "off")
        .env_remove("REPLICA_URL")
        .output()
        .unwrap_or_else(|e| panic!("cannot start {SQLITE3}: {e}"));
    check(&o, "sqlite3 .dump")
}

fn assert_same_dump(a: &Path, b: &Path) {
    let (da, db) = (dump_db(a), dump_db(b));
    assert!(
        da.contains("CREATE TABLE"),
        "{} dumped no tables:\n{da}",
        a.display()
    );
    assert_eq!(da, db, "{} and {} differ", a.display(), b.display());
}

/// A snapshot of the new database (txid 1), then three shipped transactions: sync returns 2,
/// 3, 4; the latest, txid 2 and a timestamp between txids 3 and 4 restore exactly those states.
#[test]
fn python_replicates_and_restores() {
    let tmp = TempDir::new("host-python-basic");
    let url = replicas_env(&tmp);
    let o = python(&script("basic.py"), tmp.path(), &[("REPLICA_URL", &url)]);
    let out = checked(&o, "python3 tests/hosts/basic.py");
    let kv = parse_kv(&out);
    let g = |k: &str| get(&kv, k, &out).to_string();
    assert_eq!(g("journal_mode"), "wal");
    assert_eq!(g("initial"), "1");
    assert_eq!(
        (g("sync1"), g("sync2"), g("sync3")),
        ("2".into(), "3".into(), "4".into()),
        "{out}"
    );
    assert_eq!(g("status"), "[('app.db', 'up to date', 4, 4, 0, None)]");
    assert_eq!(g("restored"), "4");
    assert_eq!(g("restored_at_2"), "2");
    assert_eq!(
        g("restored_at_time"),
        "3",
        "a timestamp between txids 3 and 4 restores txid 3:\n{out}"
    );
    assert!(
        g("second_restore").contains("restored.db already exists; pass 'overwrite'"),
        "restoring onto an existing file must fail: {out}"
    );
    // 1000 items with qty 3i; +1 for every tenth; then ids above 900 deleted.
    assert_eq!(g("rows app.db"), "900 1216440");
    assert_eq!(g("rows restored.db"), "900 1216440");
    assert_eq!(g("rows at2.db"), "1000 1501500");
    assert_eq!(g("rows at_time.db"), "1000 1501600");
    assert_same_dump(&tmp.join("app.db"), &tmp.join("restored.db"));
    // Litestream's layout in the replica directory.
    let ltx = tmp.join("replicas/app.db/ltx");
    for f in [
        "9/0000000000000001-0000000000000001.ltx",
        "0/0000000000000002-0000000000000002.ltx",
        "0/0000000000000003-0000000000000003.ltx",
        "0/0000000000000004-0000000000000004.ltx",
    ] {
        assert!(
            ltx.join(f).is_file(),
            "{} is missing",
            ltx.join(f).display()
        );
    }
}

/// Two connections in two threads commit 300 transactions concurrently; everything reaches
/// the replica and the restore equals the source.
#[test]
fn python_threads_write_concurrently() {
    let tmp = TempDir::new("host-python-threads");
    let url = replicas_env(&tmp);
    let o = python(&script("threads.py"), tmp.path(), &[("REPLICA_URL", &url)]);
    let out = checked(&o, "python3 tests/hosts/threads.py");
    let kv = parse_words(&out);
    assert_eq!(get(&kv, "initial", &out), "1");
    assert_eq!(get(&kv, "first_sync", &out), "2");
    assert_eq!(get(&kv, "errors", &out), "[]", "a writer failed:\n{out}");
    assert_eq!(get(&kv, "counters", &out), "[('a', 150), ('b', 150)]");
    let txid: i64 = get(&kv, "txid", &out).parse().unwrap();
    assert!(
        txid >= 3,
        "the concurrent writes were shipped after the first sync: {out}"
    );
    assert_eq!(get(&kv, "status", &out), "[('up to date', 0, 0, None)]");
    assert_eq!(
        get(&kv, "restored", &out),
        txid.to_string(),
        "restore returns the synced txid"
    );
    assert_same_dump(&tmp.join("app.db"), &tmp.join("restored.db"));
    let d = dump_db(&tmp.join("restored.db"));
    // 150 rows per writer, minus the seq % 7 == 0 ones deleted every 50 transactions.
    let rows = d.matches("INSERT INTO log VALUES").count();
    assert_eq!(
        rows,
        2 * (150 - (0..150).filter(|s| s % 7 == 0).count()),
        "{d}"
    );
}

/// Loading twice is harmless; with REPLICA_DEFAULT_VFS=0 only the database attached with
/// ?vfs=replica replicates.
#[test]
fn python_load_twice_and_attach_with_vfs_param() {
    let tmp = TempDir::new("host-python-attach");
    let url = replicas_env(&tmp);
    let o = python(
        &script("attach.py"),
        tmp.path(),
        &[("REPLICA_URL", &url), ("REPLICA_DEFAULT_VFS", "0")],
    );
    let out = checked(&o, "python3 tests/hosts/attach.py");
    let kv = parse_words(&out);
    assert_eq!(get(&kv, "version", &out), "libreplica");
    assert_eq!(
        get(&kv, "main_journal", &out),
        "delete",
        "a plain open must not be switched to WAL"
    );
    assert_eq!(
        get(&kv, "side_status", &out),
        "[('side.db',)]",
        "the ?vfs=replica database is tracked from ATTACH"
    );
    assert_eq!(get(&kv, "side_journal", &out), "wal");
    assert_eq!(get(&kv, "initial", &out), "1");
    assert_eq!(get(&kv, "sync", &out), "2");
    assert_eq!(get(&kv, "status", &out), "[('side.db', 'up to date')]");
    assert_eq!(get(&kv, "restored", &out), "2");
    assert_eq!(get(&kv, "side_rows", &out), "(300, 'side-99')");
    // app.db has a name-derived replica location, but nothing was ever shipped there.
    assert!(
        get(&kv, "app_restore", &out).contains("restore failed"),
        "{out}"
    );
    assert!(
        !tmp.join("replicas/app.db").exists(),
        "app.db was opened without the replica VFS but replicated"
    );
    assert!(!tmp.join("app.db-replica").exists(), "app.db got a spool");
    let side = dump_db(&tmp.join("side.db"));
    assert_eq!(side, dump_db(&tmp.join("side-restored.db")));
    assert!(
        side.contains("INSERT INTO s VALUES(299,'side-299');"),
        "{side}"
    );
}

/// A WAL database ATTACHed to a connection opened before the load (and loaded into) is
/// adopted at its first commit and replicates: its 300 rows restore.
#[test]
fn python_attach_after_loading_into_an_open_connection() {
    let tmp = TempDir::new("host-python-attach-after-load");
    let url = replicas_env(&tmp);
    let o = python(
        &script("attach_after_load.py"),
        tmp.path(),
        &[("REPLICA_URL", &url)],
    );
    let out = checked(&o, "python3 tests/hosts/attach_after_load.py");
    let kv = parse_words(&out);
    assert_eq!(get(&kv, "status", &out), "app.db,other.db", "{out}");
    assert_eq!(get(&kv, "synced", &out), "True", "{out}");
    assert_eq!(get(&kv, "restored", &out), "300 row-9-9", "{out}");
    assert_eq!(
        dump_db(&tmp.join("other.db")),
        dump_db(&tmp.join("other-restored.db"))
    );
}

/// An attached ?vfs=replica database left in rollback-journal mode: replica_sync() may fail
/// or the extension may switch it to WAL, but it must not claim a commit it never captured.
#[test]
fn python_attached_rollback_journal_db_has_no_silent_gap() {
    let tmp = TempDir::new("host-python-attach-rollback");
    let url = replicas_env(&tmp);
    let o = python(
        &script("attach_rollback.py"),
        tmp.path(),
        &[("REPLICA_URL", &url), ("REPLICA_DEFAULT_VFS", "0")],
    );
    let out = checked(&o, "python3 tests/hosts/attach_rollback.py");
    let kv = parse_words(&out);
    assert_eq!(get(&kv, "source_rows", &out), "1");
    let sync2 = get(&kv, "sync2", &out);
    if !sync2.starts_with("error") {
        assert_eq!(
            kv.get("restored_rows").map(String::as_str),
            Some("1"),
            "replica_sync() returned {sync2} after the INSERT, but the replica does not hold it \
             (a silent gap: the attached database is in {} mode):\n{out}",
            get(&kv, "side_journal", &out)
        );
    }
}

/// Runs `tests/hosts/<name>` with ruby in a new scratch directory `tmp_name`; its checked
/// output, or `None` (the test skips) when ruby or its sqlite3 gem is missing.
fn ruby_script(name: &str, tmp_name: &str) -> Option<(TempDir, String)> {
    if !ruby_available() {
        return None;
    }
    let tmp = TempDir::new(tmp_name);
    let url = replicas_env(&tmp);
    let lib = load_path();
    let o = run(
        "ruby",
        &["-"],
        tmp.path(),
        &[("REPLICA_URL", &url), ("REPLICA_TEST_LIB", &lib)],
        &script(name),
    );
    let out = checked(&o, &format!("ruby tests/hosts/{name}"));
    Some((tmp, out))
}

/// Forks right after commits, while the extension's threads work on them (a preforking
/// server's master): no child may hang on a lock one of those threads held at the fork
/// (9 of 300 did, on the database registry and on SQLite's allocator mutex).
#[test]
fn python_forks_after_commits_and_no_child_hangs() {
    let tmp = TempDir::new("host-python-fork-commits");
    let url = replicas_env(&tmp);
    let o = python(
        &script("fork_after_commits.py"),
        tmp.path(),
        &[("REPLICA_URL", &url)],
    );
    let out = checked(&o, "python3 tests/hosts/fork_after_commits.py");
    let kv = parse_words(&out);
    assert_eq!(get(&kv, "forks", &out), "200");
    assert_eq!(get(&kv, "stuck", &out), "0", "forked children hung:\n{out}");
}

/// Ruby's `fork` after loading and writing: the child's writes to the parent's database
/// reach the replica through the parent, and the child replicates its own database.
#[test]
fn ruby_fork_after_writing() {
    let Some((_tmp, out)) = ruby_script("fork.rb", "host-ruby-fork") else {
        return;
    };
    let kv = parse_kv(&out);
    let g = |k: &str| get(&kv, k, &out).to_string();
    assert_eq!(g("child_exit"), "0", "{out}");
    // The child's sync waited for the parent to ship its commit: a txid past the parent's.
    let parent: u64 = g("parent_sync1").parse().unwrap();
    assert!(
        g("child_sync").parse::<u64>().is_ok_and(|t| t > parent),
        "{out}"
    );
    assert_eq!(g("restored"), "parent-1,child-1,parent-2", "{out}");
    assert_eq!(g("restored_child"), "42", "{out}");
}

#[test]
fn ruby_replicates_and_restores() {
    let Some((tmp, out)) = ruby_script("basic.rb", "host-ruby-basic") else {
        return;
    };
    let kv = parse_kv(&out);
    let g = |k: &str| get(&kv, k, &out).to_string();
    assert_eq!(g("journal_mode"), "wal");
    assert_eq!(g("initial"), "1");
    assert_eq!((g("sync1"), g("sync2")), ("2".into(), "3".into()), "{out}");
    assert_eq!(g("status"), r#"[["app.db", "up to date", 3, 0]]"#);
    assert_eq!(g("restored"), "3");
    assert_eq!(g("restored_at_2"), "2");
    assert!(
        g("bad_sync").contains("replica_sync: timeout_ms must be an integer"),
        "{out}"
    );
    // 500 people born 1900 + i % 120; every third name upper-cased in txid 3.
    assert_eq!(g("rows app.db"), "500 978750 166");
    assert_eq!(g("rows restored.db"), "500 978750 166");
    assert_eq!(g("rows at2.db"), "500 978750 0");
    assert_same_dump(&tmp.join("app.db"), &tmp.join("restored.db"));
}

/// Three threads keep opening, writing and closing their databases while the extension is
/// loaded: the default VFS is wrapped under opens in flight. No open, write or check fails,
/// and every database replicates once its connections open after the load.
#[test]
fn python_load_while_other_threads_open_databases() {
    let tmp = TempDir::new("host-python-load-while-opening");
    let url = replicas_env(&tmp);
    let o = python(
        &script("load_while_opening.py"),
        tmp.path(),
        &[("REPLICA_URL", &url)],
    );
    let out = checked(&o, "python3 tests/hosts/load_while_opening.py");
    let kv = parse_words(&out);
    assert_eq!(get(&kv, "errors", &out), "[]", "{out}");
    assert_eq!(get(&kv, "commits", &out), "True", "{out}");
    for i in 0..3 {
        assert_eq!(get(&kv, &format!("integrity{i}"), &out), "ok", "{out}");
        assert_eq!(get(&kv, &format!("rows{i}"), &out), "1", "{out}");
    }
    assert_eq!(
        get(&kv, "status", &out),
        "[('t0.db', 'up to date'), ('t1.db', 'up to date'), ('t2.db', 'up to date')]",
        "{out}"
    );
}

/// A connection opened before the load and never loaded into, and one opened after it,
/// write in turn: the first one's log opens after the load, through the wrapped default
/// VFS. Every commit reaches the replica, which restores equal, with one snapshot.
#[test]
fn python_connection_opened_before_the_load_and_never_loaded_into() {
    let tmp = TempDir::new("host-python-before-never-loaded");
    let url = replicas_env(&tmp);
    let o = python(
        &script("opened_before_never_loaded.py"),
        tmp.path(),
        &[("REPLICA_URL", &url)],
    );
    let out = checked(&o, "python3 tests/hosts/opened_before_never_loaded.py");
    let kv = parse_words(&out);
    assert_eq!(get(&kv, "status", &out), "[('app.db', 'up to date')]");
    assert_eq!(get(&kv, "same", &out), "True", "{out}");
    assert_eq!(get(&kv, "integrity", &out), "ok", "{out}");
    assert_eq!(get(&kv, "snapshots", &out), "1", "{out}");
}
