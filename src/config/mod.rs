//! Configuration: owns parsing and resolving the config file, environment and URI parameters into one [`DbConfig`] per destination of a database (a config-file entry may list several); must do no I/O besides reading the config file it is pointed at (environment and working directory are passed in as [`Env`], so everything is unit-testable).
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
//!    location for every database that no config-file entry names: `<REPLICA_URL>/<file name>`,
//!    except scratch files directly in a temporary directory, see `scratch`),
//!    and `REPLICA_RESTORE_IF_MISSING`, `REPLICA_VALIDATION_INTERVAL`,
//!    `REPLICA_SHUTDOWN_SYNC_TIMEOUT` (each overrides its config-file key for every database),
//!    and `REPLICA_AGE_RECIPIENTS` / `REPLICA_AGE_IDENTITY_FILE` (each replaces its part of a
//!    replica's `age:` keys).
//! 3. The config file (`REPLICA_CONFIG`, `LITESTREAM_CONFIG`, `./config/litestream.yml`,
//!    `/etc/litestream.yml`), in Litestream v0.5's `litestream.yml` shape: a database's own
//!    entry (`dbs[].restore-if-db-not-exists`, `dbs[].replica.validation-interval`, …) over
//!    the file's top level (`validation-interval`, `shutdown-sync-timeout`, …). Every replica
//!    of an entry's `replicas:` is a destination, each with its own replica settings and a
//!    name of its own (`name:`, else its kind: `s3`, `file`, `s3-2`…). Databases the file
//!    does not name (given by `REPLICA_URL` or `replica=`, one destination named after its
//!    kind) take its top-level settings.
//!
//! Secrets (secret access keys, session tokens) never appear in any `Debug`, `Display`, `url()`
//! or error output of this module.
//!
//! Layout, from the data outwards (each file imports only files listed before it):
//! - `model`: the resolved types, defaults, warnings and errors.
//! - `values`, `schema`, `encoding`: scalar values, the config file's vocabulary, URL text.
//! - `env`, `paths`: the passed-in environment, `$VAR` expansion, path arithmetic.
//! - `scratch`: the temporary directories whose files `REPLICA_URL` leaves alone.
//! - `s3`, `url`: replica URLs and s3 locations into targets, and targets back into URLs.
//! - `yaml`: the config file's text into a [`ConfigFile`].
//! - `discovery`: which config file to read.
//! - `resolve`: the [`Resolver`], which applies the precedence above per database.
#![forbid(unsafe_code)]

mod discovery;
mod encoding;
mod env;
mod model;
mod paths;
mod resolve;
mod s3;
mod schema;
mod scratch;
mod url;
mod values;
mod yaml;

#[cfg(test)]
mod tests;

pub use discovery::{config_text, locate_config_file};
pub use env::Env;
pub use model::{
    AgeConfig, ConfigError, ConfigFile, Credentials, DbConfig, IdentitySource, ReplicaConfig,
    ReplicaTarget, S3Target, S3Timeouts, Warning, DEFAULT_LEASE_TTL, DEFAULT_RESTORE_IF_MISSING,
    DEFAULT_SHUTDOWN_SYNC_TIMEOUT, DEFAULT_SYNC_INTERVAL,
};
pub use resolve::{merge_age, Resolver};
pub use url::parse_replica_url;
pub use values::parse_duration;
pub use yaml::parse_config_file;
