//! Followers (read replicas): a process opens `file:/abs/follower.db?replica_follow=<replica
//! URL>&replica_follow_interval=<ms>`; a missing follower.db is restored first, then a
//! background thread applies the replica's new transactions under SQLite's locking. A writer
//! (an ordinary libreplica process, own directory) replicates app.db; a follower process
//! (another directory, as if another host) follows it. What it proves:
//!
//! - a follower keeps up with a seeded transfer workload (S3 server checking SigV4, and a
//!   directory replica), while 8 reader threads on their own connections always see a
//!   consistent snapshot (the sum of balances never changes, the row count never goes back),
//!   and ends equal to the writer (`.dump` of both files); the lag it reports is printed;
//! - every write to a follower fails with "readonly", leaving the data as it was, and the
//!   follower writes nothing to the replica;
//! - a follower restarted on its existing file resumes (same file, not restored again) and
//!   catches up with what was written meanwhile;
//! - a corrupted new LTX file is refused: `last_error` names it, `local_txid` stays, and the
//!   old content stays readable and intact (and `lag_ms` stays 0: nothing was applied).
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
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Accounts the writer starts with, 1000 each: every snapshot sums to `ACCOUNTS * 1000`.
const ACCOUNTS: u64 = 50;
/// How long a process may take to answer one command (the waits inside are shorter).
const LINE_LIMIT: Duration = Duration::from_secs(180);

fn seed(test: &str) -> u64 {
    let seed = seed_from_env("FOLLOW_SEED", |t| t % 100_000);
    eprintln!("{test}: seed {seed}; replay with FOLLOW_SEED={seed}");
    seed
}

// -- the replica and the two hosts' directories ------------------------------------------

/// A scratch directory (canonical, so the paths processes print match) with `writer/`,
/// `follower/` and the replica: the in-process S3 server (app.db's replica `bkt/rep/app.db`)
/// or a directory (`file://<dir>`, app.db's replica `<dir>/app.db`).
struct Site {
    _tmp: TempDir,
    root: PathBuf,
    /// The writer's REPLICA_URL (a location), and app.db's replica, which the follower follows.
    location: String,
    db_url: String,
    /// Where the replica lies on disk; app.db's level directories, and their names' radix.
    store: PathBuf,
    levels: (PathBuf, u32),
    /// The keys (S3 only), the extension, its log on stderr.
    env: Vec<(String, String)>,
    secret: Option<String>,
}

/// An LTX file of app.db's replica on disk: level, min and max txid, path.
type LtxFile = (u8, u64, u64, PathBuf);

impl Site {
    fn new(name: &str, s3: bool) -> Site {
        let tmp = TempDir::new(name);
        let root = tmp.path().canonicalize().unwrap();
        for d in ["writer", "follower"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let mut env = vec![
            ("REPLICA_TEST_LIB".to_string(), load_path()),
            ("REPLICA_LOG".to_string(), "stderr".to_string()),
        ];
        let (store, location, db_url, levels, secret);
        if s3 {
            // Its thread lives as long as the test process.
            let srv = s3server::start(&root.join("server"), "bkt");
            store = root.join("server");
            (location, db_url) = (
                s3env::s3_url(srv.port, "rep"),
                s3env::s3_url(srv.port, "rep/app.db"),
            );
            levels = (store.join("bkt/rep/app.db"), 16);
            env.push(("AWS_ACCESS_KEY_ID".into(), srv.access_key.clone()));
            env.push(("AWS_SECRET_ACCESS_KEY".into(), srv.secret_key.clone()));
            env.push(("AWS_REGION".into(), "us-east-1".into()));
            secret = Some(srv.secret_key.clone());
        } else {
            store = root.join("replica");
            location = format!("file://{}", store.display());
            db_url = format!("{location}/app.db");
            levels = (store.join("app.db/ltx"), 10);
            secret = None;
        }
        Site {
            _tmp: tmp,
            root,
            location,
            db_url,
            store,
            levels,
            env,
            secret,
        }
    }

    fn dir(&self, host: &str) -> PathBuf {
        self.root.join(host)
    }

    fn ltx_files(&self) -> Vec<LtxFile> {
        (ltx_on_disk(&self.levels.0, self.levels.1).into_iter())
            .map(|f| (f.level, f.min, f.max, f.path))
            .collect()
    }
}

/// Every file under `root`, with its size and modification time (ns), sorted.
fn files_under(root: &Path) -> Vec<(PathBuf, u64, i64)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else {
                let mtime = m.mtime() * 1_000_000_000 + m.mtime_nsec();
                out.push((e.path(), m.len(), mtime));
            }
        }
    }
    out.sort();
    out
}

