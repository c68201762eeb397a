//! Several destinations per database (issue 18). One `litestream.yml` entry lists several
//! `replicas:` — in-process S3 servers (SigV4 checked), each reached through a
//! fault-injecting loopback proxy (`s3server::FaultProxy`: "answer 500 to everything",
//! "never answer"), and a directory — and a python3 app steered line by line writes a
//! seeded workload (a few tables; inserts, updates, deletes) to app.db. What it proves:
//!
//! - a stalled destination and a failing one hold back neither the app's commits (no
//!   commit takes 2 s) nor the healthy destination (`replica_sync(t, 'any')` returns its
//!   txid, its row advances, the lag is printed), while `replica_sync(t)` waits for every
//!   destination and, timing out, names the ones behind and why; once they heal, every
//!   destination catches up and restores equal to the source, each on its own, by
//!   `replica_restore(url)` and by the real `litestream restore`;
//! - a restore by database name takes the destination with the newest state and falls back
//!   to the other when that one is unreachable or fails verification, returning the other's
//!   txid and saying on stderr which it used and why it skipped the first; `replica=<name>`
//!   restores from that destination only, and fails rather than falling back;
//! - `replica_status()` has one row per destination named in `replica` (the defaults `s3`,
//!   `s3-2`, `file` when unnamed), each with its own redacted URL and counters, and
//!   `replica_metrics()` labels each destination's series `replica_name="<name>"`;
//! - a destination added to the config later gets a snapshot of its own on the next start,
//!   and the first destination no new one;
//! - a synchronous COMMIT waits for every destination (and fails its wait while one
//!   stalls) unless the connection's URI says `replica_sync_quorum=any`;
//! - `replica_verify()` drills every destination, and names the one whose files fail.
//!
//! Replay a failure with DESTINATIONS_SEED=<seed> (each test prints its seed first).

mod common;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::seeded::{seed_from_env, Rng};
use common::*;
use s3env::{as_refs, s3_url};
use s3server::{FaultProxy, S3Server};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `connect-timeout` and `read-timeout` of every S3 destination: a stalled one fails a
/// request within about four of them (the store's own retries), not the client's default.
const S3_TIMEOUT: &str = "2s";

/// The longest a commit may take while a destination stalls or fails: longer is a hang.
const COMMIT_LIMIT: f64 = 2.0;

/// How long the app may take to answer one command.
const LINE_LIMIT: Duration = Duration::from_secs(120);

/// The test's seed (DESTINATIONS_SEED, else the clock), printed for a replay.
fn seed(test: &str) -> u64 {
    let seed = seed_from_env("DESTINATIONS_SEED", |t| t % 100_000);
    eprintln!("{test}: seed {seed}; replay with DESTINATIONS_SEED={seed}");
    seed
}

// -- destinations and the config ---------------------------------------------------------

/// Where a destination's LTX files lie on disk.
enum Files {
    /// An s3s-fs object prefix: `<prefix>/<level %04x>/<min>-<max>.ltx`.
    S3(PathBuf),
    /// A directory replica: `<dir>/ltx/<level>/<min>-<max>.ltx`.
    Dir(PathBuf),
}

/// One destination of app.db: its entry in litestream.yml, its URL straight to the store
/// (past any proxy) with the environment a restore by that URL needs, and its files.
struct Dest {
    /// The name `replica_status()` shows for it.
    name: String,
    /// Its entry's `key: value` lines, in order.
    fields: Vec<(String, String)>,
    url: String,
    keys: Vec<(String, String)>,
    files: Files,
}

type LtxFile = LtxOnDisk;

impl Dest {
    /// `<name>/app.db` in the bucket of `srv` (whose objects are under `server_dir`), which
    /// the extension reaches through port `via` (a proxy's, or the server's own).
    fn s3(name: &str, srv: &S3Server, server_dir: &Path, via: u16) -> Dest {
        let path = format!("{name}/app.db");
        let fields = [
            ("name", name),
            ("type", "s3"),
            ("bucket", "bkt"),
            ("path", &path),
            ("endpoint", &format!("http://127.0.0.1:{via}")),
            ("region", "us-east-1"),
            ("force-path-style", "true"),
            ("access-key-id", &srv.access_key),
            ("secret-access-key", &srv.secret_key),
            ("connect-timeout", S3_TIMEOUT),
            ("read-timeout", S3_TIMEOUT),
        ];
        Dest {
            name: name.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            url: s3_url(srv.port, &path),
            keys: vec![
                ("AWS_ACCESS_KEY_ID".into(), srv.access_key.clone()),
                ("AWS_SECRET_ACCESS_KEY".into(), srv.secret_key.clone()),
                ("AWS_REGION".into(), "us-east-1".into()),
            ],
            files: Files::S3(server_dir.join("bkt").join(&path)),
        }
    }

    /// The directory replica `dir`.
    fn dir(name: &str, dir: PathBuf) -> Dest {
        Dest {
            name: name.into(),
            fields: vec![
                ("name".into(), name.into()),
                ("type".into(), "file".into()),
                ("path".into(), dir.display().to_string()),
            ],
            url: format!("file://{}", dir.display()),
            keys: Vec::new(),
            files: Files::Dir(dir),
        }
    }

    /// The same destination with no `name:` in its entry: status shows it as `default`.
    fn unnamed(mut self, default: &str) -> Dest {
        self.fields.retain(|(k, _)| k != "name");
        self.name = default.into();
        self
    }

