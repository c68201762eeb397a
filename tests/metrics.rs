//! `replica_metrics()` as Prometheus reads it: the extension loaded into Debian's python3
//! (through a venv of it that has `prometheus_client`, the Prometheus project's own Python
//! client), replicating to the in-process S3 server that checks signatures; the text is
//! parsed by `prometheus_client`'s exposition parser, and the values asserted — caught up
//! after `replica_sync()`, and a lag that rises while the bucket stops answering and falls
//! back to 0 once it answers again.
//!
//! The parser's Python is `$REPLICA_PROM_PYTHON`, else `/opt/prom-venv/bin/python`, which
//! `.ci/run` installs. Without it the tests are skipped with a message, except under CI.

mod common;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::*;
use s3env::{as_refs, s3_env, s3_url};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A Python that can load the extension and import `prometheus_client`, or `None` (with a
/// printed skip) when there is none and CI is not set.
fn prom_python() -> Option<String> {
    let python = std::env::var("REPLICA_PROM_PYTHON")
        .unwrap_or_else(|_| "/opt/prom-venv/bin/python".to_string());
    let ok = std::process::Command::new(&python)
        .args([
            "-c",
            "import sqlite3, prometheus_client.parser; assert hasattr(sqlite3.Connection, 'enable_load_extension')",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(python);
    }
    let why = format!(
        "{python} cannot import prometheus_client or load extensions (.ci/run installs /opt/prom-venv, a venv of /usr/bin/python3 with prometheus_client; REPLICA_PROM_PYTHON names another)"
    );
    if std::env::var_os("CI").is_some() {
        panic!("required under CI: {why}");
    }
    println!("SKIPPED: {why}");
    None
}

/// Python: `metrics(db)`, the samples of `replica_metrics()` as the Prometheus parser reads
/// them, keyed by (sample name, database name, labels beyond db/path/replica as `k=v,…`).
const PY_METRICS: &str = r#"
from prometheus_client.parser import text_string_to_metric_families
def families(db):
    return list(text_string_to_metric_families(db.execute("SELECT replica_metrics()").fetchone()[0]))
def key(s):
    rest = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k not in ("db", "path", "replica"))
    return (s.name, s.labels["db"], rest)
def metrics(db):
    return {key(s): s.value for f in families(db) for s in f.samples}
"#;

/// One sample as the test script printed it.
#[derive(Debug, Clone)]
struct Sample {
    path: String,
    replica: String,
    value: f64,
}

/// Samples by (sample name, database name, labels beyond db/path/replica as `k=v,…`).
type Samples = HashMap<(String, String, String), Sample>;

/// The `sample` and `family` lines of a script's output: the samples, and each family's type.
fn parse_output(text: &str) -> (Samples, HashMap<String, String>) {
    let (mut samples, mut families) = (HashMap::new(), HashMap::new());
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f[0] {
            "sample" => {
                let s = Sample {
                    path: f[3].into(),
                    replica: f[4].into(),
                    value: f[6].parse().unwrap_or_else(|_| panic!("{line}")),
                };
                samples.insert((f[1].into(), f[2].into(), f[5].into()), s);
            }
            "family" => {
                families.insert(f[1].to_string(), f[2].to_string());
            }
            _ => {}
        }
    }
    (samples, families)
}

