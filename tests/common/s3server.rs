//! A real S3 server for the tests, in-process on loopback: `s3s-fs` (objects as files under a
//! directory) behind `s3s`, which verifies SigV4 signatures with one random key pair. Served
//! by a tokio runtime on a background thread that lives as long as the test process. The
//! benchmark's standalone server (`examples/s3_server.rs`) includes this file too.
#![allow(dead_code)]

use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Response, S3Result, S3};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct S3Server {
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    /// Signed DeleteObject and DeleteObjects requests received, refused ones included.
    pub delete_attempts: Arc<AtomicUsize>,
}

impl S3Server {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://localhost:PORT`: with virtual-hosted addressing requests go to
    /// `<bucket>.localhost:PORT` (see [`start_virtual_hosted`]).
    pub fn virtual_endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }
}

pub fn random_hex(n: usize) -> String {
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
    start_with(dir, bucket, false, false)
}

/// [`start`], for credentials without the delete permission: DeleteObject and
/// DeleteObjects are refused with 403 AccessDenied (and counted).
pub fn start_refusing_deletes(dir: &Path, bucket: &str) -> S3Server {
    start_with(dir, bucket, false, true)
}

/// [`start`], also answering virtual-hosted requests: `Host: <bucket>.localhost:PORT` names
/// the bucket (requests to `127.0.0.1:PORT` stay path-style). Nothing resolves
/// `<bucket>.localhost` here, so clients reach it through a CONNECT proxy.
pub fn start_virtual_hosted(dir: &Path, bucket: &str) -> S3Server {
    start_with(dir, bucket, true, false)
}

fn start_with(dir: &Path, bucket: &str, virtual_hosted: bool, refuse_deletes: bool) -> S3Server {
    let access_key = format!("AK{}", random_hex(18).to_uppercase());
    let secret_key = random_hex(40);
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    // The Host header carries the port, so the base domain does too.
    let host = virtual_hosted.then(|| format!("localhost:{port}"));
    let deletes = Deletes {
        refused: refuse_deletes,
        attempts: Arc::default(),
    };
    let delete_attempts = deletes.attempts.clone();
    let service = build(
        dir,
        bucket,
        (&access_key, &secret_key),
        host.as_deref(),
        deletes,
    );
    serve_in_background(std_listener, service);
    S3Server {
        port,
        access_key,
        secret_key,
        bucket: bucket.to_string(),
        delete_attempts,
    }
}

/// The s3s-fs service over `dir` (bucket `bucket` created) that accepts one key pair.
pub fn build_service(dir: &Path, bucket: &str, access_key: &str, secret_key: &str) -> S3Service {
    build_service_with_host(dir, bucket, access_key, secret_key, None)
}

/// [`build_service`], parsing virtual-hosted `Host` headers under `host` when given.
pub fn build_service_with_host(
    dir: &Path,
    bucket: &str,
    access_key: &str,
    secret_key: &str,
    host: Option<&str>,
) -> S3Service {
    build(
        dir,
        bucket,
        (access_key, secret_key),
        host,
        Deletes::default(),
    )
}

fn build(
    dir: &Path,
    bucket: &str,
    (access_key, secret_key): (&str, &str),
    host: Option<&str>,
    deletes: Deletes,
) -> S3Service {
    std::fs::create_dir_all(dir.join(bucket)).unwrap();
    let fs = FastFs {
        inner: s3s_fs::FileSystem::new(dir).expect("s3s-fs root"),
        root: dir.canonicalize().expect("s3s-fs root"),
        deletes,
    };
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(SimpleAuth::from_single(access_key, secret_key));
    if let Some(h) = host {
        b.set_host(s3s::host::SingleDomain::new(h).unwrap());
    }
    b.build()
}