    /// Its entry under `replicas:`.
    fn entry(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.fields.iter().enumerate() {
            let lead = if i == 0 { "      - " } else { "        " };
            out.push_str(&format!("{lead}{k}: {v}\n"));
        }
        out
    }

    /// Its LTX files, sorted.
    fn ltx_files(&self) -> Vec<LtxFile> {
        match &self.files {
            Files::S3(p) => ltx_on_disk(p, 16),
            Files::Dir(p) => ltx_on_disk(&p.join("ltx"), 10),
        }
    }

    /// Its snapshots (level 9).
    fn snapshots(&self) -> Vec<LtxFile> {
        let level = replica::store::keys::SNAPSHOT_LEVEL;
        let files = self.ltx_files().into_iter();
        files.filter(|f| f.level == level).collect()
    }
}

/// Writes `<dir>/litestream.yml` with app.db replicated to `dests`, in order, every one
/// shipping within 100 ms and a process's exit waiting at most 2 s for them; returns the
/// environment of a process using it (the extension, the config, the log on stderr).
fn write_config(dir: &TempDir, dests: &[&Dest]) -> Vec<(String, String)> {
    let mut yaml = format!(
        "sync-interval: 100ms\nshutdown-sync-timeout: 2s\ndbs:\n  - path: {}\n    replicas:\n",
        dir.join("app.db").display()
    );
    for d in dests {
        yaml.push_str(&d.entry());
    }
    let path = dir.join("litestream.yml");
    std::fs::write(&path, yaml).unwrap();
    vec![
        ("REPLICA_CONFIG".into(), path.display().to_string()),
        ("REPLICA_LOG".into(), "stderr".into()),
        ("REPLICA_TEST_LIB".into(), load_path()),
    ]
}

// -- the app -----------------------------------------------------------------------------

/// The app (after `PY_LOAD`): opens app.db in WAL mode with a few tables, then runs one
/// command per stdin line and answers on stdout:
/// - `write N`: N seeded transactions; `wrote <seconds of each, comma-separated>`;
/// - `write-sync N T MODE`: N transactions, each followed by `replica_sync(T, MODE)`;
///   `wrote-sync <commit seconds>/<seconds from its commit to the sync's return>/<txid> …`;
/// - `sync T [MODE]`: `synced <txid> <seconds>` or `error <seconds> <message>`;
/// - `status`: `rows N`, then app.db's N rows of `replica_status()` as `col=value` fields
///   separated by tabs;
/// - `metrics`: `metrics N`, then the N lines of `replica_metrics()`;
/// - `quit`: closes the database, `bye`.
///
/// An SQL error in a command answers `error - <message>`.
const PY_APP: &str = r#"
import random, sys, time
rng = random.Random(@SEED@)
db = sqlite3.connect("app.db", isolation_level=None)
assert db.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
for ddl in (
    "CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, name TEXT, score INTEGER)",
    "CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, user_id INTEGER, amount REAL, note TEXT)",
    "CREATE INDEX IF NOT EXISTS orders_by_user ON orders(user_id)",
    "CREATE TABLE IF NOT EXISTS files(id INTEGER PRIMARY KEY, data BLOB)",
):
    db.execute(ddl)

def out(*a):
    print(*a, flush=True)

def one_line(v):
    return str(v).replace("\t", " ").replace("\n", " ")

def transaction():
    db.execute("BEGIN IMMEDIATE")
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if op < 0.4:
            db.execute("INSERT INTO users(name, score) VALUES (?, ?)",
                       ("user%d" % rng.randrange(10**6), rng.randrange(1000)))
        elif op < 0.7:
            db.execute("INSERT INTO orders(user_id, amount, note) VALUES (?, ?, ?)",
                       (rng.randrange(1, 200), rng.randrange(100000) / 100, "n" * rng.randrange(300)))
        elif op < 0.8:
            db.execute("INSERT INTO files(data) VALUES (?)", (rng.randbytes(rng.choice([16, 900, 5000])),))
        elif op < 0.9:
            db.execute("UPDATE users SET score = score + ? WHERE id % 7 = ?", (rng.randrange(1, 50), rng.randrange(7)))
        elif op < 0.95:
            db.execute("DELETE FROM orders WHERE id % 11 = ?", (rng.randrange(11),))
        else:
            db.execute("DELETE FROM files WHERE id % 5 = ?", (rng.randrange(5),))
    db.execute("COMMIT")

def timed(f):
    t0 = time.monotonic()
    f()
    return time.monotonic() - t0

def sync(args):
    t0 = time.monotonic()
    try:
        txid = db.execute("SELECT replica_sync(%s)" % ", ".join("?" * len(args)), args).fetchone()[0]
        out("synced", txid, "%.3f" % (time.monotonic() - t0))
    except sqlite3.Error as e:
        out("error", "%.3f" % (time.monotonic() - t0), one_line(e))

