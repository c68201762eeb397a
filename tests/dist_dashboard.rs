//! Issue 15's dashboard (`Libreplica::Dashboard`, a plain Rack app): a config.ru with four
//! databases (primary, cache, queue, cable) replicated through `REPLICA_URL=file://…`,
//! served by Debian's Puma on 127.0.0.1, with the dashboard mounted twice: at `/replica`
//! behind its own HTTP basic auth (`LIBREPLICA_USERNAME`/`LIBREPLICA_PASSWORD`), and at
//! `/admin/replica` behind a stand-in for the host's own authentication (a middleware that
//! vouches with `env["libreplica.authorized"]`). Checked: every database's row in the HTML
//! and what reflects a request escaped; 401 without credentials, with wrong ones, or
//! without the host's say; the verify button's POST refused (403) without a valid CSRF
//! token and, with one, running a drill whose outcome the page then shows; and the page as
//! headless Chromium (Debian's `chromium`) renders it: its DOM, and a screenshot kept in
//! `target/test-artifacts/dist_dashboard.png`. Then Puma in cluster mode (two workers): a
//! token holds whichever worker signed it, and every worker's page reports the drill.
//!
//! The dashboard and the extension are the gem of `dist/`, installed as a user would into a
//! fresh `GEM_HOME` (tests/common/rails_app.rs, as tests/dist_ruby.rs does), never the source
//! tree: the config.ru requires "libreplica", which loads the .so at
//! `Libreplica.loadable_path`, checked to be the one `dist/BUILD` names.
//!
//! Without `dist/`, a printed skip, unless `REPLICA_DIST_REQUIRED` is set (`make
//! test-dist`). Ruby with the sqlite3 gem, Puma and Chromium are Debian's (`.ci/install-dist`):
//! missing, a printed skip; a failure under CI or `REPLICA_DIST_REQUIRED`.

mod common;
#[path = "common/rails_app.rs"]
mod rails_app;

use common::dist::dist_dir;
use common::*;
use rails_app::{basic, chromium, gem_command, install_gem, installed_so, screenshot};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DATABASES: [&str; 4] = ["primary", "cache", "queue", "cable"];
const USER: &str = "admin";
const PASSWORD: &str = "horse-Battery-9";
/// What the stand-in for the host's authentication accepts (the `X-Test-Admin` header).
const HOST_TOKEN: &str = "host-says-yes";

/// The test's app: what a Sinatra or Roda app's config.ru would hold around the dashboard.
const CONFIG_RU: &str = r##"
require "libreplica"
require "libreplica/dashboard"

# Loaded before the app opens its databases, so all four replicate (REPLICA_URL).
Libreplica.load(SQLite3::Database.new(":memory:"))
DBS = %w[primary cache queue cable].to_h do |name|
  db = SQLite3::Database.new("#{name}.sqlite3")
  db.execute("PRAGMA journal_mode=WAL")
  db.execute("CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, body TEXT)")
  3.times { |i| db.execute("INSERT INTO items(body) VALUES (?)", ["#{name} #{i}"]) }
  db.get_first_value("SELECT replica_sync(30000)")
  [name, db]
end

Libreplica::Dashboard.connection = -> { SQLite3::Database.new(":memory:").tap { |db| Libreplica.load(db) } }

# A stand-in for the host's own authentication (a Rails route constraint, Devise's
# `authenticate` block): it vouches for the requests it accepts and passes the others on.
host_auth = lambda do |app|
  lambda do |env|
    env["libreplica.authorized"] = true if env["HTTP_X_TEST_ADMIN"] == ENV.fetch("TEST_ADMIN_TOKEN")
    app.call(env)
  end
end

map("/replica") { run Libreplica::Dashboard }
map("/admin/replica") { run host_auth.(Libreplica::Dashboard) }
map("/") { run ->(_env) { [200, {"content-type" => "text/plain"}, ["the app\n"]] } }
"##;

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("REPLICA_DIST_REQUIRED").is_some()
}