/// Serves HTTP/1 connections accepted on `listener` with `service`, on a tokio runtime in a
/// background thread that lives as long as the process.
pub fn serve_in_background<S, B>(listener: std::net::TcpListener, service: S)
where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::Builder::new()
        .name(format!("s3s-{port}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
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
}

/// An HTTP CONNECT proxy on loopback that tunnels every connection to `upstream` on
/// 127.0.0.1, whatever host it is asked for, and records the `host:port` targets: with
/// `HTTP_PROXY` pointing at it, a client using virtual-hosted addressing reaches
/// [`start_virtual_hosted`] without a DNS entry for `<bucket>.localhost`.
pub struct ConnectProxy {
    pub port: u16,
    pub targets: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn connect_proxy(upstream: u16) -> ConnectProxy {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let targets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = targets.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    match client.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let mut words = text.split_whitespace();
                if words.next() != Some("CONNECT") {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
                    return;
                }
                seen.lock()
                    .unwrap()
                    .push(words.next().unwrap_or("").to_string());
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ =
                        client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c1, mut s1) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    ConnectProxy { port, targets }
}

/// A loopback proxy in front of `upstream` (one request per connection, passed on with
/// [`forward`]) that can stop answering: after [`StallProxy::stall`] every request it reads
/// is held, unanswered, until [`StallProxy::release`] — a bucket that hangs, then comes back.
/// Dropping it releases what it holds.
pub struct StallProxy {
    pub port: u16,
    stalled: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl StallProxy {
    pub fn start(upstream: u16) -> StallProxy {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled =
            std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let held = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (gate, count) = (stalled.clone(), held.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let (gate, count) = (gate.clone(), count.clone());
                std::thread::spawn(move || {
                    let Ok(Some((head, body))) = read_request(&mut client) else {
                        return;
                    };
                    let (lock, cvar) = &*gate;
                    let mut stalled = lock.lock().unwrap();
                    if *stalled {
                        count.fetch_add(1, Ordering::SeqCst);
                        while *stalled {
                            stalled = cvar.wait(stalled).unwrap();
                        }
                        count.fetch_sub(1, Ordering::SeqCst);
                    }
                    drop(stalled);
                    if let Ok(resp) = forward(&head, &body, upstream) {
                        let _ = client.write_all(&resp);
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        StallProxy {
            port,
            stalled,
            held,
        }
    }

    /// From now on, requests are held until [`Self::release`].
    pub fn stall(&self) {
        *self.stalled.0.lock().unwrap() = true;
    }

    /// Passes on the requests held and every one after.
    pub fn release(&self) {
        *self.stalled.0.lock().unwrap() = false;
        self.stalled.1.notify_all();
    }

    /// How many requests are held now.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.release();
    }
}

/// Reads one HTTP/1.1 request (head and `Content-Length` body); `None` when the client
/// closed first.
pub fn read_request(s: &mut std::net::TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let (head, mut body) = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            break (buf, rest);
        }
        let k = s.read(&mut chunk)?;
        if k == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..k]);
    };
    let want = String::from_utf8_lossy(&head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while body.len() < want {
        let k = s.read(&mut chunk)?;
        if k == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..k]);
    }
    Ok(Some((head, body)))
}

/// Sends one request to `upstream` with `Connection: close` (not a signed header) and
/// returns the whole raw response.
pub fn forward(head: &[u8], body: &[u8], upstream: u16) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let text = String::from_utf8_lossy(&head[..head.len() - 4]).to_string();
    let mut fwd = String::new();
    for line in text.split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            fwd.push_str(line);
            fwd.push_str("\r\n");
        }
    }
    fwd.push_str("Connection: close\r\n\r\n");
    let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream))?;
    up.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    up.write_all(fwd.as_bytes())?;
    up.write_all(body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    Ok(resp)
}

/// What [`FaultProxy`] does to one request its schedule picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answers 500 InternalError; the request is not passed on.
    Status500,
    /// Answers 503 SlowDown; the request is not passed on.
    Status503,
    /// Passes the request on and holds its response back this long (a slow server).
    Delay(std::time::Duration),
    /// Closes the connection with the request unread.
    Reset,
    /// Passes the request on, then sends the response's head and `n % body length` bytes of
    /// its body (at least one byte short; half the head when it has no body) and closes.
    CutBody(u64),
}