def run(cmd, args):
    if cmd == "write":
        out("wrote", ",".join("%.4f" % timed(transaction) for _ in range(int(args[0]))))
    elif cmd == "write-sync":
        steps = []
        for _ in range(int(args[0])):
            spent = timed(transaction)
            t0 = time.monotonic()
            txid = db.execute("SELECT replica_sync(?, ?)", (int(args[1]), args[2])).fetchone()[0]
            steps.append("%.4f/%.4f/%d" % (spent, time.monotonic() - t0, txid))
        out("wrote-sync", " ".join(steps))
    elif cmd == "sync":
        sync((int(args[0]),) + tuple(args[1:]))
    elif cmd == "status":
        cur = db.execute("SELECT * FROM replica_status() WHERE name = 'app.db'")
        cols = [d[0] for d in cur.description]
        rows = cur.fetchall()
        out("rows", len(rows))
        for r in rows:
            out("\t".join("%s=%s" % (k, one_line(v)) for k, v in zip(cols, r)))
    elif cmd == "metrics":
        lines = db.execute("SELECT replica_metrics()").fetchone()[0].splitlines()
        out("metrics", len(lines))
        for l in lines:
            out(l)
    else:
        raise SystemExit("unknown command " + cmd)

for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "quit":
        break
    try:
        run(cmd, args)
    except sqlite3.Error as e:
        out("error", "-", one_line(e))
db.close()
out("bye")
"#;

/// One row of `replica_status()`: column → value as Python printed it (`None` for NULL).
struct Row(BTreeMap<String, String>);

impl Row {
    fn parse(line: &str) -> Row {
        Row(line
            .split('\t')
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    fn get(&self, col: &str) -> &str {
        self.0
            .get(col)
            .unwrap_or_else(|| panic!("replica_status() has no column {col}: {:?}", self.0))
    }

    fn int(&self, col: &str) -> i64 {
        let v = self.get(col);
        v.parse()
            .unwrap_or_else(|_| panic!("{col} is {v:?}, not a number: {:?}", self.0))
    }
}

/// The row of the destination named `name`.
fn row<'a>(rows: &'a [Row], name: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.get("replica") == name)
        .unwrap_or_else(|| {
            let all: Vec<_> = rows.iter().map(|r| &r.0).collect();
            panic!("no row for destination {name:?} in {all:#?}")
        })
}

/// The destinations' names in `rows`, sorted.
fn names(rows: &[Row]) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(|r| r.get("replica").to_string()).collect();
    v.sort();
    v
}

/// What `sync` answered: the txid or the error, and how long the call took.
struct Synced {
    result: Result<u64, String>,
    secs: f64,
}

/// One transaction of `write-sync`: how long its commit took, how long after it the sync
/// returned, and the txid it returned.
#[derive(Debug)]
struct Step {
    commit: f64,
    lag: f64,
    txid: u64,
}

/// The app (see [`PY_APP`]), steered with a deadline on every answer.
struct App {
    host: procs::Timed,
    seed: u64,
}

impl App {
    fn start(dir: &Path, env: &[(String, String)], seed: u64) -> App {
        let body = PY_APP.replace("@SEED@", &seed.to_string());
        let child = spawn_python_loaded(&body, dir, &as_refs(env));
        App {
            host: procs::Timed::new(child),
            seed,
        }
    }

    /// Sends `cmd` and returns the rest of its answer line, which must start with `want`.
    fn ask(&mut self, cmd: &str, want: &str) -> String {
        self.host.send(cmd);
        let line = self.host.line(want, LINE_LIMIT);
        match line.strip_prefix(want) {
            Some(rest) => rest.trim().to_string(),
            None => panic!(
                "seed {}: `{cmd}` answered {line:?}, not `{want} …`",
                self.seed
            ),
        }
    }

    /// `n` transactions; the seconds each took.
    fn write(&mut self, n: u64) -> Vec<f64> {
        let times = self.ask(&format!("write {n}"), "wrote");
        times.split(',').map(|t| t.parse().unwrap()).collect()
    }

    /// `n` transactions, each followed by `replica_sync(timeout_ms, mode)`.
    fn write_sync(&mut self, n: u64, timeout_ms: u64, mode: &str) -> Vec<Step> {
        let steps = self.ask(&format!("write-sync {n} {timeout_ms} {mode}"), "wrote-sync");
        steps
            .split(' ')
            .map(|s| {
                let v: Vec<&str> = s.split('/').collect();
                Step {
                    commit: v[0].parse().unwrap(),
                    lag: v[1].parse().unwrap(),
                    txid: v[2].parse().unwrap(),
                }
            })
            .collect()
    }

    /// `replica_sync(timeout_ms[, mode])`.
    fn sync(&mut self, timeout_ms: u64, mode: Option<&str>) -> Synced {
        let cmd = format!("sync {timeout_ms} {}", mode.unwrap_or(""));
        self.host.send(&cmd);
        let line = self.host.line("synced or error", LINE_LIMIT);
        let mut words = line.splitn(3, ' ');
        let (kind, a, b) = (words.next(), words.next(), words.next());
        match (kind, a, b) {
            (Some("synced"), Some(txid), Some(secs)) => Synced {
                result: Ok(txid.parse().unwrap()),
                secs: secs.parse().unwrap(),
            },
            (Some("error"), Some(secs), Some(msg)) => Synced {
                result: Err(msg.to_string()),
                secs: secs.parse().unwrap_or(f64::NAN),
            },
            _ => panic!("seed {}: `{cmd}` answered {line:?}", self.seed),
        }
    }

    /// `replica_sync(timeout_ms[, mode])`, which must succeed; its txid.
    fn sync_ok(&mut self, timeout_ms: u64, mode: Option<&str>, what: &str) -> u64 {
        let s = self.sync(timeout_ms, mode);
        match s.result {
            Ok(txid) => {
                println!("{what}: txid {txid} after {:.2} s", s.secs);
                txid
            }
            Err(e) => {
                let (seed, rows) = (self.seed, self.status());
                let rows: Vec<_> = rows.iter().map(|r| &r.0).collect();
                panic!(
                    "seed {seed}: {what} failed after {:.2} s: {e}\nstatus: {rows:#?}",
                    s.secs
                )
            }
        }
    }

