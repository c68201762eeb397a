//! End to end over the S3 transport, against the in-process `s3s` + `s3s-fs` server (which
//! verifies SigV4): the seeded randomized workload with restores at its sync points; a
//! steady writer behind a fault-injecting loopback proxy (5xx, stalls, resets, cut bodies:
//! tests/common/s3server.rs's `FaultProxy` on a seeded schedule);
//! and Litestream interop both ways (`litestream replicate` to the bucket, `replica_restore`
//! from it). `litestream restore` of a libreplica S3 replica is covered by `tests/s3.rs`.
//! The workload runs twice: path-style, and virtual-hosted through a CONNECT proxy. The
//! workload's driver and restores are tests/common/workload.rs (shared with
//! tests/workload.rs), `litestream replicate` tests/common/litestream_replicate.rs (shared
//! with tests/interop.rs).

mod common;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::litestream_replicate::*;
use common::seeded::Rng;
use common::workload::*;
use common::*;
use s3env::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The environment every process talking to the server gets: the keys, and the extension's
/// log on stderr.
fn keys(srv: &s3server::S3Server) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), srv.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), srv.secret_key.clone()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("REPLICA_LOG".into(), "stderr".into()),
    ]
}

/// The LTX files the server holds under `db_dir` (s3s-fs keeps objects as files):
/// (level, min txid, max txid), sorted.
fn server_ltx_files(db_dir: &Path) -> Vec<(u8, u64, u64)> {
    let mut out = Vec::new();
    let Ok(levels) = std::fs::read_dir(db_dir) else {
        return out;
    };
    for level in levels.flatten() {
        let Ok(lvl) = u8::from_str_radix(&level.file_name().to_string_lossy(), 16) else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(level.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            let Some(stem) = name.strip_suffix(".ltx") else {
                continue;
            };
            let Some((a, b)) = stem.split_once('-') else {
                continue;
            };
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                out.push((lvl, a, b));
            }
        }
    }
    out.sort();
    out
}

/// Level-0 files cover the txids after the first snapshot up to `last`, each exactly once,
/// in order; the first snapshot is 9/1-1.
fn assert_level0_contiguous(files: &[(u8, u64, u64)], last: u64, what: &str) {
    assert!(
        files.contains(&(9, 1, 1)),
        "{what}: no initial snapshot 9/1-1 in {files:?}"
    );
    let l0: Vec<(u64, u64)> = files
        .iter()
        .filter(|f| f.0 == 0)
        .map(|f| (f.1, f.2))
        .collect();
    let mut next = 2;
    for (a, b) in &l0 {
        assert!(
            *a == next && b >= a,
            "{what}: level-0 file {a:x}-{b:x} where txid {next} was due (gap, overlap or duplicate); level 0: {l0:?}"
        );
        next = b + 1;
    }
    assert_eq!(
        next,
        last + 1,
        "{what}: level 0 ends at txid {}, the last synced txid is {last}; level 0: {l0:?}",
        next - 1
    );
}

/// The level-0 check itself catches gaps, overlaps, duplicates and a short tail.
#[test]
fn the_level0_check_rejects_gaps_duplicates_and_overlaps() {
    let good = [(0, 2, 2), (0, 3, 5), (0, 6, 6), (9, 1, 1)];
    assert_level0_contiguous(&good, 6, "good");
    for (bad, last) in [
        (vec![(0, 2, 2), (0, 4, 4), (9, 1, 1)], 4), // gap
        (vec![(0, 2, 2), (0, 2, 3), (9, 1, 1)], 3), // duplicate start
        (vec![(0, 2, 4), (0, 3, 5), (9, 1, 1)], 5), // overlap
        (vec![(0, 2, 2), (0, 3, 3), (9, 1, 1)], 4), // short of the last txid
        (vec![(0, 2, 2)], 2),                       // no snapshot
    ] {
        let r = std::panic::catch_unwind(|| assert_level0_contiguous(&bad, last, "bad"));
        assert!(r.is_err(), "accepted {bad:?} up to {last}");
    }
}