/// Whether `probe` succeeds; if not, a panic where the tools are required, else a skip.
fn installed(what: &str, probe: &mut Command) -> bool {
    let ok = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let why = format!(
            "{what} is missing (`{probe:?}` failed); `bash .ci/install-dist` (as root) installs it"
        );
        assert!(
            !required(),
            "{why} (required under CI and by make test-dist)"
        );
        println!("SKIPPED: {why}");
    }
    ok
}

// -- Puma ------------------------------------------------------------------------------

/// The running Puma, killed (by its pid) on every way out of the test.
struct Puma {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Puma {
    /// SIGTERM to Puma's process group (its own, made at spawn: the master and its
    /// workers, nothing else), then SIGKILL to what is left of it: a worker still booting
    /// when a test fails may outlast a master that is gone.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
        // Usually the group is gone by now and kill says so: not worth printing.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Puma {
    /// `workers` 0: single mode; else cluster mode, each worker loading the app itself.
    /// The gem is the one installed in `gem_home`.
    fn start(tmp: &TempDir, gem_home: &Path, workers: u32) -> Puma {
        std::fs::write(tmp.join("config.ru"), CONFIG_RU).unwrap();
        let url = format!("file://{}", tmp.join("replicas").display());
        let env = [
            ("REPLICA_URL", url.as_str()),
            ("REPLICA_LOG", "stderr"),
            ("LIBREPLICA_USERNAME", USER),
            ("LIBREPLICA_PASSWORD", PASSWORD),
            ("TEST_ADMIN_TOKEN", HOST_TOKEN),
        ];
        // Port 0: Puma binds a free port and says which, so no other process can take it
        // between a probe and the bind.
        let workers = workers.to_string();
        let args = [
            "-b",
            "tcp://127.0.0.1:0",
            "-t",
            "1:4",
            "-w",
            &workers,
            "config.ru",
        ];
        let log = tmp.join("puma.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = gem_command(gem_home, "puma", &args, tmp.path());
        cmd.envs(env)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0);
        let mut puma = Puma {
            child: cmd.spawn().expect("cannot start puma"),
            port: 0,
            log,
        };
        puma.port = puma.wait_for_port();
        puma.wait_until_serving();
        puma
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn fail(&self, why: &str) -> ! {
        panic!("{why}\n-- puma's log:\n{}", self.log_text());
    }

    /// Polls the log for "Listening on http://127.0.0.1:PORT" (Puma loads the app, which
    /// syncs the four databases, before it listens).
    fn wait_for_port(&mut self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let text = self.log_text();
            if let Some(rest) = text.split("Listening on http://127.0.0.1:").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                return digits.parse().unwrap();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                self.fail(&format!("puma exited ({status}) before listening"));
            }
            if Instant::now() > deadline {
                self.fail("puma did not listen within 90 s");
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(self.port, "GET", "/", &[], "").is_err() {
            if Instant::now() > deadline {
                self.fail("puma did not answer within 30 s of listening");
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http(self.port, "GET", path, headers, "")
            .unwrap_or_else(|e| self.fail(&format!("GET {path}: {e}")))
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], form: &str) -> Response {
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        http(self.port, "POST", path, &all, form)
            .unwrap_or_else(|e| self.fail(&format!("POST {path}: {e}")))
    }
}

// -- HTTP ------------------------------------------------------------------------------

#[derive(Debug)]
struct Response {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request (the server closes the connection after it), read to the end.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Response> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    // A drill restores a database: long enough for that on a busy machine.
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    s.take(8 << 20).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.200}")))?;
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {head:.200}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Response {
        code,
        headers,
        body: body.to_string(),
    })
}

/// Percent-encodes a form value.
fn form_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of `attr="…"` in the first tag of `html` that contains `marker`.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let at = html.find(marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let value = tag.split(&format!("{attr}=\"")).nth(1)?;
    Some(value[..value.find('"')?].to_string())
}

/// The `<tr class="database" …>` row of the database whose file is `name.sqlite3`.
fn row<'a>(html: &'a str, name: &str) -> Option<&'a str> {
    let start = html.find(&format!("data-name=\"{name}.sqlite3\""))?;
    let end = start + html[start..].find("</tr>")?;
    Some(&html[start..end])
}

