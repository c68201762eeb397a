//! Tests of `config` through its entry points: config files (`yaml`), replica URLs (`url`),
//! precedence and matching in the resolver (`resolve`), several destinations of a database
//! (`destinations`), finding the config file (`discovery`),
//! the promise that no secret reaches any output (`secrets`), and input written to hurt
//! (`hostile`). The fixtures they share live
//! here; a test of one self-contained function sits next to that function instead.

use std::path::Path;

use super::{
    parse_config_file, ConfigError, ConfigFile, Env, ReplicaConfig, ReplicaTarget, S3Target,
};

mod age;
mod destinations;
mod discovery;
mod hostile;
mod lifecycle;
mod operational;
mod requests;
mod resolve;
mod scratch;
mod secrets;
mod url;
mod yaml;

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

/// The one destination of a database that resolved to a single one.
trait Only {
    fn only(self) -> ReplicaConfig;
}

impl Only for Vec<ReplicaConfig> {
    fn only(self) -> ReplicaConfig {
        assert_eq!(self.len(), 1, "expected one destination, got {self:?}");
        self.into_iter().next().unwrap()
    }
}

/// The message of `cfg`'s warning about `key` (a test fails when there is none).
fn warning_for(cfg: &crate::config::ConfigFile, key: &str) -> String {
    cfg.warnings
        .iter()
        .find(|w| w.key == key)
        .unwrap_or_else(|| panic!("no warning for {key}: {:?}", cfg.warnings))
        .message
        .clone()
}
