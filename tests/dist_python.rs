//! The Python wheel `make dist` built (`packaging/python/build`), installed as a user installs
//! it: `pip install --no-index dist/libreplica-*.whl` into a fresh venv of Debian's python3,
//! nothing from the source tree. Then what its README promises: `libreplica.load` with
//! `sqlite3` and apsw, a replicate-restore round trip through `replica_sync()`, the
//! `python -m libreplica status|restore|verify` CLI, the same stripped `.so` as dist/BUILD
//! names, and the error when the interpreter's sqlite3 cannot load extensions.
//! Without dist/ these print a skip (`make test-dist` requires it).

mod common;

use common::dist::{build_value, dist_dir, dist_file, sha256_of};
use common::{check, dump, replica_command, run_command, stderr, stdout, TempDir, PYTHON3};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// What the tests install apsw as (the version .ci/install-hosts uses).
const APSW: &str = "apsw==3.54.1.0";

/// A fresh venv in a scratch directory with the wheel installed (and apsw when asked).
struct Venv {
    tmp: TempDir,
    python: PathBuf,
    dist: PathBuf,
}

impl Venv {
    fn new(name: &str, with_apsw: bool) -> Option<Venv> {
        let dist = dist_dir()?;
        let wheel = dist_file(&dist, "libreplica-", ".whl");
        let tmp = TempDir::new(name);
        let venv = tmp.join("venv");
        let o = Venv::cmd(PYTHON3, &["-m", "venv", venv.to_str().unwrap()], tmp.path());
        check(&o, "python3 -m venv");
        let python = venv.join("bin/python");
        let pip = |args: &[&str]| {
            let mut all = vec!["-m", "pip", "install", "--disable-pip-version-check", "-q"];
            all.extend_from_slice(args);
            Venv::cmd(python.to_str().unwrap(), &all, tmp.path())
        };
        check(
            &pip(&["--no-index", wheel.to_str().unwrap()]),
            "pip install --no-index <wheel>",
        );
        if with_apsw {
            check(&pip(&[APSW]), "pip install apsw");
        }
        Some(Venv { tmp, python, dist })
    }

    fn cmd(program: &str, args: &[&str], cwd: &Path) -> Output {
        let mut cmd = replica_command(program, args, cwd, &[]);
        // Nothing of the source tree or a developer's site may stand in for the wheel.
        cmd.env_remove("PYTHONPATH").env_remove("PYTHONHOME");
        run_command(cmd, "", Duration::from_secs(240))
    }

    /// The replica location every database of `self.tmp` replicates under.
    fn replica_url(&self) -> String {
        format!("file://{}", self.tmp.join("replicas").display())
    }

    /// Runs `script` with the venv's python in the scratch directory, REPLICA_URL set.
    fn python(&self, script: &str) -> Output {
        self.run(self.python.to_str().unwrap(), &["-"], script, &[])
    }

    /// `python -m libreplica ARGS`, REPLICA_URL set.
    fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec!["-m", "libreplica"];
        all.extend_from_slice(args);
        self.run(self.python.to_str().unwrap(), &all, "", &[])
    }

    /// `program ARGS` in the scratch directory, fed `stdin`, with REPLICA_URL and `env`.
    fn run(&self, program: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let url = self.replica_url();
        let mut all = vec![("REPLICA_URL", url.as_str())];
        all.extend_from_slice(env);
        let mut cmd = replica_command(program, args, self.tmp.path(), &all);
        // Nothing of the source tree or a developer's site may stand in for the wheel.
        cmd.env_remove("PYTHONPATH").env_remove("PYTHONHOME");
        run_command(cmd, stdin, Duration::from_secs(120))
    }
}

/// The round trip, after `$OPEN` (a script fragment that loads the extension and leaves
/// `db`, an autocommit connection to app.db, and `copy(path)`, which opens a file without
/// replicating it): 1,000 rows in ten transactions, `replica_sync()`, `replica_restore()`,
/// every row compared.
const ROUND_TRIP: &str = r#"
import libreplica, os
assert libreplica.__file__.startswith(os.environ["VIRTUAL_ENV_DIR"]), libreplica.__file__
print("so", libreplica.loadable_path())
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)")
for batch in range(10):
    db.execute("BEGIN")
    for i in range(100):
        n = batch * 100 + i
        db.execute("INSERT INTO t VALUES (?, ?)", (n, "row %d " % n + "x" * (n % 97)))
    db.execute("COMMIT")
    if batch == 4:
        list(db.execute("SELECT replica_sync(30000)"))
