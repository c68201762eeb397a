//! HTTP for the S3 store: one signed request (URL encoding, SigV4 headers, timeouts sized
//! to the transfer), the response it keeps — a body bounded by what the request can return
//! and read by a deadline (`body`) — a bounded retry with jittered exponential backoff on
//! transient failures, and the mapping of transport errors. It must not interpret response
//! bodies beyond the error mapping `xml` does.

use super::body::{body_deadline, read_bounded, BodyError, Bound, Past, ERROR_BODY_MAX};
use super::client::S3Store;
use super::resolve::KeptAddresses;
use super::tls::new_agent;
use super::xml::status_error;
use crate::store::sigv4;
use crate::store::StoreError;
use std::time::{Duration, Instant};

/// Attempts per request (the first try included) on transient failures.
const TRIES: u32 = 4;
/// First backoff; doubled per retry, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// The most a response's Content-Length reserves before its body arrives.
const PREALLOC_MAX: u64 = 64 << 20;

/// The reply to a PUT, DELETE or multipart step: a few hundred bytes of XML at most.
pub(super) const SMALL_BODY: Expect = Expect::AtMost(64 * 1024, "64 KiB (a reply to this request)");
/// One ListObjectsV2 page holds at most 1000 keys of at most 1024 bytes each (escaped, up
/// to a few times that) with their metadata: about 1.5 MiB at the very most. A DeleteObjects
/// reply of 1000 errors is smaller.
pub(super) const LIST_BODY: Expect = Expect::AtMost(4 << 20, "4 MiB (a ListObjectsV2 page)");
/// A lease object is a few dozen bytes.
pub(super) const LEASE_BODY: Expect = Expect::AtMost(64 * 1024, "64 KiB (a lease object)");
/// A whole object whose size nobody listed: what its Content-Length says, but never more
/// than this (a compaction input without a local copy; S3 always sends the length).
pub(super) const UNLISTED_BODY: Expect =
    Expect::AtMost(1 << 30, "1 GiB (an object of unlisted size)");

/// What a successful response's body may hold; anything else is refused or left unread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expect {
    /// At most this many bytes; `what` names the bound in the error of a longer body.
    AtMost(u64, &'static str),
    /// Bytes `offset..offset + len` of an object: a 206 of at most `len` bytes, or a 200
    /// from a server that ignored Range, read from its start only until the range is in.
    Range { offset: u64, len: u64 },
}

impl Expect {
    /// The most bytes a successful response makes the client read.
    fn max_transfer(self) -> u64 {
        match self {
            Expect::AtMost(n, _) => n,
            Expect::Range { offset, len } => offset.saturating_add(len),
        }
    }

    /// What to read of a body with `status`.
    fn bound(self, status: u16) -> Bound {
        let (skip, keep, past) = match self {
            _ if !(200..300).contains(&status) => (0, ERROR_BODY_MAX, Past::Ignore),
            Expect::AtMost(n, _) => (0, n, Past::Refuse),
            Expect::Range { len, .. } if status == 206 => (0, len, Past::Refuse),
            Expect::Range { offset, len } => (offset, len, Past::Ignore),
        };
        Bound { skip, keep, past }
    }

    fn what(self) -> &'static str {
        match self {
            Expect::AtMost(_, what) => what,
            Expect::Range { .. } => "the range asked for",
        }
    }
}

impl S3Store {
    fn agent(&self) -> (ureq::Agent, KeptAddresses) {
        let mut g = crate::base::lock::lock(&self.agent);
        let pid = std::process::id();
        if g.0 != pid {
            let (agent, names) = new_agent(&self.tls, self.connect_timeout, self.read_timeout);
            *g = (pid, agent, names);
        }
        (g.1.clone(), g.2.clone())
    }

