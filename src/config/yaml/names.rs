//! The names of one database's destinations and what keeps them apart: a replica's `name:`
//! (1 to 32 of `[A-Za-z0-9_-]`), the name of one without (its target's kind, `s3` or `file`,
//! with `-2`, `-3`… for the second and later unnamed ones of that kind), and the errors for
//! two destinations of a database with the same name or the same target. A default depends
//! only on the order of the file's replicas, so a destination keeps its name from one load
//! to the next while that order stays.

use super::fields::Fields;
use super::read::Ctx;
use crate::config::model::{ConfigError, ReplicaConfig};

/// The longest name, in characters: short enough for log lines that carry it.
const MAX_NAME_CHARS: usize = 32;

const NAME_RULE: &str =
    "a destination's name is 1 to 32 characters, each a letter (A-Z, a-z), a digit, `_` or `-`";

/// Names each of `replicas` (built from `fields`, in file order) and refuses two with the
/// same target or the same name.
pub(super) fn name_destinations(
    ctx: &Ctx,
    fields: &[Fields],
    replicas: &mut [ReplicaConfig],
) -> Result<(), ConfigError> {
    let explicit = fields
        .iter()
        .map(|f| explicit_name(ctx, f))
        .collect::<Result<Vec<_>, _>>()?;
    refuse_same_target(ctx, fields, replicas)?;
    let names: Vec<String> = (0..replicas.len())
        .map(|i| match &explicit[i] {
            Some(name) => name.clone(),
            None => default_name(&explicit, replicas, i),
        })
        .collect();
    // Compared without case: a name is also a folder of the spool, and `Backup` and
    // `backup` are one folder on a file system that ignores case.
    for (i, name) in names.iter().enumerate() {
        if let Some(j) = names[..i].iter().position(|n| n.eq_ignore_ascii_case(name)) {
            return Err(same_name(ctx, fields, replicas, &explicit, (name, j, i)));
        }
    }
    for (rc, name) in replicas.iter_mut().zip(names) {
        rc.name = name;
    }
    Ok(())
}

/// The replica's `name:`, checked; `None` when it has none.
fn explicit_name(ctx: &Ctx, fields: &Fields) -> Result<Option<String>, ConfigError> {
    let Some(text) = fields.text("name") else {
        return Ok(None);
    };
    let key = fields.key("name");
    let Some(name) = text.get() else {
        return Err(ctx.err(&key, format!("{} ({NAME_RULE})", text.why_empty())));
    };
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(ctx.err(&key, format!("is {chars} characters long; {NAME_RULE}")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(ctx.err(&key, format!("{name:?} holds {c:?}; {NAME_RULE}")));
    }
    Ok(Some(name.to_string()))
}

/// The name of the unnamed replica `i`: its kind, numbered from the second unnamed replica
/// of that kind on (`s3`, `s3-2`, `s3-3`).
fn default_name(explicit: &[Option<String>], replicas: &[ReplicaConfig], i: usize) -> String {
    let kind = replicas[i].target.kind();
    let nth = 1
        + (0..i)
            .filter(|&j| explicit[j].is_none() && replicas[j].target.kind() == kind)
            .count();
    if nth == 1 {
        kind.to_string()
    } else {
        format!("{kind}-{nth}")
    }
}

/// Two destinations replicating to one place would ship every change there twice and
/// expire each other's files.
fn refuse_same_target(
    ctx: &Ctx,
    fields: &[Fields],
    replicas: &[ReplicaConfig],
) -> Result<(), ConfigError> {
    for (i, rc) in replicas.iter().enumerate() {
        let url = rc.url();
        if let Some(j) = replicas[..i].iter().position(|other| other.url() == url) {
            return Err(ctx.err(
                fields[i].at(),
                format!(
                    "replicates to {url}, as {} does: the same replica twice; list each destination once",
                    fields[j].at()
                ),
            ));
        }
    }
    Ok(())
}

/// The error for destinations `j` < `i` both named `name`. Unnamed destinations never share
/// a name, so at least one was named by `name:`, and the error names that key.
fn same_name(
    ctx: &Ctx,
    fields: &[Fields],
    replicas: &[ReplicaConfig],
    explicit: &[Option<String>],
    (name, j, i): (&str, usize, usize),
) -> ConfigError {
    if explicit[j].is_some() && explicit[i].is_some() {
        return ctx.err(
            &fields[i].key("name"),
            format!(
                "`{name}` is already the name of {} (names are compared without case); each destination of a database needs a name of its own",
                fields[j].at()
            ),
        );
    }
    let (named, unnamed) = if explicit[i].is_some() {
        (i, j)
    } else {
        (j, i)
    };
    ctx.err(
        &fields[named].key("name"),
        format!(
            "`{name}` is also the name of {}, which has no `name:` and is named after its kind ({}); give one of them another `name:`",
            fields[unnamed].at(),
            replicas[unnamed].target.kind()
        ),
    )
}
