//! The S3 store's value: the bucket, prefix and addressing it was configured with
//! (path-style or virtual-hosted, scheme and host from the endpoint), its credentials,
//! timeouts, part size and request counters. It builds no request and parses no response;
//! it must never show a secret (its `Debug` is the store's description).

use super::resolve::KeptAddresses;
use super::tls::{new_agent, tls_config};
use crate::config::{Credentials, S3Target};
use crate::store::{ObjectStore, StoreError};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

/// Objects larger than this go up in parts of this size (the last one shorter).
pub const DEFAULT_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Parts in flight at once: R2 allows fewer concurrent writes to one upload.
const PARTS_IN_FLIGHT: usize = 4;
const PARTS_IN_FLIGHT_R2: usize = 2;
/// Defaults of `connect-timeout` and `read-timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// From the end of the request body to the response headers; also the base of body timeouts.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

pub struct S3Store {
    pub(super) bucket: String,
    pub(super) prefix: String,
    /// `http` or `https`.
    pub(super) scheme: &'static str,
    /// Host header value: the host, with the port only when it is not the scheme's default.
    pub(super) host: String,
    /// Path before the key: `/bucket` for path-style, empty for virtual-hosted.
    pub(super) base_path: String,
    pub(super) region: String,
    pub(super) credentials: Credentials,
    /// Shown by `describe`: the endpoint the requests go to.
    pub(super) endpoint_display: String,
    pub(super) tls: ureq::tls::TlsConfig,
    pub(super) connect_timeout: Duration,
    pub(super) read_timeout: Duration,
    /// Whether a request the endpoint did not answer (no connection, no response in time)
    /// is tried again; off for a caller that must not wait long (see `failing_fast`).
    pub(super) retry_unanswered: bool,
    /// The agent and the pid that built it: a forked child never reuses its parent's
    /// connections, it builds its own agent on first use.
    pub(super) agent: Mutex<(u32, ureq::Agent, KeptAddresses)>,
    /// Multipart above this size; parts of this size except the last.
    pub(super) part_size: u64,
    /// At most this many parts uploading at once.
    pub(super) parts_in_flight: usize,
    pub(super) puts: AtomicU64,
    pub(super) gets: AtomicU64,
    pub(super) lists: AtomicU64,
    pub(super) deletes: AtomicU64,
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
        let (agent, names) = new_agent(&tls, connect_timeout, read_timeout);
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
            retry_unanswered: true,
            agent: Mutex::new((std::process::id(), agent, names)),
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight,
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
        })
    }

    /// A store whose requests the endpoint did not answer fail after one connect or read
    /// timeout instead of being tried again: for a caller that blocks an application (the
    /// boot-time restore), where an endpoint that hangs must not hang it for minutes.
    /// Answers worth retrying (503, throttling) are still retried.
    pub fn failing_fast(mut self) -> S3Store {
        self.retry_unanswered = false;
        self
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

    pub(super) fn what(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::s3::multipart::MAX_PARTS;

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
