//! Followers against a replica that changes under them (issue 19): a writer process (its
//! own directory) replicates app.db to the in-process S3 server (SigV4 checked), a follower
//! process (another directory) follows it; the follower is stopped, or its bucket fails,
//! while the writer goes on. What it proves:
//!
//! - a follower that fell behind while the level-0 files it needed were compacted into
//!   level 1 and removed resumes from the compacted file: no resync (`snapshots` stays 0),
//!   and it ends equal to the writer;
//! - one that fell behind past retention (only a newer snapshot holds its next txid)
//!   applies that snapshot like any other file (no resync) and ends equal to the writer;
//! - a bucket answering 500 to everything makes the follower report the error while it
//!   keeps serving its last state, and once the bucket heals it catches up;
//! - two processes following one copy: one applies, the other reads and takes over when
//!   the first is killed;
//! - a follower killed in an apply (after its journal is written, after the pages are)
//!   leaves a hot journal: a read-only reader gets an error, never the half-applied
//!   pages, and the next follower plays it back and catches up.
//!
//! Replay a failure with FOLLOW_SEED=<seed> (each test prints its seed first).

mod common;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::seeded::{seed_from_env, Rng};
use common::*;
use procs::Timed;
use s3env::{s3_env, s3_url};
use s3server::{FaultProxy, S3Server};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const LINE_LIMIT: Duration = Duration::from_secs(120);

/// The writer (app.db, replicated as litestream.yml in its directory says): `rows N`
/// commits N rows in a few transactions and prints `synced <txid>`; `snapshot` prints
/// `snapshot <txid>`; `dump` prints the table's rows, then `end`.
const WRITER: &str = r#"
import sys
db = sqlite3.connect("app.db", isolation_level=None, timeout=10)
db.execute("PRAGMA journal_mode=wal")
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, body TEXT)")
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "rows":
        for i in range(int(cmd[1])):
            db.execute("INSERT INTO t(body) VALUES (hex(randomblob(64)))")
        print("synced", db.execute("SELECT replica_sync(30000)").fetchone()[0], flush=True)
    elif cmd[0] == "snapshot":
        print("snapshot", db.execute("SELECT replica_snapshot()").fetchone()[0], flush=True)
    elif cmd[0] == "dump":
        for r in db.execute("SELECT id, body FROM t ORDER BY id"):
            print("row", *r, flush=True)
        print("end", flush=True)
"#;

/// The follower (copy.db following FOLLOW_URL every 50 ms): `wait T` waits until txid T is
/// applied and prints `applied <txid> <applies> <resyncs>`; `error` waits until a poll
/// fails and prints `error <count> <last_error>` (the count read from the copy meanwhile);
/// `dump` prints the rows, then `end`.
const FOLLOWER: &str = r#"
import sys
from urllib.parse import quote
copy = os.path.abspath("copy.db")
url = quote(os.environ["FOLLOW_URL"], safe="")
conn = sqlite3.connect(f"file:{copy}?replica_follow={url}&replica_follow_interval=50", uri=True, timeout=10)
row = "SELECT local_txid, uploads, snapshots, last_error FROM replica_status() WHERE state = 'following'"
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "wait":
        want = int(cmd[1])
        r = wait_for("txid %d applied" % want,
                     lambda: (lambda r: r if r[0] >= want else None)(conn.execute(row).fetchone()), timeout=90,
                     retry_on=(sqlite3.OperationalError,))  # a hot journal, until it is played back
        print("applied", r[0], r[1], r[2], flush=True)
    elif cmd[0] == "error":
        e = wait_for("a failed poll", lambda: conn.execute(row).fetchone()[3], timeout=60)
        n = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        print("error", n, e.replace("\n", " "), flush=True)
    elif cmd[0] == "dump":
        for r in conn.execute("SELECT id, body FROM t ORDER BY id"):
            print("row", *r, flush=True)
        print("end", flush=True)
"#;

struct Site {
    tmp: TempDir,
    srv: S3Server,
    env: Vec<(String, String)>,
    db_url: String,
}

