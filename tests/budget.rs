//! The request budget end to end: Debian's python3 loads the extension with
//! `REPLICA_REQUEST_BUDGET`, writes through the in-process S3 server (SigV4 checked) behind
//! a proxy that counts every request it forwards; `replica_status()` then counts exactly
//! those requests this month (the boot-time check and the uploader's alike), shows the
//! budget and the cost, and a second process goes on from the first one's count.

mod common;
#[path = "common/s3env.rs"]
mod s3env;
#[path = "common/s3server.rs"]
mod s3server;

use common::*;
use s3env::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A proxy in front of `upstream` that forwards one request per connection and counts
/// them; `GET /__count` answers the count (neither forwarded nor counted).
fn counting_proxy(upstream: u16) -> u16 {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let Ok(Some((head, body))) = s3server::read_request(&mut client) else {
                    return;
                };
                if head.starts_with(b"GET /__count ") {
                    let n = seen.load(Ordering::SeqCst).to_string();
                    let _ = write!(
                        client,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{n}",
                        n.len()
                    );
                    return;
                }
                seen.fetch_add(1, Ordering::SeqCst);
                if let Ok(resp) = s3server::forward(&head, &body, upstream) {
                    let _ = client.write_all(&resp);
                }
            });
        }
    });
    port
}

/// Writes COMMITS commits, then waits (`wait_for`, by a deadline) until nothing is pending and the
/// ledger has counted as many requests as the proxy forwarded, and prints the status as
/// `name=value` lines.
const WRITE_AND_COUNT: &str = r#"
import urllib.request
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v)")
for i in range(COMMITS):
    db.execute("INSERT INTO t(v) VALUES (?)", (i,))
cols = ("pending_txns", "requests_month", "request_budget", "request_cost_month_usd",
        "requests_month_projected")
def counted():
    row = dict(zip(cols, db.execute("SELECT " + ", ".join(cols) + " FROM replica_status()").fetchone()))
    row["proxied"] = int(urllib.request.urlopen("COUNT_URL", timeout=10).read())
    return row if row["pending_txns"] == 0 and row["requests_month"] == row["proxied"] else None
row = wait_for("nothing pending and every proxied request counted", counted, timeout=60)
for k, v in row.items():
    print(f"{k}={v}")
"#;

#[test]
fn every_request_is_counted_against_the_budget_across_processes() {
    let dir = TempDir::new("budget-e2e");
    let srv = s3server::start(&dir.join("server"), "bkt");
    let port = counting_proxy(srv.port);
    let url = s3_url(port, "app");
    let mut env = s3_env(&srv, &url);
    env.push(("REPLICA_REQUEST_BUDGET".into(), "26M/month".into()));
    let env = as_refs(&env);
    let run = |commits: &str| -> std::collections::HashMap<String, String> {
        let script = format!("{PY_WAIT_FOR}{WRITE_AND_COUNT}")
            .replace("COMMITS", commits)
            .replace("COUNT_URL", &format!("http://127.0.0.1:{port}/__count"));
        let out = python_loaded(&script, dir.path(), &env);
        check(&out, "write under a budget")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let first = run("200");
    assert_eq!(first["pending_txns"], "0", "{first:?}");
    assert_eq!(
        first["requests_month"], first["proxied"],
        "the ledger counts every request the server saw: {first:?}"
    );
    assert_eq!(first["request_budget"], "26000000", "{first:?}");
    let cost: f64 = first["request_cost_month_usd"].parse().unwrap();
    assert!(cost > 0.0, "{first:?}");
    assert_eq!(first["requests_month_projected"], "None", "{first:?}");
    // The second process's store starts from zero; the ledger goes on from the first's.
    let second = run("50");
    assert_eq!(second["pending_txns"], "0", "{second:?}");
    assert_eq!(
        second["requests_month"], second["proxied"],
        "the second process counts on from the first: {second:?}"
    );
    let count = |row: &std::collections::HashMap<String, String>| -> u64 {
        row["requests_month"].parse().unwrap()
    };
    assert!(count(&second) > count(&first), "{first:?} {second:?}");
    let ledger = std::fs::read_to_string(dir.join("app.db-replica/requests")).unwrap();
    assert!(ledger.starts_with("ledger/1 "), "{ledger}");
}