// -- the tests -------------------------------------------------------------------------

/// The gem of `dist/` installed into a fresh `GEM_HOME` in `tmp`, its .so checked: that
/// `GEM_HOME`; `None` (a printed skip) without `dist/` or the tools, where not required.
fn gem_installed(tmp: &TempDir, browser: bool) -> Option<PathBuf> {
    let dist = dist_dir()?;
    if !tools_installed(browser) {
        return None;
    }
    let gem_home = tmp.join("gems");
    install_gem(&dist, &gem_home);
    installed_so(&dist, &gem_home);
    Some(gem_home)
}

fn tools_installed(browser: bool) -> bool {
    ruby_available()
        && installed("Debian's puma", Command::new("puma").arg("--version"))
        && (!browser
            || installed(
                "Debian's chromium",
                Command::new("chromium").arg("--version"),
            ))
}

/// One Puma process serving the app: every check, and the page as Chromium renders it.
#[test]
fn dashboard_shows_every_database_refuses_strangers_and_runs_a_drill() {
    let tmp = TempDir::new("dashboard");
    let Some(gem_home) = gem_installed(&tmp, true) else {
        return;
    };
    let puma = Puma::start(&tmp, &gem_home, 0);
    let auth = basic(USER, PASSWORD);
    let authed = [("Authorization", auth.as_str())];
    refuses_strangers(&puma);

    // Every database's row, each up to date with its restore points.
    let page = puma.get("/replica/", &authed);
    assert_eq!(page.code, 200, "{page:?}");
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    for name in DATABASES {
        let r = row(&page.body, name)
            .unwrap_or_else(|| panic!("no row for {name}.sqlite3 in:\n{}", page.body));
        let path = tmp.join(&format!("{name}.sqlite3"));
        assert!(r.contains(&path.display().to_string()), "{name}: {r}");
        assert!(r.contains("up to date"), "{name}: {r}");
        assert!(r.contains("restore points over time"), "{name}: {r}");
        assert!(r.contains("Verify now"), "{name}: {r}");
        assert!(r.contains("<td class=\"num cost\">$0."), "{name}: {r}");
    }

    let (drill, _) = verify_button(&puma, &tmp, &page);
    // One process: its status has the drill too, and only that one.
    let primary_row = row(&drill.body, "primary").unwrap();
    assert!(
        primary_row.contains("<span class=\"ok\">ok: txid "),
        "{primary_row}"
    );
    for name in ["cache", "queue", "cable"] {
        assert!(
            row(&drill.body, name).unwrap().contains("never"),
            "only primary was verified"
        );
    }

    // As a browser renders it.
    let url = format!("http://{USER}:{PASSWORD}@127.0.0.1:{}/replica/", puma.port);
    screenshot(&tmp, &url, "dist_dashboard.png");
    let dom = chromium(&tmp, &["--dump-dom", &url]);
    assert_eq!(dom.matches("<tr class=\"database\"").count(), 4, "{dom}");
    for name in DATABASES {
        assert!(
            row(&dom, name).is_some_and(|r| r.contains("up to date")),
            "{name} in the DOM:\n{dom}"
        );
    }
    assert!(row(&dom, "primary").unwrap().contains("ok: txid "), "{dom}");
    assert!(dom.contains("<svg class=\"spark\""), "{dom}");
    drop(puma);
}