    /// app.db's rows of `replica_status()`.
    fn status(&mut self) -> Vec<Row> {
        let n: usize = self.ask("status", "rows").parse().unwrap();
        (0..n)
            .map(|_| Row::parse(&self.host.line("status row", LINE_LIMIT)))
            .collect()
    }

    /// The status once `ok` holds of it, asked every 50 ms; fails after `limit`.
    fn wait_status(
        &mut self,
        what: &str,
        limit: Duration,
        ok: impl Fn(&[Row]) -> bool,
    ) -> Vec<Row> {
        let deadline = Instant::now() + limit;
        loop {
            let rows = self.status();
            if ok(&rows) {
                return rows;
            }
            if Instant::now() > deadline {
                let all: Vec<_> = rows.iter().map(|r| &r.0).collect();
                panic!(
                    "seed {}: no {what} within {limit:?}; status: {all:#?}",
                    self.seed
                );
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    /// The text of `replica_metrics()`.
    fn metrics(&mut self) -> String {
        let n: usize = self.ask("metrics", "metrics").parse().unwrap();
        let lines: Vec<String> = (0..n)
            .map(|_| self.host.line("metrics line", LINE_LIMIT))
            .collect();
        lines.join("\n")
    }

    /// Closes the database and waits for the process to end.
    fn quit(mut self) {
        self.host.send("quit");
        let bye = self.host.line("bye", LINE_LIMIT);
        assert_eq!(bye, "bye", "seed {}", self.seed);
        let status = self.host.child.wait().unwrap();
        assert!(
            status.success(),
            "seed {}: the app exited {status}",
            self.seed
        );
    }

    /// SIGKILL: whatever it had not shipped stays unshipped.
    fn kill(mut self) {
        self.host.kill();
    }
}

/// Polls `done` every 20 ms until it holds; fails naming `what` after `limit`.
fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "no {what} within {limit:?}");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

// -- restores ----------------------------------------------------------------------------

/// `replica_restore(src, out, NULL, options)` in a fresh process with `env`: `Ok(txid)` or
/// `Err(the SQL error)`, and what the extension logged on stderr.
fn restore_logged(
    dir: &Path,
    env: &[(String, String)],
    src: &str,
    out: &Path,
    options: Option<&str>,
) -> (Result<u64, String>, String) {
    let o = python_loaded(
        &format!(
            r#"
try:
    print("ok", boot.execute("SELECT replica_restore(?, ?, NULL, ?)", ({src:?}, {out:?}, {opts})).fetchone()[0])
except sqlite3.Error as e:
    print("error", str(e).replace("\n", " "))
"#,
            out = out.display().to_string(),
            opts = options.map_or("None".to_string(), |o| format!("{o:?}")),
        ),
        dir,
        &as_refs(env),
    );
    let text = check(
        &o,
        &format!("replica_restore({src:?}, {out:?}, NULL, {options:?})"),
    );
    let result = match text.trim().split_once(' ') {
        Some(("ok", t)) => Ok(t.parse().unwrap_or_else(|_| {
            panic!("replica_restore returned {t} and no error:\n{}", stderr(&o))
        })),
        Some(("error", e)) => Err(e.to_string()),
        _ => panic!("unexpected output {text}\nstderr:\n{}", stderr(&o)),
    };
    (result, stderr(&o))
}

/// `replica_restore(src, <dir>/<file>, NULL, options)` in a fresh process with `env` must
/// return `txid` and write a database equal to `want`; returns what the extension logged.
fn assert_restores(
    (dir, env): (&Path, &[(String, String)]),
    (src, options): (&str, Option<&str>),
    file: &str,
    (txid, want): (i64, &str),
    seed: u64,
) -> String {
    let out = dir.join(file);
    let (result, log) = restore_logged(dir, env, src, &out, options);
    assert_eq!(
        result,
        Ok(txid as u64),
        "seed {seed}: replica_restore({src:?}, {file}, NULL, {options:?}); its log:\n{log}"
    );
    assert!(
        dump(&out) == want,
        "seed {seed}: replica_restore({src:?}, {file}, NULL, {options:?}) differs from the state it should hold"
    );
    log
}

/// The real `litestream restore` of `d` by its URL restores `want`.
fn assert_litestream_restores(dir: &Path, d: &Dest, want: &str, seed: u64) {
    let out = dir.join(format!("ls-{}.db", d.name));
    let mut cmd = Command::new(litestream_bin());
    cmd.args(["restore", "-integrity-check", "full", "-o"])
        .arg(&out)
        .arg(&d.url)
        .current_dir(dir)
        .env_remove("AWS_CA_BUNDLE");
    for (k, v) in &d.keys {
        cmd.env(k, v);
    }
    let o = run_command(cmd, "", Duration::from_secs(120));
    check(&o, &format!("seed {seed}: litestream restore {}", d.url));
    assert!(
        dump(&out) == want,
        "seed {seed}: litestream restore of destination {} differs from the source",
        d.name
    );
}

/// The line of `log` in which a restore by database name says it used destination `used`
/// and why it skipped `skipped`.
fn fallback_notice<'a>(log: &'a str, used: &str, skipped: &str) -> &'a str {
    let (from, other) = (
        format!("from replica '{used}'"),
        format!("replica '{skipped}'"),
    );
    log.lines()
        .find(|l| l.contains(&from) && l.contains(&other))
        .unwrap_or_else(|| {
            panic!("no notice naming {from:?} and why it skipped {other:?} in the log:\n{log}")
        })
}

