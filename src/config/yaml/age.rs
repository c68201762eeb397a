//! A replica's `age:` mapping (Litestream 0.3's encryption keys): `recipients` (`age1…`) and
//! `identities`, each an `AGE-SECRET-KEY-1…` or the path of an identity file. A single string
//! is taken as a list of one. Checks the keys it can without reading files; never echoes an
//! identity.

use yaml_rust2::Yaml;

use super::read::{child, describe, key_name, read_text, Ctx};
use crate::config::model::{AgeConfig, ConfigError, IdentitySource};
use crate::config::paths::absolutize;
use crate::config::schema::TextRules;

/// The `age:` mapping at `key`.
pub(super) fn read_age(ctx: &mut Ctx, key: &str, node: &Yaml) -> Result<AgeConfig, ConfigError> {
    let Yaml::Hash(map) = node else {
        return Err(ctx.err(
            key,
            format!(
                "expected a mapping with `recipients` and `identities`, got {}",
                describe(node)
            ),
        ));
    };
    let mut age = AgeConfig {
        recipients: Vec::new(),
        identities: Vec::new(),
    };
    for (k, v) in map {
        let name = key_name(k);
        let at = child(key, &name);
        match name.as_str() {
            "recipients" => {
                let rules = TextRules::default();
                age.recipients = read_list(ctx, &at, v, rules)?;
            }
            "identities" => {
                let rules = TextRules {
                    secret: true,
                    ..TextRules::default()
                };
                for text in read_list(ctx, &at, v, rules)? {
                    age.identities.push(identity_source(ctx, &at, &text)?);
                }
            }
            other => ctx.warn(
                &at,
                format!(
                    "unknown key `{other}` is ignored (age: takes `recipients` and `identities`)"
                ),
            ),
        }
    }
    age.check().map_err(|e| ctx.err(key, e))?;
    Ok(age)
}

/// Refuses an `age` key anywhere but as a replica's `age:` (the top level, a database entry,
/// or another spelling): ignoring it with a warning would upload the replica in plaintext.
pub(super) fn refuse_misplaced(
    ctx: &Ctx,
    at: &str,
    key: &str,
    in_replica: bool,
) -> Result<(), ConfigError> {
    if !key.eq_ignore_ascii_case("age") || (in_replica && key == "age") {
        return Ok(());
    }
    let reason = if in_replica {
        format!("`{key}` is not `age` (keys are lower case); refused rather than replicating unencrypted")
    } else {
        "`age` (encryption keys) belongs under a replica (`dbs[].replica.age`); refused rather than replicating unencrypted".to_string()
    };
    Err(ctx.err(&child(at, key), reason))
}

/// An inline identity, or an identity file's path (relative to the working directory).
fn identity_source(ctx: &Ctx, at: &str, text: &str) -> Result<IdentitySource, ConfigError> {
    // Anything that looks like key material is inline (and checked as such), never a path
    // that errors and Debug would show.
    let lower = text.to_ascii_lowercase();
    if lower.contains("secret-key") || text.trim().contains('\n') {
        return Ok(IdentitySource::Inline(text.trim().to_string()));
    }
    absolutize(text.trim(), ctx.env)
        .map(IdentitySource::File)
        .map_err(|e| ctx.err(at, e))
}

/// A list of strings (or one string), each expanded like any config text.
fn read_list(
    ctx: &mut Ctx,
    at: &str,
    node: &Yaml,
    rules: TextRules,
) -> Result<Vec<String>, ConfigError> {
    let items: Vec<&Yaml> = match node {
        Yaml::Array(list) => list.iter().collect(),
        Yaml::Null => Vec::new(),
        one => vec![one],
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if let Some(t) = read_text(ctx, &format!("{at}[{i}]"), item, rules)? {
            if let Some(v) = t.get() {
                out.push(v.to_string());
            }
        }
    }
    Ok(out)
}
