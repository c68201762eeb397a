//! The benchmark's S3 server: the tests' s3s + s3s-fs server (tests/common/s3server.rs) as a
//! standalone process on 127.0.0.1 that counts requests by billing class and logs completed
//! object writes. It must not interpret what is stored: the harness decodes objects itself.
//!
//! `s3_server --root DIR --bucket NAME --access-key AK --secret-key SK [--put-log FILE]`
//! prints the port it listens on (ephemeral) as one line on stdout, then serves until its
//! stdin closes. `GET /__stats` returns the counters as JSON: `put` (PutObject, UploadPart,
//! CopyObject, CreateMultipartUpload, CompleteMultipartUpload, CreateBucket), `get`, `head`,
//! `list` (any bucket-level GET), `delete` (DeleteObject and DeleteObjects). With `--put-log`,
//! each completed object write (PutObject or CompleteMultipartUpload with a 2xx answer)
//! appends `{"key": …, "t": <unix seconds, CLOCK_REALTIME>, "status": …}` to FILE.

#[path = "../tests/common/s3server.rs"]
mod s3server;

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Put,
    Get,
    Head,
    List,
    Delete,
    Other,
}

#[derive(Default)]
struct Counters {
    put: AtomicU64,
    get: AtomicU64,
    head: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    other: AtomicU64,
}

impl Counters {
    fn count(&self, class: Class) {
        let c = match class {
            Class::Put => &self.put,
            Class::Get => &self.get,
            Class::Head => &self.head,
            Class::List => &self.list,
            Class::Delete => &self.delete,
            Class::Other => &self.other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn json(&self) -> String {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{{\"put\":{},\"get\":{},\"head\":{},\"list\":{},\"delete\":{},\"other\":{}}}",
            v(&self.put),
            v(&self.get),
            v(&self.head),
            v(&self.list),
            v(&self.delete),
            v(&self.other)
        )
    }
}

/// The billing class of a path-style request, and whether it completes an object write.
fn classify(method: &hyper::Method, path: &str, query: &str) -> (Class, bool) {
    let has = |name: &str| {
        query
            .split('&')
            .any(|kv| kv == name || kv.starts_with(&format!("{name}=")))
    };
    let object_level = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    match *method {
        hyper::Method::PUT => (Class::Put, object_level && !has("partNumber")),
        hyper::Method::POST if has("delete") => (Class::Delete, false),
        hyper::Method::POST => (Class::Put, has("uploadId")),
        hyper::Method::GET if object_level => (Class::Get, false),
        hyper::Method::GET => (Class::List, false),
        hyper::Method::HEAD => (Class::Head, false),
        hyper::Method::DELETE => (Class::Delete, false),
        _ => (Class::Other, false),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

type Reply = Result<hyper::Response<s3s::Body>, s3s::HttpError>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let usage = "usage: s3_server --root DIR --bucket NAME --access-key AK --secret-key SK [--put-log FILE]";
    let (Some(root), Some(bucket), Some(ak), Some(sk)) = (
        flag("--root"),
        flag("--bucket"),
        flag("--access-key"),
        flag("--secret-key"),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let put_log = flag("--put-log").map(|p| {
        Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap_or_else(|e| panic!("cannot open the PUT log {p}: {e}")),
        ))
    });
    std::fs::create_dir_all(&root).expect("root directory");
    let s3 = s3server::build_service(std::path::Path::new(&root), &bucket, &ak, &sk);
    let counters = Arc::new(Counters::default());

    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let counters = counters.clone();
        let put_log = put_log.clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let fut: Pin<Box<dyn Future<Output = Reply> + Send>> = if path == "/__stats" {
            let body = counters.json();
            Box::pin(async move { Ok(hyper::Response::new(s3s::Body::from(body))) })
        } else {
            let (class, completes_write) = classify(req.method(), &path, &query);
            counters.count(class);
            let call = hyper::service::Service::call(&s3, req);
            Box::pin(async move {
                let reply = call.await;
                if let (true, Some(log), Ok(resp)) = (completes_write, &put_log, &reply) {
                    let t = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs_f64();
                    let key = path
                        .trim_start_matches('/')
                        .split_once('/')
                        .map_or("", |(_, k)| k);
                    let line = format!(
                        "{{\"key\":{},\"t\":{t:.6},\"status\":{}}}\n",
                        json_string(key),
                        resp.status().as_u16()
                    );
                    let _ = log.lock().unwrap().write_all(line.as_bytes());
                }
                reply
            })
        };
        fut
    });

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    s3server::serve_in_background(listener, service);
    // Serve until the harness closes our stdin (or dies).
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
}
