//! The Rails app of tests/fixtures/rails_app, run as tests/dist_ruby.rs runs it: copied into
//! a scratch directory with the gem of `dist/` in a fresh `GEM_HOME`, its rake tasks, and
//! Puma in cluster mode in a process group of its own (killed when dropped). Included with
//! `#[path = "common/rails_app.rs"] mod rails_app;` next to `mod common;`.
#![allow(dead_code)]

use crate::common::dist::{dist_dir, dist_file};
use crate::common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// database.yml's names and their files.
pub const DATABASES: [(&str, &str); 4] = [
    ("primary", "production.sqlite3"),
    ("cache", "production_cache.sqlite3"),
    ("queue", "production_queue.sqlite3"),
    ("cable", "production_cable.sqlite3"),
];
/// A Ruby process of the app (a rake task, the credentials script): boots Rails, so seconds.
pub const TASK_LIMIT: Duration = Duration::from_secs(120);
/// The R2 account the credentials name, whose endpoint the Railtie derives.
pub const ACCOUNT: &str = "0123abcd";

pub fn required() -> bool {
    std::env::var_os("REPLICA_DIST_REQUIRED").is_some() || std::env::var_os("CI").is_some()
}

/// Whether Debian's Rails 6.1 and Puma are there (`.ci/install-dist`); a skip, or a panic
/// where they are required.
pub fn rails_and_puma() -> bool {
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
pub struct Run {
    pub tmp: TempDir,
    pub gem_home: PathBuf,
    pub app: PathBuf,
    pub bucket: PathBuf,
}

impl Run {
    /// A new run with the gem of `dist/` installed into its fresh `GEM_HOME`, or `None` (a
    /// printed skip) without `dist/` or without Rails and Puma, where they are not required.
    pub fn installed() -> Option<Run> {
        let dist = dist_dir()?;
        if !rails_and_puma() {
            return None;
        }
        let run = Run::new();
        install_gem(&dist, &run.gem_home);
        Some(run)
    }

    pub fn new() -> Run {
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
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = gem_command(&self.gem_home, program, args, &self.app);
        cmd.env("RAILS_ENV", "production");
        cmd
    }

    /// Runs `program args` to the end (at most `TASK_LIMIT`); panics with its output when
    /// it fails.
    pub fn run(&self, program: &str, args: &[&str], stdin: &str) -> String {
        let o = run_command(self.command(program, args), stdin, TASK_LIMIT);
        check(&o, &format!("{program} {}", args.join(" ")))
    }

    pub fn rake(&self, task: &str) -> String {
        self.run("rake", &[task], "")
    }

    /// Credentials as the litestream gem's users keep them (the bucket, here the scratch
    /// directory config/litestream.yml's replica URLs are under, keys and an R2 account),
    /// then the tables, created through Active Record in a rake process: its first
    /// replication.
    pub fn configure(&self) {
        self.configure_with("");
    }

    /// [`Run::configure`] with more top-level credentials sections (YAML), such as
    /// `libreplica:` with the dashboard's `username` and `password`.
    pub fn configure_with(&self, more: &str) {
        let credentials = format!(
            "secret_key_base: {}\nlitestream:\n  replica_bucket: {}\n  replica_key_id: test-key-id\n  replica_access_key: test-secret\n  r2_account_id: {ACCOUNT}\n{more}",
            "ab".repeat(64),
            self.bucket.display()
        );
        self.run("ruby", &["bin/credentials"], &credentials);
        self.rake("app:setup");
    }

    pub fn database(&self, file: &str) -> PathBuf {
        self.app.join("storage").join(file)
    }
}

/// `gem install --local` of `dist/`'s gem into `gem_home` (a fresh directory): the gem as a
/// user installs it, never the source tree. Panics with gem's output when it fails.
pub fn install_gem(dist: &Path, gem_home: &Path) {
    let gem = dist_file(dist, "libreplica-", "-x86_64-linux.gem");
    let cwd = gem_home.parent().unwrap();
    let cmd = gem_command(
        gem_home,
        "gem",
        &["install", "--local", "--no-document", gem.to_str().unwrap()],
        cwd,
    );
    check(&run_command(cmd, "", TASK_LIMIT), "gem install --local");
}

/// `program args` in `cwd` with `gem_home` as the only gems besides Debian's, and none of
/// the replica, litestream, AWS, gem or Ruby load-path variables of the test's own
/// environment: what runs is the installed gem, configured only as the test says.
pub fn gem_command(gem_home: &Path, program: &str, args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd);
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if name.starts_with("REPLICA_")
            || name.starts_with("LITESTREAM_")
            || name.starts_with("LIBREPLICA_")
            || name.starts_with("AWS_")
            || name.starts_with("GEM_")
            || name.starts_with("BUNDLE")
            || name == "RUBYOPT"
            || name == "RUBYLIB"
        {
            cmd.env_remove(&var);
        }
    }
    cmd.env("GEM_HOME", gem_home);
    cmd
}

