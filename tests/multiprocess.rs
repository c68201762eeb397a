//! Many processes, forks and kills: 4 writer processes and 1 parent
//! that forks 2 writers of its own move money between accounts (the total is invariant)
//! while a seeded loop kills a random one with SIGKILL at least 50 times and starts it
//! again. Two writers commit synchronously and keep a list of what was acknowledged.
//! Afterwards the last process syncs; a restore must pass `integrity_check`, keep the
//! total, hold every acknowledged transfer, and the replica's files must name every txid
//! exactly once (level 0), or as a snapshot's state (level 9).

mod common;
use common::seeded;
#[path = "common/procs.rs"]
mod procs;

use common::*;
use procs::Procs;
use seeded::{seed_from_env, Rng};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn bank_script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/multiprocess/bank.py")
        .display()
        .to_string()
}

struct Writer {
    name: String,
    mode: &'static str,
    fork: bool,
    child: Child,
}

/// Every writer's process group (each writer leads its own, and its forked children stay
/// in it when their parent is killed): killed when the test ends, however it ends, so that
/// no writer outlives a failed run and writes on into its directory.
struct Groups(Vec<u32>);

impl Groups {
    fn kill_all(&self) {
        for pgid in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-9", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Whether a process of one of the groups is still running (zombies aside).
    fn any_alive(&self) -> bool {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return false;
        };
        entries.flatten().any(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                return false;
            };
            // After the command's closing parenthesis: state, ppid, pgrp.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2
                && fields[0] != "Z"
                && fields[2]
                    .parse::<u32>()
                    .is_ok_and(|pgrp| self.0.contains(&pgrp))
        })
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn start(
    groups: &mut Groups,
    dir: &Path,
    env: &[(&str, &str)],
    name: &str,
    seed: u64,
    mode: &'static str,
    fork: bool,
) -> Writer {
    let script = bank_script();
    let seed = seed.to_string();
    let mut args = vec!["-u", script.as_str(), "write", name, seed.as_str(), mode];
    if fork {
        args.push("fork");
    }
    let mut child = replica_command(PYTHON3, &args, dir, env)
        .process_group(0)
        .stdout(Stdio::piped())
        // Each writer's log (notices of snapshots, take-overs, capture problems) stays in the
        // test's directory, kept with KEEP_TEST_DIRS=1 for a failure to be read.
        .stderr(std::fs::File::create(dir.join(format!("log-{name}-{seed}.txt"))).unwrap())
        .spawn()
        .unwrap();
    groups.0.push(child.id());
    // Wait until it writes (and, forking, until its children exist).
    let mut out = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break; // died before writing (killed while starting is fine too)
        }
        if line.starts_with("writing") {
            break;
        }
    }
    Writer {
        name: name.to_string(),
        mode,
        fork,
        child,
    }
}