txid = list(db.execute("SELECT replica_sync(30000)"))[0][0]
status = list(db.execute("SELECT name, state, replicated_txid FROM replica_status()"))
print("status", status)
assert status == [("app.db", "up to date", txid)], status
restored = list(db.execute("SELECT replica_restore('app.db', 'restored.db')"))[0][0]
assert restored == txid, (restored, txid)
rows = lambda c: list(c.execute("SELECT id, body FROM t ORDER BY id"))
live, back = rows(db), rows(copy("restored.db"))
assert len(live) == 1000 and live == back, (len(live), len(back))
print("round trip equal", len(back))
"#;

/// The venv's own directory, for the script to check the package came from it.
fn script(venv: &Venv, open: &str) -> String {
    let dir = venv.python.parent().unwrap().parent().unwrap();
    format!(
        "import os\nos.environ['VIRTUAL_ENV_DIR'] = {:?}\n{open}{ROUND_TRIP}",
        dir.display().to_string()
    )
}

/// The installed `.so` is dist/'s stripped file, byte for byte.
fn assert_same_so(venv: &Venv, out: &str) {
    let so = out
        .lines()
        .find_map(|l| l.strip_prefix("so "))
        .expect("the script printed no loadable_path");
    assert!(
        so.starts_with(venv.tmp.path().to_str().unwrap()),
        "loadable_path {so} is not in the venv"
    );
    assert_eq!(
        sha256_of(Path::new(so)),
        build_value(&venv.dist, "so_sha256"),
        "the wheel's .so is not the stripped dist/libreplica.so"
    );
}

