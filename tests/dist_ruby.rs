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
//! Also: the litestream gem's own S3 config/litestream.yml, word for word, against the
//! in-process S3 server; the settings mapping case by case; a fork with a database open is
//! named; a drill that cannot run fails the verify task.
//!
//! `.ci/install-dist` installs Rails and Puma; without `dist/` the test is a printed skip
//! unless `REPLICA_DIST_REQUIRED` is set (`make test-dist`), and so is a missing Rails or
//! Puma unless that or `CI` is set. Puma's process group is killed on every way out.

mod common;
#[path = "common/rails_app.rs"]
mod rails_app;
#[path = "common/s3server.rs"]
mod s3server;

use common::dist::dist_dir;
use common::*;
use rails_app::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Until every database has been written by both workers.
const WRITE_LIMIT: Duration = Duration::from_secs(90);
const MAX_WRITES: usize = 2000;

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

/// The dashboard's login in the app's credentials (`libreplica:`).
const DASHBOARD_USER: &str = "ops";
const DASHBOARD_PASSWORD: &str = "Correct-horse-7";

/// The mounted dashboard as headless Chromium (Debian's `chromium`) renders it: a screenshot
/// kept in target/test-artifacts/dist_ruby_rails_dashboard.png, and a DOM with a row for
/// each of the four databases. Without Chromium, a printed skip where it is not required.
fn dashboard_in_a_browser(run: &Run, puma: &Puma) {
    let has_browser = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_browser {
        assert!(
            !required(),
            "Debian's chromium is not installed: bash .ci/install-dist installs it"
        );
        eprintln!("skipped: the dashboard in a browser (no chromium)");
        return;
    }
    let url = format!(
        "http://{DASHBOARD_USER}:{DASHBOARD_PASSWORD}@127.0.0.1:{}/replica/",
        puma.port
    );
    screenshot(&run.tmp, &url, "dist_ruby_rails_dashboard.png");
    let dom = chromium(&run.tmp, &["--dump-dom", &url]);
    for (db, file) in DATABASES {
        assert!(
            dom.contains(&format!("data-name=\"{file}\"")),
            "the rendered dashboard has no row for {db} ({file}):\n{dom}"
        );
    }
}