fn kill9(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

#[test]
fn writers_forks_and_fifty_kills_lose_no_acknowledged_transfer() {
    let seed = seed_from_env("MULTIPROCESS_SEED", |t| t | 1);
    eprintln!("multiprocess seed {seed}; replay with MULTIPROCESS_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = TempDir::new(&format!("multiprocess-{seed}"));
    let url = format!("file://{}", dir.join("replicas").display());
    let lib = load_path();
    let env = [
        ("REPLICA_URL", url.as_str()),
        ("REPLICA_TEST_LIB", lib.as_str()),
        ("REPLICA_SYNC_INTERVAL", "100ms"),
    ];
    let setup = run(PYTHON3, &[&bank_script(), "setup"], dir.path(), &env, "");
    check(&setup, &format!("setup (seed {seed})"));

    let plan: [(&str, &'static str, bool); 5] = [
        ("w0", "sync", false),
        ("w1", "sync", false),
        ("w2", "async", false),
        ("w3", "async", false),
        ("parent", "async", true),
    ];
    // Forked children outlive a killed parent by up to one transfer: all are killed at the
    // end, with their groups.
    let mut groups = Groups(Vec::new());
    let mut writers: Vec<Writer> = plan
        .iter()
        .map(|(n, m, f)| start(&mut groups, dir.path(), &env, n, rng.next(), m, *f))
        .collect();
    let started = Instant::now();
    let mut kills = 0;
    while kills < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "seed {seed}: only {kills} kills in 120 s"
        );
        // The fault itself: a random moment in the writers' work, not synchronization.
        std::thread::sleep(Duration::from_millis(20 + rng.below(150)));
        let i = rng.below(writers.len() as u64) as usize;
        let w = &mut writers[i];
        w.child.kill().unwrap(); // SIGKILL
        w.child.wait().unwrap();
        kills += 1;
        let (name, mode, fork) = (w.name.clone(), w.mode, w.fork);
        writers[i] = start(&mut groups, dir.path(), &env, &name, rng.next(), mode, fork);
    }
    eprintln!(
        "seed {seed}: {kills} kills in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Stop everyone at an arbitrary moment too.
    for w in &mut writers {
        w.child.kill().unwrap();
        w.child.wait().unwrap();
    }
    groups.kill_all();
    let deadline = Instant::now() + Duration::from_secs(30);
    while groups.any_alive() {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: forked writers still alive"
        );
        std::thread::park_timeout(Duration::from_millis(10));
    }

    // A last process (the survivor) opens the database, catches up, syncs and restores.
    let out = python_loaded(
        r#"
c = sqlite3.connect("app.db", isolation_level=None, timeout=30)
print("synced", c.execute("SELECT replica_sync(60000)").fetchone()[0], flush=True)
c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
r = sqlite3.connect("r.db")
print("integrity", r.execute("PRAGMA integrity_check").fetchone()[0])
print("total", r.execute("SELECT sum(balance) FROM accounts").fetchone()[0])
print("source_total", c.execute("SELECT sum(balance) FROM accounts").fetchone()[0])
print("ledger", r.execute("SELECT count(*) FROM ledger").fetchone()[0], c.execute("SELECT count(*) FROM ledger").fetchone()[0])
with open("restored-ids.txt", "w") as f:
    for (i,) in r.execute("SELECT id FROM ledger"):
        f.write(i + "\n")
"#,
        dir.path(),
        &env,
    );
    let text = check(&out, &format!("final sync and restore (seed {seed})"));
    eprintln!("seed {seed}: {text}");
    // Every owner found the records the one before it wrote: a spool whose generation
    // vouches for records its segments no longer hold is repaired by a snapshot, and says
    // so (records cut off as torn that were whole had lost a WAL generation).
    let mut said = stderr(&out);
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("log-") {
            said += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
    }
    let lost = lines_with(&said, "vouches for records");
    assert!(
        lost.is_empty(),
        "seed {seed}: records went missing from the spool: {lost:?}"
    );
    assert!(text.contains("integrity ok"), "seed {seed}: {text}");
    assert!(
        text.contains("total 50000\n"),
        "seed {seed}: the total changed: {text}"
    );
    assert!(text.contains("source_total 50000\n"), "seed {seed}: {text}");
    let ledger = text
        .lines()
        .find_map(|l| l.strip_prefix("ledger "))
        .unwrap()
        .to_string();
    let counts: Vec<&str> = ledger.split(' ').collect();
    assert_eq!(
        counts[0], counts[1],
        "seed {seed}: the restore differs from the source"
    );

    // Every acknowledged synchronous transfer is in the restore.
    let restored: BTreeSet<String> = std::fs::read_to_string(dir.join("restored-ids.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut acked = 0;
    for name in ["w0", "w1"] {
        let acks =
            std::fs::read_to_string(dir.join(&format!("acks-{name}.txt"))).unwrap_or_default();
        for id in acks.lines() {
            acked += 1;
            assert!(
                restored.contains(id),
                "seed {seed}: acknowledged {id} is not in the replica"
            );
        }
    }
    assert!(
        acked > 0,
        "seed {seed}: no synchronous transfer was acknowledged"
    );
    eprintln!(
        "seed {seed}: {acked} acknowledged synchronous transfers, {} transfers restored",
        restored.len()
    );

    // No txid twice, none skipped: level-0 ranges are disjoint and, with the states of
    // level-9 snapshots, cover 1..=last.
    let ltx = dir.join("replicas/app.db/ltx");
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut snapshot_states = BTreeSet::new();
    for (level, into_snapshots) in [("0", false), ("9", true)] {
        let Ok(entries) = std::fs::read_dir(ltx.join(level)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(stem) = name.strip_suffix(".ltx") else {
                continue;
            };
            let Some((a, b)) = stem.split_once('-') else {
                continue;
            };
            let (a, b) = (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            );
            if into_snapshots {
                snapshot_states.insert(b);
            } else {
                ranges.push((a, b));
            }
        }
    }
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(
            w[0].1 < w[1].0,
            "seed {seed}: txids in two level-0 files: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    let last = ranges
        .iter()
        .map(|r| r.1)
        .chain(snapshot_states.iter().copied())
        .max()
        .unwrap();
    let synced: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("synced "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(last, synced, "seed {seed}");
    let mut covered = BTreeSet::new();
    for (a, b) in &ranges {
        covered.extend(*a..=*b);
    }
    covered.extend(snapshot_states.iter().copied());
    let missing: Vec<u64> = (1..=last).filter(|t| !covered.contains(t)).collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: txids in no file: {missing:?}"
    );
}

/// Two "hosts" (two processes, each with its own volume: database and spool) pointed at one
/// replica path, as an old and a new container during a deploy. The new one boots with an
/// empty volume, so it restores the replica first, then writes: only the lease holder
/// uploads; the other reports it in status and keeps its commits, then takes over once the
/// first is gone and its lease ran out, with a snapshot above everything the first wrote.
#[test]
fn two_hosts_on_one_replica_never_both_upload() {
    let procs = Procs::new("two-hosts", &[("REPLICA_LEASE_TTL", "2s")]);
    let dir = &procs.dir;
    for host in ["host-a", "host-b"] {
        std::fs::create_dir_all(dir.join(host)).unwrap();
    }
    let spawn = |host: &str, body: &str| procs.spawn_in(&dir.join(host), body);
    let body = |who: &str| {
        format!(
            r#"{PY_WAIT_FOR}
import sys
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE IF NOT EXISTS t(who TEXT, n INTEGER)")
for n in range(5):
    c.execute("INSERT INTO t VALUES ('{who}', ?)", (n,))
try:
    print("synced", c.execute("SELECT replica_sync(1500)").fetchone()[0], flush=True)
except sqlite3.Error as e:
    print("refused", e, flush=True)
print("status", *c.execute("SELECT state, pending_txns > 0 FROM replica_status()").fetchone(), flush=True)
sys.stdin.readline()
synced = wait_for("takeover (a replica_sync that succeeds)", lambda: c.execute("SELECT replica_sync(1000)").fetchone()[0], timeout=20, retry_on=sqlite3.Error)
print("synced", synced, flush=True)
"#
        )
    };
    let mut a = spawn("host-a", &body("a"));
    let line = a.line();
    assert!(line.starts_with("synced"), "host a: {line:?}");
    let mut b = spawn("host-b", &body("b"));
    let line = b.line();
    assert!(
        line.starts_with("refused") && line.contains("another uploader holds this replica's lease"),
        "host b must not upload while host a holds the lease: {line:?}"
    );
    assert_eq!(
        b.line().trim(),
        "status lease held elsewhere 1",
        "host b's status"
    );

    let files = |d: &Path| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for level in ["0", "9"] {
            if let Ok(rd) = std::fs::read_dir(d.join("replicas/app.db/ltx").join(level)) {
                out.extend(
                    rd.flatten()
                        .map(|e| format!("{level}/{}", e.file_name().to_string_lossy())),
                );
            }
        }
        out
    };
    let restore_rows = || {
        let out = python_loaded(
            r#"
c = sqlite3.connect(":memory:")
c.execute("SELECT replica_restore(?, 'r.db', NULL, 'overwrite')", (os.environ["URL"] + "/app.db",)).fetchone()
print(sqlite3.connect("r.db").execute("SELECT group_concat(who) FROM (SELECT DISTINCT who FROM t ORDER BY who)").fetchone()[0])
"#,
            dir.path(),
            &[("URL", procs.url.as_str())],
        );
        check(&out, "restore the shared replica").trim().to_string()
    };
    assert_eq!(restore_rows(), "a", "only host a's data is in the replica");
    let before = files(dir.path());

    // Host a goes away without a word; host b takes over once a's lease has run out.
    a.kill();
    b.send("go");
    let line = b.line();
    assert!(
        line.starts_with("synced"),
        "host b never took over: {line:?}"
    );
    b.finish();
    assert_eq!(
        restore_rows(),
        "a,b",
        "host b's snapshot (a's data, then b's) is the latest state"
    );
    // Host b wrote above everything host a wrote; nothing of a's was replaced.
    let after = files(dir.path());
    assert!(before.is_subset(&after), "{before:?} vs {after:?}");
    let max_before = before
        .iter()
        .filter_map(|f| {
            f.split(['-', '.'])
                .nth(1)
                .and_then(|t| u64::from_str_radix(t, 16).ok())
        })
        .max()
        .unwrap();
    for f in after.difference(&before) {
        let min = u64::from_str_radix(f.split(['/', '-']).nth(1).unwrap(), 16).unwrap();
        let max = u64::from_str_radix(f.split(['-', '.']).nth(1).unwrap(), 16).unwrap();
        assert!(
            max > max_before && (min == 1 || min > max_before),
            "{f} overlaps host a's files"
        );
    }
}

/// Processes that do not upload restart the WAL often (small auto-checkpoint) while the
/// uploading process only watches: each hands the old log's commits over before its
/// restart, so the replica ends equal to the source with no snapshot beyond the first.
#[test]
fn restarts_by_processes_that_do_not_upload_need_no_snapshot() {
    let procs = Procs::new("handoff", &[("REPLICA_SYNC_INTERVAL", "1s")]);
    let mut owner = procs.spawn(
        r#"
import sys
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(who TEXT, n INTEGER, pad BLOB)")
print("synced", c.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
sys.stdin.readline()
print("synced", c.execute("SELECT replica_sync(30000)").fetchone()[0], flush=True)
c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
q = "SELECT who, n, hex(pad) FROM t ORDER BY who, n"
print("same", c.execute(q).fetchall() == sqlite3.connect("r.db").execute(q).fetchall(), flush=True)
print("rows", c.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)
print("snapshots", c.execute("SELECT snapshots FROM replica_status() WHERE name = 'app.db'").fetchone()[0], flush=True)
"#,
    );
    let line = owner.line();
    assert!(line.starts_with("synced"), "{line:?}");
    let writer = |who: &str| {
        format!(
            r#"
c = sqlite3.connect("app.db", isolation_level=None, timeout=30)
c.execute("PRAGMA wal_autocheckpoint=8")
for n in range(150):
    c.execute("INSERT INTO t VALUES ('{who}', ?, randomblob(3000))", (n,))
print("wrote", c.execute("SELECT state FROM replica_status() WHERE name = 'app.db'").fetchone()[0])
"#
        )
    };
    for who in ["w1", "w2"] {
        let o = procs.python(&writer(who));
        let text = check(&o, who);
        assert!(
            text.contains("wrote standby"),
            "{who} must not upload: {text}"
        );
    }
    owner.send("go");
    let (rest, _) = owner.finish();
    assert!(rest.contains("same True"), "{rest}");
    assert!(rest.contains("rows 300"), "{rest}");
    assert!(
        rest.contains("snapshots 1\n"),
        "a restart by another process cost a snapshot: {rest}"
    );
}

/// A forked child that outlives its parent (a worker, a job runner) shares the parent's
/// open spool lock: unless it gives its share up at the fork, the spool stays locked while
/// it runs and no other process can take replication over. Here the parent replicates,
/// forks a child that writes and keeps running, and exits: the next process must own the
/// spool and replicate the child's commit, not stand by for a process that never uploads.
#[test]
fn a_forked_child_outliving_its_parent_leaves_the_spool_to_the_next_process() {
    let procs = Procs::new("fork-outlives", &[("REPLICA_SYNC_INTERVAL", "100ms")]);
    let mut parent = procs.spawn(
        r#"
import sys
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(who TEXT)")
c.execute("INSERT INTO t VALUES ('parent')")
c.execute("SELECT replica_sync(10000)").fetchone()
c.close()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    k = sqlite3.connect("app.db", isolation_level=None, timeout=30)
    k.execute("INSERT INTO t VALUES ('child')")
    print("child", os.getpid(), flush=True)
    os.write(w, b"x")
    sys.stdin.readline()  # runs until the test lets it go
    os._exit(0)
os.close(w)
os.read(r, 1)
os._exit(0)
"#,
    );
    let line = parent.line();
    let child: u32 = line
        .strip_prefix("child ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no child: {line:?}"));
    // Waited for without closing its stdin, which the child reads until the test is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = parent.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the parent did not exit");
        std::thread::park_timeout(Duration::from_millis(10));
    };
    assert!(status.success(), "the parent exited with {status}");

    let out = procs.python(
        r#"
c = sqlite3.connect("app.db", isolation_level=None, timeout=30)
print("state", c.execute("SELECT state FROM replica_status() WHERE name = 'app.db'").fetchone()[0])
print("synced", c.execute("SELECT replica_sync(20000)").fetchone()[0])
c.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
print("rows", sorted(r for (r,) in sqlite3.connect("r.db").execute("SELECT who FROM t")))
"#,
    );
    // Let the child go before any assertion can fail.
    kill9(child);
    let text = check(&out, "the process after the parent");
    assert!(
        !text.contains("state standby"),
        "the next process stood by for a forked child that never uploads: {text}"
    );
    assert!(text.contains("rows ['child', 'parent']"), "{text}");
}