#[test]
fn sqlite3_loads_into_its_open_connection_and_the_cli_works() {
    let Some(venv) = Venv::new("dist-py-sqlite3", false) else {
        return;
    };
    // Loaded into the connection that already has app.db open: adopted from the next commit.
    let open = r#"
import sqlite3, libreplica
db = sqlite3.connect("app.db", isolation_level=None)
assert libreplica.load(db) is db
try:
    db.load_extension("/nonexistent")
    raise SystemExit("extension loading was left on")
except sqlite3.OperationalError as e:
    assert "not authorized" in str(e), e
copy = lambda p: sqlite3.connect("file:%s?replica=off" % p, uri=True)
"#;
    let o = venv.python(&script(&venv, open));
    let out = check(&o, "the sqlite3 round trip");
    assert!(out.contains("round trip equal 1000"), "{out}");
    assert_same_so(&venv, &out);
    let app = venv.tmp.join("app.db");
    assert_eq!(dump(&venv.tmp.join("restored.db")), dump(&app));

    // status: the table, with the database's row.
    let o = venv.cli(&["status", "app.db"]);
    let out = check(&o, "python -m libreplica status app.db");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for col in [
        "name",
        "state",
        "replicated_txid",
        "replica_url",
        "last_error",
    ] {
        assert!(lines[0].contains(col), "no {col} column:\n{out}");
    }
    assert!(
        lines[1].starts_with("app.db ") && lines[1].contains("up to date"),
        "{out}"
    );
    assert!(
        lines[1].contains(&format!("{}/app.db", venv.replica_url())),
        "{out}"
    );
    // Columns line up: each starts where its header does.
    let at = lines[0].find("state").unwrap();
    assert_eq!(&lines[1][at..at + 10], "up to date", "{out}");
    let o = venv.cli(&["-q", "status", "--all", "app.db"]);
    let out = check(&o, "python -m libreplica status --all");
    for col in ["pending_txns", "requests_month", "sealed_to_other_keys"] {
        assert!(out.lines().any(|l| l.starts_with(col)), "no {col}:\n{out}");
    }
    assert!(stderr(&o).is_empty(), "--quiet printed: {}", stderr(&o));

    // restore by database name, then by URL over it.
    let o = venv.cli(&["restore", "app.db", "cli.db"]);
    let out = check(&o, "python -m libreplica restore app.db cli.db");
    assert!(
        out.starts_with("restored cli.db from app.db at txid "),
        "{out}"
    );
    assert_eq!(dump(&venv.tmp.join("cli.db")), dump(&app));
    let url = format!("{}/app.db", venv.replica_url());
    let o = venv.cli(&["restore", &url, "cli.db"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    let o = venv.cli(&["restore", &url, "cli.db", "--overwrite", "--time", "1"]);
    let out = check(&o, "python -m libreplica restore URL --overwrite --time 1");
    assert!(out.ends_with(" at txid 1\n"), "{out}");

    // verify: a drill against the live database, and of the replica alone.
    let o = venv.cli(&["verify", "app.db"]);
    let out = check(&o, "python -m libreplica verify app.db");
    assert!(out.starts_with("app.db: ok: txid "), "{out}");
    let o = venv.cli(&["verify", &url]);
    let out = check(&o, "python -m libreplica verify URL");
    assert!(out.contains("passes integrity_check"), "{out}");

    // Failures: non-zero, the reason on stderr.
    let missing = format!("{}/none.db", venv.replica_url());
    let o = venv.cli(&["restore", &missing, "none.db"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("holds no LTX files"), "{}", stderr(&o));
    assert!(!venv.tmp.join("none.db").exists());
    let o = venv.cli(&["status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("name the databases"), "{}", stderr(&o));
    let o = venv.cli(&["status", "gone.db"]);
    let out = check(&o, "status of a missing database");
    assert!(out.contains("missing (not opened)"), "{out}");
    assert!(!venv.tmp.join("gone.db").exists(), "status created gone.db");
}

#[test]
fn apsw_loads_before_the_open_and_round_trips() {
    let Some(venv) = Venv::new("dist-py-apsw", true) else {
        return;
    };
    // Loaded into a throwaway connection first: app.db, opened after, replicates.
    let open = r#"
import apsw, libreplica
libreplica.load(apsw.Connection(":memory:"))
db = apsw.Connection("app.db")
flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
copy = lambda p: apsw.Connection("file:%s?replica=off" % p, flags=flags)
"#;
    let o = venv.python(&script(&venv, open));
    let out = check(&o, "the apsw round trip");
    assert!(out.contains("round trip equal 1000"), "{out}");
    assert_same_so(&venv, &out);
    assert_eq!(
        dump(&venv.tmp.join("restored.db")),
        dump(&venv.tmp.join("app.db"))
    );

    // The CLI where sqlite3 cannot load extensions (as on a pyenv Python) runs through apsw.
    let cli = |args: &str| venv.python(&format!("{NO_SQLITE3_LOADING}sys.exit(main({args}))"));
    let o = cli(r#"["-q", "status", "app.db"]"#);
    let out = check(&o, "status through apsw");
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("app.db ") && row.contains("up to date"),
        "{out}"
    );
    let o = cli(r#"["-q", "restore", "app.db", "cli.db"]"#);
    check(&o, "restore through apsw");
    assert_eq!(
        dump(&venv.tmp.join("cli.db")),
        dump(&venv.tmp.join("app.db"))
    );
}

/// A script prelude: `sqlite3` replaced by a module like that of a Python built without
/// --enable-loadable-sqlite-extensions (no enable_load_extension), and the CLI's `main`.
const NO_SQLITE3_LOADING: &str = r#"
import sys, types
fake = types.ModuleType("sqlite3")
class Connection:
    def execute(self, sql, params=()):
        raise AssertionError("nothing may run")
fake.Connection, fake.connect, fake.Error = Connection, lambda *a, **k: Connection(), Exception
sys.modules["sqlite3"] = fake
from libreplica.__main__ import main
"#;

#[test]
fn a_sqlite3_that_cannot_load_extensions_is_told_to_use_apsw() {
    let Some(venv) = Venv::new("dist-py-noload", false) else {
        return;
    };
    // What python.org and pyenv builds without --enable-loadable-sqlite-extensions have: a
    // connection without enable_load_extension (and load_extension).
    let o = venv.python(
        r#"
import libreplica
class Connection:
    def execute(self, sql, params=()):
        raise AssertionError("nothing may run")
try:
    libreplica.load(Connection())
    raise SystemExit("loaded into a connection that cannot load extensions")
except libreplica.ExtensionLoadingUnavailable as e:
    print("error:", e)
try:
    libreplica.load(object())
    raise SystemExit("loaded into something that is no connection")
except TypeError as e:
    print("type error:", e)
"#,
    );
    let out = check(&o, "load into a connection that cannot load extensions");
    let err = out.lines().find(|l| l.starts_with("error: ")).unwrap();
    for needed in [
        "cannot load extensions",
        "enable_load_extension",
        "--enable-loadable-sqlite-extensions",
        "pip install apsw",
    ] {
        assert!(err.contains(needed), "no {needed:?} in {err}");
    }
    assert!(out.contains("type error: libreplica.load: expected a sqlite3.Connection"));

    // The CLI on such a Python, without apsw installed: the same explanation, exit 1.
    let o = venv.python(&format!(
        "{NO_SQLITE3_LOADING}sys.exit(main([\"status\", \"app.db\"]))"
    ));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("Use apsw instead"), "{}", stderr(&o));
}

#[test]
fn the_wheel_records_every_file_it_carries() {
    let Some(dist) = dist_dir() else {
        return;
    };
    let wheel = dist_file(&dist, "libreplica-", ".whl");
    let version = build_value(&dist, "version");
    let glibc = build_value(&dist, "glibc").replace('.', "_");
    let name = wheel.file_name().unwrap().to_string_lossy().to_string();
    let tag = format!("py3-none-manylinux_{glibc}_x86_64");
    assert_eq!(name, format!("libreplica-{version}-{tag}.whl"));
    // pip does not check RECORD's digests; other installers and auditors do.
    let o = common::run(
        PYTHON3,
        &["-", wheel.to_str().unwrap(), &version, &tag],
        &dist,
        &[],
        r#"
import base64, hashlib, sys, zipfile
path, version, tag = sys.argv[1:]
z = zipfile.ZipFile(path)
info = "libreplica-%s.dist-info" % version
record = z.read(info + "/RECORD").decode().splitlines()
names = set(z.namelist())
listed = set()
for line in record:
    name, digest, size = line.rsplit(",", 2)
    listed.add(name)
    if name == info + "/RECORD":
        assert digest == "" and size == "", line
        continue
    data = z.read(name)
    want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert digest == "sha256=" + want, line
    assert int(size) == len(data), line
assert listed == names, names ^ listed
for needed in ["libreplica/__init__.py", "libreplica/__main__.py", "libreplica/libreplica.so"]:
    assert needed in names, needed
wheel = z.read(info + "/WHEEL").decode()
assert "Tag: %s\n" % tag in wheel and "Root-Is-Purelib: false" in wheel, wheel
meta = z.read(info + "/METADATA").decode()
assert "Name: libreplica\n" in meta and "Version: %s\n" % version in meta, meta
assert "python -m libreplica status" in meta.split("\n\n", 1)[1], "no README in METADATA"
assert z.getinfo("libreplica/libreplica.so").external_attr >> 16 & 0o111
print("record ok", len(record))
"#,
    );
    let out = check(&o, "the wheel's RECORD");
    assert!(out.contains("record ok"), "{out}");
}

/// A Python process of the venv, steered line by line; killed when dropped.
struct App {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl App {
    fn start(venv: &Venv, script: &str) -> App {
        let url = venv.replica_url();
        let mut cmd = replica_command(
            venv.python.to_str().unwrap(),
            &["-u", "-c", script],
            venv.tmp.path(),
            &[("REPLICA_URL", &url)],
        );
        cmd.env_remove("PYTHONPATH")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        App { child, lines }
    }

    /// The next line the app prints, within a minute.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the app printed nothing within 60 s (or exited)")
    }

    fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn beside_the_running_app_the_cli_stands_by() {
    let Some(venv) = Venv::new("dist-py-beside", false) else {
        return;
    };
    let mut app = App::start(
        &venv,
        r#"
import os, sqlite3, sys, libreplica
db = sqlite3.connect("app.db", isolation_level=None)
libreplica.load(db)
db.execute("CREATE TABLE t(x)")
db.execute("INSERT INTO t VALUES (1)")
db.execute("SELECT replica_sync(30000)").fetchone()
print("ready", os.getpid())
sys.stdin.readline()
db.execute("INSERT INTO t VALUES (2)")
print("synced", db.execute("SELECT replica_sync(30000)").fetchone()[0])
sys.stdin.readline()
"#,
    );
    let ready = app.line();
    let pid = ready.strip_prefix("ready ").expect(&ready);

    let o = venv.cli(&["-q", "status", "app.db"]);
    let out = check(&o, "status beside the app");
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("standby") && row.contains(&format!("pid {pid}")),
        "{out}"
    );
    let o = venv.cli(&["-q", "verify", "app.db"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("uploaded by another process (pid {pid})")),
        "{err}"
    );
    assert!(err.contains("python -m libreplica verify file://"), "{err}");

    // The app still replicates after the CLI came and went.
    app.send("write");
    let synced = app.line();
    assert!(synced.starts_with("synced "), "{synced}");
    let o = venv.cli(&["-q", "restore", "app.db", "cli.db"]);
    check(&o, "restore beside the app");
    let rows = common::sqlite3_dot(&venv.tmp.join("cli.db"), "SELECT count(*) FROM t");
    assert_eq!(rows.trim(), "2");
    app.send("done");
}

#[test]
fn status_lists_and_restore_finds_the_databases_of_litestream_yml() {
    let Some(venv) = Venv::new("dist-py-config", false) else {
        return;
    };
    // A Rails app's file: block YAML, comments, a quoted path and a variable.
    let config = venv.tmp.join("litestream.yml");
    let yml = format!(
        "# the app's\ndbs:\n  - path: app.db   # primary\n    replicas:\n      - type: file\n        path: {0}/app\n  - path: \"${{DATA}}/cache.db\"\n    replica:\n      type: file\n      path: {0}/cache\n",
        venv.tmp.join("backups").display()
    );
    std::fs::write(&config, yml).unwrap();
    let data = venv.tmp.path().display().to_string();
    let env = [
        ("REPLICA_CONFIG", config.to_str().unwrap()),
        ("REPLICA_URL", "off"),
        ("DATA", data.as_str()),
    ];
    let python = venv.python.to_str().unwrap();
    let o = venv.run(
        python,
        &["-"],
        r#"
import sqlite3, libreplica
db = libreplica.load(sqlite3.connect("app.db", isolation_level=None))
db.execute("CREATE TABLE t(x)")
db.execute("INSERT INTO t VALUES ('from the config')")
print("txid", db.execute("SELECT replica_sync(30000)").fetchone()[0])
"#,
        &env,
    );
    check(&o, "writing app.db replicated per litestream.yml");
    assert!(
        venv.tmp.join("backups/app").is_dir(),
        "app.db did not replicate where the file says"
    );

    // The console script is the same CLI; without arguments it lists the file's databases.
    let cli = venv.python.with_file_name("libreplica");
    let o = venv.run(cli.to_str().unwrap(), &["status", "-q"], "", &env);
    let out = check(&o, "libreplica status");
    assert!(stderr(&o).is_empty(), "-q printed: {}", stderr(&o));
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].starts_with("app.db ") && rows[0].contains("up to date"),
        "{out}"
    );
    assert!(rows[0].contains("/backups/app"), "{out}");
    assert!(
        rows[1].starts_with("cache.db ") && rows[1].contains("missing (not opened)"),
        "{out}"
    );
    assert!(
        !venv.tmp.join("cache.db").exists(),
        "status created cache.db"
    );

    // Disaster recovery as `litestream restore app.db`: the database file comes back.
    let app = venv.tmp.join("app.db");
    let before = dump(&app);
    for f in ["app.db", "app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(venv.tmp.join(f));
    }
    let o = venv.run(
        cli.to_str().unwrap(),
        &["-q", "restore", "app.db"],
        "",
        &env,
    );
    let out = check(&o, "libreplica restore app.db");
    assert!(
        out.starts_with("restored app.db from app.db at txid "),
        "{out}"
    );
    assert_eq!(dump(&app), before);
    let o = venv.run(
        cli.to_str().unwrap(),
        &["-q", "restore", "app.db"],
        "",
        &env,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "restored over an existing database"
    );
}
