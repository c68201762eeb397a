//! Promotion of a follower (issue 19). A writer process (its own directory) replicates
//! app.db to the in-process S3 server (SigV4 checked) with a 2 s lease; a follower process
//! (another directory, as if another host) follows it. The writer is SIGKILLed. What it
//! proves:
//!
//! - `replica_promote()` is refused while the dead writer's lease is still valid, saying so,
//!   and succeeds once it has expired; it returns the txid after the writer's last one;
//! - the promoted copy takes writes from a new connection, and they reach the replica;
//! - the replica is one history with contiguous txids: every LTX file carries the same node
//!   id, a restore (`replica_restore(url)` and the real `litestream restore`) holds the old
//!   writer's acknowledged commits and the new writer's, equal to the promoted copy;
//! - the old writer, started again on its own app.db while the new one writes, finds the
//!   lease held elsewhere and stands by: its commit never reaches the replica;
//! - `replica_promote()` on a database that is no follower's copy fails, naming it.
//!
//! Replay a failure with PROMOTE_SEED=<seed> (the test prints its seed first).

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
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long a process may take to answer one command (the waits inside are shorter).
const LINE_LIMIT: Duration = Duration::from_secs(120);

/// The writer: `rows N` inserts N rows (a seeded number of transactions), prints `synced
/// <txid>` once they are in the replica; `one` commits one more row and prints what
/// `replica_sync(3000)` says (`synced <txid>` or `unsynced <error>`); `state` prints its
/// status row's state.
const WRITER: &str = r#"
import sys
db = sqlite3.connect("app.db", isolation_level=None, timeout=10)
db.execute("PRAGMA journal_mode=wal")
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, who TEXT, n INTEGER)")
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "rows":
        n, per = int(cmd[1]), int(cmd[2])
        for i in range(0, n, per):
            db.execute("BEGIN")
            for j in range(i, min(n, i + per)):
                db.execute("INSERT INTO t(who, n) VALUES ('old', ?)", (j,))
            db.execute("COMMIT")
        print("synced", db.execute("SELECT replica_sync(30000)").fetchone()[0], flush=True)
    elif cmd[0] == "one":
        db.execute("INSERT INTO t(who, n) VALUES ('revenant', 0)")
        try:
            print("synced", db.execute("SELECT replica_sync(3000)").fetchone()[0], flush=True)
        except sqlite3.Error as e:
            print("unsynced", str(e).replace("\n", " "), flush=True)
    elif cmd[0] == "state":
        print("state", db.execute("SELECT state FROM replica_status() WHERE name = 'app.db'").fetchone()[0], flush=True)
"#;

/// The follower: opens `copy.db` following `FOLLOW_URL`; `wait T` waits until it has
/// applied txid T; `promote` retries `replica_promote()` until it succeeds (prints
/// `promoted <txid> <refusals> <first refusal>`); `write` starts a thread committing a row
/// every 50 ms on a new connection; `stop` stops it and prints `synced <txid>`.
const FOLLOWER: &str = r#"
import sys, threading
copy = os.path.abspath("copy.db")
url = os.environ["FOLLOW_URL"]
from urllib.parse import quote
conn = sqlite3.connect(f"file:{copy}?replica_follow={quote(url, safe='')}&replica_follow_interval=50", uri=True, timeout=10, isolation_level=None)
applied = "SELECT local_txid FROM replica_status() WHERE state = 'following'"
print("ready", flush=True)
stop = threading.Event()
def writer():
    w = sqlite3.connect(copy, isolation_level=None, timeout=10)
    i = 0
    while not stop.is_set():
        w.execute("INSERT INTO t(who, n) VALUES ('new', ?)", (i,))
        i += 1
        stop.wait(0.05)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "wait":
        want = int(cmd[1])
        wait_for("the follower to apply txid %d" % want,
                 lambda: True if conn.execute(applied).fetchone()[0] >= want else None, timeout=60)
        print("applied", conn.execute(applied).fetchone()[0], flush=True)
    elif cmd[0] == "promote":
        refusals, first = 0, ""
        def attempt():
            global refusals, first
            try:
                return conn.execute("SELECT replica_promote()").fetchone()[0]
            except sqlite3.Error as e:
                refusals += 1
                first = first or str(e).replace("\n", " ")
                return None
        txid = wait_for("the promotion", attempt, timeout=60)
        print("promoted", txid, refusals, first, flush=True)
    elif cmd[0] == "write":
        t = threading.Thread(target=writer)
        t.start()
        print("writing", flush=True)
    elif cmd[0] == "stop":
        stop.set()
        t.join()
        w = sqlite3.connect(copy, isolation_level=None, timeout=10)
        print("synced", w.execute("SELECT replica_sync(30000)").fetchone()[0], flush=True)
    elif cmd[0] == "misuse":
        other = sqlite3.connect(os.path.abspath("plain.db"), isolation_level=None)
        try:
            other.execute("SELECT replica_promote()")
            print("misuse accepted", flush=True)
        except sqlite3.Error as e:
            print("misuse", str(e).replace("\n", " "), flush=True)
