//! The replica's lifecycle over three simulated days: a real WAL database (written by
//! Debian's python3/sqlite3, with checkpoints off) whose commits are read from its WAL into
//! the spool, and an uploader stepped through injected time to a file replica, so that
//! snapshots, compactions (L1 30 s, L2 5 min, L3 1 h) and retention (24 h, L0 5 min) run
//! at their windows. After every compaction and retention pass that changed the bucket the
//! real `litestream restore` must restore what ours does; at the end, restores at 20 seeded
//! random timestamps and 20 txids inside the retention window must equal the source at
//! that point, and outside it fail clearly. Replay a failure with `LIFECYCLE_SEED=<seed>`.

mod common;
use common::seeded;

use common::*;
use replica::base::io::ReadAt;
use replica::config::{ReplicaConfig, ReplicaTarget};
use replica::database::Database;
use replica::error::Error;
use replica::lifecycle::Lifecycle;
use replica::restore::{self, RestoreRequest, Target};
use replica::snapshot::{LockedRead, SnapshotSource};
use replica::spool::{Integrity, RecordHeader};
use replica::store::fs::DirStore;
use replica::store::ObjectStore;
use replica::uploader::{DbUploader, Step};
use replica::wal::WalPosition;
use seeded::{seed_from_env, Rng};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// 2023-11-15 01:00 UTC: an hour past a snapshot boundary.
const START: u64 = 1_700_006_400_000 + HOUR;

/// One python3 holding the source connection; answers one line per command.
const SQL_SERVER: &str = r#"
import hashlib, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("pragma journal_mode=wal")
db.execute("pragma wal_autocheckpoint=0")
db.execute("create table t(id integer primary key, v blob)")
def digest(conn, check):
    ok = conn.execute("pragma integrity_check").fetchone()[0] if check else "ok"
    h = hashlib.sha256()
    for (sql,) in conn.execute("select sql from sqlite_master order by name"):
        h.update((sql or "").encode())
    for i, v in conn.execute("select id, v from t order by id"):
        h.update(b"%d:%d:" % (i, len(v)))
        h.update(v)
    return h.hexdigest() if ok == "ok" else "corrupt:" + ok
for line in sys.stdin:
    cmd, _, arg = line.rstrip("\n").partition(" ")
    if cmd == "exec":
        db.executescript(arg.replace("\\n", "\n"))
        print(digest(db, False), flush=True)
    elif cmd == "hash":
        c = sqlite3.connect("file:" + arg + "?immutable=1", uri=True)
        print(digest(c, True), flush=True)
        c.close()
"#;

