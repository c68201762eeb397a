//! Reading single YAML nodes of the config file: the [`Ctx`] that collects warnings and builds
//! errors naming the file and key path, key-path arithmetic, descriptions of values for
//! messages, and the scalar readers (text with `$VAR` expansion, booleans, durations). Knows no
//! key's meaning; a secret's value is never described in a message, only its kind.

use std::path::Path;
use std::time::Duration;

use yaml_rust2::Yaml;

use crate::config::env::{expand_vars, Env, Text};
use crate::config::model::{ConfigError, Warning};
use crate::config::schema::{suggest, Level, TextRules};
use crate::config::values::{describe_duration_error, parse_duration, parse_true_false};

/// The file being read: where messages point and what warnings were collected so far.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) env: &'a Env,
    pub(super) warnings: Vec<Warning>,
    /// Unknown keys close to a known one, so that an error about a missing key can name
    /// the typo that left it missing.
    pub(super) typos: Vec<Typo>,
}

/// An unknown key (ignored with a warning) and the known key it is close to.
pub(super) struct Typo {
    /// Where it is, e.g. `dbs[0].replicaz`.
    path: String,
    key: String,
    meant: &'static str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::File {
            path: self.file.to_path_buf(),
            key: if key.is_empty() {
                "(top level)".to_string()
            } else {
                key.to_string()
            },
            reason: reason.into(),
        }
    }

    pub(super) fn warn(&mut self, key: &str, message: impl Into<String>) {
        let w = Warning {
            key: if key.is_empty() {
                "(top level)".to_string()
            } else {
                key.to_string()
            },
            message: message.into(),
        };
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// Warns about a key libreplica does not use (known Litestream key, misplaced key or typo).
    pub(super) fn warn_key(&mut self, level: Level, at: &str, key: &str) {
        let path = child(at, key);
        if level.unused().contains(&key) {
            self.warn(
                &path,
                format!("`{key}` is accepted but not used by libreplica yet"),
            );
        } else if level != Level::Replica && !level.knows(key) && Level::Replica.knows(key) {
            let place = if level == Level::Top {
                "dbs[].replica"
            } else {
                "`replica:`"
            };
            self.warn(
                &path,
                format!("`{key}` is a replica setting and is ignored here; put it under {place}"),
            );
        } else if level != Level::Db && Level::Db.knows(key) {
            self.warn(
                &path,
                format!("`{key}` is a database setting and is ignored here; put it in an entry under `dbs:`"),
            );
        } else if level != Level::Top && Level::Top.knows(key) {
            self.warn(
                &path,
                format!("`{key}` is a top-level setting and is ignored here; put it at the top of the file, outside `dbs:`"),
            );
        } else {
            let mut known = level.used();
            known.extend(level.unused());
            let meant = suggest(key, known.into_iter());
            let hint = meant.map_or_else(String::new, |k| format!("; did you mean `{k}`?"));
            self.warn(&path, format!("unknown key `{key}` is ignored{hint}"));
            if let Some(meant) = meant {
                self.typos.push(Typo {
                    path,
                    key: key.to_string(),
                    meant,
                });
            }
        }
    }

    /// For an error about a missing key (one of `wanted`): the unknown keys found so far
    /// that are close to it, as `; the unknown key `acess-key-id` (at …) was ignored: did
    /// you mean `access-key-id`?`, else "".
    pub(super) fn typo_hint(&self, wanted: &[&str]) -> String {
        self.typos
            .iter()
            .filter(|t| wanted.contains(&t.meant))
            .map(|t| {
                format!(
                    "; the unknown key `{}` ({}) was ignored: did you mean `{}`?",
                    t.key, t.path, t.meant
                )
            })
            .collect()
    }
}

pub(super) fn child(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

pub(super) fn key_name(k: &Yaml) -> String {
    match k {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "null".to_string(),
        _ => "(complex key)".to_string(),
    }
}

/// Describes a YAML value for an error message.
pub(super) fn describe(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => format!("{s:?}"),
        Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Array(_) => "a list".to_string(),
        Yaml::Hash(_) => "a mapping".to_string(),
        Yaml::Null => "an empty value".to_string(),
        _ => "an invalid value".to_string(),
    }
}

/// Describes the kind of a value only (for secret fields).
fn kind(y: &Yaml) -> &'static str {
    match y {
        Yaml::String(_) => "a string",
        Yaml::Real(_) | Yaml::Integer(_) => "a number",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Null => "an empty value",
        _ => "an invalid value",
    }
}