/// Flips 16 bytes in the middle of `path`'s page data (past the 100-byte header, before
/// the 16-byte trailer).
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 140,
        "{} is too small to corrupt",
        path.display()
    );
    let mid = 100 + (bytes.len() - 116) / 2 - 8;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xA5;
    }
    std::fs::write(path, bytes).unwrap();
}

// -- the writer --------------------------------------------------------------------------

/// The writer (after `PY_LOAD`): app.db in WAL mode with `accounts` (ACCOUNTS rows of 1000,
/// each padded to 600 bytes so that the two rows of a transfer are mostly on different
/// pages: a reader shown half an apply sees a wrong sum) and `filler`; prints `ready <txid>` once synced, then per stdin line:
/// - `work N SEED`: N seeded transfers (some add an account with 0, some filler rows), paced
///   over a few seconds, `replica_sync` now and then; `done <txid>`;
/// - `one`: one transfer plus filler rows, synced; `done <txid>`;
/// - `quit`: `bye`.
const PY_WRITER: &str = r#"
import random, sys, time
db = sqlite3.connect("app.db", isolation_level=None)
assert db.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
db.execute("BEGIN")
db.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER, pad BLOB)")
db.execute("CREATE TABLE filler(id INTEGER PRIMARY KEY, data BLOB)")
db.executemany("INSERT INTO accounts(balance, pad) VALUES (?, randomblob(600))", [(1000,)] * @ACCOUNTS@)
db.execute("COMMIT")

def out(*a):
    print(*a, flush=True)

def sync():
    return db.execute("SELECT replica_sync(10000)").fetchone()[0]

def transaction(rng, grow):
    n = db.execute("SELECT max(id) FROM accounts").fetchone()[0]
    a, b = rng.sample(range(1, n + 1), 2)
    amount = rng.randrange(1, 500)
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
    db.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
    if grow < 0.05:
        db.execute("INSERT INTO accounts(balance, pad) VALUES (0, randomblob(600))")
    elif grow < 0.10:
        rows = [(rng.randbytes(rng.randrange(100, 3000)),) for _ in range(rng.randrange(5, 40))]
        db.executemany("INSERT INTO filler(data) VALUES (?)", rows)
    db.execute("COMMIT")

out("ready", sync())
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "work":
        rng = random.Random(int(args[1]))
        next_sync = rng.randrange(5, 30)
        for i in range(int(args[0])):
            transaction(rng, rng.random())
            time.sleep(rng.random() * 0.02)  # pacing: the workload spans many follower polls
            if i == next_sync:
                sync()
                next_sync += rng.randrange(5, 30)
        out("done", sync())
    elif cmd == "one":
        transaction(random.Random(1), 0.07)
        out("done", sync())
    elif cmd == "quit":
        break
db.close()
out("bye")
"#;

/// A running process steered line by line, each answer awaited with a deadline.
struct Host {
    host: procs::Timed,
    what: &'static str,
}

impl Host {
    /// Starts `body` (after `PY_LOAD`) in the site's directory `what` with `env`.
    fn spawn(site: &Site, what: &'static str, body: &str, env: &[(String, String)]) -> Host {
        let child = spawn_python_loaded(body, &site.dir(what), &s3env::as_refs(env));
        Host {
            host: procs::Timed::new(child),
            what,
        }
    }

    /// The rest of the next line, which must start with `want`.
    fn expect(&mut self, want: &str) -> String {
        let line = self.host.line(want, LINE_LIMIT);
        match line.strip_prefix(want) {
            Some(rest) => rest.trim().to_string(),
            None => panic!("the {} answered {line:?}, not `{want} …`", self.what),
        }
    }

    fn ask(&mut self, cmd: &str, want: &str) -> String {
        self.host.send(cmd);
        self.expect(want)
    }

    /// `quit`, `bye`, and the process gone (successfully) within 30 s.
    fn quit(mut self) {
        self.ask("quit", "bye");
        self.host.wait_exit(Duration::from_secs(30));
        let status = self.host.child.wait().unwrap();
        assert!(status.success(), "the {} exited with {status}", self.what);
    }
}

