//! The environment: [`Env`] (variables and working directory, passed in so that nothing else
//! in `config` reads the process), `$VAR` expansion of config-file text ([`Text`]), and the
//! `REPLICA_*` switches and durations read straight from variables. Never echoes a variable's
//! value in a message (it may be a secret); does no I/O except in [`Env::from_process`].

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::model::ConfigError;
use super::values::{describe_duration_error, parse_duration, parse_switch};

/// The process environment and working directory, passed in so everything is testable.
/// `Debug` lists variable names only, never values.
#[derive(Clone, Default)]
pub struct Env {
    pub vars: HashMap<String, String>,
    pub cwd: PathBuf,
}

impl Env {
    /// The real process environment (variables that are not UTF-8 are skipped) and working
    /// directory (`/` if it cannot be determined).
    pub fn from_process() -> Env {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Env { vars, cwd }
    }

    /// Convenience constructor (tests, embedders).
    pub fn new<K: Into<String>, V: Into<String>>(
        cwd: impl Into<PathBuf>,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            cwd: cwd.into(),
        }
    }

    /// The variable's value if it is set and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.vars.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        f.debug_struct("Env")
            .field("vars", &names)
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// A string value from the config file after `$VAR`/`${VAR}` expansion. No `Debug`: it may
/// hold a secret.
#[derive(Clone, Default)]
pub(super) struct Text {
    /// As written in the file (only echoed in messages when it expanded to nothing, i.e. when it
    /// consists of variable references only).
    pub(super) raw: String,
    /// Expanded and trimmed.
    pub(super) value: String,
    /// Referenced variables that are not set.
    pub(super) unset: Vec<String>,
    /// Referenced variables that are set to an empty string.
    pub(super) empty: Vec<String>,
}

impl Text {
    pub(super) fn get(&self) -> Option<&str> {
        if self.value.is_empty() {
            None
        } else {
            Some(&self.value)
        }
    }

    /// Why the value is empty, naming the variables involved.
    pub(super) fn why_empty(&self) -> String {
        let raw = self.raw.trim();
        if !self.unset.is_empty() {
            format!(
                "is empty: `{raw}` expanded to an empty string because {} {} not set",
                self.unset.join(", "),
                if self.unset.len() == 1 { "is" } else { "are" }
            )
        } else if !self.empty.is_empty() {
            format!(
                "is empty: `{raw}` expanded to an empty string because {} {} set to an empty string",
                self.empty.join(", "),
                if self.empty.len() == 1 { "is" } else { "are" }
            )
        } else {
            "is empty".to_string()
        }
    }
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Expands `$NAME` and `${NAME}` from `env` like Litestream (an unset variable expands to an
/// empty string; `$PID` is the process id unless the environment defines `PID`). Extensions:
/// `$$` is a literal `$`, and a `$` not followed by a name is kept literally. Error messages never
/// echo the value (it may be a secret).
pub(super) fn expand_vars(raw: &str, env: &Env) -> Result<Text, String> {
    let mut out = String::with_capacity(raw.len());
    let mut unset = Vec::new();
    let mut empty = Vec::new();
    let mut lookup = |name: &str, out: &mut String| match env.vars.get(name) {
        Some(v) if !v.is_empty() => out.push_str(v),
        Some(_) => empty.push(name.to_string()),
        None if name == "PID" => out.push_str(&std::process::id().to_string()),
        None => unset.push(name.to_string()),
    };
    let mut i = 0;
    while i < raw.len() {
        let rest = &raw[i..];
        let Some(after) = rest.strip_prefix('$') else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
            continue;
        };
        if after.starts_with('$') {
            out.push('$');
            i += 2;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                "unterminated `${` (write `${NAME}`, or `$$` for a literal `$`)".to_string()
            })?;
            let name = &body[..end];
            if !is_var_name(name) {
                return Err(
                    "invalid `${...}` reference: a variable name has only letters, digits and `_` (write `$$` for a literal `$`)"
                        .to_string(),
                );
            }
            lookup(name, &mut out);
            i += 2 + end + 1;
        } else {
            let len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if len == 0 || after.as_bytes()[0].is_ascii_digit() {
                out.push('$');
                i += 1;
            } else {
                lookup(&after[..len], &mut out);
                i += 1 + len;
            }
        }
    }
    Ok(Text {
        raw: raw.to_string(),
        value: out.trim().to_string(),
        unset,
        empty,
    })
}

/// A duration from the environment variable `var`, if set; zero is an error unless allowed.
pub(super) fn env_duration(
    env: &Env,
    var: &str,
    zero_allowed: bool,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = env.get(var).map(str::trim) else {
        return Ok(None);
    };
    let reason = match parse_duration(v) {
        Ok(d) if zero_allowed || !d.is_zero() => return Ok(Some(d)),
        Ok(_) => format!("must be greater than zero, got {v:?}"),
        Err(_) => describe_duration_error(v),
    };
    Err(ConfigError::Env {
        var: var.to_string(),
        reason,
    })
}

/// A switch from the environment variable `var`, if set: `1`/`on`/`true`/`yes` or
/// `0`/`off`/`false`/`no`.
pub(super) fn env_switch(env: &Env, var: &str) -> Result<Option<bool>, ConfigError> {
    let Some(v) = env.get(var).map(str::trim) else {
        return Ok(None);
    };
    match parse_switch(v) {
        Some(b) => Ok(Some(b)),
        None => Err(ConfigError::Env {
            var: var.to_string(),
            reason: format!("expected 1 or 0 (on/off, true/false), got {v:?}"),
        }),
    }
}
