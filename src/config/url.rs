//! Replica URLs both ways: parsing `file:///dir`, a plain path or `s3://bucket/prefix?…` into a
//! [`ReplicaTarget`], and rendering a target back as the display URL that `url()` returns.
//! s3 specifics live in `s3`; this file only recognizes schemes and file URLs. Messages and
//! rendered URLs never contain user-info, query secrets or credentials.

use std::path::{Path, PathBuf};

use super::encoding::{
    looks_like_url, percent_decode, percent_encode, redact_url, strip_userinfo, PATH_KEEP,
    QUERY_KEEP,
};
use super::env::Env;
use super::model::{ConfigError, Credentials, ReplicaConfig, ReplicaTarget, S3Target};
use super::paths::{absolutize, normalize};
use super::s3::{finalize_s3, parse_s3_location, S3Parts};

/// What a replica URL names, before environment defaults are applied.
pub(super) enum Location {
    File(PathBuf),
    S3(S3Parts),
}

/// Litestream replica types that libreplica does not implement (as URL schemes and `type:`).
pub(super) const UNSUPPORTED_SCHEMES: &[&str] =
    &["gs", "abs", "sftp", "webdav", "webdavs", "nats", "oss"];

/// Parses a replica location. Messages never echo the URL (callers add a redacted form).
pub(super) fn parse_location(url: &str, env: &Env) -> Result<Location, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("the URL is empty".to_string());
    }
    // A URL can come from SQL text, which may hold one; a path or key would end there.
    if url.contains('\0') {
        return Err("the URL holds a NUL byte".to_string());
    }
    if url
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("file:"))
    {
        return parse_file_url(&url[5..]).map(Location::File);
    }
    if let Some(i) = url.find("://").filter(|_| looks_like_url(url)) {
        let scheme = url[..i].to_ascii_lowercase();
        let rest = &url[i + 3..];
        return match scheme.as_str() {
            "s3" => parse_s3_location(rest).map(Location::S3),
            s if UNSUPPORTED_SCHEMES.contains(&s) => Err(format!(
                "`{s}` replicas are not supported by libreplica yet (supported: s3://, file://)"
            )),
            s => Err(format!(
                "unknown URL scheme `{s}` (supported: s3://bucket/prefix, file:///dir, or a plain directory path)"
            )),
        };
    }
    // A bare `scheme:` without `//` (e.g. `s3:bucket/x`) is almost certainly a typo.
    if let Some((scheme, _)) = url.split_once(':') {
        if scheme.len() > 1
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
        {
            return Err(format!(
                "`{scheme}:` without `//`: write {scheme}://… (e.g. s3://bucket/prefix or file:///dir)"
            ));
        }
    }
    Ok(Location::File(absolutize(url, env)?))
}

/// The part of a `file:` URL after the scheme; only absolute, local paths.
fn parse_file_url(rest: &str) -> Result<PathBuf, String> {
    let relative_hint =
        "file URLs must be absolute, like file:///srv/replicas/app.db (three slashes); \
         for a directory relative to the working directory give the path without `file:`";
    if rest.contains('?') || rest.contains('#') {
        return Err("a file URL takes no query parameters".to_string());
    }
    let path = if let Some(after) = rest.strip_prefix("//") {
        let auth_end = after.find('/').unwrap_or(after.len());
        let authority = &after[..auth_end];
        if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
            return Err(format!(
                "`file://{authority}` is not a local path: {relative_hint}"
            ));
        }
        &after[auth_end..]
    } else if rest.starts_with('/') {
        rest
    } else {
        return Err(format!("relative file URL: {relative_hint}"));
    };
    if path.is_empty() {
        return Err(format!("the file URL has no path: {relative_hint}"));
    }
    let path = percent_decode(path, false)?;
    Ok(normalize(Path::new(&path)))
}

/// Parses a replica URL: `file:///abs/dir`, `/abs/dir` (a relative path is resolved against
/// `env.cwd`; `file://relative` is rejected), or
/// `s3://bucket/prefix?endpoint=…&region=…&force-path-style=true&skip-verify=true` (Litestream's
/// camelCase `forcePathStyle`/`skipVerify` and provider host forms such as
/// `bucket.s3.us-west-2.amazonaws.com` or `bucket.localhost:9000` work too). S3 credentials,
/// endpoint and region fall back to the environment.
pub fn parse_replica_url(url: &str, env: &Env) -> Result<ReplicaTarget, ConfigError> {
    parse_replica_url_with(url, env, None)
}

pub(super) fn parse_replica_url_with(
    url: &str,
    env: &Env,
    credentials: Option<&Credentials>,
) -> Result<ReplicaTarget, ConfigError> {
    match parse_location(url, env) {
        Ok(Location::File(dir)) => Ok(ReplicaTarget::File { dir }),
        Ok(Location::S3(p)) => Ok(ReplicaTarget::S3(finalize_s3(
            p,
            credentials.cloned(),
            env,
        )?)),
        Err(reason) => Err(ConfigError::Url {
            url: redact_url(url),
            reason,
        }),
    }
}

impl ReplicaConfig {
    /// Display URL; never contains secrets. `file:///dir` or `s3://bucket/prefix?endpoint=…`.
    /// Parsing it again with [`parse_replica_url`] gives the same target (minus credentials).
    pub fn url(&self) -> String {
        self.target.url()
    }
}

impl ReplicaTarget {
    /// See [`ReplicaConfig::url`].
    pub fn url(&self) -> String {
        match self {
            ReplicaTarget::File { dir } => {
                format!(
                    "file://{}",
                    percent_encode(&dir.to_string_lossy(), PATH_KEEP)
                )
            }
            ReplicaTarget::S3(t) => t.url(),
        }
    }
}

impl S3Target {
    /// See [`ReplicaConfig::url`]. Emits only parameters that differ from what parsing the bare
    /// `s3://bucket/prefix` would give.
    pub fn url(&self) -> String {
        let mut s = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&percent_encode(&self.prefix, PATH_KEEP));
        }
        let mut q: Vec<String> = Vec::new();
        if let Some(e) = &self.endpoint {
            q.push(format!(
                "endpoint={}",
                percent_encode(&strip_userinfo(e), QUERY_KEEP)
            ));
        }
        if let Some(r) = &self.region {
            q.push(format!("region={}", percent_encode(r, QUERY_KEEP)));
        }
        if self.force_path_style != self.endpoint.is_some() {
            q.push(format!("force-path-style={}", self.force_path_style));
        }
        if self.skip_verify {
            q.push("skip-verify=true".to_string());
        }
        if !q.is_empty() {
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }
}
