//! HTTP for the S3 store: one signed request (URL encoding, SigV4 headers, body and
//! receive timeouts sized to the transfer), the response it keeps, a bounded retry with
//! jittered exponential backoff on transient failures, and the mapping of transport errors.
//! It must not interpret response bodies beyond the error mapping `xml` does.

use super::client::S3Store;
use super::tls::new_agent;
use super::xml::status_error;
use crate::store::sigv4;
use crate::store::StoreError;
use std::time::Duration;

/// Attempts per request (the first try included) on transient failures.
const TRIES: u32 = 4;
/// First backoff; doubled per retry, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Bodies get the read timeout plus one second per [`MIN_RATE`] bytes: a stalled transfer
/// fails (and is retried) without capping how large an object can be.
const MIN_RATE: u64 = 64 * 1024;
/// Receiving a body of unknown size (a whole GET).
const UNSIZED_BODY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The most a response's Content-Length reserves before its body arrives.
const PREALLOC_MAX: u64 = 64 << 20;

impl S3Store {
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
        let req = self.signed_request(method, &path, query, headers, body);
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
        let resp = sent.map_err(|e| transport_error(method, &self.what(key), e))?;
        self.read_response(method, key, resp)
    }

    /// The request for `path` with its SigV4 headers (signed now) and the caller's own.
    fn signed_request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> ureq::http::request::Builder {
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
                path,
                query,
                headers,
                payload_sha256_hex: &payload_hash,
            },
            now,
        );
        let url = self.url(path, query);
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
        req
    }

    /// The request URL: the path and query encoded exactly as they were signed.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!(
            "{}://{}{}",
            self.scheme,
            self.host,
            sigv4::uri_encode(path, false)
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
        url
    }

    /// The status, the headers the callers use and (but for HEAD) the whole body.
    fn read_response(
        &self,
        method: &str,
        key: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<Response, StoreError> {
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
    pub(super) fn send(
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
    pub(super) fn send_full(
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
}

/// What [`S3Store::send_once`] keeps of a response.
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
    pub(super) etag: Option<String>,
    pub(super) content_length: Option<u64>,
}

/// Strips the quotes around an ETag (`"abc"` → `abc`); the weak prefix is kept.
pub(super) fn bare_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_string()
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
