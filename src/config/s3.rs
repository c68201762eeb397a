//! S3 locations: the bucket and provider forms of an `s3://` URL's host, its query parameters,
//! endpoints, and the environment's fallbacks (endpoint, region, credentials) that turn the
//! parts written in a URL or the config file into an [`S3Target`]. Messages never echo a URL or
//! a credential (callers add a redacted form of the URL); reads no process state except
//! through [`Env`].

use super::encoding::{looks_like_url, percent_decode};
use super::env::Env;
use super::model::{ConfigError, Credentials, S3Target, S3Timeouts};
use super::schema::did_you_mean;
use super::values::{describe_duration_error, parse_duration, parse_true_false};

/// Host (with port) of an endpoint URL, lowercased.
fn endpoint_host(endpoint: &str) -> String {
    let rest = endpoint
        .find("://")
        .map_or(endpoint, |i| &endpoint[i + 3..]);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest[..end].to_ascii_lowercase()
}

fn is_r2_endpoint(endpoint: &str) -> bool {
    let host = endpoint_host(endpoint);
    let host = host.split(':').next().unwrap_or_default();
    host.ends_with(".r2.cloudflarestorage.com")
}

/// Local development hosts get `http://` when no scheme is given (as Litestream does).
fn is_local_host(host_port: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost"
        || host == "::1"
        || host.ends_with(".local")
        || host.ends_with(".localhost")
    {
        return true;
    }
    let octets: Vec<u8> = host.split('.').filter_map(|o| o.parse().ok()).collect();
    if octets.len() != 4 || host.split('.').count() != 4 {
        return false;
    }
    matches!(
        (octets[0], octets[1]),
        (127, _) | (10, _) | (192, 168) | (172, 16..=31)
    )
}

/// S3's rules for bucket names, which R2 and MinIO follow too: 3 to 63 characters of lowercase
/// letters, digits, dots and hyphens, beginning and ending with a letter or digit, no `..`,
/// and not an IP address. The name goes into the Host header or the path of every request,
/// so nothing else may pass. Messages echo the name only when it is made of allowed
/// characters.
pub(super) fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-';
    let bytes = bucket.as_bytes();
    let problem = if !bytes.iter().all(|&b| allowed(b)) {
        return Err(format!(
            "the bucket name {} has characters a bucket name cannot have (only lowercase letters, digits, `.` and `-`)",
            if bytes.iter().all(|b| b.is_ascii_graphic()) {
                format!("`{bucket}`")
            } else {
                "given".to_string()
            }
        ));
    } else if !(3..=63).contains(&bytes.len()) {
        "must be 3 to 63 characters long"
    } else if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        "must begin and end with a letter or digit"
    } else if bucket.contains("..") {
        "must not contain `..`"
    } else if is_ipv4(bucket) {
        "must not be an IP address"
    } else {
        return Ok(());
    };
    Err(format!("the bucket name `{bucket}` {problem}"))
}

fn is_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Values sent in HTTP headers (a region, an access key id, a session token, an endpoint)
/// may hold no control character: a CR or LF would end the header and start another.
/// `what` names the value; the value itself is never echoed (it may be a secret).
pub(super) fn check_header_value(what: &str, v: &str) -> Result<(), String> {
    if v.chars().any(|c| c.is_ascii_control()) {
        return Err(format!(
            "{what} holds a control character (such as a line break), which cannot go into an HTTP header"
        ));
    }
    Ok(())
}

/// Adds a scheme to an endpoint given without one (`https://`, or `http://` for local hosts)
/// and removes a trailing slash. Rejects other schemes and embedded credentials.
pub(super) fn normalize_endpoint(endpoint: &str) -> Result<String, String> {
    // Slashes and spaces in any order: what is left must not end in either, or the URL
    // `url()` shows would parse to another endpoint.
    let e = endpoint
        .trim()
        .trim_end_matches(|c: char| c == '/' || c.is_whitespace());
    if e.is_empty() {
        return Err("the endpoint is empty".to_string());
    }
    check_header_value("the endpoint", e)?;
    // Requests add their own path and query: one in the endpoint would change what they
    // address and what is signed.
    if e.contains(['?', '#']) {
        return Err("the endpoint must not have a query or fragment (`?`, `#`)".to_string());
    }
    let lower = e.to_ascii_lowercase();
    let with_scheme = if lower.starts_with("http://") || lower.starts_with("https://") {
        e.to_string()
    } else if looks_like_url(e) {
        return Err("the endpoint must be an http:// or https:// URL".to_string());
    } else {
        let host = endpoint_host(e);
        let scheme = if is_local_host(&host) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{e}")
    };
    let host = endpoint_host(&with_scheme);
    if host.contains('@') {
        return Err("the endpoint must not contain credentials".to_string());
    }
    if host.is_empty() {
        return Err("the endpoint has no host".to_string());
    }
    Ok(with_scheme)
}

