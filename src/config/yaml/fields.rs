//! A replica's settings as written ([`Fields`]: a `replica:` mapping, or the top level's
//! defaults for every replica), and the field-by-field merge of a replica's own settings over
//! the top level's (Litestream's `SetDefaults`): credentials, endpoint, timeouts, and the
//! errors for required values that are missing. Produces values, never a target.

use std::collections::BTreeMap;
use std::time::Duration;

use yaml_rust2::Yaml;

use super::lifecycle::read_expiry;
use super::read::{
    child, describe, key_name, read_bool, read_duration, read_duration_or_zero, read_text, Ctx,
};
use crate::config::env::Text;
use crate::config::model::{ConfigError, Credentials, S3Timeouts};
use crate::config::s3::normalize_endpoint;
use crate::config::schema::{Level, TextRules, REPLICA_FIELDS, SECRET_FIELDS};
use crate::lifecycle::Expiry;

/// Replica settings of one replica (or the top level's defaults), as written.
#[derive(Default)]
pub(super) struct Fields {
    /// Key path of the mapping these came from ("" for the top level).
    at: String,
    texts: BTreeMap<&'static str, Text>,
    pub(super) bools: BTreeMap<&'static str, bool>,
    pub(super) sync_interval: Option<Duration>,
    /// Zero: explicitly no drills (so a replica can turn off the top level's).
    pub(super) validation_interval: Option<Duration>,
    /// `connect-timeout` and `read-timeout`.
    durations: BTreeMap<&'static str, Duration>,
    /// `retention: bucket-lifecycle`.
    pub(super) expiry: Option<Expiry>,
    /// `age:` (a replica's own; never the top level's).
    pub(super) age: Option<crate::config::model::AgeConfig>,
}

impl Fields {
    pub(super) fn val(&self, name: &str) -> Option<&str> {
        self.texts.get(name).and_then(Text::get)
    }
    pub(super) fn given(&self, name: &str) -> bool {
        self.texts
            .get(name)
            .is_some_and(|t| !t.raw.trim().is_empty())
            || self.bools.contains_key(name)
    }
    pub(super) fn key(&self, name: &str) -> String {
        child(&self.at, name)
    }
    /// The key path of the mapping these came from, e.g. `dbs[0].replicas[1]`.
    pub(super) fn at(&self) -> &str {
        &self.at
    }
    /// The text field `name` as written, if given (even when it expanded to nothing).
    pub(super) fn text(&self, name: &str) -> Option<&Text> {
        self.texts.get(name)
    }

    /// Reads one of `REPLICA_FIELDS` / `TOP_FIELDS`.
    pub(super) fn read(
        &mut self,
        ctx: &mut Ctx,
        name: &'static str,
        node: &Yaml,
    ) -> Result<(), ConfigError> {
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
                if let Some(t) = read_text(ctx, &key, node, TextRules::of(name))? {
                    self.texts.insert(name, t);
                }
            }
        }
        Ok(())
    }
}

pub(super) fn read_replica_fields(
    ctx: &mut Ctx,
    at: String,
    node: &Yaml,
) -> Result<Fields, ConfigError> {
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
        super::age::refuse_misplaced(ctx, &fields.at, &key, true)?;
        if key == "age" {
            fields.age = Some(super::age::read_age(ctx, &fields.key(&key), v)?);
            continue;
        }
        if key == "retention" {
            fields.expiry = read_expiry(ctx, &fields.key(&key), v)?;
            if fields.expiry.is_some() {
                continue;
            }
        }
        match REPLICA_FIELDS.iter().find(|f| **f == key) {
            Some(name) => fields.read(ctx, name, v)?,
            None => ctx.warn_key(Level::Replica, &fields.at.clone(), &key),
        }
    }
    Ok(fields)
}

/// The error for a required value that is missing or empty, naming the key and any variables
/// (and an unknown key close to it, which may be why it is missing).
pub(super) fn missing(
    ctx: &Ctx,
    own: &Fields,
    global: &Fields,
    name: &str,
    requirement: &str,
) -> ConfigError {
    missing_one_of(ctx, (own, global), name, requirement, &[name])
}

/// [`missing`], naming unknown keys close to any of `wanted` (keys whose absence leaves
/// `name` required: a file replica needs `path` because its `url` or `type` is missing).
pub(super) fn missing_one_of(
    ctx: &Ctx,
    (own, global): (&Fields, &Fields),
    name: &str,
    requirement: &str,
    wanted: &[&str],
) -> ConfigError {
    for f in [own, global] {
        if let Some(t) = f.texts.get(name).filter(|t| !t.raw.trim().is_empty()) {
            return ctx.err(&f.key(name), format!("{} ({requirement})", t.why_empty()));
        }
    }
    let hint = ctx.typo_hint(wanted);
    ctx.err(
        &own.at,
        format!("`{name}` is required ({requirement}){hint}"),
    )
}

/// `own` first, then `global`, field by field (Litestream's `SetDefaults`).
pub(super) fn merged<'a>(own: &'a Fields, global: &'a Fields, name: &str) -> Option<&'a str> {
    own.val(name).or_else(|| global.val(name))
}

/// Credentials from the file (replica, then top level, field by field); `None` if neither key is
/// set, so that the environment is used.
pub(super) fn file_credentials(
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
pub(super) fn pick_endpoint(
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

/// The replica's own timeouts, then the URL's, then the top level's.
pub(super) fn file_timeouts(own: &Fields, global: &Fields, url: S3Timeouts) -> S3Timeouts {
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
