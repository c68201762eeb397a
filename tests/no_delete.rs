//! No-delete mode (`retention: bucket-lifecycle`) against the in-process S3 server that
//! checks SigV4, here refusing DeleteObject and DeleteObjects with 403 AccessDenied as
//! credentials without the delete permission do. A python3 host writes for a few seconds
//! under compaction levels of 250 ms and 500 ms and a snapshot every second kept 2 s, so that
//! retention would delete several times over (the control test shows it does without the
//! mode): no delete is attempted, `replica_status()` shows no error, and every point
//! `replica_restore_points()` offers, and several timestamps, restore what was committed
//! there. Then the bucket's "lifecycle rule" removes the oldest objects straight from the
//! server's storage: the points that remain restore (the real `litestream restore` too, at
//! the latest and the oldest point left), and no point is offered that cannot.
//! Replay a failure with `NO_DELETE_SEED=<seed>`.

mod common;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::seeded::seed_from_env;
use common::*;
use s3env::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// Writes one commit at a time, each synced, until the bucket holds 4 snapshots and 2
/// level-2 files, or with `until-error` until `replica_status()` counts an upload error (a
/// deadline fails it); prints `state <txid> <digest>` for each synced state, then the
/// status.
const WRITER: &str = r#"
import hashlib, json, os, random, sys, time
seed, server = int(sys.argv[1]), sys.argv[2]
rng = random.Random(seed)
# The table exists before anything replicates the database: the first snapshot (which the
# uploader may take as soon as the database opens) then always holds it, so every point
# offered has a table to digest.
pre = sqlite3.connect("file:app.db?replica=off", uri=True, isolation_level=None)
assert pre.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
pre.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
pre.close()
db = sqlite3.connect("app.db", isolation_level=None)
assert db.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"

def digest(conn):
    h = hashlib.sha256()
    for i, v in conn.execute("SELECT id, v FROM t ORDER BY id"):
        h.update(b"%d:" % i + v)
    return h.hexdigest()

def files(level):
    d = os.path.join(server, "bkt", "app.db", "%04x" % level)
    return len([n for n in os.listdir(d) if n.endswith(".ltx")]) if os.path.isdir(d) else 0

def state():
    print("state", db.execute("SELECT replica_sync(20000)").fetchone()[0], digest(db))

state()
def done():
    if sys.argv[4] == "until-error":
        return db.execute("SELECT upload_errors FROM replica_status()").fetchone()[0] > 0
    return commits >= int(sys.argv[3]) and files(9) >= 4 and files(2) >= 2

deadline = time.time() + 90
commits = 0
while not done():
    assert time.time() < deadline, ("not done in time", files(9), files(2))
    db.execute("BEGIN")
    db.execute("INSERT INTO t(v) VALUES (?)", (rng.randbytes(100 + rng.randrange(3000)),))
    if rng.randrange(3) == 0:
        db.execute("DELETE FROM t WHERE id = (SELECT min(id) FROM t)")
    if rng.randrange(4) == 0:
        db.execute("UPDATE t SET v = ? WHERE id = (SELECT max(id) FROM t)", (rng.randbytes(50),))
    db.execute("COMMIT")
    state()
    commits += 1
for r in db.execute("SELECT coalesce(last_error, ''), upload_errors, files_deleted, delete_requests, compactions, snapshots FROM replica_status()"):
    print("status", json.dumps(r))
"#;

/// Restores every offered point (by txid) and a few of their timestamps from the replica's
/// URL (a process that does not replicate the database: no snapshot of its own meanwhile);
/// prints `point <txid> <digest>` and `at <timestamp> <txid> <digest>`.
const RESTORER: &str = r#"
import hashlib, sys
url, db = sys.argv[1], boot

def digest(path):
    c = sqlite3.connect("file:" + path + "?replica=off", uri=True)
    h = hashlib.sha256()
    for i, v in c.execute("SELECT id, v FROM t ORDER BY id"):
        h.update(b"%d:" % i + v)
    c.close()
    return h.hexdigest()