/// `a//b/./c/` → `a/b/c`; `..` removes the previous segment.
pub(super) fn clean_prefix(p: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    segs.join("/")
}

/// An s3 location before environment fallbacks and credentials are applied.
#[derive(Default)]
pub(super) struct S3Parts {
    pub(super) bucket: String,
    pub(super) prefix: String,
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    pub(super) force_path_style: Option<bool>,
    pub(super) skip_verify: Option<bool>,
    pub(super) timeouts: S3Timeouts,
}

const S3_QUERY_USED: &[&str] = &[
    "endpoint",
    "region",
    "force-path-style",
    "forcePathStyle",
    "skip-verify",
    "skipVerify",
    "connect-timeout",
    "read-timeout",
];
/// Litestream's other s3 URL parameters: accepted and ignored.
const S3_QUERY_IGNORED: &[&str] = &[
    "sign-payload",
    "signPayload",
    "require-content-md5",
    "requireContentMD5",
    "storage-class",
    "storageClass",
    "part-size",
    "partSize",
    "concurrency",
];

/// The part of an `s3://` URL after the scheme: `bucket/prefix?param=value&…`.
pub(super) fn parse_s3_location(rest: &str) -> Result<S3Parts, String> {
    let rest = rest.split('#').next().unwrap_or_default();
    let (before_q, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_q.find('/') {
        Some(i) => (&before_q[..i], &before_q[i..]),
        None => (before_q, ""),
    };
    check_s3_authority(authority)?;
    let mut parts = s3_host_parts(authority)?;
    check_bucket_name(&parts.bucket)?;
    // The URL `url()` shows names the bucket alone: it must read back as that bucket.
    if !is_plain_bucket(&parts.bucket) {
        return Err(format!(
            "the bucket name `{}` is itself an S3 host name; give the bucket alone",
            parts.bucket
        ));
    }
    parts.prefix = clean_prefix(&percent_decode(path, false)?);
    apply_s3_query(&mut parts, query)?;
    Ok(parts)
}

/// Whether `bucket` as the host of an s3:// URL names that bucket and nothing else (no
/// provider host form that would make an endpoint, a region or another bucket of it).
fn is_plain_bucket(bucket: &str) -> bool {
    s3_host_parts(bucket).is_ok_and(|p| {
        p.bucket == bucket
            && p.endpoint.is_none()
            && p.region.is_none()
            && p.force_path_style.is_none()
    })
}

/// Refuses host parts that cannot name a bucket: embedded credentials, access point ARNs,
/// nothing at all.
fn check_s3_authority(authority: &str) -> Result<(), String> {
    if authority.contains('@') {
        return Err(
            "credentials must not be embedded in the URL; use access-key-id/secret-access-key \
             in litestream.yml, or LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY (or \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) in the environment"
                .to_string(),
        );
    }
    if authority.to_ascii_lowercase().starts_with("arn:") {
        return Err("S3 access point ARNs are not supported by libreplica yet".to_string());
    }
    if authority.is_empty() {
        return Err("the bucket is missing: expected s3://bucket/prefix".to_string());
    }
    // The host forms (`bucket.host:port`, `bucket.s3.<region>.amazonaws.com`, …) make an
    // endpoint and a region out of it, which go into headers.
    check_header_value("the URL's host", authority)?;
    // No host holds a space; and an endpoint made of one would read back trimmed, as
    // another endpoint.
    if authority.contains(char::is_whitespace) {
        return Err("the URL's host holds a space".to_string());
    }
    Ok(())
}

/// Applies an s3 URL's query string to `parts`.
fn apply_s3_query(parts: &mut S3Parts, query: &str) -> Result<(), String> {
    let mut seen: Vec<String> = Vec::new();
    let mut query_endpoint = false;
    let mut query_fps = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k, true)?;
        let v = percent_decode(v, true)?;
        let v = v.trim();
        if seen.contains(&k) {
            continue; // first one wins, like Go's url.Values.Get
        }
        seen.push(k.clone());
        apply_s3_param(parts, &k, v)?;
        // An empty value is ignored, so it is not an explicit setting.
        query_endpoint |= k == "endpoint" && !v.is_empty();
        query_fps |= matches!(k.as_str(), "force-path-style" | "forcePathStyle") && !v.is_empty();
    }
    // An explicit endpoint means path-style unless the URL says otherwise (Litestream).
    if query_endpoint && !query_fps {
        parts.force_path_style = None;
    }
    Ok(())
}

