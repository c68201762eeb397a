//! Issue 15's Ruby gem, installed as a user would, from `dist/` (never the source tree):
//! `gem install --local dist/libreplica-*.gem` into a fresh `GEM_HOME`; the installed .so is
//! the stripped file `dist/BUILD` names. Then a Rails 6.1 app (tests/fixtures/rails_app, on
//! Debian's Rails packages: four databases, primary, cache, queue and cable, and a
//! `config/litestream.yml` as the litestream gem generates it, whose replica paths come from
//! `LITESTREAM_REPLICA_BUCKET`, which only the app's Rails credentials set) served by Puma in
//! cluster mode (2 workers, `preload_app!`): writes to all four databases reach both
//! workers, the app's `replica_sync` route returns within its deadline, and each database
//! restored by `rake libreplica:restore` equals the live one. `rake libreplica:status` lists
//! all four and `rake libreplica:verify` passes, with the app running (the task's process
//! stands by) and after it stopped (the task's process uploads and runs replica_verify()).
//!
//! `.ci/install-dist` installs Rails and Puma; without `dist/` the test is a printed skip
//! unless `REPLICA_DIST_REQUIRED` is set (`make test-dist`), and so is a missing Rails or
//! Puma unless that or `CI` is set. Puma's process group is killed on every way out.

mod common;

use common::dist::{build_value, dist_dir, dist_file, sha256_of};
use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// database.yml's names and their files.
const DATABASES: [(&str, &str); 4] = [
    ("primary", "production.sqlite3"),
    ("cache", "production_cache.sqlite3"),
    ("queue", "production_queue.sqlite3"),
    ("cable", "production_cable.sqlite3"),
];
/// A Ruby process of the app (a rake task, the credentials script): boots Rails, so seconds.
const TASK_LIMIT: Duration = Duration::from_secs(120);
/// Until every database has been written by both workers.
const WRITE_LIMIT: Duration = Duration::from_secs(90);
const MAX_WRITES: usize = 2000;
/// The R2 account the credentials name, whose endpoint the Railtie derives.
const ACCOUNT: &str = "0123abcd";

fn required() -> bool {
    std::env::var_os("REPLICA_DIST_REQUIRED").is_some() || std::env::var_os("CI").is_some()
}