// -- 1. the randomized workload over S3 ---------------------------------------------------

#[test]
fn randomized_workload_over_s3_restores_every_sync_point() {
    randomized_workload(false);
}

/// The same through virtual-hosted addressing (`Host: bkt.localhost:PORT`), reached through
/// a CONNECT proxy given in `HTTP_PROXY` (which the extension honours, like the AWS CLI).
#[test]
fn randomized_workload_virtual_hosted_through_a_proxy() {
    randomized_workload(true);
}

fn randomized_workload(virtual_hosted: bool) {
    let seed = seed_from_env_or_time("S3_WORKLOAD_SEED");
    let ops = ops_from_env(300);
    eprintln!("s3 workload seed {seed} ({ops} ops); replay with S3_WORKLOAD_SEED={seed}");
    let dir = TempDir::new(&format!("s3-workload-{seed}"));
    let (srv, proxy) = if virtual_hosted {
        let srv = s3server::start_virtual_hosted(&dir.join("server"), "bkt");
        let proxy = s3server::connect_proxy(srv.port);
        (srv, Some(proxy))
    } else {
        (s3server::start(&dir.join("server"), "bkt"), None)
    };
    let replica_url = |path: &str| match &proxy {
        Some(_) => format!(
            "s3://bkt/{path}?endpoint={}&force-path-style=false",
            srv.virtual_endpoint()
        ),
        None => s3_url(srv.port, path),
    };
    let url = replica_url("prefix");
    let mut env = keys(&srv);
    env.push(("REPLICA_URL".into(), url.clone()));
    if let Some(p) = &proxy {
        env.push(("HTTP_PROXY".into(), format!("http://127.0.0.1:{}", p.port)));
        env.push(("NO_PROXY".into(), String::new()));
    }
    // Vary how commits are batched into objects with the seed.
    let interval = sync_interval(seed);
    eprintln!("seed {seed}: sync interval {interval}");
    env.push(("REPLICA_SYNC_INTERVAL".into(), interval.into()));
    let env = as_refs(&env);
    let started = Instant::now();
    let workload_run = Run {
        dir: dir.path(),
        seed,
        env: &env,
        limit: Duration::from_secs(240),
        over: " over s3",
        replay_var: "S3_WORKLOAD_SEED",
    };
    let (run_out, report, fin) = workload_run.drive(ops);
    assert_status_settled(&report, &fin, seed);
    let run_err = stderr(&run_out);
    let errors: Vec<&str> = run_err
        .lines()
        .filter(|l| l.starts_with("libreplica error"))
        .collect();
    assert!(
        errors.is_empty(),
        "seed {seed}: the extension logged errors:\n{}",
        errors.join("\n")
    );

    // Restore the latest and every point, naming the replica by database name (through
    // REPLICA_URL) and by its full S3 URL, alternately.
    workload_run.restore_every_point(&report, &fin, &replica_url("prefix/app.db"));

    // The bucket: level-9 snapshots and level-0 files together count the txids.
    let files = server_ltx_files(&dir.join("server/bkt/prefix/app.db"));
    let counted = files.iter().filter(|f| f.0 == 0 || f.0 == 9).count() as u64;
    assert_eq!(
        counted, fin.txid,
        "seed {seed}: {counted} level-0/level-9 files for txid {}: {files:?}",
        fin.txid
    );
    if let Some(p) = &proxy {
        let targets = p.targets.lock().unwrap().clone();
        let want = format!("bkt.localhost:{}", srv.port);
        assert!(
            !targets.is_empty() && targets.iter().all(|t| *t == want),
            "seed {seed}: expected every request to go to {want}, the proxy saw {targets:?}"
        );
    }
    eprintln!(
        "seed {seed}: OK in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// -- 2. a fault-injecting proxy ---------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Status500,
    Status503,
    Stall,
    Reset,
    CutBody,
}

const FAULTS: [Fault; 5] = [
    Fault::Status500,
    Fault::Status503,
    Fault::Stall,
    Fault::Reset,
    Fault::CutBody,
];

const BLACKOUT: [Fault; 4] = [
    Fault::Status500,
    Fault::Status503,
    Fault::Reset,
    Fault::CutBody,
];

/// The shared [`s3server::FaultProxy`] in front of `upstream` on a seeded schedule. For
/// `fault_for` after it starts, every other request gets a fault, cycling through
/// [`FAULTS`], except in the middle fifth..four fifths of that time, a blackout where every
/// request fails; then it is transparent. It counts the faults it injected. The proxy stops
/// when dropped.
struct FaultProxy {
    proxy: s3server::FaultProxy,
    port: u16,
    started: Instant,
    fault_for: Duration,
    injected: Arc<Vec<AtomicUsize>>,
}

impl FaultProxy {
    fn start(upstream: u16, seed: u64, fault_for: Duration, blackout: bool) -> FaultProxy {
        let injected: Arc<Vec<AtomicUsize>> =
            Arc::new(FAULTS.iter().map(|_| AtomicUsize::new(0)).collect());
        let started = Instant::now();
        let inj = injected.clone();
        let mut rng = Rng::from_seed(seed);
        let mut n = 0u64;
        let schedule = move || {
            let t = started.elapsed();
            let fault = if t >= fault_for {
                None
            } else if blackout && t >= fault_for * 2 / 5 && t < fault_for * 4 / 5 {
                // A blackout: every request fails (no stalls, which succeed late), longer
                // than the store's own retries last, so whole uploads fail.
                Some(BLACKOUT[rng.below(BLACKOUT.len() as u64) as usize])
            } else if n % 2 == 1 {
                Some(FAULTS[((n / 2) % FAULTS.len() as u64) as usize])
            } else {
                None
            };
            n += 1;
            let stall = Duration::from_millis(200 + rng.below(400));
            let cut = rng.below(1000);
            fault.map(|f| {
                inj[FAULTS.iter().position(|x| *x == f).unwrap()].fetch_add(1, Ordering::SeqCst);
                match f {
                    Fault::Status500 => s3server::Fault::Status500,
                    Fault::Status503 => s3server::Fault::Status503,
                    Fault::Stall => s3server::Fault::Delay(stall),
                    Fault::Reset => s3server::Fault::Reset,
                    Fault::CutBody => s3server::Fault::CutBody(cut),
                }
            })
        };
        let proxy = s3server::FaultProxy::scheduled(upstream, Box::new(schedule));
        FaultProxy {
            port: proxy.port,
            proxy,
            started,
            fault_for,
            injected,
        }
    }

    fn injected(&self) -> Vec<(Fault, usize)> {
        FAULTS
            .iter()
            .zip(self.injected.iter())
            .map(|(f, n)| (*f, n.load(Ordering::SeqCst)))
            .collect()
    }

    fn requests(&self) -> usize {
        self.proxy.requests()
    }

    fn faults_over(&self) -> bool {
        self.started.elapsed() >= self.fault_for
    }
}

#[test]
fn a_steady_writer_survives_5xx_stalls_resets_and_cut_bodies() {
    let seed = seed_from_env_or_time("S3_FAULT_SEED");
    eprintln!("fault proxy seed {seed}; replay with S3_FAULT_SEED={seed}");
    let dir = TempDir::new("s3-faults");
    let srv = s3server::start(&dir.join("server"), "bkt");
    let proxy = FaultProxy::start(srv.port, seed, Duration::from_secs(5), true);
    let mut env = keys(&srv);
    env.push(("REPLICA_URL".into(), s3_url(proxy.port, "faulty")));
    env.push(("REPLICA_SYNC_INTERVAL".into(), "50ms".into()));
    let env = as_refs(&env);
    let started = Instant::now();
    // Commits at a steady pace for about 7 s (the faults last the first 5 s), then syncs.
    let out = python_loaded(
        &format!(
            r#"
import random, time
rng = random.Random({seed})
db = sqlite3.connect("app.db", isolation_level=None)
assert db.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
commits = 0
t0 = time.time()
while time.time() - t0 < 7.0:
    db.execute("BEGIN IMMEDIATE")
    for i in range(rng.randint(1, 20)):
        db.execute("INSERT INTO t(v) VALUES (?)", (rng.randbytes(rng.choice([10, 500, 5000, 20000])),))
    if rng.random() < 0.3:
        db.execute("DELETE FROM t WHERE id % 7 = ?", (rng.randint(0, 6),))
    db.execute("COMMIT")
    commits += 1
    time.sleep(0.03)  # the writer's pace
print("commits", commits)
print("synced", db.execute("SELECT replica_sync(60000)").fetchone()[0])
cur = db.execute("SELECT * FROM replica_status()")
cols = [d[0] for d in cur.description]
for row in cur.fetchall():
    for k, v in zip(cols, row):
        print("status", k, v)
db.close()
"#
        ),
        dir.path(),
        &env,
    );
    let text = check(
        &out,
        &format!("writer behind the fault proxy (seed {seed})"),
    );
    let injected = proxy.injected();
    eprintln!(
        "seed {seed}: {:.1} s, {} requests through the proxy, injected {injected:?}",
        started.elapsed().as_secs_f64(),
        proxy.requests()
    );
    eprintln!(
        "seed {seed}: status after the faults: {}",
        text.lines()
            .filter(|l| l.starts_with("status ") || l.starts_with("commits "))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert!(
        proxy.faults_over(),
        "seed {seed}: the writer ended inside the fault window"
    );
    assert!(
        injected.iter().all(|(_, n)| *n > 0),
        "seed {seed}: not every fault was injected: {injected:?}"
    );
    let synced: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("synced "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("seed {seed}: no synced txid:\n{text}"));
    let status: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("status "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_ne!(
        status.get("upload_errors").copied().unwrap_or("0"),
        "0",
        "seed {seed}: the blackout failed no upload (the faults did not reach the extension): {status:?}"
    );
    assert_eq!(
        status.get("pending_txns"),
        Some(&"0"),
        "seed {seed}: {status:?}"
    );
    assert_eq!(
        status.get("replicated_txid").copied(),
        Some(synced.to_string().as_str()),
        "seed {seed}: {status:?}"
    );

    // Restore (straight from the server, past the proxy) equals the source.
    let restore = python_loaded(
        &format!(
            "print('restored', boot.execute(\"SELECT replica_restore('{}', 'r.db')\").fetchone()[0])\n",
            s3_url(srv.port, "faulty/app.db")
        ),
        dir.path(),
        &env,
    );
    let rtext = check(
        &restore,
        &format!("replica_restore after faults (seed {seed})"),
    );
    assert!(
        rtext.contains(&format!("restored {synced}")),
        "seed {seed}: restore returned {rtext}, replica_sync {synced}"
    );
    assert!(
        dump(&dir.join("app.db")) == dump(&dir.join("r.db")),
        "seed {seed}: the restore differs from the source"
    );
    // And a restore through a proxy that faults every other request (5xx, stalls, resets,
    // cut response bodies) all along: the store's retries carry it, and it is the same.
    let restore_proxy = FaultProxy::start(srv.port, seed ^ 0x5eed, Duration::from_secs(120), false);
    let restore = python_loaded(
        &format!(
            "print('restored', boot.execute(\"SELECT replica_restore('{}', 'r2.db')\").fetchone()[0])\n",
            s3_url(restore_proxy.port, "faulty/app.db")
        ),
        dir.path(),
        &env,
    );
    let rtext = check(
        &restore,
        &format!("replica_restore through the faulting proxy (seed {seed})"),
    );
    let injected = restore_proxy.injected();
    eprintln!("seed {seed}: restore through the proxy injected {injected:?}");
    assert!(
        injected.iter().all(|(_, n)| *n > 0),
        "seed {seed}: not every fault was injected into the restore: {injected:?}"
    );
    assert!(
        rtext.contains(&format!("restored {synced}")),
        "seed {seed}: restore through the proxy returned {rtext}, replica_sync {synced}"
    );
    assert!(
        dump(&dir.join("app.db")) == dump(&dir.join("r2.db")),
        "seed {seed}: the restore through the faulting proxy differs from the source"
    );
    drop(restore_proxy);

    let files = server_ltx_files(&dir.join("server/bkt/faulty/app.db"));
    assert_level0_contiguous(&files, synced, &format!("seed {seed}"));
    assert_eq!(
        status.get("snapshots"),
        Some(&"1"),
        "seed {seed}: a fallback snapshot was taken: {status:?}"
    );
}

// -- 3. litestream replicate to S3, libreplica restores --------------------------------

fn litestream(args: &[&str], cwd: &Path, srv: &s3server::S3Server) -> Output {
    let mut cmd = Command::new(litestream_bin());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("AWS_CA_BUNDLE")
        .env("AWS_ACCESS_KEY_ID", &srv.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key)
        .env("AWS_REGION", "us-east-1");
    run_command(cmd, "", Duration::from_secs(60))
}

#[test]
fn libreplica_restores_what_litestream_replicated_to_s3() {
    let seed = seed_from_env_or_time("S3_LS_SEED");
    eprintln!("litestream-to-s3 seed {seed}; replay with S3_LS_SEED={seed}");
    let dir = TempDir::new("s3-ls-replicate");
    let srv = s3server::start(&dir.join("server"), "bkt");
    let db = dir.join("app.db");
    let config = dir.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: s3\n      bucket: bkt\n      path: ls/app.db\n      endpoint: {}\n      region: us-east-1\n      force-path-style: true\n      access-key-id: {}\n      secret-access-key: {}\n      sync-interval: 100ms\n",
            db.display(),
            srv.endpoint(),
            srv.access_key,
            srv.secret_key
        ),
    )
    .unwrap();
    write_first_row(dir.path());
    let mut ls = Replicator::start(&config, dir.path());
    let url = s3_url(srv.port, "ls/app.db");
    // Bounded poll: litestream's own restore from the bucket matches the source.
    let wait_replicated_to_bucket = |want: &str, what: &str| {
        wait_replicated(
            dir.path(),
            want,
            &format!("{what} to the bucket"),
            &format!("seed {seed}: "),
            |out| {
                litestream(
                    &["restore", "-o", out.to_str().unwrap(), &url],
                    dir.path(),
                    &srv,
                )
            },
        )
    };
    wait_replicated_to_bucket(&dump_t(&db), "the initial database");
    for round in 0..3 {
        write_round(dir.path(), seed + u64::from(round), round);
        wait_replicated_to_bucket(&dump_t(&db), &format!("round {round}"));
    }
    let want = dump_t(&db);
    ls.stop();
    let files = server_ltx_files(&dir.join("server/bkt/ls/app.db"));
    let env = keys(&srv);
    let out = python_loaded(
        &format!("print('restored', boot.execute(\"SELECT replica_restore('{url}', 'x.db')\").fetchone()[0])\n"),
        dir.path(),
        &as_refs(&env),
    );
    let text = check(
        &out,
        &format!(
            "replica_restore of the litestream-written S3 replica (seed {seed}); files {files:?}"
        ),
    );
    let max = files.iter().map(|f| f.2).max().unwrap_or(0);
    assert_eq!(
        text.trim(),
        format!("restored {max}"),
        "seed {seed}: replica_restore did not restore the replica's last txid; files {files:?}"
    );
    eprintln!("seed {seed}: litestream wrote {files:?}");
    assert!(
        dump_t(&dir.join("x.db")) == want,
        "seed {seed}: replica_restore of the litestream S3 replica differs from the source; files {files:?}"
    );
}