/// The writer, once it printed `ready`, and the txid it synced then.
fn writer(site: &Site) -> (Host, u64) {
    let body = PY_WRITER.replace("@ACCOUNTS@", &ACCOUNTS.to_string());
    let mut env = site.env.clone();
    env.push(("REPLICA_URL".into(), site.location.clone()));
    env.push(("REPLICA_SYNC_INTERVAL".into(), "100ms".into()));
    let mut w = Host::spawn(site, "writer", &body, &env);
    let txid = w.expect("ready").parse().unwrap();
    (w, txid)
}

fn work(w: &mut Host, n: u64, rng: &mut Rng) -> u64 {
    let cmd = format!("work {n} {}", rng.below(1 << 30));
    w.ask(&cmd, "done").parse().unwrap()
}

// -- the follower ------------------------------------------------------------------------

/// The follower (after `PY_LOAD`): opens follower.db following FOLLOW_URL every
/// FOLLOW_INTERVAL ms, prints `opened <seconds>`, then per stdin line (a status is
/// `col=value` fields, tab-separated, of its `replica_status()` row):
/// - `status`: `status <status>`;
/// - `wait-txid T SECS` / `wait-error SECS` / `wait-polls K SECS`: until local_txid >= T,
///   last_error is set, or K more GET/LIST requests were made; `ok <status>` or
///   `timeout <status>`;
/// - `readers N SUM`: N reader threads and a status sampler start; `started`;
/// - `stop`: `stopped queries=… violations=… errors=… applies=… lags=… first=…`;
/// - `write`: writes through the URI connection, a second URI one and a plain one; `write
///   <outcome>\t…`;
/// - `read`: `read count=… sum=… integrity=… journal=…` on a new plain connection;
/// - `quit`: `bye`.
const PY_FOLLOWER: &str = r#"
import statistics, sys, threading, time, urllib.parse
path = os.path.abspath("follower.db")
uri = "file:%s?replica_follow=%s&replica_follow_interval=%s" % (
    urllib.parse.quote(path), urllib.parse.quote(os.environ["FOLLOW_URL"], safe=""),
    os.environ["FOLLOW_INTERVAL"])
t0 = time.monotonic()
main = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)

def out(*a):
    print(*a, flush=True)

out("opened", "%.3f" % (time.monotonic() - t0))
COLS = ("state", "local_txid", "replicated_txid", "lag_ms", "last_error", "get_requests",
        "list_requests", "replica_url", "uploads", "snapshots")
SQL = "SELECT %s FROM replica_status() WHERE path = ?" % ", ".join(COLS)
ctl = sqlite3.connect(":memory:")

def status(con):
    rows = con.execute(SQL, (path,)).fetchall()
    if len(rows) == 1:
        return dict(zip(COLS, rows[0]))
    every = con.execute("SELECT path, state FROM replica_status()").fetchall()
    return {"state": "%d rows for %s; all: %r" % (len(rows), path, every)}

def show(st):
    return "\t".join("%s=%s" % (k, str(st.get(k)).replace("\t", " ").replace("\n", " ")) for k in COLS)

def wait(cond, secs):
    deadline = time.monotonic() + secs
    while True:
        st = status(ctl)
        if cond(st):
            return "ok\t" + show(st)
        if time.monotonic() > deadline:
            return "timeout\t" + show(st)
        time.sleep(0.02)

def requests(st):
    return (st.get("get_requests") or 0) + (st.get("list_requests") or 0)

stop = threading.Event()
threads, stats, sampled = [], [], {}

def reader(st, expect):
    con = sqlite3.connect(path, timeout=10, isolation_level=None)
    last = 0
    while not stop.is_set() and len(st["errors"]) < 100:
        try:
            n, s = con.execute("SELECT count(*), sum(balance) FROM accounts").fetchone()
        except sqlite3.Error as e:
            st["errors"].append("%s: %s" % (type(e).__name__, e))
            continue
        st["queries"] += 1
        if s != expect or n < last:
            st["violations"].append("count %d sum %s after count %d" % (n, s, last))
        last = max(last, n)
    con.close()

def sampler():
    con = sqlite3.connect(":memory:")
    while not stop.is_set():
        st = status(con)
        if st.get("local_txid") is not None and st["local_txid"] not in sampled:
            sampled[st["local_txid"]] = st.get("lag_ms")
        time.sleep(0.01)

def stopped():
    stop.set()
    for t in threads:
        t.join()
    lags = sorted(v for v in sampled.values() if v is not None)
    lag = "%d/%d/%d" % (lags[0], statistics.median(lags), lags[-1]) if lags else "none"
    bad = [x for st in stats for x in st["violations"] + st["errors"]]
    return "\t".join([
        "queries=" + ",".join(str(st["queries"]) for st in stats),
        "violations=%d" % sum(len(st["violations"]) for st in stats),
        "errors=%d" % sum(len(st["errors"]) for st in stats),
        "applies=%d" % len(sampled), "lags=" + lag, "first=" + (bad[0] if bad else "none")])

