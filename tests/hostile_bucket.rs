//! A bucket (or replica directory) that someone else can write is hostile input: each test
//! here plants one attack and checks that the extension, loaded in Debian's python3, refuses
//! it with an error naming the problem, within a memory limit (`prlimit --as` on the host)
//! and a time limit, instead of growing the host, hanging, or restoring a database nobody
//! committed. Misbehaving S3 endpoints are a small Python HTTP server on 127.0.0.1.
mod common;

use common::*;
use replica::ltx::{Encoder, Header, FLAG_NO_CHECKSUM};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// The address space a host may use, in bytes (768 MiB; `prlimit` takes no suffixes):
/// python3 with the extension and a restore peaks near 230 MB, so the attacks (which grew
/// hosts to gigabytes) hit it long before they finish.
const AS_LIMIT: u64 = 768 << 20;

/// An S3 endpoint that misbehaves as `mode` says: `endless-list` answers ListObjectsV2 with
/// a 200 whose body never ends; `endless-pages` answers every ListObjectsV2 with a truncated
/// page of 1000 keys and a new continuation token; `trickle` lists one 4096-byte snapshot and sends its body a
/// byte every 0.2 s. Other requests get plausible answers (404 for objects, 200 for PUTs).
/// It prints its port, then serves until killed.
const MISBEHAVING_S3: &str = r#"
import sys, time, http.server, socketserver
mode = sys.argv[1]
KEY = "app/0009/0000000000000001-0000000000000001.ltx"

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, status, body=b"", extra=()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra: self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.reply(200, extra=[("ETag", '"e1"')])
    def do_POST(self): self.do_PUT()
    def do_DELETE(self): self.reply(204)
    def do_HEAD(self): self.reply(404)
    def do_GET(self):
        if "list-type=2" in self.path and mode == "endless-list":
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            entry = b"<Contents><Key>app/0000/0000000000000002-0000000000000002.ltx</Key><Size>1</Size></Contents>"
            chunk = b"<ListBucketResult>" + entry * 700
            while True:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                chunk = entry * 700
        elif "list-type=2" in self.path and mode == "endless-pages":
            page = int(self.path.split("continuation-token=")[1].split("&")[0]) if "continuation-token=" in self.path else 0
            entries = "".join("<Contents><Key>app/0000/%016x-%016x.ltx</Key><Size>1</Size></Contents>" % (page * 1000 + i + 2, page * 1000 + i + 2) for i in range(1000))
            body = ("<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>%d</NextContinuationToken>%s</ListBucketResult>" % (page + 1, entries)).encode()
            self.reply(200, body)
        elif "list-type=2" in self.path:
            body = ("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>%s</Key>"
                    "<Size>4096</Size></Contents></ListBucketResult>" % KEY).encode()
            self.reply(200, body)
        elif mode == "trickle" and self.path.endswith(KEY):
            self.send_response(200)
            self.send_header("Content-Length", "4096")
            self.end_headers()
            for _ in range(4096):
                self.wfile.write(b"L")
                self.wfile.flush()
                time.sleep(0.2)  # the fault itself: a body that trickles, not synchronization
        else:
            self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>")

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address): pass  # a client that hung up
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// The misbehaving server, killed (by its pid) when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(mode: &str) -> Server {
        let mut child = std::process::Command::new(PYTHON3)
            .args(["-u", "-c", MISBEHAVING_S3, mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        Server { child, port }
    }

    /// The replica URL of `app` on this server, with extra query parameters.
    fn url(&self, extra: &str) -> String {
        format!(
            "s3://bkt/app?endpoint=http://127.0.0.1:{}&force-path-style=true{extra}",
            self.port
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `PY_WAIT_FOR`, `PY_LOAD` and `body` in Debian's python3 under `prlimit --as`, with
/// dummy S3 keys and `env`, for at most `limit`.
fn python_limited(body: &str, cwd: &Path, env: &[(&str, &str)], limit: Duration) -> Output {
    let lib = load_path();
    let mut all = vec![
        ("REPLICA_TEST_LIB", lib.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "not-a-secret"),
    ];
    all.extend_from_slice(env);
    let as_limit = format!("--as={AS_LIMIT}");
    let cmd = replica_command("prlimit", &[&as_limit, "--", PYTHON3, "-"], cwd, &all);
    run_command(cmd, &format!("{PY_LOAD}{PY_WAIT_FOR}{body}"), limit)
}

/// A script line that prints `restored <txid>` or `restore_error <message>`.
fn restore_line(src: &str, out: &str) -> String {
    format!(
        r#"
try:
    print("restored", boot.execute("SELECT replica_restore(?, ?)", ({src:?}, {out:?})).fetchone()[0])
except sqlite3.Error as e:
    print("restore_error", e)
"#
    )
}

/// The line of `text` that starts with `key ` (without it).
fn line_of<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
}

/// Restores `src` into `r.db` in `dir` under the memory limit, within `limit`; the host's
/// output (`what` names the attempt when the host itself fails).
fn restore_under_limit(dir: &Path, src: &str, limit: Duration, what: &str) -> String {
    let out = python_limited(&restore_line(src, "r.db"), dir, &[], limit);
    check(&out, what)
}

/// [`restore_under_limit`] that must be refused: the error it printed.
fn refused_restore(dir: &Path, src: &str, limit: Duration, what: &str) -> String {
    let text = restore_under_limit(dir, src, limit, what);
    line_of(&text, "restore_error")
        .unwrap_or_else(|| panic!("{what}: not refused:\n{text}"))
        .to_string()
}

/// LTX file bytes: `pages` under `header`.
fn ltx(header: Header, pages: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new(), header).unwrap();
    for (pgno, page) in pages {
        e.encode_page(*pgno, page).unwrap();
    }
    e.finish(0).unwrap().0
}

/// A small real database (made by Debian's sqlite3, 4096-byte pages) as its pages.
fn real_pages(dir: &TempDir) -> Vec<(u32, Vec<u8>)> {
    let sql = "PRAGMA page_size=4096; CREATE TABLE t(a); INSERT INTO t VALUES ('committed');";
    check(
        &run(SQLITE3, &["src.db", sql], dir.path(), &[], ""),
        "sqlite3",
    );
    let db = std::fs::read(dir.join("src.db")).unwrap();
    db.chunks(4096)
        .zip(1..)
        .map(|(p, n)| (n, p.to_vec()))
        .collect()
}

fn no_checksum(min: u64, max: u64, page_size: u32, commit: u32) -> Header {
    Header {
        flags: FLAG_NO_CHECKSUM,
        page_size,
        commit,
        min_txid: min,
        max_txid: max,
        timestamp_ms: 1_700_000_000_000,
        ..Default::default()
    }
}

/// Writes `bytes` as the LTX file `level`/`min-max` of the directory replica `rep`.
fn plant(rep: &Path, level: u8, min: u64, max: u64, bytes: &[u8]) -> std::path::PathBuf {
    let dir = rep.join(format!("ltx/{level}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{min:016x}-{max:016x}.ltx"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A directory replica `rep` of a real database: a snapshot at txid 1, then a level-0
/// file at txid 2 rewriting page 2. Returns the page count.
fn real_replica(dir: &TempDir, rep: &Path) -> u32 {
    let pages = real_pages(dir);
    let n = pages.len() as u32;
    plant(rep, 9, 1, 1, &ltx(no_checksum(1, 1, 4096, n), &pages));
    let l0 = ltx(no_checksum(2, 2, 4096, n), &pages[1..2]);
    plant(rep, 0, 2, 2, &l0);
    n
}

/// A host replicating `app.db` to a server misbehaving as `mode`, under the address-space
/// limit: it commits a row, waits for `replica_status()` to show an error, asserts the
/// status names `bound` and the database still holds its row, then runs `then` (more
/// Python). Returns the host's output text.
fn host_under_misbehaving_list(mode: &str, bound: &str, then: &str) -> String {
    let srv = Server::start(mode);
    let dir = TempDir::new(mode);
    check(
        &run(
            SQLITE3,
            &["app.db", "PRAGMA journal_mode=wal; CREATE TABLE t(v);"],
            dir.path(),
            &[],
            "",
        ),
        "create app.db",
    );
    let url = srv.url("");
    let script = format!(
        r#"
c = sqlite3.connect("app.db", isolation_level=None)
c.execute("INSERT INTO t VALUES ('committed')")
status = lambda: c.execute("SELECT state, last_error FROM replica_status() WHERE last_error IS NOT NULL").fetchone()
state, error = wait_for("an error in replica_status()", status, timeout=60)
print("status", state, "|", error)
print("rows", c.execute("SELECT count(*) FROM t").fetchone()[0])
{}
"#,
        then.replace("{url}", &url)
    );
    let out = python_limited(
        &script,
        dir.path(),
        &[("REPLICA_URL", &url)],
        Duration::from_secs(120),
    );
    let text = check(&out, &format!("host under a misbehaving LIST ({mode})"));
    let status = line_of(&text, "status").expect("status");
    assert!(
        status.starts_with("error | ") && status.contains(bound),
        "status must name the bound:\n{text}\n{}",
        stderr(&out)
    );
    assert_eq!(line_of(&text, "rows"), Some("1"), "{text}");
    text
}

/// An S3 endpoint answering LIST with an endless 200 body: the replicating host stays
/// within its address-space limit, `replica_status()` shows the error, and a restore from
/// the same URL fails naming the bound.
#[test]
fn an_endless_list_body_fails_within_a_memory_limit() {
    let text = host_under_misbehaving_list(
        "endless-list",
        "longer than 4 MiB (a ListObjectsV2 page)",
        &restore_line("{url}", "r.db"),
    );
    let restore = line_of(&text, "restore_error").expect("the restore fails");
    assert!(restore.contains("ListObjectsV2"), "{restore}");
}

/// An S3 endpoint whose listing never ends: every page is truncated, with 1000 new keys and
/// a new continuation token. Each page is within its bound, so only a bound on the listing
/// as a whole stops it: the host stays within its address-space limit, `replica_status()`
/// names the bound, and the database keeps working.
#[test]
fn endless_list_pages_fail_within_a_memory_limit() {
    host_under_misbehaving_list("endless-pages", "more than 250000 objects: refused", "");
}

/// A GET whose body trickles in a byte at a time: with `read-timeout=1s` the 4096-byte
/// object has a deadline of about a second per attempt, so the restore fails, naming the
/// deadline, in seconds rather than the 14 minutes the body would take.
#[test]
fn a_trickling_body_fails_by_its_deadline() {
    let srv = Server::start("trickle");
    let dir = TempDir::new("trickle");
    let started = Instant::now();
    let out = python_limited(
        &restore_line(&srv.url("&read-timeout=1s"), "r.db"),
        dir.path(),
        &[],
        Duration::from_secs(120),
    );
    let text = check(&out, "restore from a trickling endpoint");
    let err = line_of(&text, "restore_error").unwrap_or_else(|| panic!("{text}"));
    assert!(
        err.contains("0009/0000000000000001-0000000000000001.ltx")
            && err.contains("did not arrive within its deadline"),
        "{err}"
    );
    println!("failed after {:?}: {err}", started.elapsed());
    assert!(!dir.join("r.db").exists());
}

/// A 4 KB snapshot whose header claims 2^32-1 pages (with database checksums, so the
/// restore keeps one checksum per page) is refused from its header, before anything is
/// sized from it, within the memory limit.
#[test]
fn a_snapshot_header_claiming_4g_pages_is_refused_before_allocating() {
    let dir = TempDir::new("4g-pages");
    let rep = dir.join("rep");
    let header = Header {
        flags: 0,
        ..no_checksum(1, 1, 512, u32::MAX)
    };
    let mut bytes = header.encode().to_vec();
    bytes.resize(4096, 0x5a);
    plant(&rep, 9, 1, 1, &bytes);
    let src = format!("file://{}", rep.display());
    let err = refused_restore(
        dir.path(),
        &src,
        Duration::from_secs(120),
        "restore of a 4G-page snapshot",
    );
    assert!(
        err.contains("0009/0000000000000001-0000000000000001.ltx")
            && err.contains("a snapshot of 4294967295 pages")
            && err.contains("cannot fit in 4096 bytes"),
        "{err}"
    );
    assert!(!dir.join("r.db").exists());
}

/// A level-0 file that carries one page but declares a database of 2^31 pages: restoring it
/// would size the result to 8 TiB of zeros nobody committed. Refused from its header and
/// size; the real `litestream restore` refuses the same replica too.
#[test]
fn a_level0_file_declaring_a_huge_commit_is_refused() {
    let dir = TempDir::new("huge-commit");
    let rep = dir.join("rep");
    let pages = real_pages(&dir);
    let n = pages.len() as u32;
    plant(&rep, 9, 1, 1, &ltx(no_checksum(1, 1, 4096, n), &pages));
    let huge = ltx(no_checksum(2, 2, 4096, 1 << 31), &pages[1..2]);
    plant(&rep, 0, 2, 2, &huge);
    let src = format!("file://{}", rep.display());
    let err = refused_restore(
        dir.path(),
        &src,
        Duration::from_secs(120),
        "restore of a huge level-0 commit",
    );
    assert!(
        err.contains("0000/0000000000000002-0000000000000002.ltx")
            && err.contains("declares a database of 2147483648 pages"),
        "{err}"
    );
    assert!(!dir.join("r.db").exists());
    // The same file growing the database by one page it does not carry: refused too.
    let gap = ltx(no_checksum(2, 2, 4096, n + 1), &pages[1..2]);
    plant(&rep, 0, 2, 2, &gap);
    let err = refused_restore(
        dir.path(),
        &src,
        Duration::from_secs(120),
        "restore of a level-0 file short of a page",
    );
    assert!(
        err.contains(&format!("does not carry page {}", n + 1)),
        "{err}"
    );
    let ls = litestream(&["restore", "-o", "ls.db", &src], dir.path());
    assert!(
        !ls.status.success(),
        "litestream restored it:\n{}",
        stdout(&ls)
    );
    // Carrying the page it adds, the file restores.
    let grown = ltx(
        no_checksum(2, 2, 4096, n + 1),
        &[pages[1].clone(), (n + 1, vec![0u8; 4096])],
    );
    plant(&rep, 0, 2, 2, &grown);
    let text = restore_under_limit(
        dir.path(),
        &src,
        Duration::from_secs(120),
        "restore of a level-0 file that grows the database",
    );
    assert_eq!(line_of(&text, "restored"), Some("2"), "{text}");
}

/// Restores a directory replica whose level-0 file 2-2 was replaced by what `plant` puts at
/// its path, and asserts the restore was refused naming that entry and `why`, leaving no
/// file behind.
fn assert_planted_entry_refused(name: &str, plant: impl FnOnce(&Path), why: &str) {
    let dir = TempDir::new(name);
    let rep = dir.join("rep");
    real_replica(&dir, &rep);
    let l0 = rep.join("ltx/0/0000000000000002-0000000000000002.ltx");
    std::fs::remove_file(&l0).unwrap();
    plant(&l0);
    let src = format!("file://{}", rep.display());
    let err = refused_restore(
        dir.path(),
        &src,
        Duration::from_secs(60),
        &format!("restore with a planted entry ({name})"),
    );
    assert!(
        err.contains("0000000000000002-0000000000000002.ltx") && err.contains(why),
        "{err}"
    );
    assert!(!dir.join("r.db").exists());
}

/// A FIFO standing where a level-0 file was listed: opening or reading it would wait for a
/// writer for ever. Refused at once, naming the entry.
#[test]
fn a_fifo_in_a_directory_replica_is_refused() {
    let mkfifo = |at: &Path| {
        let made = std::process::Command::new("mkfifo")
            .arg(at)
            .status()
            .unwrap();
        assert!(made.success());
    };
    assert_planted_entry_refused("fifo", mkfifo, "a FIFO, not a regular file: refused");
}

/// `/dev/zero` symlinked in as a level-0 file: reading it never ends (a host reached 4 GB in
/// 3 s). Refused without reading, naming the entry, within the memory limit.
#[test]
fn a_device_symlinked_into_a_directory_replica_is_refused() {
    let link = |at: &Path| std::os::unix::fs::symlink("/dev/zero", at).unwrap();
    assert_planted_entry_refused(
        "dev-zero",
        link,
        "a symbolic link, not a regular file: refused",
    );
}