/// The fault for each connection [`FaultProxy::scheduled`] accepts, asked in order.
pub type Schedule = Box<dyn FnMut() -> Option<Fault> + Send>;

/// What the proxy does whatever its schedule says, until [`FaultProxy::heal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Override {
    None,
    Fail500,
    Stall,
}

/// A loopback HTTP/1.1 proxy in front of `upstream`, one request per connection (it asks
/// the upstream to close after each response; `Connection` is not a signed header), that
/// injects faults: per connection as a [`Schedule`] says, and on demand for every request
/// — [`Self::fail_all`] (a bucket answering 500) and [`Self::stall`] (a bucket that
/// never answers) until [`Self::heal`]. A request held by a stall is never passed on: when
/// the stall ends its connection is closed unanswered, so what a stalled bucket was sent
/// never lands in it later. The accept loop stops, and held requests are let go, when it is
/// dropped.
pub struct FaultProxy {
    pub port: u16,
    mode: Arc<(std::sync::Mutex<Override>, std::sync::Condvar)>,
    requests: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FaultProxy {
    /// A proxy that passes everything on until told otherwise.
    pub fn start(upstream: u16) -> FaultProxy {
        FaultProxy::scheduled(upstream, Box::new(|| None))
    }

    /// A proxy that asks `schedule` what to do with each connection it accepts, in the
    /// order accepted (an override asks it too, and ignores the answer).
    pub fn scheduled(upstream: u16, mut schedule: Schedule) -> FaultProxy {
        use std::time::Duration;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = FaultProxy {
            port: listener.local_addr().unwrap().port(),
            mode: Arc::new((
                std::sync::Mutex::new(Override::None),
                std::sync::Condvar::new(),
            )),
            requests: Arc::default(),
            held: Arc::default(),
            stop: Arc::default(),
        };
        let (mode, requests, held, stop) = (
            proxy.mode.clone(),
            proxy.requests.clone(),
            proxy.held.clone(),
            proxy.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::park_timeout(Duration::from_millis(2));
                        continue;
                    }
                    Err(_) => continue,
                };
                let _ = client.set_nonblocking(false);
                requests.fetch_add(1, Ordering::SeqCst);
                let fault = schedule();
                let (mode, held) = (mode.clone(), held.clone());
                std::thread::spawn(move || {
                    let now = *mode.0.lock().unwrap();
                    let _ = match now {
                        Override::None => serve_one(client, upstream, fault),
                        Override::Fail500 => serve_one(client, upstream, Some(Fault::Status500)),
                        Override::Stall => hold(client, &mode, &held),
                    };
                });
            }
        });
        proxy
    }

    /// From now on every request is answered 500 InternalError, until [`Self::heal`].
    pub fn fail_all(&self) {
        self.set(Override::Fail500);
    }

    /// From now on every request is held unanswered, until [`Self::heal`].
    pub fn stall(&self) {
        self.set(Override::Stall);
    }

    /// Back to the schedule (transparent for [`Self::start`]); held requests are closed
    /// unanswered.
    pub fn heal(&self) {
        self.set(Override::None);
    }

    /// Connections accepted so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests a stall holds now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    fn set(&self, to: Override) {
        *self.mode.0.lock().unwrap() = to;
        self.mode.1.notify_all();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.heal();
    }
}

