//! The whole config file: YAML documents, the top-level mapping and its keys (the replica
//! defaults, lifecycle and process settings, `dbs:`), assembled into a [`ConfigFile`]. The one
//! public entry point of reading YAML; the text is passed in, so nothing here reads a file.

use std::path::Path;
use std::time::Duration;

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

use super::db::read_dbs;
use super::fields::{file_credentials, Fields};
use super::lifecycle::{read_expiry, read_lifecycle};
use super::limits::check_limits;
use super::merge::apply_merge_keys;
use super::read::{describe, key_name, read_duration_or_zero, Ctx};
use crate::config::env::Env;
use crate::config::model::{ConfigError, ConfigFile, DEFAULT_SHUTDOWN_SYNC_TIMEOUT};
use crate::config::schema::{Level, TOP_FIELDS, TOP_LIFECYCLE};
use crate::lifecycle::Lifecycle;

/// Parses a `litestream.yml`-shaped config file. `path` is used for messages and
/// [`ConfigFile::path`]; `env` supplies `$VAR` values, the cwd for relative paths, and the
/// credential/endpoint/region fallbacks. Text over 1 MiB, with a NUL byte, nested more than
/// 64 levels or whose aliases expand too far is refused before it is loaded.
pub fn parse_config_file(path: &Path, text: &str, env: &Env) -> Result<ConfigFile, ConfigError> {
    check_limits(path, text)?;
    let docs = YamlLoader::load_from_str(text).map_err(|e| ConfigError::Yaml {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut ctx = Ctx {
        file: path,
        env,
        warnings: Vec::new(),
        typos: Vec::new(),
    };
    if docs.len() > 1 {
        ctx.warn(
            "(document)",
            "the file has several YAML documents; only the first is used",
        );
    }
    let empty = Hash::new();
    let merged_root = docs.first().map(apply_merge_keys);
    let root = root_mapping(&ctx, merged_root.as_ref(), &empty)?;

    let mut top = read_top_level(&mut ctx, root)?;
    let global_credentials = file_credentials(&mut ctx, &top.global, &Fields::default())?;
    let (global_request_budget, global_prices) =
        super::requests::request_settings(&ctx, &top.global, &Fields::default())?;
    let mut dbs = read_dbs(&mut ctx, root, top.dbs, &top.global, &mut top.lifecycle)?;
    for rc in dbs.iter_mut().flat_map(|(_, replicas)| replicas.iter_mut()) {
        // The replica's own expiry (its own, its entry's, else the top level's) is kept.
        let expiry = rc.lifecycle.expiry;
        rc.lifecycle = top.lifecycle.clone();
        rc.lifecycle.expiry = expiry;
        rc.shutdown_sync_timeout = top
            .shutdown_sync_timeout
            .unwrap_or(DEFAULT_SHUTDOWN_SYNC_TIMEOUT);
    }
    Ok(ConfigFile {
        path: path.to_path_buf(),
        dbs,
        warnings: ctx.warnings,
        global_credentials,
        global_sync_interval: top.global.sync_interval,
        lifecycle: top.lifecycle,
        global_validation_interval: top.global.validation_interval,
        shutdown_sync_timeout: top.shutdown_sync_timeout,
        global_request_budget,
        global_prices,
    })
}

/// The first document's mapping; an empty document is an empty mapping (`empty`).
fn root_mapping<'a>(
    ctx: &Ctx,
    doc: Option<&'a Yaml>,
    empty: &'a Hash,
) -> Result<&'a Hash, ConfigError> {
    match doc {
        None | Some(Yaml::Null) | Some(Yaml::BadValue) => Ok(empty),
        Some(Yaml::Hash(h)) => Ok(h),
        Some(other) => Err(ctx.err(
            "",
            format!(
                "expected a mapping of settings such as `dbs:`, got {}",
                describe(other)
            ),
        )),
    }
}

/// The top level's keys other than `dbs`, whose node is kept for later.
struct TopLevel<'a> {
    /// The replica defaults (`TOP_FIELDS`).
    global: Fields,
    lifecycle: Lifecycle,
    shutdown_sync_timeout: Option<Duration>,
    dbs: Option<&'a Yaml>,
}

fn read_top_level<'a>(ctx: &mut Ctx, root: &'a Hash) -> Result<TopLevel<'a>, ConfigError> {
    let mut top = TopLevel {
        global: Fields::default(),
        lifecycle: Lifecycle::default(),
        shutdown_sync_timeout: None,
        dbs: None,
    };
    for (k, v) in root {
        let key = key_name(k);
        super::age::refuse_misplaced(ctx, "", &key, false)?;
        if key == "dbs" {
            top.dbs = Some(v);
        } else if key == "retention" {
            match read_expiry(ctx, &key, v)? {
                Some(expiry) => top.lifecycle.expiry = expiry,
                None => ctx.warn_key(Level::Top, "", &key),
            }
        } else if key == "shutdown-sync-timeout" {
            top.shutdown_sync_timeout = read_duration_or_zero(ctx, &key, v)?;
        } else if TOP_LIFECYCLE.contains(&key.as_str()) {
            read_lifecycle(ctx, &key, v, &mut top.lifecycle)?;
        } else if let Some(name) = TOP_FIELDS.iter().find(|f| **f == key) {
            top.global.read(ctx, name, v)?;
        } else {
            ctx.warn_key(Level::Top, "", &key);
        }
    }
    Ok(top)
}