points = db.execute("SELECT max_txid, timestamp FROM replica_restore_points(?)", (url,)).fetchall()
for txid in sorted({p[0] for p in points}):
    got = db.execute("SELECT replica_restore(?, 'r.db', ?, 'overwrite')", (url, txid)).fetchone()[0]
    assert got == txid, (got, txid)
    print("point", txid, digest("r.db"))
for _, ts in points[:: max(1, len(points) // 6)]:
    got = db.execute("SELECT replica_restore(?, 'r.db', ?, 'overwrite')", (url, ts)).fetchone()[0]
    print("at", ts, got, digest("r.db"))
"#;

struct Bucket {
    dir: TempDir,
    srv: s3server::S3Server,
    config: PathBuf,
    seed: u64,
}

impl Bucket {
    /// A server refusing deletes and a litestream.yml with short levels, snapshots and
    /// retention; `mode` is the `retention:` line.
    fn new(name: &str, mode: &str) -> Bucket {
        let dir = TempDir::new(name);
        let srv = s3server::start_refusing_deletes(&dir.join("server"), "bkt");
        let config = dir.join("litestream.yml");
        let yaml = format!(
            "{mode}\nsnapshot: {{interval: 1s, retention: 2s}}\nlevels: [{{interval: 250ms}}, {{interval: 500ms}}]\nl0-retention: 250ms\ndbs:\n  - path: app.db\n    replica:\n      url: {}\n",
            s3_url(srv.port, "app.db")
        );
        std::fs::write(&config, yaml).unwrap();
        let seed = seed_from_env("NO_DELETE_SEED", |t| t % 100_000);
        Bucket {
            dir,
            srv,
            config,
            seed,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("REPLICA_CONFIG".into(), self.config.display().to_string()),
            ("AWS_ACCESS_KEY_ID".into(), self.srv.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.srv.secret_key.clone()),
            ("REPLICA_LOG".into(), "stderr".into()),
        ]
    }

    /// Runs `script` (with `args`) in a python3 host; its stdout, checked.
    fn python(&self, script: &str, args: &[&str], what: &str) -> std::process::Output {
        let env = self.env();
        let mut env = as_refs(&env);
        let lib = load_path();
        env.push(("REPLICA_TEST_LIB", &lib));
        let argv = format!("import sys; sys.argv = ['-', {}]\n", quoted(args));
        let out = run(
            PYTHON3,
            &["-"],
            self.dir.path(),
            &env,
            &format!("{PY_LOAD}{argv}{script}"),
        );
        check(&out, &format!("{what} (seed {})", self.seed));
        out
    }

    /// Writes at least `commits` commits and until the lifecycle has run; the digest of
    /// each synced state.
    fn write(&self, commits: u32) -> (BTreeMap<u64, String>, String) {
        let server = self.dir.join("server").display().to_string();
        let out = self.python(
            WRITER,
            &[
                &self.seed.to_string(),
                &server,
                &commits.to_string(),
                "lifecycle",
            ],
            "writing",
        );
        let text = stdout(&out);
        let states = text
            .lines()
            .filter_map(|l| l.strip_prefix("state "))
            .map(|l| {
                let (txid, digest) = l.split_once(' ').unwrap();
                (txid.parse().unwrap(), digest.to_string())
            })
            .collect();
        let status = text
            .lines()
            .find_map(|l| l.strip_prefix("status "))
            .unwrap_or_else(|| panic!("no status (seed {}):\n{text}", self.seed))
            .to_string();
        (states, status)
    }

    /// Restores every offered point and a few timestamps, each compared with the state
    /// committed there; the points.
    fn restore_every_point(&self, states: &BTreeMap<u64, String>) -> BTreeSet<u64> {
        let url = s3_url(self.srv.port, "app.db");
        let out = self.python(RESTORER, &[&url], "restoring");
        let text = stdout(&out);
        let seed = self.seed;
        let mut points = BTreeSet::new();
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            let (txid, digest) = match words[..] {
                ["point", txid, digest] => (txid, digest),
                ["at", _, txid, digest] => (txid, digest),
                _ => continue,
            };
            let txid: u64 = txid.parse().unwrap();
            // A snapshot of a database idle over a snapshot boundary is the next txid.
            let want = states
                .get(&txid)
                .or_else(|| states.get(&(txid - 1)))
                .unwrap_or_else(|| panic!("txid {txid} was never synced (seed {seed}):\n{text}"));
            assert_eq!(
                digest, want,
                "{line}: not the state of txid {txid} (seed {seed})"
            );
            if words[0] == "point" {
                points.insert(txid);
            }
        }
        assert!(text.lines().any(|l| l.starts_with("at ")), "{text}");
        points
    }

    /// `litestream restore` of the replica (at `txid`, else the latest) into `out`.
    fn litestream_restore(&self, out: &Path, txid: Option<u64>) {
        let url = s3_url(self.srv.port, "app.db");
        let mut cmd = std::process::Command::new(litestream_bin());
        cmd.args(["restore", "-o", out.to_str().unwrap()]);
        if let Some(t) = txid {
            cmd.args(["-txid", &format!("{t:016x}")]);
        }
        cmd.arg(&url)
            .current_dir(self.dir.path())
            .env_remove("AWS_CA_BUNDLE")
            .env("AWS_ACCESS_KEY_ID", &self.srv.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.srv.secret_key)
            .env("AWS_REGION", "us-east-1");
        let o = run_command(cmd, "", std::time::Duration::from_secs(120));
        check(
            &o,
            &format!("litestream restore {txid:?} (seed {})", self.seed),
        );
    }

    /// The digest the writer prints, of the database at `db`.
    fn digest_of(&self, db: &Path) -> String {
        let script = format!(
            "import hashlib, sqlite3\nc = sqlite3.connect('file:{}?immutable=1', uri=True)\nh = hashlib.sha256()\nfor i, v in c.execute('SELECT id, v FROM t ORDER BY id'):\n    h.update(b'%d:' % i + v)\nprint(h.hexdigest())\n",
            db.display()
        );
        check(&python(&script, self.dir.path(), &[]), "digest")
            .trim()
            .to_string()
    }

    /// The replica's LTX objects in the server's storage.
    fn objects(&self) -> Vec<PathBuf> {
        let root = self.dir.join("server/bkt/app.db");
        let mut out = Vec::new();
        for level in std::fs::read_dir(&root).unwrap() {
            let level = level.unwrap().path();
            if !level.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&level).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "ltx") {
                    out.push(f);
                }
            }
        }
        out
    }
}