/// Two databases (one named with a double quote, which the label must escape) replicate to
/// S3; after `replica_sync()` and a restore drill, the parser reads every family with the
/// right type, and the values say: caught up, uploads and bytes counted, requests by class
/// priced at R2's rates, the drill passed, labels naming each database and its redacted
/// replica, no secret.
#[test]
fn prometheus_parses_the_metrics_of_a_synced_database() {
    let Some(python) = prom_python() else { return };
    let dir = TempDir::new("metrics-parse");
    let srv = s3server::start(&dir.join("s3"), "bkt");
    let mut env = s3_env(&srv, &s3_url(srv.port, "m"));
    env.push(("REPLICA_TEST_LIB".into(), load_path()));
    let script = format!(
        r#"{PY_LOAD}{PY_METRICS}
import time
t0 = time.time()
dbs = {{}}
for name in ["app.db", 'q"uote.db']:
    db = sqlite3.connect(name, isolation_level=None)
    db.execute("CREATE TABLE t(x)")
    for i in range(5):
        db.execute("INSERT INTO t VALUES (?)", (i,))
    dbs[name] = db
app = dbs["app.db"]
synced = app.execute("SELECT replica_sync(30000)").fetchone()[0]
print("synced", synced, sep="\t")
print("verified", app.execute("SELECT replica_verify()").fetchone()[0], sep="\t")
for row in app.execute("SELECT name, path, replica_url FROM replica_status()"):
    print("status", *row, sep="\t")
fams = families(app)
print("time", t0, time.time(), sep="\t")
for f in fams:
    print("family", f.name, f.type, sep="\t")
    for s in f.samples:
        name, db, rest = key(s)
        print("sample", name, db, s.labels["path"], s.labels["replica"], rest, repr(s.value), sep="\t")
"#
    );
    let out = run(&python, &["-"], dir.path(), &as_refs(&env), &script);
    let text = check(&out, "the metrics script");
    assert!(
        !text.contains(&srv.secret_key) && !stderr(&out).contains(&srv.secret_key),
        "a secret in the output"
    );
    let field = |tag: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{tag}\t")))
            .map(|l| l.split('\t').map(String::from).collect())
            .collect()
    };
    let synced: f64 = field("synced")[0][0].parse().unwrap();
    let (t0, t1): (f64, f64) = (
        field("time")[0][0].parse().unwrap(),
        field("time")[0][1].parse().unwrap(),
    );
    let status: HashMap<String, (String, String)> = field("status")
        .into_iter()
        .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone())))
        .collect();
    let (samples, families) = parse_output(&text);
    let get = |name: &str, db: &str, rest: &str| -> Sample {
        samples
            .get(&(name.to_string(), db.to_string(), rest.to_string()))
            .unwrap_or_else(|| panic!("no sample {name}{{db={db:?},{rest}}} in:\n{text}"))
            .clone()
    };
    let app = |name: &str| get(name, "app.db", "").value;

    // Types as the parser read them (it names a counter's family without `_total`).
    for (family, kind) in [
        ("replica_lag_seconds", "gauge"),
        ("replica_pending_bytes", "gauge"),
        ("replica_uploads", "counter"),
        ("replica_uploaded_bytes", "counter"),
        ("replica_requests", "counter"),
        ("replica_request_cost_usd", "gauge"),
        ("replica_state", "gauge"),
    ] {
        assert_eq!(
            families.get(family).map(String::as_str),
            Some(kind),
            "{family}: {families:?}"
        );
    }

    // Labels: each database, its absolute path and the replica URL status shows.
    for db in ["app.db", "q\"uote.db"] {
        let s = get("replica_replicated_txid", db, "");
        let (path, url) = &status[db];
        assert_eq!((&s.path, &s.replica), (path, url), "{db}");
        assert!(
            s.path.starts_with('/') && s.path.ends_with(db),
            "{}",
            s.path
        );
        assert!(
            url.starts_with("s3://bkt/m/") && url.contains(&format!("{}", srv.port)),
            "{url}"
        );
    }

    // Caught up after replica_sync().
    assert_eq!(app("replica_replicated_txid"), synced);
    assert_eq!(app("replica_pending_transactions"), 0.0);
    assert_eq!(app("replica_pending_bytes"), 0.0);
    assert_eq!(app("replica_lag_seconds"), 0.0);
    assert_eq!(
        get("replica_state", "app.db", "state=up to date").value,
        1.0
    );
    assert!(app("replica_uploads_total") >= 1.0);
    assert!(app("replica_uploaded_bytes_total") > 0.0);
    assert_eq!(app("replica_snapshots_total"), 1.0);
    assert_eq!(app("replica_upload_errors_total"), 0.0);
    let uploaded = app("replica_last_upload_timestamp_seconds");
    assert!(
        uploaded >= t0 - 1.0 && uploaded <= t1 + 1.0,
        "{uploaded} not in [{t0}, {t1}]"
    );
    assert_eq!(app("replica_last_verify_success"), 1.0);

    // Requests by class, and their price.
    let req = |rest: &str| get("replica_requests_total", "app.db", rest).value;
    let (put, list, getr) = (
        req("class=A,operation=put"),
        req("class=A,operation=list"),
        req("class=B,operation=get"),
    );
    assert!(put >= app("replica_uploads_total"), "every upload is a PUT");
    assert!(list >= 1.0, "the replica is listed at start");
    assert!(getr >= 1.0, "the drill read the replica back");
    assert!(samples.contains_key(&(
        "replica_requests_total".into(),
        "app.db".into(),
        "class=free,operation=delete".into()
    )));
    let cost = app("replica_request_cost_usd");
    let want = (put + list) * 4.50 / 1e6 + getr * 0.36 / 1e6;
    assert!((cost - want).abs() < 1e-12, "cost {cost}, want {want}");
}

