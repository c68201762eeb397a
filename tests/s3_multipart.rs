//! Multipart uploads, conditional PUTs and HEAD on the S3 transport, against the in-process
//! s3s + s3s-fs server (which verifies SigV4, implements multipart with S3-style `-N` ETags,
//! and honours `If-None-Match: *` / `If-Match` on PutObject), and end to end through Debian's
//! python3 with a database larger than 16 MiB.

mod common;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::*;
use replica::config::{Credentials, S3Target};
use replica::store::s3::S3Store;
use replica::store::{ObjectStore, StoreError};
use s3env::*;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

const MIB: usize = 1024 * 1024;

fn target(srv: &s3server::S3Server, endpoint: Option<String>) -> S3Target {
    S3Target {
        bucket: srv.bucket.clone(),
        prefix: String::new(),
        endpoint: Some(endpoint.unwrap_or_else(|| srv.endpoint())),
        region: Some("us-east-1".to_string()),
        force_path_style: true,
        skip_verify: false,
        credentials: Some(Credentials {
            access_key_id: srv.access_key.clone(),
            secret_access_key: srv.secret_key.clone(),
            session_token: None,
        }),
        timeouts: Default::default(),
    }
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Files s3s-fs keeps for unfinished multipart uploads (in its root directory).
fn leftover_uploads(root: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload_id-"))
        .collect()
}

#[test]
fn a_17_mib_file_goes_up_in_parts_and_reads_back() {
    let dir = TempDir::new("s3mp-file");
    let root = dir.join("server");
    let srv = s3server::start(&root, "bkt");
    let store = S3Store::new(&target(&srv, None)).unwrap();
    assert_eq!(store.part_size(), 5 * MIB as u64);
    let data = noise(17 * MIB + 123, 7);
    let file = dir.join("big.ltx");
    std::fs::write(&file, &data).unwrap();
    let key = "db/0009/0000000000000001-0000000000000010.ltx";
    let before = store.request_counts().put;
    store.put_file(key, &file).unwrap();
    // Create + 4 parts + complete.
    assert_eq!(store.request_counts().put - before, 6);
    let (size, etag) = store.head(key).unwrap().expect("the object exists");
    assert_eq!(size, data.len() as u64);
    assert!(
        etag.ends_with("-4"),
        "expected a 4-part multipart ETag, got {etag}"
    );
    assert_eq!(store.get(key).unwrap(), data);
    // Ranges inside the object, across a part boundary, and at its end.
    let off = 5 * MIB - 100;
    assert_eq!(
        store.get_range(key, off as u64, 1000).unwrap(),
        &data[off..off + 1000]
    );
    assert_eq!(
        store.get_range(key, (data.len() - 10) as u64, 100).unwrap(),
        &data[data.len() - 10..]
    );
    assert!(leftover_uploads(&root).is_empty());

    // `put` with a large body takes the same path.
    let body = noise(11 * MIB, 9);
    store.put("db/0000/big.ltx", &body).unwrap();
    let (size, etag) = store.head("db/0000/big.ltx").unwrap().unwrap();
    assert_eq!(size, body.len() as u64);
    assert!(etag.ends_with("-3"), "{etag}");
    assert_eq!(store.get("db/0000/big.ltx").unwrap(), body);

    // At or under the part size: one plain PUT, plain ETag.
    let small = noise(5 * MIB, 3);
    std::fs::write(&file, &small).unwrap();
    let before = store.request_counts().put;
    store.put_file("db/0000/small.ltx", &file).unwrap();
    assert_eq!(store.request_counts().put - before, 1);
    let (_, etag) = store.head("db/0000/small.ltx").unwrap().unwrap();
    assert!(!etag.contains('-'), "{etag}");
    assert_eq!(store.get("db/0000/small.ltx").unwrap(), small);
}

/// A loopback proxy that forwards one request per connection (asking upstream to close it)
/// and answers any UploadPart for part `fail_part` with a permanent 400. Returns the port and
/// the request lines it saw.
fn part_failing_proxy(upstream: u16, fail_part: u32) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let needle = format!("partNumber={fail_part}&");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            let log = log.clone();
            let needle = needle.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match client.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let line = head.lines().next().unwrap_or("").to_string();
                log.lock().unwrap().push(line.clone());
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match client.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                if line.starts_with("PUT ") && line.contains(&needle) {
                    let body = "<Error><Code>InvalidArgument</Code><Message>injected part failure</Message></Error>";
                    let _ = write!(
                        client,
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return;
                }
                let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let first_crlf = head.find("\r\n").unwrap() + 2;
                let mut out = Vec::new();
                out.extend_from_slice(&buf[..first_crlf]);
                out.extend_from_slice(b"Connection: close\r\n");
                out.extend_from_slice(&buf[first_crlf..head_end + len]);
                if server.write_all(&out).is_err() {
                    return;
                }
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, seen)
}