/// Flips the last byte (the trailer's file checksum) of every LTX file of `d` whose range
/// ends at `txid`, at any level: no state at `txid` verifies. Returns them.
fn corrupt_files_ending_at(d: &Dest, txid: u64) -> Vec<LtxFile> {
    let files: Vec<LtxFile> = d
        .ltx_files()
        .into_iter()
        .filter(|f| f.max == txid)
        .collect();
    for f in &files {
        let mut bytes = std::fs::read(&f.path).unwrap();
        *bytes.last_mut().unwrap() ^= 0xff;
        std::fs::write(&f.path, bytes).unwrap();
    }
    files
}

/// Prints the commit times and lags of `steps` and fails on a commit that hung.
fn report_steps(seed: u64, steps: &[Step]) {
    let commits: Vec<f64> = steps.iter().map(|s| s.commit).collect();
    let lags: Vec<f64> = steps.iter().map(|s| s.lag).collect();
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{} commits: median {:.4} s, max {:.4} s; each: {commits:.4?}",
        steps.len(),
        median(&commits),
        max(&commits)
    );
    println!(
        "healthy destination's lag (commit to replica_sync(…, 'any')): median {:.4} s, max {:.4} s; each: {lags:.4?}",
        median(&lags),
        max(&lags)
    );
    assert!(
        max(&commits) < COMMIT_LIMIT,
        "seed {seed}: a commit took {:.2} s (over {COMMIT_LIMIT} s: the app hangs on a destination): {commits:?}",
        max(&commits)
    );
}

/// An S3 server under `<dir>/server-<name>` reached through a [`FaultProxy`], and the
/// destination `name` (`<name>/app.db` in its bucket) on it.
fn proxied_s3(dir: &TempDir, name: &str) -> (FaultProxy, Dest) {
    let server_dir = dir.join(&format!("server-{name}"));
    let srv = s3server::start(&server_dir, "bkt");
    let proxy = FaultProxy::start(srv.port);
    let dest = Dest::s3(name, &srv, &server_dir, proxy.port);
    (proxy, dest)
}

// -- 1. a stalled and a failing destination beside a healthy one --------------------------

#[test]
fn three_destinations_one_stalls_one_fails_the_app_and_the_third_go_on() {
    let seed = seed("three_destinations_one_stalls_one_fails");
    let mut rng = Rng::from_seed(seed);
    let dir = TempDir::new("dest-three");
    let (proxy_a, a) = proxied_s3(&dir, "a");
    let (proxy_b, b) = proxied_s3(&dir, "b");
    let local = Dest::dir("local", dir.join("local"));
    let env = write_config(&dir, &[&a, &b, &local]);
    let mut app = App::start(dir.path(), &env, seed);

    // 1. Every destination answers.
    app.write(5 + rng.below(10));
    app.sync_ok(30_000, None, "phase 1: replica_sync(30000)");
    let healthy = app.status();
    assert_eq!(names(&healthy), ["a", "b", "local"], "seed {seed}");

    // 2. A never answers, B answers 500.
    proxy_a.stall();
    proxy_b.fail_all();
    let n = 20 + rng.below(20);
    stalled_and_failing(&mut app, (&proxy_a, n), &healthy);

    // 3. Both heal: every destination catches up and restores equal to the source.
    proxy_a.heal();
    proxy_b.heal();
    let synced = app.sync_ok(60_000, None, "phase 3: replica_sync(60000)");
    let caught_up = app.status();
    let lowest = caught_up.iter().map(|r| r.int("replicated_txid")).min();
    assert_eq!(
        lowest,
        Some(synced as i64),
        "seed {seed}: replica_sync returns the smallest txid of the destinations"
    );
    app.quit();
    let want = dump(&dir.join("app.db"));
    for d in [&a, &b, &local] {
        let r = row(&caught_up, &d.name);
        let by_url = (r.get("replica_url"), r.int("replicated_txid"));
        each_restores_alone(dir.path(), d, by_url, &want, seed);
    }
}

/// With `a` stalled (its proxy given) and `b` answering 500: `n` commits each followed by
/// `replica_sync(10000, 'any')` complete (none hangs), and `local`'s row advances to what
/// the last returned while `a` and `b` stay where they were in `healthy`; `b` shows its
/// HTTP 500s; `replica_sync(2000)` fails within a few seconds naming `a` and `b` and why.
fn stalled_and_failing(app: &mut App, (proxy_a, n): (&FaultProxy, u64), healthy: &[Row]) {
    let seed = app.seed;
    let steps = app.write_sync(n, 10_000, "any");
    report_steps(seed, &steps);
    let last = steps.last().unwrap().txid as i64;
    wait_until(
        &format!("seed {seed}: request held by A's stalled proxy"),
        Duration::from_secs(30),
        || proxy_a.held() > 0,
    );
    let failing = app.wait_status("HTTP 500 in b's last_error", Duration::from_secs(60), |r| {
        row(r, "b").get("last_error").contains("HTTP 500")
    });
    assert_eq!(
        row(&failing, "local").int("replicated_txid"),
        last,
        "seed {seed}: replica_sync(…, 'any') returns the txid of the destination that has the commits"
    );
    assert!(
        last > row(healthy, "local").int("replicated_txid"),
        "seed {seed}: local's txid did not advance"
    );
    for stuck in ["a", "b"] {
        assert_eq!(
            row(&failing, stuck).int("replicated_txid"),
            row(healthy, stuck).int("replicated_txid"),
            "seed {seed}: {stuck} advanced while it could not be written"
        );
    }
    let all = app.sync(2_000, None);
    let err = all
        .result
        .expect_err("replica_sync(2000) while a and b are behind");
    println!("replica_sync(2000) failed after {:.2} s: {err}", all.secs);
    assert!(
        all.secs < 5.0,
        "seed {seed}: replica_sync(2000) took {:.2} s",
        all.secs
    );
    for behind in ["'a'", "'b'", "HTTP 500"] {
        assert!(
            err.contains(behind),
            "seed {seed}: replica_sync's timeout should name {behind}: {err}"
        );
    }
}