/// Applies one query parameter `k=v` (already decoded and trimmed) to `parts`.
fn apply_s3_param(parts: &mut S3Parts, k: &str, v: &str) -> Result<(), String> {
    let parse_bool = |v: &str| -> Result<Option<bool>, String> {
        if v.is_empty() {
            return Ok(None);
        }
        parse_true_false(v)
            .map(Some)
            .ok_or_else(|| format!("query parameter `{k}` must be true or false, got {v:?}"))
    };
    match k {
        "endpoint" if !v.is_empty() => parts.endpoint = Some(normalize_endpoint(v)?),
        "region" if !v.is_empty() => {
            check_header_value("query parameter `region`", v)?;
            parts.region = Some(v.to_string())
        }
        "force-path-style" | "forcePathStyle" => {
            if let Some(b) = parse_bool(v)? {
                parts.force_path_style = Some(b);
            }
        }
        "skip-verify" | "skipVerify" => {
            if let Some(b) = parse_bool(v)? {
                parts.skip_verify = Some(b);
            }
        }
        "connect-timeout" | "read-timeout" if !v.is_empty() => {
            let d = parse_duration(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("query parameter `{k}`: {}", describe_duration_error(v)))?;
            if k == "connect-timeout" {
                parts.timeouts.connect = Some(d);
            } else {
                parts.timeouts.read = Some(d);
            }
        }
        "endpoint" | "region" | "connect-timeout" | "read-timeout" => {}
        k if S3_QUERY_IGNORED.contains(&k) => {}
        k => {
            let mut known: Vec<&str> = S3_QUERY_USED.to_vec();
            known.extend_from_slice(S3_QUERY_IGNORED);
            return Err(format!(
                "unknown query parameter `{k}`{}",
                did_you_mean(k, known.iter().copied())
            ));
        }
    }
    Ok(())
}

/// Splits an s3 URL host into bucket and provider defaults (Litestream's `s3.ParseHost`).
fn s3_host_parts(host: &str) -> Result<S3Parts, String> {
    let lower = host.to_ascii_lowercase();
    let no_bucket = || {
        format!(
            "no bucket in `{host}`: use s3://bucket/prefix?endpoint={host}, or s3://bucket.{host}/prefix"
        )
    };
    let mut parts = S3Parts::default();
    if lower.contains(':') && !lower.contains(".com") {
        // MinIO style: bucket.host:port
        let (bucket, ep) = lower.split_once('.').ok_or_else(no_bucket)?;
        if bucket.is_empty() || ep.is_empty() {
            return Err(no_bucket());
        }
        parts.bucket = bucket.to_string();
        parts.endpoint = Some(format!("http://{ep}"));
        parts.region = Some("us-east-1".to_string());
        parts.force_path_style = Some(true);
    } else if let Some(s) = lower.strip_suffix(".amazonaws.com") {
        if let Some(b) = s.strip_suffix(".s3") {
            parts.bucket = b.to_string();
        } else if let Some(i) = s.rfind(".s3.").or_else(|| s.rfind(".s3-")) {
            parts.bucket = s[..i].to_string();
            let region = &s[i + 4..];
            if !region.is_empty() && !region.contains('.') {
                parts.region = Some(region.to_string());
            }
        } else {
            parts.bucket = lower.clone();
        }
    } else if let Some(s) = lower.strip_suffix(".digitaloceanspaces.com") {
        let (bucket, region) = s.rsplit_once('.').ok_or_else(no_bucket)?;
        parts.bucket = bucket.to_string();
        parts.endpoint = Some(format!("https://{region}.digitaloceanspaces.com"));
        parts.region = Some(region.to_string());
        parts.force_path_style = Some(false);
    } else if let Some(s) = lower.strip_suffix(".backblazeb2.com") {
        let i = s.rfind(".s3.").ok_or_else(no_bucket)?;
        let region = &s[i + 4..];
        parts.bucket = s[..i].to_string();
        parts.endpoint = Some(format!("https://s3.{region}.backblazeb2.com"));
        parts.region = Some(region.to_string());
        parts.force_path_style = Some(true);
    } else if let Some(b) = lower.strip_suffix(".s3.filebase.com") {
        parts.bucket = b.to_string();
        parts.endpoint = Some("https://s3.filebase.com".to_string());
        parts.force_path_style = Some(true);
    } else if let Some(s) = lower.strip_suffix(".scw.cloud") {
        let i = s.rfind(".s3.").ok_or_else(no_bucket)?;
        let region = &s[i + 4..];
        parts.bucket = s[..i].to_string();
        parts.endpoint = Some(format!("https://s3.{region}.scw.cloud"));
        parts.region = Some(region.to_string());
        parts.force_path_style = Some(false);
    } else {
        parts.bucket = host.to_string();
    }
    if parts.bucket.is_empty() {
        return Err(no_bucket());
    }
    Ok(parts)
}

