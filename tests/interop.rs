//! Interoperability with the real Litestream (0.5.17, `litestream_bin()`), both ways:
//! `litestream restore` reads what libreplica writes — latest and at a txid, across a
//! `replica_snapshot()` and a process restart — and `replica_restore()` reads what
//! `litestream replicate` writes (driven by tests/common/litestream_replicate.rs, which
//! tests/s3_e2e.rs shares for an S3 replica).

mod common;

use common::litestream_replicate::*;
use common::*;
use std::path::Path;

/// `replica_restore(src, target[, txid])` in a fresh python with the extension loaded;
/// returns the txid it restored.
fn libreplica_restore(
    cwd: &Path,
    src: &str,
    target: &str,
    txid: Option<u64>,
) -> Result<u64, String> {
    let point = txid.map(|t| format!(", '{t}'")).unwrap_or_default();
    let script = format!(
        r#"
import os, sqlite3
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])
try:
    print("txid", boot.execute("SELECT replica_restore('{src}', '{target}'{point})").fetchone()[0])
except sqlite3.Error as e:
    print("error", e)
"#
    );
    let out = python(&script, cwd, &[]);
    let text = check(&out, "replica_restore");
    match text.trim().split_once(' ') {
        Some(("txid", t)) => Ok(t.parse().unwrap()),
        _ => Err(text.trim().to_string()),
    }
}

/// The LTX files of a file replica, as (level, min txid, max txid).
fn ltx_files(replica: &Path) -> Vec<(u8, u64, u64)> {
    let mut out = Vec::new();
    let Ok(levels) = std::fs::read_dir(replica.join("ltx")) else {
        return out;
    };
    for level in levels.flatten() {
        let Ok(l) = u8::from_str_radix(&level.file_name().to_string_lossy(), 16) else {
            continue;
        };
        for f in std::fs::read_dir(level.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if let Some((a, b)) = name.strip_suffix(".ltx").and_then(|n| n.split_once('-')) {
                if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                    out.push((l, a, b));
                }
            }
        }
    }
    out.sort();
    out
}

/// Python with the extension loaded, REPLICA_URL set; prints `txid <n>` lines.
fn replicate_with_libreplica(cwd: &Path, url: &str, body: &str) -> Vec<(String, u64)> {
    let script = format!(
        r#"
import os, sqlite3, random
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])
db = sqlite3.connect("app.db", isolation_level=None, timeout=30)
assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
def sync(label):
    print(label, db.execute("SELECT replica_sync(10000)").fetchone()[0])
def batch(rng, n):
    db.execute("BEGIN IMMEDIATE")
    for i in range(n):
        size = rng.choice([10, 200, 1500, 6000])  # some rows need overflow pages
        db.execute("INSERT INTO t(k, v) VALUES (?, ?)", ("k%d" % rng.randint(0, 10**6), rng.randbytes(size)))
    db.execute("UPDATE t SET k = k || '+' WHERE id % 7 = ?", (rng.randint(0, 6),))
    db.execute("DELETE FROM t WHERE id % 11 = ?", (rng.randint(0, 10),))
    db.execute("COMMIT")
{body}
"#
    );
    let out = python(
        &script,
        cwd,
        &[("REPLICA_URL", url), ("REPLICA_LOG", "stderr")],
    );
    let text = check(&out, "writing through libreplica");
    assert!(
        !stderr(&out).contains("libreplica error"),
        "the extension logged errors:\n{}",
        stderr(&out)
    );
    text.lines()
        .filter_map(|l| {
            l.rsplit_once(' ')
                .and_then(|(a, b)| b.parse().ok().map(|t| (a.to_string(), t)))
        })
        .collect()
}

#[test]
fn litestream_restores_what_libreplica_wrote() {
    let dir = TempDir::new("interop-ls-restore");
    let replicas = dir.join("replicas");
    let url = format!("file://{}", replicas.display());
    let replica_url = format!("{url}/app.db");

    // Phase A: several commits, each shipped as its own level-0 file.
    let a = replicate_with_libreplica(
        dir.path(),
        &url,
        r#"
rng = random.Random(11)
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
db.execute("CREATE INDEX t_k ON t(k)")
sync("created")
for r in range(6):
    batch(rng, 40)
    sync("a%d" % r)
"#,
    );
    let txid_a = a.last().unwrap().1;
    let txid_mid = a[3].1;
    let dump_a = dump(&dir.join("app.db"));

    // Phase B, in a new process: more commits, a snapshot, more commits after it.
    let b = replicate_with_libreplica(
        dir.path(),
        &url,
        r#"
rng = random.Random(12)
for r in range(3):
    batch(rng, 30)
    sync("b%d" % r)
print("snapshot", db.execute("SELECT replica_snapshot()").fetchone()[0])
for r in range(3):
    batch(rng, 30)
    sync("c%d" % r)
"#,
    );
    let get = |label: &str| {
        b.iter()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no {label} in {b:?}"))
            .1
    };
    let snap = get("snapshot");
    let after_snap = get("c0");
    let last = get("c2");
    let dump_b = dump(&dir.join("app.db"));

    let files = ltx_files(&replicas.join("app.db"));
    let level0 = files.iter().filter(|f| f.0 == 0).count();
    assert!(
        level0 >= 10,
        "expected at least 10 level-0 files, got {files:?}"
    );
    assert!(
        files.contains(&(9, 1, 1)),
        "no initial snapshot in {files:?}"
    );
    assert!(
        files.contains(&(9, 1, snap)),
        "no snapshot 1-{snap} after replica_snapshot() in {files:?}"
    );
    assert!(
        txid_a < snap && snap < after_snap && after_snap < last,
        "txids out of order: a {a:?}, b {b:?}"
    );

    // Latest, by litestream: the source after phase B.
    let ls_latest = dir.join("ls-latest.db");
    litestream_restore(&replica_url, &ls_latest, None);
    assert!(
        dump(&ls_latest) == dump_b,
        "litestream's restore of the latest state differs from the source"
    );

    // At the end of phase A (before the snapshot), by litestream and by libreplica.
    let ls_a = dir.join("ls-a.db");
    litestream_restore(&replica_url, &ls_a, Some(txid_a));
    assert!(
        dump(&ls_a) == dump_a,
        "litestream's restore at txid {txid_a} differs from the source at that txid"
    );
    let got = libreplica_restore(dir.path(), &replica_url, "lr-a.db", Some(txid_a));
    assert_eq!(got, Ok(txid_a), "replica_restore at txid {txid_a}");
    assert!(
        dump(&dir.join("lr-a.db")) == dump_a,
        "replica_restore at txid {txid_a} differs from the source at that txid"
    );

    // Mid-chain and right after the snapshot: litestream and libreplica agree.
    for (name, txid) in [
        ("mid", txid_mid),
        ("after-snapshot", after_snap),
        ("snapshot", snap),
    ] {
        let ls = dir.join(&format!("ls-{name}.db"));
        litestream_restore(&replica_url, &ls, Some(txid));
        let lr = format!("lr-{name}.db");
        assert_eq!(
            libreplica_restore(dir.path(), &replica_url, &lr, Some(txid)),
            Ok(txid),
            "replica_restore at {txid}"
        );
        assert!(
            dump(&ls) == dump(&dir.join(&lr)),
            "at txid {txid} ({name}), litestream and replica_restore restore different databases"
        );
        assert_eq!(
            ltx_db_checksum(&ls),
            ltx_db_checksum(&dir.join(&lr)),
            "at txid {txid} ({name}): checksums differ"
        );
    }
}

