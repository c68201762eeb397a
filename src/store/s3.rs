//! The S3 / R2 backend (`s3://` URLs, `type: s3`): blocking HTTPS over `ureq` with rustls on
//! the ring provider, requests signed by [`super::sigv4`]. It owns addressing (path-style or
//! virtual-hosted), the requests the uploader and restore need (PUT with a full payload
//! hash — multipart above the part size, parts read from the file one at a time, at most 2 in
//! flight on R2 and 4 elsewhere, aborted on failure — GET and ranged GET, ListObjectsV2 with
//! paging, DELETE), conditional PUT and HEAD for leases, mapping HTTP outcomes onto
//! [`StoreError`] and a small bounded retry on transient failures. It must not interpret
//! object contents, and it never puts a secret in an error or in [`ObjectStore::describe`].

use super::sigv4;
use super::{ObjectInfo, ObjectStore, RequestCounts, StoreError};
use crate::config::{Credentials, S3Target};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Objects larger than this go up in parts of this size (the last one shorter).
pub const DEFAULT_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's ceiling on the number of parts; larger objects get larger parts.
const MAX_PARTS: u64 = 10_000;
/// Parts in flight at once: R2 allows fewer concurrent writes to one upload.
const PARTS_IN_FLIGHT: usize = 4;
const PARTS_IN_FLIGHT_R2: usize = 2;

/// Attempts per request (the first try included) on transient failures.
const TRIES: u32 = 4;
/// Delete-and-verify rounds of [`ObjectStore::delete_many`] before it gives up.
const DELETE_ROUNDS: usize = 3;
/// First backoff; doubled per retry, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Defaults of `connect-timeout` and `read-timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// From the end of the request body to the response headers; also the base of body timeouts.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies get the read timeout plus one second per [`MIN_RATE`] bytes: a stalled transfer
/// fails (and is retried) without capping how large an object can be.
const MIN_RATE: u64 = 64 * 1024;
/// Receiving a body of unknown size (a whole GET).
const UNSIZED_BODY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub struct S3Store {
    bucket: String,
    prefix: String,
    /// `http` or `https`.
    scheme: &'static str,
    /// Host header value: the host, with the port only when it is not the scheme's default.
    host: String,
    /// Path before the key: `/bucket` for path-style, empty for virtual-hosted.
    base_path: String,
    region: String,
    credentials: Credentials,
    /// Shown by `describe`: the endpoint the requests go to.
    endpoint_display: String,
    tls: ureq::tls::TlsConfig,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// The agent and the pid that built it: a forked child never reuses its parent's
    /// connections (DESIGN §6), it builds its own agent on first use.
    agent: Mutex<(u32, ureq::Agent)>,
    /// Multipart above this size; parts of this size except the last.
    part_size: u64,
    /// At most this many parts uploading at once.
    parts_in_flight: usize,
    puts: AtomicU64,
    gets: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("target", &self.describe())
            .finish_non_exhaustive()
    }
}

/// Splits `https://host:port/path` into scheme and authority (the path is ignored).
fn split_endpoint(endpoint: &str) -> Result<(&'static str, String), StoreError> {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("https") => ("https", r),
        Some((s, r)) if s.eq_ignore_ascii_case("http") => ("http", r),
        Some((s, _)) => {
            return Err(StoreError::Permanent(format!(
                "endpoint {endpoint}: unsupported scheme {s:?} (use http:// or https://)"
            )))
        }
        None => ("https", endpoint),
    };
    let authority = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return Err(StoreError::Permanent(format!(
            "endpoint {endpoint}: no usable host"
        )));
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority
        .strip_suffix(default_port)
        .map(str::to_string)
        .unwrap_or(authority);
    Ok((scheme, authority))
}

/// Where Debian, Alpine, Fedora/RHEL and SUSE keep the system's trust store.
const SYSTEM_TRUST_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The TLS settings: webpki (Mozilla) roots; with `AWS_CA_BUNDLE`, its certificates *added*
/// to the system's trust store (`SSL_CERT_FILE` or the distribution's bundle), so a private
/// CA works without losing the public ones. Verification is off only when configured.
fn tls_config(skip_verify: bool) -> Result<ureq::tls::TlsConfig, StoreError> {
    use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
    let mut b = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .disable_verification(skip_verify);
    if let Some(path) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) {
        let name = format!("AWS_CA_BUNDLE={}", path.to_string_lossy());
        let pem = std::fs::read(&path)
            .map_err(|e| StoreError::Permanent(format!("{name}: cannot read it: {e}")))?;
        let system_path = std::env::var_os("SSL_CERT_FILE")
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain(SYSTEM_TRUST_FILES.iter().map(std::path::PathBuf::from))
            .find(|p| p.is_file());
        let system = system_path.as_ref().and_then(|p| std::fs::read(p).ok());
        if system.is_none() {
            crate::base::log::notice(&format!(
                "{name}: no system trust store found to add it to; trusting only the bundle"
            ));
        }
        let certs = trust_roots(&name, &pem, system.as_deref())?;
        b = b.root_certs(RootCerts::new_with_certs(&certs));
    }
    Ok(b.build())
}