/// Credentials from the environment: `LITESTREAM_ACCESS_KEY_ID`/`LITESTREAM_SECRET_ACCESS_KEY`,
/// else `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`. Half a pair is an error.
fn env_credentials(env: &Env) -> Result<Option<Credentials>, ConfigError> {
    let sources = [
        (
            "LITESTREAM_ACCESS_KEY_ID",
            "LITESTREAM_SECRET_ACCESS_KEY",
            None,
        ),
        (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            Some("AWS_SESSION_TOKEN"),
        ),
    ];
    for (ak_var, sk_var, token_var) in sources {
        match (env.get(ak_var), env.get(sk_var)) {
            (Some(ak), Some(sk)) => {
                let token = token_var.and_then(|v| Some((v, env.get(v)?)));
                for (var, v) in [(ak_var, ak), (sk_var, sk)].into_iter().chain(token) {
                    check_env_header(var, v.trim())?;
                }
                return Ok(Some(Credentials {
                    access_key_id: ak.trim().to_string(),
                    secret_access_key: sk.trim().to_string(),
                    session_token: token.map(|(_, t)| t.trim().to_string()),
                }));
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::Env {
                    var: sk_var.to_string(),
                    reason: format!("is not set, but {ak_var} is; set both or neither"),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::Env {
                    var: ak_var.to_string(),
                    reason: format!("is not set, but {sk_var} is; set both or neither"),
                })
            }
        }
    }
    Ok(None)
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION`, if set.
fn env_region(env: &Env) -> Result<Option<String>, ConfigError> {
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Some(r) = env.get(var).map(str::trim) {
            check_env_header(var, r)?;
            return Ok(Some(r.to_string()));
        }
    }
    Ok(None)
}

/// [`check_header_value`] for the value of the environment variable `var`.
fn check_env_header(var: &str, v: &str) -> Result<(), ConfigError> {
    check_header_value("the value", v).map_err(|reason| ConfigError::Env {
        var: var.to_string(),
        reason,
    })
}

/// Applies environment fallbacks (endpoint, region, credentials) and provider defaults.
pub(super) fn finalize_s3(
    p: S3Parts,
    credentials: Option<Credentials>,
    env: &Env,
) -> Result<S3Target, ConfigError> {
    let endpoint = match p.endpoint {
        Some(e) => Some(e),
        None => {
            let mut found = None;
            for var in [
                "LITESTREAM_S3_ENDPOINT",
                "AWS_ENDPOINT_URL_S3",
                "AWS_ENDPOINT_URL",
            ] {
                if let Some(v) = env.get(var) {
                    let e = normalize_endpoint(v).map_err(|reason| ConfigError::Env {
                        var: var.to_string(),
                        reason,
                    })?;
                    found = Some(e);
                    break;
                }
            }
            found
        }
    };
    let r2 = endpoint.as_deref().is_some_and(is_r2_endpoint);
    let region = match p.region.or_else(|| r2.then(|| "auto".to_string())) {
        Some(r) => Some(r),
        None => env_region(env)?,
    };
    let credentials = match credentials {
        Some(c) => Some(c),
        None => env_credentials(env)?,
    };
    Ok(S3Target {
        bucket: p.bucket,
        prefix: p.prefix,
        force_path_style: p.force_path_style.unwrap_or(endpoint.is_some()),
        endpoint,
        region,
        skip_verify: p.skip_verify.unwrap_or(false),
        credentials,
        timeouts: p.timeouts,
    })
}