/// Puma in cluster mode (two workers, each loading the app, one of them uploading): the
/// CSRF token one worker signed holds in the other, the page after a drill says how it
/// went whichever worker renders it (each process's status knows only its own drills), and
/// a drill passes in either worker.
#[test]
fn dashboard_in_puma_cluster_mode_reports_the_drill_from_any_worker() {
    let tmp = TempDir::new("dashboard-cluster");
    let Some(gem_home) = gem_installed(&tmp, false) else {
        return;
    };
    let puma = Puma::start(&tmp, &gem_home, 2);
    refuses_strangers(&puma);
    let auth = basic(USER, PASSWORD);
    let page = puma.get("/replica/", &[("Authorization", auth.as_str())]);
    assert_eq!(page.code, 200, "{page:?}");
    for name in DATABASES {
        assert!(
            row(&page.body, name).is_some(),
            "no row for {name}:\n{}",
            page.body
        );
    }
    let (_, location) = verify_button(&puma, &tmp, &page);
    // Which worker rendered a page shows in it: the uploader's says "(this process)".
    let mut seen = [false, false];
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen != [true, true] {
        assert!(
            Instant::now() < deadline,
            "30 s of GETs reached only one worker (uploader's: {})",
            seen[0]
        );
        let again = puma.get(&location, &[("Authorization", auth.as_str())]);
        assert!(
            again.body.contains("<div class=\"notice drill\">") && again.body.contains("ok: txid "),
            "a worker did not show the drill: {}",
            again.body
        );
        seen[usize::from(!again.body.contains("(this process)"))] = true;
    }

    // "Verify now" passes in either worker: the uploader runs replica_verify(), the one
    // standing by syncs and restores the replica (Libreplica::Tasks.drill, as the rake
    // task does). Pressed until two processes have each run a passing drill.
    let cookie_header = page.header("set-cookie").unwrap();
    let cookie = cookie_header.split(';').next().unwrap();
    let token = attr_after(&page.body, "name=\"authenticity_token\"", "value").unwrap();
    let with_cookie = [("Authorization", auth.as_str()), ("Cookie", cookie)];
    let primary = tmp.join("primary.sqlite3").display().to_string();
    let mut pids = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while pids.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "90 s of drills ran only in {pids:?}\n-- puma's log:\n{}",
            puma.log_text()
        );
        pids.insert(drill(&puma, &with_cookie, &token, &primary).2);
    }
    drop(puma);
}

/// 401 without credentials, with wrong ones, and without the host's say; 200 with it.
fn refuses_strangers(puma: &Puma) {
    let strangers = [
        ("/replica/", vec![]),
        ("/replica/", vec![("Authorization", basic(USER, "wrong"))]),
        ("/replica/", vec![("Authorization", basic("", ""))]),
        (
            "/admin/replica/",
            vec![("X-Test-Admin", "not it".to_string())],
        ),
    ];
    for (path, headers) in &strangers {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = puma.get(path, &headers);
        assert_eq!(r.code, 401, "GET {path} with {headers:?}: {r:?}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Basic "), "{r:?}");
        assert!(
            !r.body.contains("sqlite3"),
            "a refusal shows nothing: {r:?}"
        );
    }
    let host = puma.get("/admin/replica/", &[("X-Test-Admin", HOST_TOKEN)]);
    assert_eq!(host.code, 200, "the host vouched: {host:?}");
}