/// The certificates of `bundle` (which must hold at least one) followed by those of the
/// system store not already in it; the system store's unparsable entries are skipped.
fn trust_roots(
    name: &str,
    bundle: &[u8],
    system: Option<&[u8]>,
) -> Result<Vec<ureq::tls::Certificate<'static>>, StoreError> {
    use ureq::tls::PemItem;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(bundle) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c.to_owned()),
            Ok(_) => {}
            Err(e) => {
                return Err(StoreError::Permanent(format!(
                    "{name}: not a PEM bundle: {e}"
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(StoreError::Permanent(format!(
            "{name}: holds no certificates"
        )));
    }
    for item in ureq::tls::parse_pem(system.unwrap_or_default()) {
        if let Ok(PemItem::Certificate(c)) = item {
            if !certs.iter().any(|have| have.der() == c.der()) {
                certs.push(c.to_owned());
            }
        }
    }
    Ok(certs)
}

fn new_agent(tls: &ureq::tls::TlsConfig, connect: Duration, read: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(connect))
        .timeout_send_request(Some(read))
        .timeout_recv_response(Some(read))
        .max_redirects(0)
        .user_agent(concat!("libreplica/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.clone())
        .build()
        .into()
}

impl S3Store {
    pub fn new(target: &S3Target) -> Result<S3Store, StoreError> {
        let credentials = target.credentials.clone().ok_or_else(|| {
            StoreError::Auth(format!(
                "s3://{}/{}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (or LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY), or \
                 access-key-id/secret-access-key in the config file",
                target.bucket, target.prefix
            ))
        })?;
        if target.bucket.is_empty() {
            return Err(StoreError::Permanent("s3:// URL without a bucket".into()));
        }
        let region = target
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = target
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let (scheme, authority) = split_endpoint(&endpoint)?;
        // A bucket name with dots cannot be a TLS-valid subdomain; path-style it is.
        let path_style = target.force_path_style || target.bucket.contains('.');
        let (host, base_path) = if path_style {
            (authority.clone(), format!("/{}", target.bucket))
        } else {
            (format!("{}.{authority}", target.bucket), String::new())
        };
        let tls = tls_config(target.skip_verify)?;
        let connect_timeout = target.timeouts.connect.unwrap_or(CONNECT_TIMEOUT);
        let read_timeout = target.timeouts.read.unwrap_or(READ_TIMEOUT);
        let agent = new_agent(&tls, connect_timeout, read_timeout);
        let host_only = authority.split(':').next().unwrap_or("");
        let parts_in_flight = if host_only.ends_with(".r2.cloudflarestorage.com") {
            PARTS_IN_FLIGHT_R2
        } else {
            PARTS_IN_FLIGHT
        };
        Ok(S3Store {
            bucket: target.bucket.clone(),
            prefix: target.prefix.clone(),
            scheme,
            host,
            base_path,
            region,
            credentials,
            endpoint_display: format!("{scheme}://{authority}"),
            tls,
            connect_timeout,
            read_timeout,
            agent: Mutex::new((std::process::id(), agent)),
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight,
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
        })
    }

    /// Sets the multipart threshold and part size (S3 wants at least 5 MiB for every part
    /// but the last; smaller values are for tests against lenient servers).
    pub fn with_part_size(mut self, part_size: u64) -> S3Store {
        self.part_size = part_size.max(1);
        self
    }

    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    /// How many parts of one multipart upload go up at once (2 on R2, else 4).
    pub fn parts_in_flight(&self) -> usize {
        self.parts_in_flight
    }

    fn agent(&self) -> ureq::Agent {
        let mut g = crate::base::lock::lock(&self.agent);
        let pid = std::process::id();
        if g.0 != pid {
            *g = (
                pid,
                new_agent(&self.tls, self.connect_timeout, self.read_timeout),
            );
        }
        g.1.clone()
    }

    /// One signed request, no retry. Returns the status and the body. `recv_len` is the
    /// response body size when known (it sets the receive timeout).
    fn send_once(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
        recv_len: Option<u64>,
    ) -> Result<Response, StoreError> {
        let path = format!("{}/{}", self.base_path, key);
        let payload_hash = sigv4::sha256_hex(body);
        let creds = sigv4::Credentials {
            access_key_id: &self.credentials.access_key_id,
            secret_access_key: &self.credentials.secret_access_key,
            session_token: self.credentials.session_token.as_deref(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let signed = sigv4::sign(
            &creds,
            &self.region,
            "s3",
            &sigv4::Request {
                method,
                host: &self.host,
                path: &path,
                query,
                headers,
                payload_sha256_hex: &payload_hash,
            },
            now,
        );
        let mut url = format!(
            "{}://{}{}",
            self.scheme,
            self.host,
            sigv4::uri_encode(&path, false)
        );
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        sigv4::uri_encode(k, true),
                        sigv4::uri_encode(v, true)
                    )
                })
                .collect();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("host", &self.host)
            .header("x-amz-date", &signed.amz_date)
            .header("x-amz-content-sha256", &signed.content_sha256)
            .header("authorization", &signed.authorization);
        if let Some(t) = &signed.security_token {
            req = req.header("x-amz-security-token", t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let bad = |e: ureq::http::Error| {
            StoreError::Permanent(format!("{method} {}: {e}", self.what(key)))
        };
        let agent = self.agent();
        // GET and DELETE carry no body (ureq refuses one on them).
        let recv_timeout = recv_len.map_or(UNSIZED_BODY_TIMEOUT, |n| self.body_timeout(n));
        let sent = if method == "PUT" || method == "POST" {
            let req = agent
                .configure_request(req.body(body).map_err(bad)?)
                .timeout_send_body(Some(self.body_timeout(body.len() as u64)))
                .timeout_recv_body(Some(self.read_timeout))
                .build();
            agent.run(req)
        } else {
            let req = agent
                .configure_request(req.body(()).map_err(bad)?)
                .timeout_recv_body(Some(recv_timeout))
                .build();
            agent.run(req)
        };
        let mut resp = sent.map_err(|e| transport_error(method, &self.what(key), e))?;
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_length = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if method == "HEAD" {
            return Ok(Response {
                status,
                body: Vec::new(),
                etag,
                content_length,
            });
        }
        // Sized from Content-Length up front: grown by doubling, a 4 MiB body was zeroed
        // and copied again at each step, which cost a restore's fetchers a third of their CPU.
        let mut bytes = Vec::with_capacity(content_length.unwrap_or(0).min(PREALLOC_MAX) as usize);
        std::io::Read::read_to_end(
            &mut resp.body_mut().with_config().limit(u64::MAX).reader(),
            &mut bytes,
        )
        .map_err(|e| transport_error(method, &self.what(key), e.into()))?;
        Ok(Response {
            status,
            body: bytes,
            etag,
            content_length,
        })
    }

    /// [`Self::send_once`] with bounded exponential backoff (full jitter) on transient errors
    /// and on the statuses worth retrying; other outcomes are mapped once.
    fn send(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
        recv_len: Option<u64>,
    ) -> Result<(u16, Vec<u8>), StoreError> {
        self.send_full(method, key, query, headers, body, recv_len)
            .map(|r| (r.status, r.body))
    }

    /// [`Self::send`], keeping the response headers the callers need.
    fn send_full(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
        recv_len: Option<u64>,
    ) -> Result<Response, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .send_once(method, key, query, headers, body, recv_len)
                .and_then(|r| {
                    if (200..300).contains(&r.status) {
                        Ok(r)
                    } else {
                        Err(status_error(method, &self.what(key), r.status, &r.body))
                    }
                });
            match result {
                Err(e) if e.is_transient() && attempt < TRIES => {
                    std::thread::sleep(backoff(attempt));
                }
                other => return other,
            }
        }
    }

    fn body_timeout(&self, len: u64) -> Duration {
        self.read_timeout + Duration::from_secs(len / MIN_RATE)
    }

    fn what(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, key)
    }
}

/// What [`S3Store::send_once`] keeps of a response.
struct Response {
    status: u16,
    body: Vec<u8>,
    etag: Option<String>,
    content_length: Option<u64>,
}

/// Where a multipart upload reads its parts from: a body in memory, or a file read part by
/// part at its offset (never whole).
enum Source<'a> {
    Bytes(&'a [u8]),
    File(&'a std::fs::File, &'a std::path::Path),
}

impl Source<'_> {
    fn read(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>, StoreError> {
        match self {
            Source::Bytes(b) => Ok(Cow::Borrowed(&b[offset as usize..(offset + len) as usize])),
            Source::File(f, path) => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, offset).map_err(|e| {
                    StoreError::Permanent(format!(
                        "reading {} at {offset} (+{len}): {e}",
                        path.display()
                    ))
                })?;
                Ok(Cow::Owned(buf))
            }
        }
    }
}