    /// One signed request, no retry. Returns the status and the body, bounded by `expect`.
    fn send_once(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
        expect: Expect,
    ) -> Result<Response, StoreError> {
        let path = format!("{}/{}", self.base_path, key);
        let req = self.signed_request(method, &path, query, headers, body);
        let bad = |e: ureq::http::Error| {
            StoreError::Permanent(format!("{method} {}: {e}", self.what(key)))
        };
        let (agent, names) = self.agent();
        // Each phase has its budget (connect, send, response headers, body); the whole
        // request gets their sum, so nothing a server does keeps it past that. The body's
        // own deadline, set when its size is known, is usually far shorter (`read_response`).
        let send_budget = body_deadline(self.read_timeout, body.len() as u64);
        // One read timeout more than the body's own deadline, which is checked between
        // reads: that one fails first, with an error that says what was late.
        let recv_budget =
            body_deadline(self.read_timeout, expect.max_transfer()) + self.read_timeout;
        let overall = self.connect_timeout + self.read_timeout + send_budget + recv_budget;
        // GET and DELETE carry no body (ureq refuses one on them).
        let sent = if method == "PUT" || method == "POST" {
            let req = agent
                .configure_request(req.body(body).map_err(bad)?)
                .timeout_send_body(Some(send_budget))
                .timeout_recv_body(Some(recv_budget))
                .timeout_per_call(Some(overall))
                .build();
            agent.run(req)
        } else {
            let req = agent
                .configure_request(req.body(()).map_err(bad)?)
                .timeout_recv_body(Some(recv_budget))
                .timeout_per_call(Some(overall))
                .build();
            agent.run(req)
        };
        let resp = sent.map_err(|e| {
            // The endpoint may have moved: the next request looks it up again.
            names.forget();
            transport_error(method, &self.what(key), e)
        })?;
        self.read_response(method, key, resp, expect)
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

    /// The status, the headers the callers use and (but for HEAD) the body as far as
    /// `expect` allows, read by a deadline proportional to its size from now.
    fn read_response(
        &self,
        method: &str,
        key: &str,
        mut resp: ureq::http::Response<ureq::Body>,
        expect: Expect,
    ) -> Result<Response, StoreError> {
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let content_length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        let mut response = Response {
            status,
            body: Vec::new(),
            etag,
            content_length,
        };
        if method == "HEAD" {
            return Ok(response);
        }
        let bound = expect.bound(status);
        let what = self.what(key);
        let too_long = |content_length: Option<u64>| {
            StoreError::Permanent(format!(
                "{method} {what}: HTTP {status} with a body longer than {}{}: refused",
                expect.what(),
                content_length.map_or(String::new(), |n| format!(" (Content-Length {n})"))
            ))
        };
        if bound.past == Past::Refuse && content_length.is_some_and(|n| n > bound.keep) {
            return Err(too_long(content_length));
        }
        let expected = content_length
            .unwrap_or(u64::MAX)
            .min(bound.skip.saturating_add(bound.keep));
        let budget = body_deadline(self.read_timeout, expected);
        // Sized from Content-Length up front: grown by doubling, a 4 MiB body was zeroed
        // and copied again at each step, which cost a restore's fetchers a third of their CPU.
        let reserve = content_length.unwrap_or(0).min(PREALLOC_MAX);
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        let read = read_bounded(
            &mut reader,
            bound,
            Instant::now() + budget,
            &Instant::now,
            reserve,
        );
        response.body = read.map_err(|e| match e {
            BodyError::TooLong => too_long(None),
            BodyError::Deadline { got } => StoreError::Transient(format!(
                "{method} {what}: the body did not arrive within its deadline of {budget:?} \
                 ({got} of {expected} bytes after the headers; at least {} KiB/s is needed)",
                super::body::MIN_RATE / 1024
            )),
            BodyError::Io(e) => transport_error(method, &what, e.into()),
        })?;
        Ok(response)
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
        expect: Expect,
    ) -> Result<(u16, Vec<u8>), StoreError> {
        self.send_full(method, key, query, headers, body, expect)
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
        expect: Expect,
    ) -> Result<Response, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self.send_once(method, key, query, headers, body, expect);
            let retry = self.retry_unanswered || sent.is_ok();
            let result = sent.and_then(|r| {
                if (200..300).contains(&r.status) {
                    Ok(r)
                } else {
                    Err(status_error(method, &self.what(key), r.status, &r.body))
                }
            });
            match result {
                Err(e) if e.is_transient() && retry && attempt < TRIES => {
                    std::thread::sleep(backoff(attempt));
                    // Every attempt is a request the bucket bills.
                    self.count_retry(method, query);
                }
                other => return other,
            }
        }
    }
}

impl S3Store {
    /// Counts a repeated attempt with the calls of its kind: a listing (a GET with
    /// `list-type`), a batch delete (a POST with `delete`), or by its method.
    fn count_retry(&self, method: &str, query: &[(&str, &str)]) {
        let has = |name: &str| query.iter().any(|(k, _)| *k == name);
        let counter = match method {
            "DELETE" => &self.deletes,
            "POST" if has("delete") => &self.deletes,
            "GET" if has("list-type") => &self.lists,
            "GET" | "HEAD" => &self.gets,
            _ => &self.puts,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_body_may_hold_depends_on_the_request_and_the_status() {
        let bound = |skip, keep, past| Bound { skip, keep, past };
        assert_eq!(LIST_BODY.bound(200), bound(0, 4 << 20, Past::Refuse));
        // Error bodies: only their start, whatever the request.
        for e in [
            LIST_BODY,
            UNLISTED_BODY,
            Expect::Range { offset: 9, len: 5 },
        ] {
            assert_eq!(e.bound(503), bound(0, ERROR_BODY_MAX, Past::Ignore));
            assert_eq!(e.bound(404), bound(0, ERROR_BODY_MAX, Past::Ignore));
        }
        let range = Expect::Range { offset: 9, len: 5 };
        assert_eq!(range.bound(206), bound(0, 5, Past::Refuse));
        // A server that ignored Range: read up to the range's end, keep the range.
        assert_eq!(range.bound(200), bound(9, 5, Past::Ignore));
        assert_eq!(range.max_transfer(), 14);
        let listed = Expect::AtMost(4096, "the size its listing gave");
        assert_eq!(listed.bound(200), bound(0, 4096, Past::Refuse));
        assert_eq!(listed.what(), "the size its listing gave");
    }
}