/// Destination `d` on its own restores `want`: `replica_restore` by `url` (as status shows
/// it) returns `txid`, and the real `litestream restore` by its URL gives the same.
fn each_restores_alone(dir: &Path, d: &Dest, (url, txid): (&str, i64), want: &str, seed: u64) {
    let mut env = d.keys.clone();
    env.push(("REPLICA_LOG".into(), "stderr".into()));
    let out = format!("url-{}.db", d.name);
    assert_restores((dir, &env), (url, None), &out, (txid, want), seed);
    assert_litestream_restores(dir, d, want, seed);
}

// -- 2. a restore by name falls back ------------------------------------------------------

/// What the two destinations of test 2 hold: `a` the newer state, `b` the older.
struct TwoStates {
    a_txid: i64,
    b_txid: i64,
    older: String,
    newer: String,
}

#[test]
fn restore_falls_back_when_the_newest_destination_is_unreachable_then_corrupt() {
    let seed = seed("restore_falls_back");
    let dir = TempDir::new("dest-fallback");
    let (proxy_a, a) = proxied_s3(&dir, "a");
    let (proxy_b, b) = proxied_s3(&dir, "b");
    let env = write_config(&dir, &[&a, &b]);
    let app = App::start(dir.path(), &env, seed);
    let st = newer_in_a_only(app, &proxy_b, &dir);
    proxy_b.heal();
    let by_name = (dir.path(), env.as_slice());
    let TwoStates { a_txid, b_txid, .. } = st;

    // `replica=<name>` restores that destination's own state.
    let (older, newer) = (st.older.as_str(), st.newer.as_str());
    assert_restores(
        by_name,
        ("app.db", Some("replica=a")),
        "only-a.db",
        (a_txid, newer),
        seed,
    );
    assert_restores(
        by_name,
        ("app.db", Some("replica=b")),
        "only-b.db",
        (b_txid, older),
        seed,
    );

    // (a) The newest destination does not answer: the restore takes b's state, and says so.
    proxy_a.stall();
    let log = assert_restores(
        by_name,
        ("app.db", None),
        "a-down.db",
        (b_txid, older),
        seed,
    );
    println!(
        "restore with a unreachable: {}",
        fallback_notice(&log, "b", "a")
    );
    // (c) Asked for `a` only, it fails instead of falling back.
    only_a_fails_while_down(dir.path(), &env, seed);
    proxy_a.heal();

    // (b) The newest destination answers, but its newest state fails verification.
    let corrupted = corrupt_files_ending_at(&a, a_txid as u64);
    assert!(
        !corrupted.is_empty(),
        "seed {seed}: no file of a ends at txid {a_txid}"
    );
    let log = assert_restores(by_name, ("app.db", None), "a-bad.db", (b_txid, older), seed);
    let notice = fallback_notice(&log, "b", "a");
    println!("restore with a corrupt ({corrupted:?}): {notice}");
    assert!(
        notice.to_lowercase().contains("verif"),
        "seed {seed}: the notice should say a failed verification: {notice}"
    );
}

/// Both destinations get a seeded batch (synced to both: the older state); then `b` stalls
/// (its proxy given), a second batch reaches `a` only (the newer state), and the app is
/// killed, so `b` stays behind.
fn newer_in_a_only(mut app: App, proxy_b: &FaultProxy, dir: &TempDir) -> TwoStates {
    let seed = app.seed;
    let mut rng = Rng::from_seed(seed);
    app.write(5 + rng.below(10));
    app.sync_ok(30_000, None, "replica_sync(30000) to both");
    let b_txid = row(&app.status(), "b").int("replicated_txid");
    let older = dump(&dir.join("app.db"));
    proxy_b.stall();
    app.write(5 + rng.below(10));
    let a_txid = app.sync_ok(
        30_000,
        Some("any"),
        "replica_sync(30000, 'any') with b stalled",
    );
    let rows = app.status();
    let a_txid = a_txid as i64;
    assert_eq!(
        row(&rows, "a").int("replicated_txid"),
        a_txid,
        "seed {seed}"
    );
    assert_eq!(
        row(&rows, "b").int("replicated_txid"),
        b_txid,
        "seed {seed}: b advanced"
    );
    let newer = dump(&dir.join("app.db"));
    assert!(
        older != newer,
        "seed {seed}: the second batch changed nothing"
    );
    app.kill();
    TwoStates {
        a_txid,
        b_txid,
        older,
        newer,
    }
}

