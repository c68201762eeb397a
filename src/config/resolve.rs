//! The [`Resolver`]: decides at open time what one database replicates to (each of its
//! destinations), from the URI parameters of its filename, the `REPLICA_*` environment, the
//! config file's entry for it and the file's top level, in that order, then the defaults.
//! [`Resolver::from_process`] is the only function in `config` that touches the process
//! (environment, working directory, the config file); everything else here works on what it
//! was given, except the replaceable `canonicalize` used to match database paths.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::discovery::{locate_config_file, read_config_file};
use super::env::{env_duration, env_switch, Env};
use super::model::{
    AgeConfig, ConfigError, ConfigFile, IdentitySource, ReplicaConfig, ReplicaTarget, Warning,
    DEFAULT_LEASE_TTL, DEFAULT_RESTORE_IF_MISSING, DEFAULT_SHUTDOWN_SYNC_TIMEOUT,
    DEFAULT_SYNC_INTERVAL,
};
use super::paths::normalize;
use super::schema::did_you_mean;
use super::scratch::ScratchDirs;
use super::url::parse_replica_url_with;
use super::values::{describe_duration_error, parse_duration};
use super::yaml::parse_config_file;
use crate::lifecycle::Expiry;

const URI_PARAMS: &[&str] = &["replica", "replica_sync_interval"];

/// A database's destinations: each target with the config-file replica it came from (`None`
/// for one given by a URL).
type Destinations<'a> = Vec<(ReplicaTarget, Option<&'a ReplicaConfig>)>;

/// Everything needed to decide, at open time, what a database replicates to.
pub struct Resolver {
    env: Env,
    file: Option<ConfigFile>,
    /// `REPLICA_URL`, parsed: the parent location of every database no config entry names.
    replica_url: Option<ReplicaTarget>,
    /// The temporary directories whose files `REPLICA_URL` does not select.
    scratch: ScratchDirs,
    /// `REPLICA_SYNC_INTERVAL`, parsed.
    env_sync_interval: Option<Duration>,
    /// `REPLICA_RESTORE_IF_MISSING`, parsed.
    env_restore_if_missing: Option<bool>,
    /// `REPLICA_VALIDATION_INTERVAL`, parsed (zero: no drills).
    env_validation_interval: Option<Duration>,
    /// `REPLICA_SHUTDOWN_SYNC_TIMEOUT`, parsed (zero: no wait).
    env_shutdown_sync_timeout: Option<Duration>,
    /// `REPLICA_LEASE_TTL`, parsed (never zero).
    env_lease_ttl: Option<Duration>,
    /// `REPLICA_REQUEST_BUDGET`, parsed at the file's top-level price (R2's otherwise).
    env_request_budget: Option<crate::budget::RequestBudget>,
    /// File-system canonicalization used for path matching (replaceable in tests).
    pub(super) canonicalize: fn(&Path) -> Option<PathBuf>,
    /// Whether a database in a temporary directory is a scratch file as far as the file
    /// system says (replaceable in tests): see [`fs_scratch_file`].
    pub(super) scratch_file: fn(&Path) -> bool,
}