/// A host process steered line by line, whose lines are read with a deadline.
struct Host {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Host {
    fn start(python: &str, script: &str, dir: &std::path::Path, env: &[(&str, &str)]) -> Host {
        let mut child = replica_command(python, &["-u", "-c", script], dir, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Host { child, lines }
    }

    /// Its next line, failing the test after 60 s or when it exits without one.
    fn line(&mut self, what: &str) -> String {
        match self.lines.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(e) => {
                let _ = self.child.kill();
                panic!("the host printed no `{what}` line ({e:?}); its stderr is above");
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bucket stops answering (a proxy holds every request) while a commit waits to ship:
/// once the upload is held, the lag metric is above 0 and keeps rising (by half a second
/// within a deadline), with the commit pending. Once
/// the bucket answers again, `replica_sync()` returns and the lag is 0, nothing pending.
#[test]
fn the_lag_rises_while_the_bucket_stalls_and_is_0_after() {
    let Some(python) = prom_python() else { return };
    let dir = TempDir::new("metrics-stall");
    let srv = s3server::start(&dir.join("s3"), "bkt");
    let proxy = s3server::StallProxy::start(srv.port);
    let mut env = s3_env(&srv, &s3_url(proxy.port, "stall"));
    env.push(("REPLICA_TEST_LIB".into(), load_path()));
    let script = format!(
        r#"{PY_LOAD}{PY_METRICS}{PY_WAIT_FOR}
import sys
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("CREATE TABLE t(x)")
print("synced", db.execute("SELECT replica_sync(30000)").fetchone()[0], flush=True)
lag = lambda m: m[("replica_lag_seconds", "app.db", "")]
pending = lambda m: (m[("replica_pending_transactions", "app.db", "")], m[("replica_pending_bytes", "app.db", "")])
sys.stdin.readline()  # the bucket stalls now
db.execute("INSERT INTO t VALUES (1)")
print("committed", flush=True)
sys.stdin.readline()  # the upload of that commit is held
first = metrics(db)
later = wait_for("lag 0.5 s longer", lambda: (lambda m: m if lag(m) > lag(first) + 0.5 else None)(metrics(db)), timeout=30)
print("lagging", lag(first), lag(later), *pending(later), flush=True)
sys.stdin.readline()  # the bucket answers again
synced = db.execute("SELECT replica_sync(30000)").fetchone()[0]
m = metrics(db)
print("caught-up", lag(m), *pending(m), m[("replica_replicated_txid", "app.db", "")], synced, flush=True)
"#
    );
    let mut host = Host::start(&python, &script, dir.path(), &as_refs(&env));
    let synced = host.line("synced");
    assert!(synced.starts_with("synced "), "{synced}");

    proxy.stall();
    host.send("stall");
    assert_eq!(host.line("committed"), "committed");
    // The uploader ships the commit at once or at the end of its sync interval (1 s): the
    // proxy then holds that request.
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.held() == 0 {
        assert!(
            Instant::now() < deadline,
            "no upload reached the stalled bucket in 30 s"
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
    host.send("measure");
    let lagging = host.line("lagging");
    let held = proxy.held();
    let v: Vec<f64> = lagging
        .strip_prefix("lagging ")
        .unwrap_or_else(|| panic!("{lagging}"))
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    println!("while stalled: {lagging} ({held} request(s) held)");
    assert!(held >= 1, "the upload is still held");
    assert!(v[0] > 0.0 && v[1] > v[0] + 0.5, "the lag rises: {lagging}");
    assert!(
        v[2] >= 1.0 && v[3] > 0.0,
        "the commit is pending: {lagging}"
    );

    proxy.release();
    host.send("go");
    let caught_up = host.line("caught-up");
    println!("after: {caught_up}");
    let v: Vec<f64> = caught_up
        .strip_prefix("caught-up ")
        .unwrap_or_else(|| panic!("{caught_up}"))
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(v[0], 0.0, "no lag once synced: {caught_up}");
    assert_eq!((v[1], v[2]), (0.0, 0.0), "nothing pending: {caught_up}");
    assert_eq!(
        v[3], v[4],
        "the replicated txid is the synced one: {caught_up}"
    );
}