/// `Libreplica.loadable_path` of the gem installed in `gem_home`, checked to be inside it
/// and to be the very .so `dist/BUILD` names.
pub fn installed_so(dist: &Path, gem_home: &Path) -> PathBuf {
    let cmd = gem_command(
        gem_home,
        "ruby",
        &["-e", "require 'libreplica'; print Libreplica.loadable_path"],
        gem_home.parent().unwrap(),
    );
    let so = PathBuf::from(check(
        &run_command(cmd, "", TASK_LIMIT),
        "Libreplica.loadable_path",
    ));
    assert!(
        so.starts_with(gem_home),
        "Libreplica.loadable_path is {}, not inside the fresh GEM_HOME {}",
        so.display(),
        gem_home.display()
    );
    assert_eq!(
        crate::common::dist::sha256_of(&so),
        crate::common::dist::build_value(dist, "so_sha256"),
        "the gem's {} is not dist/libreplica.so",
        so.display()
    );
    so
}

pub fn copy_tree(from: &Path, to: &Path) {
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
pub struct Puma {
    pub child: Child,
    pub log: PathBuf,
    pub port: u16,
}

impl Puma {
    pub fn start(run: &Run) -> Puma {
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
    pub fn wait_until_serving(&mut self) {
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

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL to the group, and the master reaped: nothing of the app runs afterwards.
    pub fn kill(&mut self) {
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
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 request: the status code and the body.
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_with(port, method, path, &[])
}

/// [`http`] with more request headers (`Authorization`).
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    // Above the app's own replica_sync timeout (20 s), so the app's answer is what we see.
    s.set_read_timeout(Some(Duration::from_secs(40)))?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}Content-Length: 0\r\nConnection: close\r\n\r\n")?;
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

/// An `Authorization: Basic` header's value (base64 by hand: the tests use no encoding crate).
pub fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("Basic ");
    for chunk in format!("{user}:{password}").as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A request that must answer 200; its `key=value` lines.
pub fn ask(puma: &Puma, method: &str, path: &str) -> BTreeMap<String, String> {
    let (code, body) = http(puma.port, method, path)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", puma.log_tail()));
    assert_eq!(code, 200, "{method} {path}: {body}\n{}", puma.log_tail());
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Where tests keep what a person may want to look at afterwards (screenshots).
pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium with `args` and a profile of its own in `tmp`; its stdout.
pub fn chromium(tmp: &TempDir, args: &[&str]) -> String {
    let profile = format!("--user-data-dir={}", tmp.join("chromium").display());
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut all = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        profile.as_str(),
    ];
    all.extend_from_slice(args);
    let mut cmd = Command::new("chromium");
    cmd.args(&all).current_dir(tmp.path()).env("HOME", &home);
    let out = run_command(cmd, "", Duration::from_secs(120));
    check(&out, &format!("chromium {}", args.join(" ")))
}

/// Screenshots `url` with headless Chromium into `artifacts()/<name>` (1280×900) and checks
/// that a PNG came out.
pub fn screenshot(tmp: &TempDir, url: &str, name: &str) {
    let shot = artifacts().join(name);
    let _ = std::fs::remove_file(&shot);
    let screenshot_arg = format!("--screenshot={}", shot.display());
    chromium(tmp, &[&screenshot_arg, "--window-size=1280,900", url]);
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(
        png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {} bytes",
        png.len()
    );
}