/// Strips the quotes around an ETag (`"abc"` → `abc`); the weak prefix is kept.
fn bare_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_string()
}

/// A 200 that carries an `<Error>` (CompleteMultipartUpload can fail after its headers).
fn embedded_error(method: &str, what: &str, body: &[u8]) -> Option<StoreError> {
    let text = String::from_utf8_lossy(body);
    if !text.contains("<Error>") {
        return None;
    }
    let code = xml_text(&text, "Code").unwrap_or_default();
    // Map it like the status it stands for: internal errors are transient.
    let status = match code.as_str() {
        "InternalError" | "SlowDown" | "ServiceUnavailable" | "RequestTimeout" => 503,
        "AccessDenied" => 403,
        _ => 400,
    };
    Some(status_error(method, what, status, body))
}

impl S3Store {
    /// Part size and count for an object of `size` bytes: equal parts of at least
    /// [`Self::part_size`], the last one shorter, never more than S3's 10,000.
    fn part_layout(&self, size: u64) -> (u64, u64) {
        let mut part = self.part_size;
        if size.div_ceil(part) > MAX_PARTS {
            part = size.div_ceil(MAX_PARTS);
        }
        (part, size.div_ceil(part).max(1))
    }

    /// Uploads `size` bytes from `src` as one multipart upload, aborting it on any failure.
    fn put_multipart(&self, key: &str, src: &Source<'_>, size: u64) -> Result<(), StoreError> {
        let what = self.what(key);
        self.puts.fetch_add(1, Ordering::Relaxed);
        let created = self.send_full(
            "POST",
            key,
            &[("uploads", "")],
            &[("content-type", "application/octet-stream")],
            &[],
            Some(1 << 16),
        )?;
        if let Some(e) = embedded_error("POST", &what, &created.body) {
            return Err(e);
        }
        let upload_id = xml_text(&String::from_utf8_lossy(&created.body), "UploadId")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                StoreError::Permanent(format!(
                    "CreateMultipartUpload {what}: no <UploadId> in the response"
                ))
            })?;
        match self.upload_parts_and_complete(key, src, size, &upload_id) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Best effort: a failed abort leaves parts a lifecycle rule has to clean.
                self.puts.fetch_add(1, Ordering::Relaxed);
                let _ = self.send(
                    "DELETE",
                    key,
                    &[("uploadId", &upload_id)],
                    &[],
                    &[],
                    Some(1 << 16),
                );
                Err(e)
            }
        }
    }

    fn upload_parts_and_complete(
        &self,
        key: &str,
        src: &Source<'_>,
        size: u64,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        let what = self.what(key);
        let (part_size, parts) = self.part_layout(size);
        let etags: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; parts as usize]);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<StoreError>> = Mutex::new(None);
        let workers = self.parts_in_flight.clamp(1, parts as usize);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst) as u64;
                    if i >= parts {
                        return;
                    }
                    let offset = i * part_size;
                    let len = part_size.min(size - offset);
                    let result = src.read(offset, len).and_then(|body| {
                        self.puts.fetch_add(1, Ordering::Relaxed);
                        let number = (i + 1).to_string();
                        let r = self.send_full(
                            "PUT",
                            key,
                            &[("partNumber", &number), ("uploadId", upload_id)],
                            &[],
                            &body,
                            Some(1 << 16),
                        )?;
                        r.etag.filter(|e| !e.is_empty()).ok_or_else(|| {
                            StoreError::Permanent(format!(
                                "UploadPart {what} part {number}: no ETag in the response"
                            ))
                        })
                    });
                    match result {
                        Ok(etag) => {
                            crate::base::lock::lock(&etags)[i as usize] = Some(etag);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            crate::base::lock::lock(&first_error).get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        let etags = etags.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (i, etag) in etags.iter().enumerate() {
            let etag = etag.as_deref().ok_or_else(|| {
                StoreError::Permanent(format!("UploadPart {what} part {}: not uploaded", i + 1))
            })?;
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag></Part>",
                i + 1,
                xml_escape(&bare_etag(etag))
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        self.puts.fetch_add(1, Ordering::Relaxed);
        let done = self.send_full(
            "POST",
            key,
            &[("uploadId", upload_id)],
            &[("content-type", "application/xml")],
            xml.as_bytes(),
            Some(1 << 16),
        )?;
        match embedded_error("POST", &what, &done.body) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One PUT of the whole body with extra (signed) headers.
    fn put_single(&self, key: &str, body: &[u8], extra: &[(&str, &str)]) -> Result<(), StoreError> {
        self.put_single_etag(key, body, extra).map(|_| ())
    }

    /// [`Self::put_single`], returning the new object's ETag (without quotes).
    fn put_single_etag(
        &self,
        key: &str,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Result<Option<String>, StoreError> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        let mut headers = vec![("content-type", "application/octet-stream")];
        headers.extend_from_slice(extra);
        let r = self.send_full("PUT", key, &[], &headers, body, None)?;
        Ok(r.etag.as_deref().map(bare_etag))
    }

    /// Creates `key` only if no object has that key (`If-None-Match: *`); an existing
    /// object gives [`StoreError::PreconditionFailed`]. A single PUT whatever the size.
    /// A retried attempt whose first try landed also reports `PreconditionFailed`.
    pub fn put_if_absent(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        self.put_single(key, body, &[("if-none-match", "*")])
    }

    /// Replaces `key` only if its current ETag is `etag` (quoted or bare, as [`Self::head`]
    /// gives it); otherwise, or when the object is gone, [`StoreError::PreconditionFailed`].
    pub fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> Result<(), StoreError> {
        let quoted = format!("\"{}\"", bare_etag(etag));
        self.put_single(key, body, &[("if-match", &quoted)])
    }

    /// One DeleteObjects request (quiet mode: only failures come back). A key the server
    /// refuses for a reason other than a passing one fails the whole call, naming the key.
    fn delete_objects(&self, keys: &[String]) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        let mut xml = String::from(
            "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>",
        );
        for k in keys {
            xml.push_str("<Object><Key>");
            xml.push_str(&xml_escape(k));
            xml.push_str("</Key></Object>");
        }
        xml.push_str("</Delete>");
        let md5 = super::md5::content_md5(xml.as_bytes());
        let (_, body) = self.send(
            "POST",
            "",
            &[("delete", "")],
            &[("content-type", "application/xml"), ("content-md5", &md5)],
            xml.as_bytes(),
            Some(1 << 20),
        )?;
        let text = String::from_utf8_lossy(&body);
        if let Some(e) = embedded_error("POST", &format!("DeleteObjects {}", self.what("")), &body)
        {
            if !text.contains("<DeleteResult") {
                return Err(e);
            }
        }
        for block in raw_blocks(&text, "Error").unwrap_or_default() {
            let key = xml_text(block, "Key").unwrap_or_default();
            let wrapped = format!("<Error>{block}</Error>");
            match embedded_error("DELETE", &self.what(&key), wrapped.as_bytes()) {
                // Passing failures are left for the verification round to retry.
                Some(e)
                    if e.is_transient()
                        || xml_text(block, "Code").as_deref() == Some("NoSuchKey") => {}
                Some(e) => return Err(e),
                None => {}
            }
        }
        Ok(())
    }

    /// Which of `keys` a listing of their folders still shows.
    fn still_listed(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let mut folders: Vec<&str> = keys
            .iter()
            .map(|k| k.rsplit_once('/').map_or("", |(dir, _)| dir))
            .collect();
        folders.sort();
        folders.dedup();
        let mut listed = std::collections::HashSet::new();
        for folder in folders {
            let prefix = if folder.is_empty() {
                String::new()
            } else {
                format!("{folder}/")
            };
            listed.extend(self.list(&prefix)?.into_iter().map(|o| o.key));
        }
        Ok(keys
            .iter()
            .filter(|k| listed.contains(*k))
            .cloned()
            .collect())
    }

    /// The size and ETag (without quotes) of `key`, or `None` when there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<(u64, String)>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        match self.send_full("HEAD", key, &[], &[], &[], Some(0)) {
            Ok(r) => {
                let size = r.content_length.ok_or_else(|| {
                    StoreError::Permanent(format!("HEAD {}: no Content-Length", self.what(key)))
                })?;
                Ok(Some((
                    size,
                    r.etag.as_deref().map(bare_etag).unwrap_or_default(),
                )))
            }
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Full jitter: uniform in `[0, base * 2^(attempt-1)]`.
fn backoff(attempt: u32) -> Duration {
    use ring::rand::SecureRandom;
    let cap = BACKOFF_BASE.as_millis() as u64 * (1u64 << (attempt - 1).min(6));
    let mut b = [0u8; 8];
    let r = match ring::rand::SystemRandom::new().fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => u64::from(std::process::id()),
    };
    Duration::from_millis(r % (cap + 1))
}

/// The most a response's Content-Length reserves before its body arrives.
const PREALLOC_MAX: u64 = 64 << 20;

fn transport_error(method: &str, what: &str, e: ureq::Error) -> StoreError {
    let msg = format!("{method} {what}: {e}");
    match e {
        ureq::Error::Timeout(_)
        | ureq::Error::Io(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::BodyStalled
        | ureq::Error::Protocol(_) => StoreError::Transient(msg),
        _ => StoreError::Permanent(msg),
    }
}

/// Maps a non-2xx response onto a [`StoreError`], with the server's `<Code>`/`<Message>`.
fn status_error(method: &str, what: &str, status: u16, body: &[u8]) -> StoreError {
    let text = String::from_utf8_lossy(body);
    let code = xml_text(&text, "Code");
    let message = xml_text(&text, "Message");
    let mut detail = format!("{method} {what}: HTTP {status}");
    if let Some(c) = &code {
        detail.push_str(&format!(" {c}"));
    }
    if let Some(m) = &message {
        detail.push_str(&format!(": {m}"));
    }
    let code = code.unwrap_or_default();
    let error = match status {
        404 if code.is_empty() || code == "NoSuchKey" => StoreError::NotFound(what.to_string()),
        404 => StoreError::Permanent(detail),
        412 => StoreError::PreconditionFailed(detail),
        401 | 403 => StoreError::Auth(detail),
        408 | 429 => StoreError::Transient(detail),
        500..=599 => StoreError::Transient(detail),
        _ if code == "SlowDown" || code == "RequestTimeout" || code == "InternalError" => {
            StoreError::Transient(detail)
        }
        _ => StoreError::Permanent(detail),
    };
    if code == "NotImplemented" {
        return StoreError::Unsupported(Box::new(error));
    }
    error
}

/// The undecoded insides of every `<tag>…</tag>` block, so nested fields are decoded exactly
/// once; `None` when a block is not closed.
fn raw_blocks<'a>(xml: &'a str, tag: &str) -> Option<Vec<&'a str>> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let start = &rest[i + open.len()..];
        let end = start.find(&close)?;
        out.push(&start[..end]);
        rest = &start[end + close.len()..];
    }
    Some(out)
}

