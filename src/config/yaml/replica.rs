//! One replica of the config file: turns a replica's [`Fields`] (over the top level's) into a
//! [`ReplicaConfig`] whose target is a file directory or an s3 location, given by `url` or by
//! `type` with `bucket`/`path`. Refuses contradictory keys rather than picking one; warns about
//! s3 keys given to a file replica. Database-level settings (restore, lifecycle, shutdown wait)
//! and the replica's name are left at their defaults for the caller to set.

use std::path::PathBuf;

use super::fields::{
    file_credentials, file_timeouts, merged, missing, missing_one_of, pick_endpoint, Fields,
};
use super::read::Ctx;
use crate::config::encoding::{looks_like_url, redact_url};
use crate::config::model::{
    ConfigError, ReplicaConfig, ReplicaTarget, S3Timeouts, DEFAULT_LEASE_TTL,
    DEFAULT_RESTORE_IF_MISSING, DEFAULT_SHUTDOWN_SYNC_TIMEOUT, DEFAULT_SYNC_INTERVAL,
};
use crate::config::paths::absolutize;
use crate::config::s3::{check_bucket_name, clean_prefix, finalize_s3, S3Parts};
use crate::config::schema::did_you_mean;
use crate::config::url::{parse_location, Location, UNSUPPORTED_SCHEMES};

const SUPPORTED_TYPES: &[&str] = &["s3", "file"];

/// The replica's target and sync and validation intervals, own settings over `global`'s.
pub(super) fn build_replica(
    ctx: &mut Ctx,
    own: &Fields,
    global: &Fields,
) -> Result<ReplicaConfig, ConfigError> {
    let ty = replica_type(ctx, own)?;
    let (request_budget, prices) = super::requests::request_settings(ctx, own, global)?;
    let sync_interval = own
        .sync_interval
        .or(global.sync_interval)
        .unwrap_or(DEFAULT_SYNC_INTERVAL);

    let target = if let Some(url) = own.val("url") {
        target_from_url(ctx, own, global, ty.as_deref(), url)?
    } else {
        match ty.as_deref().unwrap_or("file") {
            "s3" => s3_target_from_fields(ctx, own, global)?,
            _ => file_target_from_fields(ctx, own, ty.is_some())?,
        }
    };
    Ok(ReplicaConfig {
        // Named by the caller, who sees the entry's other replicas.
        name: target.kind().to_string(),
        target,
        sync_interval,
        lifecycle: crate::lifecycle::Lifecycle::default(),
        restore_if_missing: DEFAULT_RESTORE_IF_MISSING,
        validation_interval: own
            .validation_interval
            .or(global.validation_interval)
            .filter(|d| !d.is_zero()),
        shutdown_sync_timeout: DEFAULT_SHUTDOWN_SYNC_TIMEOUT,
        lease_ttl: DEFAULT_LEASE_TTL,
        request_budget,
        prices,
        age: own.age.clone(),
    })
}

/// The replica's `type`, lowercased, if given; an error for one libreplica cannot replicate to.
fn replica_type(ctx: &Ctx, own: &Fields) -> Result<Option<String>, ConfigError> {
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
    Ok(ty)
}

/// The target named by the replica's `url`, which `type` must agree with.
fn target_from_url(
    ctx: &mut Ctx,
    own: &Fields,
    global: &Fields,
    ty: Option<&str>,
    url: &str,
) -> Result<ReplicaTarget, ConfigError> {
    let location = parse_location(url, ctx.env)
        .map_err(|r| ctx.err(&own.key("url"), format!("{}: {r}", redact_url(url))))?;
    match location {
        Location::File(dir) => file_url_target(ctx, own, ty, dir),
        Location::S3(p) => s3_url_target(ctx, own, global, ty, p),
    }
}

/// A `url` naming a local directory.
fn file_url_target(
    ctx: &mut Ctx,
    own: &Fields,
    ty: Option<&str>,
    dir: PathBuf,
) -> Result<ReplicaTarget, ConfigError> {
    if ty == Some("s3") {
        return Err(ctx.err(&own.key("type"), "is s3, but `url` names a local directory"));
    }
    if own.val("path").is_some() {
        return Err(ctx.err(
            &own.key("path"),
            "cannot be combined with `url`; give one or the other",
        ));
    }
    warn_s3_keys_ignored(ctx, own, true);
    Ok(ReplicaTarget::File { dir })
}

/// An `s3://` `url`; the replica's own keys override the URL's parameters, which override the
/// top level's keys.
fn s3_url_target(
    ctx: &mut Ctx,
    own: &Fields,
    global: &Fields,
    ty: Option<&str>,
    mut p: S3Parts,
) -> Result<ReplicaTarget, ConfigError> {
    if ty == Some("file") {
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
    Ok(ReplicaTarget::S3(finalize_s3(p, creds, ctx.env)?))
}

/// `type: s3` with `bucket` and `path` (the key prefix).
fn s3_target_from_fields(
    ctx: &mut Ctx,
    own: &Fields,
    global: &Fields,
) -> Result<ReplicaTarget, ConfigError> {
    let bucket = merged(own, global, "bucket")
        .ok_or_else(|| missing(ctx, own, global, "bucket", "an s3 replica needs a bucket"))?
        .to_string();
    let key = if own.val("bucket").is_some() {
        own.key("bucket")
    } else {
        "bucket".into()
    };
    if bucket.contains('/') || looks_like_url(&bucket) {
        return Err(ctx.err(
            &key,
            "must be a bucket name only; put the key prefix in `path` (or use `url: s3://bucket/prefix`)",
        ));
    }
    check_bucket_name(&bucket).map_err(|r| ctx.err(&key, r))?;
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
    Ok(ReplicaTarget::S3(finalize_s3(p, creds, ctx.env)?))
}

/// `type: file` (or no type) with `path`, the replica directory. `type_given`: whether the
/// replica said `type: file` (else a hint suggests `type: s3` for stray s3 keys).
fn file_target_from_fields(
    ctx: &mut Ctx,
    own: &Fields,
    type_given: bool,
) -> Result<ReplicaTarget, ConfigError> {
    let path = own.val("path").ok_or_else(|| {
        missing_one_of(
            ctx,
            (own, &Fields::default()),
            "path",
            "a file replica needs the directory to replicate into, or give a `url`",
            &["path", "url", "type"],
        )
    })?;
    if looks_like_url(path) {
        return Err(ctx.err(
            &own.key("path"),
            "looks like a URL; use the `url` field for URLs",
        ));
    }
    let dir = absolutize(path, ctx.env).map_err(|r| ctx.err(&own.key("path"), r))?;
    warn_s3_keys_ignored(ctx, own, type_given);
    Ok(ReplicaTarget::File { dir })
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