/// The verify button of `page` (a signed token in the form, its nonce in a SameSite
/// cookie): refused (403) without a valid token, 422 (escaped) for a database that is not
/// replicated, and with the token a drill of primary whose outcome the next page shows.
/// Returns that page and where the redirect sent it.
fn verify_button(puma: &Puma, tmp: &TempDir, page: &Response) -> (Response, String) {
    let auth = basic(USER, PASSWORD);
    let authed = [("Authorization", auth.as_str())];
    let cookie_header = page
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no CSRF cookie: {page:?}"));
    assert!(
        cookie_header.contains("SameSite=Strict") && cookie_header.contains("HttpOnly"),
        "{cookie_header}"
    );
    assert!(cookie_header.contains("Path=/replica"), "{cookie_header}");
    let cookie = cookie_header.split(';').next().unwrap().to_string();
    let token = attr_after(&page.body, "name=\"authenticity_token\"", "value").unwrap();
    let primary = tmp.join("primary.sqlite3").display().to_string();
    let form = |token: &str, db: &str| format!("authenticity_token={token}&db={}", form_value(db));
    let with_cookie = [
        ("Authorization", auth.as_str()),
        ("Cookie", cookie.as_str()),
    ];
    let forged_cookie = format!("libreplica_csrf={}", "0".repeat(64));
    let forged = [
        ("Authorization", auth.as_str()),
        ("Cookie", forged_cookie.as_str()),
    ];
    let refused = [
        ("no token", form("", &primary), &with_cookie[..]),
        (
            "a wrong token",
            form(&"a".repeat(64), &primary),
            &with_cookie[..],
        ),
        ("no cookie", form(&token, &primary), &authed[..]),
        (
            "a cookie of the attacker's",
            form(&token, &primary),
            &forged[..],
        ),
    ];
    for (what, body, headers) in &refused {
        let r = puma.post("/replica/verify", headers, body);
        assert_eq!(r.code, 403, "a POST with {what}: {r:?}");
    }
    let stranger = puma.post(
        "/replica/verify",
        &[("Cookie", cookie.as_str())],
        &form(&token, &primary),
    );
    assert_eq!(stranger.code, 401, "{stranger:?}");

    // What a request puts on a page is escaped, and a drill's outcome is believed only
    // when the dashboard signed it.
    let probe = "<script>alert(1)</script>";
    let unknown = puma.post("/replica/verify", &with_cookie, &form(&token, probe));
    assert_eq!(unknown.code, 422, "{unknown:?}");
    assert!(
        unknown
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{unknown:?}"
    );
    assert!(!unknown.body.contains("<script"), "{unknown:?}");
    let claim = format!(
        "/replica/?verified={}&outcome={}&at=0&sig={}",
        form_value(&primary),
        form_value(probe),
        "0".repeat(64)
    );
    let spoofed = puma.get(&claim, &with_cookie);
    assert_eq!(spoofed.code, 200, "{spoofed:?}");
    assert!(!spoofed.body.contains("Restore drill of") && !spoofed.body.contains("<script"));
    assert!(
        !spoofed.body.contains("alert(1)"),
        "an unsigned outcome is not shown"
    );

    let (after, location, _) = drill(puma, &with_cookie, &token, &primary);
    (after, location)
}

/// Presses "verify now" for `primary` with a valid token: the 303, and the page it leads to
/// with a passed drill's notice. Returns that page, the redirect's location and the pid of
/// the process that ran the drill (the notice says it).
fn drill(
    puma: &Puma,
    with_cookie: &[(&str, &str)],
    token: &str,
    primary: &str,
) -> (Response, String, String) {
    let form = format!("authenticity_token={token}&db={}", form_value(primary));
    let ran = puma.post("/replica/verify", with_cookie, &form);
    assert_eq!(ran.code, 303, "{ran:?}");
    let location = ran.header("location").unwrap();
    assert!(location.starts_with("/replica/?verified="), "{location}");
    let after = puma.get(location, with_cookie);
    assert_eq!(after.code, 200, "{after:?}");
    let notice = after.body.split("<div class=\"notice drill\">").nth(1);
    let notice = notice
        .and_then(|n| n.split("</div>").next())
        .unwrap_or_else(|| panic!("no drill notice after the redirect:\n{}", after.body));
    assert!(notice.contains(primary), "{notice}");
    assert!(notice.contains("<span class=\"ok\">ok: txid "), "{notice}");
    let pid = notice
        .split("by process <span class=\"pid\">")
        .nth(1)
        .and_then(|p| p.split('<').next())
        .unwrap_or_else(|| panic!("the notice names no process: {notice}"))
        .to_string();
    (after, location.to_string(), pid)
}