/// The routes mount `Libreplica::Dashboard` at `/replica` (autoloaded from the installed
/// gem): behind the basic auth `Libreplica::Railtie.basic_auth` finds in the credentials, a
/// page with a row for each of the four databases, from whichever worker answers; 401
/// without the login or with a wrong one.
fn dashboard_is_mounted(puma: &Puma) {
    let get = |headers: &[(&str, &str)]| {
        http_with(puma.port, "GET", "/replica/", headers)
            .unwrap_or_else(|e| panic!("GET /replica/: {e}\n{}", puma.log_tail()))
    };
    let (code, body) = get(&[]);
    assert_eq!(code, 401, "the dashboard without a login: {body}");
    let wrong = basic(DASHBOARD_USER, "wrong");
    let (code, body) = get(&[("Authorization", wrong.as_str())]);
    assert_eq!(code, 401, "the dashboard with a wrong password: {body}");
    let right = basic(DASHBOARD_USER, DASHBOARD_PASSWORD);
    // Two workers, one thread each: a few requests reach both, each page complete.
    for _ in 0..4 {
        let (code, body) = get(&[("Authorization", right.as_str())]);
        assert_eq!(
            code,
            200,
            "the dashboard with the credentials' login: {body}\n{}",
            puma.log_tail()
        );
        for (db, file) in DATABASES {
            assert!(
                body.contains(&format!("data-name=\"{file}\"")),
                "the dashboard has no row for {db} ({file}):\n{body}"
            );
        }
    }
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
    let Some(run) = Run::installed() else { return };
    let dist = dist_dir().unwrap();
    // The gem, installed as a user would, carries the very .so dist/BUILD names.
    let so = installed_so(&dist, &run.gem_home);
    assert!(std::fs::metadata(&so).unwrap().len() < 5_000_000);

    // The dashboard's login, which the Railtie reads from the credentials.
    run.configure_with(&format!(
        "libreplica:\n  username: {DASHBOARD_USER}\n  password: {DASHBOARD_PASSWORD}\n"
    ));

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
    dashboard_is_mounted(&puma);
    dashboard_in_a_browser(&run, &puma);

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
    // A point in time: txid 1, the first snapshot, taken during app:setup, before any
    // request (whether its CREATE TABLE is in it depends on when the uploader read it).
    let early = run.tmp.join("restored-txid-1.sqlite3");
    run.rake(&format!(
        "libreplica:restore[primary,{},1]",
        early.display()
    ));
    let has_table = sqlite3_dot(
        &early,
        "SELECT count(*) FROM sqlite_master WHERE name = 'entries';",
    );
    if has_table.trim() == "1" {
        assert_eq!(
            sqlite3_dot(&early, "SELECT count(*) FROM entries;").trim(),
            "0",
            "libreplica:restore[primary,target,1] has rows written by requests"
        );
    }
    assert!(
        dump(&early).len() < dump(&run.database("production.sqlite3")).len(),
        "libreplica:restore[primary,target,1] restored the latest state"
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
    let Some(run) = Run::installed() else { return };
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
    let Some(run) = Run::installed() else { return };
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
    let Some(run) = Run::installed() else { return };
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

/// The litestream gem's own config/litestream.yml, word for word (the README's "Replicating
/// to S3 and Cloudflare R2"), against the in-process S3 server, everything it expands from
/// the `litestream:` credentials: rake restores each of the four databases equal, and
/// replica_verify() passes.
#[test]
fn the_litestream_gems_s3_config_replicates_unchanged() {
    let Some(run) = Run::installed() else { return };
    let srv = s3server::start(&run.tmp.join("server"), "bkt");
    let mut yml = String::from("dbs:\n");
    for (_, file) in DATABASES {
        yml += &format!(
            "  - path: storage/{file}\n    replicas:\n      - type: s3\n        bucket: $LITESTREAM_REPLICA_BUCKET\n        path: storage/{file}\n        endpoint: $LITESTREAM_REPLICA_ENDPOINT\n        access-key-id: $LITESTREAM_ACCESS_KEY_ID\n        secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY\n"
        );
    }
    std::fs::write(run.app.join("config/litestream.yml"), yml).unwrap();
    // Without the initializer: the credentials alone say everything.
    std::fs::remove_file(run.app.join("config/initializers/litestream.rb")).unwrap();
    let credentials = format!(
        "secret_key_base: {}\nlitestream:\n  replica_bucket: bkt\n  replica_endpoint: {}\n  replica_key_id: {}\n  replica_access_key: {}\n",
        "ab".repeat(64),
        srv.endpoint(),
        srv.access_key,
        srv.secret_key
    );
    run.run("ruby", &["bin/credentials"], &credentials);
    run.rake("app:setup");
    for (db, file) in DATABASES {
        let target = run.tmp.join(&format!("s3-restored-{file}"));
        run.rake(&format!("libreplica:restore[{db},{}]", target.display()));
        assert_eq!(dump(&target), dump(&run.database(file)), "{db} from S3");
        assert!(
            run.tmp.join(&format!("server/bkt/storage/{file}")).is_dir(),
            "{db}: nothing under s3://bkt/storage/{file}"
        );
    }
    let verify = run.rake("libreplica:verify");
    assert_eq!(
        verify
            .lines()
            .filter(|l| l.contains("matches the database"))
            .count(),
        4,
        "libreplica:verify on S3:\n{verify}"
    );
}

/// The dashboard's HTTP basic auth fallback, as the Railtie gives it: the `libreplica:`
/// credentials; none without a password.
#[test]
fn basic_auth_comes_from_the_credentials() {
    let Some(run) = Run::installed() else { return };
    let auth = |run: &Run| {
        let script = "require './config/environment'; print Libreplica::Railtie.basic_auth.inspect";
        run.run("ruby", &["-e", script], "")
    };
    run.configure_with("libreplica:\n  username: admin\n  password: pw\n");
    assert_eq!(auth(&run), r#"["admin", "pw"]"#);
    run.configure();
    assert_eq!(auth(&run), "nil");
}
