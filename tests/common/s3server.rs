//! A real S3 server for the tests, in-process on loopback: `s3s-fs` (objects as files under a
//! directory) behind `s3s`, which verifies SigV4 signatures with one random key pair. Served
//! by a tokio runtime on a background thread that lives as long as the test process.
#![allow(dead_code)]

use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::path::Path;

pub struct S3Server {
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
}

impl S3Server {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn random_hex(n: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < n {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(n);
    out
}

/// Starts a server storing into `dir`, with the bucket `bucket` created (a directory).
pub fn start(dir: &Path, bucket: &str) -> S3Server {
    std::fs::create_dir_all(dir.join(bucket)).unwrap();
    let access_key = format!("AK{}", random_hex(18).to_uppercase());
    let secret_key = random_hex(40);
    let fs = s3s_fs::FileSystem::new(dir).expect("s3s-fs root");
    let service = {
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(
            access_key.clone(),
            secret_key.clone(),
        ));
        b.build()
    };
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std::thread::Builder::new()
        .name(format!("s3s-{port}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        continue;
                    };
                    // Without this, Nagle's algorithm on the server and delayed ACKs on the
                    // client hold the tail of a streamed body back for tens of milliseconds.
                    let _ = socket.set_nodelay(true);
                    let service = service.clone();
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(socket), service)
                            .await;
                    });
                }
            });
        })
        .unwrap();
    S3Server {
        port,
        access_key,
        secret_key,
        bucket: bucket.to_string(),
    }
}
