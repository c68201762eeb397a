//! Litestream's lifecycle keys in the config file: the top level's `snapshot`, `levels`,
//! `l0-retention` and `skip-remote-deletion`, and the databases' `snapshot` entries, which
//! Litestream applies to every database. Builds one [`Lifecycle`] for the whole file; the
//! caller hands it to every replica. Also reads `retention: bucket-lifecycle` (top level,
//! database or replica), which only says who removes old files ([`Expiry`]).

use std::time::Duration;

use yaml_rust2::yaml::Hash;
use yaml_rust2::Yaml;

use super::read::{
    child, describe, key_name, read_bool, read_duration, read_duration_or_zero, Ctx,
};
use crate::config::env::expand_vars;
use crate::config::model::ConfigError;
use crate::config::schema::did_you_mean;
use crate::config::values::parse_duration;
use crate::lifecycle::{Expiry, Lifecycle};

/// The `retention` value that leaves old files to the bucket's lifecycle rules.
pub(super) const BUCKET_LIFECYCLE: &str = "bucket-lifecycle";

/// A `retention` value at `key`: `bucket-lifecycle` is [`Expiry::BucketLifecycle`]; a
/// duration (Litestream's own replica retention) or nothing is `None`, for the caller to
/// warn about as a key libreplica does not use; anything else is an error naming the key.
pub(super) fn read_expiry(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
) -> Result<Option<Expiry>, ConfigError> {
    let text = match node {
        Yaml::Null => return Ok(None),
        Yaml::String(s) => expand_vars(s, ctx.env).map_err(|e| ctx.err(key, e))?.value,
        other => return Err(not_an_expiry(ctx, key, &describe(other), "")),
    };
    let text = text.trim();
    if text.eq_ignore_ascii_case(BUCKET_LIFECYCLE) {
        return Ok(Some(Expiry::BucketLifecycle));
    }
    if text.is_empty() || parse_duration(text).is_ok() {
        return Ok(None);
    }
    let hint = did_you_mean(text, [BUCKET_LIFECYCLE].into_iter());
    Err(not_an_expiry(ctx, key, &format!("{text:?}"), &hint))
}

fn not_an_expiry(ctx: &Ctx, key: &str, got: &str, hint: &str) -> ConfigError {
    ctx.err(
        key,
        format!(
            "expected `{BUCKET_LIFECYCLE}` (old files are left to the bucket's lifecycle rules; libreplica never deletes) or a duration like 24h (Litestream's retention, not used by libreplica), got {got}{hint}"
        ),
    )
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
pub(super) fn read_lifecycle(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
    into: &mut Lifecycle,
) -> Result<(), ConfigError> {
    match (key, node) {
        (_, Yaml::Null) => {}
        ("snapshot", _) => {
            let (interval, retention) = read_snapshot_settings(ctx, "snapshot", node)?;
            into.snapshot_interval = interval.unwrap_or(into.snapshot_interval);
            into.snapshot_retention = retention.unwrap_or(into.snapshot_retention);
        }
        ("levels", Yaml::Array(list)) => into.levels = read_levels(ctx, list)?,
        ("l0-retention", _) => {
            if let Some(d) = read_duration_or_zero(ctx, key, node)? {
                into.l0_retention = d;
            }
        }
        // Litestream's name for the same mode.
        ("skip-remote-deletion", _) => {
            if read_bool(ctx, key, node)? == Some(true) {
                into.expiry = Expiry::BucketLifecycle;
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

/// `levels: [{interval}, …]`: the compaction interval of levels 1, 2, ….
fn read_levels(ctx: &mut Ctx, list: &[Yaml]) -> Result<Vec<Duration>, ConfigError> {
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
            Yaml::Hash(map) => read_level_interval(ctx, &at, map)?,
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
    Ok(levels)
}

/// The `interval` of one `levels[i]` mapping at `at`; other keys are warned about.
fn read_level_interval(
    ctx: &mut Ctx,
    at: &str,
    map: &Hash,
) -> Result<Option<Duration>, ConfigError> {
    let mut interval = None;
    for (k, v) in map {
        let name = key_name(k);
        if name == "interval" {
            interval = read_duration(ctx, &child(at, "interval"), v)?;
        } else {
            ctx.warn(&child(at, &name), "unknown key (known: interval); ignored");
        }
    }
    Ok(interval)
}

/// Applies the `dbs[].snapshot` entries of `list` to `lifecycle`: a database's `snapshot:`
/// applies to every database unless the top level (`root`) sets it (Litestream's rule); two
/// databases may not disagree.
pub(super) fn apply_db_snapshots(
    ctx: &mut Ctx,
    root: &Hash,
    list: &[Yaml],
    lifecycle: &mut Lifecycle,
) -> Result<(), ConfigError> {
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
        let (interval, retention) = read_snapshot_settings(ctx, &at, snap)?;
        for (slot, value, name) in [(0, interval, "interval"), (1, retention, "retention")] {
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
    Ok(())
}