"#;

/// The LTX files of app.db's replica on disk: (level, min txid, max txid, node id).
fn ltx_files(replica: &Path) -> Vec<(u8, u64, u64, u64)> {
    let node = |p: &Path| u64::from_be_bytes(std::fs::read(p).unwrap()[80..88].try_into().unwrap());
    (ltx_on_disk(replica, 16).into_iter())
        .map(|f| (f.level, f.min, f.max, node(&f.path)))
        .collect()
}

#[test]
fn a_promoted_follower_continues_the_replica_and_the_old_writer_stands_by() {
    let seed = seed_from_env("PROMOTE_SEED", |t| t % 100_000);
    eprintln!("promote: seed {seed}; replay with PROMOTE_SEED={seed}");
    let mut rng = Rng::from_seed(seed);
    let tmp = TempDir::new("promote");
    let srv = s3server::start(&tmp.join("s3"), "bkt");
    let db_url = s3_url(srv.port, "rep/app.db");
    let mut env = s3_env(&srv, &s3_url(srv.port, "rep"));
    env.push(("REPLICA_TEST_LIB".into(), load_path()));
    env.push(("REPLICA_LEASE_TTL".into(), "2s".into()));
    let (wdir, fdir) = (tmp.join("writer"), tmp.join("follower"));
    std::fs::create_dir_all(&wdir).unwrap();
    std::fs::create_dir_all(&fdir).unwrap();
    let mut fenv: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "REPLICA_URL")
        .cloned()
        .collect();
    fenv.push(("FOLLOW_URL".into(), db_url.clone()));

    let mut writer = Timed::ready(&wdir, WRITER, &env, LINE_LIMIT);
    let (rows, per) = (200 + rng.below(300), 1 + rng.below(20));
    let old_txid: u64 = ask(&mut writer, &format!("rows {rows} {per}"), "synced")[0]
        .parse()
        .unwrap();
    let mut follower = Timed::ready(&fdir, FOLLOWER, &fenv, LINE_LIMIT);
    ask(&mut follower, &format!("wait {old_txid}"), "applied");
    writer.kill();

    let promoted = ask(&mut follower, "promote", "promoted");
    let (txid, refusals): (u64, u64) = (promoted[0].parse().unwrap(), promoted[1].parse().unwrap());
    assert_eq!(
        txid,
        old_txid + 1,
        "seed {seed}: the promotion's first upload follows the writer's last txid"
    );
    assert!(
        refusals > 0,
        "seed {seed}: promoted at once, while the dead writer's 2 s lease was still valid"
    );
    let refusal = promoted[2..].join(" ");
    assert!(
        refusal.contains("lease") && refusal.contains("expired"),
        "seed {seed}: {refusal}"
    );

    // The new writer writes; the old one comes back on its own app.db and must stand by.
    ask(&mut follower, "write", "writing");
    let mut revenant = Timed::ready(&wdir, WRITER, &env, LINE_LIMIT);
    let unsynced = ask(&mut revenant, "one", "unsynced").join(" ");
    assert!(
        unsynced.contains("lease") || unsynced.contains("timed out"),
        "seed {seed}: {unsynced}"
    );
    assert_eq!(
        ask(&mut revenant, "state", "state").join(" "),
        "lease held elsewhere"
    );
    let end: u64 = ask(&mut follower, "stop", "synced")[0].parse().unwrap();
    assert!(
        end > txid,
        "seed {seed}: the new writer's commits reached txid {end}"
    );
    let misuse = ask(&mut follower, "misuse", "misuse").join(" ");
    assert!(
        misuse.contains("plain.db") && misuse.contains("not a follower"),
        "{misuse}"
    );
    revenant.kill();
    follower.kill();

    // One history, contiguous txids, and both writers' commits in a restore.
    let files = ltx_files(&tmp.join("s3/bkt/rep/app.db"));
    let nodes: std::collections::BTreeSet<u64> = files.iter().map(|f| f.3).collect();
    assert_eq!(
        nodes.len(),
        1,
        "seed {seed}: the replica holds several histories: {files:?}"
    );
    let level0: Vec<u64> = files.iter().filter(|f| f.0 == 0).map(|f| f.1).collect();
    assert!(
        level0
            .windows(2)
            .all(|w| w[1] == w[0] + 1 || w[1] == txid + 1 && w[0] == old_txid),
        "seed {seed}: level-0 txids are not contiguous: {files:?}"
    );
    let copy = fdir.join("copy.db");
    let want = rows_of(&copy);
    assert!(
        want.contains("|old|") && want.contains("|new|") && !want.contains("revenant"),
        "seed {seed}"
    );
    let ours = tmp.join("restored.db");
    let restore = format!(
        "print(sqlite3.connect(':memory:').execute(\"SELECT replica_restore('{db_url}', '{}')\").fetchone()[0])",
        ours.display()
    );
    let o = python_loaded(&restore, tmp.path(), &as_env(&fenv));
    assert_eq!(
        check(&o, "replica_restore").trim(),
        end.to_string(),
        "seed {seed}"
    );
    assert_eq!(
        rows_of(&ours),
        want,
        "seed {seed}: replica_restore differs from the promoted copy"
    );
    let theirs = litestream_restore_s3(&tmp.join("ls.db"), &db_url, &srv);
    assert_eq!(
        rows_of(&theirs),
        want,
        "seed {seed}: litestream restore differs from the promoted copy"
    );
}

fn ask(p: &mut Timed, cmd: &str, want: &str) -> Vec<String> {
    p.ask(cmd, want, LINE_LIMIT)
}

fn as_env(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Table t, row by row (`id|who|n`), through Debian's sqlite3.
fn rows_of(db: &Path) -> String {
    let o = run(
        SQLITE3,
        &[db.to_str().unwrap(), "SELECT * FROM t ORDER BY id"],
        db.parent().unwrap(),
        &[],
        "",
    );
    check(&o, "sqlite3 SELECT")
        .lines()
        .map(|l| format!("|{l}|\n"))
        .collect()
}

/// The real `litestream restore` of `url` into `out`, with the server's keys.
fn litestream_restore_s3(out: &Path, url: &str, srv: &s3server::S3Server) -> PathBuf {
    let mut cmd = Command::new(litestream_bin());
    cmd.args(["restore", "-integrity-check", "full", "-o"])
        .arg(out)
        .arg(url)
        .current_dir(out.parent().unwrap())
        .env_remove("AWS_CA_BUNDLE")
        .env("AWS_ACCESS_KEY_ID", &srv.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key);
    check(
        &run_command(cmd, "", Duration::from_secs(120)),
        "litestream restore",
    );
    out.to_path_buf()
}