def attempt(con, sql):
    try:
        con.execute(sql)
        return "ok: " + sql
    except sqlite3.Error as e:
        return "%s: %s" % (type(e).__name__, e)

def writes():
    second = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
    plain = sqlite3.connect(path, timeout=10, isolation_level=None)
    got = [attempt(main, "INSERT INTO accounts(balance) VALUES (1)"),
           attempt(second, "UPDATE accounts SET balance = balance + 1"),
           attempt(plain, "INSERT INTO accounts(balance) VALUES (1)"),
           attempt(plain, "CREATE TABLE intruder(x)")]
    second.close()
    plain.close()
    return "\t".join(got)

def read():
    con = sqlite3.connect(path, timeout=10, isolation_level=None)
    n, s = con.execute("SELECT count(*), sum(balance) FROM accounts").fetchone()
    ok = con.execute("PRAGMA integrity_check").fetchone()[0]
    journal = con.execute("PRAGMA journal_mode").fetchone()[0]
    con.close()
    return "count=%d\tsum=%s\tintegrity=%s\tjournal=%s" % (n, s, ok, journal)

for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "status":
        out("status\t" + show(status(ctl)))
    elif cmd == "wait-txid":
        out(wait(lambda st: (st.get("local_txid") or 0) >= int(args[0]), float(args[1])))
    elif cmd == "wait-error":
        out(wait(lambda st: st.get("last_error") is not None, float(args[0])))
    elif cmd == "wait-polls":
        base = requests(status(ctl))
        out(wait(lambda st: requests(st) >= base + int(args[0]), float(args[1])))
    elif cmd == "readers":
        for i in range(int(args[0])):
            stats.append({"queries": 0, "violations": [], "errors": []})
            threads.append(threading.Thread(target=reader, args=(stats[-1], int(args[1]))))
        threads.append(threading.Thread(target=sampler))
        for t in threads:
            t.start()
        out("started")
    elif cmd == "stop":
        out("stopped\t" + stopped())
    elif cmd == "write":
        out("write\t" + writes())
    elif cmd == "read":
        out("read\t" + read())
    elif cmd == "quit":
        break
main.close()
out("bye")
"#;

/// `col=value` fields, tab-separated, as the follower prints them (`None` for NULL).
struct Fields(BTreeMap<String, String>);