/// With `a` unreachable, `replica=a` fails naming `a`, writes nothing and does not fall
/// back to `b`; a name no destination has fails naming it.
fn only_a_fails_while_down(dir: &Path, env: &[(String, String)], seed: u64) {
    let out = dir.join("only-a-down.db");
    let (result, log) = restore_logged(dir, env, "app.db", &out, Some("replica=a"));
    let err = result.expect_err("a restore from the unreachable destination a only");
    println!("replica=a with a unreachable: {err}");
    assert!(
        err.contains("'a'"),
        "seed {seed}: the error should name destination 'a': {err}"
    );
    assert!(!out.exists(), "seed {seed}: a failed restore left {out:?}");
    assert!(
        !log.contains("from replica 'b'"),
        "seed {seed}: replica=a fell back to b:\n{log}"
    );
    let (result, _) = restore_logged(dir, env, "app.db", &out, Some("replica=nosuch"));
    let err = result.expect_err("a restore from a destination no entry names");
    assert!(
        err.contains("nosuch"),
        "seed {seed}: the error should name it: {err}"
    );
}

// -- 3. status and metrics ----------------------------------------------------------------

#[test]
fn status_and_metrics_name_each_destination() {
    let seed = seed("status_and_metrics_name_each_destination");
    let dir = TempDir::new("dest-status");
    let srv = s3server::start(&dir.join("server"), "bkt");
    let server_dir = dir.join("server");
    let dests = [
        Dest::s3("one", &srv, &server_dir, srv.port).unnamed("s3"),
        Dest::s3("two", &srv, &server_dir, srv.port).unnamed("s3-2"),
        Dest::dir("local", dir.join("local")).unnamed("file"),
    ];
    let env = write_config(&dir, &dests.iter().collect::<Vec<_>>());
    let mut app = App::start(dir.path(), &env, seed);
    app.write(5);
    app.sync_ok(30_000, None, "replica_sync(30000)");
    let rows = app.status();
    let metrics = app.metrics();
    app.quit();
    assert_eq!(names(&rows), ["file", "s3", "s3-2"], "seed {seed}");
    for (d, url) in dests.iter().zip([
        "s3://bkt/one/app.db?".to_string(),
        "s3://bkt/two/app.db?".to_string(),
        format!("file://{}", dir.join("local").display()),
    ]) {
        let r = row(&rows, &d.name);
        let shown = r.get("replica_url");
        assert!(
            shown.starts_with(&url),
            "seed {seed}: {} shows {shown}",
            d.name
        );
        assert!(r.int("uploads") >= 1, "seed {seed}: {:?}", r.0);
        let series = format!(
            "replica_replicated_txid{{{}}}",
            labels_of(&metrics, "replica_replicated_txid", &d.name)
        );
        let value = metrics.lines().find_map(|l| l.strip_prefix(&series));
        assert_eq!(
            value.map(str::trim),
            Some(r.get("replicated_txid")),
            "seed {seed}: {series} in the metrics:\n{metrics}"
        );
    }
    for secret in [&srv.secret_key, &srv.access_key] {
        for r in &rows {
            assert!(
                !r.get("replica_url").contains(secret.as_str()),
                "seed {seed}: a key in {:?}",
                r.0
            );
        }
        assert!(
            !metrics.contains(secret.as_str()),
            "seed {seed}: a key in the metrics"
        );
    }
    let mut labelled = label_values(&metrics, "replica_uploads_total", "replica_name");
    labelled.sort();
    assert_eq!(
        labelled,
        ["file", "s3", "s3-2"],
        "seed {seed}: metrics:\n{metrics}"
    );
}

/// The labels (inside the braces) of `metric`'s sample labelled `replica_name="<name>"`.
fn labels_of<'a>(metrics: &'a str, metric: &str, name: &str) -> &'a str {
    let want = format!("replica_name=\"{name}\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(metric)?.strip_prefix('{')?.split_once('}'))
        .map(|(labels, _)| labels)
        .find(|labels| labels.split(',').any(|kv| kv == want))
        .unwrap_or_else(|| panic!("no {metric} sample labelled {want} in:\n{metrics}"))
}

/// The values of `label` on `metric`'s samples.
fn label_values(metrics: &str, metric: &str, label: &str) -> Vec<String> {
    let key = format!("{label}=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(metric)?.strip_prefix('{')?.split_once('}'))
        .filter_map(|(labels, _)| {
            let at = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(key.as_str()))?;
            Some(at.trim_end_matches('"').to_string())
        })
        .collect()
}

// -- 4. a destination added later -------------------------------------------------------