/// The decoded text of the first `<tag>…</tag>` in `xml`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).into_iter().next()
}

/// The decoded texts of every `<tag>…</tag>` (or `<tag attr="…">…</tag>`) in `xml`, in order.
/// Enough for S3's flat responses; `<tag/>` gives an empty string.
fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        // Must be exactly this tag: `<Key>`, `<Key attr>` or `<Key/>`, not `<KeyCount>`.
        match after.chars().next() {
            Some('>') | Some(' ') | Some('/') | Some('\t') | Some('\n') | Some('\r') => {}
            _ => {
                rest = after;
                continue;
            }
        }
        let Some(gt) = after.find('>') else { break };
        if after[..gt].ends_with('/') {
            out.push(String::new());
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(xml_decode(&body[..end]));
        rest = &body[end + close.len()..];
    }
    out
}

/// Decodes the five predefined entities, numeric character references and CDATA sections.
fn xml_decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("<![CDATA[") {
            let end = r.find("]]>").unwrap_or(r.len());
            out.push_str(&r[..end]);
            rest = r.get(end + 3..).unwrap_or("");
            continue;
        }
        if rest.starts_with('&') {
            if let Some(semi) = rest[..rest.len().min(12)].find(';') {
                let ent = &rest[1..semi];
                let decoded = match ent {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    _ => ent
                        .strip_prefix("#x")
                        .or_else(|| ent.strip_prefix("#X"))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                if let Some(c) = decoded {
                    out.push(c);
                    rest = &rest[semi + 1..];
                    continue;
                }
            }
        }
        let c = rest.chars().next().expect("non-empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// One page of a ListObjectsV2 response.
#[derive(Debug, Default, PartialEq, Eq)]
struct ListPage {
    objects: Vec<ObjectInfo>,
    truncated: bool,
    next_token: Option<String>,
}

fn parse_list_page(xml: &str) -> Result<ListPage, StoreError> {
    if !xml.contains("<ListBucketResult") {
        return Err(StoreError::Permanent(format!(
            "ListObjectsV2: unexpected response: {}",
            xml.chars().take(200).collect::<String>()
        )));
    }
    let mut objects = Vec::new();
    // Walk the raw `<Contents>` blocks so a key's text is decoded exactly once.
    for block in raw_blocks(xml, "Contents")
        .ok_or_else(|| StoreError::Permanent("ListObjectsV2: unterminated <Contents>".into()))?
    {
        let key = xml_text(block, "Key").ok_or_else(|| {
            StoreError::Permanent("ListObjectsV2: <Contents> without <Key>".into())
        })?;
        let size = xml_text(block, "Size")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                StoreError::Permanent(format!("ListObjectsV2: no valid <Size> for {key}"))
            })?;
        let modified_ms = xml_text(block, "LastModified")
            .and_then(|t| crate::base::clock::parse_rfc3339(&t))
            .unwrap_or(0);
        objects.push(ObjectInfo {
            key,
            size,
            modified_ms,
        });
    }
    // The top-level flags: look outside the Contents blocks (keys cannot contain raw `<`).
    let truncated = xml_text(xml, "IsTruncated")
        .map(|t| t.trim().eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    let next_token = xml_text(xml, "NextContinuationToken").filter(|t| !t.is_empty());
    Ok(ListPage {
        objects,
        truncated,
        next_token,
    })
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        if body.len() as u64 > self.part_size {
            return self.put_multipart(key, &Source::Bytes(body), body.len() as u64);
        }
        self.put_single(key, body, &[])
    }

    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), StoreError> {
        let read_err =
            |e: std::io::Error| StoreError::Permanent(format!("reading {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(read_err)?;
        let size = file.metadata().map_err(read_err)?.len();
        if size > self.part_size {
            return self.put_multipart(key, &Source::File(&file, path), size);
        }
        let src = Source::File(&file, path);
        let body = src.read(0, size)?;
        self.put_single(key, &body, &[])
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        Ok(self.send("GET", key, &[], &[], &[], None)?.1)
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.gets.fetch_add(1, Ordering::Relaxed);
        let range = format!("bytes={}-{}", offset, offset.saturating_add(len - 1));
        match self.send("GET", key, &[], &[("range", &range)], &[], Some(len)) {
            Ok((206, body)) => Ok(body),
            // A server that ignores Range sends the whole object.
            Ok((_, body)) => {
                let start = (offset as usize).min(body.len());
                let end = start.saturating_add(len as usize).min(body.len());
                Ok(body[start..end].to_vec())
            }
            // Asking past the end of the object.
            Err(StoreError::Permanent(m)) if m.contains("HTTP 416") => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.lists.fetch_add(1, Ordering::Relaxed);
            let mut query: Vec<(&str, &str)> = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let (_, body) = self.send("GET", "", &query, &[], &[], Some(1 << 20))?;
            let page = parse_list_page(&String::from_utf8_lossy(&body))?;
            out.extend(page.objects);
            match (page.truncated, page.next_token) {
                (true, Some(t)) if token.as_deref() != Some(t.as_str()) => token = Some(t),
                (true, _) => {
                    return Err(StoreError::Permanent(
                        "ListObjectsV2: truncated listing without a new continuation token".into(),
                    ))
                }
                (false, _) => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        match self.send("DELETE", key, &[], &[], &[], Some(0)) {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// DeleteObjects in batches of 1000, then a LIST of each level holding the keys to see
    /// that they are gone (R2 can report keys deleted that remain); keys still there are
    /// deleted one by one and checked again, a bounded number of times.
    fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut remaining: Vec<String> = keys.to_vec();
        remaining.sort();
        remaining.dedup();
        for round in 0..DELETE_ROUNDS {
            if remaining.is_empty() {
                return Ok(());
            }
            if round == 0 {
                for batch in remaining.chunks(1000) {
                    self.delete_objects(batch)?;
                }
            } else {
                for key in &remaining {
                    self.delete(key)?;
                }
            }
            remaining = self.still_listed(&remaining)?;
        }
        if remaining.is_empty() {
            return Ok(());
        }
        Err(StoreError::Transient(format!(
            "DeleteObjects {}: {} key(s) still listed after being deleted {DELETE_ROUNDS} times, e.g. {}",
            self.what(""),
            remaining.len(),
            remaining[0]
        )))
    }

    fn read_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let r = self.send_full("GET", key, &[], &[], &[], None)?;
        let etag = r.etag.as_deref().map(bare_etag).ok_or_else(|| {
            StoreError::Permanent(format!("GET {}: no ETag in the response", self.what(key)))
        })?;
        Ok((r.body, etag))
    }

    fn write_if(
        &self,
        key: &str,
        body: &[u8],
        expected: Option<&str>,
    ) -> Result<String, StoreError> {
        let quoted;
        let condition = match expected {
            None => ("if-none-match", "*"),
            Some(etag) => {
                quoted = format!("\"{}\"", bare_etag(etag));
                ("if-match", quoted.as_str())
            }
        };
        match self.put_single_etag(key, body, &[condition])? {
            Some(etag) => Ok(etag),
            // A server that does not say: ask.
            None => self
                .head(key)?
                .map(|(_, etag)| etag)
                .ok_or_else(|| StoreError::PreconditionFailed(key.to_string())),
        }
    }

    fn request_counts(&self) -> RequestCounts {
        RequestCounts {
            put: self.puts.load(Ordering::Relaxed),
            get: self.gets.load(Ordering::Relaxed),
            list: self.lists.load(Ordering::Relaxed),
            delete: self.deletes.load(Ordering::Relaxed),
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        format!(
            "{s} (endpoint {}, region {})",
            self.endpoint_display, self.region
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_page_parses_keys_sizes_paging_and_entities() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>p/a&amp;b&#x20;c&lt;.ltx</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>p/0000/x.ltx</Key><Size>0</Size></Contents>
<NextContinuationToken>tok/en&#61;=</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list_page(xml).unwrap();
        assert_eq!(
            page.objects,
            vec![
                ObjectInfo {
                    key: "p/a&b c<.ltx".into(),
                    size: 12,
                    modified_ms: 1_704_067_200_000,
                },
                ObjectInfo {
                    key: "p/0000/x.ltx".into(),
                    size: 0,
                    modified_ms: 0,
                }
            ]
        );
        assert!(page.truncated);
        assert_eq!(page.next_token.as_deref(), Some("tok/en=="));
        let empty = parse_list_page(
            "<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>",
        )
        .unwrap();
        assert_eq!(empty, ListPage::default());
        assert!(parse_list_page("<Error><Code>X</Code></Error>").is_err());
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        let err = |s: u16, body: &str| status_error("GET", "s3://b/k", s, body.as_bytes());
        assert!(matches!(
            err(404, "<Error><Code>NoSuchKey</Code></Error>"),
            StoreError::NotFound(_)
        ));
        assert!(matches!(
            err(404, "<Error><Code>NoSuchBucket</Code></Error>"),
            StoreError::Permanent(_)
        ));
        assert!(matches!(err(412, ""), StoreError::PreconditionFailed(_)));
        match err(
            403,
            "<Error><Code>SignatureDoesNotMatch</Code><Message>nope &amp; no</Message></Error>",
        ) {
            StoreError::Auth(m) => {
                assert!(
                    m.contains("SignatureDoesNotMatch") && m.contains("nope & no"),
                    "{m}"
                )
            }
            e => panic!("{e:?}"),
        }
        assert!(err(503, "<Error><Code>SlowDown</Code></Error>").is_transient());
        assert!(err(429, "").is_transient());
        assert!(err(400, "<Error><Code>SlowDown</Code></Error>").is_transient());
        assert!(matches!(err(400, ""), StoreError::Permanent(_)));
    }

    #[test]
    fn xml_tags_match_exactly() {
        let x = "<KeyCount>3</KeyCount><Key>a</Key><Key/><Key>b&#65;</Key>";
        assert_eq!(xml_all(x, "Key"), vec!["a", "", "bA"]);
        assert_eq!(xml_decode("<![CDATA[a&amp;]]>&amp;"), "a&amp;&");
        assert_eq!(xml_decode("&bogus; & &#xZZ;"), "&bogus; & &#xZZ;");
    }

    fn target(endpoint: Option<&str>, path_style: bool) -> S3Target {
        S3Target {
            bucket: "bkt".into(),
            prefix: "db/app".into(),
            endpoint: endpoint.map(str::to_string),
            region: None,
            force_path_style: path_style,
            skip_verify: false,
            credentials: Some(Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "TOPSECRETVALUE".into(),
                session_token: None,
            }),
            timeouts: Default::default(),
        }
    }

    #[test]
    fn a_ca_bundle_adds_to_the_system_roots() {
        let system = std::fs::read(SYSTEM_TRUST_FILES[0]).expect("Debian's ca-certificates");
        let text = String::from_utf8_lossy(&system);
        let end = "-----END CERTIFICATE-----";
        let blocks: Vec<&str> = text
            .split_inclusive(end)
            .filter(|b| b.contains(end))
            .collect();
        assert!(blocks.len() > 10, "{} certificates", blocks.len());
        // A private CA (here: one public root standing in for it) plus the system store.
        let bundle = blocks[0].as_bytes();
        let rest: String = blocks[1..].concat();
        let all = trust_roots("bundle", bundle, Some(rest.as_bytes())).unwrap();
        assert_eq!(all.len(), blocks.len());
        // The bundle's own certificate is not counted twice when the system has it too.
        let again = trust_roots("bundle", bundle, Some(&system)).unwrap();
        assert_eq!(again.len(), blocks.len());
        assert_eq!(trust_roots("bundle", bundle, None).unwrap().len(), 1);
        let msg = trust_roots("AWS_CA_BUNDLE=/x", b"no pem here", Some(&system))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("AWS_CA_BUNDLE=/x") && msg.contains("no certificates"),
            "{msg}"
        );
    }

    #[test]
    fn part_layout_and_parallelism() {
        let s = S3Store::new(&target(Some("http://127.0.0.1:9000"), true)).unwrap();
        assert_eq!(s.part_size(), DEFAULT_PART_SIZE);
        assert_eq!(s.parts_in_flight(), 4);
        let mib = 1024 * 1024;
        assert_eq!(s.part_layout(17 * mib), (5 * mib, 4));
        assert_eq!(s.part_layout(15 * mib), (5 * mib, 3));
        // Past 10,000 parts the parts grow instead.
        let (part, n) = s.part_layout(60_000 * mib);
        assert!(n <= MAX_PARTS && part * n >= 60_000 * mib && part > 5 * mib);
        let s = s.with_part_size(1000);
        assert_eq!(s.part_layout(2500), (1000, 3));
        let r2 = S3Store::new(&target(
            Some("https://0123abcd.r2.cloudflarestorage.com"),
            true,
        ))
        .unwrap();
        assert_eq!(r2.parts_in_flight(), 2);
    }

    #[test]
    fn etags_and_embedded_errors() {
        assert_eq!(bare_etag("\"abc-3\""), "abc-3");
        assert_eq!(bare_etag("abc"), "abc");
        assert!(embedded_error("POST", "k", b"<CompleteMultipartUploadResult/>").is_none());
        assert!(
            embedded_error("POST", "k", b"  <Error><Code>InternalError</Code></Error>")
                .unwrap()
                .is_transient()
        );
        assert!(matches!(
            embedded_error("POST", "k", b"<Error><Code>InvalidPart</Code></Error>"),
            Some(StoreError::Permanent(_))
        ));
    }

    #[test]
    fn addressing_and_describe() {
        let s = S3Store::new(&target(None, false)).unwrap();
        assert_eq!(s.host, "bkt.s3.us-east-1.amazonaws.com");
        assert_eq!(s.base_path, "");
        assert_eq!(s.scheme, "https");
        let s = S3Store::new(&target(Some("http://127.0.0.1:9000"), true)).unwrap();
        assert_eq!(s.host, "127.0.0.1:9000");
        assert_eq!(s.base_path, "/bkt");
        let s = S3Store::new(&target(Some("minio.example:443"), true)).unwrap();
        assert_eq!((s.scheme, s.host.as_str()), ("https", "minio.example"));
        let d = s.describe();
        assert!(
            d.starts_with("s3://bkt/db/app") && d.contains("minio.example"),
            "{d}"
        );
        assert!(!d.contains("TOPSECRET") && !format!("{s:?}").contains("TOPSECRET"));
        let mut none = target(None, false);
        none.credentials = None;
        match S3Store::new(&none) {
            Err(StoreError::Auth(m)) => assert!(m.contains("AWS_ACCESS_KEY_ID"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