impl Fields {
    fn parse(line: &str) -> Fields {
        Fields(
            line.split('\t')
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn get(&self, col: &str) -> &str {
        self.0
            .get(col)
            .unwrap_or_else(|| panic!("no {col} in {:?}", self.0))
    }

    fn int(&self, col: &str) -> u64 {
        let v = self.get(col);
        v.parse()
            .unwrap_or_else(|_| panic!("{col} is {v:?}, not a number: {:?}", self.0))
    }

    /// Asserts that `col` shows `want`.
    fn is(&self, col: &str, want: &str) {
        assert_eq!(self.get(col), want, "{col} in {:?}", self.0);
    }

    fn is_int(&self, col: &str, want: u64) {
        assert_eq!(self.int(col), want, "{col} in {:?}", self.0);
    }
}

/// The follower, once it printed `opened`, and how long its open took.
fn follower(site: &Site, interval_ms: u64) -> (Host, f64) {
    let mut env = site.env.clone();
    env.push(("FOLLOW_URL".into(), site.db_url.clone()));
    env.push(("FOLLOW_INTERVAL".into(), interval_ms.to_string()));
    let mut f = Host::spawn(site, "follower", PY_FOLLOWER, &env);
    let secs = f.expect("opened").parse().unwrap();
    (f, secs)
}

/// Asks one of the follower's `wait-…` commands; panics with its status on a timeout.
fn wait(f: &mut Host, cmd: &str) -> Fields {
    f.host.send(cmd);
    let line = f.host.line(cmd, LINE_LIMIT);
    match line.strip_prefix("ok\t") {
        Some(rest) => Fields::parse(rest),
        None => panic!("`{cmd}` did not happen in time: {line}"),
    }
}

fn fields(f: &mut Host, cmd: &str, want: &str) -> Fields {
    Fields::parse(&f.ask(cmd, want))
}

fn follower_db(site: &Site) -> PathBuf {
    site.dir("follower").join("follower.db")
}

/// `.dump` of the writer's app.db and of follower.db (both processes gone) are equal.
fn assert_same_content(site: &Site) {
    let want = dump(&site.dir("writer").join("app.db"));
    let got = dump(&follower_db(site));
    assert!(
        want.contains("CREATE TABLE accounts"),
        "the writer's dump: {want}"
    );
    assert!(
        want == got,
        "the follower's content differs from the writer's:\nwriter:\n{want}\nfollower:\n{got}"
    );
}

/// A reader's view at the end: the sum of a fresh connection, integrity, journal mode.
fn assert_readable(read: &Fields) {
    read.is_int("sum", ACCOUNTS * 1000);
    read.is("integrity", "ok");
    read.is("journal", "delete");
}

/// What the readers saw (`stop`'s answer): no violation, no error, progress in each, and
/// applies while they ran.
fn assert_readers_held(stats: &Fields, readers: usize) {
    stats.is_int("violations", 0);
    stats.is_int("errors", 0);
    let queries: Vec<u64> = stats
        .get("queries")
        .split(',')
        .map(|q| q.parse().unwrap())
        .collect();
    assert_eq!(queries.len(), readers, "{:?}", stats.0);
    assert!(
        queries.iter().all(|&q| q >= 20),
        "a reader made (almost) no progress: {queries:?}"
    );
    assert!(
        stats.int("applies") >= 3,
        "too few applies while readers ran: {:?}",
        stats.0
    );
}

// -- the tests ---------------------------------------------------------------------------

/// The writer's seeded workload of `txns` transfers while a follower polling every 100 ms
/// serves `readers` reader threads; checks what the module comment says.
fn follow_a_workload(name: &str, s3: bool, txns: u64, readers: usize) {
    let seed = seed(name);
    let mut rng = Rng::from_seed(seed);
    let site = Site::new(name, s3);
    let (mut w, first) = writer(&site);
    let (mut f, opened) = follower(&site, 100);
    eprintln!("{name}: the follower restored txid {first} in {opened} s");
    f.ask(&format!("readers {readers} {}", ACCOUNTS * 1000), "started");
    let last = work(&mut w, txns, &mut rng);
    let caught = wait(&mut f, &format!("wait-txid {last} 60"));
    let stats = fields(&mut f, "stop", "stopped");
    let read = fields(&mut f, "read", "read");
    eprintln!(
        "{name}: lag ms min/median/max over the {} applies seen: {}; caught up: {:?}; readers: {:?}",
        stats.get("applies"),
        stats.get("lags"),
        caught.0,
        stats.0
    );
    f.quit();
    w.quit();
    assert_readers_held(&stats, readers);
    caught.is("state", "following");
    caught.is_int("local_txid", last);
    caught.is("last_error", "None");
    assert!(caught.int("replicated_txid") >= last, "{:?}", caught.0);
    assert!(caught.int("lag_ms") < 60_000, "{:?}", caught.0);
    if let Some(secret) = &site.secret {
        assert!(
            !caught.get("replica_url").contains(secret.as_str()),
            "{:?}",
            caught.0
        );
    }
    assert_readable(&read);
    assert_same_content(&site);
}

#[test]
fn a_follower_keeps_up_with_a_writer_and_readers_always_see_consistent_snapshots() {
    follow_a_workload("follow-s3", true, 300, 8);
}

#[test]
fn a_file_replica_is_followed_too() {
    follow_a_workload("follow-dir", false, 100, 4);
}

#[test]
fn a_write_to_a_follower_fails_with_a_read_only_error() {
    seed("follow-readonly");
    let site = Site::new("follow-readonly", true);
    let (w, txid) = writer(&site);
    w.quit();
    let before = files_under(&site.store);
    let (mut f, _) = follower(&site, 100);
    wait(&mut f, &format!("wait-txid {txid} 30")).is("state", "following");
    let outcomes = f.ask("write", "write");
    let read = fields(&mut f, "read", "read");
    let after = fields(&mut f, "status", "status");
    f.quit();
    for o in outcomes.split('\t') {
        assert!(
            o.starts_with("OperationalError") && o.contains("readonly"),
            "a write to the follower did not fail as read-only: {o}\nall: {outcomes}"
        );
    }
    read.is_int("count", ACCOUNTS);
    assert_readable(&read);
    after.is_int("local_txid", txid);
    assert_same_content(&site);
    let now = files_under(&site.store);
    assert!(
        before == now,
        "the follower changed the replica:\nbefore: {before:#?}\nafter: {now:#?}"
    );
}

#[test]
fn a_follower_restarts_and_resumes() {
    let seed = seed("follow-restart");
    let mut rng = Rng::from_seed(seed);
    let site = Site::new("follow-restart", true);
    let (mut w, _) = writer(&site);
    let first = work(&mut w, 40, &mut rng);
    let (mut f, _) = follower(&site, 100);
    wait(&mut f, &format!("wait-txid {first} 30"));
    f.quit();
    let inode = std::fs::metadata(follower_db(&site)).unwrap().ino();
    let old = dump(&follower_db(&site));
    let last = work(&mut w, 60, &mut rng);
    w.quit();
    assert!(
        last > first,
        "the writer's txid did not advance ({first} → {last})"
    );

    let (mut f, opened) = follower(&site, 100);
    let at_open = fields(&mut f, "status", "status");
    let caught = wait(&mut f, &format!("wait-txid {last} 60"));
    let read = fields(&mut f, "read", "read");
    f.quit();
    eprintln!(
        "restarted: opened in {opened} s, then {:?}; caught up {:?}",
        at_open.0, caught.0
    );
    caught.is_int("local_txid", last);
    assert_readable(&read);
    assert_ne!(old, dump(&follower_db(&site)), "nothing new was applied");
    assert_same_content(&site);
    // A follower's row counts the times it took the replica's state over whole in
    // `snapshots` (and its applies in `uploads`): resuming takes none.
    caught.is_int("snapshots", 0);
    let now = std::fs::metadata(follower_db(&site)).unwrap().ino();
    assert_eq!(
        inode, now,
        "follower.db was replaced (restored from scratch?), not resumed"
    );
}

#[test]
fn a_corrupted_new_file_is_refused_and_the_follower_keeps_serving() {
    let seed = seed("follow-corrupt");
    let mut rng = Rng::from_seed(seed);
    let site = Site::new("follow-corrupt", true);
    let (mut w, _) = writer(&site);
    let old_txid = work(&mut w, 20, &mut rng);
    let (mut f, _) = follower(&site, 100);
    wait(&mut f, &format!("wait-txid {old_txid} 30"));
    f.quit();
    let old = dump(&follower_db(&site));
    let new_txid = w.ask("one", "done").parse::<u64>().unwrap();
    w.quit();
    let corrupted = corrupt_the_new_files(&site, old_txid, new_txid);
    let newer = dump(&site.dir("writer").join("app.db"));
    assert_ne!(old, newer, "the new transaction changed nothing");

    let (mut f, _) = follower(&site, 100);
    let refused = wait(&mut f, "wait-error 30");
    let later = wait(&mut f, "wait-polls 3 30");
    let read = fields(&mut f, "read", "read");
    f.quit();
    eprintln!("refused: {:?}\nafter more polls: {:?}", refused.0, later.0);
    let error = later.get("last_error");
    assert!(
        corrupted.iter().any(|name| error.contains(name.as_str())),
        "last_error names no corrupted file of {corrupted:?}: {error}"
    );
    refused.is_int("local_txid", old_txid);
    later.is_int("local_txid", old_txid);
    assert_readable(&read);
    assert!(
        old == dump(&follower_db(&site)),
        "the follower's content changed after the refusal"
    );
    // This process applied nothing: no lag to show yet.
    later.is("lag_ms", "0");
}

/// Corrupts the level-0 file of the one transaction after `old` (and any compacted file,
/// levels 1–8, that holds it, so no other way leads past it); returns their names.
fn corrupt_the_new_files(site: &Site, old: u64, new: u64) -> Vec<String> {
    let files = site.ltx_files();
    let level0: Vec<_> = files.iter().filter(|f| f.0 == 0 && f.2 > old).collect();
    assert!(
        level0.len() == 1 && level0[0].2 == new && level0[0].1 > old,
        "expected one level-0 file after txid {old}, ending at {new}: {files:#?}"
    );
    let snapshot = replica::store::keys::SNAPSHOT_LEVEL;
    assert!(
        !files.iter().any(|f| f.0 == snapshot && f.2 > old),
        "a snapshot after txid {old} would let a follower past the corrupted file: {files:#?}"
    );
    let mut names = Vec::new();
    for (_, _, _, path) in files.iter().filter(|f| f.0 < snapshot && f.2 >= new) {
        corrupt(path);
        names.push(path.file_name().unwrap().to_string_lossy().to_string());
    }
    eprintln!("corrupted {names:?}");
    names
}
