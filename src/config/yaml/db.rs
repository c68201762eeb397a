//! The `dbs:` list of the config file: each entry's database path, its replicas (every one
//! of `replicas:`, or the one `replica:`) and its database-level settings
//! (`restore-if-db-not-exists`), and the rule that no two entries name the same database.
//! Replica keys are read by `fields`, built by `replica` and named by `names`; the lifecycle
//! keys of an entry are read with the file's (see `lifecycle`).

use std::path::PathBuf;

use yaml_rust2::yaml::Hash;
use yaml_rust2::Yaml;

use super::fields::{read_replica_fields, Fields};
use super::lifecycle::{apply_db_snapshots, read_expiry};
use super::names::name_destinations;
use super::read::{child, describe, key_name, read_bool, read_text, Ctx};
use super::replica::build_replica;
use crate::config::env::Text;
use crate::config::model::{ConfigError, ReplicaConfig, ReplicaTarget, DEFAULT_RESTORE_IF_MISSING};
use crate::config::paths::absolutize;
use crate::config::schema::{Level, TextRules};
use crate::lifecycle::Expiry;

/// Reads the top level's `dbs` node, applying the entries' `snapshot` settings to `lifecycle`.
pub(super) fn read_dbs(
    ctx: &mut Ctx,
    root: &Hash,
    dbs_node: Option<&Yaml>,
    global: &Fields,
    lifecycle: &mut crate::lifecycle::Lifecycle,
) -> Result<Vec<(PathBuf, Vec<ReplicaConfig>)>, ConfigError> {
    let mut dbs: Vec<(PathBuf, Vec<ReplicaConfig>)> = Vec::new();
    match dbs_node {
        None | Some(Yaml::Null) => ctx.warn("dbs", "no databases are configured in this file"),
        Some(Yaml::Array(list)) => {
            apply_db_snapshots(ctx, root, list, lifecycle)?;
            for (i, node) in list.iter().enumerate() {
                let at = format!("dbs[{i}]");
                if let Some((db, replicas)) = parse_db(ctx, &at, node, global, lifecycle.expiry)? {
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
                    dbs.push((db, replicas));
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
    Ok(dbs)
}

/// The keys of one `dbs[i]` entry, as written.
#[derive(Default)]
struct DbKeys<'a> {
    path: Option<Text>,
    replica: Option<&'a Yaml>,
    replicas: Option<&'a Yaml>,
    /// A `dir:` entry (directory replication), which is skipped rather than an error.
    has_dir: bool,
    restore_if_missing: Option<bool>,
    /// `retention: bucket-lifecycle` on the entry.
    expiry: Option<Expiry>,
}

/// One `dbs[i]` entry; `Ok(None)` for entries libreplica skips (directory replication).
/// `expiry` is the top level's, which the entry's or a replica's `retention` overrides.
fn parse_db(
    ctx: &mut Ctx,
    at: &str,
    node: &Yaml,
    global: &Fields,
    expiry: Expiry,
) -> Result<Option<(PathBuf, Vec<ReplicaConfig>)>, ConfigError> {
    let Yaml::Hash(map) = node else {
        return Err(ctx.err(
            at,
            format!(
                "expected a mapping with `path` and `replica`, got {}",
                describe(node)
            ),
        ));
    };
    let keys = read_db_keys(ctx, at, map)?;
    let Some(db_path) = db_path(ctx, at, &keys)? else {
        return Ok(None);
    };
    let every_fields = replica_fields(ctx, at, keys.replica, keys.replicas)?;
    let mut replicas = Vec::with_capacity(every_fields.len());
    for fields in &every_fields {
        let mut rc = build_replica(ctx, fields, global)?;
        rc.lifecycle.expiry = fields.expiry.or(keys.expiry).unwrap_or(expiry);
        if rc.lifecycle.expiry == Expiry::BucketLifecycle
            && matches!(rc.target, ReplicaTarget::File { .. })
        {
            // Among several replicas, the warning must say which one.
            let key = if every_fields.len() == 1 {
                at
            } else {
                fields.at()
            };
            ctx.warn(
                key,
                "`retention: bucket-lifecycle` on a directory replica: libreplica never deletes its old files and no bucket rule will; they stay until removed by hand",
            );
        }
        rc.restore_if_missing = keys
            .restore_if_missing
            .unwrap_or(DEFAULT_RESTORE_IF_MISSING);
        replicas.push(rc);
    }
    name_destinations(ctx, &every_fields, &mut replicas)?;
    Ok(Some((db_path, replicas)))
}

fn read_db_keys<'a>(ctx: &mut Ctx, at: &str, map: &'a Hash) -> Result<DbKeys<'a>, ConfigError> {
    let mut keys = DbKeys::default();
    for (k, v) in map {
        let key = key_name(k);
        super::age::refuse_misplaced(ctx, at, &key, false)?;
        match key.as_str() {
            "path" => keys.path = read_text(ctx, &child(at, "path"), v, TextRules::of("path"))?,
            "restore-if-db-not-exists" => {
                keys.restore_if_missing = read_bool(ctx, &child(at, &key), v)?;
            }
            "replica" => keys.replica = Some(v).filter(|v| !v.is_null()),
            "replicas" => keys.replicas = Some(v).filter(|v| !v.is_null()),
            "snapshot" => {} // read with the file's lifecycle settings
            "retention" => match read_expiry(ctx, &child(at, &key), v)? {
                Some(expiry) => keys.expiry = Some(expiry),
                None => ctx.warn_key(Level::Db, at, &key),
            },
            _ => {
                keys.has_dir |= key == "dir";
                ctx.warn_key(Level::Db, at, &key);
            }
        }
    }
    Ok(keys)
}

/// The entry's database file, absolute; `Ok(None)` (with a warning) for a `dir:` entry.
fn db_path(ctx: &mut Ctx, at: &str, keys: &DbKeys) -> Result<Option<PathBuf>, ConfigError> {
    let path = &keys.path;
    match path.as_ref().and_then(Text::get) {
        Some(p) => {
            let p = p
                .strip_prefix("sqlite3://")
                .or_else(|| p.strip_prefix("sqlite://"))
                .unwrap_or(p);
            absolutize(p, ctx.env)
                .map(Some)
                .map_err(|r| ctx.err(&child(at, "path"), r))
        }
        None if keys.has_dir && path.is_none() => {
            ctx.warn(
                at,
                "directory replication (`dir`) is not supported by libreplica yet; this entry is ignored",
            );
            Ok(None)
        }
        None => Err(match path {
            Some(t) => ctx.err(
                &child(at, "path"),
                format!("{} (the database file)", t.why_empty()),
            ),
            None => ctx.err(
                at,
                format!(
                    "`path` is required (the database file){}",
                    ctx.typo_hint(&["path"])
                ),
            ),
        }),
    }
}

/// The entry's replicas as written: the one of `replica:`, or every one of `replicas:`, in
/// order (never none).
fn replica_fields(
    ctx: &mut Ctx,
    at: &str,
    replica: Option<&Yaml>,
    replicas: Option<&Yaml>,
) -> Result<Vec<Fields>, ConfigError> {
    match (replica, replicas) {
        (Some(_), Some(_)) => Err(ctx.err(
            at,
            "cannot specify both `replica` and `replicas`; use `replica:` for one destination, `replicas:` for several",
        )),
        (Some(r), None) => Ok(vec![read_replica_fields(ctx, child(at, "replica"), r)?]),
        (None, Some(Yaml::Array(list))) if list.is_empty() => Err(ctx.err(
            &child(at, "replicas"),
            "is empty; configure at least one replica",
        )),
        (None, Some(Yaml::Array(list))) => list
            .iter()
            .enumerate()
            .map(|(i, node)| read_replica_fields(ctx, format!("{at}.replicas[{i}]"), node))
            .collect(),
        (None, Some(other)) => Err(ctx.err(
            &child(at, "replicas"),
            format!("expected a list of replicas, got {}", describe(other)),
        )),
        (None, None) => Err(ctx.err(
            at,
            format!(
                "no replica configured: add `replica:` with a `type` or `url`{}",
                ctx.typo_hint(&["replica", "replicas"])
            ),
        )),
    }
}