impl Site {
    /// The server, and the writer's litestream.yml with `lifecycle` before its `dbs:`.
    fn new(name: &str, lifecycle: &str) -> Site {
        let tmp = TempDir::new(name);
        let srv = s3server::start(&tmp.join("s3"), "bkt");
        let db_url = s3_url(srv.port, "rep/app.db");
        let mut env = s3_env(&srv, &db_url);
        env.retain(|(k, _)| k != "REPLICA_URL");
        env.push(("REPLICA_TEST_LIB".into(), load_path()));
        for d in ["writer", "follower"] {
            std::fs::create_dir_all(tmp.join(d)).unwrap();
        }
        let site = Site {
            tmp,
            srv,
            env,
            db_url,
        };
        site.configure(lifecycle);
        site
    }

    fn configure(&self, lifecycle: &str) {
        let yml = format!(
            "{lifecycle}dbs:\n  - path: app.db\n    replica:\n      url: {}\n",
            self.db_url
        );
        std::fs::write(self.tmp.join("writer/litestream.yml"), yml).unwrap();
    }

    fn dir(&self, d: &str) -> PathBuf {
        self.tmp.join(d)
    }

    fn writer(&self) -> Timed {
        let mut env = self.env.clone();
        env.push(("REPLICA_CONFIG".into(), "litestream.yml".into()));
        Timed::ready(&self.dir("writer"), WRITER, &env, LINE_LIMIT)
    }

    /// A follower process, following `url` (app.db's replica, or the same through a proxy).
    fn follower(&self, url: &str) -> Timed {
        let mut env = self.env.clone();
        env.push(("FOLLOW_URL".into(), url.into()));
        Timed::ready(&self.dir("follower"), FOLLOWER, &env, LINE_LIMIT)
    }

    /// The replica's LTX files on disk: (level, min, max).
    fn files(&self) -> Vec<(u8, u64, u64)> {
        let root = self.tmp.join("s3/bkt/rep/app.db");
        ltx_on_disk(&root, 16)
            .into_iter()
            .map(|f| (f.level, f.min, f.max))
            .collect()
    }

