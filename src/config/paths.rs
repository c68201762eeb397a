//! Path arithmetic for database and replica paths: lexical normalization, and making a path
//! as written (relative, `~/…`) absolute against the [`Env`]. Purely lexical: never touches the
//! file system (symlinks are the resolver's business).

use std::path::{Component, Path, PathBuf};

use super::env::Env;

/// Removes `.` and resolves `..` lexically (`..` at the root stays at the root).
pub(super) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `~` / `~/x` → `$HOME`, relative → joined with the cwd, then normalized (Litestream's `expand`).
pub(super) fn absolutize(s: &str, env: &Env) -> Result<PathBuf, String> {
    let p = if s == "~" || s.starts_with("~/") {
        let home = env
            .get("HOME")
            .ok_or_else(|| format!("cannot expand `~` in {s:?}: HOME is not set"))?;
        Path::new(home).join(s.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(s)
    };
    Ok(normalize(&env.cwd.join(p)))
}
