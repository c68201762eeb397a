//! Resolved configuration types: what a database replicates to and how ([`ReplicaConfig`]), a
//! parsed config file ([`ConfigFile`]), the defaults that apply when nothing configures a
//! setting, and the warning and error types every other part of `config` reports with. Holds
//! data and its formatting only: no parsing, no environment, no I/O.
//!
//! Secrets (secret access keys, session tokens) never appear in any `Debug` or `Display` output
//! of these types.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

/// How long the replica's lease lasts without renewal, unless `REPLICA_LEASE_TTL` says.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_millis(crate::lease::LEASE_TTL_MS);

/// One destination's resolved configuration (a database has one or more); the name the
/// module docs use for [`ReplicaConfig`].
pub type DbConfig = ReplicaConfig;

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

/// Where one destination of a database replicates to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaTarget {
    /// The replica directory for this database (`file:///srv/replicas/app.db` → `/srv/replicas/app.db`).
    /// Always absolute and lexically normalized.
    File {
        dir: PathBuf,
    },
    S3(S3Target),
}

impl ReplicaTarget {
    /// The kind of place, as a replica's `type` names it: `file` or `s3`. A destination
    /// without a `name:` is named after it.
    pub fn kind(&self) -> &'static str {
        match self {
            ReplicaTarget::File { .. } => "file",
            ReplicaTarget::S3(_) => "s3",
        }
    }
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

/// One destination of a database: where it replicates to and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// The destination's short name, unique among the database's destinations: the
    /// replica's `name:`, else its target's kind (`s3`, `file`; `s3-2`, `s3-3`… for the
    /// second and later unnamed ones of a kind). 1 to 32 of `[A-Za-z0-9_-]`.
    pub name: String,
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
    /// How long the replica's lease lasts without renewal (`REPLICA_LEASE_TTL`;
    /// [`DEFAULT_LEASE_TTL`] otherwise); never zero.
    pub lease_ttl: Duration,
    /// The most requests a month (`request-budget`, `REPLICA_REQUEST_BUDGET`); `None`: no cap.
    pub request_budget: Option<crate::budget::RequestBudget>,
    /// What requests cost, for the estimate status shows (`request-price`: Class A, per
    /// million; R2's prices otherwise).
    pub prices: crate::budget::Prices,
    /// Client-side encryption (`age:`, `REPLICA_AGE_*`); `None`: objects are plaintext.
    pub age: Option<AgeConfig>,
}

#[cfg(test)]
impl ReplicaConfig {
    /// A replica in the directory `dir`, every other setting at its default (unit tests).
    pub fn in_dir_for_tests(dir: std::path::PathBuf) -> ReplicaConfig {
        ReplicaConfig {
            name: "file".to_string(),
            target: ReplicaTarget::File { dir },
            sync_interval: DEFAULT_SYNC_INTERVAL,
            lifecycle: crate::lifecycle::Lifecycle::default(),
            restore_if_missing: DEFAULT_RESTORE_IF_MISSING,
            validation_interval: None,
            shutdown_sync_timeout: DEFAULT_SHUTDOWN_SYNC_TIMEOUT,
            lease_ttl: DEFAULT_LEASE_TTL,
            request_budget: None,
            prices: Default::default(),
            age: None,
        }
    }
}

/// An encrypted replica's keys as configured: every LTX object is sealed to `recipients`
/// (`age1…`; none: the identities' own public keys) and opened with any of `identities`.
/// Checked when read; identity files are read when the store opens. `Debug` never shows an
/// identity's secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AgeConfig {
    pub recipients: Vec<String>,
    pub identities: Vec<IdentitySource>,
}

/// Where an age identity comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `AGE-SECRET-KEY-1…` written in the config.
    Inline(String),
    /// An identity file (`age-keygen -o key.txt`), absolute.
    File(PathBuf),
}

impl fmt::Debug for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentitySource::Inline(_) => write!(f, "<inline identity, redacted>"),
            IdentitySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl fmt::Debug for AgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeConfig")
            .field("recipients", &self.recipients)
            .field("identities", &self.identities)
            .finish()
    }
}

impl AgeConfig {
    /// Checks what can be checked without reading files: recipients parse, inline
    /// identities parse, and there is at least one identity.
    pub fn check(&self) -> Result<(), String> {
        if self.identities.is_empty() {
            return Err("age: no identity given; compaction and restore decrypt objects, so at least one identity (AGE-SECRET-KEY-1… or an identity file) is required".into());
        }
        let mut inline = Vec::new();
        for i in &self.identities {
            if let IdentitySource::Inline(text) = i {
                inline.extend(
                    crate::seal::parse_identities(text, "age identity")
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        if inline.len() == self.identities.len() {
            crate::seal::Keys::new(&self.recipients, inline).map_err(|e| e.to_string())?;
        } else {
            for (i, r) in self.recipients.iter().enumerate() {
                crate::seal::Keys::check_recipient(i, r).map_err(|e| e.to_string())?;
            }
            if self.recipients.len() > crate::seal::MAX_RECIPIENTS {
                return Err(format!(
                    "age: {} recipients; at most {}",
                    self.recipients.len(),
                    crate::seal::MAX_RECIPIENTS
                ));
            }
        }
        Ok(())
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

/// A parsed config file.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// Absolute, lexically normalized database path → its destinations (at least one, named
    /// apart, no two with the same target), each in file order.
    pub dbs: Vec<(PathBuf, Vec<ReplicaConfig>)>,
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
    /// The file's top-level `request-budget` and `request-price`: the default of its
    /// entries' replicas, and of targets given by URI parameters and `REPLICA_URL`.
    pub global_request_budget: Option<crate::budget::RequestBudget>,
    pub global_prices: crate::budget::Prices,
}