fn fs_canonicalize(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

/// A file a program made for itself: it exists before SQLite opens it (`mkstemp` creates it
/// empty) and nothing of libreplica's is beside it. A database missing at open is not one
/// (in a `/tmp` that starts empty, as on AWS Lambda, it is the database a boot-time restore
/// brings back), nor is one with a spool (it has been replicated before).
pub(super) fn fs_scratch_file(db: &Path) -> bool {
    let mut spool = db.as_os_str().to_owned();
    spool.push("-replica");
    db.exists() && std::fs::symlink_metadata(PathBuf::from(spool)).is_err()
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
                    .flat_map(|c| &c.dbs)
                    .flat_map(|(p, replicas)| {
                        replicas
                            .iter()
                            .map(|rc| (p.display().to_string(), rc.url()))
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
            env_lease_ttl: env_duration(&env, "REPLICA_LEASE_TTL", false)?,
            env_request_budget: env_request_budget(&env, file.as_ref())?,
            scratch: ScratchDirs::of_env(&env),
            env,
            file,
            replica_url,
            canonicalize: fs_canonicalize,
            scratch_file: fs_scratch_file,
        })
    }

    /// Whether any database may get a `validation-interval` (so a drill scheduler is needed).
    pub fn schedules_drills(&self) -> bool {
        match self.env_validation_interval {
            Some(d) => !d.is_zero(),
            None => self.file.as_ref().is_some_and(|f| {
                f.global_validation_interval.is_some_and(|d| !d.is_zero())
                    || f.dbs
                        .iter()
                        .flat_map(|(_, replicas)| replicas)
                        .any(|rc| rc.validation_interval.is_some())
            }),
        }
    }

    /// [`Env::from_process`] + [`locate_config_file`] + read + [`Resolver::from_config_text`].
    /// Returns the config file's warnings for the caller to log.
    pub fn from_process() -> Result<(Resolver, Vec<Warning>), ConfigError> {
        let env = Env::from_process();
        match locate_config_file(&env, &|p: &Path| p.exists())? {
            Some(path) => {
                let text = read_config_file(&path)?;
                Resolver::from_config_text(env, &path, &text)
            }
            None => Ok((Resolver::new(env, None)?, Vec::new())),
        }
    }

    /// A resolver for the config file at `path` (named in messages) holding `text`, as read
    /// by the bounded read ([`config_text`](super::config_text) is its pure part):
    /// [`parse_config_file`] + [`Resolver::new`]. Pure; returns the file's warnings for the
    /// caller to log.
    pub fn from_config_text(
        env: Env,
        path: &Path,
        text: &str,
    ) -> Result<(Resolver, Vec<Warning>), ConfigError> {
        let parsed = parse_config_file(path, text, &env)?;
        let warnings = parsed.warnings.clone();
        Ok((Resolver::new(env, Some(parsed))?, warnings))
    }

    /// What this configuration replicates, a line each, for the log at load: every database
    /// the config file lists with each of its destinations (named when it has several), where
    /// `REPLICA_URL` sends the others, or that nothing is configured. Replica URLs are
    /// redacted.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(f) = &self.file {
            for (db, rc, several) in f.dbs.iter().flat_map(|(db, replicas)| {
                replicas.iter().map(move |rc| (db, rc, replicas.len() > 1))
            }) {
                let name = if several {
                    format!("destination {}, ", rc.name)
                } else {
                    String::new()
                };
                lines.push(format!(
                    "{} replicates to {} ({name}from {}){}{}",
                    db.display(),
                    rc.url(),
                    f.path.display(),
                    never_deleting(rc.lifecycle.expiry),
                    encrypted(
                        merge_age(&self.env, rc.age.as_ref())
                            .ok()
                            .flatten()
                            .as_ref()
                    )
                ));
            }
        }
        if let Some(base) = &self.replica_url {
            let which = if lines.is_empty() {
                "every database"
            } else {
                "every other database"
            };
            let expiry = self.file.as_ref().map(|f| f.lifecycle.expiry);
            lines.push(format!(
                "{which} opened replicates under {} (REPLICA_URL), to a replica named after its file{}{}; not scratch files directly in {} (name one in litestream.yml or open it with ?replica=URL to replicate it)",
                base.url(),
                never_deleting(expiry.unwrap_or_default()),
                encrypted(merge_age(&self.env, None).ok().flatten().as_ref()),
                self.scratch.describe()
            ));
        }
        if lines.is_empty() {
            lines.push(
                "nothing is configured: no database will be replicated (set REPLICA_URL, list databases in litestream.yml, or open one with ?replica=URL)"
                    .to_string(),
            );
        }
        lines
    }

    /// The parsed config file, if one was used.
    pub fn config_file(&self) -> Option<&ConfigFile> {
        self.file.as_ref()
    }

    /// The environment this resolver was built from.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// The destinations of the config-file entry for `db` (already absolute and normalized):
    /// equal paths, or equal canonical paths when both exist.
    fn file_entry(&self, db: &Path) -> Option<&[ReplicaConfig]> {
        let file = self.file.as_ref()?;
        if let Some((_, replicas)) = file.dbs.iter().find(|(p, _)| p == db) {
            return Some(replicas);
        }
        let canon = (self.canonicalize)(db)?;
        file.dbs
            .iter()
            .find(|(p, _)| (self.canonicalize)(p).as_deref() == Some(canon.as_path()))
            .map(|(_, replicas)| replicas.as_slice())
    }

    /// What `db_path` replicates to, one [`ReplicaConfig`] per destination (never none), or
    /// `None` for no replication. `db_path` is the path SQLite opens (a relative one is taken
    /// relative to the env's cwd); `uri_params` are the filename's URI parameters (first
    /// occurrence wins, as with `sqlite3_uri_parameter`). Destinations: URI `replica=` (one) >
    /// every replica of the config-file entry, in file order > `REPLICA_URL/<file name>` (one);
    /// one given by a URL is named after its kind (`s3`, `file`). For each destination, sync
    /// interval: URI `replica_sync_interval` > `REPLICA_SYNC_INTERVAL` > the replica's > the
    /// file's top-level > 1s. Boot restore, drill interval and shutdown wait: the environment
    /// variable > the entry's (its replica's, for `validation-interval`) > the file's top
    /// level > the default. Encryption: the `REPLICA_AGE_*` variables over the replica's
    /// `age:` (see [`merge_age`]). An entry is used only when the URI gives no `replica=`.
    pub fn resolve(
        &self,
        db_path: &Path,
        uri_params: &[(String, String)],
    ) -> Result<Option<Vec<ReplicaConfig>>, ConfigError> {
        let db = normalize(&self.env.cwd.join(db_path));
        let (replica_param, interval_param) = replica_uri_params(&db, uri_params)?;
        if let Some(r) = replica_param {
            if r.trim().eq_ignore_ascii_case("off") {
                return Ok(None);
            }
        }
        let interval = uri_sync_interval(&db, interval_param)?;
        let Some(destinations) = self.destinations(&db, replica_param)? else {
            return Ok(None);
        };
        let mut resolved = Vec::with_capacity(destinations.len());
        for (target, entry) in destinations {
            // The keys of the replica that names this destination, else of one with the same
            // target (a `?replica=` URL the file also lists), under the environment's.
            let age = match entry {
                Some(rc) => merge_age(&self.env, rc.age.as_ref())?,
                None => self.age_for_target(&target)?,
            };
            resolved.push(ReplicaConfig {
                age,
                ..self.assemble(target, entry, interval)
            });
        }
        Ok(Some(resolved))
    }

    /// The encryption keys of a replica named by its target: those of the first config-file
    /// replica (of any entry) that replicates to it, under the environment's (see
    /// [`merge_age`]).
    pub fn age_for_target(&self, target: &ReplicaTarget) -> Result<Option<AgeConfig>, ConfigError> {
        let url = target.url();
        let entry = self
            .file
            .iter()
            .flat_map(|f| &f.dbs)
            .flat_map(|(_, replicas)| replicas)
            .find(|rc| rc.target.url() == url)
            .and_then(|rc| rc.age.as_ref());
        merge_age(&self.env, entry)
    }

    /// The targets of `db`, each with the config-file replica it came from, if any.
    fn destinations(
        &self,
        db: &Path,
        replica_param: Option<&str>,
    ) -> Result<Option<Destinations<'_>>, ConfigError> {
        if let Some(url) = replica_param {
            if url.trim().is_empty() {
                return Err(uri_err(
                    db,
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
                .map_err(|e| uri_err(db, "replica", e.to_string()))?;
            Ok(Some(vec![(target, None)]))
        } else if let Some(replicas) = self.file_entry(db) {
            Ok(Some(
                replicas
                    .iter()
                    .map(|rc| (rc.target.clone(), Some(rc)))
                    .collect(),
            ))
        } else if let Some(base) = &self.replica_url {
            if self.scratch.holds(db, self.canonicalize) && (self.scratch_file)(db) {
                return Ok(None);
            }
            Ok(derived_target(base, db).map(|target| vec![(target, None)]))
        } else {
            Ok(None)
        }
    }

    /// The settings other than the target and its keys, each from the first source that sets
    /// it.
    fn assemble(
        &self,
        target: ReplicaTarget,
        entry: Option<&ReplicaConfig>,
        uri_interval: Option<Duration>,
    ) -> ReplicaConfig {
        let file = self.file.as_ref();
        let file_sync = file.and_then(|f| f.global_sync_interval);
        let sync_interval = uri_interval
            .or(self.env_sync_interval)
            .or(entry.map(|rc| rc.sync_interval))
            .or(file_sync)
            .unwrap_or(DEFAULT_SYNC_INTERVAL);
        let validation_interval = match (self.env_validation_interval, entry) {
            (Some(d), _) => Some(d),
            (None, Some(rc)) => rc.validation_interval,
            (None, None) => file.and_then(|f| f.global_validation_interval),
        };
        ReplicaConfig {
            name: entry.map_or_else(|| target.kind().to_string(), |rc| rc.name.clone()),
            target,
            sync_interval,
            // A file replica's lifecycle is the file's, with the replica's own expiry.
            lifecycle: entry
                .map(|rc| rc.lifecycle.clone())
                .or_else(|| file.map(|f| f.lifecycle.clone()))
                .unwrap_or_default(),
            restore_if_missing: self
                .env_restore_if_missing
                .or(entry.map(|rc| rc.restore_if_missing))
                .unwrap_or(DEFAULT_RESTORE_IF_MISSING),
            validation_interval: validation_interval.filter(|d| !d.is_zero()),
            shutdown_sync_timeout: self
                .env_shutdown_sync_timeout
                .or(file.and_then(|f| f.shutdown_sync_timeout))
                .unwrap_or(DEFAULT_SHUTDOWN_SYNC_TIMEOUT),
            lease_ttl: self.env_lease_ttl.unwrap_or(DEFAULT_LEASE_TTL),
            request_budget: self.env_request_budget.or_else(|| {
                entry.map_or(file.and_then(|f| f.global_request_budget), |rc| {
                    rc.request_budget
                })
            }),
            prices: entry.map_or(file.map(|f| f.global_prices).unwrap_or_default(), |rc| {
                rc.prices
            }),
            age: None,
        }
    }
}

/// The encryption keys of a replica: `REPLICA_AGE_RECIPIENTS` (`age1…`, separated by commas
/// or spaces) and `REPLICA_AGE_IDENTITY_FILE` over the entry's `age:` (each replaces its
/// part), checked as a whole.
pub fn merge_age(env: &Env, entry: Option<&AgeConfig>) -> Result<Option<AgeConfig>, ConfigError> {
    let recipients = env.get("REPLICA_AGE_RECIPIENTS").map(|v| {
        v.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    });
    let identity_file = env.get("REPLICA_AGE_IDENTITY_FILE");
    if recipients.is_none() && identity_file.is_none() {
        return Ok(entry.cloned());
    }
    // An error names the variables that made the keys (never their values).
    let var = match (recipients.is_some(), identity_file.is_some()) {
        (true, true) => "REPLICA_AGE_RECIPIENTS / REPLICA_AGE_IDENTITY_FILE",
        (true, false) => "REPLICA_AGE_RECIPIENTS",
        _ => "REPLICA_AGE_IDENTITY_FILE",
    };
    let env_err = |reason: String| ConfigError::Env {
        var: var.to_string(),
        reason,
    };
    let identities = match identity_file {
        // The key itself where its file's name belongs: taken as the key, never shown.
        Some(f) if f.to_ascii_lowercase().contains("secret-key") => {
            vec![IdentitySource::Inline(f.trim().to_string())]
        }
        Some(f) => vec![IdentitySource::File(
            super::paths::absolutize(f.trim(), env).map_err(env_err)?,
        )],
        None => entry.map(|a| a.identities.clone()).unwrap_or_default(),
    };
    let age = AgeConfig {
        recipients: recipients
            .or_else(|| entry.map(|a| a.recipients.clone()))
            .unwrap_or_default(),
        identities,
    };
    age.check().map_err(env_err)?;
    Ok(Some(age))
}

/// `REPLICA_REQUEST_BUDGET`, if set: `500000/month` or `$2/month`.
fn env_request_budget(
    env: &Env,
    file: Option<&ConfigFile>,
) -> Result<Option<crate::budget::RequestBudget>, ConfigError> {
    let Some(v) = env.get("REPLICA_REQUEST_BUDGET") else {
        return Ok(None);
    };
    let prices = file.map(|f| f.global_prices).unwrap_or_default();
    crate::budget::parse_budget(v, &prices)
        .map(Some)
        .map_err(|reason| ConfigError::Env {
            var: "REPLICA_REQUEST_BUDGET".to_string(),
            reason,
        })
}

/// What the load's summary adds for an encrypted replica.
fn encrypted(age: Option<&AgeConfig>) -> String {
    match age {
        None => String::new(),
        Some(a) if a.recipients.is_empty() => {
            ", encrypted with age to its identities' public keys".into()
        }
        Some(a) => format!(
            ", encrypted with age to {} recipient(s)",
            a.recipients.len()
        ),
    }
}

/// What the load's summary adds for a replica whose old files the bucket expires.
fn never_deleting(expiry: Expiry) -> &'static str {
    match expiry {
        Expiry::Uploader => "",
        Expiry::BucketLifecycle => {
            ", never deleting: old files are left to the bucket's lifecycle rules (retention: bucket-lifecycle)"
        }
    }
}