/// Polls (bounded) until litestream's restore of `url` equals `want`; returns the replica's
/// highest txid then.
fn wait_replicated_txid(dir: &TempDir, url: &str, replica: &Path, want: &str, what: &str) -> u64 {
    wait_replicated(dir.path(), want, what, "", |out| {
        litestream(&["restore", "-o", out.to_str().unwrap(), url], dir.path())
    });
    ltx_files(replica).iter().map(|f| f.2).max().unwrap()
}

/// Replicates with the real `litestream replicate` while plain python writes; returns
/// the (txid, dump) after each round and the replica URL.
fn litestream_written_replica(dir: &TempDir) -> (Vec<(u64, String)>, String) {
    let db = dir.join("app.db");
    let replica = dir.join("ls-replica");
    let config = dir.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: file\n      path: {}\n      sync-interval: 100ms\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let url = format!("file://{}", replica.display());
    write_first_row(dir.path());
    let mut rounds = Vec::new();
    let mut ls = Replicator::start(&config, dir.path());
    rounds.push((
        wait_replicated_txid(dir, &url, &replica, &dump_t(&db), "the initial database"),
        dump_t(&db),
    ));
    for round in 0..3 {
        write_round(dir.path(), round.into(), round);
        let want = dump_t(&db);
        rounds.push((
            wait_replicated_txid(dir, &url, &replica, &want, &format!("round {round}")),
            want,
        ));
    }
    ls.stop();
    (rounds, url)
}

#[test]
fn libreplica_restores_what_litestream_wrote() {
    let dir = TempDir::new("interop-lr-restore");
    let (rounds, url) = litestream_written_replica(&dir);
    let files = ltx_files(&dir.join("ls-replica"));
    let (last_txid, last_dump) = rounds.last().unwrap().clone();
    let got = libreplica_restore(dir.path(), &url, "x.db", None);
    let got = got.unwrap_or_else(|e| {
        panic!("replica_restore of a litestream-written replica failed: {e}; files {files:?}")
    });
    assert!(
        got >= last_txid,
        "replica_restore restored txid {got}, litestream had reached {last_txid}"
    );
    assert!(
        dump_t(&dir.join("x.db")) == last_dump,
        "replica_restore of the litestream-written replica differs from the source; files {files:?}"
    );
}

/// Litestream's own first level-0 file (1-1) and its compactions (level 1, 1-N) hold a whole
/// database, so `litestream restore -txid` works before its first level-9 snapshot; a
/// restore of the same replica at the same txid through replica_restore must agree.
#[test]
fn libreplica_restores_litestream_replica_at_each_round() {
    let dir = TempDir::new("interop-lr-restore-txid");
    let (rounds, url) = litestream_written_replica(&dir);
    let files = ltx_files(&dir.join("ls-replica"));
    let mut failures = Vec::new();
    for (i, (txid, want)) in rounds.iter().enumerate() {
        let ls = dir.join(&format!("ls-{i}.db"));
        litestream_restore(&url, &ls, Some(*txid));
        assert!(
            dump_t(&ls) == *want,
            "litestream's own restore at txid {txid} (round {i}) differs from the source then"
        );
        let target = format!("x-{i}.db");
        match libreplica_restore(dir.path(), &url, &target, Some(*txid)) {
            Ok(t) if t == *txid && dump_t(&dir.join(&target)) == *want => {}
            Ok(t) => failures.push(format!("round {i}: replica_restore at txid {txid} restored txid {t}, content equal: {}", dump_t(&dir.join(&target)) == *want)),
            Err(e) => failures.push(format!("round {i}: replica_restore at txid {txid} failed where litestream restore works: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nreplica files (level, min, max): {files:?}",
        failures.join("\n")
    );
}