#[test]
fn a_failed_part_aborts_the_upload() {
    let dir = TempDir::new("s3mp-abort");
    let root = dir.join("server");
    let srv = s3server::start(&root, "bkt");
    let (port, seen) = part_failing_proxy(srv.port, 2);
    let store = S3Store::new(&target(&srv, Some(format!("http://127.0.0.1:{port}")))).unwrap();
    let file = dir.join("big.ltx");
    std::fs::write(&file, noise(16 * MIB, 5)).unwrap();
    let started = std::time::Instant::now();
    match store.put_file("db/0009/x.ltx", &file) {
        Err(StoreError::Permanent(m)) => assert!(m.contains("InvalidArgument"), "{m}"),
        other => panic!("expected the part's permanent error, got {other:?}"),
    }
    // Not retried (a 400 is permanent), and the upload was aborted.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let lines = seen.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("POST ") && l.contains("uploads")),
        "{lines:#?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("PUT ") && l.contains("partNumber=2&"))
            .count(),
        1,
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("DELETE ") && l.contains("uploadId=")),
        "no AbortMultipartUpload: {lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("POST ") && l.contains("uploadId=")),
        "completed despite a failed part: {lines:#?}"
    );
    assert!(matches!(
        store.get("db/0009/x.ltx"),
        Err(StoreError::NotFound(_))
    ));
    assert!(store.head("db/0009/x.ltx").unwrap().is_none());
    assert_eq!(leftover_uploads(&root), Vec::<String>::new());
}

#[test]
fn conditional_puts_and_head() {
    let dir = TempDir::new("s3mp-cond");
    let srv = s3server::start(dir.path(), "bkt");
    let store = S3Store::new(&target(&srv, None)).unwrap();
    let key = "db/lease";
    assert_eq!(store.head(key).unwrap(), None);
    store.put_if_absent(key, b"owner-a").unwrap();
    match store.put_if_absent(key, b"owner-b") {
        Err(StoreError::PreconditionFailed(_)) => {}
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
    assert_eq!(store.get(key).unwrap(), b"owner-a");
    let (size, etag) = store.head(key).unwrap().unwrap();
    assert_eq!(size, 7);
    assert!(!etag.is_empty() && !etag.contains('"'), "{etag}");
    store.put_if_match(key, b"owner-a renewed", &etag).unwrap();
    let (size, etag2) = store.head(key).unwrap().unwrap();
    assert_eq!(size, 15);
    assert_ne!(etag, etag2);
    // A stale ETag loses; a quoted current one wins.
    match store.put_if_match(key, b"owner-b", &etag) {
        Err(StoreError::PreconditionFailed(_)) => {}
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
    store
        .put_if_match(key, b"owner-a again", &format!("\"{etag2}\""))
        .unwrap();
    assert_eq!(store.get(key).unwrap(), b"owner-a again");
    match store.put_if_match("db/nothing", b"x", &etag2) {
        Err(StoreError::PreconditionFailed(_)) => {}
        other => panic!("expected PreconditionFailed on a missing key, got {other:?}"),
    }
}

#[test]
fn end_to_end_a_database_past_16_mib_snapshots_in_parts_and_restores() {
    let dir = TempDir::new("s3mp-e2e");
    let srv = s3server::start(&dir.join("server"), "bkt");
    // The database first, without the extension: 18 MiB of incompressible rows.
    let out = python(
        r#"
import sqlite3
db = sqlite3.connect("app.db", isolation_level=None)
assert db.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
db.execute("BEGIN")
for i in range(18 * 1024):
    db.execute("INSERT INTO t(v) VALUES (randomblob(1000))")
db.execute("COMMIT")
db.close()
"#,
        dir.path(),
        &[],
    );
    check(&out, "python building the database");
    let db_size = std::fs::metadata(dir.join("app.db")).unwrap().len();
    assert!(db_size > 16 * MIB as u64, "{db_size}");

    let url = s3_url(srv.port, "prefix");
    let env = s3_env(&srv, &url);
    let env = as_refs(&env);
    let out = python_loaded(
        r#"
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("INSERT INTO t(v) VALUES (randomblob(5000))")
print("synced", db.execute("SELECT replica_sync(120000)").fetchone()[0])
print("restored", boot.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()[0])
"#,
        dir.path(),
        &env,
    );
    check_restored_what_synced(&out, "python through s3");
    assert_eq!(
        dump(&dir.join("r.db")),
        dump(&dir.join("app.db")),
        "replica_restore differs"
    );

    // The first snapshot is the biggest object; it went up in parts.
    let store = S3Store::new(&target(&srv, None)).unwrap();
    let objects = store.list("prefix/").unwrap();
    let biggest = objects.iter().max_by_key(|o| o.size).expect("objects");
    assert!(
        biggest.size > 16 * MIB as u64,
        "no object past 16 MiB: {objects:?}"
    );
    let (_, etag) = store.head(&biggest.key).unwrap().unwrap();
    let parts = etag.rsplit_once('-').map(|(_, n)| n.to_string());
    assert!(
        parts
            .as_deref()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
            >= 4,
        "{} ({} bytes) has a single-part ETag {etag}",
        biggest.key,
        biggest.size
    );
}