fn uri_err(db: &Path, param: &str, reason: String) -> ConfigError {
    ConfigError::UriParam {
        db: db.to_path_buf(),
        param: param.to_string(),
        reason,
    }
}

/// The first `replica` and `replica_sync_interval` of `uri_params`; other parameters that
/// start with `replica` are errors (a misspelling would otherwise silently not apply).
fn replica_uri_params<'a>(
    db: &Path,
    uri_params: &'a [(String, String)],
) -> Result<(Option<&'a str>, Option<&'a str>), ConfigError> {
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
                    db,
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
    Ok((replica_param, interval_param))
}

/// The `replica_sync_interval` URI parameter, parsed; never zero.
fn uri_sync_interval(db: &Path, param: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = param.map(str::trim) else {
        return Ok(None);
    };
    match parse_duration(v) {
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        Ok(_) => Err(uri_err(
            db,
            "replica_sync_interval",
            format!("must be greater than zero, got {v:?}"),
        )),
        Err(_) => Err(uri_err(
            db,
            "replica_sync_interval",
            describe_duration_error(v),
        )),
    }
}

/// `REPLICA_URL`'s location for `db`: the database's file name under it.
fn derived_target(base: &ReplicaTarget, db: &Path) -> Option<ReplicaTarget> {
    let name = db.file_name().map(|n| n.to_string_lossy().into_owned())?;
    Some(match base {
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
    })
}