    /// Waits (60 s at most) until `ok` holds of the replica's files.
    fn wait_files(&self, what: &str, ok: impl Fn(&[(u8, u64, u64)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ok(&self.files()) {
            assert!(
                Instant::now() < deadline,
                "{what}: the replica holds {:?}",
                self.files()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn ask(p: &mut Timed, cmd: &str, want: &str) -> Vec<String> {
    p.ask(cmd, want, LINE_LIMIT)
}

/// Has the writer commit `n` rows; the txid the replica holds then.
fn rows(writer: &mut Timed, n: u64) -> u64 {
    num(&ask(writer, &format!("rows {n}"), "synced"), 0)
}

fn num(words: &[String], i: usize) -> u64 {
    words[i].parse().unwrap()
}

/// The `row` lines a process prints for `dump`.
fn dump_of(p: &mut Timed) -> Vec<String> {
    p.send("dump");
    let mut rows = Vec::new();
    loop {
        let l = p.line("row", LINE_LIMIT);
        if l == "end" {
            return rows;
        }
        rows.push(l);
    }
}

fn seeded(test: &str) -> Rng {
    let seed = seed_from_env("FOLLOW_SEED", |t| t % 100_000);
    eprintln!("{test}: seed {seed}; replay with FOLLOW_SEED={seed}");
    Rng::from_seed(seed)
}

#[test]
fn a_follower_that_fell_behind_resumes_from_a_compacted_file_or_takes_over_the_newest_state() {
    let mut rng = seeded("fell_behind");
    let site = Site::new(
        "follow-behind",
        "levels: [{interval: 250ms}]\nl0-retention: 250ms\n",
    );
    let mut writer = site.writer();
    let t1 = rows(&mut writer, 20 + rng.below(50));
    let mut follower = site.follower(&site.db_url);
    ask(&mut follower, &format!("wait {t1}"), "applied");
    follower.kill();

    // The files after t1 go into level 1, and level 0 lets them go.
    let mut t2 = t1;
    for _ in 0..2 + rng.below(3) {
        t2 = rows(&mut writer, 1 + rng.below(30));
    }
    site.wait_files(
        "level 0 letting go of the files after the follower's txid",
        |f| {
            !f.iter().any(|&(lv, min, _)| lv == 0 && min == t1 + 1)
                && f.iter()
                    .any(|&(lv, min, max)| lv == 1 && (min..=max).contains(&(t1 + 1)))
                && f.iter().any(|&(lv, _, max)| lv == 1 && max >= t2)
        },
    );
    let mut follower = site.follower(&site.db_url);
    let done = ask(&mut follower, &format!("wait {t2}"), "applied");
    assert_eq!(
        num(&done, 2),
        0,
        "a compacted file holds the next txid, yet the copy was taken over whole"
    );
    assert!(num(&done, 1) >= 1);
    assert_eq!(
        dump_of(&mut follower),
        dump_of(&mut writer),
        "the follower differs from the writer"
    );
    follower.kill();

    // Now a snapshot, and retention letting go of everything before it.
    writer.kill();
    site.configure("snapshot: {interval: 1h, retention: 1ms}\nlevels: [{interval: 250ms}]\nl0-retention: 250ms\n");
    let mut writer = site.writer();
    let t3 = rows(&mut writer, 1 + rng.below(30));
    let snap = num(&ask(&mut writer, "snapshot", "snapshot"), 0);
    let t4 = rows(&mut writer, 1 + rng.below(30));
    site.wait_files(
        "retention letting go of every file before the snapshot",
        |f| {
            !f.iter()
                .any(|&(lv, min, max)| lv < 9 && (min..=max).contains(&(t2 + 1)))
        },
    );
    let mut follower = site.follower(&site.db_url);
    let done = ask(&mut follower, &format!("wait {t4}"), "applied");
    assert_eq!(
        num(&done, 2),
        0,
        "past retention the snapshot (t3 {t3}, snapshot {snap}) is applied as a file, not by a resync"
    );
    assert_eq!(
        dump_of(&mut follower),
        dump_of(&mut writer),
        "the follower differs from the writer"
    );
}

#[test]
fn a_follower_survives_a_bucket_outage_serving_its_last_state() {
    let mut rng = seeded("outage");
    let site = Site::new("follow-outage", "");
    let proxy = FaultProxy::start(site.srv.port);
    let mut writer = site.writer();
    let t1 = rows(&mut writer, 10 + rng.below(40));
    let mut follower = site.follower(&s3_url(proxy.port, "rep/app.db"));
    ask(&mut follower, &format!("wait {t1}"), "applied");
    let before = dump_of(&mut follower);

    proxy.fail_all();
    let t2 = rows(&mut writer, 1 + rng.below(40));
    let failed = ask(&mut follower, "error", "error");
    assert_eq!(
        num(&failed, 0),
        before.len() as u64,
        "the copy changed during the outage"
    );
    assert!(failed[1..].join(" ").contains("500"), "{failed:?}");
    assert_eq!(dump_of(&mut follower), before);

    proxy.heal();
    ask(&mut follower, &format!("wait {t2}"), "applied");
    assert_eq!(
        dump_of(&mut follower),
        dump_of(&mut writer),
        "the follower differs from the writer"
    );
}

#[test]
fn two_processes_following_one_copy_take_turns_and_the_second_takes_over() {
    let mut rng = seeded("two_followers");
    let site = Site::new("follow-two", "");
    let mut writer = site.writer();
    let t1 = rows(&mut writer, 10 + rng.below(40));
    let mut first = site.follower(&site.db_url);
    ask(&mut first, &format!("wait {t1}"), "applied");
    // The second process reads the copy the first one keeps: it applies nothing itself.
    let mut second = site.follower(&site.db_url);
    let t2 = rows(&mut writer, 1 + rng.below(40));
    let seen = ask(&mut second, &format!("wait {t2}"), "applied");
    assert_eq!(
        (num(&seen, 1), num(&seen, 2)),
        (0, 0),
        "the second process applied or resynced: {seen:?}"
    );
    assert_eq!(dump_of(&mut second), dump_of(&mut writer));
    // The first goes away: the second takes over the polling.
    first.kill();
    let t3 = rows(&mut writer, 1 + rng.below(40));
    let took = ask(&mut second, &format!("wait {t3}"), "applied");
    assert!(
        num(&took, 1) >= 1 && num(&took, 2) == 0,
        "the second process did not take over: {took:?}"
    );
    assert_eq!(dump_of(&mut second), dump_of(&mut writer));
}

#[test]
fn a_follower_killed_in_the_middle_of_an_apply_leaves_a_hot_journal_never_a_torn_copy() {
    assert_eq!(
        replica::fault::FOLLOWER_POINTS,
        ["follow.after_journal", "follow.after_pages"]
    );
    for point in replica::fault::FOLLOWER_POINTS {
        killed_at(point);
    }
}

fn killed_at(point: &str) {
    let mut rng = seeded(point);
    let site = Site::new("follow-killed", "");
    let mut writer = site.writer();
    let t1 = rows(&mut writer, 10 + rng.below(40));
    let before = dump_of(&mut writer);
    let mut doomed = doomed_follower(&site, point);
    ask(&mut doomed, &format!("wait {t1}"), "applied");
    let t2 = rows(&mut writer, 20 + rng.below(40));
    wait_dead(&mut doomed);
    let copy = site.dir("follower").join("copy.db");
    assert!(
        journal_of(&copy).exists(),
        "killed after writing pages, the copy has no journal"
    );
    // A reader that may not write gets an error, never the half-applied pages.
    let o = read_only_sqlite3(&site, &copy, "SELECT id, body FROM t ORDER BY id");
    assert!(
        !o.status.success(),
        "a read-only reader read the copy with a hot journal:\n{}",
        stdout(&o)
    );
    // The next follower plays the journal back and goes on.
    let mut follower = site.follower(&site.db_url);
    ask(&mut follower, &format!("wait {t2}"), "applied");
    assert!(!journal_of(&copy).exists());
    assert_eq!(dump_of(&mut follower), dump_of(&mut writer));
    assert!(dump_of(&mut writer).len() > before.len());
}

/// A follower built with the crash points, killed at `point`'s second arrival (the first
/// is the copy's restore at open; the second, the next apply).
fn doomed_follower(site: &Site, point: &str) -> Timed {
    let mut env = site.env.clone();
    env.push(("FOLLOW_URL".into(), site.db_url.clone()));
    env.retain(|(k, _)| k != "REPLICA_TEST_LIB");
    env.push(("REPLICA_TEST_LIB".into(), fault_load_path()));
    env.push(("REPLICA_FAULT_POINT".into(), point.into()));
    env.push(("REPLICA_FAULT_AFTER".into(), "2".into()));
    Timed::ready(&site.dir("follower"), FOLLOWER, &env, LINE_LIMIT)
}

fn wait_dead(p: &mut Timed) {
    p.wait_exit(Duration::from_secs(60));
}

#[test]
fn a_process_that_reads_the_copy_takes_over_from_an_owner_killed_mid_apply() {
    for point in replica::fault::FOLLOWER_POINTS {
        let mut rng = seeded(point);
        let site = Site::new("follow-takeover", "");
        let mut writer = site.writer();
        let t1 = rows(&mut writer, 10 + rng.below(40));
        let mut doomed = doomed_follower(&site, point);
        ask(&mut doomed, &format!("wait {t1}"), "applied");
        let mut reader = site.follower(&site.db_url);
        ask(&mut reader, &format!("wait {t1}"), "applied");
        let t2 = rows(&mut writer, 30 + rng.below(40));
        wait_dead(&mut doomed);
        ask(&mut reader, &format!("wait {t2}"), "applied");
        assert_eq!(dump_of(&mut reader), dump_of(&mut writer), "{point}");
        let copy = site.dir("follower").join("copy.db");
        let o = read_only_sqlite3(&site, &copy, "PRAGMA integrity_check");
        assert_eq!(check(&o, "integrity_check").trim(), "ok", "{point}");
    }
}

/// Debian's `sqlite3` reading the follower's copy with `-readonly`, as a reader that may
/// not write (so cannot play a hot journal back) would.
fn read_only_sqlite3(site: &Site, copy: &std::path::Path, sql: &str) -> std::process::Output {
    let args = ["-readonly", copy.to_str().unwrap(), sql];
    run(SQLITE3, &args, &site.dir("follower"), &[], "")
}

fn journal_of(db: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("{}-journal", db.display()))
}