#[test]
fn a_destination_added_later_gets_a_snapshot_and_catches_up() {
    let seed = seed("a_destination_added_later");
    let mut rng = Rng::from_seed(seed);
    let dir = TempDir::new("dest-added");
    let srv = s3server::start(&dir.join("server"), "bkt");
    let a = Dest::s3("a", &srv, &dir.join("server"), srv.port);
    let local = Dest::dir("local", dir.join("local"));

    // A while with `a` alone.
    let env = write_config(&dir, &[&a]);
    let mut app = App::start(dir.path(), &env, seed);
    for round in 0..3 {
        app.write(3 + rng.below(8));
        app.sync_ok(30_000, None, &format!("round {round} to a alone"));
    }
    app.quit();
    let a_snapshots = a.snapshots();
    assert!(!a_snapshots.is_empty(), "seed {seed}: a has no snapshot");

    // The config gains `local`; the next process writes on.
    let env = write_config(&dir, &[&a, &local]);
    let mut app = App::start(dir.path(), &env, seed + 1);
    app.write(3 + rng.below(8));
    app.sync_ok(30_000, None, "replica_sync(30000) to both");
    let rows = app.status();
    app.quit();
    assert!(
        row(&rows, "local").int("snapshots") >= 1,
        "seed {seed}: the new destination got no snapshot: {:?}",
        row(&rows, "local").0
    );
    assert_eq!(
        row(&rows, "a").int("snapshots"),
        0,
        "seed {seed}: the first destination got a new snapshot: {:?}",
        row(&rows, "a").0
    );
    assert_eq!(
        a.snapshots(),
        a_snapshots,
        "seed {seed}: a new level-9 file in a"
    );
    assert!(
        !local.snapshots().is_empty(),
        "seed {seed}: no level-9 file in local"
    );
    let want = dump(&dir.join("app.db"));
    for d in [&a, &local] {
        let mut env = d.keys.clone();
        env.push(("REPLICA_LOG".into(), "stderr".into()));
        assert_restores(
            (dir.path(), &env),
            (&d.url, None),
            &format!("url-{}.db", d.name),
            (row(&rows, &d.name).int("replicated_txid"), &want),
            seed,
        );
    }
}

// -- 5. synchronous commits and the quorum ------------------------------------------------

/// A synchronous COMMIT waits for every destination by default: with one stalled, it
/// fails its wait (SQLITE_WARNING, committed locally); with `replica_sync_quorum=any` on
/// the connection's URI it returns once the healthy destination has it.
#[test]
fn synchronous_commits_wait_for_every_destination_unless_the_quorum_says_any() {
    let dir = TempDir::new("dest-sync-quorum");
    let (proxy_a, a) = proxied_s3(&dir, "a");
    let local = Dest::dir("local", dir.join("local"));
    let mut env = write_config(&dir, &[&a, &local]);
    // No restore at open: with `a` stalled from the start it could not tell an empty
    // replica from one it cannot read.
    env.push(("REPLICA_RESTORE_IF_MISSING".into(), "0".into()));
    proxy_a.stall();
    let body = r#"
import time
uri = "file:app.db?replica_sync=commit&replica_sync_timeout={timeout}{quorum}"
db = sqlite3.connect(uri.format(timeout=10000, quorum="&replica_sync_quorum=any"), uri=True, isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
db.execute("CREATE TABLE t(x)")
for i in range(3):
    t = time.time()
    db.execute("INSERT INTO t VALUES (?)", (i,))
    print("any committed in", round(time.time() - t, 3))
strict = sqlite3.connect(uri.format(timeout=1500, quorum=""), uri=True, isolation_level=None)
strict.execute("SELECT 1").fetchall()
t = time.time()
try:
    strict.execute("INSERT INTO t VALUES (9)")
    print("all committed in", round(time.time() - t, 3))
except sqlite3.Error as e:
    print("all failed", e.sqlite_errorname, "after", round(time.time() - t, 3))
print("rows", db.execute("SELECT count(*) FROM t").fetchone()[0])
"#;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let o = python_loaded(body, dir.path(), &env);
    proxy_a.heal();
    let out = check(&o, "synchronous commits with a stalled destination");
    let any: Vec<f64> = lines_with(&out, "any committed in")
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(any.len(), 3, "{out}");
    assert!(
        any.iter().all(|s| *s < 5.0),
        "a commit with quorum 'any' waited for the stalled destination: {any:?}\n{out}"
    );
    assert!(
        out.contains("all failed SQLITE_WARNING"),
        "a commit waiting for every destination did not fail its wait:\n{out}\n{}",
        stderr(&o)
    );
    assert!(
        out.contains("rows 4"),
        "committed locally all the same:\n{out}"
    );
}

// -- 6. restore drills -----------------------------------------------------------------------

/// `replica_verify()` drills every destination: each row shows its own outcome, and a
/// destination whose files were damaged fails the call naming it while the other passes.
#[test]
fn a_drill_checks_every_destination_and_names_the_one_that_fails() {
    let dir = TempDir::new("dest-drill");
    let a = Dest::dir("a", dir.join("replica-a"));
    let b = Dest::dir("b", dir.join("replica-b"));
    let env = write_config(&dir, &[&a, &b]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let body = r#"
import sys
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
db.execute("CREATE TABLE IF NOT EXISTS t(x)")
db.execute("INSERT INTO t VALUES (randomblob(500))")
db.execute("SELECT replica_sync(10000)")
try:
    print("verified", db.execute("SELECT replica_verify()").fetchone()[0])
except sqlite3.Error as e:
    print("failed", e)
for row in db.execute("SELECT replica, last_verify FROM replica_status()"):
    print("row", *row)
"#;
    let o = python_loaded(body, dir.path(), &env);
    let out = check(&o, "a drill of two destinations");
    assert!(out.contains("verified "), "{out}");
    for name in ["a", "b"] {
        assert!(out.contains(&format!("row {name} ok: txid")), "{out}");
    }
    // Damage b's newest state: the next drill fails naming b, and a's row still passes.
    let max = b.ltx_files().iter().map(|f| f.max).max().unwrap();
    assert!(!corrupt_files_ending_at(&b, max).is_empty());
    let o = python_loaded(body, dir.path(), &env);
    let out = check(&o, "a drill with b damaged");
    assert!(
        out.contains("failed") && out.contains("replica 'b'"),
        "{out}"
    );
    assert!(out.contains("row a ok: txid"), "{out}");
    assert!(out.contains("row b failed"), "{out}");
}