/// Reads the request on `client` and keeps it unanswered while the proxy stalls; then
/// closes the connection without passing it on.
fn hold(
    mut client: std::net::TcpStream,
    mode: &(std::sync::Mutex<Override>, std::sync::Condvar),
    held: &AtomicUsize,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    if read_request(&mut client)?.is_none() {
        return Ok(());
    }
    held.fetch_add(1, Ordering::SeqCst);
    let mut now = mode.0.lock().unwrap();
    while *now == Override::Stall {
        now = mode.1.wait(now).unwrap();
    }
    held.fetch_sub(1, Ordering::SeqCst);
    let _ = client.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// Answers one request on `client` through `upstream`, with `fault` injected.
fn serve_one(
    mut client: std::net::TcpStream,
    upstream: u16,
    fault: Option<Fault>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    client.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    if fault == Some(Fault::Reset) {
        // Close with the request unread: the kernel answers with a RST (or, if nothing
        // had arrived yet, a plain close before any response).
        let mut b = [0u8; 8];
        let _ = client.read(&mut b);
        drop(client);
        return Ok(());
    }
    let Some((head, body)) = read_request(&mut client)? else {
        return Ok(());
    };
    if let Some(f @ (Fault::Status500 | Fault::Status503)) = fault {
        let (status, code) = if f == Fault::Status500 {
            ("500 Internal Server Error", "InternalError")
        } else {
            ("503 Service Unavailable", "SlowDown")
        };
        let msg = format!("<Error><Code>{code}</Code><Message>injected</Message></Error>");
        write!(
            client,
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
            msg.len()
        )?;
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    let resp = forward(&head, &body, upstream)?;
    match fault {
        Some(Fault::Delay(d)) => {
            std::thread::sleep(d); // the fault itself: a slow server, not synchronization
            client.write_all(&resp)?;
        }
        Some(Fault::CutBody(cut)) => {
            let head_end = resp
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(resp.len(), |i| i + 4);
            let body_len = resp.len() - head_end;
            let keep = if body_len > 0 {
                head_end + (cut as usize % body_len)
            } else {
                head_end / 2
            };
            client.write_all(&resp[..keep])?;
        }
        _ => client.write_all(&resp)?,
    }
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// s3s-fs with object bodies streamed in 1 MiB reads. s3s-fs answers a GET in 4 KiB reads,
/// each a round trip through tokio's blocking pool: on a 2-core machine that server spent
/// more CPU on a restore than the client restoring, and the benchmark measured the server.
/// Everything else, the GET's headers and errors included, is s3s-fs's own answer.
struct FastFs {
    inner: s3s_fs::FileSystem,
    root: PathBuf,
    deletes: Deletes,
}

/// Whether deletes are refused, and how many were asked for.
#[derive(Default)]
struct Deletes {
    refused: bool,
    attempts: Arc<AtomicUsize>,
}

impl Deletes {
    fn attempt(&self) -> S3Result<()> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.refused {
            return Err(s3s::s3_error!(
                AccessDenied,
                "these credentials may not delete"
            ));
        }
        Ok(())
    }
}

/// `bytes FIRST-LAST/SIZE` → (FIRST, LAST - FIRST + 1).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let (first, last) = v
        .strip_prefix("bytes ")?
        .split_once('/')?
        .0
        .split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    Some((first, last.checked_sub(first)? + 1))
}

#[async_trait::async_trait]
impl S3 for FastFs {
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.root.join(&req.input.bucket).join(&req.input.key);
        let mut resp = self.inner.get_object(req).await?;
        let out = &mut resp.output;
        let (start, len) = match out.content_range.as_deref() {
            Some(r) => parse_content_range(r)
                .ok_or_else(|| s3s::s3_error!(InternalError, "content range {r}"))?,
            None => (0, out.content_length.unwrap_or(0) as u64),
        };
        let io = |e: std::io::Error| s3s::s3_error!(e, InternalError);
        let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(io)?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 1 << 20);
        out.body = Some(StreamingBlob::wrap(stream));
        Ok(resp)
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.inner.create_bucket(req).await
    }
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.inner.copy_object(req).await
    }
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.inner.delete_bucket(req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.deletes.attempt()?;
        self.inner.delete_object(req).await
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.deletes.attempt()?;
        self.inner.delete_objects(req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.inner.get_bucket_location(req).await
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.inner.head_object(req).await
    }
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.inner.list_buckets(req).await
    }
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.inner.list_objects(req).await
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.inner.list_objects_v2(req).await
    }
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.inner.put_object(req).await
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.inner.create_multipart_upload(req).await
    }
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.inner.upload_part(req).await
    }
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.inner.upload_part_copy(req).await
    }
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.inner.list_parts(req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.inner.complete_multipart_upload(req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.inner.abort_multipart_upload(req).await
    }
}
