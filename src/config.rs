//! Configuration: owns parsing and resolving the config file, environment and URI parameters into one [`DbConfig`] per database; must do no I/O besides reading the config file it is pointed at (environment and working directory are passed in as [`Env`], so everything is unit-testable).
//!
//! [`Resolver::from_process`] is the only function that touches the process: it reads the
//! environment, the working directory and that one file. The one other file-system call,
//! `std::fs::canonicalize` for matching `dbs[].path` against the path SQLite opens, sits behind
//! [`Resolver`]'s replaceable `canonicalize` function. [`DbConfig`] is [`ReplicaConfig`].
//!
//! Precedence, highest first:
//! 1. URI parameters of the database filename: `replica=<url>` (or `replica=off`) and
//!    `replica_sync_interval=<duration>`.
//! 2. Environment: `REPLICA_SYNC_INTERVAL` (overrides every sync interval), `REPLICA_URL` (a
//!    location for every database that no config-file entry names: `<REPLICA_URL>/<file name>`),
//!    and `REPLICA_RESTORE_IF_MISSING`, `REPLICA_VALIDATION_INTERVAL`,
//!    `REPLICA_SHUTDOWN_SYNC_TIMEOUT` (each overrides its config-file key for every database).
//! 3. The config file (`REPLICA_CONFIG`, `LITESTREAM_CONFIG`, `./config/litestream.yml`,
//!    `/etc/litestream.yml`), in Litestream v0.5's `litestream.yml` shape: a database's own
//!    entry (`dbs[].restore-if-db-not-exists`, `dbs[].replica.validation-interval`, …) over
//!    the file's top level (`validation-interval`, `shutdown-sync-timeout`, …). Databases the
//!    file does not name (given by `REPLICA_URL` or `replica=`) take its top-level settings.
//!
//! Secrets (secret access keys, session tokens) never appear in any `Debug`, `Display`, `url()`
//! or error output of this module.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

/// Sync interval used when nothing configures one (Litestream's default).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Whether a missing database is restored at open when nothing configures it (Litestream's
/// `restore-if-db-not-exists` defaults to off; a library opened by an application that
/// already expects its data has no separate restore step, so it is on here).
pub const DEFAULT_RESTORE_IF_MISSING: bool = true;

/// How long the last close of a database waits for its shipping when nothing configures it.
/// Litestream waits up to 30 s at process exit; here the wait blocks the application's
/// `sqlite3_close`, and nothing depends on it, so it is short.
pub const DEFAULT_SHUTDOWN_SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-database resolved configuration; the name the module docs use for [`ReplicaConfig`].
pub type DbConfig = ReplicaConfig;

// ---------------------------------------------------------------------------------------------
// Output types
// ---------------------------------------------------------------------------------------------

/// S3 credentials. `Debug` redacts the secret and the session token and masks the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &mask_key_id(&self.access_key_id))
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Shows only the last four characters of a long access key id (as `aws configure list` does).
fn mask_key_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() >= 12 {
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("****{tail}")
    } else {
        "****".to_string()
    }
}

/// Where one database replicates to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaTarget {
    /// The replica directory for this database (`file:///srv/replicas/app.db` → `/srv/replicas/app.db`).
    /// Always absolute and lexically normalized.
    File {
        dir: PathBuf,
    },
    S3(S3Target),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    /// Key prefix of this database's replica; no leading or trailing slash; may be empty.
    pub prefix: String,
    /// Always with a scheme (`https://…`, or `http://…` for local/private hosts given without one).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub force_path_style: bool,
    pub skip_verify: bool,
    pub credentials: Option<Credentials>,
    pub timeouts: S3Timeouts,
}

/// How long the S3 client waits: `connect-timeout` (TCP and TLS set-up) and `read-timeout`
/// (for the response headers, and for a body that stops moving). `None` keeps the
/// client's defaults; both are replica keys and s3:// URL parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct S3Timeouts {
    pub connect: Option<Duration>,
    pub read: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    pub target: ReplicaTarget,
    /// Defaults to [`DEFAULT_SYNC_INTERVAL`]; always greater than zero.
    pub sync_interval: Duration,
    /// Snapshots, compaction and retention (litestream.yml's top-level `snapshot`, `levels`
    /// and `l0-retention`; Litestream's defaults otherwise).
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// Restore the database from the replica when it is opened while neither it nor its WAL
    /// exists (`restore-if-db-not-exists`; [`DEFAULT_RESTORE_IF_MISSING`] otherwise).
    pub restore_if_missing: bool,
    /// How often a restore drill checks the replica (`validation-interval`); `None`: never.
    /// Never zero.
    pub validation_interval: Option<Duration>,
    /// How long the last close waits for shipping and the lease hand-back
    /// (`shutdown-sync-timeout`; [`DEFAULT_SHUTDOWN_SYNC_TIMEOUT`] otherwise); zero: no wait.
    pub shutdown_sync_timeout: Duration,
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

/// A non-fatal problem in the config file. `Display`: `litestream.yml: <key>: <message>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Key path, e.g. `dbs[0].replicas[0].retention`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "litestream.yml: {}: {}", self.key, self.message)
    }
}