/// Whether Debian's Rails 6.1 and Puma are there (`.ci/install-dist`); a skip, or a panic
/// where they are required.
fn rails_and_puma() -> bool {
    let ok = Command::new("ruby")
        .args(["-e", "require 'rails'; require 'puma'; require 'sqlite3'"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("puma")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        let why = "ruby with rails, puma and sqlite3 is missing: run `sudo bash .ci/install-dist`";
        assert!(!required(), "{why}");
        eprintln!("skipped: {why}");
    }
    ok
}

/// The scratch directory of one run: the gem's `GEM_HOME`, the app, the "bucket" its
/// replicas go to.
struct Run {
    tmp: TempDir,
    gem_home: PathBuf,
    app: PathBuf,
    bucket: PathBuf,
}

impl Run {
    fn new() -> Run {
        let tmp = TempDir::new("dist-ruby");
        let gem_home = tmp.join("gems");
        let app = tmp.join("app");
        let bucket = tmp.join("bucket");
        std::fs::create_dir_all(&bucket).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rails_app");
        copy_tree(&fixture, &app);
        Run {
            tmp,
            gem_home,
            app,
            bucket,
        }
    }

    /// `program args` in the app with the gem's `GEM_HOME`, `RAILS_ENV=production` and none
    /// of the replica or litestream variables of the test's own environment: the
    /// configuration must come from the app (config/litestream.yml, its credentials).
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(&self.app);
        for (var, _) in std::env::vars_os() {
            let name = var.to_string_lossy();
            if name.starts_with("REPLICA_")
                || name.starts_with("LITESTREAM_")
                || name.starts_with("AWS_")
                || name.starts_with("GEM_")
                || name.starts_with("BUNDLE")
                || name == "RUBYOPT"
            {
                cmd.env_remove(&var);
            }
        }
        cmd.env("GEM_HOME", &self.gem_home)
            .env("RAILS_ENV", "production");
        cmd
    }

    /// Runs `program args` to the end (at most `TASK_LIMIT`); panics with its output when
    /// it fails.
    fn run(&self, program: &str, args: &[&str], stdin: &str) -> String {
        let o = run_command(self.command(program, args), stdin, TASK_LIMIT);
        check(&o, &format!("{program} {}", args.join(" ")))
    }

    fn rake(&self, task: &str) -> String {
        self.run("rake", &[task], "")
    }

    /// Credentials as the litestream gem's users keep them (the bucket, here the scratch
    /// directory config/litestream.yml's replica URLs are under, keys and an R2 account),
    /// then the tables, created through Active Record in a rake process: its first
    /// replication.
    fn configure(&self) {
        let credentials = format!(
            "secret_key_base: {}\nlitestream:\n  replica_bucket: {}\n  replica_key_id: test-key-id\n  replica_access_key: test-secret\n  r2_account_id: {ACCOUNT}\n",
            "ab".repeat(64),
            self.bucket.display()
        );
        self.run("ruby", &["bin/credentials"], &credentials);
        self.rake("app:setup");
    }

    fn database(&self, file: &str) -> PathBuf {
        self.app.join("storage").join(file)
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Puma's master, leader of its own process group: the whole group (master and workers) is
/// killed when this is dropped, however the test ends.
struct Puma {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Puma {
    fn start(run: &Run) -> Puma {
        let port = free_port();
        let log = run.tmp.join("puma.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = run.command("puma", &["-C", "config/puma.rb"]);
        cmd.env("PORT", port.to_string())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().expect("cannot start puma");
        Puma { child, log, port }
    }

    /// Polls `/up` until the app answers, Puma exits, or 60 s pass.
    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if matches!(http(self.port, "GET", "/up"), Ok((200, _))) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "puma exited ({status}) before serving:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "puma did not answer on 127.0.0.1:{} within 60 s:\n{}",
                self.port,
                self.log_tail()
            );
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL to the group, and the master reaped: nothing of the app runs afterwards.
    fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Puma {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 request: the status code and the body.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    // Above the app's own replica_sync timeout (20 s), so the app's answer is what we see.
    s.set_read_timeout(Some(Duration::from_secs(40)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    s.take(1 << 20).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.200}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_string()))
}

/// A request that must answer 200; its `key=value` lines.
fn ask(puma: &Puma, method: &str, path: &str) -> BTreeMap<String, String> {
    let (code, body) = http(puma.port, method, path)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", puma.log_tail()));
    assert_eq!(code, 200, "{method} {path}: {body}\n{}", puma.log_tail());
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes rows into the four databases from 4 client threads (each worker runs one thread,
/// so a busy worker leaves the next request to the other) until every database has rows
/// from both workers. Returns, per database, how many rows each worker pid acknowledged.
fn write_through_both_workers(puma: &Puma) -> BTreeMap<&'static str, BTreeMap<String, usize>> {
    let acks: Arc<Mutex<BTreeMap<&'static str, BTreeMap<String, usize>>>> = Arc::default();
    let deadline = Instant::now() + WRITE_LIMIT;
    let both = |acks: &BTreeMap<&'static str, BTreeMap<String, usize>>| {
        DATABASES
            .iter()
            .all(|(db, _)| acks.get(db).is_some_and(|pids| pids.len() >= 2))
    };
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let acks = Arc::clone(&acks);
            let port = puma.port;
            std::thread::spawn(move || -> Result<(), String> {
                for n in 0.. {
                    let total: usize = {
                        let acks = acks.lock().unwrap();
                        if both(&acks) {
                            return Ok(());
                        }
                        acks.values().flat_map(|p| p.values()).sum()
                    };
                    if Instant::now() > deadline || total >= MAX_WRITES {
                        return Ok(()); // judged below, with what was written
                    }
                    let (db, _) = DATABASES[(t + n) % DATABASES.len()];
                    let path = format!("/write/{db}?body=t{t}-n{n}");
                    let (code, body) =
                        http(port, "POST", &path).map_err(|e| format!("POST {path}: {e}"))?;
                    if code != 200 {
                        return Err(format!("POST {path}: {code} {body}"));
                    }
                    let pid = body
                        .lines()
                        .find_map(|l| l.strip_prefix("pid="))
                        .ok_or_else(|| format!("POST {path}: no pid in {body}"))?;
                    *acks
                        .lock()
                        .unwrap()
                        .entry(db)
                        .or_default()
                        .entry(pid.to_string())
                        .or_default() += 1;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        if let Err(e) = t.join().unwrap() {
            panic!("{e}\n{}", puma.log_tail());
        }
    }
    let acks = acks.lock().unwrap().clone();
    assert!(
        both(&acks),
        "not every database was written by both Puma workers within {WRITE_LIMIT:?} and {MAX_WRITES} requests: {acks:?}\n{}",
        puma.log_tail()
    );
    acks
}

/// The rows of `entries` by writer pid, through Debian's sqlite3 (no extension).
fn rows_by_pid(db: &Path) -> BTreeMap<String, usize> {
    sqlite3_dot(db, "SELECT pid, count(*) FROM entries GROUP BY pid;")
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(pid, n)| (pid.to_string(), n.trim().parse().unwrap()))
        .collect()
}

#[test]
fn rails_app_under_puma_cluster_replicates_four_databases_with_the_installed_gem() {
    let Some(dist) = dist_dir() else { return };
    if !rails_and_puma() {
        return;
    }
    let gem = dist_file(&dist, "libreplica-", "-x86_64-linux.gem");
    let run = Run::new();

    // The gem, installed as a user would, carries the very .so dist/BUILD names.
    run.run(
        "gem",
        &["install", "--local", "--no-document", gem.to_str().unwrap()],
        "",
    );
    let so = PathBuf::from(run.run(
        "ruby",
        &["-e", "require 'libreplica'; print Libreplica.loadable_path"],
        "",
    ));
    assert!(
        so.starts_with(&run.gem_home),
        "Libreplica.loadable_path is {}, not inside the fresh GEM_HOME {}",
        so.display(),
        run.gem_home.display()
    );
    assert_eq!(
        sha256_of(&so),
        build_value(&dist, "so_sha256"),
        "the gem's {} is not dist/libreplica.so",
        so.display()
    );
    assert!(std::fs::metadata(&so).unwrap().len() < 5_000_000);

    run.configure();

    let mut puma = Puma::start(&run);
    puma.wait_until_serving();
    let env = ask(&puma, "GET", "/env");
    let expect = [
        ("booted", "true".to_string()),
        (
            "LITESTREAM_REPLICA_BUCKET",
            run.bucket.display().to_string(),
        ),
        (
            "LITESTREAM_REPLICA_ENDPOINT",
            format!("https://{ACCOUNT}.r2.cloudflarestorage.com"),
        ),
        // config/initializers/litestream.rb sets it, after the Railtie's own initializers
        // and over the credentials' test-key-id.
        ("LITESTREAM_ACCESS_KEY_ID", "initializer-key-id".into()),
        ("LITESTREAM_SECRET_ACCESS_KEY", "test-secret".into()),
        (
            "LITESTREAM_CONFIG",
            run.app.join("config/litestream.yml").display().to_string(),
        ),
    ];
    for (key, value) in &expect {
        assert_eq!(env.get(*key), Some(value), "{key} in a worker: {env:?}");
    }

    let acks = write_through_both_workers(&puma);
    // One worker waits for everything: the databases the other worker uploads too.
    let synced = ask(&puma, "GET", "/sync?timeout_ms=20000");
    for (db, _) in DATABASES {
        let txid = synced.get(&format!("txid_{db}"));
        assert!(
            txid.is_some_and(|t| t.parse::<u64>().is_ok_and(|t| t > 0)),
            "replica_sync of {db}: {synced:?}"
        );
    }
    for (db, file) in DATABASES {
        assert_eq!(
            rows_by_pid(&run.database(file)),
            acks[db],
            "{db}: the rows in the database are not the writes the workers acknowledged"
        );
    }

    // The rake tasks while the app runs: this process stands by for the workers.
    let status = run.rake("libreplica:status");
    for (_, file) in DATABASES {
        let row = status
            .lines()
            .find(|l| l.starts_with(&format!("{file} ")))
            .unwrap_or_else(|| panic!("libreplica:status has no row for {file}:\n{status}"));
        assert!(
            row.contains("standby") || row.contains("up to date"),
            "libreplica:status: {row}"
        );
    }
    for (db, file) in DATABASES {
        let target = run.tmp.join(&format!("restored-{file}"));
        let out = run.rake(&format!("libreplica:restore[{db},{}]", target.display()));
        assert!(out.contains("restored"), "libreplica:restore[{db}]: {out}");
        assert_eq!(
            dump(&target),
            dump(&run.database(file)),
            "{db}: restored from its replica, it differs from the live database"
        );
        assert_eq!(rows_by_pid(&target), acks[db], "{db} restored");
    }
    // A point in time: txid 1 is app:setup's CREATE TABLE, before any request.
    let early = run.tmp.join("restored-txid-1.sqlite3");
    run.rake(&format!(
        "libreplica:restore[primary,{},1]",
        early.display()
    ));
    assert_eq!(
        sqlite3_dot(&early, "SELECT count(*) FROM entries;").trim(),
        "0",
        "libreplica:restore[primary,target,1]"
    );
    let verify = run.rake("libreplica:verify");
    assert_eq!(
        verify.lines().filter(|l| l.contains(": ok")).count(),
        4,
        "libreplica:verify with the app running:\n{verify}"
    );

    // Stopped, the app leaves the databases to the task: replica_verify() itself runs.
    puma.kill();
    let verify = run.rake("libreplica:verify");
    assert_eq!(
        verify
            .lines()
            .filter(|l| l.contains("matches the database"))
            .count(),
        4,
        "libreplica:verify with the app stopped:\n{verify}"
    );
}

/// A failed drill must fail the task: a database with no replica configured.
#[test]
fn rake_verify_fails_for_a_database_without_a_replica() {
    let Some(dist) = dist_dir() else { return };
    if !rails_and_puma() {
        return;
    }
    let gem = dist_file(&dist, "libreplica-", "-x86_64-linux.gem");
    let run = Run::new();
    run.run(
        "gem",
        &["install", "--local", "--no-document", gem.to_str().unwrap()],
        "",
    );
    // No config/litestream.yml (and no REPLICA_URL): the extension loads and replicates
    // nothing, so every database's drill must fail, and the task with it.
    std::fs::remove_file(run.app.join("config/litestream.yml")).unwrap();
    let mut cmd = run.command("rake", &["app:setup", "libreplica:verify"]);
    cmd.env("SECRET_KEY_BASE", "ab".repeat(64));
    let o: Output = run_command(cmd, "", TASK_LIMIT);
    assert!(
        !o.status.success(),
        "libreplica:verify passed without any replica:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("FAILED"),
        "libreplica:verify did not say which drill failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
}

/// The litestream gem's mapping, case by case, with the installed gem: the environment wins,
/// then config.litestream, then credentials; an endpoint wins over an R2 account id.
#[test]
fn settings_map_to_the_variables_litestream_yml_expands() {
    let Some(dist) = dist_dir() else { return };
    if !rails_and_puma() {
        return;
    }
    let gem = dist_file(&dist, "libreplica-", "-x86_64-linux.gem");
    let run = Run::new();
    run.run(
        "gem",
        &["install", "--local", "--no-document", gem.to_str().unwrap()],
        "",
    );
    let script = r##"
require "libreplica/credentials"
def check(what, got, want)
  raise "#{what}: got #{got.inspect}, want #{want.inspect}" unless got == want
end
env = {"LITESTREAM_REPLICA_BUCKET" => "from-env"}
set = Libreplica::Credentials.apply(env, [
  {replica_bucket: "from-config", replica_key_id: "", replica_region: nil},
  {replica_bucket: "from-credentials", access_key_id: "cred-id", replica_access_key: "cred-secret",
   account_id: "acct", replica_region: "auto"}
])
check "the environment wins", env["LITESTREAM_REPLICA_BUCKET"], "from-env"
check "an empty setting is no setting", env["LITESTREAM_ACCESS_KEY_ID"], "cred-id"
check "secret", env["LITESTREAM_SECRET_ACCESS_KEY"], "cred-secret"
check "region", env["LITESTREAM_REPLICA_REGION"], "auto"
check "R2 endpoint", env["LITESTREAM_REPLICA_ENDPOINT"], "https://acct.r2.cloudflarestorage.com"
check "names set", set.sort, %w[LITESTREAM_ACCESS_KEY_ID LITESTREAM_REPLICA_ENDPOINT LITESTREAM_REPLICA_REGION LITESTREAM_SECRET_ACCESS_KEY]
env = {}
Libreplica::Credentials.apply(env, [{r2_account_id: "acct", replica_endpoint: "https://s3.example"}])
check "an endpoint wins over an account", env["LITESTREAM_REPLICA_ENDPOINT"], "https://s3.example"
print "ok"
"##;
    assert_eq!(run.run("ruby", &["-e", script], ""), "ok");
}

/// A process that forks with a database open (Puma's master after an initializer queried
/// it) is told, once, that its children cannot sync it; one that opened none is not.
#[test]
fn a_fork_with_a_database_open_is_named() {
    let Some(dist) = dist_dir() else { return };
    if !rails_and_puma() {
        return;
    }
    let gem = dist_file(&dist, "libreplica-", "-x86_64-linux.gem");
    let run = Run::new();
    run.run(
        "gem",
        &["install", "--local", "--no-document", gem.to_str().unwrap()],
        "",
    );
    run.configure();
    let fork = |query: &str| {
        let script = format!(
            "require './config/environment'; {query}; Process.wait(fork {{ exit!(0) }}); Process.wait(fork {{ exit!(0) }})"
        );
        let o = run_command(run.command("ruby", &["-e", &script]), "", TASK_LIMIT);
        check(&o, &format!("ruby -e {script}"));
        stderr(&o)
    };
    let warned = fork("PrimaryEntry.count");
    assert_eq!(
        warned.matches("forks with production.sqlite3 open").count(),
        1,
        "{warned}"
    );
    let quiet = fork("nil");
    assert!(!quiet.contains("forks with"), "{quiet}");
}