/// Reads a string-like scalar and expands `$VAR`s. `Ok(None)` for an empty value. `rules`
/// say what the value may hold (see [`TextRules`]).
pub(super) fn read_text(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
    rules: TextRules,
) -> Result<Option<Text>, ConfigError> {
    let secret = rules.secret;
    let raw = match node {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Null => return Ok(None),
        other => {
            let got = if secret {
                kind(other).to_string()
            } else {
                describe(other)
            };
            return Err(ctx.err(key, format!("expected a string, got {got}")));
        }
    };
    if let Yaml::Integer(i) = node {
        // yaml-rust2 keeps no source text for integers: `0123`, `0x10` and `+5` arrive as numbers.
        let shown = if secret {
            String::new()
        } else {
            format!(" (read as {i})")
        };
        ctx.warn(
            key,
            format!("is a YAML number{shown}; quote it if it is meant as text, e.g. '0123'"),
        );
    }
    let t = expand_vars(&raw, ctx.env).map_err(|e| ctx.err(key, e))?;
    check_text(ctx, key, &t, rules)?;
    if t.get().is_some() && !t.unset.is_empty() {
        ctx.warn(
            key,
            format!(
                "{} not set and expanded to an empty string",
                match t.unset.as_slice() {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(", ")),
                }
            ),
        );
    }
    Ok(Some(t))
}

/// Refuses what `rules` forbid in an expanded value; never echoes the value.
fn check_text(ctx: &Ctx, key: &str, t: &Text, rules: TextRules) -> Result<(), ConfigError> {
    if rules.location && t.get().is_some() && !t.unset.is_empty() {
        return Err(ctx.err(
            key,
            format!(
                "{} not set, and without it the value names another place; set it (or write `$$` for a literal `$`)",
                match t.unset.as_slice() {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(", ")),
                }
            ),
        ));
    }
    if rules.header && t.value.chars().any(|c| c.is_ascii_control()) {
        return Err(ctx.err(
            key,
            "holds a control character (such as a line break), which cannot go into an HTTP header",
        ));
    }
    Ok(())
}

pub(super) fn read_bool(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
) -> Result<Option<bool>, ConfigError> {
    match node {
        Yaml::Boolean(b) => Ok(Some(*b)),
        Yaml::Null => Ok(None),
        Yaml::String(s) => {
            let t = expand_vars(s, ctx.env).map_err(|e| ctx.err(key, e))?;
            if t.value.is_empty() {
                return Ok(None);
            }
            match parse_true_false(&t.value) {
                Some(b) => Ok(Some(b)),
                None => Err(ctx.err(key, format!("expected true or false, got {:?}", t.value))),
            }
        }
        other => Err(ctx.err(
            key,
            format!("expected true or false, got {}", describe(other)),
        )),
    }
}

pub(super) fn read_duration(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
) -> Result<Option<Duration>, ConfigError> {
    read_duration_with(ctx, key, node, false)
}

/// Like [`read_duration`], but zero (`0`, `0s`, a bare YAML `0`) is a value: it turns
/// something off.
pub(super) fn read_duration_or_zero(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
) -> Result<Option<Duration>, ConfigError> {
    if let Yaml::Integer(0) = node {
        return Ok(Some(Duration::ZERO));
    }
    read_duration_with(ctx, key, node, true)
}

fn read_duration_with(
    ctx: &mut Ctx,
    key: &str,
    node: &Yaml,
    zero_allowed: bool,
) -> Result<Option<Duration>, ConfigError> {
    let value = match node {
        Yaml::Null => return Ok(None),
        Yaml::String(s) => {
            let t = expand_vars(s, ctx.env).map_err(|e| ctx.err(key, e))?;
            if t.value.is_empty() {
                return Ok(None);
            }
            t.value
        }
        Yaml::Integer(_) | Yaml::Real(_) => {
            return Err(ctx.err(
                key,
                format!(
                    "expected a duration like 1s or 500ms, got {} (a number needs a unit)",
                    describe(node)
                ),
            ))
        }
        other => {
            return Err(ctx.err(
                key,
                format!(
                    "expected a duration like 1s or 500ms, got {}",
                    describe(other)
                ),
            ))
        }
    };
    match parse_duration(&value) {
        Ok(d) if d.is_zero() && !zero_allowed => {
            Err(ctx.err(key, format!("must be greater than zero, got {value:?}")))
        }
        Ok(d) => Ok(Some(d)),
        Err(_) => Err(ctx.err(key, describe_duration_error(&value))),
    }
}