struct Sql {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Sql {
    fn start(db: &Path) -> Sql {
        let mut child = Command::new(PYTHON3)
            .args(["-c", SQL_SERVER, db.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Sql {
            child,
            stdin,
            stdout,
        }
    }
    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        let mut out = String::new();
        self.stdout.read_line(&mut out).unwrap();
        assert!(!out.is_empty(), "python3 died on {line:?}");
        out.trim().to_string()
    }
    /// Runs a script as one commit (or VACUUM); returns the source's digest after it.
    fn exec(&mut self, script: &str) -> String {
        self.ask(&format!("exec {}", script.replace('\n', "\\n")))
    }
    fn digest_of(&mut self, db: &Path) -> String {
        self.ask(&format!("hash {}", db.display()))
    }
}

impl Drop for Sql {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct FileAt(std::fs::File);
impl ReadAt for FileAt {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read_exact_at(buf, offset) {
            Ok(()) => Ok(buf.len()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// Snapshots read the database file and its WAL directly: nothing writes while the
/// uploader is stepped.
struct LiveFiles;
impl SnapshotSource for LiveFiles {
    fn with_read_transaction(&self, db_path: &Path, f: &mut LockedRead<'_>) -> Result<(), Error> {
        let mut wal_path = db_path.as_os_str().to_owned();
        wal_path.push("-wal");
        let mut dbf = FileAt(std::fs::File::open(db_path)?);
        let mut walf = FileAt(std::fs::File::open(PathBuf::from(wal_path))?);
        f(&mut dbf, Some(&mut walf), &mut || None)
    }
}

/// Feeds the WAL's new commits into the spool, as the shim would capture them.
struct WalTail {
    path: PathBuf,
    next_frame: u32,
}

impl WalTail {
    /// Appends the WAL's new commits to the spool (or only skips them, with `record` false).
    fn capture(&mut self, db: &Database, at: u64, record: bool) {
        // Only the header and the frames not seen yet are read (the WAL only grows here);
        // the zeroed rest of the buffer is never touched.
        let file = std::fs::File::open(&self.path).unwrap();
        let mut wal = vec![0u8; file.metadata().unwrap().len() as usize];
        file.read_exact_at(&mut wal[..32], 0).unwrap();
        let ps = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
        let salts = (
            u32::from_be_bytes(wal[16..20].try_into().unwrap()),
            u32::from_be_bytes(wal[20..24].try_into().unwrap()),
        );
        let frame_at = |n: u32| 32 + (n as usize - 1) * (24 + ps);
        let unseen = frame_at(self.next_frame).min(wal.len());
        file.read_exact_at(&mut wal[unseen..], unseen as u64)
            .unwrap();
        let mut txn: Vec<u32> = Vec::new();
        let mut n = self.next_frame;
        while frame_at(n) + 24 + ps <= wal.len() {
            let h = &wal[frame_at(n)..frame_at(n) + 24];
            let be = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().unwrap());
            if (be(8), be(12)) != salts {
                break;
            }
            txn.push(n);
            if be(4) != 0 && !record {
                txn.clear();
                self.next_frame = n + 1;
            } else if be(4) != 0 {
                let header = RecordHeader {
                    page_size: ps as u32,
                    commit_size: be(4),
                    end: WalPosition {
                        salt1: salts.0,
                        salt2: salts.1,
                        frame: n,
                    },
                    end_cksum: (be(16), be(20)),
                    captured_at_ms: at,
                    integrity: Integrity::Crc,
                };
                let mut rec = db.spool.begin_record(header, txn.len() as u32).unwrap();
                for &f in &txn {
                    let o = frame_at(f);
                    let pgno = u32::from_be_bytes(wal[o..o + 4].try_into().unwrap());
                    rec.push(pgno, &wal[o + 24..o + 24 + ps]).unwrap();
                }
                rec.commit().unwrap();
                txn.clear();
                self.next_frame = n + 1;
            }
            n += 1;
        }
    }
}

fn restore_ours(store: &dyn ObjectStore, out: &Path, target: Target) -> Result<u64, Error> {
    let _ = std::fs::remove_file(out);
    restore::restore(&RestoreRequest {
        store,
        prefix: "",
        output: out,
        target,
        overwrite: true,
        check: &|_| Ok(()),
    })
    .map(|r| r.txid)
}

/// Every LTX file of a directory replica, sorted.
fn replica_files(replica: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for level in std::fs::read_dir(replica.join("ltx")).into_iter().flatten() {
        for f in std::fs::read_dir(level.unwrap().path())
            .into_iter()
            .flatten()
        {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

fn levels_present(replica: &Path) -> BTreeMap<u8, usize> {
    let mut out = BTreeMap::new();
    for level in [0u8, 1, 2, 3, 9] {
        let n = std::fs::read_dir(replica.join(format!("ltx/{level}")))
            .map(|d| d.count())
            .unwrap_or(0);
        out.insert(level, n);
    }
    out
}

#[test]
fn three_days_of_snapshots_compaction_and_retention_stay_restorable() {
    let seed = seed_from_env("LIFECYCLE_SEED", |t| t | 1);
    println!("LIFECYCLE_SEED={seed}");
    let began = Instant::now();
    let dir = TempDir::new("lifecycle");
    let db_path = dir.join("app.db");
    let replica = dir.join("replica");
    let url = format!("file://{}", replica.display());
    let mut sql = Sql::start(&db_path);
    sql.exec("insert into t(v) values (randomblob(100))");
    let mut digest = sql.exec("insert into t(v) values (randomblob(200))");
    let cfg = ReplicaConfig {
        name: "file".to_string(),
        target: ReplicaTarget::File {
            dir: replica.clone(),
        },
        sync_interval: Duration::from_secs(1),
        lifecycle: Lifecycle::default(),
        restore_if_missing: replica::config::DEFAULT_RESTORE_IF_MISSING,
        validation_interval: None,
        shutdown_sync_timeout: replica::config::DEFAULT_SHUTDOWN_SYNC_TIMEOUT,
        lease_ttl: replica::config::DEFAULT_LEASE_TTL,
        request_budget: None,
        prices: Default::default(),
        age: None,
    };
    let db = Arc::new(Database::open(&db_path, vec![cfg], 1 << 30).unwrap());
    let store = Arc::new(DirStore::new(replica.clone()));
    // Restores read through their own handle, so the uploader's request counts are its own.
    let reader = DirStore::new(replica.clone());
    let mut up = DbUploader::with_store(db.dests().remove(0), Ok(Box::new(store.clone())));
    let mut wal = WalTail {
        path: dir.join("app.db-wal"),
        next_frame: 1,
    };
    // The commits before replication started are in the first snapshot.
    wal.capture(&db, START, false);
    let mut rng = Rng(seed);
    let mut now = START;
    // txid → (commit time, source digest at that txid).
    let mut states: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let mut last_commit_at = START;
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    let mut litestream_checks = 0;
    let mut retention_checks = 0;
    let mut last_checked: Vec<PathBuf> = Vec::new();
    let out = dir.join("ours.db");
    let ls_out = dir.join("litestream.db");
    let compare_with_litestream =
        |sql: &mut Sql, states: &BTreeMap<u64, (u64, String)>, what: &str| {
            let txid = restore_ours(&reader, &out, Target::Latest)
                .unwrap_or_else(|e| panic!("seed {seed}: our restore after {what}: {e}"));
            let ours = sql.digest_of(&out);
            assert_eq!(
                ours, states[&txid].1,
                "seed {seed}: our restore at txid {txid} after {what} differs from the source"
            );
            let _ = std::fs::remove_file(&ls_out);
            litestream_restore(&url, &ls_out, None);
            assert_eq!(
                sql.digest_of(&ls_out),
                ours,
                "seed {seed}: litestream's restore after {what} differs from ours"
            );
        };
    // Steps the uploader until nothing is due before `until`.
    let mut drive = |up: &mut DbUploader,
                     now: &mut u64,
                     until: u64,
                     sql: &mut Sql,
                     states: &mut BTreeMap<u64, (u64, String)>,
                     digest: &str,
                     commit_at: u64| loop {
        match up.step(*now, &LiveFiles) {
            Step::Shipped { txid } => {
                states.insert(txid, (commit_at, digest.to_string()));
            }
            Step::Snapshot { txid } => {
                states
                    .entry(txid)
                    .or_insert_with(|| (commit_at, digest.to_string()));
                *events.entry("snapshot".into()).or_default() += 1;
            }
            // Every pass that changed the bucket is checked; a pass that changed nothing
            // (a retention pass with nothing to delete) leaves the state checked last.
            Step::Compacted { level, .. } => {
                let n = events.entry(format!("L{level}")).or_default();
                *n += 1;
                let listing = replica_files(&replica);
                if listing != last_checked {
                    compare_with_litestream(sql, states, &format!("compaction #{n} into L{level}"));
                    litestream_checks += 1;
                    last_checked = listing;
                }
            }
            Step::Retained { deleted } => {
                let n = events.entry("retention".into()).or_default();
                *n += 1;
                let listing = replica_files(&replica);
                if listing != last_checked {
                    compare_with_litestream(
                        sql,
                        states,
                        &format!("retention pass #{n} ({deleted} deleted)"),
                    );
                    litestream_checks += 1;
                    retention_checks += 1;
                    last_checked = listing;
                }
            }
            Step::WaitUntil(t) if t <= until => *now = t.max(*now),
            Step::WaitUntil(_) | Step::Idle => {
                *now = until;
                return;
            }
            Step::Failed { error, .. } => panic!("seed {seed}: step at {now} failed: {error}"),
        }
    };
    drive(
        &mut up,
        &mut now,
        START + MINUTE,
        &mut sql,
        &mut states,
        &digest,
        START,
    );
    let end = START + 3 * DAY;
    let mut t = START + MINUTE;
    let mut restarted = false;
    while t < end {
        // A commit every 10–30 minutes; now and then a burst of three, 3 s apart, that a
        // level-1 file merges. (Every pass costs a `litestream restore`: about 600 of them.)
        let burst = if rng.below(10) == 0 { 3 } else { 1 };
        for i in 0..burst {
            let at = t + i * 3_000;
            drive(
                &mut up,
                &mut now,
                at,
                &mut sql,
                &mut states,
                &digest,
                last_commit_at,
            );
            let script = match rng.below(40) {
                0 => "delete from t where id % 3 = 0; vacuum".to_string(),
                1..=5 => format!(
                    "delete from t where id in (select id from t order by random() limit {})",
                    1 + rng.below(5)
                ),
                6..=15 => format!(
                    "update t set v = randomblob({}) where id in (select id from t order by random() limit 3)",
                    50 + rng.below(3000)
                ),
                _ => format!(
                    "begin; insert into t(v) values (randomblob({})); insert into t(v) values (randomblob({})); commit",
                    50 + rng.below(4000),
                    50 + rng.below(400)
                ),
            };
            digest = sql.exec(&script);
            assert!(
                !digest.starts_with("corrupt"),
                "seed {seed}: source {digest}"
            );
            wal.capture(&db, at, true);
            last_commit_at = at;
            drive(&mut up, &mut now, at, &mut sql, &mut states, &digest, at);
        }
        t += 10 * MINUTE + rng.below(20 * MINUTE);
        if !restarted && t > START + DAY + DAY / 2 {
            // The process restarts and its local copies are gone: the new uploader lists
            // the replica once and downloads what its compactions need.
            restarted = true;
            std::fs::remove_dir_all(db.spool.scratch_path("cache")).unwrap();
            up = DbUploader::with_store(db.dests().remove(0), Ok(Box::new(store.clone())));
        }
    }
    drive(
        &mut up,
        &mut now,
        end,
        &mut sql,
        &mut states,
        &digest,
        last_commit_at,
    );
    println!(
        "seed {seed}: {} txids, events {events:?}, litestream checks {litestream_checks}, files {:?}, {:?}",
        states.len(),
        levels_present(&replica),
        began.elapsed()
    );
    for (what, min) in [
        ("L1", 100),
        ("L2", 100),
        ("L3", 60),
        ("snapshot", 3),
        ("retention", 3),
    ] {
        assert!(
            events.get(what).copied().unwrap_or(0) >= min,
            "seed {seed}: too few {what} passes: {events:?}"
        );
    }
    let compactions: usize = ["L1", "L2", "L3"]
        .iter()
        .map(|l| events.get(*l).copied().unwrap_or(0))
        .sum();
    assert!(
        litestream_checks >= compactions && retention_checks >= 3,
        "seed {seed}: {litestream_checks} litestream checks ({retention_checks} after retention) for {compactions} compactions"
    );
    let requests = store.request_counts();
    println!("seed {seed}: the uploader's requests over 3 days: {requests:?}");
    assert_eq!(requests.list, 2, "seed {seed}: LIST only at (re)start");
    assert!(
        requests.get <= 60,
        "seed {seed}: compaction reads local copies, but after the restart: {requests:?}"
    );

    // Retention kept the bucket to the window: about a day of level-1 files, few level-0
    // files, two or three snapshots.
    let present = levels_present(&replica);
    assert!(present[&9] <= 3, "seed {seed}: snapshots kept: {present:?}");
    assert!(
        present[&0] <= 10,
        "seed {seed}: level-0 files kept: {present:?}"
    );
    let per_day = states.len() / 3;
    assert!(
        present[&1] <= per_day + per_day / 2,
        "seed {seed}: level-1 files kept: {present:?} for {per_day} txids a day"
    );

    // Restores inside the window, at random times and txids.
    let window_start = end - DAY;
    let listing = reader.list("").unwrap();
    let points: Vec<u64> = {
        let mut p: Vec<u64> = restore::parse_listing(&listing)
            .iter()
            .map(|o| o.max_txid)
            .collect();
        p.sort();
        p.dedup();
        p
    };
    let time_of = |txid: u64| states[&txid].0;
    for i in 0..20 {
        let ts = window_start + rng.below(DAY);
        let expected = *points
            .iter()
            .filter(|&&p| time_of(p) <= ts)
            .max()
            .expect("a restore point before every time in the window");
        let got = restore_ours(&reader, &out, Target::Timestamp(ts))
            .unwrap_or_else(|e| panic!("seed {seed}: restore #{i} at {ts}: {e}"));
        assert_eq!(got, expected, "seed {seed}: restore at timestamp {ts}");
        assert_eq!(
            sql.digest_of(&out),
            states[&got].1,
            "seed {seed}: restore at timestamp {ts} (txid {got}) differs from the source"
        );
        // Level-1 windows bound what compaction loses: never more than one.
        let next = states.range(got + 1..).next().map(|(_, (at, _))| *at);
        assert!(
            next.is_none_or(|n| n > ts || ts - time_of(got) < 30_000 + 10_000),
            "seed {seed}: restore at {ts} reached txid {got}, committed long before"
        );
    }
    let in_window: Vec<u64> = states
        .iter()
        .filter(|(_, (at, _))| *at >= window_start)
        .map(|(t, _)| *t)
        .collect();
    // Every txid committed in the window restores exactly, unless a later one shares its
    // level-1 file: a level-1 window (30 s) keeps only its last txid as a restore point.
    // (All of them, not a sample: a bound on how many of a random sample are restore points
    // failed for seeds whose draws fell on bursts, e.g. 1796524574011082853.)
    let mut exact = 0;
    for &txid in &in_window {
        match restore_ours(&reader, &out, Target::Txid(txid)) {
            Ok(got) => {
                assert_eq!(got, txid, "seed {seed}: restore at txid {txid}");
                assert_eq!(
                    sql.digest_of(&out),
                    states[&txid].1,
                    "seed {seed}: restore at txid {txid} differs from the source"
                );
                exact += 1;
            }
            Err(e) => {
                let merged = states
                    .range(txid + 1..)
                    .next()
                    .is_some_and(|(_, (at, _))| *at < time_of(txid) + 30_000);
                assert!(
                    merged
                        && !points.contains(&txid)
                        && e.to_string().contains("is not a restore point"),
                    "seed {seed}: restore at txid {txid}, committed at {}, no later txid in \
                     its level-1 window: {e}",
                    time_of(txid)
                );
            }
        }
    }
    println!(
        "seed {seed}: {exact} of {} txids of the last day are restore points",
        in_window.len()
    );
    // The real litestream agrees at a txid inside the window too.
    let txid = *points.iter().rev().nth(points.len() / 3).unwrap();
    restore_ours(&reader, &out, Target::Txid(txid)).unwrap();
    let _ = std::fs::remove_file(&ls_out);
    litestream_restore(&url, &ls_out, Some(txid));
    assert_eq!(
        sql.digest_of(&ls_out),
        sql.digest_of(&out),
        "seed {seed}: litestream at txid {txid}"
    );

    // Outside the window: clear errors.
    let err = restore_ours(&reader, &out, Target::Timestamp(START + HOUR)).unwrap_err();
    assert!(
        err.to_string().contains("nothing at or before timestamp"),
        "seed {seed}: {err}"
    );
    let err = restore_ours(&reader, &out, Target::Txid(5)).unwrap_err();
    assert!(
        err.to_string().contains("no snapshot"),
        "seed {seed}: {err}"
    );
    let c = db.counters_of(0).clone();
    assert!(
        c.files_deleted > 0 && c.compactions > 0,
        "seed {seed}: {c:?}"
    );
    println!("seed {seed}: done in {:?}", began.elapsed());
}