fn quoted(args: &[&str]) -> String {
    args.iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The last txid an LTX file holds, from its name (`<min>-<max>.ltx`, in hex).
fn max_txid_of(p: &Path) -> u64 {
    let name = p.file_stem().unwrap().to_string_lossy().to_string();
    let (_, max) = name.split_once('-').unwrap();
    u64::from_str_radix(max, 16).unwrap()
}

fn modified(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// `[last_error, upload_errors, files_deleted, delete_requests, compactions, snapshots]`.
fn status_numbers(status: &str) -> (String, Vec<u64>) {
    let inner = status.trim_start_matches('[').trim_end_matches(']');
    let (error, rest) = inner.split_once(", ").unwrap();
    let numbers = rest.split(", ").map(|n| n.parse().unwrap()).collect();
    (error.trim_matches('"').to_string(), numbers)
}

#[test]
fn no_delete_is_attempted_and_every_offered_point_restores() {
    let b = Bucket::new("no-delete", "retention: bucket-lifecycle");
    let (states, status) = b.write(60);
    let (error, n) = status_numbers(&status);
    assert_eq!(error, "", "seed {}", b.seed);
    assert_eq!(
        &n[..3],
        &[0, 0, 0],
        "upload_errors, files_deleted, delete_requests"
    );
    assert!(n[3] > 3 && n[4] >= 4, "compactions, snapshots: {status}");
    assert_eq!(b.srv.delete_attempts.load(Ordering::SeqCst), 0);
    // Retention would have deleted; the bucket holds every level-0 file still.
    let level0 = b
        .objects()
        .iter()
        .filter(|p| p.parent().unwrap().ends_with("0000"))
        .count();
    assert!(
        level0 + 1 >= states.len(),
        "{level0} level-0 files for {} states",
        states.len()
    );
    let points = b.restore_every_point(&states);
    let synced: BTreeSet<u64> = states.keys().copied().collect();
    let lost: Vec<&u64> = synced.difference(&points).collect();
    assert!(
        lost.is_empty(),
        "synced txids that are no restore point: {lost:?} (seed {})",
        b.seed
    );
    assert_eq!(b.srv.delete_attempts.load(Ordering::SeqCst), 0);
}

#[test]
fn without_it_the_same_settings_delete() {
    let b = Bucket::new("no-delete-control", "");
    let env = b.env();
    let mut env = as_refs(&env);
    let lib = load_path();
    env.push(("REPLICA_TEST_LIB", &lib));
    let server = b.dir.join("server").display().to_string();
    let script = format!(
        "{PY_LOAD}import sys; sys.argv = ['-', {}]\n{WRITER}",
        quoted(&[&b.seed.to_string(), &server, "0", "until-error"])
    );
    let out = run(PYTHON3, &["-"], b.dir.path(), &env, &script);
    let text = stdout(&out);
    assert!(
        b.srv.delete_attempts.load(Ordering::SeqCst) > 0,
        "retention never tried to delete, so the test above proves nothing:\n{text}\n{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
}

#[test]
fn after_an_age_rule_removed_the_oldest_objects_the_remaining_points_restore() {
    let b = Bucket::new("no-delete-expired", "retention: bucket-lifecycle");
    let (mut states, status) = b.write(60);
    // The rule: everything written before the middle of the run goes, but not the
    // second-newest snapshot (the run stops right after its fourth snapshot, so a cut in the
    // middle could leave only the newest one, and no earlier point to check).
    let objects = b.objects();
    let mut times: Vec<SystemTime> = objects.iter().map(|p| modified(p)).collect();
    times.sort();
    let mut snapshots: Vec<(SystemTime, u64)> = objects
        .iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("0009")))
        .map(|p| (modified(p), max_txid_of(p)))
        .collect();
    snapshots.sort();
    let (kept_snapshot_at, kept_snapshot_txid) = snapshots[snapshots.len() - 2];
    let cutoff = times[times.len() / 2].min(kept_snapshot_at);
    let mut expired = 0;
    for p in &objects {
        if modified(p) < cutoff {
            std::fs::remove_file(p).unwrap();
            expired += 1;
        }
    }
    assert!(expired > 10, "{expired} objects expired");
    let points = b.restore_every_point(&states);
    assert!(!points.is_empty());
    let oldest_synced = *states.keys().next().unwrap();
    assert!(
        !points.contains(&oldest_synced),
        "txid {oldest_synced} is offered though its files expired"
    );
    // Every state from the kept snapshot on is still there.
    let newest: Vec<u64> = states
        .range(kept_snapshot_txid..)
        .map(|(t, _)| *t)
        .rev()
        .collect();
    assert!(newest.len() >= 2, "{kept_snapshot_txid}: {states:?}");
    assert!(
        newest.iter().all(|t| points.contains(t)),
        "from the snapshot at txid {kept_snapshot_txid} on, not all offered: {points:?} (seed {}; status {status})",
        b.seed
    );
    // The real litestream restores the latest state and the oldest point left.
    let oldest_point = *points.iter().next().unwrap();
    for (txid, want) in [(None, newest[0]), (Some(oldest_point), oldest_point)] {
        let out = b.dir.join(&format!("ls-{want}.db"));
        b.litestream_restore(&out, txid);
        let state = states
            .get(&want)
            .or_else(|| states.get(&(want - 1)))
            .unwrap();
        assert_eq!(&b.digest_of(&out), state, "litestream restore of {want}");
    }
    // A new process lists the replica, goes on writing, deletes nothing and fails nothing.
    let (more, status) = b.write(5);
    let (error, n) = status_numbers(&status);
    assert_eq!(
        (error.as_str(), &n[..3]),
        ("", &[0, 0, 0][..]),
        "seed {}",
        b.seed
    );
    states.extend(more);
    let again = b.restore_every_point(&states);
    assert!(again.iter().next_back() == states.keys().next_back());
    assert_eq!(b.srv.delete_attempts.load(Ordering::SeqCst), 0);
}