/// Every variant's `Display` names the file, key, variable or parameter and the problem, and
/// never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `REPLICA_CONFIG` or `LITESTREAM_CONFIG` names a file that does not exist.
    ConfigFileNotFound { var: String, path: PathBuf },
    /// The config file exists but could not be read.
    ReadConfigFile { path: PathBuf, reason: String },
    /// The config file is not valid YAML.
    Yaml { path: PathBuf, reason: String },
    /// A value in the config file is wrong; `key` is a path like `dbs[0].replicas[0].sync-interval`.
    File {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// An environment variable has an unusable value.
    Env { var: String, reason: String },
    /// A URI parameter of a database filename is wrong.
    UriParam {
        db: PathBuf,
        param: String,
        reason: String,
    },
    /// A replica URL is wrong. `url` is already redacted (no user-info, no query).
    Url { url: String, reason: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ConfigFileNotFound { var, path } => write!(
                f,
                "{var} names the config file {}, which does not exist",
                path.display()
            ),
            ConfigError::ReadConfigFile { path, reason } => {
                write!(f, "cannot read config file {}: {reason}", path.display())
            }
            ConfigError::Yaml { path, reason } => {
                write!(f, "{}: invalid YAML: {reason}", path.display())
            }
            ConfigError::File { path, key, reason } => {
                write!(f, "{}: {key}: {reason}", path.display())
            }
            ConfigError::Env { var, reason } => write!(f, "environment variable {var}: {reason}"),
            ConfigError::UriParam { db, param, reason } => {
                write!(f, "{}: URI parameter `{param}`: {reason}", db.display())
            }
            ConfigError::Url { url, reason } => write!(f, "replica URL {url}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The process environment and working directory, passed in so everything is testable.
/// `Debug` lists variable names only, never values.
#[derive(Clone, Default)]
pub struct Env {
    pub vars: HashMap<String, String>,
    pub cwd: PathBuf,
}

impl Env {
    /// The real process environment (variables that are not UTF-8 are skipped) and working
    /// directory (`/` if it cannot be determined).
    pub fn from_process() -> Env {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Env { vars, cwd }
    }

    /// Convenience constructor (tests, embedders).
    pub fn new<K: Into<String>, V: Into<String>>(
        cwd: impl Into<PathBuf>,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            cwd: cwd.into(),
        }
    }

    /// The variable's value if it is set and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.vars.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        f.debug_struct("Env")
            .field("vars", &names)
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// A parsed config file.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// Absolute, lexically normalized database path → its replica, in file order.
    pub dbs: Vec<(PathBuf, ReplicaConfig)>,
    pub warnings: Vec<Warning>,
    /// The file's top-level `access-key-id`/`secret-access-key`, if both are set. Also used for
    /// s3 targets given by `replica=` URI parameters and `REPLICA_URL`.
    pub global_credentials: Option<Credentials>,
    /// The file's top-level `sync-interval`, if set. Also used for targets given by URI
    /// parameters and `REPLICA_URL`.
    pub global_sync_interval: Option<Duration>,
    /// The file's `snapshot`, `levels` and `l0-retention` (Litestream's defaults where
    /// absent); they apply to every replica, as in Litestream, including those given by URI
    /// parameters and `REPLICA_URL`.
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// The file's top-level `validation-interval`, if set (zero: explicitly none). The
    /// default of its entries' replicas, and of targets given by URI parameters and
    /// `REPLICA_URL`.
    pub global_validation_interval: Option<Duration>,
    /// The file's `shutdown-sync-timeout`, if set (zero: no wait); for every database.
    pub shutdown_sync_timeout: Option<Duration>,
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

/// Parses a Go-style duration: a sequence of decimal numbers, each with an optional fraction
/// and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `1s`, `500ms`, `1m30s`, `1.5h`.
/// `0` alone is allowed; negative durations are not.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut rest = s;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if rest.starts_with('-') {
        return Err(format!("negative duration {s:?}"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..frac_len];
            rest = &r[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(format!("invalid duration {s:?}"));
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {s:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        let overflow = || format!("duration {s:?} is too large");
        if int_part.len() > 20 {
            return Err(overflow());
        }
        let int_val: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        let frac_nanos = if frac_digits.is_empty() {
            0
        } else {
            let f: u128 = frac_digits.parse().map_err(|_| overflow())?;
            f * nanos_per_unit / 10u128.pow(frac_digits.len() as u32)
        };
        total = int_val
            .checked_mul(nanos_per_unit)
            .and_then(|v| v.checked_add(frac_nanos))
            .and_then(|v| v.checked_add(total))
            .ok_or_else(overflow)?;
    }
    let nanos = u64::try_from(total).map_err(|_| format!("duration {s:?} is too large"))?;
    Ok(Duration::from_nanos(nanos))
}

fn describe_duration_error(value: &str) -> String {
    format!("expected a duration like 1s or 500ms, got {value:?}")
}

// ---------------------------------------------------------------------------------------------
// `$VAR` expansion
// ---------------------------------------------------------------------------------------------

/// A string value from the config file after `$VAR`/`${VAR}` expansion. No `Debug`: it may
/// hold a secret.
#[derive(Clone, Default)]
struct Text {
    /// As written in the file (only echoed in messages when it expanded to nothing, i.e. when it
    /// consists of variable references only).
    raw: String,
    /// Expanded and trimmed.
    value: String,
    /// Referenced variables that are not set.
    unset: Vec<String>,
    /// Referenced variables that are set to an empty string.
    empty: Vec<String>,
}

impl Text {
    fn get(&self) -> Option<&str> {
        if self.value.is_empty() {
            None
        } else {
            Some(&self.value)
        }
    }

    /// Why the value is empty, naming the variables involved.
    fn why_empty(&self) -> String {
        let raw = self.raw.trim();
        if !self.unset.is_empty() {
            format!(
                "is empty: `{raw}` expanded to an empty string because {} {} not set",
                self.unset.join(", "),
                if self.unset.len() == 1 { "is" } else { "are" }
            )
        } else if !self.empty.is_empty() {
            format!(
                "is empty: `{raw}` expanded to an empty string because {} {} set to an empty string",
                self.empty.join(", "),
                if self.empty.len() == 1 { "is" } else { "are" }
            )
        } else {
            "is empty".to_string()
        }
    }
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Expands `$NAME` and `${NAME}` from `env` like Litestream (an unset variable expands to an
/// empty string; `$PID` is the process id unless the environment defines `PID`). Extensions:
/// `$$` is a literal `$`, and a `$` not followed by a name is kept literally. Error messages never
/// echo the value (it may be a secret).
fn expand_vars(raw: &str, env: &Env) -> Result<Text, String> {
    let mut out = String::with_capacity(raw.len());
    let mut unset = Vec::new();
    let mut empty = Vec::new();
    let mut lookup = |name: &str, out: &mut String| match env.vars.get(name) {
        Some(v) if !v.is_empty() => out.push_str(v),
        Some(_) => empty.push(name.to_string()),
        None if name == "PID" => out.push_str(&std::process::id().to_string()),
        None => unset.push(name.to_string()),
    };
    let mut i = 0;
    while i < raw.len() {
        let rest = &raw[i..];
        let Some(after) = rest.strip_prefix('$') else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
            continue;
        };
        if after.starts_with('$') {
            out.push('$');
            i += 2;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                "unterminated `${` (write `${NAME}`, or `$$` for a literal `$`)".to_string()
            })?;
            let name = &body[..end];
            if !is_var_name(name) {
                return Err(
                    "invalid `${...}` reference: a variable name has only letters, digits and `_` (write `$$` for a literal `$`)"
                        .to_string(),
                );
            }
            lookup(name, &mut out);
            i += 2 + end + 1;
        } else {
            let len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if len == 0 || after.as_bytes()[0].is_ascii_digit() {
                out.push('$');
                i += 1;
            } else {
                lookup(&after[..len], &mut out);
                i += 1 + len;
            }
        }
    }
    Ok(Text {
        raw: raw.to_string(),
        value: out.trim().to_string(),
        unset,
        empty,
    })
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// Removes `.` and resolves `..` lexically (`..` at the root stays at the root).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `~` / `~/x` → `$HOME`, relative → joined with the cwd, then normalized (Litestream's `expand`).
fn absolutize(s: &str, env: &Env) -> Result<PathBuf, String> {
    let p = if s == "~" || s.starts_with("~/") {
        let home = env
            .get("HOME")
            .ok_or_else(|| format!("cannot expand `~` in {s:?}: HOME is not set"))?;
        Path::new(home).join(s.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(s)
    };
    Ok(normalize(&env.cwd.join(p)))
}

fn looks_like_url(s: &str) -> bool {
    match s.find("://") {
        Some(i) => {
            i > 0
                && s[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------------

/// Unreserved characters plus the ones that may stay raw in a path.
const PATH_KEEP: &str = "-._~!$&'()*+,;=:@/";
/// Characters that may stay raw in a query value.
const QUERY_KEEP: &str = "-._~!$'()*,;:@/";

fn percent_encode(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| "invalid percent-encoding".to_string())?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding is not valid UTF-8".to_string())
}

/// A URL safe to show in messages: no user-info, no query, no fragment.
fn redact_url(url: &str) -> String {
    let url = url.trim();
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    strip_userinfo(&url[..cut])
}

fn strip_userinfo(url: &str) -> String {
    if let Some(i) = url.find("://") {
        let rest = &url[i + 3..];
        let auth_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            return format!("{}{}", &url[..i + 3], &rest[at + 1..]);
        }
    }
    url.to_string()
}

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

/// Adds a scheme to an endpoint given without one (`https://`, or `http://` for local hosts)
/// and removes a trailing slash. Rejects other schemes and embedded credentials.
fn normalize_endpoint(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        return Err("the endpoint is empty".to_string());
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
fn clean_prefix(p: &str) -> String {
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

/// What a replica URL names, before environment defaults are applied.
enum Location {
    File(PathBuf),
    S3(S3Parts),
}

/// An s3 location before environment fallbacks and credentials are applied.
#[derive(Default)]
struct S3Parts {
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: Option<String>,
    force_path_style: Option<bool>,
    skip_verify: Option<bool>,
    timeouts: S3Timeouts,
}

const UNSUPPORTED_SCHEMES: &[&str] = &["gs", "abs", "sftp", "webdav", "webdavs", "nats", "oss"];
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

/// Parses a replica location. Messages never echo the URL (callers add a redacted form).
fn parse_location(url: &str, env: &Env) -> Result<Location, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("the URL is empty".to_string());
    }
    let relative_hint =
        "file URLs must be absolute, like file:///srv/replicas/app.db (three slashes); \
         for a directory relative to the working directory give the path without `file:`";
    if url
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("file:"))
    {
        let rest = &url[5..];
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
        return Ok(Location::File(normalize(Path::new(&path))));
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

fn parse_s3_location(rest: &str) -> Result<S3Parts, String> {
    let rest = rest.split('#').next().unwrap_or_default();
    let (before_q, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_q.find('/') {
        Some(i) => (&before_q[..i], &before_q[i..]),
        None => (before_q, ""),
    };
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
    let mut parts = s3_host_parts(authority)?;
    parts.prefix = clean_prefix(&percent_decode(path, false)?);

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
        let parse_bool = |v: &str| -> Result<Option<bool>, String> {
            match v.to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(format!(
                    "query parameter `{k}` must be true or false, got {v:?}"
                )),
            }
        };
        match k.as_str() {
            "endpoint" if !v.is_empty() => {
                parts.endpoint = Some(normalize_endpoint(v)?);
                query_endpoint = true;
            }
            "region" if !v.is_empty() => parts.region = Some(v.to_string()),
            "force-path-style" | "forcePathStyle" => {
                if let Some(b) = parse_bool(v)? {
                    parts.force_path_style = Some(b);
                    query_fps = true;
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
                    .ok_or_else(|| {
                        format!("query parameter `{k}`: {}", describe_duration_error(v))
                    })?;
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
    }
    // An explicit endpoint means path-style unless the URL says otherwise (Litestream).
    if query_endpoint && !query_fps {
        parts.force_path_style = None;
    }
    Ok(parts)
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
                return Ok(Some(Credentials {
                    access_key_id: ak.trim().to_string(),
                    secret_access_key: sk.trim().to_string(),
                    session_token: token_var
                        .and_then(|v| env.get(v))
                        .map(|t| t.trim().to_string()),
                }))
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

/// Applies environment fallbacks (endpoint, region, credentials) and provider defaults.
fn finalize_s3(
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
    let region = p
        .region
        .or_else(|| r2.then(|| "auto".to_string()))
        .or_else(|| {
            env.get("AWS_REGION")
                .or_else(|| env.get("AWS_DEFAULT_REGION"))
                .map(|r| r.trim().to_string())
        });
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

/// Parses a replica URL: `file:///abs/dir`, `/abs/dir` (a relative path is resolved against
/// `env.cwd`; `file://relative` is rejected), or
/// `s3://bucket/prefix?endpoint=…&region=…&force-path-style=true&skip-verify=true` (Litestream's
/// camelCase `forcePathStyle`/`skipVerify` and provider host forms such as
/// `bucket.s3.us-west-2.amazonaws.com` or `bucket.localhost:9000` work too). S3 credentials,
/// endpoint and region fall back to the environment.
pub fn parse_replica_url(url: &str, env: &Env) -> Result<ReplicaTarget, ConfigError> {
    parse_replica_url_with(url, env, None)
}

fn parse_replica_url_with(
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

// ---------------------------------------------------------------------------------------------
// Known keys
// ---------------------------------------------------------------------------------------------

/// Replica settings libreplica uses at the top level (defaults for every replica).
const TOP_FIELDS: &[&str] = &[
    "access-key-id",
    "secret-access-key",
    "region",
    "bucket",
    "endpoint",
    "force-path-style",
    "skip-verify",
    "sync-interval",
    "validation-interval",
    "connect-timeout",
    "read-timeout",
];
/// Litestream's global lifecycle keys: snapshots, compaction levels, level-0 retention.
const TOP_LIFECYCLE: &[&str] = &["snapshot", "levels", "l0-retention"];
/// Litestream's global keys about the process rather than its replicas, which libreplica uses.
const TOP_PROCESS: &[&str] = &["shutdown-sync-timeout"];
/// Litestream's global keys that libreplica accepts and ignores.
const TOP_UNUSED: &[&str] = &[
    "addr",
    "socket",
    "validation",
    "l0-retention-check-interval",
    "verify-compaction",
    "retention",
    "heartbeat-url",
    "heartbeat-interval",
    "exec",
    "logging",
    "mcp-addr",
    "shutdown-sync-interval",
];
const DB_USED: &[&str] = &[
    "path",
    "replica",
    "replicas",
    "snapshot",
    "restore-if-db-not-exists",
];
const DB_UNUSED: &[&str] = &[
    "dir",
    "pattern",
    "recursive",
    "watch",
    "meta-path",
    "meta-dir",
    "monitor-interval",
    "checkpoint-interval",
    "busy-timeout",
    "min-checkpoint-page-count",
    "max-checkpoint-page-count",
    "truncate-page-n",
    "max-sync-wal-bytes",
];
const REPLICA_FIELDS: &[&str] = &[
    "type",
    "url",
    "path",
    "bucket",
    "endpoint",
    "region",
    "force-path-style",
    "skip-verify",
    "access-key-id",
    "secret-access-key",
    "sync-interval",
    "validation-interval",
    "connect-timeout",
    "read-timeout",
];
/// Litestream replica keys (v0.5, plus v0.3's retention/snapshot keys) that libreplica ignores.
const REPLICA_UNUSED: &[&str] = &[
    "name",
    "retention",
    "retention-check-interval",
    "snapshot-interval",
];
/// Litestream's shared replica settings (allowed globally and per replica) that libreplica ignores.
const SETTINGS_UNUSED: &[&str] = &[
    "max-sync-ltx-files",
    "auto-recover",
    "sign-payload",
    "require-content-md5",
    "storage-class",
    "part-size",
    "concurrency",
    "sse-customer-algorithm",
    "sse-customer-key",
    "sse-customer-key-path",
    "sse-kms-key-id",
    "account-name",
    "account-key",
    "sas-token",
    "host",
    "user",
    "password",
    "key-path",
    "concurrent-writes",
    "host-key",
    "webdav-url",
    "webdav-username",
    "webdav-password",
    "jwt",
    "seed",
    "creds",
    "nkey",
    "username",
    "token",
    "tls",
    "root-cas",
    "client-cert",
    "client-key",
    "max-reconnects",
    "reconnect-wait",
    "timeout",
    "age",
];
const SECRET_FIELDS: &[&str] = &["access-key-id", "secret-access-key"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Db,
    Replica,
}

impl Level {
    fn used(self) -> Vec<&'static str> {
        match self {
            Level::Top => {
                let mut v = TOP_FIELDS.to_vec();
                v.push("dbs");
                v.extend_from_slice(TOP_LIFECYCLE);
                v.extend_from_slice(TOP_PROCESS);
                v
            }
            Level::Db => DB_USED.to_vec(),
            Level::Replica => REPLICA_FIELDS.to_vec(),
        }
    }
    fn unused(self) -> Vec<&'static str> {
        let mut v = match self {
            Level::Top => TOP_UNUSED.to_vec(),
            Level::Db => DB_UNUSED.to_vec(),
            Level::Replica => REPLICA_UNUSED.to_vec(),
        };
        if self != Level::Db {
            v.extend_from_slice(SETTINGS_UNUSED);
        }
        v
    }
    fn knows(self, key: &str) -> bool {
        self.used().contains(&key) || self.unused().contains(&key)
    }
}

/// Optimal-string-alignment distance (a transposition costs 1).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// `; did you mean `x`?` when a known name is close, else "".
fn did_you_mean<'a>(unknown: &str, known: impl Iterator<Item = &'a str>) -> String {
    let lower = unknown.to_ascii_lowercase();
    let folded = lower.replace('_', "-");
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        let d = edit_distance(&lower, k).min(edit_distance(&folded, k));
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    let len = unknown.chars().count();
    match best {
        // A case/underscore variant, one edit (for names of 2+ chars) or two (for 6+ chars).
        Some((d, k)) if d == 0 || (d == 1 && len >= 2) || (d == 2 && len >= 6) => {
            format!("; did you mean `{k}`?")
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Config file
// ---------------------------------------------------------------------------------------------

struct Ctx<'a> {
    file: &'a Path,
    env: &'a Env,
    warnings: Vec<Warning>,
}

impl Ctx<'_> {
    fn err(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::File {
            path: self.file.to_path_buf(),
            key: if key.is_empty() {
                "(top level)".to_string()
            } else {
                key.to_string()
            },
            reason: reason.into(),
        }
    }

    fn warn(&mut self, key: &str, message: impl Into<String>) {
        let w = Warning {
            key: if key.is_empty() {
                "(top level)".to_string()
            } else {
                key.to_string()
            },
            message: message.into(),
        };
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// Warns about a key libreplica does not use (known Litestream key, misplaced key or typo).
    fn warn_key(&mut self, level: Level, at: &str, key: &str) {
        let path = child(at, key);
        if level.unused().contains(&key) {
            self.warn(
                &path,
                format!("`{key}` is accepted but not used by libreplica yet"),
            );
        } else if level != Level::Replica && !level.knows(key) && Level::Replica.knows(key) {
            let place = if level == Level::Top {
                "dbs[].replica"
            } else {
                "`replica:`"
            };
            self.warn(
                &path,
                format!("`{key}` is a replica setting and is ignored here; put it under {place}"),
            );
        } else if level != Level::Db && Level::Db.knows(key) {
            self.warn(
                &path,
                format!("`{key}` is a database setting and is ignored here; put it in an entry under `dbs:`"),
            );
        } else if level != Level::Top && Level::Top.knows(key) {
            self.warn(
                &path,
                format!("`{key}` is a top-level setting and is ignored here; put it at the top of the file, outside `dbs:`"),
            );
        } else {
            let mut known = level.used();
            known.extend(level.unused());
            let hint = did_you_mean(key, known.into_iter());
            self.warn(&path, format!("unknown key `{key}` is ignored{hint}"));
        }
    }
}

fn child(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

fn key_name(k: &Yaml) -> String {
    match k {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "null".to_string(),
        _ => "(complex key)".to_string(),
    }
}

/// Applies YAML merge keys (`<<: *defaults`, or `<<: [*a, *b]`), which Litestream's Go YAML
/// parser honours and yaml-rust2 does not: keys written in the mapping win, then earlier merged
/// mappings. A `<<` whose value is not a mapping (or list of mappings) is kept as a plain key.
fn apply_merge_keys(y: &Yaml) -> Yaml {
    match y {
        Yaml::Array(items) => Yaml::Array(items.iter().map(apply_merge_keys).collect()),
        Yaml::Hash(map) => {
            let merge_key = Yaml::String("<<".to_string());
            let sources: Option<Vec<&yaml_rust2::yaml::Hash>> = match map.get(&merge_key) {
                Some(Yaml::Hash(h)) => Some(vec![h]),
                Some(Yaml::Array(list)) => list
                    .iter()
                    .map(|v| match v {
                        Yaml::Hash(h) => Some(h),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            };
            let mut out = yaml_rust2::yaml::Hash::new();
            for (k, v) in map {
                if sources.is_some() && *k == merge_key {
                    continue;
                }
                out.insert(k.clone(), apply_merge_keys(v));
            }
            for source in sources.unwrap_or_default() {
                for (k, v) in source {
                    if !out.contains_key(k) {
                        out.insert(k.clone(), apply_merge_keys(v));
                    }
                }
            }
            Yaml::Hash(out)
        }
        other => other.clone(),
    }
}

/// Describes a YAML value for an error message.
fn describe(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Array(_) => "a list".to_string(),
        Yaml::Hash(_) => "a mapping".to_string(),
        Yaml::Null => "an empty value".to_string(),
        _ => "an invalid value".to_string(),
    }
}

/// Describes the kind of a value only (for secret fields).
fn kind(y: &Yaml) -> &'static str {
    match y {
        Yaml::String(_) => "a string",
        Yaml::Real(_) | Yaml::Integer(_) => "a number",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Null => "an empty value",
        _ => "an invalid value",
    }
}

/// Replica settings of one replica (or the top level's defaults), as written.
#[derive(Default)]
struct Fields {
    /// Key path of the mapping these came from ("" for the top level).
    at: String,
    texts: BTreeMap<&'static str, Text>,
    bools: BTreeMap<&'static str, bool>,
    sync_interval: Option<Duration>,
    /// Zero: explicitly no drills (so a replica can turn off the top level's).
    validation_interval: Option<Duration>,
    /// `connect-timeout` and `read-timeout`.
    durations: BTreeMap<&'static str, Duration>,
}

impl Fields {
    fn val(&self, name: &str) -> Option<&str> {
        self.texts.get(name).and_then(Text::get)
    }
    fn given(&self, name: &str) -> bool {
        self.texts
            .get(name)
            .is_some_and(|t| !t.raw.trim().is_empty())
            || self.bools.contains_key(name)
    }
    fn key(&self, name: &str) -> String {
        child(&self.at, name)
    }

    /// Reads one of [`REPLICA_FIELDS`] / [`TOP_FIELDS`].
    fn read(&mut self, ctx: &mut Ctx, name: &'static str, node: &Yaml) -> Result<(), ConfigError> {
        let key = self.key(name);
        match name {
            "force-path-style" | "skip-verify" => {
                if let Some(b) = read_bool(ctx, &key, node)? {
                    self.bools.insert(name, b);
                }
            }
            "sync-interval" => self.sync_interval = read_duration(ctx, &key, node)?,
            "validation-interval" => {
                self.validation_interval = read_duration_or_zero(ctx, &key, node)?
            }
            "connect-timeout" | "read-timeout" => {
                if let Some(d) = read_duration(ctx, &key, node)? {
                    if d.is_zero() {
                        return Err(ctx.err(&key, "must be greater than zero"));
                    }
                    self.durations.insert(name, d);
                }
            }
            _ => {
                if let Some(t) = read_text(ctx, &key, node, SECRET_FIELDS.contains(&name))? {
                    self.texts.insert(name, t);
                }
            }
        }
        Ok(())
    }
}

/// Reads a string-like scalar and expands `$VAR`s. `Ok(None)` for an empty value.
fn read_text(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
    secret: bool,
) -> Result<Option<Text>, ConfigError> {
    let raw = match node {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Null => return Ok(None),
        other => {
            let got = if secret {
                kind(other).to_string()
            } else {
                describe(other)
            };
            return Err(ctx.err(key, format!("expected a string, got {got}")));
        }
    };
    if let Yaml::Integer(i) = node {
        // yaml-rust2 keeps no source text for integers: `0123`, `0x10` and `+5` arrive as numbers.
        let shown = if secret {
            String::new()
        } else {
            format!(" (read as {i})")
        };
        ctx.warn(
            key,
            format!("is a YAML number{shown}; quote it if it is meant as text, e.g. '0123'"),
        );
    }
    let t = expand_vars(&raw, ctx.env).map_err(|e| ctx.err(key, e))?;
    if t.get().is_some() && !t.unset.is_empty() {
        ctx.warn(
            key,
            format!(
                "{} not set and expanded to an empty string",
                match t.unset.as_slice() {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(", ")),
                }
            ),
        );
    }
    Ok(Some(t))
}

fn read_bool(ctx: &mut Ctx, key: &str, node: &Yaml) -> Result<Option<bool>, ConfigError> {
    match node {
        Yaml::Boolean(b) => Ok(Some(*b)),
        Yaml::Null => Ok(None),
        Yaml::String(s) => {
            let t = expand_vars(s, ctx.env).map_err(|e| ctx.err(key, e))?;
            match t.value.to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(ctx.err(key, format!("expected true or false, got {:?}", t.value))),
            }
        }
        other => Err(ctx.err(
            key,
            format!("expected true or false, got {}", describe(other)),
        )),
    }
}

fn read_duration(ctx: &mut Ctx, key: &str, node: &Yaml) -> Result<Option<Duration>, ConfigError> {
    read_duration_with(ctx, key, node, false)
}

/// Like [`read_duration`], but zero (`0`, `0s`, a bare YAML `0`) is a value: it turns
/// something off.
fn read_duration_or_zero(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
) -> Result<Option<Duration>, ConfigError> {
    if let Yaml::Integer(0) = node {
        return Ok(Some(Duration::ZERO));
    }
    read_duration_with(ctx, key, node, true)
}

fn read_duration_with(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
    zero_allowed: bool,
) -> Result<Option<Duration>, ConfigError> {
    let value = match node {
        Yaml::Null => return Ok(None),
        Yaml::String(s) => {
            let t = expand_vars(s, ctx.env).map_err(|e| ctx.err(key, e))?;
            if t.value.is_empty() {
                return Ok(None);
            }
            t.value
        }
        Yaml::Integer(_) | Yaml::Real(_) => {
            return Err(ctx.err(
                key,
                format!(
                    "expected a duration like 1s or 500ms, got {} (a number needs a unit)",
                    describe(node)
                ),
            ))
        }
        other => {
            return Err(ctx.err(
                key,
                format!(
                    "expected a duration like 1s or 500ms, got {}",
                    describe(other)
                ),
            ))
        }
    };
    match parse_duration(&value) {
        Ok(d) if d.is_zero() && !zero_allowed => {
            Err(ctx.err(key, format!("must be greater than zero, got {value:?}")))
        }
        Ok(d) => Ok(Some(d)),
        Err(_) => Err(ctx.err(key, describe_duration_error(&value))),
    }
}

/// `snapshot: {interval, retention}` at `at` (top level or a database's).
fn read_snapshot_settings(
    ctx: &mut Ctx,
    at: &str,
    node: &Yaml,
) -> Result<(Option<Duration>, Option<Duration>), ConfigError> {
    let (mut interval, mut retention) = (None, None);
    match node {
        Yaml::Null => {}
        Yaml::Hash(map) => {
            for (k, v) in map {
                let name = key_name(k);
                let key = child(at, &name);
                match name.as_str() {
                    "interval" => interval = read_duration(ctx, &key, v)?,
                    "retention" => retention = read_duration(ctx, &key, v)?,
                    _ => ctx.warn(&key, "unknown key (known: interval, retention); ignored"),
                }
            }
        }
        other => {
            return Err(ctx.err(
                at,
                format!(
                    "expected a mapping like `{{interval: 24h, retention: 24h}}`, got {}",
                    describe(other)
                ),
            ))
        }
    }
    Ok((interval, retention))
}

/// Reads Litestream's top-level `snapshot: {interval, retention}`, `levels: [{interval}]`
/// (levels 1, 2, …; at most 8) and `l0-retention` (`0` keeps level-0 files until the
/// snapshot retention removes them) into `into`.
fn read_lifecycle(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
    into: &mut crate::lifecycle::Lifecycle,
) -> Result<(), ConfigError> {
    match (key, node) {
        (_, Yaml::Null) => {}
        ("snapshot", _) => {
            let (interval, retention) = read_snapshot_settings(ctx, "snapshot", node)?;
            into.snapshot_interval = interval.unwrap_or(into.snapshot_interval);
            into.snapshot_retention = retention.unwrap_or(into.snapshot_retention);
        }
        ("levels", Yaml::Array(list)) => {
            if list.len() > 8 {
                return Err(ctx.err(
                    "levels",
                    format!(
                        "at most 8 compaction levels (level 9 holds snapshots), got {}",
                        list.len()
                    ),
                ));
            }
            let mut levels = Vec::with_capacity(list.len());
            for (i, level) in list.iter().enumerate() {
                let at = format!("levels[{i}]");
                let interval = match level {
                    Yaml::Hash(map) => {
                        let mut interval = None;
                        for (k, v) in map {
                            let name = key_name(k);
                            if name == "interval" {
                                interval = read_duration(ctx, &child(&at, "interval"), v)?;
                            } else {
                                ctx.warn(
                                    &child(&at, &name),
                                    "unknown key (known: interval); ignored",
                                );
                            }
                        }
                        interval
                    }
                    _ => None,
                };
                let Some(interval) = interval else {
                    return Err(ctx.err(
                        &at,
                        format!(
                            "level {} needs an `interval`, like `{{interval: 30s}}`",
                            i + 1
                        ),
                    ));
                };
                levels.push(interval);
            }
            into.levels = levels;
        }
        ("l0-retention", _) => {
            if let Some(d) = read_duration_or_zero(ctx, key, node)? {
                into.l0_retention = d;
            }
        }
        (_, other) => {
            let shape = if key == "snapshot" {
                "a mapping like `{interval: 24h, retention: 24h}`"
            } else {
                "a list like `[{interval: 30s}, {interval: 5m}, {interval: 1h}]`"
            };
            return Err(ctx.err(key, format!("expected {shape}, got {}", describe(other))));
        }
    }
    Ok(())
}

/// The error for a required value that is missing or empty, naming the key and any variables.
fn missing(ctx: &Ctx, own: &Fields, global: &Fields, name: &str, requirement: &str) -> ConfigError {
    for f in [own, global] {
        if let Some(t) = f.texts.get(name).filter(|t| !t.raw.trim().is_empty()) {
            return ctx.err(&f.key(name), format!("{} ({requirement})", t.why_empty()));
        }
    }
    ctx.err(&own.at, format!("`{name}` is required ({requirement})"))
}

/// `own` first, then `global`, field by field (Litestream's `SetDefaults`).
fn merged<'a>(own: &'a Fields, global: &'a Fields, name: &str) -> Option<&'a str> {
    own.val(name).or_else(|| global.val(name))
}

/// Credentials from the file (replica, then top level, field by field); `None` if neither key is
/// set, so that the environment is used.
fn file_credentials(
    ctx: &mut Ctx,
    own: &Fields,
    global: &Fields,
) -> Result<Option<Credentials>, ConfigError> {
    match (
        merged(own, global, "access-key-id"),
        merged(own, global, "secret-access-key"),
    ) {
        (Some(ak), Some(sk)) => Ok(Some(Credentials {
            access_key_id: ak.to_string(),
            secret_access_key: sk.to_string(),
            session_token: None,
        })),
        (Some(_), None) => Err(missing(
            ctx,
            own,
            global,
            "secret-access-key",
            "access-key-id is set; give both or neither",
        )),
        (None, Some(_)) => Err(missing(
            ctx,
            own,
            global,
            "access-key-id",
            "secret-access-key is set; give both or neither",
        )),
        (None, None) => {
            for f in [own, global] {
                for name in SECRET_FIELDS {
                    if let Some(t) = f.texts.get(name).filter(|t| !t.raw.trim().is_empty()) {
                        let msg = format!(
                            "{}; using credentials from the environment (LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), if any",
                            t.why_empty()
                        );
                        ctx.warn(&f.key(name), msg);
                    }
                }
            }
            Ok(None)
        }
    }
}

/// The endpoint from `own`, else the URL, else `global`, with a scheme.
fn pick_endpoint(
    ctx: &Ctx,
    own: &Fields,
    from_url: Option<String>,
    global: &Fields,
) -> Result<Option<String>, ConfigError> {
    if let Some(e) = own.val("endpoint") {
        return normalize_endpoint(e)
            .map(Some)
            .map_err(|r| ctx.err(&own.key("endpoint"), r));
    }
    if from_url.is_some() {
        return Ok(from_url);
    }
    match global.val("endpoint") {
        Some(e) => normalize_endpoint(e)
            .map(Some)
            .map_err(|r| ctx.err(&global.key("endpoint"), r)),
        None => Ok(None),
    }
}

fn warn_s3_keys_ignored(ctx: &mut Ctx, own: &Fields, type_given: bool) {
    for name in [
        "bucket",
        "endpoint",
        "region",
        "force-path-style",
        "skip-verify",
        "access-key-id",
        "secret-access-key",
    ] {
        if own.given(name) {
            let hint = if type_given {
                ""
            } else {
                " (add `type: s3` for an s3 replica)"
            };
            ctx.warn(
                &own.key(name),
                format!("`{name}` is ignored for a file replica{hint}"),
            );
        }
    }
}

const SUPPORTED_TYPES: &[&str] = &["s3", "file"];

fn build_replica(
    ctx: &mut Ctx,
    own: &Fields,
    global: &Fields,
) -> Result<ReplicaConfig, ConfigError> {
    let ty = own.val("type").map(|t| t.to_ascii_lowercase());
    if let Some(t) = ty.as_deref() {
        if !SUPPORTED_TYPES.contains(&t) {
            let reason = if UNSUPPORTED_SCHEMES.contains(&t) || t == "gcs" {
                format!(
                    "replica type `{t}` is not supported by libreplica yet (supported: s3, file)"
                )
            } else {
                format!(
                    "unknown replica type `{t}` (supported: s3, file){}",
                    did_you_mean(t, SUPPORTED_TYPES.iter().copied())
                )
            };
            return Err(ctx.err(&own.key("type"), reason));
        }
    }
    let sync_interval = own
        .sync_interval
        .or(global.sync_interval)
        .unwrap_or(DEFAULT_SYNC_INTERVAL);

    let target = if let Some(url) = own.val("url") {
        let location = parse_location(url, ctx.env)
            .map_err(|r| ctx.err(&own.key("url"), format!("{}: {r}", redact_url(url))))?;
        match location {
            Location::File(dir) => {
                if ty.as_deref() == Some("s3") {
                    return Err(
                        ctx.err(&own.key("type"), "is s3, but `url` names a local directory")
                    );
                }
                if own.val("path").is_some() {
                    return Err(ctx.err(
                        &own.key("path"),
                        "cannot be combined with `url`; give one or the other",
                    ));
                }
                warn_s3_keys_ignored(ctx, own, true);
                ReplicaTarget::File { dir }
            }
            Location::S3(mut p) => {
                if ty.as_deref() == Some("file") {
                    return Err(ctx.err(&own.key("type"), "is file, but `url` is an s3:// URL"));
                }
                if own.val("path").is_some() {
                    return Err(ctx.err(
                        &own.key("path"),
                        "cannot be combined with `url`; put the prefix in the URL (s3://bucket/prefix)",
                    ));
                }
                if own.val("bucket").is_some() {
                    return Err(ctx.err(
                        &own.key("bucket"),
                        "cannot be combined with `url`; the bucket is the URL's host (s3://bucket/prefix)",
                    ));
                }
                let own_endpoint = own.val("endpoint").is_some();
                p.endpoint = pick_endpoint(ctx, own, p.endpoint.take(), global)?;
                p.region = own
                    .val("region")
                    .map(str::to_string)
                    .or(p.region)
                    .or_else(|| global.val("region").map(str::to_string));
                let url_fps = if own_endpoint {
                    None
                } else {
                    p.force_path_style
                };
                p.force_path_style = own
                    .bools
                    .get("force-path-style")
                    .copied()
                    .or(url_fps)
                    .or_else(|| global.bools.get("force-path-style").copied());
                p.skip_verify = own
                    .bools
                    .get("skip-verify")
                    .copied()
                    .or(p.skip_verify)
                    .or_else(|| global.bools.get("skip-verify").copied());
                p.timeouts = file_timeouts(own, global, p.timeouts);
                let creds = file_credentials(ctx, own, global)?;
                ReplicaTarget::S3(finalize_s3(p, creds, ctx.env)?)
            }
        }
    } else {
        match ty.as_deref().unwrap_or("file") {
            "s3" => {
                let bucket = merged(own, global, "bucket")
                    .ok_or_else(|| {
                        missing(ctx, own, global, "bucket", "an s3 replica needs a bucket")
                    })?
                    .to_string();
                if bucket.contains('/') || looks_like_url(&bucket) {
                    let key = if own.val("bucket").is_some() {
                        own.key("bucket")
                    } else {
                        "bucket".into()
                    };
                    return Err(ctx.err(
                        &key,
                        "must be a bucket name only; put the key prefix in `path` (or use `url: s3://bucket/prefix`)",
                    ));
                }
                let prefix = own.val("path").unwrap_or_default();
                if looks_like_url(prefix) {
                    return Err(ctx.err(
                        &own.key("path"),
                        "looks like a URL; use the `url` field for URLs",
                    ));
                }
                let p = S3Parts {
                    bucket,
                    prefix: clean_prefix(prefix),
                    endpoint: pick_endpoint(ctx, own, None, global)?,
                    region: merged(own, global, "region").map(str::to_string),
                    force_path_style: own
                        .bools
                        .get("force-path-style")
                        .or(global.bools.get("force-path-style"))
                        .copied(),
                    skip_verify: own
                        .bools
                        .get("skip-verify")
                        .or(global.bools.get("skip-verify"))
                        .copied(),
                    timeouts: file_timeouts(own, global, S3Timeouts::default()),
                };
                let creds = file_credentials(ctx, own, global)?;
                ReplicaTarget::S3(finalize_s3(p, creds, ctx.env)?)
            }
            _ => {
                let path = own.val("path").ok_or_else(|| {
                    missing(
                        ctx,
                        own,
                        &Fields::default(),
                        "path",
                        "a file replica needs the directory to replicate into, or give a `url`",
                    )
                })?;
                if looks_like_url(path) {
                    return Err(ctx.err(
                        &own.key("path"),
                        "looks like a URL; use the `url` field for URLs",
                    ));
                }
                let dir = absolutize(path, ctx.env).map_err(|r| ctx.err(&own.key("path"), r))?;
                warn_s3_keys_ignored(ctx, own, ty.is_some());
                ReplicaTarget::File { dir }
            }
        }
    };
    Ok(ReplicaConfig {
        target,
        sync_interval,
        lifecycle: crate::lifecycle::Lifecycle::default(),
        restore_if_missing: DEFAULT_RESTORE_IF_MISSING,
        validation_interval: own
            .validation_interval
            .or(global.validation_interval)
            .filter(|d| !d.is_zero()),
        shutdown_sync_timeout: DEFAULT_SHUTDOWN_SYNC_TIMEOUT,
    })
}

/// The replica's own timeouts, then the URL's, then the top level's.
fn file_timeouts(own: &Fields, global: &Fields, url: S3Timeouts) -> S3Timeouts {
    let pick = |name: &str, from_url: Option<Duration>| {
        own.durations
            .get(name)
            .copied()
            .or(from_url)
            .or_else(|| global.durations.get(name).copied())
    };
    S3Timeouts {
        connect: pick("connect-timeout", url.connect),
        read: pick("read-timeout", url.read),
    }
}

fn read_replica_fields(ctx: &mut Ctx, at: String, node: &Yaml) -> Result<Fields, ConfigError> {
    let Yaml::Hash(map) = node else {
        return Err(ctx.err(
            &at,
            format!(
                "expected a mapping with `type`/`url`, `bucket`, `path`…, got {}",
                describe(node)
            ),
        ));
    };
    let mut fields = Fields {
        at,
        ..Fields::default()
    };
    for (k, v) in map {
        let key = key_name(k);
        match REPLICA_FIELDS.iter().find(|f| **f == key) {
            Some(name) => fields.read(ctx, name, v)?,
            None => ctx.warn_key(Level::Replica, &fields.at.clone(), &key),
        }
    }
    Ok(fields)
}

/// One `dbs[i]` entry; `Ok(None)` for entries libreplica skips (directory replication).
fn parse_db(
    ctx: &mut Ctx,
    at: &str,
    node: &Yaml,
    global: &Fields,
) -> Result<Option<(PathBuf, ReplicaConfig)>, ConfigError> {
    let Yaml::Hash(map) = node else {
        return Err(ctx.err(
            at,
            format!(
                "expected a mapping with `path` and `replica`, got {}",
                describe(node)
            ),
        ));
    };
    let mut path: Option<Text> = None;
    let mut replica: Option<&Yaml> = None;
    let mut replicas: Option<&Yaml> = None;
    let mut has_dir = false;
    let mut restore_if_missing = None;
    for (k, v) in map {
        let key = key_name(k);
        match key.as_str() {
            "path" => path = read_text(ctx, &child(at, "path"), v, false)?,
            "restore-if-db-not-exists" => {
                restore_if_missing = read_bool(ctx, &child(at, &key), v)?;
            }
            "replica" => replica = Some(v).filter(|v| !v.is_null()),
            "replicas" => replicas = Some(v).filter(|v| !v.is_null()),
            "snapshot" => {} // read with the file's lifecycle settings
            _ => {
                has_dir |= key == "dir";
                ctx.warn_key(Level::Db, at, &key);
            }
        }
    }

    let db_path = match path.as_ref().and_then(Text::get) {
        Some(p) => {
            let p = p
                .strip_prefix("sqlite3://")
                .or_else(|| p.strip_prefix("sqlite://"))
                .unwrap_or(p);
            absolutize(p, ctx.env).map_err(|r| ctx.err(&child(at, "path"), r))?
        }
        None if has_dir && path.is_none() => {
            ctx.warn(
                at,
                "directory replication (`dir`) is not supported by libreplica yet; this entry is ignored",
            );
            return Ok(None);
        }
        None => {
            return Err(match &path {
                Some(t) => ctx.err(
                    &child(at, "path"),
                    format!("{} (the database file)", t.why_empty()),
                ),
                None => ctx.err(at, "`path` is required (the database file)"),
            })
        }
    };

    let (fields, extra) = match (replica, replicas) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                at,
                "cannot specify both `replica` and `replicas`; use `replica:`",
            ))
        }
        (Some(r), None) => (read_replica_fields(ctx, child(at, "replica"), r)?, 0),
        (None, Some(Yaml::Array(list))) => match list.first() {
            Some(first) => (
                read_replica_fields(ctx, format!("{at}.replicas[0]"), first)?,
                list.len() - 1,
            ),
            None => return Err(ctx.err(&child(at, "replicas"), "is empty; configure one replica")),
        },
        (None, Some(other)) => {
            return Err(ctx.err(
                &child(at, "replicas"),
                format!("expected a list of replicas, got {}", describe(other)),
            ))
        }
        (None, None) => {
            return Err(ctx.err(
                at,
                "no replica configured: add `replica:` with a `type` or `url`",
            ))
        }
    };
    let mut rc = build_replica(ctx, &fields, global)?;
    rc.restore_if_missing = restore_if_missing.unwrap_or(DEFAULT_RESTORE_IF_MISSING);
    if extra > 0 {
        ctx.warn(
            &child(at, "replicas"),
            format!(
                "{} replicas are configured; libreplica replicates only to the first ({}) and ignores the other {extra}",
                extra + 1,
                rc.url()
            ),
        );
    }
    Ok(Some((db_path, rc)))
}

/// Parses a `litestream.yml`-shaped config file. `path` is used for messages and
/// [`ConfigFile::path`]; `env` supplies `$VAR` values, the cwd for relative paths, and the
/// credential/endpoint/region fallbacks.
pub fn parse_config_file(path: &Path, text: &str, env: &Env) -> Result<ConfigFile, ConfigError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| ConfigError::Yaml {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut ctx = Ctx {
        file: path,
        env,
        warnings: Vec::new(),
    };
    if docs.len() > 1 {
        ctx.warn(
            "(document)",
            "the file has several YAML documents; only the first is used",
        );
    }
    let empty = yaml_rust2::yaml::Hash::new();
    let merged_root = docs.first().map(apply_merge_keys);
    let root = match merged_root.as_ref() {
        None | Some(Yaml::Null) | Some(Yaml::BadValue) => &empty,
        Some(Yaml::Hash(h)) => h,
        Some(other) => {
            return Err(ctx.err(
                "",
                format!(
                    "expected a mapping of settings such as `dbs:`, got {}",
                    describe(other)
                ),
            ))
        }
    };

    let mut global = Fields::default();
    let mut lifecycle = crate::lifecycle::Lifecycle::default();
    let mut shutdown_sync_timeout = None;
    let mut dbs_node: Option<&Yaml> = None;
    for (k, v) in root {
        let key = key_name(k);
        if key == "dbs" {
            dbs_node = Some(v);
        } else if key == "shutdown-sync-timeout" {
            shutdown_sync_timeout = read_duration_or_zero(&mut ctx, &key, v)?;
        } else if TOP_LIFECYCLE.contains(&key.as_str()) {
            read_lifecycle(&mut ctx, &key, v, &mut lifecycle)?;
        } else if let Some(name) = TOP_FIELDS.iter().find(|f| **f == key) {
            global.read(&mut ctx, name, v)?;
        } else {
            ctx.warn_key(Level::Top, "", &key);
        }
    }
    let global_credentials = file_credentials(&mut ctx, &global, &Fields::default())?;

    let mut dbs: Vec<(PathBuf, ReplicaConfig)> = Vec::new();
    match dbs_node {
        None | Some(Yaml::Null) => ctx.warn("dbs", "no databases are configured in this file"),
        Some(Yaml::Array(list)) => {
            // A database's `snapshot:` applies to every database unless the top level sets
            // it (Litestream's rule); two databases may not disagree.
            let top = root
                .iter()
                .find(|(k, _)| key_name(k) == "snapshot")
                .map(|(_, v)| v);
            let top_set = |field: &str| {
                top.and_then(Yaml::as_hash)
                    .is_some_and(|h| h.iter().any(|(k, v)| key_name(k) == field && !v.is_null()))
            };
            let (top_interval, top_retention) = (top_set("interval"), top_set("retention"));
            let mut from_dbs: [Option<(Duration, String)>; 2] = [None, None];
            for (i, node) in list.iter().enumerate() {
                let Some(snap) = node
                    .as_hash()
                    .and_then(|h| h.iter().find(|(k, _)| key_name(k) == "snapshot"))
                    .map(|(_, v)| v)
                else {
                    continue;
                };
                let at = format!("dbs[{i}].snapshot");
                let (interval, retention) = read_snapshot_settings(&mut ctx, &at, snap)?;
                for (slot, value, name) in [(0, interval, "interval"), (1, retention, "retention")]
                {
                    let Some(value) = value else { continue };
                    if let Some((prev, prev_at)) = &from_dbs[slot] {
                        if *prev != value {
                            return Err(ctx.err(
                                &child(&at, name),
                                format!(
                                    "conflicts with {prev_at}.{name}: Litestream applies a database's snapshot {name} to every database"
                                ),
                            ));
                        }
                    }
                    from_dbs[slot] = Some((value, at.clone()));
                }
            }
            if let (Some((d, _)), false) = (&from_dbs[0], top_interval) {
                lifecycle.snapshot_interval = *d;
            }
            if let (Some((d, _)), false) = (&from_dbs[1], top_retention) {
                lifecycle.snapshot_retention = *d;
            }
            for (i, node) in list.iter().enumerate() {
                let at = format!("dbs[{i}]");
                if let Some((db, rc)) = parse_db(&mut ctx, &at, node, &global)? {
                    if let Some(j) = dbs.iter().position(|(p, _)| *p == db) {
                        return Err(ctx.err(
                            &child(&at, "path"),
                            format!(
                                "names the same database as an earlier entry (#{}): {}",
                                j + 1,
                                db.display()
                            ),
                        ));
                    }
                    dbs.push((db, rc));
                }
            }
        }
        Some(other) => {
            return Err(ctx.err(
                "dbs",
                format!("expected a list of databases, got {}", describe(other)),
            ))
        }
    }
    for (_, rc) in dbs.iter_mut() {
        rc.lifecycle = lifecycle.clone();
        rc.shutdown_sync_timeout = shutdown_sync_timeout.unwrap_or(DEFAULT_SHUTDOWN_SYNC_TIMEOUT);
    }
    Ok(ConfigFile {
        path: path.to_path_buf(),
        dbs,
        warnings: ctx.warnings,
        global_credentials,
        global_sync_interval: global.sync_interval,
        lifecycle,
        global_validation_interval: global.validation_interval,
        shutdown_sync_timeout,
    })
}

/// Finds the config file: `REPLICA_CONFIG`, then `LITESTREAM_CONFIG` (a named file that does not
/// exist is an error; `REPLICA_CONFIG=off` means no file), then `<cwd>/config/litestream.yml`,
/// then `/etc/litestream.yml`. Relative and `~` paths are resolved with `env`.
pub fn locate_config_file(
    env: &Env,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Option<PathBuf>, ConfigError> {
    for var in ["REPLICA_CONFIG", "LITESTREAM_CONFIG"] {
        if let Some(v) = env.get(var) {
            let v = v.trim();
            if var == "REPLICA_CONFIG" && v.eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            let path = absolutize(v, env).map_err(|reason| ConfigError::Env {
                var: var.to_string(),
                reason,
            })?;
            if !exists(&path) {
                return Err(ConfigError::ConfigFileNotFound {
                    var: var.to_string(),
                    path,
                });
            }
            return Ok(Some(path));
        }
    }
    let local = normalize(&env.cwd.join("config").join("litestream.yml"));
    if exists(&local) {
        return Ok(Some(local));
    }
    let etc = PathBuf::from("/etc/litestream.yml");
    if exists(&etc) {
        return Ok(Some(etc));
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// Resolver
// ---------------------------------------------------------------------------------------------

const URI_PARAMS: &[&str] = &["replica", "replica_sync_interval"];

/// Everything needed to decide, at open time, what a database replicates to.
pub struct Resolver {
    env: Env,
    file: Option<ConfigFile>,
    /// `REPLICA_URL`, parsed: the parent location of every database no config entry names.
    replica_url: Option<ReplicaTarget>,
    /// `REPLICA_SYNC_INTERVAL`, parsed.
    env_sync_interval: Option<Duration>,
    /// `REPLICA_RESTORE_IF_MISSING`, parsed.
    env_restore_if_missing: Option<bool>,
    /// `REPLICA_VALIDATION_INTERVAL`, parsed (zero: no drills).
    env_validation_interval: Option<Duration>,
    /// `REPLICA_SHUTDOWN_SYNC_TIMEOUT`, parsed (zero: no wait).
    env_shutdown_sync_timeout: Option<Duration>,
    /// File-system canonicalization used for path matching (replaceable in tests).
    canonicalize: fn(&Path) -> Option<PathBuf>,
}

fn fs_canonicalize(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("config_file", &self.file.as_ref().map(|c| &c.path))
            .field(
                "dbs",
                &self
                    .file
                    .iter()
                    .flat_map(|c| {
                        c.dbs
                            .iter()
                            .map(|(p, rc)| (p.display().to_string(), rc.url()))
                    })
                    .collect::<Vec<_>>(),
            )
            .field(
                "replica_url",
                &self.replica_url.as_ref().map(ReplicaTarget::url),
            )
            .field("env_sync_interval", &self.env_sync_interval)
            .field("env_restore_if_missing", &self.env_restore_if_missing)
            .field("env_validation_interval", &self.env_validation_interval)
            .field("env_shutdown_sync_timeout", &self.env_shutdown_sync_timeout)
            .finish()
    }
}

/// A duration from the environment variable `var`, if set; zero is an error unless allowed.
fn env_duration(env: &Env, var: &str, zero_allowed: bool) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = env.get(var).map(str::trim) else {
        return Ok(None);
    };
    let reason = match parse_duration(v) {
        Ok(d) if zero_allowed || !d.is_zero() => return Ok(Some(d)),
        Ok(_) => format!("must be greater than zero, got {v:?}"),
        Err(_) => describe_duration_error(v),
    };
    Err(ConfigError::Env {
        var: var.to_string(),
        reason,
    })
}

/// A switch from the environment variable `var`, if set: `1`/`on`/`true`/`yes` or
/// `0`/`off`/`false`/`no`.
fn env_switch(env: &Env, var: &str) -> Result<Option<bool>, ConfigError> {
    let Some(v) = env.get(var).map(str::trim) else {
        return Ok(None);
    };
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Ok(Some(true)),
        "0" | "off" | "false" | "no" => Ok(Some(false)),
        _ => Err(ConfigError::Env {
            var: var.to_string(),
            reason: format!("expected 1 or 0 (on/off, true/false), got {v:?}"),
        }),
    }
}

impl Resolver {
    /// Validates `REPLICA_URL`, `REPLICA_SYNC_INTERVAL`, `REPLICA_RESTORE_IF_MISSING`,
    /// `REPLICA_VALIDATION_INTERVAL` and `REPLICA_SHUTDOWN_SYNC_TIMEOUT` (errors name the
    /// variable).
    pub fn new(env: Env, file: Option<ConfigFile>) -> Result<Resolver, ConfigError> {
        let global_creds = file.as_ref().and_then(|f| f.global_credentials.as_ref());
        let replica_url = match env.get("REPLICA_URL").map(str::trim) {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("off") => None,
            Some(v) => Some(parse_replica_url_with(v, &env, global_creds).map_err(|e| {
                ConfigError::Env {
                    var: "REPLICA_URL".to_string(),
                    reason: e.to_string(),
                }
            })?),
        };
        Ok(Resolver {
            env_sync_interval: env_duration(&env, "REPLICA_SYNC_INTERVAL", false)?,
            env_restore_if_missing: env_switch(&env, "REPLICA_RESTORE_IF_MISSING")?,
            env_validation_interval: env_duration(&env, "REPLICA_VALIDATION_INTERVAL", true)?,
            env_shutdown_sync_timeout: env_duration(&env, "REPLICA_SHUTDOWN_SYNC_TIMEOUT", true)?,
            env,
            file,
            replica_url,
            canonicalize: fs_canonicalize,
        })
    }

    /// Whether any database may get a `validation-interval` (so a drill scheduler is needed).
    pub fn schedules_drills(&self) -> bool {
        match self.env_validation_interval {
            Some(d) => !d.is_zero(),
            None => self.file.as_ref().is_some_and(|f| {
                f.global_validation_interval.is_some_and(|d| !d.is_zero())
                    || f.dbs.iter().any(|(_, rc)| rc.validation_interval.is_some())
            }),
        }
    }

    /// [`Env::from_process`] + [`locate_config_file`] + read + [`parse_config_file`] +
    /// [`Resolver::new`]. Returns the config file's warnings for the caller to log.
    pub fn from_process() -> Result<(Resolver, Vec<Warning>), ConfigError> {
        let env = Env::from_process();
        let mut warnings = Vec::new();
        let file = match locate_config_file(&env, &|p: &Path| p.exists())? {
            Some(path) => {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| ConfigError::ReadConfigFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                let parsed = parse_config_file(&path, &text, &env)?;
                warnings.extend(parsed.warnings.iter().cloned());
                Some(parsed)
            }
            None => None,
        };
        Ok((Resolver::new(env, file)?, warnings))
    }

    /// The parsed config file, if one was used.
    pub fn config_file(&self) -> Option<&ConfigFile> {
        self.file.as_ref()
    }

    /// The environment this resolver was built from.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// The config-file entry for `db` (already absolute and normalized): equal paths, or equal
    /// canonical paths when both exist.
    fn file_entry(&self, db: &Path) -> Option<&ReplicaConfig> {
        let file = self.file.as_ref()?;
        if let Some((_, rc)) = file.dbs.iter().find(|(p, _)| p == db) {
            return Some(rc);
        }
        let canon = (self.canonicalize)(db)?;
        file.dbs
            .iter()
            .find(|(p, _)| (self.canonicalize)(p).as_deref() == Some(canon.as_path()))
            .map(|(_, rc)| rc)
    }

    /// What `db_path` replicates to, or `None` for no replication. `db_path` is the path SQLite
    /// opens (a relative one is taken relative to the env's cwd); `uri_params` are the filename's
    /// URI parameters (first occurrence wins, as with `sqlite3_uri_parameter`). Target: URI
    /// `replica=` > config-file entry > `REPLICA_URL/<file name>`. Sync interval: URI
    /// `replica_sync_interval` > `REPLICA_SYNC_INTERVAL` > the entry's > the file's top-level > 1s.
    /// Boot restore, drill interval and shutdown wait: the environment variable > the entry's
    /// (its replica's, for `validation-interval`) > the file's top level > the default. An
    /// entry is used only when the URI gives no `replica=`.
    pub fn resolve(
        &self,
        db_path: &Path,
        uri_params: &[(String, String)],
    ) -> Result<Option<ReplicaConfig>, ConfigError> {
        let db = normalize(&self.env.cwd.join(db_path));
        let uri_err = |param: &str, reason: String| ConfigError::UriParam {
            db: db.clone(),
            param: param.to_string(),
            reason,
        };
        let mut replica_param: Option<&str> = None;
        let mut interval_param: Option<&str> = None;
        for (k, v) in uri_params {
            match k.as_str() {
                "replica" => {
                    replica_param.get_or_insert(v.as_str());
                }
                "replica_sync_interval" => {
                    interval_param.get_or_insert(v.as_str());
                }
                k if k.starts_with("replica") => {
                    return Err(uri_err(
                        k,
                        format!(
                        "unknown libreplica parameter (known: replica, replica_sync_interval){}",
                        did_you_mean(k, URI_PARAMS.iter().copied())
                    ),
                    ))
                }
                _ => {}
            }
        }
        if let Some(r) = replica_param {
            if r.trim().eq_ignore_ascii_case("off") {
                return Ok(None);
            }
        }
        let interval = match interval_param.map(str::trim) {
            None => None,
            Some(v) => match parse_duration(v) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    return Err(uri_err(
                        "replica_sync_interval",
                        format!("must be greater than zero, got {v:?}"),
                    ))
                }
                Err(_) => return Err(uri_err("replica_sync_interval", describe_duration_error(v))),
            },
        };

        let file_sync = self.file.as_ref().and_then(|f| f.global_sync_interval);
        let (target, entry) = if let Some(url) = replica_param {
            if url.trim().is_empty() {
                return Err(uri_err(
                    "replica",
                    "is empty; give a replica URL, or replica=off to disable replication"
                        .to_string(),
                ));
            }
            let creds = self
                .file
                .as_ref()
                .and_then(|f| f.global_credentials.as_ref());
            let target = parse_replica_url_with(url, &self.env, creds)
                .map_err(|e| uri_err("replica", e.to_string()))?;
            (target, None)
        } else if let Some(rc) = self.file_entry(&db) {
            (rc.target.clone(), Some(rc))
        } else if let Some(base) = &self.replica_url {
            let Some(name) = db.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                return Ok(None);
            };
            let target = match base {
                ReplicaTarget::File { dir } => ReplicaTarget::File {
                    dir: dir.join(&name),
                },
                ReplicaTarget::S3(t) => {
                    let mut t = t.clone();
                    t.prefix = if t.prefix.is_empty() {
                        name
                    } else {
                        format!("{}/{name}", t.prefix)
                    };
                    ReplicaTarget::S3(t)
                }
            };
            (target, None)
        } else {
            return Ok(None);
        };
        let sync_interval = interval
            .or(self.env_sync_interval)
            .or(entry.map(|rc| rc.sync_interval))
            .or(file_sync)
            .unwrap_or(DEFAULT_SYNC_INTERVAL);
        let file = self.file.as_ref();
        let validation_interval = match (self.env_validation_interval, entry) {
            (Some(d), _) => Some(d),
            (None, Some(rc)) => rc.validation_interval,
            (None, None) => file.and_then(|f| f.global_validation_interval),
        };
        Ok(Some(ReplicaConfig {
            target,
            sync_interval,
            lifecycle: file.map(|f| f.lifecycle.clone()).unwrap_or_default(),
            restore_if_missing: self
                .env_restore_if_missing
                .or(entry.map(|rc| rc.restore_if_missing))
                .unwrap_or(DEFAULT_RESTORE_IF_MISSING),
            validation_interval: validation_interval.filter(|d| !d.is_zero()),
            shutdown_sync_timeout: self
                .env_shutdown_sync_timeout
                .or(file.and_then(|f| f.shutdown_sync_timeout))
                .unwrap_or(DEFAULT_SHUTDOWN_SYNC_TIMEOUT),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/app/config/litestream.yml";

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::new(
            "/app",
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn parse(yaml: &str, env: &Env) -> Result<ConfigFile, ConfigError> {
        parse_config_file(Path::new(FILE), yaml, env)
    }

    fn s3(t: &ReplicaTarget) -> &S3Target {
        match t {
            ReplicaTarget::S3(s) => s,
            other => panic!("expected s3, got {other:?}"),
        }
    }

    fn file_dir(t: &ReplicaTarget) -> &Path {
        match t {
            ReplicaTarget::File { dir } => dir,
            other => panic!("expected file, got {other:?}"),
        }
    }

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err_text(r: Result<ConfigFile, ConfigError>) -> String {
        match r {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn resolver_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Resolver>();
        assert_send_sync::<ConfigError>();
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("1s"), Ok(ms(1000)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("2h"), Ok(ms(7_200_000)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("100µs"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("1h2m3s4ms"), Ok(ms(3_723_004)));
        assert_eq!(parse_duration("+2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 1s "), Ok(ms(1000)));
        for bad in [
            "",
            "1",
            "fast",
            "1x",
            "-1s",
            "s",
            "1.s.",
            "1d",
            "1s2",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(parse_duration("1").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn var_expansion() {
        let e = env(&[("A", "alpha"), ("B", "beta"), ("EMPTY", "")]);
        let x = |s: &str| expand_vars(s, &e).unwrap();
        assert_eq!(x("$A").value, "alpha");
        assert_eq!(x("${A}").value, "alpha");
        assert_eq!(x("pre-${A}-$B/post").value, "pre-alpha-beta/post");
        assert_eq!(x("$A_x").value, ""); // the name is A_x, as in Go's os.Expand
        assert_eq!(x("${A}_x").value, "alpha_x");
        assert_eq!(x("cost $$5").value, "cost $5");
        assert_eq!(x("a$").value, "a$");
        assert_eq!(x("$1").value, "$1");
        let t = x("$NOPE");
        assert_eq!(
            (t.value.as_str(), t.unset.clone()),
            ("", vec!["NOPE".to_string()])
        );
        assert_eq!(x("${EMPTY}").empty, vec!["EMPTY".to_string()]);
        assert!(expand_vars("${A", &e)
            .err()
            .unwrap()
            .contains("unterminated"));
        assert!(expand_vars("${A-B}", &e).is_err());

        let cfg = parse(
            "dbs:\n  - path: ${DB_DIR}/$DB_NAME\n    replica:\n      type: s3\n      bucket: ${BUCKET}\n      path: $PREFIX\n",
            &env(&[("DB_DIR", "/data"), ("DB_NAME", "app.db"), ("BUCKET", "bkt"), ("PREFIX", "a/b")]),
        )
        .unwrap();
        assert_eq!(cfg.dbs[0].0, PathBuf::from("/data/app.db"));
        let t = s3(&cfg.dbs[0].1.target);
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("bkt", "a/b"));
    }

    #[test]
    fn replica_and_replicas_forms() {
        let single = "dbs:\n  - path: /data/app.db\n    replica:\n      url: file:///var/backups/app\n      sync-interval: 5s\n";
        let list = "dbs:\n  - path: /data/app.db\n    replicas:\n      - url: file:///var/backups/app\n        sync-interval: 5s\n";
        for text in [single, list] {
            let cfg = parse(text, &env(&[])).unwrap();
            assert_eq!(cfg.dbs.len(), 1);
            let (db, rc) = &cfg.dbs[0];
            assert_eq!(db, Path::new("/data/app.db"));
            assert_eq!(file_dir(&rc.target), Path::new("/var/backups/app"));
            assert_eq!(rc.sync_interval, Duration::from_secs(5));
            assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        }
        let both = "dbs:\n  - path: /a.db\n    replica: {url: /x}\n    replicas: [{url: /y}]\n";
        assert!(err_text(parse(both, &env(&[]))).contains("dbs[0]: cannot specify both"));
        let none = "dbs:\n  - path: /a.db\n";
        assert!(err_text(parse(none, &env(&[]))).contains("dbs[0]: no replica configured"));
        let empty_list = "dbs:\n  - path: /a.db\n    replicas: []\n";
        assert!(err_text(parse(empty_list, &env(&[]))).contains("dbs[0].replicas: is empty"));
    }

    #[test]
    fn multiple_replicas_use_first_and_warn() {
        let text = "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/a\n      - url: file:///backup/a\n      - type: gs\n        bucket: x\n";
        let cfg = parse(text, &env(&[])).unwrap();
        assert_eq!(s3(&cfg.dbs[0].1.target).bucket, "bkt");
        let w = cfg
            .warnings
            .iter()
            .find(|w| w.key == "dbs[0].replicas")
            .expect("warning");
        assert!(
            w.message.contains("only to the first (s3://bkt/a)"),
            "{}",
            w.message
        );
        assert!(w.message.contains("ignores the other 2"), "{}", w.message);
    }

    #[test]
    fn relative_paths_resolve_against_cwd() {
        let text = "dbs:\n  - path: storage/../storage/./app.sqlite3\n    replica:\n      type: file\n      path: backups/app\n  - path: ~/notes.db\n    replica:\n      path: ~/backups/notes\n";
        let cfg = parse(text, &env(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(cfg.dbs[0].0, PathBuf::from("/app/storage/app.sqlite3"));
        assert_eq!(
            file_dir(&cfg.dbs[0].1.target),
            Path::new("/app/backups/app")
        );
        assert_eq!(cfg.dbs[1].0, PathBuf::from("/home/u/notes.db"));
        assert_eq!(
            file_dir(&cfg.dbs[1].1.target),
            Path::new("/home/u/backups/notes")
        );
        // `~` without HOME is an error naming the key.
        let e = err_text(parse(text, &env(&[])));
        assert!(
            e.contains("dbs[1].path") && e.contains("HOME is not set"),
            "{e}"
        );
    }

    const RAILS: &str = r#"
# Litestream config generated by litestream-ruby
dbs:
  - path: storage/production.sqlite3
    replicas:
      - type: s3
        bucket: $LITESTREAM_REPLICA_BUCKET
        path: storage/production.sqlite3
        endpoint: $LITESTREAM_REPLICA_ENDPOINT
        access-key-id: $LITESTREAM_ACCESS_KEY_ID
        secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY
  - path: storage/production_cache.sqlite3
    replicas:
      - type: s3
        bucket: $LITESTREAM_REPLICA_BUCKET
        path: storage/production_cache.sqlite3
        endpoint: $LITESTREAM_REPLICA_ENDPOINT
        access-key-id: $LITESTREAM_ACCESS_KEY_ID
        secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY
  - path: storage/production_queue.sqlite3
    replicas:
      - type: s3
        bucket: $LITESTREAM_REPLICA_BUCKET
        path: storage/production_queue.sqlite3
        endpoint: $LITESTREAM_REPLICA_ENDPOINT
        access-key-id: $LITESTREAM_ACCESS_KEY_ID
        secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY
  - path: storage/production_cable.sqlite3
    replicas:
      - type: s3
        bucket: $LITESTREAM_REPLICA_BUCKET
        path: storage/production_cable.sqlite3
        endpoint: $LITESTREAM_REPLICA_ENDPOINT
        access-key-id: $LITESTREAM_ACCESS_KEY_ID
        secret-access-key: $LITESTREAM_SECRET_ACCESS_KEY
"#;

    fn rails_env() -> Env {
        Env::new(
            "/rails",
            [
                ("LITESTREAM_REPLICA_BUCKET", "myapp-backups"),
                (
                    "LITESTREAM_REPLICA_ENDPOINT",
                    "0123abcd.r2.cloudflarestorage.com",
                ),
                ("LITESTREAM_ACCESS_KEY_ID", "AKIAEXAMPLEKEY12345"),
                ("LITESTREAM_SECRET_ACCESS_KEY", "sekrit/Value+xyz"),
            ],
        )
    }

    #[test]
    fn rails_four_databases() {
        let cfg = parse(RAILS, &rails_env()).unwrap();
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let names = [
            "production",
            "production_cache",
            "production_queue",
            "production_cable",
        ];
        assert_eq!(cfg.dbs.len(), 4);
        for ((db, rc), name) in cfg.dbs.iter().zip(names) {
            assert_eq!(db, &PathBuf::from(format!("/rails/storage/{name}.sqlite3")));
            let t = s3(&rc.target);
            assert_eq!(t.bucket, "myapp-backups");
            assert_eq!(t.prefix, format!("storage/{name}.sqlite3"));
            assert_eq!(
                t.endpoint.as_deref(),
                Some("https://0123abcd.r2.cloudflarestorage.com")
            );
            assert_eq!(
                t.region.as_deref(),
                Some("auto"),
                "R2 defaults to region auto"
            );
            assert!(t.force_path_style);
            assert!(!t.skip_verify);
            let c = t.credentials.as_ref().unwrap();
            assert_eq!(c.access_key_id, "AKIAEXAMPLEKEY12345");
            assert_eq!(c.secret_access_key, "sekrit/Value+xyz");
            assert_eq!(rc.sync_interval, DEFAULT_SYNC_INTERVAL);
        }
        // Resolution through the Resolver, from the app's cwd and by absolute path.
        let r = Resolver::new(rails_env(), Some(cfg)).unwrap();
        let rc = r
            .resolve(Path::new("storage/production_queue.sqlite3"), &[])
            .unwrap()
            .unwrap();
        assert_eq!(s3(&rc.target).prefix, "storage/production_queue.sqlite3");
        let rc = r
            .resolve(Path::new("/rails/storage/production.sqlite3"), &[])
            .unwrap()
            .unwrap();
        assert_eq!(
            rc.url(),
            "s3://myapp-backups/storage/production.sqlite3?endpoint=https://0123abcd.r2.cloudflarestorage.com&region=auto"
        );
        assert_eq!(
            r.resolve(Path::new("/rails/storage/development.sqlite3"), &[])
                .unwrap(),
            None
        );

        // Without the bucket variable the error names the key and the variable.
        let mut e = rails_env();
        e.vars.remove("LITESTREAM_REPLICA_BUCKET");
        let msg = err_text(parse(RAILS, &e));
        assert!(msg.contains("dbs[0].replicas[0].bucket"), "{msg}");
        assert!(
            msg.contains("LITESTREAM_REPLICA_BUCKET is not set"),
            "{msg}"
        );
        // Without the endpoint variable it is plain AWS S3 (endpoint is optional).
        let mut e = rails_env();
        e.vars.remove("LITESTREAM_REPLICA_ENDPOINT");
        let cfg = parse(RAILS, &e).unwrap();
        let t = s3(&cfg.dbs[0].1.target);
        assert_eq!(
            (t.endpoint.as_ref(), t.region.as_ref(), t.force_path_style),
            (None, None, false)
        );
    }

    #[test]
    fn s3_timeouts_from_replica_url_and_top_level() {
        let e = env(&[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK")]);
        let cfg = parse(
            "read-timeout: 45s\nconnect-timeout: 3s\ndbs:\n  - path: /app/a.db\n    replica:\n      url: s3://b/a?connect-timeout=2s&read-timeout=9s\n      read-timeout: 20s\n  - path: /app/b.db\n    replica:\n      type: s3\n      bucket: b\n      path: b\n",
            &e,
        )
        .unwrap();
        let t = |i: usize| s3(&cfg.dbs[i].1.target).timeouts;
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(
            t(0),
            S3Timeouts {
                connect: secs(2),
                read: secs(20)
            }
        );
        assert_eq!(
            t(1),
            S3Timeouts {
                connect: secs(3),
                read: secs(45)
            }
        );
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let plain = parse_replica_url("s3://b/x", &e).unwrap();
        assert_eq!(s3(&plain).timeouts, S3Timeouts::default());
        let msg = parse_replica_url("s3://b/x?read-timeout=soon", &e)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("read-timeout") && msg.contains("duration"),
            "{msg}"
        );
        let msg = err_text(parse(
            "dbs:\n  - path: /app/a.db\n    replica:\n      url: s3://b/a\n      connect-timeout: 0s\n",
            &e,
        ));
        assert!(
            msg.contains("connect-timeout") && msg.contains("greater than zero"),
            "{msg}"
        );
    }

    #[test]
    fn url_forms() {
        let e = env(&[("HOME", "/home/u")]);
        let file = |u: &str| match parse_replica_url(u, &e) {
            Ok(ReplicaTarget::File { dir }) => dir,
            other => panic!("{u}: {other:?}"),
        };
        assert_eq!(
            file("file:///srv/replicas/app.db"),
            PathBuf::from("/srv/replicas/app.db")
        );
        assert_eq!(file("file://localhost/srv/x"), PathBuf::from("/srv/x"));
        assert_eq!(file("file:/srv/x/"), PathBuf::from("/srv/x"));
        assert_eq!(file("file:///srv/my%20dir"), PathBuf::from("/srv/my dir"));
        assert_eq!(file("/srv/replicas/../r"), PathBuf::from("/srv/r"));
        assert_eq!(file("backups/app"), PathBuf::from("/app/backups/app"));
        assert_eq!(file("~/b"), PathBuf::from("/home/u/b"));
        for bad in ["file://relative/dir", "file:relative", "file://"] {
            let msg = parse_replica_url(bad, &e).unwrap_err().to_string();
            assert!(msg.contains("file URLs must be absolute"), "{bad}: {msg}");
        }
        for (bad, needle) in [
            ("gs://bucket/x", "not supported"),
            ("ftp://x/y", "unknown URL scheme"),
            ("s3:bucket/x", "without `//`"),
            ("s3://", "bucket is missing"),
            ("s3://b/x?endpiont=foo", "did you mean `endpoint`"),
            ("s3://b/x?force-path-style=maybe", "must be true or false"),
            ("s3://localhost:9000/x", "no bucket"),
            ("", "empty"),
        ] {
            let msg = parse_replica_url(bad, &e).unwrap_err().to_string();
            assert!(msg.contains(needle), "{bad}: {msg}");
        }

        let s = |u: &str| match parse_replica_url(u, &e) {
            Ok(ReplicaTarget::S3(t)) => t,
            other => panic!("{u}: {other:?}"),
        };
        let t = s("s3://bucket/prefix/app.db");
        assert_eq!(
            (t.bucket.as_str(), t.prefix.as_str()),
            ("bucket", "prefix/app.db")
        );
        assert_eq!(
            (t.endpoint, t.region, t.force_path_style, t.skip_verify),
            (None, None, false, false)
        );
        assert_eq!(t.credentials, None);
        assert_eq!(s("s3://bucket").prefix, "");
        assert_eq!(s("s3://bucket//a//b/").prefix, "a/b");
        let t = s("s3://b/p?endpoint=minio.internal:9000&region=us-west-1&force-path-style=false&skip-verify=true");
        assert_eq!(t.endpoint.as_deref(), Some("https://minio.internal:9000"));
        assert_eq!(t.region.as_deref(), Some("us-west-1"));
        assert!(!t.force_path_style && t.skip_verify);
        let t = s("s3://b/p?endpoint=localhost:9000");
        assert_eq!(t.endpoint.as_deref(), Some("http://localhost:9000"));
        assert!(t.force_path_style, "an endpoint implies path-style");
        let t = s("s3://b/p?endpoint=http%3A%2F%2F10.0.0.5%3A9000&forcePathStyle=true&skipVerify=true&storage-class=STANDARD");
        assert_eq!(t.endpoint.as_deref(), Some("http://10.0.0.5:9000"));
        assert!(t.force_path_style && t.skip_verify);
        let t = s("s3://b?endpoint=https://acct.r2.cloudflarestorage.com/");
        assert_eq!(
            t.endpoint.as_deref(),
            Some("https://acct.r2.cloudflarestorage.com")
        );
        assert_eq!(
            (t.region.as_deref(), t.force_path_style),
            (Some("auto"), true)
        );
        let t = s("s3://mybucket.s3.eu-west-1.amazonaws.com/db");
        assert_eq!(
            (t.bucket.as_str(), t.region.as_deref(), t.endpoint),
            ("mybucket", Some("eu-west-1"), None)
        );
        let t = s("s3://mybucket.localhost:9000/db");
        assert_eq!(
            (t.bucket.as_str(), t.endpoint.as_deref()),
            ("mybucket", Some("http://localhost:9000"))
        );
        let t = s("s3://b.nyc3.digitaloceanspaces.com/db");
        assert_eq!(
            t.endpoint.as_deref(),
            Some("https://nyc3.digitaloceanspaces.com")
        );
        assert!(!t.force_path_style);

        // Credentials in the URL are refused and never echoed.
        let msg = parse_replica_url("s3://AKID:topsecret@bucket/x", &e)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("must not be embedded") && !msg.contains("topsecret"),
            "{msg}"
        );

        // url() round-trips.
        for u in [
            "s3://b/p/q",
            "s3://b",
            "s3://b/p?endpoint=https://acct.r2.cloudflarestorage.com&region=auto",
            "s3://b/p?endpoint=http://localhost:9000&force-path-style=false&skip-verify=true",
            "s3://b/p?region=eu-west-1&force-path-style=true",
            "file:///srv/replicas/app.db",
            "file:///srv/my%20dir",
        ] {
            let t = parse_replica_url(u, &e).unwrap();
            assert_eq!(t.url(), u);
            assert_eq!(parse_replica_url(&t.url(), &e).unwrap(), t);
        }
    }

    #[test]
    fn s3_env_fallbacks_and_credentials_chain() {
        let url = "s3://b/p";
        let t = |vars: &[(&str, &str)]| match parse_replica_url(url, &env(vars)) {
            Ok(ReplicaTarget::S3(t)) => t,
            other => panic!("{other:?}"),
        };
        let aws = [
            ("AWS_ACCESS_KEY_ID", "AWSAK"),
            ("AWS_SECRET_ACCESS_KEY", "AWSSK"),
            ("AWS_SESSION_TOKEN", "TOK"),
        ];
        let c = t(&aws).credentials.unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("AWSAK", Some("TOK"))
        );
        let mut both = aws.to_vec();
        both.extend([
            ("LITESTREAM_ACCESS_KEY_ID", "LSAK"),
            ("LITESTREAM_SECRET_ACCESS_KEY", "LSSK"),
        ]);
        let c = t(&both).credentials.unwrap();
        assert_eq!(
            (
                c.access_key_id.as_str(),
                c.secret_access_key.as_str(),
                c.session_token
            ),
            ("LSAK", "LSSK", None)
        );
        let half = parse_replica_url(url, &env(&[("AWS_ACCESS_KEY_ID", "x")])).unwrap_err();
        assert_eq!(half.to_string(), "environment variable AWS_SECRET_ACCESS_KEY: is not set, but AWS_ACCESS_KEY_ID is; set both or neither");

        assert_eq!(
            t(&[("AWS_ENDPOINT_URL", "https://a.example")])
                .endpoint
                .as_deref(),
            Some("https://a.example")
        );
        let ep = t(&[
            ("AWS_ENDPOINT_URL", "https://a.example"),
            ("AWS_ENDPOINT_URL_S3", "b.example"),
        ]);
        assert_eq!(ep.endpoint.as_deref(), Some("https://b.example"));
        let ep = t(&[
            ("AWS_ENDPOINT_URL_S3", "b.example"),
            ("LITESTREAM_S3_ENDPOINT", "c.example"),
        ]);
        assert_eq!(ep.endpoint.as_deref(), Some("https://c.example"));
        assert!(ep.force_path_style);
        assert_eq!(
            t(&[("AWS_DEFAULT_REGION", "r1")]).region.as_deref(),
            Some("r1")
        );
        assert_eq!(
            t(&[("AWS_DEFAULT_REGION", "r1"), ("AWS_REGION", "r2")])
                .region
                .as_deref(),
            Some("r2")
        );
        let r2 = t(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_S3", "x.r2.cloudflarestorage.com"),
        ]);
        assert_eq!(r2.region.as_deref(), Some("auto"));

        // In the file: replica keys > top-level keys > environment.
        let text = "access-key-id: GLOBALAK\nsecret-access-key: ${GSK}\ndbs:\n  - path: /a.db\n    replica: {type: s3, bucket: b, access-key-id: OWNAK, secret-access-key: OWNSK}\n  - path: /b.db\n    replica: {type: s3, bucket: b}\n  - path: /c.db\n    replica: {type: s3, bucket: b, access-key-id: OWNAK}\n";
        let cfg = parse(
            text,
            &env(&[
                ("GSK", "GLOBALSK"),
                ("AWS_ACCESS_KEY_ID", "E"),
                ("AWS_SECRET_ACCESS_KEY", "E"),
            ]),
        )
        .unwrap();
        let creds = |i: usize| s3(&cfg.dbs[i].1.target).credentials.clone().unwrap();
        assert_eq!(
            (creds(0).access_key_id, creds(0).secret_access_key),
            ("OWNAK".into(), "OWNSK".into())
        );
        assert_eq!(
            (creds(1).access_key_id, creds(1).secret_access_key),
            ("GLOBALAK".into(), "GLOBALSK".into())
        );
        assert_eq!(
            (creds(2).access_key_id, creds(2).secret_access_key),
            ("OWNAK".into(), "GLOBALSK".into())
        );
        assert_eq!(
            cfg.global_credentials.as_ref().unwrap().access_key_id,
            "GLOBALAK"
        );

        // Half a pair in the file names the key and the variable.
        let text = "dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: b, access-key-id: AK, secret-access-key: $SK}\n";
        let msg = err_text(parse(text, &env(&[])));
        assert!(
            msg.contains("dbs[0].replica.secret-access-key: is empty")
                && msg.contains("SK is not set"),
            "{msg}"
        );
        // Both unset: fall back to the environment, with a warning.
        let text = "dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: b, access-key-id: $AK, secret-access-key: $SK}\n";
        let cfg = parse(
            text,
            &env(&[("AWS_ACCESS_KEY_ID", "E1"), ("AWS_SECRET_ACCESS_KEY", "E2")]),
        )
        .unwrap();
        assert_eq!(
            s3(&cfg.dbs[0].1.target)
                .credentials
                .as_ref()
                .unwrap()
                .access_key_id,
            "E1"
        );
        assert!(cfg.warnings.iter().any(
            |w| w.key == "dbs[0].replica.access-key-id" && w.message.contains("AK is not set")
        ));
    }

    #[test]
    fn file_replica_settings() {
        let text = "region: auto\nsync-interval: 10s\nskip-verify: true\ndbs:\n  - path: /a.db\n    replica:\n      type: s3\n      bucket: b\n      path: /x/y/\n      endpoint: https://s3.example.com\n      force-path-style: false\n  - path: /b.db\n    replica:\n      url: s3://bkt/pre?region=eu-1\n      endpoint: minio:9000\n      sync-interval: 250ms\n";
        let cfg = parse(text, &env(&[])).unwrap();
        let a = &cfg.dbs[0].1;
        let t = s3(&a.target);
        assert_eq!(
            (
                t.prefix.as_str(),
                t.endpoint.as_deref(),
                t.region.as_deref()
            ),
            ("x/y", Some("https://s3.example.com"), Some("auto"))
        );
        assert!(!t.force_path_style && t.skip_verify);
        assert_eq!(a.sync_interval, Duration::from_secs(10));
        let b = &cfg.dbs[1].1;
        let t = s3(&b.target);
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("bkt", "pre"));
        assert_eq!(
            (t.endpoint.as_deref(), t.region.as_deref()),
            (Some("https://minio:9000"), Some("eu-1"))
        );
        assert!(t.force_path_style);
        assert_eq!(b.sync_interval, Duration::from_millis(250));
        assert_eq!(cfg.global_sync_interval, Some(Duration::from_secs(10)));

        for (text, needle) in [
            ("dbs:\n  - path: /a.db\n    replica: {url: s3://b/x, bucket: c}\n", "dbs[0].replica.bucket: cannot be combined with `url`"),
            ("dbs:\n  - path: /a.db\n    replica: {url: s3://b/x, path: y}\n", "dbs[0].replica.path: cannot be combined"),
            ("dbs:\n  - path: /a.db\n    replica: {type: file, url: s3://b/x}\n", "dbs[0].replica.type: is file"),
            ("dbs:\n  - path: /a.db\n    replica: {type: gs, bucket: b}\n", "dbs[0].replica.type: replica type `gs` is not supported"),
            ("dbs:\n  - path: /a.db\n    replica: {type: s4, bucket: b}\n", "did you mean `s3`?"),
            ("dbs:\n  - path: /a.db\n    replica: {type: s3}\n", "dbs[0].replica: `bucket` is required"),
            ("dbs:\n  - path: /a.db\n    replica: {type: file}\n", "dbs[0].replica: `path` is required"),
            ("dbs:\n  - path: /a.db\n    replica: {path: 's3://b/x'}\n", "dbs[0].replica.path: looks like a URL"),
            ("dbs:\n  - path: /a.db\n    replica: {url: 'file://rel/x'}\n", "dbs[0].replica.url: file://rel/x: `file://rel` is not a local path"),
            ("dbs:\n  - replica: {url: /x}\n", "dbs[0]: `path` is required"),
            ("dbs:\n  - path: /a.db\n    replica: {url: /x}\n  - path: /b/../a.db\n    replica: {url: /y}\n", "dbs[1].path: names the same database"),
            ("dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: b, endpoint: 'ftp://x'}\n", "dbs[0].replica.endpoint: the endpoint must be an http"),
        ] {
            let msg = err_text(parse(text, &env(&[])));
            assert!(msg.contains(needle), "{text}\n=> {msg}");
            assert!(msg.starts_with(FILE), "{msg}");
        }
    }

    #[test]
    fn wrong_types_name_the_key_path() {
        for (text, expected) in [
            (
                "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://b/x\n        sync-interval: fast\n",
                "dbs[0].replicas[0].sync-interval: expected a duration like 1s or 500ms, got \"fast\"",
            ),
            (
                "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/x\n      force-path-style: maybe\n",
                "dbs[0].replica.force-path-style: expected true or false, got \"maybe\"",
            ),
            ("dbs: 3\n", "dbs: expected a list of databases, got 3"),
            ("dbs:\n  - 7\n", "dbs[0]: expected a mapping with `path` and `replica`, got 7"),
            ("dbs:\n  - path: /a.db\n    replica: [1]\n", "dbs[0].replica: expected a mapping"),
            ("dbs:\n  - path: /a.db\n    replicas: {url: /x}\n", "dbs[0].replicas: expected a list of replicas, got a mapping"),
            ("dbs:\n  - path: [a]\n    replica: {url: /x}\n", "dbs[0].path: expected a string, got a list"),
            ("sync-interval: 5\ndbs: []\n", "sync-interval: expected a duration like 1s or 500ms, got 5 (a number needs a unit)"),
            ("sync-interval: 0s\ndbs: []\n", "sync-interval: must be greater than zero"),
            ("skip-verify: 1\ndbs: []\n", "skip-verify: expected true or false, got 1"),
            ("- just\n- a list\n", "(top level): expected a mapping"),
            ("dbs:\n  - path: /a.db\n    replica: {url: s3://b/x, sync-interval: $SI}\n", "dbs[0].replica.sync-interval: expected a duration like 1s or 500ms, got \"soon\""),
        ] {
            let msg = err_text(parse(text, &env(&[("SI", "soon")])));
            assert!(msg.starts_with(&format!("{FILE}: {expected}")), "{text}\n=> {msg}");
        }
        // YAML syntax errors name the file.
        let msg = err_text(parse("dbs: [\n", &env(&[])));
        assert!(msg.starts_with(&format!("{FILE}: invalid YAML:")), "{msg}");
        // Variables make booleans and durations work too.
        let text = "dbs:\n  - path: /a.db\n    replica: {url: s3://b/x, force-path-style: $FPS, sync-interval: $SI}\n";
        let cfg = parse(text, &env(&[("FPS", "true"), ("SI", "2s")])).unwrap();
        assert!(s3(&cfg.dbs[0].1.target).force_path_style);
        assert_eq!(cfg.dbs[0].1.sync_interval, Duration::from_secs(2));
    }

    #[test]
    fn lifecycle_keys_apply_to_every_replica_with_litestream_defaults() {
        let cfg = parse(
            "dbs:\n  - path: /a.db\n    replica: {url: s3://b/a}\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(
            cfg.dbs[0].1.lifecycle,
            crate::lifecycle::Lifecycle::default()
        );
        let text = r#"
snapshot: {interval: 1h, retention: 72h}
levels:
  - interval: 10s
  - interval: 2m
l0-retention: 0
dbs:
  - path: /a.db
    replica: {url: s3://b/a}
"#;
        let cfg = parse(text, &env(&[])).unwrap();
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let l = &cfg.dbs[0].1.lifecycle;
        assert_eq!(l.snapshot_interval, Duration::from_secs(3600));
        assert_eq!(l.snapshot_retention, Duration::from_secs(72 * 3600));
        assert_eq!(
            l.levels,
            vec![Duration::from_secs(10), Duration::from_secs(120)]
        );
        assert_eq!(l.l0_retention, Duration::ZERO);
        assert_eq!(&cfg.lifecycle, l);
        let err = parse("levels: [{interval: 30s}, {}]\ndbs: []\n", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("levels[1]") && err.contains("interval"),
            "{err}"
        );
        let err = parse("snapshot: daily\ndbs: []\n", &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("snapshot") && err.contains("mapping"), "{err}");
        let per_db = "dbs:\n  - path: /a.db\n    snapshot: {retention: 48h}\n    replica: {url: s3://b/a}\n  - path: /b.db\n    replica: {url: s3://b/b}\n";
        let cfg = parse(per_db, &env(&[])).unwrap();
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        for (_, rc) in &cfg.dbs {
            assert_eq!(
                rc.lifecycle.snapshot_retention,
                Duration::from_secs(48 * 3600)
            );
        }
        let top_wins = format!("snapshot: {{retention: 1h}}\n{per_db}");
        let cfg = parse(&top_wins, &env(&[])).unwrap();
        assert_eq!(
            cfg.dbs[0].1.lifecycle.snapshot_retention,
            Duration::from_secs(3600)
        );
        let conflict = per_db.replace(
            "  - path: /b.db\n",
            "  - path: /b.db\n    snapshot: {retention: 12h}\n",
        );
        let err = parse(&conflict, &env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("dbs[1].snapshot.retention") && err.contains("conflicts"),
            "{err}"
        );
        let cfg = parse("snapshot: {intervall: 1h}\ndbs: []\n", &env(&[])).unwrap();
        assert!(
            cfg.warnings.iter().any(|w| w.key == "snapshot.intervall"),
            "{:?}",
            cfg.warnings
        );
    }

    const OPERATIONAL_KEYS: &str = r#"
validation-interval: 1h
shutdown-sync-timeout: 10s
dbs:
  - path: /a.db
    restore-if-db-not-exists: false
    replica: {url: /bk/a, validation-interval: 5m}
  - path: /b.db
    replica: {url: /bk/b}
  - path: /c.db
    restore-if-db-not-exists: true
    replica: {url: /bk/c, validation-interval: 0}
"#;

    /// (restore_if_missing, validation_interval, shutdown_sync_timeout) of a resolved database.
    fn operational(r: &Resolver, db: &str) -> (bool, Option<Duration>, Duration) {
        let rc = r.resolve(Path::new(db), &[]).unwrap().unwrap();
        (
            rc.restore_if_missing,
            rc.validation_interval,
            rc.shutdown_sync_timeout,
        )
    }

    #[test]
    fn restore_validation_and_shutdown_keys_db_over_top() {
        let (min, hour) = (Duration::from_secs(60), Duration::from_secs(3600));
        let cfg = parse(OPERATIONAL_KEYS, &env(&[])).unwrap();
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        assert_eq!(cfg.global_validation_interval, Some(hour));
        assert_eq!(cfg.shutdown_sync_timeout, Some(Duration::from_secs(10)));
        let r = Resolver::new(env(&[("REPLICA_URL", "/srv/r")]), Some(cfg)).unwrap();
        let ten = Duration::from_secs(10);
        // The entry's own setting, else the top level's (`0` turns the top level's off).
        assert_eq!(operational(&r, "/a.db"), (false, Some(5 * min), ten));
        assert_eq!(operational(&r, "/b.db"), (true, Some(hour), ten));
        assert_eq!(operational(&r, "/c.db"), (true, None, ten));
        // A database the file does not name takes the top level's.
        assert_eq!(operational(&r, "/x/other.db"), (true, Some(hour), ten));
        let p = params(&[("replica", "/uri/a")]);
        let rc = r.resolve(Path::new("/a.db"), &p).unwrap().unwrap();
        assert_eq!(
            (rc.restore_if_missing, rc.validation_interval),
            (true, Some(hour))
        );
        assert!(r.schedules_drills());

        // Nothing configured: Litestream's keys default as documented.
        let cfg = parse(
            "dbs:\n  - path: /a.db\n    replica: {url: /bk/a}\n",
            &env(&[]),
        )
        .unwrap();
        let r = Resolver::new(env(&[("REPLICA_URL", "/srv/r")]), Some(cfg)).unwrap();
        let defaults = (
            DEFAULT_RESTORE_IF_MISSING,
            None,
            DEFAULT_SHUTDOWN_SYNC_TIMEOUT,
        );
        assert_eq!(operational(&r, "/a.db"), defaults);
        assert_eq!(operational(&r, "/x/other.db"), defaults);
        assert!(!r.schedules_drills());
        let r = Resolver::new(env(&[("REPLICA_URL", "/srv/r")]), None).unwrap();
        assert_eq!(operational(&r, "/x/other.db"), defaults);

        // Zero is a value for both durations: no drills, no wait at the last close.
        let cfg = parse(
            "validation-interval: 0s\nshutdown-sync-timeout: 0\ndbs:\n  - path: /a.db\n    replica: {url: /bk/a}\n",
            &env(&[]),
        )
        .unwrap();
        let r = Resolver::new(env(&[]), Some(cfg)).unwrap();
        assert_eq!(operational(&r, "/a.db"), (true, None, Duration::ZERO));
        assert!(!r.schedules_drills());
        // Only one database's own interval still needs the scheduler.
        let cfg = parse(
            "dbs:\n  - path: /a.db\n    replica: {url: /bk/a, validation-interval: $VI}\n",
            &env(&[("VI", "90s")]),
        )
        .unwrap();
        assert_eq!(
            cfg.dbs[0].1.validation_interval,
            Some(Duration::from_secs(90))
        );
        assert!(Resolver::new(env(&[]), Some(cfg))
            .unwrap()
            .schedules_drills());
    }

    #[test]
    fn restore_validation_and_shutdown_keys_env_over_file() {
        let cfg = parse(OPERATIONAL_KEYS, &env(&[])).unwrap();
        let with = |vars: &[(&str, &str)]| Resolver::new(env(vars), Some(cfg.clone())).unwrap();
        let r = with(&[
            ("REPLICA_RESTORE_IF_MISSING", "1"),
            ("REPLICA_VALIDATION_INTERVAL", "30s"),
            ("REPLICA_SHUTDOWN_SYNC_TIMEOUT", "500ms"),
        ]);
        let (half, thirty) = (Duration::from_millis(500), Duration::from_secs(30));
        for db in ["/a.db", "/b.db", "/c.db"] {
            assert_eq!(operational(&r, db), (true, Some(thirty), half), "{db}");
        }
        let r = with(&[
            ("REPLICA_RESTORE_IF_MISSING", "off"),
            ("REPLICA_VALIDATION_INTERVAL", "0"),
            ("REPLICA_SHUTDOWN_SYNC_TIMEOUT", "0"),
        ]);
        for db in ["/a.db", "/b.db", "/c.db"] {
            assert_eq!(operational(&r, db), (false, None, Duration::ZERO), "{db}");
        }
        assert!(!r.schedules_drills());
        // Blank is unset: the file decides.
        let r = with(&[
            ("REPLICA_RESTORE_IF_MISSING", " "),
            ("REPLICA_VALIDATION_INTERVAL", ""),
        ]);
        assert_eq!(
            operational(&r, "/a.db"),
            (
                false,
                Some(Duration::from_secs(300)),
                Duration::from_secs(10)
            )
        );
        // Bad values fail, naming the variable.
        for (var, value, reason) in [
            (
                "REPLICA_RESTORE_IF_MISSING",
                "maybe",
                "expected 1 or 0 (on/off, true/false), got \"maybe\"",
            ),
            (
                "REPLICA_VALIDATION_INTERVAL",
                "often",
                "expected a duration like 1s or 500ms, got \"often\"",
            ),
            (
                "REPLICA_SHUTDOWN_SYNC_TIMEOUT",
                "2",
                "expected a duration like 1s or 500ms, got \"2\"",
            ),
        ] {
            let e = Resolver::new(env(&[(var, value)]), Some(cfg.clone()))
                .unwrap_err()
                .to_string();
            assert_eq!(e, format!("environment variable {var}: {reason}"));
        }
    }

    #[test]
    fn restore_validation_and_shutdown_keys_bad_values_name_the_key() {
        for (text, expected) in [
            (
                "dbs:\n  - path: /a.db\n    restore-if-db-not-exists: maybe\n    replica: {url: /bk/a}\n",
                "dbs[0].restore-if-db-not-exists: expected true or false, got \"maybe\"",
            ),
            (
                "dbs:\n  - path: /a.db\n    restore-if-db-not-exists: 1\n    replica: {url: /bk/a}\n",
                "dbs[0].restore-if-db-not-exists: expected true or false, got 1",
            ),
            (
                "validation-interval: soon\ndbs: []\n",
                "validation-interval: expected a duration like 1s or 500ms, got \"soon\"",
            ),
            (
                "dbs:\n  - path: /a.db\n    replicas:\n      - url: /bk/a\n        validation-interval: 5\n",
                "dbs[0].replicas[0].validation-interval: expected a duration like 1s or 500ms, got 5 (a number needs a unit)",
            ),
            (
                "shutdown-sync-timeout: -1s\ndbs: []\n",
                "shutdown-sync-timeout: expected a duration like 1s or 500ms, got \"-1s\"",
            ),
            (
                "shutdown-sync-timeout: {seconds: 2}\ndbs: []\n",
                "shutdown-sync-timeout: expected a duration like 1s or 500ms, got a mapping",
            ),
        ] {
            let msg = err_text(parse(text, &env(&[])));
            assert_eq!(msg, format!("{FILE}: {expected}"), "{text}");
        }
        // In the wrong place they are ignored with a warning that says where they go.
        let cfg = parse(
            "restore-if-db-not-exists: false\ndbs:\n  - path: /a.db\n    validation-interval: 1h\n    replica: {url: /bk/a, restore-if-db-not-exists: false}\n",
            &env(&[]),
        )
        .unwrap();
        let msg = |key: &str| {
            cfg.warnings
                .iter()
                .find(|w| w.key == key)
                .unwrap_or_else(|| panic!("no warning for {key}: {:?}", cfg.warnings))
                .message
                .clone()
        };
        assert!(msg("restore-if-db-not-exists").contains("is a database setting"));
        assert!(msg("dbs[0].validation-interval").contains("is a replica setting"));
        assert!(msg("dbs[0].replica.restore-if-db-not-exists").contains("is a database setting"));
        let cfg = parse(
            "dbs:\n  - path: /a.db\n    shutdown-sync-timeout: 1s\n    replica: {url: /bk/a}\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(
            cfg.warnings[0].to_string(),
            "litestream.yml: dbs[0].shutdown-sync-timeout: `shutdown-sync-timeout` is a top-level setting and is ignored here; put it at the top of the file, outside `dbs:`"
        );
        assert_eq!(
            cfg.dbs[0].1.shutdown_sync_timeout,
            DEFAULT_SHUTDOWN_SYNC_TIMEOUT
        );
        assert!(cfg.dbs[0].1.restore_if_missing);
        assert_eq!(cfg.dbs[0].1.validation_interval, None);
    }

    #[test]
    fn warnings_for_unused_misspelled_and_misplaced_keys() {
        let text = r#"
addr: ":9090"
logging: {level: debug}
snapshot: {interval: 24h}
dsb: []
dbs:
  - path: /a.db
    monitor-interval: 1s
    checkpoint-interval: 1m
    sync-interval: 1s
    replica:
      url: s3://b/a
      retention: 24h
      sync-intreval: 1s
      access_key_id: x
  - dir: /data
    pattern: "*.db"
    replica: {url: s3://b/dir}
"#;
        let cfg = parse(text, &env(&[])).unwrap();
        let msg = |key: &str| -> String {
            cfg.warnings
                .iter()
                .find(|w| w.key == key)
                .unwrap_or_else(|| panic!("no warning for {key}: {:?}", cfg.warnings))
                .message
                .clone()
        };
        assert_eq!(
            msg("addr"),
            "`addr` is accepted but not used by libreplica yet"
        );
        assert!(msg("logging").contains("not used by libreplica yet"));
        assert!(
            cfg.warnings.iter().all(|w| w.key != "snapshot"),
            "snapshot is used: {:?}",
            cfg.warnings
        );
        assert_eq!(
            cfg.dbs[0].1.lifecycle.snapshot_interval,
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(
            msg("dsb"),
            "unknown key `dsb` is ignored; did you mean `dbs`?"
        );
        assert!(msg("dbs[0].monitor-interval").contains("not used by libreplica yet"));
        assert!(msg("dbs[0].checkpoint-interval").contains("not used by libreplica yet"));
        assert!(msg("dbs[0].sync-interval").contains("is a replica setting"));
        assert_eq!(
            msg("dbs[0].replica.retention"),
            "`retention` is accepted but not used by libreplica yet"
        );
        assert_eq!(
            msg("dbs[0].replica.sync-intreval"),
            "unknown key `sync-intreval` is ignored; did you mean `sync-interval`?"
        );
        assert!(msg("dbs[0].replica.access_key_id").contains("did you mean `access-key-id`?"));
        assert!(msg("dbs[1]").contains("directory replication"));
        assert_eq!(cfg.dbs.len(), 1);
        let w = cfg
            .warnings
            .iter()
            .find(|w| w.key == "dbs[0].replica.retention")
            .unwrap();
        assert_eq!(
            w.to_string(),
            "litestream.yml: dbs[0].replica.retention: `retention` is accepted but not used by libreplica yet"
        );
        // A file replica warns about s3-only keys.
        let cfg = parse(
            "dbs:\n  - path: /a.db\n    replica: {path: /bk, bucket: b}\n",
            &env(&[]),
        )
        .unwrap();
        assert!(cfg.warnings[0]
            .message
            .contains("ignored for a file replica (add `type: s3`"));
        // Empty file: no dbs, a warning.
        let cfg = parse("", &env(&[])).unwrap();
        assert!(cfg.dbs.is_empty() && cfg.warnings[0].key == "dbs");
        // Unknown keys far from anything get no suggestion.
        let cfg = parse("dbs: []\nfoo: 1\n", &env(&[])).unwrap();
        assert_eq!(cfg.warnings[0].message, "unknown key `foo` is ignored");
    }

    #[test]
    fn yaml_anchors_and_merge_keys() {
        let text = r#"
replica_defaults: &defaults
  type: s3
  bucket: $BUCKET
  endpoint: s3.example.com
  sync-interval: 2s
dbs:
  - path: storage/production.sqlite3
    replica:
      <<: *defaults
      path: production
  - path: storage/production_cache.sqlite3
    replica:
      <<: *defaults
      path: cache
      sync-interval: 9s
  - path: storage/other.sqlite3
    replica: *defaults
"#;
        let cfg = parse(text, &env(&[("BUCKET", "bkt")])).unwrap();
        let got: Vec<(String, Duration)> = cfg
            .dbs
            .iter()
            .map(|(_, rc)| (rc.url(), rc.sync_interval))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "s3://bkt/production?endpoint=https://s3.example.com".to_string(),
                    Duration::from_secs(2)
                ),
                (
                    "s3://bkt/cache?endpoint=https://s3.example.com".to_string(),
                    Duration::from_secs(9)
                ),
                (
                    "s3://bkt?endpoint=https://s3.example.com".to_string(),
                    Duration::from_secs(2)
                ),
            ]
        );
        // The anchor holder is an unknown key (ignored, with a warning); nothing else warns.
        assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
        assert_eq!(cfg.warnings[0].key, "replica_defaults");
    }

    #[test]
    fn numbers_in_text_fields_warn() {
        let text = "dbs:\n  - path: /a.db\n    replica: {type: s3, bucket: 12345, path: 0x10, access-key-id: 0777, secret-access-key: '0777'}\n";
        let cfg = parse(text, &env(&[])).unwrap();
        let t = s3(&cfg.dbs[0].1.target);
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("12345", "16"));
        let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            w.iter()
                .any(|w| w.contains("replica.path: is a YAML number (read as 16)")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("replica.access-key-id: is a YAML number;")),
            "{w:?}"
        );
        assert!(!w.iter().any(|w| w.contains("secret-access-key")), "{w:?}");
    }

    #[test]
    fn replica_url_derivation_per_database() {
        let r = Resolver::new(env(&[("REPLICA_URL", "file:///srv/replicas")]), None).unwrap();
        let rc = r.resolve(Path::new("/x/app.db"), &[]).unwrap().unwrap();
        assert_eq!(file_dir(&rc.target), Path::new("/srv/replicas/app.db"));
        assert_eq!(rc.sync_interval, DEFAULT_SYNC_INTERVAL);

        let r = Resolver::new(env(&[("REPLICA_URL", "s3://bucket/prefix/")]), None).unwrap();
        let rc = r.resolve(Path::new("/x/app.db"), &[]).unwrap().unwrap();
        assert_eq!(rc.url(), "s3://bucket/prefix/app.db");
        let r = Resolver::new(env(&[("REPLICA_URL", "s3://bucket")]), None).unwrap();
        let rc = r.resolve(Path::new("data/other.db"), &[]).unwrap().unwrap();
        assert_eq!(s3(&rc.target).prefix, "other.db");

        // A config entry wins over REPLICA_URL; other databases use REPLICA_URL.
        let cfg = parse(
            "dbs:\n  - path: /x/app.db\n    replica: {url: /bk/app}\n",
            &env(&[]),
        )
        .unwrap();
        let r = Resolver::new(env(&[("REPLICA_URL", "/srv/r")]), Some(cfg)).unwrap();
        let rc = r.resolve(Path::new("/x/app.db"), &[]).unwrap().unwrap();
        assert_eq!(file_dir(&rc.target), Path::new("/bk/app"));
        let rc = r.resolve(Path::new("/x/other.db"), &[]).unwrap().unwrap();
        assert_eq!(file_dir(&rc.target), Path::new("/srv/r/other.db"));

        // Invalid environment values name the variable.
        let e = Resolver::new(env(&[("REPLICA_URL", "file://rel")]), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("environment variable REPLICA_URL: replica URL file://rel:"),
            "{e}"
        );
        let e = Resolver::new(env(&[("REPLICA_SYNC_INTERVAL", "fast")]), None)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "environment variable REPLICA_SYNC_INTERVAL: expected a duration like 1s or 500ms, got \"fast\"");
        // Nothing configured → no replication.
        let r = Resolver::new(env(&[]), None).unwrap();
        assert_eq!(r.resolve(Path::new("/x/app.db"), &[]).unwrap(), None);
    }

    #[test]
    fn precedence_uri_over_env_over_file() {
        let cfg = parse(
            "sync-interval: 7s\ndbs:\n  - path: /x/app.db\n    replica: {url: /bk/app, sync-interval: 3s}\n",
            &env(&[]),
        )
        .unwrap();
        let file_only = Resolver::new(env(&[]), Some(cfg.clone())).unwrap();
        let rc = file_only
            .resolve(Path::new("/x/app.db"), &[])
            .unwrap()
            .unwrap();
        assert_eq!(rc.sync_interval, Duration::from_secs(3));
        // The file's top-level sync-interval applies to databases it gets from REPLICA_URL.
        let r = Resolver::new(env(&[("REPLICA_URL", "/srv/r")]), Some(cfg.clone())).unwrap();
        let rc = r.resolve(Path::new("/x/other.db"), &[]).unwrap().unwrap();
        assert_eq!(rc.sync_interval, Duration::from_secs(7));

        let r = Resolver::new(
            env(&[("REPLICA_SYNC_INTERVAL", "20s"), ("REPLICA_URL", "/srv/r")]),
            Some(cfg),
        )
        .unwrap();
        // env over file
        let rc = r.resolve(Path::new("/x/app.db"), &[]).unwrap().unwrap();
        assert_eq!(
            (file_dir(&rc.target), rc.sync_interval),
            (Path::new("/bk/app"), Duration::from_secs(20))
        );
        // URI over env and file
        let p = params(&[
            ("vfs", "replica"),
            ("replica", "file:///uri/app"),
            ("replica_sync_interval", "100ms"),
        ]);
        let rc = r.resolve(Path::new("/x/app.db"), &p).unwrap().unwrap();
        assert_eq!(
            (file_dir(&rc.target), rc.sync_interval),
            (Path::new("/uri/app"), Duration::from_millis(100))
        );
        // URI interval alone keeps the file's target.
        let rc = r
            .resolve(
                Path::new("/x/app.db"),
                &params(&[("replica_sync_interval", "2s")]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            (file_dir(&rc.target), rc.sync_interval),
            (Path::new("/bk/app"), Duration::from_secs(2))
        );
        // URI replica for a database nothing else names.
        let rc = r
            .resolve(Path::new("/y/z.db"), &params(&[("replica", "s3://b/z")]))
            .unwrap()
            .unwrap();
        assert_eq!(rc.url(), "s3://b/z");
        // First occurrence wins.
        let p = params(&[("replica", "/first"), ("replica", "/second")]);
        assert_eq!(
            file_dir(&r.resolve(Path::new("/y/z.db"), &p).unwrap().unwrap().target),
            Path::new("/first")
        );

        // URI errors name the database and the parameter.
        let e = r
            .resolve(
                Path::new("/x/app.db"),
                &params(&[("replica_sync_intreval", "1s")]),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/x/app.db: URI parameter `replica_sync_intreval`")
                && e.contains("did you mean `replica_sync_interval`?"),
            "{e}"
        );
        let e = r
            .resolve(
                Path::new("/x/app.db"),
                &params(&[("replica_sync_interval", "soon")]),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected a duration like 1s or 500ms, got \"soon\""),
            "{e}"
        );
        let e = r
            .resolve(
                Path::new("/x/app.db"),
                &params(&[("replica", "file://rel")]),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("URI parameter `replica`") && e.contains("file URLs must be absolute"),
            "{e}"
        );
        let e = r
            .resolve(Path::new("/x/app.db"), &params(&[("replica", "")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("replica=off"), "{e}");
    }

    #[test]
    fn replica_off_disables() {
        let cfg = parse(
            "dbs:\n  - path: /x/app.db\n    replica: {url: /bk/app}\n",
            &env(&[]),
        )
        .unwrap();
        let r = Resolver::new(env(&[("REPLICA_URL", "s3://b")]), Some(cfg)).unwrap();
        for db in ["/x/app.db", "/x/other.db"] {
            let p = params(&[("replica", "off"), ("replica_sync_interval", "5s")]);
            assert_eq!(r.resolve(Path::new(db), &p).unwrap(), None);
            assert_eq!(
                r.resolve(Path::new(db), &params(&[("replica", "OFF")]))
                    .unwrap(),
                None
            );
            assert!(r.resolve(Path::new(db), &[]).unwrap().is_some());
        }
        // REPLICA_URL=off is the same as unset.
        let r = Resolver::new(env(&[("REPLICA_URL", "off")]), None).unwrap();
        assert_eq!(r.resolve(Path::new("/x/app.db"), &[]).unwrap(), None);
    }

    #[test]
    fn path_matching_lexical_and_canonical() {
        let cfg = parse(
            "dbs:\n  - path: /real/app.db\n    replica: {url: /bk/app}\n  - path: ./link/b.db\n    replica: {url: /bk/b}\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(cfg.dbs[1].0, PathBuf::from("/app/link/b.db"));
        let mut r = Resolver::new(env(&[]), Some(cfg)).unwrap();
        fn fake_canon(p: &Path) -> Option<PathBuf> {
            match p.to_str()? {
                "/link/app.db" | "/real/app.db" => Some(PathBuf::from("/real/app.db")),
                "/app/link/b.db" | "/elsewhere/b.db" => Some(PathBuf::from("/real/b.db")),
                _ => None,
            }
        }
        r.canonicalize = fake_canon;
        let dir = |db: &str| {
            r.resolve(Path::new(db), &[])
                .unwrap()
                .map(|rc| file_dir(&rc.target).to_path_buf())
        };
        assert_eq!(dir("/real/./x/../app.db"), Some(PathBuf::from("/bk/app")));
        assert_eq!(dir("/link/app.db"), Some(PathBuf::from("/bk/app")));
        assert_eq!(dir("/elsewhere/b.db"), Some(PathBuf::from("/bk/b")));
        assert_eq!(dir("link/b.db"), Some(PathBuf::from("/bk/b")));
        assert_eq!(dir("/nowhere/app.db"), None);
    }

    #[test]
    fn locating_the_config_file() {
        let none = |_: &Path| false;
        let all = |_: &Path| true;
        assert_eq!(locate_config_file(&env(&[]), &none).unwrap(), None);
        assert_eq!(
            locate_config_file(&env(&[]), &all).unwrap(),
            Some(PathBuf::from("/app/config/litestream.yml"))
        );
        let only_etc = |p: &Path| p == Path::new("/etc/litestream.yml");
        assert_eq!(
            locate_config_file(&env(&[]), &only_etc).unwrap(),
            Some(PathBuf::from("/etc/litestream.yml"))
        );
        let e = env(&[
            ("REPLICA_CONFIG", "conf/r.yml"),
            ("LITESTREAM_CONFIG", "/l.yml"),
        ]);
        assert_eq!(
            locate_config_file(&e, &all).unwrap(),
            Some(PathBuf::from("/app/conf/r.yml"))
        );
        let e = env(&[("LITESTREAM_CONFIG", "/l.yml")]);
        assert_eq!(
            locate_config_file(&e, &all).unwrap(),
            Some(PathBuf::from("/l.yml"))
        );
        let err = locate_config_file(&e, &only_etc).unwrap_err();
        assert_eq!(
            err.to_string(),
            "LITESTREAM_CONFIG names the config file /l.yml, which does not exist"
        );
        let err = locate_config_file(&env(&[("REPLICA_CONFIG", "/r.yml")]), &none).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("REPLICA_CONFIG names the config file /r.yml"));
        assert_eq!(
            locate_config_file(
                &env(&[("REPLICA_CONFIG", "off"), ("LITESTREAM_CONFIG", "/l.yml")]),
                &all
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn secrets_never_appear_in_output() {
        const SECRET: &str = "TOPSECRETvalue42";
        const TOKEN: &str = "SESSIONtoken99";
        let e = env(&[
            ("SK", SECRET),
            ("AWS_ACCESS_KEY_ID", "AKIAENVKEY000000"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", TOKEN),
            (
                "REPLICA_URL",
                "s3://bucket/pre?endpoint=https://acct.r2.cloudflarestorage.com",
            ),
        ]);
        let text = format!(
            "access-key-id: GLOBALAKID00000\nsecret-access-key: {SECRET}\ndbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: b, access-key-id: AKIAOWN000000, secret-access-key: $SK}}\n  - path: /b.db\n    replica: {{url: s3://b/x}}\n"
        );
        let cfg = parse(&text, &e).unwrap();
        assert_eq!(
            s3(&cfg.dbs[0].1.target)
                .credentials
                .as_ref()
                .unwrap()
                .secret_access_key,
            SECRET
        );
        let r = Resolver::new(e.clone(), Some(cfg.clone())).unwrap();
        let from_env = r.resolve(Path::new("/c.db"), &[]).unwrap().unwrap();
        assert_eq!(
            s3(&from_env.target)
                .credentials
                .as_ref()
                .unwrap()
                .session_token
                .as_deref(),
            None
        );
        let p = params(&[("replica", "s3://b/uri")]);
        let from_uri = r.resolve(Path::new("/c.db"), &p).unwrap().unwrap();
        let env_only = parse_replica_url("s3://b/y", &e).unwrap();
        assert_eq!(
            s3(&env_only)
                .credentials
                .as_ref()
                .unwrap()
                .session_token
                .as_deref(),
            Some(TOKEN)
        );

        let mut outputs: Vec<String> = vec![
            format!("{cfg:?}"),
            format!("{cfg:#?}"),
            format!("{r:?}"),
            format!("{e:?}"),
            format!("{from_env:?}"),
            format!("{from_uri:?}"),
            format!("{env_only:?}"),
            env_only.url(),
            from_env.url(),
            format!("{:?}", s3(&env_only).credentials),
        ];
        for (_, rc) in &cfg.dbs {
            outputs.push(rc.url());
            outputs.push(format!("{rc:?}"));
        }
        outputs.extend(cfg.warnings.iter().map(|w| w.to_string()));
        // Errors that involve secret-bearing values.
        let errors = [
            parse(&format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: b, secret-access-key: [{SECRET}]}}\n"), &e).unwrap_err(),
            parse(&format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: b, secret-access-key: '{SECRET}${{oops'}}\n"), &e).unwrap_err(),
            parse(&format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: b, secret-access-key: '{SECRET}${{a-b}}'}}\n"), &e).unwrap_err(),
            parse(&format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: b, secret-access-key: {SECRET}}}\n"), &env(&[])).unwrap_err(),
            parse(&format!("dbs:\n  - path: /a.db\n    replica: {{url: 's3://AK:{SECRET}@b/x?endpoint=http://u:{SECRET}@h'}}\n"), &e).unwrap_err(),
            parse(&format!("dbs:\n  - path: /a.db\n    replica: {{url: 's3://b/x?secret={SECRET}'}}\n"), &e).unwrap_err(),
            parse(&format!("dbs:\n  - path: /a.db\n    replica: {{type: s3, bucket: b, endpoint: 'http://u:{SECRET}@h'}}\n"), &e).unwrap_err(),
            parse_replica_url(&format!("s3://AK:{SECRET}@b/x"), &e).unwrap_err(),
            parse_replica_url(&format!("s3://b/x?endpoint=https://u:{SECRET}@host"), &e).unwrap_err(),
            parse_replica_url(&format!("gs://AK:{SECRET}@b/x"), &e).unwrap_err(),
            Resolver::new(env(&[("REPLICA_URL", &format!("s3://a:{SECRET}@b"))]), None).unwrap_err(),
            parse_replica_url("s3://b", &env(&[("LITESTREAM_SECRET_ACCESS_KEY", SECRET)])).unwrap_err(),
            r.resolve(Path::new("/c.db"), &params(&[("replica", &format!("s3://k:{SECRET}@b"))])).unwrap_err(),
        ];
        for err in &errors {
            outputs.push(err.to_string());
            outputs.push(format!("{err:?}"));
        }
        for out in &outputs {
            assert!(!out.contains(SECRET), "secret leaked: {out}");
            assert!(!out.contains(TOKEN), "token leaked: {out}");
        }
        let c = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: SECRET.into(),
            session_token: Some(TOKEN.into()),
        };
        assert_eq!(
            format!("{c:?}"),
            "Credentials { access_key_id: \"****MPLE\", secret_access_key: \"<redacted>\", session_token: Some(\"<redacted>\") }"
        );
    }
}
